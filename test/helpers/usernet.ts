/** Rootless usernet test support: a user's "host" netns with a "remote" world, test servers, burrow as the user, checks run inside a container. */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { CLI, ROOT } from './burrow.js';
import { nsExec, testNetns, uplink } from './netns.js';

export const SERVERS = path.join(ROOT, 'test', 'fixtures', 'servers.cjs');
export const CHECKS = path.join(ROOT, 'test', 'fixtures', 'container_checks.cjs');

export interface World {
  host: string;
  remote: string;
}

/** A "host" netns (the user's machine) with an uplink to a "remote" netns (v4, and v6 unless `v6: false`). */
export async function world(t: ExecutionContext, o: { v6?: boolean } = {}): Promise<World> {
  const host = testNetns(t, 'uh');
  const remote = testNetns(t, 'ur');
  await uplink(host, remote, '10.98.0.1', '10.98.0.2');
  if (o.v6 === false) return { host, remote };
  nsExec(host, ['ip', 'addr', 'add', 'fd98::1/64', 'dev', 'up0', 'nodad']);
  nsExec(remote, ['ip', 'addr', 'add', 'fd98::2/64', 'dev', 'eth0', 'nodad']);
  nsExec(host, ['ip', '-6', 'route', 'add', 'default', 'via', 'fd98::2']);
  return { host, remote };
}

export interface ServerSpec {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  mode: 'peer' | 'sha' | 'echo' | 'dns' | 'hold' | 'http' | 'dns-a';
  answer?: string;
}

/** Test servers inside `ns` (a separate process), stopped on teardown. */
export async function servers(t: ExecutionContext, ns: string, specs: ServerSpec[]): Promise<ChildProcess> {
  const child = spawn('nsenter', [`--net=${ns}`, '--', process.execPath, SERVERS, JSON.stringify(specs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (c) => reject(new Error(`servers in ${ns} exited with ${c}`)));
  });
  return child;
}

/**
 * `burrow ARGS` as `user` inside the host netns. setpriv execs (runuser would fork and wait), so
 * the returned child is burrow itself and signals reach it.
 */
export function burrowAs(user: string, ns: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const vars = { HOME: `/home/${user}`, USER: user, LOGNAME: user, PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', ...env };
  return spawn('nsenter', [`--net=${ns}`, '--', 'setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', 'env', '-i', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, ...args], { cwd: '/', stdio: ['pipe', 'pipe', 'pipe'] });
}

export function finished(c: ChildProcess): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  c.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => c.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

export interface Check {
  name: string;
  kind: 'tcp' | 'udp' | 'ping' | 'bulk' | 'sh' | 'udperr' | 'write-flood' | 'sleep' | 'hold';
  host?: string;
  port?: number;
  msg?: string;
  send?: string;
  bytes?: number;
  cmd?: string;
  count?: number;
  ms?: number;
}

/** Runs the checks inside a usernet container as `user`; resolves to their results. */
export async function inContainerAs(user: string, ns: string, usernetArgs: string[], checks: Check[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const r = await finished(burrowAs(user, ns, ['unshare', '--network', 'usernet', ...usernetArgs, '--', process.execPath, CHECKS, JSON.stringify(checks)], env));
  if (r.code !== 0) throw new Error(`container failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}
