/**
 * One TCP connection as seen from the container's side of the stack: we play the remote peer.
 *
 * Theory of operation
 * -------------------
 * The stack terminates the container's TCP and relays the byte stream to a host socket (socket-
 * level NAT, as slirp and passt do). This file is only the TCP engine; it knows nothing of host
 * sockets. It is synchronous and takes the time (ms) as an argument everywhere.
 *
 * Opening:
 *  - outbound (container connects out): the stack sees the SYN, creates the conn with
 *    {@link TcpConn.passive}, connects the host socket, and only then calls `accept()` (SYN-ACK)
 *    or `refuse()` (RST), so a refused host connect is a refused container connect;
 *  - inbound (a port forward): {@link TcpConn.active} sends a SYN to the container; a SYN from
 *    the container in return (simultaneous open, RFC 9293 section 3.5) is answered too.
 *
 * States (RFC 9293 section 3.3.2, without LISTEN and TIME_WAIT). Every change goes through
 * `enter()`, which checks {@link TRANSITIONS}; a change the table does not allow is a bug: it is
 * counted (`onDrop('tcp-bad-transition')`) and resets the connection.
 *
 *   SYN_PENDING  the container's SYN is held while the host connect runs; accept/refuse/RST only
 *   SYN_SENT     our SYN is out (port forward)
 *   SYN_RCVD     our SYN-ACK is out; only an ACK of exactly our SYN completes it
 *   ESTABLISHED  data both ways
 *   FIN_WAIT_1   our FIN is out (the host peer finished), not acked; the container may send
 *   FIN_WAIT_2   our FIN is acked; the container may go on sending for as long as it likes
 *   CLOSE_WAIT   the container's FIN arrived; we may go on sending host data
 *   LAST_ACK     both FINs are out; waiting for the ack of ours
 *   CLOSED       gone (onClose has run, once)
 *
 * The sequence number of our FIN is fixed when it is first sent and every retransmission uses
 * it, whatever else was unacked when the retransmission timer fired. The connection ends when
 * both FINs are acked, with no TIME_WAIT: the container keeps its own, and a FIN it retransmits
 * after we forgot the flow gets an RST, which a peer in LAST_ACK accepts. Half-close lasts as
 * long as either side keeps it (RFC 9293 section 3.6); only the idle timer ends a quiet one.
 *
 * Receive side: segments are checked for sequence acceptability first (RFC 9293 section
 * 3.10.7.4), then RST (exact: reset; in the window: challenge ACK, RFC 5961 section 3.2), SYN
 * (challenge ACK, RFC 5961 section 4), then the ACK (one above what we sent: ACK and drop; in
 * SYN_RCVD anything but our SYN: RST). In-order data goes to `onData` at once (the caller copies
 * it if it keeps it). Segments ahead of rcvNxt are held (bounded by the window) and reported with
 * SACK blocks when SACK was negotiated. The advertised window is rcvBuf minus what the host
 * socket has not yet taken (`backlog()`) and what is held out of order, and with a shared
 * {@link BufferBudget}, no more than the budget's room; it never moves the right edge already
 * offered back (RFC 9293 section 3.8.6.2.2). When the budget is tight, new out-of-order segments
 * are dropped first; in-order data that does not fit is cut or dropped and acked with the window
 * we have (the container retransmits it), so buffered memory stays within the budget.
 *
 * Send side: host bytes are queued (`send`) and segmented to min(peer MSS, peer window, cwnd).
 * The queue holds unacked data too (our retransmission buffer, since Node has no MSG_PEEK), and
 * the caller pauses the host socket while `sendBuffered()` is above its limit. Retransmission
 * follows RFC 6298 (SRTT/RTTVAR, Karn's rule, exponential backoff, 200 ms floor as Linux), with
 * go-back-N after a timeout and fast retransmit on three duplicate ACKs; congestion control is
 * NewReno-style slow start/congestion avoidance (RFC 5681). A zero window is probed with
 * backoff and never aborts the connection by itself.
 *
 * Timers: one deadline per conn (`pollAt`), covering retransmission, persist and idle expiry;
 * `poll(now)` acts on whatever is due.
 */
import { ACK, FIN, PSH, RST, SYN, seqAdd, seqDiff, seqLe, seqLt, type TcpHeader, type TcpOptions } from '../wire/tcp.js';
import type { BufferBudget } from './budget.js';

export interface OutSegment {
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options: TcpOptions;
  /** Payload parts (views into the send queue: copy them to keep them). */
  payload: Buffer[];
  payloadLength: number;
}

export interface TcpConnEvents {
  /** A segment for the container. */
  emit(seg: OutSegment): void;
  /** In-order payload from the container; a view into the frame: copy it to keep it. */
  onData(data: Buffer): void;
  /** The container sent FIN (after all its data). */
  onFin(): void;
  /** The handshake completed. */
  onEstablished(): void;
  /** Acked data made room in the send queue. */
  onSendSpace(): void;
  /** The connection is gone; `reason` says why. Called once. */
  onClose(reason: CloseReason): void;
  /** Bytes handed to onData that the host socket has not taken yet. */
  backlog(): number;
  /** Something from the container was dropped (or a bug was caught): count `reason`. */
  onDrop?(reason: string): void;
  /** The shared budget started to cut this conn's window (the stack reopens it when there is room). */
  onThrottled?(): void;
}

