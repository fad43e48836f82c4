/**
 * burrow's userspace network stack: the container's default gateway, answering on its TAP.
 *
 * Theory of operation
 * -------------------
 * Frames from the container's TAP (each prefixed by a virtio-net header) go to `receive(frame,
 * now)`. The stack plays every host the container talks to:
 *  - L2/L3 services (services.ts): ARP, IPv6 neighbor and router discovery, DHCPv4, echo for
 *    our own addresses;
 *  - UDP: each (container address/port, destination address/port) is a flow with a connected
 *    host datagram socket; replies come back as frames. DNS to the DNS address goes to the
 *    host's nameserver (which may be 127.0.0.x: the host side sends it, podman#22044);
 *  - ICMP/ICMPv6 echo to other hosts: one unprivileged ping socket per (destination, identifier);
 *  - TCP: each connection is a {@link TcpConn} toward the container joined to a host socket.
 *    Outbound, the host connect completes before the SYN-ACK, so a refused connect is an RST
 *    and an unreachable one an ICMP unreachable. Inbound (port forwards, `acceptInbound`,
 *    `forwardUdp`), the client's real address is the source the container sees.
 * Where each packet may go is decided in one place, policy.ts. A host socket that fails (no
 * route, host unreachable, port unreachable on UDP) is answered with ICMP destination
 * unreachable quoting the container's packet, as a router would (and as slirp4netns does), at
 * most `icmpErrorsPerSecond`; the flow is dropped and every other flow carries on.
 *
 * Every entry into the stack runs under one guard: a frame from the TAP, each host socket and
 * ping socket callback, the timers, and the port forwards' entry points. A throw inside is a
 * bug, never bad input: it is counted (`internal-error`), the flow it happened on is reset, and
 * nothing escapes to the event loop (one bad datagram once stopped the whole stack).
 *
 * Budgets (budget.ts): every flow takes a {@link Ticket} when it opens and gives it back when it
 * goes, through `dropFlow` only. Container-initiated and forwarded flows have separate budgets,
 * forwarded ones a per-client budget too, half-open handshakes and host sockets are counted, and
 * all buffered bytes share one {@link BufferBudget}. When host sockets run out, UDP and echo
 * flows idle for `reclaimIdleMs` and handshakes older than `reclaimHandshakeMs` are reclaimed
 * first; when forwarded UDP flows run out, the oldest that the container never answered goes
 * first (as conntrack's early drop). A full budget refuses new flows (TCP: RST; UDP: dropped)
 * and is counted; it never fails an existing flow.
 *
 * Checksums: frames from the container that the kernel marked NEEDS_CSUM (partial: the kernel
 * built them and offloaded the sum to us) or DATA_VALID are trusted without summing the payload;
 * others (small frames, or raw frames a container forges) are verified and dropped when wrong.
 * Frames to the container are built by emit.ts, sized from their contents, never over the MTU.
 *
 * Time: every entry point takes `now` (ms). `pollAt()` is the next deadline over all flows and
 * `poll(now)` runs what is due; the driver keeps one timer.
 */
import { finish, pseudo4, pseudo6, sum16 } from '../wire/checksum.js';
import * as eth from '../wire/ethernet.js';
import * as icmp from '../wire/icmp.js';
import * as icmpv6 from '../wire/icmpv6.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import * as vnet from '../wire/vnet.js';
import { Budgets, clientKey, DEFAULT_BUDGET, type BudgetLimits, type FlowKind, type Refusal, type Ticket } from './budget.js';
import { Emitter, type LinkSend } from './emit.js';
import type { HostPing, HostSockets, HostTcp, HostTcpHandlers, HostUdp } from './host.js';
import { isDhcpRequest, plausibleSource, routeFromContainer, visibleSource, type PolicyConfig, type Route } from './policy.js';
import { Services } from './services.js';
import { TcpConn, type CloseReason, type OutSegment } from './tcp_conn.js';

export type { LinkSend } from './emit.js';

export interface StackConfig extends PolicyConfig {
  /** Link MTU of the container's TAP. */
  mtu: number;
  /** Our MAC: the gateway's, as the container sees it. */
  mac: Buffer;
  limits?: Partial<StackLimits>;
  /** 32-bit random numbers for initial sequence numbers and DHCP. */
  random?: () => number;
  /** Sees every counted event (drops, closes, faults) as it is counted: the driver's debug log. */
  onCount?: (reason: string, detail?: string) => void;
  /** Runs after every host socket event (the driver re-arms its timer). */
  onEntry?: () => void;
}

export interface StackLimits extends BudgetLimits {
  tcpRcvBufBytes: number;
  tcpSndBufBytes: number;
  tcpIdleMs: number;
  udpIdleMs: number;
  /** Under host-socket pressure, container UDP and echo flows idle this long are reclaimed. */
  reclaimIdleMs: number;
  /** Under host-socket pressure, handshakes older than this are reclaimed. */
  reclaimHandshakeMs: number;
  /** ICMP errors (unreachable) sent to the container per second (Linux: icmp_msgs_per_sec). */
  icmpErrorsPerSecond: number;
}

export const DEFAULT_LIMITS: StackLimits = {
  ...DEFAULT_BUDGET,
  tcpRcvBufBytes: 4 << 20,
  tcpSndBufBytes: 4 << 20,
  tcpIdleMs: 7_200_000, // pasta's ACT_TIMEOUT
  udpIdleMs: 30_000, // nf_conntrack_udp_timeout
  reclaimIdleMs: 2_000,
  reclaimHandshakeMs: 3_000,
  icmpErrorsPerSecond: 1000,
};

