import test from 'ava';
import * as arp from './arp.js';
import { finish, pseudo4, sum16 } from './checksum.js';
import * as dhcp from './dhcp.js';
import * as eth from './ethernet.js';
import * as icmp from './icmp.js';
import * as icmpv6 from './icmpv6.js';
import * as ipv4 from './ipv4.js';
import * as ipv6 from './ipv6.js';
import * as tcp from './tcp.js';
import * as udp from './udp.js';
import * as vnet from './vnet.js';

const poisoned = (n: number) => Buffer.alloc(n, 0xa5); // a field emit forgets shows up as a5

test('checksum: RFC 1071 example, odd lengths, and a packet that sums to zero', (t) => {
  // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d.
  const b = Buffer.from('0001f203f4f5f6f7', 'hex');
  t.is(finish(sum16(b, 0, b.length)), 0x220d);
  t.is(finish(sum16(Buffer.from([0x01]), 0, 1)), ~0x0100 & 0xffff, 'an odd byte is the high half of a word');
  const h = poisoned(20);
  ipv4.emit({ src: Buffer.from([10, 0, 2, 2]), dst: Buffer.from([10, 0, 2, 100]), protocol: 6, payloadLength: 0 }, h);
  t.is(finish(sum16(h, 0, 20)), 0, 'a header with its checksum sums to zero');
  t.is(ipv4.check(h), null);
});

test('ipv4: emit/parse round trip; check rejects truncation, lying lengths, bad checksums, fragments', (t) => {
  const b = poisoned(28);
  ipv4.emit({ src: Buffer.from([192, 168, 1, 2]), dst: Buffer.from([10, 0, 2, 100]), protocol: 17, payloadLength: 8, ttl: 5, id: 7 }, b);
  t.is(ipv4.check(b), null);
  t.is(ipv4.formatAddr(ipv4.src(b)), '192.168.1.2');
  t.is(ipv4.formatAddr(ipv4.dst(b)), '10.0.2.100');
  t.deepEqual([ipv4.protocol(b), ipv4.ttl(b), ipv4.headerLength(b), ipv4.payloadEnd(b)], [17, 5, 20, 28]);
  t.is(ipv4.check(b.subarray(0, 19)), 'truncated');
  const lying = Buffer.from(b);
  lying.writeUInt16BE(500, 2);
  t.is(ipv4.check(lying), 'bad-length');
  const corrupt = Buffer.from(b);
  corrupt[15] ^= 1;
  t.is(ipv4.check(corrupt), 'bad-checksum');
  const frag = poisoned(28);
  ipv4.emit({ src: Buffer.from([1, 1, 1, 1]), dst: Buffer.from([2, 2, 2, 2]), protocol: 17, payloadLength: 8 }, frag);
  frag.writeUInt16BE(0x2000, 6); // MF
  frag.writeUInt16BE(0, 10);
  frag.writeUInt16BE(finish(sum16(frag, 0, 20)), 10);
  t.is(ipv4.check(frag), 'fragment');
  t.deepEqual([ipv4.parseAddr('10.0.2.256'), ipv4.parseAddr('1.2.3'), ipv4.parseAddr('01.2.3.4')?.length], [null, null, 4]);
});

test('ipv6: address text both ways (RFC 5952), extension headers walked, fragments reported', (t) => {
  for (const [text, canon] of [['fd00::2', 'fd00::2'], ['FD00:0:0:0:0:0:0:100', 'fd00::100'], ['::1', '::1'], ['::', '::'], ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], ['::ffff:10.0.2.2', '::ffff:a00:202'], ['fe80:0:0:1:2:3:4:5', 'fe80::1:2:3:4:5']]) {
    t.is(ipv6.formatAddr(ipv6.parseAddr(text)!), canon, text);
  }
  for (const bad of ['1::2::3', 'fd00', '12345::', '1:2:3:4:5:6:7:8:9', '::g']) t.is(ipv6.parseAddr(bad), null, bad);
  const b = poisoned(40 + 8 + 20);
  ipv6.emit({ src: ipv6.parseAddr('fd00::100')!, dst: ipv6.parseAddr('fd00::2')!, nextHeader: 0, payloadLength: 28 }, b);
  b[40] = ipv6.NH_TCP; // hop-by-hop header pointing at TCP
  b[41] = 0;
  t.is(ipv6.check(b), null);
  t.deepEqual(ipv6.upper(b), { proto: ipv6.NH_TCP, off: 48 });
  b[6] = 44;
  t.is(ipv6.check(b), 'fragment');
  b[6] = 0;
  b[41] = 10; // extension header longer than the packet
  t.is(ipv6.check(b), 'truncated');
});

