/**
 * Every user namespace mode through `burrow run`, rootless and rootful, with a --rootfs directory
 * and with an --image tarball (issue 14: `--userns nomap|auto` and explicit maps failed in run
 * while `burrow unshare` worked, because only unshare was tested).
 */
import { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { busyboxImage } from './helpers/image.js';
import { rootTest } from './helpers/netns.js';
import { rootArgv, rootSandbox, sync, userArgv, world } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrowuns'; // one user per test file

/** A busybox root directory and the test image, world-readable (rootless users must read them). */
async function roots(t: ExecutionContext): Promise<{ rootfs: string; image: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-uns-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'srv', 'etc', 'tmp', 'run', 'proc', 'dev', 'sys']) fs.mkdirSync(path.join(rootfs, d), { recursive: true, mode: 0o755 });
  fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'id', 'cat', 'stat', 'touch', 'head']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
  fs.writeFileSync(path.join(rootfs, 'srv', 'index.html'), 'x\n', { mode: 0o644 });
  // mount points for the generated /etc files, as any real root filesystem has them
  for (const f of ['hosts', 'resolv.conf', 'hostname']) fs.writeFileSync(path.join(rootfs, 'etc', f), '', { mode: 0o644 });
  const image = path.join(dir, 'busybox.tar');
  fs.writeFileSync(image, await busyboxImage(), { mode: 0o644 });
  return { rootfs, image };
}

const INSIDE = 'id -u; head -1 /proc/self/uid_map | tr -s " " | sed "s/^ //"; touch /tmp/w && echo tmp-ok';
const IMAGE_INSIDE = `${INSIDE}; stat -c %u /srv/index.html; touch /root-ok && echo root-ok`;