/** Why a connection ended. `done` is the only orderly end; every other reason resets the host side. */
export type CloseReason = 'done' | 'reset' | 'refused' | 'unreachable' | 'timeout' | 'idle' | 'aborted' | 'internal';

export interface TcpConnOptions {
  /** Our MSS toward the container (link MTU minus IP and TCP headers). */
  mss: number;
  /** Receive buffer: the most the container may have in flight to us. */
  rcvBufBytes: number;
  /** Time without any segment or host data before the conn is reset. */
  idleMs: number;
  /** Initial send sequence number (RFC 6528: unpredictable; the stack supplies it). */
  iss: number;
  /** The budget every conn of the stack shares; absent, only rcvBufBytes bounds a conn. */
  budget?: BufferBudget;
}

export const RTO_INITIAL_MS = 1000; // RFC 6298 section 2.1
export const RTO_MIN_MS = 200; // Linux's TCP_RTO_MIN (RFC 6298 section 2.4 allows lower than 1 s)
export const RTO_MAX_MS = 60_000;
const MAX_RETRIES = 12; // ~ Linux tcp_retries2 with the 200 ms floor: minutes, not hours
const MAX_SYN_RETRIES = 5;
const MAX_OOO_SEGMENTS = 64;
const ZERO_WINDOW_ALIVE_MS = 120_000; // Linux: TCP_RTO_MAX since the peer's last segment (tcp_retransmit_timer)
const OUR_WSCALE = 7; // 2^7 * 65535 = 8 MiB of window

export type TcpState = 'SYN_PENDING' | 'SYN_SENT' | 'SYN_RCVD' | 'ESTABLISHED' | 'FIN_WAIT_1' | 'FIN_WAIT_2' | 'CLOSE_WAIT' | 'LAST_ACK' | 'CLOSED';

/**
 * The state changes each state allows. FIN_WAIT_1 -> LAST_ACK is RFC 9293's CLOSING (the
 * container's FIN crossed ours): what is left is the same, the ack of our FIN.
 */
export const TRANSITIONS: Readonly<Record<TcpState, readonly TcpState[]>> = {
  SYN_PENDING: ['SYN_RCVD', 'CLOSED'],
  SYN_SENT: ['SYN_RCVD', 'ESTABLISHED', 'CLOSED'],
  SYN_RCVD: ['ESTABLISHED', 'CLOSED'],
  ESTABLISHED: ['FIN_WAIT_1', 'CLOSE_WAIT', 'CLOSED'],
  FIN_WAIT_1: ['FIN_WAIT_2', 'LAST_ACK', 'CLOSED'],
  FIN_WAIT_2: ['CLOSED'],
  CLOSE_WAIT: ['LAST_ACK', 'CLOSED'],
  LAST_ACK: ['CLOSED'],
  CLOSED: [],
};

/** States in which the container may still send us data (its FIN has not arrived). */
const RECEIVING: ReadonlySet<TcpState> = new Set(['ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2']);
/** States in which we may still send new host data (our FIN is not out). */
const SENDING: ReadonlySet<TcpState> = new Set(['ESTABLISHED', 'CLOSE_WAIT']);
/** Synchronized states: the handshake is done and the conn is not closed. */
const SYNCHRONIZED: ReadonlySet<TcpState> = new Set(['ESTABLISHED', 'FIN_WAIT_1', 'FIN_WAIT_2', 'CLOSE_WAIT', 'LAST_ACK']);

const rst = (seq: number, ack: number, withAck: boolean): OutSegment => ({ seq, ack, flags: withAck ? RST | ACK : RST, window: 0, options: {}, payload: [], payloadLength: 0 });

export class TcpConn {
  state: TcpState;
  private readonly ev: TcpConnEvents;
  private readonly o: TcpConnOptions;
  // send side
  private readonly iss: number;
  private sndUna: number;
  private sndNxt: number;
  private sndMax: number; // highest sequence sent (go-back-N resets sndNxt below it)
  private sndWnd = 0;
  private maxSndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private sndShift = 0;
  private peerMss = 536; // RFC 9293 section 3.7.1 default
  private sackOk = false;
  private readonly queue: Buffer[] = [];
  private queued = 0; // bytes in queue (unacked + unsent)
  private finQueued = false; // the host side ended: FIN after the queued data
  private finSeq: number | null = null; // our FIN's sequence number, fixed once sent
  private cwnd: number;
  private ssthresh = 0x7fffffff;
  private dupAcks = 0;
  private recover = 0;
  // receive side
  private irs = 0;
  private rcvNxt = 0;
  private rcvShift = 0;
  private rcvEdge = 0; // right edge advertised so far
  /** The container's FIN was consumed. */
  finReceived = false;
  private peerFinAt: number | null = null; // container FIN seen out of order
  private readonly ooo: Array<{ seq: number; data: Buffer }> = [];
  private oooBytes = 0;
  private ackDue = false;
  private synReply: TcpHeader | null = null;
  // budget
  private charged = 0; // bytes this conn has charged to the shared budget
  /** The last window offered was cut by the shared budget (the stack reopens it on relief). */
  throttled = false;
  // timers
  private srtt = 0;
  private rttvar = 0;
  private rto = RTO_INITIAL_MS;
  private retries = 0;
  private rtxAt = Infinity;
  private persistAt = Infinity;
  private timed: { seq: number; at: number } | null = null;
  private lastActivity: number;
  private heardAt: number; // last segment from the container
  // counters
  retransmits = 0;
  bytesIn = 0;
  bytesOut = 0;

