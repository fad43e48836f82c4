/**
 * The stack against an in-memory link and fake host sockets, on a manual clock: L2/L3 services,
 * UDP and DNS flows, TCP both ways, isolation of host loopback, limits and bad input.
 */
import test from 'ava';
import * as arp from '../wire/arp.js';
import * as eth from '../wire/ethernet.js';
import * as icmp from '../wire/icmp.js';
import * as tcp from '../wire/tcp.js';
import * as vnet from '../wire/vnet.js';
import { Stack, type StackConfig } from './stack.js';
import { a4, a6, decode, FakeHost, frame, GUEST_MAC, ipPacket, OUR_MAC, tcpFrame, udpFrame, type Decoded, type FakeTcp } from './testing.js';

const GUEST = a4('10.0.2.100');
const GW = a4('10.0.2.2');
const DNS = a4('10.0.2.3');
const GUEST6 = a6('fd00::100');

function setup(over: Partial<StackConfig> = {}) {
  const sent: Buffer[] = [];
  const host = new FakeHost();
  const config: StackConfig = {
    mtu: 65520,
    mac: OUR_MAC,
    v4: { guest: GUEST, gateway: GW, dns: DNS, prefixLength: 24 },
    v6: { prefix: a6('fd00::'), prefixLength: 64, guest: GUEST6, gateway: a6('fd00::2'), dns: a6('fd00::3'), linkLocal: a6('fe80::2') },
    nameservers: { v4: '127.0.0.53' },
    random: () => 1000,
    ...over,
  };
  const stack = new Stack(config, (parts) => sent.push(Buffer.concat(parts)), host);
  const out = (): Decoded[] => sent.splice(0).map(decode);
  return { stack, host, out, sent };
}

test('ARP: answers for the gateway and DNS addresses only, with our MAC', (t) => {
  const { stack, out } = setup();
  const req = (target: Buffer) => {
    const b = Buffer.alloc(arp.ARP_LEN);
    arp.emit({ op: arp.OP_REQUEST, senderMac: GUEST_MAC, senderIp: GUEST, targetMac: Buffer.alloc(6), targetIp: target }, b);
    return frame(eth.ETHERTYPE_ARP, b, 0, eth.BROADCAST);
  };
  stack.receive(req(GW), 0);
  stack.receive(req(DNS), 0);
  stack.receive(req(a4('10.0.2.50')), 0);
  const replies = out();
  t.is(replies.length, 2);
  const r = arp.parse(replies[0].raw.subarray(14));
  t.is(r.op, arp.OP_REPLY);
  t.is(eth.formatMac(r.senderMac), '52:55:0a:00:02:02');
  t.is(replies[0].dstMac, '02:00:00:00:00:aa');
});

test('ICMP echo: the gateway answers itself; other hosts through a ping socket with the identifier restored; refusals counted', (t) => {
  const { stack, out, host } = setup();
  const echo = (dst: Buffer) => {
    const l4 = Buffer.alloc(12);
    icmp.emit({ type: icmp.ECHO_REQUEST, code: 0, rest: 0x00070001, body: Buffer.from('abcd') }, l4);
    return frame(eth.ETHERTYPE_IPV4, ipPacket(GUEST, dst, 1, l4, -1));
  };
  stack.receive(echo(GW), 0);
  stack.receive(echo(a4('198.51.100.1')), 0);
  const [r] = out();
  t.like(r, { src: '10.0.2.2', dst: '10.0.2.100', proto: 1, checksumOk: true });
  t.is(r.l4![0], icmp.ECHO_REPLY);
  t.is(r.l4!.subarray(8).toString(), 'abcd');
  t.is(host.ping.length, 1);
  t.is(host.ping[0].sent[0].address, '198.51.100.1');
  // The kernel answers with its own identifier (0x4444); the container gets its own (7) back.
  const reply = Buffer.alloc(12);
  icmp.emit({ type: icmp.ECHO_REPLY, code: 0, rest: 0x44440001, body: Buffer.from('abcd') }, reply);
  host.ping[0].h.onReply(reply, 1);
  const [fwd] = out();
  t.like(fwd, { src: '198.51.100.1', dst: '10.0.2.100', checksumOk: true });
  t.deepEqual([fwd.l4!.readUInt16BE(4), fwd.l4!.readUInt16BE(6)], [7, 1]);
  stack.receive(echo(a4('127.0.0.1')), 2);
  t.is(stack.stats['icmp-echo-refused-destination'], 1, 'never toward the host\'s loopback');
  stack.poll(2 + 60_000);
  t.true(host.ping[0].closed, 'idle echo flows close');
  host.pingAllowed = false;
  stack.receive(echo(a4('198.51.100.2')), 70_000);
  t.is(stack.stats['icmp-echo-not-permitted'], 1, 'a host without ping sockets for the user: dropped and counted');
});

