/**
 * The one typed entry to burrow's native addon (native/addon.cc).
 *
 * Each function names the system calls it makes and the capability it needs.
 * Every failure throws a {@link SyscallError} carrying `syscall`, `errno`,
 * `code` and the object (`path`, `netns`, `ifname`). Every returned fd is
 * O_CLOEXEC and owned by the caller, who must close it (fs.closeSync).
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { SyscallError } from './errors.js';

interface Addon {
  runProgram(file: string, args: string[], input: Buffer): Promise<{ code: number; stdout: Buffer; stderr: Buffer }>;
  netlinkRequest(fd: number, request: Buffer): Buffer;
  socketInNetns(netns: string, domain: number, type: number, protocol: number): number;
  listenInNetns(netns: string, family: 4 | 6, proto: 'tcp' | 'udp', address: string, port: number, backlog: number): number;
  openInNetns(netns: string, file: string, flags: number): number;
  netnsCreate(dir: string, name: string): string;
  netnsRemove(path: string): boolean;
  tapOpen(netns: string, name: string, vnetHdr: boolean, offloads: number): { fd: number; name: string };
  packetSocket(netns: string, ifname: string, udpPort: number): { fd: number; ifindex: number; mac: Buffer };
  packetSend(fd: number, ifindex: number, packet: Buffer): number;
  flockSync(fd: number, op: number): boolean;
  digest(algo: 'sha512' | 'sha256' | 'sha1', data: Buffer): Buffer;
  randomFill(buf: Buffer): Buffer;
  flock(fd: number, op: number): Promise<void>;
  sendFds(sock: number, fds: number[], data: Buffer): number;
  recvFds(sock: number, maxFds: number, maxBytes: number, dontWait?: boolean): { data: Buffer; fds: number[] } | null;
  socketPair(type: number): [number, number];
  watchReadable(fd: number, cb: (status: number) => void): void;
  unwatch(fd: number): boolean;
  readFrames(fd: number, buf: Buffer, lens: Uint32Array, frameMax: number): number;
  setWinsize(fd: number, rows: number, cols: number): void;
  writeFrame(fd: number, parts: Buffer[]): number;
  spliceRelay(a: number, b: number, done: (aToB: number, bToA: number, err: string | null) => void): void;
  dupFd(fd: number): number;
  execve(file: string, argv: string[], env: string[], keep: number[]): never;
  seccompSandbox(): string[];
  pingSocket(family: 4 | 6): number;
  sendTo(fd: number, buf: Buffer, address: string): number;
  recvFrom(fd: number, buf: Buffer): { length: number; address: string } | null;
  dnsResponder(address: string, port: number, ratePerS: number, burst: number, sharePerS: number, onMiss: (query: Buffer, address: string, port: number) => void, onClose: () => void): DnsResponder;
  dnsResponderReply(h: DnsResponder, reply: Buffer, address: string, port: number, query: Buffer | null, kind: number): boolean;
  dnsResponderClear(h: DnsResponder): void;
  dnsResponderStats(h: DnsResponder): DnsResponderStats;
  dnsResponderStop(h: DnsResponder): void;
  constants: Record<string, number>;
}

/** A UDP socket served by the addon's thread (native/dns_responder.cc); opaque to JS. */
export type DnsResponder = { readonly __dnsResponder: unique symbol };

export interface DnsResponderStats {
  /** cache hits by kind: local answers and NXDOMAIN */
  answered: number;
  nxdomain: number;
  /** over the client's hard rate; over its fair share while saturated; JS behind (its queue full); longer than any query */
  limited: number;
  shed: number;
  queueFull: number;
  oversized: number;
  /** answers in the cache now */
  cached: number;
}

let loaded: Addon | undefined;

/**
 * build/Release/burrow_native.node of the install root: the first ancestor of this file that has
 * it (native/mod.ts in source, dist/*.cjs and dist/plugins/*.cjs when bundled).
 */
function addonPath(): string {
  const rel = path.join('build', 'Release', 'burrow_native.node');
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    dir = path.dirname(dir);
    if (fs.existsSync(path.join(dir, rel))) return path.join(dir, rel);
  }
  return path.join(path.dirname(path.dirname(fileURLToPath(import.meta.url))), rel);
}

/** A native executable built beside the addon (build/Release/NAME), or null when it is not built. */
export function nativeExecutable(name: string): string | null {
  const file = path.join(path.dirname(process.env.BURROW_NATIVE_ADDON ?? addonPath()), name);
  return fs.existsSync(file) ? file : null;
}

