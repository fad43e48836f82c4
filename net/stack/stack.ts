/**
 * burrow's userspace network stack: the container's default gateway, answering on its TAP.
 *
 * Theory of operation
 * -------------------
 * Frames from the container's TAP (each prefixed by a virtio-net header) go to `receive(frame,
 * now)`. The stack plays every host the container talks to:
 *  - L2/L3 services: ARP for the gateway/DNS addresses, IPv6 neighbor and router discovery (RA
 *    with prefix, MTU and RDNSS), DHCPv4 for guests that ask, ICMP/ICMPv6 echo for our addresses;
 *  - UDP: each (container address/port, destination address/port) is a flow with a connected host
 *    datagram socket; replies come back as frames. DNS to the DNS address goes to the host's
 *    nameserver (which may be 127.0.0.x: the host side sends it, podman#22044);
 *  - TCP: each connection is a {@link TcpConn} toward the container joined to a host socket.
 *    Outbound, the host connect completes before the SYN-ACK, so a refused connect is an RST.
 *    Inbound (port forwards, `acceptInbound`), the client's real address is the source the
 *    container sees.
 * Destinations that would reach the host's loopback (127/8, ::1, 0.0.0.0, ::, the gateway) are
 * refused unless they are the opt-in `mapHostLoopback` address (podman's host.containers.internal).
 *
 * Checksums: frames from the container that the kernel marked NEEDS_CSUM (partial: the kernel
 * built them and offloaded the sum to us) or DATA_VALID are trusted without summing the payload;
 * others (small frames, or raw frames a container forges) are verified and dropped when wrong.
 * Frames to the container carry NEEDS_CSUM with only the pseudo-header sum in the checksum field,
 * so the payload is never summed in JS (the kernel accepts CHECKSUM_PARTIAL for local delivery).
 *
 * Limits: at most `maxFlows` flows (TCP + UDP) and `maxHalfOpen` TCP handshakes in progress; a
 * SYN beyond them is answered with RST and counted. Idle flows expire. Malformed input is
 * dropped and counted in `stats` by reason; nothing a container sends throws out of `receive`.
 *
 * Time: every entry point takes `now` (ms). `pollAt()` is the next deadline over all flows and
 * `poll(now)` runs what is due; the driver keeps one timer.
 */
import * as arp from '../wire/arp.js';
import { fold, pseudo4, pseudo6, sum16, finish } from '../wire/checksum.js';
import * as dhcp from '../wire/dhcp.js';
import * as eth from '../wire/ethernet.js';
import * as icmp from '../wire/icmp.js';
import * as icmpv6 from '../wire/icmpv6.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import * as vnet from '../wire/vnet.js';
import type { HostPing, HostSockets, HostTcp, HostTcpHandlers, HostUdp } from './host.js';
import { TcpConn, type CloseReason, type OutSegment } from './tcp_conn.js';

export interface StackConfig {
  /** Link MTU of the container's TAP. */
  mtu: number;
  /** Our MAC: the gateway's, as the container sees it. */
  mac: Buffer;
  v4: { guest: Buffer; gateway: Buffer; dns: Buffer; prefixLength: number };
  v6?: { prefix: Buffer; prefixLength: number; guest: Buffer; gateway: Buffer; dns: Buffer; linkLocal: Buffer };
  /** Host nameservers the DNS address forwards to. */
  nameservers: { v4?: string; v6?: string };
  /** Addresses in the container's network that reach the host's loopback (opt-in). */
  mapHostLoopback?: { v4?: Buffer; v6?: Buffer };
  limits?: Partial<StackLimits>;
  /** 32-bit random numbers for initial sequence numbers and DHCP. */
  random?: () => number;
}

export interface StackLimits {
  maxFlows: number;
  maxHalfOpen: number;
  tcpRcvBufBytes: number;
  tcpSndBufBytes: number;
  tcpIdleMs: number;
  tcpFinTimeoutMs: number;
  udpIdleMs: number;
}

export const DEFAULT_LIMITS: StackLimits = {
  maxFlows: 4096,
  maxHalfOpen: 256,
  tcpRcvBufBytes: 4 << 20,
  tcpSndBufBytes: 4 << 20,
  tcpIdleMs: 7_200_000, // pasta's ACT_TIMEOUT
  tcpFinTimeoutMs: 60_000,
  udpIdleMs: 30_000, // nf_conntrack_udp_timeout
};

/** Sends one frame (virtio-net header first) to the container; parts are gathered. */
export type LinkSend = (parts: Buffer[]) => void;

interface TcpFlow {
  kind: 'tcp';
  key: string;
  conn: TcpConn;
  host: HostTcp | null;
  family: 4 | 6;
  /** Addresses/ports as the container sees them: ours (remote end) and the container's. */
  ourAddr: Buffer;
  ourPort: number;
  guestAddr: Buffer;
  guestPort: number;
  hostPaused: boolean;
  inbound: boolean;
}

interface UdpFlow {
  kind: 'udp';
  key: string;
  family: 4 | 6;
  ourAddr: Buffer;
  ourPort: number;
  guestAddr: Buffer;
  guestPort: number;
  /** Replies toward the host side: a connected socket (outbound) or the forward's listener. */
  send: (data: Buffer) => void;
  close: () => void;
  expires: number;
}

