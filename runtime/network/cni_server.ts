/**
 * One burrow per user that runs the CNI operations of the user's networks inside the user's
 * network namespace, as its root: ADD and DEL for each container, and `network reload`.
 *
 * Starting a Node process inside the namespace for every ADD and every DEL cost about 270 ms and
 * 175 ms of start-up (measured with strace: execve to the first iptables call), which made a
 * container on a user network take 0.7 s against 0.2 s on usernet. The server is started on the
 * first call and leaves after a minute without one, or at once when the namespace's holder goes.
 *
 * Wire: one request per connection on a unix socket, a JSON line each way. A container's network
 * namespace is named by the caller as /proc/<caller>/fd/<fd>, an fd the caller holds open for the
 * call (the server runs as the user, so it may open it); DEL names none when the namespace is gone.
 *
 * Files, in the namespace's run dir (<state>/netns/run, which is /run inside): cni.sock, and
 * cni.lock, held shared by every caller for its call and exclusively by a caller that starts the
 * server, so a server leaving when idle (it takes the lock exclusively, without waiting) never
 * drops a request that a caller has sent or is about to send. <state>/netns/cni.json names the
 * server by pid and start time; cni.log takes its output.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { constants, dupFd, flock, flockSync, recvFdsNow, sendFds, unwatch, watchReadable } from '../../native/mod.js';
import { processLive, processStartTime } from '../../native/system.js';
import { helperPath } from '../../userns/unshare.js';
import { installRoot, type BurrowConfig } from '../config.js';
import type { Context } from '../context.js';
import { NetworkError } from './conflist.js';
import { reloadNetwork } from './reload.js';
import { netnsDirOf, spawnReady } from './user_netns.js';

/**
 * What a program run inside the user's network namespace sees where the system's state would be:
 * <netns dir>/lib over /var/lib (host-local keeps its addresses in /var/lib/cni/networks) and
 * <netns dir>/run over /run (xtables.lock, plugins' /run/cni), both the user's; the order matters,
 * since the state dir itself may lie under /run. Also writes the config the inside burrow reads:
 * the user's network files and plugin path, with root's defaults for nothing else.
 */
export function insideLayout(stateDir: string, config: Pick<BurrowConfig, 'cniConfigDir' | 'cniPath' | 'cniCacheDir' | 'firewallBackend' | 'pluginMode' | 'ipamDataDir'>): { binds: string[]; configFile: string } {
  const dir = netnsDirOf(stateDir);
  for (const d of ['lib', 'run']) fs.mkdirSync(path.join(dir, d), { recursive: true, mode: 0o700 });
  const toml = [
    '# written by burrow for the programs it runs inside the user\'s network namespace',
    '[network]',
    `cni_config_dir = ${JSON.stringify(config.cniConfigDir)}`,
    `cni_path = ${JSON.stringify(config.cniPath)}`,
    `cni_cache_dir = ${JSON.stringify(config.cniCacheDir)}`,
    ...(config.ipamDataDir ? [`ipam_data_dir = ${JSON.stringify(config.ipamDataDir)}`] : []),
    `firewall_backend = ${JSON.stringify(config.firewallBackend)}`,
    `plugin_mode = ${JSON.stringify(config.pluginMode)}`,
    '[engine]',
    'state_dir = "/run/burrow"',
    '',
  ].join('\n');
  // written atomically and only when it changes: concurrent containers read it at once
  const file = path.join(dir, 'run', 'burrow.toml');
  let current = '';
  try {
    current = fs.readFileSync(file, 'utf8');
  } catch {
    // not yet written
  }
  if (current !== toml) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, toml, { mode: 0o600 });
    fs.renameSync(tmp, file);
  }
  return { binds: [`${path.join(dir, 'lib')}:/var/lib`, `${path.join(dir, 'run')}:/run`], configFile: '/run/burrow.toml' };
}

export interface InsideRequest {
  op: 'add' | 'del' | 'reload' | 'dns';
  /** add, del: the network; reload: the networks (all of the user's when empty). */
  network?: string;
  networks?: string[];
  containerId?: string;
  ifname?: string;
  /** A path the server can open, or "" (DEL of a container whose namespace is gone). */
  netns?: string;
  args?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
}

/** `gone`: the server's namespace lost its holder; the caller starts a server for the new one. */
export type InsideReply = { ok: true; result?: unknown } | { ok: false; error: string; gone?: boolean };

/** A request line longer than this is refused (a container's capability args are a few kB). */
const MAX_LINE = 1 << 20;
/** How long a caller waits for an answer: ADD may wait for the xtables lock, never this long. */
const CALL_TIMEOUT_MS = 120_000;

