/**
 * The resident CNI path: the native launcher (native/burrow-cni.c) against a scripted service (the
 * wire, byte for byte; declines; a service that dies), then against `burrow cni serve` for real:
 * a service killed in the middle of an ADD, concurrent calls, and a caller in another netns.
 * The plugin suites themselves run through the service too (scripts/test.sh, BURROW_TEST_CNI).
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { emitResponse, parseRequest, requestLength, ServeStatus, type ServeRequest } from '../net/cni/serve_wire.js';
import { constants, flockSync } from '../native/mod.js';
import { answers } from '../native/system.js';
import { buildId } from '../runtime/cni/copy.js';
import { CLI, ROOT } from './helpers/burrow.js';
import { execPlugin, hostSnapshot, OWN_BIN, residentLaunchers, residentService } from './helpers/cni.js';
import { nsExec, rootTest, testNetns } from './helpers/netns.js';

const VERSION_IN = '{"cniVersion":"1.0.0"}';

function tmpDir(t: import('ava').ExecutionContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-serve-t-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A scripted service on `socket`: `answer` sees each whole request and returns the bytes to send (null: hang up). */
async function scripted(t: import('ava').ExecutionContext, socket: string, answer: (r: ServeRequest) => Buffer | null): Promise<ServeRequest[]> {
  const seen: ServeRequest[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const n = requestLength(buf);
      if (typeof n !== 'number' || buf.length < n) return;
      const r = parseRequest(buf);
      if (typeof r === 'string') throw new Error(`the launcher sent a bad request: ${r}`);
      seen.push(r);
      const out = answer(r);
      if (out) s.end(out);
      else s.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => void server.close());
  return seen;
}