rootTest.serial('rootless: every --userns mode and explicit maps run, with --rootfs and with --image', async (t) => {
  const uid = ensureUser(t, USER);
  const sub = Number(new RegExp(`^${USER}:(\\d+):`, 'm').exec(fs.readFileSync('/etc/subuid', 'utf8'))![1]);
  const w = await world(t);
  const { rootfs, image } = await roots(t);
  const modes: Array<[string[], string, string]> = [
    // flags, uid inside, first uid_map line
    [['--userns', 'host'], '0', `0 ${uid} 1`],
    [['--userns', 'keep-id'], String(uid), `0 ${sub} ${uid}`],
    [['--userns', 'nomap'], '0', `0 ${sub} 65536`],
    [['--userns', 'auto'], '0', `0 ${sub} 1024`],
    [['--userns', 'auto:size=2000'], '0', `0 ${sub} 2000`],
    [['--uidmap', '0:1:3000', '--gidmap', '0:1:3000'], '0', `0 ${sub} 3000`],
  ];
  for (const [flags, id, map] of modes) {
    const what = flags.join(' ');
    const r = sync(userArgv(USER, w.host, ['run', '--rm', '--network', 'none', ...flags, '--rootfs', rootfs, '--', 'sh', '-c', INSIDE]));
    t.is(r.code, 0, `${what} --rootfs: ${r.stderr}`);
    t.is(r.stdout, `${id}\n${map}\ntmp-ok\n`, `${what} --rootfs`);
    const i = sync(userArgv(USER, w.host, ['run', '--rm', '--network', 'none', ...flags, '--image', image, '--', 'sh', '-c', IMAGE_INSIDE]));
    t.is(i.code, id === '0' ? 0 : 1, `${what} --image: ${i.stderr}`);
    // uid 33 of the image is the container's uid 33 in every mode; root of the container owns "/"
    // (keep-id runs as the user, who may not write there).
    t.is(i.stdout, `${id}\n${map}\ntmp-ok\n33\n${id === '0' ? 'root-ok\n' : ''}`, `${what} --image`);
  }
  // A map of the user alone: no subordinate ids, so the image's uid 33 has no place to go.
  const self = sync(userArgv(USER, w.host, ['run', '--rm', '--network', 'none', '--uidmap', '0:0:1', '--gidmap', '0:0:1', '--image', image, '--', 'true']));
  t.is(self.code, 125);
  t.regex(self.stderr, /is owned by 33:33, an id outside the container's user namespace/);
  // The identity switch comes after the TAP is made: nomap on the default network (usernet).
  const net = sync(userArgv(USER, w.host, ['run', '--rm', '--userns', 'nomap', '--rootfs', rootfs, '--', 'sh', '-c', 'id -u; cat /sys/class/net/eth0/operstate']));
  t.is(net.code, 0, net.stderr);
  t.is(net.stdout, '0\nunknown\n');
  t.deepEqual(fs.readdirSync(path.join('/tmp', `burrow-${uid}`, 'burrow', 'containers')), [], 'every --rm container is gone, its unpacked root too');
});

rootTest.serial('rootless nomap: the container dies with a burrow killed with -9, and stays joinable (loopback forwards, --network container:)', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  const u = (args: string[]) => sync(userArgv(USER, w.host, args));
  t.teardown(() => void u(['rm', '-f', 'nm1', 'nm2']));
  t.is(u(['run', '-d', '--name', 'nm1', '--userns', 'nomap', '--', 'sleep', '60']).code, 0);
  const [r1] = JSON.parse(u(['inspect', 'nm1']).stdout);
  process.kill(r1.pid, 'SIGKILL');
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await new Promise((r) => setTimeout(r, 50));
    gone = !fs.existsSync(`/proc/${r1.initPid}`);
  }
  t.true(gone, 'the container died with its supervisor (the parent-death signal survives the identity change)');
  const d = u(['run', '-d', '--name', 'nm2', '--userns', 'nomap', '-p', '127.0.0.1:18441:80', '--', 'python3', '-m', 'http.server', '80', '--directory', '/usr/share']);
  t.is(d.code, 0, d.stderr);
  let code = '';
  for (let i = 0; i < 100 && code !== '200'; i++) {
    await new Promise((r) => setTimeout(r, 50));
    code = spawnSync('nsenter', [`--net=${w.host}`, '--', 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', 'http://127.0.0.1:18441/'], { encoding: 'utf8' }).stdout;
  }
  t.is(code, '200', 'the spliced forward joined the container\'s namespaces');
  const joined = u(['run', '--rm', '--network', 'container:nm2', '--', 'python3', '-c', 'import urllib.request;print(urllib.request.urlopen("http://127.0.0.1:80/").status)']);
  t.is(joined.code, 0, joined.stderr);
  t.is(joined.stdout.trim(), '200');
});

rootTest.serial('rootful: host, explicit maps and auto run, with --rootfs and with --image (files shifted to the mapped ids)', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const { rootfs, image } = await roots(t);
  const subid = path.join(sb.dir, 'subid');
  fs.writeFileSync(subid, 'containers:300000:5000\n');
  const env = ['BURROW_SUBUID_FILE', 'BURROW_SUBGID_FILE'];
  const b = (args: string[]) => sync(['env', ...env.map((e) => `${e}=${subid}`), ...rootArgv(sb, w.host, args)]);
  const modes: Array<[string[], string]> = [
    [['--userns', 'host'], '0 0 4294967295'],
    [['--uidmap', '0:200000:65536', '--gidmap', '0:200000:65536'], '0 200000 65536'],
    [['--userns', 'auto'], '0 300000 1024'],
  ];
  for (const [flags, map] of modes) {
    const what = flags.join(' ');
    const r = b(['run', '--rm', '--network', 'none', ...flags, '--rootfs', rootfs, '--', 'sh', '-c', INSIDE]);
    t.is(r.code, 0, `${what} --rootfs: ${r.stderr}`);
    t.is(r.stdout, `0\n${map}\ntmp-ok\n`, `${what} --rootfs`);
    const keep = b(['run', '--name', 'uns', '--network', 'none', ...flags, '--image', image, '--', 'sh', '-c', IMAGE_INSIDE]);
    t.is(keep.code, 0, `${what} --image: ${keep.stderr}`);
    t.is(keep.stdout, `0\n${map}\ntmp-ok\n33\nroot-ok\n`, `${what} --image`);
    const id = JSON.parse(b(['inspect', 'uns']).stdout)[0].id;
    const base = Number(map.split(' ')[1]);
    t.is(fs.statSync(path.join(sb.dir, 'state', 'containers', id, 'rootfs', 'srv', 'index.html')).uid, base + 33, `${what}: on the host, the image's uid 33 is the map's`);
    t.is(b(['rm', 'uns']).code, 0);
  }
});
