/**
 * `burrow bench --duration 1 --runs 1`: one short run of every path, the scale section (small
 * counts) and the CPU section, as CI can afford. Checks the shape of the JSON and the SVG and that
 * the run leaves nothing behind; the numbers themselves are for the benchmark, not for a test.
 *
 * A script rather than an ava test: the run takes minutes, longer than ava's inactivity timeout,
 * so scripts/test.sh runs it after ava and counts it as one step. Prints "ok N - ..." per check
 * and exits 1 if any failed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { METRICS, PATHS } from '../bench/plan.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'burrow.cjs');

let n = 0;
let failed = 0;
function check(name: string, f: () => void): void {
  n++;
  try {
    f();
    console.log(`ok ${n} - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok ${n} - ${name}: ${(e as Error).message.split('\n').slice(0, 6).join(' | ')}`);
  }
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.log(`bench smoke: needs root (namespaces, a throwaway user)${process.env.CI ? '' : '; skipped'}`);
    return process.env.CI ? 1 : 0;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-smoke-'));
  // the machine's own IPAM stores and state: the bench keeps its own inside its temp dir
  const machineState = () => ['/var/lib/cni/networks', '/var/lib/cni/results', '/run/burrow/containers'].flatMap((d) => (fs.existsSync(d) ? (fs.readdirSync(d, { recursive: true }) as string[]).map((f) => `${d}/${f}`) : [])).sort();
  const stateBefore = machineState();
  // What a bench killed with -9 leaves (its cleanup never ran): the next bench must collect it.
  // The stale lock names a pid that has exited; the tagged process stands for an orphaned agent.
  const staleTag = 'bbstale1';
  for (const ns of [`bbh${staleTag}`, `bbr${staleTag}`]) spawnSync('ip', ['netns', 'add', ns]);
  fs.mkdirSync(path.join(os.tmpdir(), `burrow-bench-${staleTag}`), { recursive: true });
  if (spawnSync('id', ['-u', 'burrowbench']).status !== 0) spawnSync('useradd', ['-m', 'burrowbench']);
  fs.writeFileSync('/run/burrow-bench.pid', String(spawnSync('true').pid));
  const orphan = spawn('sleep', ['600'], { env: { ...process.env, BURROW_BENCH_TAG: staleTag }, stdio: 'ignore', detached: true });
  orphan.unref();
  try {
    const json = path.join(dir, 'bench.json');
    const svg = path.join(dir, 'bench.svg');
    const t0 = Date.now();
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const c = spawn(process.execPath, [CLI, 'bench', '--full', '--duration', '1', '--runs', '1', '--scale', '1,3', '--json', json, '--svg', svg], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (out += d.toString()));
      c.on('close', (code) => resolve({ code: code ?? 1, out }));
    });
    console.log(`# bench smoke run took ${Math.round((Date.now() - t0) / 1000)} s`);
    check('burrow bench exits 0', () => assert.equal(r.code, 0, r.out.slice(-1500)));
    if (r.code !== 0) return 1;
    console.log(r.out.replace(/\r[^\n]*\r/g, '').split('\n').filter((l) => !l.includes('\x1b')).map((l) => `# ${l}`).join('\n'));
    const report = JSON.parse(fs.readFileSync(json, 'utf8'));
    check('JSON: top-level keys', () => assert.deepEqual(Object.keys(report).sort(), ['cni', 'cpuPerGb', 'date', 'dns', 'errors', 'estimateS', 'flowsRss', 'helpers', 'machine', 'options', 'samples', 'scale', 'timings', 'tools', 'versions']));
    check('JSON: machine, date, versions', () => {
      assert.equal(report.machine.cpus, os.cpus().length);
      assert.equal(report.machine.kernel, os.release());
      assert.match(report.date, /^\d{4}-\d\d-\d\dT/);
      assert.ok(report.versions.iperf3 && report.versions.burrow);
    });
    for (const p of PATHS) {
      const tools: string[] = p.kind === 'rootful' ? report.tools.rootful : p.kind === 'rootless' ? report.tools.rootless : ['burrow'];
      check(`${p.name}: every tool set up once (${tools.join(', ')})`, () => {
        for (const tool of tools) assert.equal(report.samples[p.name]?.setup?.[tool]?.length, 1, tool);
      });
      // burrow's own paths must all work; an anchor may fail on a path (its errors are reported)
      check(`${p.name}: every burrow metric measured`, () => {
        for (const m of METRICS) {
          const err = report.errors[`${p.name}|${m.name.replace(/^(udp-loss)$/, 'udp').replace(/^rr-p\d+$/, 'rr')}|burrow`];
          assert.ok(report.samples[p.name]?.[m.name]?.burrow?.[0] >= 0, `${m.name}${err ? ` (${err})` : ''}`);
        }
      });
    }
    check('no burrow measurement failed', () => {
      const failed = Object.entries(report.errors).filter(([k]) => k.endsWith('|burrow'));
      assert.ok(failed.length === 0, failed.map(([k, v]) => `${k}: ${v}`).join('; '));
    });
    check('scale: rootful at 1 and 3 containers, rootless too', () => {
      assert.deepEqual([...new Set(report.scale.rootful.map((s: { n: number }) => s.n))], [1, 3]);
      assert.deepEqual([...new Set(report.scale.rootless.map((s: { n: number }) => s.n))], [1, 3]);
      for (const s of [...report.scale.rootful, ...report.scale.rootless]) assert.ok(s.setupWallMs > 0 && s.rssPerCtrMiB > 0 && s.pssPerCtrMiB > 0 && s.pssPerCtrMiB <= s.rssPerCtrMiB + 0.01, JSON.stringify(s));
    });
    check('cpu per GB measured for burrow', () => assert.ok(report.cpuPerGb.burrow?.[0] > 0));
    check('memory with 1000 open connections measured for burrow', () => assert.ok(report.flowsRss.burrow > 0));
    check('dns: burrow\'s server measured with 1000 records (latency, qps, memory)', () => {
      const run = report.dns.runs.burrow?.[0];
      assert.equal(report.dns.records, 1000);
      assert.ok(run && run.p50Us > 0 && run.p99Us >= run.p50Us && run.qps > 0 && run.rssKiB > 0 && run.errors === 0, JSON.stringify(report.dns));
    });
    check('cni: podman\'s chain and bridge + host-local, every way of running burrow\'s plugins, against the reference', () => {
      for (const chain of ['podman-default', 'bridge+host-local']) {
        for (const variant of ['reference', 'burrow-exec', 'burrow-native', 'burrow-serve', 'burrow-inproc']) {
          const row = report.cni.rows.find((x: { chain: string; variant: string }) => x.chain === chain && x.variant === variant);
          assert.ok(row?.available && row.add.p50 > 0 && row.del.p50 > 0 && row.addSamples.length === report.cni.rounds, `${chain} ${variant}: ${JSON.stringify(row)}`);
        }
      }
      assert.equal(report.cni.rounds, 10, '--full --runs 1: 10 rounds');
      assert.match(r.out, /^CNI setup latency through burrow's runtime, 10 interleaved rounds/m);
    });
    const text = fs.readFileSync(svg, 'utf8');
    check('SVG: a document with every panel', () => {
      assert.ok(text.startsWith('<svg') && text.trimEnd().endsWith('</svg>'));
      for (const title of ['TCP throughput, one stream', 'HTTP requests per second, 32 clients', 'Request/response latency, p50', 'Container setup time', 'rootful: setup wall time', 'rootless: network process memory per stack']) assert.ok(text.includes(title), title);
    });
    check('the leftovers of a killed bench were collected first', () => {
      assert.match(r.out, /removed what an earlier bench left when it was killed: 1 process\(es\) tagged bbstale1, netns bbhbbstale1, netns bbrbbstale1, .*burrow-bench-bbstale1, user burrowbench/);
      assert.equal(orphan.exitCode ?? orphan.signalCode, 'SIGKILL', 'the orphaned tagged process was killed');
    });
    check('terminal table printed', () => assert.match(r.out, /^bridge-c2h: rootful bridge, container -> host$/m));
    check('nothing left: namespaces, user, temp dirs, agents', () => {
      assert.deepEqual(fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((x) => /^bb[hrdc]/.test(x)) : [], []);
      assert.notEqual(spawnSync('id', ['-u', 'burrowbench']).status, 0, 'the bench user is gone');
      assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((x) => x.startsWith('burrow-bench-')), []);
      assert.equal(spawnSync('pgrep', ['-f', 'bench.cjs --agent']).status, 1, 'no agent left');
      assert.ok(!fs.existsSync('/run/burrow-bench.pid'), 'the lock is released');
      assert.deepEqual(machineState(), stateBefore, 'the machine\'s IPAM stores, CNI cache and container state are as they were');
      assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((x) => /^burrow-\d+$/.test(x) && spawnSync('getent', ['passwd', x.slice(7)]).status !== 0), [], 'no rootless state dir of the deleted bench user');
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    // what was planted, in case the bench did not collect it (a check above has failed then)
    try {
      process.kill(orphan.pid!, 'SIGKILL');
    } catch {
      // collected
    }
    for (const ns of [`bbh${staleTag}`, `bbr${staleTag}`]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    fs.rmSync(path.join(os.tmpdir(), `burrow-bench-${staleTag}`), { recursive: true, force: true });
  }
  console.log(`# bench smoke: ${n - failed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then((c) => process.exit(c), (e: Error) => {
  console.log(`not ok - bench smoke crashed: ${e.stack}`);
  process.exit(1);
});
