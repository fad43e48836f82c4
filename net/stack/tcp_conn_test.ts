/**
 * Scripted TCP conversations with the engine on a manual clock: each test plays the container's
 * side by hand and checks every segment the engine sends (gVisor checker style).
 */
import test from 'ava';
import { ACK, FIN, PSH, RST, SYN, seqAdd, type TcpHeader, type TcpOptions } from '../wire/tcp.js';
import { BufferBudget } from './budget.js';
import { RTO_INITIAL_MS, RTO_MIN_MS, TcpConn, TRANSITIONS, type OutSegment } from './tcp_conn.js';

interface Harness {
  conn: TcpConn;
  out: OutSegment[];
  data: Buffer[];
  events: string[];
  backlog: { bytes: number };
}

function harness(mode: 'active' | 'passive', opts: Partial<{ rcvBufBytes: number; mss: number; syn: TcpHeader; budget: BufferBudget; stall: boolean; idleMs: number }> = {}): Harness {
  const h = { out: [] as OutSegment[], data: [] as Buffer[], events: [] as string[], backlog: { bytes: 0 } } as Harness;
  const ev = {
    emit: (s: OutSegment) => h.out.push({ ...s, payload: s.payload.map((p) => Buffer.from(p)) }),
    onData: (d: Buffer) => {
      h.data.push(Buffer.from(d));
      if (opts.stall) h.backlog.bytes += d.length; // a host peer that reads nothing
    },
    onFin: () => h.events.push('fin'),
    onEstablished: () => h.events.push('established'),
    onSendSpace: () => h.events.push('space'),
    onClose: (r: string) => h.events.push(`close:${r}`),
    backlog: () => h.backlog.bytes,
    onDrop: (r: string) => h.events.push(`drop:${r}`),
  };
  const o = { mss: opts.mss ?? 1000, rcvBufBytes: opts.rcvBufBytes ?? 64_000, idleMs: opts.idleMs ?? 60_000, iss: 1000, budget: opts.budget };
  h.conn = mode === 'active' ? TcpConn.active(ev, o, 0) : TcpConn.passive(ev, o, opts.syn!, 0);
  // Each scripted segment is a batch of its own: the stack flushes pending ACKs after a batch.
  const input = h.conn.input.bind(h.conn);
  h.conn.input = (hd, p, now) => {
    input(hd, p, now);
    h.conn.flush(now);
  };
  return h;
}

const seg = (seq: number, ack: number, flags: number, window = 65535, options: TcpOptions = {}): TcpHeader => ({ srcPort: 1, dstPort: 2, seq, ack, flags, window, options, payloadOff: 0 });
const take = (h: Harness) => h.out.splice(0);
const bytes = (n: number, fill = 0x61) => Buffer.alloc(n, fill);

/** Active open to an established state with the given peer options; peer ISN 5000. */
function established(opts: TcpOptions = { mss: 1000, wscale: 2, sackOk: true }, window = 65535): Harness {
  const h = harness('active');
  take(h);
  h.conn.input(seg(5000, 1001, SYN | ACK, window, opts), Buffer.alloc(0), 1);
  take(h);
  return h;
}

test('active open: SYN carries MSS, wscale and SACK-permitted; SYN-ACK completes it with one ACK', (t) => {
  const h = harness('active');
  const [syn] = take(h);
  t.like(syn, { seq: 1000, flags: SYN });
  t.deepEqual(syn.options, { mss: 1000, wscale: 7, sackOk: true });
  h.conn.input(seg(5000, 1001, SYN | ACK, 300, { mss: 1460, wscale: 2 }), Buffer.alloc(0), 3);
  const [ack] = take(h);
  t.like(ack, { seq: 1001, ack: 5001, flags: ACK });
  t.deepEqual(h.events, ['established']);
  t.is(h.conn.state, 'ESTABLISHED');
});

test('passive open: only what the container offered is echoed on the SYN-ACK; a lost SYN-ACK is resent', (t) => {
  const h = harness('passive', { syn: seg(7000, 0, SYN, 29200, { mss: 1460 }) });
  t.deepEqual(take(h), [], 'nothing until the host side connected');
  h.conn.accept(5, seg(7000, 0, SYN, 29200, { mss: 1460 }));
  const [sa] = take(h);
  t.like(sa, { seq: 1000, ack: 7001, flags: SYN | ACK });
  t.deepEqual(sa.options, { mss: 1000 }, 'no wscale or SACK offered, so none echoed');
  h.conn.input(seg(7000, 0, SYN, 29200, { mss: 1460 }), Buffer.alloc(0), 6);
  t.like(take(h)[0], { flags: SYN | ACK }, 'a retransmitted SYN gets the SYN-ACK again');
  h.conn.input(seg(7001, 1001, ACK, 29200), Buffer.alloc(0), 7);
  t.deepEqual(h.events, ['established']);
  h.conn.send(bytes(3000), 8);
  t.deepEqual(take(h).map((s) => [s.seq, s.payloadLength]), [[1001, 1000], [2001, 1000], [3001, 1000]], 'segments of the peer MSS');
});

