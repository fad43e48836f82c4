/**
 * One DHCP lease's state machine (RFC 2131 section 4.4), pure: time comes in as an argument (ms),
 * randomness through `rand`, and each step says what to send and when to be called again.
 *
 *   selecting -> requesting -> bound -(T1)-> renewing -(T2)-> rebinding -(lease end)-> expired
 *
 * Acquisition (selecting, requesting) resends with the reference's backoff (2 s +-1 s four times,
 * then 4 s doubling up to `resendMaxMs`) and fails when `acquireTimeoutMs` is spent, with a message
 * that says what was and was not heard. Renewing unicasts nothing: every message goes to the link's
 * broadcast address as the reference sends them, a REQUEST with ciaddr (RFC 2131 section 4.3.6, as
 * the reference does since 1.6), resent at half the time left to T2 (at least `minResendMs`);
 * rebinding starts a new DISCOVER for the same address, as the reference does; at the lease's end
 * the lease is expired and the driver takes the link down. A NAK while acquiring starts over (at
 * most three times); a NAK while renewing or rebinding ends the lease at once.
 */
import { DISCOVER, RELEASE, REQUEST } from '../../net/wire/dhcp.js';
import { ACK, leaseOf, NAK, OFFER, type ClientMessage, type Lease, type ServerReply } from '../../net/wire/dhcp_client.js';
import * as ipv4 from '../../net/wire/ipv4.js';

export type LeaseState = 'selecting' | 'requesting' | 'bound' | 'renewing' | 'rebinding' | 'expired' | 'failed' | 'released';

export interface LeaseOptions {
  chaddr: Buffer;
  clientId: Buffer;
  /** Option 55's codes. */
  paramRequest: number[];
  /** Options sent with DISCOVER and REQUEST (the netconf's `provide`). */
  provide: Array<[number, Buffer]>;
  broadcast: boolean;
  /** Wait for a reply per try (the reference's -timeout), and the backoff ceiling (-resendmax). */
  replyTimeoutMs: number;
  resendMaxMs: number;
  /** The whole budget of an acquisition: a clear error after it (the reference's was 208 s). */
  acquireTimeoutMs: number;
  minResendMs?: number;
  rand?: () => number;
}

export interface Step {
  send?: ClientMessage;
  /** What happened, for the driver and the log. */
  event?: 'bound' | 'renewed' | 'rebound' | 'nak' | 'expired' | 'failed';
  error?: string;
}

/** What the daemon keeps on disk to take a lease up again after a restart. */
export interface LeaseSnapshot {
  state: LeaseState;
  lease?: Lease;
  boundAt?: number;
}

export class LeaseMachine {
  state: LeaseState = 'selecting';
  lease?: Lease;
  /** When the current lease was granted (ms). */
  boundAt = 0;
  /** When to call {@link tick} next (ms), Infinity when nothing is due. */
  deadline = Infinity;
  /** Replies dropped as not ours or malformed. */
  ignored = 0;
  private xid = 0;
  private tries = 0;
  private naks = 0;
  private startedAt = 0;
  private offer?: { address: Buffer; serverId: Buffer };
  private heard: string[] = [];
  private readonly rand: () => number;

  constructor(private readonly o: LeaseOptions) {
    this.rand = o.rand ?? Math.random;
  }

  /** Starts an acquisition at `now`: the first DISCOVER. */
  start(now: number): Step {
    this.startedAt = now;
    this.heard = [];
    this.naks = 0;
    return this.discover(now, 'selecting');
  }

  /** Takes a snapshot back (daemon restart): resumes at the phase `now` falls in. */
  restore(s: LeaseSnapshot, now: number): Step {
    if (!s.lease || s.boundAt === undefined || (s.state !== 'bound' && s.state !== 'renewing' && s.state !== 'rebinding')) {
      this.state = 'expired';
      return { event: 'expired' };
    }
    this.lease = s.lease;
    this.boundAt = s.boundAt;
    this.state = 'bound';
    this.deadline = this.at('t1');
    return this.tick(now);
  }

