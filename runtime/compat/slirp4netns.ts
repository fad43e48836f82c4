/**
 * `slirp4netns`, burrow's drop-in: slirp4netns 1.2's command line and behaviour on burrow's
 * userspace stack (net/usernet), for podman's `network_cmd_path`, rootlesskit and scripts.
 *
 * Theory of operation
 * -------------------
 * - The command line is parsed as getopt_long parses slirp4netns's: short options may be
 *   bundled (`-ce3`), long ones take `=VALUE` or the next word and may be abbreviated to a
 *   unique prefix, and options may follow the operands `PID|PATH [TAPNAME]` (TAPNAME defaults
 *   to tap0). Errors are slirp4netns's texts on stderr, then the usage on stdout, exit 1.
 * - Defaults are slirp4netns's, not podman's: MTU 1500, 10.0.2.0/24, IPv6 only with `-6`, and
 *   the host's loopback reachable at the gateway (cidr+2) unless `--disable-host-loopback`.
 *   The guest is cidr+100 (as podman assumes), which `-c` configures and the stack's DHCP
 *   server hands out otherwise; DNS is cidr+3.
 * - The target is a process (`PID`: its user and network namespaces) or, with
 *   `--netns-type=path`, a bound network namespace, joined after `--userns-path` or the user
 *   namespace that owns it (burrow-ns `-j PATH [-Y USERNS]`).
 * - Once the TAP is up (and configured with `-c`) and the API socket listens, `1` is written to
 *   the ready fd (`-r`). It exits 0 when the exit fd (`-e`) reaches EOF or hangs up, and on
 *   SIGTERM or SIGINT, removing its API socket.
 * - `--api-socket` speaks slirp4netns's protocol (net/usernet/slirp_api.ts).
 * - `--enable-sandbox` confines the stack as slirp4netns confines itself once ready, but a
 *   multi-threaded Node process cannot unshare its mount namespace, so it re-executes: this
 *   process opens the TAP (and configures it with `-c`), then execve()s, same pid and the TAP fd
 *   kept, into `burrow-ns -Z` (native/burrow-ns.c), which builds a private mount namespace whose
 *   read-only root holds /etc and /run (as slirp4netns's), the Node runtime and burrow's bundles
 *   (what a Node process needs to start: read-only), and the API socket's directory (writable, so
 *   the socket can be made and removed); sets no_new_privs; keeps only CAP_NET_BIND_SERVICE; and
 *   execs Node on this bundle again, which finds the TAP in BURROW_SLIRP4NETNS_TAP and starts the
 *   stack. The rest of the run needs neither exec nor setns: loopback clients of `add_hostfwd`
 *   forwards take the stack's path (as slirp4netns's do) instead of a splice from inside.
 * - `--enable-seccomp` installs slirp4netns's syscall filter on every thread once the stack runs
 *   (execve, execveat, ptrace, mount, setns, unshare... kill the process; native seccompSandbox).
 */
import fs from 'node:fs';
import net from 'node:net';
import * as ipv4 from '../../net/wire/ipv4.js';
import * as ipv6 from '../../net/wire/ipv6.js';
import { planAddressing } from '../../net/usernet/usernet.js';
import path from 'node:path';
import { execve, seccompSandbox } from '../../native/mod.js';
import { helperPath, joinNamespaces, type NsTarget } from '../../userns/unshare.js';
import { configureGuest, startUsernet, type UsernetSetup } from '../network/usernet.js';
import { VERSION } from '../version.js';

export const SLIRP4NETNS_VERSION = '1.2.0';

export interface SlirpArgs {
  configure: boolean;
  exitFd?: number;
  readyFd?: number;
  mtu: number;
  ipv6: boolean;
  apiSocket?: string;
  cidr: string;
  disableHostLoopback: boolean;
  netnsType: 'pid' | 'path';
  usernsPath?: string;
  outbound4?: string;
  outbound6?: string;
  disableDns: boolean;
  mac?: string;
  sandbox: boolean;
  seccomp: boolean;
  target: string;
  tap: string;
}

export type Parsed = { kind: 'run'; args: SlirpArgs } | { kind: 'help' } | { kind: 'version' };

/** An error slirp4netns reports before it starts: the message, then the usage (exit 1). */
export class SlirpUsageError extends Error {
  constructor(message: string, readonly usage = true) {
    super(message);
  }
}