test('refuse answers the SYN with RST+ACK; abort resets an established conn', (t) => {
  const h = harness('passive', { syn: seg(7000, 0, SYN) });
  h.conn.refuse();
  t.like(take(h)[0], { flags: RST | ACK, ack: 7001 });
  t.deepEqual(h.events, ['close:refused']);
  const e = established();
  e.conn.abort();
  t.like(take(e)[0], { flags: RST | ACK, seq: 1001 });
  t.deepEqual(e.events.slice(-1), ['close:aborted']);
});

test('receive: in order, out of order with SACK blocks, duplicates re-acked, data past the window cut', (t) => {
  const h = established();
  h.conn.input(seg(5001, 1001, ACK | PSH), bytes(100, 1), 2);
  h.conn.input(seg(5301, 1001, ACK), bytes(100, 3), 2); // hole at 5101..5301
  const dup = take(h).pop()!;
  t.like(dup, { ack: 5101 });
  t.deepEqual(dup.options.sack, [[5301, 5401]]);
  h.conn.input(seg(5101, 1001, ACK), bytes(200, 2), 3);
  const [full] = take(h);
  t.like(full, { ack: 5401 });
  t.is(full.options.sack, undefined);
  t.deepEqual(Buffer.concat(h.data), Buffer.concat([bytes(100, 1), bytes(200, 2), bytes(100, 3)]));
  h.conn.input(seg(5001, 1001, ACK), bytes(100, 9), 4);
  t.like(take(h)[0], { ack: 5401 }, 'an old segment is acked again, not delivered');
  t.is(Buffer.concat(h.data).length, 400);
});

test('flow control: a slow host closes the window; draining it reopens with a window update', (t) => {
  const h = harness('active', { rcvBufBytes: 4000 });
  take(h);
  h.conn.input(seg(5000, 1001, SYN | ACK, 65535, { mss: 1000 }), Buffer.alloc(0), 1); // no wscale
  take(h);
  h.backlog.bytes = 4000; // the host socket has taken nothing
  h.conn.input(seg(5001, 1001, ACK), bytes(1000), 2);
  const [a] = take(h);
  t.is(a.window, 3000, 'the edge already offered is not shrunk (RFC 9293 3.8.6.2.2)');
  h.conn.input(seg(6001, 1001, ACK), bytes(3000), 3);
  t.is(take(h)[0].window, 0, 'window closed once the edge is reached');
  h.conn.input(seg(9001, 1001, ACK), bytes(10), 4);
  t.is(Buffer.concat(h.data).length, 4000, 'data beyond a zero window is not taken');
  t.is(take(h)[0].ack, 9001);
  h.backlog.bytes = 0;
  h.conn.windowOpened(5);
  t.like(take(h)[0], { ack: 9001, window: 4000 });
});

test('send: respects the peer window, probes a zero window with backoff, resumes when it opens', (t) => {
  const h = established({ mss: 1000 }, 1500); // no wscale: window 1500
  h.conn.send(bytes(4000), 10);
  t.deepEqual(take(h).map((s) => s.payloadLength), [1000], 'no 500-byte runt while data is in flight (sender SWS avoidance)');
  h.conn.input(seg(5001, 2001, ACK, 0), Buffer.alloc(0), 20);
  t.deepEqual(take(h), []);
  t.true(h.conn.pollAt() <= 20 + RTO_INITIAL_MS);
  const first = h.conn.pollAt();
  h.conn.poll(first);
  const [probe] = take(h);
  t.like(probe, { seq: 2000, flags: ACK, payloadLength: 0 }, 'probe: an ACK below sndUna');
  t.true(h.conn.pollAt() - first >= 2 * (first - 20) - 1, 'the next probe backs off');
  h.conn.input(seg(5001, 2001, ACK, 4000), Buffer.alloc(0), 3000);
  t.deepEqual(take(h).map((s) => [s.seq, s.payloadLength]), [[2001, 1000], [3001, 1000], [4001, 1000]]);
  t.true(h.events.includes('space'));
});

