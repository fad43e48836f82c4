/**
 * Test support for the stack: builds frames as a container's kernel would send them (with full,
 * correct checksums unless told otherwise), decodes what the stack sends, and fakes the host's
 * sockets. Test code only.
 */
import { finish, pseudo4, pseudo6, sum16 } from '../wire/checksum.js';
import * as eth from '../wire/ethernet.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import * as vnet from '../wire/vnet.js';
import type { HostPing, HostPingHandlers, HostSockets, HostTcp, HostTcpHandlers, HostUdp, HostUdpHandlers } from './host.js';

/** A small seeded PRNG (mulberry32): reproducible fuzz corpora and network simulations. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const GUEST_MAC = eth.parseMac('02:00:00:00:00:aa');
export const OUR_MAC = eth.parseMac('52:55:0a:00:02:02');
export const a4 = (s: string): Buffer => ipv4.parseAddr(s)!;
export const a6 = (s: string): Buffer => ipv6.parseAddr(s)!;

/** vnet header + Ethernet header in front of `l3`. */
export function frame(etherType: number, l3: Buffer, vnetFlags = 0, dst: Buffer = OUR_MAC): Buffer {
  const out = Buffer.alloc(vnet.VNET_HDR_LEN + eth.ETH_HDR_LEN + l3.length);
  vnet.emit({ flags: vnetFlags, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }, out, 0);
  eth.emit({ dst, src: GUEST_MAC, etherType }, out, vnet.VNET_HDR_LEN);
  l3.copy(out, vnet.VNET_HDR_LEN + eth.ETH_HDR_LEN);
  return out;
}

/** An IP packet around `l4` with the L4 checksum at `csumAt` (-1: none) filled in. */
export function ipPacket(src: Buffer, dst: Buffer, proto: number, l4: Buffer, csumAt: number): Buffer {
  const v6 = src.length === 16;
  const hl = v6 ? 40 : 20;
  const p = Buffer.alloc(hl + l4.length);
  if (v6) ipv6.emit({ src, dst, nextHeader: proto, payloadLength: l4.length }, p);
  else ipv4.emit({ src, dst, protocol: proto, payloadLength: l4.length }, p);
  l4.copy(p, hl);
  if (csumAt >= 0) {
    p.writeUInt16BE(0, hl + csumAt);
    const ps = v6 ? pseudo6(p, 8, 24, proto, l4.length) : pseudo4(p, 12, 16, proto, l4.length);
    p.writeUInt16BE(finish(sum16(p, hl, p.length, ps)), hl + csumAt);
  }
  return p;
}

export function tcpFrame(src: Buffer, sport: number, dst: Buffer, dport: number, s: { seq: number; ack?: number; flags: number; window?: number; options?: tcp.TcpOptions; payload?: Buffer }): Buffer {
  const opts = s.options ?? {};
  const payload = s.payload ?? Buffer.alloc(0);
  const l4 = Buffer.alloc(tcp.TCP_HDR_LEN + tcp.optionsLength(opts) + payload.length);
  const hl = tcp.emit({ srcPort: sport, dstPort: dport, seq: s.seq, ack: s.ack ?? 0, flags: s.flags, window: s.window ?? 65535, options: opts }, l4);
  payload.copy(l4, hl);
  return frame(src.length === 16 ? eth.ETHERTYPE_IPV6 : eth.ETHERTYPE_IPV4, ipPacket(src, dst, ipv4.PROTO_TCP, l4, 16));
}

export function udpFrame(src: Buffer, sport: number, dst: Buffer, dport: number, payload: Buffer): Buffer {
  const l4 = Buffer.alloc(8 + payload.length);
  udp.emit({ srcPort: sport, dstPort: dport, payloadLength: payload.length }, l4);
  payload.copy(l4, 8);
  return frame(src.length === 16 ? eth.ETHERTYPE_IPV6 : eth.ETHERTYPE_IPV4, ipPacket(src, dst, ipv4.PROTO_UDP, l4, 6));
}

export interface Decoded {
  vnetFlags: number;
  dstMac: string;
  etherType: number;
  src?: string;
  dst?: string;
  proto?: number;
  /** L4 bytes (header + payload). */
  l4?: Buffer;
  tcp?: tcp.TcpHeader & { payload: Buffer };
  udp?: { srcPort: number; dstPort: number; payload: Buffer };
  /** The L4 checksum verifies (for partial frames: after completing it as the kernel would). */
  checksumOk?: boolean;
  raw: Buffer;
}

