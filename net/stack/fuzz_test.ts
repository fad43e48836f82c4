/**
 * The container is untrusted: 1,000,000 random and mutated frames (truncated headers, lying
 * length fields, bad checksums, fragments, IPv6 extension headers, odd TCP options, zero
 * windows, SYN and RST floods, overlapping segments) against every service the stack has (ARP,
 * NDP, DHCP, DNS, echo to us and through ping sockets, UDP and TCP both ways, forwards), must
 * never throw out of the stack, never grow its tables or memory past their budgets, and be
 * counted when dropped. Every frame the stack sends is checked: it parses, its checksums verify,
 * it fits the MTU, and an echo reply carries exactly the data of its request.
 */
import test from 'ava';
import * as arp from '../wire/arp.js';
import * as eth from '../wire/ethernet.js';
import * as icmp from '../wire/icmp.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import * as vnet from '../wire/vnet.js';
import type { HostPing, HostPingHandlers, HostSockets, HostTcpHandlers, HostUdpHandlers } from './host.js';
import { Stack } from './stack.js';
import { a4, a6, decode, frame, GUEST_MAC, ipPacket, mulberry32, OUR_MAC, tcpFrame, udpFrame } from './testing.js';

const MTU = 9000;

/** Host sockets that connect at once, answer with data sometimes, echo pings, and keep nothing. */
class ChattyHost implements HostSockets {
  tcpOpened = 0;
  udpOpened = 0;
  live = new Set<HostTcpHandlers>();
  udp = new Set<HostUdpHandlers>();
  pings: Array<{ h: HostPingHandlers; family: 4 | 6; queue: Buffer[] }> = [];
  connectTcp(_f: 4 | 6, _a: string, _p: number, h: HostTcpHandlers) {
    this.tcpOpened++;
    this.live.add(h);
    return { write: () => undefined, end: () => this.live.delete(h), destroy: () => this.live.delete(h), pause: () => undefined, resume: () => undefined, pending: () => 0 };
  }
  openUdp(_f: 4 | 6, _a: string, _p: number, h: HostUdpHandlers) {
    this.udpOpened++;
    this.udp.add(h);
    return { send: () => undefined, close: () => this.udp.delete(h) };
  }
  openPing(family: 4 | 6, h: HostPingHandlers): HostPing {
    const p = { h, family, queue: [] as Buffer[] };
    this.pings.push(p);
    return {
      send: (m) => {
        // The kernel answers with the same message, its own identifier and the reply type.
        const r = Buffer.from(m);
        r[0] = family === 4 ? icmp.ECHO_REPLY : 129;
        r.writeUInt16BE(0x7777, 4);
        if (p.queue.length < 16) p.queue.push(r);
      },
      close: () => {
        this.pings = this.pings.filter((x) => x !== p);
      },
    };
  }
}

/** IPv6 with a hop-by-hop and a destination-options header before the upper layer. */
function withExtHeaders(src: Buffer, dst: Buffer, proto: number, l4: Buffer, csumAt: number): Buffer {
  const inner = ipPacket(src, dst, proto, l4, csumAt); // checksums over the upper layer only
  const ext = Buffer.alloc(16);
  ext[0] = 60; // next: destination options
  ext[1] = 0;
  ext[2] = 1; // PadN
  ext[3] = 4;
  ext[8] = proto;
  ext[9] = 0;
  ext[10] = 1;
  ext[11] = 4;
  const p = Buffer.concat([inner.subarray(0, 40), ext, inner.subarray(40)]);
  p[6] = 0; // next: hop-by-hop
  p.writeUInt16BE(p.length - 40, 4);
  return p;
}