test('UDP: a flow per 4-tuple on a connected host socket; DNS goes to the host nameserver; replies come back partial-checksummed', (t) => {
  const { stack, host, out } = setup();
  stack.receive(udpFrame(GUEST, 40000, a4('192.0.2.77'), 9999, Buffer.from('hi')), 0);
  stack.receive(udpFrame(GUEST, 40000, a4('192.0.2.77'), 9999, Buffer.from('again')), 1);
  stack.receive(udpFrame(GUEST, 40001, DNS, 53, Buffer.from('query')), 2);
  t.deepEqual(host.udp.map((u) => `${u.address}:${u.port}`), ['192.0.2.77:9999', '127.0.0.53:53'], 'DNS to 10.0.2.3 reaches the host resolver, even on 127.0.0.x (podman#22044)');
  t.deepEqual(host.udp[0].sent.map(String), ['hi', 'again']);
  host.udp[1].h.onMessage(Buffer.from('answer'), 3);
  const [r] = out();
  t.like(r, { src: '10.0.2.3', dst: '10.0.2.100', vnetFlags: vnet.F_NEEDS_CSUM, checksumOk: true });
  t.like(r.udp, { srcPort: 53, dstPort: 40001 });
  t.is(r.udp!.payload.toString(), 'answer');
  stack.poll(3 + 30_000);
  t.true(host.udp.every((u) => u.closed), 'idle UDP flows expire');
  t.is(stack.flowCount().udp, 0);
});

test('TCP out: the host connect completes before the SYN-ACK; data flows both ways; FINs close both sides', (t) => {
  const { stack, host, out } = setup();
  const dst = a4('192.0.2.80');
  stack.receive(tcpFrame(GUEST, 40000, dst, 80, { seq: 100, flags: tcp.SYN, options: { mss: 65480, wscale: 7, sackOk: true } }), 0);
  t.deepEqual(out(), [], 'no SYN-ACK before the host side connects');
  t.like(host.tcp[0], { address: '192.0.2.80', port: 80 });
  host.tcp[0].h.onConnect(1);
  const [sa] = out();
  t.like(sa.tcp, { flags: tcp.SYN | tcp.ACK, ack: 101, seq: 1000 });
  t.deepEqual(sa.tcp!.options, { mss: 65480, wscale: 7, sackOk: true });
  t.true(sa.checksumOk);
  stack.receive(tcpFrame(GUEST, 40000, dst, 80, { seq: 101, ack: 1001, flags: tcp.ACK, payload: Buffer.from('GET /') }), 2);
  stack.flush(2);
  t.is(Buffer.concat(host.tcp[0].written).toString(), 'GET /');
  t.like(out()[0].tcp, { ack: 106 });
  host.tcp[0].h.onData(Buffer.from('200 OK'), 3);
  const [data] = out();
  t.is(data.tcp!.payload.toString(), '200 OK');
  t.true(data.checksumOk);
  host.tcp[0].h.onEnd(4);
  t.like(out()[0].tcp, { flags: tcp.FIN | tcp.ACK });
  stack.receive(tcpFrame(GUEST, 40000, dst, 80, { seq: 106, ack: 1008, flags: tcp.FIN | tcp.ACK }), 5);
  t.true(host.tcp[0].ended);
  t.is(stack.flowCount().tcp, 0, 'no TIME_WAIT: the flow is gone');
});