test('tcp: header and options round trip (MSS, wscale, SACK-permitted, SACK blocks); junk options stop parsing', (t) => {
  const h = { srcPort: 40000, dstPort: 80, seq: 0xfffffff0, ack: 5, flags: tcp.SYN | tcp.ACK, window: 1234, options: { mss: 65480, wscale: 7, sackOk: true, sack: [[1, 2], [0xfffffff0, 3]] as Array<[number, number]> } };
  const b = poisoned(tcp.TCP_HDR_LEN + tcp.optionsLength(h.options));
  const n = tcp.emit(h, b);
  t.is(n, b.length);
  t.is(tcp.check(b, 0, n), null);
  const p = tcp.parse(b, 0);
  t.like(p, { srcPort: 40000, dstPort: 80, seq: 0xfffffff0, ack: 5, flags: tcp.SYN | tcp.ACK, window: 1234, payloadOff: n });
  t.deepEqual(p.options, h.options);
  b[20] = 2;
  b[21] = 40; // an MSS option whose length runs past the header
  t.deepEqual(tcp.parse(b, 0).options, {});
  t.is(tcp.check(b, 0, 19), 'truncated');
  b[12] = 0x40; // data offset 16 < 20
  t.is(tcp.check(b, 0, n), 'bad-data-offset');
  t.true(tcp.seqLt(0xfffffff0, 5) && !tcp.seqLt(5, 0xfffffff0), 'sequence comparison wraps');
  t.is(tcp.seqAdd(0xffffffff, 2), 1);
});

