/**
 * Where a packet goes: the stack's forwarding policy in one place (as passt's fwd.c).
 *
 * Theory of operation
 * -------------------
 * The container sees a small virtual network: its own address, the gateway (our router), the
 * DNS address, and optionally an address that maps to the host's loopback (podman's
 * host.containers.internal). Everything else it reaches as a remote host, through a host socket
 * the stack opens for it (socket-level NAT). {@link routeFromContainer} decides, for one packet:
 *  - `local`: one of our own addresses; the stack answers itself (echo, NDP);
 *  - `host`: open a host socket to this address and port (remote hosts, the host's nameserver
 *    for DNS, 127.0.0.1 / ::1 for the opt-in mapped address);
 *  - `dhcp`: the stack's DHCP server (only at the broadcast address or the gateway, port 67);
 *  - `refused`: with a reason, counted by the stack. Loopback, unspecified, multicast and
 *    broadcast destinations, v4-mapped and v4-compatible IPv6 (they would reach IPv4
 *    loopback), link-local, the container's own address and other on-link addresses are never
 *    sent to the host: on the host they would mean the host itself or its own LAN.
 * {@link visibleSource} is the reverse direction: the source address the container sees for a
 * client of a port forward (its real address, except loopback and the container's own address,
 * which become the mapped address or the gateway).
 * Pure code over Buffers; no sockets.
 */
import { formatAddr as fmt4 } from '../wire/ipv4.js';
import { formatAddr as fmt6 } from '../wire/ipv6.js';

export interface PolicyConfig {
  v4: { guest: Buffer; gateway: Buffer; dns: Buffer; prefixLength: number };
  v6?: { prefix: Buffer; prefixLength: number; guest: Buffer; gateway: Buffer; dns: Buffer; linkLocal: Buffer };
  /** Host nameservers the DNS address forwards to. */
  nameservers: { v4?: string; v6?: string };
  /** Addresses in the container's network that reach the host's loopback (opt-in). */
  mapHostLoopback?: { v4?: Buffer; v6?: Buffer };
}

export type Proto = 'tcp' | 'udp' | 'icmp';

export type Route =
  | { kind: 'local' }
  | { kind: 'dhcp' }
  | { kind: 'host'; family: 4 | 6; address: string; port: number }
  | { kind: 'refused'; reason: string };

export const DNS_PORT = 53;
const DHCP_SERVER_PORT = 67;

const zeroes = (b: Uint8Array, from: number, to: number) => {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
};

/** True when `a` lies in the first `len` bits of `net`. */
function inPrefix(a: Uint8Array, net: Uint8Array, len: number): boolean {
  const full = len >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== net[i]) return false;
  const rest = len & 7;
  if (!rest) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[full] & mask) === (net[full] & mask);
}

function nameserverRoute(ns: string | undefined, port: number): Route {
  if (port !== DNS_PORT) return { kind: 'refused', reason: 'dns-port' };
  if (!ns) return { kind: 'refused', reason: 'no-nameserver' };
  return { kind: 'host', family: ns.includes(':') ? 6 : 4, address: ns, port: DNS_PORT };
}

/** Our own IPv4 addresses (the ones the stack answers ARP and echo for). */
export function isOurV4(c: PolicyConfig, a: Uint8Array): boolean {
  const v = c.v4;
  const m = c.mapHostLoopback?.v4;
  return eq(a, v.gateway) || eq(a, v.dns) || (!!m && eq(a, m));
}

