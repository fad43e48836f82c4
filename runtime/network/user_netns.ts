/**
 * The user's network namespace, where a rootless user's networks live (podman's "rootless netns").
 *
 * One per user and state dir. It is held by the namespace helper in pause mode with -L: the helper
 * outlives whoever made it, so no burrow process (and no Node heap) stays to hold it. Its user
 * namespace maps the user as root and the user's subordinate range after it, as `--userns host`
 * does rootless, so the containers of the user's networks can be made inside it and the plugins
 * that run there hold every capability over their network namespaces.
 *
 * State, under the state dir ($XDG_RUNTIME_DIR/burrow): netns/holder.json names the holder by pid
 * and start time (a pid reused after a reboot or a kill -9 is told apart), netns/holder.log takes
 * the helper's stderr, netns/lock serialises making and removing it across processes. A record
 * whose holder is gone is stale: `ensureUserNetns` replaces it, `collectUserNetns` removes it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { constants, flock } from '../../native/mod.js';
import { processStartTime, toolPath } from '../../native/system.js';
import { parseUsernsMode } from '../../userns/mapping.js';
import { runInNamespaces, runInsideNetns, startInNamespaces } from '../../userns/unshare.js';
import { installRoot, type BurrowConfig } from '../config.js';
import { NetworkError } from './conflist.js';

export interface UserNetns {
  /** The helper's init: its /proc/PID/ns/{net,user} are the namespaces. */
  pid: number;
  startTime: string;
  created: string;
  /** The one usernet stack that connects the namespace to the host (outbound, DNS). */
  stack?: { pid: number; startTime: string };
}

/** The stack's API socket (published ports of the user's networks are its forwards). */
export const stackSocket = (stateDir: string) => path.join(stateDir, 'netns', 'stack.sock');

/** The stack's addressing inside the user's namespace: slirp4netns's, DNS forwarder at .3. */
export const USER_NETNS_DNS = '10.0.2.3';

const dirOf = (stateDir: string) => path.join(stateDir, 'netns');
const recordFile = (stateDir: string) => path.join(dirOf(stateDir), 'holder.json');

/** The holder's record if its process still runs, else null. */
export function findUserNetns(stateDir: string): UserNetns | null {
  let r: UserNetns;
  try {
    r = JSON.parse(fs.readFileSync(recordFile(stateDir), 'utf8')) as UserNetns;
  } catch {
    return null;
  }
  if (!Number.isInteger(r.pid) || r.pid <= 0 || typeof r.startTime !== 'string') return null;
  return processStartTime(r.pid) === r.startTime ? r : null;
}

export const netnsPathOf = (h: UserNetns) => `/proc/${h.pid}/ns/net`;
export const usernsPathOf = (h: UserNetns) => `/proc/${h.pid}/ns/user`;

