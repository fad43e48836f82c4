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
import { processLive, processStartTime, spawnReady, toolPath } from '../../native/system.js';

export { spawnReady };
import { parseUsernsMode } from '../../userns/mapping.js';
import { runInNamespaces, startInNamespaces } from '../../userns/unshare.js';
import { installRoot } from '../config.js';
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

/** The namespace's state dir: records, logs, and what is bound over /var/lib and /run inside. */
export const netnsDirOf = (stateDir: string) => path.join(stateDir, 'netns');
const dirOf = netnsDirOf;
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
  return processLive(r.pid, r.startTime) ? r : null;
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
export async function ensureUserNetns(stateDir: string, o: { forwards?: () => string[] } = {}): Promise<{ holder: UserNetns; created: boolean }> {
  return locked(stateDir, async () => {
    const live = findUserNetns(stateDir);
    if (live) {
      // a stack killed on its own is started again: the namespace keeps its containers, and
      // their published ports (`forwards`: the stack's port specs) are forwarded again
      if (!live.stack || !processLive(live.stack.pid, live.stack.startTime)) {
        live.stack = await startStack(stateDir, live.pid);
        fs.writeFileSync(recordFile(stateDir), `${JSON.stringify(live)}\n`, { mode: 0o600 });
        await republish(stateDir, o.forwards?.() ?? []);
      }
      return { holder: live, created: false };
    }
    // a CNI server of a namespace whose holder died would keep serving that namespace
    await (await import('./cni_server.js')).stopCniServer(stateDir);
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

/** Adds `specs` to a new stack; one that cannot be bound again (taken meanwhile) is logged, not fatal. */
async function republish(stateDir: string, specs: string[]): Promise<void> {
  const { callApi } = await import('../../net/usernet/api.js');
  for (const spec of specs) {
    try {
      await callApi(stackSocket(stateDir), { execute: 'add_hostfwd', arguments: { spec } });
    } catch (err) {
      fs.appendFileSync(path.join(dirOf(stateDir), 'stack.log'), `${new Date().toISOString()} the published port ${spec} was not forwarded again: ${(err as Error).message}\n`);
    }
  }
}

/**
 * Starts the user's one usernet stack on a TAP in the namespace of `holderPid`, configured as
 * slirp4netns configures (10.0.2.100/24, gateway .2, DNS .3): `burrow usernet attach`, detached,
 * which runs until the holder goes. Resolves once the stack runs.
 */
async function startStack(stateDir: string, holderPid: number): Promise<{ pid: number; startTime: string }> {
  const cli = path.join(installRoot(), 'dist', 'burrow.cjs');
  return spawnReady(process.execPath, ['--', cli, 'usernet', 'attach', String(holderPid), '--configure', '--tap', 'tap0', '--api-socket', stackSocket(stateDir), '--ready-fd', '3'], path.join(dirOf(stateDir), 'stack.log'), 'the stack of the user\'s network namespace');
}


/**
 * Waits (up to `ms`) for `pid` with `startTime` to exit. A zombie has exited: its parent (often
 * an init that reaps late) is not waited for, which cost the last container's teardown 2 s.
 */
async function gone(pid: number, startTime: string, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    if (!processLive(pid, startTime)) return true;
  }
  return !processLive(pid, startTime);
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
    // the CNI server and the stack leave by themselves once the holder is gone; stop them at once
    await (await import('./cni_server.js')).stopCniServer(stateDir);
    if (h.stack && processLive(h.stack.pid, h.stack.startTime)) {
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
