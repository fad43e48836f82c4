/**
 * host-local address allocation, compatible with the reference plugin.
 *
 * Theory of operation
 * -------------------
 * A range set is a list of ranges (subnet, rangeStart, rangeEnd, gateway) of
 * one family; a network has one range set per address it hands out. For each
 * set, the allocator either reserves a requested address (which must be in
 * the set and not its gateway), or walks the set round robin: it starts after
 * the set's last reserved IP (if that still lies in the set; else at the
 * first range's start), advances through the range, wraps to the next range
 * (modulo the count), skips gateways, and gives up after one full cycle. The
 * first address the store accepts wins. This is the reference's order, so two
 * implementations sharing a store hand out the same sequence, and a crash-
 * looping container does not get the same address back until the set cycles.
 *
 * Everything here is synchronous over a Store whose lock the caller holds.
 */
import { BurrowError } from '../../native/errors.js';
import {
  contains, formatCidr, formatIp, ipEquals, networkOf, nextIp, parseCidr, parseIp, rangesOverlap, usableRange,
  type Cidr, type Ip,
} from '../ip/addr.js';
import type { Owner, Store } from './store.js';

export class IpamError extends BurrowError {}

/** One range, canonicalised: every field set. */
export interface Range {
  subnet: Cidr;
  rangeStart: Ip;
  rangeEnd: Ip;
  gateway: Ip;
}

export type RangeSet = Range[];

/** A range as written in config (strings). */
export interface RangeConfig {
  subnet?: unknown;
  rangeStart?: unknown;
  rangeEnd?: unknown;
  gateway?: unknown;
}

function ipField(v: unknown, what: string): Ip {
  if (typeof v !== 'string') throw new IpamError('EINVAL', `invalid ${what} ${JSON.stringify(v)}: expected an IP address string`);
  try {
    return parseIp(v);
  } catch {
    throw new IpamError('EINVAL', `invalid ${what} "${v}"`);
  }
}

/** Validates one range and fills its defaults (gateway .1, start .1, end broadcast-1 / last). */
export function canonicalizeRange(r: RangeConfig): Range {
  if (typeof r.subnet !== 'string') throw new IpamError('EINVAL', `range is missing "subnet" (got ${JSON.stringify(r)})`);
  let subnet: Cidr;
  try {
    subnet = parseCidr(r.subnet);
  } catch {
    throw new IpamError('EINVAL', `invalid subnet "${r.subnet}"`);
  }
  const hosts = usableRange(subnet);
  if (!hosts) throw new IpamError('EINVAL', `Network ${r.subnet} too small to allocate from`);
  const net = networkOf(subnet);
  if (net.value !== subnet.ip.value) {
    throw new IpamError('EINVAL', `Network has host bits set. For a subnet mask of length ${subnet.prefixLen} the network address is ${formatIp(net)}`);
  }
  const sameFamily = (ip: Ip, what: string): Ip => {
    if (ip.family !== subnet.ip.family) throw new IpamError('EINVAL', `${what} ${formatIp(ip)} is not in the family of ${r.subnet}`);
    return ip;
  };
  const gateway = r.gateway === undefined || r.gateway === '' ? nextIp(net)! : sameFamily(ipField(r.gateway, 'gateway'), 'gateway');
  let rangeStart = hosts.start;
  if (r.rangeStart !== undefined && r.rangeStart !== '') {
    rangeStart = sameFamily(ipField(r.rangeStart, 'rangeStart'), 'rangeStart');
    if (!contains(subnet, rangeStart)) throw new IpamError('EINVAL', `RangeStart ${formatIp(rangeStart)} not in network ${r.subnet}`);
  }
  let rangeEnd = hosts.end;
  if (r.rangeEnd !== undefined && r.rangeEnd !== '') {
    rangeEnd = sameFamily(ipField(r.rangeEnd, 'rangeEnd'), 'rangeEnd');
    if (!contains(subnet, rangeEnd)) throw new IpamError('EINVAL', `RangeEnd ${formatIp(rangeEnd)} not in network ${r.subnet}`);
  }
  if (rangeStart.value > rangeEnd.value) throw new IpamError('EINVAL', `RangeStart ${formatIp(rangeStart)} is after RangeEnd ${formatIp(rangeEnd)}`);
  return { subnet, rangeStart, rangeEnd, gateway };
}

/** Human form of a range set, as the reference prints it: "10.0.0.1-10.0.0.254,..." */
export function formatRangeSet(set: RangeSet): string {
  return set.map((r) => `${formatIp(r.rangeStart)}-${formatIp(r.rangeEnd)}`).join(',');
}

function rangeContains(r: Range, ip: Ip): boolean {
  return contains(r.subnet, ip) && ip.value >= r.rangeStart.value && ip.value <= r.rangeEnd.value;
}

/** The range of the set holding `ip`, or null. */
export function rangeFor(set: RangeSet, ip: Ip): Range | null {
  return set.find((r) => rangeContains(r, ip)) ?? null;
}

