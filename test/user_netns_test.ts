/**
 * The user's network namespace (where a rootless user's networks will live), as a real
 * unprivileged user in a test-owned "host" namespace: `burrow unshare --rootless-netns` makes it
 * on first use, shares it between concurrent callers, removes what it made; the holder outlives
 * the burrow process that made it; a holder killed with -9 is replaced and its record collected.
 * The namespace has the user's one usernet stack on tap0 (outbound for the user's networks).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootTest, testNetns } from './helpers/netns.js';
import { start, sync, userArgv } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrowuns2';

const alive = (pid: number) => spawnSync('kill', ['-0', String(pid)]).status === 0;

rootTest.serial('rootless: the user\'s network namespace is made on first use, shared, outlives its maker, and is collected', async (t) => {
  const uid = ensureUser(t, USER);
  const host = testNetns(t, 'un');
  const stateDir = path.join(os.tmpdir(), `burrow-${uid}`, 'burrow');
  const record = path.join(stateDir, 'netns', 'holder.json');
  const b = (args: string[]) => sync(userArgv(USER, host, args));

  // first use: a namespace of its own with loopback up, the user as its root; gone afterwards
  const r = b(['unshare', '--rootless-netns', '--', 'sh', '-c', 'readlink /proc/self/ns/net; id -u; ip -o link; cat /proc/self/uid_map; ip -4 -o addr show tap0; ip route']);
  t.is(r.code, 0, r.stderr);
  const [netns, idInside, ...rest] = r.stdout.trim().split('\n');
  t.regex(netns, /^net:\[\d+\]$/);
  t.not(netns, sync(['nsenter', `--net=${host}`, 'readlink', '/proc/self/ns/net']).stdout.trim(), 'not the host\'s network namespace');
  t.is(idInside, '0', 'the user is root of its user namespace');
  t.deepEqual(rest.filter((l) => /^\d+: \S+: </.test(l)).map((l) => l.split(':')[1].trim()), ['lo', 'tap0'], 'loopback and the one stack\'s TAP');
  t.regex(rest.join('\n'), /^1: lo: <LOOPBACK,UP,LOWER_UP>/m);
  t.regex(rest.join('\n'), /tap0\s+inet 10\.0\.2\.100\/24/, 'the stack\'s addressing (slirp4netns\'s)');
  t.regex(rest.join('\n'), /^default via 10\.0\.2\.2 dev tap0/m);
  t.regex(rest.join('\n'), new RegExp(`^\\s+0\\s+${uid}\\s+1$`, 'm'), 'maps the user as root');
  t.regex(rest.join('\n'), /^\s+1\s+\d+\s+65536$/m, 'and the subordinate range after it');
  t.false(fs.existsSync(record), 'made for that command alone: removed after it');

  // concurrent users share one namespace; it outlives the burrow process that made it
  const long = start(userArgv(USER, host, ['unshare', '--rootless-netns', '--', 'sh', '-c', 'readlink /proc/self/ns/net; exec sleep 30']));
  t.teardown(() => long.child.kill('SIGKILL'));
  for (let i = 0; i < 200 && !fs.existsSync(record); i++) await new Promise((res) => setTimeout(res, 25));
  const holder = JSON.parse(fs.readFileSync(record, 'utf8')) as { pid: number; startTime: string };
  const second = b(['unshare', '--rootless-netns', '--', 'readlink', '/proc/self/ns/net']);
  t.is(second.code, 0, second.stderr);
  for (let i = 0; i < 200 && !long.out().includes('net:['); i++) await new Promise((res) => setTimeout(res, 25));
  t.is(second.stdout.trim(), long.out().trim().split('\n')[0], 'the second caller joins the same namespace');
  t.true(fs.existsSync(record), 'kept: its maker still runs');
  const maker = spawnSync('pgrep', ['-u', USER, '-f', 'burrow.cjs unshare --rootless-netns -- sh'], { encoding: 'utf8' }).stdout.trim().split('\n').map(Number).filter(Boolean);
  t.true(maker.length >= 1, 'the maker is a burrow process');
  for (const p of maker) spawnSync('kill', ['-9', String(p)]);
  await new Promise((res) => setTimeout(res, 200));
  t.true(alive(holder.pid), 'the holder outlives a burrow killed with -9');
  t.is(b(['unshare', '--rootless-netns', '--', 'readlink', '/proc/self/ns/net']).stdout.trim(), second.stdout.trim(), 'and is found again');

  // kill -9 of the holder: the next use makes a new one; gc removes a stale record
  spawnSync('kill', ['-9', String(holder.pid)]);
  for (let i = 0; i < 100 && alive(holder.pid); i++) await new Promise((res) => setTimeout(res, 20));
  const fresh = b(['unshare', '--rootless-netns', '--', 'readlink', '/proc/self/ns/net']);
  t.is(fresh.code, 0, fresh.stderr);
  t.not(fresh.stdout.trim(), second.stdout.trim(), 'a new namespace replaces the killed one');
  t.false(fs.existsSync(record), 'and, made for that command, it went with it');
  fs.mkdirSync(path.dirname(record), { recursive: true });
  fs.writeFileSync(record, JSON.stringify({ pid: holder.pid, startTime: holder.startTime, created: '' }));
  const gc = b(['system', 'gc']);
  t.is(gc.code, 0, gc.stderr);
  t.regex(gc.stdout, /removed the record of a user network namespace whose holder was gone/);
  t.false(fs.existsSync(record));

  // a namespace nobody needs is removed by gc, its holder stopped
  const keep = start(userArgv(USER, host, ['unshare', '--rootless-netns', '--', 'sleep', '30']));
  t.teardown(() => keep.child.kill('SIGKILL'));
  for (let i = 0; i < 200 && !fs.existsSync(record); i++) await new Promise((res) => setTimeout(res, 25));
  const h2 = JSON.parse(fs.readFileSync(record, 'utf8')) as { pid: number };
  t.regex(b(['system', 'gc']).stdout, /removed the user's network namespace \(no container needs it\)/);
  t.false(alive(h2.pid), 'the holder is stopped');
  keep.child.kill('SIGKILL');
  await keep.done;

  // what is refused
  const bad = b(['unshare', '--rootless-netns', '--userns', 'nomap', '--', 'true']);
  t.is(bad.code, 125);
  t.regex(bad.stderr, /--rootless-netns enters the user's network namespace as it is: --userns cannot be given with it/);
  const asRoot = sync(['nsenter', `--net=${host}`, '--', process.execPath, '--', path.resolve('dist/burrow.cjs'), 'unshare', '--rootless-netns', '--', 'true']);
  t.is(asRoot.code, 125);
  t.regex(asRoot.stderr, /--rootless-netns is for rootless users/);
  // (a holder's helper whose maker was just killed is reaped by init: give it a moment)
  let left = spawnSync('pgrep', ['-a', '-u', USER, '-f', 'burrow-ns'], { encoding: 'utf8' });
  for (let i = 0; i < 50 && left.status === 0; i++) {
    await new Promise((res) => setTimeout(res, 40));
    left = spawnSync('pgrep', ['-a', '-u', USER, '-f', 'burrow-ns'], { encoding: 'utf8' });
  }
  t.is(left.status, 1, `no helper of the user is left: ${left.stdout}`);
});
