/**
 * `burrow cni install` carries its runtime (runtime/cni/copy.ts): the launchers keep working when
 * the checkout that installed them is gone, and with --with-node when the directory moves and no
 * Node is on PATH. Each test installs from a throwaway copy of this checkout's build, then removes it.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildId, restampCache, runtimeFiles } from '../runtime/cni/copy.js';
import { constants, flockSync } from '../native/mod.js';
import { ROOT } from './helpers/burrow.js';
import { OWN_BIN } from './helpers/cni.js';

const VERSION_IN = '{"cniVersion":"1.0.0"}';

function tmpDir(t: import('ava').ExecutionContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-install-t-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A checkout of its own: this one's build, file for file (what a copy takes from it). */
function fakeCheckout(at: string): string {
  for (const f of runtimeFiles(ROOT)) {
    fs.mkdirSync(path.dirname(path.join(at, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(at, f));
    fs.chmodSync(path.join(at, f), fs.statSync(path.join(ROOT, f)).mode & 0o777);
  }
  // the stamps of the caches name the copied bundles
  for (const f of runtimeFiles(ROOT).filter((x) => x.endsWith('.cache'))) restampCache(path.join(ROOT, f), path.join(at, f), path.join(at, f.slice(0, -'.cache'.length)));
  return at;
}

function install(checkout: string, args: string[]): string {
  const r = spawnSync(process.execPath, [path.join(checkout, 'bin', 'burrow'), 'cni', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`burrow cni ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function launch(file: string, env: Record<string, string>, stdin: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout: out, stderr: err }));
    c.stdin.on('error', () => undefined);
    c.stdin.end(stdin);
  });
}

const withPath = { PATH: process.env.PATH! };

test('the launchers, native and script, run their copy of the runtime after the checkout is gone', async (t) => {
  const dir = tmpDir(t);
  const checkout = fakeCheckout(path.join(dir, 'checkout'));
  const native = path.join(dir, 'native');
  const script = path.join(dir, 'script');
  const said = install(checkout, ['install', '--dir', native, '--socket', 'off']);
  t.regex(said, new RegExp(`^copied the runtime to ${native}/\\.burrow/${buildId(ROOT)}\n`));
  install(checkout, ['install', '--dir', script, '--no-native']);
  const want = await launch(path.join(OWN_BIN, 'bridge'), { ...withPath, CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(want.code, 0);
  fs.rmSync(checkout, { recursive: true });
  for (const d of [native, script]) {
    for (const plugin of ['bridge', 'portmap', 'host-local']) {
      const r = await launch(path.join(d, plugin), { ...withPath, CNI_COMMAND: 'VERSION' }, VERSION_IN);
      t.is(r.code, 0, `${d}/${plugin}: ${r.stderr}${r.stdout}`);
      if (plugin === 'bridge') t.is(r.stdout, want.stdout);
    }
    t.false(fs.readFileSync(path.join(d, 'bridge')).includes(checkout), 'the launcher names nothing in the checkout');
  }
  // the copy's code caches are stamped for the copied bundles: V8 uses them
  const copy = fs.realpathSync(path.join(native, '.burrow', 'current'));
  const probe = `const l = require(${JSON.stringify(path.join(copy, 'bin', 'load.cjs'))}); process.on('exit', () => process.stderr.write('cache=' + l.last.cache));`
    + `process.argv[1] = 'bridge'; l(${JSON.stringify(path.join(copy, 'dist', 'plugins', 'bridge.cjs'))});`;
  const p = spawnSync(process.execPath, ['-e', probe], { input: VERSION_IN, env: { ...withPath, CNI_COMMAND: 'VERSION' }, encoding: 'utf8' });
  t.regex(p.stderr, /cache=used$/);
  // packed with tar (whole-second mtimes) and unpacked elsewhere: the caches still fit
  const unpacked = path.join(dir, 'unpacked');
  fs.mkdirSync(unpacked);
  const tar = spawnSync('sh', ['-c', `tar -C ${JSON.stringify(dir)} -cf - native | tar -C ${JSON.stringify(unpacked)} -xf -`]);
  t.is(tar.status, 0, String(tar.stderr));
  const copy2 = fs.realpathSync(path.join(unpacked, 'native', '.burrow', 'current'));
  const p2 = spawnSync(process.execPath, ['-e', probe.split(copy).join(copy2)], { input: VERSION_IN, env: { ...withPath, CNI_COMMAND: 'VERSION' }, encoding: 'utf8' });
  t.regex(p2.stderr, /cache=used$/);
  const r2 = await launch(path.join(unpacked, 'native', 'bridge'), { ...withPath, CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(r2.stdout, want.stdout);
});

test('--with-node: the directory runs moved elsewhere with no Node on PATH, and "burrow cni serve" from the copy serves it', async (t) => {
  const dir = tmpDir(t);
  const checkout = fakeCheckout(path.join(dir, 'checkout'));
  const first = path.join(dir, 'first');
  t.throws(() => install(checkout, ['install', '--dir', first, '--no-native', '--with-node']), { message: /--with-node needs the native launchers/ });
  install(checkout, ['install', '--dir', first, '--with-node', '--socket', 'off']);
  fs.rmSync(checkout, { recursive: true });
  const moved = path.join(dir, 'moved');
  fs.renameSync(first, moved);
  const r = await launch(path.join(moved, 'tuning'), { PATH: '/nonexistent', CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(r.code, 0, r.stderr + r.stdout);
  t.regex(r.stdout, /"supportedVersions"/);
  // the copy's own CLI, with the copy's own Node, serves the launchers beside it
  const socket = path.join(dir, 'cni.sock');
  const cli = path.join(moved, '.burrow', 'current', 'bin', 'burrow');
  const svc = spawn(path.join(moved, '.burrow', 'current', 'node'), [cli, 'cni', 'serve', '--socket', socket, '--idle', '60'], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: '/nonexistent' } });
  t.teardown(() => svc.kill());
  let log = '';
  svc.stderr.on('data', (d: Buffer) => (log += d));
  for (let i = 0; !log.includes('serves CNI calls'); i++) {
    if (svc.exitCode !== null || i > 400) return t.fail(`burrow cni serve did not start: ${log}`);
    await new Promise((res) => setTimeout(res, 25));
  }
  const s = await launch(path.join(moved, 'tuning'), { PATH: '/nonexistent', CNI_COMMAND: 'VERSION', BURROW_CNI_SOCKET: socket }, VERSION_IN);
  t.is(s.stdout, r.stdout);
  t.regex(log, /VERSION tuning - -: exit 0/);
  t.notRegex(log, /not served/);
});

test('a new build goes beside the old; the one before stays until the next install, and one a process runs from until it stops; uninstall leaves nothing', async (t) => {
  const dir = tmpDir(t);
  const checkout = fakeCheckout(path.join(dir, 'checkout'));
  const bin = path.join(dir, 'bin');
  const copies = () => fs.readdirSync(path.join(bin, '.burrow')).filter((e) => e !== 'current' && !e.startsWith('.')).sort();
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    // another build: one bundle changes
    if (i > 0) fs.appendFileSync(path.join(checkout, 'dist', 'plugins', 'loopback.cjs'), `\n// build ${i}\n`);
    ids.push(buildId(checkout));
    install(checkout, ['install', '--dir', bin, '--socket', 'off']);
    t.is(fs.readlinkSync(path.join(bin, '.burrow', 'current')), ids[i]);
    t.deepEqual(copies(), ids.slice(Math.max(0, i - 1)).sort(), `after install ${i + 1}`);
  }
  t.is(new Set(ids).size, 3);
  // a process that runs from a copy (a DHCP daemon, a DNS server) keeps it past its turn
  const user = spawn('sh', ['-c', 'sleep 60', path.join(bin, '.burrow', ids[1], 'bin', 'load.cjs')], { stdio: 'ignore' });
  t.teardown(() => user.kill());
  fs.appendFileSync(path.join(checkout, 'dist', 'plugins', 'loopback.cjs'), '\n// build 3\n');
  ids.push(buildId(checkout));
  const kept = install(checkout, ['install', '--dir', bin, '--socket', 'off']);
  t.regex(kept, new RegExp(`kept .*/${ids[1]}: pid ${user.pid} runs from it`));
  t.deepEqual(copies(), ids.slice(1).sort());
  user.kill();
  await new Promise((r) => user.once('exit', r));
  // a cache whose stamp does not fit its bundle is not restamped into the copy
  const cache = path.join(checkout, 'dist', 'plugins', 'tuning.cjs.cache');
  const data = fs.readFileSync(cache);
  fs.writeFileSync(cache, Buffer.concat([Buffer.from(data.toString('latin1', 0, data.indexOf(0x0a)).replace(/ \S+$/, ' 1')), data.subarray(data.indexOf(0x0a))]));
  fs.appendFileSync(path.join(checkout, 'dist', 'plugins', 'loopback.cjs'), '\n// build 4\n');
  ids.push(buildId(checkout));
  install(checkout, ['install', '--dir', bin, '--socket', 'off']);
  t.deepEqual(copies(), ids.slice(3).sort(), 'the copy nobody runs from goes now');
  t.false(fs.existsSync(path.join(bin, '.burrow', ids[4], 'dist', 'plugins', 'tuning.cjs.cache')));
  t.true(fs.existsSync(path.join(bin, '.burrow', ids[4], 'dist', 'plugins', 'bridge.cjs.cache')));
  // the same build again: the copy is reused, the previous one goes
  install(checkout, ['install', '--dir', bin, '--socket', 'off']);
  t.deepEqual(copies(), [ids[4]]);
  fs.writeFileSync(path.join(bin, 'someone-elses'), 'x');
  const out = install(checkout, ['uninstall', '--dir', bin]);
  t.regex(out, /removed .*\/bin\/bridge\n/);
  t.regex(out, /removed .*\/bin\/\.burrow\n$/);
  t.deepEqual(fs.readdirSync(bin), ['someone-elses']);
});

test('a service whose root gets a new build replaces itself in place: the same pid and socket, and the new launchers are served', async (t) => {
  const dir = tmpDir(t);
  const checkout = fakeCheckout(path.join(dir, 'checkout'));
  const bin = path.join(dir, 'bin');
  const socket = path.join(dir, 'cni.sock');
  install(checkout, ['install', '--dir', bin, '--socket', socket]);
  const logFile = path.join(dir, 'serve.log');
  const fd = fs.openSync(logFile, 'a');
  // as the unit runs it: through DIR/.burrow/current, which the next install moves
  const svc = spawn(path.join(bin, '.burrow', 'current', 'bin', 'burrow'), ['cni', 'serve', '--socket', socket], { stdio: ['ignore', fd, fd], env: withPath });
  fs.closeSync(fd);
  t.teardown(() => svc.kill('SIGKILL'));
  const log = () => fs.readFileSync(logFile, 'utf8');
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; !ok(); i++) {
      if (i > 400 || svc.exitCode !== null) throw new Error(`${what} (exit ${svc.exitCode}); the service's log:\n${log()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const served = () => log().split('\n').filter((l) => l.startsWith('VERSION loopback - -: exit 0')).length;
  await until('the service never listened', () => log().includes('serves CNI calls'));
  const version = { ...withPath, CNI_COMMAND: 'VERSION' };
  const first = await launch(path.join(bin, 'loopback'), version, VERSION_IN);
  t.is(first.code, 0, first.stderr);
  t.is(served(), 1, log());
  // another build: the launchers name it; the service still runs the one before
  fs.appendFileSync(path.join(checkout, 'dist', 'plugins', 'loopback.cjs'), '\n// build 2\n');
  const next = buildId(checkout);
  install(checkout, ['install', '--dir', bin, '--socket', socket]);
  const declined = await launch(path.join(bin, 'loopback'), version, VERSION_IN);
  t.is(declined.code, 0, declined.stderr);
  t.is(declined.stdout, first.stdout, 'declined, the call ran cold with the same answer');
  await until('the service did not replace itself', () => log().includes('(taken over from the service this one replaces)'));
  t.regex(log(), new RegExp(`holds build ${next} now, this service runs \\S+: it hands its socket to the new code`));
  t.regex(log(), new RegExp(`serves CNI calls on ${socket} \\(taken over from the service this one replaces\\) \\(plugins from \\S+/${next},`));
  t.is(svc.exitCode, null, 'the same process (execve), still running');
  const after = await launch(path.join(bin, 'loopback'), version, VERSION_IN);
  t.is(after.code, 0, after.stderr);
  t.is(after.stdout, first.stdout);
  t.is(served(), 2, `the new build's launcher is served by the replacement:\n${log()}`);
  t.regex(fs.readFileSync(`/proc/${svc.pid}/cmdline`, 'utf8'), /\.burrow\/current\/bin\/burrow\0cni\0serve/);
  svc.kill('SIGTERM');
  await new Promise((r) => (svc.exitCode === null ? svc.once('exit', r) : r(null)));
  t.is(svc.exitCode, 0, log());
  t.false(fs.existsSync(socket), 'the replacement removes the socket it took over when it closes');
});

test('--link: the launchers name the checkout; the copy they named before stays until the next install, then DIR/.burrow goes', async (t) => {
  const dir = tmpDir(t);
  const checkout = fakeCheckout(path.join(dir, 'checkout'));
  const bin = path.join(dir, 'bin');
  install(checkout, ['install', '--dir', bin, '--socket', 'off']);
  const id = fs.readlinkSync(path.join(bin, '.burrow', 'current'));
  const out = install(checkout, ['install', '--dir', bin, '--socket', 'off', '--link']);
  t.regex(out, new RegExp(`kept \\S+/${id} until the next install`));
  t.deepEqual(fs.readdirSync(path.join(bin, '.burrow')).sort(), ['.lock', id], 'the copy stays (a cold call may run from it); current goes');
  const r = await launch(path.join(bin, 'loopback'), { ...withPath, CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(r.code, 0, r.stderr);
  t.regex(fs.readFileSync(path.join(bin, 'loopback'), 'latin1'), new RegExp(`root=${checkout.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`), 'the launcher names the checkout');
  install(checkout, ['install', '--dir', bin, '--socket', 'off', '--link']);
  t.false(fs.existsSync(path.join(bin, '.burrow')), 'the next install removes it');
});

test('an uninstall that removes DIR/.burrow while an install waits for its lock: the install takes the new lock, not the removed one', async (t) => {
  const dir = tmpDir(t);
  const checkout = fakeCheckout(path.join(dir, 'checkout'));
  const bin = path.join(dir, 'bin');
  install(checkout, ['install', '--dir', bin, '--socket', 'off']);
  const base = path.join(bin, '.burrow');
  const lock = (file: string) => {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    flockSync(fd, constants().LOCK_EX);
    return fd;
  };
  const old = lock(path.join(base, '.lock'));
  const waiting = spawn(process.execPath, [path.join(checkout, 'bin', 'burrow'), 'cni', 'install', '--dir', bin, '--socket', 'off'], { stdio: 'ignore' });
  const done = new Promise<number | null>((r) => waiting.once('exit', (code) => r(code)));
  t.teardown(() => waiting.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 1000)); // it waits on the lock by now
  // what an uninstall does under the lock; then a third comer locks the lock file that is there now
  fs.rmSync(base, { recursive: true, force: true });
  fs.mkdirSync(base);
  const fresh = lock(path.join(base, '.lock'));
  fs.closeSync(old);
  await new Promise((r) => setTimeout(r, 1500));
  t.deepEqual(fs.readdirSync(base), ['.lock'], 'the install waits for the lock that is there: it has written nothing');
  fs.closeSync(fresh);
  t.is(await done, 0);
  t.true(fs.existsSync(path.join(base, 'current')));
});

test('compat install: the drop-ins run their copy after the checkout is gone; beside plugin launchers of another build in one DIR, each keeps its copy until its own uninstall', async (t) => {
  const dir = tmpDir(t);
  const checkout = fakeCheckout(path.join(dir, 'checkout'));
  const bin = path.join(dir, 'bin');
  const compat = (args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(checkout, 'bin', 'burrow'), 'compat', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`burrow compat ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const copies = () => fs.readdirSync(path.join(bin, '.burrow')).filter((e) => e !== 'current' && !e.startsWith('.')).sort();
  compat(['install', '--dir', bin]);
  const first = buildId(checkout);
  fs.appendFileSync(path.join(checkout, 'dist', 'plugins', 'loopback.cjs'), '\n// build 2\n');
  const second = buildId(checkout);
  install(checkout, ['install', '--dir', bin, '--socket', 'off']);
  t.deepEqual(copies(), [first, second].sort(), 'the drop-ins\' copy stays beside the plugins\' newer one');
  fs.rmSync(checkout, { recursive: true, force: true });
  const env = { PATH: process.env.PATH! };
  t.regex(spawnSync(path.join(bin, 'slirp4netns'), ['--version'], { encoding: 'utf8', env }).stdout, /^slirp4netns version 1\.2\.0\n/);
  t.regex(spawnSync(path.join(bin, 'netavark'), ['version'], { encoding: 'utf8', env }).stdout, /"version": "1\.4\.0"/);
  const v = await launch(path.join(bin, 'loopback'), { ...env, CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(v.code, 0, v.stderr);
  // uninstalled from the copy itself (the checkout is gone)
  const self = (args: string[]) => spawnSync(process.execPath, [path.join(bin, '.burrow', 'current', 'bin', 'burrow'), ...args], { encoding: 'utf8' });
  const u = self(['compat', 'uninstall', '--dir', bin]);
  t.is(u.status, 0, u.stderr);
  t.deepEqual(copies(), [second], 'the drop-ins\' copy goes with them; the plugins keep theirs');
  t.is(fs.readlinkSync(path.join(bin, '.burrow', 'current')), second);
  t.is((await launch(path.join(bin, 'loopback'), { ...env, CNI_COMMAND: 'VERSION' }, VERSION_IN)).code, 0);
  const c = self(['cni', 'uninstall', '--dir', bin]);
  t.is(c.status, 0, c.stderr);
  t.deepEqual(fs.readdirSync(bin), []);
});
