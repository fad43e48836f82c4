/**
 * The container is untrusted: 1,000,000 random and mutated frames (truncated headers, lying
 * length fields, bad checksums, fragments, odd TCP options, zero windows, SYN and RST floods,
 * overlapping segments) must never throw out of the stack, never grow its flow tables past the
 * limits, and be counted when dropped.
 */
import test from 'ava';
import * as arp from '../wire/arp.js';
import * as eth from '../wire/ethernet.js';
import * as tcp from '../wire/tcp.js';
import type { HostSockets, HostTcpHandlers, HostUdpHandlers } from './host.js';
import { Stack } from './stack.js';
import { a4, a6, frame, GUEST_MAC, ipPacket, mulberry32, OUR_MAC, tcpFrame, udpFrame } from './testing.js';

/** Host sockets that connect at once, answer with data sometimes, and keep nothing. */
class ChattyHost implements HostSockets {
  tcpOpened = 0;
  udpOpened = 0;
  live = new Set<HostTcpHandlers>();
  connectTcp(_f: 4 | 6, _a: string, _p: number, h: HostTcpHandlers) {
    this.tcpOpened++;
    this.live.add(h);
    queueMicrotask(() => undefined);
    return { write: () => undefined, end: () => this.live.delete(h), destroy: () => this.live.delete(h), pause: () => undefined, resume: () => undefined, pending: () => 0 };
  }
  openUdp(_f: 4 | 6, _a: string, _p: number, h: HostUdpHandlers) {
    this.udpOpened++;
    void h;
    return { send: () => undefined, close: () => undefined };
  }
}

