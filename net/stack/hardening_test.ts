/**
 * The defects of issue 14 found by adversarial probes, each as a test that failed before its fix:
 * host socket errors, floods through forwards, echo sizes, memory budgets, host fd budgets, the
 * DHCP and NDP deviations, and the guard that keeps a bug on one flow from reaching the others.
 */
import test from 'ava';
import * as dhcp from '../wire/dhcp.js';
import * as eth from '../wire/ethernet.js';
import * as icmp from '../wire/icmp.js';
import * as tcp from '../wire/tcp.js';
import type { HostSockets, HostTcp, HostTcpHandlers, HostUdp, HostUdpHandlers } from './host.js';
import { Stack, type StackConfig } from './stack.js';
import { a4, a6, decode, FakeHost, frame, GUEST_MAC, ipPacket, OUR_MAC, tcpFrame, udpFrame, type Decoded } from './testing.js';

const GUEST = a4('10.0.2.100');
const GUEST6 = a6('fd00::100');

function config(over: Partial<StackConfig> = {}): StackConfig {
  return {
    mtu: 65520,
    mac: OUR_MAC,
    v4: { guest: GUEST, gateway: a4('10.0.2.2'), dns: a4('10.0.2.3'), prefixLength: 24 },
    v6: { prefix: a6('fd00::'), prefixLength: 64, guest: GUEST6, gateway: a6('fd00::2'), dns: a6('fd00::3'), linkLocal: a6('fe80::2') },
    nameservers: { v4: '127.0.0.53' },
    random: () => 1000,
    ...over,
  };
}

function setup(over: Partial<StackConfig> = {}, host: HostSockets = new FakeHost()) {
  const sent: Buffer[] = [];
  const stack = new Stack(config(over), (parts) => sent.push(Buffer.concat(parts)), host);
  const out = (): Decoded[] => sent.splice(0).map(decode);
  return { stack, host: host as FakeHost, out, sent };
}

/** An echo request from the container with `size` bytes of data (a recognisable pattern). */
function echo(dst: Buffer, size: number, seq = 1): { f: Buffer; data: Buffer } {
  const data = Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + seq) & 0xff));
  const v6 = dst.length === 16;
  const l4 = Buffer.alloc(8 + size);
  l4[0] = v6 ? 128 : icmp.ECHO_REQUEST;
  l4.writeUInt16BE(0x1234, 4);
  l4.writeUInt16BE(seq, 6);
  data.copy(l4, 8);
  if (!v6) icmp.emit({ type: icmp.ECHO_REQUEST, code: 0, rest: (0x1234 << 16) | seq, body: data }, l4);
  return { f: frame(v6 ? eth.ETHERTYPE_IPV6 : eth.ETHERTYPE_IPV4, ipPacket(v6 ? GUEST6 : GUEST, dst, v6 ? 58 : 1, l4, v6 ? 2 : -1)), data };
}

/** Runs `fn` with Buffer.allocUnsafe handing out buffers full of 0xa5, so unwritten bytes show. */
function poisoned<T>(fn: () => T): T {
  const real = Buffer.allocUnsafe;
  Buffer.allocUnsafe = ((n: number) => real(n).fill(0xa5)) as typeof Buffer.allocUnsafe;
  try {
    return fn();
  } finally {
    Buffer.allocUnsafe = real;
  }
}