test('retransmission: RTO from RTT samples (RFC 6298), exponential backoff, go-back-N, Karn', (t) => {
  const h = established({ mss: 1000 });
  h.conn.send(bytes(1000), 100);
  take(h);
  h.conn.input(seg(5001, 2001, ACK), Buffer.alloc(0), 150); // RTT 50 ms
  t.is(h.conn.info().srtt, 50);
  t.is(h.conn.info().rto, RTO_MIN_MS, '50 + 4*25 = 150 ms, raised to the 200 ms floor');
  h.conn.send(bytes(2000, 2), 200);
  t.deepEqual(take(h).map((s) => s.seq), [2001, 3001]);
  h.conn.poll(200 + RTO_MIN_MS);
  t.deepEqual(take(h).map((s) => [s.seq, s.payloadLength]), [[2001, 1000]], 'after a timeout cwnd is one segment, from sndUna');
  t.is(h.conn.info().rto, 2 * RTO_MIN_MS);
  h.conn.input(seg(5001, 3001, ACK), Buffer.alloc(0), 700);
  t.is(h.conn.info().srtt, 50, 'no RTT sample from a retransmitted segment (Karn)');
  t.deepEqual(take(h).map((s) => s.seq), [3001]);
});

test('fast retransmit on three duplicate ACKs', (t) => {
  const h = established({ mss: 1000 });
  h.conn.send(bytes(5000), 10);
  t.is(take(h).length, 5);
  h.conn.input(seg(5001, 2001, ACK), Buffer.alloc(0), 15);
  t.deepEqual(take(h).map((s) => s.seq), [], 'cwnd grew but the queue is all in flight');
  for (let i = 0; i < 3; i++) h.conn.input(seg(5001, 2001, ACK), Buffer.alloc(0), 20 + i);
  t.deepEqual(take(h).map((s) => s.seq), [2001], 'the third duplicate retransmits the first unacked segment');
});

test('close: both FIN orders end the conn without TIME_WAIT; RST only inside the window counts', (t) => {
  const a = established();
  a.conn.send(bytes(10), 1);
  a.conn.end(1);
  const segs = take(a);
  t.deepEqual(segs.map((s) => s.flags), [ACK | PSH, FIN | ACK]);
  a.conn.input(seg(5001, 1012, ACK), Buffer.alloc(0), 2);
  t.true(a.conn.finAcked);
  a.conn.input(seg(5001, 1012, FIN | ACK), Buffer.alloc(0), 3);
  t.like(take(a)[0], { ack: 5002 });
  t.deepEqual(a.events.slice(-2), ['fin', 'close:done']);

  const b = established();
  b.conn.input(seg(5001, 1001, FIN | ACK), bytes(5), 1);
  t.deepEqual(b.events.slice(-1), ['fin']);
  t.like(take(b)[0], { ack: 5007 });
  b.conn.end(2);
  t.like(take(b)[0], { flags: FIN | ACK, seq: 1001 });
  b.conn.input(seg(5007, 1002, ACK), Buffer.alloc(0), 3);
  t.deepEqual(b.events.slice(-1), ['close:done']);

  const c = established();
  c.conn.input(seg(5001 + 10_000_000, 1001, RST), Buffer.alloc(0), 1);
  t.is(c.conn.state, 'ESTABLISHED', 'an RST far outside the window is ignored (RFC 5961)');
  c.conn.input(seg(5001, 1001, RST), Buffer.alloc(0), 1);
  t.deepEqual(c.events.slice(-1), ['close:reset']);
});

test('timers: idle conns expire with RST after idleMs of silence; activity keeps them', (t) => {
  const b = established();
  b.conn.poll(59_000);
  t.is(b.conn.state, 'ESTABLISHED');
  b.conn.input(seg(5001, 1001, ACK), bytes(10), 59_000);
  b.conn.poll(100_000);
  t.is(b.conn.state, 'ESTABLISHED', 'a segment at 59 s moved the deadline');
  b.conn.poll(119_001);
  t.like(take(b).pop(), { flags: RST | ACK });
  t.deepEqual(b.events.slice(-1), ['close:idle']);
});

