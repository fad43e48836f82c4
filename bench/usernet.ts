/**
 * bench/usernet: burrow's userspace stack against the rootless anchors installed from Debian,
 * pasta (passt) and slirp4netns, in one run on one machine, as ratios.
 *
 * Paths (each tool runs an unprivileged container, as a real unprivileged user):
 *   out-loopback   TCP from the container to an iperf3 server on the host's loopback
 *   fwd-loopback   TCP through a port forward, client on the host's 127.0.0.1
 *   fwd-remote     TCP through a port forward, client in another namespace (TAP path; burrow
 *                  and pasta keep its source address, slirp4netns does not)
 *   http-32        HTTP requests/s, 32 concurrent undici clients from another namespace through
 *                  a port forward, against the same small Node server inside
 *   rss-1000       resident memory of the network process while the container holds 1000 TCP
 *                  connections to the host
 *
 * Everything runs in namespaces the bench creates: it re-runs itself in a fresh "host" netns
 * linked to a "remote" netns, with a throwaway user; both are removed at the end, also on Ctrl-C.
 * Runs are interleaved (burrow pasta slirp4netns, burrow pasta slirp4netns, ...).
 *
 *   tsx bench/usernet.ts [--duration S] [--runs N] [--only path,path] [--json FILE]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { netnsCreate, netnsRemove } from '../native/mod.js';
import { formatRatio, renderTable, summarize, type Summary } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'burrow.cjs');
const SERVERS = path.join(ROOT, 'test', 'fixtures', 'servers.cjs');
const CHECKS = path.join(ROOT, 'test', 'fixtures', 'container_checks.cjs');
const USER = 'burrowbench';
const TOOLS = ['burrow', 'pasta', 'slirp4netns'] as const;
type Tool = (typeof TOOLS)[number];
const PATHS = ['out-loopback', 'fwd-loopback', 'fwd-remote', 'http-32', 'rss-1000'] as const;
type PathName = (typeof PATHS)[number];

interface Options {
  durationS: number;
  runs: number;
  only: PathName[];
  json?: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { durationS: 3, runs: 3, only: [...PATHS] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--duration') o.durationS = Number(argv[++i]);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--only') o.only = argv[++i].split(',') as PathName[];
    else if (a === '--json') o.json = argv[++i];
    else throw new Error(`unknown argument ${a}`);
  }
  for (const p of o.only) if (!PATHS.includes(p)) throw new Error(`unknown path ${p} (known: ${PATHS.join(', ')})`);
  return o;
}

function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- outer: namespaces and user ------------------------------------------------------------

async function outer(argv: string[]): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('bench/usernet needs root (it creates namespaces and a throwaway user)');
  const tag = process.pid.toString(36);
  const host = netnsCreate(`ubh${tag}`);
  const remote = netnsCreate(`ubr${tag}`);
  const createdUser = spawnSync('id', ['-u', USER]).status !== 0;
  if (createdUser) spawnSync('useradd', ['-m', USER]);
  fs.chmodSync('/dev/net/tun', 0o666);
  const cleanup = () => {
    spawnSync('pkill', ['-9', '-u', USER]);
    netnsRemove(host);
    netnsRemove(remote);
    if (createdUser) spawnSync('userdel', ['-r', USER], { stdio: 'ignore' });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const ip = (ns: string, cmd: string) => spawnSync('nsenter', [`--net=${ns}`, '--', 'sh', '-c', cmd], { stdio: 'inherit' });
    ip(host, 'ip link set lo up');
    spawnSync('ip', ['link', 'add', 'up0', 'netns', path.basename(host), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', path.basename(remote)]);
    ip(host, 'ip addr add 10.98.0.1/24 dev up0 && ip link set up0 up && ip route add default via 10.98.0.2');
    ip(remote, 'ip link set lo up && ip addr add 10.98.0.2/24 dev eth0 && ip link set eth0 up');
    const child = spawn('nsenter', [`--net=${host}`, '--', process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...argv], {
      stdio: 'inherit', env: { ...process.env, BURROW_BENCH_INNER: host, BURROW_BENCH_REMOTE: remote },
    });
    return await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  } finally {
    cleanup();
  }
}

// ---- containers per tool -------------------------------------------------------------------

/** Runs argv as the bench user (setpriv execs, so signals reach the process itself). */
function asUser(argv: string[], stdio: 'pipe' | 'ignore' = 'pipe'): ChildProcess {
  return spawn('setpriv', [`--reuid=${USER}`, `--regid=${USER}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${USER}`, `USER=${USER}`, 'PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', ...argv], { stdio: ['pipe', stdio, stdio], cwd: '/' });
}