const ICMP_BURST = 50; // Linux's icmp_msgs_burst
/** Echo flows idle this long are closed (pasta uses 60 s too). */
const PING_IDLE_MS = 60_000;
/** Bytes of the container's packet an ICMP error quotes: the IP header, the L4 header and a little data. */
const QUOTE_BYTES = 96;
/** At most one reclaim scan per this many ms (a flood must not make every packet scan). */
const RECLAIM_EVERY_MS = 100;

/** What happens to the host socket when a TCP flow closes, for every reason (the only orderly end is `done`). */
const HOST_CLOSE: Readonly<Record<CloseReason, 'end' | 'reset'>> = {
  done: 'end', reset: 'reset', refused: 'reset', unreachable: 'reset', timeout: 'reset', idle: 'reset', aborted: 'reset', internal: 'reset',
};

/** ICMP destination-unreachable codes for host socket errors; others get no ICMP. */
const UNREACH: Readonly<Record<string, { v4: number; v6: number }>> = {
  ENETUNREACH: { v4: icmp.UNREACH_NET, v6: icmpv6.UNREACH_NO_ROUTE },
  EHOSTUNREACH: { v4: icmp.UNREACH_HOST, v6: icmpv6.UNREACH_ADDRESS },
  EHOSTDOWN: { v4: icmp.UNREACH_HOST, v6: icmpv6.UNREACH_ADDRESS },
  EADDRNOTAVAIL: { v4: icmp.UNREACH_HOST, v6: icmpv6.UNREACH_ADDRESS },
  EACCES: { v4: icmp.UNREACH_ADMIN, v6: icmpv6.UNREACH_PROHIBITED },
  EPERM: { v4: icmp.UNREACH_ADMIN, v6: icmpv6.UNREACH_PROHIBITED },
  ECONNREFUSED: { v4: icmp.UNREACH_PORT, v6: icmpv6.UNREACH_PORT }, // UDP only: TCP gets an RST
};

interface FlowBase {
  key: string;
  family: 4 | 6;
  ticket: Ticket;
  /** Addresses/ports as the container sees them: ours (the remote end) and the container's. */
  ourAddr: Buffer;
  ourPort: number;
  guestAddr: Buffer;
  guestPort: number;
  inbound: boolean;
}

interface TcpFlow extends FlowBase {
  kind: 'tcp';
  conn: TcpConn;
  host: HostTcp | null;
  hostPaused: boolean;
  openedAt: number;
  /** The container's SYN (IP header on), for an ICMP error. */
  quote: Buffer | null;
}

interface UdpFlow extends FlowBase {
  kind: 'udp';
  /** Replies toward the host side: a connected socket (outbound) or the forward's listener. */
  send: (data: Buffer) => void;
  close: () => void;
  lastActive: number;
  /** Inbound: the container answered (an unanswered flow is the first to go when budgets are full). */
  assured: boolean;
  /** The start of the container's last datagram, for an ICMP error. */
  quote: Buffer;
  quoteLen: number;
}

interface PingFlow {
  kind: 'ping';
  key: string;
  family: 4 | 6;
  ticket: Ticket;
  remote: Buffer;
  guestAddr: Buffer;
  /** The container's echo identifier (the host socket's differs: the kernel owns it). */
  id: number;
  sock: HostPing | null;
  lastActive: number;
  /** The container's last request (IP header on), for an ICMP error. */
  quote: Buffer;
  quoteLen: number;
}

type Flow = TcpFlow | UdpFlow | PingFlow;

export interface StackStats {
  [reason: string]: number;
}

export class Stack {
  readonly stats: StackStats = {};
  /** The last internal error caught by the guard (for diagnostics). */
  lastError: unknown = null;
  readonly budgets: Budgets;
  private readonly c: StackConfig;
  private readonly limits: StackLimits;
  private readonly out: Emitter;
  private readonly services: Services;
  private readonly host: HostSockets;
  private readonly random: () => number;
  private readonly tcpFlows = new Map<string, TcpFlow>();
  private readonly udpFlows = new Map<string, UdpFlow>();
  private readonly pingFlows = new Map<string, PingFlow>();
  /** Inbound UDP flows the container has not answered, oldest first (all, and by client). */
  private readonly unassured = new Map<string, UdpFlow>();
  private readonly unassuredByClient = new Map<string, Map<string, UdpFlow>>();
  private readonly mss4: number;
  private readonly mss6: number;
  /** The flow the current entry is working on: the guard resets it on a throw. */
  private current: Flow | null = null;
  private nextReclaimAt = -Infinity;
  private icmpTokens = ICMP_BURST;
  private icmpAt = 0;
  /** Some flow was throttled or paused by the byte budget since the last relief. */
  private pressure = false;

  constructor(c: StackConfig, send: LinkSend, host: HostSockets) {
    this.c = c;
    this.limits = { ...DEFAULT_LIMITS, ...c.limits };
    this.budgets = new Budgets(this.limits);
    this.host = host;
    this.random = c.random ?? (() => Math.floor(Math.random() * 0x100000000));
    this.out = new Emitter(c.mtu, c.mac, send, (r) => this.count(r));
    this.services = new Services(c, this.out, (r) => this.count(r));
    this.mss4 = c.mtu - ipv4.IPV4_HDR_LEN - tcp.TCP_HDR_LEN;
    this.mss6 = c.mtu - ipv6.IPV6_HDR_LEN - tcp.TCP_HDR_LEN;
  }

  private count(reason: string, detail?: string): void {
    this.stats[reason] = (this.stats[reason] ?? 0) + 1;
    try {
      this.c.onCount?.(reason, detail);
    } catch {
      // a broken log must not break the stack (fault() counts through here too)
    }
  }

