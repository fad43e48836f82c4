/**
 * `netavark`, burrow's drop-in: netavark 1.4's command line and protocol on burrow's netlink
 * layer, firewall tables and aardvark-dns files, for podman's `network_backend = "netavark"`
 * with `helper_binaries_dir` pointing here.
 *
 * Theory of operation
 * -------------------
 * - `netavark [-f FILE] [--config DIR] [--rootless BOOL] [--aardvark-binary P] setup|teardown
 *   NETNS` reads podman's network options (JSON) from stdin or FILE. `setup` prints the
 *   StatusBlock podman expects, one entry per network; `teardown` prints nothing. Failures
 *   print `{"error":"..."}` on stdout and exit 1: the failing step, then the kernel's error with
 *   its os error number, as netavark words them. `version` prints netavark's JSON; `update`
 *   rewrites a network's DNS servers in the aardvark-dns file and signals the server.
 * - bridge: the bridge (created with the gateways if missing, DAD and RA off), a veth whose
 *   container end is `interface_name` with the static IPs, MAC and MTU, default routes at
 *   metric 100 (none on internal networks), the sysctls netavark sets (ip_forward, IPv6
 *   forwarding, route_localnet with ports, accept_dad/autoconf off inside), and netavark 1.4's
 *   iptables chains (net/firewall/netavark_iptables.ts), so either netavark tears down the
 *   other's setup. A failed setup undoes what it did. Teardown tolerates a missing netns and
 *   missing pieces; it removes the bridge and the network's chains with its last container.
 * - macvlan: an interface on `network_interface` (or the default route's device) in `mode`,
 *   created inside the container's namespace, with the static IPs, MTU and a default route.
 * - DNS (bridge networks with dns_enabled, when an aardvark binary is named): the container's
 *   line in `<config>/aardvark-dns/<network>` (`%int` for internal networks) under a flock on
 *   `<config>/aardvark.lock`, then SIGHUP to the pid in aardvark.pid, or a start of the binary
 *   (`--config DIR -p PORT run`, PORT from NETAVARK_DNS_PORT or 53). Either aardvark-dns works.
 * - Logging as netavark's: stderr is silent unless RUST_LOG asks (`info`, `netavark=debug`...).
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { constants, flock } from '../../native/mod.js';
import { applyTables, readTables } from '../../net/firewall/iptables.js';
import { withFirewallLock } from '../../net/firewall/lock.js';
import {
  addLines, deleteLines, dnChain, natChain, networkRules, portRules, sharedRules, ISOLATION_1,
  type Family, type NetavarkFwNetwork, type NetavarkPort, type Rule,
} from '../../net/firewall/netavark_iptables.js';
import type { MacvlanMode } from '../../net/netlink/client.js';
import { RtnlClient } from '../../net/netlink/rtnl_client.js';
import { ProcSysctl } from '../../net/netlink/sysctl.js';
import * as ipv4 from '../../net/wire/ipv4.js';
import * as ipv6 from '../../net/wire/ipv6.js';
import { VERSION } from '../version.js';
import { isBurrowAardvark, spawnDaemon } from './aardvark_dns.js';

export const NETAVARK_VERSION = '1.4.0';

export interface Subnet { subnet: string; gateway?: string; lease_range?: { start_ip?: string; end_ip?: string } }
export interface NetworkInfo {
  name: string;
  id: string;
  driver: string;
  network_interface?: string;
  subnets?: Subnet[];
  ipv6_enabled?: boolean;
  internal?: boolean;
  dns_enabled?: boolean;
  options?: Record<string, string>;
  network_dns_servers?: string[];
}
export interface PerNetwork { static_ips?: string[]; aliases?: string[]; static_mac?: string; interface_name: string }
export interface NetworkOptions {
  container_id: string;
  container_name: string;
  port_mappings?: NetavarkPort[] | null;
  networks: Record<string, PerNetwork>;
  network_info: Record<string, NetworkInfo>;
  dns_servers?: string[] | null;
}
export interface StatusBlock {
  dns_search_domains?: string[];
  dns_server_ips?: string[];
  interfaces: Record<string, { mac_address: string; subnets: Array<{ gateway?: string; ipnet: string }> }>;
}

/** An error podman shows as `netavark: <message>`. */
export class NetavarkError extends Error {}

export interface NetavarkArgs {
  command: 'setup' | 'teardown' | 'version' | 'update' | 'help';
  config: string;
  rootless: boolean;
  aardvark: string;
  file?: string;
  netns?: string;
  network?: string;
  dnsServers?: string[];
}

