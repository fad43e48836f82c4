/**
 * Container commands as podman's: ps, inspect, port, stop, kill, rm, wait, and (cmd_lifecycle.ts)
 * start, restart, attach, exec, logs, top. Each runs `gcContainers` first, so containers whose
 * burrow supervisor was killed are cleaned up by the next command that looks at them. Names,
 * full ids and unique id prefixes all work; -l/--latest picks the container created last.
 */
import { Command, Option } from 'commander';
import os from 'node:os';
import { ContainerError, ContainerStore, PodStore, type ContainerRecord } from '../container/containers.js';
import { renderRows, render, TemplateError } from './gotemplate.js';

type Out = (s: string) => void;

export async function store(configFile?: string): Promise<ContainerStore> {
  const { makeContext } = await import('../context.js');
  const { gcContainers } = await import('../container/gc.js');
  const ctx = await makeContext(configFile, { plugins: process.getuid?.() === 0 });
  await gcContainers(ctx);
  return new ContainerStore(ctx.config.stateDir);
}

export function running(r: ContainerRecord): boolean {
  return r.state === 'running' && ContainerStore.alive(r);
}

export { ago } from './human.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `sig` to the container's init (which passes TERM/INT/HUP/QUIT/USR1/USR2 to the command). */
function signal(r: ContainerRecord, sig: NodeJS.Signals | number): void {
  if (!running(r) || !r.initPid) throw new ContainerError(`can only kill running containers. ${r.id.slice(0, 12)} is in state ${r.state === 'running' ? 'exited' : r.state}: container state improper`);
  process.kill(r.initPid, sig);
}

/** Waits until the supervisor has recorded the exit (or is gone). */
export async function waitExited(s: ContainerStore, id: string, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    const r = s.list().find((x) => x.id === id);
    if (!r || r.state === 'exited' || !ContainerStore.alive(r)) return true;
    if (Date.now() >= end) return false;
    await sleep(50);
  }
}

export async function stop(s: ContainerStore, r: ContainerRecord, timeoutS: number): Promise<void> {
  if (!running(r)) return;
  signal(r, 'SIGTERM');
  if (await waitExited(s, r.id, timeoutS * 1000)) return;
  // The whole pid namespace goes when its init is killed.
  try {
    process.kill(r.initPid!, 'SIGKILL');
  } catch {
    // exited meanwhile
  }
  if (!(await waitExited(s, r.id, 10_000))) throw new ContainerError(`container "${r.name}" did not stop`);
}

/** The container created last (podman's --latest). */
export function latest(s: ContainerStore): ContainerRecord {
  const all = s.list().filter((r) => !r.infra).sort((a, b) => a.created.localeCompare(b.created));
  if (!all.length) throw new ContainerError('no containers to act on with --latest');
  return all[all.length - 1];
}

/**
 * The containers a command acts on: the names given, or --latest, or --all (a filter picks
 * which of all), never both.
 */
export function targets(s: ContainerStore, names: string[], o: { latest?: boolean; all?: boolean }, all: (r: ContainerRecord) => boolean = () => true): ContainerRecord[] {
  const ways = [names.length > 0, !!o.latest, !!o.all].filter(Boolean).length;
  if (ways > 1) throw new ContainerError(`${o.latest ? '--latest' : '--all'} and container names cannot be used together`);
  if (o.latest) return [latest(s)];
  if (o.all) return s.list().filter((r) => !r.infra && all(r)).sort((a, b) => a.created.localeCompare(b.created));
  if (!names.length) throw new ContainerError('give at least one container name or id (or --latest, or --all)');
  return names.map((n) => s.find(n));
}

export function signalNumber(sig: string): NodeJS.Signals | number {
  const name = /^\d+$/.test(sig) ? Number(sig) : (`SIG${sig.replace(/^SIG/i, '').toUpperCase()}` as NodeJS.Signals);
  if (typeof name === 'string' && !(name in os.constants.signals)) throw new ContainerError(`invalid signal: ${sig}`);
  return name;
}