  /** Number of live flows by protocol. */
  flowCount(): { tcp: number; udp: number; ping: number; halfOpen: number } {
    const u = this.budgets.usage();
    return { tcp: this.tcpFlows.size, udp: this.udpFlows.size, ping: this.pingFlows.size, halfOpen: u.halfOpenOutbound + u.halfOpenInbound };
  }

  // ---- the guard -----------------------------------------------------------------------------

  /**
   * A throw inside the stack is a bug: count it, reset the flow it was working on, and go on.
   * Never throws itself.
   */
  private fault(flow: Flow | null, err: unknown): void {
    this.lastError = err;
    this.count('internal-error', err instanceof Error ? err.stack?.split('\n').slice(0, 3).join(' | ') : String(err));
    if (!flow) return;
    try {
      if (flow.kind === 'tcp') flow.conn.reset('internal');
      this.dropFlow(flow);
    } catch (again) {
      this.lastError = again;
      this.forget(flow);
    }
  }

  /** Removes a flow from every table and gives back its ticket, whatever state it is in; never throws. */
  private forget(flow: Flow): void {
    const table: Map<string, Flow> = flow.kind === 'tcp' ? this.tcpFlows : flow.kind === 'udp' ? this.udpFlows : this.pingFlows;
    if (table.get(flow.key) === flow) table.delete(flow.key);
    if (flow.kind === 'udp') this.unassure(flow);
    this.budgets.release(flow.ticket);
    try {
      if (flow.kind === 'tcp') {
        flow.conn?.dispose();
        const h = flow.host;
        flow.host = null;
        h?.destroy(true);
      } else if (flow.kind === 'udp') flow.close();
      else flow.sock?.close();
    } catch {
      // the host socket is gone already
    }
  }

  /** Runs `fn` as an entry for `flow` (null: none yet) under the guard. */
  private enter(flow: Flow | null, fn: () => void): void {
    const outer = this.current;
    this.current = flow;
    try {
      fn();
    } catch (err) {
      this.fault(this.current, err);
    } finally {
      this.current = outer;
    }
  }

  /** Wraps a host event handler: it runs under the guard for `flow`, then tells the driver. */
  private hostEvent<A extends unknown[]>(flow: Flow, fn: (...a: A) => void): (...a: A) => void {
    return (...a: A) => {
      this.enter(flow, () => fn(...a));
      try {
        this.c.onEntry?.();
      } catch (err) {
        this.fault(null, err);
      }
    };
  }

  // ---- receive path --------------------------------------------------------------------------

  /** One frame from the TAP, virtio-net header first. Never throws. */
  receive(frame: Buffer, now: number): void {
    this.enter(null, () => this.receiveFrame(frame, now));
  }

  private receiveFrame(frame: Buffer, now: number): void {
    if (vnet.check(frame)) return this.count('truncated-vnet');
    const trusted = (frame[0] & (vnet.F_NEEDS_CSUM | vnet.F_DATA_VALID)) !== 0 || frame[1] !== vnet.GSO_NONE;
    const f = frame.subarray(vnet.VNET_HDR_LEN);
    if (eth.check(f)) return this.count('truncated-ethernet');
    const type = eth.etherType(f);
    const l3 = f.subarray(eth.ETH_HDR_LEN);
    if (type === eth.ETHERTYPE_ARP) {
      this.learn(f);
      return this.services.arp(l3);
    }
    if (type === eth.ETHERTYPE_IPV4) return this.receiveIpv4(f, l3, trusted, now);
    if (type === eth.ETHERTYPE_IPV6) return this.receiveIpv6(f, l3, trusted, now);
    this.count('unknown-ethertype');
  }

  private learn(f: Buffer): void {
    const src = eth.src(f);
    if (src[0] & 1) return; // multicast source: bogus
    if (!this.out.guestMac.equals(src)) this.out.guestMac = Buffer.from(src);
  }

  private receiveIpv4(f: Buffer, p: Buffer, trusted: boolean, now: number): void {
    const bad = ipv4.check(p);
    if (bad) return this.count(`ipv4-${bad}`);
    this.learn(f);
    const hl = ipv4.headerLength(p);
    const end = ipv4.payloadEnd(p);
    const proto = ipv4.protocol(p);
    const src = ipv4.src(p);
    const dst = ipv4.dst(p);
    if (proto === ipv4.PROTO_UDP) {
      if (udp.check(p, hl, end)) return this.count('udp-malformed');
      if (isDhcpRequest(this.c, dst, udp.dstPort(p, hl))) {
        // DHCP clients send from 0.0.0.0, so this comes before the source checks.
        if (!trusted && udp.checksum(p, hl) !== 0 && finish(sum16(p, hl, end, pseudo4(p, 12, 16, proto, end - hl))) !== 0) return this.count('udp-bad-checksum');
        return this.services.dhcp(p, hl + udp.UDP_HDR_LEN, hl + udp.length(p, hl));
      }
    }
    if (!plausibleSource(this.c, 4, src)) return this.count('ipv4-bad-source');
    if (dst[0] >= 224 || dst.equals(src)) return this.count('ipv4-not-unicast');
    if (proto === ipv4.PROTO_ICMP) return this.receiveIcmp4(p, hl, end, src, dst, now);
    // A zero UDP checksum means "none" in IPv4 (RFC 768); IPv6 has no such escape.
    const verify = !trusted && !(proto === ipv4.PROTO_UDP && udp.checksum(p, hl) === 0);
    this.receiveL4(4, proto, p, hl, end, src, dst, verify ? pseudo4(p, 12, 16, proto, end - hl) : null, now);
  }