export const HELP = `netavark ${NETAVARK_VERSION} (burrow ${VERSION})
Netavark is a network config tool for podman (this one is burrow's drop-in)

USAGE:
    netavark [OPTIONS] <SUBCOMMAND>

OPTIONS:
    -a, --aardvark-binary <AARDVARK_BINARY>    Path to the aardvark-dns binary
    -c, --config <CONFIG>                      Network config directory (run dir)
    -f, --file <FILE>                          Network options file (default: stdin)
    -h, --help                                 Print help information
    -r, --rootless <ROOTLESS>                  Whether podman is rootless [true|false]
    -V, --version                              Print version information

SUBCOMMANDS:
    help        Print this message or the help of the given subcommand(s)
    setup       Configures the given network namespace with the given configuration
    teardown    Undo any configuration applied via setup command
    update      Updates network dns servers for an already configured network
    version     Display info about netavark
`;

const boolArg = (v: string, flag: string) => {
  if (v === 'true' || v === 'false') return v === 'true';
  throw new NetavarkError(`invalid value '${v}' for '${flag}': expected true or false`);
};

/** netavark's command line (clap: `-c X`, `--config X`, `--config=X`; options anywhere). */
export function parseArgs(argv: string[]): NetavarkArgs {
  const a: NetavarkArgs = { command: 'help', config: '/run/containers/networks', rootless: false, aardvark: '/usr/lib/podman/aardvark-dns' };
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    let f = argv[i];
    let v: string | undefined;
    if (f.startsWith('--') && f.includes('=')) [f, v] = [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)];
    const take = () => {
      const x = v ?? argv[++i];
      if (x === undefined) throw new NetavarkError(`the argument '${f}' requires a value but none was supplied`);
      return x;
    };
    if (f === '-c' || f === '--config') a.config = take();
    else if (f === '-r' || f === '--rootless') a.rootless = boolArg(take(), '--rootless');
    else if (f === '-a' || f === '--aardvark-binary') a.aardvark = take();
    else if (f === '-f' || f === '--file') a.file = take();
    else if (f === '--plugin-directory' || f === '--firewall-driver') take(); // podman 5's: burrow has neither plugins nor other drivers
    else if (f === '--network-dns-servers') a.dnsServers = take().split(',').filter(Boolean);
    else if (f === '-h' || f === '--help') return { ...a, command: 'help' };
    else if (f === '-V' || f === '--version') return { ...a, command: 'version' };
    else if (f.startsWith('-') && f !== '-') throw new NetavarkError(`unexpected argument '${f}'`);
    else rest.push(argv[i]);
  }
  const [cmd, arg] = rest;
  if (cmd === 'setup' || cmd === 'teardown') {
    if (!arg) throw new NetavarkError(`${cmd} needs the path of a network namespace`);
    return { ...a, command: cmd, netns: arg };
  }
  if (cmd === 'update') {
    if (!arg) throw new NetavarkError('update needs a network name');
    return { ...a, command: 'update', network: arg, dnsServers: a.dnsServers ?? [] };
  }
  if (cmd === 'version') return { ...a, command: 'version' };
  if (cmd === undefined || cmd === 'help') return { ...a, command: 'help' };
  throw new NetavarkError(`unrecognized subcommand '${cmd}'`);
}

/** Reads and checks the network options podman sends. */
export function parseOptions(text: string): NetworkOptions {
  let o: NetworkOptions;
  try {
    o = JSON.parse(text) as NetworkOptions;
  } catch (err) {
    throw new NetavarkError(`failed to parse network options: ${(err as Error).message}`);
  }
  if (typeof o !== 'object' || o === null) throw new NetavarkError('failed to parse network options: not a JSON object');
  if (typeof o.container_id !== 'string' || !/^[0-9a-f]{1,64}$/i.test(o.container_id)) throw new NetavarkError('failed to parse network options: container_id must be hex');
  if (typeof o.networks !== 'object' || o.networks === null || typeof o.network_info !== 'object' || o.network_info === null) throw new NetavarkError('failed to parse network options: networks and network_info are required');
  for (const [name, n] of Object.entries(o.networks)) {
    const info = o.network_info[name];
    if (!info) throw new NetavarkError(`network ${name} is missing from network_info`);
    if (info.driver !== 'bridge' && info.driver !== 'macvlan') throw new NetavarkError(`unknown network driver "${info.driver}"`);
    if (typeof n.interface_name !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(n.interface_name)) throw new NetavarkError(`network ${name}: invalid interface_name ${JSON.stringify(n.interface_name)}`);
    for (const ip of n.static_ips ?? []) if (!subnetOf(info, ip)) throw new NetavarkError(`network ${name}: static ip ${ip} is in none of its subnets`);
  }
  for (const p of o.port_mappings ?? []) {
    if (!['tcp', 'udp', 'sctp'].includes(p.protocol)) throw new NetavarkError(`unknown port protocol "${p.protocol}"`);
    if (!(p.host_port > 0 && p.host_port + Math.max(1, p.range || 1) - 1 <= 65535) || !(p.container_port > 0)) throw new NetavarkError(`invalid port mapping ${p.host_port}:${p.container_port}`);
  }
  return o;
}

