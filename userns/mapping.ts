/**
 * User-namespace id mappings for podman's --userns modes, as pure functions.
 *
 * Theory of operation
 * -------------------
 * Rootless, ids pass through two maps: container -> intermediate -> host. The intermediate map is
 * what newuidmap writes for the user: intermediate 0 = the user's own id, 1..N = the user's
 * subordinate ranges in file order. Each mode yields container -> intermediate triples (podman's
 * semantics, reference/rootless.md 4.5); `compose` turns them into the container -> host lines
 * the kernel gets. Everything is checked against the kernel's rules (at most 340 lines, no
 * overlap on either side, sizes > 0, 32-bit ids) and against what the user owns before any
 * process starts.
 */
import { BurrowError } from '../native/errors.js';
import type { SubIdRange } from './subid.js';

/** One map line: ids containerId..containerId+size-1 are hostId..hostId+size-1 outside. */
export interface IdMapping {
  containerId: number;
  hostId: number;
  size: number;
}

export type UsernsMode =
  | { kind: 'host' }
  | { kind: 'keep-id'; uid?: number; gid?: number; size?: number }
  | { kind: 'nomap' }
  | { kind: 'auto'; size?: number }
  | { kind: 'private' };

export class UsernsError extends BurrowError {
  constructor(message: string) {
    super('EUSERNS', message);
  }
}

/** The kernel's limit on map lines since Linux 4.15. */
export const MAX_MAP_LINES = 340;
const ID_LIMIT = 0xffffffff;

/** Parses a --userns value. Throws UsernsError naming what is wrong. */
export function parseUsernsMode(text: string): UsernsMode {
  const [kind, opts = ''] = text.split(/:(.*)/s);
  const kv = new Map<string, string>();
  for (const part of opts.split(',').filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsernsError(`invalid --userns option "${part}" in "${text}": expected KEY=VALUE`);
    kv.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const num = (k: string, min = 0): number | undefined => {
    const v = kv.get(k);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) >= ID_LIMIT) throw new UsernsError(`invalid ${k} "${v}" in --userns "${text}"`);
    return Number(v);
  };
  const only = (allowed: string[]) => {
    for (const k of kv.keys()) if (!allowed.includes(k)) throw new UsernsError(`unknown --userns option "${k}" for ${kind} (known: ${allowed.join(', ') || 'none'})`);
  };
  switch (kind) {
    case '':
    case 'host':
      only([]);
      return { kind: 'host' };
    case 'keep-id':
      only(['uid', 'gid', 'size']);
      return { kind: 'keep-id', uid: num('uid'), gid: num('gid'), size: num('size', 1) };
    case 'nomap':
      only([]);
      return { kind: 'nomap' };
    case 'auto':
      only(['size']);
      return { kind: 'auto', size: num('size', 1) };
    case 'private':
      only([]);
      return { kind: 'private' };
    default:
      throw new UsernsError(`unknown --userns mode "${kind}" (expected host, keep-id[:uid=U,gid=G,size=S], nomap, auto[:size=N] or private)`);
  }
}

/** The intermediate map newuidmap writes: 0 -> own id, then the subordinate ranges in order. */
export function intermediateMap(ownId: number, ranges: SubIdRange[]): IdMapping[] {
  const out: IdMapping[] = [{ containerId: 0, hostId: ownId, size: 1 }];
  let next = 1;
  for (const r of ranges) {
    out.push({ containerId: next, hostId: r.start, size: r.count });
    next += r.count;
  }
  return out;
}

/**
 * container -> intermediate triples for a mode (rootless). `total` = the number of subordinate
 * ids (intermediate ids 1..total); `ownId` = the user's id, which keep-id makes appear as U.
 */
export function modeMapping(mode: UsernsMode, ownId: number, total: number, which: 'uid' | 'gid'): IdMapping[] {
  switch (mode.kind) {
    case 'host':
    case 'private':
      return [{ containerId: 0, hostId: 0, size: total + 1 }];
    case 'nomap':
      if (!total) throw new UsernsError('nomap requires additional UIDs or GIDs defined in /etc/subuid and /etc/subgid to function correctly');
      return [{ containerId: 0, hostId: 1, size: total }];
    case 'keep-id': {
      const u = (which === 'uid' ? mode.uid : mode.gid) ?? ownId;
      const max = mode.size !== undefined ? Math.min(total, mode.size - 1) : total;
      const out: IdMapping[] = [];
      if (Math.min(u, max) > 0) out.push({ containerId: 0, hostId: 1, size: Math.min(u, max) });
      out.push({ containerId: u, hostId: 0, size: 1 });
      if (max > u) out.push({ containerId: u + 1, hostId: u + 1, size: max - u });
      return out;
    }
    case 'auto':
      throw new UsernsError('auto mappings come from allocateAuto');
  }
}