test('item 1: a host UDP socket that cannot connect (no route) drops its flow with ICMP unreachable; the stack and its other flows go on', (t) => {
  const { stack, host, out } = setup();
  stack.receive(udpFrame(GUEST6, 40000, a6('2001:db8::1'), 9999, Buffer.from('to nowhere')), 0);
  stack.receive(udpFrame(GUEST, 40001, a4('192.0.2.7'), 9999, Buffer.from('fine')), 0);
  t.is(host.udp.length, 2);
  host.udp[0].h.onError('ENETUNREACH', 1);
  const [err] = out();
  t.like(err, { src: 'fd00::2', dst: 'fd00::100', proto: 58, checksumOk: true });
  t.deepEqual([err.l4![0], err.l4![1]], [1, 0], 'ICMPv6 destination unreachable, no route (RFC 4443 3.1)');
  const quoted = err.l4!.subarray(8);
  t.deepEqual([quoted.subarray(8, 24), quoted.subarray(24, 40)], [GUEST6, a6('2001:db8::1')], 'it quotes the container\'s own datagram');
  t.is(quoted.readUInt16BE(40), 40000);
  t.is(stack.flowCount().udp, 1);
  t.true(host.udp[0].closed);
  // v4: host unreachable, and port unreachable on a connected socket.
  host.udp[1].h.onError('EHOSTUNREACH', 2);
  const [hu] = out();
  t.deepEqual([hu.l4![0], hu.l4![1], stack.flowCount().udp], [icmp.DEST_UNREACH, icmp.UNREACH_HOST, 0]);
  stack.receive(udpFrame(GUEST, 40002, a4('192.0.2.8'), 53, Buffer.from('q')), 3);
  host.udp[2].h.onError('ECONNREFUSED', 4);
  const [pu] = out();
  t.deepEqual([pu.l4![0], pu.l4![1]], [icmp.DEST_UNREACH, icmp.UNREACH_PORT], 'port unreachable');
  // Everything else still works.
  stack.receive(tcpFrame(GUEST, 41000, a4('192.0.2.80'), 80, { seq: 1, flags: tcp.SYN }), 5);
  host.tcp[0].h.onConnect(6);
  t.like(out()[0].tcp, { flags: tcp.SYN | tcp.ACK });
  t.is(stack.stats['internal-error'] ?? 0, 0);
  t.is(stack.budgets.usage().hostSockets, 1, 'the failed flows gave their sockets back');
});

test('item 1: ICMP errors are rate-limited like the kernel (burst 50, then icmpErrorsPerSecond)', (t) => {
  const { stack, host, out } = setup();
  for (let i = 0; i < 80; i++) stack.receive(udpFrame(GUEST, 30000 + i, a4('192.0.2.9'), 9, Buffer.from('x')), 0);
  for (const u of host.udp) u.h.onError('ENETUNREACH', 0);
  t.is(out().length, 50);
  t.is(stack.stats['icmp-error-ratelimited'], 30);
  stack.receive(udpFrame(GUEST, 31000, a4('192.0.2.9'), 9, Buffer.from('x')), 0);
  host.udp.at(-1)!.h.onError('ENETUNREACH', 10); // 10 ms later: 10 tokens back at 1000/s
  t.is(out().length, 1);
});

test('item 2: a UDP flood through a forward cannot take the container\'s own flows, nor all inbound ones', (t) => {
  const { stack, host, out } = setup({ limits: { maxOutboundFlows: 4096, maxInboundFlows: 1024, maxInboundPerClient: 128 } });
  const replies: Buffer[] = [];
  // 4,200 datagrams from different source ports of one remote.
  for (let port = 1024; port < 1024 + 4200; port++) stack.forwardUdp(4, a4('198.51.100.9'), port, 5353, Buffer.from('flood'), (d) => replies.push(d), port);
  t.is(stack.budgets.usage().inbound, 128, 'one client holds at most maxInboundPerClient flows');
  t.true(stack.stats['udp-inbound-evicted'] >= 4000, 'the oldest unanswered flows made room (conntrack early drop)');
  // Spoofed sources: many clients. The inbound budget fills; the container's own stays free.
  for (let i = 0; i < 3000; i++) stack.forwardUdp(4, a4(`203.0.${i >> 8}.${i & 0xff}`), 999, 5353, Buffer.from('spoof'), () => undefined, 5000 + i);
  t.is(stack.budgets.usage().inbound, 1024);
  out();
  stack.receive(tcpFrame(GUEST, 40000, a4('192.0.2.80'), 80, { seq: 1, flags: tcp.SYN }), 9000);
  t.is(host.tcp.length, 1, 'the container still connects out');
  stack.receive(udpFrame(GUEST, 40001, a4('10.0.2.3'), 53, Buffer.from('dns')), 9000);
  t.deepEqual(host.udp.map((u) => `${u.address}:${u.port}`), ['127.0.0.53:53'], 'and its DNS still goes out');
  // A client the container answered is not evicted by the flood that follows.
  stack.forwardUdp(4, a4('192.0.2.200'), 7777, 5353, Buffer.from('legit'), (d) => replies.push(d), 9001);
  stack.receive(udpFrame(GUEST, 5353, a4('192.0.2.200'), 7777, Buffer.from('answer')), 9002);
  t.is(replies.at(-1)!.toString(), 'answer');
  for (let i = 0; i < 3000; i++) stack.forwardUdp(4, a4(`203.1.${i >> 8}.${i & 0xff}`), 999, 5353, Buffer.from('spoof'), () => undefined, 10_000 + i);
  stack.receive(udpFrame(GUEST, 5353, a4('192.0.2.200'), 7777, Buffer.from('still here')), 20_000);
  t.is(replies.at(-1)!.toString(), 'still here');
  t.is(stack.stats['internal-error'] ?? 0, 0);
});

