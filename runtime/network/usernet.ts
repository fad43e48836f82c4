/**
 * Rootless networking for a namespace: starts burrow's userspace stack on a TAP inside the
 * container's user and network namespaces, configures the interface from inside (ip, through
 * the namespace helper), publishes ports and serves the API socket. Used by `burrow unshare
 * --network usernet`, `burrow usernet attach` and `burrow run`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { toolPath } from '../../native/system.js';
import { TapDevice } from '../../net/link/tap_device.js';
import { serveApi } from '../../net/usernet/api.js';
import { NodeHostSockets } from '../../net/usernet/host_sockets.js';
import { serveSlirpApi } from '../../net/usernet/slirp_api.js';
import { chooseHostPorts } from '../../net/ports/host_ports.js';
import { parsePortSpec, type PortSpec } from '../../net/ports/portspec.js';
import * as ipv4 from '../../net/wire/ipv4.js';
import * as ipv6 from '../../net/wire/ipv6.js';
import { Forwarder } from '../../net/usernet/forward.js';
import { Usernet, planAddressing, stackConfig, type UsernetPlan } from '../../net/usernet/usernet.js';
import { NamespaceSocketFactory, runInNamespaces, type NsTarget } from '../../userns/unshare.js';

export interface UsernetSetup {
  plan: UsernetPlan;
  tapName: string;
  /** Configure addresses, routes and MTU inside (like slirp4netns --configure). */
  configure: boolean;
  ports: PortSpec[];
  mapHostLoopback?: string;
  apiSocket?: string;
  /** The API socket's protocol: burrow's (one JSON line per request, many per connection) or slirp4netns 1.2's (net/usernet/slirp_api.ts). */
  apiProtocol?: 'burrow' | 'slirp4netns';
  /** Source addresses of the host sockets (slirp4netns --outbound-addr, --outbound-addr6). */
  outbound?: { v4?: string; v6?: string };
  /** No DNS forwarder at the DNS address (slirp4netns --disable-dns). */
  noDns?: boolean;
  /** The MAC of the TAP inside (slirp4netns --macaddress; with configure). */
  guestMac?: string;
  /**
   * Forwards never splice loopback clients through a socket made inside the namespace (that
   * needs a helper process): every connection takes the stack's path, as slirp4netns's do. For a
   * stack that may not exec (slirp4netns's --enable-sandbox and --enable-seccomp).
   */
  noSplice?: boolean;
}

export interface UsernetFlags {
  mtu: string;
  cidr: string;
  cidr6: string;
  ipv6: boolean;
  publish?: string[];
  mapHostLoopback?: string;
  apiSocket?: string;
  tap: string;
}

/** --map-host-loopback: an IP address, not the container's own. */
export function checkMapHostLoopback(addr: string, plan: UsernetPlan): void {
  if (!ipv4.parseAddr(addr) && !ipv6.parseAddr(addr)) throw new Error(`invalid --map-host-loopback "${addr}": expected an IP address`);
  if (addr === plan.guest4 || addr === plan.guest6) throw new Error('--map-host-loopback cannot be the container\'s own address');
}

/** The UsernetSetup for parsed flags. */
export async function usernetSetup(f: UsernetFlags, configure: boolean): Promise<UsernetSetup> {
  const mtu = Number(f.mtu);
  if (!Number.isInteger(mtu)) throw new Error(`invalid --mtu "${f.mtu}"`);
  const plan = planAddressing({ cidr4: f.cidr, cidr6: f.ipv6 ? f.cidr6 : null, mtu });
  const ports: PortSpec[] = await chooseHostPorts((f.publish ?? []).flatMap((p) => parsePortSpec(p)));
  if (f.mapHostLoopback) checkMapHostLoopback(f.mapHostLoopback, plan);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(f.tap)) throw new Error(`invalid --tap "${f.tap}": 1 to 15 of A-Z a-z 0-9 _ . -`);
  return { plan, tapName: f.tap, configure, ports, mapHostLoopback: f.mapHostLoopback, apiSocket: f.apiSocket };
}