// --- address helpers -------------------------------------------------------------------

const familyOf = (ip: string): Family => (ip.includes(':') ? 6 : 4);

/** An address as bytes (IPv4 or IPv6 text), or null. */
const bytesOf = (ip: string) => (familyOf(ip) === 4 ? ipv4.parseAddr(ip) : ipv6.parseAddr(ip));

function toBig(ip: string): bigint {
  const b = bytesOf(ip);
  if (!b) throw new NetavarkError(`invalid IP address "${ip}"`);
  return b.reduce((n, x) => (n << 8n) | BigInt(x), 0n);
}

/** The subnet of `info` that holds `ip`. */
export function subnetOf(info: NetworkInfo, ip: string): Subnet | undefined {
  return (info.subnets ?? []).find((s) => {
    const [base, len] = s.subnet.split('/');
    if (familyOf(base) !== familyOf(ip)) return false;
    const bits = BigInt(familyOf(ip) === 4 ? 32 : 128);
    const shift = bits - BigInt(Number(len));
    try {
      return toBig(base) >> shift === toBig(ip) >> shift;
    } catch {
      return false;
    }
  });
}

const prefixOf = (s: Subnet) => Number(s.subnet.split('/')[1]);

// --- logging -----------------------------------------------------------------------------

const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];

/** The most verbose level RUST_LOG enables for netavark (`info`, `netavark=debug`, ...); error by default. */
export function logLevel(rustLog = process.env.RUST_LOG ?? ''): number {
  let level = 0;
  for (const d of rustLog.split(',').map((x) => x.trim()).filter(Boolean)) {
    const [target, lvl] = d.includes('=') ? d.split('=') : ['', d];
    if (target && !target.startsWith('netavark')) continue;
    const i = LEVELS.indexOf(lvl === 'warning' ? 'warn' : lvl);
    if (i > level) level = i;
  }
  return level;
}

function logger(module: string) {
  const max = logLevel();
  return (level: 'error' | 'warn' | 'info' | 'debug', msg: string) => {
    if (LEVELS.indexOf(level) <= max) process.stderr.write(`[${level.toUpperCase().padEnd(5)} netavark::${module}] ${msg}\n`);
  };
}

// --- errors ------------------------------------------------------------------------------

/** `step: what the kernel said (os error N)`, netavark's shape. */
function fail(step: string, err: unknown): NetavarkError {
  if (err instanceof NetavarkError) return err;
  const e = err as { code?: string; errno?: number; message?: string };
  const errnos = os.constants.errno as Record<string, number>;
  const n = typeof e.errno === 'number' && e.errno > 0 ? e.errno : e.code ? errnos[e.code] : undefined;
  const msg = (e.message ?? String(err)).replace(/\s*\(os error \d+\)$/, '');
  return new NetavarkError(`${step}: ${msg}${n ? ` (os error ${n})` : ''}`);
}

async function step<T>(what: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fail(what, err);
  }
}

// --- firewall ----------------------------------------------------------------------------

/** The firewall view of one network, per family. */
function fwNetworks(info: NetworkInfo): Array<{ family: Family; net: NetavarkFwNetwork }> {
  const out: Array<{ family: Family; net: NetavarkFwNetwork }> = [];
  for (const family of [4, 6] as Family[]) {
    const subs = (info.subnets ?? []).filter((s) => familyOf(s.subnet.split('/')[0]) === family);
    if (!subs.length) continue;
    out.push({ family, net: { name: info.name, bridge: info.network_interface ?? '', subnets: subs.map((s) => canonicalSubnet(s.subnet)), gateways: subs.flatMap((s) => (s.gateway ? [s.gateway] : [])), isolate: isolateOf(info) } });
  }
  return out;
}

const isolateOf = (info: NetworkInfo) => ['true', '1', 'strict'].includes((info.options?.isolate ?? '').toLowerCase());