/** The echo data (after identifier and sequence) of a frame, if it is a well-formed echo request. */
function echoRequestData(f: Buffer): Buffer | null {
  if (f.length < vnet.VNET_HDR_LEN + eth.ETH_HDR_LEN + 28) return null;
  const e = f.subarray(vnet.VNET_HDR_LEN);
  const p = e.subarray(eth.ETH_HDR_LEN);
  const type = eth.etherType(e);
  if (type === eth.ETHERTYPE_IPV4 && !ipv4.check(p) && ipv4.protocol(p) === 1) {
    const off = ipv4.headerLength(p);
    return ipv4.payloadEnd(p) - off >= 8 && p[off] === icmp.ECHO_REQUEST ? Buffer.from(p.subarray(off + 8, ipv4.payloadEnd(p))) : null;
  }
  if (type === eth.ETHERTYPE_IPV6 && !ipv6.check(p)) {
    const u = ipv6.upper(p);
    return u.proto === 58 && ipv6.payloadEnd(p) - u.off >= 8 && p[u.off] === 128 ? Buffer.from(p.subarray(u.off + 8, ipv6.payloadEnd(p))) : null;
  }
  return null;
}

test('fuzz: 1,000,000 hostile frames against every service: nothing escapes, budgets hold, every frame sent is well-formed', (t) => {
  const rnd = mulberry32(0xb0220);
  const int = (n: number) => Math.floor(rnd() * n);
  // Random bytes from a pool: generating them one by one per frame was most of the test's time.
  const pool = Buffer.from(Array.from({ length: 1 << 16 }, () => int(256)));
  const randomBytes = (n: number) => {
    const at = int(pool.length - n + 1);
    return Buffer.from(pool.subarray(at, at + n));
  };
  const host = new ChattyHost();
  const limits = { maxOutboundFlows: 512, maxInboundFlows: 128, maxInboundPerClient: 32, maxHalfOpenOutbound: 64, maxHalfOpenInbound: 16, maxHostSockets: 400, bufferBytes: 4 << 20, bufferFloorBytes: 16 << 10, tcpIdleMs: 5_000, udpIdleMs: 2_000 };
  const problems: string[] = [];
  let sentFrames = 0;
  let echoChecked = 0;
  let expectEcho: Buffer | null = null;
  const stack = new Stack({
    mtu: MTU, mac: OUR_MAC,
    v4: { guest: a4('10.0.2.100'), gateway: a4('10.0.2.2'), dns: a4('10.0.2.3'), prefixLength: 24 },
    v6: { prefix: a6('fd00::'), prefixLength: 64, guest: a6('fd00::100'), gateway: a6('fd00::2'), dns: a6('fd00::3'), linkLocal: a6('fe80::2') },
    nameservers: { v4: '127.0.0.53' }, limits, random: () => int(0x100000000),
  }, (parts) => {
    sentFrames++;
    const f = Buffer.concat(parts);
    if (problems.length > 20) return;
    let d;
    try {
      d = decode(f);
    } catch (err) {
      problems.push(`unparsable frame: ${(err as Error).message}`);
      return;
    }
    const ipLen = f.length - vnet.VNET_HDR_LEN - eth.ETH_HDR_LEN;
    if (d.etherType !== eth.ETHERTYPE_ARP && ipLen > MTU) problems.push(`frame over the MTU: ${ipLen}`);
    if (d.l4 && !d.checksumOk) problems.push(`bad checksum on ${d.src} -> ${d.dst} proto ${d.proto}`);
    const isReply = (d.proto === 1 && d.l4?.[0] === icmp.ECHO_REPLY) || (d.proto === 58 && d.l4?.[0] === 129);
    if (isReply) {
      echoChecked++;
      if (!expectEcho || !d.l4!.subarray(8).equals(expectEcho)) problems.push(`echo reply data differs from its request (${d.l4!.length - 8} bytes)`);
    }
  }, host);

  const guest = a4('10.0.2.100');
  const guest6 = a6('fd00::100');
  const remote = () => a4(`192.0.2.${1 + int(8)}`);
  const arpReq = () => {
    const b = Buffer.alloc(28);
    arp.emit({ op: 1, senderMac: GUEST_MAC, senderIp: guest, targetMac: Buffer.alloc(6), targetIp: a4(['10.0.2.2', '10.0.2.3', '10.0.2.9'][int(3)]) }, b);
    return frame(eth.ETHERTYPE_ARP, b);
  };
  const echoReq = (dst: Buffer) => {
    const v6 = dst.length === 16;
    const body = randomBytes([0, 56, 1400, 3000, 8000][int(5)]);
    const l4 = Buffer.alloc(8 + body.length);
    if (v6) {
      l4[0] = 128;
      l4.writeUInt16BE(int(4), 4);
      l4.writeUInt16BE(int(65536), 6);
      body.copy(l4, 8);
      return frame(eth.ETHERTYPE_IPV6, int(4) ? ipPacket(guest6, dst, 58, l4, 2) : withExtHeaders(guest6, dst, 58, l4, 2));
    }
    icmp.emit({ type: icmp.ECHO_REQUEST, code: 0, rest: (int(4) << 16) | int(65536), body }, l4);
    return frame(eth.ETHERTYPE_IPV4, ipPacket(guest, dst, 1, l4, -1));
  };
  const ndp = () => {
    const ns = Buffer.alloc(32);
    ns[0] = int(2) ? 135 : 133;
    a6(['fd00::2', 'fe80::2', 'fd00::3', 'fd00::9'][int(4)]).copy(ns, 8);
    ns[24] = 1;
    ns[25] = 1;
    GUEST_MAC.copy(ns, 26);
    const p = ipPacket(int(4) ? guest6 : a6('::'), a6(['ff02::1:ff00:2', 'ff02::2', 'fd00::2'][int(3)]), 58, ns, 2);
    p[7] = int(4) ? 255 : 64;
    return frame(eth.ETHERTYPE_IPV6, p);
  };
  const dhcpMsg = () => {
    const b = Buffer.alloc(300);
    b.set([1, 1, 6], 0);
    b.writeUInt32BE(int(2 ** 32), 4);
    if (int(2)) b.writeUInt16BE(0x8000, 10);
    if (int(3) === 0) guest.copy(b, 12);
    (int(8) ? GUEST_MAC : Buffer.from([1, 0, 0x5e, 0, 0, 1])).copy(b, 28);
    b.writeUInt32BE(0x63825363, 236);
    b.set([53, 1, [1, 3, 4, 7, 8, 9][int(6)], 50, 4, ...(int(2) ? guest : a4('10.0.2.50')), 255], 240);
    return udpFrame(a4('0.0.0.0'), 68, a4(['255.255.255.255', '10.0.2.2', '192.0.2.67'][int(3)]), 67, b);
  };
  const odd = (): tcp.TcpOptions => [{}, { mss: int(65536) }, { wscale: int(20) }, { sackOk: true, sack: [[int(2 ** 32), int(2 ** 32)]] }, { mss: 1, wscale: 14, sackOk: true }][int(5)] as tcp.TcpOptions;
  const seeds: Array<() => Buffer> = [
    arpReq,
    () => udpFrame(guest, 1024 + int(64), remote(), 1 + int(1000), Buffer.alloc(int(200))),
    () => udpFrame(guest, 1024 + int(64), a4('10.0.2.3'), [53, 53, 54][int(3)], Buffer.alloc(int(100))),
    () => udpFrame(guest6, 1024 + int(64), a6(['fd00::3', '2001:db8::5', 'ff02::fb'][int(3)]), 53, Buffer.alloc(int(100))),
    () => frame(eth.ETHERTYPE_IPV6, withExtHeaders(guest6, a6('2001:db8::7'), 17, (() => { const l = Buffer.alloc(20); l.writeUInt16BE(5000, 0); l.writeUInt16BE(53, 2); l.writeUInt16BE(20, 4); return l; })(), 6)),
    () => tcpFrame(guest, 1024 + int(256), remote(), 80, { seq: int(2 ** 32), flags: tcp.SYN, options: odd() }),
    () => tcpFrame(guest, 1024 + int(256), remote(), 80, { seq: int(2 ** 32), ack: 1000 + int(3000), flags: [tcp.ACK, tcp.ACK | tcp.PSH, tcp.RST, tcp.FIN | tcp.ACK, tcp.SYN | tcp.ACK, tcp.SYN, 0xff][int(7)], window: [0, 1, 65535][int(3)], options: odd(), payload: Buffer.alloc(int(3000)) }),
    () => tcpFrame(guest, 80, a4(`198.51.100.${1 + int(4)}`), 40000 + int(16), { seq: int(2 ** 32), ack: int(2 ** 32), flags: [tcp.SYN | tcp.ACK, tcp.ACK, tcp.RST, tcp.SYN, tcp.FIN | tcp.ACK][int(5)], payload: Buffer.alloc(int(500)) }),
    () => tcpFrame(guest6, 1024 + int(64), a6(`2001:db8::${1 + int(4)}`), 443, { seq: int(2 ** 32), flags: tcp.SYN }),
    () => echoReq(a4(['10.0.2.2', '10.0.2.3', '192.0.2.1', '127.0.0.1'][int(4)])),
    () => echoReq(a6(['fd00::2', 'fe80::2', '2001:db8::1', '::1', 'ff02::1'][int(5)])),
    ndp,
    dhcpMsg,
    () => frame(eth.ETHERTYPE_IPV4, ipPacket(a4('0.0.0.0'), a4('255.255.255.255'), 17, Buffer.alloc(300), -1)),
  ];
  const mutate = (f: Buffer): Buffer => {
    const b = Buffer.from(f);
    switch (int(8)) {
      case 0: // bit flips
        for (let i = 0, n = 1 + int(4); i < n; i++) b[int(b.length)] ^= 1 << int(8);
        return b;
      case 1: // truncation
        return b.subarray(0, int(b.length));
      case 2: // a lying IPv4 total length / IPv6 payload length
        if (b.length > 30) b.writeUInt16BE(int(65536), 12 + 14 + (b[26] >> 4 === 6 ? 4 : 2));
        return b;
      case 3: // fragment bits / a fragment header
        if (b.length > 34) b[12 + 14 + (b[26] >> 4 === 6 ? -6 + 12 : 6)] = b[26] >> 4 === 6 ? 44 : b[12 + 14 + 6] | 0x20;
        return b;
      case 4: // random bytes after the headers
        for (let i = 60; i < b.length; i++) b[i] = int(256);
        return b;
      case 5: // the kernel "vouches" for a corrupted frame
        b[0] = 1 + int(2);
        b[20 + int(Math.max(1, b.length - 20))] ^= 0xff;
        return b;
      case 6: // now and then a huge frame (a GSO frame that lies)
        return int(32) ? b : Buffer.concat([b, Buffer.alloc(int(70_000))]);
      default:
        return b;
    }
  };
  const heapBefore = process.memoryUsage().heapUsed;
  let now = 0;
  let maxFlows = 0;
  let maxHostSockets = 0;
  let maxBytes = 0;
  for (let i = 0; i < 1_000_000; i++) {
    const r = rnd();
    const f = r < 0.1 ? randomBytes(int(120)) : r < 0.55 ? seeds[int(seeds.length)]() : mutate(seeds[int(seeds.length)]());
    expectEcho = echoRequestData(f);
    stack.receive(f, now);
    expectEcho = null;
    if (i % 64 === 0) {
      stack.flush(now);
      // Some host connects complete, some host peers talk, some reset; datagrams and echoes come back.
      for (const h of [...host.live].slice(0, 8)) {
        const pick = int(4);
        if (pick === 0) h.onConnect(now);
        else if (pick === 1) h.onData(Buffer.alloc(1 + int(4000)), now);
        else if (pick === 2) h.onError(['ECONNRESET', 'ENETUNREACH', 'ECONNREFUSED', 'EHOSTUNREACH'][int(4)], now);
        else h.onEnd(now);
      }
      for (const h of [...host.udp].slice(0, 4)) {
        if (int(3)) h.onMessage(Buffer.alloc(int(MTU + 100)), now);
        else h.onError(['ENETUNREACH', 'ECONNREFUSED', 'EIO'][int(3)], now);
      }
      for (const p of [...host.pings]) {
        for (const m of p.queue.splice(0)) {
          expectEcho = m.subarray(8);
          p.h.onReply(m, now);
          expectEcho = null;
        }
      }
      // The forwards: datagrams and connections from outside, some from one noisy client.
      for (let k = int(3); k > 0; k--) stack.forwardUdp(4, int(2) ? a4('198.51.100.7') : a4(`203.0.113.${int(256)}`), 1024 + int(60000), 5353, Buffer.alloc(int(200)), () => undefined, now);
      if (int(4) === 0) {
        const c = { handlers: null as HostTcpHandlers | null };
        stack.acceptInbound(4, a4(`198.51.100.${1 + int(4)}`), 40000 + int(16), 80, (h) => {
          c.handlers = h;
          return { write: () => undefined, end: () => undefined, destroy: () => undefined, pause: () => undefined, resume: () => undefined, pending: () => 0 };
        }, now);
      }
      now += 1 + int(20);
      if (stack.pollAt() <= now) stack.poll(now);
      const u = stack.budgets.usage();
      maxHostSockets = Math.max(maxHostSockets, u.hostSockets);
      maxBytes = Math.max(maxBytes, u.bufferedBytes);
    }
    const c = stack.flowCount();
    maxFlows = Math.max(maxFlows, c.tcp + c.udp + c.ping);
  }
  stack.poll(now + 10_000_000);
  const drops = Object.entries(stack.stats).filter(([k]) => !k.startsWith('tcp-close')).reduce((a, [, v]) => a + v, 0);
  t.deepEqual(problems, [], 'every frame the stack sent was well-formed, within the MTU, and echoes were exact');
  t.is(stack.stats['internal-error'] ?? 0, 0, `no exception escaped the stack: ${String(stack.lastError)}`);
  t.true(maxFlows <= limits.maxOutboundFlows + limits.maxInboundFlows, `flows stayed within the budgets (max seen ${maxFlows})`);
  t.true(maxHostSockets <= limits.maxHostSockets, `host sockets stayed within the cap (max seen ${maxHostSockets})`);
  t.true(maxBytes <= limits.bufferBytes + maxFlows * limits.bufferFloorBytes, `buffered bytes stayed within the budget (max seen ${maxBytes})`);
  t.deepEqual(stack.budgets.usage(), { outbound: 0, inbound: 0, halfOpenOutbound: 0, halfOpenInbound: 0, clients: 0, hostSockets: 0, bufferedBytes: 0 }, 'everything expired in the end, and every ticket was given back');
  t.true(drops > 100_000, `drops were counted (${drops})`);
  t.true(host.tcpOpened > 100 && host.udpOpened > 100, 'the corpus reached both flow tables');
  t.true(echoChecked > 1000, `echo replies were checked (${echoChecked})`);
  for (const service of ['ndp-bad-hop-limit', 'dhcp-bad-chaddr', 'icmp-unreachable-sent', 'udp-inbound-evicted', 'ipv6-fragment']) t.true((stack.stats[service] ?? 0) > 0, `the corpus reached ${service}`);
  const grown = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  t.true(grown < 256, `heap grew ${grown.toFixed(0)} MiB`);
  t.log(`frames answered: ${sentFrames}; echo replies checked: ${echoChecked}; drop reasons: ${Object.keys(stack.stats).length}; tcp opened ${host.tcpOpened}, udp opened ${host.udpOpened}`);
});