/** Loads the addon on first use, so pure modules never need the native build. */
function addon(): Addon {
  if (loaded) return loaded;
  const file = process.env.BURROW_NATIVE_ADDON ?? addonPath();
  try {
    loaded = createRequire(import.meta.url)(file) as Addon;
  } catch (err) {
    throw new SyscallError(
      { syscall: 'dlopen', errno: 2, code: 'ENOADDON', path: file, message: `cannot load burrow's native addon "${file}": run "npm ci" (it builds native/ with node-gyp)` },
      { cause: err },
    );
  }
  return loaded;
}

/** Whether the addon loads here (callers with a pure-JS fallback ask before choosing). */
export function addonAvailable(): boolean {
  try {
    addon();
    return true;
  } catch {
    return false;
  }
}

/** Rewraps the addon's plain Error into a SyscallError, keeping its fields. */
function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw asSyscallError(err);
  }
}

function asSyscallError(err: unknown): unknown {
  const e = err as { syscall?: string; errno?: number; code?: string; message?: string; path?: string; netns?: string; ifname?: string };
  if (err instanceof SyscallError || typeof e?.syscall !== 'string') return err;
  return new SyscallError({ syscall: e.syscall, errno: e.errno ?? 0, code: e.code ?? 'EUNKNOWN', message: e.message ?? '', path: e.path, netns: e.netns, ifname: e.ifname });
}

/** Kernel constants as the addon was compiled against them. */
export function constants(): Readonly<Record<string, number>> {
  return addon().constants;
}

/**
 * Creates a socket inside the network namespace at `netns` (a path such as
 * /run/netns/x or /proc/PID/ns/net; "" means the caller's own). A helper
 * thread does setns(CLONE_NEWNET)+socket(2); needs CAP_SYS_ADMIN over netns.
 */
export function socketInNetns(netns: string, domain: number, type: number, protocol: number): number {
  return call(() => addon().socketInNetns(netns, domain, type, protocol));
}

/**
 * One netlink request on the AF_NETLINK socket `fd` (sendto the kernel, then recv): returns the
 * replies with the request's sequence number, through the NLMSG_DONE of a dump or the NLMSG_ERROR
 * (ack or errno) of any other request, whose flags must include NLM_F_ACK. Synchronous: rtnetlink
 * answers within the send. The returned Buffer is the caller's.
 */
export function netlinkRequest(fd: number, request: Buffer): Buffer {
  return call(() => addon().netlinkRequest(fd, request));
}

/**
 * Creates a bound (and, for TCP, listening) non-blocking socket inside
 * `netns`: socket, setsockopt(SO_REUSEADDR, IPV6_V6ONLY), bind, listen.
 * Wrap it with `net.createServer().listen({ fd })` or `dgram` afterwards.
 */
export function listenInNetns(netns: string, family: 4 | 6, proto: 'tcp' | 'udp', address: string, port: number, backlog = 511): number {
  return call(() => addon().listenInNetns(netns, family, proto, address, port, backlog));
}

/**
 * Opens `file` from a thread inside `netns`. /proc/sys/net resolves to the
 * opener's namespace, so this is how per-netns sysctls are read and written.
 */
export function openInNetns(netns: string, file: string, flags: number): number {
  return call(() => addon().openInNetns(netns, file, flags));
}

/**
 * Creates a persistent named network namespace at dir/name, as `ip netns add`
 * does: mkdir + make-shared on dir, unshare(CLONE_NEWNET) on a helper thread,
 * bind mount of its ns file. Needs CAP_SYS_ADMIN. Returns the path.
 */
export function netnsCreate(name: string, dir = '/run/netns'): string {
  return call(() => addon().netnsCreate(dir, name));
}

/** Unmounts (MNT_DETACH) and unlinks a named netns. False when it was already gone. */
export function netnsRemove(nsPath: string): boolean {
  return call(() => addon().netnsRemove(nsPath));
}

/** Offload flags for {@link tapOpen}: checksum offload plus TSO for both families. */
export function defaultTapOffloads(): number {
  const c = constants();
  return c.TUN_F_CSUM | c.TUN_F_TSO4 | c.TUN_F_TSO6;
}

/**
 * Opens (creating if needed) TAP device `name` inside `netns` with
 * IFF_TAP|IFF_NO_PI, and with `vnetHdr` IFF_VNET_HDR, TUNSETVNETHDRSZ(12)
 * and TUNSETOFFLOAD(offloads). The fd is non-blocking. Needs CAP_NET_ADMIN
 * in the namespace's owning user namespace and access to /dev/net/tun.
 */
export function tapOpen(netns: string, name: string, opts: { vnetHdr?: boolean; offloads?: number } = {}): { fd: number; name: string } {
  const vnet = opts.vnetHdr ?? true;
  return call(() => addon().tapOpen(netns, name, vnet, vnet ? (opts.offloads ?? defaultTapOffloads()) : 0));
}