  private constructor(ev: TcpConnEvents, o: TcpConnOptions, state: TcpState, now: number) {
    this.ev = ev;
    this.o = o;
    this.state = state;
    this.iss = o.iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.cwnd = 10 * o.mss; // RFC 6928 initial window
    this.lastActivity = now;
    this.heardAt = now;
  }

  /** The container's SYN arrived: remember it; answer later with accept() or refuse(). */
  static passive(ev: TcpConnEvents, o: TcpConnOptions, syn: TcpHeader, now: number): TcpConn {
    const c = new TcpConn(ev, o, 'SYN_PENDING', now);
    c.takeSyn(syn);
    return c;
  }

  /** Opens toward the container (port forward): sends the SYN now. */
  static active(ev: TcpConnEvents, o: TcpConnOptions, now: number): TcpConn {
    const c = new TcpConn(ev, o, 'SYN_SENT', now);
    c.sendSyn(now, false);
    return c;
  }

  /** The conn is gone (a method, so that checks after calls that may close it are not narrowed away). */
  closed(): boolean {
    return this.state === 'CLOSED';
  }

  /** Our FIN went out and the container acked it. */
  get finAcked(): boolean {
    return this.finSeq !== null && seqLt(this.finSeq, this.sndUna);
  }

  /**
   * The one funnel for state changes. A change {@link TRANSITIONS} does not allow is counted and
   * resets the connection (false is returned and the caller must stop).
   */
  private enter(to: TcpState): boolean {
    if (TRANSITIONS[this.state].includes(to)) {
      this.state = to;
      return true;
    }
    this.ev.onDrop?.('tcp-bad-transition');
    this.reset('internal');
    return false;
  }

  private takeSyn(h: TcpHeader): void {
    this.irs = h.seq;
    this.rcvNxt = seqAdd(h.seq, 1);
    if (h.options.mss) this.peerMss = Math.max(64, h.options.mss);
    this.sackOk = !!h.options.sackOk;
    if (h.options.wscale !== undefined) {
      this.sndShift = Math.min(14, h.options.wscale); // RFC 7323 section 2.3
      this.rcvShift = OUR_WSCALE;
    } else {
      this.sndShift = 0;
      this.rcvShift = 0;
    }
    this.sndWnd = h.window; // SYN windows are never scaled (RFC 7323 section 2.2)
    this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
    this.sndWl1 = h.seq;
    this.sndWl2 = h.ack;
  }

  private synOptions(reply: TcpHeader | null): TcpOptions {
    const o: TcpOptions = { mss: this.o.mss };
    // On SYN-ACK, only echo what the container offered (RFC 7323 section 1.3, RFC 2018 section 2).
    if (!reply || reply.options.wscale !== undefined) o.wscale = OUR_WSCALE;
    if (!reply || reply.options.sackOk) o.sackOk = true;
    return o;
  }

  private sendSyn(now: number, withAck: boolean): void {
    this.ev.emit({
      seq: this.iss,
      ack: withAck ? this.rcvNxt : 0,
      flags: withAck ? SYN | ACK : SYN,
      window: withAck ? this.synWindow() : Math.min(this.o.rcvBufBytes, 0xffff),
      options: this.synOptions(withAck ? this.synReply : null),
      payload: [],
      payloadLength: 0,
    });
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.rtxAt = now + this.rto;
  }

  /** The (unscaled) window of a SYN-ACK, which also sets the first right edge. */
  private synWindow(): number {
    const w = Math.min(this.freeWindow(), 0xffff);
    const edge = seqAdd(this.rcvNxt, w);
    if (seqLt(this.rcvEdge, edge) || this.rcvEdge === 0) this.rcvEdge = edge;
    return seqDiff(this.rcvEdge, this.rcvNxt);
  }

  /** SYN_PENDING -> SYN_RCVD: the host side is connected; send SYN-ACK. */
  accept(now: number, syn: TcpHeader): void {
    if (this.state !== 'SYN_PENDING' || !this.enter('SYN_RCVD')) return;
    this.synReply = syn;
    this.rcvEdge = this.rcvNxt;
    this.sendSyn(now, true);
  }

  /** SYN_PENDING -> CLOSED with RST (the host refused the connection). */
  refuse(): void {
    if (this.state !== 'SYN_PENDING') return;
    this.ev.emit(rst(0, this.rcvNxt, true));
    this.close('refused');
  }

  /** SYN_PENDING -> CLOSED without a word: the stack answers with ICMP unreachable instead. */
  unreachable(): void {
    if (this.state === 'SYN_PENDING') this.close('unreachable');
  }