/** Validates a range set: not empty, one family, no overlapping ranges. */
export function canonicalizeRangeSet(set: unknown, index: number): RangeSet {
  if (!Array.isArray(set) || set.length === 0) throw new IpamError('EINVAL', `range set ${index} is empty`);
  const out = set.map((r) => canonicalizeRange((r ?? {}) as RangeConfig));
  const family = out[0].subnet.ip.family;
  if (out.some((r) => r.subnet.ip.family !== family)) throw new IpamError('EINVAL', `range set ${index} mixes address families`);
  for (let i = 0; i < out.length; i++) {
    for (let j = i + 1; j < out.length; j++) {
      if (rangesOverlap({ start: out[i].rangeStart, end: out[i].rangeEnd }, { start: out[j].rangeStart, end: out[j].rangeEnd })) {
        throw new IpamError('EINVAL', `subnets ${formatCidr(out[i].subnet)} and ${formatCidr(out[j].subnet)} overlap`);
      }
    }
  }
  return out;
}

/** Fails when two range sets share an address. */
export function checkRangeSetsDisjoint(sets: RangeSet[]): void {
  for (let i = 0; i < sets.length; i++) {
    for (let j = i + 1; j < sets.length; j++) {
      for (const a of sets[i]) {
        for (const b of sets[j]) {
          if (rangesOverlap({ start: a.rangeStart, end: a.rangeEnd }, { start: b.rangeStart, end: b.rangeEnd })) {
            throw new IpamError('EINVAL', `range set ${i} overlaps with ${j}`);
          }
        }
      }
    }
  }
}

/** What an allocation yields: the address with its subnet's prefix, and the gateway. */
export interface Allocation {
  address: Cidr;
  gateway: Ip;
}

/** The round-robin walk of a range set (the reference's RangeIter). */
export function* iterateRangeSet(set: RangeSet, last: Ip | null): Generator<{ ip: Ip; range: Range }> {
  let idx = 0;
  let cur: Ip | null = null;
  let start: Ip | null = null;
  if (last && set.some((r) => rangeContains(r, last))) {
    idx = set.findIndex((r) => rangeContains(r, last));
    cur = last;
  }
  const total = set.reduce((n, r) => n + (r.rangeEnd.value - r.rangeStart.value + 1n), 0n);
  for (let steps = 0n; steps <= total; steps++) {
    let r = set[idx];
    if (cur === null) {
      cur = r.rangeStart;
    } else if (cur.value === r.rangeEnd.value) {
      idx = (idx + 1) % set.length;
      r = set[idx];
      cur = r.rangeStart;
    } else {
      cur = nextIp(cur)!;
    }
    if (start === null) start = cur;
    else if (ipEquals(cur, start)) return;
    if (ipEquals(cur, r.gateway)) continue;
    yield { ip: cur, range: r };
  }
}

/**
 * Reserves an address of `set` (index `setId`) for `owner`. The caller holds the store lock.
 * Throws IpamError with the reference's messages when nothing can be had.
 */
export function allocate(store: Store, set: RangeSet, setId: number, owner: Owner, requested: Ip | null): Allocation {
  if (requested) {
    const r = rangeFor(set, requested);
    if (!r) throw new IpamError('EADDRNOTAVAIL', `${formatIp(requested)} not in range set ${formatRangeSet(set)}`);
    if (ipEquals(requested, r.gateway)) throw new IpamError('EADDRNOTAVAIL', `requested ip ${formatIp(requested)} is subnet's gateway`);
    if (!store.reserve(owner, requested, setId)) {
      throw new IpamError('EADDRINUSE', `requested IP address ${formatIp(requested)} is not available in range set ${formatRangeSet(set)}`);
    }
    return { address: { ip: requested, prefixLen: r.subnet.prefixLen }, gateway: r.gateway };
  }
  for (const held of store.getByOwner(owner)) {
    if (rangeFor(set, held)) throw new IpamError('EEXIST', `${formatIp(held)} has been allocated to ${owner.id}, duplicate allocation is not allowed`);
  }
  for (const { ip, range } of iterateRangeSet(set, store.lastReservedIp(setId))) {
    if (store.reserve(owner, ip, setId)) return { address: { ip, prefixLen: range.subnet.prefixLen }, gateway: range.gateway };
  }
  throw new IpamError('ENOSPC', `no IP addresses available in range set: ${formatRangeSet(set)}`);
}

/** Free addresses left in a set (for STATUS); counts at most `cap`. */
export function countFree(store: Store, set: RangeSet, cap = 1n): bigint {
  const held = new Set(store.list().map((r) => formatIp(r.ip)));
  let free = 0n;
  for (const { ip } of iterateRangeSet(set, null)) {
    if (!held.has(formatIp(ip))) free++;
    if (free >= cap) break;
  }
  return free;
}

