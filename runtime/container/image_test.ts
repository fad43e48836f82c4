import test from 'ava';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { ImageError, planImage, resolveInRoot, unpackImage } from './image.js';
import { tarOf, type Entry } from '../../test/helpers/image.js';

const layer1: Entry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/os-release', body: 'ID=test\n' },
  { name: 'etc/gone', body: 'deleted by layer 2\n' },
  { name: 'var/', type: 'directory' },
  { name: 'var/cache/', type: 'directory' },
  { name: 'var/cache/old', body: 'hidden by an opaque whiteout\n' },
  { name: 'bin/', type: 'directory' },
  { name: 'bin/tool', body: '#!/bin/sh\necho hi\n', mode: 0o755 },
  { name: 'bin/tool-link', type: 'link', linkname: 'bin/tool' },
  { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
  { name: 'usr/lib/', type: 'directory' },
  { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 },
  { name: 'escape', type: 'symlink', linkname: '/../../../../tmp' },
];
const layer2: Entry[] = [
  { name: 'etc/.wh.gone' },
  { name: 'var/cache/.wh..wh..opq' },
  { name: 'var/cache/new', body: 'from layer 2\n' },
  { name: 'lib/libx.so', body: 'through the symlink\n' },
  { name: 'escape/pwned', body: 'must land inside the root\n' },
  { name: 'etc/os-release', body: 'ID=test\nVERSION=2\n' },
];

/** A temp dir removed when the test ends, pass or fail (read-only dirs made writable first). */
function tmp(t: import('ava').ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-image-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

function check(t: import('ava').ExecutionContext, root: string, outside: string): void {
  const read = (p: string) => fs.readFileSync(path.join(root, p), 'utf8');
  t.is(read('etc/os-release'), 'ID=test\nVERSION=2\n');
  t.false(fs.existsSync(path.join(root, 'etc/gone')));
  t.false(fs.existsSync(path.join(root, 'var/cache/old')));
  t.is(read('var/cache/new'), 'from layer 2\n');
  t.is(read('usr/lib/libx.so'), 'through the symlink\n');
  t.is(read('tmp/pwned'), 'must land inside the root\n'); // escape -> /tmp inside the root
  t.false(fs.existsSync(path.join(outside, 'pwned')));
  t.is(fs.statSync(path.join(root, 'bin/tool')).mode & 0o777, 0o755);
  t.is(fs.statSync(path.join(root, 'bin/tool')).ino, fs.statSync(path.join(root, 'bin/tool-link')).ino);
  t.false(fs.existsSync(path.join(root, 'dev/null')));
}

test('docker save: layers in manifest order (gzip and plain), whiteouts, opaque dirs, links, config', async (t) => {
  const dir = tmp(t);
  const l1 = zlib.gzipSync(await tarOf(layer1));
  const l2 = await tarOf(layer2);
  const config = Buffer.from(JSON.stringify({ config: { Env: ['A=1'], Cmd: ['/bin/tool'], WorkingDir: '/srv' } }));
  const cfgName = `${sha(config)}.json`;
  // layer 2 first in the archive: order comes from manifest.json, not from the archive
  const image = await tarOf([
    { name: 'bbb/layer.tar', body: l2 },
    { name: 'aaa/layer.tar', body: l1 },
    { name: cfgName, body: config },
    { name: 'manifest.json', body: JSON.stringify([{ Config: cfgName, RepoTags: ['test:1'], Layers: ['aaa/layer.tar', 'bbb/layer.tar'] }]) },
  ]);
  fs.writeFileSync(path.join(dir, 'img.tar'), image);
  const plan = await planImage(path.join(dir, 'img.tar'));
  t.is(plan.format, 'docker-save');
  t.is(plan.ref, 'test:1');
  t.deepEqual(plan.config.Cmd, ['/bin/tool']);
  const stats = await unpackImage(path.join(dir, 'img.tar'), plan, path.join(dir, 'root'), { chown: false, spoolDir: path.join(dir, 'spool') });
  check(t, path.join(dir, 'root'), os.tmpdir());
  t.is(stats.whiteouts, 2);
  t.is(stats.skippedDevices, 1);
  t.false(fs.existsSync(path.join(dir, 'spool')));
});

test('OCI layout: index -> nested index -> manifest for this architecture -> layers', async (t) => {
  const dir = tmp(t);
  const blobs: Entry[] = [];
  const add = (b: Buffer) => {
    const d = sha(b);
    blobs.push({ name: `blobs/sha256/${d}`, body: b });
    return `sha256:${d}`;
  };
  const l1 = add(zlib.gzipSync(await tarOf(layer1)));
  const l2 = add(await tarOf(layer2));
  const cfg = add(Buffer.from(JSON.stringify({ config: { Entrypoint: ['/bin/tool'] } })));
  const manifest = add(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: cfg }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l1 }, { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l2 }] })));
  const other = add(Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [] })));
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const nested = add(Buffer.from(JSON.stringify({ manifests: [{ digest: other, platform: { architecture: 'mips', os: 'linux' } }, { digest: manifest, platform: { architecture: arch, os: 'linux' } }] })));
  const image = zlib.gzipSync(await tarOf([
    { name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' },
    { name: 'index.json', body: JSON.stringify({ manifests: [{ digest: nested, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }] }) },
    ...blobs,
  ]));
  fs.writeFileSync(path.join(dir, 'img.tar.gz'), image);
  const plan = await planImage(path.join(dir, 'img.tar.gz'));
  t.is(plan.format, 'oci');
  t.is(plan.ref, 'v1');
  t.deepEqual(plan.config.Entrypoint, ['/bin/tool']);
  await unpackImage(path.join(dir, 'img.tar.gz'), plan, path.join(dir, 'root'), { chown: false, spoolDir: path.join(dir, 'spool') });
  check(t, path.join(dir, 'root'), os.tmpdir());
});