  snapshot(): LeaseSnapshot {
    return { state: this.state, lease: this.lease, boundAt: this.lease ? this.boundAt : undefined };
  }

  private at(which: 't1' | 't2' | 'end'): number {
    const l = this.lease!;
    return this.boundAt + 1000 * (which === 't1' ? l.t1S : which === 't2' ? l.t2S : l.leaseS);
  }

  private backoff(): number {
    // the reference's backoffRetry: 2 s +-1 s for four tries, then 4 s doubling up to resendmax
    const base = this.tries <= 4 ? 2000 : Math.min(this.o.resendMaxMs, 4000 * 2 ** (this.tries - 5));
    const jitter = this.tries <= 4 ? (this.rand() * 2 - 1) * 1000 : 0;
    return Math.min(this.o.replyTimeoutMs, Math.max(500, base + jitter));
  }

  private newXid(): void {
    this.xid = Math.floor(this.rand() * 0x100000000) >>> 0;
  }

  private message(type: number, extra: Partial<ClientMessage>): ClientMessage {
    const acquiring = type === DISCOVER || (type === REQUEST && !extra.ciaddr);
    return {
      // Without an address the client asks for broadcast replies: a unicast OFFER to an address
      // nobody holds yet waits on the server's ARP (measured: 3 s per try against dnsmasq)
      type, xid: this.xid, chaddr: this.o.chaddr, clientId: this.o.clientId, broadcast: this.o.broadcast || !extra.ciaddr,
      paramRequest: type === RELEASE ? undefined : this.o.paramRequest,
      options: acquiring || type === REQUEST ? this.o.provide : undefined,
      ...extra,
    };
  }

  private discover(now: number, state: 'selecting' | 'rebinding'): Step {
    this.state = state;
    this.newXid();
    this.tries = 1;
    this.offer = undefined;
    const bound = state === 'rebinding' && this.lease ? ipv4.parseAddr(this.lease.address)! : undefined;
    this.deadline = this.limit(now + this.backoff());
    return { send: this.message(DISCOVER, bound ? { requestedIp: bound } : {}) };
  }

  /** The end of the acquisition budget, or the lease's end while rebinding. */
  private limit(t: number): number {
    const hard = this.state === 'rebinding' ? this.at('end') : this.state === 'selecting' || this.state === 'requesting' ? this.startedAt + this.o.acquireTimeoutMs : Infinity;
    return Math.min(t, hard);
  }

  private request(now: number): ClientMessage {
    if (this.state === 'renewing') return this.message(REQUEST, { ciaddr: ipv4.parseAddr(this.lease!.address)! });
    return this.message(REQUEST, { requestedIp: this.offer!.address, serverId: this.offer!.serverId, secs: Math.floor((now - this.startedAt) / 1000) });
  }

  /** A reply from the link; anything not for this exchange is ignored (and counted). */
  receive(r: ServerReply, now: number): Step {
    if (r.xid !== this.xid || !r.chaddr.subarray(0, 6).equals(this.o.chaddr.subarray(0, 6))) {
      this.ignored++;
      return {};
    }
    const sid = r.options.get(54);
    if (r.type === OFFER && (this.state === 'selecting' || this.state === 'rebinding')) {
      if (!sid || sid.length !== 4 || r.yiaddr.readUInt32BE(0) === 0) {
        this.ignored++;
        this.heard.push('an OFFER without an address or server id');
        return {};
      }
      if (this.state === 'selecting') this.state = 'requesting';
      this.offer = { address: r.yiaddr, serverId: sid };
      this.tries = 1;
      this.deadline = this.limit(now + this.backoff());
      return { send: this.request(now) };
    }
    const waiting = this.state === 'requesting' || this.state === 'renewing' || (this.state === 'rebinding' && this.offer);
    if (!waiting) {
      this.ignored++;
      return {};
    }
    if (r.type === NAK) {
      if (this.state === 'requesting') {
        this.heard.push(`a NAK from ${sid?.length === 4 ? ipv4.formatAddr(sid) : 'the server'}`);
        if (++this.naks >= 3) return this.fail('the DHCP server refused the offered address three times (DHCPNAK)');
        return { ...this.discover(now, 'selecting'), event: 'nak' };
      }
      this.state = 'expired';
      this.deadline = Infinity;
      return { event: 'nak', error: 'the DHCP server refused to extend the lease (DHCPNAK)' };
    }
    if (r.type !== ACK) {
      this.ignored++;
      return {};
    }
    const lease = leaseOf(r);
    if (typeof lease === 'string') {
      if (this.state === 'requesting') return this.fail(lease);
      this.ignored++;
      this.heard.push(lease);
      return {};
    }
    const was = this.state;
    this.lease = lease;
    this.boundAt = now;
    this.state = 'bound';
    this.deadline = this.at('t1');
    return { event: was === 'requesting' ? 'bound' : was === 'renewing' ? 'renewed' : 'rebound' };
  }

