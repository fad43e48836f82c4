/**
 * `burrow volume create|ls|inspect|rm|prune`: named volumes as podman's local driver keeps them,
 * <volume_path>/<name>/_data. A volume in use by a container is not removed unless forced, which
 * removes those containers first (as podman does).
 */
import { Command } from 'commander';
import { ContainerError, type ContainerRecord } from '../container/containers.js';
import { renderRows, TemplateError } from './gotemplate.js';
import type { VolumeRecord, VolumeStore } from '../container/volumes.js';

type Out = (s: string) => void;

/** podman's exit status for "volume is being used". */
export class VolumeInUseError extends ContainerError {
  readonly exitStatus = 2;
}

async function open(config?: string): Promise<{ volumes: VolumeStore; containers: ContainerRecord[]; config?: string }> {
  const { store } = await import('./cmd_containers.js');
  const { loadConfig } = await import('../config.js');
  const { VolumeStore } = await import('../container/volumes.js');
  const s = await store(config);
  return { volumes: new VolumeStore(loadConfig(config).volumePath), containers: s.list(), config };
}

function users(name: string, containers: ContainerRecord[]): ContainerRecord[] {
  return containers.filter((r) => (r.mounts ?? []).some((m) => m.type === 'volume' && m.name === name));
}

function view(v: VolumeRecord, containers: ContainerRecord[]): Record<string, unknown> {
  const { NeedsChown: _n, Anonymous, ...rest } = v;
  return { ...rest, ...(Anonymous ? { Anonymous: true } : {}), MountCount: users(v.Name, containers).filter((r) => r.state === 'running').length };
}

function template(format: string, rows: Array<Record<string, unknown>>): string {
  try {
    return renderRows(format, rows, { Name: 'VOLUME NAME', Driver: 'DRIVER', Mountpoint: 'MOUNTPOINT', CreatedAt: 'CREATED', Scope: 'SCOPE' });
  } catch (err) {
    if (err instanceof TemplateError) throw new ContainerError(`template: ${err.message}`);
    throw err;
  }
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

function labels(list: string[]): Record<string, string> {
  return Object.fromEntries(list.map((l) => {
    const eq = l.indexOf('=');
    return eq < 0 ? [l, ''] : [l.slice(0, eq), l.slice(eq + 1)];
  }));
}

export function volumeCommand(globals: () => { config?: string }, out: Out): Command {
  const cmd = new Command('volume').description('named volumes (podman\'s local driver)');
  cmd.addCommand(new Command('create')
    .description('create a volume (a random name when none is given)')
    .option('-l, --label <k=v>', 'a label (repeatable)', collect, [])
    .option('--ignore', 'no error when the volume exists')
    .argument('[name]')
    .action(async (name: string | undefined, o: { label: string[]; ignore?: boolean }) => {
      const { volumes } = await open(globals().config);
      out(`${volumes.create(name ?? null, { labels: labels(o.label), ifMissing: o.ignore }).Name}\n`);
    }));
  cmd.addCommand(new Command('ls')
    .alias('list')
    .description('list volumes')
    .option('-q, --quiet', 'names only')
    .option('--format <fmt>', 'json, table, or a Go template ({{.Name}}, {{.Mountpoint}}...)')
    .option('-f, --filter <k=v>', 'name, label, dangling=true|false (repeatable)', collect, [])
    .action(async (o: { quiet?: boolean; format?: string; filter: string[] }) => {
      const { volumes, containers } = await open(globals().config);
      const rows = volumes.list().filter((v) => o.filter.every((f) => {
        const [k, ...rest] = f.split('=');
        const val = rest.join('=');
        if (k === 'name') return v.Name.includes(val);
        if (k === 'label') return val.includes('=') ? v.Labels[val.split('=')[0]] === val.split('=').slice(1).join('=') : val in v.Labels;
        if (k === 'dangling') return (users(v.Name, containers).length === 0) === (val === 'true');
        throw new ContainerError(`invalid filter "${f}" (name, label, dangling)`);
      }));
      if (o.quiet) {
        for (const v of rows) out(`${v.Name}\n`);
        return;
      }
      if (o.format === 'json') {
        out(`${JSON.stringify(rows.map((v) => view(v, containers)), null, 2)}\n`);
        return;
      }
      out(template(!o.format || o.format === 'table' ? 'table {{.Driver}}\t{{.Name}}' : o.format, rows.map((v) => view(v, containers))));
    }));
  cmd.addCommand(new Command('inspect')
    .description('print volumes as JSON')
    .option('-f, --format <fmt>', 'a Go template')
    .option('-a, --all', 'every volume')
    .argument('[names...]')
    .action(async (names: string[], o: { format?: string; all?: boolean }) => {
      const { volumes, containers } = await open(globals().config);
      const list = o.all ? volumes.list() : names.map((n) => volumes.find(n));
      if (!list.length) throw new ContainerError('give at least one volume name (or --all)');
      const docs = list.map((v) => view(v, containers));
      out(o.format && o.format !== 'json' ? template(o.format, docs) : `${JSON.stringify(docs, null, 2)}\n`);
    }));
  cmd.addCommand(new Command('rm')
    .alias('remove')
    .description('remove volumes (-f: and the containers that use them)')
    .option('-f, --force', 'remove the containers using the volume first')
    .option('-a, --all', 'every volume')
    .argument('[names...]')
    .action(async (names: string[], o: { force?: boolean; all?: boolean }) => {
      const ctx = await open(globals().config);
      const list = o.all ? ctx.volumes.list() : names.map((n) => ctx.volumes.find(n));
      if (!list.length) throw new ContainerError('give at least one volume name (or --all)');
      const { removeContainer, store } = await import('./cmd_containers.js');
      const { removeTree } = await import('../container/volumes.js');
      for (const v of list) {
        const using = users(v.Name, ctx.containers);
        if (using.length && !o.force) throw new VolumeInUseError(`volume ${v.Name} is being used by the following container(s): ${using.map((r) => r.id).join(', ')}: volume is being used`);
        if (using.length) {
          const s = await store(globals().config);
          for (const r of using) await removeContainer(s, r, { force: true, time: 10 }, globals().config);
        }
        await ctx.volumes.remove(v.Name, removeTree);
        out(`${v.Name}\n`);
      }
    }));
  cmd.addCommand(new Command('prune')
    .description('remove every volume no container uses')
    .option('-f, --force', 'do not ask (burrow never asks)')
    .action(async () => {
      const ctx = await open(globals().config);
      const { removeTree } = await import('../container/volumes.js');
      for (const v of ctx.volumes.list()) {
        if (users(v.Name, ctx.containers).length) continue;
        await ctx.volumes.remove(v.Name, removeTree);
        out(`${v.Name}\n`);
      }
    }));
  return cmd;
}