/** iptables-save prints a network with its host bits cleared and IPv6 compressed. */
export function canonicalSubnet(cidr: string): string {
  const [base, len] = cidr.split('/');
  const b = bytesOf(base);
  if (!b) throw new NetavarkError(`invalid subnet "${cidr}"`);
  const out = Buffer.from(b);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, Number(len) - 8 * i));
    out[i] &= (0xff00 >> keep) & 0xff;
  }
  return `${out.length === 4 ? ipv4.formatAddr(out) : ipv6.formatAddr(out)}/${len}`;
}

async function firewallAdd(rulesByFamily: Array<{ family: Family; rules: Rule[] }>): Promise<void> {
  await withFirewallLock(async () => {
    for (const { family, rules } of rulesByFamily) {
      // one iptables-save and one iptables-restore per family: process starts are most of the cost
      const have = await readTables(family, ['filter', 'nat']);
      await applyTables(family, { filter: addLines(rules, 'filter', have.filter), nat: addLines(rules, 'nat', have.nat) }, `add netavark's rules (IPv${family})`);
    }
  });
}

/** Deletes `rules` where present, then the chains of `dropChains` that are left empty and unreferenced. */
async function firewallDelete(rulesByFamily: Array<{ family: Family; rules: Rule[]; dropChains: string[]; dropIsolationJump: boolean }>): Promise<void> {
  await withFirewallLock(async () => {
    for (const { family, rules, dropChains, dropIsolationJump } of rulesByFamily) {
      const tables = await readTables(family, ['filter', 'nat']);
      const batch: Record<string, string[]> = {};
      for (const table of ['filter', 'nat'] as const) {
        const have = tables[table];
        const lines = deleteLines(rules, table, have);
        const gone = new Set(lines.map((l) => `-A ${l.slice(3)}`));
        const left = have.rules.filter((r) => !gone.has(r));
        if (table === 'filter' && dropIsolationJump && !left.some((r) => r.startsWith(`-A ${ISOLATION_1} `))) {
          const jump = `-A FORWARD -j ${ISOLATION_1}`;
          if (left.includes(jump)) lines.push(`-D FORWARD -j ${ISOLATION_1}`);
        }
        for (const chain of dropChains) {
          if (have.chains.has(chain) && !left.some((r) => r.startsWith(`-A ${chain} `) || r.endsWith(` -j ${chain}`))) lines.push(`-X ${chain}`);
        }
        batch[table] = lines;
      }
      await applyTables(family, batch, `remove netavark's rules (IPv${family})`);
    }
  });
}

// --- DNS (aardvark-dns files) ----------------------------------------------------------

const dnsPort = () => {
  const v = process.env.NETAVARK_DNS_PORT;
  const n = v ? Number(v) : 53;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new NetavarkError(`invalid NETAVARK_DNS_PORT "${v}"`);
  return n;
};

