/**
 * burrow unshare as a real unprivileged user (created with useradd, which gives it a subuid and
 * subgid range) and as root: the maps seen inside, file ownership inside and outside, and the
 * error cases for real.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requireRoot } from './helpers/netns.js';
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

test.serial('rootless modes: the maps inside are podman\'s, and ownership agrees inside and out', (t) => {
  if (!requireRoot(t)) return;
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
  t.is(nomap.id, '65534', 'nomap: the user is not mapped (shows as the overflow id)');

  // A file created inside as root (host mode) belongs to the user outside; inside it is root's.
  const file = path.join(home, `burrow-owner-${process.pid}`);
  t.teardown(() => fs.rmSync(file, { force: true }));
  const r = asUser(['unshare', '--', 'sh', '-c', `touch ${file}; stat -c %u ${file}`]);
  t.is(r.stdout.trim(), '0', 'inside: owned by root');
  t.is(fs.statSync(file).uid, uid, 'outside: owned by the user');
});

test.serial('rootless errors name what to fix: no subuid entry, overlapping ranges, bad mode', (t) => {
  if (!requireRoot(t)) return;
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
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`no subuid ranges found for user "${USER}" in ${empty} \\(as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${USER}\\)`));
  // The user's own uid inside its own range: an overlap caught before newuidmap says EINVAL.
  const overlap = write('subuid-overlap', `${USER}:${uid - 5}:65536\n`);
  r = asUser(['unshare', '--', 'true'], { BURROW_SUBUID_FILE: overlap });
  t.is(r.code, 1);
  t.regex(r.stderr, /uid_map lines .* overlap on the outside/);
  const shared = write('subuid-shared', `${USER}:300000:65536\nneighbour:330000:65536\n`);
  r = asUser(['unshare', '--', 'true'], { BURROW_SUBUID_FILE: shared });
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`subuid-shared:1: the subuid range 300000-365535 of "${USER}" overlaps .*subuid-shared:2 \\(neighbour: 330000-395535\\)`));
  r = asUser(['unshare', '--userns', 'sideways', '--', 'true']);
  t.regex(r.stderr, /unknown --userns mode "sideways"/);
  r = asUser(['unshare', '--', 'no-such-command-here'], { PATH: '/usr/bin:/bin' });
  t.is(r.code, 127, 'a missing command exits 127, as a shell does');
  t.regex(r.stderr, /cannot execute "no-such-command-here"/);
});

test.serial('as root: host is the identity map, explicit maps apply, rootless-only modes are refused', (t) => {
  if (!requireRoot(t)) return;
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'unshare', ...args], { encoding: 'utf8' });
  t.deepEqual(maps(run(['--', 'cat', '/proc/self/uid_map']).stdout), ['0 0 4294967295']);
  t.deepEqual(maps(run(['--uidmap', '0:200000:1000', '--', 'cat', '/proc/self/uid_map']).stdout), ['0 200000 1000']);
  const kid = run(['--userns', 'keep-id', '--', 'true']);
  t.is(kid.status, 1);
  t.regex(kid.stderr, /--userns keep-id is for rootless use/);
  t.is(run(['--ns', 'pid,mnt', '--', 'sh', '-c', 'exit 7']).status, 7, 'the exit status comes back through the helper and the init');
});
