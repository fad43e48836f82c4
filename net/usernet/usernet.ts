/**
 * The driver of one userspace stack: owns the link (TAP) and the one timer, feeds frames to the
 * stack in batches, and re-arms the timer to the stack's next deadline after every batch and
 * every host socket event.
 */
import fs from 'node:fs';
import * as eth from '../wire/ethernet.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import type { HostSockets } from '../stack/host.js';
import { DEFAULT_LIMITS, Stack, type StackConfig, type StackLimits } from '../stack/stack.js';
import type { LinkDevice } from '../link/tap_device.js';
import { DropLog, dropLogWanted } from './drop_log.js';
import { NodeHostSockets, type Clock } from './host_sockets.js';

/** Addressing as slirp4netns defaults it (10.0.2.0/24, .2 gateway, .3 DNS, .100 guest; fd00::/64). */
export interface UsernetAddressing {
  cidr4: string;
  cidr6: string | null;
  mtu: number;
}

export const DEFAULT_ADDRESSING: UsernetAddressing = { cidr4: '10.0.2.0/24', cidr6: 'fd00::/64', mtu: 65520 };

export interface UsernetPlan {
  mtu: number;
  guest4: string;
  gateway4: string;
  dns4: string;
  prefix4: number;
  guest6: string | null;
  gateway6: string | null;
  dns6: string | null;
  prefix6: number;
}

/** The concrete addresses for a CIDR pair: .2 gateway, .3 DNS, .100 guest (::2, ::3, ::100 for v6). */
export function planAddressing(a: UsernetAddressing): UsernetPlan {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(a.cidr4);
  const base = m ? ipv4.parseAddr(m[1]) : null;
  const len = m ? Number(m[2]) : -1;
  if (!base || len < 8 || len > 25) throw new Error(`invalid --cidr "${a.cidr4}": expected an IPv4 network from /8 to /25 (like 10.0.2.0/24)`);
  const n = base.readUInt32BE() & ((0xffffffff << (32 - len)) >>> 0);
  const at = (k: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE((n + k) >>> 0);
    return ipv4.formatAddr(b);
  };
  let v6: Pick<UsernetPlan, 'guest6' | 'gateway6' | 'dns6' | 'prefix6'> = { guest6: null, gateway6: null, dns6: null, prefix6: 64 };
  if (a.cidr6) {
    const m6 = /^([0-9a-f:]+)\/64$/i.exec(a.cidr6);
    const p = m6 ? ipv6.parseAddr(m6[1]) : null;
    if (!p) throw new Error(`invalid --cidr6 "${a.cidr6}": expected an IPv6 /64 (like fd00::/64)`);
    p.fill(0, 8);
    const at6 = (k: number) => {
      const b = Buffer.from(p);
      b.writeUInt16BE(k, 14);
      return ipv6.formatAddr(b);
    };
    v6 = { guest6: at6(0x100), gateway6: at6(2), dns6: at6(3), prefix6: 64 };
  }
  if (a.mtu < 1280 || a.mtu > 65520) throw new Error(`invalid --mtu ${a.mtu}: expected 1280 to 65520`);
  return { mtu: a.mtu, guest4: at(100), gateway4: at(2), dns4: at(3), prefix4: len, ...v6 };
}

/** The first IPv4 and IPv6 nameservers of a resolv.conf text. */
export function parseResolvConf(text: string): { v4?: string; v6?: string } {
  const out: { v4?: string; v6?: string } = {};
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const addr = m[1].replace(/%.*$/, '');
    if (ipv4.parseAddr(addr)) out.v4 ??= addr;
    else if (ipv6.parseAddr(addr)) out.v6 ??= addr;
  }
  return out;
}

export interface UsernetOptions {
  plan: UsernetPlan;
  /** Container address that reaches the host's 127.0.0.1/::1 (opt-in, --map-host-loopback). */
  mapHostLoopback?: string;
  limits?: Partial<StackLimits>;
  resolvConf?: string;
  mac?: string;
  random?: () => number;
}