test('item 3: echoes of 56 to 8,000 bytes are intact over v4 and v6, to the gateway and to remote hosts, with no stale bytes', (t) => {
  const { stack, host, out } = setup();
  for (const size of [56, 1452, 1500, 3000, 8000]) {
    for (const dst of [a4('10.0.2.2'), a6('fd00::2'), a4('192.0.2.1'), a6('2001:db8::1')]) {
      const { f, data } = echo(dst, size, size & 0xff);
      poisoned(() => stack.receive(f, 0));
      const remote = !(dst.equals(a4('10.0.2.2')) || dst.equals(a6('fd00::2')));
      if (remote) {
        // The host's ping socket echoes the message back, with the kernel's identifier.
        const p = host.ping.find((x) => x.family === (dst.length === 16 ? 6 : 4))!;
        const m = Buffer.from(p.sent.at(-1)!.message);
        m[0] = dst.length === 16 ? 129 : icmp.ECHO_REPLY;
        m.writeUInt16BE(0x4444, 4);
        poisoned(() => p.h.onReply(m, 1));
      }
      const [r] = out();
      const what = `${size} bytes to ${decode(f).dst}`;
      t.truthy(r, `${what}: answered`);
      t.true(r.checksumOk, `${what}: checksum`);
      t.deepEqual(r.l4!.subarray(8), data, `${what}: the data came back intact`);
      t.is(r.l4!.readUInt16BE(4), 0x1234, `${what}: the container's identifier`);
    }
  }
  t.is(stack.stats['internal-error'] ?? 0, 0);
});

/** Host sockets whose peers never read: every byte written stays pending. */
class StuckHost implements HostSockets {
  readonly conns: Array<{ h: HostTcpHandlers; pending: number }> = [];
  connectTcp(_f: 4 | 6, _a: string, _p: number, h: HostTcpHandlers): HostTcp {
    const c = { h, pending: 0 };
    this.conns.push(c);
    return { write: (d) => (c.pending += d.length), end: () => undefined, destroy: () => undefined, pause: () => undefined, resume: () => undefined, pending: () => c.pending };
  }
  openUdp(): HostUdp {
    return { send: () => undefined, close: () => undefined };
  }
}