  private close(reason: CloseReason): void {
    if (this.state === 'CLOSED') return;
    this.state = 'CLOSED'; // every state may close (TRANSITIONS): no check needed here
    this.queue.length = 0;
    this.queued = 0;
    this.ooo.length = 0;
    this.oooBytes = 0;
    this.rtxAt = this.persistAt = Infinity;
    this.o.budget?.adjust(-this.charged);
    this.charged = 0;
    this.ev.onClose(reason);
  }

  /**
   * Gives back what this conn holds of the shared budget and marks it closed, without a word or
   * an event: only for the stack's last resort, after a throw made the orderly close impossible.
   */
  dispose(): void {
    this.o.budget?.adjust(-this.charged);
    this.charged = 0;
    this.state = 'CLOSED';
    this.queue.length = 0;
    this.ooo.length = 0;
    this.rtxAt = this.persistAt = Infinity;
  }

  /** Sends RST and forgets the connection (`reason` says why: host error, limits, a bug). */
  reset(reason: CloseReason): void {
    if (this.state === 'CLOSED') return;
    if (this.state === 'SYN_PENDING') this.ev.emit(rst(0, this.rcvNxt, true));
    // sndMax: after go-back-N the container may have everything up to it, and it ignores an RST
    // below its receive window (RFC 5961 section 3.2).
    else this.ev.emit(rst(this.sndMax, this.rcvNxt, this.state !== 'SYN_SENT'));
    this.close(reason);
  }

  /** Sends RST and forgets the connection (host socket error, shutdown). */
  abort(): void {
    this.reset('aborted');
  }

  /** Queues host bytes for the container (kept by reference: pass a buffer you will not reuse). */
  send(data: Buffer, now: number): void {
    if (this.state === 'CLOSED' || this.finQueued || !data.length) return;
    this.queue.push(data);
    this.queued += data.length;
    this.lastActivity = now;
    this.charge();
    if (SENDING.has(this.state)) this.output(now);
  }

  /** The host side finished: send FIN after the queued data. */
  end(now: number): void {
    if (this.state === 'CLOSED' || this.finQueued) return;
    this.finQueued = true;
    this.lastActivity = now;
    if (SENDING.has(this.state)) this.output(now);
  }

  /** Bytes queued toward the container and not yet acked. */
  sendBuffered(): number {
    return this.queued;
  }

  /** Bytes this conn holds in all: host backlog, out-of-order data, the send queue. */
  held(): number {
    return this.charged;
  }

  /** Re-reads what this conn holds and charges the difference to the shared budget. */
  private charge(): void {
    const now = this.ev.backlog() + this.oooBytes + this.queued;
    this.o.budget?.adjust(now - this.charged);
    this.charged = now;
  }

  /** The host socket took backlog, or the budget has room again: advertise the reopened window if it grew enough to matter. */
  windowOpened(now: number): void {
    if (this.state === 'CLOSED') return;
    this.charge(); // the host took backlog: what this conn holds went down, in every state
    if (!RECEIVING.has(this.state)) return;
    const free = this.freeWindow();
    const advertised = seqDiff(this.rcvEdge, this.rcvNxt);
    // Receiver-side silly window avoidance (RFC 9293 section 3.8.6.2.2).
    if (free - advertised >= Math.min(this.o.rcvBufBytes / 2, this.o.mss)) this.sendAck(now);
  }

  private freeWindow(): number {
    const held = this.ev.backlog() + this.oooBytes;
    const own = Math.max(0, this.o.rcvBufBytes - held);
    const b = this.o.budget;
    if (!b) return own;
    const room = b.room(held);
    const throttled = room < own;
    if (throttled && !this.throttled) this.ev.onThrottled?.();
    this.throttled = throttled;
    return Math.min(own, room);
  }

  private windowField(): number {
    if (!RECEIVING.has(this.state)) return Math.min(0xffff, Math.floor(Math.max(0, seqDiff(this.rcvEdge, this.rcvNxt)) / 2 ** this.rcvShift));
    this.charge();
    let w = this.freeWindow();
    const edge = seqDiff(this.rcvEdge, this.rcvNxt);
    if (w < edge) w = edge; // never shrink the edge already offered
    const field = Math.min(0xffff, Math.floor(w / 2 ** this.rcvShift));
    const newEdge = seqAdd(this.rcvNxt, field * 2 ** this.rcvShift);
    if (seqLt(this.rcvEdge, newEdge)) this.rcvEdge = newEdge;
    return field;
  }

  private sackBlocks(): Array<[number, number]> | undefined {
    if (!this.sackOk || !this.ooo.length) return undefined;
    const blocks: Array<[number, number]> = [];
    for (const s of this.ooo) {
      const end = seqAdd(s.seq, s.data.length);
      const last = blocks[blocks.length - 1];
      if (last && seqLe(s.seq, last[1])) {
        if (seqLt(last[1], end)) last[1] = end;
      } else blocks.push([s.seq, end]);
    }
    return blocks.slice(0, 4);
  }

