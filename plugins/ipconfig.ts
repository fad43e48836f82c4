/**
 * Puts an IPAM result on a container interface (what the reference's ipam.ConfigureIface does):
 * IPv6 enabled where needed, addresses, link up, routes with the gateway of their family.
 * Shared by the plugins that create container interfaces (bridge, macvlan).
 */
import { CniCode, CniError, type Result } from '../net/cni/types.js';
import { canonical, formatCidr, formatIp, parseCidr, parseIp, type Ip } from '../net/ip/addr.js';
import type { NetlinkClient } from '../net/netlink/client.js';
import type { Sysctl } from '../net/netlink/sysctl.js';

/** Sets a sysctl if the key exists and differs; a key the kernel lacks (IPv6 off) is not an error. */
export function trySysctl(s: Sysctl, key: string, value: string): void {
  try {
    if (s.get(key) !== null && s.get(key) !== value) s.set(key, value);
  } catch {
    // not ours to fail on
  }
}

export interface ConfigureOptions {
  /** Add addresses with IFA_F_NODAD (no DAD wait). */
  noDad: boolean;
  /** Leave the link down (bridge's disableContainerInterface). */
  leaveDown?: boolean;
  /** Gateway per family for routes that name none. */
  gateways: Map<4 | 6, Ip>;
}

export async function configureIface(nl: NetlinkClient, s: Sysctl, ifname: string, result: Result, o: ConfigureOptions): Promise<void> {
  const ips = result.ips ?? [];
  if (ips.some((i) => i.address.includes(':'))) {
    for (const dev of ['lo', ifname]) trySysctl(s, `net/ipv6/conf/${dev}/disable_ipv6`, '0');
    trySysctl(s, `net/ipv6/conf/${ifname}/keep_addr_on_down`, '1');
  }
  // Addresses first, then the link up: with arp_notify=1 the kernel announces the link's IPv4
  // addresses when it comes up (and nothing when an address is added later), so a LAN peer with
  // a stale entry for a reused address learns the new MAC at once (test/macvlan_test.ts)
  for (const ip of ips) await nl.addAddress(ifname, ip.address, { noDad: o.noDad });
  if (!o.leaveDown) await nl.setUp(ifname, true);
  for (const r of result.routes ?? []) {
    const fam = parseCidr(r.dst).ip.family;
    const gw = r.gw ?? (o.gateways.get(fam) ? formatIp(o.gateways.get(fam)!) : undefined);
    try {
      await nl.addRoute({ dst: r.dst, gateway: gw, dev: ifname, priority: r.priority, table: r.table, mtu: r.mtu, advmss: r.advmss });
    } catch (err) {
      // A container on several networks gets a default route from each; as the reference
      // does, the first one wins and the duplicates are skipped.
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    }
  }
}

/** The first gateway of each family in a result. */
export function gatewaysOf(result: Result): Map<4 | 6, Ip> {
  const out = new Map<4 | 6, Ip>();
  for (const ip of result.ips ?? []) {
    if (!ip.gateway) continue;
    const g = parseIp(ip.gateway);
    if (!out.has(g.family)) out.set(g.family, g);
  }
  return out;
}

/**
 * CHECK of what configureIface did: every address of prevResult that belongs to interface
 * `ifaceIndex` (or names no interface) is on `ifname`, and every route of prevResult exists.
 * Throws CniError(999) naming the missing address or route.
 */
export async function verifyIface(nl: NetlinkClient, ifname: string, netns: string, prev: Result, ifaceIndex: number): Promise<void> {
  const addrs = new Set((await nl.listAddresses(ifname)).map((a) => a.cidr));
  for (const ip of prev.ips ?? []) {
    if (ip.interface !== undefined && ip.interface !== ifaceIndex) continue;
    if (!addrs.has(ip.address)) throw new CniError(CniCode.Internal, `address ${ip.address} not found on "${ifname}" in netns "${netns}"`);
  }
  const routes = await nl.listRoutes(undefined, 0);
  for (const r of prev.routes ?? []) {
    const c = parseCidr(r.dst);
    const dst = c.prefixLen === 0 ? 'default' : formatCidr(canonical(c));
    if (!routes.some((x) => x.dst === dst && x.family === c.ip.family)) throw new CniError(CniCode.Internal, `route to ${r.dst} not found in netns "${netns}"`);
  }
}
