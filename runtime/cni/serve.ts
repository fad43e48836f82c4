/**
 * `burrow cni serve`: burrow's CNI plugins resident in one process, for the native launchers that
 * `burrow cni install` writes (native/burrow-cni.c).
 *
 * Theory of operation
 * -------------------
 * A runtime execs a plugin per call; Node's start alone costs more than a Go plugin's whole call.
 * The launcher connects to this service's unix socket and sends the call (net/cni/serve_wire.ts):
 * the plugin's name, its whole environment and stdin, and what the outcome depends on in the
 * calling process. The service runs skel's dispatch on the plugin, exactly as the cold executable
 * (plugins/run.ts) does with the same environment and stdin, and answers stdout, stderr and the exit
 * code, which the launcher prints as they are. The results are byte for byte the cold path's.
 *
 * It serves only a caller it would give the same outcome: the same build (the same code: a copy of
 * it in an install dir, runtime/cni/copy.ts, or the install root itself),
 * network namespace (the plugins work in the caller's: firewall rules, the host veth), euid and
 * umask. Any other gets "not served" and runs the cold path; so does every caller when the
 * service is not running. Locking stays as in separate processes: every lock is a flock(2) on a
 * file the call opens itself (the firewall's on the netns inode, host-local's on its data dir),
 * and flocks on separate opens exclude each other within one process too. Each blocked flock
 * holds a libuv thread, so at most UV_THREADPOOL_SIZE - 1 calls run at once (the rest wait their
 * turn): a lock's holder always finds a thread for its own file work.
 *
 * One line per call goes to stderr (the journal under systemd). SIGTERM and SIGINT stop accepting,
 * let the calls in flight finish, then exit. With --idle the service leaves after that long
 * without a call; under socket activation (LISTEN_FDS) systemd starts it again on the next one.
 *
 * A service whose code is replaced under it (a new `burrow cni install` moved DIR/.burrow/current,
 * or its checkout was rebuilt and installed again) would decline every call of the new launchers
 * until restarted. So when it declines a launcher for its build, it looks at the build its root
 * holds now (rate-limited: it hashes the files); if that is the launcher's build, it replaces
 * itself: once no connection is open and no call in flight (or 5 s later), the CLI execve()s the
 * same command line, which now loads the new code, with the listening socket passed on
 * (BURROW_CNI_LISTEN_FD) and never closed (libuv would unlink its path), so callers that come
 * meanwhile wait in its backlog for the new code. The pid stays, so systemd's unit and a
 * supervisor's record stay valid; no call is lost or refused.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import '../../plugins/all.js';
import { ownPlugin } from '../../plugins/registry.js';
import { BURROW_VERSION } from '../../plugins/run.js';
import { dispatch } from '../../net/cni/skel.js';
import { answers } from '../../native/system.js';
import { buildId } from './copy.js';
import { LISTEN_FD_ENV, LISTEN_OWN_ENV } from './constants.js';
import { emitResponse, parseRequest, requestLength, ServeStatus, type ServeRequest } from '../../net/cni/serve_wire.js';

export interface ServeOptions {
  /** The socket to listen on; ignored when systemd hands one over (LISTEN_FDS). */
  socket: string;
  /** The install root whose launchers this serves. */
  root: string;
  /**
   * Where the command line found the root, when that is another path (DIR/.burrow/current, a
   * symlink the next install moves): watched for a new build too (see the theory of operation).
   */
  commandRoot?: string;
  /** Leave after this long without a call (0: never). */
  idleMs?: number;
  /** Drop a connection whose request is not whole after this long (default 30 s). */
  requestTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface CniService {
  /** Where it listens. */
  where: string;
  /** Calls answered (served or declined) so far. */
  calls(): { served: number; declined: number; dropped: number };
  /** Stops accepting, waits for the calls in flight, removes the socket it made. */
  close(): Promise<void>;
  /** Resolves once the service has closed (by close(), a signal or --idle). */
  closed: Promise<void>;
  /**
   * Once closed because its root now holds the build of the launchers it declined: the listening
   * socket (still open: the caller must exec the replacement at once), and whether the socket's
   * path is the service's own (removed when the replacement closes for good). Otherwise null.
   */
  replacement(): Replacement | null;
}

/**
 * The socket a replaced service handed over, taken out of the environment (so nothing this
 * service starts inherits it), or null.
 */