async function locked<T>(stateDir: string, fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(dirOf(stateDir), { recursive: true, mode: 0o700 });
  const fd = fs.openSync(path.join(dirOf(stateDir), 'lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    await flock(fd, constants().LOCK_EX);
    return await fn();
  } finally {
    fs.closeSync(fd); // releases the lock
  }
}

/**
 * The user's network namespace, made on first use: the holder is started, loopback brought up
 * inside, and the record written; a stale record (kill -9, reboot) is replaced. Concurrent callers
 * get the same holder.
 */
export async function ensureUserNetns(stateDir: string): Promise<{ holder: UserNetns; created: boolean }> {
  return locked(stateDir, async () => {
    const live = findUserNetns(stateDir);
    if (live) {
      // a stack killed on its own is started again: the namespace keeps its containers
      if (!live.stack || processStartTime(live.stack.pid) !== live.stack.startTime) {
        live.stack = await startStack(stateDir, live.pid);
        fs.writeFileSync(recordFile(stateDir), `${JSON.stringify(live)}\n`, { mode: 0o600 });
      }
      return { holder: live, created: false };
    }
    const ip = toolPath('ip');
    if (!ip) throw new NetworkError('ENOENT', 'ip (iproute2) not found: install iproute2');
    const log = fs.openSync(path.join(dirOf(stateDir), 'holder.log'), 'a', 0o600);
    let started;
    try {
      started = await startInNamespaces([], { mode: parseUsernsMode('host'), namespaces: ['net'], pause: true, linger: true, stateDir, stdio: ['ignore', 'ignore', log] });
    } finally {
      fs.closeSync(log);
    }
    started.child.unref();
    for (const s of [started.child.stdio[3], started.child.stdio[4]]) (s as NodeJS.ReadableStream & { destroy(): void } | null)?.destroy();
    const stop = () => {
      try {
        process.kill(started.pid, 'SIGKILL');
      } catch {
        // gone
      }
    };
    const startTime = processStartTime(started.pid);
    if (!startTime) {
      stop();
      throw new NetworkError('EIO', `the user's network namespace did not start (see ${path.join(dirOf(stateDir), 'holder.log')})`);
    }
    const lo = await runInNamespaces(started.pid, [ip, 'link', 'set', 'lo', 'up']);
    if (lo.code !== 0) {
      stop();
      throw new NetworkError('EIO', `the user's network namespace: bringing up loopback failed: ${lo.stderr.trim() || `ip exited ${lo.code}`}`);
    }
    let stack;
    try {
      stack = await startStack(stateDir, started.pid);
    } catch (err) {
      stop();
      throw err;
    }
    const holder: UserNetns = { pid: started.pid, startTime, created: new Date().toISOString(), stack };
    fs.writeFileSync(recordFile(stateDir), `${JSON.stringify(holder)}\n`, { mode: 0o600 });
    return { holder, created: true };
  });
}

/**
 * Starts the user's one usernet stack on a TAP in the namespace of `holderPid`, configured as
 * slirp4netns configures (10.0.2.100/24, gateway .2, DNS .3): `burrow usernet attach`, detached,
 * which runs until the holder goes. Resolves once the stack runs.
 */
async function startStack(stateDir: string, holderPid: number): Promise<{ pid: number; startTime: string }> {
  const { spawn } = await import('node:child_process');
  const log = fs.openSync(path.join(dirOf(stateDir), 'stack.log'), 'a', 0o600);
  const cli = path.join(installRoot(), 'dist', 'burrow.cjs');
  const child = spawn(process.execPath, ['--', cli, 'usernet', 'attach', String(holderPid), '--configure', '--tap', 'tap0', '--api-socket', stackSocket(stateDir), '--ready-fd', '3'], { detached: true, stdio: ['ignore', log, log, 'pipe'] });
  fs.closeSync(log);
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 20_000);
    (child.stdio[3] as NodeJS.ReadableStream).once('data', () => {
      clearTimeout(timer);
      resolve(true);
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  const startTime = child.pid ? processStartTime(child.pid) : null;
  if (!ready || !startTime) {
    child.kill('SIGKILL');
    throw new NetworkError('EIO', `the stack of the user's network namespace did not start (see ${path.join(dirOf(stateDir), 'stack.log')})`);
  }
  child.unref();
  return { pid: child.pid!, startTime };
}

/** Waits (up to `ms`) for `pid` with `startTime` to exit. */
async function gone(pid: number, startTime: string, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    if (processStartTime(pid) !== startTime) return true;
  }
  return processStartTime(pid) !== startTime;
}

/**
 * Removes the user's network namespace unless `needed()` (asked under the lock) says a container
 * still uses it, and a stale record in any case. Resolves to what it did.
 */
export async function collectUserNetns(stateDir: string, needed: () => boolean): Promise<'none' | 'kept' | 'removed' | 'stale'> {
  if (!fs.existsSync(recordFile(stateDir))) return 'none';
  return locked(stateDir, async () => {
    const h = findUserNetns(stateDir);
    if (!h) {
      fs.rmSync(recordFile(stateDir), { force: true });
      return fs.existsSync(dirOf(stateDir)) ? 'stale' : 'none';
    }
    if (needed()) return 'kept';
    try {
      process.kill(h.pid, 'SIGTERM'); // the pause init exits 0 on TERM, and the helper with it
    } catch {
      // already gone
    }
    if (!(await gone(h.pid, h.startTime, 2000))) {
      try {
        process.kill(h.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      await gone(h.pid, h.startTime, 2000);
    }
    // the stack leaves by itself once the holder is gone; stop it at once
    if (h.stack && processStartTime(h.stack.pid) === h.stack.startTime) {
      try {
        process.kill(h.stack.pid, 'SIGTERM');
      } catch {
        // gone
      }
      await gone(h.stack.pid, h.stack.startTime, 2000);
    }
    fs.rmSync(recordFile(stateDir), { force: true });
    return 'removed';
  });
}

/**
 * What a program run inside the user's network namespace sees where the system's state would be:
 * <netns dir>/lib over /var/lib (host-local keeps its addresses in /var/lib/cni/networks) and
 * <netns dir>/run over /run (xtables.lock, plugins' /run/cni), both the user's; the order matters,
 * since the state dir itself may lie under /run. Also writes the config the inside burrow reads:
 * the user's network files and plugin path, with root's defaults for nothing else.
 */
export function insideLayout(stateDir: string, config: Pick<BurrowConfig, 'cniConfigDir' | 'cniPath' | 'cniCacheDir' | 'firewallBackend' | 'pluginMode' | 'ipamDataDir'>): { binds: string[]; configFile: string } {
  const dir = dirOf(stateDir);
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

/**
 * CNI ADD and DEL of the user's networks, run by burrow as root inside the user's network
 * namespace (`internal cni-inside`), the container's netns handed over as an fd. Its result, or
 * its error message, comes back on stdout and stderr.
 */
export function insideCni(stateDir: string, config: BurrowConfig, holderPid: () => Promise<number>): { add(network: string, rt: InsideRuntimeConf): Promise<unknown>; del(network: string, rt: InsideRuntimeConf): Promise<void> } {
  const cli = path.join(installRoot(), 'dist', 'burrow.cjs');
  const run = async (op: 'add' | 'del', network: string, rt: InsideRuntimeConf): Promise<string> => {
    const { binds, configFile } = insideLayout(stateDir, config);
    let fd: number | undefined;
    if (rt.netns) {
      try {
        fd = fs.openSync(rt.netns, 'r');
      } catch (err) {
        if (op === 'add') throw err; // DEL goes on without it: the plugins tolerate a gone netns
      }
    }
    try {
      const req = { op, network, containerId: rt.containerId, ifname: rt.ifname, netns: fd !== undefined ? '/proc/self/fd/3' : '', capabilityArgs: rt.capabilityArgs };
      const r = await runInsideNetns(await holderPid(), [process.execPath, '--', cli, '--config', configFile, 'internal', 'cni-inside', JSON.stringify(req)], { binds, fds: fd !== undefined ? [fd] : [] });
      if (r.code !== 0) throw new NetworkError('EIO', r.stderr.trim().replace(/^Error: /, '') || `CNI ${op.toUpperCase()} of network "${network}" inside the user's network namespace failed (exit ${r.code})`);
      return r.stdout;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  };
  return {
    add: async (network, rt) => JSON.parse(await run('add', network, rt)) as unknown,
    del: async (network, rt) => void (await run('del', network, rt)),
  };
}

export interface InsideRuntimeConf {
  containerId: string;
  /** The container's netns as a path this process can open, or "" when it is gone. */
  netns: string;
  ifname: string;
  capabilityArgs?: Record<string, unknown>;
}