/** The StackConfig for a plan. */
export function stackConfig(o: UsernetOptions): StackConfig {
  const p = o.plan;
  let resolv = '';
  try {
    // BURROW_RESOLV_CONF: another resolv.conf for the DNS forwarder (tests, split-DNS hosts).
    resolv = fs.readFileSync(o.resolvConf ?? process.env.BURROW_RESOLV_CONF ?? '/etc/resolv.conf', 'utf8');
  } catch {
    // no resolver configured: DNS to the DNS address is refused
  }
  const v4 = (s: string) => ipv4.parseAddr(s)!;
  const v6 = (s: string) => ipv6.parseAddr(s)!;
  const map = o.mapHostLoopback;
  return {
    mtu: p.mtu,
    mac: eth.parseMac(o.mac ?? '52:55:0a:00:02:02'),
    v4: { guest: v4(p.guest4), gateway: v4(p.gateway4), dns: v4(p.dns4), prefixLength: p.prefix4 },
    v6: p.guest6 ? { prefix: v6(p.guest6).fill(0, 8), prefixLength: p.prefix6, guest: v6(p.guest6), gateway: v6(p.gateway6!), dns: v6(p.dns6!), linkLocal: v6('fe80::2') } : undefined,
    nameservers: parseResolvConf(resolv),
    mapHostLoopback: map ? (ipv4.parseAddr(map) ? { v4: v4(map) } : { v6: v6(map) }) : undefined,
    limits: o.limits,
    random: o.random,
  };
}

/**
 * Host sockets one stack may hold: well below the process's RLIMIT_NOFILE (Node raises the soft
 * limit to the hard one at start), at most `want`.
 */
export function hostSocketCap(want: number, limitsText?: string): number {
  let text = limitsText;
  try {
    text ??= fs.readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return want;
  }
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  if (!m || m[1] === 'unlimited') return want;
  return Math.max(16, Math.min(want, Math.floor(Number(m[1]) / 2)));
}

export class Usernet {
  readonly stack: Stack;
  private readonly link: LinkDevice;
  private readonly clock: Clock;
  private readonly dropLog: DropLog | null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private kicked = false;
  private stopped = false;

  constructor(link: LinkDevice, config: StackConfig, host?: HostSockets, clock: Clock = () => performance.now()) {
    this.link = link;
    this.clock = clock;
    this.dropLog = dropLogWanted() ? new DropLog((l) => process.stderr.write(l), clock) : null;
    const limits = { ...config.limits, maxHostSockets: hostSocketCap(config.limits?.maxHostSockets ?? DEFAULT_LIMITS.maxHostSockets) };
    const onCount = this.dropLog ? (r: string, d?: string) => this.dropLog!.note(r, d) : config.onCount;
    this.stack = new Stack({ ...config, limits, onCount, onEntry: () => this.kick() }, (parts) => link.send(parts), host ?? new NodeHostSockets(clock));
  }

  start(): void {
    this.link.start((frame) => this.stack.receive(frame, this.clock()), () => {
      const now = this.clock();
      this.stack.flush(now);
      this.arm();
    });
  }

  /** Re-arms the timer soon (coalesced: many host events in one loop turn cost one re-arm). */
  kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    queueMicrotask(() => {
      this.kicked = false;
      this.arm();
    });
  }

  private arm(): void {
    if (this.stopped) return;
    const at = this.stack.pollAt();
    // A timer that fires too early is harmless (poll finds nothing due and re-arms); moving it
    // on every segment is not (a retransmission deadline moves with each send).
    if (this.timer && at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.stack.poll(this.clock());
      this.arm();
    }, Math.max(0, Math.ceil(at - this.clock())));
  }

  linkStats(): LinkDevice['stats'] {
    return this.link.stats;
  }

  /** Resets every flow, stops the timer and closes the link. */
  stop(): void {
    if (this.stopped) return;
    this.stack.shutdown();
    this.dropLog?.close();
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.link.close();
  }
}
