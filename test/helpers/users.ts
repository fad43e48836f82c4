/** Real unprivileged users for rootless tests (created with useradd, removed by the test that created them). */
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Ensures user `name` exists (useradd gives it a subuid/subgid range) and that /dev/net/tun is
 * usable by it: a fresh machine ships the device 0600, distributions 0666. Returns the uid.
 */
export function ensureUser(t: ExecutionContext, name: string): number {
  if (spawnSync('id', ['-u', name]).status !== 0) {
    const r = spawnSync('useradd', ['-m', name], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`useradd failed: ${r.stderr}`);
    t.teardown(() => {
      // burrow's rootless runtime dir without XDG_RUNTIME_DIR: $TMPDIR/burrow-UID
      const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim();
      // userdel refuses while the user has processes (a just-killed one may still be exiting).
      for (let i = 0; i < 40; i++) {
        spawnSync('pkill', ['-9', '-u', name]);
        if (spawnSync('userdel', ['-r', name]).status !== 8) break;
        spawnSync('sleep', ['0.05']);
      }
      if (uid) fs.rmSync(path.join(os.tmpdir(), `burrow-${uid}`), { recursive: true, force: true });
    });
  }
  fs.chmodSync('/dev/net/tun', 0o666);
  return Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
}