const runDir = (stateDir: string) => path.join(netnsDirOf(stateDir), 'run');
const recordFile = (stateDir: string) => path.join(netnsDirOf(stateDir), 'cni.json');
/** The socket and lock as the caller (outside) and the server (inside, /run bound) see them. */
export const cniSocket = (stateDir: string) => path.join(runDir(stateDir), 'cni.sock');
const INSIDE_SOCKET = '/run/cni.sock';
const INSIDE_LOCK = '/run/cni.lock';

/** The running server's record, or null. */
export function findCniServer(stateDir: string): { pid: number; startTime: string } | null {
  try {
    const r = JSON.parse(fs.readFileSync(recordFile(stateDir), 'utf8')) as { pid: number; startTime: string };
    return Number.isInteger(r.pid) && r.pid > 0 && processLive(r.pid, r.startTime) ? r : null;
  } catch {
    return null;
  }
}

/** Stops the server (the namespace is being removed) and forgets its record. */
export async function stopCniServer(stateDir: string): Promise<void> {
  const s = findCniServer(stateDir);
  if (s) {
    try {
      process.kill(s.pid, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
    for (let i = 0; i < 100 && processLive(s.pid, s.startTime); i++) await new Promise((r) => setTimeout(r, 20));
    if (processLive(s.pid, s.startTime)) process.kill(s.pid, 'SIGKILL');
  }
  fs.rmSync(recordFile(stateDir), { force: true });
  fs.rmSync(cniSocket(stateDir), { force: true });
}

/**
 * One request and its answer over the socket; rejects with ENOENT/ECONNREFUSED when no server
 * listens. `fd`, when given, goes with the request (SCM_RIGHTS): a process in the namespace's
 * user namespace may not open the caller's /proc/PID/fd (no CAP_SYS_PTRACE over its parent).
 */
export function exchange(socket: string, req: InsideRequest, fd?: number): Promise<InsideReply> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socket);
    let buf = '';
    let connected = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new NetworkError('ETIMEDOUT', `the user's network namespace: no answer to ${req.op.toUpperCase()} within ${CALL_TIMEOUT_MS / 1000} s (see ${path.join(path.dirname(path.dirname(socket)), 'cni.log')})`));
    }, CALL_TIMEOUT_MS);
    sock.on('connect', () => {
      connected = true;
      const line = Buffer.from(`${JSON.stringify(req)}\n`);
      if (fd === undefined) return void sock.end(line);
      try {
        // one message on a fresh connection: the socket's buffer takes it whole
        const sent = sendFds((sock as unknown as { _handle: { fd: number } })._handle.fd, [fd], line);
        if (sent !== line.length) throw new Error(`short send (${sent} of ${line.length} bytes)`);
        sock.end();
      } catch (err) {
        sock.destroy(err as Error);
      }
    });
    sock.on('data', (d) => (buf += d.toString()));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(connected ? new NetworkError('EIO', `the user's network namespace: the CNI server failed during ${req.op.toUpperCase()}: ${err.message}`) : err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const line = buf.split('\n')[0];
      try {
        resolve(JSON.parse(line) as InsideReply);
      } catch {
        reject(new NetworkError('EIO', `the user's network namespace: the CNI server exited during ${req.op.toUpperCase()} without answering`));
      }
    });
  });
}

const noServer = (err: unknown) => ['ENOENT', 'ECONNREFUSED'].includes((err as NodeJS.ErrnoException).code ?? '');
/** An answer from a server whose namespace is gone counts as no server. */
async function ask(socket: string, req: InsideRequest, fd?: number): Promise<InsideReply> {
  const reply = await exchange(socket, req, fd);
  if (!reply.ok && reply.gone) throw Object.assign(new Error(reply.error), { code: 'ECONNREFUSED' });
  return reply;
}

/**
 * Starts the server inside the namespace of `holderPid` (the caller holds cni.lock exclusively)
 * and resolves once it listens.
 */
async function startServer(stateDir: string, config: BurrowConfig, holderPid: number): Promise<void> {
  await stopCniServer(stateDir); // one that stopped answering, or its socket file
  const { binds, configFile } = insideLayout(stateDir, config);
  const holderStart = processStartTime(holderPid);
  if (!holderStart) throw new NetworkError('ESRCH', 'the user\'s network namespace went away');
  const logFile = path.join(netnsDirOf(stateDir), 'cni.log');
  const cli = path.join(installRoot(), 'dist', 'burrow.cjs');
  const argv = ['-j', String(holderPid), ...binds.flatMap((b) => ['-B', b]), '--', process.execPath, '--', cli, '--config', configFile, 'internal', 'cni-server', '--holder', `${holderPid}:${holderStart}`, '--ready-fd', '3'];
  const started = await spawnReady(helperPath(), argv, logFile, 'the CNI server of the user\'s network namespace');
  fs.writeFileSync(recordFile(stateDir), `${JSON.stringify(started)}\n`, { mode: 0o600 });
}