export interface UsernetSession {
  usernet: Usernet;
  forwarder: Forwarder;
  /** Stops forwarding and the stack; idempotent. */
  stop(): void;
}

function ipTool(): string {
  const ip = toolPath('ip');
  if (!ip) throw new Error('ip (iproute2) not found: install iproute2');
  return ip;
}

/** The `ip -batch` lines that configure the TAP like slirp4netns --configure (plus IPv6). */
export function configureBatch(s: Pick<UsernetSetup, 'plan' | 'tapName' | 'guestMac'>): string {
  const p = s.plan;
  const lines = [
    'link set lo up',
    ...(s.guestMac ? [`link set dev ${s.tapName} address ${s.guestMac}`] : []),
    `link set dev ${s.tapName} mtu ${p.mtu} up`,
    `addr add ${p.guest4}/${p.prefix4} dev ${s.tapName}`,
    `route replace default via ${p.gateway4} dev ${s.tapName}`,
  ];
  // replace: the stack's router advertisement may have installed the IPv6 default route already
  if (p.guest6) lines.push(`addr add ${p.guest6}/${p.prefix6} dev ${s.tapName} nodad`, `route replace default via ${p.gateway6} dev ${s.tapName}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Starts the stack for the namespaces of `pid` (a process's, or a path's) on `tapFd` (which it
 * takes over). On failure everything started is stopped again before the error is thrown.
 */
/** Configures the TAP inside the namespace (addresses, routes, MAC: `ip -batch` run there). */
export async function configureGuest(target: NsTarget, s: Pick<UsernetSetup, 'plan' | 'tapName' | 'guestMac'>): Promise<void> {
  const r = await runInNamespaces(target, [ipTool(), '-batch', '-'], configureBatch(s));
  if (r.code !== 0) throw new Error(`configuring ${s.tapName} inside the namespace failed: ${r.stderr.trim() || `ip exited ${r.code}`}`);
}

export async function startUsernet(pid: NsTarget, tapFd: number, s: UsernetSetup): Promise<UsernetSession> {
  const config = stackConfig({ plan: s.plan, mapHostLoopback: s.mapHostLoopback });
  if (s.noDns) config.nameservers = {};
  const usernet = new Usernet(new TapDevice(tapFd), config, s.outbound ? new NodeHostSockets(undefined, s.outbound) : undefined);
  let factory: NamespaceSocketFactory | null = null;
  const forwarder = new Forwarder(usernet, s.noSplice ? null : async (family, port) => {
    factory ??= new NamespaceSocketFactory(pid);
    const addr = family === 4 ? s.plan.guest4 : s.plan.guest6;
    if (!addr) throw new Error('IPv6 is disabled');
    return factory.connect(family, port, addr);
  });
  let closeApi: (() => void) | null = null;
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    closeApi?.();
    forwarder.close();
    factory?.close();
    usernet.stop();
  };
  try {
    usernet.start();
    if (s.configure) await configureGuest(pid, s);
    for (const p of s.ports) await forwarder.add(p);
    if (s.apiSocket) {
      fs.mkdirSync(path.dirname(s.apiSocket), { recursive: true });
      if (s.apiProtocol === 'slirp4netns') closeApi = await serveSlirpApi(s.apiSocket, forwarder, s.plan.guest4);
      else closeApi = await serveApi(s.apiSocket, {
        forwarder,
        guest4: s.plan.guest4,
        stats: () => ({ link: usernet.linkStats(), stack: usernet.stack.stats, flows: usernet.stack.flowCount(), splice: forwarder.spliceCounts(), budget: { ...usernet.stack.budgets.usage(), peakBufferedBytes: usernet.stack.budgets.bytes.peak }, memory: process.memoryUsage() }),
      });
    }
  } catch (err) {
    stop();
    throw err;
  }
  return { usernet, forwarder, stop };
}