interface Container {
  /** The process that runs the network (for RSS). */
  netPid: () => number;
  proc: ChildProcess;
  out: () => string;
  stop: () => Promise<void>;
}

interface Launch {
  /** "P:C" forwards: hostPort:containerPort, bound to 127.0.0.1 or to every address. */
  forwards: Array<{ hostPort: number; ctrPort: number; loopbackOnly: boolean }>;
  mapLoopback: boolean;
  cmd: string[];
}

function collect(p: ChildProcess): () => string {
  let s = '';
  p.stdout?.on('data', (d: Buffer) => (s += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (s += d.toString()));
  return () => s;
}

async function launch(tool: Tool, l: Launch): Promise<Container> {
  if (tool === 'burrow') {
    const args = ['unshare', '--network', 'usernet', ...(l.mapLoopback ? ['--map-host-loopback', '10.0.2.2'] : []), ...l.forwards.flatMap((f) => ['-p', `${f.loopbackOnly ? '127.0.0.1:' : ''}${f.hostPort}:${f.ctrPort}`]), '--', ...l.cmd];
    const proc = asUser([process.execPath, CLI, ...args]);
    return { proc, out: collect(proc), netPid: () => proc.pid!, stop: () => stopProc(proc) };
  }
  if (tool === 'pasta') {
    const fwd = l.forwards.length ? l.forwards.flatMap((f) => ['-t', `${f.loopbackOnly ? '127.0.0.1/' : ''}${f.hostPort}:${f.ctrPort}`]) : ['-t', 'none'];
    // The 2023 pasta maps its gateway address to the host's loopback unless --no-map-gw.
    const args = ['pasta', '--config-net', '--mtu', '65520', '-T', 'none', '-U', 'none', '-u', 'none', ...fwd, ...(l.mapLoopback ? [] : ['--no-map-gw']), '--', ...l.cmd];
    const proc = asUser(args);
    return { proc, out: collect(proc), netPid: () => proc.pid!, stop: () => stopProc(proc) };
  }
  // slirp4netns: the container waits on stdin until the network and its forwards are ready.
  const api = path.join(os.tmpdir(), `slirp-${process.pid}-${Date.now()}.sock`);
  const proc = asUser(['unshare', '--user', '--map-root-user', '--net', '--', 'sh', '-c', 'read _go; exec "$@"', 'sh', ...l.cmd]);
  const out = collect(proc);
  await sleep(100);
  const slirp = asUser(['slirp4netns', '--configure', '--mtu', '65520', ...(l.mapLoopback ? [] : ['--disable-host-loopback']), '--api-socket', api, String(proc.pid), 'tap0'], 'ignore');
  for (let i = 0; i < 100 && !fs.existsSync(api); i++) await sleep(20);
  for (const f of l.forwards) {
    const reply = await slirpApi(api, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: f.loopbackOnly ? '127.0.0.1' : '0.0.0.0', host_port: f.hostPort, guest_port: f.ctrPort } });
    if (!reply.includes('return')) throw new Error(`slirp4netns add_hostfwd: ${reply}`);
  }
  proc.stdin!.write('go\n');
  return {
    proc, out, netPid: () => slirp.pid!,
    stop: async () => {
      await stopProc(proc);
      await stopProc(slirp);
      fs.rmSync(api, { force: true });
    },
  };
}

/** One request on slirp4netns's API socket (it answers and closes). */
function slirpApi(sock: string, req: unknown): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect(sock, () => c.write(JSON.stringify(req)));
    let out = '';
    c.on('data', (d) => (out += d));
    c.on('end', () => resolve(out));
    c.on('error', (e) => resolve(`error ${e.message}`));
    setTimeout(() => {
      c.destroy();
      resolve(out);
    }, 2000);
  });
}

async function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 3000);
  await done;
  clearTimeout(t);
}

async function waitFor(c: Container, text: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!c.out().includes(text)) {
    if (Date.now() > end || c.proc.exitCode !== null) throw new Error(`container never printed "${text}": ${c.out().slice(-400)}`);
    await sleep(20);
  }
}