test('half-close: after our FIN is acked the container may send for minutes; only silence ends it (RFC 9293 3.6)', (t) => {
  const h = established();
  h.conn.end(0);
  t.like(take(h)[0], { flags: FIN | ACK, seq: 1001 });
  h.conn.input(seg(5001, 1002, ACK), Buffer.alloc(0), 10);
  t.is(h.conn.state, 'FIN_WAIT_2');
  // Ten minutes of data from the container, a chunk every 30 s: the host peer half-closed, but
  // still reads. Nothing may time out (the old 60 s FIN timeout reset this after a minute).
  let seq = 5001;
  for (let now = 30_000; now <= 600_000; now += 30_000) {
    h.conn.poll(now);
    h.conn.input(seg(seq, 1002, ACK), bytes(100, now & 0xff), now);
    seq += 100;
  }
  t.is(h.conn.state, 'FIN_WAIT_2');
  t.is(Buffer.concat(h.data).length, 2000);
  t.false(take(h).some((s) => s.flags & RST), 'no reset while data moves');
  h.conn.input(seg(seq, 1002, FIN | ACK), Buffer.alloc(0), 600_001);
  t.like(take(h).pop(), { flags: ACK, ack: seq + 1 });
  t.deepEqual(h.events.slice(-2), ['fin', 'close:done']);

  // The other half: the container finished first; the host side keeps sending for minutes.
  const c = established();
  c.conn.input(seg(5001, 1001, FIN | ACK), Buffer.alloc(0), 1);
  t.is(c.conn.state, 'CLOSE_WAIT');
  take(c);
  let acked = 1001;
  for (let now = 30_000; now <= 600_000; now += 30_000) {
    c.conn.poll(now);
    c.conn.send(bytes(500), now);
    const [d] = take(c);
    t.like(d, { seq: acked, payloadLength: 500 });
    acked += 500;
    c.conn.input(seg(5002, acked, ACK), Buffer.alloc(0), now + 1);
  }
  t.is(c.conn.state, 'CLOSE_WAIT');
  c.conn.poll(600_001 + 59_000);
  t.is(c.conn.state, 'CLOSE_WAIT', 'quiet for less than idleMs');
  c.conn.poll(600_001 + 60_001);
  t.deepEqual(c.events.slice(-1), ['close:idle'], 'a half-closed conn that goes silent ends by the idle timer');
});

test('FIN retransmission keeps its sequence number, with several segments outstanding at the RTO', (t) => {
  const h = established({ mss: 1000 });
  h.conn.send(bytes(3000), 0);
  h.conn.end(0);
  const first = take(h);
  t.deepEqual(first.map((s) => [s.seq, s.payloadLength, s.flags & FIN]), [[1001, 1000, 0], [2001, 1000, 0], [3001, 1000, 0], [4001, 0, FIN]]);
  // Everything is lost. At the RTO, go-back-N resends from the first segment.
  h.conn.poll(RTO_INITIAL_MS);
  t.deepEqual(take(h).map((s) => [s.seq, s.payloadLength]), [[1001, 1000]]);
  // The container did get it all, FIN included; only its ACKs were lost. Its ACK now covers the FIN.
  h.conn.input(seg(5001, 4002, ACK), Buffer.alloc(0), RTO_INITIAL_MS + 1);
  t.true(h.conn.finAcked);
  t.is(h.conn.state, 'FIN_WAIT_2');
  t.deepEqual(take(h), [], 'no FIN with a new sequence number (the old code sent one at 4002, which was never acked)');

  // Lost for real: ACKs of the data trickle in and the FIN goes again at 4001, and only there.
  const r = established({ mss: 1000 });
  r.conn.send(bytes(3000), 0);
  r.conn.end(0);
  take(r);
  r.conn.poll(RTO_INITIAL_MS);
  take(r);
  let now = RTO_INITIAL_MS;
  const fins: number[] = [];
  for (const ack of [2001, 3001, 4001]) {
    now += 10;
    r.conn.input(seg(5001, ack, ACK), Buffer.alloc(0), now);
    for (const s of take(r)) if (s.flags & FIN) fins.push(s.seq);
  }
  t.deepEqual(fins, [4001]);
  now += 5_000;
  r.conn.poll(now);
  t.deepEqual(take(r).filter((s) => s.flags & FIN).map((s) => s.seq), [4001], 'a FIN-only retransmission too');
  r.conn.input(seg(5001, 4002, ACK), Buffer.alloc(0), now + 1);
  t.is(r.conn.state, 'FIN_WAIT_2');
});

