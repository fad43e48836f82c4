/**
 * Frames from the stack to the container: every frame is built here, in a buffer sized from what
 * it carries.
 *
 * Theory of operation
 * -------------------
 * Each frame is a virtio-net header, an Ethernet header, an IP header and the L4 message. The
 * headers go into one new buffer whose size is computed from the message (`byteLength` of the
 * value) before anything is written: there are no fixed scratch buffers, so a large message can
 * neither overrun one nor carry stale process memory to the container. Payload parts (TCP and
 * UDP data) follow by reference, gathered by the link's writev.
 *
 * Checksums: TCP and UDP frames carry NEEDS_CSUM with only the pseudo-header sum in the checksum
 * field, so payloads are never summed in JS (the kernel completes them, or accepts them as
 * CHECKSUM_PARTIAL for local delivery). ICMP and ICMPv6 messages are summed here in full.
 *
 * Invariant: no IP packet longer than the link MTU is ever sent; a message that would be is
 * dropped and counted (`emit-too-big`), never truncated.
 */
import { fold, pseudo4, pseudo6 } from '../wire/checksum.js';
import * as arp from '../wire/arp.js';
import * as eth from '../wire/ethernet.js';
import * as icmp from '../wire/icmp.js';
import * as icmpv6 from '../wire/icmpv6.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import * as vnet from '../wire/vnet.js';
import type { OutSegment } from './tcp_conn.js';

/** Sends one frame (virtio-net header first) to the container; parts are gathered. */
export type LinkSend = (parts: Buffer[]) => void;

const L2 = vnet.VNET_HDR_LEN + eth.ETH_HDR_LEN;

export class Emitter {
  /** The container's MAC, learned from its frames (broadcast until then). */
  guestMac: Buffer = eth.BROADCAST;
  private ipId = 0;

  constructor(
    private readonly mtu: number,
    private readonly mac: Buffer,
    private readonly send: LinkSend,
    private readonly count: (reason: string) => void,
  ) {}

  private header(out: Buffer, flags: number, csumStart: number, csumOffset: number, etherType: number, dstMac: Buffer): void {
    vnet.emit({ flags, gsoType: vnet.GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart, csumOffset }, out, 0);
    eth.emit({ dst: dstMac, src: this.mac, etherType }, out, vnet.VNET_HDR_LEN);
  }

  /** An ARP reply to `to`. */
  arpReply(senderIp: Buffer, to: { mac: Buffer; ip: Buffer }): void {
    const out = Buffer.allocUnsafe(L2 + arp.ARP_LEN);
    this.header(out, 0, 0, 0, eth.ETHERTYPE_ARP, to.mac);
    arp.emit({ op: arp.OP_REPLY, senderMac: this.mac, senderIp, targetMac: to.mac, targetIp: to.ip }, out, L2);
    this.send([out]);
  }

  /**
   * An IP packet: the headers and the `l4Len` bytes `writeL4` writes in one new buffer, then
   * `payload` by reference. TCP and UDP get a partial checksum (NEEDS_CSUM); other protocols
   * must fill their own in `writeL4`. False when the packet would exceed the MTU (dropped).
   */
  ip(family: 4 | 6, src: Uint8Array, dst: Uint8Array, proto: number, l4Len: number, writeL4: (out: Buffer, off: number) => void, payload: Buffer[] = [], payloadLen = 0, dstMac: Buffer = this.guestMac): boolean {
    const iphl = family === 4 ? ipv4.IPV4_HDR_LEN : ipv6.IPV6_HDR_LEN;
    const total = l4Len + payloadLen;
    if (iphl + total > this.mtu) {
      this.count('emit-too-big');
      return false;
    }
    const out = Buffer.allocUnsafe(L2 + iphl + l4Len);
    const partial = proto === ipv4.PROTO_TCP || proto === ipv4.PROTO_UDP;
    const csumAt = proto === ipv4.PROTO_TCP ? 16 : 6;
    this.header(out, partial ? vnet.F_NEEDS_CSUM : 0, eth.ETH_HDR_LEN + iphl, csumAt, family === 4 ? eth.ETHERTYPE_IPV4 : eth.ETHERTYPE_IPV6, dstMac);
    if (family === 4) {
      this.ipId = (this.ipId + 1) & 0xffff;
      ipv4.emit({ src, dst, protocol: proto, payloadLength: total, id: this.ipId }, out, L2);
    } else ipv6.emit({ src, dst, nextHeader: proto, payloadLength: total, hopLimit: proto === ipv6.NH_ICMPV6 ? 255 : 64 }, out, L2); // NDP requires 255 (RFC 4861 section 7.1.2)
    const l4off = L2 + iphl;
    writeL4(out, l4off);
    if (partial) {
      const ps = family === 4 ? pseudo4(out, L2 + 12, L2 + 16, proto, total) : pseudo6(out, L2 + 8, L2 + 24, proto, total);
      out.writeUInt16BE(fold(ps), l4off + csumAt);
    }
    this.send(payload.length ? [out, ...payload] : [out]);
    return true;
  }

  tcp(family: 4 | 6, src: Uint8Array, sport: number, dst: Uint8Array, dport: number, s: OutSegment): boolean {
    const hl = tcp.TCP_HDR_LEN + tcp.optionsLength(s.options);
    return this.ip(family, src, dst, ipv4.PROTO_TCP, hl, (out, o) => tcp.emit({ srcPort: sport, dstPort: dport, seq: s.seq, ack: s.ack, flags: s.flags, window: s.window, options: s.options }, out, o), s.payload, s.payloadLength);
  }

  udp(family: 4 | 6, src: Uint8Array, sport: number, dst: Uint8Array, dport: number, data: Buffer, dstMac?: Buffer): boolean {
    return this.ip(family, src, dst, ipv4.PROTO_UDP, udp.UDP_HDR_LEN, (out, o) => udp.emit({ srcPort: sport, dstPort: dport, payloadLength: data.length }, out, o), [data], data.length, dstMac);
  }

  /** An ICMPv4 message with `body` (copied) after the 8-byte header. */
  icmp4(src: Uint8Array, dst: Uint8Array, type: number, code: number, rest: number, body: Uint8Array): boolean {
    return this.ip(4, src, dst, ipv4.PROTO_ICMP, icmp.byteLength(body.length), (out, o) => icmp.emit({ type, code, rest, body }, out, o));
  }

  /** An ICMPv6 message of exactly `len` bytes written by `write` (which leaves the checksum to us). */
  icmp6(src: Uint8Array, dst: Uint8Array, len: number, write: (out: Buffer, off: number) => void, dstMac?: Buffer): boolean {
    return this.ip(6, src, dst, ipv6.NH_ICMPV6, len, (out, o) => {
      write(out, o);
      icmpv6.setChecksum(out, o, o + len, pseudo6(out, L2 + 8, L2 + 24, ipv6.NH_ICMPV6, len));
    }, [], 0, dstMac);
  }
}
