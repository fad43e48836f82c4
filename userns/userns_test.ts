import test from 'ava';
import { findOverlaps, parseSubIdFile, rangesFor, totalIds } from './subid.js';
import {
  allocateAuto, autoSize, checkMapping, compose, intermediateMap, mapArgs, modeMapping, parseIdMapSpec, parseUsernsMode, unownedHostIds,
} from './mapping.js';

const FIXTURE = `# /etc/subuid as useradd and admins write it
alice:100000:65536
1001:165536:65536
bob:231072:65536
bob:900000:1000

carol:100:x
dave:5:0
erin:4294967000:1000
mallory:165000:2000
only-two-fields:5
`;

test('parses real-world subuid files, reports malformed lines with file and line, finds overlaps', (t) => {
  const f = parseSubIdFile(FIXTURE, '/etc/subuid');
  t.deepEqual(f.ranges.map((r) => `${r.owner}:${r.start}:${r.count}@${r.line}`), ['alice:100000:65536@2', '1001:165536:65536@3', 'bob:231072:65536@4', 'bob:900000:1000@5', 'mallory:165000:2000@10']);
  t.deepEqual(f.problems.map((p) => p.message), [
    '/etc/subuid:7: START and COUNT must be non-negative integers: "carol:100:x"',
    '/etc/subuid:8: COUNT must be at least 1: "dave:5:0"',
    '/etc/subuid:9: range overflows the 32-bit id space: "erin:4294967000:1000"',
    '/etc/subuid:11: expected NAME:START:COUNT: "only-two-fields:5"',
  ]);
  t.deepEqual(rangesFor(f, { name: 'bob', uid: 1002 }).map((r) => r.start), [231072, 900000]);
  t.deepEqual(rangesFor(f, { name: 'frank', uid: 1001 }).map((r) => r.start), [165536], 'matched by numeric uid');
  t.is(totalIds(rangesFor(f, { name: 'bob', uid: 1002 })), 66536);
  t.deepEqual(findOverlaps(f).map(([a, b]) => `${a.owner}@${a.line}~${b.owner}@${b.line}`), ['alice@2~mallory@10', 'mallory@10~1001@3']);
});

const sub = parseSubIdFile('alice:100000:65536\n').ranges;

test('--userns modes give podman\'s documented mappings', (t) => {
  const inter = intermediateMap(1000, sub);
  t.deepEqual(inter, [{ containerId: 0, hostId: 1000, size: 1 }, { containerId: 1, hostId: 100000, size: 65536 }]);
  const host = compose(modeMapping(parseUsernsMode('host'), 1000, 65536, 'uid'), inter);
  t.deepEqual(mapArgs(host), ['0', '1000', '1', '1', '100000', '65536'], 'host: container root is the user');
  const keep = compose(modeMapping(parseUsernsMode('keep-id'), 1000, 65536, 'uid'), inter);
  t.deepEqual(mapArgs(keep), ['0', '100000', '1000', '1000', '1000', '1', '1001', '101000', '64536'], 'keep-id: the user appears as 1000');
  const keepAs = compose(modeMapping(parseUsernsMode('keep-id:uid=200,gid=300'), 1000, 65536, 'uid'), inter);
  t.deepEqual(mapArgs(keepAs).slice(0, 6), ['0', '100000', '200', '200', '1000', '1']);
  const sized = modeMapping(parseUsernsMode('keep-id:size=2000'), 1000, 65536, 'uid');
  t.deepEqual(sized, [{ containerId: 0, hostId: 1, size: 1000 }, { containerId: 1000, hostId: 0, size: 1 }, { containerId: 1001, hostId: 1001, size: 999 }]);
  const nomap = compose(modeMapping(parseUsernsMode('nomap'), 1000, 65536, 'uid'), inter);
  t.deepEqual(mapArgs(nomap), ['0', '100000', '65536'], 'nomap: the user\'s own id is not mapped');
  t.throws(() => modeMapping({ kind: 'nomap' }, 1000, 0, 'uid'), { message: /nomap requires additional UIDs or GIDs/ });
  for (const m of [host, keep, keepAs, nomap]) t.deepEqual(checkMapping(m), []);
  t.deepEqual(unownedHostIds(keep, 1000, sub), []);
});

test('explicit --uidmap specs, auto sizing and first-fit allocation', (t) => {
  t.deepEqual(parseIdMapSpec('0:1:1000'), { containerId: 0, hostId: 1, size: 1000 });
  t.deepEqual(parseIdMapSpec('5:0'), { containerId: 5, hostId: 0, size: 1 });
  t.throws(() => parseIdMapSpec('0:1:0'), { message: /SIZE must be at least 1/ });
  t.throws(() => parseIdMapSpec('a:b', '--gidmap'), { message: /invalid --gidmap "a:b": expected CONTAINER:HOST\[:SIZE\]/ });
  t.is(autoSize({}, 999), 1024, 'at least the minimum');
  t.is(autoSize({}, 5000), 5001, 'the highest id the rootfs uses, plus one');
  t.is(autoSize({ size: 300 }, 5000), 300);
  t.throws(() => autoSize({}, 70000), { message: /needs a user namespace with size 70001 that is bigger than the maximum value allowed with userns=auto 65536/ });
  t.deepEqual(allocateAuto(1024, 65536, []), { containerId: 0, hostId: 1, size: 1024 });
  t.deepEqual(allocateAuto(1024, 65536, [{ containerId: 0, hostId: 1, size: 1024 }, { containerId: 0, hostId: 3000, size: 10 }]), { containerId: 0, hostId: 1025, size: 1024 });
  t.deepEqual(allocateAuto(2000, 65536, [{ containerId: 0, hostId: 1, size: 1024 }, { containerId: 0, hostId: 2000, size: 10 }]), { containerId: 0, hostId: 2010, size: 2000 }, 'skips a gap too small');
  t.throws(() => allocateAuto(60000, 65536, [{ containerId: 0, hostId: 1, size: 10000 }]), { message: /not enough unused IDs in user namespace/ });
});