async function withAardvarkLock<T>(config: string, fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(path.join(config, 'aardvark-dns'), { recursive: true });
  const fd = fs.openSync(path.join(config, 'aardvark.lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  try {
    await flock(fd, constants().LOCK_EX);
    return await fn();
  } finally {
    fs.closeSync(fd);
  }
}

const dnsFile = (config: string, info: NetworkInfo) => path.join(config, 'aardvark-dns', info.internal ? `${info.name}%int` : info.name);

function aardvarkPid(config: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(config, 'aardvark-dns', 'aardvark.pid'), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return null;
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** SIGHUP to a running aardvark-dns, or a start of `binary` when none runs and files remain. */
async function signalAardvark(config: string, binary: string, log: ReturnType<typeof logger>): Promise<void> {
  const pid = aardvarkPid(config);
  if (pid) {
    process.kill(pid, 'SIGHUP');
    return;
  }
  const dir = path.join(config, 'aardvark-dns');
  if (!fs.readdirSync(dir).some((f) => f !== 'aardvark.pid')) return;
  log('debug', `starting ${binary}`);
  if (isBurrowAardvark(binary)) {
    // burrow's own: its daemon directly, without the parent that would only wait for it
    const r = await spawnDaemon(binary, ['--config', dir, '-p', String(dnsPort()), 'run']);
    if (!r.ok) throw new NetavarkError(`failed to start aardvark-dns ${binary}: ${r.error}`);
    return;
  }
  const child = spawn(binary, ['--config', dir, '-p', String(dnsPort()), 'run'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise<number>((resolve) => {
    child.on('error', (err) => {
      log('error', `cannot start ${binary}: ${err.message}`);
      resolve(127);
    });
    child.on('exit', (c) => resolve(c ?? 1));
  });
  if (code !== 0) throw new NetavarkError(`failed to start aardvark-dns ${binary}: exit status ${code}`);
}

async function dnsAdd(a: NetavarkArgs, o: NetworkOptions, info: NetworkInfo, ips: string[], log: ReturnType<typeof logger>): Promise<void> {
  await withAardvarkLock(a.config, async () => {
    const file = dnsFile(a.config, info);
    const gws = (info.subnets ?? []).flatMap((s) => (s.gateway ? [s.gateway] : []));
    const head = `${gws.join(',')}${info.network_dns_servers?.length ? ` ${info.network_dns_servers.join(',')}` : ''}`;
    let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : `${head}\n`;
    if (!text.endsWith('\n')) text += '\n';
    const names = [o.container_name, ...(o.networks[info.name].aliases ?? [])].filter(Boolean).map((n) => n.toLowerCase());
    const v4 = ips.filter((ip) => familyOf(ip) === 4).join(',');
    const v6 = ips.filter((ip) => familyOf(ip) === 6).join(',');
    const servers = o.dns_servers?.length ? ` ${o.dns_servers.join(',')}` : '';
    const lines = text.split('\n').filter((l) => l && !l.startsWith(`${o.container_id} `));
    lines.push(`${o.container_id} ${v4} ${v6} ${names.join(',')}${servers}`);
    const tmp = `${file}.${process.pid}`;
    fs.writeFileSync(tmp, `${lines.join('\n')}\n`);
    fs.renameSync(tmp, file);
  });
  // after the lock: the server reads the files under it (shared), and a new one reads them before it says it is ready
  await signalAardvark(a.config, a.aardvark, log);
}

async function dnsRemove(a: NetavarkArgs, containerId: string, info: NetworkInfo, log: ReturnType<typeof logger>): Promise<void> {
  await withAardvarkLock(a.config, async () => {
    const file = dnsFile(a.config, info);
    if (!fs.existsSync(file)) return;
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l, i) => l && (i === 0 || !l.startsWith(`${containerId} `)));
    if (lines.length <= 1) fs.rmSync(file, { force: true });
    else fs.writeFileSync(file, `${lines.join('\n')}\n`);
  });
  await signalAardvark(a.config, a.aardvark, log);
}

// --- drivers -----------------------------------------------------------------------------

/** Removes a link if it is there (undo steps run after the step's own clients are closed). */
async function removeLinkIn(netns: string, name: string): Promise<void> {
  const nl = new RtnlClient(netns);
  try {
    await nl.removeLink(name);
  } catch {
    // gone already
  } finally {
    nl.close();
  }
}

const wantDns = (a: NetavarkArgs, info: NetworkInfo) => info.driver === 'bridge' && !!info.dns_enabled && a.aardvark !== '';
const mtuOf = (info: NetworkInfo) => (info.options?.mtu ? Number(info.options.mtu) : undefined);
const metricOf = (info: NetworkInfo) => (info.options?.metric ? Number(info.options.metric) : 100);

/** Host sysctls, set only when they differ (a read is cheaper than a write, and sysctls may be read-only in a container). */
function ensureSysctl(s: ProcSysctl, key: string, value: string): void {
  try {
    if (s.get(key)?.trim() === value) return;
  } catch {
    // unreadable: try the write, which names the key when it fails
  }
  s.set(key, value);
}

async function setupBridge(a: NetavarkArgs, o: NetworkOptions, info: NetworkInfo, per: PerNetwork, undo: Array<() => Promise<void>>, log: ReturnType<typeof logger>): Promise<StatusBlock> {
  const br = info.network_interface;
  if (!br) throw new NetavarkError(`network ${info.name}: no bridge name (network_interface)`);
  const mtu = mtuOf(info);
  const v6 = (info.subnets ?? []).some((s) => familyOf(s.subnet) === 6);
  const hostNl = new RtnlClient('');
  const ctrNl = new RtnlClient(a.netns!);
  const sys = new ProcSysctl('');
  const ctrSys = new ProcSysctl(a.netns!);
  try {
    if (!info.internal) {
      await step('set sysctl net.ipv4.ip_forward', () => ensureSysctl(sys, 'net.ipv4.ip_forward', '1'));
      if (v6) await step('set sysctl net.ipv6.conf.all.forwarding', () => ensureSysctl(sys, 'net.ipv6.conf.all.forwarding', '1'));
    }
    let bridge = await hostNl.getLink(br);
    if (!bridge) {
      await step(`create bridge ${br}`, () => hostNl.addBridge(br, { mtu }));
      undo.push(() => removeLinkIn('', br));
      bridge = await hostNl.getLink(br);
    }
    if (v6) {
      await step(`set sysctl net.ipv6.conf.${br}.accept_dad`, () => ensureSysctl(sys, `net.ipv6.conf.${br}.accept_dad`, '0'));
      await step(`set sysctl net.ipv6.conf.${br}.accept_ra`, () => ensureSysctl(sys, `net.ipv6.conf.${br}.accept_ra`, '0'));
    }
    const have = new Set((await hostNl.listAddresses(br)).map((x) => x.cidr));
    for (const s of info.subnets ?? []) {
      if (!s.gateway) continue;
      const cidr = `${s.gateway}/${prefixOf(s)}`;
      if (!have.has(cidr)) await step(`add ip address ${cidr} to bridge ${br}`, () => hostNl.addAddress(br, cidr).catch((err: { code?: string }) => { if (err.code !== 'EEXIST') throw err; }));
    }
    await step(`set bridge ${br} up`, () => hostNl.setUp(br, true));
    if (o.port_mappings?.length) await step(`set sysctl net.ipv4.conf.${br}.route_localnet`, () => ensureSysctl(sys, `net.ipv4.conf.${br}.route_localnet`, '1'));

    const hostVeth = `veth${crypto.randomBytes(4).toString('hex')}`;
    if (await ctrNl.getLink(per.interface_name)) throw new NetavarkError(`create veth pair: interface ${per.interface_name} already exists on container namespace`);
    await step('create veth pair', () => hostNl.addVeth(hostVeth, per.interface_name, { peerNetns: a.netns, mtu, peerMac: per.static_mac }));
    undo.push(() => removeLinkIn(a.netns!, per.interface_name));
    await step(`set ${hostVeth} master ${br}`, () => hostNl.setMaster(hostVeth, br));
    await step(`set ${hostVeth} up`, () => hostNl.setUp(hostVeth, true));
    const ips = per.static_ips ?? [];
    if (ips.some((ip) => familyOf(ip) === 6)) {
      await step(`set sysctl net.ipv6.conf.${per.interface_name}.accept_dad`, () => ctrSys.set(`net.ipv6.conf.${per.interface_name}.accept_dad`, '0'));
      await step(`set sysctl net.ipv6.conf.${per.interface_name}.autoconf`, () => ctrSys.set(`net.ipv6.conf.${per.interface_name}.autoconf`, '0'));
    }
    return await configureInside(ctrNl, info, per, log);
  } finally {
    hostNl.close();
    ctrNl.close();
  }
}

/** Addresses, link up, loopback and the default routes inside; the status of the interface. */
async function configureInside(ctrNl: RtnlClient, info: NetworkInfo, per: PerNetwork, log: ReturnType<typeof logger>): Promise<StatusBlock> {
  const ips = per.static_ips ?? [];
  const subnets: StatusBlock['interfaces'][string]['subnets'] = [];
  for (const ip of ips) {
    const s = subnetOf(info, ip)!;
    await step(`add ip address ${ip}/${prefixOf(s)} to ${per.interface_name}`, () => ctrNl.addAddress(per.interface_name, `${ip}/${prefixOf(s)}`));
    subnets.push({ ...(s.gateway ? { gateway: s.gateway } : {}), ipnet: `${ip}/${prefixOf(s)}` }); // netavark's key order
  }
  await step(`set ${per.interface_name} up`, () => ctrNl.setUp(per.interface_name, true));
  await step('set lo up', () => ctrNl.setUp('lo', true));
  if (!info.internal) {
    for (const family of [4, 6] as Family[]) {
      const s = ips.map((ip) => subnetOf(info, ip)!).find((x) => familyOf(x.subnet) === family && x.gateway);
      if (!s) continue;
      log('info', `Adding route (dest: ${family === 4 ? '0.0.0.0/0' : '::/0'} ,gw: ${s.gateway}, metric ${metricOf(info)})`);
      await step(`add default route via ${s.gateway}`, () => ctrNl.replaceRoute({ dst: 'default', family, gateway: s.gateway, dev: per.interface_name, priority: metricOf(info), protocol: 'static' }));
    }
  }
  const link = await ctrNl.getLink(per.interface_name);
  return { interfaces: { [per.interface_name]: { mac_address: per.static_mac ?? link?.mac ?? '', subnets } } };
}

async function setupMacvlan(a: NetavarkArgs, info: NetworkInfo, per: PerNetwork, undo: Array<() => Promise<void>>, log: ReturnType<typeof logger>): Promise<StatusBlock> {
  const hostNl = new RtnlClient('');
  const ctrNl = new RtnlClient(a.netns!);
  try {
    let parent = info.network_interface;
    if (!parent) {
      const def = (await hostNl.listRoutes(4)).find((r) => r.dst === 'default' || r.dst === '0.0.0.0/0');
      parent = def?.dev;
      if (!parent) throw new NetavarkError('get default interface: no default route to find the macvlan parent');
    }
    if (!(await hostNl.getLink(parent))) throw new NetavarkError(`get parent interface ${parent}: Netlink error: No such device (os error 19)`);
    const mode = (info.options?.mode ?? 'bridge') as MacvlanMode;
    if (!['bridge', 'private', 'vepa', 'passthru'].includes(mode)) throw new NetavarkError(`unknown macvlan mode "${mode}"`);
    if (await ctrNl.getLink(per.interface_name)) throw new NetavarkError(`create macvlan: interface ${per.interface_name} already exists on container namespace`);
    const tmp = `mv${crypto.randomBytes(4).toString('hex')}`;
    await step('create macvlan interface', () => hostNl.addMacvlan(tmp, parent!, mode, { netns: a.netns, mtu: mtuOf(info), mac: per.static_mac }));
    undo.push(async () => {
      await removeLinkIn(a.netns!, tmp);
      await removeLinkIn(a.netns!, per.interface_name);
    });
    await step(`rename ${tmp} to ${per.interface_name}`, () => ctrNl.rename(tmp, per.interface_name));
    return await configureInside(ctrNl, info, per, log);
  } finally {
    hostNl.close();
    ctrNl.close();
  }
}

/** The firewall rules one container needs on one bridge network. */
function containerRules(o: NetworkOptions, info: NetworkInfo): Array<{ family: Family; rules: Rule[]; net: NetavarkFwNetwork }> {
  const per = o.networks[info.name];
  return fwNetworks(info).map(({ family, net }) => {
    const ip = (per.static_ips ?? []).find((x) => familyOf(x) === family);
    const rules = [...sharedRules(net.isolate), ...networkRules(net, family, dnsPort()), ...(ip && o.port_mappings?.length ? portRules(net, family, o.container_id, ip, o.port_mappings) : [])];
    return { family, rules, net };
  });
}

// --- commands ----------------------------------------------------------------------------

export async function setup(a: NetavarkArgs, o: NetworkOptions): Promise<Record<string, StatusBlock>> {
  const log = logger('firewall');
  if (!fs.existsSync(a.netns!)) throw new NetavarkError(`open netns ${a.netns}: No such file or directory (os error 2)`);
  const out: Record<string, StatusBlock> = {};
  const undo: Array<() => Promise<void>> = [];
  const done: NetworkInfo[] = [];
  // netavark names its firewall driver first, when any network needs one
  if (Object.keys(o.networks).some((n) => o.network_info[n].driver === 'bridge' && !o.network_info[n].internal)) log('info', 'Using iptables firewall driver');
  try {
    for (const [name, per] of Object.entries(o.networks)) {
      const info = { ...o.network_info[name], name };
      const block = info.driver === 'macvlan' ? await setupMacvlan(a, info, per, undo, logger('network::netlink')) : await setupBridge(a, o, info, per, undo, logger('network::netlink'));
      done.push(info);
      if (info.driver === 'bridge' && !info.internal) {
        await step('add firewall rules', () => firewallAdd(containerRules(o, info)));
      }
      if (wantDns(a, info)) await step('write aardvark-dns config', () => dnsAdd(a, o, info, per.static_ips ?? [], log));
      if (info.driver === 'bridge' && info.dns_enabled) {
        // as netavark 1.4: named whenever DNS is on, with or without an aardvark binary
        block.dns_search_domains = ['dns.podman'];
        block.dns_server_ips = (info.subnets ?? []).flatMap((s) => (s.gateway ? [s.gateway] : []));
      }
      out[name] = { ...(block.dns_search_domains ? { dns_search_domains: block.dns_search_domains, dns_server_ips: block.dns_server_ips } : {}), interfaces: block.interfaces };
    }
  } catch (err) {
    // undo: the networks done so far, then the pieces of the one that failed
    for (const info of done.reverse()) await teardownNetwork(a, o, info).catch(() => undefined);
    for (const u of undo.reverse()) await u().catch(() => undefined);
    throw err;
  }
  return out;
}

async function teardownNetwork(a: NetavarkArgs, o: NetworkOptions, info: NetworkInfo): Promise<void> {
  const per = o.networks[info.name];
  const log = logger('network');
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      errors.push(fail(what, err).message);
    }
  };
  if (wantDns(a, info)) await attempt('remove aardvark-dns entry', () => dnsRemove(a, o.container_id, info, log));
  if (fs.existsSync(a.netns!)) {
    await attempt(`delete interface ${per.interface_name}`, async () => {
      const ctrNl = new RtnlClient(a.netns!);
      try {
        await ctrNl.removeLink(per.interface_name);
      } finally {
        ctrNl.close();
      }
    });
  }
  if (info.driver === 'bridge' && info.network_interface) {
    const hostNl = new RtnlClient('');
    try {
      const br = await hostNl.getLink(info.network_interface);
      const ports = br ? (await hostNl.listLinks()).filter((l) => l.master === br.index).length : 0;
      const last = ports === 0;
      if (!info.internal) {
        const parts = containerRules(o, info).map(({ family, rules, net }) => {
          const mine = rules.filter((r) => r.chain === dnChain(net.name) || (r.spec.includes(`id: ${o.container_id}"`)));
          const drop = last ? rules.filter((r) => !sharedRules(net.isolate).some((s) => s.chain === r.chain && s.spec === r.spec)) : mine;
          return { family, rules: drop, dropChains: last ? [natChain(net.name), dnChain(net.name)] : [], dropIsolationJump: last && net.isolate };
        });
        await attempt('remove firewall rules', () => firewallDelete(parts));
      }
      if (br && last) await attempt(`delete bridge ${info.network_interface}`, () => hostNl.removeLink(info.network_interface!));
    } finally {
      hostNl.close();
    }
  }
  if (errors.length === 1) throw new NetavarkError(errors[0]);
  if (errors.length) throw new NetavarkError(`netavark encountered multiple errors:\n${errors.map((e) => `\t- ${e}`).join('\n')}`);
}

