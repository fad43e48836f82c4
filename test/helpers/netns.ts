/** Throwaway network namespaces for integration tests, removed on teardown. */
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { netnsCreate, netnsRemove } from '../../native/mod.js';

let counter = 0;

/** True when this process may create namespaces and links (root). */
export function privileged(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Integration tests need root. Outside CI they skip with a reason; in CI a
 * missing privilege is a failure, because a skipped test proves nothing.
 */
export function requireRoot(t: ExecutionContext): boolean {
  if (privileged()) return true;
  if (process.env.CI) t.fail('integration tests must run as root in CI');
  else t.log('SKIP: needs root');
  return false;
}

/** A unique short name (netns, links) for this test process. */
export function uniqueName(prefix: string): string {
  return `${prefix}${process.pid.toString(36)}${(counter++).toString(36)}`.slice(0, 15);
}

/** Creates a named netns under /run/netns and removes it when the test ends. */
export function testNetns(t: ExecutionContext, prefix = 'bt'): string {
  const path = netnsCreate(uniqueName(prefix));
  t.teardown(() => {
    netnsRemove(path);
  });
  return path;
}

/** Runs a command inside a netns (ip netns exec equivalent via nsenter) and returns stdout. */
export function nsExec(netns: string, cmd: string[], input?: string): string {
  return execFileSync('nsenter', [`--net=${netns}`, '--', ...cmd], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** `ip -j ...` inside a netns, parsed. */
export function ipJson<T = unknown>(netns: string, args: string[]): T {
  const out = nsExec(netns, ['ip', '-j', ...args]);
  return (out.trim() ? JSON.parse(out) : []) as T;
}
