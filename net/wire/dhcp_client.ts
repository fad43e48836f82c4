/**
 * DHCPv4 as a client needs it (RFC 2131, options RFC 2132, classless routes RFC 3442): the
 * messages a client sends, the server's replies parsed with every option, the lease those give,
 * and the IPv4/UDP framing a packet socket needs before the interface has an address. Pure code;
 * a malformed reply is a reason string, never an exception.
 */
import { finish, pseudo4, sum16 } from './checksum.js';
import { ACK, CLIENT_PORT, DHCP_FIXED_LEN, NAK, OFFER, SERVER_PORT } from './dhcp.js';
import * as ipv4 from './ipv4.js';
import * as udp from './udp.js';

const MAGIC = 0x63825363;
export const BROADCAST_FLAG = 0x8000;

/** Option codes used here. */
export const OPT = { subnetMask: 1, router: 3, dns: 6, hostName: 12, domainName: 15, staticRoutes: 33, requestedIp: 50, leaseTime: 51, messageType: 53, serverId: 54, paramRequest: 55, renewalTime: 58, rebindingTime: 59, clientId: 61, classlessRoutes: 121 } as const;

export interface ClientMessage {
  type: number;
  xid: number;
  chaddr: Uint8Array;
  /** The client's address while bound, renewing or rebinding, and in a RELEASE. */
  ciaddr?: Uint8Array;
  broadcast?: boolean;
  /** Option 61's value, type byte included. */
  clientId?: Uint8Array;
  requestedIp?: Uint8Array;
  serverId?: Uint8Array;
  paramRequest?: number[];
  /** Further options, in order (the netconf's `provide`). */
  options?: Array<[number, Uint8Array]>;
  secs?: number;
}

/** A BOOTREQUEST for `m`, padded to 300 bytes as BOOTP servers expect. */
export function buildClientMessage(m: ClientMessage): Buffer {
  const opts: Array<[number, Uint8Array]> = [[OPT.messageType, Uint8Array.of(m.type)]];
  if (m.clientId) opts.push([OPT.clientId, m.clientId]);
  if (m.requestedIp) opts.push([OPT.requestedIp, m.requestedIp]);
  if (m.serverId) opts.push([OPT.serverId, m.serverId]);
  if (m.paramRequest?.length) opts.push([OPT.paramRequest, Uint8Array.from(m.paramRequest)]);
  for (const o of m.options ?? []) opts.push(o);
  let len = DHCP_FIXED_LEN + 1;
  for (const [, v] of opts) {
    if (v.length > 255) throw new RangeError(`a DHCP option value is at most 255 bytes (${v.length})`);
    len += 2 + v.length;
  }
  const b = Buffer.alloc(Math.max(len, 300));
  b[0] = 1; // BOOTREQUEST
  b[1] = 1; // Ethernet
  b[2] = 6;
  b.writeUInt32BE(m.xid >>> 0, 4);
  b.writeUInt16BE(Math.min(m.secs ?? 0, 0xffff), 8);
  b.writeUInt16BE(m.broadcast ? BROADCAST_FLAG : 0, 10);
  if (m.ciaddr) b.set(m.ciaddr.subarray(0, 4), 12);
  b.set(m.chaddr.subarray(0, 6), 28);
  b.writeUInt32BE(MAGIC, 236);
  let i = DHCP_FIXED_LEN;
  for (const [code, v] of opts) {
    b[i] = code;
    b[i + 1] = v.length;
    b.set(v, i + 2);
    i += 2 + v.length;
  }
  b[i] = 255;
  return b;
}

export interface ServerReply {
  type: number;
  xid: number;
  flags: number;
  yiaddr: Buffer;
  chaddr: Buffer;
  options: Map<number, Buffer>;
}

/** A BOOTREPLY, or why it is not one. Options repeated in the message are concatenated (RFC 3396). */
export function parseReply(b: Buffer): ServerReply | string {
  if (b.length < DHCP_FIXED_LEN) return 'truncated';
  if (b[0] !== 2) return 'not a reply';
  if (b.readUInt32BE(236) !== MAGIC) return 'bad magic cookie';
  const options = new Map<number, Buffer>();
  let i = DHCP_FIXED_LEN;
  let ended = false;
  while (i < b.length) {
    const code = b[i];
    if (code === 255) {
      ended = true;
      break;
    }
    if (code === 0) {
      i++;
      continue;
    }
    if (i + 1 >= b.length || i + 2 + b[i + 1] > b.length) return 'option runs past the end';
    const v = b.subarray(i + 2, i + 2 + b[i + 1]);
    const had = options.get(code);
    options.set(code, had ? Buffer.concat([had, v]) : Buffer.from(v));
    i += 2 + b[i + 1];
  }
  if (!ended) return 'no end option';
  const t = options.get(OPT.messageType);
  if (!t || t.length !== 1) return 'no message type';
  return { type: t[0], xid: b.readUInt32BE(4), flags: b.readUInt16BE(10), yiaddr: Buffer.from(b.subarray(16, 20)), chaddr: Buffer.from(b.subarray(28, 34)), options };
}

export interface Route4 {
  dst: string;
  gw?: string;
}

export interface Lease {
  address: string;
  prefix: number;
  gateway?: string;
  serverId: string;
  /** Seconds from the ACK. */
  leaseS: number;
  t1S: number;
  t2S: number;
  routes: Route4[];
  dns: string[];
}

const u32 = (v: Buffer | undefined): number | undefined => (v && v.length === 4 ? v.readUInt32BE(0) : undefined);

function prefixOf(mask: Buffer): number | null {
  const m = mask.readUInt32BE(0);
  const p = 32 - Math.log2((~m >>> 0) + 1);
  return Number.isInteger(p) ? p : null;
}

