/**
 * The measurements: one path's round (iperf3 TCP, parallel TCP and UDP, request/response, HTTP at
 * 1, 8 and 32 clients, setup and teardown), and the scale, memory-under-load and CPU-per-GB steps.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { iperfNotReady, parseIperf, type IperfResult } from './iperf.js';
import type { Options } from './plan.js';
import { SELF, USER, inNs, run, sleep, start, until } from './procs.js';
import { summarize } from './stats.js';
import { INNER, loopbackFor, nextPorts, publish, rootlessNet, startContainer, startCtr, startDetached, topology, type Ctr, type Env, type Topo, type Who } from './topology.js';

// ---- one measurement round ------------------------------------------------------------------

export type Samples = Record<string, Record<string, Record<string, number[]>>>;

export function add(samples: Samples, p: string, metric: string, tool: string, v: number): void {
  ((samples[p] ??= {})[metric] ??= {})[tool] ??= [];
  samples[p][metric][tool].push(v);
}

export async function startServers(t: Topo): Promise<() => void> {
  const iperf = start(inNs(t.serverNs, ['iperf3', '-s', '--forceflush', '-B', t.bind, '-p', String(t.listen.iperf)]));
  const srv = start(inNs(t.serverNs, [process.execPath, SELF, '--agent', 'serve', t.bind, String(t.listen.http), String(t.listen.echo)]));
  const stop = () => {
    iperf.child.kill('SIGKILL');
    srv.child.kill('SIGKILL');
  };
  try {
    await until(srv, 'ready', 15_000);
    await until(iperf, 'listening', 15_000);
  } catch (err) {
    stop();
    throw err;
  }
  return stop;
}

export async function clientJson<T>(ns: string, argv: string[], limitMs: number): Promise<T> {
  const r = await run(inNs(ns, argv), limitMs);
  if (r.timedOut) throw new Error(`no result within ${limitMs / 1000} s`);
  const line = r.out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (r.code !== 0 || !line) throw new Error(r.out.trim().split('\n').slice(-1)[0] || `exit ${r.code}`);
  return JSON.parse(line) as T;
}

export async function measurePath(env: Env, o: Options, pathName: string, tool: string, samples: Samples, errors: Record<string, string>, progress: (what: string) => void): Promise<void> {
  const key = (m: string) => `${pathName}|${m}|${tool}`;
  progress('setup');
  const t = await topology(env, pathName, tool);
  let stopServers: (() => void) | null = null;
  try {
    add(samples, pathName, 'setup', tool, t.setupMs);
    stopServers = await startServers(t);
    const d = o.durationS;
    const limit = d * 3000 + 10_000;
    const iperf = async (m: string, extra: string[]) => {
      progress(m);
      try {
        let res: IperfResult | undefined;
        for (let attempt = 1; !res; attempt++) {
          const r = await run(inNs(t.clientNs, ['iperf3', '-J', '-c', t.target, '-p', String(t.ports.iperf), '-t', String(d), ...extra]), limit);
          if (r.timedOut) throw new Error(`iperf3 gave no result within ${limit / 1000} s${m === 'udp' ? ' (the UDP test hangs when replies do not come back through this path)' : ''}`);
          try {
            res = parseIperf(r.out);
          } catch (err) {
            if (attempt >= 5 || !iperfNotReady((err as Error).message)) throw err;
            await sleep(200 * attempt); // the server is between two tests
          }
        }
        add(samples, pathName, m, tool, res.gbps);
        if (res.lostPercent !== undefined) add(samples, pathName, 'udp-loss', tool, res.lostPercent);
      } catch (err) {
        errors[key(m)] = (err as Error).message.split('\n')[0];
      }
    };
    await iperf('tcp', []);
    await iperf('tcp-P', ['-P', String(o.parallel)]);
    await iperf('udp', ['-u', '-b', '1G', '-l', '1400']);
    progress('rr');
    try {
      const rr = await clientJson<{ p50us: number; p99us: number }>(t.clientNs, [process.execPath, SELF, '--agent', 'rr', t.target, String(t.ports.echo), String(d)], limit);
      add(samples, pathName, 'rr-p50', tool, rr.p50us);
      add(samples, pathName, 'rr-p99', tool, rr.p99us);
    } catch (err) {
      errors[key('rr')] = (err as Error).message;
    }
    for (const c of [1, 8, 32]) {
      progress(`http-${c}`);
      try {
        const h = await clientJson<{ rps: number; failed: number }>(t.clientNs, [process.execPath, SELF, '--agent', 'http', `http://${t.target.includes(':') ? `[${t.target}]` : t.target}:${t.ports.http}/`, String(d), String(c)], limit);
        if (!(h.rps > 0)) throw new Error(`no request succeeded (${h.failed} failed)`);
        add(samples, pathName, `http-${c}`, tool, h.rps);
      } catch (err) {
        errors[key(`http-${c}`)] = (err as Error).message;
      }
    }
  } finally {
    stopServers?.();
    progress('teardown');
    const ms = await t.teardown();
    add(samples, pathName, 'teardown', tool, ms);
  }
}

// ---- scale and CPU --------------------------------------------------------------------------

export interface ScalePoint {
  tool: string;
  n: number;
  setupWallMs: number;
  setupP50Ms: number;
  teardownWallMs: number;
  rssPerCtrMiB: number;
  /**
   * Proportional set size per container: shared pages (the node, conmon or pasta binary and its
   * libraries) divided among the processes that map them, so what one more container costs.
   */
  pssPerCtrMiB: number;
}