test('the kernel\'s rules and the user\'s ownership are checked before anything starts', (t) => {
  t.regex(checkMapping([{ containerId: 0, hostId: 1000, size: 1 }, { containerId: 1, hostId: 999, size: 5 }]).join(), /overlap on the outside/);
  t.regex(checkMapping([{ containerId: 0, hostId: 1000, size: 10 }, { containerId: 5, hostId: 5000, size: 5 }]).join(), /overlap on the inside/);
  t.regex(checkMapping(Array.from({ length: 341 }, (_, i) => ({ containerId: i, hostId: 100000 + i, size: 1 }))).join(), /341 lines; the kernel accepts at most 340/);
  t.regex(checkMapping([]).join(), /empty/);
  // The user's own uid inside its subuid range (podman#4436): caught as an overlap, not as EINVAL later.
  const own = intermediateMap(100005, sub);
  t.regex(checkMapping(own).join(), /overlap on the outside/);
  t.deepEqual(unownedHostIds([{ containerId: 0, hostId: 50000, size: 10 }], 1000, sub).length, 1);
  t.throws(() => compose([{ containerId: 0, hostId: 0, size: 70000 }], intermediateMap(1000, sub)), { message: /needs more subordinate ids than the user has/ });
  for (const bad of ['weird', 'keep-id:uid=x', 'auto:size=0', 'nomap:size=3', 'keep-id:foo=1']) t.throws(() => parseUsernsMode(bad), undefined, bad);
});

test('getsubids output parses into ranges; junk lines are problems', async (t) => {
  const { parseGetsubids } = await import('./unshare.js');
  const f = parseGetsubids('0: alice 100000 65536\n1: alice 300000 1000\nError fetching ranges\n', 'getsubids alice');
  t.deepEqual(f.ranges.map((r) => [r.owner, r.start, r.count]), [['alice', 100000, 65536], ['alice', 300000, 1000]]);
  t.deepEqual(f.problems.map((p) => p.message), ['getsubids alice:3: unexpected output: "Error fetching ranges"']);
});

test('auto: the highest uid/gid of a rootfs (files, passwd, group; nobody ignored) sizes the namespace', async (t) => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { highestIds, autoSizeFor } = await import('./auto.js');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rootfs-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'etc'));
  fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1500:1600::/app:/bin/sh\n# comment\nbroken\n');
  fs.writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\nstaff:x:2100:\nnogroup:x:65534:\n');
  fs.symlinkSync('/', path.join(root, 'escape'));
  const ids = highestIds(root);
  t.like(ids, { uid: 1500, gid: 2100 });
  t.is(autoSizeFor({}, root), 2101, 'max(uid, gid) + 1');
  t.is(autoSizeFor({}), 1024, 'at least the minimum without a rootfs');
  t.is(autoSizeFor({ size: 500 }, root), 500, 'an explicit size wins');
  t.throws(() => highestIds(path.join(root, 'missing')), { message: /is not a directory/ });
  if (process.getuid?.() === 0) {
    fs.writeFileSync(path.join(root, 'owned'), '');
    fs.chownSync(path.join(root, 'owned'), 70000, 3000);
    t.throws(() => autoSizeFor({}, root), { message: /needs a user namespace with size 70001 that is bigger than the maximum value allowed with userns=auto 65536/ });
  }
});

test('auto registry: first fit beside live entries, dead holders pruned, release gives ids back', async (t) => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { spawn } = await import('node:child_process');
  const { AutoRegistry } = await import('./auto.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-auto-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const reg = new AutoRegistry(dir);
  const totals = { uid: 65536, gid: 65536 };
  const a = reg.allocate(1024, totals);
  const sleeper = spawn('sleep', ['30']);
  t.teardown(() => sleeper.kill('SIGKILL'));
  const b = reg.allocate(2000, totals, sleeper.pid!);
  t.deepEqual([a.uid.hostId, b.uid.hostId, b.gid.hostId], [1, 1025, 1025]);
  reg.release(a);
  const c = reg.allocate(512, totals);
  t.is(c.uid.hostId, 1, 'the released slice is reused first');
  sleeper.kill('SIGKILL');
  await new Promise((r) => sleeper.once('exit', r));
  t.deepEqual(reg.list().map((e) => e.uid.hostId), [1], 'the dead holder\'s slice is pruned');
  t.throws(() => reg.allocate(70000, totals), { message: /not enough unused IDs in user namespace: need 70000/ });
  fs.writeFileSync(reg.file, '{ torn');
  t.is(reg.allocate(10, totals).uid.hostId, 1, 'a torn registry file starts over instead of failing');
});
