/**
 * `burrow bench`: rootful against rootless networking, burrow against the established tools, in
 * one process on one machine, always as ratios.
 *
 * Every container is a real `burrow run` (so setup and teardown are what users get). Rootful
 * paths run twice, once with burrow's plugins and once with Debian's reference CNI plugins driven
 * by the same runtime (the "reference" anchor, cni_path = /usr/lib/cni); rootless paths run on
 * burrow's userspace stack and, where installed, on pasta and slirp4netns (`--network pasta` /
 * `--network slirp4netns`, which hand the container to those tools). Where podman is installed,
 * rootful paths also run as `podman run -d` on its CNI backend with the reference plugins (the
 * "podman" anchor: podman's own start-up and teardown around the same plugins; bench/podman.ts).
 * Servers (iperf3, an HTTP server, a TCP echo server) and clients (iperf3, undici, a 1-byte
 * request/response loop) are started by nsenter in the right network namespace, so each path
 * carries exactly its traffic.
 *
 * Runs are interleaved: run 1 of every path and tool, then run 2, ... so drift hits every tool
 * alike. A ratio whose runs spread by more than ±25 % is flagged.
 *
 * Isolation: the bench re-runs itself inside a "host" network namespace of its own linked to a
 * "remote" one (10.98.0.1 <-> 10.98.0.2), with its own burrow state, CNI config and cache in a
 * temp dir and a throwaway user for rootless runs. Every process it starts carries a tag in its
 * environment; at the end (also on Ctrl-C or a crash) the outer process kills every tagged
 * process and removes the namespaces, the user and the temp dir, so nothing is left behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { agent } from './agent.js';
import { dnsBench, renderDns, type DnsReport } from './dns.js';
import { helpersBench, renderHelpers, type HelpersReport } from './podman_helpers.js';
import { iperfNotReady, iperfVersion, parseIperf, type IperfResult } from './iperf.js';
import { parsePodmanInspect, podmanArgv, podmanLayout, podmanMissing, preparePodman, removePodmanState, unmountUnder } from './podman.js';
import { renderTable, summarize, untrustworthy, type Summary } from './stats.js';
import { renderSvg, type BarPanel, type Chart, type LinePanel } from './svg.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The install root: bench/ or dist/ sits one level below it. */
const ROOT = path.resolve(HERE, '..');
const CLI = path.join(ROOT, 'dist', 'burrow.cjs');
const SELF = path.join(ROOT, 'dist', 'bench.cjs');
const USER = 'burrowbench';
const REFERENCE_DIR = '/usr/lib/cni';

// ---- what is measured ------------------------------------------------------------------------

type Kind = 'rootful' | 'rootless' | 'pod';

export const PATHS: Array<{ name: string; kind: Kind; title: string }> = [
  { name: 'bridge-c2h', kind: 'rootful', title: 'rootful bridge, container -> host' },
  { name: 'bridge-h2c', kind: 'rootful', title: 'rootful bridge, host -> container' },
  { name: 'portmap-lo', kind: 'rootful', title: 'rootful -p, client on 127.0.0.1' },
  { name: 'portmap-remote', kind: 'rootful', title: 'rootful -p, client in another netns' },
  { name: 'bridge-c2c', kind: 'rootful', title: 'rootful, container -> container, one bridge' },
  { name: 'macvlan-c2c', kind: 'rootful', title: 'rootful macvlan, container -> container' },
  { name: 'rootless-out', kind: 'rootless', title: 'rootless, container -> host loopback' },
  { name: 'rootless-fwd-lo', kind: 'rootless', title: 'rootless -p, client on 127.0.0.1' },
  { name: 'rootless-fwd-remote', kind: 'rootless', title: 'rootless -p, client in another netns' },
  { name: 'rootless-c2c', kind: 'rootless', title: 'rootless container -> container via published port' },
  { name: 'rootless-pod', kind: 'pod', title: 'rootless, two containers in one pod (localhost)' },
  // burrow only (the anchors have no user networks): read it against bridge-c2c, rootful
  { name: 'rootless-net-c2c', kind: 'pod', title: 'rootless, container -> container, one user network' },
  // -p on a user network (the one stack's forward, then portmap's DNAT): read against rootless-fwd-*
  { name: 'rootless-net-fwd-lo', kind: 'pod', title: 'rootless -p on a user network, client on 127.0.0.1' },
  { name: 'rootless-net-fwd-remote', kind: 'pod', title: 'rootless -p on a user network, client in another netns' },
];

export interface MetricDef {
  name: string;
  unit: string;
  higherIsBetter: boolean;
}

export const METRICS: MetricDef[] = [
  { name: 'tcp', unit: 'Gbit/s', higherIsBetter: true },
  { name: 'tcp-P', unit: 'Gbit/s', higherIsBetter: true },
  { name: 'udp', unit: 'Gbit/s', higherIsBetter: true },
  { name: 'udp-loss', unit: '%', higherIsBetter: false },
  { name: 'rr-p50', unit: 'us', higherIsBetter: false },
  { name: 'rr-p99', unit: 'us', higherIsBetter: false },
  { name: 'http-1', unit: 'req/s', higherIsBetter: true },
  { name: 'http-8', unit: 'req/s', higherIsBetter: true },
  { name: 'http-32', unit: 'req/s', higherIsBetter: true },
  { name: 'setup', unit: 'ms', higherIsBetter: false },
  { name: 'teardown', unit: 'ms', higherIsBetter: false },
];

export interface Options {
  durationS: number;
  runs: number;
  parallel: number;
  only: string[];
  json?: string;
  svg?: string;
  anchors: 'auto' | 'none';
  /** Container counts for the scale section (rootless uses those up to 50). */
  scale: number[];
}

export const SECTIONS = ['scale', 'cpu', 'dns', 'podman-helpers'];