/** Runs a launcher the way a runtime does; resolves with its exit code and exact bytes. */
function launch(file: string, env: Record<string, string>, stdin: string): Promise<{ code: number | null; stdout: Buffer; stderr: Buffer }> {
  return new Promise((resolve, reject) => {
    const c = spawn(file, [], { env: { PATH: process.env.PATH!, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    c.stdout.on('data', (d: Buffer) => out.push(d));
    c.stderr.on('data', (d: Buffer) => err.push(d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }));
    c.stdin.on('error', () => undefined); // a launcher that fails first reads no stdin: EPIPE
    c.stdin.end(stdin);
  });
}

const cold = (type: string, env: Record<string, string>, stdin: string) => launch(path.join(OWN_BIN, type), env, stdin);

test('the launcher sends the call as serve_wire says and prints the answer byte for byte, exit code too', async (t) => {
  const socket = path.join(tmpDir(t), 's');
  const stdout = Buffer.from([0x7b, 0x00, 0xff, 0x0a, 0x7d]);
  const seen = await scripted(t, socket, () => emitResponse({ status: ServeStatus.Served, exitCode: 7, stdout, stderr: Buffer.from('a line\n') }));
  const r = await launch(path.join(residentLaunchers(), 'portmap'), { BURROW_CNI_SOCKET: socket, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', WEIRD: 'a=b=c' }, 'the config\n');
  t.is(r.code, 7);
  t.deepEqual(r.stdout, stdout);
  t.is(r.stderr.toString(), 'a line\n');
  t.is(seen.length, 1);
  const q = seen[0];
  t.is(q.name, 'portmap');
  t.is(q.root, buildId(ROOT), 'the launcher names its build');
  t.is(q.stdin.toString(), 'the config\n');
  t.is(q.env.WEIRD, 'a=b=c');
  t.is(q.env.CNI_CONTAINERID, 'c1');
  t.is(q.netnsInode, fs.statSync('/proc/self/ns/net', { bigint: true }).ino);
  t.is(q.euid, process.geteuid!());
  const mask = process.umask(0o022);
  process.umask(mask);
  t.is(q.umask, mask);
});

test('declined, or no service: the launcher runs the plugin cold, with the script launcher\'s very bytes', async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 's');
  const seen = await scripted(t, socket, () => emitResponse({ status: ServeStatus.NotServed, exitCode: 0, stdout: Buffer.from('another root'), stderr: Buffer.alloc(0) }));
  const want = await cold('bridge', { CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(want.code, 0);
  t.regex(want.stdout.toString(), /supportedVersions/);
  const launcher = path.join(residentLaunchers(), 'bridge');
  for (const sock of [socket, path.join(dir, 'nobody-listens'), 'off']) {
    const r = await launch(launcher, { BURROW_CNI_SOCKET: sock, CNI_COMMAND: 'VERSION' }, VERSION_IN);
    t.is(r.code, 0, sock);
    t.deepEqual(r.stdout, want.stdout, sock);
    t.deepEqual(r.stderr, want.stderr, sock);
  }
  t.is(seen.length, 1, 'only the listening service was asked');
  // an error from the cold path is the cold path's, exit code included
  const bad = await cold('bridge', { CNI_COMMAND: 'ADD' }, '{}');
  const viaLauncher = await launch(launcher, { BURROW_CNI_SOCKET: socket, CNI_COMMAND: 'ADD' }, '{}');
  t.is(viaLauncher.code, bad.code);
  t.deepEqual(viaLauncher.stdout, bad.stdout);
});

test('a service that hangs up mid-call: the call runs cold, and a half-answered one too', async (t) => {
  const socket = path.join(tmpDir(t), 's');
  let n = 0;
  const seen = await scripted(t, socket, () => (n++ % 2 === 0 ? null : emitResponse({ status: ServeStatus.Served, exitCode: 0, stdout: Buffer.from('x'.repeat(100)), stderr: Buffer.alloc(0) }).subarray(0, 40)));
  const want = await cold('tuning', { CNI_COMMAND: 'VERSION' }, VERSION_IN);
  for (let i = 0; i < 2; i++) {
    const r = await launch(path.join(residentLaunchers(), 'tuning'), { BURROW_CNI_SOCKET: socket, CNI_COMMAND: 'VERSION' }, VERSION_IN);
    t.is(r.code, 0);
    t.deepEqual(r.stdout, want.stdout);
  }
  t.is(seen.length, 2);
});

test('a copy without a trailer, or a trailer naming a Node that is gone, fails with the spec\'s error JSON', async (t) => {
  const dir = tmpDir(t);
  const { nativeExecutable } = await import('../native/mod.js');
  const bare = path.join(dir, 'bare');
  fs.copyFileSync(nativeExecutable('burrow-cni')!, bare);
  fs.chmodSync(bare, 0o755);
  const r = await launch(bare, { CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(r.code, 1);
  t.regex(JSON.parse(r.stdout.toString()).msg, /no trailer naming its plugin: install it with "burrow cni install --dir DIR"/);
  const moved = path.join(dir, 'bridge');
  const text = fs.readFileSync(path.join(residentLaunchers(), 'bridge'));
  // the same length, so the trailer's footer still holds
  const broken = Buffer.from(text.toString('latin1').replace(`node=${process.execPath}`, `node=/${'x'.repeat(process.execPath.length - 1)}`), 'latin1');
  fs.writeFileSync(moved, broken, { mode: 0o755 });
  const m = await launch(moved, { CNI_COMMAND: 'VERSION', BURROW_CNI_SOCKET: 'off' }, VERSION_IN);
  t.is(m.code, 1);
  const e = JSON.parse(m.stdout.toString());
  t.is(e.code, 999);
  t.regex(e.msg, /cannot start the bridge plugin: exec \/x+: No such file or directory \(installed from .*: run "burrow cni install" again\)/);
});

test('the service drops a connection that sends half a request, or garbage, and goes on serving', async (t) => {
  const { serveCni } = await import('../runtime/cni/serve.js');
  const socket = path.join(tmpDir(t), 's');
  const lines: string[] = [];
  const svc = await serveCni({ socket, root: ROOT, requestTimeoutMs: 200, log: (l) => lines.push(l) });
  t.teardown(() => svc.close());
  const closedBy = (bytes: Buffer) => new Promise<number>((resolve) => {
    const t0 = Date.now();
    const c = net.connect(socket, () => c.write(bytes));
    c.on('error', () => undefined);
    c.on('close', () => resolve(Date.now() - t0));
  });
  t.true((await closedBy(Buffer.from('BCNQ'))) >= 150, 'half a head: dropped at the timeout');
  await closedBy(Buffer.from('GET / HTTP/1.0\r\n\r\n')); // not a request: dropped for its head (the log says so below)
  t.deepEqual(svc.calls(), { served: 0, declined: 0, dropped: 2 });
  t.truthy(lines.find((l) => /dropped a connection: no whole request within 0\.2 s/.test(l)));
  t.truthy(lines.find((l) => /dropped a connection: bad request \(bad-magic\)/.test(l)));
  const r = await launch(path.join(residentLaunchers(), 'bridge'), { BURROW_CNI_SOCKET: socket, CNI_COMMAND: 'VERSION' }, VERSION_IN);
  t.is(r.code, 0);
  t.is(svc.calls().served, 1, 'the next call is served');
});

/** A bridge network config whose host-local store is in `dataDir`. */
const bridgeConf = (dataDir: string, subnet: string) => ({
  cniVersion: '1.0.0', name: 'servenet', type: 'bridge', bridge: 'cni-serve0', isGateway: true,
  ipam: { type: 'host-local', dataDir, ranges: [[{ subnet }]] },
});

rootTest('the service killed in the middle of an ADD: the launcher runs DEL then ADD cold, and nothing is left twice', async (t) => {
  const host = testNetns(t, 'sh');
  const ctr = testNetns(t, 'sc');
  const dataDir = tmpDir(t);
  const svc = await residentService(host);
  const conf = bridgeConf(dataDir, '10.241.0.0/24');
  // Hold host-local's lock: the service's ADD makes the bridge and the veth, then waits here.
  fs.mkdirSync(path.join(dataDir, 'servenet'), { recursive: true });
  const lockFd = fs.openSync(path.join(dataDir, 'servenet', 'lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  t.true(flockSync(lockFd, constants().LOCK_EX | constants().LOCK_NB));
  const spec = { command: 'ADD', containerId: 'killed', netns: ctr };
  const call = execPlugin(host, residentLaunchers(), 'bridge', spec, conf, { BURROW_CNI_SOCKET: svc.socket });
  const veths = () => (hostSnapshot(host, { vethNames: true }) as { links: string[] }).links.filter((l) => l.startsWith('veth'));
  for (let i = 0; veths().length === 0; i++) {
    if (i > 200) return t.fail(`the service never made the veth: ${svc.log()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const halfDone = veths();
  svc.child.kill('SIGKILL');
  await new Promise((r) => svc.child.once('exit', r));
  fs.closeSync(lockFd);
  const r = await call;
  t.is(r.code, 0, r.raw + r.stderr);
  t.is(veths().length, 1, 'one host veth: the dead service\'s half was removed first');
  t.notDeepEqual(veths(), halfDone, 'the veth is the cold ADD\'s own');
  t.regex(nsExec(ctr, ['ip', '-o', 'addr', 'show', 'eth0']), /10\.241\.0\.2\/24/);
  t.deepEqual(fs.readdirSync(path.join(dataDir, 'servenet')).filter((f) => /^\d/.test(f)), ['10.241.0.2'], 'one reservation');
  const del = await execPlugin(host, residentLaunchers(), 'bridge', { ...spec, command: 'DEL' }, conf, { BURROW_CNI_SOCKET: svc.socket });
  t.is(del.code, 0, del.raw);
  t.deepEqual(veths(), []);
  t.deepEqual(fs.readdirSync(path.join(dataDir, 'servenet')).filter((f) => /^\d/.test(f)), []);
});

rootTest('20 concurrent ADDs and DELs through one service; a caller in another netns is declined and runs cold', async (t) => {
  const host = testNetns(t, 'sh');
  const ctrs = Array.from({ length: 20 }, () => testNetns(t, 'sc'));
  const dataDir = tmpDir(t);
  const svc = await residentService(host);
  const conf = bridgeConf(dataDir, '10.242.0.0/24');
  const env = { BURROW_CNI_SOCKET: svc.socket };
  const adds = await Promise.all(ctrs.map((c, i) => execPlugin(host, residentLaunchers(), 'bridge', { command: 'ADD', containerId: `c${i}`, netns: c }, conf, env)));
  t.deepEqual(adds.map((a) => a.code), ctrs.map(() => 0), adds.map((a) => a.raw).join('\n'));
  const ips = adds.map((a) => (a.out.ips as { address: string }[])[0].address).sort();
  t.is(new Set(ips).size, 20, 'twenty distinct addresses');
  t.is(svc.log().match(/^ADD bridge c\d+ eth0: exit 0/gm)?.length, 20, 'all served');
  const dels = await Promise.all(ctrs.map((c, i) => execPlugin(host, residentLaunchers(), 'bridge', { command: 'DEL', containerId: `c${i}`, netns: c }, conf, env)));
  t.deepEqual(dels.map((d) => d.code), ctrs.map(() => 0));
  t.deepEqual(fs.readdirSync(path.join(dataDir, 'servenet')).filter((f) => /^\d/.test(f)), []);
  // Another netns: the service would program the wrong one, so it declines; the cold path serves.
  const other = testNetns(t, 'so');
  const ctr = testNetns(t, 'sc');
  const r = await execPlugin(other, residentLaunchers(), 'bridge', { command: 'ADD', containerId: 'elsewhere', netns: ctr }, conf, env);
  t.is(r.code, 0, r.raw);
  t.regex(svc.log(), /ADD bridge: not served \(the caller is in another network namespace\)/);
  t.truthy((hostSnapshot(other) as { links: string[] }).links.find((l) => l.startsWith('cni-serve0')), 'the bridge is in the caller\'s netns');
  t.is((await execPlugin(other, residentLaunchers(), 'bridge', { command: 'DEL', containerId: 'elsewhere', netns: ctr }, conf, env)).code, 0);
});

rootTest('burrow cni serve: SIGTERM lets a call in flight finish and removes its socket; a second service on the same socket is refused', async (t) => {
  const host = testNetns(t, 'sh');
  const svc = await residentService(host);
  const second = spawnSync('nsenter', [`--net=${host}`, '--', process.execPath, CLI, 'cni', 'serve', '--socket', svc.socket], { encoding: 'utf8', timeout: 20_000 });
  t.is(second.status, 125, second.stderr);
  t.regex(second.stderr, /another CNI service is listening on /);
  t.true(fs.existsSync(svc.socket), 'the first keeps its socket');
  // a call waiting on host-local's lock when SIGTERM comes: it is answered, then the service goes
  const dataDir = tmpDir(t);
  const ctr = testNetns(t, 'sc');
  fs.mkdirSync(path.join(dataDir, 'servenet'), { recursive: true });
  const lockFd = fs.openSync(path.join(dataDir, 'servenet', 'lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  t.true(flockSync(lockFd, constants().LOCK_EX | constants().LOCK_NB));
  const conf = bridgeConf(dataDir, '10.243.0.0/24');
  const call = execPlugin(host, residentLaunchers(), 'bridge', { command: 'ADD', containerId: 'late', netns: ctr }, conf, { BURROW_CNI_SOCKET: svc.socket });
  for (let i = 0; !nsExec(host, ['ip', '-o', 'link']).includes('veth'); i++) {
    if (i > 200) return t.fail('the call never started');
    await new Promise((r) => setTimeout(r, 25));
  }
  svc.child.kill('SIGTERM');
  for (let i = 0; !svc.log().includes('closing (asked): 1 call(s) in flight'); i++) {
    if (i > 200) return t.fail(svc.log());
    await new Promise((r) => setTimeout(r, 25));
  }
  t.false(fs.existsSync(svc.socket) && (await answers(svc.socket)), 'no new calls once closing');
  fs.closeSync(lockFd);
  const r = await call;
  t.is(r.code, 0, r.raw);
  await new Promise((res) => (svc.child.exitCode === null ? svc.child.once('exit', res) : res(null)));
  t.is(svc.child.exitCode, 0);
  t.false(fs.existsSync(svc.socket));
  t.regex(svc.log(), /^ADD bridge late eth0: exit 0/m, 'the call in flight was served');
  const del = await execPlugin(host, residentLaunchers(), 'bridge', { command: 'DEL', containerId: 'late', netns: ctr }, conf, { BURROW_CNI_SOCKET: svc.socket });
  t.is(del.code, 0, del.raw);
});