/** --format: a Go template (or json / table); a template error is a clear usage error. */
function formatRows(format: string, rows: Array<Record<string, unknown>>, headers: Record<string, string>): string {
  try {
    return renderRows(format, rows, headers);
  } catch (err) {
    if (err instanceof TemplateError) throw new ContainerError(`template: ${err.message}`);
    throw err;
  }
}

export function containerCommands(globals: () => { config?: string }, out: Out): Command[] {
  const ps = new Command('ps')
    .description('list containers (running; -a: also exited), as podman ps')
    .option('-a, --all', 'include exited containers')
    .option('-q, --quiet', 'ids only')
    .option('--no-trunc', 'full ids and commands')
    .option('--format <fmt>', 'json, table, or a Go template ({{.Names}}, {{.ID}}, {{.Status}}, {{.Ports}}, {{json .}}...)')
    .option('-f, --filter <k=v>', 'name, id, label, status, network, pod, exited, volume (repeatable)', (v: string, p: string[] = []) => [...p, v], [])
    .option('--pod', 'show the pod of each container')
    .option('-l, --latest', 'only the container created last')
    .option('-n, --last <n>', 'the n containers created last')
    .option('--noheading', 'no header line')
    .action(async (o: { all?: boolean; quiet?: boolean; trunc: boolean; format?: string; filter: string[]; pod?: boolean; latest?: boolean; last?: string; noheading?: boolean }) => {
      const { psFilter, psRow, PS_HEADERS, PS_POD_TABLE, PS_TABLE } = await import('./podman_view.js');
      const s = await store(globals().config);
      const ctx = { now: Date.now(), alive: (r: ContainerRecord) => ContainerStore.alive(r), pods: new PodStore(s.stateDir).list() };
      let match: (r: ContainerRecord) => boolean;
      try {
        match = psFilter(o.filter, ctx);
      } catch (err) {
        throw new ContainerError((err as Error).message);
      }
      const showAll = o.all || o.latest || o.last !== undefined || o.filter.some((f) => f.startsWith('status=') || f.startsWith('exited='));
      let rows = s.list().filter((r) => (showAll || running(r)) && match(r)).sort((a, b) => a.created.localeCompare(b.created));
      if (o.latest) rows = rows.slice(-1);
      if (o.last !== undefined) rows = rows.slice(-Math.max(0, Number(o.last)));
      const noTrunc = !o.trunc;
      if (o.quiet) {
        for (const r of rows) out(`${noTrunc ? r.id : r.id.slice(0, 12)}\n`);
        return;
      }
      const views = rows.map((r) => psRow(r, ctx, noTrunc));
      if (o.format === 'json') {
        out(`${JSON.stringify(views.map((v) => v.json), null, 2)}\n`);
        return;
      }
      const format = !o.format || o.format === 'table' ? (o.pod ? PS_POD_TABLE : PS_TABLE) : o.format;
      let text = formatRows(format, views.map((v) => v.template), PS_HEADERS);
      if (o.noheading && /^\s*table\b/.test(format)) text = text.split('\n').slice(1).join('\n');
      out(text);
    });
  const stopCmd = new Command('stop')
    .description('stop containers: SIGTERM, then SIGKILL after the timeout')
    .option('-t, --time <s>', 'seconds to wait before SIGKILL', '10')
    .option('-a, --all', 'stop every running container')
    .option('-l, --latest', 'the container created last')
    .argument('[names...]')
    .action(async (names: string[], o: { time: string; all?: boolean; latest?: boolean }) => {
      const s = await store(globals().config);
      for (const r of targets(s, names, o, running)) {
        await stop(s, r, Number(o.time));
        out(`${names.length ? names[0] === r.name || names.includes(r.name) ? r.name : names.find((n) => r.id.startsWith(n)) ?? r.name : r.id}\n`);
      }
    });
  const kill = new Command('kill')
    .description('send a signal to containers (default SIGKILL)')
    .option('-s, --signal <sig>', 'signal name or number', 'KILL')
    .option('-a, --all', 'every running container')
    .option('-l, --latest', 'the container created last')
    .argument('[names...]')
    .action(async (names: string[], o: { signal: string; all?: boolean; latest?: boolean }) => {
      const s = await store(globals().config);
      const sig = signalNumber(o.signal);
      for (const r of targets(s, names, o, running)) {
        signal(r, sig);
        out(`${names.length ? names.find((n) => n === r.name || r.id.startsWith(n)) ?? r.name : r.id}\n`);
      }
    });
  const rm = new Command('rm')
    .description('remove containers (-f: stop running ones first; -v: with their anonymous volumes)')
    .option('-f, --force', 'stop and remove running containers')
    .option('-a, --all', 'every container')
    .option('-l, --latest', 'the container created last')
    .option('-v, --volumes', 'also remove the anonymous volumes of the containers')
    .option('-t, --time <s>', 'with -f: seconds to wait before SIGKILL', '10')
    .option('-i, --ignore', 'no error for containers that do not exist')
    .argument('[names...]')
    .action(async (names: string[], o: { force?: boolean; all?: boolean; latest?: boolean; volumes?: boolean; time: string; ignore?: boolean }) => {
      const s = await store(globals().config);
      const list = o.ignore ? names.flatMap((n) => {
        try {
          return [s.find(n)];
        } catch {
          return [];
        }
      }) : targets(s, names, o);
      if (o.ignore && !names.length) list.push(...targets(s, [], o));
      for (const r of list) {
        await removeContainer(s, r, { force: o.force, volumes: o.volumes, time: Number(o.time) }, globals().config);
        // as podman: the name or id as given, the full id for --all and --latest
        out(`${names.find((n) => n === r.name || r.id.startsWith(n)) ?? r.id}\n`);
      }
    });
  const wait = new Command('wait')
    .description('wait for containers to exit; print their exit codes')
    .option('-l, --latest', 'the container created last')
    .argument('[names...]')
    .action(async (names: string[], o: { latest?: boolean }) => {
      const s = await store(globals().config);
      for (const r of targets(s, names, o)) {
        await waitExited(s, r.id, 2 ** 31 - 1);
        const after = s.list().find((x) => x.id === r.id);
        out(`${after?.exitCode ?? r.exitCode ?? 0}\n`);
      }
    });
  const inspect = new Command('inspect')
    .description('print containers as JSON with podman\'s fields (and burrow\'s own, lower case)')
    .option('-f, --format <fmt>', 'a Go template ({{.State.Status}}, {{.NetworkSettings.IPAddress}}...)')
    .option('-l, --latest', 'the container created last')
    .addOption(new Option('-t, --type <type>', 'what to inspect').choices(['container', 'all']).default('all'))
    .argument('[names...]')
    .action(async (names: string[], o: { format?: string; latest?: boolean }) => {
      const { inspectView } = await import('./podman_view.js');
      const s = await store(globals().config);
      const pods = new PodStore(s.stateDir).list();
      const docs = targets(s, names, o).map((r) => inspectView(r, ContainerStore.alive(r), Date.now(), s.pathOf(r.id), r.pod ? pods.find((p) => p.id === r.pod) : undefined));
      if (!o.format || o.format === 'json') {
        out(`${JSON.stringify(docs, null, 2)}\n`);
        return;
      }
      try {
        for (const d of docs) {
          const line = render(o.format.replace(/\\t/g, '\t').replace(/\\n/g, '\n'), d);
          out(line.endsWith('\n') ? line : `${line}\n`);
        }
      } catch (err) {
        if (err instanceof TemplateError) throw new ContainerError(`template: ${err.message}`);
        throw err;
      }
    });
  const port = new Command('port')
    .description('list a container\'s published ports (or the host side of one), or add/remove one at runtime (usernet)')
    .option('-a, --all', 'every container\'s ports')
    .option('-l, --latest', 'the container created last')
    .argument('[name]')
    .argument('[action]', 'a container port (80, 80/udp), or add SPEC | rm ID')
    .argument('[arg]')
    .action(async (name: string | undefined, action: string | undefined, arg: string | undefined, o: { all?: boolean; latest?: boolean }) => {
      const { portLines } = await import('./podman_view.js');
      const s = await store(globals().config);
      if (o.all || o.latest) {
        // no name then: the first argument (if any) is the port
        if (action) arg = action;
        action = name;
      }
      const list = o.all ? s.list().filter(running) : [o.latest ? latest(s) : s.find(name ?? '')];
      if (!name && !o.all && !o.latest) throw new ContainerError('give a container name or id (or --latest, or --all)');
      if (!action || /^\d+(\/(tcp|udp))?$/.test(action)) {
        for (const r of list) {
          const lines = portLines(r);
          if (action) {
            const key = action.includes('/') ? action : `${action}/tcp`;
            const hit = lines.filter((l) => l.key === key);
            if (!hit.length) throw new ContainerError(`failed to find published port "${action}"`);
            for (const h of hit) out(`${h.host}\n`);
            continue;
          }
          for (const l of lines) out(`${o.all ? `${r.id.slice(0, 12)}\t` : ''}${l.key} -> ${l.host}\n`);
        }
        return;
      }
      const r = list[0];
      if (!r.apiSocket || !running(r)) throw new ContainerError(`adding and removing ports at runtime needs a running usernet container; "${r.name}" is ${running(r) ? `on ${r.network.mode}` : 'not running'}`);
      const { callApi } = await import('../../net/usernet/api.js');
      const { parsePortSpec, formatPortSpec } = await import('../../net/ports/portspec.js');
      if (action === 'add' && arg) {
        const res = (await callApi(r.apiSocket, { execute: 'add_hostfwd', arguments: { spec: arg } })) as { ids: number[] };
        // the record keeps what was published, with the host ports chosen for -p 80
        const { entries } = (await callApi(r.apiSocket, { execute: 'list_hostfwd' })) as { entries: Array<{ id: number; spec: string }> };
        r.ports.push(...entries.filter((e) => res.ids.includes(e.id)).map((e) => e.spec));
        s.write(r);
        out(`${res.ids.join('\n')}\n`);
      } else if (action === 'rm' && arg) {
        const { entries } = (await callApi(r.apiSocket, { execute: 'list_hostfwd' })) as { entries: Array<{ id: number; spec: string }> };
        const gone = entries.find((e) => e.id === Number(arg));
        await callApi(r.apiSocket, { execute: 'remove_hostfwd', arguments: { id: Number(arg) } });
        // The record lists what is published (burrow port NAME, ps): the removed forward goes too.
        const at = gone ? r.ports.findIndex((p) => parsePortSpec(p).map(formatPortSpec).includes(gone.spec)) : -1;
        if (at >= 0) {
          const rest = parsePortSpec(r.ports[at]).map(formatPortSpec).filter((x) => x !== gone!.spec);
          r.ports.splice(at, 1, ...rest);
          s.write(r);
        }
      } else throw new ContainerError('usage: burrow port NAME [PORT[/PROTO] | add SPEC | rm ID]');
    });
  return [ps, stopCmd, kill, rm, wait, inspect, port];
}