test('simultaneous open on the forward path: a SYN answering our SYN gets a SYN-ACK, then the handshake completes', (t) => {
  const h = harness('active');
  take(h);
  h.conn.input(seg(9000, 0, SYN, 65535, { mss: 1200, wscale: 3, sackOk: true }), Buffer.alloc(0), 1);
  const [sa] = take(h);
  t.like(sa, { seq: 1000, ack: 9001, flags: SYN | ACK });
  t.deepEqual(sa.options, { mss: 1000, wscale: 7, sackOk: true });
  t.is(h.conn.state, 'SYN_RCVD');
  h.conn.input(seg(9000, 1001, SYN | ACK, 65535, { mss: 1200, wscale: 3 }), Buffer.alloc(0), 2);
  t.is(h.conn.state, 'ESTABLISHED');
  t.deepEqual(h.events, ['established']);
  h.conn.input(seg(9001, 1001, ACK), bytes(5), 3);
  t.is(Buffer.concat(h.data).length, 5);
});

test('SYN-RECEIVED: an ACK of anything but our SYN is answered with RST (RFC 9293 3.10.7.4)', (t) => {
  const h = harness('passive', { syn: seg(7000, 0, SYN) });
  h.conn.accept(0, seg(7000, 0, SYN));
  take(h);
  h.conn.input(seg(7001, 5000, ACK), Buffer.alloc(0), 1);
  t.deepEqual(take(h).map((s) => [s.flags, s.seq]), [[RST, 5000]], 'an ACK above what we sent');
  t.is(h.conn.state, 'SYN_RCVD');
  h.conn.input(seg(7001, 1001, ACK), Buffer.alloc(0), 2);
  t.is(h.conn.state, 'ESTABLISHED');
});

test('RST inside the window but not exact draws a challenge ACK; exact resets (RFC 5961 3.2)', (t) => {
  const h = established();
  h.conn.input(seg(5001 + 100, 1001, RST), Buffer.alloc(0), 1);
  t.is(h.conn.state, 'ESTABLISHED');
  t.like(take(h)[0], { flags: ACK, ack: 5001 }, 'challenge ACK');
  h.conn.input(seg(5001 - 10, 1001, RST), Buffer.alloc(0), 2);
  t.deepEqual(take(h), [], 'an RST before rcvNxt is silently dropped');
  h.conn.input(seg(5001, 1001, RST), Buffer.alloc(0), 3);
  t.deepEqual(h.events.slice(-1), ['close:reset']);
  t.deepEqual(take(h), [], 'no answer to an accepted RST');
});

test('state changes go through one funnel: every transition seen is in the table, and one outside it resets', (t) => {
  t.deepEqual(TRANSITIONS.CLOSED, []);
  for (const [from, tos] of Object.entries(TRANSITIONS)) if (from !== 'CLOSED') t.true(tos.includes('CLOSED'), `${from} may close`);
  const h = established();
  h.conn.end(0);
  h.conn.input(seg(5001, 1002, ACK), Buffer.alloc(0), 1);
  t.is(h.conn.state, 'FIN_WAIT_2');
  take(h);
  // A bug that tried to reopen the conn (FIN_WAIT_2 -> ESTABLISHED is not in the table):
  (h.conn as unknown as { enter(s: string): boolean }).enter('ESTABLISHED');
  t.is(h.conn.state, 'CLOSED');
  t.deepEqual(h.events.slice(-2), ['drop:tcp-bad-transition', 'close:internal']);
  t.like(take(h)[0], { flags: RST | ACK });
});

test('the shared budget: windows shrink when it is full, out-of-order data goes first, in-order data past it is dropped, and all is given back', (t) => {
  const budget = new BufferBudget(10_000, 2_000);
  const a = harness('active', { budget, rcvBufBytes: 64_000, stall: true });
  take(a);
  a.conn.input(seg(5000, 1001, SYN | ACK, 65535, { mss: 1000 }), Buffer.alloc(0), 1); // no wscale: windows in bytes
  t.is(take(a)[0].window, 10_000, 'the first window is the budget, not rcvBuf');
  a.conn.input(seg(5001, 1001, ACK), bytes(1000), 2);
  t.is(take(a).pop()!.window, 9_000, 'the host took nothing: the window is what the budget has left');
  t.is(budget.used, 1_000);
  // Another flow holds most of the budget now.
  budget.adjust(8_500);
  a.conn.input(seg(6001, 1001, ACK), bytes(500), 3);
  t.is(take(a).pop()!.window, 8_500, 'the right edge already offered is kept (RFC 9293 3.8.6.2.2)');
  a.conn.input(seg(7001, 1001, ACK), bytes(500), 4); // out of order (hole at 6501)
  t.true(a.events.includes('drop:tcp-ooo-budget-drop'), 'a tight budget keeps no out-of-order data');
  // In order: this conn holds 1500 of its 2000 floor, and the budget has no room left: 500 fit.
  a.conn.input(seg(6501, 1001, ACK), bytes(1000, 9), 5);
  t.true(a.events.includes('drop:tcp-budget-drop'));
  t.is(Buffer.concat(a.data).length, 2_000);
  t.like(take(a).pop(), { ack: 7001 }, 'only what fit is acked: the container sends the rest again');
  t.is(budget.used, 8_500 + 2_000);
  budget.adjust(-8_500);
  a.backlog.bytes = 0; // the host peer read everything
  a.conn.windowOpened(6);
  t.true(take(a).pop()!.window > 8_000, 'the window reopens');
  a.conn.abort();
  t.is(budget.used, 0, 'a closed conn gives back everything it held');
});