export const USAGE = `Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces.

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65520)
-6, --enable-ipv6        enable IPv6
-a, --api-socket=PATH    specify API socket path
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)
--userns-path=PATH       specify user namespace path
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)
--enable-seccomp         enable seccomp to limit syscalls (experimental)
--outbound-addr=IPv4     sets outbound ipv4 address to bound to
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=TYPE       specify the target type ([netns], default=netns)
-h, --help               show this help and exit
-v, --version            show version and exit

burrow ${VERSION}'s slirp4netns: burrow's userspace network stack behind slirp4netns ${SLIRP4NETNS_VERSION}'s
command line. The sandbox's root also holds the Node runtime and burrow's bundles (read-only).
`;

export function versionText(): string {
  return `slirp4netns version ${SLIRP4NETNS_VERSION}\ncommit: burrow ${VERSION}\nlibslirp: none (burrow ${VERSION}'s userspace stack)\nSLIRP_CONFIG_VERSION_MAX: 4\n`;
}

type Opt = { long: string; short?: string; arg: boolean };
const OPTS: Opt[] = [
  { long: 'configure', short: 'c', arg: false }, { long: 'exit-fd', short: 'e', arg: true }, { long: 'ready-fd', short: 'r', arg: true },
  { long: 'mtu', short: 'm', arg: true }, { long: 'enable-ipv6', short: '6', arg: false }, { long: 'api-socket', short: 'a', arg: true },
  { long: 'cidr', arg: true }, { long: 'disable-host-loopback', arg: false }, { long: 'netns-type', arg: true }, { long: 'userns-path', arg: true },
  { long: 'enable-sandbox', arg: false }, { long: 'enable-seccomp', arg: false }, { long: 'outbound-addr', arg: true }, { long: 'outbound-addr6', arg: true },
  { long: 'disable-dns', arg: false }, { long: 'macaddress', arg: true }, { long: 'target-type', arg: true },
  { long: 'help', short: 'h', arg: false }, { long: 'version', short: 'v', arg: false },
];

/** getopt_long over slirp4netns's options: [name, value] pairs and the operands. */
function getopt(argv: string[]): { opts: Array<[string, string | undefined]>; operands: string[] } {
  const opts: Array<[string, string | undefined]> = [];
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const exact = OPTS.find((o) => o.long === name);
      const prefixed = OPTS.filter((o) => o.long.startsWith(name));
      const o = exact ?? (prefixed.length === 1 ? prefixed[0] : undefined);
      if (!o) {
        if (prefixed.length > 1 && name) throw new SlirpUsageError(`slirp4netns: option '--${name}' is ambiguous; possibilities:${prefixed.map((p) => ` '--${p.long}'`).join('')}`);
        throw new SlirpUsageError(`slirp4netns: unrecognized option '${a}'`);
      }
      if (!o.arg) {
        if (eq >= 0) throw new SlirpUsageError(`slirp4netns: option '--${o.long}' doesn't allow an argument`);
        opts.push([o.long, undefined]);
      } else if (eq >= 0) opts.push([o.long, a.slice(eq + 1)]);
      else if (i + 1 < argv.length) opts.push([o.long, argv[++i]]);
      else throw new SlirpUsageError(`slirp4netns: option '--${o.long}' requires an argument`);
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const o = OPTS.find((x) => x.short === a[j]);
        if (!o) throw new SlirpUsageError(`slirp4netns: invalid option -- '${a[j]}'`);
        if (!o.arg) {
          opts.push([o.long, undefined]);
          continue;
        }
        if (j + 1 < a.length) opts.push([o.long, a.slice(j + 1)]);
        else if (i + 1 < argv.length) opts.push([o.long, argv[++i]]);
        else throw new SlirpUsageError(`slirp4netns: option requires an argument -- '${a[j]}'`);
        break;
      }
      continue;
    }
    operands.push(a);
  }
  return { opts, operands };
}

const fdOf = (v: string, what: string) => {
  if (!/^\d+$/.test(v)) throw new SlirpUsageError(`${what} must be a non-negative integer`);
  return Number(v);
};