test('TCP out: a refused host connect is a refused container connect (RST)', (t) => {
  const { stack, host, out } = setup();
  stack.receive(tcpFrame(GUEST, 40000, a4('192.0.2.80'), 81, { seq: 100, flags: tcp.SYN }), 0);
  host.tcp[0].h.onError('ECONNREFUSED', 1);
  const [r] = out();
  t.like(r.tcp, { flags: tcp.RST | tcp.ACK, ack: 101 });
  t.is(stack.flowCount().tcp, 0);
  t.is(stack.flowCount().halfOpen, 0);
});

test('isolation: host loopback is unreachable without the opt-in, and reachable through the mapped address with it', (t) => {
  const { stack, host, out } = setup();
  for (const dst of ['10.0.2.2', '127.0.0.1', '0.0.0.0', '10.0.2.3']) stack.receive(tcpFrame(GUEST, 40000, a4(dst), 22, { seq: 1, flags: tcp.SYN }), 0);
  for (const dst of ['::1', '::', '::ffff:127.0.0.1', 'fe80::1', 'fd00::2']) stack.receive(tcpFrame(GUEST6, 40000, a6(dst), 22, { seq: 1, flags: tcp.SYN }), 0);
  stack.receive(udpFrame(GUEST, 40000, a4('127.0.0.1'), 53, Buffer.from('x')), 0);
  t.is(host.tcp.length + host.udp.length, 0, 'no host socket was opened');
  t.true(out().every((d) => d.tcp?.flags === (tcp.RST | tcp.ACK)), 'each SYN got an RST');
  t.is(stack.stats['tcp-refused-destination'], 9);

  const mapped = setup({ mapHostLoopback: { v4: GW } });
  mapped.stack.receive(tcpFrame(GUEST, 40000, GW, 8080, { seq: 1, flags: tcp.SYN }), 0);
  t.like(mapped.host.tcp[0], { address: '127.0.0.1', port: 8080 });
});

test('TCP in (port forward): SYN from the client\'s own address; loopback clients appear as the gateway; the container\'s RST resets the client', (t) => {
  const { stack, out } = setup();
  const fake = (): FakeTcp => ({ family: 4, address: '', port: 0, h: null as never, written: [], ended: false, destroyed: false, paused: false, pendingBytes: 0 });
  const s = fake();
  let handlers: import('./host.js').HostTcpHandlers | null = null;
  t.true(stack.acceptInbound(4, a4('10.99.0.2'), 51000, 80, (h) => {
    handlers = h;
    return FakeHost.wrap(s);
  }, 0));
  t.true(s.paused, 'the accepted socket waits for the container');
  const [syn] = out();
  t.like(syn, { src: '10.99.0.2', dst: '10.0.2.100' });
  t.like(syn.tcp, { srcPort: 51000, dstPort: 80, flags: tcp.SYN });
  stack.receive(tcpFrame(GUEST, 80, a4('10.99.0.2'), 51000, { seq: 9000, ack: 1001, flags: tcp.SYN | tcp.ACK, options: { mss: 1460 } }), 1);
  t.false(s.paused);
  t.like(out()[0].tcp, { flags: tcp.ACK, ack: 9001 });
  handlers!.onData(Buffer.from('req'), 2);
  t.is(out()[0].tcp!.payload.toString(), 'req');
  const second = fake();
  stack.acceptInbound(4, a4('127.0.0.1'), 52000, 80, () => FakeHost.wrap(second), 3);
  t.like(out()[0], { src: '10.0.2.2' });
  // RST from the container (nothing listening): the client must see a reset, not a FIN.
  stack.receive(tcpFrame(GUEST, 80, a4('10.0.2.2'), 52000, { seq: 0, ack: 1001, flags: tcp.RST | tcp.ACK }), 4);
  t.is(stack.flowCount().tcp, 1);
  t.is(second.destroyed, 'reset', 'the very socket the forward accepted was reset');
  t.false(second.ended);
  t.is(stack.stats['tcp-close-refused'], 1);
});