  /**
   * UDP and TCP for both families, after the IP layer's checks. `pseudo` is the pseudo-header sum
   * when the L4 checksum must be verified, null when the kernel vouched for it (or there is none).
   */
  private receiveL4(family: 4 | 6, proto: number, p: Buffer, off: number, end: number, src: Buffer, dst: Buffer, pseudo: number | null, now: number): void {
    if (proto !== ipv4.PROTO_UDP && proto !== ipv4.PROTO_TCP) return this.count(`ipv${family}-unknown-protocol`);
    const name = proto === ipv4.PROTO_UDP ? 'udp' : 'tcp';
    if (proto === ipv4.PROTO_TCP && tcp.check(p, off, end)) return this.count('tcp-malformed');
    if (pseudo !== null && finish(sum16(p, off, end, pseudo)) !== 0) return this.count(`${name}-bad-checksum`);
    if (proto === ipv4.PROTO_UDP) this.receiveUdp(family, p, off, src, dst, now);
    else this.receiveTcp(family, p, off, end, src, dst, now);
  }

  private receiveIpv6(f: Buffer, p: Buffer, trusted: boolean, now: number): void {
    if (!this.c.v6) return this.count('ipv6-disabled');
    const bad = ipv6.check(p);
    if (bad) return this.count(`ipv6-${bad}`);
    this.learn(f);
    const { proto, off } = ipv6.upper(p);
    const end = ipv6.payloadEnd(p);
    const src = ipv6.src(p);
    const dst = ipv6.dst(p);
    if (proto === ipv6.NH_ICMPV6) return this.receiveIcmp6(p, off, end, src, dst, now);
    if (dst[0] === 0xff) return this.count('ipv6-multicast');
    if (!plausibleSource(this.c, 6, src) || dst.equals(src)) return this.count('ipv6-bad-source');
    if (proto === ipv6.NH_UDP && udp.check(p, off, end)) return this.count('udp-malformed');
    this.receiveL4(6, proto, p, off, end, src, dst, trusted ? null : pseudo6(p, 8, 24, proto, end - off), now);
  }

  // ---- ICMP ----------------------------------------------------------------------------------

  private receiveIcmp4(p: Buffer, hl: number, end: number, src: Buffer, dst: Buffer, now: number): void {
    if (icmp.check(p, hl, end)) return this.count('icmp-malformed');
    if (icmp.type(p, hl) !== icmp.ECHO_REQUEST) return this.count('icmp-ignored');
    const route = routeFromContainer(this.c, 4, 'icmp', dst, 0);
    if (route.kind === 'local') return this.services.echo4(p, hl, end, src, dst);
    this.forwardEcho(4, route, p, hl, end, src, dst, now);
  }

  private receiveIcmp6(p: Buffer, off: number, end: number, src: Buffer, dst: Buffer, now: number): void {
    if (icmpv6.check(p, off, end, pseudo6(p, 8, 24, ipv6.NH_ICMPV6, end - off))) return this.count('icmpv6-malformed');
    const type = icmpv6.type(p, off);
    if (type === icmpv6.NEIGHBOR_SOLICIT || type === icmpv6.ROUTER_SOLICIT) return this.services.ndp(type, p, off, end, src);
    if (type !== icmpv6.ECHO_REQUEST) return this.count('icmpv6-ignored');
    if (!plausibleSource(this.c, 6, src)) return this.count('ipv6-bad-source');
    const route = routeFromContainer(this.c, 6, 'icmp', dst, 0);
    if (route.kind === 'local') return this.services.echo6(p, off, end, src, dst);
    this.forwardEcho(6, route, p, off, end, src, dst, now);
  }

  /**
   * Echo to another host: sent from an unprivileged ping socket, one per (destination, container
   * identifier); replies get the container's identifier back. Where the host forbids ping
   * sockets, the request is dropped and counted.
   */
  private forwardEcho(family: 4 | 6, route: Route, p: Buffer, off: number, end: number, guest: Buffer, dst: Buffer, now: number): void {
    if (route.kind !== 'host' || route.family !== family || !this.host.openPing) return this.count('icmp-echo-refused-destination', route.kind === 'refused' ? route.reason : undefined);
    const msg = p.subarray(off, end);
    if (msg.length < 8) return this.count('icmp-malformed');
    const id = msg.readUInt16BE(4);
    const key = `${family}|${dst.toString('latin1')}|${id}`;
    let flow = this.pingFlows.get(key);
    if (!flow) {
      const ticket = this.openTicket('outbound', null, { hostSockets: 1 }, now);
      if (typeof ticket === 'string') return this.count(ticket);
      const f: PingFlow = { kind: 'ping', key, family, ticket, remote: Buffer.from(dst), guestAddr: Buffer.from(guest), id, sock: null, lastActive: now, quote: Buffer.allocUnsafe(QUOTE_BYTES), quoteLen: 0 };
      try {
        f.sock = this.host.openPing(family, {
          onReply: this.hostEvent(f, (m: Buffer) => this.echoReply(f, m)),
          onError: this.hostEvent(f, (code: string, t: number) => {
            const icmpCode = UNREACH[code];
            if (icmpCode && f.quoteLen) this.unreachable(f.family, f.guestAddr, icmpCode, f.quote.subarray(0, f.quoteLen), t);
          }),
        });
      } catch {
        this.budgets.release(ticket);
        return this.count('icmp-echo-not-permitted');
      }
      this.pingFlows.set(key, (flow = f));
    }
    this.current = flow;
    flow.lastActive = now;
    flow.quoteLen = Math.min(p.length, off + 8 + 64, QUOTE_BYTES);
    p.copy(flow.quote, 0, 0, flow.quoteLen);
    flow.sock!.send(Buffer.from(msg), route.address);
  }

