/**
 * The services the stack's gateway answers itself: ARP and IPv6 neighbor discovery for our
 * addresses, router advertisements, a DHCPv4 server for the one guest address, and echo for our
 * own addresses. Pure code: frames in, frames out through the {@link Emitter}.
 *
 * Theory of operation
 * -------------------
 * - ARP: requests for the gateway, DNS or mapped address get our MAC.
 * - NDP (RFC 4861): solicitations are answered only with hop limit 255 and code 0 (a packet
 *   that crossed a router is not from the link, sections 6.1.1 and 7.1.1). A neighbor
 *   solicitation for one of our addresses gets a solicited advertisement; a duplicate address
 *   detection probe for one (from the unspecified address) is defended with an unsolicited
 *   advertisement to all-nodes (section 7.2.4, RFC 4862 section 5.4.3), so the container sees
 *   that the address is taken. Router solicitations get the prefix, MTU and RDNSS.
 * - DHCPv4 (RFC 2131): DISCOVER, REQUEST (selecting, init-reboot, renewing/rebinding) and
 *   INFORM. The client hardware address must be a unicast Ethernet address. Replies go where
 *   section 4.1 says: NAKs and broadcast-flag requests to the broadcast address, clients with
 *   an address (ciaddr) to it, others to the offered address at their MAC. DECLINE and RELEASE
 *   are counted and ignored: there is only one address to give.
 * - Echo: requests for our addresses are answered with the same identifier, sequence and data,
 *   in a frame sized from the request.
 */
import * as arp from '../wire/arp.js';
import * as dhcp from '../wire/dhcp.js';
import * as eth from '../wire/ethernet.js';
import * as icmp from '../wire/icmp.js';
import * as icmpv6 from '../wire/icmpv6.js';
import * as ipv6 from '../wire/ipv6.js';
import type { Emitter } from './emit.js';
import { isOurV4, isOurV6, type PolicyConfig } from './policy.js';

export interface ServicesConfig extends PolicyConfig {
  mtu: number;
  mac: Buffer;
  /** DHCP lease time. */
  leaseS?: number;
}

const ALL_NODES = ipv6.parseAddr('ff02::1')!;
const ALL_NODES_MAC = eth.parseMac('33:33:00:00:00:01');
const BROADCAST4 = Buffer.from([255, 255, 255, 255]);
const ZERO4 = Buffer.alloc(4);
const NDP_HOP_LIMIT = 255; // RFC 4861 section 6.1.1 and 7.1.1

export class Services {
  constructor(
    private readonly c: ServicesConfig,
    private readonly out: Emitter,
    private readonly count: (reason: string) => void,
  ) {}

  /** An ARP packet (`l3`) in frame `f`. */
  arp(l3: Buffer): void {
    if (arp.check(l3)) return this.count('bad-arp');
    const a = arp.parse(l3);
    if (a.op !== arp.OP_REQUEST || !isOurV4(this.c, a.targetIp)) return;
    if (a.senderMac[0] & 1) return this.count('arp-bad-sender');
    this.out.arpReply(a.targetIp, { mac: a.senderMac, ip: a.senderIp });
  }

