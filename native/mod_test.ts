import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  constants, digestHex, flock, flockSync, listenInNetns, netnsCreate, netnsRemove, randomBytes, recvFds, runProgram, sendFds, socketInNetns, socketPair, tapOpen,
} from './mod.js';
import { SyscallError } from './errors.js';
import { ipJson, nsExec, rootTest, uniqueName } from '../test/helpers/netns.js';

test('digestHex through Node\'s OpenSSL gives node:crypto\'s digests; randomBytes fills what it is asked', (t) => {
  for (const algo of ['sha512', 'sha256', 'sha1'] as const) {
    for (const text of ['', 'podman', 'net1' + 'x'.repeat(5000), 'ünïcødé ✓ 容器']) {
      t.is(digestHex(algo, text), crypto.createHash(algo).update(text).digest('hex'), `${algo} of ${text.length} chars`);
    }
  }
  // FIPS 180-2's test vector
  t.is(digestHex('sha1', 'abc'), 'a9993e364706816aba3e25717850c26c9cd0d89d');
  t.throws(() => digestHex('md5' as 'sha1', 'x'), { message: /algo is sha512, sha256 or sha1/ });
  const a = randomBytes(64);
  const b = randomBytes(64);
  t.is(a.length, 64);
  t.false(a.equals(b));
  t.is(randomBytes(0).length, 0);
});

test('flock is exclusive across open file descriptions, and LOCK_NB reports contention', async (t) => {
  const c = constants();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-'));
  const file = path.join(dir, 'lock');
  const a = fs.openSync(file, 'w');
  const b = fs.openSync(file, 'r');
  t.teardown(() => {
    fs.closeSync(a);
    fs.closeSync(b);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  t.true(flockSync(a, c.LOCK_EX | c.LOCK_NB));
  t.false(flockSync(b, c.LOCK_EX | c.LOCK_NB));
  let got = false;
  const waiting = flock(b, c.LOCK_EX).then(() => { got = true; });
  await new Promise((r) => setTimeout(r, 30));
  t.false(got, 'blocked while the other fd holds it');
  flockSync(a, c.LOCK_UN);
  await waiting;
  t.true(got);
  const err = t.throws(() => flockSync(9999, c.LOCK_EX)) as SyscallError;
  t.true(err instanceof SyscallError);
  t.is(err.code, 'EBADF');
  t.is(err.syscall, 'flock');
});

test('SCM_RIGHTS passes a working fd over a socketpair', (t) => {
  const [x, y] = socketPair();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'hello fd');
  const fd = fs.openSync(file, 'r');
  sendFds(x, [fd], Buffer.from('tag'));
  const got = recvFds(y, 4, 16);
  t.is(got.data.toString(), 'tag');
  t.is(got.fds.length, 1);
  t.is(fs.readFileSync(got.fds[0], 'utf8'), 'hello fd');
  for (const f of [x, y, fd, got.fds[0]]) fs.closeSync(f);
});

rootTest('named netns create/remove, listening socket and TAP inside it', async (t) => {
  const name = uniqueName('bn');
  const ns = netnsCreate(name);
  t.teardown(() => netnsRemove(ns));
  t.true(fs.existsSync(`/run/netns/${name}`));
  t.throws(() => netnsCreate(name), { code: 'EEXIST' });
  nsExec(ns, ['ip', 'link', 'set', 'lo', 'up']);

  // A server socket created inside the netns serves a client inside it.
  const fd = listenInNetns(ns, 4, 'tcp', '127.0.0.1', 18080);
  const server = net.createServer((s) => s.end('in-netns')).listen({ fd });
  t.teardown(() => server.close());
  await new Promise((r) => server.once('listening', r));
  const body = await new Promise<string>((resolve, reject) => {
    // The client runs in the netns; the host's own 127.0.0.1:18080 is unused.
    import('node:child_process').then(({ execFile }) =>
      execFile('nsenter', [`--net=${ns}`, '--', 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/18080; cat <&3'], (e, out) => (e ? reject(e) : resolve(out))));
  });
  t.is(body, 'in-netns');
  t.throws(() => listenInNetns('/run/netns/does-not-exist', 4, 'tcp', '127.0.0.1', 1), { code: 'ENOENT', message: /does-not-exist/ });

  const tap = tapOpen(ns, 'tap0');
  t.teardown(() => fs.closeSync(tap.fd));
  const links = ipJson<{ ifname: string }[]>(ns, ['link']);
  t.truthy(links.find((l) => l.ifname === 'tap0'));
  t.false(fs.readdirSync('/sys/class/net').includes('tap0'), 'the TAP is not in the caller netns');
  const detail = nsExec(ns, ['ip', '-d', 'link', 'show', 'tap0']);
  t.regex(detail, /tun type tap pi off vnet_hdr on/);

  const raw = socketInNetns(ns, constants().AF_NETLINK, constants().SOCK_RAW, 0);
  fs.closeSync(raw);
  t.true(netnsRemove(ns));
  t.false(netnsRemove(ns));
});

test('runProgram: exit code, stdout and stderr apart, 4 MiB through cat both ways, a signal, a missing file', async (t) => {
  const sh = (script: string, input = '') => runProgram('/bin/sh', ['-c', script], Buffer.from(input));
  const r = await sh('echo out; echo err >&2; exit 3');
  t.is(r.code, 3);
  t.is(r.stdout.toString(), 'out\n');
  t.is(r.stderr.toString(), 'err\n');
  const big = Buffer.alloc(4 << 20, 'x');
  const c = await runProgram('/bin/cat', [], big);
  t.is(c.code, 0);
  t.true(c.stdout.equals(big), 'more than a pipe holds, in and out at once');
  t.is((await sh('kill -TERM $$')).code, 128 + 15);
  t.is((await sh('read a; echo "got $a"', 'line\n')).stdout.toString(), 'got line\n');
  t.is((await sh('cat', '')).stdout.length, 0, 'no input: stdin at EOF at once');
  const e = await t.throwsAsync(runProgram('/nonexistent/tool', [], Buffer.alloc(0)));
  t.regex(e!.message, /posix_spawn|ENOENT|No such file/);
});