/**
 * The lease an ACK gives, as the reference's plugin reads it: the address and option 1; the
 * gateway from the first router; routes from option 121, or else option 33 plus a default route
 * through the router; T1 and T2 from options 58 and 59, or 50 % and 87.5 % of the lease, an
 * out-of-order pair falling back to those.
 */
export function leaseOf(r: ServerReply): Lease | string {
  const mask = r.options.get(OPT.subnetMask);
  if (!mask || mask.length !== 4) return 'DHCP option Subnet Mask not found in DHCPACK';
  const prefix = prefixOf(mask);
  if (prefix === null) return `DHCP subnet mask ${ipv4.formatAddr(mask)} is not contiguous`;
  const sid = r.options.get(OPT.serverId);
  if (!sid || sid.length !== 4) return 'DHCP option Server Identifier not found';
  const leaseS = u32(r.options.get(OPT.leaseTime)) ?? 3600;
  if (leaseS === 0) return 'DHCP lease time is 0';
  let t1S = u32(r.options.get(OPT.renewalTime)) ?? Math.floor(leaseS / 2);
  let t2S = u32(r.options.get(OPT.rebindingTime)) ?? Math.floor(leaseS * 0.875);
  if (!(t2S > 0 && t2S < leaseS)) t2S = Math.floor(leaseS * 0.875);
  if (!(t1S > 0 && t1S < t2S)) t1S = Math.floor(leaseS / 2);
  const routerOpt = r.options.get(OPT.router);
  const gateway = routerOpt && routerOpt.length >= 4 ? ipv4.formatAddr(routerOpt) : undefined;
  let routes: Route4[];
  const classless = r.options.get(OPT.classlessRoutes);
  const parsed = classless ? parseClasslessRoutes(classless) : null;
  if (parsed) routes = parsed;
  else {
    routes = [];
    const st = r.options.get(OPT.staticRoutes);
    for (let i = 0; st && i + 8 <= st.length; i += 8) routes.push({ dst: `${ipv4.formatAddr(st, i)}/${classfulPrefix(st[i])}`, gw: ipv4.formatAddr(st, i + 4) });
    if (gateway) routes.push({ dst: '0.0.0.0/0', gw: gateway });
  }
  const dnsOpt = r.options.get(OPT.dns);
  const dns: string[] = [];
  for (let i = 0; dnsOpt && i + 4 <= dnsOpt.length; i += 4) dns.push(ipv4.formatAddr(dnsOpt, i));
  return { address: ipv4.formatAddr(r.yiaddr), prefix, gateway, serverId: ipv4.formatAddr(sid), leaseS, t1S, t2S, routes, dns };
}

function classfulPrefix(first: number): number {
  return first < 128 ? 8 : first < 192 ? 16 : 24;
}

/** Option 121 (RFC 3442): width, significant octets, router; null when malformed. */
export function parseClasslessRoutes(v: Buffer): Route4[] | null {
  const out: Route4[] = [];
  let i = 0;
  while (i < v.length) {
    const width = v[i];
    if (width > 32) return null;
    const octets = Math.ceil(width / 8);
    if (i + 1 + octets + 4 > v.length) return null;
    const dst = Buffer.alloc(4);
    v.copy(dst, 0, i + 1, i + 1 + octets);
    const gw = v.subarray(i + 1 + octets, i + 5 + octets);
    const via = ipv4.formatAddr(gw);
    out.push(via === '0.0.0.0' ? { dst: `${ipv4.formatAddr(dst)}/${width}` } : { dst: `${ipv4.formatAddr(dst)}/${width}`, gw: via });
    i += 5 + octets;
  }
  return out;
}

/** An IPv4/UDP packet from port 68 to port 67 of `dst` with `payload` (for a packet socket). */
export function frameToServer(payload: Buffer, src: Uint8Array = Buffer.alloc(4), dst: Uint8Array = Buffer.from([255, 255, 255, 255])): Buffer {
  const out = Buffer.alloc(ipv4.IPV4_HDR_LEN + udp.UDP_HDR_LEN + payload.length);
  ipv4.emit({ src, dst, protocol: ipv4.PROTO_UDP, payloadLength: udp.UDP_HDR_LEN + payload.length, ttl: 64 }, out, 0);
  const u = ipv4.IPV4_HDR_LEN;
  udp.emit({ srcPort: CLIENT_PORT, dstPort: SERVER_PORT, payloadLength: payload.length }, out, u);
  payload.copy(out, u + udp.UDP_HDR_LEN);
  const l4 = udp.UDP_HDR_LEN + payload.length;
  const sum = finish(sum16(out, u, u + l4, pseudo4(out, 12, 16, ipv4.PROTO_UDP, l4)));
  out.writeUInt16BE(sum === 0 ? 0xffff : sum, u + 6);
  return out;
}

/** The DHCP payload of an IPv4/UDP packet to port 68, or why it is not one (the packet socket's filter already checked the port). */
export function payloadToClient(pkt: Buffer): Buffer | string {
  const bad = ipv4.check(pkt);
  if (bad) return `ip: ${bad}`;
  if (ipv4.protocol(pkt) !== ipv4.PROTO_UDP) return 'not udp';
  const h = ipv4.headerLength(pkt);
  const end = Math.min(ipv4.payloadEnd(pkt), pkt.length);
  const badUdp = udp.check(pkt, h, end);
  if (badUdp) return `udp: ${badUdp}`;
  if (udp.dstPort(pkt, h) !== CLIENT_PORT) return 'not to port 68';
  return pkt.subarray(h + udp.UDP_HDR_LEN, h + udp.length(pkt, h));
}

export { ACK, NAK, OFFER };