function inheritedSocket(): { fd: number; own: boolean } | null {
  const raw = process.env[LISTEN_FD_ENV];
  const own = process.env[LISTEN_OWN_ENV] === '1';
  delete process.env[LISTEN_FD_ENV];
  delete process.env[LISTEN_OWN_ENV];
  if (raw === undefined) return null;
  const fd = Number(raw);
  if (!Number.isInteger(fd) || fd < 3) throw new Error(`${LISTEN_FD_ENV}="${raw}" is not a socket's fd`);
  return { fd, own };
}

/** A replaced service's hand-over: its listening socket, and the root that holds the new build. */
export interface Replacement {
  fd: number;
  ownSocket: boolean;
  build: string;
  root: string;
}

/** What makes a call's outcome depend on the calling process, for this process. */
function selfIdentity(root: string) {
  const mask = process.umask(0o022);
  process.umask(mask);
  return { root, build: buildId(root), netnsInode: fs.statSync('/proc/self/ns/net', { bigint: true }).ino, euid: process.geteuid?.() ?? 0, umask: mask };
}

/** Why this service must not serve `req` (the cold path would differ), or null. */
export function declineReason(req: ServeRequest, self: ReturnType<typeof selfIdentity>): string | null {
  // a launcher names its build (a copy's or the checkout's: runtime/cni/copy.ts), or its install root
  if (req.root !== self.build && req.root !== self.root) return `the launcher runs ${req.root}, this service ${self.build} (from ${self.root})`;
  if (req.netnsInode !== self.netnsInode) return 'the caller is in another network namespace';
  if (req.euid !== self.euid) return `the caller's euid is ${req.euid}, this service's ${self.euid}`;
  if (req.umask !== self.umask) return `the caller's umask is ${req.umask.toString(8)}, this service's ${self.umask.toString(8)}`;
  if (!ownPlugin(req.name)) return `no plugin "${req.name}" here`;
  return null;
}