test('fuzz: 1,000,000 hostile frames: no exception escapes, tables stay bounded, drops are counted', (t) => {
  const rnd = mulberry32(0xb0220);
  const int = (n: number) => Math.floor(rnd() * n);
  const host = new ChattyHost();
  const limits = { maxFlows: 512, maxHalfOpen: 64, tcpIdleMs: 5_000, udpIdleMs: 2_000 };
  let sentFrames = 0;
  const stack = new Stack({
    mtu: 65520, mac: OUR_MAC,
    v4: { guest: a4('10.0.2.100'), gateway: a4('10.0.2.2'), dns: a4('10.0.2.3'), prefixLength: 24 },
    v6: { prefix: a6('fd00::'), prefixLength: 64, guest: a6('fd00::100'), gateway: a6('fd00::2'), dns: a6('fd00::3'), linkLocal: a6('fe80::2') },
    nameservers: { v4: '127.0.0.53' }, limits, random: () => int(0x100000000),
  }, () => sentFrames++, host);

  const guest = a4('10.0.2.100');
  const remote = () => a4(`192.0.2.${1 + int(8)}`);
  const arpReq = () => {
    const b = Buffer.alloc(28);
    arp.emit({ op: 1, senderMac: GUEST_MAC, senderIp: guest, targetMac: Buffer.alloc(6), targetIp: a4('10.0.2.2') }, b);
    return frame(eth.ETHERTYPE_ARP, b);
  };
  const odd = (): tcp.TcpOptions => [{}, { mss: int(65536) }, { wscale: int(20) }, { sackOk: true, sack: [[int(2 ** 32), int(2 ** 32)]] }, { mss: 1, wscale: 14, sackOk: true }][int(5)] as tcp.TcpOptions;
  const seeds: Array<() => Buffer> = [
    arpReq,
    () => udpFrame(guest, 1024 + int(64), remote(), 1 + int(1000), Buffer.alloc(int(200))),
    () => udpFrame(guest, 1024 + int(64), a4('10.0.2.3'), 53, Buffer.alloc(int(100))),
    () => tcpFrame(guest, 1024 + int(256), remote(), 80, { seq: int(2 ** 32), flags: tcp.SYN, options: odd() }),
    () => tcpFrame(guest, 1024 + int(256), remote(), 80, { seq: int(2 ** 32), ack: 1000 + int(3000), flags: [tcp.ACK, tcp.ACK | tcp.PSH, tcp.RST, tcp.FIN | tcp.ACK, tcp.SYN | tcp.ACK, 0xff][int(6)], window: [0, 1, 65535][int(3)], options: odd(), payload: Buffer.alloc(int(3000)) }),
    () => tcpFrame(a6('fd00::100'), 1024 + int(64), a6(`2001:db8::${1 + int(4)}`), 443, { seq: int(2 ** 32), flags: tcp.SYN }),
    () => frame(eth.ETHERTYPE_IPV6, ipPacket(a6('fd00::100'), a6('ff02::1:ff00:2'), 58, Buffer.from([135, 0, 0, 0, 0, 0, 0, 0, ...a6('fd00::2')]), 2)),
    () => frame(eth.ETHERTYPE_IPV4, ipPacket(a4('0.0.0.0'), a4('255.255.255.255'), 17, Buffer.alloc(300), -1)),
  ];
  const mutate = (f: Buffer): Buffer => {
    const b = Buffer.from(f);
    switch (int(7)) {
      case 0: // bit flips
        for (let i = 0, n = 1 + int(4); i < n; i++) b[int(b.length)] ^= 1 << int(8);
        return b;
      case 1: // truncation
        return b.subarray(0, int(b.length));
      case 2: // a lying IPv4 total length / IPv6 payload length
        if (b.length > 30) b.writeUInt16BE(int(65536), 12 + 14 + (b[26] >> 4 === 6 ? 4 : 2));
        return b;
      case 3: // fragment bits
        if (b.length > 34) b[12 + 14 + 6] |= 0x20;
        return b;
      case 4: // random bytes after the headers
        for (let i = 60; i < b.length; i++) b[i] = int(256);
        return b;
      case 5: // the kernel "vouches" for a corrupted frame
        b[0] = 1 + int(2);
        b[20 + int(Math.max(1, b.length - 20))] ^= 0xff;
        return b;
      default:
        return b;
    }
  };
  const heapBefore = process.memoryUsage().heapUsed;
  let now = 0;
  let maxTcp = 0;
  for (let i = 0; i < 1_000_000; i++) {
    const r = rnd();
    const f = r < 0.1 ? Buffer.from(Array.from({ length: int(120) }, () => int(256))) : r < 0.55 ? seeds[int(seeds.length)]() : mutate(seeds[int(seeds.length)]());
    stack.receive(f, now);
    if (i % 64 === 0) {
      stack.flush(now);
      // Some host connects complete, some host peers talk, some reset.
      for (const h of [...host.live].slice(0, 8)) {
        const pick = int(4);
        if (pick === 0) h.onConnect(now);
        else if (pick === 1) h.onData(Buffer.alloc(1 + int(4000)), now);
        else if (pick === 2) h.onError('ECONNRESET', now);
        else h.onEnd(now);
      }
      now += 1 + int(20);
      if (stack.pollAt() <= now) stack.poll(now);
    }
    maxTcp = Math.max(maxTcp, stack.flowCount().tcp + stack.flowCount().udp);
  }
  stack.poll(now + 10_000_000);
  const drops = Object.entries(stack.stats).filter(([k]) => !k.startsWith('tcp-close')).reduce((a, [, v]) => a + v, 0);
  t.is(stack.stats['internal-error'] ?? 0, 0, `no exception escaped the stack: ${String(stack.lastError)}`);
  t.true(maxTcp <= limits.maxFlows, `flows stayed within the limit (max seen ${maxTcp})`);
  t.true(stack.flowCount().halfOpen >= 0 && stack.flowCount().halfOpen <= limits.maxHalfOpen);
  t.is(stack.flowCount().tcp + stack.flowCount().udp, 0, 'everything expired in the end');
  t.true(drops > 100_000, `drops were counted (${drops})`);
  t.true(host.tcpOpened > 100 && host.udpOpened > 100, 'the corpus reached both flow tables');
  const grown = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  t.true(grown < 256, `heap grew ${grown.toFixed(0)} MiB`);
  t.log(`frames answered: ${sentFrames}; drop reasons: ${Object.keys(stack.stats).length}; tcp opened ${host.tcpOpened}, udp opened ${host.udpOpened}`);
});