/** Sum of a /proc/PID file's "Field: N kB" over pids, in MiB. */
export function memMiB(pids: number[], file: 'status' | 'smaps_rollup', field: 'VmRSS' | 'Pss'): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      kb += Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/${file}`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return kb / 1024;
}

export const rssMiB = (pids: number[]) => memMiB(pids, 'status', 'VmRSS');
export const pssMiB = (pids: number[]) => memMiB(pids, 'smaps_rollup', 'Pss');

/** pids of the bench user's `name` processes (Debian's pasta runs as "passt.avx2" on most CPUs). */
export function pidsOf(name: string): number[] {
  const r = spawnSync('pgrep', ['-u', USER, '-x', name === 'pasta' ? '(pasta|passt)(\\.avx2)?' : name], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** The processes that carry the network of `ctrs`: pasta's and slirp4netns's run apart from the container. */
export function netPidsOf(tool: string, ctrs: Ctr[]): number[] {
  return tool === 'pasta' || tool === 'slirp4netns' ? pidsOf(tool) : ctrs.flatMap((c) => c.netPids);
}

/**
 * The processes that hold the bench user's network namespace: the helper (-P -L) and its init, the
 * one usernet stack (runtime/network/user_netns.ts's holder.json), and the CNI server while it
 * runs (cni.json; it leaves a minute after the last ADD or DEL). Shared by every container on the
 * user's networks, so a scale point divides them among its containers.
 */
export function userNetnsPids(env: Env): number[] {
  const dir = path.join(os.tmpdir(), `burrow-${env.uid}`, 'burrow', 'netns');
  try {
    const h = JSON.parse(fs.readFileSync(path.join(dir, 'holder.json'), 'utf8')) as { pid: number; stack?: { pid: number } };
    const stat = fs.readFileSync(`/proc/${h.pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    let server = 0;
    try {
      server = (JSON.parse(fs.readFileSync(path.join(dir, 'cni.json'), 'utf8')) as { pid: number }).pid;
    } catch {
      // not running
    }
    return [h.pid, ppid, h.stack?.pid ?? 0, server].filter((p) => p > 1);
  } catch {
    return [];
  }
}

/** The scale section's rootless variant on the bench user's own network (burrow only). */
export const USER_NET_TOOL = 'burrow-usernet';