test('item 4: 100 connections whose host peers never read stay within the byte budget, and the stack keeps serving', (t) => {
  const budget = 8 << 20;
  const floor = 16 << 10;
  const host = new StuckHost();
  const { stack, out } = setup({ mtu: 65520, limits: { bufferBytes: budget, bufferFloorBytes: floor } }, host);
  const dst = a4('192.0.2.80');
  const conns: Array<{ port: number; seq: number; edge: number }> = [];
  for (let i = 0; i < 100; i++) {
    const port = 20000 + i;
    stack.receive(tcpFrame(GUEST, port, dst, 80, { seq: 1, flags: tcp.SYN, options: { mss: 65480, wscale: 7 } }), 0);
    host.conns[i].h.onConnect(0);
    const sa = out()[0].tcp!;
    stack.receive(tcpFrame(GUEST, port, dst, 80, { seq: 2, ack: sa.seq + 1, flags: tcp.ACK }), 0);
    conns.push({ port, seq: 2, edge: 2 + sa.window });
  }
  // Each container sender pushes whatever its advertised window allows, again and again.
  for (let round = 0; round < 20; round++) {
    for (const c of conns) {
      while (c.seq < c.edge) {
        const n = Math.min(60_000, c.edge - c.seq);
        stack.receive(tcpFrame(GUEST, c.port, dst, 80, { seq: c.seq, ack: 1001, flags: tcp.ACK, payload: Buffer.alloc(n) }), round);
        stack.flush(round);
        const acks = out().filter((d) => d.tcp && d.tcp.dstPort === c.port);
        const last = acks.at(-1)?.tcp;
        if (!last) break;
        const advanced = last.ack !== c.seq;
        c.seq = last.ack;
        c.edge = last.ack + last.window * 128;
        if (!advanced) break;
      }
    }
  }
  const held = host.conns.reduce((a, c) => a + c.pending, 0);
  t.true(held > budget / 2, `the budget was used (${held} bytes held)`);
  t.true(held <= budget + 100 * floor, `held ${held} bytes, budget ${budget} + floors ${100 * floor}`);
  t.true(stack.budgets.bytes.peak <= budget + 100 * floor);
  t.is(stack.budgets.bytes.used, held, 'the budget counts exactly what the host sockets hold');
  // A new connection is still served (it gets its floor).
  stack.receive(tcpFrame(GUEST, 30000, dst, 80, { seq: 1, flags: tcp.SYN }), 30);
  host.conns.at(-1)!.h.onConnect(30);
  t.true(out()[0].tcp!.window > 0);
  stack.shutdown();
  t.is(stack.budgets.bytes.used, 0, 'the flows are gone, and so is everything they held');
});

test('item 8: host sockets are capped; idle UDP flows and stalled handshakes are reclaimed early under pressure', (t) => {
  const host = new FakeHost();
  const { stack, out } = setup({ limits: { maxHostSockets: 64, reclaimIdleMs: 2_000, reclaimHandshakeMs: 3_000 } }, host);
  const open = () => host.udp.filter((u) => !u.closed).length + host.tcp.filter((s) => !s.destroyed && !s.ended).length;
  for (let i = 0; i < 200; i++) stack.receive(udpFrame(GUEST, 40000, a4(`192.0.2.${i % 250}`), 1000 + i, Buffer.from('x')), 0);
  t.is(open(), 64, 'never more host sockets than the cap');
  t.is(stack.stats['host-socket-limit'], 136);
  // Three seconds later the idle flows make room for new ones.
  stack.receive(udpFrame(GUEST, 40001, a4('192.0.2.99'), 53, Buffer.from('later')), 3_000);
  t.is(stack.stats.reclaimed, 64);
  t.is(open(), 1);
  // Stalled handshakes: SYNs whose host connects never complete.
  for (let i = 0; i < 100; i++) stack.receive(tcpFrame(GUEST, 50000 + i, a4('192.0.2.80'), 80, { seq: 1, flags: tcp.SYN }), 3_000);
  t.is(open(), 64);
  out();
  stack.receive(tcpFrame(GUEST, 60000, a4('192.0.2.80'), 80, { seq: 1, flags: tcp.SYN }), 7_000);
  t.true(out().filter((d) => d.tcp?.flags === (tcp.RST | tcp.ACK)).length >= 63, 'the reclaimed handshakes were refused to the container');
  t.true(open() <= 64);
  t.is(stack.budgets.usage().hostSockets, open(), 'the count matches the sockets really open');
});