  private echoReply(f: PingFlow, m: Buffer): void {
    if (this.pingFlows.get(f.key) !== f || m.length < 8) return;
    if (f.family === 4) {
      if (m[0] !== icmp.ECHO_REPLY) return;
      this.out.icmp4(f.remote, f.guestAddr, icmp.ECHO_REPLY, 0, ((f.id << 16) | m.readUInt16BE(6)) >>> 0, m.subarray(8));
      return;
    }
    if (m[0] !== icmpv6.ECHO_REPLY) return;
    this.out.icmp6(f.remote, f.guestAddr, m.length, (out, o) => {
      out.set(m, o);
      out.writeUInt16BE(f.id, o + 4);
    });
  }

  /** ICMP destination unreachable to the container, quoting `quote` (its own packet, IP header on). */
  private unreachable(family: 4 | 6, guest: Buffer, code: { v4: number; v6: number }, quote: Buffer, now: number): void {
    // A token bucket, as the kernel's icmp_msgs_per_sec / icmp_msgs_burst.
    this.icmpTokens = Math.min(ICMP_BURST, this.icmpTokens + ((now - this.icmpAt) * this.limits.icmpErrorsPerSecond) / 1000);
    this.icmpAt = now;
    if (this.icmpTokens < 1) return this.count('icmp-error-ratelimited');
    this.icmpTokens--;
    this.count('icmp-unreachable-sent');
    if (family === 4) this.out.icmp4(this.c.v4.gateway, guest, icmp.DEST_UNREACH, code.v4, 0, quote);
    else this.out.icmp6(this.c.v6!.gateway, guest, 8 + quote.length, (out, o) => icmpv6.emitDestUnreach(code.v6, quote, out, o));
  }

  // ---- budgets -------------------------------------------------------------------------------

  /**
   * A ticket for a new flow, reclaiming idle flows and stalled handshakes once when host sockets
   * (or outbound flows) have run out. Returns the refusal when it still does not fit.
   */
  private openTicket(kind: FlowKind, client: Buffer | null, need: { halfOpen?: boolean; hostSockets?: number }, now: number): Ticket | Refusal {
    const key = client ? clientKey(client) : null;
    let t = this.budgets.open(kind, key, need);
    if (t === 'host-socket-limit' || t === 'outbound-flow-limit' || t === 'half-open-limit') {
      if (this.reclaim(now)) t = this.budgets.open(kind, key, need);
    }
    return t;
  }

  /** Frees host sockets held by idle flows and stalled handshakes; returns how many flows went. */
  private reclaim(now: number): number {
    if (now < this.nextReclaimAt) return 0;
    this.nextReclaimAt = now + RECLAIM_EVERY_MS;
    let n = 0;
    for (const f of [...this.udpFlows.values()]) {
      if (!f.inbound && now - f.lastActive >= this.limits.reclaimIdleMs) {
        this.dropFlow(f);
        n++;
      }
    }
    for (const f of [...this.pingFlows.values()]) {
      if (now - f.lastActive >= this.limits.reclaimIdleMs) {
        this.dropFlow(f);
        n++;
      }
    }
    for (const f of [...this.tcpFlows.values()]) {
      if (f.ticket.halfOpen && now - f.openedAt >= this.limits.reclaimHandshakeMs) {
        if (f.conn.state === 'SYN_PENDING') f.conn.refuse();
        else f.conn.reset('timeout');
        n++;
      }
    }
    for (let i = 0; i < n; i++) this.count('reclaimed');
    return n;
  }

  /** The one way a flow goes: out of its table, its ticket back, its host socket closed. */
  private dropFlow(flow: Flow): void {
    if (flow.kind === 'tcp') {
      // A TCP flow goes through its conn (onClose comes back here via onTcpClosed).
      if (flow.conn.state !== 'CLOSED') return flow.conn.reset('aborted');
    }
    this.forget(flow);
  }

  private unassure(flow: UdpFlow): void {
    if (this.unassured.get(flow.key) !== flow) return;
    this.unassured.delete(flow.key);
    const by = this.unassuredByClient.get(flow.ticket.client ?? '');
    by?.delete(flow.key);
    if (by && !by.size) this.unassuredByClient.delete(flow.ticket.client ?? '');
  }

  /** Sends the ACKs and window updates that a batch of received frames left pending (after each batch). */
  flush(now: number): void {
    this.enter(null, () => {
      for (const f of this.tcpFlows.values()) {
        this.current = f;
        f.conn.flush(now);
      }
      this.relieve(now);
    });
  }

  /** After the byte budget was tight: reopens throttled windows and resumes paused host sockets. */
  private relieve(now: number): void {
    if (!this.pressure || !this.budgets.bytes.relieved()) return;
    this.pressure = false;
    for (const f of [...this.tcpFlows.values()]) {
      this.current = f;
      if (f.conn.throttled) f.conn.windowOpened(now);
      this.maybeResume(f);
    }
  }

  private maybeResume(f: TcpFlow): void {
    if (!f.hostPaused || f.conn.sendBuffered() >= this.limits.tcpSndBufBytes / 2 || this.budgets.bytes.full(f.conn.held())) return;
    f.hostPaused = false;
    f.host?.resume();
  }

  // ---- UDP -----------------------------------------------------------------------------------

  /** Key of a UDP or TCP flow (each protocol has its own table). */
  private flowKey(family: number, guestAddr: Buffer, guestPort: number, ourAddr: Buffer, ourPort: number): string {
    return `${guestPort}|${ourPort}|${guestAddr.toString('latin1')}|${ourAddr.toString('latin1')}|${family}`;
  }

