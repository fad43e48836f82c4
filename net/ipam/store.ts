/**
 * The IPAM Store seam: reservations of one network, under a lock.
 *
 * `disk_store.ts` keeps the reference host-local layout so that burrow and
 * the reference plugin can share one store; `memory_store.ts` is the fake.
 * Every method except lock/unlock must be called while the lock is held.
 */
import type { Ip } from '../ip/addr.js';

/** Who holds a reservation. Legacy (pre-0.4) files carry only the container ID; then ifname is "". */
export interface Owner {
  id: string;
  ifname: string;
}

export interface Reservation extends Owner {
  ip: Ip;
}

export interface Store {
  /** Takes the network's exclusive lock (blocks until free). */
  lock(): Promise<void>;
  unlock(): Promise<void>;
  /** Reserves `ip` for the owner; false when already taken. Records it as the range set's last reserved IP. */
  reserve(owner: Owner, ip: Ip, rangeSetId: number): boolean;
  lastReservedIp(rangeSetId: number): Ip | null;
  /** Releases every reservation of the owner (legacy files match on ID alone). Returns what was released. */
  releaseByOwner(owner: Owner): Ip[];
  /** Releases one address whatever its owner. */
  release(ip: Ip): boolean;
  /** The addresses held by the owner. */
  getByOwner(owner: Owner): Ip[];
  /** Every reservation of the network. */
  list(): Reservation[];
  close(): void;
}