/** Our own IPv6 addresses (the ones the stack answers NDP and echo for). */
export function isOurV6(c: PolicyConfig, a: Uint8Array): boolean {
  const v = c.v6;
  if (!v) return false;
  const m = c.mapHostLoopback?.v6;
  return eq(a, v.gateway) || eq(a, v.dns) || eq(a, v.linkLocal) || (!!m && eq(a, m));
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A UDP datagram for our DHCP server: port 67 at the broadcast address or the gateway (RFC 2131 section 4.1). */
export function isDhcpRequest(c: PolicyConfig, dst: Uint8Array, port: number): boolean {
  return port === DHCP_SERVER_PORT && ((dst[0] & dst[1] & dst[2] & dst[3]) === 0xff || eq(dst, c.v4.gateway));
}

function route4(c: PolicyConfig, proto: Proto, dst: Uint8Array, port: number): Route {
  const v = c.v4;
  if (proto === 'udp' && isDhcpRequest(c, dst, port)) return { kind: 'dhcp' };
  if (isOurV4(c, dst)) {
    if (proto === 'icmp') return { kind: 'local' };
    if (eq(dst, v.dns)) return nameserverRoute(c.nameservers.v4 ?? c.nameservers.v6, port);
    if (c.mapHostLoopback?.v4 && eq(dst, c.mapHostLoopback.v4)) return { kind: 'host', family: 4, address: '127.0.0.1', port };
    return { kind: 'refused', reason: 'gateway' };
  }
  if (eq(dst, v.guest)) return { kind: 'refused', reason: 'self' };
  if (dst[0] === 0) return { kind: 'refused', reason: 'unspecified' };
  if (dst[0] === 127) return { kind: 'refused', reason: 'loopback' };
  if (dst[0] >= 224 && dst[0] < 240) return { kind: 'refused', reason: 'multicast' };
  if (dst[0] >= 240) return { kind: 'refused', reason: 'broadcast' };
  if (inPrefix(dst, v.guest, v.prefixLength)) return { kind: 'refused', reason: 'on-link' };
  return { kind: 'host', family: 4, address: fmt4(dst), port };
}

function route6(c: PolicyConfig, proto: Proto, dst: Uint8Array, port: number): Route {
  const v = c.v6;
  if (!v) return { kind: 'refused', reason: 'ipv6-disabled' };
  if (isOurV6(c, dst)) {
    if (proto === 'icmp') return { kind: 'local' };
    if (eq(dst, v.dns)) return nameserverRoute(c.nameservers.v6 ?? c.nameservers.v4, port);
    if (c.mapHostLoopback?.v6 && eq(dst, c.mapHostLoopback.v6)) return { kind: 'host', family: 6, address: '::1', port };
    return { kind: 'refused', reason: 'gateway' };
  }
  if (eq(dst, v.guest)) return { kind: 'refused', reason: 'self' };
  if (dst[0] === 0xff) return { kind: 'refused', reason: 'multicast' };
  if (dst[0] === 0xfe && (dst[1] & 0xc0) === 0x80) return { kind: 'refused', reason: 'link-local' };
  if (zeroes(dst, 0, 10)) {
    // ::, ::1, ::ffff:a.b.c.d (v4-mapped) and ::a.b.c.d (v4-compatible): the host's own
    // loopback or IPv4 addresses in disguise.
    if (zeroes(dst, 10, 16)) return { kind: 'refused', reason: 'unspecified' };
    if (zeroes(dst, 10, 15) && dst[15] === 1) return { kind: 'refused', reason: 'loopback' };
    return { kind: 'refused', reason: 'v4-mapped' };
  }
  if (inPrefix(dst, v.prefix, v.prefixLength)) return { kind: 'refused', reason: 'on-link' };
  return { kind: 'host', family: 6, address: fmt6(dst), port };
}

/** The route for a packet the container sends to `dst`:`port` (port 0 for ICMP). */
export function routeFromContainer(c: PolicyConfig, family: 4 | 6, proto: Proto, dst: Uint8Array, port: number): Route {
  return family === 4 ? route4(c, proto, dst, port) : route6(c, proto, dst, port);
}

/** A source address the container could legitimately use (not ours, loopback, multicast or unspecified). */
export function plausibleSource(c: PolicyConfig, family: 4 | 6, src: Uint8Array): boolean {
  if (family === 4) return src[0] !== 0 && src[0] !== 127 && src[0] < 224 && !isOurV4(c, src);
  return !isOurV6(c, src) && !zeroes(src, 0, 16) && src[0] !== 0xff;
}

/** The source the container sees for a forwarded client: loopback and the container's own address become the mapped address or the gateway. */
export function visibleSource(c: PolicyConfig, family: 4 | 6, client: Buffer): Buffer {
  if (family === 4) {
    const v = c.v4;
    if (client[0] === 127 || client[0] === 0 || eq(client, v.guest)) return c.mapHostLoopback?.v4 ?? v.gateway;
    return client;
  }
  const v = c.v6!;
  if (zeroes(client, 0, 15) || eq(client, v.guest)) return c.mapHostLoopback?.v6 ?? v.gateway;
  return client;
}
