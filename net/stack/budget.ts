/**
 * The stack's budgets: what one container may hold of the host, counted in one place.
 *
 * Theory of operation
 * -------------------
 * Every resource a flow takes is taken through a {@link Ticket} and given back through it, once:
 *  - flows, by kind: `outbound` (the container opened them: TCP, UDP, echo) and `inbound` (a
 *    port forward opened them toward the container), so forwarded traffic can never use up the
 *    flows the container needs for itself (a UDP flood through `-p` once did);
 *  - inbound flows per client (an IPv4 address, or an IPv6 /64, since a host owns a whole /64),
 *    so one remote cannot take all the inbound flows either;
 *  - half-open TCP handshakes, by kind;
 *  - host sockets (file descriptors), for every flow that holds one; the port forwarder's
 *    spliced connections take their two from the same count;
 *  - buffered bytes ({@link BufferBudget}), shared by every flow.
 * A flow's ticket records what it took; releasing the ticket returns exactly that, and releasing
 * twice is harmless, so no path that removes a flow can leak a count.
 *
 * Buffered bytes are the memory the stack itself holds: data from the container that its host
 * peer has not taken yet, out-of-order segments, and host data not yet acked by the container
 * (the retransmission queue). The kernel bounds such memory with tcp_mem; this is our tcp_mem.
 * Each flow may always hold `floorBytes` (so no flow starves while others hog the budget);
 * beyond that a flow grows only while the shared total is under `limitBytes`. A full budget
 * shrinks the windows the stack offers (it never moves an offered right edge back), makes the
 * stack drop new out-of-order segments first, then in-order segments that do not fit (the
 * container retransmits them), and pauses host sockets whose data the container has not taken.
 * It never fails a flow and never stops the stack.
 */

export type FlowKind = 'outbound' | 'inbound';

export interface BudgetLimits {
  /** Flows the container opened (TCP, UDP and echo together). */
  maxOutboundFlows: number;
  /** Flows port forwards opened toward the container. */
  maxInboundFlows: number;
  /** Inbound flows from one client (IPv4 address or IPv6 /64). */
  maxInboundPerClient: number;
  /** TCP handshakes in progress the container started (a SYN backlog). */
  maxHalfOpenOutbound: number;
  /** TCP handshakes in progress toward the container. */
  maxHalfOpenInbound: number;
  /** Host sockets (fds) at once; keep it well below RLIMIT_NOFILE. */
  maxHostSockets: number;
  /** Bytes buffered by all flows together. */
  bufferBytes: number;
  /** Bytes any one flow may buffer whatever the others hold. */
  bufferFloorBytes: number;
}

export const DEFAULT_BUDGET: BudgetLimits = {
  maxOutboundFlows: 4096,
  maxInboundFlows: 1024,
  maxInboundPerClient: 128,
  maxHalfOpenOutbound: 256,
  maxHalfOpenInbound: 128,
  maxHostSockets: 2048,
  bufferBytes: 64 << 20,
  bufferFloorBytes: 16 << 10,
};

/** What one flow holds; given back with {@link Budgets.release}. */
export interface Ticket {
  readonly kind: FlowKind;
  /** Inbound only: the client's key (address or /64). */
  readonly client: string | null;
  flow: boolean;
  halfOpen: boolean;
  hostSockets: number;
}

/** The reason a budget refused, as counted in the stack's stats. */
export type Refusal = 'outbound-flow-limit' | 'inbound-flow-limit' | 'inbound-client-limit' | 'half-open-limit' | 'host-socket-limit';

/**
 * The shared byte budget. Flows charge what they hold (`adjust`) and ask `room(own)` before
 * they take more; `own` is what the asking flow holds already.
 */
export class BufferBudget {
  used = 0;
  /** Most ever held at once (for tests and stats). */
  peak = 0;

  constructor(readonly limitBytes: number, readonly floorBytes: number) {}

  /** Adds `delta` (negative to give back) to the total. */
  adjust(delta: number): void {
    this.used += delta;
    if (this.used > this.peak) this.peak = this.used;
  }

  /** Bytes a flow that holds `own` may add now. */
  room(own: number): number {
    return Math.max(0, this.limitBytes - this.used, this.floorBytes - own);
  }

  /** True when the total is past the point where out-of-order data is no longer kept. */
  tight(add: number): boolean {
    return this.used + add > (this.limitBytes * 3) / 4;
  }

  /** True when a flow holding `own` must stop taking more (its host socket pauses). */
  full(own: number): boolean {
    return this.used >= this.limitBytes && own >= this.floorBytes;
  }

