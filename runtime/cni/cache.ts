/**
 * The CNI result cache in libcni's layout, so that DEL works from the cache
 * and another runtime (podman, containerd, cnitool) can read what burrow
 * wrote, and the other way round.
 *
 * File: <cacheDir>/results/<network>-<containerID>-<ifname>, dir 0700, file
 * 0600, JSON `{"kind":"cniCacheV1", containerId, config (base64 of the whole
 * conflist), ifName, networkName, netns, cniArgs, capabilityArgs, result}`.
 * Legacy files holding only a result are still read. Writes are atomic
 * (temp file + rename) so a crash never leaves a torn entry.
 */
import fs from 'node:fs';
import path from 'node:path';
import { hasCode } from '../../native/errors.js';

export const DEFAULT_CACHE_DIR = '/var/lib/cni';

export interface CacheEntry {
  kind: 'cniCacheV1';
  containerId: string;
  /** base64 of the conflist bytes used for ADD. */
  config: string;
  ifName: string;
  networkName: string;
  netns?: string;
  cniArgs?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
  result?: unknown;
}

export class ResultCache {
  constructor(readonly dir = DEFAULT_CACHE_DIR) {}

  /** The cache file of one attachment. */
  file(network: string, containerId: string, ifname: string): string {
    return path.join(this.dir, 'results', `${network}-${containerId}-${ifname}`);
  }

  write(entry: CacheEntry): void {
    const file = this.file(entry.networkName, entry.containerId, entry.ifName);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
    fs.renameSync(tmp, file);
  }

  /** The entry, or null when absent. A legacy result-only file is wrapped. Corrupt files read as null. */
  read(network: string, containerId: string, ifname: string): CacheEntry | null {
    let text: string;
    try {
      text = fs.readFileSync(this.file(network, containerId, ifname), 'utf8');
    } catch (err) {
      if (hasCode(err, 'ENOENT')) return null;
      throw err;
    }
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return null;
    }
    if (obj.kind === 'cniCacheV1') return obj as unknown as CacheEntry;
    return { kind: 'cniCacheV1', containerId, config: '', ifName: ifname, networkName: network, result: obj };
  }

  remove(network: string, containerId: string, ifname: string): void {
    fs.rmSync(this.file(network, containerId, ifname), { force: true });
  }

  /** Every well-formed cniCacheV1 entry of `network` (for GC and listing). */
  list(network?: string): CacheEntry[] {
    const dir = path.join(this.dir, 'results');
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch (err) {
      if (hasCode(err, 'ENOENT')) return [];
      throw err;
    }
    const out: CacheEntry[] = [];
    for (const name of names) {
      if (network && !name.startsWith(`${network}-`)) continue;
      if (name.includes('.tmp-')) continue;
      try {
        const obj = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as CacheEntry;
        if (obj.kind !== 'cniCacheV1' || (network && obj.networkName !== network)) continue;
        out.push(obj);
      } catch {
        // unreadable or not ours: GC leaves it alone
      }
    }
    return out;
  }
}