function dhcpFrame(type: number, o: { ciaddr?: Buffer; chaddr?: Buffer; dst?: Buffer; flags?: number } = {}): Buffer {
  const b = Buffer.alloc(300);
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(0xabcd, 4);
  b.writeUInt16BE(o.flags ?? 0, 10);
  (o.ciaddr ?? Buffer.alloc(4)).copy(b, 12);
  (o.chaddr ?? GUEST_MAC).copy(b, 28);
  b.writeUInt32BE(0x63825363, 236);
  b.set([53, 1, type, 255], 240);
  const l4 = Buffer.alloc(8 + b.length);
  l4.writeUInt16BE(68, 0);
  l4.writeUInt16BE(67, 2);
  l4.writeUInt16BE(l4.length, 4);
  b.copy(l4, 8);
  return frame(eth.ETHERTYPE_IPV4, ipPacket(o.ciaddr ?? a4('0.0.0.0'), o.dst ?? a4('255.255.255.255'), 17, l4, 6));
}

const dhcpOptions = (d: Decoded): Map<number, Buffer> => {
  const b = d.udp!.payload;
  const m = new Map<number, Buffer>();
  for (let i = 240; i < b.length && b[i] !== 255; ) {
    if (b[i] === 0) {
      i++;
      continue;
    }
    m.set(b[i], b.subarray(i + 2, i + 2 + b[i + 1]));
    i += 2 + b[i + 1];
  }
  return m;
};

test('item 10: DHCP answers only at the broadcast address or the gateway; INFORM gets an ACK; bad client addresses are refused', (t) => {
  const { stack, host, out } = setup();
  stack.receive(dhcpFrame(dhcp.DISCOVER), 0);
  const [offer] = out();
  t.like(offer, { src: '10.0.2.2', dst: '10.0.2.100', dstMac: '02:00:00:00:00:aa' }, 'unicast to the offered address at the client MAC (RFC 2131 4.1)');
  t.is(dhcpOptions(offer).get(53)![0], dhcp.OFFER);
  stack.receive(dhcpFrame(dhcp.DISCOVER, { flags: 0x8000 }), 0);
  t.like(out()[0], { dst: '255.255.255.255', dstMac: 'ff:ff:ff:ff:ff:ff' }, 'the broadcast flag asks for a broadcast reply');
  // UDP to port 67 of some remote host is ordinary traffic, forwarded.
  const remote = dhcpFrame(dhcp.DISCOVER, { ciaddr: GUEST, dst: a4('192.0.2.67') });
  stack.receive(remote, 1);
  t.deepEqual(out(), []);
  t.deepEqual(host.udp.map((u) => `${u.address}:${u.port}`), ['192.0.2.67:67']);
  // DHCPINFORM: an ACK with configuration but no address or lease (RFC 2131 3.4).
  stack.receive(dhcpFrame(dhcp.INFORM, { ciaddr: GUEST, dst: a4('10.0.2.2') }), 2);
  const [ack] = out();
  t.like(ack, { dst: '10.0.2.100' });
  const opts = dhcpOptions(ack);
  t.is(opts.get(53)![0], dhcp.ACK);
  t.false(opts.has(51), 'no lease time');
  t.deepEqual(ack.udp!.payload.subarray(16, 20), Buffer.alloc(4), 'yiaddr 0');
  t.deepEqual(ack.udp!.payload.subarray(12, 16), GUEST, 'ciaddr echoed');
  t.deepEqual(opts.get(3), a4('10.0.2.2'));
  // A multicast or empty client hardware address gets nothing.
  stack.receive(dhcpFrame(dhcp.DISCOVER, { chaddr: eth.parseMac('01:00:5e:00:00:01') }), 3);
  stack.receive(dhcpFrame(dhcp.DISCOVER, { chaddr: Buffer.alloc(6) }), 3);
  t.deepEqual(out(), []);
  t.is(stack.stats['dhcp-bad-chaddr'], 2);
});

test('item 10: a DAD probe for the gateway\'s address is defended with an advertisement to all-nodes', (t) => {
  const { stack, out } = setup();
  const ns = Buffer.alloc(24);
  ns[0] = 135;
  a6('fd00::2').copy(ns, 8);
  const pkt = ipPacket(a6('::'), a6('ff02::1:ff00:2'), 58, ns, 2);
  pkt[7] = 255;
  stack.receive(frame(eth.ETHERTYPE_IPV6, pkt), 0);
  const [na] = out();
  t.like(na, { src: 'fd00::2', dst: 'ff02::1', dstMac: '33:33:00:00:00:01', checksumOk: true });
  t.is(na.l4![0], 136);
  t.is(na.l4!.readUInt32BE(4), 0xa0000000, 'router and override, not solicited (RFC 4861 7.2.4)');
  t.deepEqual(na.l4!.subarray(8, 24), a6('fd00::2'));
});

