/**
 * `burrow run --image FILE.tar` end to end: a two-layer docker-save image built in the test
 * (busybox-static), rootful and rootless (ownership mapped through the user namespace), bad
 * tarballs; plus outbound traffic and DNS from a container to a "remote" namespace, rootful and
 * rootless, and the rootless opt-in to the host's loopback.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import zlib from 'node:zlib';
import { ROOT } from './helpers/burrow.js';
import { busyboxImage, tarOf } from './helpers/image.js';
import { rootTest } from './helpers/netns.js';
import { httpUp, reservations, rootArgv, rootSandbox, start, sync, until, userArgv, world } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrowimg'; // one user per test file

/** A world-readable directory holding the test image (rootless users must read it). */
async function imageFile(t: import('ava').ExecutionContext): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-img-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'busybox.tar');
  fs.writeFileSync(file, await busyboxImage(), { mode: 0o644 });
  return file;
}

const INSIDE = 'stat -c %u:%g /srv/index.html; test -e /etc/secret && echo present || echo whited-out; cat /etc/motd; echo $IMAGE_ENV; pwd';

rootTest.serial('rootful --image: the image\'s command serves through -p; layers, whiteouts, env, workdir and ownership', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const img = await imageFile(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  t.teardown(() => void b(['rm', '-f', 'imgweb']));
  const d = b(['run', '-d', '--name', 'imgweb', '-p', '18800:80', '--image', img]);
  t.is(d.code, 0, d.stderr);
  t.is(await httpUp(w.remote, 'http://10.98.0.1:18800/index.html'), '200', 'busybox httpd from the image, reached through -p');
  const body = spawnSync('nsenter', [`--net=${w.host}`, '--', 'curl', '-s', 'http://127.0.0.1:18800/index.html'], { encoding: 'utf8' }).stdout;
  t.is(body, 'hello from an image\n');
  const r = b(['run', '--rm', '--network', 'none', '--image', img, '--', 'sh', '-c', INSIDE]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '33:33\nwhited-out\nlayer 2\nyes\n/srv\n');
  const id = JSON.parse(b(['inspect', 'imgweb']).stdout)[0].id;
  t.is(fs.statSync(path.join(sb.dir, 'state', 'containers', id, 'rootfs', 'srv', 'index.html')).uid, 33, 'rootful: ids as in the image');
  t.is(b(['rm', '-f', 'imgweb']).code, 0);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), [], 'the unpacked root goes with the container');
  t.deepEqual(reservations(sb), []);
});

rootTest.serial('rootless --image: unpacked inside the user namespace (uid 33 inside = subordinate id on the host), -p, rm removes it', async (t) => {
  const uid = ensureUser(t, USER);
  const w = await world(t);
  const img = await imageFile(t);
  const u = (args: string[]) => sync(userArgv(USER, w.host, args));
  const c = start(userArgv(USER, w.host, ['run', '--rm', '-p', '18801:80', '--image', img, '--', 'sh', '-c', 'echo ready; exec httpd -f -p 80 -h /srv']));
  t.teardown(() => void c.child.kill('SIGKILL'));
  await until(c, 'ready');
  t.is(await httpUp(w.host, 'http://127.0.0.1:18801/index.html'), '200');
  c.child.kill('SIGTERM');
  t.is(await c.done, 143);
  const r = u(['run', '--name', 'kept', '--image', img, '--', 'sh', '-c', INSIDE]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '33:33\nwhited-out\nlayer 2\nyes\n/srv\n', 'inside: the image\'s own ids');
  const state = path.join('/tmp', `burrow-${uid}`, 'burrow', 'containers');
  const [id] = fs.readdirSync(state);
  const base = Number(/^burrowimg:(\d+):/m.exec(fs.readFileSync('/etc/subuid', 'utf8'))![1]);
  t.is(fs.statSync(path.join(state, id, 'rootfs', 'srv', 'index.html')).uid, base + 32, 'on the host: uid 33 -> the 33rd subordinate id (0 is the user)');
  t.is(u(['rm', 'kept']).code, 0, 'rm removes files owned by subordinate ids');
  t.deepEqual(fs.readdirSync(state), []);
});