  private receiveUdp(family: 4 | 6, p: Buffer, off: number, src: Buffer, dst: Buffer, now: number): void {
    const sport = udp.srcPort(p, off);
    const dport = udp.dstPort(p, off);
    const data = p.subarray(off + udp.UDP_HDR_LEN, off + udp.length(p, off));
    const key = this.flowKey(family, src, sport, dst, dport);
    let flow = this.udpFlows.get(key);
    if (!flow) {
      const route = routeFromContainer(this.c, family, 'udp', dst, dport);
      if (route.kind !== 'host') return this.count('udp-refused-destination', route.kind === 'refused' ? route.reason : route.kind);
      const ticket = this.openTicket('outbound', null, { hostSockets: 1 }, now);
      if (typeof ticket === 'string') return this.count(ticket);
      flow = this.openUdpFlow(family, key, ticket, src, sport, dst, dport, route, now);
    }
    this.current = flow;
    flow.lastActive = now;
    if (flow.inbound && !flow.assured) {
      flow.assured = true;
      this.unassure(flow);
    }
    if (!flow.inbound) {
      const n = Math.min(p.length, off + udp.UDP_HDR_LEN + 16, QUOTE_BYTES);
      p.copy(flow.quote, 0, 0, n);
      flow.quoteLen = n;
    }
    flow.send(Buffer.from(data));
  }

  private openUdpFlow(family: 4 | 6, key: string, ticket: Ticket, guestAddr: Buffer, guestPort: number, ourAddr: Buffer, ourPort: number, target: { family: 4 | 6; address: string; port: number }, now: number): UdpFlow {
    const flow: UdpFlow = {
      kind: 'udp', key, family, ticket, inbound: false, ourAddr: Buffer.from(ourAddr), ourPort, guestAddr: Buffer.from(guestAddr), guestPort,
      send: () => undefined, close: () => undefined, lastActive: now, assured: true, quote: Buffer.allocUnsafe(QUOTE_BYTES), quoteLen: 0,
    };
    this.udpFlows.set(key, flow);
    this.current = flow; // a throw from the host layer below takes this flow and its ticket
    const sock: HostUdp = this.host.openUdp(target.family, target.address, target.port, {
      onMessage: this.hostEvent(flow, (data: Buffer, t: number) => {
        if (this.udpFlows.get(key) !== flow) return;
        flow.lastActive = t;
        this.emitUdp(flow, data);
      }),
      onError: this.hostEvent(flow, (code: string, t: number) => this.onUdpHostError(flow, code, t)),
    });
    flow.send = (d) => sock.send(d);
    flow.close = () => sock.close();
    return flow;
  }

  private onUdpHostError(flow: UdpFlow, code: string, now: number): void {
    if (this.udpFlows.get(flow.key) !== flow) return;
    this.count('udp-host-error', code);
    const icmpCode = UNREACH[code];
    if (icmpCode && flow.quoteLen) this.unreachable(flow.family, flow.guestAddr, icmpCode, flow.quote.subarray(0, flow.quoteLen), now);
    this.dropFlow(flow);
  }

  private emitUdp(flow: UdpFlow, data: Buffer): void {
    const max = this.c.mtu - (flow.family === 4 ? ipv4.IPV4_HDR_LEN : ipv6.IPV6_HDR_LEN) - udp.UDP_HDR_LEN;
    if (data.length > max) return this.count('udp-too-big');
    this.out.udp(flow.family, flow.ourAddr, flow.ourPort, flow.guestAddr, flow.guestPort, data);
  }

  /**
   * A datagram for a UDP port forward: `client` is the real remote, `reply` sends the container's
   * answers back through the forward's listening socket. Never throws.
   */
  forwardUdp(family: 4 | 6, client: Buffer, clientPort: number, guestPort: number, data: Buffer, reply: (d: Buffer) => void, now: number): void {
    this.enter(null, () => {
      const guest = family === 4 ? this.c.v4.guest : this.c.v6?.guest;
      if (!guest) return this.count('ipv6-disabled');
      const src = visibleSource(this.c, family, client);
      const key = this.flowKey(family, guest, guestPort, src, clientPort);
      let flow = this.udpFlows.get(key);
      if (!flow) {
        const ck = clientKey(client);
        let ticket = this.budgets.open('inbound', ck, {});
        // A client at its own limit makes room among its own flows; otherwise a full inbound
        // budget takes the oldest unanswered flow of anyone's.
        if (ticket === 'inbound-client-limit' || ticket === 'inbound-flow-limit') {
          const own = this.budgets.clientFlows(ck) >= this.limits.maxInboundPerClient;
          if (this.evictUnassured(own ? ck : null)) ticket = this.budgets.open('inbound', ck, {});
        }
        if (typeof ticket === 'string') return this.count(ticket);
        flow = {
          kind: 'udp', key, family, ticket, inbound: true, ourAddr: Buffer.from(src), ourPort: clientPort, guestAddr: guest, guestPort,
          send: reply, close: () => undefined, lastActive: now, assured: false, quote: Buffer.allocUnsafe(0), quoteLen: 0,
        };
        this.udpFlows.set(key, flow);
        this.unassured.set(key, flow);
        let by = this.unassuredByClient.get(ck);
        if (!by) this.unassuredByClient.set(ck, (by = new Map()));
        by.set(key, flow);
      }
      this.current = flow;
      flow.lastActive = now;
      this.emitUdp(flow, data);
    });
  }