// ---- measurements --------------------------------------------------------------------------

function iperfGbps(json: string): number {
  const j = JSON.parse(json) as { end?: { sum_received?: { bits_per_second: number } }; error?: string };
  if (!j.end?.sum_received) throw new Error(`iperf3 failed: ${j.error ?? json.slice(0, 200)}`);
  return j.end.sum_received.bits_per_second / 1e9;
}

function inNs(ns: string | null, argv: string[]): string[] {
  return ns ? ['nsenter', `--net=${ns}`, '--', ...argv] : argv;
}

async function run(argv: string[]): Promise<string> {
  const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = collect(p);
  await new Promise((r) => p.once('close', r));
  return out();
}

let portBase = 20000;

async function measure(tool: Tool, p: PathName, o: Options, remote: string): Promise<number> {
  const port = portBase++;
  if (p === 'out-loopback') {
    const srv = spawn('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    await sleep(200);
    const gw = tool === 'pasta' ? '10.98.0.2' : '10.0.2.2';
    const c = await launch(tool, { forwards: [], mapLoopback: true, cmd: ['iperf3', '-J', '-c', gw, '-p', String(port), '-t', String(o.durationS)] });
    await new Promise((r) => c.proc.once('exit', r));
    await sleep(100);
    await c.stop();
    srv.kill();
    return iperfGbps(c.out().slice(c.out().indexOf('{')));
  }
  if (p === 'fwd-loopback' || p === 'fwd-remote') {
    const c = await launch(tool, { forwards: [{ hostPort: port, ctrPort: 5201, loopbackOnly: false }], mapLoopback: false, cmd: ['sh', '-c', 'iperf3 -s -1 & sleep 0.3; echo listening; wait'] });
    try {
      await waitFor(c, 'listening');
      await sleep(200);
      const target = p === 'fwd-loopback' ? '127.0.0.1' : '10.98.0.1';
      const out = await run(inNs(p === 'fwd-remote' ? remote : null, ['iperf3', '-J', '-c', target, '-p', String(port), '-t', String(o.durationS)]));
      return iperfGbps(out);
    } finally {
      await c.stop();
    }
  }
  if (p === 'http-32') {
    const c = await launch(tool, { forwards: [{ hostPort: port, ctrPort: 8080, loopbackOnly: false }], mapLoopback: false, cmd: [process.execPath, SERVERS, JSON.stringify([{ proto: 'tcp', host: '0.0.0.0', port: 8080, mode: 'http' }])] });
    try {
      await waitFor(c, 'ready');
      await sleep(200);
      const out = await run(inNs(remote, [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), '--http-client', `http://10.98.0.1:${port}/`, String(o.durationS), '32']));
      const m = /rps (\d+) failed (\d+)/.exec(out);
      if (!m || !Number(m[1])) throw new Error(`http client failed: ${out.slice(-300)}`);
      if (Number(m[2]) > 0) process.stderr.write(` (${tool}: ${m[2]} failed requests)`);
      const rps = Number(m[1]);
      return rps;
    } finally {
      await c.stop();
    }
  }
  // rss-1000: the container holds 1000 connections to a host-loopback server.
  const srv = spawn(process.execPath, [SERVERS, JSON.stringify([{ proto: 'tcp', host: '127.0.0.1', port, mode: 'hold' }])], { stdio: ['ignore', 'pipe', 'ignore'] });
  const srvOut = collect(srv);
  while (!srvOut().includes('ready')) await sleep(20);
  const gw = tool === 'pasta' ? '10.98.0.2' : '10.0.2.2';
  const c = await launch(tool, { forwards: [], mapLoopback: true, cmd: [process.execPath, CHECKS, JSON.stringify([{ name: 'h', kind: 'hold', host: gw, port, count: 1000, ms: 4000 }])] });
  try {
    await waitFor(c, 'held', 30_000);
    const held = Number(/held (\d+)/.exec(c.out())![1]);
    if (held < 1000) throw new Error(`only ${held} of 1000 connections opened`);
    await sleep(500);
    const status = fs.readFileSync(`/proc/${c.netPid()}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
  } finally {
    await c.stop();
    srv.kill();
  }
}

/** --http-client URL SECONDS CONCURRENCY: prints "rps N" (runs in the remote namespace). */
async function httpClient(url: string, seconds: number, concurrency: number): Promise<void> {
  const { Pool } = await import('undici');
  const u = new URL(url);
  // A request that stalls (a forwarder that drops it) counts as failed instead of hanging the run.
  const pool = new Pool(u.origin, { connections: concurrency, pipelining: 1, headersTimeout: 5000, bodyTimeout: 5000, connectTimeout: 5000 });
  let done = 0;
  let failed = 0;
  const end = Date.now() + seconds * 1000;
  const worker = async () => {
    while (Date.now() < end) {
      try {
        const r = await pool.request({ path: u.pathname, method: 'GET' });
        await r.body.text();
        done++;
      } catch {
        failed++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const secs = (performance.now() - t0) / 1000;
  await pool.close();
  console.log(`rps ${(done / secs).toFixed(0)} failed ${failed}`);
}

// ---- inner: the run -------------------------------------------------------------------------

const UNITS: Record<PathName, string> = { 'out-loopback': 'Gbit/s', 'fwd-loopback': 'Gbit/s', 'fwd-remote': 'Gbit/s', 'http-32': 'req/s', 'rss-1000': 'MiB' };

async function inner(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  const remote = process.env.BURROW_BENCH_REMOTE!;
  const tools = TOOLS.filter((t) => t === 'burrow' || have(t));
  const samples: Record<string, number[]> = {};
  const errors: Record<string, string> = {};
  for (const p of o.only) {
    for (let r = 0; r < o.runs; r++) {
      for (const tool of tools) {
        const key = `${p}|${tool}`;
        if (errors[key]) continue;
        process.stderr.write(`\r${p} run ${r + 1}/${o.runs} ${tool}          `);
        try {
          const limitMs = o.durationS * 5000 + 30_000;
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no result within ${limitMs / 1000} s`)), limitMs);
          });
          const value = await Promise.race([measure(tool, p, o, remote), timeout]);
          (samples[key] ??= []).push(value);
          clearTimeout(timer);
        } catch (err) {
          errors[key] = (err as Error).message.split('\n')[0];
        }
        // Whatever a tool left running (servers, helpers) goes before the next measurement.
        spawnSync('pkill', ['-9', '-u', USER]);
        await sleep(100);
      }
    }
  }
  process.stderr.write('\r\n');
  const rows = [['path', 'unit', ...tools.flatMap((t) => (t === 'burrow' ? ['burrow'] : [t, `burrow/${t}`]))]];
  const summary: Record<string, Summary> = {};
  for (const [k, v] of Object.entries(samples)) summary[k] = summarize(v);
  for (const p of o.only) {
    const b = summary[`${p}|burrow`];
    const row = [p, UNITS[p]];
    for (const t of tools) {
      const s = summary[`${p}|${t}`];
      const cell = s ? `${s.p50.toFixed(p === 'http-32' ? 0 : 2)} ±${((s.max - s.min) / 2).toFixed(p === 'http-32' ? 0 : 2)}` : errors[`${p}|${t}`] ? 'error' : '-';
      row.push(cell);
      // Lower is better for memory: the ratio is anchor/burrow there, so > 1 always means burrow leads.
      if (t !== 'burrow') row.push(s && b ? (p === 'rss-1000' ? formatRatio(s.p50, b.p50) : formatRatio(b.p50, s.p50)) : '-');
    }
    rows.push(row);
  }
  console.log(renderTable(rows));
  console.log(`medians of ${o.runs} interleaved runs of ${o.durationS} s; ± is half the range. Ratios > 1.00x mean burrow leads (for rss-1000: uses less memory).`);
  for (const [k, e] of Object.entries(errors)) console.log(`error ${k}: ${e}`);
  if (o.json) fs.writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), kernel: os.release(), cpus: os.cpus().length, tools, samples, errors }, null, 1));
  return 0;
}

const argv = process.argv.slice(2);
const main = argv[0] === '--http-client'
  ? httpClient(argv[1], Number(argv[2]), Number(argv[3])).then(() => 0)
  : process.env.BURROW_BENCH_INNER ? inner(argv) : outer(argv);
main.then((code) => process.exit(code), (err: Error) => {
  console.error(`bench/usernet: ${err.message}`);
  process.exit(1);
});