  private sendAck(now: number): void {
    this.ackDue = false;
    const sack = this.sackBlocks();
    // sndMax, not sndNxt: after go-back-N sndNxt is behind what the container may already have,
    // and a pure ACK behind its rcvNxt would be unacceptable there and draw an ACK in return.
    this.ev.emit({ seq: this.sndMax, ack: this.rcvNxt, flags: ACK, window: this.windowField(), options: sack ? { sack } : {}, payload: [], payloadLength: 0 });
    void now;
  }

  /** Handles one segment from the container. `payload` is a view into the frame. */
  input(h: TcpHeader, payload: Buffer, now: number): void {
    if (this.state === 'CLOSED') return;
    this.lastActivity = now;
    this.heardAt = now;
    if (this.state === 'SYN_SENT') return this.inputSynSent(h, now);
    if (this.state === 'SYN_PENDING') {
      // A retransmitted SYN while the host connect runs is ignored; an RST for it ends the
      // attempt (the container gave up: the stack closes the host socket).
      if (h.flags & RST && h.seq === this.rcvNxt) this.close('reset');
      return;
    }
    if (this.state === 'SYN_RCVD' && h.flags & SYN && !(h.flags & RST) && h.seq === this.irs) {
      // Our SYN-ACK was lost (a retransmitted SYN), or, after a simultaneous open, this is the
      // container's SYN-ACK: its ACK completes the handshake.
      if (!(h.flags & ACK)) return this.sendSyn(now, true);
      h = { ...h, seq: seqAdd(h.seq, 1), flags: h.flags & ~SYN };
    }
    if (!this.acceptable(h.seq, payload.length + (h.flags & FIN ? 1 : 0) + (h.flags & SYN ? 1 : 0))) {
      if (!(h.flags & RST)) this.ackDue = true; // RFC 9293 section 3.10.7.4: ACK and drop
      return;
    }
    if (h.flags & RST) return this.inputRst(h, now);
    if (h.flags & SYN) {
      this.sendAck(now); // challenge ACK (RFC 5961 section 4)
      return;
    }
    if (!(h.flags & ACK)) return;
    if (!this.inputAck(h, payload.length, now) || this.closed()) return;
    if (payload.length || h.flags & FIN) this.inputData(h, payload, now);
    if (!this.closed()) this.output(now);
  }

  /**
   * Sequence acceptability (RFC 9293 section 3.10.7.4), as Linux applies it (tcp_sequence): the
   * segment must not end before rcvNxt nor start past the right edge. A segment at rcvNxt is
   * acceptable even in a zero window, so its ACK and FIN are seen; what does not fit is trimmed.
   */
  private acceptable(seq: number, len: number): boolean {
    const start = seqDiff(seq, this.rcvNxt);
    return start + len >= 0 && start <= Math.max(0, seqDiff(this.rcvEdge, this.rcvNxt));
  }

  private inputSynSent(h: TcpHeader, now: number): void {
    const ackOk = (h.flags & ACK) !== 0 && h.ack === seqAdd(this.iss, 1);
    if (h.flags & RST) {
      if (ackOk) this.close('refused');
      return;
    }
    if (h.flags & ACK && !ackOk) {
      this.ev.emit(rst(h.ack, 0, false));
      return;
    }
    if (!(h.flags & SYN)) return;
    this.takeSyn(h);
    if (!ackOk) {
      // Simultaneous open (RFC 9293 section 3.5): the container connected to us as we connected
      // to it. SYN-ACK with our ISN; its ACK completes the handshake.
      if (!this.enter('SYN_RCVD')) return;
      this.synReply = h;
      this.rcvEdge = this.rcvNxt;
      this.sendSyn(now, true);
      return;
    }
    if (!this.enter('ESTABLISHED')) return;
    this.sndUna = h.ack;
    this.rtxAt = Infinity;
    this.retries = 0;
    this.rcvEdge = this.rcvNxt;
    this.sendAck(now);
    this.ev.onEstablished();
    this.output(now);
  }

  private inputRst(h: TcpHeader, now: number): void {
    // RFC 5961 section 3.2: only an RST at exactly rcvNxt resets; one elsewhere in the window
    // draws a challenge ACK, so a blind attacker must guess the exact sequence number.
    if (h.seq === this.rcvNxt) this.close('reset');
    else this.sendAck(now);
  }

