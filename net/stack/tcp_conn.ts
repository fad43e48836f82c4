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
 *  - inbound (a port forward): {@link TcpConn.active} sends a SYN to the container.
 *
 * States: SYN_SENT, SYN_PENDING (SYN seen, host connect in progress), SYN_RCVD, ESTABLISHED and
 * CLOSED, with half-close tracked by flags (finReceived: the container's FIN was consumed;
 * finQueued/finSent/finAcked: ours). The connection is done when both FINs are acked, with no
 * TIME_WAIT: the container keeps its own TIME_WAIT, and a retransmitted FIN after we forgot the
 * flow gets an RST, which a peer in LAST_ACK accepts.
 *
 * Receive side: in-order data goes to `onData` at once (the caller copies it if it keeps it).
 * Segments ahead of rcvNxt are held (bounded by the window) and reported back with SACK blocks
 * when SACK was negotiated. The advertised window is rcvBuf minus what the host socket has not
 * yet taken (`backlog()`), so a slow host peer closes the container's window; it never shrinks
 * the right edge already advertised (RFC 9293 section 3.8.6.2.2).
 *
 * Send side: host bytes are queued (`send`) and segmented to min(peer MSS, peer window, cwnd).
 * The queue holds unacked data too (our retransmission buffer, since Node has no MSG_PEEK), and
 * the caller pauses the host socket while `sendBuffered()` is above its limit. Retransmission
 * follows RFC 6298 (SRTT/RTTVAR, Karn's rule, exponential backoff, 200 ms floor as Linux), with
 * go-back-N after a timeout and fast retransmit on three duplicate ACKs; congestion control is
 * NewReno-style slow start/congestion avoidance (RFC 5681). A zero window is probed with
 * backoff and never aborts the connection by itself.
 *
 * Timers: one deadline per conn (`pollAt`), covering retransmission, persist, delayed window
 * updates and idle expiry; `poll(now)` acts on whatever is due.
 */
import { ACK, FIN, PSH, RST, SYN, seqAdd, seqDiff, seqLe, seqLt, type TcpHeader, type TcpOptions } from '../wire/tcp.js';

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
}

export type CloseReason = 'done' | 'reset' | 'refused' | 'timeout' | 'idle' | 'aborted';

export interface TcpConnOptions {
  /** Our MSS toward the container (link MTU minus IP and TCP headers). */
  mss: number;
  /** Receive buffer: the most the container may have in flight to us. */
  rcvBufBytes: number;
  /** Idle time before an established conn is reset. */
  idleMs: number;
  /** Time a half-closed conn waits for the container's FIN after ours was acked. */
  finTimeoutMs: number;
  /** Initial send sequence number (RFC 6528: unpredictable; the stack supplies it). */
  iss: number;
}

export const RTO_INITIAL_MS = 1000; // RFC 6298 section 2.1
export const RTO_MIN_MS = 200; // Linux's TCP_RTO_MIN (RFC 6298 section 2.4 allows lower than 1 s)
export const RTO_MAX_MS = 60_000;
const MAX_RETRIES = 12; // ~ Linux tcp_retries2 with the 200 ms floor: minutes, not hours
const MAX_SYN_RETRIES = 5;
const MAX_OOO_SEGMENTS = 64;
const OUR_WSCALE = 7; // 2^7 * 65535 = 8 MiB of window

type State = 'SYN_SENT' | 'SYN_PENDING' | 'SYN_RCVD' | 'ESTABLISHED' | 'CLOSED';

export class TcpConn {
  state: State;
  private readonly ev: TcpConnEvents;
  private readonly o: TcpConnOptions;
  // send side
  private readonly iss: number;
  private sndUna: number;
  private sndNxt: number;
  private sndMax: number; // highest sequence sent (go-back-N resets sndNxt below it)
  private sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private sndShift = 0;
  private peerMss = 536; // RFC 9293 section 3.7.1 default
  private sackOk = false;
  private readonly queue: Buffer[] = [];
  private queued = 0; // bytes in queue (unacked + unsent)
  private finQueued = false;
  private finSent = false;
  finAcked = false;
  private cwnd: number;
  private ssthresh = 0x7fffffff;
  private dupAcks = 0;
  private recover = 0;
  // receive side
  private irs = 0;
  private rcvNxt = 0;
  private rcvShift = 0;
  private rcvEdge = 0; // right edge advertised so far
  finReceived = false;
  private finSeq: number | null = null; // container FIN seen out of order
  private readonly ooo: Array<{ seq: number; data: Buffer }> = [];
  private oooBytes = 0;
  private ackDue = false;
  // timers
  private srtt = 0;
  private rttvar = 0;
  private rto = RTO_INITIAL_MS;
  private retries = 0;
  private rtxAt = Infinity;
  private persistAt = Infinity;
  private timed: { seq: number; at: number } | null = null;
  private lastActivity: number;
  private finAckedAt = Infinity;
  // counters
  retransmits = 0;
  bytesIn = 0;
  bytesOut = 0;

