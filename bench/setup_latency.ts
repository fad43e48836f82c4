/**
 * bench/setup_latency: p50 and p95 of CNI ADD and DEL for a chain, through
 * burrow's CNI runtime, for three ways of running the plugins:
 *
 *   reference       Debian's containernetworking-plugins (/usr/lib/cni), exec'd
 *   burrow-exec     burrow's script executables (plugins/bin), exec'd: Node per call
 *   burrow-native   the native launchers `burrow cni install` writes, exec'd, no service: cold
 *   burrow-serve    the same launchers, exec'd, with `burrow cni serve` running (resident)
 *   burrow-inproc   burrow's plugins called in-process (the runtime's fast path)
 *
 * Variants whose plugins are not all available are reported as such. Rounds
 * are interleaved (A B C A B C ...) so drift hits every variant alike, and
 * every figure is also printed as a ratio to the reference in the same run.
 *
 * Everything happens in namespaces the bench creates: it re-runs itself inside
 * a fresh "host" netns (nsenter), uses a pool of container netns there, and
 * removes them all at the end, also on Ctrl-C.
 *
 *   tsx bench/setup_latency.ts [--rounds N] [--chain NAME]... [--json FILE]
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { netnsCreate, netnsRemove } from '../native/mod.js';
import { parseConfList } from '../net/cni/config.js';
import { findPlugin } from '../net/cni/invoke.js';
import '../plugins/all.js';
import { inProcessResolver } from '../plugins/registry.js';
import { CniRuntime } from '../runtime/cni/runtime.js';
import { formatMs, formatRatio, renderTable, summarize, type Summary } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REFERENCE = '/usr/lib/cni';
const OWN = path.join(ROOT, 'plugins', 'bin');

interface Variant {
  name: string;
  path: string[];
  inProcess: boolean;
}

/** The variants, once the launchers are installed in `launchers` (an empty string: not built). */
function variants(launchers: string): Variant[] {
  return [
    { name: 'reference', path: [REFERENCE], inProcess: false },
    { name: 'burrow-exec', path: [OWN], inProcess: false },
    { name: 'burrow-native', path: [path.join(launchers, 'cold')], inProcess: false },
    { name: 'burrow-serve', path: [path.join(launchers, 'served')], inProcess: false },
    { name: 'burrow-inproc', path: [OWN], inProcess: true },
  ];
}

/**
 * Installs the native launchers twice under `work` (cold: no socket; served: the service's) and
 * starts `burrow cni serve` in this (the bench's host) netns; null when the launcher is not built.
 */