export function parseOptions(argv: string[]): Options {
  const o: Options = { durationS: 3, runs: 3, parallel: 4, only: [...PATHS.map((p) => p.name), ...SECTIONS], anchors: 'auto', scale: [1, 10, 50, 100] };
  const num = (flag: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${flag} wants a number >= ${min}, not "${v ?? ''}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--duration') o.durationS = num(a, argv[++i], 0.5);
    else if (a === '--runs') o.runs = Math.round(num(a, argv[++i], 1));
    else if (a === '--parallel') o.parallel = Math.round(num(a, argv[++i], 2));
    else if (a === '--only') o.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--json') o.json = argv[++i];
    else if (a === '--svg') o.svg = argv[++i];
    else if (a === '--anchors') {
      const v = argv[++i];
      if (v !== 'auto' && v !== 'none') throw new Error(`--anchors is auto or none, not "${v ?? ''}"`);
      o.anchors = v;
    } else if (a === '--scale') o.scale = (argv[++i] ?? '').split(',').map((s) => num('--scale', s, 1));
    else throw new Error(`unknown argument "${a}" (burrow bench --help)`);
  }
  const known = [...PATHS.map((p) => p.name), ...SECTIONS];
  for (const p of o.only) if (!known.includes(p)) throw new Error(`--only: unknown path or section "${p}" (known: ${known.join(', ')})`);
  if (!o.only.length) throw new Error('--only names nothing to measure');
  return o;
}

// ---- processes ------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TAG = process.env.BURROW_BENCH_TAG ?? `bb${process.pid.toString(36)}`;
const tracked = new Set<ChildProcess>();

interface Proc {
  child: ChildProcess;
  out: () => string;
  done: Promise<number>;
}

function start(argv: string[], stdin: 'ignore' | 'pipe' = 'ignore'): Proc {
  const child = spawn(argv[0], argv.slice(1), { stdio: [stdin, 'pipe', 'pipe'], cwd: '/', env: { ...process.env, BURROW_BENCH_TAG: TAG, NODE_EXTRA_CA_CERTS: '' } });
  tracked.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<number>((resolve) => child.on('close', (code, sig) => {
    tracked.delete(child);
    resolve(code ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : 1));
  }));
  return { child, out: () => out, done };
}

/** Runs argv to completion (killed after `limitMs`); resolves to its output. */
async function run(argv: string[], limitMs = 60_000): Promise<{ code: number; out: string; timedOut: boolean }> {
  const p = start(argv);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    p.child.kill('SIGKILL');
  }, limitMs);
  const code = await p.done;
  clearTimeout(timer);
  return { code, out: p.out(), timedOut };
}

async function until(p: Proc, text: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!p.out().includes(text)) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`exited before "${text}": ${p.out().trim().split('\n').slice(-2).join(' | ')}`);
    if (Date.now() > end) throw new Error(`no "${text}" within ${ms / 1000} s: ${p.out().trim().split('\n').slice(-2).join(' | ')}`);
    await sleep(5);
  }
}

const inNs = (ns: string, argv: string[]) => ['nsenter', `--net=${ns}`, '--', ...argv];

// ---- burrow invocations ---------------------------------------------------------------------

/**
 * Who runs burrow: root with burrow's plugins, root with the reference plugins, the bench user, or
 * (for podman's networks, which `burrow network create` writes in podman's format) root on podman's dir.
 */
type Who = 'own' | 'ref' | 'pm' | 'user';

interface Env {
  dir: string;
  host: string;
  remote: string;
  configs: Record<'own' | 'ref' | 'pm', string>;
  uid: number;
}

function burrowArgv(env: Env, who: Who, args: string[]): string[] {
  if (who === 'user') {
    return ['setpriv', `--reuid=${USER}`, `--regid=${USER}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${USER}`, `USER=${USER}`, 'PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', `BURROW_BENCH_TAG=${TAG}`, process.execPath, CLI, ...args];
  }
  return [process.execPath, CLI, '--config', env.configs[who], ...args];
}

async function burrow(env: Env, who: Who, args: string[]): Promise<string> {
  const r = await run(burrowArgv(env, who, args));
  if (r.code !== 0) throw new Error(`burrow ${args.slice(0, 3).join(' ')}: ${r.out.trim().split('\n').slice(-1)[0]}`);
  return r.out;
}

interface Ctr {
  name: string;
  /** The processes that hold the container's network: burrow's supervisor, or podman's conmon. */
  netPids: number[];
  setupMs: number;
  ns: string;
  ip: string;
  /** Stops the container (SIGTERM to burrow); resolves to the teardown time in ms. */
  stop: () => Promise<number>;
}

let counter = 0;

/** `burrow run --rm` of a container that only waits; resolves once its command runs. */
async function startContainer(env: Env, who: Who, args: string[]): Promise<Ctr> {
  const name = `b${TAG}${counter++}`;
  const t0 = performance.now();
  const proc = start(burrowArgv(env, who, ['run', '--rm', '--name', name, ...args, '--', 'sh', '-c', 'echo up; exec sleep 100000']));
  await until(proc, 'up', 60_000);
  const setupMs = performance.now() - t0;
  const rec = JSON.parse(await burrow(env, who, ['inspect', name]))[0] as { initPid: number; ips?: string[] };
  const stop = async () => {
    if (proc.child.exitCode !== null) return 0;
    const s = performance.now();
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 20_000);
    await proc.done;
    clearTimeout(timer);
    return performance.now() - s;
  };
  return { name, netPids: [proc.child.pid!], setupMs, ns: `/proc/${rec.initPid}/ns/net`, ip: rec.ips?.[0] ?? '', stop };
}

/** `podman run -d` of a container that only waits (podman returns once it runs); stop = `podman rm -f -t 0`. */
async function startPodman(env: Env, args: string[]): Promise<Ctr> {
  const l = podmanLayout(env.dir);
  const name = `b${TAG}${counter++}`;
  const t0 = performance.now();
  const r = await run(podmanArgv(l, ['run', '-d', '--name', name, ...args, '--rootfs', l.rootfs, '/bin/sh', '-c', 'exec sleep 100000']), 120_000);
  const setupMs = performance.now() - t0;
  const remove = async () => run(podmanArgv(l, ['rm', '-f', '-t', '0', name]), 120_000);
  if (r.code !== 0) {
    await remove();
    throw new Error(`podman run: ${r.out.trim().split('\n').slice(-1)[0]}`);
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return 0;
    stopped = true;
    const s = performance.now();
    const rm = await remove();
    if (rm.code !== 0) throw new Error(`podman rm: ${rm.out.trim().split('\n').slice(-1)[0]}`);
    return performance.now() - s;
  };
  try {
    const inspect = await run(podmanArgv(l, ['inspect', name]));
    const c = parsePodmanInspect(inspect.out);
    return { name, netPids: c.conmonPid ? [c.conmonPid] : [], setupMs, ns: c.ns, ip: c.ip, stop };
  } catch (err) {
    await stop().catch(() => 0);
    throw err;
  }
}

