/**
 * A seeded network simulation (like smoltcp's netsim): two TCP engines joined by a link that
 * loses, duplicates, reorders and delays segments on a virtual clock. Both directions must
 * arrive byte-exact and both ends must close cleanly, for every seed.
 */
import test from 'ava';
import type { TcpHeader } from '../wire/tcp.js';
import { mulberry32 } from './testing.js';
import { TcpConn, TRANSITIONS, type OutSegment, type TcpConnEvents, type TcpState } from './tcp_conn.js';

interface LinkParams {
  loss: number;
  dup: number;
  reorder: number;
  delayMs: number;
  jitterMs: number;
}

interface Side {
  conn: TcpConn | null;
  got: Buffer[];
  closed: string | null;
  toSend: Buffer;
  sent: number;
  /** Bytes delivered but "not yet read" by a slow application, drained over time. */
  backlog: number;
}

function simulate(seed: number, link: LinkParams, aBytes: number, bBytes: number, slowReader = false) {
  const rnd = mulberry32(seed);
  const fill = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const sides: [Side, Side] = [
    { conn: null, got: [], closed: null, toSend: fill(aBytes), sent: 0, backlog: 0 },
    { conn: null, got: [], closed: null, toSend: fill(bBytes), sent: 0, backlog: 0 },
  ];
  const queue: Array<{ at: number; to: 0 | 1; h: TcpHeader; payload: Buffer }> = [];
  let now = 0;
  let delivered = 0;
  const opts = (iss: number) => ({ mss: 1400, rcvBufBytes: 64 * 1024, idleMs: 600_000, iss });

  const events = (me: 0 | 1): TcpConnEvents => ({
    emit: (s: OutSegment) => {
      const copies = rnd() < link.loss ? 0 : rnd() < link.dup ? 2 : 1;
      for (let i = 0; i < copies; i++) {
        let at = now + link.delayMs + rnd() * link.jitterMs;
        if (rnd() < link.reorder) at += link.delayMs * 3;
        queue.push({ at, to: (1 - me) as 0 | 1, h: { srcPort: 1, dstPort: 2, seq: s.seq, ack: s.ack, flags: s.flags, window: s.window, options: s.options, payloadOff: 0 }, payload: Buffer.concat(s.payload) });
      }
    },
    onData: (d) => {
      sides[me].got.push(Buffer.from(d));
      if (slowReader) sides[me].backlog += d.length;
    },
    onFin: () => undefined,
    onEstablished: () => pump(me),
    onSendSpace: () => pump(me),
    onClose: (r) => {
      sides[me].closed = r;
    },
    backlog: () => sides[me].backlog,
  });

  // The application writes in 8 KiB chunks while the send queue is below 32 KiB, then ends.
  function pump(me: 0 | 1) {
    const s = sides[me];
    const c = s.conn!;
    while (s.sent < s.toSend.length && c.sendBuffered() < 32 * 1024) {
      const n = Math.min(8192, s.toSend.length - s.sent);
      c.send(s.toSend.subarray(s.sent, s.sent + n), now);
      s.sent += n;
    }
    if (s.sent === s.toSend.length) c.end(now);
  }

  // Every state change either side makes must be one the transition table allows.
  const last: Array<TcpState | null> = [null, null];
  const badTransitions: string[] = [];
  const watch = () => {
    for (const i of [0, 1] as const) {
      const st = sides[i].conn?.state ?? null;
      const was = last[i];
      if (was && st && st !== was && !TRANSITIONS[was].includes(st)) badTransitions.push(`${was} -> ${st}`);
      last[i] = st;
    }
  };
  sides[0].conn = TcpConn.active(events(0), opts(0xfffff000), now); // ISN near wraparound
  for (let steps = 0; steps < 2_000_000; steps++) {
    if (sides[0].closed && sides[1].closed) break;
    queue.sort((x, y) => x.at - y.at);
    const timers = sides.map((s) => s.conn?.pollAt() ?? Infinity);
    const nextTimer = Math.min(...timers);
    const next = queue.length ? queue[0].at : Infinity;
    const drainAt = slowReader ? now + 5 : Infinity;
    const t = Math.min(next, nextTimer, drainAt);
    if (t === Infinity) break;
    now = Math.max(now, t);
    if (slowReader && t === drainAt) {
      for (const [i, s] of sides.entries()) {
        if (s.backlog > 0 && s.conn) {
          s.backlog = Math.max(0, s.backlog - 16 * 1024);
          s.conn.windowOpened(now);
        }
        void i;
      }
    }
    if (t === next) {
      const ev = queue.shift()!;
      delivered++;
      const dst = sides[ev.to];
      if (!dst.conn) {
        if (!(ev.h.flags & 0x02)) continue; // only a SYN opens the passive side
        dst.conn = TcpConn.passive(events(ev.to), opts(77), ev.h, now);
        dst.conn.accept(now, ev.h);
        continue;
      }
      if (dst.conn.state === 'CLOSED') {
        // A forgotten flow answers with RST, as the stack does (no TIME_WAIT on either side here).
        if (!(ev.h.flags & 0x04)) queue.push({ at: now + link.delayMs, to: (1 - ev.to) as 0 | 1, h: { srcPort: 2, dstPort: 1, seq: ev.h.ack, ack: 0, flags: 0x04, window: 0, options: {}, payloadOff: 0 }, payload: Buffer.alloc(0) });
        continue;
      }
      dst.conn.input(ev.h, ev.payload, now);
      dst.conn.flush(now);
    }
    watch();
    for (const s of sides) if (s.conn && s.conn.pollAt() <= now) s.conn.poll(now);
    watch();
  }
  return { sides, now, delivered, badTransitions };
}

const cases: Array<[string, LinkParams]> = [
  ['clean', { loss: 0, dup: 0, reorder: 0, delayMs: 1, jitterMs: 0 }],
  ['5% loss', { loss: 0.05, dup: 0, reorder: 0, delayMs: 2, jitterMs: 1 }],
  ['reordering + duplicates', { loss: 0, dup: 0.05, reorder: 0.2, delayMs: 2, jitterMs: 3 }],
  ['everything at once', { loss: 0.1, dup: 0.05, reorder: 0.1, delayMs: 5, jitterMs: 10 }],
];

for (const [name, link] of cases) {
  test(`netsim: ${name}: both directions byte-exact and closed cleanly over 8 seeds`, (t) => {
    for (let seed = 1; seed <= 8; seed++) {
      const { sides, now, badTransitions } = simulate(seed * 7919, link, 300_000, 120_000, seed % 2 === 0);
      t.deepEqual(badTransitions, [], `seed ${seed}: every state change was in the table`);
      const [a, b] = sides;
      t.true(Buffer.concat(b.got).equals(a.toSend), `seed ${seed}: A -> B intact (${Buffer.concat(b.got).length}/${a.toSend.length} bytes, t=${now})`);
      t.true(Buffer.concat(a.got).equals(b.toSend), `seed ${seed}: B -> A intact`);
      // The side whose last ACK was lost learns of the close by RST after everything arrived.
      t.true([a.closed, b.closed].includes('done') && [a.closed, b.closed].every((r) => r === 'done' || r === 'reset'), `seed ${seed}: both ends closed (${a.closed}, ${b.closed})`);
    }
  });
}