test('limits: flows and half-open handshakes are capped, and the refusals counted', (t) => {
  const { stack, host } = setup({ limits: { maxOutboundFlows: 5, maxHalfOpenOutbound: 3 } });
  for (let i = 0; i < 10; i++) stack.receive(tcpFrame(GUEST, 40000 + i, a4('192.0.2.80'), 80, { seq: 1, flags: tcp.SYN }), 0);
  t.is(host.tcp.length, 3, 'three handshakes in progress at most');
  t.is(stack.stats['half-open-limit'], 7);
  for (const s of host.tcp) s.h.onConnect(1);
  for (let i = 0; i < 3; i++) stack.receive(tcpFrame(GUEST, 40000 + i, a4('192.0.2.80'), 80, { seq: 2, ack: 1001, flags: tcp.ACK }), 2);
  for (let i = 10; i < 15; i++) stack.receive(tcpFrame(GUEST, 40000 + i, a4('192.0.2.80'), 80, { seq: 1, flags: tcp.SYN }), 3);
  t.is(host.tcp.length, 5);
  t.is(stack.stats['outbound-flow-limit'], 3);
});

test('bad input is dropped and counted: bad checksums (unless the kernel vouched), junk, truncation', (t) => {
  const { stack, host } = setup();
  const good = udpFrame(GUEST, 40000, a4('192.0.2.77'), 9, Buffer.from('x'));
  const bad = Buffer.from(good);
  bad[bad.length - 1] ^= 0xff; // payload changed, checksum not
  stack.receive(bad, 0);
  t.is(stack.stats['udp-bad-checksum'], 1);
  bad[0] = vnet.F_DATA_VALID;
  stack.receive(bad, 0);
  t.is(host.udp.length, 1, 'a frame the kernel marked DATA_VALID is not summed again');
  for (const f of [Buffer.alloc(5), Buffer.alloc(20), frame(0x1234, Buffer.alloc(10)), frame(eth.ETHERTYPE_IPV4, Buffer.alloc(3))]) stack.receive(f, 0);
  t.deepEqual([stack.stats['truncated-vnet'], stack.stats['truncated-ethernet'], stack.stats['unknown-ethertype'], stack.stats['ipv4-truncated']], [1, 1, 1, 1]);
  t.is(stack.stats['internal-error'] ?? 0, 0);
});

test('IPv6: neighbor solicitation and router solicitation answered with hop limit 255', (t) => {
  const { stack, out } = setup();
  const ns = Buffer.alloc(32);
  ns[0] = 135;
  a6('fd00::2').copy(ns, 8);
  ns[24] = 1;
  ns[25] = 1;
  GUEST_MAC.copy(ns, 26);
  const pkt = ipPacket(GUEST6, a6('ff02::1:ff00:2'), 58, ns, 2);
  pkt[7] = 255;
  stack.receive(frame(eth.ETHERTYPE_IPV6, pkt), 0);
  const [na] = out();
  t.like(na, { src: 'fd00::2', dst: 'fd00::100', proto: 58, checksumOk: true });
  t.is(na.l4![0], 136);
  t.is(na.raw[14 + 7], 255);
  const rs = Buffer.alloc(8);
  rs[0] = 133;
  const rsPkt = ipPacket(a6('fe80::aa'), a6('ff02::2'), 58, rs, 2);
  stack.receive(frame(eth.ETHERTYPE_IPV6, rsPkt), 0);
  t.deepEqual(out(), [], 'hop limit 64: not from the link, not answered (RFC 4861 6.1.1)');
  t.is(stack.stats['ndp-bad-hop-limit'], 1);
  rsPkt[7] = 255;
  stack.receive(frame(eth.ETHERTYPE_IPV6, rsPkt), 0);
  const [ra] = out();
  t.like(ra, { src: 'fe80::2', dst: 'fe80::aa', checksumOk: true });
  t.is(ra.l4![0], 134);
  t.is(ra.raw[14 + 7], 255);
});