  /** ACK processing; false when the segment must be dropped. */
  private inputAck(h: TcpHeader, len: number, now: number): boolean {
    if (this.state === 'SYN_RCVD') {
      if (h.ack !== seqAdd(this.iss, 1)) {
        this.ev.emit(rst(h.ack, 0, false)); // RFC 9293 section 3.10.7.4, SYN-RECEIVED
        return false;
      }
      if (!this.enter('ESTABLISHED')) return false;
      this.sndUna = h.ack;
      this.rtxAt = Infinity;
      this.retries = 0;
      this.sndWnd = h.window * 2 ** this.sndShift;
      this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
      this.sndWl1 = h.seq;
      this.sndWl2 = h.ack;
      this.ev.onEstablished();
      return true;
    }
    if (seqLt(this.sndMax, h.ack)) {
      this.sendAck(now); // acks data we never sent (RFC 9293 section 3.10.7.4)
      return false;
    }
    if (seqLt(h.ack, seqAdd(this.sndUna, -Math.max(this.maxSndWnd, 1)))) {
      this.sendAck(now); // far too old: a blind injection (RFC 5961 section 5.2)
      return false;
    }
    const acked = seqDiff(h.ack, this.sndUna);
    const window = h.window * 2 ** this.sndShift;
    const dup = acked === 0 && len === 0 && !(h.flags & FIN) && window === this.sndWnd && seqLt(this.sndUna, this.sndMax);
    // RFC 9293 section 3.10.7.4: advance SND.UNA, then take the window, and only then send:
    // what the ACK acked must not be refilled against the window of an older segment.
    const finNow = acked > 0 && this.onAcked(h.ack, acked, now);
    if (seqLt(this.sndWl1, h.seq) || (this.sndWl1 === h.seq && seqLe(this.sndWl2, h.ack))) {
      const opened = window > this.sndWnd;
      this.sndWnd = window;
      this.maxSndWnd = Math.max(this.maxSndWnd, window);
      this.sndWl1 = h.seq;
      this.sndWl2 = h.ack;
      if (window > 0) this.persistAt = Infinity;
      if (opened) this.retries = 0;
    }
    if (dup) {
      if (++this.dupAcks === 3) this.fastRetransmit(now);
      else if (this.dupAcks > 3) this.cwnd += this.peerMssCapped(); // window inflation (RFC 6582)
    }
    if (acked > 0) {
      this.ev.onSendSpace();
      if (this.closed()) return false;
    }
    if (finNow) return this.ourFinAcked(now);
    return true;
  }

  /** The ACK covered our FIN: FIN_WAIT_1 -> FIN_WAIT_2, LAST_ACK -> done. False when the conn closed. */
  private ourFinAcked(now: number): boolean {
    if (this.state === 'FIN_WAIT_1') return this.enter('FIN_WAIT_2');
    if (this.state !== 'LAST_ACK') return true;
    if (this.ackDue) this.sendAck(now); // their FIN's ACK goes out before we forget the flow
    this.close('done');
    return false;
  }

  private peerMssCapped(): number {
    return Math.min(this.peerMss, this.o.mss);
  }

  /** New data (and maybe our FIN) acked; true when the ACK covered our FIN for the first time. */
  private onAcked(ack: number, acked: number, now: number): boolean {
    if (this.timed && seqLt(this.timed.seq, ack)) {
      this.sampleRtt(now - this.timed.at);
      this.timed = null;
    }
    // The ACK may also cover our FIN, one sequence number past the data.
    const finNow = this.finSeq !== null && !this.finAcked && seqLt(this.finSeq, ack);
    this.consume(Math.min(finNow ? acked - 1 : acked, this.queued));
    this.sndUna = ack;
    if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
    this.retries = 0;
    const mss = this.peerMssCapped();
    if (this.dupAcks >= 3) {
      // NewReno: a partial ack retransmits the next hole; a full ack deflates the window.
      if (seqLt(ack, this.recover)) this.retransmitFirst(now);
      else this.cwnd = this.ssthresh;
    } else if (this.cwnd < this.ssthresh) this.cwnd += Math.min(acked, mss);
    else this.cwnd += Math.max(1, Math.floor((mss * mss) / this.cwnd));
    this.dupAcks = 0;
    this.rtxAt = seqLt(this.sndUna, this.sndMax) ? now + this.rto : Infinity;
    this.charge();
    return finNow;
  }

  private consume(n: number): void {
    this.queued -= n;
    while (n > 0 && this.queue.length) {
      const head = this.queue[0];
      if (head.length <= n) {
        n -= head.length;
        this.queue.shift();
      } else {
        this.queue[0] = head.subarray(n);
        n = 0;
      }
    }
  }