test('sequence numbers wrap around 2^32', (t) => {
  const h = harness('passive', { syn: seg(0xffffff00, 0, SYN, 65535, { mss: 1000 }) });
  h.conn.accept(0, seg(0xffffff00, 0, SYN, 65535, { mss: 1000 }));
  take(h);
  h.conn.input(seg(0xffffff01, 1001, ACK), Buffer.alloc(0), 1);
  h.conn.input(seg(0xffffff01, 1001, ACK), bytes(1000, 7), 2);
  t.is(take(h)[0].ack, seqAdd(0xffffff01, 1000));
  t.is(Buffer.concat(h.data).length, 1000);
});

test('ACKs are coalesced per batch: several in-order segments in one batch get one ACK', (t) => {
  const h = established();
  const raw = TcpConn.prototype.input;
  for (let i = 0; i < 4; i++) raw.call(h.conn, seg(5001 + i * 100, 1001, ACK), bytes(100), 2);
  t.deepEqual(take(h), [], 'nothing until the batch ends');
  h.conn.flush(2);
  const acks = take(h);
  t.is(acks.length, 1);
  t.is(acks[0].ack, 5401);
});

test('review fixes: the budget charge follows the host draining after the container\'s FIN; an RST after go-back-N is at sndMax; a zero window with data unacked never times out while the peer answers', (t) => {
  // 1. CLOSE_WAIT: the host takes the backlog; the shared budget sees it at once.
  const budget = new BufferBudget(1 << 20, 1024);
  const a = harness('active', { budget, stall: true });
  take(a);
  a.conn.input(seg(5000, 1001, SYN | ACK, 65535, { mss: 1000 }), Buffer.alloc(0), 1);
  a.conn.input(seg(5001, 1001, ACK), bytes(10_000), 2);
  a.conn.input(seg(15_001, 1001, FIN | ACK), Buffer.alloc(0), 3);
  t.is(a.conn.state, 'CLOSE_WAIT');
  t.is(budget.used, 10_000);
  a.backlog.bytes = 0;
  a.conn.windowOpened(4);
  t.is(budget.used, 0, 'given back although the conn no longer receives');

  // 2. go-back-N leaves sndNxt below what the container already has: the RST must be at sndMax.
  const b = established({ mss: 1000 });
  b.conn.send(bytes(5000), 0);
  take(b);
  b.conn.poll(RTO_INITIAL_MS);
  take(b);
  b.conn.abort();
  t.like(take(b)[0], { flags: RST | ACK, seq: 6001 });

  // 3. The peer closes its window while data is unacked, and answers every probe for minutes.
  const c = harness('active', { idleMs: 7_200_000 });
  take(c);
  c.conn.input(seg(5000, 1001, SYN | ACK, 65535, { mss: 1000, wscale: 2, sackOk: true }), Buffer.alloc(0), 1);
  take(c);
  c.conn.send(bytes(2000), 0);
  take(c);
  c.conn.input(seg(5001, 1001, ACK, 0), Buffer.alloc(0), 1); // window 0, nothing acked
  for (let now = 2; now < 900_000; now += 500) {
    if (c.conn.pollAt() <= now) c.conn.poll(now);
    if (take(c).length) c.conn.input(seg(5001, 1001, ACK, 0), Buffer.alloc(0), now); // still zero, but alive
  }
  t.is(c.conn.state, 'ESTABLISHED', 'fifteen minutes of a live zero window: no timeout');
  c.conn.input(seg(5001, 3001, ACK, 4000), Buffer.alloc(0), 900_001);
  t.is(c.conn.sendBuffered(), 0);
});
