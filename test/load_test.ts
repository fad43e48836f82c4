/**
 * bin/load.cjs, the loader every launcher goes through: the shipped bundles start from a code
 * cache V8 accepts, and a cache that does not fit its bundle (stale, corrupt, missing, turned off)
 * falls back to compiling the source with the same result.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const LOADER = path.join(ROOT, 'bin', 'load.cjs');

/** Loads FILE through the loader as a launcher would (argv [node, FILE, ...args]); reports what the loader did on stderr's last line. */
function load(file: string, args: string[], env: Record<string, string> = {}, input = '') {
  const code = `const l = require(${JSON.stringify(LOADER)}); process.argv.splice(1, 1, ${JSON.stringify(file)}); l(${JSON.stringify(file)}); process.on('exit', () => process.stderr.write('\\n' + JSON.stringify(l.last) + '\\n'));`;
  const r = spawnSync(process.execPath, ['-e', code, 'x', ...args], { env: { ...process.env, BURROW_CODE_CACHE: '', ...env }, input, encoding: 'utf8' });
  const lines = r.stderr.trim().split('\n');
  return { status: r.status, stdout: r.stdout, last: JSON.parse(lines.pop()!) as { file: string; cache: string }, stderr: lines.join('\n') };
}

test('every shipped bundle starts from its code cache, with the output it has without one', (t) => {
  const cases: Array<[string, string[], Record<string, string>, string]> = [
    ['dist/burrow.cjs', ['--version'], {}, ''],
    ['dist/compat/netavark.cjs', ['version'], {}, ''],
    ['dist/compat/slirp4netns.cjs', ['--version'], {}, ''],
    ['dist/compat/aardvark-dns.cjs', ['--version'], {}, ''],
    ...fs.readdirSync(path.join(ROOT, 'dist', 'plugins')).filter((f) => f.endsWith('.cjs'))
      .map((f): [string, string[], Record<string, string>, string] => [`dist/plugins/${f}`, [], { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}']),
  ];
  t.true(cases.length >= 14);
  for (const [rel, args, env, input] of cases) {
    const file = path.join(ROOT, rel);
    const warm = load(file, args, env, input);
    t.is(warm.last.cache, 'used', `${rel}: the cache is there and V8 takes it`);
    const cold = load(file, args, { ...env, BURROW_CODE_CACHE: 'off' }, input);
    t.is(cold.last.cache, 'off');
    t.is(warm.status, 0, `${rel}: ${warm.stderr}`);
    t.is(warm.stdout, cold.stdout, rel);
    t.not(warm.stdout, '', rel);
  }
});

test('a cache that does not fit its bundle is not used: stale, corrupt, missing', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-load-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'b.cjs');
  const body = (n: number) => `const f = (x) => x * ${n}; module.exports = f; console.log(require('node:path').basename(__filename), process.argv.slice(2).join(','), f(2));\n`;
  fs.writeFileSync(file, body(3));
  t.is(load(file, ['a', 'b']).last.cache, 'none');
  const made = load(file, ['a', 'b'], { BURROW_CODE_CACHE: `write:${file}.cache` });
  t.is(made.stdout, 'b.cjs a,b 6\n');
  t.true(fs.statSync(`${file}.cache`).size > 50);
  const used = load(file, ['a', 'b']);
  t.deepEqual([used.last.cache, used.stdout], ['used', 'b.cjs a,b 6\n']);
  // the same length, another text (V8 checks only the length): the stamp's mtime catches it
  fs.writeFileSync(file, body(4));
  fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
  const stale = load(file, ['a']);
  t.deepEqual([stale.last.cache, stale.stdout], ['stale', 'b.cjs a 8\n']);
  // the right stamp over bytes that are no code cache: V8 rejects them, the source runs
  const st = fs.statSync(file);
  fs.writeFileSync(`${file}.cache`, `burrow-code-cache-1 ${process.version} ${process.arch} ${st.size} ${st.mtimeMs}\n${'x'.repeat(200)}`);
  const corrupt = load(file, ['a']);
  t.deepEqual([corrupt.last.cache, corrupt.stdout, corrupt.status], ['rejected', 'b.cjs a 8\n', 0]);
});

test('the launchers run through the loader, in place and through a symlink', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-load-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [launcher, args, want] of [['bin/burrow', ['--version'], /^\d+\.\d+\.\d+\n$/], ['bin/compat/netavark', ['version'], /"version": "1\.4\.0"/], ['plugins/bin/loopback', [], /supportedVersions/]] as const) {
    const link = path.join(dir, path.basename(launcher));
    fs.symlinkSync(path.join(ROOT, launcher), link);
    t.true(fs.readFileSync(path.join(ROOT, launcher), 'utf8').includes('load.cjs'), launcher);
    for (const exe of [path.join(ROOT, launcher), link]) {
      const r = spawnSync(exe, [...args], { env: { ...process.env, CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8' });
      t.is(r.status, 0, `${exe}: ${r.stderr}`);
      t.regex(r.stdout, want, exe);
    }
  }
});
