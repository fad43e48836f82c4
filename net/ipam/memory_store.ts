/** An in-memory Store for unit tests: same semantics as the disk store, no files. */
import { formatIp, parseIp, type Ip } from '../ip/addr.js';
import type { Owner, Reservation, Store } from './store.js';

export class MemoryStore implements Store {
  readonly held = new Map<string, Owner>();
  readonly last = new Map<number, string>();
  private locked = false;
  private waiters: (() => void)[] = [];

  async lock(): Promise<void> {
    while (this.locked) await new Promise<void>((r) => this.waiters.push(r));
    this.locked = true;
  }

  async unlock(): Promise<void> {
    this.locked = false;
    this.waiters.shift()?.();
  }

  reserve(owner: Owner, ip: Ip, rangeSetId: number): boolean {
    const key = formatIp(ip);
    if (this.held.has(key)) return false;
    this.held.set(key, { ...owner });
    this.last.set(rangeSetId, key);
    return true;
  }

  lastReservedIp(rangeSetId: number): Ip | null {
    const v = this.last.get(rangeSetId);
    return v ? parseIp(v) : null;
  }

  private matches(o: Owner, want: Owner): boolean {
    return o.id === want.id && (o.ifname === want.ifname || o.ifname === '');
  }

  releaseByOwner(owner: Owner): Ip[] {
    const out: Ip[] = [];
    for (const [k, o] of this.held) {
      if (this.matches(o, owner)) {
        this.held.delete(k);
        out.push(parseIp(k));
      }
    }
    return out;
  }

  release(ip: Ip): boolean {
    return this.held.delete(formatIp(ip));
  }

  getByOwner(owner: Owner): Ip[] {
    return [...this.held].filter(([, o]) => this.matches(o, owner)).map(([k]) => parseIp(k));
  }

  list(): Reservation[] {
    return [...this.held].map(([k, o]) => ({ ...o, ip: parseIp(k) }));
  }

  close(): void {}
}