/** zstd-compressed bytes, from the zstd tool (scripts/setup.sh installs it); null when it is missing outside CI. */
function zstdOf(t: import('ava').ExecutionContext, b: Buffer): Buffer | null {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: b, maxBuffer: 1 << 28 });
  if (r.status === 0) return r.stdout;
  if (process.env.CI) t.fail('zstd is missing: scripts/setup.sh installs it');
  else t.log('SKIP: the zstd tool is not installed');
  return null;
}

test('zstd: an OCI layer and a whole archive compressed with zstd, streamed; corrupt zstd is a clear error', async (t) => {
  const dir = tmp(t);
  // larger than fzstd's output chunks, and not compressible to nothing: several MiB of varied text
  const big = Buffer.from(Array.from({ length: 120_000 }, (_, i) => `line ${i} ${sha(Buffer.from(String(i))).slice(0, 24)}\n`).join(''));
  const l1 = zstdOf(t, await tarOf([...layer1, { name: 'big.txt', body: big }]));
  if (!l1) return;
  const blobs: Entry[] = [];
  const add = (b: Buffer) => {
    const d = sha(b);
    blobs.push({ name: `blobs/sha256/${d}`, body: b });
    return `sha256:${d}`;
  };
  const d1 = add(l1);
  const d2 = add(await tarOf(layer2));
  const manifest = add(Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: d1 }, { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: d2 }] })));
  const image = zstdOf(t, await tarOf([{ name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' }, { name: 'index.json', body: JSON.stringify({ manifests: [{ digest: manifest }] }) }, ...blobs]))!;
  t.true(image.length < big.length, 'the archive itself is zstd too');
  fs.writeFileSync(path.join(dir, 'img.tar.zst'), image);
  const plan = await planImage(path.join(dir, 'img.tar.zst'));
  t.is(plan.format, 'oci');
  await unpackImage(path.join(dir, 'img.tar.zst'), plan, path.join(dir, 'root'), { chown: false, spoolDir: path.join(dir, 'spool') });
  check(t, path.join(dir, 'root'), os.tmpdir());
  t.true(fs.readFileSync(path.join(dir, 'root', 'big.txt')).equals(big), 'the big file came through intact');
  // a zstd stream cut short, and one with a damaged block
  const f = path.join(dir, 'bad.tar.zst');
  fs.writeFileSync(f, image.subarray(0, Math.floor(image.length / 2)));
  await t.throwsAsync(planImage(f), { instanceOf: ImageError, message: /corrupt zstd data|not a valid tar/ });
  const damaged = Buffer.from(image);
  for (let i = 64; i < 4096; i++) damaged[i] ^= 0x5a;
  fs.writeFileSync(f, damaged);
  await t.throwsAsync(planImage(f), { instanceOf: ImageError, message: /corrupt zstd data|not a valid tar/ });
});

test('plain rootfs tarball', async (t) => {
  const dir = tmp(t);
  fs.writeFileSync(path.join(dir, 'rootfs.tar'), await tarOf([{ name: './', type: 'directory' }, { name: './etc/hostname', body: 'x\n' }, { name: './ro/', type: 'directory', mode: 0o555 }, { name: './ro/file', body: 'in a read-only dir\n' }]));
  const plan = await planImage(path.join(dir, 'rootfs.tar'));
  t.is(plan.format, 'rootfs');
  await unpackImage(path.join(dir, 'rootfs.tar'), plan, path.join(dir, 'root'), { chown: false, spoolDir: path.join(dir, 'spool') });
  t.is(fs.readFileSync(path.join(dir, 'root/ro/file'), 'utf8'), 'in a read-only dir\n');
  t.is(fs.statSync(path.join(dir, 'root/ro')).mode & 0o777, 0o555);
  fs.chmodSync(path.join(dir, 'root/ro'), 0o755);
});

test('bad archives: clear errors', async (t) => {
  const dir = tmp(t);
  const f = path.join(dir, 'bad.tar');
  fs.writeFileSync(f, crypto.randomBytes(4096));
  await t.throwsAsync(planImage(f), { instanceOf: ImageError, message: /not a valid tar archive/ });
  const good = await tarOf([{ name: 'a', body: 'x'.repeat(5000) }]);
  fs.writeFileSync(f, good.subarray(0, 1200)); // truncated inside the body
  await t.throwsAsync(planImage(f), { instanceOf: ImageError, message: /not a valid tar archive/ });
  fs.writeFileSync(f, zlib.gzipSync(good).subarray(0, 40));
  await t.throwsAsync(planImage(f), { instanceOf: ImageError, message: /corrupt gzip|not a valid tar/ });
  await t.throwsAsync(planImage(path.join(dir, 'missing.tar')), { message: /no such file/ });
  fs.writeFileSync(f, await tarOf([{ name: 'manifest.json', body: JSON.stringify([{ Layers: ['x/layer.tar'] }]) }]));
  await t.throwsAsync(planImage(f), { message: /layer x\/layer.tar named by manifest.json is missing/ });
  fs.writeFileSync(f, await tarOf([{ name: 'manifest.json', body: '{not json' }]));
  await t.throwsAsync(planImage(f), { message: /manifest.json is not valid JSON/ });
  fs.writeFileSync(f, await tarOf([{ name: '../../evil', body: 'x' }]));
  const plan = await planImage(f);
  await t.throwsAsync(unpackImage(f, plan, path.join(dir, 'root'), { chown: false, spoolDir: path.join(dir, 'spool') }), { message: /unsafe path/ });
  fs.writeFileSync(f, await tarOf([{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]));
  await t.throwsAsync(unpackImage(f, await planImage(f), path.join(dir, 'root2'), { chown: false, spoolDir: path.join(dir, 'spool') }), { message: /unsafe hard link/ });
});

test('resolveInRoot never leaves the root', (t) => {
  const root = tmp(t);
  fs.mkdirSync(path.join(root, 'a'));
  fs.symlinkSync('../../../..', path.join(root, 'a/up'));
  fs.symlinkSync('/a', path.join(root, 'abs'));
  t.is(resolveInRoot(root, 'a/up/etc/passwd'), path.join(root, 'etc/passwd'));
  t.is(resolveInRoot(root, 'abs/up/x'), path.join(root, 'x'));
  t.is(resolveInRoot(root, 'a/up'), path.join(root, 'a/up')); // the last component is not followed
  fs.symlinkSync('loop', path.join(root, 'loop'));
  t.throws(() => resolveInRoot(root, 'loop/x'), { message: /too many symlinks/ });
});