/**
 * An AF_PACKET datagram socket on `ifname` in `netns` that takes IPv4 packets for UDP port
 * `udpPort` (filtered in the kernel), non-blocking: what a DHCP client needs before its interface
 * has an address. Read it with {@link readFrames}; packets start at the IP header.
 */
export function packetSocket(netns: string, ifname: string, udpPort: number): { fd: number; ifindex: number; mac: Buffer } {
  return call(() => addon().packetSocket(netns, ifname, udpPort));
}

/** Sends an IPv4 packet to the link's broadcast address on a {@link packetSocket}; -1 when it would block. */
export function packetSend(fd: number, ifindex: number, packet: Buffer): number {
  return call(() => addon().packetSend(fd, ifindex, packet));
}

/**
 * The hex digest of `text` (UTF-8): through the addon (Node's own OpenSSL) when it is built, else
 * node:crypto, with the same result. The addon's spares a cold plugin the load of node:crypto.
 */
export function digestHex(algo: 'sha512' | 'sha256' | 'sha1', text: string): string {
  const data = Buffer.from(text);
  if (addonAvailable()) return addon().digest(algo, data).toString('hex');
  return crypto.createHash(algo).update(data).digest('hex');
}

/** `n` random bytes from the kernel (getrandom(2) through the addon, else node:crypto). */
export function randomBytes(n: number): Buffer {
  if (addonAvailable()) return addon().randomFill(Buffer.alloc(n));
  return crypto.randomBytes(n);
}

/** flock(2) without blocking the loop for LOCK_NB; false when LOCK_NB found the lock held. */
export function flockSync(fd: number, op: number): boolean {
  return call(() => addon().flockSync(fd, op));
}

/** Blocking flock(2) on libuv's threadpool. Compatible with Go's flock-based locks (go-filemutex). */
export async function flock(fd: number, op: number): Promise<void> {
  try {
    await addon().flock(fd, op);
  } catch (err) {
    throw asSyscallError(err);
  }
}

/**
 * Runs program `file` (an absolute path) with `args`, `input` on its stdin and this process's
 * environment, on libuv's pool (posix_spawn, poll, waitpid): resolves with its exit code (128 +
 * the signal when one ended it) and its whole stdout and stderr; rejects only when it cannot be
 * started. Unlike child_process, it loads no JS module (node:child_process and node:net cost
 * about 16 ms of a cold start). One pool thread is held while the program runs.
 */
export async function runProgram(file: string, args: string[], input: Buffer): Promise<{ code: number; stdout: Buffer; stderr: Buffer }> {
  try {
    return await addon().runProgram(file, args, input);
  } catch (err) {
    throw asSyscallError(err);
  }
}

/** sendmsg(2) with SCM_RIGHTS: passes `fds` (and at least one byte of `data`) over unix socket `sock`. */
export function sendFds(sock: number, fds: number[], data: Buffer = Buffer.alloc(1)): number {
  return call(() => addon().sendFds(sock, fds, data));
}

/** recvmsg(2) with SCM_RIGHTS (blocking). Received fds are O_CLOEXEC and owned by the caller. */
export function recvFds(sock: number, maxFds = 8, maxBytes = 4096): { data: Buffer; fds: number[] } {
  return call(() => addon().recvFds(sock, maxFds, maxBytes)!);
}

/** recvmsg(2) with SCM_RIGHTS and MSG_DONTWAIT: null when nothing is waiting (for event-loop readers). */
export function recvFdsNow(sock: number, maxFds = 8, maxBytes = 4096): { data: Buffer; fds: number[] } | null {
  return call(() => addon().recvFds(sock, maxFds, maxBytes, true));
}

/**
 * Calls `cb` on the event loop while `fd` is readable (level-triggered; `cb` must drain it or it
 * is called again on the next loop turn). {@link unwatch} stops it. The TAP hot path.
 */
export function watchReadable(fd: number, cb: (status: number) => void): void {
  call(() => addon().watchReadable(fd, cb));
}

export function unwatch(fd: number): boolean {
  return call(() => addon().unwatch(fd));
}

/**
 * Reads frames from a non-blocking fd back to back into `buf` (frame i follows frame i-1) and
 * stores their lengths in `lens`; stops at EAGAIN, a full `lens`, or less than `frameMax` room.
 */
export function readFrames(fd: number, buf: Buffer, lens: Uint32Array, frameMax: number): number {
  return addon().readFrames(fd, buf, lens, frameMax);
}

/** writev(2) of one frame's parts (at most 16); -1 when the fd would block (frame dropped). */
export function writeFrame(fd: number, parts: Buffer[]): number {
  return addon().writeFrame(fd, parts);
}