  private sampleRtt(r: number): void {
    // RFC 6298 section 2.2 and 2.3
    if (this.srtt === 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.rto = Math.min(RTO_MAX_MS, Math.max(RTO_MIN_MS, this.srtt + Math.max(1, 4 * this.rttvar)));
  }

  private fastRetransmit(now: number): void {
    const inflight = seqDiff(this.sndMax, this.sndUna);
    this.ssthresh = Math.max(Math.floor(inflight / 2), 2 * this.peerMssCapped());
    this.cwnd = this.ssthresh + 3 * this.peerMssCapped();
    this.recover = this.sndMax;
    this.retransmitFirst(now);
  }

  private retransmitFirst(now: number): void {
    const len = Math.min(this.peerMssCapped(), this.queued, Math.max(1, seqDiff(this.sndMax, this.sndUna)));
    if (len > 0 && this.queued > 0) this.emitData(this.sndUna, len, now, true);
    else if (this.finSeq !== null && !this.finAcked) this.emitFin(now);
    this.timed = null; // Karn's rule
    this.retransmits++;
  }

  private inputData(h: TcpHeader, payload: Buffer, now: number): void {
    let seq = h.seq;
    let data = payload;
    let fin = (h.flags & FIN) !== 0;
    if (!RECEIVING.has(this.state)) {
      this.ackDue = true; // data after the container's own FIN: ignore the text, re-ack
      return;
    }
    // Trim what we already have (RFC 9293 section 3.10.7.4, "first check sequence number").
    const old = seqDiff(this.rcvNxt, seq);
    if (old > 0) {
      data = data.subarray(Math.min(old, data.length));
      seq = this.rcvNxt;
    }
    // Trim what lies beyond the window we offered.
    const room = seqDiff(this.rcvEdge, seq);
    if (data.length > room) {
      data = data.subarray(0, Math.max(0, room));
      fin = false;
    }
    if (seq !== this.rcvNxt) {
      this.holdOutOfOrder(seq, data, fin);
      this.ackDue = true; // duplicate ack (with SACK) tells the sender about the hole
      return;
    }
    if (data.length) {
      const fit = this.budgetRoom(data.length);
      if (fit < data.length) {
        this.ev.onDrop?.('tcp-budget-drop');
        data = data.subarray(0, fit);
        fin = false;
      }
    }
    if (data.length) {
      this.rcvNxt = seqAdd(this.rcvNxt, data.length);
      this.bytesIn += data.length;
      this.ev.onData(data);
    }
    if (fin) this.peerFinAt = this.rcvNxt;
    this.drainOutOfOrder();
    this.charge();
    this.ackDue = true;
    if (this.peerFinAt !== null && this.peerFinAt === this.rcvNxt) this.consumeFin(now);
  }

  /** How much of `len` in-order bytes the shared budget lets this conn take (after giving up its out-of-order data). */
  private budgetRoom(len: number): number {
    const b = this.o.budget;
    if (!b) return len;
    const held = () => this.ev.backlog() + this.oooBytes;
    if (b.room(held()) >= len) return len;
    // Out-of-order data goes first: it is only a hint, the container still has it.
    if (this.ooo.length) {
      this.ev.onDrop?.('tcp-ooo-pruned');
      this.ooo.length = 0;
      this.oooBytes = 0;
      this.charge();
    }
    return Math.min(len, b.room(held()));
  }

  private consumeFin(now: number): void {
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.finReceived = true;
    this.peerFinAt = null;
    this.ackDue = true;
    this.ev.onFin();
    if (this.state === 'ESTABLISHED') this.enter('CLOSE_WAIT');
    else if (this.state === 'FIN_WAIT_1') this.enter('LAST_ACK');
    else if (this.state === 'FIN_WAIT_2') {
      this.sendAck(now); // their FIN's ACK goes out before we forget the flow
      this.close('done');
    }
  }

  private holdOutOfOrder(seq: number, data: Buffer, fin: boolean): void {
    if (fin) this.peerFinAt = seqAdd(seq, data.length);
    if (!data.length || this.ooo.length >= MAX_OOO_SEGMENTS) return;
    if (this.o.budget?.tight(data.length)) {
      this.ev.onDrop?.('tcp-ooo-budget-drop'); // the first thing a full budget gives up
      return;
    }
    // Keep a private copy: the frame buffer is reused after this call.
    const copy = Buffer.from(data);
    let i = this.ooo.length;
    while (i > 0 && seqLt(seq, this.ooo[i - 1].seq)) i--;
    this.ooo.splice(i, 0, { seq, data: copy });
    this.oooBytes += copy.length;
    this.charge();
  }

  private drainOutOfOrder(): void {
    while (this.ooo.length) {
      const s = this.ooo[0];
      const skip = seqDiff(this.rcvNxt, s.seq);
      if (skip < 0) break;
      this.ooo.shift();
      this.oooBytes -= s.data.length;
      if (skip >= s.data.length) continue;
      const data = s.data.subarray(skip);
      this.rcvNxt = seqAdd(this.rcvNxt, data.length);
      this.bytesIn += data.length;
      this.ev.onData(data);
    }
  }

  /** Sends what the windows allow: new data, then FIN (first time, or again after go-back-N). */
  private output(now: number): void {
    if (!SYNCHRONIZED.has(this.state)) return;
    const mss = this.peerMssCapped();
    for (;;) {
      const inflight = Math.min(seqDiff(this.sndNxt, this.sndUna), this.queued);
      const unsent = this.queued - inflight;
      const allowed = Math.min(this.sndWnd, this.cwnd) - inflight;
      if (unsent > 0 && allowed > 0) {
        const len = Math.min(mss, unsent, allowed);
        // Avoid sender silly-window segments while more data is in flight (RFC 9293 3.8.6.2.1).
        if (len < mss && len < unsent && inflight > 0) break;
        this.emitData(this.sndNxt, len, now, false);
        continue;
      }
      if (unsent > 0 && this.sndWnd === 0 && inflight === 0 && this.persistAt === Infinity) this.persistAt = now + this.rto;
      break;
    }
    const dataEnd = seqAdd(this.sndUna, this.queued);
    if (!this.finQueued || this.sndNxt !== dataEnd) return;
    if (this.finSeq === null) {
      if (!SENDING.has(this.state)) return;
      this.finSeq = dataEnd;
      if (!this.enter(this.state === 'ESTABLISHED' ? 'FIN_WAIT_1' : 'LAST_ACK')) return;
      this.emitFin(now);
    } else if (this.sndNxt === this.finSeq && !this.finAcked) this.emitFin(now);
  }

  private emitData(seq: number, len: number, now: number, resend: boolean): void {
    // Anything below sndMax was sent before (go-back-N after a timeout): no RTT sample (Karn).
    const retransmit = resend || seqLt(seq, this.sndMax);
    const off = seqDiff(seq, this.sndUna);
    const parts: Buffer[] = [];
    let skip = off;
    let need = len;
    for (const b of this.queue) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      const take = Math.min(b.length - skip, need);
      parts.push(b.subarray(skip, skip + take));
      need -= take;
      skip = 0;
      if (!need || parts.length === 15) break;
    }
    len -= need; // at most 15 parts per frame
    const end = seqAdd(seq, len);
    const last = end === seqAdd(this.sndUna, this.queued);
    this.ackDue = false;
    this.ev.emit({ seq, ack: this.rcvNxt, flags: ACK | (last ? PSH : 0), window: this.windowField(), options: {}, payload: parts, payloadLength: len });
    if (!retransmit) {
      this.bytesOut += len;
      if (!this.timed) this.timed = { seq, at: now };
    }
    if (seqLt(this.sndNxt, end)) this.sndNxt = end;
    if (seqLt(this.sndMax, end)) this.sndMax = end;
    if (this.rtxAt === Infinity) this.rtxAt = now + this.rto;
  }

