/** Real unprivileged users for rootless tests (created with useradd, removed by the test that created them). */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/**
 * Ensures user `name` exists (useradd gives it a subuid/subgid range) and that /dev/net/tun is
 * usable by it: a fresh machine ships the device 0600, distributions 0666. Returns the uid.
 */
export function ensureUser(t: ExecutionContext, name: string): number {
  if (spawnSync('id', ['-u', name]).status !== 0) {
    const r = spawnSync('useradd', ['-m', name], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`useradd failed: ${r.stderr}`);
    t.teardown(() => void spawnSync('userdel', ['-r', name]));
  }
  fs.chmodSync('/dev/net/tun', 0o666);
  return Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
}
