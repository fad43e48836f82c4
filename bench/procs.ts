/**
 * The processes a bench starts: each carries the bench's tag in its environment (BURROW_BENCH_TAG),
 * so the outer process can find and kill all of them however the bench ends; the ones this process
 * started are also tracked, for a crash.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The install root: bench/ or dist/ sits one level below it. */
export const ROOT = path.resolve(HERE, '..');
export const CLI = path.join(ROOT, 'dist', 'burrow.cjs');
export const SELF = path.join(ROOT, 'dist', 'bench.cjs');
export const USER = 'burrowbench';
export const REFERENCE_DIR = '/usr/lib/cni';

// ---- processes ------------------------------------------------------------------------------

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const TAG = process.env.BURROW_BENCH_TAG ?? `bb${process.pid.toString(36)}`;
export const tracked = new Set<ChildProcess>();

export interface Proc {
  child: ChildProcess;
  out: () => string;
  done: Promise<number>;
}

export function start(argv: string[], stdin: 'ignore' | 'pipe' = 'ignore'): Proc {
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
export async function run(argv: string[], limitMs = 60_000): Promise<{ code: number; out: string; timedOut: boolean }> {
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

export async function until(p: Proc, text: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!p.out().includes(text)) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`exited before "${text}": ${p.out().trim().split('\n').slice(-2).join(' | ')}`);
    if (Date.now() > end) throw new Error(`no "${text}" within ${ms / 1000} s: ${p.out().trim().split('\n').slice(-2).join(' | ')}`);
    await sleep(5);
  }
}

export const inNs = (ns: string, argv: string[]) => ['nsenter', `--net=${ns}`, '--', ...argv];

// ---- outer: namespaces, user, cleanup -------------------------------------------------------

export function have(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
}

export function firstLine(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
}

/**
 * Kills, in one pass over /proc, every process whose bench tag `which` accepts (set on everything
 * a bench starts). Returns how many it killed per tag.
 */
export function killTagged(which: (tag: string) => boolean): Map<string, number> {
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