test('udp, icmp, arp, ethernet, vnet and dhcp codecs round trip', (t) => {
  const u = poisoned(12);
  udp.emit({ srcPort: 5353, dstPort: 53, payloadLength: 4 }, u);
  t.is(udp.check(u, 0, 12), null);
  t.deepEqual([udp.srcPort(u, 0), udp.dstPort(u, 0), udp.length(u, 0), udp.checksum(u, 0)], [5353, 53, 12, 0]);
  t.is(udp.check(u, 0, 11), 'bad-length');

  const i = poisoned(12);
  icmp.emit({ type: icmp.ECHO_REQUEST, code: 0, rest: 0x12340001, body: Buffer.from('ping') }, i);
  t.is(icmp.check(i, 0, 12), null);
  t.deepEqual([icmp.type(i, 0), icmp.echoId(i, 0), icmp.echoSeq(i, 0)], [8, 0x1234, 1]);
  i[9] ^= 0xff;
  t.is(icmp.check(i, 0, 12), 'bad-checksum');

  const a = poisoned(arp.ARP_LEN);
  const mac = eth.parseMac('52:55:0a:00:02:02');
  arp.emit({ op: arp.OP_REPLY, senderMac: mac, senderIp: Buffer.from([10, 0, 2, 2]), targetMac: eth.BROADCAST, targetIp: Buffer.from([10, 0, 2, 100]) }, a);
  t.is(arp.check(a), null);
  const pa = arp.parse(a);
  t.is(eth.formatMac(pa.senderMac), '52:55:0a:00:02:02');
  t.is(ipv4.formatAddr(pa.targetIp), '10.0.2.100');
  t.throws(() => eth.parseMac('52:55:0a:00:02'), { message: /invalid MAC/ });

  const v = poisoned(12);
  vnet.emit({ flags: vnet.F_NEEDS_CSUM, gsoType: vnet.GSO_TCPV4, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 }, v);
  t.deepEqual(vnet.parse(v), { flags: 1, gsoType: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
  t.is(v.readUInt16LE(10), 0, 'num_buffers is written');

  const req = Buffer.alloc(300);
  req[0] = 1;
  req.writeUInt32BE(0xdeadbeef, 4);
  mac.copy(req, 28);
  req.writeUInt32BE(0x63825363, 236);
  Buffer.from([53, 1, dhcp.REQUEST, 50, 4, 10, 0, 2, 100, 255]).copy(req, 240);
  t.is(dhcp.check(req, 0, req.length), null);
  const r = dhcp.parse(req, 0, req.length);
  t.like(r, { xid: 0xdeadbeef, type: dhcp.REQUEST });
  t.is(ipv4.formatAddr(r.requestedIp!), '10.0.2.100');
  const out = poisoned(600);
  const n = dhcp.emitReply({ type: dhcp.ACK, xid: r.xid, flags: 0, chaddr: mac, yiaddr: Buffer.from([10, 0, 2, 100]), server: Buffer.from([10, 0, 2, 2]), netmask: Buffer.from([255, 255, 255, 0]), router: Buffer.from([10, 0, 2, 2]), dns: [Buffer.from([10, 0, 2, 3])], mtu: 65520, leaseS: 3600 }, out, 0);
  t.true(n >= 300);
  t.is(out[0], 2);
  t.is(ipv4.formatAddr(out, 16), '10.0.2.100');
  const opts = out.subarray(240, n);
  t.deepEqual([...opts.subarray(0, 3)], [53, 1, dhcp.ACK]);
  t.true(opts.includes(Buffer.from([26, 2, 0xff, 0xf0])), 'MTU option 26');
  t.is(dhcp.check(req, 0, 200), 'truncated');
});

test('pseudo-header sums agree with a whole-packet sum', (t) => {
  const b = poisoned(20 + 8 + 3);
  ipv4.emit({ src: Buffer.from([10, 0, 2, 100]), dst: Buffer.from([8, 8, 8, 8]), protocol: 17, payloadLength: 11 }, b);
  udp.emit({ srcPort: 1, dstPort: 2, payloadLength: 3 }, b, 20);
  b.set([1, 2, 3], 28);
  const sum = finish(sum16(b, 20, 31, pseudo4(b, 12, 16, 17, 11)));
  b.writeUInt16BE(sum, 26);
  t.is(finish(sum16(b, 20, 31, pseudo4(b, 12, 16, 17, 11))), 0);
});

test('byteLength agrees with emit for every message the stack sizes its buffers by (no byte left unwritten)', (t) => {
  const ra: icmpv6.RouterAdvert = { mac: Buffer.alloc(6, 2), mtu: 65520, prefix: ipv6.parseAddr('fd00::')!, prefixLength: 64, dns: ipv6.parseAddr('fd00::3')!, lifetimeS: 1800 };
  for (const r of [ra, { ...ra, dns: undefined }]) {
    const n = icmpv6.routerAdvertLength(r);
    const out = poisoned(n + 8);
    t.is(icmpv6.emitRouterAdvert(r, out, 0), n);
    t.false(out.subarray(0, n).includes(Buffer.from([0xa5, 0xa5, 0xa5, 0xa5])), 'RA: every byte written');
    t.is(out[n], 0xa5, 'RA: nothing past its length');
  }
  const na = poisoned(icmpv6.NEIGHBOR_ADVERT_LEN + 4);
  t.is(icmpv6.emitNeighborAdvert(ipv6.parseAddr('fd00::2')!, Buffer.alloc(6, 1), na, 0, false), icmpv6.NEIGHBOR_ADVERT_LEN);
  t.is(na.readUInt32BE(4), 0xa0000000, 'unsolicited NA: R and O, not S');
  t.is(na[icmpv6.NEIGHBOR_ADVERT_LEN], 0xa5);
  const quote = Buffer.alloc(48, 7);
  const du = poisoned(8 + quote.length + 2);
  t.is(icmpv6.emitDestUnreach(icmpv6.UNREACH_NO_ROUTE, quote, du, 0), 8 + quote.length);
  t.deepEqual([du[0], du[1], du.readUInt32BE(4)], [1, 0, 0]);
  t.deepEqual(du.subarray(8, 56), quote);
  t.is(du[56], 0xa5);
  for (const reply of [
    { type: dhcp.ACK, leaseS: 3600 },
    { type: dhcp.ACK, ciaddr: Buffer.from([10, 0, 2, 100]) },
    { type: dhcp.NAK },
  ]) {
    const r: dhcp.DhcpReply = { xid: 1, flags: 0, chaddr: Buffer.alloc(6, 3), yiaddr: Buffer.alloc(4), server: Buffer.from([10, 0, 2, 2]), netmask: Buffer.from([255, 255, 255, 0]), router: Buffer.from([10, 0, 2, 2]), dns: [Buffer.from([10, 0, 2, 3])], mtu: 1500, ...reply };
    const n = dhcp.replyLength(r);
    const out = poisoned(n + 1);
    t.is(dhcp.emitReply(r, out, 0), n);
    t.is(out[n], 0xa5);
    t.false(out.subarray(0, n).includes(0xa5), `DHCP ${reply.type}: every byte written`);
  }
});