  /** Sends our FIN at its fixed sequence number. */
  private emitFin(now: number): void {
    const seq = this.finSeq!;
    this.ackDue = false;
    this.ev.emit({ seq, ack: this.rcvNxt, flags: FIN | ACK, window: this.windowField(), options: {}, payload: [], payloadLength: 0 });
    const end = seqAdd(seq, 1);
    if (seqLt(this.sndNxt, end)) this.sndNxt = end;
    if (seqLt(this.sndMax, end)) this.sndMax = end;
    if (this.rtxAt === Infinity) this.rtxAt = now + this.rto;
  }

  /** Sends a pending ACK now (the stack calls this once per received batch). */
  flush(now: number): void {
    if (this.state !== 'CLOSED' && this.ackDue) this.sendAck(now);
  }

  /** The next time poll() has work: retransmission, persist probe, or expiry. */
  pollAt(): number {
    if (this.state === 'CLOSED') return Infinity;
    return Math.min(this.rtxAt, this.persistAt, this.lastActivity + this.o.idleMs);
  }

  /** Acts on due timers. */
  poll(now: number): void {
    if (this.state === 'CLOSED') return;
    if (now >= this.lastActivity + this.o.idleMs) return this.expire('idle');
    if (now >= this.persistAt) {
      // Zero-window probe: an ACK one byte below sndUna makes the container answer with its window.
      this.ev.emit({ seq: seqAdd(this.sndUna, -1), ack: this.rcvNxt, flags: ACK, window: this.windowField(), options: {}, payload: [], payloadLength: 0 });
      this.rto = Math.min(RTO_MAX_MS, this.rto * 2);
      this.persistAt = this.sndWnd === 0 ? now + this.rto : Infinity;
    }
    if (now >= this.rtxAt) this.onRetransmitTimeout(now);
  }

  private expire(reason: CloseReason): void {
    this.reset(reason);
  }

  private onRetransmitTimeout(now: number): void {
    // A peer that closed its window with our data unacked, but answers (its zero-window ACKs), is
    // alive: as Linux, the retransmissions then probe it and do not count toward giving up.
    if (this.sndWnd === 0 && SYNCHRONIZED.has(this.state) && now - this.heardAt <= ZERO_WINDOW_ALIVE_MS) this.retries = 0;
    this.retries++;
    const synState = this.state === 'SYN_SENT' || this.state === 'SYN_RCVD';
    if (this.retries > (synState ? MAX_SYN_RETRIES : MAX_RETRIES)) return this.expire('timeout');
    this.rto = Math.min(RTO_MAX_MS, this.rto * 2); // RFC 6298 section 5.5
    this.timed = null;
    this.retransmits++;
    this.rtxAt = Infinity;
    if (this.state === 'SYN_SENT') return this.sendSyn(now, false);
    if (this.state === 'SYN_RCVD') return this.sendSyn(now, true);
    // Go-back-N from the first unacked byte (RFC 5681 section 3.1 on timeout); our FIN, if it
    // was out, follows the data again at its own sequence number.
    const inflight = seqDiff(this.sndMax, this.sndUna);
    this.ssthresh = Math.max(Math.floor(inflight / 2), 2 * this.peerMssCapped());
    this.cwnd = this.peerMssCapped();
    this.dupAcks = 0;
    this.sndNxt = this.sndUna;
    this.output(now);
    if (this.rtxAt === Infinity && seqLt(this.sndUna, this.sndMax)) this.rtxAt = now + this.rto;
  }

  /** Diagnostic snapshot. */
  info(): Record<string, number | string | boolean> {
    return { state: this.state, sndUna: this.sndUna, sndNxt: this.sndNxt, sndWnd: this.sndWnd, cwnd: this.cwnd, rto: this.rto, srtt: this.srtt, queued: this.queued, rcvNxt: this.rcvNxt, ooo: this.ooo.length, retransmits: this.retransmits, held: this.charged, finSeq: this.finSeq ?? -1 };
  }
}
