/**
 * Networks as CNI conflists, pure: the bridge and macvlan conflists podman's CNI backend writes,
 * what `network inspect` shows of a conflist, the static addresses a network can give, and the
 * parsing of --gateway and --ip-range. The store (runtime/network/networks.ts) reads and writes them.
 */
import crypto from 'node:crypto';
import { BurrowError } from '../../native/errors.js';
import type { NetworkConfigList, PluginConf } from '../../net/cni/types.js';
import {
  contains, formatCidr, formatIp, lastOf, networkOf, parseCidr, parseIp, parseRange, usableRange, type Cidr,
} from '../../net/ip/addr.js';
import { canonicalizeRange } from '../../net/ipam/allocator.js';

/**
 * Versions burrow writes into new conflists: "cniVersion" 1.0.0 (what podman 4's libcni and the
 * Debian reference plugins speak) and "cniVersions" adding 1.1.0, which burrow's runtime picks
 * when every plugin of the chain supports it (GC, STATUS).
 */
export const CONFLIST_VERSION = '1.0.0';
export const CONFLIST_VERSIONS = ['1.0.0', '1.1.0'];

export class NetworkError extends BurrowError {}

export interface CreateOptions {
  driver?: string;
  subnets?: string[];
  gateways?: string[];
  ipRanges?: string[];
  ipv6?: boolean;
  internal?: boolean;
  /** -o key=value */
  options?: Record<string, string>;
  labels?: Record<string, string>;
  /** host-local (default), dhcp (refused: not supported) or none */
  ipamDriver?: string;
  /** --disable-dns: no dnsname entry (bridge networks get one by default, as podman's do). */
  disableDns?: boolean;
}

/** The search domain of container names, as podman's (containers/dnsname and aardvark-dns). */
export const DNS_DOMAIN = 'dns.podman';

/** A prefix routed on the host, and the interface it goes out of. */
export interface HostRoute {
  cidr: Cidr;
  dev: string;
}

/** What `create` needs to know about the host's links (macvlan parents). */
export interface HostLink {
  name: string;
  kind: string;
  mode?: string;
}

export interface SubnetInfo {
  subnet: string;
  gateway?: string;
  lease_range?: { start_ip: string; end_ip: string };
}

/** The podman-shaped description `ls --format json` and `inspect` print. */
export interface NetworkInfo {
  name: string;
  id: string;
  driver: string;
  network_interface?: string;
  created?: string;
  subnets: SubnetInfo[];
  ipv6_enabled: boolean;
  internal: boolean;
  dns_enabled: boolean;
  labels?: Record<string, string>;
  options?: Record<string, string>;
  ipam_options: { driver: string };
  /** Where it is defined; absent for the built-in default network. */
  file?: string;
  default?: boolean;
  /** The default network only: why it is the default (and why its subnet, when burrow chose one). */
  default_reason?: string;
}

/** podman's CNI backend derives the network ID from the name. */
export function networkId(name: string): string {
  return crypto.createHash('sha256').update(name).digest('hex');
}

export interface HostLocalRange {
  subnet: string;
  gateway?: string;
  rangeStart?: string;
  rangeEnd?: string;
}

/** The main (interface-creating) plugin of a list: the first one. */
export function mainPlugin(list: NetworkConfigList): PluginConf {
  return list.plugins[0];
}

export function ipamRanges(plugin: PluginConf): HostLocalRange[] {
  const ipam = plugin.ipam as { ranges?: HostLocalRange[][]; subnet?: string; gateway?: string; rangeStart?: string; rangeEnd?: string } | undefined;
  if (!ipam) return [];
  const out: HostLocalRange[] = [];
  if (typeof ipam.subnet === 'string') out.push({ subnet: ipam.subnet, gateway: ipam.gateway, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd });
  for (const set of Array.isArray(ipam.ranges) ? ipam.ranges : []) {
    for (const r of Array.isArray(set) ? set : []) if (r && typeof r.subnet === 'string') out.push(r);
  }
  return out;
}

/**
 * Refuses a static --ip that the network's host-local ranges cannot give, before any plugin runs,
 * with podman's reason. Networks without host-local ranges (dhcp, static) are left to their plugin.
 */
