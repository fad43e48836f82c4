/**
 * bench/startup: how fast burrow's often-started entry points start, against `node -e 0`
 * and a Go reference plugin in the same run. Each command runs N times, interleaved.
 *
 *   tsx bench/startup.ts [--runs N]
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatMs, formatRatio, renderTable, summarize } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runsArg = process.argv.indexOf('--runs');
const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 30;

const clean = { ...process.env };
delete clean.NODE_EXTRA_CA_CERTS;
const withCa = { ...clean, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? '/etc/ssl/certs/ca-certificates.crt' };
const versionEnv = { ...clean, CNI_COMMAND: 'VERSION' };

interface Case { name: string; cmd: string[]; env: NodeJS.ProcessEnv; input?: string }
const cases: Case[] = [
  { name: 'node -e 0', cmd: [process.execPath, '-e', '0'], env: clean },
  { name: 'node -e 0 (NODE_EXTRA_CA_CERTS set)', cmd: [process.execPath, '-e', '0'], env: withCa },
  { name: 'burrow --version', cmd: [path.join(ROOT, 'bin', 'burrow'), '--version'], env: withCa },
  { name: 'burrow ps', cmd: [path.join(ROOT, 'bin', 'burrow'), 'ps'], env: withCa },
  { name: 'burrow network ls', cmd: [path.join(ROOT, 'bin', 'burrow'), 'network', 'ls'], env: withCa },
  { name: 'Go reference bridge VERSION', cmd: ['/usr/lib/cni/bridge'], env: versionEnv, input: '{"cniVersion":"1.0.0"}' },
];
for (const p of ['bridge', 'host-local', 'portmap']) {
  const file = path.join(ROOT, 'plugins', 'bin', p);
  if (fs.existsSync(file)) cases.push({ name: `burrow ${p} VERSION`, cmd: [file], env: { ...withCa, CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}' });
}

const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
for (let i = 0; i < runs; i++) {
  for (const c of cases) {
    if (!fs.existsSync(c.cmd[0])) continue;
    const t0 = performance.now();
    const r = spawnSync(c.cmd[0], c.cmd.slice(1), { env: c.env, input: c.input ?? '', stdio: ['pipe', 'ignore', 'ignore'] });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${c.name} exited ${r.status}`);
    samples.get(c.name)!.push(ms);
  }
}
const anchor = summarize(samples.get('node -e 0')!).p50;
const rows = [['command', 'p50', 'p95', 'vs node -e 0']];
for (const c of cases) {
  const s = samples.get(c.name)!;
  if (!s.length) {
    rows.push([c.name, '-', '-', `(not found: ${c.cmd[0]})`]);
    continue;
  }
  const sum = summarize(s);
  rows.push([c.name, formatMs(sum.p50), formatMs(sum.p95), formatRatio(sum.p50, anchor)]);
}
console.log(`Start-up, ${runs} interleaved runs each`);
console.log(renderTable(rows));