/** N containers started at once; the memory counted is that of the processes that carry the network. */
export async function scalePoint(env: Env, who: Who, tool: string, n: number): Promise<ScalePoint> {
  const t0 = performance.now();
  const onUserNet = tool === USER_NET_TOOL;
  const args = onUserNet ? ['--network', 'benchun'] : who === 'user' ? rootlessNet(tool) : [];
  // detached, as podman's: a rootful or user-network container is then held by burrow-holder (a
  // usernet container's own stack keeps its Node supervisor: run in the foreground as before)
  const detached = onUserNet || (tool !== 'podman' && who !== 'user');
  const results = await Promise.allSettled(Array.from({ length: n }, () => (detached ? startDetached(env, who, args) : startCtr(env, who, onUserNet ? 'burrow' : tool, args))));
  const wall = performance.now() - t0;
  const ctrs = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  try {
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw new Error(`${n - ctrs.length} of ${n} containers failed: ${(failed.reason as Error).message}`);
    await sleep(500);
    // on a user network: each container's supervisor, and its share of the namespace and the stack
    const netPids = onUserNet ? [...ctrs.flatMap((c) => c.netPids), ...userNetnsPids(env)] : netPidsOf(tool, ctrs);
    const rss = rssMiB(netPids) / n;
    const pss = pssMiB(netPids) / n;
    const s = performance.now();
    await Promise.all(ctrs.map((c) => c.stop()));
    return { tool, n, setupWallMs: wall, setupP50Ms: summarize(ctrs.map((c) => c.setupMs)).p50, teardownWallMs: performance.now() - s, rssPerCtrMiB: rss, pssPerCtrMiB: pss };
  } finally {
    await Promise.all(ctrs.map((c) => c.stop()));
  }
}

export function cpuTicks(pids: number[]): number {
  let t = 0;
  for (const pid of pids) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      t += Number(rest[11]) + Number(rest[12]); // utime, stime
    } catch {
      // gone
    }
  }
  return t;
}

/** MiB of the rootless network process while the container holds 1000 TCP connections to the host. */
export async function rssWithFlows(env: Env, tool: string, flows: number): Promise<number> {
  const port = nextPorts(env).iperf;
  const srv = start([process.execPath, SELF, '--agent', 'hold', '127.0.0.1', String(port)]);
  const lb = loopbackFor(tool);
  let c: Ctr | null = null;
  try {
    await until(srv, 'ready', 10_000);
    c = await startContainer(env, 'user', lb.args);
    const client = start(inNs(c.ns, [process.execPath, SELF, '--agent', 'open', lb.addr, String(port), String(flows)]));
    await until(client, '"open"', 60_000);
    const opened = JSON.parse(client.out().slice(client.out().indexOf('{'))).open as number;
    if (opened < flows) throw new Error(`only ${opened} of ${flows} connections opened`);
    await sleep(500);
    const pids = netPidsOf(tool, [c]);
    const mib = rssMiB(pids);
    client.child.kill('SIGKILL');
    return mib;
  } finally {
    srv.child.kill('SIGKILL');
    await c?.stop();
  }
}

/** CPU seconds the rootless network process spends per GB through a forward from another netns. */
export async function cpuPerGb(env: Env, o: Options, tool: string): Promise<number> {
  const p = nextPorts(env);
  const c = await startContainer(env, 'user', [...rootlessNet(tool), ...publish(p)]);
  const iperf = start(inNs(c.ns, ['iperf3', '-s', '--forceflush', '-p', String(INNER.iperf)]));
  try {
    await until(iperf, 'listening', 15_000);
    const pids = netPidsOf(tool, [c]);
    const before = cpuTicks(pids);
    const r = await run(inNs(env.remote, ['iperf3', '-J', '-c', '10.98.0.1', '-p', String(p.iperf), '-t', String(o.durationS)]), o.durationS * 4000 + 20_000);
    const res = parseIperf(r.out);
    const cpuS = (cpuTicks(pids) - before) / 100; // USER_HZ
    return cpuS / (res.bytes / 1e9);
  } finally {
    iperf.child.kill('SIGKILL');
    await c.stop();
  }
}
