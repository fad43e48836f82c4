/**
 * Per-namespace sysctls under /proc/sys/net.
 *
 * /proc/sys/net resolves to the namespace of the task that opens the file, so
 * for another netns the file is opened by a native helper thread inside it
 * (openInNetns) and then read or written from the main thread.
 */
import fs from 'node:fs';
import { openInNetns } from '../../native/mod.js';
import { BurrowError, hasCode } from '../../native/errors.js';

/** The Sysctl seam: read and write keys of one network namespace. */
export interface Sysctl {
  readonly netns: string;
  /** The value without its trailing newline, or null when the key does not exist. */
  get(key: string): string | null;
  /** Writes the value; throws a SysctlError naming the key and netns. */
  set(key: string, value: string): void;
}

export class SysctlError extends BurrowError {}

/**
 * Normalises a key to a path below /proc/sys: "net.ipv4.ip_forward" and
 * "net/ipv4/ip_forward" both give "net/ipv4/ip_forward". Keys with dots inside
 * interface names ("eth0.100") must use the slash form.
 */
export function sysctlPath(key: string): string {
  const rel = key.includes('/') ? key.replace(/^\/+/, '') : key.replace(/\./g, '/');
  if (!rel.startsWith('net/') || rel.split('/').some((p) => p === '..' || p === '')) {
    throw new SysctlError('EINVAL', `invalid sysctl "${key}": only keys below net/ are per-namespace`);
  }
  return `/proc/sys/${rel}`;
}

/** The kernel's sysctls for `netns` ("" for the caller's own). */
export class ProcSysctl implements Sysctl {
  constructor(readonly netns = '') {}

  private open(key: string, flags: number): number | null {
    const file = sysctlPath(key);
    try {
      return this.netns ? openInNetns(this.netns, file, flags) : fs.openSync(file, flags);
    } catch (err) {
      if (hasCode(err, 'ENOENT')) return null;
      throw new SysctlError((err as { code?: string }).code ?? 'EIO', `cannot open sysctl "${key}"${this.where()}: ${(err as Error).message}`, { cause: err });
    }
  }

  private where(): string {
    return this.netns ? ` in netns "${this.netns}"` : '';
  }

  get(key: string): string | null {
    const fd = this.open(key, fs.constants.O_RDONLY);
    if (fd === null) return null;
    try {
      return fs.readFileSync(fd, 'utf8').replace(/\n$/, '');
    } finally {
      fs.closeSync(fd);
    }
  }

  set(key: string, value: string): void {
    const fd = this.open(key, fs.constants.O_WRONLY);
    if (fd === null) throw new SysctlError('ENOENT', `cannot set sysctl "${key}"${this.where()}: no such key`);
    try {
      fs.writeSync(fd, value);
    } catch (err) {
      throw new SysctlError((err as { code?: string }).code ?? 'EIO', `cannot set sysctl "${key}" to "${value}"${this.where()}: ${(err as Error).message}`, { cause: err });
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** In-memory sysctls for unit tests. Unknown keys read as null, as absent files do. */
export class MemorySysctl implements Sysctl {
  readonly values = new Map<string, string>();
  constructor(readonly netns = '', initial: Record<string, string> = {}) {
    for (const [k, v] of Object.entries(initial)) this.values.set(sysctlPath(k), v);
  }
  get(key: string): string | null {
    return this.values.get(sysctlPath(key)) ?? null;
  }
  set(key: string, value: string): void {
    this.values.set(sysctlPath(key), value);
  }
}