export function checkStaticIp(list: NetworkConfigList, ip: string): void {
  const ranges = ipamRanges(mainPlugin(list));
  if (!ranges.length) return;
  let addr;
  try {
    addr = parseIp(ip);
  } catch {
    throw new NetworkError('EINVAL', `invalid static ip "${ip}"`);
  }
  const parsed = ranges.flatMap((r) => {
    try {
      return [canonicalizeRange(r)];
    } catch {
      return []; // a broken range: the plugin will say so
    }
  });
  const inSubnet = parsed.filter((r) => contains(r.subnet, addr));
  if (!inSubnet.length) throw new NetworkError('EINVAL', `requested static ip ${ip} not in any subnet on network ${list.name}`);
  if (!inSubnet.some((r) => addr.value >= r.rangeStart.value && addr.value <= r.rangeEnd.value)) {
    throw new NetworkError('EINVAL', `requested static ip ${ip} is outside the range ${inSubnet.map((r) => `${formatIp(r.rangeStart)}-${formatIp(r.rangeEnd)}`).join(', ')} of network ${list.name}`);
  }
  if (inSubnet.some((r) => r.gateway.value === addr.value)) throw new NetworkError('EINVAL', `requested static ip ${ip} is the gateway of network ${list.name}`);
}

/** Describes a conflist in podman's terms. Works for lists burrow did not write. */
export function describe(list: NetworkConfigList, isDefault = false): NetworkInfo {
  const main = mainPlugin(list);
  const subnets: SubnetInfo[] = ipamRanges(main).map((r) => ({
    subnet: r.subnet,
    ...(r.gateway ? { gateway: r.gateway } : {}),
    ...(r.rangeStart || r.rangeEnd ? { lease_range: { start_ip: r.rangeStart ?? '', end_ip: r.rangeEnd ?? '' } } : {}),
  }));
  const args = (list.raw.args ?? {}) as { burrow_labels?: Record<string, string>; burrow_options?: Record<string, string>; burrow_created?: string };
  const iface = typeof main.bridge === 'string' ? main.bridge : typeof main.master === 'string' ? main.master : undefined;
  const ipamType = (main.ipam as { type?: string } | undefined)?.type ?? 'none';
  return {
    name: list.name,
    id: networkId(list.name),
    driver: main.type,
    ...(iface ? { network_interface: iface } : {}),
    ...(args.burrow_created ? { created: args.burrow_created } : {}),
    subnets,
    ipv6_enabled: subnets.some((s) => s.subnet.includes(':')),
    internal: main.type === 'bridge' ? main.isGateway !== true && main.ipMasq !== true : false,
    dns_enabled: list.plugins.some((p) => p.type === 'dnsname'),
    labels: args.burrow_labels ?? {},
    options: args.burrow_options ?? {},
    ipam_options: { driver: ipamType },
    ...(list.file ? { file: list.file } : {}),
    ...(isDefault ? { default: true } : {}),
  };
}

/** host-local IPAM for the ranges: a default route per family unless internal, and the store's dataDir if one is set. */
export function hostLocalIpam(ranges: HostLocalRange[], opts: { internal?: boolean; dataDir?: string | null }): Record<string, unknown> {
  const routes = opts.internal ? [] : [...new Set(ranges.map((r) => (r.subnet.includes(':') ? '::/0' : '0.0.0.0/0')))].map((dst) => ({ dst }));
  return { type: 'host-local', ...(routes.length ? { routes } : {}), ranges: ranges.map((r) => [r]), ...(opts.dataDir ? { dataDir: opts.dataDir } : {}) };
}