/**
 * Runs `req` in the user's network namespace through its server, starting the server when none
 * listens. `netnsFile`, when given, is opened here and named to the server by fd.
 */
export async function callInside(stateDir: string, config: BurrowConfig, holderPid: () => Promise<number>, req: InsideRequest, netnsFile?: string): Promise<unknown> {
  insideLayout(stateDir, config); // the server reads the config it writes on each request
  let nsFd: number | undefined;
  if (netnsFile) {
    try {
      nsFd = fs.openSync(netnsFile, 'r');
    } catch (err) {
      if (req.op === 'add') throw err; // DEL goes on without it: the plugins tolerate a gone netns
    }
  }
  const full = { ...req, netns: '' }; // the server names the fd it receives
  const lockFile = path.join(runDir(stateDir), 'cni.lock');
  let lock = fs.openSync(lockFile, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    await flock(lock, constants().LOCK_SH);
    let reply: InsideReply;
    try {
      reply = await ask(cniSocket(stateDir), full, nsFd);
    } catch (err) {
      if (!noServer(err)) throw err;
      fs.closeSync(lock);
      lock = fs.openSync(lockFile, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
      await flock(lock, constants().LOCK_EX);
      try {
        reply = await ask(cniSocket(stateDir), full, nsFd); // another caller started it meanwhile
      } catch (again) {
        if (!noServer(again)) throw again;
        await startServer(stateDir, config, await holderPid());
        reply = await ask(cniSocket(stateDir), full, nsFd);
      }
    }
    if (!reply.ok) throw new NetworkError('EIO', reply.error);
    return reply.result;
  } finally {
    fs.closeSync(lock);
    if (nsFd !== undefined) fs.closeSync(nsFd);
  }
}

/** What the server does for one request, with a context read for it (the user may have changed a network). */
export async function handleInside(ctx: Context, req: InsideRequest): Promise<unknown> {
  if (req.op === 'reload') {
    const names = req.networks?.length ? req.networks : ctx.networks.list().networks.map((n) => n.name);
    const report: Array<{ network: string; attachments: number; errors: string[] }> = [];
    for (const network of names) report.push({ network, ...(await reloadNetwork(ctx, ctx.networks.get(network))) });
    return report;
  }
  if (req.op === 'dns') {
    // the DNS server of the user's networks, started again with every record (after a kill -9)
    const { dnsPaths, syncServer, withDnsLock } = await import('../../plugins/dnsname/control.js');
    const p = dnsPaths();
    return withDnsLock(p, () => syncServer(p, { forward: process.env.BURROW_DNS_FORWARD ? [process.env.BURROW_DNS_FORWARD] : [] }));
  }
  if (req.op !== 'add' && req.op !== 'del') throw new NetworkError('EINVAL', `unknown operation ${JSON.stringify(req.op)}`);
  if (!req.network || !req.containerId || !req.ifname) throw new NetworkError('EINVAL', `${req.op} needs network, containerId and ifname`);
  const list = ctx.networks.get(req.network);
  const rt = { containerId: req.containerId, netns: req.netns ?? '', ifname: req.ifname, args: req.args, capabilityArgs: req.capabilityArgs };
  if (req.op === 'add') return ctx.runtime.addNetworkList(list, rt);
  await ctx.runtime.delNetworkList(list, rt);
  return null;
}

export interface ServeOptions {
  /** Where to listen, and the callers' lock: inside the namespace, /run/cni.sock and /run/cni.lock. */
  socket?: string;
  lockFile?: string;
  holder: { pid: number; startTime: string };
  readyFd?: number;
  /** Leave after this long without a request (ms). */
  idleMs: number;
  handle(req: InsideRequest): Promise<unknown>;
}

/**
 * The server side, run inside the namespace (`burrow internal cni-server`): requests are handled
 * one at a time in arrival order, as separate plugin processes would take host-local's lock in
 * turn. Resolves when the server leaves.
 */
export async function serveInside(o: ServeOptions): Promise<void> {
  const socket = o.socket ?? INSIDE_SOCKET;
  fs.rmSync(socket, { force: true });
  const lock = fs.openSync(o.lockFile ?? INSIDE_LOCK, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  let queue = Promise.resolve();
  let open = 0;
  let last = Date.now();
  const answer = (fd: number, reply: InsideReply) => {
    try {
      fs.writeSync(fd, `${JSON.stringify(reply)}\n`); // small, on a fresh local socket: it fits
    } catch {
      // the caller went away
    }
    fs.closeSync(fd);
    open--;
    last = Date.now();
  };
  // The request is read with recvmsg (it may carry the container's netns fd), so the socket is
  // taken from Node at once, before it reads anything (pauseOnConnect), as the forwarder does.
  const server = net.createServer({ pauseOnConnect: true }, (sock) => {
    let fd: number;
    try {
      fd = dupFd((sock as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1);
    } catch {
      return void sock.destroy();
    }
    sock.destroy();
    open++;
    last = Date.now();
    let buf = Buffer.alloc(0);
    const fds: number[] = [];
    const take = () => {
      unwatch(fd);
      for (const f of fds.slice(1)) fs.closeSync(f); // one netns at most
      const nsFd = fds[0];
      const line = buf.toString('utf8', 0, buf.indexOf(10));
      queue = queue.then(async () => {
        let reply: InsideReply;
        try {
          const req = JSON.parse(line) as InsideRequest;
          if (!processLive(o.holder.pid, o.holder.startTime)) reply = { ok: false, error: 'the user\'s network namespace was replaced', gone: true };
          else reply = { ok: true, result: await o.handle({ ...req, netns: nsFd !== undefined ? `/proc/self/fd/${nsFd}` : '' }) };
        } catch (err) {
          reply = { ok: false, error: (err as Error).message };
        }
        if (nsFd !== undefined) fs.closeSync(nsFd);
        answer(fd, reply);
      });
    };
    watchReadable(fd, () => {
      let got;
      try {
        got = recvFdsNow(fd, 2, 65536);
      } catch (err) {
        // more fds than a request takes (the kernel truncated them): the request is refused
        unwatch(fd);
        for (const f of fds) fs.closeSync(f);
        return answer(fd, { ok: false, error: `unreadable request: ${(err as Error).message}` });
      }
      if (!got) return;
      fds.push(...got.fds);
      buf = Buffer.concat([buf, got.data]);
      if (buf.includes(10)) return take();
      if (!got.data.length || buf.length > MAX_LINE) {
        // closed before a whole request, or a line that never ends
        unwatch(fd);
        for (const f of fds) fs.closeSync(f);
        answer(fd, { ok: false, error: got.data.length ? 'request too long' : 'incomplete request' });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  if (o.readyFd !== undefined) {
    fs.writeSync(o.readyFd, 'OK\n');
    fs.closeSync(o.readyFd);
  }
  await new Promise<void>((resolve) => {
    const leave = () => {
      clearInterval(tick);
      process.off('SIGTERM', leave);
      fs.rmSync(socket, { force: true });
      server.close();
      fs.closeSync(lock); // callers waiting for it find no socket and start a new server
      resolve();
    };
    const tick = setInterval(() => {
      // the namespace went with its holder: nothing is left to serve
      if (!processLive(o.holder.pid, o.holder.startTime)) return leave();
      // idle, and no caller between its lock and its answer (it would hold the lock shared)
      if (open === 0 && Date.now() - last >= o.idleMs && flockSync(lock, constants().LOCK_EX | constants().LOCK_NB)) leave();
    }, Math.max(20, Math.min(1000, o.idleMs / 4)));
    process.on('SIGTERM', leave);
  });
}

export interface InsideRuntimeConf {
  containerId: string;
  /** The container's netns as a path this process can open, or "" when it is gone. */
  netns: string;
  ifname: string;
  args?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
}

/** CNI ADD and DEL of the user's networks, run by the namespace's server. */
export function insideCni(stateDir: string, config: BurrowConfig, holderPid: () => Promise<number>): { add(network: string, rt: InsideRuntimeConf): Promise<unknown>; del(network: string, rt: InsideRuntimeConf): Promise<void> } {
  const call = (op: 'add' | 'del', network: string, rt: InsideRuntimeConf) => callInside(stateDir, config, holderPid, { op, network, containerId: rt.containerId, ifname: rt.ifname, args: rt.args, capabilityArgs: rt.capabilityArgs }, rt.netns || undefined);
  return {
    add: (network, rt) => call('add', network, rt),
    del: async (network, rt) => void (await call('del', network, rt)),
  };
}