/** Parses slirp4netns 1.2's command line. Throws {@link SlirpUsageError} with slirp4netns's message. */
export function parseSlirpArgs(argv: string[], exists: (p: string) => boolean = fs.existsSync): Parsed {
  const { opts, operands } = getopt(argv);
  const a: Omit<SlirpArgs, 'target' | 'tap'> = { configure: false, mtu: 1500, ipv6: false, cidr: '10.0.2.0/24', disableHostLoopback: false, netnsType: 'pid', disableDns: false, sandbox: false, seccomp: false };
  for (const [name, v] of opts) {
    const val = v as string;
    switch (name) {
      case 'help': return { kind: 'help' };
      case 'version': return { kind: 'version' };
      case 'configure': a.configure = true; break;
      case 'exit-fd': a.exitFd = fdOf(val, 'exit-fd'); break;
      case 'ready-fd': a.readyFd = fdOf(val, 'ready-fd'); break;
      case 'mtu': {
        const n = /^\d+$/.test(val) ? Number(val) : NaN;
        if (!(n > 0 && n < 65522)) throw new SlirpUsageError('MTU must be a positive integer (< 65522)');
        if (n < 1280 || n > 65520) throw new SlirpUsageError(`MTU ${n}: burrow's stack takes 1280 to 65520 (IPv6 needs 1280)`);
        a.mtu = n;
        break;
      }
      case 'enable-ipv6': a.ipv6 = true; break;
      case 'api-socket': a.apiSocket = val; break;
      case 'cidr': {
        const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(val);
        if (!m || !ipv4.parseAddr(m[1])) throw new SlirpUsageError(`invalid CIDR: ${val}`);
        const len = Number(m[2]);
        if (len < 1 || len > 25) throw new SlirpUsageError('prefix length needs to be 1-25');
        if (len < 8) throw new SlirpUsageError(`--cidr=${val}: burrow's stack takes prefix lengths 8 to 25`);
        a.cidr = val;
        break;
      }
      case 'disable-host-loopback': a.disableHostLoopback = true; break;
      case 'netns-type':
        if (val !== 'pid' && val !== 'path') throw new SlirpUsageError(`netns-type must be either "path" or "pid", got "${val}"`);
        a.netnsType = val;
        break;
      case 'userns-path': a.usernsPath = val; break;
      case 'enable-sandbox': a.sandbox = true; break;
      case 'enable-seccomp': a.seccomp = true; break;
      case 'outbound-addr':
        if (!ipv4.parseAddr(val)) throw new SlirpUsageError(`outbound-addr has to be valid ipv4 address (got "${val}")`);
        a.outbound4 = val;
        break;
      case 'outbound-addr6':
        if (!ipv6.parseAddr(val)) throw new SlirpUsageError(`outbound-addr6 has to be valid ipv6 address (got "${val}")`);
        a.outbound6 = val;
        break;
      case 'disable-dns': a.disableDns = true; break;
      case 'macaddress':
        if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(val) || (parseInt(val.slice(0, 2), 16) & 1)) throw new SlirpUsageError(`macaddress has to be a valid unicast MAC address (got "${val}")`);
        a.mac = val.toLowerCase();
        break;
      case 'target-type':
        if (val !== 'netns') throw new SlirpUsageError(val === 'bess' ? '--target-type=bess is not supported by burrow\'s slirp4netns (netns only)' : `target-type must be either "netns" or "bess", got "${val}"`);
        break;
    }
  }
  if (operands.length < 1 || operands.length > 2) throw new SlirpUsageError('');
  const [target, tap = 'tap0'] = operands;
  if (a.netnsType === 'pid' && !(/^\d+$/.test(target) && Number(target) > 0)) throw new SlirpUsageError(`PID must be a positive integer (got "${target}"); use --netns-type=path for a path`);
  if (a.netnsType === 'path' && !exists(target)) throw new SlirpUsageError('existing path expected when --netns-type=path: No such file or directory', false);
  if (a.usernsPath && !exists(a.usernsPath)) throw new SlirpUsageError('existing path expected for --userns-path: No such file or directory', false);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tap)) throw new SlirpUsageError(`invalid TAPNAME "${tap}": 1 to 15 of A-Z a-z 0-9 _ . -`);
  if (a.mac && !a.configure) throw new SlirpUsageError('--macaddress is only valid with -c (--configure)');
  return { kind: 'run', args: { ...a, target, tap } };
}