  /** True when enough was given back for paused and throttled flows to go on. */
  relieved(): boolean {
    return this.used < (this.limitBytes * 7) / 8;
  }
}

/** Counts for every budget but bytes, which {@link BufferBudget} keeps. */
export class Budgets {
  readonly limits: BudgetLimits;
  readonly bytes: BufferBudget;
  private readonly flows = { outbound: 0, inbound: 0 };
  private readonly halfOpen = { outbound: 0, inbound: 0 };
  private readonly perClient = new Map<string, number>();
  private sockets = 0;

  constructor(limits: Partial<BudgetLimits> = {}) {
    this.limits = { ...DEFAULT_BUDGET, ...limits };
    this.bytes = new BufferBudget(this.limits.bufferBytes, this.limits.bufferFloorBytes);
  }

  /** A snapshot of every count (diagnostics, tests). */
  usage(): { outbound: number; inbound: number; halfOpenOutbound: number; halfOpenInbound: number; clients: number; hostSockets: number; bufferedBytes: number } {
    return { outbound: this.flows.outbound, inbound: this.flows.inbound, halfOpenOutbound: this.halfOpen.outbound, halfOpenInbound: this.halfOpen.inbound, clients: this.perClient.size, hostSockets: this.sockets, bufferedBytes: this.bytes.used };
  }

  /** Inbound flows `client` holds. */
  clientFlows(client: string): number {
    return this.perClient.get(client) ?? 0;
  }

  /** Free host sockets. */
  hostSocketsFree(): number {
    return this.limits.maxHostSockets - this.sockets;
  }

  /**
   * Opens a ticket for a new flow: one flow of `kind` (and of `client`, inbound), plus a
   * half-open handshake and `hostSockets` sockets when asked. All or nothing: returns the
   * refusal when any part does not fit.
   */
  open(kind: FlowKind, client: string | null, need: { halfOpen?: boolean; hostSockets?: number }): Ticket | Refusal {
    const l = this.limits;
    if (kind === 'outbound' && this.flows.outbound >= l.maxOutboundFlows) return 'outbound-flow-limit';
    if (kind === 'inbound' && this.flows.inbound >= l.maxInboundFlows) return 'inbound-flow-limit';
    if (kind === 'inbound' && client !== null && (this.perClient.get(client) ?? 0) >= l.maxInboundPerClient) return 'inbound-client-limit';
    if (need.halfOpen && this.halfOpen[kind] >= (kind === 'outbound' ? l.maxHalfOpenOutbound : l.maxHalfOpenInbound)) return 'half-open-limit';
    const sockets = need.hostSockets ?? 0;
    if (sockets && this.sockets + sockets > l.maxHostSockets) return 'host-socket-limit';
    this.flows[kind]++;
    if (kind === 'inbound' && client !== null) this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    if (need.halfOpen) this.halfOpen[kind]++;
    this.sockets += sockets;
    return { kind, client: kind === 'inbound' ? client : null, flow: true, halfOpen: !!need.halfOpen, hostSockets: sockets };
  }

  /** The handshake of the ticket's flow completed (or failed): it no longer counts as half-open. */
  handshakeDone(t: Ticket): void {
    if (!t.halfOpen) return;
    t.halfOpen = false;
    this.halfOpen[t.kind]--;
  }

  /** Takes `n` host sockets outside any flow (spliced forwards); false when they do not fit. */
  takeHostSockets(n: number): boolean {
    if (this.sockets + n > this.limits.maxHostSockets) return false;
    this.sockets += n;
    return true;
  }

  giveHostSockets(n: number): void {
    this.sockets -= n;
  }

  /** Gives back everything the ticket holds; a second call does nothing. */
  release(t: Ticket): void {
    this.handshakeDone(t);
    if (t.hostSockets) {
      this.sockets -= t.hostSockets;
      t.hostSockets = 0;
    }
    if (!t.flow) return;
    t.flow = false;
    this.flows[t.kind]--;
    if (t.client !== null) {
      const n = (this.perClient.get(t.client) ?? 1) - 1;
      if (n > 0) this.perClient.set(t.client, n);
      else this.perClient.delete(t.client);
    }
  }
}

/** The per-client key of an inbound flow: the IPv4 address, or the /64 of an IPv6 address. */
export function clientKey(addr: Uint8Array): string {
  const n = addr.length === 16 ? 8 : 4;
  let s = addr.length === 16 ? '6:' : '4:';
  for (let i = 0; i < n; i++) s += addr[i].toString(16).padStart(2, '0');
  return s;
}