/**
 * Relays two connected stream sockets both ways with splice(2) on a thread of its own (payload
 * never enters user space). Takes ownership of both fds; `done` runs once both are closed, with
 * the bytes moved each way and the errno name that ended it (null for two orderly EOFs).
 */
export function spliceRelay(a: number, b: number, done: (aToB: number, bToA: number, err: string | null) => void): void {
  call(() => addon().spliceRelay(a, b, done));
}

/** fcntl(F_DUPFD_CLOEXEC): a second fd for the same open file (the caller owns it). */
export function dupFd(fd: number): number {
  return call(() => addon().dupFd(fd));
}

/**
 * execve(2) of the whole process (every thread) with `keep` fds left open across it (FD_CLOEXEC
 * cleared); `env` as NAME=VALUE pairs. Never returns: throws on failure.
 */
export function execve(file: string, argv: string[], env: NodeJS.ProcessEnv, keep: number[]): never {
  const pairs = Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined).map(([k, v]) => `${k}=${v}`);
  return call(() => addon().execve(file, argv, pairs, keep));
}

/**
 * Installs slirp4netns's --enable-seccomp filter on every thread (no_new_privs, then seccomp with
 * TSYNC): execve, execveat, ptrace, mount, setns, unshare and the like kill the process from now
 * on. Returns the names of the blocked syscalls. Irreversible.
 */
export function seccompSandbox(): string[] {
  return call(() => addon().seccompSandbox());
}

/** ioctl(TIOCSWINSZ): sets a terminal's size (on a pty master: what the other side sees, with SIGWINCH). */
export function setWinsize(fd: number, rows: number, cols: number): void {
  call(() => addon().setWinsize(fd, rows, cols));
}

/**
 * An unprivileged ICMP echo socket (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6), non-blocking. Needs the
 * caller's gid inside net.ipv4.ping_group_range of its netns; throws EACCES otherwise.
 */
export function pingSocket(family: 4 | 6): number {
  return call(() => addon().pingSocket(family));
}

/** sendto(2) on a datagram socket; -1 when it would block. */
export function sendTo(fd: number, buf: Buffer, address: string): number {
  return call(() => addon().sendTo(fd, buf, address));
}

/** recvfrom(2) into `buf`; null when nothing is waiting. */
export function recvFrom(fd: number, buf: Buffer): { length: number; address: string } | null {
  return call(() => addon().recvFrom(fd, buf));
}

/**
 * The DNS server's UDP fast path on `address`:`port` (socket, bind: port 53 needs
 * CAP_NET_BIND_SERVICE). A thread charges every query to its source's token buckets (the hard
 * `ratePerS`/`burst`, and `sharePerS`, enforced only while the socket is saturated), answers
 * repeated questions from the cache that {@link dnsResponderReply} fills, and calls `onMiss` for
 * the rest; `onClose` comes once after {@link dnsResponderStop}. Throws bind's errors
 * (EADDRNOTAVAIL, EADDRINUSE) at once.
 */
export function dnsResponder(address: string, port: number, ratePerS: number, burst: number, sharePerS: number, onMiss: (query: Buffer, address: string, port: number) => void, onClose: () => void): DnsResponder {
  return call(() => addon().dnsResponder(address, port, ratePerS, burst, sharePerS, onMiss, onClose));
}

/** Sends `reply` to `address`:`port`; with `kind` >= 0 (0 answer, 1 NXDOMAIN) also caches it for `query` from that address. False when dropped (a full buffer, or stopped). */
export function dnsResponderReply(h: DnsResponder, reply: Buffer, address: string, port: number, query: Buffer | null, kind: number): boolean {
  return addon().dnsResponderReply(h, reply, address, port, query, kind);
}

/** Forgets every cached answer (the records changed). */
export function dnsResponderClear(h: DnsResponder): void {
  addon().dnsResponderClear(h);
}

export function dnsResponderStats(h: DnsResponder): DnsResponderStats {
  return addon().dnsResponderStats(h);
}

export function dnsResponderStop(h: DnsResponder): void {
  addon().dnsResponderStop(h);
}

/** socketpair(AF_UNIX, type). Default SOCK_STREAM. */
export function socketPair(type?: number): [number, number] {
  return call(() => addon().socketPair(type ?? constants().SOCK_STREAM));
}

/**
 * Runs `fn` holding an exclusive flock(2) on the caller's network namespace itself
 * (/proc/thread-self/ns/net): every process in that namespace contends for the same nsfs inode,
 * so read-modify-write sequences on per-namespace state (firewall chains, the macvlan host shim)
 * serialise without any lock file to leave behind.
 */
export async function withNetnsLock<T>(fn: () => Promise<T>): Promise<T> {
  const fd = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    await flock(fd, constants().LOCK_EX);
    return await fn();
  } finally {
    fs.closeSync(fd);
  }
}
