/** Image tarballs built in tests with tar-stream: layers, docker save and OCI layouts. */
import crypto from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { pack, type Header } from 'tar-stream';

export type Entry = Partial<Header> & { name: string; body?: string | Buffer };

/** A tar archive of `entries` as a Buffer. */
export async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (d: unknown) => chunks.push(d as Buffer));
  const done = new Promise((r) => p.on('end', () => r(null)));
  for (const e of entries) {
    const { body, ...h } = e;
    await new Promise<void>((resolve, reject) => p.entry({ mode: h.type === 'directory' ? 0o755 : 0o644, ...h }, body ?? '', (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

export const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** A `docker save` archive: layers (lowest first) gzipped, config.config = `config`. */
export async function dockerSave(layers: Entry[][], config: object, tag = 'test:1'): Promise<Buffer> {
  const blobs = await Promise.all(layers.map(async (l) => zlib.gzipSync(await tarOf(l))));
  const cfg = Buffer.from(JSON.stringify({ config }));
  const cfgName = `${sha256(cfg)}.json`;
  return tarOf([
    ...blobs.map((b, i) => ({ name: `${sha256(b)}/layer.tar`, body: b, mtime: new Date(1000 * i) })),
    { name: cfgName, body: cfg },
    { name: 'manifest.json', body: JSON.stringify([{ Config: cfgName, RepoTags: [tag], Layers: blobs.map((b) => `${sha256(b)}/layer.tar`) }]) },
  ]);
}

/**
 * A two-layer busybox image (busybox-static from the host): /srv/index.html owned by 33:33
 * (www-data), a file the second layer whites out, and `busybox httpd` on port 80 as its command.
 */
export async function busyboxImage(): Promise<Buffer> {
  const bb = fs.readFileSync('/bin/busybox');
  const applets = ['sh', 'ls', 'cat', 'id', 'stat', 'httpd', 'wget', 'test', 'echo', 'sleep', 'hostname', 'grep'];
  const base: Entry[] = [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/busybox', body: bb, mode: 0o755 },
    ...applets.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, linkname: 'busybox' })),
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', body: 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/srv:/bin/sh\n' },
    { name: 'etc/group', body: 'root:x:0:\nwww-data:x:33:\n' },
    { name: 'etc/secret', body: 'removed by the next layer\n' },
    { name: 'srv/', type: 'directory', uid: 33, gid: 33 },
    { name: 'srv/index.html', body: 'hello from an image\n', uid: 33, gid: 33 },
  ];
  const top: Entry[] = [{ name: 'etc/.wh.secret' }, { name: 'etc/motd', body: 'layer 2\n' }];
  return dockerSave([base, top], { Cmd: ['httpd', '-f', '-p', '80', '-h', '/srv'], Env: ['IMAGE_ENV=yes'], WorkingDir: '/srv' });
}