/** Builds the conflist of a bridge network. */
export function bridgeConflist(name: string, bridge: string, ranges: HostLocalRange[], opts: { internal?: boolean; mtu?: number; labels?: Record<string, string>; options?: Record<string, string>; created?: string; dataDir?: string | null; isolate?: boolean; dns?: boolean }): Record<string, unknown> {
  const bridgePlugin: Record<string, unknown> = {
    type: 'bridge',
    bridge,
    isGateway: !opts.internal,
    ipMasq: !opts.internal,
    hairpinMode: true,
    ...(opts.mtu ? { mtu: opts.mtu } : {}),
    capabilities: { ips: true },
    ipam: hostLocalIpam(ranges, opts),
  };
  return {
    cniVersion: CONFLIST_VERSION,
    cniVersions: CONFLIST_VERSIONS,
    name,
    plugins: [
      bridgePlugin,
      { type: 'portmap', capabilities: { portMappings: true } },
      // -o isolate=true (podman's): other networks' containers cannot reach this one's
      { type: 'firewall', backend: '', ...(opts.isolate ? { ingressPolicy: 'same-bridge' } : {}) },
      { type: 'tuning', capabilities: { mac: true } },
      // container names, as podman 4's CNI backend chains containers/dnsname (same entry)
      ...(opts.dns ? [{ type: 'dnsname', domainName: DNS_DOMAIN, capabilities: { aliases: true } }] : []),
    ],
    args: { burrow_labels: opts.labels ?? {}, burrow_options: opts.options ?? {}, ...(opts.created ? { burrow_created: opts.created } : {}) },
  };
}

/**
 * The conflist of a macvlan network, as podman writes one (macvlan + host-local), plus burrow's
 * `hostShim` (a host-side macvlan so the host can reach its containers; libnetwork#1915).
 */
export function macvlanConflist(name: string, ranges: HostLocalRange[], opts: { dhcp?: boolean; type?: 'macvlan' | 'ipvlan'; parent?: string; mode?: string; hostShim?: boolean; internal?: boolean; mtu?: number; labels?: Record<string, string>; options?: Record<string, string>; created?: string; dataDir?: string | null }): Record<string, unknown> {
  return {
    cniVersion: CONFLIST_VERSION,
    cniVersions: CONFLIST_VERSIONS,
    name,
    plugins: [{
      type: opts.type ?? 'macvlan',
      ...(opts.parent ? { master: opts.parent } : {}),
      ...(opts.mode ? { mode: opts.mode } : {}),
      ...(opts.mtu ? { mtu: opts.mtu } : {}),
      ...(opts.hostShim ? { hostShim: true } : {}),
      linkInContainer: false,
      // as podman 4.3 writes it: the daemon's default socket, no request or provide
      ipam: opts.dhcp ? { type: 'dhcp' } : hostLocalIpam(ranges, opts),
    }],
    args: { burrow_labels: opts.labels ?? {}, burrow_options: opts.options ?? {}, ...(opts.created ? { burrow_created: opts.created } : {}) },
  };
}

export function parseGateway(text: string, subnet: Cidr) {
  let gw;
  try {
    gw = parseIp(text);
  } catch (err) {
    throw new NetworkError('EINVAL', (err as Error).message);
  }
  if (!contains(subnet, gw)) throw new NetworkError('EINVAL', `gateway ${text} is not inside subnet ${formatCidr(subnet)}`);
  if (gw.value === networkOf(subnet).value || (gw.family === 4 && gw.value === lastOf(subnet).value)) {
    throw new NetworkError('EINVAL', `gateway ${text} is the network or broadcast address of ${formatCidr(subnet)}`);
  }
  return gw;
}

/**
 * --ip-range limits the lease range of the subnet that holds it: a CIDR gives its usable hosts
 * (as podman computes it), START-END is taken as written. Either is clamped to the subnet's hosts.
 */
export function applyIpRange(text: string, ranges: HostLocalRange[]): void {
  let r;
  try {
    r = parseRange(text);
  } catch (err) {
    throw new NetworkError('EINVAL', (err as Error).message);
  }
  const target = ranges.find((x) => {
    const c = parseCidr(x.subnet);
    return contains(c, r.start) && contains(c, r.end);
  });
  if (!target) throw new NetworkError('EINVAL', `ip range ${text} is not inside any --subnet`);
  const hosts = usableRange(parseCidr(target.subnet))!;
  let { start, end } = r;
  if (text.includes('/')) {
    const own = usableRange(parseCidr(text));
    if (own) ({ start, end } = own);
  }
  if (start.value < hosts.start.value) start = hosts.start;
  if (end.value > hosts.end.value) end = hosts.end;
  if (start.value > end.value) throw new NetworkError('EINVAL', `ip range ${text} holds no usable address of ${target.subnet}`);
  target.rangeStart = formatIp(start);
  target.rangeEnd = formatIp(end);
}