rootTest.serial('bad input: corrupt tarball, --rootfs with --image, no subuid range', async (t) => {
  const uid = ensureUser(t, USER);
  const sb = rootSandbox(t);
  const w = await world(t);
  const dir = path.dirname(await imageFile(t));
  const bad = path.join(dir, 'corrupt.tar');
  fs.writeFileSync(bad, (await busyboxImage()).subarray(0, 300_000), { mode: 0o644 });
  const root = sync(rootArgv(sb, w.host, ['run', '--rm', '--image', bad, '--', 'true']));
  t.is(root.code, 125);
  t.regex(root.stderr, /--image .*corrupt\.tar: (not a valid tar archive|corrupt gzip data)/);
  const user = sync(userArgv(USER, w.host, ['run', '--rm', '--image', bad, '--', 'true']));
  t.regex(user.stderr, /--image .*corrupt\.tar: (not a valid tar archive|corrupt gzip data)/);
  // a sound archive whose layer is broken: found while unpacking, after the container started
  const brokenLayer = path.join(dir, 'broken-layer.tar');
  const gz = zlib.gzipSync(await tarOf([{ name: 'bin/', type: 'directory' }, { name: 'bin/x', body: crypto.randomBytes(200_000) }]));
  fs.writeFileSync(brokenLayer, await tarOf([{ name: 'l/layer.tar', body: gz.subarray(0, 100_000) }, { name: 'manifest.json', body: JSON.stringify([{ Layers: ['l/layer.tar'] }]) }]), { mode: 0o644 });
  for (const argv of [rootArgv(sb, w.host, ['run', '--rm', '--image', brokenLayer, '--', 'true']), userArgv(USER, w.host, ['run', '--rm', '--image', brokenLayer, '--', 'true'])]) {
    const r = sync(argv);
    t.is(r.code, 125);
    t.regex(r.stderr, /broken-layer\.tar: layer 1 of 1 \(l\/layer\.tar\): corrupt gzip data/);
  }
  t.regex(sync(rootArgv(sb, w.host, ['run', '--rm', '--image', bad, '--rootfs', dir, '--', 'true'])).stderr, /--rootfs and --image both give the root filesystem/);
  const empty = path.join(dir, 'subuid');
  fs.writeFileSync(empty, 'someoneelse:100000:65536\n', { mode: 0o644 });
  const noRange = sync(userArgv(USER, w.host, ['run', '--rm', '--', 'true'], [`BURROW_SUBUID_FILE=${empty}`]));
  t.is(noRange.code, 125);
  t.regex(noRange.stderr, /no subuid ranges found for user "burrowimg" in .*subuid \(as root: usermod --add-subuids/);
  const rootState = path.join(sb.dir, 'state', 'containers');
  t.deepEqual(fs.existsSync(rootState) ? fs.readdirSync(rootState) : [], [], 'nothing left by the rootful failures');
  t.deepEqual(reservations(sb), [], 'no address left reserved by the rootful failures');
  const userState = path.join('/tmp', `burrow-${uid}`, 'burrow', 'containers');
  t.deepEqual(fs.existsSync(userState) ? fs.readdirSync(userState) : [], [], 'nothing left by the rootless failures');
});

rootTest.serial('rootful outbound and DNS: a name resolved by a DNS server in another namespace, then fetched over HTTP', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const servers = start(['nsenter', `--net=${w.remote}`, '--', process.execPath, path.join(ROOT, 'test', 'fixtures', 'servers.cjs'),
    JSON.stringify([{ proto: 'udp', host: '10.98.0.2', port: 53, mode: 'dns-a', answer: '10.98.0.2' }, { proto: 'tcp', host: '10.98.0.2', port: 8080, mode: 'http' }])]);
  t.teardown(() => void servers.child.kill());
  await until(servers, 'ready');
  const r = sync(rootArgv(sb, w.host, ['run', '--rm', '--dns', '10.98.0.2', '--', 'sh', '-c', 'cat /etc/resolv.conf; getent ahostsv4 svc.example.test | head -1; curl -s -m 5 -o /dev/null -w "%{http_code}\\n" http://svc.example.test:8080/']));
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^nameserver 10\.98\.0\.2\n/);
  t.regex(r.stdout, /^10\.98\.0\.2\s+STREAM svc\.example\.test$/m, 'resolved through the bridge and the host\'s masquerade');
  t.regex(r.stdout, /^200$/m, 'and fetched from the remote server');
});

rootTest.serial('rootless outbound and DNS: a name resolved by a DNS server in another namespace; host loopback only with --map-host-loopback', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  const fixtures = path.join(ROOT, 'test', 'fixtures', 'servers.cjs');
  const remote = start(['nsenter', `--net=${w.remote}`, '--', process.execPath, fixtures,
    JSON.stringify([{ proto: 'udp', host: '10.98.0.2', port: 53, mode: 'dns-a', answer: '10.98.0.2' }, { proto: 'tcp', host: '10.98.0.2', port: 8080, mode: 'http' }])]);
  t.teardown(() => void remote.child.kill());
  const local = start(['nsenter', `--net=${w.host}`, '--', process.execPath, fixtures, JSON.stringify([{ proto: 'tcp', host: '127.0.0.1', port: 18700, mode: 'http' }])]);
  t.teardown(() => void local.child.kill());
  await until(remote, 'ready');
  await until(local, 'ready');
  const curl = (url: string) => `curl -s -m 3 -o /dev/null -w "%{http_code}\\n" ${url} || true`;
  const r = sync(userArgv(USER, w.host, ['run', '--rm', '--dns', '10.98.0.2', '--', 'sh', '-c', `cat /etc/resolv.conf; getent ahostsv4 svc.example.test | head -1; ${curl('http://svc.example.test:8080/')}; ${curl('http://10.0.2.2:18700/')}`]));
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^nameserver 10\.98\.0\.2\n/);
  t.regex(r.stdout, /^10\.98\.0\.2\s+STREAM svc\.example\.test$/m, 'resolved through the userspace stack');
  t.regex(r.stdout, /^200\n000$/m, 'fetched from the remote server; the host\'s loopback is closed by default');
  const m = sync(userArgv(USER, w.host, ['run', '--rm', '--map-host-loopback', '10.0.2.2', '--', 'sh', '-c', `grep host.containers.internal /etc/hosts; ${curl('http://host.containers.internal:18700/')}`]));
  t.is(m.code, 0, m.stderr);
  t.regex(m.stdout, /^10\.0\.2\.2\thost\.containers\.internal/m);
  t.regex(m.stdout, /^200$/m, 'with the opt-in, host.containers.internal reaches 127.0.0.1 on the host');
});