  private fail(error: string): Step {
    this.state = 'failed';
    this.deadline = Infinity;
    return { event: 'failed', error };
  }

  /** Called at {@link deadline}: resends, or moves to the next phase. */
  tick(now: number): Step {
    if (now < this.deadline) return {};
    switch (this.state) {
      case 'selecting':
      case 'requesting': {
        if (now >= this.startedAt + this.o.acquireTimeoutMs) {
          const what = this.state === 'selecting' ? 'no DHCPOFFER' : 'no DHCPACK to the REQUEST';
          const heard = this.heard.length ? ` (heard: ${[...new Set(this.heard)].join(', ')})` : '';
          return this.fail(`${what} within ${Math.round(this.o.acquireTimeoutMs / 1000)} s after ${this.tries} tries${heard}`);
        }
        this.tries++;
        this.deadline = this.limit(now + this.backoff());
        return { send: this.state === 'selecting' ? this.message(DISCOVER, {}) : this.request(now) };
      }
      case 'bound':
        if (now >= this.at('end')) return this.expire();
        if (now >= this.at('t2')) return this.discover(now, 'rebinding');
        this.state = 'renewing';
        this.newXid();
        this.deadline = this.resendRenew(now);
        return { send: this.request(now) };
      case 'renewing':
        if (now >= this.at('end')) return this.expire();
        if (now >= this.at('t2')) return this.discover(now, 'rebinding');
        this.deadline = this.resendRenew(now);
        return { send: this.request(now) };
      case 'rebinding': {
        if (now >= this.at('end')) return this.expire();
        // a DISCOVER again, or the REQUEST for the offer again
        this.tries++;
        this.deadline = this.limit(now + this.backoff());
        return { send: this.offer ? this.message(REQUEST, { requestedIp: this.offer.address, serverId: this.offer.serverId }) : this.message(DISCOVER, { requestedIp: ipv4.parseAddr(this.lease!.address)! }) };
      }
      default:
        this.deadline = Infinity;
        return {};
    }
  }

  private resendRenew(now: number): number {
    return Math.min(this.at('t2'), now + Math.max(this.o.minResendMs ?? 1000, (this.at('t2') - now) / 2));
  }

  private expire(): Step {
    this.state = 'expired';
    this.deadline = Infinity;
    return { event: 'expired', error: 'the DHCP lease expired without being renewed' };
  }

  /** The RELEASE to send (DEL), when a lease is held; the machine stops. */
  release(): ClientMessage | null {
    const had = this.lease && (this.state === 'bound' || this.state === 'renewing' || this.state === 'rebinding');
    this.state = 'released';
    this.deadline = Infinity;
    if (!had) return null;
    this.newXid();
    return { type: RELEASE, xid: this.xid, chaddr: this.o.chaddr, clientId: this.o.clientId, ciaddr: ipv4.parseAddr(this.lease!.address)!, serverId: ipv4.parseAddr(this.lease!.serverId)! };
  }
}