  /** A DHCP message at [off, end) of IPv4 packet `p`, from Ethernet address `srcMac`. */
  dhcp(p: Buffer, off: number, end: number): void {
    if (dhcp.check(p, off, end)) return this.count('dhcp-malformed');
    const r = dhcp.parse(p, off, end);
    if (r.htype !== 1 || r.hlen !== 6 || r.chaddr[0] & 1 || r.chaddr.every((x) => x === 0)) return this.count('dhcp-bad-chaddr');
    const v4 = this.c.v4;
    const ours = (a?: Buffer) => !!a && a.equals(v4.gateway);
    const has = (a: Buffer) => !a.equals(ZERO4);
    let type: number;
    if (r.type === dhcp.DISCOVER) type = dhcp.OFFER;
    else if (r.type === dhcp.REQUEST) {
      if (r.serverId && !ours(r.serverId)) return; // selecting another server
      // selecting or init-reboot name the address in option 50; renewing/rebinding in ciaddr.
      const asked = r.requestedIp ?? (has(r.ciaddr) ? r.ciaddr : null);
      type = asked && asked.equals(v4.guest) ? dhcp.ACK : dhcp.NAK;
    } else if (r.type === dhcp.INFORM) {
      if (!has(r.ciaddr)) return this.count('dhcp-inform-without-ciaddr');
      type = dhcp.ACK;
    } else return this.count(r.type === dhcp.DECLINE || r.type === dhcp.RELEASE ? 'dhcp-release-ignored' : 'dhcp-ignored');
    const inform = r.type === dhcp.INFORM;
    const mask = Buffer.alloc(4);
    mask.writeUInt32BE(v4.prefixLength === 0 ? 0 : (0xffffffff << (32 - v4.prefixLength)) >>> 0);
    const reply: dhcp.DhcpReply = {
      type, xid: r.xid, flags: r.flags, chaddr: r.chaddr, yiaddr: type === dhcp.NAK || inform ? ZERO4 : v4.guest,
      server: v4.gateway, netmask: mask, router: v4.gateway, dns: [v4.dns], mtu: this.c.mtu,
      ...(inform || type === dhcp.NAK ? {} : { leaseS: this.c.leaseS ?? 3600 }), ...(inform ? { ciaddr: r.ciaddr } : {}),
    };
    const body = Buffer.allocUnsafe(dhcp.replyLength(reply));
    dhcp.emitReply(reply, body, 0);
    // RFC 2131 section 4.1: where the reply goes.
    const chaddr = Buffer.from(r.chaddr);
    let to: { ip: Buffer; mac: Buffer };
    if (type === dhcp.NAK || r.flags & 0x8000) to = { ip: BROADCAST4, mac: eth.BROADCAST };
    else if (has(r.ciaddr)) to = { ip: Buffer.from(r.ciaddr), mac: chaddr };
    else to = { ip: v4.guest, mac: chaddr };
    this.out.udp(4, v4.gateway, dhcp.SERVER_PORT, to.ip, dhcp.CLIENT_PORT, body, to.mac);
  }

  /** An ICMPv6 neighbor or router solicitation (after the ICMPv6 checksum was verified). */
  ndp(type: number, p: Buffer, off: number, end: number, src: Buffer): void {
    if (ipv6.hopLimit(p) !== NDP_HOP_LIMIT || icmpv6.code(p, off) !== 0) return this.count('ndp-bad-hop-limit');
    const v6 = this.c.v6!;
    if (type === icmpv6.NEIGHBOR_SOLICIT) {
      const target = icmpv6.nsTarget(p, off, end);
      if (!target) return this.count('ndp-malformed');
      if (!isOurV6(this.c, target)) return;
      const t = Buffer.from(target);
      if (src.every((x) => x === 0)) {
        // A DAD probe for an address that is ours: defend it (RFC 4861 section 7.2.4).
        this.count('ndp-dad-defended');
        this.out.icmp6(t, ALL_NODES, icmpv6.NEIGHBOR_ADVERT_LEN, (o, i) => icmpv6.emitNeighborAdvert(t, this.c.mac, o, i, false), ALL_NODES_MAC);
        return;
      }
      this.out.icmp6(t, Buffer.from(src), icmpv6.NEIGHBOR_ADVERT_LEN, (o, i) => icmpv6.emitNeighborAdvert(t, this.c.mac, o, i));
      return;
    }
    const unspecified = src.every((x) => x === 0);
    const ra: icmpv6.RouterAdvert = { mac: this.c.mac, mtu: this.c.mtu, prefix: v6.prefix, prefixLength: v6.prefixLength, dns: v6.dns, lifetimeS: 1800 };
    this.out.icmp6(v6.linkLocal, unspecified ? ALL_NODES : Buffer.from(src), icmpv6.routerAdvertLength(ra), (o, i) => icmpv6.emitRouterAdvert(ra, o, i), unspecified ? ALL_NODES_MAC : undefined);
  }

  /** An echo request at [off, end) of IPv4 packet `p` for one of our addresses. */
  echo4(p: Buffer, off: number, end: number, src: Buffer, dst: Buffer): void {
    this.out.icmp4(Buffer.from(dst), Buffer.from(src), icmp.ECHO_REPLY, 0, p.readUInt32BE(off + 4), p.subarray(off + icmp.ICMP_HDR_LEN, end));
  }

  /** An ICMPv6 echo request at [off, end) of `p` for one of our addresses. */
  echo6(p: Buffer, off: number, end: number, src: Buffer, dst: Buffer): void {
    const body = p.subarray(off + icmpv6.ICMPV6_HDR_LEN, end); // identifier, sequence, data
    this.out.icmp6(Buffer.from(dst), Buffer.from(src), icmpv6.ICMPV6_HDR_LEN + body.length, (o, i) => {
      o[i] = icmpv6.ECHO_REPLY;
      o[i + 1] = 0;
      o.set(body, i + icmpv6.ICMPV6_HDR_LEN);
    });
  }
}