async function residentSetup(work: string): Promise<{ launchers: string; stop: () => Promise<void> } | null> {
  const { nativeExecutable } = await import('../native/mod.js');
  if (!nativeExecutable('burrow-cni')) return null;
  const launchers = path.join(work, 'launchers');
  const socket = path.join(work, 'cni.sock');
  const cli = path.join(ROOT, 'dist', 'burrow.cjs');
  for (const [dir, sock] of [['cold', 'off'], ['served', socket]]) {
    const r = spawnSync(process.execPath, [cli, 'cni', 'install', '--dir', path.join(launchers, dir), '--socket', sock], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`burrow cni install: ${r.stderr}`);
  }
  const log = path.join(work, 'serve.log');
  const fd = fs.openSync(log, 'a');
  const child = spawn(process.execPath, [cli, 'cni', 'serve', '--socket', socket], { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  for (let i = 0; !fs.readFileSync(log, 'utf8').includes('serves CNI calls'); i++) {
    if (child.exitCode !== null || i > 400) throw new Error(`burrow cni serve did not start: ${fs.readFileSync(log, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  };
  return { launchers, stop };
}

/** Chains measured, as podman writes them (its default network uses bridge, portmap, firewall, tuning). */
function chains(subnetOctet: number): Record<string, object> {
  const bridge = (br: string, third: number) => ({
    type: 'bridge', bridge: br, isGateway: true, ipMasq: true, hairpinMode: true,
    ipam: { type: 'host-local', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: `10.${subnetOctet}.${third}.0/24`, gateway: `10.${subnetOctet}.${third}.1` }]], dataDir: '' },
  });
  return {
    'bridge+host-local': { cniVersion: '1.0.0', name: 'bench-bridge', plugins: [bridge('slbr0', 1)] },
    'bridge+tuning': {
      cniVersion: '1.0.0', name: 'bench-tuning',
      plugins: [bridge('slbr2', 3), { type: 'tuning', capabilities: { mac: true } }],
    },
    'podman-default+1000-ports': {
      cniVersion: '1.0.0', name: 'bench-range',
      plugins: [bridge('slbr4', 5), { type: 'portmap', capabilities: { portMappings: true } }, { type: 'firewall', backend: '' }, { type: 'tuning' }],
    },
    'podman-default': {
      cniVersion: '1.0.0', name: 'bench-podman',
      plugins: [bridge('slbr1', 2), { type: 'portmap', capabilities: { portMappings: true } }, { type: 'firewall', backend: '' }, { type: 'tuning' }],
    },
  };
}

/** Capability args per chain: podman's default chain publishes one port; the range chain 1000 (as podman expands -p 20000-20999:20000-20999). */
const CAPS: Record<string, Record<string, unknown>> = {
  'podman-default': { portMappings: [{ hostPort: 38480, containerPort: 80, protocol: 'tcp' }] },
  'podman-default+1000-ports': { portMappings: Array.from({ length: 1000 }, (_, i) => ({ hostPort: 20000 + i, containerPort: 20000 + i, protocol: 'tcp' })) },
};

const MAX_ROUNDS: Record<string, number> = { 'podman-default+1000-ports': 2 };

export interface Row {
  chain: string;
  variant: string;
  available: boolean;
  reason?: string;
  add?: Summary;
  del?: Summary;
  addSamples?: number[];
  delSamples?: number[];
}

function args(argv: string[]) {
  const out = { rounds: 30, chains: [] as string[], json: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rounds') out.rounds = Number(argv[++i]);
    else if (a === '--chain') out.chains.push(argv[++i]);
    else if (a === '--json') out.json = argv[++i];
    else throw new Error(`unknown argument "${a}" (use --rounds N, --chain NAME, --json FILE)`);
  }
  if (!(out.rounds >= 1)) throw new Error('--rounds must be a positive number');
  return out;
}

/** Outer process: make a host netns, run the measurement inside it, always clean up. */
async function outer(argv: string[]): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench/setup_latency needs root: it creates network namespaces, bridges and firewall rules (all inside its own netns).');
    return 1;
  }
  const host = netnsCreate(`bench-host-${process.pid}`);
  const cleanup = () => netnsRemove(host);
  const onSignal = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const child = spawn('nsenter', [`--net=${host}`, '--', process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...argv], {
      stdio: 'inherit', env: { ...process.env, BURROW_BENCH_INNER: host },
    });
    return await new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  } finally {
    cleanup();
  }
}

/** What the CNI section measured: a row per chain and way of running the plugins. */
export interface CniReport {
  rounds: number;
  rows: Row[];
}

export interface CniBenchOptions {
  rounds: number;
  /** Chains to measure (default: every one). */
  chains?: string[];
  /** Said while it runs. */
  progress?: (text: string) => void;
  /** Asked between rounds: true stops early (what was measured so far is reported). */
  stopping?: () => boolean;
  /** The name of container netns `i` of the pool (`burrow bench`'s carry its tag, for its stale-state collection). */
  netnsName?: (i: number) => string;
}

/**
 * Measures CNI ADD and DEL for each chain and way of running the plugins, in the caller's netns
 * (bench/setup_latency.ts's own host netns, or `burrow bench`'s): a pool of two container netns,
 * the launchers and a `burrow cni serve` in a temp dir, all removed at the end.
 */
export async function cniSetupBench(o: CniBenchOptions): Promise<CniReport> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-'));
  const pool: string[] = [];
  let resident: Awaited<ReturnType<typeof residentSetup>> = null;
  try {
    resident = await residentSetup(work);
    const VARIANTS = variants(resident?.launchers ?? '');
    const all = chains(150 + (process.pid % 50));
    const chainNames = o.chains?.length ? o.chains : Object.keys(all);
    for (const c of chainNames) if (!all[c]) throw new Error(`unknown chain "${c}" (known: ${Object.keys(all).join(', ')})`);
    const rows: Row[] = [];
    for (const chain of chainNames) {
      const doc = all[chain] as { plugins: { type: string; ipam?: { dataDir: string } }[] };
      for (const p of doc.plugins) if (p.ipam) p.ipam.dataDir = path.join(work, 'ipam');
      const list = parseConfList(Buffer.from(JSON.stringify(doc)));
      const types = list.plugins.flatMap((p) => [p.type, ...(p.ipam ? [(p.ipam as { type: string }).type] : [])]);
      const runnable = VARIANTS.map((v) => {
        const missing = types.filter((t) => !findPlugin(t, v.path));
        const row: Row = { chain, variant: v.name, available: missing.length === 0, addSamples: [], delSamples: [] };
        if (missing.length) row.reason = `no ${missing.join(', ')} in ${v.path.join(':')}`;
        rows.push(row);
        const rt = new CniRuntime({ path: v.path, cacheDir: path.join(work, 'cache', v.name), inProcess: v.inProcess ? inProcessResolver() : undefined });
        return { v, row, rt };
      }).filter((x) => x.row.available);
      if (!pool.length) for (let i = 0; i < 2; i++) pool.push(netnsCreate(o.netnsName?.(i) ?? `bench-ctr-${process.pid}-${i}`));
      // Warm-up: one ADD/DEL per variant (page cache, first bridge creation).
      for (const { rt } of runnable) {
        const att = { containerId: 'warmup', netns: pool[0], ifname: 'eth0', capabilityArgs: CAPS[chain] };
        await rt.addNetworkList(list, att);
        await rt.delNetworkList(list, att);
      }
      // The reference needs about a minute per ADD of 1000 ports (one iptables call per rule): few rounds there.
      const rounds = Math.min(o.rounds, MAX_ROUNDS[chain] ?? Infinity);
      for (let round = 0; round < rounds && !o.stopping?.(); round++) {
        o.progress?.(`${chain}: round ${round + 1}/${rounds}`);
        for (const { rt, row } of runnable) {
          const att = { containerId: `r${round}`, netns: pool[round % pool.length], ifname: 'eth0', capabilityArgs: CAPS[chain] };
          let t0 = performance.now();
          await rt.addNetworkList(list, att);
          row.addSamples!.push(performance.now() - t0);
          t0 = performance.now();
          await rt.delNetworkList(list, att);
          row.delSamples!.push(performance.now() - t0);
        }
      }
    }
    for (const r of rows) {
      if (r.available && r.addSamples!.length) {
        r.add = summarize(r.addSamples!);
        r.del = summarize(r.delSamples!);
      }
    }
    return { rounds: o.rounds, rows };
  } finally {
    await resident?.stop();
    for (const ns of pool.splice(0)) netnsRemove(ns);
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Inner process: runs inside the host netns. */
async function inner(argv: string[]): Promise<number> {
  const opts = args(argv);
  const r = await cniSetupBench({ rounds: opts.rounds, chains: opts.chains, progress: process.stderr.isTTY ? (t) => process.stderr.write(`\r${t}   `) : undefined });
  if (process.stderr.isTTY) process.stderr.write('\n');
  console.log(renderCni(r));
  if (opts.json) {
    fs.writeFileSync(opts.json, JSON.stringify({ date: new Date().toISOString(), kernel: os.release(), cpus: os.cpus().length, node: process.version, rounds: opts.rounds, rows: r.rows }, null, 2));
  }
  return 0;
}

/** The section's table, every figure also as a ratio to the reference in the same run. */
export function renderCni(r: CniReport): string {
  const table = [['chain', 'plugins', 'ADD p50', 'ADD p95', 'DEL p50', 'DEL p95', 'ADD p50 vs ref', 'DEL p50 vs ref']];
  for (const row of r.rows) {
    if (!row.available || !row.add || !row.del) {
      table.push([row.chain, row.variant, '-', '-', '-', '-', '-', `(not available: ${row.reason ?? 'no rounds'})`]);
      continue;
    }
    const ref = r.rows.find((x) => x.chain === row.chain && x.variant === 'reference');
    table.push([
      row.chain, row.variant, formatMs(row.add.p50), formatMs(row.add.p95), formatMs(row.del.p50), formatMs(row.del.p95),
      formatRatio(row.add.p50, ref?.add?.p50 ?? NaN), formatRatio(row.del.p50, ref?.del?.p50 ?? NaN),
    ]);
  }
  return `\nCNI setup latency through burrow's runtime, ${r.rounds} interleaved rounds (at most ${MAX_ROUNDS['podman-default+1000-ports']} for the 1000-port chain), ${os.cpus().length} CPUs, kernel ${os.release()}, Node ${process.version}; the ratios are time over the reference's (below 1.00x burrow is faster)\n${renderTable(table)}`;
}

/** Run as a script (not when `burrow bench` imports the section). */
if (process.argv[1] && /setup_latency\.[tj]s$/.test(process.argv[1])) {
  const argv = process.argv.slice(2);
  const run = process.env.BURROW_BENCH_INNER ? inner(argv) : outer(argv);
  run.then((code) => {
    process.exitCode = code;
  }, (err: Error) => {
    console.error(`bench/setup_latency: ${err.message}`);
    process.exitCode = 1;
  });
}
