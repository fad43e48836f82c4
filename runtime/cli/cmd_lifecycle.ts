/**
 * The commands that reach into a container's life, as podman's: start [-a] and restart (the same
 * container again with its recorded options: network, ports, mounts, user namespace), attach,
 * exec, logs and top.
 */
import { Command } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { ContainerError, type ContainerRecord } from '../container/containers.js';
import { running, stop, store, targets, waitExited } from './cmd_containers.js';
import { DEFAULT_DETACH_KEYS, parseDetachKeys } from '../container/attach_proto.js';
import { checkDescriptors, formatTop, mapBack, parseStat, parseStatus, ttyName, type ProcInfo } from '../container/top.js';

type Out = (s: string) => void;
const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Starts an exited container again under a new supervisor; with attach, this terminal is its first client. */
async function startContainer(r: ContainerRecord, o: { attach?: boolean; interactive?: boolean; detachKeys: Buffer; config?: string }): Promise<number | null> {
  if (running(r)) {
    if (!o.attach) return null; // podman: starting a running container is a no-op
    const { attachTo } = await import('./cmd_run.js');
    return attachTo({ id: r.id, socket: r.attachSocket ?? '', release: () => undefined }, { stdin: !!o.interactive, detachKeys: o.detachKeys, config: o.config });
  }
  if (r.infra) throw new ContainerError(`container "${r.name}" is a pod's infra container: start the pod (burrow pod start)`);
  if (!r.spec) throw new ContainerError(`container "${r.name}" was created by an older burrow and cannot be started again`);
  const { restartSupervisor } = await import('../container/run.js');
  const sup = await restartSupervisor(r.id, o.config, { waitAttach: o.attach });
  if (!o.attach) return null;
  const { attachTo } = await import('./cmd_run.js');
  return attachTo(sup, { stdin: !!o.interactive, detachKeys: o.detachKeys, config: o.config });
}

export function lifecycleCommands(globals: () => { config?: string }, out: Out, setExit: (code: number) => void): Command[] {
  const start = new Command('start')
    .description('start exited containers again, with the options they were created with')
    .option('-a, --attach', 'attach to the container\'s output (and -i: its input); exit with its status')
    .option('-i, --interactive', 'with -a: attach stdin')
    .option('--detach-keys <keys>', 'with -a: the detach sequence (default ctrl-p,ctrl-q)')
    .option('--all', 'every exited container')
    .option('-l, --latest', 'the container created last')
    .argument('[names...]')
    .action(async (names: string[], o: { attach?: boolean; interactive?: boolean; detachKeys?: string; all?: boolean; latest?: boolean }) => {
      const s = await store(globals().config);
      const list = targets(s, names, o, (r) => !running(r));
      if (o.attach && list.length !== 1) throw new ContainerError('you cannot start and attach multiple containers at once');
      const detachKeys = parseDetachKeys(o.detachKeys ?? DEFAULT_DETACH_KEYS);
      for (const [i, r] of list.entries()) {
        const code = await startContainer(r, { attach: o.attach, interactive: o.interactive, detachKeys, config: globals().config });
        if (code !== null) setExit(code);
        else out(`${names[i] ?? r.id}\n`);
      }
    });
  const restart = new Command('restart')
    .description('stop (if running) and start containers again')
    .option('-t, --time <s>', 'seconds to wait before SIGKILL', '10')
    .option('-a, --all', 'every container')
    .option('--running', 'with --all: only the running ones')
    .option('-l, --latest', 'the container created last')
    .argument('[names...]')
    .action(async (names: string[], o: { time: string; all?: boolean; running?: boolean; latest?: boolean }) => {
      const s = await store(globals().config);
      const detachKeys = parseDetachKeys(DEFAULT_DETACH_KEYS);
      for (const [i, r] of targets(s, names, o, (x) => !o.running || running(x)).entries()) {
        if (running(r)) {
          await stop(s, r, Number(o.time));
          await waitExited(s, r.id, 10_000);
        }
        const now = s.list().find((x) => x.id === r.id);
        if (!now) throw new ContainerError(`container "${r.name}" was removed when it stopped (it ran with --rm)`);
        await startContainer(now, { detachKeys, config: globals().config });
        out(`${names[i] ?? r.id}\n`);
      }
    });
  const attach = new Command('attach')
    .description('attach this terminal to a running container (detach with ctrl-p,ctrl-q)')
    .option('--no-stdin', 'do not attach stdin')
    .option('--detach-keys <keys>', 'the detach sequence (default ctrl-p,ctrl-q; "" disables)')
    .option('--sig-proxy <bool>', 'pass signals to the container (default true)', 'true')
    .option('-l, --latest', 'the container created last')
    .argument('[name]')
    .action(async (name: string | undefined, o: { stdin: boolean; detachKeys?: string; sigProxy: string; latest?: boolean }) => {
      const s = await store(globals().config);
      const [r] = targets(s, name ? [name] : [], o);
      if (!running(r) || !r.attachSocket) throw new ContainerError(`you can only attach to running containers: "${r.name}" is ${r.state === 'running' ? 'exited' : r.state}`);
      const { attachSocket } = await import('../container/attach_client.js');
      const res = await attachSocket(r.attachSocket, { stdin: o.stdin, detachKeys: parseDetachKeys(o.detachKeys ?? DEFAULT_DETACH_KEYS), sigProxy: o.sigProxy !== 'false' });
      if (res.detached) return;
      setExit(res.code ?? s.list().find((x) => x.id === r.id)?.exitCode ?? 0);
    });
  const exec = new Command('exec')
    .description('run a command in a running container (its namespaces, root, user and capabilities)')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'a terminal for the command')
    .option('-d, --detach', 'run in the background; print its host pid')
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('--env-file <file>', 'read K=V lines from a file (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory (default: the container\'s)')
    .option('-u, --user <user[:group]>', 'run as this user of the container')
    .option('--privileged', 'every capability for this command')
    .option('-l, --latest', 'the container created last')
    .argument('[args...]', 'NAME CMD [ARGS...] (with -l: CMD [ARGS...])')
    .passThroughOptions()
    .action(async (args: string[], o: { interactive?: boolean; tty?: boolean; detach?: boolean; env: string[]; envFile: string[]; workdir?: string; user?: string; privileged?: boolean; latest?: boolean }) => {
      const s = await store(globals().config);
      const [r] = o.latest ? targets(s, [], o) : targets(s, args.slice(0, 1), {});
      const cmd = o.latest ? args : args.slice(1);
      if (!running(r) || !r.initPid) throw new ContainerError('can only create exec sessions on running containers: container state improper');
      const { execInContainer } = await import('../container/exec.js');
      setExit(await execInContainer(r, cmd, o));
    });
  const logs = new Command('logs')
    .description('print a container\'s output (its k8s-file log)')
    .option('-f, --follow', 'keep printing new output until the container exits')
    .option('-t, --timestamps', 'prefix each line with its time')
    .option('--tail <n>', 'only the last n lines (-1: all)', '-1')
    .option('--since <time>', 'only lines since a time (RFC 3339, or a duration such as 10m)')
    .option('--until <time>', 'only lines before a time (RFC 3339, or a duration such as 10m)')
    .option('-l, --latest', 'the container created last')
    .argument('[names...]')
    .action(async (names: string[], o: { follow?: boolean; timestamps?: boolean; tail: string; since?: string; until?: string; latest?: boolean }) => {
      const s = await store(globals().config);
      const { printLogs } = await import('../container/logs.js');
      for (const r of targets(s, names, o)) {
        await printLogs(s, r, { follow: !!o.follow, timestamps: !!o.timestamps, tail: Number(o.tail), since: o.since, until: o.until });
      }
    });
  const top = new Command('top')
    .description('the processes of a running container (pids and users as the container sees them)')
    .option('-l, --latest', 'the container created last')
    .argument('[args...]', 'NAME [DESCRIPTORS...] (user pid ppid pcpu etime tty time args comm group state vsz...)')
    .action(async (args: string[], o: { latest?: boolean }) => {
      const s = await store(globals().config);
      const [r] = o.latest ? targets(s, [], o) : targets(s, args.slice(0, 1), {});
      const descriptors = o.latest ? args : args.slice(1);
      if (!running(r) || !r.initPid) throw new ContainerError(`top can only be used on running containers: "${r.name}" is not running`);
      const list = checkDescriptors(descriptors);
      out(formatTop(containerProcesses(r.initPid), list, containerUserFiles(r.initPid)));
    });
  return [start, restart, attach, exec, logs, top];
}