  private constructor(ev: TcpConnEvents, o: TcpConnOptions, state: State, now: number) {
    this.ev = ev;
    this.o = o;
    this.state = state;
    this.iss = o.iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.cwnd = 10 * o.mss; // RFC 6928 initial window
    this.lastActivity = now;
  }

  /** The container's SYN arrived: remember it; answer later with accept() or refuse(). */
  static passive(ev: TcpConnEvents, o: TcpConnOptions, syn: TcpHeader, now: number): TcpConn {
    const c = new TcpConn(ev, o, 'SYN_PENDING', now);
    c.irs = syn.seq;
    c.rcvNxt = seqAdd(syn.seq, 1);
    c.takeSynOptions(syn, syn.window);
    return c;
  }

  /** Opens toward the container (port forward): sends the SYN now. */
  static active(ev: TcpConnEvents, o: TcpConnOptions, now: number): TcpConn {
    const c = new TcpConn(ev, o, 'SYN_SENT', now);
    c.sendSyn(now, false);
    return c;
  }

  private takeSynOptions(h: TcpHeader, window: number): void {
    if (h.options.mss) this.peerMss = Math.max(64, h.options.mss);
    this.sackOk = !!h.options.sackOk;
    if (h.options.wscale !== undefined) {
      this.sndShift = h.options.wscale;
      this.rcvShift = OUR_WSCALE;
    } else {
      this.sndShift = 0;
      this.rcvShift = 0;
    }
    this.sndWnd = window; // SYN windows are never scaled (RFC 7323 section 2.2)
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

  private sendSyn(now: number, withAck: boolean, reply: TcpHeader | null = null): void {
    this.ev.emit({
      seq: this.iss,
      ack: withAck ? this.rcvNxt : 0,
      flags: withAck ? SYN | ACK : SYN,
      window: Math.min(this.o.rcvBufBytes, 0xffff),
      options: this.synOptions(reply),
      payload: [],
      payloadLength: 0,
    });
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.rtxAt = now + this.rto;
  }

  private synReply: TcpHeader | null = null;

  /** SYN_PENDING -> SYN_RCVD: the host side is connected; send SYN-ACK. */
  accept(now: number, syn: TcpHeader): void {
    if (this.state !== 'SYN_PENDING') return;
    this.state = 'SYN_RCVD';
    this.synReply = syn;
    this.rcvEdge = seqAdd(this.rcvNxt, Math.min(this.o.rcvBufBytes, 0xffff));
    this.sendSyn(now, true, syn);
  }

  /** SYN_PENDING -> CLOSED with RST (the host refused or could not be reached). */
  refuse(): void {
    if (this.state !== 'SYN_PENDING') return;
    this.ev.emit({ seq: 0, ack: this.rcvNxt, flags: RST | ACK, window: 0, options: {}, payload: [], payloadLength: 0 });
    this.close('refused');
  }

  private close(reason: CloseReason): void {
    if (this.state === 'CLOSED') return;
    this.state = 'CLOSED';
    this.queue.length = 0;
    this.queued = 0;
    this.ooo.length = 0;
    this.rtxAt = this.persistAt = Infinity;
    this.ev.onClose(reason);
  }

  /** Sends RST and forgets the connection (host socket error, limits, shutdown). */
  abort(): void {
    if (this.state === 'CLOSED') return;
    if (this.state !== 'SYN_PENDING') {
      this.ev.emit({ seq: this.sndNxt, ack: this.rcvNxt, flags: RST | ACK, window: 0, options: {}, payload: [], payloadLength: 0 });
    } else {
      this.ev.emit({ seq: 0, ack: this.rcvNxt, flags: RST | ACK, window: 0, options: {}, payload: [], payloadLength: 0 });
    }
    this.close('aborted');
  }

  /** Queues host bytes for the container (kept by reference: pass a buffer you will not reuse). */
  send(data: Buffer, now: number): void {
    if (this.state === 'CLOSED' || this.finQueued || !data.length) return;
    this.queue.push(data);
    this.queued += data.length;
    this.lastActivity = now;
    if (this.state === 'ESTABLISHED') this.output(now);
  }

  /** The host side finished: send FIN after the queued data. */
  end(now: number): void {
    if (this.state === 'CLOSED' || this.finQueued) return;
    this.finQueued = true;
    if (this.state === 'ESTABLISHED') this.output(now);
  }

  /** Bytes queued toward the container and not yet acked. */
  sendBuffered(): number {
    return this.queued;
  }

  /** The host socket took backlog: advertise the reopened window if it grew enough to matter. */
  windowOpened(now: number): void {
    if (this.state !== 'ESTABLISHED') return;
    const free = this.freeWindow();
    const advertised = seqDiff(this.rcvEdge, this.rcvNxt);
    // Receiver-side silly window avoidance (RFC 9293 section 3.8.6.2.2).
    if (free - advertised >= Math.min(this.o.rcvBufBytes / 2, this.o.mss)) this.sendAck(now);
  }

  private freeWindow(): number {
    return Math.max(0, this.o.rcvBufBytes - this.ev.backlog() - this.oooBytes);
  }

  private windowField(): number {
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
    this.ev.emit({ seq: this.sndNxt, ack: this.rcvNxt, flags: ACK, window: this.windowField(), options: this.sackBlocks() ? { sack: this.sackBlocks() } : {}, payload: [], payloadLength: 0 });
    void now;
  }

  /** Handles one segment from the container. `payload` is a view into the frame. */
  input(h: TcpHeader, payload: Buffer, now: number): void {
    if (this.state === 'CLOSED') return;
    this.lastActivity = now;
    if (this.state === 'SYN_SENT') return this.inputSynSent(h, now);
    if (this.state === 'SYN_PENDING') return; // retransmitted SYN while the host connect runs
    if (h.flags & RST) return this.inputRst(h);
    if (h.flags & SYN) {
      // A retransmitted SYN (our SYN-ACK was lost) gets the SYN-ACK again; any other SYN in a
      // synchronized state gets a challenge ACK (RFC 5961 section 4).
      if (this.state === 'SYN_RCVD' && h.seq === this.irs) this.sendSyn(now, true, this.synReply);
      else this.sendAck(now);
      return;
    }
    if (!(h.flags & ACK)) return;
    if (!this.inputAck(h, payload.length, now)) return;
    if (payload.length || h.flags & FIN) this.inputData(h, payload, now);
    this.output(now);
    this.maybeDone(now);
  }

  private inputSynSent(h: TcpHeader, now: number): void {
    const ackOk = (h.flags & ACK) !== 0 && h.ack === seqAdd(this.iss, 1);
    if (h.flags & RST) {
      if (ackOk) this.close('refused');
      return;
    }
    if (!(h.flags & SYN) || !ackOk) {
      if (h.flags & ACK && !ackOk) this.ev.emit({ seq: h.ack, ack: 0, flags: RST, window: 0, options: {}, payload: [], payloadLength: 0 });
      return;
    }
    this.irs = h.seq;
    this.rcvNxt = seqAdd(h.seq, 1);
    this.takeSynOptions(h, h.window);
    this.sndUna = h.ack;
    this.rtxAt = Infinity;
    this.retries = 0;
    this.state = 'ESTABLISHED';
    this.rcvEdge = this.rcvNxt;
    this.sendAck(now);
    this.ev.onEstablished();
    this.output(now);
  }

  private inputRst(h: TcpHeader): void {
    // RFC 5961 section 3.2: accept only an RST inside the receive window.
    const wnd = Math.max(1, seqDiff(this.rcvEdge, this.rcvNxt));
    if (seqLe(this.rcvNxt, h.seq) && seqLt(h.seq, seqAdd(this.rcvNxt, wnd))) this.close('reset');
  }

  /** ACK processing; false when the segment must be dropped. */
  private inputAck(h: TcpHeader, len: number, now: number): boolean {
    if (seqLt(this.sndMax, h.ack)) {
      this.sendAck(now); // acks data we never sent (RFC 9293 section 3.10.7.4)
      return false;
    }
    if (this.state === 'SYN_RCVD') {
      if (h.ack !== seqAdd(this.iss, 1)) {
        this.ev.emit({ seq: h.ack, ack: 0, flags: RST, window: 0, options: {}, payload: [], payloadLength: 0 });
        return false;
      }
      this.state = 'ESTABLISHED';
      this.sndUna = h.ack;
      this.rtxAt = Infinity;
      this.retries = 0;
      this.sndWnd = h.window * 2 ** this.sndShift;
      this.sndWl1 = h.seq;
      this.sndWl2 = h.ack;
      this.ev.onEstablished();
      return true;
    }
    const acked = seqDiff(h.ack, this.sndUna);
    const window = h.window * 2 ** this.sndShift;
    if (acked > 0) {
      this.onAcked(h.ack, acked, now);
    } else if (acked === 0 && len === 0 && !(h.flags & FIN) && window === this.sndWnd && seqLt(this.sndUna, this.sndMax)) {
      if (++this.dupAcks === 3) this.fastRetransmit(now);
      else if (this.dupAcks > 3) this.cwnd += this.peerMssCapped(); // window inflation (RFC 6582)
    }
    if (seqLt(this.sndWl1, h.seq) || (this.sndWl1 === h.seq && seqLe(this.sndWl2, h.ack))) {
      const opened = window > this.sndWnd;
      this.sndWnd = window;
      this.sndWl1 = h.seq;
      this.sndWl2 = h.ack;
      if (window > 0) this.persistAt = Infinity;
      if (opened) this.retries = 0;
    }
    return true;
  }

  private peerMssCapped(): number {
    return Math.min(this.peerMss, this.o.mss);
  }

  private onAcked(ack: number, acked: number, now: number): void {
    if (this.timed && seqLt(this.timed.seq, ack)) {
      this.sampleRtt(now - this.timed.at);
      this.timed = null;
    }
    // Bytes of data acked: the ACK may also cover our FIN (one sequence number).
    let dataAcked = acked;
    if (this.finSent && ack === seqAdd(this.sndMax, 0) && !this.finAcked) {
      this.finAcked = true;
      this.finAckedAt = now;
      dataAcked -= 1;
    }
    this.consume(Math.min(dataAcked, this.queued));
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
    if (acked > 0) this.ev.onSendSpace();
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
    else if (this.finSent && !this.finAcked) this.emitFin(now);
    this.timed = null; // Karn's rule
    this.retransmits++;
  }

  private inputData(h: TcpHeader, payload: Buffer, now: number): void {
    let seq = h.seq;
    let data = payload;
    let fin = (h.flags & FIN) !== 0;
    if (this.finReceived) {
      if (data.length || fin) this.ackDue = true; // retransmission after their FIN: re-ack
      return;
    }
    // Trim what we already have (RFC 9293 section 3.10.7.4, "first check sequence number").
    const old = seqDiff(this.rcvNxt, seq);
    if (old > 0) {
      if (old >= data.length + (fin ? 1 : 0)) {
        this.ackDue = true; // a duplicate: ack so the sender learns rcvNxt
        return;
      }
      data = data.subarray(Math.min(old, data.length));
      seq = this.rcvNxt;
    }
    // Trim what lies beyond the window we offered.
    const room = seqDiff(this.rcvEdge, seq);
    if (room <= 0 && data.length) {
      this.ackDue = true; // zero-window probe or overrun: answer with our window
      return;
    }
    if (data.length > room) {
      data = data.subarray(0, room);
      fin = false;
    }
    if (seq !== this.rcvNxt) {
      this.holdOutOfOrder(seq, data, fin);
      this.ackDue = true; // duplicate ack (with SACK) tells the sender about the hole
      return;
    }
    if (data.length) {
      this.rcvNxt = seqAdd(this.rcvNxt, data.length);
      this.bytesIn += data.length;
      this.ev.onData(data);
    }
    if (fin) this.finSeq = this.rcvNxt;
    this.drainOutOfOrder();
    if (this.finSeq !== null && this.finSeq === this.rcvNxt) {
      this.rcvNxt = seqAdd(this.rcvNxt, 1);
      this.finReceived = true;
      this.finSeq = null;
      this.ev.onFin();
    }
    this.ackDue = true;
    void now;
  }

  private holdOutOfOrder(seq: number, data: Buffer, fin: boolean): void {
    if (fin) this.finSeq = seqAdd(seq, data.length);
    if (!data.length || this.ooo.length >= MAX_OOO_SEGMENTS) return;
    // Keep a private copy: the frame buffer is reused after this call.
    const copy = Buffer.from(data);
    let i = this.ooo.length;
    while (i > 0 && seqLt(seq, this.ooo[i - 1].seq)) i--;
    this.ooo.splice(i, 0, { seq, data: copy });
    this.oooBytes += copy.length;
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

  /** Sends what the windows allow: new data, then FIN. */
  private output(now: number): void {
    if (this.state !== 'ESTABLISHED') return;
    const mss = this.peerMssCapped();
    for (;;) {
      const inflight = seqDiff(this.sndNxt, this.sndUna);
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
    const inflight = seqDiff(this.sndNxt, this.sndUna);
    if (this.finQueued && !this.finSent && inflight === this.queued) this.emitFin(now);
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

  private emitFin(now: number): void {
    const seq = seqAdd(this.sndUna, this.queued);
    this.ackDue = false;
    this.ev.emit({ seq, ack: this.rcvNxt, flags: FIN | ACK, window: this.windowField(), options: {}, payload: [], payloadLength: 0 });
    this.finSent = true;
    const end = seqAdd(seq, 1);
    if (seqLt(this.sndNxt, end)) this.sndNxt = end;
    if (seqLt(this.sndMax, end)) this.sndMax = end;
    if (this.rtxAt === Infinity) this.rtxAt = now + this.rto;
  }

  private maybeDone(now: number): void {
    if (this.state !== 'ESTABLISHED' || !this.finReceived || !this.finAcked) return;
    if (this.ackDue) this.sendAck(now); // their FIN's ACK goes out before we forget the flow
    this.close('done');
  }

  /** Sends a pending ACK now (the stack calls this once per received batch). */
  flush(now: number): void {
    if (this.state !== 'CLOSED' && this.ackDue) this.sendAck(now);
  }

  /** The next time poll() has work: retransmission, persist probe, or expiry. */
  pollAt(): number {
    if (this.state === 'CLOSED') return Infinity;
    const idle = this.lastActivity + (this.state === 'ESTABLISHED' ? this.o.idleMs : Math.max(this.o.idleMs, 0));
    const finWait = this.finAcked && !this.finReceived ? this.finAckedAt + this.o.finTimeoutMs : Infinity;
    return Math.min(this.rtxAt, this.persistAt, idle, finWait);
  }

  /** Acts on due timers. */
  poll(now: number): void {
    if (this.state === 'CLOSED') return;
    if (this.finAcked && !this.finReceived && now >= this.finAckedAt + this.o.finTimeoutMs) return this.expire('timeout');
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
    this.ev.emit({ seq: this.sndNxt, ack: this.rcvNxt, flags: RST | ACK, window: 0, options: {}, payload: [], payloadLength: 0 });
    this.close(reason);
  }

  private onRetransmitTimeout(now: number): void {
    this.retries++;
    const synState = this.state === 'SYN_SENT' || this.state === 'SYN_RCVD';
    if (this.retries > (synState ? MAX_SYN_RETRIES : MAX_RETRIES)) return this.expire('timeout');
    this.rto = Math.min(RTO_MAX_MS, this.rto * 2); // RFC 6298 section 5.5
    this.timed = null;
    this.retransmits++;
    if (this.state === 'SYN_SENT') return this.sendSyn(now, false);
    if (this.state === 'SYN_RCVD') return this.sendSyn(now, true, this.synReply);
    // Go-back-N from the first unacked byte (RFC 5681 section 3.1 on timeout).
    const inflight = seqDiff(this.sndMax, this.sndUna);
    this.ssthresh = Math.max(Math.floor(inflight / 2), 2 * this.peerMssCapped());
    this.cwnd = this.peerMssCapped();
    this.dupAcks = 0;
    this.sndNxt = this.sndUna;
    this.rtxAt = Infinity;
    if (this.finSent && !this.finAcked && this.queued === 0) {
      this.emitFin(now);
      return;
    }
    this.finSent = false;
    this.output(now);
    if (this.rtxAt === Infinity && seqLt(this.sndUna, this.sndMax)) this.rtxAt = now + this.rto;
  }

  /** Diagnostic snapshot. */
  info(): Record<string, number | string | boolean> {
    return { state: this.state, sndUna: this.sndUna, sndNxt: this.sndNxt, sndWnd: this.sndWnd, cwnd: this.cwnd, rto: this.rto, srtt: this.srtt, queued: this.queued, rcvNxt: this.rcvNxt, ooo: this.ooo.length, retransmits: this.retransmits };
  }
}