test('the guard: a throw on one flow resets that flow only, is counted, and never escapes', (t) => {
  let boom = false;
  const sent: Buffer[] = [];
  const host = new FakeHost();
  const stack = new Stack(config(), (parts) => {
    if (boom && parts.some((p) => p.includes('boom'))) throw new Error('a bug on the way out');
    sent.push(Buffer.concat(parts));
  }, host);
  stack.receive(udpFrame(GUEST, 40000, a4('192.0.2.7'), 9, Buffer.from('a')), 0);
  stack.receive(udpFrame(GUEST, 40001, a4('192.0.2.8'), 9, Buffer.from('b')), 0);
  boom = true;
  t.notThrows(() => host.udp[0].h.onMessage(Buffer.from('boom'), 1));
  t.is(stack.stats['internal-error'], 1);
  t.true(host.udp[0].closed, 'the flow the bug hit is gone');
  host.udp[1].h.onMessage(Buffer.from('other'), 2);
  t.is(decode(sent.at(-1)!).udp!.payload.toString(), 'other', 'the other flow is untouched');
  // A host layer that throws while a flow is being opened: the flow and its budget go.
  const bad = new Stack(config(), () => undefined, { connectTcp: () => { throw new Error('no sockets'); }, openUdp: () => { throw new Error('no sockets'); } });
  t.notThrows(() => bad.receive(tcpFrame(GUEST, 40000, a4('192.0.2.80'), 80, { seq: 1, flags: tcp.SYN }), 0));
  t.notThrows(() => bad.receive(udpFrame(GUEST, 40000, a4('192.0.2.80'), 80, Buffer.from('x')), 0));
  t.is(bad.stats['internal-error'], 2);
  t.deepEqual(bad.budgets.usage(), { outbound: 0, inbound: 0, halfOpenOutbound: 0, halfOpenInbound: 0, clients: 0, hostSockets: 0, bufferedBytes: 0 });
  t.is(bad.flowCount().tcp + bad.flowCount().udp, 0);
  void ({} as HostUdpHandlers);
});

test('review fixes: a full inbound budget evicts for a client only within its own limit; a host socket paused during the handshake stays paused', (t) => {
  const { stack } = setup({ limits: { maxInboundFlows: 2, maxInboundPerClient: 1 } });
  const send = (c: string, port: number) => stack.forwardUdp(4, a4(c), port, 53, Buffer.from('q'), () => undefined, 0);
  send('192.0.2.1', 1000);
  send('192.0.2.2', 1000);
  send('192.0.2.1', 1001); // A at its limit: A's own oldest goes, B's stays
  t.is(stack.stats['udp-inbound-evicted'], 1);
  t.is(stack.budgets.clientFlows('4:c0000201'), 1);
  t.is(stack.budgets.clientFlows('4:c0000202'), 1, 'the other client kept its flow');

  // Host data arriving before the container's ACK (SYN_RCVD) fills the send queue: pause holds.
  const host = new FakeHost();
  const s2 = setup({ limits: { tcpSndBufBytes: 4000 } }, host);
  s2.stack.receive(tcpFrame(GUEST, 40000, a4('192.0.2.80'), 80, { seq: 100, flags: tcp.SYN }), 0);
  host.tcp[0].h.onConnect(1);
  const sa = s2.out()[0].tcp!;
  for (let i = 0; i < 3; i++) host.tcp[0].h.onData(Buffer.alloc(2000), 2);
  t.true(host.tcp[0].paused);
  s2.stack.receive(tcpFrame(GUEST, 40000, a4('192.0.2.80'), 80, { seq: 101, ack: sa.seq + 1, flags: tcp.ACK, window: 0 }), 3);
  t.true(host.tcp[0].paused, 'still paused once established: the queue is over its limit');
});
