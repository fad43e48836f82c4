/**
 * burrow unshare as a real unprivileged user (created with useradd, which gives it a subuid and
 * subgid range) and as root: the maps seen inside, file ownership inside and outside, and the
 * error cases for real.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootTest } from './helpers/netns.js';
import { CLI } from './helpers/burrow.js';

const USER = 'burrowtest';

function ensureUser(t: import('ava').ExecutionContext): { uid: number; home: string; subuid: number } {
  if (spawnSync('id', ['-u', USER]).status !== 0) {
    const r = spawnSync('useradd', ['-m', USER], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`useradd failed: ${r.stderr}`);
    t.teardown(() => void spawnSync('userdel', ['-r', USER]));
  }
  const uid = Number(spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout.trim());
  const line = fs.readFileSync('/etc/subuid', 'utf8').split('\n').find((l) => l.startsWith(`${USER}:`));
  if (!line) throw new Error(`useradd gave ${USER} no subuid range`);
  return { uid, home: `/home/${USER}`, subuid: Number(line.split(':')[1]) };
}

function asUser(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync('runuser', ['-u', USER, '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, ...args], { encoding: 'utf8', cwd: '/' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const maps = (out: string) => out.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));

rootTest.serial('rootless modes: the maps inside are podman\'s, and ownership agrees inside and out', (t) => {
  const { uid, home, subuid } = ensureUser(t);
  const show = ['sh', '-c', 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; id -u'];
  const run = (mode: string) => {
    const r = asUser(['unshare', '--userns', mode, '--', ...show]);
    t.is(r.code, 0, `${mode}: ${r.stderr}`);
    const [u, g, id] = r.stdout.split('--\n');
    return { uid: maps(u), gid: maps(g), id: id.trim() };
  };
  const host = run('host');
  t.deepEqual(host.uid, [`0 ${uid} 1`, `1 ${subuid} 65536`]);
  t.is(host.id, '0', 'host: the user is root inside');
  const keep = run('keep-id');
  t.deepEqual(keep.uid, [`0 ${subuid} ${uid}`, `${uid} ${uid} 1`, `${uid + 1} ${subuid + uid} ${65536 - uid}`]);
  t.is(keep.id, String(uid), 'keep-id: the user keeps its uid');
  const keepAs = run('keep-id:uid=200,gid=300');
  t.deepEqual(keepAs.uid.slice(0, 2), [`0 ${subuid} 200`, `200 ${uid} 1`]);
  t.is(keepAs.id, '200');
  const nomap = run('nomap');
  t.deepEqual(nomap.uid, [`0 ${subuid} 65536`]);
  t.is(nomap.id, '0', 'nomap: the user is not mapped; the command runs as the namespace\'s root, as podman runs a nomap container');

  // A file created inside as root (host mode) belongs to the user outside; inside it is root's.
  const file = path.join(home, `burrow-owner-${process.pid}`);
  t.teardown(() => fs.rmSync(file, { force: true }));
  const r = asUser(['unshare', '--', 'sh', '-c', `touch ${file}; stat -c %u ${file}`]);
  t.is(r.stdout.trim(), '0', 'inside: owned by root');
  t.is(fs.statSync(file).uid, uid, 'outside: owned by the user');
});

rootTest.serial('rootless errors name what to fix: no subuid entry, overlapping ranges, bad mode', (t) => {
  const { uid } = ensureUser(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-subid-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    fs.writeFileSync(path.join(dir, name), text, { mode: 0o644 });
    return path.join(dir, name);
  };
  const empty = write('subuid-empty', 'someoneelse:100000:65536\n');
  let r = asUser(['unshare', '--', 'true'], { BURROW_SUBUID_FILE: empty });
  t.is(r.code, 125);
  t.regex(r.stderr, new RegExp(`no subuid ranges found for user "${USER}" in ${empty} \\(as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${USER}\\)`));
  // The user's own uid inside its own range: an overlap caught before newuidmap says EINVAL.
  const overlap = write('subuid-overlap', `${USER}:${uid - 5}:65536\n`);
  r = asUser(['unshare', '--', 'true'], { BURROW_SUBUID_FILE: overlap });
  t.is(r.code, 125);
  t.regex(r.stderr, /uid_map lines .* overlap on the outside/);
  const shared = write('subuid-shared', `${USER}:300000:65536\nneighbour:330000:65536\n`);
  r = asUser(['unshare', '--', 'true'], { BURROW_SUBUID_FILE: shared });
  t.is(r.code, 125);
  t.regex(r.stderr, new RegExp(`subuid-shared:1: the subuid range 300000-365535 of "${USER}" overlaps .*subuid-shared:2 \\(neighbour: 330000-395535\\)`));
  r = asUser(['unshare', '--userns', 'sideways', '--', 'true']);
  t.regex(r.stderr, /unknown --userns mode "sideways"/);
  r = asUser(['unshare', '--', 'no-such-command-here'], { PATH: '/usr/bin:/bin' });
  t.is(r.code, 127, 'a missing command exits 127, as a shell does');
  t.regex(r.stderr, /cannot execute "no-such-command-here"/);
});

rootTest.serial('as root: host is the identity map, explicit maps apply, rootless-only modes are refused', (t) => {
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'unshare', ...args], { encoding: 'utf8' });
  t.deepEqual(maps(run(['--', 'cat', '/proc/self/uid_map']).stdout), ['0 0 4294967295']);
  t.deepEqual(maps(run(['--uidmap', '0:200000:1000', '--', 'cat', '/proc/self/uid_map']).stdout), ['0 200000 1000']);
  const kid = run(['--userns', 'keep-id', '--', 'true']);
  t.is(kid.status, 125);
  t.regex(kid.stderr, /--userns keep-id is for rootless use/);
  t.is(run(['--ns', 'pid,mnt', '--', 'sh', '-c', 'exit 7']).status, 7, 'the exit status comes back through the helper and the init');
});

rootTest.serial('rootless auto: sized from the rootfs, concurrent containers get disjoint ids, nothing stays reserved', async (t) => {
  const { subuid } = ensureUser(t);
  const xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-xdg-'));
  fs.chownSync(xdg, Number(spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout), 0);
  const rootfs = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rootfs-'));
  t.teardown(() => {
    fs.rmSync(xdg, { recursive: true, force: true });
    fs.rmSync(rootfs, { recursive: true, force: true });
  });
  fs.chmodSync(rootfs, 0o755);
  fs.writeFileSync(path.join(rootfs, 'data'), '');
  fs.chownSync(path.join(rootfs, 'data'), 3000, 4000);
  const env = { XDG_RUNTIME_DIR: xdg };
  const sized = asUser(['unshare', '--userns', 'auto', '--rootfs', rootfs, '--', 'cat', '/proc/self/uid_map', '/proc/self/gid_map'], env);
  t.is(sized.code, 0, sized.stderr);
  t.deepEqual(maps(sized.stdout), [`0 ${subuid} 4001`, `0 ${subuid} 4001`], 'size = highest id (gid 4000) + 1, from the first subordinate id');
  // Two at once: the second must not reuse the first one's ids while it runs.
  const { spawn } = await import('node:child_process');
  const first = spawn('runuser', ['-u', USER, '--', 'env', `XDG_RUNTIME_DIR=${xdg}`, process.execPath, CLI, 'unshare', '--userns', 'auto:size=2000', '--', 'sh', '-c', 'head -1 /proc/self/uid_map; read x'], { cwd: '/' });
  let out = '';
  first.stdout.on('data', (d: Buffer) => (out += d.toString()));
  while (!out.includes('\n')) await new Promise((r) => setTimeout(r, 20));
  const second = asUser(['unshare', '--userns', 'auto:size=1000', '--', 'head', '-1', '/proc/self/uid_map'], env);
  first.stdin.end('\n');
  await new Promise((r) => first.once('close', r));
  t.deepEqual([maps(out)[0], maps(second.stdout)[0]], [`0 ${subuid} 2000`, `0 ${subuid + 2000} 1000`]);
  const registry = JSON.parse(fs.readFileSync(path.join(xdg, 'burrow', 'userns-auto.json'), 'utf8'));
  t.deepEqual(registry, [], 'every reservation was released');
  const big = asUser(['unshare', '--userns', 'auto:size=70000', '--', 'true'], env);
  t.regex(big.stderr, /not enough unused IDs in user namespace: need 70000, 65536 subordinate ids in all/);
});

rootTest.serial('rootless: getsubids when the files are absent; a self-only map needs no subordinate ids (setgroups deny)', (t) => {
  const { uid, subuid } = ensureUser(t);
  const missing = { BURROW_SUBUID_FILE: '/nonexistent/subuid', BURROW_SUBGID_FILE: '/nonexistent/subgid' };
  const r = asUser(['unshare', '--', 'cat', '/proc/self/uid_map'], missing);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(maps(r.stdout), [`0 ${uid} 1`, `1 ${subuid} 65536`], 'ranges came from getsubids (libsubid)');
  const self = asUser(['unshare', '--uidmap', '0:0:1', '--gidmap', '0:0:1', '--', 'sh', '-c', 'cat /proc/self/uid_map /proc/self/setgroups'], { BURROW_SUBUID_FILE: '/dev/null', BURROW_SUBGID_FILE: '/dev/null' });
  t.is(self.code, 0, self.stderr);
  t.deepEqual(maps(self.stdout), [`0 ${uid} 1`, 'deny']);
});

rootTest.serial('rootless: a newuidmap without its setuid bit is named as the cause', (t) => {
  ensureUser(t);
  const tool = '/usr/bin/newuidmap';
  const mode = fs.statSync(tool).mode & 0o7777;
  fs.chmodSync(tool, mode & ~0o4000);
  try {
    const r = asUser(['unshare', '--', 'true']);
    t.is(r.code, 125);
    t.regex(r.stderr, /newuidmap \d+ 0 \d+ 1 1 \d+ 65536 failed: .*\(\/usr\/bin\/newuidmap is not setuid root: reinstall uidmap, or chmod u\+s \/usr\/bin\/newuidmap\)/);
  } finally {
    fs.chmodSync(tool, mode);
  }
});

rootTest.serial('the helper hands back the namespace fds and a TAP made inside, and joins a running namespace', async (t) => {
  const { startInNamespaces, joinNamespaces } = await import('../userns/unshare.js');
  const { parseUsernsMode } = await import('../userns/mapping.js');
  const s = await startInNamespaces(['sh', '-c', 'read x'], { mode: parseUsernsMode('host'), namespaces: ['net'], tap: 'tap0', stdio: 'pipe' });
  t.teardown(() => s.child.kill('SIGKILL'));
  t.truthy(s.fds?.tap);
  t.is(fs.readlinkSync(`/proc/self/fd/${s.fds!.netns}`), fs.readlinkSync(`/proc/${s.pid}/ns/net`));
  const j = await joinNamespaces(s.pid, { tap: 'tap1' });
  t.is(fs.readlinkSync(`/proc/self/fd/${j.netns}`), fs.readlinkSync(`/proc/${s.pid}/ns/net`));
  const links = spawnSync('nsenter', ['-t', String(s.pid), '-n', 'ip', '-j', 'link'], { encoding: 'utf8' });
  const byName = Object.fromEntries(JSON.parse(links.stdout).map((l: { ifname: string; flags: string[] }) => [l.ifname, l.flags]));
  t.deepEqual(Object.keys(byName).sort(), ['lo', 'tap0', 'tap1']);
  t.true(byName.lo.includes('UP'), 'loopback is brought up');
  // a TAP that cannot be made inside: the helper's reason, not its exit code (a missing or 0600
  // /dev/net/tun reached the user as "exit 125")
  await t.throwsAsync(joinNamespaces(s.pid, { tap: 'tap0' }), { message: /cannot join the namespaces of pid \d+: ioctl\(TUNSETIFF\) on TAP "tap0": Device or resource busy/ });
  for (const fd of [s.fds!.netns, s.fds!.userns, s.fds!.tap!, j.netns, j.userns, j.tap!]) fs.closeSync(fd);
  await t.throwsAsync(startInNamespaces(['true'], { mode: parseUsernsMode('host'), namespaces: ['net'], tap: 'x'.repeat(16) }), { message: /TAP name "x{16}" is longer than 15 bytes/ });
  await t.throwsAsync(joinNamespaces(999999999), { message: /cannot join the namespaces of pid 999999999: cannot open \/proc\/999999999\/ns\/user/ });
  s.child.stdin!.end('\n');
  t.is(await s.exited, 0);
});

rootTest.serial('as root: auto takes ids from the "containers" ranges, and says how to add them when there are none', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rootauto-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'subid'), 'containers:2147483647:1000\ncontainers:300000:5000\n');
  const env = { ...process.env, BURROW_SUBUID_FILE: path.join(dir, 'subid'), BURROW_SUBGID_FILE: path.join(dir, 'subid'), XDG_RUNTIME_DIR: dir };
  const conf = path.join(dir, 'burrow.toml');
  fs.writeFileSync(conf, `[engine]\nstate_dir = "${dir}/state"\n`);
  const r = spawnSync(process.execPath, [CLI, '--config', conf, 'unshare', '--userns', 'auto:size=1500', '--', 'cat', '/proc/self/uid_map'], { encoding: 'utf8', env });
  t.is(r.status, 0, r.stderr);
  t.deepEqual(maps(r.stdout), ['0 2147483647 1000', '1000 300000 500'], 'the slice spans both ranges in file order');
  fs.writeFileSync(path.join(dir, 'subid'), 'someone:100000:65536\n');
  const none = spawnSync(process.execPath, [CLI, '--config', conf, 'unshare', '--userns', 'auto', '--', 'true'], { encoding: 'utf8', env });
  t.is(none.status, 125);
  t.regex(none.stderr, /no subuid ranges found for user "containers" .*add a line such as containers:2147483647:2147483648 to \/etc\/subuid and \/etc\/subgid/);
});