/** The stack's setup for parsed args: slirp4netns's addressing and host loopback. */
export function slirpSetup(a: SlirpArgs): UsernetSetup {
  const plan = planAddressing({ cidr4: a.cidr, cidr6: a.ipv6 ? 'fd00::/64' : null, mtu: a.mtu });
  return {
    plan,
    tapName: a.tap,
    configure: a.configure,
    ports: [],
    // slirp4netns: the gateway reaches the host's 127.0.0.1 (and ::1) unless --disable-host-loopback
    mapHostLoopback: a.disableHostLoopback ? undefined : plan.gateway4,
    apiSocket: a.apiSocket,
    apiProtocol: 'slirp4netns',
    outbound: a.outbound4 || a.outbound6 ? { v4: a.outbound4, v6: a.outbound6 } : undefined,
    noDns: a.disableDns,
    guestMac: a.mac,
    noSplice: a.sandbox || a.seccomp,
  };
}

/** What slirp4netns prints once it runs (podman shows its log when it exits early). */
function banner(a: SlirpArgs, s: UsernetSetup): string {
  const p = s.plan;
  const mask = ipv4.formatAddr(Buffer.from([0, 0, 0, 0].map((_, i) => Math.max(0, Math.min(8, p.prefix4 - 8 * i))).map((b) => (0xff00 >> b) & 0xff)));
  const lines = [
    'Starting slirp',
    `* MTU:             ${p.mtu}`,
    `* Network:         ${a.cidr.split('/')[0]}`,
    `* Netmask:         ${mask}`,
    `* Gateway:         ${p.gateway4}`,
    `* DNS:             ${s.noDns ? '(disabled)' : p.dns4}`,
    `* DHCP:            ${p.guest4} (the guest's one address)`,
    `* Recommended IP:  ${p.guest4}`,
    ...(s.apiSocket ? [`* API Socket:      ${s.apiSocket}`] : []),
    ...(p.guest6 ? [`* NetworkV6:       fd00::`, `* DNSv6:           ${p.dns6}`, `* Recommended IPv6: ${p.guest6}`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** Calls `onEof` once `fd` reaches EOF or hangs up (slirp4netns's exit fd). */
function watchExitFd(fd: number, onEof: () => void): void {
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch (err) {
    throw new SlirpUsageError(`exit-fd ${fd}: ${(err as Error).message}`, false);
  }
  if (!st.isFIFO() && !st.isSocket()) throw new SlirpUsageError(`exit-fd ${fd} is not a pipe or a socket`, false);
  const s = new net.Socket({ fd, readable: true, writable: false });
  s.on('data', () => undefined); // slirp4netns ignores what is written; EOF is the event
  s.on('end', onEof);
  s.on('close', onEof);
  s.on('error', onEof);
}

/** The env var that carries the TAP's fd into the sandboxed second stage. */
const TAP_ENV = 'BURROW_SLIRP4NETNS_TAP';
const CAP_NET_BIND_SERVICE = 10;

/**
 * burrow-ns -Z's arguments for --enable-sandbox: what the sandbox's root holds. /etc and /run as
 * slirp4netns's (read-only, noexec); the Node runtime and burrow's dist/ and build/ (read-only:
 * the second stage must start); the API socket's directory (writable).
 */
export function sandboxArgs(o: { installRoot: string; node: string; apiDir?: { src: string; dst: string } }): string[] {
  const ro = (p: string, opts: string) => ['-B', `${p}:${p}`, '-E', opts];
  const nodeTree = o.node.startsWith('/usr/') ? [] : ro(path.dirname(path.dirname(o.node)), 'nosuid,nodev');
  return [
    '-Z',
    ...ro('/etc', 'nosuid,nodev,noexec'),
    ...ro('/run', 'nosuid,nodev,noexec'),
    ...ro('/usr', 'nosuid,nodev'),
    ...nodeTree,
    ...ro(path.join(o.installRoot, 'dist'), 'nosuid,nodev'),
    ...ro(path.join(o.installRoot, 'build'), 'nosuid,nodev'),
    ...(o.apiDir ? ['-V', `${o.apiDir.src}:${o.apiDir.dst}`, '-E', 'nosuid,nodev,noexec'] : []),
    '-c', (1 << CAP_NET_BIND_SERVICE).toString(16),
  ];
}

/**
 * --enable-sandbox, first stage: opens the TAP (configured with -c) and re-executes, same pid,
 * into burrow-ns -Z, which execs this bundle again inside the sandbox. Returns only on failure.
 */
async function enterSandbox(argv: string[], a: SlirpArgs, setup: UsernetSetup, target: NsTarget, cancelled: () => boolean): Promise<void> {
  const fds = await joinNamespaces(target, { tap: a.tap });
  fs.closeSync(fds.netns);
  fs.closeSync(fds.userns);
  if (setup.configure && !cancelled()) await configureGuest(target, setup);
  if (cancelled()) return; // SIGTERM or the exit fd while the TAP was made: slirp4netns exits 0
  const helper = helperPath();
  const installRoot = path.dirname(path.dirname(path.dirname(helper)));
  const bundle = path.join(installRoot, 'dist', 'compat', 'slirp4netns.cjs');
  const node = fs.realpathSync(process.execPath);
  let apiDir: { src: string; dst: string } | undefined;
  if (a.apiSocket) {
    // bound at the path as given (the stage inside resolves it there), from where it really is
    const dst = path.dirname(path.resolve(a.apiSocket));
    fs.mkdirSync(dst, { recursive: true });
    apiDir = { src: fs.realpathSync(dst), dst };
  }
  const args = [...sandboxArgs({ installRoot: fs.realpathSync(installRoot), node, apiDir }), '--', node, bundle, ...argv];
  // stdio too: Node marks its own close-on-exec, and the sandbox has no /dev/null to stand in
  const open = (fd: number) => {
    try {
      fs.fstatSync(fd);
      return true;
    } catch {
      return false;
    }
  };
  const keep = [0, 1, 2].filter(open).concat([fds.tap!, ...(a.exitFd !== undefined ? [a.exitFd] : []), ...(a.readyFd !== undefined ? [a.readyFd] : [])]);
  return execve(helper, [helper, ...args], { ...process.env, [TAP_ENV]: String(fds.tap) }, keep);
}

/** Runs slirp4netns's command; resolves with the exit status once it stops. */
export async function main(argv: string[]): Promise<number> {
  // the sandboxed second stage: the first opened the TAP and configured it
  const stagedTap = process.env[TAP_ENV];
  delete process.env[TAP_ENV];
  let parsed: Parsed;
  try {
    parsed = parseSlirpArgs(argv, stagedTap ? () => true : fs.existsSync);
  } catch (err) {
    if (!(err instanceof SlirpUsageError)) throw err;
    if (err.message) process.stderr.write(`${err.message}\n`);
    if (err.usage) process.stdout.write(USAGE);
    return 1;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (parsed.kind === 'version') {
    process.stdout.write(versionText());
    return 0;
  }
  const a = parsed.args;
  let setup: UsernetSetup;
  try {
    setup = slirpSetup(a);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  const target: NsTarget = a.netnsType === 'pid' ? Number(a.target) : { netns: stagedTap ? a.target : fs.realpathSync(a.target), ...(a.usernsPath ? { userns: stagedTap ? a.usernsPath : fs.realpathSync(a.usernsPath) } : {}) };
  let stop: (() => void) | null = null;
  let quitting = false;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (finish = resolve));
  const quit = (code: number) => {
    quitting = true;
    stop?.();
    stop = null;
    finish(code);
  };
  process.on('SIGTERM', () => quit(0));
  process.on('SIGINT', () => quit(0));
  try {
    if (a.sandbox && !stagedTap) {
      await enterSandbox(argv, a, setup, target, () => quitting);
      return done;
    }
    if (a.exitFd !== undefined) watchExitFd(a.exitFd, () => quit(0));
    let tap: number;
    if (stagedTap) {
      tap = Number(stagedTap);
      if (!/^\d+$/.test(stagedTap) || !fs.fstatSync(tap).isCharacterDevice()) throw new Error(`${TAP_ENV}=${stagedTap} is not an open TAP device`);
      setup.configure = false;
    } else {
      const fds = await joinNamespaces(target, { tap: a.tap });
      fs.closeSync(fds.netns);
      fs.closeSync(fds.userns);
      tap = fds.tap!;
    }
    const session = await startUsernet(target, tap, setup);
    if (quitting) {
      // the exit fd closed (or a signal came) while the stack started
      session.stop();
      return done;
    }
    stop = session.stop;
    if (a.seccomp) process.stdout.write(`seccomp: The following syscalls will be blocked by seccomp: ${seccompSandbox().join(' ')}.\n`);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    quit(1);
    return done;
  }
  process.stdout.write(banner(a, setup));
  if (a.readyFd !== undefined) {
    try {
      fs.writeSync(a.readyFd, '1');
      fs.closeSync(a.readyFd);
    } catch (err) {
      process.stderr.write(`ready-fd ${a.readyFd}: ${(err as Error).message}\n`);
      quit(1);
    }
  }
  return done;
}