  /** Drops the oldest inbound UDP flow the container never answered (of `client`, or of anyone). */
  private evictUnassured(client: string | null): boolean {
    const from = client === null ? this.unassured : this.unassuredByClient.get(client);
    const oldest = from?.values().next().value as UdpFlow | undefined;
    if (!oldest) return false;
    this.count('udp-inbound-evicted');
    this.dropFlow(oldest);
    return true;
  }

  // ---- TCP -----------------------------------------------------------------------------------

  private receiveTcp(family: 4 | 6, p: Buffer, off: number, end: number, src: Buffer, dst: Buffer, now: number): void {
    const h = tcp.parse(p, off);
    const payload = p.subarray(h.payloadOff, end);
    const key = this.flowKey(family, src, h.srcPort, dst, h.dstPort);
    const flow = this.tcpFlows.get(key);
    if (flow) {
      this.current = flow;
      return flow.conn.input(h, payload, now);
    }
    if (h.flags & tcp.RST) return;
    if ((h.flags & (tcp.SYN | tcp.ACK)) !== tcp.SYN) return this.resetFor(family, src, dst, h, payload.length);
    const route = routeFromContainer(this.c, family, 'tcp', dst, h.dstPort);
    if (route.kind !== 'host') {
      this.count('tcp-refused-destination', route.kind === 'refused' ? route.reason : route.kind);
      return this.resetFor(family, src, dst, h, payload.length);
    }
    const ticket = this.openTicket('outbound', null, { halfOpen: true, hostSockets: 1 }, now);
    if (typeof ticket === 'string') {
      this.count(ticket);
      // like a full SYN backlog: the container retries; other refusals are final (RST)
      if (ticket !== 'half-open-limit') this.resetFor(family, src, dst, h, payload.length);
      return;
    }
    this.openOutbound(family, key, ticket, src, dst, h, route, p.subarray(0, Math.min(p.length, off + 8)), now);
  }

  /** RST for a segment that belongs to no connection (RFC 9293 section 3.10.7.1). */
  private resetFor(family: 4 | 6, guest: Buffer, ours: Buffer, h: tcp.TcpHeader, len: number): void {
    const seg: OutSegment = h.flags & tcp.ACK
      ? { seq: h.ack, ack: 0, flags: tcp.RST, window: 0, options: {}, payload: [], payloadLength: 0 }
      : { seq: 0, ack: tcp.seqAdd(h.seq, len + (h.flags & tcp.SYN ? 1 : 0) + (h.flags & tcp.FIN ? 1 : 0)), flags: tcp.RST | tcp.ACK, window: 0, options: {}, payload: [], payloadLength: 0 };
    this.out.tcp(family, ours, h.dstPort, guest, h.srcPort, seg);
  }

  private connOptions(family: 4 | 6) {
    return { mss: family === 4 ? this.mss4 : this.mss6, rcvBufBytes: this.limits.tcpRcvBufBytes, idleMs: this.limits.tcpIdleMs, iss: this.random(), budget: this.budgets.bytes };
  }

  private newFlow(family: 4 | 6, key: string, ticket: Ticket, guestAddr: Buffer, guestPort: number, ourAddr: Buffer, ourPort: number, inbound: boolean, now: number): TcpFlow {
    return { kind: 'tcp', key, family, ticket, conn: null as unknown as TcpConn, host: null, ourAddr: Buffer.from(ourAddr), ourPort, guestAddr: Buffer.from(guestAddr), guestPort, hostPaused: false, inbound, openedAt: now, quote: null };
  }

  private connEvents(flow: TcpFlow) {
    return {
      emit: (s: OutSegment) => {
        this.out.tcp(flow.family, flow.ourAddr, flow.ourPort, flow.guestAddr, flow.guestPort, s);
      },
      onData: (d: Buffer) => flow.host?.write(Buffer.from(d)),
      onFin: () => flow.host?.end(),
      onEstablished: () => {
        this.budgets.handshakeDone(flow.ticket);
        flow.quote = null;
        if (!flow.hostPaused) flow.host?.resume(); // an inbound socket waits, paused, for the handshake
      },
      onSendSpace: () => this.maybeResume(flow),
      onClose: (reason: CloseReason) => this.onTcpClosed(flow, reason),
      backlog: () => flow.host?.pending() ?? 0,
      onDrop: (reason: string) => {
        if (reason.includes('budget') || reason === 'tcp-ooo-pruned') this.pressure = true;
        this.count(reason);
      },
      onThrottled: () => {
        this.pressure = true;
      },
    };
  }

  private onTcpClosed(flow: TcpFlow, reason: CloseReason): void {
    if (this.tcpFlows.get(flow.key) !== flow) return;
    this.count(`tcp-close-${reason}`);
    const host = flow.host;
    flow.host = null;
    this.tcpFlows.delete(flow.key);
    this.budgets.release(flow.ticket);
    if (!host) return;
    if (HOST_CLOSE[reason] === 'end') host.end();
    else host.destroy(true);
  }

  private hostHandlers(flow: TcpFlow, syn: tcp.TcpHeader | null): HostTcpHandlers {
    return {
      onConnect: this.hostEvent(flow, (now: number) => {
        if (syn) flow.conn.accept(now, syn);
      }),
      onData: this.hostEvent(flow, (data: Buffer, now: number) => {
        flow.conn.send(data, now);
        if (!flow.hostPaused && (flow.conn.sendBuffered() >= this.limits.tcpSndBufBytes || this.budgets.bytes.full(flow.conn.held()))) {
          if (flow.conn.sendBuffered() < this.limits.tcpSndBufBytes) this.pressure = true;
          flow.hostPaused = true;
          flow.host?.pause();
        }
      }),
      onEnd: this.hostEvent(flow, (now: number) => flow.conn.end(now)),
      onError: this.hostEvent(flow, (code: string, now: number) => this.onTcpHostError(flow, code, now)),
      onDrain: this.hostEvent(flow, (now: number) => {
        flow.conn.windowOpened(now);
        this.relieve(now);
      }),
    };
  }