/**
 * Removes a container: refuses a pod's infra and one others share; a running one only with
 * force (stopped first); -v takes its anonymous volumes too.
 */
export async function removeContainer(s: ContainerStore, r: ContainerRecord, o: { force?: boolean; volumes?: boolean; time?: number }, config?: string): Promise<void> {
  if (r.infra && r.pod) throw new ContainerError(`container "${r.name}" is the infra container of a pod: remove the pod with "burrow pod rm"`);
  const deps = s.dependents(r.id);
  if (deps.length) throw new ContainerError(`container "${r.name}" has running containers that share its namespaces (${deps.map((d) => d.name).join(', ')}): remove them first`);
  if (running(r)) {
    if (!o.force) throw new ContainerError(`cannot remove container ${r.id} as it is running - running or paused containers cannot be removed without force: container state improper`);
    await stop(s, r, o.time ?? 10);
  }
  await s.remove(r.id);
  if (o.volumes) {
    const { loadConfig } = await import('../config.js');
    const { VolumeStore } = await import('../container/volumes.js');
    const { removeTree } = await import('../container/volumes.js');
    const volumes = new VolumeStore(loadConfig(config).volumePath);
    for (const m of r.mounts ?? []) if (m.anonymous && m.name) await volumes.remove(m.name, removeTree).catch(() => undefined);
  }
}