export async function teardown(a: NetavarkArgs, o: NetworkOptions): Promise<void> {
  const errors: string[] = [];
  for (const name of Object.keys(o.networks)) {
    try {
      await teardownNetwork(a, o, { ...o.network_info[name], name });
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (errors.length === 1) throw new NetavarkError(errors[0]);
  if (errors.length) throw new NetavarkError(`netavark encountered multiple errors:\n${errors.map((e) => `\t- ${e}`).join('\n')}`);
}

/** `update NETWORK --network-dns-servers a,b`: the DNS servers on line 1 of the network's aardvark file. */
async function update(a: NetavarkArgs): Promise<void> {
  await withAardvarkLock(a.config, async () => {
    const dir = path.join(a.config, 'aardvark-dns');
    const file = [path.join(dir, a.network!), path.join(dir, `${a.network}%int`)].find((f) => fs.existsSync(f));
    if (!file) throw new NetavarkError(`update network ${a.network}: no aardvark-dns config for it (no running container on a DNS-enabled network)`);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines[0] = `${lines[0].split(' ')[0]}${a.dnsServers!.length ? ` ${a.dnsServers!.join(',')}` : ''}`;
    fs.writeFileSync(file, lines.join('\n'));
  });
  const pid = aardvarkPid(a.config);
  if (pid) process.kill(pid, 'SIGHUP');
}

export function versionJson(): string {
  return `${JSON.stringify({ version: NETAVARK_VERSION, commit: `burrow ${VERSION}`, build_time: '', target: `${process.arch === 'x64' ? 'x86_64' : process.arch}-unknown-linux-gnu` }, null, 2)}\n`;
}

/** Runs one command; resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  const out = (s: string) => process.stdout.write(s);
  try {
    const a = parseArgs(argv);
    if (a.command === 'help') {
      out(HELP);
      return 0;
    }
    if (a.command === 'version') {
      out(versionJson());
      return 0;
    }
    if (a.command === 'update') {
      await update(a);
      return 0;
    }
    const text = a.file ? fs.readFileSync(a.file, 'utf8') : fs.readFileSync(0, 'utf8');
    const o = parseOptions(text);
    if (a.command === 'setup') out(`${JSON.stringify(await setup(a, o))}\n`);
    else await teardown(a, o);
    return 0;
  } catch (err) {
    const msg = err instanceof NetavarkError ? err.message : fail('netavark', err).message;
    out(JSON.stringify({ error: msg }));
    return 1;
  }
}