  private onTcpHostError(flow: TcpFlow, code: string, now: number): void {
    if (this.tcpFlows.get(flow.key) !== flow) return;
    this.count(`tcp-host-${code}`);
    const host = flow.host;
    flow.host = null;
    host?.destroy();
    const icmpCode = code === 'ECONNREFUSED' ? undefined : UNREACH[code];
    if (flow.conn.state === 'SYN_PENDING' && icmpCode && flow.quote) {
      const quote = flow.quote;
      flow.conn.unreachable();
      this.unreachable(flow.family, flow.guestAddr, icmpCode, quote, now);
    } else if (flow.conn.state === 'SYN_PENDING') flow.conn.refuse();
    else flow.conn.abort();
  }

  private openOutbound(family: 4 | 6, key: string, ticket: Ticket, src: Buffer, dst: Buffer, syn: tcp.TcpHeader, target: { family: 4 | 6; address: string; port: number }, quote: Buffer, now: number): void {
    const flow = this.newFlow(family, key, ticket, src, syn.srcPort, dst, syn.dstPort, false, now);
    flow.quote = Buffer.from(quote);
    this.current = flow;
    flow.conn = TcpConn.passive(this.connEvents(flow), this.connOptions(family), syn, now);
    this.tcpFlows.set(key, flow);
    flow.host = this.host.connectTcp(target.family, target.address, target.port, this.hostHandlers(flow, syn));
  }

  /**
   * A port forward accepted a host connection: open a TCP connection to the container's
   * `guestPort` whose source is the client's own address (loopback and the guest's own address
   * become the gateway). `attach` wires the accepted socket to the returned handlers; the socket
   * stays paused until the container answers. Returns false (the caller closes the socket) when
   * budgets or a clashing flow refuse it. Never throws.
   */
  acceptInbound(family: 4 | 6, client: Buffer, clientPort: number, guestPort: number, attach: (h: HostTcpHandlers) => HostTcp, now: number): boolean {
    let ok = false;
    this.enter(null, () => {
      const guest = family === 4 ? this.c.v4.guest : this.c.v6?.guest;
      if (!guest) return this.count('ipv6-disabled');
      const src = visibleSource(this.c, family, client);
      const key = this.flowKey(family, guest, guestPort, src, clientPort);
      if (this.tcpFlows.has(key)) return this.count('tcp-inbound-clash');
      const ticket = this.budgets.open('inbound', clientKey(client), { halfOpen: true, hostSockets: 1 });
      if (typeof ticket === 'string') return this.count(ticket);
      const flow = this.newFlow(family, key, ticket, guest, guestPort, src, clientPort, true, now);
      this.current = flow;
      this.tcpFlows.set(key, flow);
      flow.host = attach(this.hostHandlers(flow, null));
      flow.host.pause();
      flow.conn = TcpConn.active(this.connEvents(flow), this.connOptions(family), now);
      ok = this.tcpFlows.get(key) === flow;
    });
    return ok;
  }

  // ---- timers --------------------------------------------------------------------------------

  /** The earliest deadline over all flows (Infinity when idle). */
  pollAt(): number {
    let t = Infinity;
    for (const f of this.tcpFlows.values()) {
      const d = f.conn.pollAt();
      if (d < t) t = d;
    }
    const udpIdle = this.limits.udpIdleMs;
    for (const f of this.udpFlows.values()) if (f.lastActive + udpIdle < t) t = f.lastActive + udpIdle;
    for (const f of this.pingFlows.values()) if (f.lastActive + PING_IDLE_MS < t) t = f.lastActive + PING_IDLE_MS;
    return t;
  }

  /** Runs due timers: retransmissions, probes, expiry. Never throws. */
  poll(now: number): void {
    for (const f of [...this.tcpFlows.values()]) if (f.conn.pollAt() <= now) this.enter(f, () => f.conn.poll(now));
    for (const f of [...this.udpFlows.values()]) {
      if (f.lastActive + this.limits.udpIdleMs <= now) {
        this.count('udp-expired');
        this.enter(f, () => this.dropFlow(f));
      }
    }
    for (const f of [...this.pingFlows.values()]) if (f.lastActive + PING_IDLE_MS <= now) this.enter(f, () => this.dropFlow(f));
    this.enter(null, () => this.relieve(now));
  }

  /** Resets every TCP flow and closes every UDP and echo flow (the container or the stack is going away). */
  shutdown(): void {
    for (const f of [...this.tcpFlows.values(), ...this.udpFlows.values(), ...this.pingFlows.values()]) this.enter(f, () => this.dropFlow(f));
  }

  /** Diagnostic snapshot of the flows. */
  flows(): Array<Record<string, unknown>> {
    const fmt = (fam: number, b: Buffer) => (fam === 4 ? ipv4.formatAddr(b) : ipv6.formatAddr(b));
    return [
      ...[...this.tcpFlows.values()].map((f) => ({ proto: 'tcp', inbound: f.inbound, guest: `${fmt(f.family, f.guestAddr)}:${f.guestPort}`, remote: `${fmt(f.family, f.ourAddr)}:${f.ourPort}`, ...f.conn.info() })),
      ...[...this.udpFlows.values()].map((f) => ({ proto: 'udp', inbound: f.inbound, guest: `${fmt(f.family, f.guestAddr)}:${f.guestPort}`, remote: `${fmt(f.family, f.ourAddr)}:${f.ourPort}` })),
    ];
  }
}
