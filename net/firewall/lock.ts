/**
 * burrow's firewall lock: one per network namespace (a flock on its nsfs inode, so no lock file is
 * left behind), held by every backend method that touches shared firewall state.
 *
 * iptables-restore -w and nft -f each serialise only one batch. A read-modify-write of shared state
 * (chains such as CNI-HOSTPORT-DNAT and CNI-FORWARD, nft rule handles read and then deleted, the
 * masquerade postrouting chain) needs the read and the write under one lock, or two parallel ADDs
 * lose rules or delete each other's. The lock is taken at the backend factories, around every
 * method of every backend (iptables and nftables alike), so no backend can forget it.
 */
import { withNetnsLock } from '../../native/mod.js';

/** Runs `fn` holding the firewall lock of the caller's network namespace. Not reentrant. */
export function withFirewallLock<T>(fn: () => Promise<T>): Promise<T> {
  return withNetnsLock(fn);
}

/**
 * The backend with each of its methods run under the firewall lock. Methods calling each other
 * inside the backend run on the bare object, so the lock is taken once per call from outside.
 */
export function lockedBackend<T extends object>(backend: T): T {
  return new Proxy(backend, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => withFirewallLock(async () => (v as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}