/** Decodes a frame the stack sent. */
export function decode(f: Buffer): Decoded {
  const v = vnet.parse(f);
  const e = f.subarray(vnet.VNET_HDR_LEN);
  const d: Decoded = { vnetFlags: v.flags, dstMac: eth.formatMac(eth.dst(e)), etherType: eth.etherType(e), raw: e };
  const p = e.subarray(eth.ETH_HDR_LEN);
  let off: number;
  let end: number;
  if (d.etherType === eth.ETHERTYPE_IPV4) {
    if (ipv4.check(p)) throw new Error(`bad IPv4 from the stack: ${ipv4.check(p)}`);
    d.src = ipv4.formatAddr(ipv4.src(p));
    d.dst = ipv4.formatAddr(ipv4.dst(p));
    d.proto = ipv4.protocol(p);
    off = ipv4.headerLength(p);
    end = ipv4.payloadEnd(p);
  } else if (d.etherType === eth.ETHERTYPE_IPV6) {
    if (ipv6.check(p)) throw new Error(`bad IPv6 from the stack: ${ipv6.check(p)}`);
    d.src = ipv6.formatAddr(ipv6.src(p));
    d.dst = ipv6.formatAddr(ipv6.dst(p));
    const u = ipv6.upper(p);
    d.proto = u.proto;
    off = u.off;
    end = ipv6.payloadEnd(p);
  } else return d;
  d.l4 = p.subarray(off, end);
  // ICMPv4 sums no pseudo-header (RFC 792); TCP, UDP and ICMPv6 do.
  const ps = d.proto === 1 ? 0 : d.etherType === eth.ETHERTYPE_IPV4 ? pseudo4(p, 12, 16, d.proto, end - off) : pseudo6(p, 8, 24, d.proto, end - off);
  if (v.flags & vnet.F_NEEDS_CSUM) {
    // The field holds the folded pseudo-header sum; the kernel would sum the rest from csum_start.
    const copy = Buffer.from(d.l4);
    const at = v.csumOffset;
    const seed = copy.readUInt16BE(at);
    copy.writeUInt16BE(0, at);
    const expectSeed = finish(ps) ^ 0xffff;
    copy.writeUInt16BE(finish(sum16(copy, 0, copy.length, seed)), at);
    d.checksumOk = seed === expectSeed && finish(sum16(copy, 0, copy.length, ps)) === 0;
  } else d.checksumOk = finish(sum16(p, off, end, ps)) === 0;
  if (d.proto === ipv4.PROTO_TCP) d.tcp = { ...tcp.parse(p, off), payload: p.subarray(tcp.parse(p, off).payloadOff, end) };
  if (d.proto === ipv4.PROTO_UDP) d.udp = { srcPort: udp.srcPort(p, off), dstPort: udp.dstPort(p, off), payload: p.subarray(off + 8, end) };
  return d;
}

export interface FakeTcp {
  family: 4 | 6;
  address: string;
  port: number;
  h: HostTcpHandlers;
  written: Buffer[];
  ended: boolean;
  destroyed: boolean | 'reset';
  paused: boolean;
  pendingBytes: number;
}

export interface FakeUdp {
  family: 4 | 6;
  address: string;
  port: number;
  h: HostUdpHandlers;
  sent: Buffer[];
  closed: boolean;
}

export interface FakePing {
  family: 4 | 6;
  h: HostPingHandlers;
  sent: Array<{ message: Buffer; address: string }>;
  closed: boolean;
}

/** HostSockets that records everything and lets the test play the host peers. */
export class FakeHost implements HostSockets {
  readonly tcp: FakeTcp[] = [];
  readonly udp: FakeUdp[] = [];
  readonly ping: FakePing[] = [];
  /** When false, openPing fails as on a host whose ping_group_range excludes the user. */
  pingAllowed = true;

  openPing(family: 4 | 6, h: HostPingHandlers): HostPing {
    if (!this.pingAllowed) throw Object.assign(new Error('socket(IPPROTO_ICMP): EACCES'), { code: 'EACCES' });
    const p: FakePing = { family, h, sent: [], closed: false };
    this.ping.push(p);
    return {
      send: (message, address) => {
        p.sent.push({ message: Buffer.from(message), address });
      },
      close: () => {
        p.closed = true;
      },
    };
  }

  connectTcp(family: 4 | 6, address: string, port: number, h: HostTcpHandlers): HostTcp {
    const s: FakeTcp = { family, address, port, h, written: [], ended: false, destroyed: false, paused: false, pendingBytes: 0 };
    this.tcp.push(s);
    return FakeHost.wrap(s);
  }

  static wrap(s: FakeTcp): HostTcp {
    return {
      write: (d) => {
        s.written.push(Buffer.from(d));
      },
      end: () => {
        s.ended = true;
      },
      destroy: (reset) => {
        s.destroyed = reset ? 'reset' : true;
      },
      pause: () => {
        s.paused = true;
      },
      resume: () => {
        s.paused = false;
      },
      pending: () => s.pendingBytes,
    };
  }

  openUdp(family: 4 | 6, address: string, port: number, h: HostUdpHandlers): HostUdp {
    const s: FakeUdp = { family, address, port, h, sent: [], closed: false };
    this.udp.push(s);
    return {
      send: (d) => {
        s.sent.push(Buffer.from(d));
      },
      close: () => {
        s.closed = true;
      },
    };
  }
}