/** Starts the service; resolves once it listens. */
export async function serveCni(o: ServeOptions): Promise<CniService> {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const self = selfIdentity(o.root);
  const slots = Math.max(1, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 1);
  const waiting: (() => void)[] = [];
  let active = 0;
  const counts = { served: 0, declined: 0, dropped: 0 };
  let idleTimer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => (closedResolve = r));
  const inFlight = new Set<Promise<void>>();
  let replacement: Replacement | null = null;
  let replacing: { build: string; root: string; until: number } | null = null;
  const conns = new Set<net.Socket>();
  const roots = [...new Set([o.root, ...(o.commandRoot ? [o.commandRoot] : [])])];
  let lastBuildCheck = -Infinity;

  // A launcher of another build was declined: if this service's root holds that build now, this
  // code is stale and the service replaces itself (see the theory of operation).
  const checkReplaced = (build: string) => {
    if (closing || replacing || Date.now() - lastBuildCheck < 1000) return;
    lastBuildCheck = Date.now();
    const root = roots.find((r) => {
      try {
        return buildId(r) === build;
      } catch {
        return false; // not a root, or an install in progress: a later call looks again
      }
    });
    if (!root) return;
    replacing = { build, root, until: Date.now() + 5000 };
    clearTimeout(idleTimer);
    log(`${root} holds build ${build} now, this service runs ${self.build}: it hands its socket to the new code once ${conns.size} connection(s) are done`);
    setTimeout(handOver, 5000).unref();
    handOver();
  };
  // the replacement's moment: nothing open (or the time is up: an open caller falls back cold)
  const handOver = () => {
    if (!replacing || replacement || closing) return;
    if (conns.size && Date.now() < replacing.until) return;
    const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return void close('the listening socket has no fd to hand over');
    replacement = { fd, ownSocket, build: replacing.build, root: replacing.root };
    closedResolve();
  };

  const armIdle = () => {
    if (!o.idleMs || inFlight.size || replacing) return; // a call holding a slot is in flight too
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => void close(`idle for ${o.idleMs! / 1000} s`), o.idleMs);
    idleTimer.unref();
  };

  const slot = async () => {
    if (active >= slots) await new Promise<void>((r) => waiting.push(r));
    active++;
  };
  const release = () => {
    active--;
    waiting.shift()?.();
  };

  async function answer(sock: net.Socket, req: ServeRequest): Promise<void> {
    const why = declineReason(req, self);
    if (why) {
      counts.declined++;
      log(`${req.env.CNI_COMMAND ?? '-'} ${req.name}: not served (${why}): the launcher runs it cold`);
      sock.end(emitResponse({ status: ServeStatus.NotServed, exitCode: 0, stdout: Buffer.from(why), stderr: Buffer.alloc(0) }));
      if (req.root !== self.build && req.root !== self.root) checkReplaced(req.root);
      return;
    }
    await slot();
    const t0 = process.hrtime.bigint();
    try {
      const out = await dispatch(ownPlugin(req.name)!, req.env, req.stdin, `CNI ${req.name} plugin (burrow ${BURROW_VERSION})`);
      counts.served++;
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      // logged before the answer goes: whoever sees the answer finds the line
      log(`${req.env.CNI_COMMAND} ${req.name} ${req.env.CNI_CONTAINERID ?? '-'} ${req.env.CNI_IFNAME ?? '-'}: exit ${out.exitCode} in ${ms.toFixed(1)} ms`);
      sock.end(emitResponse({ status: ServeStatus.Served, exitCode: out.exitCode, stdout: Buffer.from(out.stdout), stderr: Buffer.from(out.stderr) }));
    } finally {
      release();
    }
  }

  function onConnection(sock: net.Socket): void {
    if (closing) {
      sock.destroy();
      return;
    }
    clearTimeout(idleTimer);
    conns.add(sock);
    sock.once('close', () => {
      conns.delete(sock);
      handOver();
    });
    const chunks: Buffer[] = [];
    let got = 0;
    let need: number | null = null;
    const drop = (why: string) => {
      counts.dropped++;
      log(`dropped a connection: ${why}`);
      sock.destroy();
    };
    sock.on('error', () => sock.destroy());
    // a launcher sends its whole request at once: one that stalls before it is whole is dropped
    sock.setTimeout(o.requestTimeoutMs ?? 30_000, () => {
      if (need === null || got < need) drop(`no whole request within ${(o.requestTimeoutMs ?? 30_000) / 1000} s`);
    });
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (need === null) {
        const n = requestLength(chunks.length === 1 ? d : Buffer.concat(chunks));
        if (typeof n === 'string') return drop(`bad request (${n})`);
        need = n;
      }
      if (need === null || got < need) return;
      sock.removeAllListeners('data');
      sock.setTimeout(0);
      sock.pause();
      const req = parseRequest(Buffer.concat(chunks));
      if (typeof req === 'string') return drop(`bad request (${req})`);
      const p = answer(sock, req).catch((err) => drop(`the call failed outside the plugin: ${(err as Error).stack ?? err}`));
      inFlight.add(p);
      void p.finally(() => {
        inFlight.delete(p);
        armIdle();
      });
    });
    sock.on('end', () => {
      if (need === null || got < need) sock.destroy(); // the launcher went away before its request was whole
    });
  }

  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  let ownSocket = false;
  let where: string;
  const listenFds = Number(process.env.LISTEN_FDS ?? 0);
  const inherited = inheritedSocket();
  if (inherited) {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ fd: inherited.fd }, resolve));
    ownSocket = inherited.own;
    where = `${inherited.own ? o.socket : 'the socket systemd handed over'} (taken over from the service this one replaces)`;
  } else if (listenFds >= 1 && Number(process.env.LISTEN_PID) === process.pid) {
    if (listenFds !== 1) throw new Error(`expected 1 socket from systemd, got ${listenFds}`);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ fd: 3 }, resolve));
    where = 'the socket systemd handed over (fd 3)';
  } else {
    fs.mkdirSync(path.dirname(o.socket), { recursive: true, mode: 0o700 });
    if (fs.existsSync(o.socket)) {
      if (await answers(o.socket)) throw new Error(`another CNI service is listening on ${o.socket}`);
      fs.rmSync(o.socket, { force: true }); // left by a service that was killed
    }
    const mask = process.umask(0o177); // the socket is root's alone, from the start
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(o.socket, resolve));
    } finally {
      process.umask(mask);
    }
    ownSocket = true;
    where = o.socket;
  }

  async function close(why: string): Promise<void> {
    closing ??= (async () => {
      log(`closing (${why}): ${inFlight.size} call(s) in flight`);
      clearTimeout(idleTimer);
      await new Promise<void>((r) => server.close(() => r()));
      await Promise.allSettled([...inFlight]);
      if (ownSocket) fs.rmSync(o.socket, { force: true });
      closedResolve();
    })();
    return closing;
  }
  armIdle();
  log(`burrow ${BURROW_VERSION} serves CNI calls on ${where} (plugins from ${o.root}, ${slots} at once)`);
  return { where, calls: () => ({ ...counts }), close: () => close('asked'), closed, replacement: () => replacement };
}