/** A waiting container of `tool`: podman's own, or burrow's (with burrow's or the reference plugins, or rootless). */
const startCtr = (env: Env, who: Who, tool: string, args: string[]) => (tool === 'podman' ? startPodman(env, args) : startContainer(env, who, args));

// ---- topologies -----------------------------------------------------------------------------

interface Topo {
  serverNs: string;
  /** Address the servers bind to. */
  bind: string;
  clientNs: string;
  target: string;
  /** Ports the client connects to (published host ports where there is a forward). */
  ports: { iperf: number; http: number; echo: number };
  /** Ports the servers listen on. */
  listen: { iperf: number; http: number; echo: number };
  setupMs: number;
  teardown: () => Promise<number>;
}

let portBase = 21000;

function nextPorts(): { iperf: number; http: number; echo: number } {
  const b = portBase;
  portBase += 4;
  return { iperf: b, http: b + 1, echo: b + 2 };
}

const INNER = { iperf: 5201, http: 8080, echo: 7777 };
const publish = (p: { iperf: number; http: number; echo: number }, addr = '') => [
  '-p', `${addr}${p.iperf}:${INNER.iperf}`, '-p', `${addr}${p.iperf}:${INNER.iperf}/udp`, '-p', `${addr}${p.http}:${INNER.http}`, '-p', `${addr}${p.echo}:${INNER.echo}`,
];

/** The address a rootless container reaches the host's loopback at, per tool. */
function loopbackFor(tool: string): { args: string[]; addr: string } {
  if (tool === 'burrow') return { args: ['--map-host-loopback', '10.0.2.2'], addr: '10.0.2.2' };
  if (tool === 'slirp4netns') return { args: ['--network', 'slirp4netns', '--map-host-loopback', '10.0.2.2'], addr: '10.0.2.2' };
  // pasta maps its gateway address (the host's default gateway) to the host
  return { args: ['--network', 'pasta', '--map-host-loopback', '10.98.0.2'], addr: '10.98.0.2' };
}

const rootlessNet = (tool: string) => (tool === 'burrow' ? [] : ['--network', tool]);

async function gatewayOf(ns: string): Promise<string> {
  const r = await run(inNs(ns, ['ip', '-4', 'route', 'show', 'default']));
  const m = /via (\S+)/.exec(r.out);
  if (!m) throw new Error(`no default route in the container: ${r.out}`);
  return m[1];
}

function whoRuns(tool: string, kind: Kind): Who {
  return tool === 'reference' ? 'ref' : tool === 'podman' ? 'pm' : kind === 'rootful' ? 'own' : 'user';
}

async function topology(env: Env, pathName: string, tool: string): Promise<Topo> {
  const who = whoRuns(tool, PATHS.find((p) => p.name === pathName)!.kind);
  const ctr = (args: string[]) => startCtr(env, who, tool, args);
  const stops: Array<() => Promise<number>> = [];
  const teardown = async () => {
    let first = 0;
    for (const [i, s] of stops.entries()) {
      const ms = await s();
      if (i === 0) first = ms;
    }
    return first;
  };
  try {
    switch (pathName) {
      case 'bridge-c2h': {
        const c = await ctr([]);
        stops.push(c.stop);
        const p = nextPorts();
        return { serverNs: env.host, bind: '0.0.0.0', clientNs: c.ns, target: await gatewayOf(c.ns), ports: p, listen: p, setupMs: c.setupMs, teardown };
      }
      case 'bridge-h2c': {
        const c = await ctr([]);
        stops.push(c.stop);
        return { serverNs: c.ns, bind: '0.0.0.0', clientNs: env.host, target: c.ip, ports: INNER, listen: INNER, setupMs: c.setupMs, teardown };
      }
      case 'portmap-lo':
      case 'portmap-remote':
      case 'rootless-fwd-lo':
      case 'rootless-fwd-remote':
      case 'rootless-net-fwd-lo':
      case 'rootless-net-fwd-remote': {
        const p = nextPorts();
        const rootless = pathName.startsWith('rootless');
        const net = pathName.startsWith('rootless-net') ? ['--network', 'benchun'] : rootless ? rootlessNet(tool) : [];
        const c = await ctr([...net, ...publish(p)]);
        stops.push(c.stop);
        const remote = pathName.endsWith('remote');
        return { serverNs: c.ns, bind: '0.0.0.0', clientNs: remote ? env.remote : env.host, target: remote ? '10.98.0.1' : '127.0.0.1', ports: p, listen: INNER, setupMs: c.setupMs, teardown };
      }
      case 'bridge-c2c':
      case 'macvlan-c2c': {
        const net = pathName === 'macvlan-c2c' ? ['--network', 'benchmv'] : [];
        const a = await ctr(net);
        stops.push(a.stop);
        const b = await ctr(net);
        stops.push(b.stop);
        return { serverNs: a.ns, bind: '0.0.0.0', clientNs: b.ns, target: a.ip, ports: INNER, listen: INNER, setupMs: a.setupMs, teardown };
      }
      case 'rootless-out': {
        const lb = loopbackFor(tool);
        const c = await ctr(lb.args);
        stops.push(c.stop);
        const p = nextPorts();
        return { serverNs: env.host, bind: '127.0.0.1', clientNs: c.ns, target: lb.addr, ports: p, listen: p, setupMs: c.setupMs, teardown };
      }
      case 'rootless-c2c': {
        const p = nextPorts();
        const a = await ctr([...rootlessNet(tool), ...publish(p)]);
        stops.push(a.stop);
        const lb = loopbackFor(tool);
        const b = await ctr(lb.args);
        stops.push(b.stop);
        return { serverNs: a.ns, bind: '0.0.0.0', clientNs: b.ns, target: lb.addr, ports: p, listen: INNER, setupMs: a.setupMs, teardown };
      }
      case 'rootless-net-c2c': {
        // both on the bench user's own bridge network, inside the user's network namespace
        const a = await ctr(['--network', 'benchun']);
        stops.push(a.stop);
        const b = await ctr(['--network', 'benchun']);
        stops.push(b.stop);
        return { serverNs: a.ns, bind: '0.0.0.0', clientNs: b.ns, target: a.ip, ports: INNER, listen: INNER, setupMs: a.setupMs, teardown };
      }
      case 'rootless-pod': {
        const pod = `p${TAG}${counter++}`;
        await burrow(env, who, ['pod', 'create', '--name', pod]);
        stops.push(async () => {
          const s = performance.now();
          await run(burrowArgv(env, who, ['pod', 'rm', '-f', '-t', '2', pod]));
          return performance.now() - s;
        });
        const a = await ctr(['--pod', pod]);
        const b = await ctr(['--pod', pod]);
        return { serverNs: a.ns, bind: '127.0.0.1', clientNs: b.ns, target: '127.0.0.1', ports: INNER, listen: INNER, setupMs: a.setupMs, teardown };
      }
      default:
        throw new Error(`unknown path ${pathName}`);
    }
  } catch (err) {
    await teardown().catch(() => 0);
    throw err;
  }
}

