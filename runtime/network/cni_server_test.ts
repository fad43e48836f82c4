/**
 * The user's namespace's CNI server, on a socket in a temp dir (no root, no namespace): requests
 * with and without the container's netns fd, errors, hostile requests, the idle exit and the
 * callers' lock, and leaving when the namespace's holder goes.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { constants, flock } from '../../native/mod.js';
import { processStartTime } from '../../native/system.js';
import { exchange, serveInside, type InsideRequest } from './cni_server.js';

const openFds = () => fs.readdirSync('/proc/self/fd').length;

function server(t: import('ava').ExecutionContext, handle: (req: InsideRequest) => Promise<unknown>, o: { idleMs?: number; holder?: { pid: number; startTime: string } } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-cnisrv-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'cni.sock');
  const lockFile = path.join(dir, 'cni.lock');
  const holder = o.holder ?? { pid: process.pid, startTime: processStartTime(process.pid)! };
  let left = false;
  const done = serveInside({ socket, lockFile, holder, idleMs: o.idleMs ?? 60_000, handle }).then(() => (left = true));
  const ready = async () => {
    for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 10));
  };
  return { socket, lockFile, done, ready, left: () => left };
}

test.serial('a request with the container\'s netns fd: the handler names it as /proc/self/fd/N, the fd is closed after', async (t) => {
  const seen: Array<{ req: InsideRequest; target: string }> = [];
  const before = openFds();
  const s = server(t, async (req) => {
    seen.push({ req, target: req.netns ? fs.readlinkSync(req.netns) : '' });
    return { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] };
  }, { idleMs: 100 });
  await s.ready();
  const file = path.join(path.dirname(s.socket), 'netns-stand-in');
  fs.writeFileSync(file, '');
  const fd = fs.openSync(file, 'r');
  const reply = await exchange(s.socket, { op: 'add', network: 'n', containerId: 'c1', ifname: 'eth0' }, fd);
  fs.closeSync(fd);
  t.deepEqual(reply, { ok: true, result: { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] } });
  t.is(seen.length, 1);
  t.regex(seen[0].req.netns!, /^\/proc\/self\/fd\/\d+$/);
  t.is(seen[0].target, file, 'the handler opened the very file the caller holds');
  t.like(seen[0].req, { op: 'add', network: 'n', containerId: 'c1', ifname: 'eth0' });
  // without an fd (DEL of a container whose netns is gone): netns ""
  t.like(await exchange(s.socket, { op: 'del', network: 'n', containerId: 'c1', ifname: 'eth0' }), { ok: true });
  t.is(seen[1].req.netns, '');
  await s.done; // idle
  await new Promise((r) => setImmediate(r));
  t.is(openFds(), before, 'the server kept no fd: neither the received netns nor a connection');
  t.false(fs.existsSync(s.socket), 'the socket goes with the server');
});

test.serial('errors come back as a message; hostile requests get an answer and leave nothing open', async (t) => {
  const before = openFds();
  const s = server(t, async (req) => {
    if (req.network === 'bad') throw new Error('network "bad" not found');
    return null;
  }, { idleMs: 150 });
  await s.ready();
  t.deepEqual(await exchange(s.socket, { op: 'add', network: 'bad', containerId: 'c', ifname: 'eth0' }), { ok: false, error: 'network "bad" not found' });
  const raw = (payload: string | Buffer, end = true) => new Promise<string>((resolve) => {
    const c = net.connect(s.socket);
    let out = '';
    c.on('connect', () => (end ? c.end(payload) : c.write(payload)));
    c.on('data', (d) => (out += d.toString()));
    c.on('error', () => undefined);
    c.on('close', () => resolve(out));
  });
  t.regex(await raw('{"op":"add"'), /"incomplete request"/, 'closed before a whole line');
  t.regex(await raw('not json\n'), /"ok":false/, 'not JSON');
  t.regex(await raw(Buffer.alloc((1 << 20) + 10, 0x61), false), /"request too long"/, 'a line that never ends');
  // more fds than a request takes: refused, none kept
  const { sendFds } = await import('../../native/mod.js');
  const extra = [fs.openSync('/dev/null', 'r'), fs.openSync('/dev/null', 'r'), fs.openSync('/dev/null', 'r')];
  const many = await new Promise<string>((resolve) => {
    const c = net.connect(s.socket);
    let out = '';
    c.on('connect', () => {
      sendFds((c as unknown as { _handle: { fd: number } })._handle.fd, extra, Buffer.from('{"op":"del","network":"n","containerId":"c","ifname":"eth0"}\n'));
      c.end();
    });
    c.on('data', (d) => (out += d.toString()));
    c.on('close', () => resolve(out));
  });
  for (const f of extra) fs.closeSync(f);
  t.regex(many, /"ok":false,"error":"unreadable request/);
  await s.done;
  await new Promise((r) => setImmediate(r));
  t.is(openFds(), before, 'no fd left behind by any of them');
});

test.serial('idle exit waits while a caller holds the lock between its connect and its answer', async (t) => {
  const s = server(t, async () => null, { idleMs: 100 });
  await s.ready();
  const lock = fs.openSync(s.lockFile, 'r+');
  await flock(lock, constants().LOCK_SH);
  await new Promise((r) => setTimeout(r, 400));
  t.false(s.left(), 'a caller holds the lock: the server stays');
  t.like(await exchange(s.socket, { op: 'del', network: 'n', containerId: 'c', ifname: 'eth0' }), { ok: true });
  fs.closeSync(lock);
  await s.done;
  t.true(s.left());
  await t.throwsAsync(exchange(s.socket, { op: 'del', network: 'n', containerId: 'c', ifname: 'eth0' }), { code: 'ENOENT' }, 'no socket: a caller starts a new server');
});

test.serial('the holder gone: a request is answered "gone" (the caller starts a server for the new namespace) and the server leaves', async (t) => {
  const child = spawn('sleep', ['60']);
  await new Promise((r) => child.once('spawn', r));
  const holder = { pid: child.pid!, startTime: processStartTime(child.pid!)! };
  let handled = 0;
  const s = server(t, async () => void handled++, { holder, idleMs: 60_000 });
  await s.ready();
  t.like(await exchange(s.socket, { op: 'del', network: 'n', containerId: 'c', ifname: 'eth0' }), { ok: true });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const reply = await exchange(s.socket, { op: 'add', network: 'n', containerId: 'c', ifname: 'eth0' }).catch((e: Error) => ({ ok: false, error: e.message, gone: true }));
  t.like(reply, { ok: false, gone: true });
  t.is(handled, 1, 'nothing was run for the namespace that is gone');
  await s.done;
});
