/**
 * Container lifecycle commands, like podman's: ps, stop, kill, rm, logs, inspect, port. Each runs
 * `gcContainers` first, so containers whose burrow supervisor was killed are cleaned up by the
 * next command that looks at them.
 */
import { Command } from 'commander';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainerError, ContainerStore, type ContainerRecord } from './containers.js';

type Out = (s: string) => void;

export async function store(configFile?: string): Promise<ContainerStore> {
  const { makeContext } = await import('./context.js');
  const { gcContainers } = await import('./run.js');
  const ctx = await makeContext(configFile, { plugins: process.getuid?.() === 0 });
  await gcContainers(ctx);
  return new ContainerStore(ctx.config.stateDir);
}

export function running(r: ContainerRecord): boolean {
  return r.state === 'running' && ContainerStore.alive(r);
}

export function ago(iso: string | undefined): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  return `${Math.round(s / 3600)} hours ago`;
}

function status(r: ContainerRecord): string {
  if (running(r)) return `Up ${ago(r.created).replace(/ ago$/, '')}`;
  if (r.state === 'exited') return `Exited (${r.exitCode}) ${ago(r.finished)}${r.teardown ? ', teardown incomplete' : ''}`;
  return 'Created';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `sig` to the container's init (which passes TERM/INT/HUP/QUIT/USR1/USR2 to the command). */
function signal(r: ContainerRecord, sig: NodeJS.Signals | number): void {
  if (!running(r) || !r.initPid) throw new ContainerError(`container "${r.name}" is not running`);
  process.kill(r.initPid, sig);
}

/** Waits until the supervisor has recorded the exit (or is gone). */
async function waitExited(s: ContainerStore, id: string, ms: number): Promise<boolean> {
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

export function containerCommands(globals: () => { config?: string }, out: Out): Command[] {
  const ps = new Command('ps')
    .description('list containers (running; -a: also exited)')
    .option('-a, --all', 'include exited containers')
    .option('--format <fmt>', 'table or json', 'table')
    .action(async (o: { all?: boolean; format: string }) => {
      const s = await store(globals().config);
      const rows = s.list().filter((r) => o.all || running(r)).sort((a, b) => a.created.localeCompare(b.created));
      if (o.format === 'json') {
        out(`${JSON.stringify(rows.map((r) => ({ Id: r.id, Names: [r.name], Command: r.command, Created: r.created, State: running(r) ? 'running' : r.state, Status: status(r), ExitCode: r.exitCode ?? 0, Ports: r.ports, Networks: r.network.mode === 'cni' ? r.network.attachments.map((a) => a.network) : [r.network.mode === 'container' ? `container:${r.network.target}` : r.network.mode], Pid: r.initPid ?? 0, Pod: r.pod ?? '', IsInfra: !!r.infra })), null, 2)}\n`);
        return;
      }
      if (o.format !== 'table') throw new ContainerError(`unknown --format "${o.format}" (table or json)`);
      const table = [['CONTAINER ID', 'NAME', 'COMMAND', 'CREATED', 'STATUS', 'PORTS'], ...rows.map((r) => [r.id.slice(0, 12), r.name, r.command.join(' ').slice(0, 30), ago(r.created), status(r), r.ports.join(', ')])];
      const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
      out(`${table.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n')}\n`);
    });
  const stopCmd = new Command('stop')
    .description('stop containers: SIGTERM, then SIGKILL after the timeout')
    .option('-t, --time <s>', 'seconds to wait before SIGKILL', '10')
    .argument('<names...>')
    .action(async (names: string[], o: { time: string }) => {
      const s = await store(globals().config);
      for (const n of names) {
        await stop(s, s.find(n), Number(o.time));
        out(`${n}\n`);
      }
    });
  const kill = new Command('kill')
    .description('send a signal to containers (default SIGKILL)')
    .option('-s, --signal <sig>', 'signal name or number', 'KILL')
    .argument('<names...>')
    .action(async (names: string[], o: { signal: string }) => {
      const s = await store(globals().config);
      const name = /^\d+$/.test(o.signal) ? Number(o.signal) : (`SIG${o.signal.replace(/^SIG/i, '').toUpperCase()}` as NodeJS.Signals);
      if (typeof name === 'string' && !(name in os.constants.signals)) throw new ContainerError(`unknown signal "${o.signal}"`);
      for (const n of names) {
        signal(s.find(n), name);
        out(`${n}\n`);
      }
    });
  const rm = new Command('rm')
    .description('remove containers (-f: stop running ones first)')
    .option('-f, --force', 'stop and remove running containers')
    .argument('<names...>')
    .action(async (names: string[], o: { force?: boolean }) => {
      const s = await store(globals().config);
      for (const n of names) {
        const r = s.find(n);
        if (r.infra && r.pod) throw new ContainerError(`container "${r.name}" is the infra container of a pod: remove the pod with "burrow pod rm"`);
        const deps = s.dependents(r.id);
        if (deps.length) throw new ContainerError(`container "${r.name}" has running containers that share its namespaces (${deps.map((d) => d.name).join(', ')}): remove them first`);
        if (running(r)) {
          if (!o.force) throw new ContainerError(`container "${r.name}" is running: stop it first or use rm -f`);
          await stop(s, r, 0);
        }
        await s.remove(r.id);
        out(`${r.id}\n`);
      }
    });
  const logs = new Command('logs')
    .description('print the output of a detached container')
    .argument('<name>')
    .action(async (name: string) => {
      const s = await store(globals().config);
      const r = s.find(name);
      const file = path.join(s.pathOf(r.id), 'ctr.log');
      if (!fs.existsSync(file)) throw new ContainerError(`container "${r.name}" has no log (only detached containers log to a file)`);
      out(fs.readFileSync(file, 'utf8'));
    });
  const inspect = new Command('inspect')
    .description('print container records as JSON')
    .argument('<names...>')
    .action(async (names: string[]) => {
      const s = await store(globals().config);
      out(`${JSON.stringify(names.map((n) => {
        const r = s.find(n);
        return { ...r, running: running(r), status: status(r) };
      }), null, 2)}\n`);
    });
  const port = new Command('port')
    .description('list a container\'s published ports, or add/remove one at runtime (usernet)')
    .argument('<name>')
    .argument('[action]', 'add SPEC | rm ID')
    .argument('[arg]')
    .action(async (name: string, action: string | undefined, arg: string | undefined) => {
      const s = await store(globals().config);
      const r = s.find(name);
      if (!action) {
        for (const p of r.ports) out(`${p}\n`);
        return;
      }
      if (!r.apiSocket || !running(r)) throw new ContainerError(`adding and removing ports at runtime needs a running usernet container; "${r.name}" is ${running(r) ? `on ${r.network.mode}` : 'not running'}`);
      const { callApi } = await import('../net/usernet/api.js');
      if (action === 'add' && arg) {
        const res = (await callApi(r.apiSocket, { execute: 'add_hostfwd', arguments: { spec: arg } })) as { ids: number[] };
        r.ports.push(arg);
        s.write(r);
        out(`${res.ids.join('\n')}\n`);
      } else if (action === 'rm' && arg) {
        const { entries } = (await callApi(r.apiSocket, { execute: 'list_hostfwd' })) as { entries: Array<{ id: number; spec: string }> };
        const gone = entries.find((e) => e.id === Number(arg));
        await callApi(r.apiSocket, { execute: 'remove_hostfwd', arguments: { id: Number(arg) } });
        // The record lists what is published (burrow port NAME, ps): the removed forward goes too.
        const { parsePortSpec, formatPortSpec } = await import('../net/usernet/forward.js');
        const at = gone ? r.ports.findIndex((p) => parsePortSpec(p).map(formatPortSpec).includes(gone.spec)) : -1;
        if (at >= 0) {
          const rest = parsePortSpec(r.ports[at]).map(formatPortSpec).filter((x) => x !== gone!.spec);
          r.ports.splice(at, 1, ...rest);
          s.write(r);
        }
      } else throw new ContainerError('usage: burrow port NAME [add SPEC | rm ID]');
    });
  return [ps, stopCmd, kill, rm, logs, inspect, port];
}