/** Composes container -> intermediate with intermediate -> host, splitting at range borders. */
export function compose(outer: IdMapping[], inner: IdMapping[]): IdMapping[] {
  const out: IdMapping[] = [];
  for (const m of outer) {
    let c = m.containerId;
    let i = m.hostId;
    let left = m.size;
    while (left > 0) {
      const r = inner.find((x) => i >= x.containerId && i < x.containerId + x.size);
      if (!r) throw new UsernsError(`intermediate id ${i} is not mapped: the mapping needs more subordinate ids than the user has`);
      const n = Math.min(left, r.containerId + r.size - i);
      out.push({ containerId: c, hostId: r.hostId + (i - r.containerId), size: n });
      c += n;
      i += n;
      left -= n;
    }
  }
  return out;
}

/** Parses podman's --uidmap/--gidmap value "CONTAINER:HOST[:SIZE]" (size defaults to 1). */
export function parseIdMapSpec(text: string, flag = '--uidmap'): IdMapping {
  const m = /^(\d+):(\d+)(?::(\d+))?$/.exec(text);
  if (!m) throw new UsernsError(`invalid ${flag} "${text}": expected CONTAINER:HOST[:SIZE]`);
  const size = m[3] === undefined ? 1 : Number(m[3]);
  if (size < 1) throw new UsernsError(`invalid ${flag} "${text}": SIZE must be at least 1`);
  return { containerId: Number(m[1]), hostId: Number(m[2]), size };
}

/** Checks the kernel's rules; returns problems (empty when valid). */
export function checkMapping(map: IdMapping[], what = 'uid_map'): string[] {
  const problems: string[] = [];
  if (!map.length) problems.push(`${what} is empty`);
  if (map.length > MAX_MAP_LINES) problems.push(`${what} has ${map.length} lines; the kernel accepts at most ${MAX_MAP_LINES}`);
  for (const m of map) {
    if (m.size < 1) problems.push(`${what} line ${m.containerId} ${m.hostId} ${m.size}: size must be at least 1`);
    if (m.containerId + m.size > ID_LIMIT || m.hostId + m.size > ID_LIMIT) problems.push(`${what} line ${m.containerId} ${m.hostId} ${m.size} overflows the 32-bit id space`);
  }
  for (const side of ['containerId', 'hostId'] as const) {
    const sorted = [...map].sort((a, b) => a[side] - b[side]);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      if (sorted[i][side] < prev[side] + prev.size) {
        problems.push(`${what} lines "${prev.containerId} ${prev.hostId} ${prev.size}" and "${sorted[i].containerId} ${sorted[i].hostId} ${sorted[i].size}" overlap on the ${side === 'containerId' ? 'inside' : 'outside'}`);
      }
    }
  }
  return problems;
}

/** Host ids in `map` that the user does not own (own id, or subordinate ranges). */
export function unownedHostIds(map: IdMapping[], ownId: number, ranges: SubIdRange[]): IdMapping[] {
  return map.filter((m) => {
    if (m.size === 1 && m.hostId === ownId) return false;
    return !ranges.some((r) => m.hostId >= r.start && m.hostId + m.size <= r.start + r.count);
  });
}

/**
 * auto: the size (auto:size=N, else the highest id the rootfs uses + 1, at least `minSize`,
 * ignoring nobody/nogroup 65534) and a first-fit slice of intermediate ids 1..total not used by
 * other running containers.
 */
export function autoSize(mode: { size?: number }, highestId: number, limits = { minSize: 1024, maxSize: 65536 }): number {
  if (mode.size !== undefined) return mode.size;
  const size = Math.max(limits.minSize, highestId + 1);
  if (size > limits.maxSize) throw new UsernsError(`the container needs a user namespace with size ${size} that is bigger than the maximum value allowed with userns=auto ${limits.maxSize}`);
  return size;
}

export function allocateAuto(size: number, total: number, used: IdMapping[]): IdMapping {
  const busy = [...used].sort((a, b) => a.hostId - b.hostId);
  let start = 1;
  for (const u of busy) {
    if (u.hostId >= start + size) break;
    start = Math.max(start, u.hostId + u.size);
  }
  if (start + size - 1 > total) throw new UsernsError(`not enough unused IDs in user namespace: need ${size}, ${total} subordinate ids in all`);
  return { containerId: 0, hostId: start, size };
}

/** Formats a map as newuidmap arguments ("C H S C H S ..."). */
export function mapArgs(map: IdMapping[]): string[] {
  return map.flatMap((m) => [String(m.containerId), String(m.hostId), String(m.size)]);
}