interface PingFlow {
  key: string;
  family: 4 | 6;
  remote: Buffer;
  guestAddr: Buffer;
  /** The container's echo identifier (the host socket's differs: the kernel owns it). */
  id: number;
  sock: HostPing;
  expires: number;
}

/** Echo flows idle this long are closed (pasta uses 60 s too). */
const PING_IDLE_MS = 60_000;

export interface StackStats {
  [reason: string]: number;
}

const V4_LOOPBACK_NET = 127;

export class Stack {
  readonly stats: StackStats = {};
  private readonly c: StackConfig;
  private readonly limits: StackLimits;
  private readonly send: LinkSend;
  private readonly host: HostSockets;
  private readonly random: () => number;
  private guestMac: Buffer = eth.BROADCAST;
  private readonly tcpFlows = new Map<string, TcpFlow>();
  private readonly udpFlows = new Map<string, UdpFlow>();
  private readonly pingFlows = new Map<string, PingFlow>();
  private halfOpen = 0;
  private readonly mss4: number;
  private readonly mss6: number;
  private readonly allNodes = ipv6.parseAddr('ff02::1')!;
  private ipId = 0;

  constructor(c: StackConfig, send: LinkSend, host: HostSockets) {
    this.c = c;
    this.limits = { ...DEFAULT_LIMITS, ...c.limits };
    this.send = send;
    this.host = host;
    this.random = c.random ?? (() => Math.floor(Math.random() * 0x100000000));
    this.mss4 = c.mtu - ipv4.IPV4_HDR_LEN - tcp.TCP_HDR_LEN;
    this.mss6 = c.mtu - ipv6.IPV6_HDR_LEN - tcp.TCP_HDR_LEN;
  }