// ---- one measurement round ------------------------------------------------------------------

type Samples = Record<string, Record<string, Record<string, number[]>>>;

function add(samples: Samples, p: string, metric: string, tool: string, v: number): void {
  ((samples[p] ??= {})[metric] ??= {})[tool] ??= [];
  samples[p][metric][tool].push(v);
}

async function startServers(t: Topo): Promise<() => void> {
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

async function clientJson<T>(ns: string, argv: string[], limitMs: number): Promise<T> {
  const r = await run(inNs(ns, argv), limitMs);
  if (r.timedOut) throw new Error(`no result within ${limitMs / 1000} s`);
  const line = r.out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (r.code !== 0 || !line) throw new Error(r.out.trim().split('\n').slice(-1)[0] || `exit ${r.code}`);
  return JSON.parse(line) as T;
}

/**
 * The jobs of run `r`: paths in order, each path's tools rotated by r (A B C, then B C A, ...), so
 * no tool is always the first to run after a path change or a previous run's teardown.
 */
export function runOrder<J extends { p: { name: string }; tool: string }>(jobs: J[], r: number): J[] {
  const out: J[] = [];
  for (let i = 0; i < jobs.length;) {
    let j = i;
    while (j < jobs.length && jobs[j].p.name === jobs[i].p.name) j++;
    const group = jobs.slice(i, j);
    const k = r % group.length;
    out.push(...group.slice(k), ...group.slice(0, k));
    i = j;
  }
  return out;
}

async function measurePath(env: Env, o: Options, pathName: string, tool: string, samples: Samples, errors: Record<string, string>, progress: (what: string) => void): Promise<void> {
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
function memMiB(pids: number[], file: 'status' | 'smaps_rollup', field: 'VmRSS' | 'Pss'): number {
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

const rssMiB = (pids: number[]) => memMiB(pids, 'status', 'VmRSS');
const pssMiB = (pids: number[]) => memMiB(pids, 'smaps_rollup', 'Pss');

/** pids of the bench user's `name` processes (Debian's pasta runs as "passt.avx2" on most CPUs). */
function pidsOf(name: string): number[] {
  const r = spawnSync('pgrep', ['-u', USER, '-x', name === 'pasta' ? '(pasta|passt)(\\.avx2)?' : name], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** The processes that carry the network of `ctrs`: pasta's and slirp4netns's run apart from the container. */
function netPidsOf(tool: string, ctrs: Ctr[]): number[] {
  return tool === 'pasta' || tool === 'slirp4netns' ? pidsOf(tool) : ctrs.flatMap((c) => c.netPids);
}

/**
 * The processes that hold the bench user's network namespace: the helper (-P -L) and its init, the
 * one usernet stack (runtime/network/user_netns.ts's holder.json), and the CNI server while it
 * runs (cni.json; it leaves a minute after the last ADD or DEL). Shared by every container on the
 * user's networks, so a scale point divides them among its containers.
 */
function userNetnsPids(env: Env): number[] {
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
async function scalePoint(env: Env, who: Who, tool: string, n: number): Promise<ScalePoint> {
  const t0 = performance.now();
  const onUserNet = tool === USER_NET_TOOL;
  const args = onUserNet ? ['--network', 'benchun'] : who === 'user' ? rootlessNet(tool) : [];
  const results = await Promise.allSettled(Array.from({ length: n }, () => startCtr(env, who, onUserNet ? 'burrow' : tool, args)));
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

function cpuTicks(pids: number[]): number {
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
async function rssWithFlows(env: Env, tool: string, flows: number): Promise<number> {
  const port = nextPorts().iperf;
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
async function cpuPerGb(env: Env, o: Options, tool: string): Promise<number> {
  const p = nextPorts();
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

// ---- report ---------------------------------------------------------------------------------

export interface Report {
  date: string;
  machine: { kernel: string; cpus: number; cpuModel: string; memGiB: number; os: string; node: string };
  versions: Record<string, string>;
  options: Options;
  tools: { rootful: string[]; rootless: string[] };
  samples: Samples;
  errors: Record<string, string>;
  scale: { rootful: ScalePoint[]; rootless: ScalePoint[] };
  /** RSS (MiB) of each rootless tool's network process holding 1000 TCP connections. */
  flowsRss: Record<string, number>;
  cpuPerGb: Record<string, number[]>;
  /** the DNS section (bench/dns.ts), when it ran */
  dns?: DnsReport;
  /** the podman-helpers section (bench/podman_helpers.ts), when it ran */
  helpers?: HelpersReport;
}

const metricOf = (name: string) => METRICS.find((m) => m.name === name)!;

/** burrow / anchor, oriented so that > 1 means burrow leads. */
export function leadRatio(metric: string, burrow: number, anchor: number): number {
  if (!(burrow > 0) || !(anchor > 0)) return NaN;
  return metricOf(metric).higherIsBetter ? burrow / anchor : anchor / burrow;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** The terminal table: per path, one row per metric, each tool's median ± half range, and ratios. */
export function renderReport(r: Report): string {
  const lines: string[] = [];
  let wide = 0;
  for (const p of PATHS) {
    const bym = r.samples[p.name];
    if (!bym) continue;
    const tools = p.kind === 'rootful' ? r.tools.rootful : p.kind === 'rootless' ? r.tools.rootless : ['burrow'];
    const anchors = tools.filter((t) => t !== 'burrow');
    const rows = [['metric', 'unit', ...tools, ...anchors.map((a) => `burrow/${a}`)]];
    for (const m of METRICS) {
      const cells = bym[m.name];
      if (!cells) continue;
      const sum: Record<string, Summary> = {};
      for (const t of tools) if (cells[t]?.length) sum[t] = summarize(cells[t]);
      const row = [m.name, m.unit, ...tools.map((t) => (sum[t] ? `${fmt(sum[t].p50)} ±${fmt((sum[t].max - sum[t].min) / 2)}` : r.errors[`${p.name}|${m.name}|${t}`] ? 'error' : '-'))];
      for (const a of anchors) {
        if (!sum.burrow || !sum[a]) {
          row.push('-');
          continue;
        }
        const ratio = leadRatio(m.name, sum.burrow.p50, sum[a].p50);
        const flag = untrustworthy(sum.burrow, sum[a]) ? ' ~' : '';
        if (flag) wide++;
        row.push(`${Number.isFinite(ratio) ? ratio.toFixed(2) : 'n/a'}x${flag}`);
      }
      rows.push(row);
    }
    lines.push(`\n${p.name}: ${p.title}`, renderTable(rows));
  }
  if (r.scale.rootful.length || r.scale.rootless.length) {
    const rows = [['section', 'tool', 'containers', 'setup wall ms', 'setup p50 ms', 'teardown wall ms', 'RSS MiB/ctr', 'PSS MiB/ctr (network process)']];
    for (const [sec, pts] of [['rootful', r.scale.rootful], ['rootless', r.scale.rootless]] as const) {
      for (const s of pts) rows.push([sec, s.tool, String(s.n), fmt(s.setupWallMs), fmt(s.setupP50Ms), fmt(s.teardownWallMs), fmt(s.rssPerCtrMiB), fmt(s.pssPerCtrMiB)]);
    }
    lines.push('\nscale: containers started at once (rootful: default bridge; rootless: one stack each, burrow-usernet: one user network, its namespace and stack shared)', renderTable(rows));
  }
  if (Object.keys(r.flowsRss ?? {}).length) {
    const rows = [['tool', 'network process RSS MiB, 1000 open TCP connections']];
    for (const [t, v] of Object.entries(r.flowsRss)) rows.push([t, fmt(v)]);
    lines.push('\nrootless stack memory under load', renderTable(rows));
  }
  if (Object.keys(r.cpuPerGb).length) {
    const rows = [['tool', 'CPU s per GB (forward from another netns)']];
    for (const [t, v] of Object.entries(r.cpuPerGb)) rows.push([t, fmt(summarize(v).p50)]);
    lines.push('\nrootless stack CPU cost', renderTable(rows));
  }
  if (r.dns) lines.push(renderDns(r.dns));
  if (r.helpers) lines.push(renderHelpers(r.helpers));
  lines.push(`\nmedians of ${r.options.runs} interleaved run(s) of ${r.options.durationS} s; ± is half the range. Ratios > 1.00x mean burrow leads (for ms, us, %, MiB: less is better, so the ratio is anchor/burrow).`);
  if (wide) lines.push(`warning: ${wide} ratio(s) marked ~ come from runs spread more than ±25 % around their median: too noisy to trust; run again with more --runs.`);
  const errs = Object.entries(r.errors);
  if (errs.length) lines.push(`${errs.length} measurement(s) failed:`, ...errs.map(([k, e]) => `  ${k}: ${e}`));
  return lines.join('\n');
}

/** The chart: TCP, HTTP-32, RR p50 and setup per path, then the scale curves. */
export function chartOf(r: Report): Chart {
  const panel = (metric: string, title: string, note: string): BarPanel => ({
    title, unit: metricOf(metric).unit, note,
    groups: PATHS.filter((p) => r.samples[p.name]?.[metric]).map((p) => ({
      label: p.name,
      bars: Object.entries(r.samples[p.name][metric]).map(([tool, v]) => {
        const s = summarize(v);
        return { tool, value: s.p50, min: s.min, max: s.max };
      }),
    })),
  });
  const lines: LinePanel[] = [];
  const series = (pts: ScalePoint[], f: (s: ScalePoint) => number) => [...new Set(pts.map((s) => s.tool))].map((tool) => ({ tool, points: pts.filter((s) => s.tool === tool).map((s) => ({ x: s.n, y: f(s) })) }));
  if (r.scale.rootful.length) {
    lines.push({ title: 'rootful: setup wall time', unit: 'ms', xLabel: 'containers started at once', series: series(r.scale.rootful, (s) => s.setupWallMs) });
    lines.push({ title: 'rootful: memory per container', unit: 'MiB PSS', xLabel: 'containers', series: series(r.scale.rootful, (s) => s.pssPerCtrMiB) });
  }
  if (r.scale.rootless.length) {
    lines.push({ title: 'rootless: setup wall time', unit: 'ms', xLabel: 'stacks started at once', series: series(r.scale.rootless, (s) => s.setupWallMs) });
    lines.push({ title: 'rootless: network process memory per stack', unit: 'MiB PSS', xLabel: 'stacks', series: series(r.scale.rootless, (s) => s.pssPerCtrMiB) });
  }
  return {
    title: 'burrow bench: rootful and rootless container networking',
    subtitle: `${r.date.slice(0, 10)} · ${r.machine.os} · kernel ${r.machine.kernel} · ${r.machine.cpus} CPUs (${r.machine.cpuModel}) · medians of ${r.options.runs} run(s) of ${r.options.durationS} s, whiskers = range`,
    bars: [
      panel('tcp', 'TCP throughput, one stream', 'iperf3; higher is better'),
      panel('http-32', 'HTTP requests per second, 32 clients', 'undici against a Node server; higher is better'),
      panel('rr-p50', 'Request/response latency, p50', '1 byte each way on one TCP connection; lower is better'),
      panel('setup', 'Container setup time', 'burrow run until the command runs; lower is better'),
    ].filter((p) => p.groups.length),
    lines,
  };
}

// ---- outer: namespaces, user, cleanup -------------------------------------------------------

function have(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
}

function firstLine(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
}

/**
 * Kills, in one pass over /proc, every process whose bench tag `which` accepts (set on everything
 * a bench starts). Returns how many it killed per tag.
 */
function killTagged(which: (tag: string) => boolean): Map<string, number> {
  const killed = new Map<string, number>();
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    if (Number(pid) === process.pid) continue;
    try {
      const tag = fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').find((e) => e.startsWith('BURROW_BENCH_TAG='))?.slice('BURROW_BENCH_TAG='.length);
      if (tag === undefined || !which(tag)) continue;
      process.kill(Number(pid), 'SIGKILL');
      killed.set(tag, (killed.get(tag) ?? 0) + 1);
    } catch {
      // gone, or not ours to read
    }
  }
  return killed;
}

/** Deletes the throwaway user, its home and its rootless state dir ($TMPDIR/burrow-UID when XDG_RUNTIME_DIR is unset). */
function removeUser(): void {
  const uid = spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout.trim();
  if (!uid) return;
  spawnSync('pkill', ['-9', '-u', USER]);
  fs.rmSync(path.join(os.tmpdir(), `burrow-${uid}`), { recursive: true, force: true });
  // userdel refuses (8) while a just-killed process of the user is still exiting
  for (let i = 0; i < 40 && spawnSync('userdel', ['-r', USER], { stdio: 'ignore' }).status === 8; i++) spawnSync('sleep', ['0.05']);
}

/**
 * What an earlier bench left when it was killed with -9 (or its machine was stopped) before its
 * cleanup ran: its tagged processes, namespaces, temp dir and the throwaway user. Called with the
 * lock held, so no other bench is running and all of it is stale. Returns what was removed.
 */
export function collectStale(netnsRemove: (p: string) => boolean, netnsDir = '/run/netns', tmp = os.tmpdir()): string[] {
  const removed: string[] = [];
  // every tag but our own (set when this bench itself runs under a tagged parent)
  for (const [tag, n] of killTagged((t) => t !== process.env.BURROW_BENCH_TAG)) removed.push(`${n} process(es) tagged ${tag}`);
  const staleDirs = fs.readdirSync(tmp).filter((n) => /^burrow-bench-/.test(n)).map((n) => path.join(tmp, n));
  for (const d of staleDirs) {
    // podman's containers (conmon does not carry the tag): removed inside the bench's host netns
    let hostNs: string | undefined;
    try {
      hostNs = fs.readFileSync(path.join(d, 'host-netns'), 'utf8').trim();
    } catch {
      // set-up stopped before it was written
    }
    const l = podmanLayout(d);
    if (fs.existsSync(l.conf)) {
      removePodmanState(l, hostNs);
      removed.push(`podman containers of ${d}`);
    }
  }
  for (const name of fs.existsSync(netnsDir) ? fs.readdirSync(netnsDir) : []) {
    if (!/^bb[hrd]bb[0-9a-z]+$/.test(name)) continue;
    netnsRemove(path.join(netnsDir, name));
    removed.push(`netns ${name}`);
  }
  for (const d of staleDirs) {
    unmountUnder(d);
    fs.rmSync(d, { recursive: true, force: true });
    removed.push(d);
  }
  // the name is the bench's own (README); it exists now only if a bench was stopped before userdel
  if (spawnSync('id', ['-u', USER]).status === 0) {
    removeUser();
    removed.push(`user ${USER}`);
  }
  return removed;
}

async function outer(argv: string[]): Promise<number> {
  const o = parseOptions(argv); // fail on bad flags before creating anything
  if (process.getuid?.() !== 0) throw new Error('burrow bench needs root: it creates network namespaces, a bridge, and a throwaway user for the rootless runs');
  for (const bin of ['iperf3', 'nsenter', 'setpriv', 'ip']) if (!have(bin)) throw new Error(`${bin} is not installed (run scripts/setup.sh, or apt-get install iperf3 util-linux iproute2)`);
  if (!fs.existsSync(CLI) || !fs.existsSync(SELF)) throw new Error(`${CLI} is not built: run "npm ci" (or npm run build)`);
  const { netnsCreate, netnsRemove } = await import('../native/mod.js');
  // One bench at a time: two would share the throwaway user, and each one's cleanup kills its processes.
  const lock = '/run/burrow-bench.pid';
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
  } catch {
    const holder = Number(fs.readFileSync(lock, 'utf8'));
    let alive = false;
    try {
      process.kill(holder, 0);
      alive = holder !== process.pid;
    } catch {
      // stale: its bench was killed with -9
    }
    if (alive) throw new Error(`another burrow bench is running (pid ${holder}); wait for it or stop it first`);
    fs.writeFileSync(lock, String(process.pid));
  }
  const tag = TAG;
  let dir: string | undefined;
  let host: string | undefined;
  let remote: string | undefined;
  let cleaned = false;
  // Tolerates a failure half-way through the set-up: removes whatever exists by then.
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    // twice: a supervisor killed first may have been about to start something
    killTagged((t) => t === tag);
    spawnSync('sleep', ['0.2']);
    killTagged((t) => t === tag);
    if (dir) removePodmanState(podmanLayout(dir), host);
    if (host) netnsRemove(host);
    if (remote) netnsRemove(remote);
    removeUser();
    if (dir) {
      unmountUnder(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    fs.rmSync(lock, { force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\n${sig}: cleaning up\n`);
    cleanup();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const stale = collectStale(netnsRemove);
    if (stale.length) process.stderr.write(`burrow bench: removed what an earlier bench left when it was killed: ${stale.join(', ')}\n`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-'));
    host = netnsCreate(`bbh${tag}`);
    // for a later bench, should this one be killed: podman's containers are removed inside it
    fs.writeFileSync(path.join(dir, 'host-netns'), host);
    remote = netnsCreate(`bbr${tag}`);
    const useradd = spawnSync('useradd', ['-m', '-c', 'burrow bench throwaway user', USER], { encoding: 'utf8' });
    if (useradd.status !== 0) throw new Error(`useradd ${USER}: ${useradd.stderr.trim()}`);
    const sh = (ns: string, cmd: string) => {
      const r = spawnSync('nsenter', [`--net=${ns}`, '--', 'sh', '-ec', cmd], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr.trim()}`);
    };
    spawnSync('ip', ['link', 'add', 'up0', 'netns', path.basename(host), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', path.basename(remote)]);
    sh(host, 'ip link set lo up; ip addr add 10.98.0.1/24 dev up0; ip link set up0 up; ip route add default via 10.98.0.2');
    sh(remote, 'ip link set lo up; ip addr add 10.98.0.2/24 dev eth0; ip link set eth0 up');
    // the macvlan parent: a veth of the bench's own, never the machine's eth0
    sh(host, 'ip link add mvpar0 type veth peer name mvpeer0; ip link set mvpar0 up; ip link set mvpeer0 up');
    fs.chmodSync('/dev/net/tun', 0o666);
    // pm: podman's own network dir, where `burrow network create` writes the anchor's conflists
    // (podman reads files only: its network bbpodman on pbr0, 10.86/16; this default is unused)
    for (const [who, cniPath, bridge, subnet] of [['own', path.join(ROOT, 'plugins', 'bin'), 'bbr0', '10.88.0.0/16'], ['ref', REFERENCE_DIR, 'rbr0', '10.87.0.0/16'], ['pm', REFERENCE_DIR, 'pbr9', '10.85.0.0/16']] as const) {
      const d = who === 'pm' ? podmanLayout(dir).dir : path.join(dir, who);
      fs.mkdirSync(path.join(d, 'net.d'), { recursive: true });
      fs.writeFileSync(path.join(dir, `${who}.toml`), `[network]\ncni_config_dir = "${d}/net.d"\ncni_cache_dir = "${d}/cache"\nipam_data_dir = "${d}/ipam"\ncni_path = ${JSON.stringify([cniPath])}\ndefault_bridge = "${bridge}"\ndefault_subnet = "${subnet}"\n[engine]\nstate_dir = "${d}/state"\n`);
    }
    const child = spawn('nsenter', [`--net=${host}`, '--', process.execPath, SELF, ...argv], {
      stdio: 'inherit', env: { ...process.env, BURROW_BENCH_INNER: JSON.stringify({ dir, host, remote }), BURROW_BENCH_TAG: tag, NODE_EXTRA_CA_CERTS: '' },
    });
    process.stderr.write(`burrow bench: ${o.only.length} paths/sections, ${o.runs} run(s) of ${o.durationS} s each; Ctrl-C stops and cleans up\n`);
    return await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  } finally {
    cleanup();
  }
}

// ---- inner: the run -------------------------------------------------------------------------

async function inner(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  const { dir, host, remote } = JSON.parse(process.env.BURROW_BENCH_INNER!) as { dir: string; host: string; remote: string };
  const env: Env = { dir, host, remote, configs: { own: path.join(dir, 'own.toml'), ref: path.join(dir, 'ref.toml'), pm: path.join(dir, 'pm.toml') }, uid: Number(spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout.trim()) };
  let stopping = false;
  process.on('SIGINT', () => {
    stopping = true;
  });
  const refOk = o.anchors === 'auto' && ['bridge', 'host-local', 'portmap', 'firewall', 'tuning', 'macvlan'].every((p) => fs.existsSync(path.join(REFERENCE_DIR, p)));
  const podmanGaps = [...podmanMissing(have), ...(refOk ? [] : [`the reference plugins in ${REFERENCE_DIR}`])];
  const podmanOk = o.anchors === 'auto' && podmanGaps.length === 0;
  const runtime = have('crun') ? 'crun' : 'runc';
  const tools = {
    rootful: ['burrow', ...(refOk ? ['reference'] : []), ...(podmanOk ? ['podman'] : [])],
    rootless: ['burrow', ...(o.anchors === 'auto' ? ['pasta', 'slirp4netns'].filter(have) : [])],
  };
  const versions: Record<string, string> = {
    burrow: firstLine([process.execPath, CLI, '--version']),
    iperf3: iperfVersion(firstLine(['iperf3', '--version'])),
    node: process.version,
    ...(refOk ? { 'cni-reference': firstLine(['dpkg-query', '-W', '-f', '${Version}', 'containernetworking-plugins']) || 'installed' } : {}),
    // Debian's 2023 pasta says "pasta unknown version": the package version names the snapshot
    ...(tools.rootless.includes('pasta') ? { pasta: [firstLine(['pasta', '--version']), firstLine(['dpkg-query', '-W', '-f', 'passt ${Version}', 'passt'])].filter((v) => v && !/unknown/.test(v)).join(', ') || 'unknown' } : {}),
    ...(tools.rootless.includes('slirp4netns') ? { slirp4netns: firstLine(['slirp4netns', '--version']) } : {}),
    ...(podmanOk ? { podman: `${firstLine(['podman', '--version'])} (CNI backend, reference plugins, runtime ${runtime})` } : o.anchors === 'auto' ? { podman: `not measured: missing ${podmanGaps.join(', ')}` } : {}),
  };
  if (podmanOk) {
    preparePodman(podmanLayout(dir), { referenceDir: REFERENCE_DIR, runtime, defaultNetwork: 'bbpodman', busybox: firstLine(['sh', '-c', 'command -v busybox']) });
    await burrow(env, 'pm', ['network', 'create', '--disable-dns', '--subnet', '10.86.0.0/16', '-o', 'com.docker.network.bridge.name=pbr0', 'bbpodman']);
  }
  const paths = PATHS.filter((p) => o.only.includes(p.name));
  if (paths.some((p) => p.name.startsWith('rootless-net')) || o.only.includes('scale')) await burrow(env, 'user', ['network', 'create', '--disable-dns', '--subnet', '10.58.0.0/24', 'benchun']);
  if (paths.some((p) => p.name === 'macvlan-c2c')) {
    for (const [who, subnet] of [['own', '10.77.1.0/24'], ['ref', '10.77.2.0/24'], ['pm', '10.77.3.0/24']] as const) {
      if ((who === 'ref' && !refOk) || (who === 'pm' && !podmanOk)) continue;
      await burrow(env, who, ['network', 'create', '-d', 'macvlan', '-o', 'parent=mvpar0', '--subnet', subnet, 'benchmv']);
    }
  }
  const samples: Samples = {};
  const errors: Record<string, string> = {};
  const jobs = paths.flatMap((p) => (p.kind === 'rootful' ? tools.rootful : p.kind === 'rootless' ? tools.rootless : ['burrow']).map((tool) => ({ p, tool })));
  const total = jobs.length * o.runs;
  let done = 0;
  const t0 = Date.now();
  for (let r = 0; r < o.runs && !stopping; r++) {
    for (const { p, tool } of runOrder(jobs, r)) {
      if (stopping) break;
      const progress = (what: string) => process.stderr.write(`\r\x1b[K[${String(done + 1).padStart(3)}/${total} · ${Math.round((Date.now() - t0) / 1000)} s] run ${r + 1}/${o.runs} ${p.name} ${tool}: ${what}`);
      try {
        await measurePath(env, o, p.name, tool, samples, errors, progress);
      } catch (err) {
        errors[`${p.name}|setup|${tool}`] = (err as Error).message.split('\n')[0];
      }
      done++;
    }
  }
  const scale: Report['scale'] = { rootful: [], rootless: [] };
  if (o.only.includes('scale') && !stopping) {
    for (const n of o.scale) {
      for (const tool of tools.rootful) {
        process.stderr.write(`\r\x1b[Kscale: ${n} rootful containers, ${tool}`);
        try {
          scale.rootful.push(await scalePoint(env, whoRuns(tool, 'rootful'), tool, n));
        } catch (err) {
          errors[`scale|${n}|${tool}`] = (err as Error).message;
        }
      }
    }
    for (const n of o.scale.filter((x) => x <= 50)) {
      for (const tool of [...tools.rootless, USER_NET_TOOL]) {
        process.stderr.write(`\r\x1b[Kscale: ${n} rootless ${tool === USER_NET_TOOL ? 'containers on one user network' : `stacks, ${tool}`}`);
        try {
          scale.rootless.push(await scalePoint(env, 'user', tool, n));
        } catch (err) {
          errors[`scale|${n}|${tool}`] = (err as Error).message;
        }
      }
    }
  }
  const flowsRss: Record<string, number> = {};
  if (o.only.includes('scale') && !stopping) {
    for (const tool of tools.rootless) {
      process.stderr.write(`\r\x1b[Kscale: 1000 open connections, ${tool}`);
      try {
        flowsRss[tool] = await rssWithFlows(env, tool, 1000);
      } catch (err) {
        errors[`flows|${tool}`] = (err as Error).message;
      }
    }
  }
  const cpu: Record<string, number[]> = {};
  if (o.only.includes('cpu') && !stopping) {
    for (let r = 0; r < o.runs; r++) {
      for (const tool of tools.rootless) {
        process.stderr.write(`\r\x1b[Kcpu per GB: run ${r + 1}/${o.runs} ${tool}`);
        try {
          (cpu[tool] ??= []).push(await cpuPerGb(env, o, tool));
        } catch (err) {
          errors[`cpu|${tool}`] = (err as Error).message;
        }
      }
    }
  }
  let dns: DnsReport | undefined;
  if (o.only.includes('dns') && !stopping) {
    const { netnsCreate, netnsRemove } = await import('../native/mod.js');
    dns = await dnsBench({
      runs: o.runs, durationS: o.durationS, records: 1000, anchors: o.anchors === 'auto', clientNetns: `bbd${TAG}`, netnsCreate, netnsRemove, root: ROOT,
      progress: (t) => process.stderr.write(`\r\x1b[K${t}`), stopping: () => stopping,
    });
    for (const [k, e] of Object.entries(dns.errors)) if (k.startsWith('burrow|') || k === 'setup') errors[`dns|${k}`] = e;
  }
  let helpers: HelpersReport | undefined;
  if (o.only.includes('podman-helpers') && !stopping && o.anchors === 'auto' && podmanOk) {
    helpers = await helpersBench({
      runs: o.runs, root: ROOT, dir, user: USER, uid: env.uid, busybox: firstLine(['sh', '-c', 'command -v busybox']), runtime, modes: ['rootful', 'rootless'],
      progress: (t) => process.stderr.write(`\r\x1b[K${t}`), stopping: () => stopping,
    });
    for (const [k, e] of Object.entries(helpers.errors)) if (k.includes('burrow') || k === 'rootful' || k === 'rootless') errors[`podman-helpers|${k}`] = e;
  }
  process.stderr.write('\r\x1b[K');
  const osName = /^PRETTY_NAME="?([^"\n]*)/m.exec(fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '')?.[1] ?? os.type();
  const report: Report = {
    date: new Date().toISOString(),
    machine: { kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', memGiB: Math.round(os.totalmem() / 2 ** 30), os: osName, node: process.version },
    versions, options: o, tools, samples, errors, scale, flowsRss, cpuPerGb: cpu, ...(dns ? { dns } : {}), ...(helpers ? { helpers } : {}),
  };
  console.log(renderReport(report));
  if (o.json) fs.writeFileSync(o.json, `${JSON.stringify(report, null, 1)}\n`);
  if (o.svg) fs.writeFileSync(o.svg, renderSvg(chartOf(report)));
  if (o.json || o.svg) console.log([o.json && `JSON: ${o.json}`, o.svg && `SVG: ${o.svg}`].filter(Boolean).join('  '));
  return stopping ? 130 : 0;
}

/** Entry of dist/bench.cjs: the agent roles, the inner run (inside the bench's netns), or the outer. */
export function main(argv: string[]): void {
  const job = argv[0] === '--agent' ? agent(argv.slice(1)).then(() => 0) : process.env.BURROW_BENCH_INNER ? inner(argv) : outer(argv);
  job.then((code) => {
    if (argv[0] !== '--agent' || code !== 0) process.exit(code);
  }, (err: Error) => {
    for (const c of tracked) c.kill('SIGKILL');
    console.error(`burrow bench: ${err.message}`);
    process.exit(1);
  });
}