function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function containerUserFiles(initPid: number): { passwd: string; group: string } {
  const root = `/proc/${initPid}/root`;
  return { passwd: readOr(path.join(root, 'etc/passwd')), group: readOr(path.join(root, 'etc/group')) };
}

/** Every process in the pid namespace of `initPid`, read from /proc. */
function containerProcesses(initPid: number): ProcInfo[] {
  const ino = (pid: number | string) => {
    try {
      return fs.statSync(`/proc/${pid}/ns/pid`).ino;
    } catch {
      return -1;
    }
  };
  const ns = ino(initPid);
  const uidMap = readOr(`/proc/${initPid}/uid_map`);
  const gidMap = readOr(`/proc/${initPid}/gid_map`);
  const hz = 100; // USER_HZ: 100 on every Linux architecture burrow runs on
  const uptime = Number(readOr('/proc/uptime', '0').split(' ')[0]);
  const raw: Array<{ host: number; hostPpid: number; nspid: number; info: Omit<ProcInfo, 'ppid'> }> = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || ino(e) !== ns) continue;
    const stat = readOr(`/proc/${e}/stat`);
    const status = readOr(`/proc/${e}/status`);
    if (!stat || !status) continue; // exited meanwhile
    const { comm, fields } = parseStat(stat);
    const st = parseStatus(status);
    const start = Number(fields[19]) / hz;
    raw.push({
      host: Number(e), hostPpid: Number(fields[1]), nspid: st.nspid[st.nspid.length - 1] ?? Number(e),
      info: {
        hostPid: Number(e), pid: st.nspid[st.nspid.length - 1] ?? Number(e), uid: mapBack(uidMap, st.uid), gid: mapBack(gidMap, st.gid), hostUser: st.uid,
        state: fields[0], tty: ttyName(Number(fields[4])), elapsed: Math.max(0, uptime - start), cpu: (Number(fields[11]) + Number(fields[12])) / hz,
        args: readOr(`/proc/${e}/cmdline`).split('\0').filter(Boolean).join(' '), comm, vszKiB: Math.round(Number(fields[20]) / 1024), pgid: Number(fields[2]), nice: Number(fields[16]),
      },
    });
  }
  const byHost = new Map(raw.map((p) => [p.host, p.nspid]));
  return raw.map((p) => ({ ...p.info, ppid: byHost.get(p.hostPpid) ?? 0 }));
}