  private count(reason: string): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + 1;
  }

  /** Number of live flows by protocol. */
  flowCount(): { tcp: number; udp: number; ping: number; halfOpen: number } {
    return { tcp: this.tcpFlows.size, udp: this.udpFlows.size, ping: this.pingFlows.size, halfOpen: this.halfOpen };
  }

  // ---- receive path --------------------------------------------------------------------------

  /** One frame from the TAP, virtio-net header first. Never throws on bad input. */
  receive(frame: Buffer, now: number): void {
    try {
      this.receiveFrame(frame, now);
    } catch (err) {
      // A bug, not bad input: count it, keep serving the other flows.
      this.count('internal-error');
      this.lastError = err;
    }
  }

  /** The last internal error caught by receive (for diagnostics). */
  lastError: unknown = null;

  private receiveFrame(frame: Buffer, now: number): void {
    if (vnet.check(frame)) return this.count('truncated-vnet');
    const trusted = (frame[0] & (vnet.F_NEEDS_CSUM | vnet.F_DATA_VALID)) !== 0 || frame[1] !== vnet.GSO_NONE;
    const f = frame.subarray(vnet.VNET_HDR_LEN);
    if (eth.check(f)) return this.count('truncated-ethernet');
    const type = eth.etherType(f);
    const l3 = f.subarray(eth.ETH_HDR_LEN);
    if (type === eth.ETHERTYPE_ARP) return this.receiveArp(f, l3);
    if (type === eth.ETHERTYPE_IPV4) return this.receiveIpv4(f, l3, trusted, now);
    if (type === eth.ETHERTYPE_IPV6) return this.receiveIpv6(f, l3, trusted, now);
    this.count('unknown-ethertype');
  }

  private learn(f: Buffer): void {
    const src = eth.src(f);
    if (src[0] & 1) return; // multicast source: bogus
    if (!this.guestMac.equals(src)) this.guestMac = Buffer.from(src);
  }

  private receiveArp(f: Buffer, l3: Buffer): void {
    if (arp.check(l3)) return this.count('bad-arp');
    const a = arp.parse(l3);
    if (a.op !== arp.OP_REQUEST) return;
    if (!this.isOurV4(a.targetIp)) return;
    this.learn(f);
    const out = Buffer.allocUnsafe(vnet.VNET_HDR_LEN + eth.ETH_HDR_LEN + arp.ARP_LEN);
    let o = this.emitVnet(out, 0, 0, 0);
    o += eth.emit({ dst: a.senderMac, src: this.c.mac, etherType: eth.ETHERTYPE_ARP }, out, o);
    arp.emit({ op: arp.OP_REPLY, senderMac: this.c.mac, senderIp: a.targetIp, targetMac: a.senderMac, targetIp: a.senderIp }, out, o);
    this.send([out]);
  }

  private isOurV4(a: Buffer): boolean {
    const v = this.c.v4;
    return a.equals(v.gateway) || a.equals(v.dns) || (!!this.c.mapHostLoopback?.v4 && a.equals(this.c.mapHostLoopback.v4));
  }

  private isOurV6(a: Buffer): boolean {
    const v = this.c.v6;
    if (!v) return false;
    return a.equals(v.gateway) || a.equals(v.dns) || a.equals(v.linkLocal) || (!!this.c.mapHostLoopback?.v6 && a.equals(this.c.mapHostLoopback.v6));
  }

  private receiveIpv4(f: Buffer, p: Buffer, trusted: boolean, now: number): void {
    const bad = ipv4.check(p);
    if (bad) return this.count(`ipv4-${bad}`);
    this.learn(f);
    const hl = ipv4.headerLength(p);
    const end = ipv4.payloadEnd(p);
    const proto = ipv4.protocol(p);
    const src = ipv4.src(p);
    const dst = ipv4.dst(p);
    if (proto === ipv4.PROTO_UDP) {
      if (udp.check(p, hl, end)) return this.count('udp-malformed');
      if (udp.dstPort(p, hl) === dhcp.SERVER_PORT) return this.receiveDhcp(p, hl + udp.UDP_HDR_LEN, hl + udp.length(p, hl), now);
    }
    if (!this.plausibleV4Source(src)) return this.count('ipv4-bad-source');
    if (dst[0] >= 224 || dst.equals(src)) return this.count('ipv4-not-unicast');
    if (proto === ipv4.PROTO_ICMP) return this.receiveIcmp4(p, hl, end, src, dst, now);
    // A zero UDP checksum means "none" in IPv4 (RFC 768); IPv6 has no such escape.
    const verify = !trusted && !(proto === ipv4.PROTO_UDP && udp.checksum(p, hl) === 0);
    this.receiveL4(4, proto, p, hl, end, src, dst, verify ? pseudo4(p, 12, 16, proto, end - hl) : null, now);
  }

  /**
   * UDP and TCP for both families, after the IP layer's checks. `pseudo` is the pseudo-header sum
   * when the L4 checksum must be verified, null when the kernel vouched for it (or there is none).
   */
  private receiveL4(family: 4 | 6, proto: number, p: Buffer, off: number, end: number, src: Buffer, dst: Buffer, pseudo: number | null, now: number): void {
    if (proto !== ipv4.PROTO_UDP && proto !== ipv4.PROTO_TCP) return this.count(`ipv${family}-unknown-protocol`);
    const name = proto === ipv4.PROTO_UDP ? 'udp' : 'tcp';
    if (proto === ipv4.PROTO_TCP && tcp.check(p, off, end)) return this.count('tcp-malformed');
    if (pseudo !== null && finish(sum16(p, off, end, pseudo)) !== 0) return this.count(`${name}-bad-checksum`);
    if (proto === ipv4.PROTO_UDP) this.receiveUdp(family, p, off, src, dst, now);
    else this.receiveTcp(family, p, off, end, src, dst, now);
  }

  private plausibleV4Source(src: Buffer): boolean {
    return src[0] !== 0 && src[0] !== V4_LOOPBACK_NET && src[0] < 224 && !this.isOurV4(src);
  }

  private receiveIpv6(f: Buffer, p: Buffer, trusted: boolean, now: number): void {
    if (!this.c.v6) return this.count('ipv6-disabled');
    const bad = ipv6.check(p);
    if (bad) return this.count(`ipv6-${bad}`);
    this.learn(f);
    const { proto, off } = ipv6.upper(p);
    const end = ipv6.payloadEnd(p);
    const src = ipv6.src(p);
    const dst = ipv6.dst(p);
    if (proto === ipv6.NH_ICMPV6) return this.receiveIcmp6(p, off, end, src, dst, now);
    if (dst[0] === 0xff) return this.count('ipv6-multicast');
    if (this.isOurV6(src) || src.every((x) => x === 0) || dst.equals(src)) return this.count('ipv6-bad-source');
    if (proto === ipv6.NH_UDP && udp.check(p, off, end)) return this.count('udp-malformed');
    this.receiveL4(6, proto, p, off, end, src, dst, trusted ? null : pseudo6(p, 8, 24, proto, end - off), now);
  }

  // ---- frames to the container ---------------------------------------------------------------

  private emitVnet(out: Buffer, flags: number, csumStart: number, csumOffset: number): number {
    return vnet.emit({ flags, gsoType: vnet.GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart, csumOffset }, out, 0);
  }

  /**
   * Builds and sends an IP packet to the container: headers in one new buffer, payload parts by
   * reference. For TCP/UDP the checksum is left partial (pseudo-header only, NEEDS_CSUM); other
   * protocols have their L4 checksum filled in by `l4` itself.
   */
  private emitIp(family: 4 | 6, src: Buffer, dst: Buffer, proto: number, l4Len: number, l4: (out: Buffer, off: number) => void, payload: Buffer[], payloadLen: number, l4Header = true): void {
    const iphl = family === 4 ? ipv4.IPV4_HDR_LEN : ipv6.IPV6_HDR_LEN;
    const base = vnet.VNET_HDR_LEN + eth.ETH_HDR_LEN;
    const out = Buffer.allocUnsafe(base + iphl + l4Len);
    const partial = l4Header && (proto === ipv4.PROTO_TCP || proto === ipv4.PROTO_UDP);
    this.emitVnet(out, partial ? vnet.F_NEEDS_CSUM : 0, eth.ETH_HDR_LEN + iphl, proto === ipv4.PROTO_TCP ? 16 : 6);
    eth.emit({ dst: this.guestMac, src: this.c.mac, etherType: family === 4 ? eth.ETHERTYPE_IPV4 : eth.ETHERTYPE_IPV6 }, out, vnet.VNET_HDR_LEN);
    const total = l4Len + payloadLen;
    if (family === 4) {
      this.ipId = (this.ipId + 1) & 0xffff;
      ipv4.emit({ src, dst, protocol: proto, payloadLength: total, id: this.ipId }, out, base);
    } else ipv6.emit({ src, dst, nextHeader: proto, payloadLength: total, hopLimit: proto === ipv6.NH_ICMPV6 ? 255 : 64 }, out, base); // NDP requires 255 (RFC 4861 section 7.1.2)
    const l4off = base + iphl;
    l4(out, l4off);
    if (partial) {
      const ps = family === 4 ? pseudo4(out, base + 12, base + 16, proto, total) : pseudo6(out, base + 8, base + 24, proto, total);
      out.writeUInt16BE(fold(ps), l4off + (proto === ipv4.PROTO_TCP ? 16 : 6));
    }
    this.send(payload.length ? [out, ...payload] : [out]);
  }

  // ---- ICMP ----------------------------------------------------------------------------------

  /**
   * Echo to another host: sent from an unprivileged ping socket, one per (destination, container
   * identifier); replies get the container's identifier back. Where the host forbids ping
   * sockets, the request is dropped and counted.
   */
  private forwardEcho(family: 4 | 6, msg: Buffer, guest: Buffer, dst: Buffer, now: number): void {
    const target = this.hostTarget(family, dst, 0);
    if (!target || target.family !== family || !this.host.openPing) return this.count('icmp-echo-refused-destination');
    const id = msg.readUInt16BE(4);
    const key = `${family}|${dst.toString('latin1')}|${id}`;
    let flow = this.pingFlows.get(key);
    if (!flow) {
      if (this.tcpFlows.size + this.udpFlows.size + this.pingFlows.size >= this.limits.maxFlows) return this.count('flow-limit');
      const f: PingFlow = { key, family, remote: Buffer.from(dst), guestAddr: Buffer.from(guest), id, sock: null as unknown as HostPing, expires: 0 };
      try {
        f.sock = this.host.openPing(family, { onReply: (m) => this.echoReply(f, m) });
      } catch {
        return this.count('icmp-echo-not-permitted');
      }
      this.pingFlows.set(key, (flow = f));
    }
    flow.expires = now + PING_IDLE_MS;
    flow.sock.send(Buffer.from(msg), target.address);
  }

  private echoReply(f: PingFlow, m: Buffer): void {
    if (!this.pingFlows.has(f.key) || m.length < 8) return;
    if (f.family === 4) {
      if (m[0] !== icmp.ECHO_REPLY) return;
      const rest = ((f.id << 16) | m.readUInt16BE(6)) >>> 0;
      const body = m.subarray(8);
      return this.emitIp(4, f.remote, f.guestAddr, ipv4.PROTO_ICMP, 8 + body.length, (out, o) => icmp.emit({ type: icmp.ECHO_REPLY, code: 0, rest, body }, out, o), [], 0, false);
    }
    if (m[0] !== icmpv6.ECHO_REPLY) return;
    this.emitIcmp6(f.remote, f.guestAddr, (out, o) => {
      m.copy(out, o);
      out.writeUInt16BE(f.id, o + 4);
      return m.length;
    });
  }

  private receiveIcmp4(p: Buffer, hl: number, end: number, src: Buffer, dst: Buffer, now: number): void {
    if (icmp.check(p, hl, end)) return this.count('icmp-malformed');
    if (icmp.type(p, hl) !== icmp.ECHO_REQUEST) return this.count('icmp-ignored');
    if (!this.isOurV4(dst)) return this.forwardEcho(4, p.subarray(hl, end), src, dst, now);
    const body = p.subarray(hl + 8, end);
    const rest = p.readUInt32BE(hl + 4);
    this.emitIp(4, dst, src, ipv4.PROTO_ICMP, 8 + body.length, (out, o) => icmp.emit({ type: icmp.ECHO_REPLY, code: 0, rest, body }, out, o), [], 0, false);
  }

  private receiveIcmp6(p: Buffer, off: number, end: number, src: Buffer, dst: Buffer, now: number): void {
    if (icmpv6.check(p, off, end, pseudo6(p, 8, 24, ipv6.NH_ICMPV6, end - off))) return this.count('icmpv6-malformed');
    const type = icmpv6.type(p, off);
    const v6 = this.c.v6!;
    if (type === icmpv6.NEIGHBOR_SOLICIT) {
      const target = icmpv6.nsTarget(p, off, end);
      if (!target || !this.isOurV6(target)) return;
      if (src.every((x) => x === 0)) return; // DAD probe for an address that is ours: stay silent
      return this.emitIcmp6(target, src, (out, o) => icmpv6.emitNeighborAdvert(target, this.c.mac, out, o));
    }
    if (type === icmpv6.ROUTER_SOLICIT) {
      const to = src.every((x) => x === 0) ? this.allNodes : src;
      return this.emitIcmp6(v6.linkLocal, to, (out, o) => icmpv6.emitRouterAdvert({ mac: this.c.mac, mtu: this.c.mtu, prefix: v6.prefix, prefixLength: v6.prefixLength, dns: v6.dns, lifetimeS: 1800 }, out, o));
    }
    if (type === icmpv6.ECHO_REQUEST) {
      if (!this.isOurV6(dst)) return this.forwardEcho(6, p.subarray(off, end), src, dst, now);
      const body = p.subarray(off + 4, end);
      return this.emitIcmp6(dst, src, (out, o) => {
        out[o] = icmpv6.ECHO_REPLY;
        out[o + 1] = 0;
        out.set(body, o + 4);
        return 4 + body.length;
      });
    }
    this.count('icmpv6-ignored');
  }

  private emitIcmp6(src: Buffer, dst: Buffer, body: (out: Buffer, off: number) => number): void {
    const scratch = Buffer.alloc(1500);
    const len = body(scratch, 0);
    this.emitIp(6, src, dst, ipv6.NH_ICMPV6, len, (out, o) => {
      scratch.copy(out, o, 0, len);
      const base = vnet.VNET_HDR_LEN + eth.ETH_HDR_LEN;
      icmpv6.setChecksum(out, o, o + len, pseudo6(out, base + 8, base + 24, ipv6.NH_ICMPV6, len));
    }, [], 0, false);
  }

  // ---- DHCP ----------------------------------------------------------------------------------

  private receiveDhcp(p: Buffer, off: number, end: number, now: number): void {
    if (dhcp.check(p, off, end)) return this.count('dhcp-malformed');
    const r = dhcp.parse(p, off, end);
    const v4 = this.c.v4;
    let type: number;
    if (r.type === dhcp.DISCOVER) type = dhcp.OFFER;
    else if (r.type === dhcp.REQUEST) {
      const asked = r.requestedIp ?? r.ciaddr;
      type = asked.equals(v4.guest) && (!r.serverId || r.serverId.equals(v4.gateway)) ? dhcp.ACK : dhcp.NAK;
      if (r.serverId && !r.serverId.equals(v4.gateway)) return; // the client chose another server
    } else return this.count('dhcp-ignored');
    const mask = Buffer.alloc(4);
    mask.writeUInt32BE(v4.prefixLength === 0 ? 0 : (0xffffffff << (32 - v4.prefixLength)) >>> 0);
    const body = Buffer.alloc(548);
    const len = dhcp.emitReply({ type, xid: r.xid, flags: r.flags, chaddr: r.chaddr, yiaddr: type === dhcp.NAK ? Buffer.alloc(4) : v4.guest, server: v4.gateway, netmask: mask, router: v4.gateway, dns: [v4.dns], mtu: this.c.mtu, leaseS: 3600 }, body, 0);
    const saved = this.guestMac;
    this.guestMac = Buffer.from(r.chaddr); // reply to the client's own MAC even before it has an address
    this.emitIp(4, v4.gateway, Buffer.from([255, 255, 255, 255]), ipv4.PROTO_UDP, udp.UDP_HDR_LEN, (out, o) => udp.emit({ srcPort: dhcp.SERVER_PORT, dstPort: dhcp.CLIENT_PORT, payloadLength: len }, out, o), [body.subarray(0, len)], len);
    if (saved !== eth.BROADCAST) this.guestMac = saved;
    void now;
  }

  // ---- destinations --------------------------------------------------------------------------

  /** Where a container packet to `dst`:`port` goes on the host, or null when refused. */
  private hostTarget(family: 4 | 6, dst: Buffer, port: number): { family: 4 | 6; address: string; port: number } | null {
    const m = this.c.mapHostLoopback;
    if (family === 4) {
      const v4 = this.c.v4;
      if (dst.equals(v4.dns)) {
        const ns = this.c.nameservers.v4 ?? this.c.nameservers.v6;
        if (port !== 53 || !ns) return null;
        return { family: ns.includes(':') ? 6 : 4, address: ns, port: 53 };
      }
      if (m?.v4 && dst.equals(m.v4)) return { family: 4, address: '127.0.0.1', port };
      if (dst.equals(v4.gateway) || dst.equals(v4.guest) || dst[0] === 0 || dst[0] === V4_LOOPBACK_NET || dst[0] >= 224) return null;
      return { family: 4, address: ipv4.formatAddr(dst), port };
    }
    const v6 = this.c.v6!;
    if (dst.equals(v6.dns)) {
      const ns = this.c.nameservers.v6 ?? this.c.nameservers.v4;
      if (port !== 53 || !ns) return null;
      return { family: ns.includes(':') ? 6 : 4, address: ns, port: 53 };
    }
    if (m?.v6 && dst.equals(m.v6)) return { family: 6, address: '::1', port };
    if (this.isOurV6(dst) || dst.equals(v6.guest)) return null;
    const text = ipv6.formatAddr(dst);
    // ::, ::1, v4-mapped and v4-compatible (would reach IPv4 loopback), link-local, multicast.
    if (dst.subarray(0, 10).every((x) => x === 0) || (dst[0] === 0xfe && (dst[1] & 0xc0) === 0x80) || dst[0] === 0xff) return null;
    return { family: 6, address: text, port };
  }

  // ---- UDP -----------------------------------------------------------------------------------

  /** Key of a UDP or TCP flow (each protocol has its own table). */
  private flowKey(family: number, guestAddr: Buffer, guestPort: number, ourAddr: Buffer, ourPort: number): string {
    return `${guestPort}|${ourPort}|${guestAddr.toString('latin1')}|${ourAddr.toString('latin1')}|${family}`;
  }

  private receiveUdp(family: 4 | 6, p: Buffer, off: number, src: Buffer, dst: Buffer, now: number): void {
    const sport = udp.srcPort(p, off);
    const dport = udp.dstPort(p, off);
    const data = p.subarray(off + udp.UDP_HDR_LEN, off + udp.length(p, off));
    const key = this.flowKey(family, src, sport, dst, dport);
    let flow = this.udpFlows.get(key);
    if (!flow) {
      const target = this.hostTarget(family, dst, dport);
      if (!target) return this.count('udp-refused-destination');
      if (this.tcpFlows.size + this.udpFlows.size >= this.limits.maxFlows) return this.count('flow-limit');
      flow = this.openUdpFlow(family, key, src, sport, dst, dport, target, now);
    }
    flow.expires = now + this.limits.udpIdleMs;
    flow.send(Buffer.from(data));
  }

  private openUdpFlow(family: 4 | 6, key: string, guestAddr: Buffer, guestPort: number, ourAddr: Buffer, ourPort: number, target: { family: 4 | 6; address: string; port: number }, now: number): UdpFlow {
    const flow: UdpFlow = {
      kind: 'udp', key, family, ourAddr: Buffer.from(ourAddr), ourPort, guestAddr: Buffer.from(guestAddr), guestPort,
      send: () => undefined, close: () => undefined, expires: now + this.limits.udpIdleMs,
    };
    let sock: HostUdp | null = null;
    sock = this.host.openUdp(target.family, target.address, target.port, {
      onMessage: (data, t) => {
        if (!this.udpFlows.has(key)) return;
        flow.expires = t + this.limits.udpIdleMs;
        this.emitUdp(flow, data);
      },
      onError: () => {
        this.count('udp-host-error');
        this.closeUdp(flow);
      },
    });
    flow.send = (d) => sock!.send(d);
    flow.close = () => sock!.close();
    this.udpFlows.set(key, flow);
    return flow;
  }

  private emitUdp(flow: UdpFlow, data: Buffer): void {
    const max = this.c.mtu - (flow.family === 4 ? ipv4.IPV4_HDR_LEN : ipv6.IPV6_HDR_LEN) - udp.UDP_HDR_LEN;
    if (data.length > max) return this.count('udp-too-big');
    this.emitIp(flow.family, flow.ourAddr, flow.guestAddr, ipv4.PROTO_UDP, udp.UDP_HDR_LEN, (out, o) => udp.emit({ srcPort: flow.ourPort, dstPort: flow.guestPort, payloadLength: data.length }, out, o), [data], data.length);
  }

  private closeUdp(flow: UdpFlow): void {
    if (this.udpFlows.get(flow.key) !== flow) return;
    this.udpFlows.delete(flow.key);
    flow.close();
  }

  /**
   * A datagram for a UDP port forward: `client` is the real remote, `reply` sends the container's
   * answers back through the forward's listening socket.
   */
  forwardUdp(family: 4 | 6, client: Buffer, clientPort: number, guestPort: number, data: Buffer, reply: (d: Buffer) => void, now: number): void {
    const guest = family === 4 ? this.c.v4.guest : this.c.v6?.guest;
    if (!guest) return;
    const src = this.visibleSource(family, client);
    const key = this.flowKey(family, guest, guestPort, src, clientPort);
    let flow = this.udpFlows.get(key);
    if (!flow) {
      if (this.tcpFlows.size + this.udpFlows.size >= this.limits.maxFlows) return this.count('flow-limit');
      flow = { kind: 'udp', key, family, ourAddr: Buffer.from(src), ourPort: clientPort, guestAddr: guest, guestPort, send: reply, close: () => undefined, expires: 0 };
      this.udpFlows.set(key, flow);
    }
    flow.expires = now + this.limits.udpIdleMs;
    this.emitUdp(flow, data);
  }

  /** The source the container sees for a forwarded client: loopback and our own become the gateway. */
  private visibleSource(family: 4 | 6, client: Buffer): Buffer {
    if (family === 4) {
      const v4 = this.c.v4;
      if (client[0] === V4_LOOPBACK_NET || client[0] === 0 || client.equals(v4.guest)) return this.c.mapHostLoopback?.v4 ?? v4.gateway;
      return client;
    }
    const v6 = this.c.v6!;
    const loop = client.subarray(0, 15).every((x) => x === 0);
    if (loop || client.equals(v6.guest)) return this.c.mapHostLoopback?.v6 ?? v6.gateway;
    return client;
  }

  // ---- TCP -----------------------------------------------------------------------------------

  private receiveTcp(family: 4 | 6, p: Buffer, off: number, end: number, src: Buffer, dst: Buffer, now: number): void {
    const h = tcp.parse(p, off);
    const payload = p.subarray(h.payloadOff, end);
    const key = this.flowKey(family, src, h.srcPort, dst, h.dstPort);
    const flow = this.tcpFlows.get(key);
    if (flow) return flow.conn.input(h, payload, now);
    if (h.flags & tcp.RST) return;
    if ((h.flags & (tcp.SYN | tcp.ACK)) !== tcp.SYN) return this.resetFor(family, src, dst, h, payload.length);
    const target = this.hostTarget(family, dst, h.dstPort);
    if (!target) {
      this.count('tcp-refused-destination');
      return this.resetFor(family, src, dst, h, payload.length);
    }
    if (this.tcpFlows.size + this.udpFlows.size >= this.limits.maxFlows) {
      this.count('flow-limit');
      return this.resetFor(family, src, dst, h, payload.length);
    }
    if (this.halfOpen >= this.limits.maxHalfOpen) return this.count('half-open-limit'); // like a full SYN backlog: the container retries
    this.openOutbound(family, key, src, dst, h, target, now);
  }

  /** RST for a segment that belongs to no connection (RFC 9293 section 3.10.7.1). */
  private resetFor(family: 4 | 6, guest: Buffer, ours: Buffer, h: tcp.TcpHeader, len: number): void {
    const seg: OutSegment = h.flags & tcp.ACK
      ? { seq: h.ack, ack: 0, flags: tcp.RST, window: 0, options: {}, payload: [], payloadLength: 0 }
      : { seq: 0, ack: tcp.seqAdd(h.seq, len + (h.flags & tcp.SYN ? 1 : 0) + (h.flags & tcp.FIN ? 1 : 0)), flags: tcp.RST | tcp.ACK, window: 0, options: {}, payload: [], payloadLength: 0 };
    this.emitTcp(family, ours, h.dstPort, guest, h.srcPort, seg);
  }

  private emitTcp(family: 4 | 6, src: Buffer, sport: number, dst: Buffer, dport: number, s: OutSegment): void {
    const hl = tcp.TCP_HDR_LEN + tcp.optionsLength(s.options);
    this.emitIp(family, src, dst, ipv4.PROTO_TCP, hl, (out, o) => tcp.emit({ srcPort: sport, dstPort: dport, seq: s.seq, ack: s.ack, flags: s.flags, window: s.window, options: s.options }, out, o), s.payload, s.payloadLength);
  }

  private connOptions(family: 4 | 6) {
    return { mss: family === 4 ? this.mss4 : this.mss6, rcvBufBytes: this.limits.tcpRcvBufBytes, idleMs: this.limits.tcpIdleMs, finTimeoutMs: this.limits.tcpFinTimeoutMs, iss: this.random() };
  }

  private newFlow(family: 4 | 6, key: string, guestAddr: Buffer, guestPort: number, ourAddr: Buffer, ourPort: number, inbound: boolean): TcpFlow {
    return { kind: 'tcp', key, conn: null as unknown as TcpConn, host: null, family, ourAddr: Buffer.from(ourAddr), ourPort, guestAddr: Buffer.from(guestAddr), guestPort, hostPaused: false, inbound };
  }

  private connEvents(flow: TcpFlow) {
    return {
      emit: (s: OutSegment) => this.emitTcp(flow.family, flow.ourAddr, flow.ourPort, flow.guestAddr, flow.guestPort, s),
      onData: (d: Buffer) => flow.host?.write(Buffer.from(d)),
      onFin: () => flow.host?.end(),
      onEstablished: () => {
        this.established.add(flow);
        this.halfOpen--;
        flow.host?.resume();
      },
      onSendSpace: () => {
        if (flow.hostPaused && flow.conn.sendBuffered() < this.limits.tcpSndBufBytes / 2) {
          flow.hostPaused = false;
          flow.host?.resume();
        }
      },
      onClose: (reason: CloseReason) => this.onTcpClosed(flow, reason),
      backlog: () => flow.host?.pending() ?? 0,
    };
  }

  private onTcpClosed(flow: TcpFlow, reason: CloseReason): void {
    if (this.tcpFlows.get(flow.key) !== flow) return;
    this.tcpFlows.delete(flow.key);
    if (!this.established.has(flow)) this.halfOpen--;
    this.count(`tcp-close-${reason}`);
    const host = flow.host;
    flow.host = null;
    if (host) {
      if (reason === 'done') host.end();
      else host.destroy(reason === 'reset' || reason === 'aborted' || reason === 'timeout' || reason === 'idle');
    }
  }

  /** Flows whose handshake completed (the rest count against maxHalfOpen). */
  private readonly established = new WeakSet<TcpFlow>();

  private hostHandlers(flow: TcpFlow, syn: tcp.TcpHeader | null): HostTcpHandlers {
    return {
      onConnect: (now) => {
        if (syn) flow.conn.accept(now, syn);
      },
      onData: (data, now) => {
        flow.conn.send(data, now);
        if (!flow.hostPaused && flow.conn.sendBuffered() >= this.limits.tcpSndBufBytes) {
          flow.hostPaused = true;
          flow.host?.pause();
        }
      },
      onEnd: (now) => flow.conn.end(now),
      onError: (code) => {
        this.count(`tcp-host-${code}`);
        const host = flow.host;
        flow.host = null;
        if (flow.conn.state === 'SYN_PENDING') flow.conn.refuse();
        else flow.conn.abort();
        host?.destroy();
      },
      onDrain: (now) => flow.conn.windowOpened(now),
    };
  }

  private openOutbound(family: 4 | 6, key: string, src: Buffer, dst: Buffer, syn: tcp.TcpHeader, target: { family: 4 | 6; address: string; port: number }, now: number): void {
    const flow = this.newFlow(family, key, src, syn.srcPort, dst, syn.dstPort, false);
    flow.conn = TcpConn.passive(this.connEvents(flow), this.connOptions(family), syn, now);
    this.tcpFlows.set(key, flow);
    this.halfOpen++;
    flow.host = this.host.connectTcp(target.family, target.address, target.port, this.hostHandlers(flow, syn));
  }

  /**
   * A port forward accepted a host connection: open a TCP connection to the container's
   * `guestPort` whose source is the client's own address (loopback and the guest's own address
   * become the gateway). `attach` wires the accepted socket to the returned handlers; the socket
   * stays paused until the container answers. Returns false (the caller closes the socket) when
   * limits or a clashing flow refuse it.
   */
  acceptInbound(family: 4 | 6, client: Buffer, clientPort: number, guestPort: number, attach: (h: HostTcpHandlers) => HostTcp, now: number): boolean {
    const guest = family === 4 ? this.c.v4.guest : this.c.v6?.guest;
    if (!guest) return false;
    if (this.tcpFlows.size + this.udpFlows.size >= this.limits.maxFlows) {
      this.count('flow-limit');
      return false;
    }
    if (this.halfOpen >= this.limits.maxHalfOpen) {
      this.count('half-open-limit');
      return false;
    }
    const src = this.visibleSource(family, client);
    const key = this.flowKey(family, guest, guestPort, src, clientPort);
    if (this.tcpFlows.has(key)) {
      this.count('tcp-inbound-clash');
      return false;
    }
    const flow = this.newFlow(family, key, guest, guestPort, src, clientPort, true);
    flow.host = attach(this.hostHandlers(flow, null));
    flow.host.pause();
    this.tcpFlows.set(key, flow);
    this.halfOpen++;
    flow.conn = TcpConn.active(this.connEvents(flow), this.connOptions(family), now);
    return true;
  }

  // ---- timers --------------------------------------------------------------------------------

  /** Sends the ACKs that a batch of received frames left pending (call after each batch). */
  flush(now: number): void {
    for (const f of this.tcpFlows.values()) f.conn.flush(now);
  }

  /** The earliest deadline over all flows (Infinity when idle). */
  pollAt(): number {
    let t = Infinity;
    for (const f of this.tcpFlows.values()) {
      const d = f.conn.pollAt();
      if (d < t) t = d;
    }
    for (const f of this.udpFlows.values()) if (f.expires < t) t = f.expires;
    for (const f of this.pingFlows.values()) if (f.expires < t) t = f.expires;
    return t;
  }

  /** Runs due timers: retransmissions, probes, expiry. */
  poll(now: number): void {
    for (const f of [...this.tcpFlows.values()]) if (f.conn.pollAt() <= now) f.conn.poll(now);
    for (const f of [...this.udpFlows.values()]) {
      if (f.expires <= now) {
        this.count('udp-expired');
        this.closeUdp(f);
      }
    }
    for (const f of [...this.pingFlows.values()]) {
      if (f.expires <= now) {
        this.pingFlows.delete(f.key);
        f.sock.close();
      }
    }
  }

  /** Resets every TCP flow and closes every UDP flow (the container or the stack is going away). */
  shutdown(): void {
    for (const f of [...this.tcpFlows.values()]) f.conn.abort();
    for (const f of [...this.udpFlows.values()]) this.closeUdp(f);
    for (const f of this.pingFlows.values()) f.sock.close();
    this.pingFlows.clear();
  }

  /** Diagnostic snapshot of the flows. */
  flows(): Array<Record<string, unknown>> {
    const fmt = (fam: number, b: Buffer) => (fam === 4 ? ipv4.formatAddr(b) : ipv6.formatAddr(b));
    return [
      ...[...this.tcpFlows.values()].map((f) => ({ proto: 'tcp', inbound: f.inbound, guest: `${fmt(f.family, f.guestAddr)}:${f.guestPort}`, remote: `${fmt(f.family, f.ourAddr)}:${f.ourPort}`, ...f.conn.info() })),
      ...[...this.udpFlows.values()].map((f) => ({ proto: 'udp', guest: `${fmt(f.family, f.guestAddr)}:${f.guestPort}`, remote: `${fmt(f.family, f.ourAddr)}:${f.ourPort}` })),
    ];
  }
}
