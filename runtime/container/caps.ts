/**
 * Linux capabilities for `burrow run --cap-add/--cap-drop`, with podman's semantics: a container
 * starts from podman's default set; `--cap-drop ALL` empties it and `--cap-add ALL` fills it;
 * then each named drop and add applies. The result is a bit mask for the helper's -c.
 */
import { BurrowError } from '../../native/errors.js';

/** Capability names by number (linux/capability.h, up to CAP_CHECKPOINT_RESTORE = 40). */
export const CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE',
  'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE',
  'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
] as const;

/** podman 4's default_capabilities (containers.conf). */
export const DEFAULT_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'];

export class CapabilityError extends BurrowError {
  constructor(message: string) {
    super('ECAPS', message);
  }
}

/** "net_admin", "CAP_NET_ADMIN" -> its number; "ALL" -> -1. */
export function capNumber(name: string, flag: string): number {
  const n = name.trim().toUpperCase().replace(/^CAP_/, '');
  if (n === 'ALL') return -1;
  const i = (CAPABILITIES as readonly string[]).indexOf(n);
  if (i < 0) throw new CapabilityError(`${flag}: unknown capability "${name}" (names as in capabilities(7), e.g. NET_ADMIN or CAP_NET_RAW, or ALL)`);
  return i;
}

const ALL = (1n << BigInt(CAPABILITIES.length)) - 1n;

/** The capability mask a container keeps. Each list entry may hold several names, comma-separated. */
export function capabilityMask(add: string[] = [], drop: string[] = []): bigint {
  const split = (l: string[], flag: string) => l.flatMap((s) => s.split(',')).filter((s) => s.trim()).map((s) => capNumber(s, flag));
  const adds = split(add, '--cap-add');
  const drops = split(drop, '--cap-drop');
  for (const a of adds) {
    if (a >= 0 && drops.includes(a)) throw new CapabilityError(`capability ${CAPABILITIES[a]} is both added and dropped`);
  }
  let mask = DEFAULT_CAPABILITIES.reduce((m, c) => m | (1n << BigInt(capNumber(c, 'default'))), 0n);
  if (drops.includes(-1)) mask = 0n;
  if (adds.includes(-1)) mask = ALL;
  for (const d of drops) if (d >= 0) mask &= ~(1n << BigInt(d));
  for (const a of adds) if (a >= 0) mask |= 1n << BigInt(a);
  return mask;
}

/** Names of the capabilities in `mask` (for inspect), in number order. */
export function capabilityNames(mask: bigint): string[] {
  return CAPABILITIES.filter((_, i) => (mask >> BigInt(i)) & 1n).map((n) => `CAP_${n}`);
}
