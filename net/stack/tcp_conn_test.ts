/**
 * Scripted TCP conversations with the engine on a manual clock: each test plays the container's
 * side by hand and checks every segment the engine sends (gVisor checker style).
 */
import test from 'ava';
import { ACK, FIN, PSH, RST, SYN, seqAdd, type TcpHeader, type TcpOptions } from '../wire/tcp.js';
import { RTO_INITIAL_MS, RTO_MIN_MS, TcpConn, type OutSegment } from './tcp_conn.js';

interface Harness {
  conn: TcpConn;
  out: OutSegment[];
  data: Buffer[];
  events: string[];
  backlog: { bytes: number };
}

function harness(mode: 'active' | 'passive', opts: Partial<{ rcvBufBytes: number; mss: number; syn: TcpHeader }> = {}): Harness {
  const h = { out: [] as OutSegment[], data: [] as Buffer[], events: [] as string[], backlog: { bytes: 0 } } as Harness;
  const ev = {
    emit: (s: OutSegment) => h.out.push({ ...s, payload: s.payload.map((p) => Buffer.from(p)) }),
    onData: (d: Buffer) => h.data.push(Buffer.from(d)),
    onFin: () => h.events.push('fin'),
    onEstablished: () => h.events.push('established'),
    onSendSpace: () => h.events.push('space'),
    onClose: (r: string) => h.events.push(`close:${r}`),
    backlog: () => h.backlog.bytes,
  };
  const o = { mss: opts.mss ?? 1000, rcvBufBytes: opts.rcvBufBytes ?? 64_000, idleMs: 60_000, finTimeoutMs: 5_000, iss: 1000 };
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

test('timers: a half-closed conn waits finTimeout for the FIN; idle conns expire with RST', (t) => {
  const a = established();
  a.conn.end(0);
  take(a);
  a.conn.input(seg(5001, 1002, ACK), Buffer.alloc(0), 10);
  t.is(a.conn.pollAt(), 10 + 5_000);
  a.conn.poll(10 + 5_000);
  t.like(take(a)[0], { flags: RST | ACK });
  t.deepEqual(a.events.slice(-1), ['close:timeout']);
  const b = established();
  b.conn.poll(60_001);
  t.deepEqual(b.events.slice(-1), ['close:idle']);
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
