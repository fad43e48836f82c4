/**
 * `burrow run --image FILE.tar`: unpacks an image tarball into a container's root directory.
 *
 * Three layouts are recognised from the archive's own index files:
 *   - `docker save` (manifest.json: Config + Layers, layers as tar or tar.gz),
 *   - an OCI image layout (oci-layout + index.json -> manifest -> config + layer blobs, also what
 *     newer `docker save` writes next to manifest.json),
 *   - anything else is a plain root filesystem tarball (`tar -C rootfs -c .`, maybe gzipped).
 * The archive and each layer may be plain tar, gzip or zstd (`podman push --compression-format
 * zstd`; Node 20's zlib has no zstd, so fzstd decompresses it, streaming), told by magic bytes.
 * Layers are applied in order with the OCI whiteout rules (`.wh.NAME` deletes NAME from lower
 * layers, `.wh..wh..opq` hides a directory's lower contents). Paths never leave the root: names
 * with `..` are refused, and a symlink met on the way is resolved inside the root, as if chrooted.
 *
 * Ownership comes from the archive, shifted through the container's id map (`idMap`: container id
 * -> the id the unpacking process gives the file), so an image's uid 33 lands as whatever host id
 * the container's uid 33 is: as root, the host id of the container's map; rootless, the unpacking
 * runs in a user namespace that maps the user's whole subordinate range (`burrow internal
 * unpack-image`, from run.ts), and files get the intermediate ids. An id the container does not
 * map is an error that says how to map it. The root directory itself belongs to the container's
 * root. Device nodes and fifos are skipped and counted (no mknod in a user namespace; podman's
 * rootless storage does the same for devices).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Decompress } from 'fzstd';
import zlib from 'node:zlib';
import { extract, type Header } from 'tar-stream';
import { BurrowError } from '../../native/errors.js';
import type { IdMapping } from '../../userns/mapping.js';

export class ImageError extends BurrowError {
  constructor(message: string) {
    super('EIMAGE', message);
  }
}

/** What an image says about how to run it (the OCI config's "config" object). */
export interface ImageConfig {
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
}

export interface ImagePlan {
  format: 'docker-save' | 'oci' | 'rootfs';
  /** Archive entry names of the layers, lowest first ([] for a plain rootfs: the file itself). */
  layers: string[];
  config: ImageConfig;
  /** e.g. the repo tag of a docker save, or the OCI ref name annotation. */
  ref?: string;
}

export interface UnpackStats {
  entries: number;
  whiteouts: number;
  skippedDevices: number;
  skippedFifos: number;
}

/** Largest entry kept in memory while scanning for index files and small JSON blobs. */
const SMALL = 4 << 20;

class ZstdError extends Error {}

/** A streaming zstd decompressor (fzstd) as a Transform; its errors are ZstdErrors. */
export function zstdDecompressor(): Transform {
  const fail = (err: unknown) => new ZstdError((err as Error)?.message ?? String(err));
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        d.push(chunk);
        cb();
      } catch (err) {
        cb(fail(err));
      }
    },
    flush(cb) {
      try {
        d.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(fail(err));
      }
    },
  });
  // fzstd may reuse its window for later output: copy each chunk out
  const d = new Decompress((chunk) => void t.push(Buffer.from(chunk)));
  return t;
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** A readable of the file, decompressed when it starts with the gzip or zstd magic. */
async function openMaybeCompressed(file: string): Promise<NodeJS.ReadableStream> {
  const fd = fs.openSync(file, 'r');
  const magic = Buffer.alloc(4);
  const n = fs.readSync(fd, magic, 0, 4, 0);
  fs.closeSync(fd);
  const raw = fs.createReadStream(file);
  if (n >= 2 && magic.subarray(0, 2).equals(GZIP_MAGIC)) return raw.pipe(zlib.createGunzip());
  if (n === 4 && magic.equals(ZSTD_MAGIC)) {
    const z = zstdDecompressor();
    raw.on('error', (err) => z.destroy(err));
    return raw.pipe(z);
  }
  return raw;
}

function tarError(what: string, err: unknown): ImageError {
  const msg = (err as Error)?.message ?? String(err);
  if (err instanceof ImageError) return err;
  if (/^Z_/.test((err as NodeJS.ErrnoException)?.code ?? '')) return new ImageError(`${what}: corrupt gzip data (${msg})`);
  if (err instanceof ZstdError) return new ImageError(`${what}: corrupt zstd data (${msg})`);
  return new ImageError(`${what}: not a valid tar archive (${msg.replace(/\. Maybe.*$/, '')})`);
}

/** Reads every entry of a tar stream, calling `onEntry`; entries must be consumed or resumed. */
async function walkTar(input: NodeJS.ReadableStream, onEntry: (h: Header, body: NodeJS.ReadableStream) => Promise<void>): Promise<void> {
  const ex = extract();
  ex.on('entry', (h, stream, next) => {
    onEntry(h, stream as unknown as NodeJS.ReadableStream).then(() => next(), (e) => next(e));
  });
  await pipeline(input, ex as unknown as NodeJS.WritableStream);
}

/** Reads past an entry's body. */
function skip(body: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    body.on('end', () => resolve());
    body.on('error', reject);
    body.resume();
  });
}

function drain(body: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    body.on('data', (d: Buffer) => parts.push(d));
    body.on('end', () => resolve(Buffer.concat(parts)));
    body.on('error', reject);
  });
}

const clean = (name: string) => path.posix.normalize(name.replace(/^(\.\/|\/)+/, '')).replace(/\/$/, '');

function parseJson<T>(files: Map<string, Buffer>, name: string, what: string): T {
  const b = files.get(name);
  if (!b) throw new ImageError(`${what}: ${name} is missing from the archive`);
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch (e) {
    throw new ImageError(`${what}: ${name} is not valid JSON (${(e as Error).message})`);
  }
}

const blob = (digest: string) => {
  const m = /^(sha256|sha512):([0-9a-f]{32,128})$/.exec(digest ?? '');
  if (!m) throw new ImageError(`invalid blob digest "${digest}"`);
  return `blobs/${m[1]}/${m[2]}`;
};

type Descriptor = { mediaType?: string; digest: string; platform?: { architecture?: string; os?: string }; annotations?: Record<string, string> };

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** OCI layout: index.json -> (nested index ->) manifest for this machine -> config + layers. */
function planOci(files: Map<string, Buffer>, what: string): ImagePlan {
  let index = parseJson<{ manifests?: Descriptor[] }>(files, 'index.json', what);
  let ref: string | undefined;
  for (let depth = 0; depth < 4; depth++) {
    const list = index.manifests ?? [];
    if (!list.length) throw new ImageError(`${what}: index.json lists no manifests`);
    const arch = GOARCH[process.arch] ?? process.arch;
    const pick = list.find((d) => !d.platform || (d.platform.architecture === arch && (d.platform.os ?? 'linux') === 'linux')) ?? list[0];
    ref ??= pick.annotations?.['org.opencontainers.image.ref.name'] ?? pick.annotations?.['io.containerd.image.name'];
    const doc = parseJson<{ mediaType?: string; manifests?: Descriptor[]; layers?: Descriptor[]; config?: Descriptor }>(files, blob(pick.digest), what);
    if (doc.manifests) {
      index = doc;
      continue;
    }
    if (!doc.layers) throw new ImageError(`${what}: manifest ${pick.digest} has no layers`);
    const cfg = doc.config ? parseJson<{ config?: ImageConfig }>(files, blob(doc.config.digest), what).config ?? {} : {};
    return { format: 'oci', layers: doc.layers.map((l) => blob(l.digest)), config: cfg, ref };
  }
  throw new ImageError(`${what}: image indexes nested too deeply`);
}

/**
 * Pass 1: reads the archive's names and small files and decides its layout and layer order.
 * Throws ImageError for a file that is not a tar archive or an image with broken index files.
 */
export async function planImage(file: string): Promise<ImagePlan> {
  const what = `--image ${file}`;
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (!st) throw new ImageError(`${what}: no such file`);
  if (!st.isFile()) throw new ImageError(`${what}: not a regular file`);
  const files = new Map<string, Buffer>();
  const names = new Set<string>();
  let kept = 0;
  try {
    await walkTar(await openMaybeCompressed(file), async (h, body) => {
      const name = clean(h.name);
      names.add(name);
      const interesting = h.type === 'file' && h.size <= SMALL && kept + h.size <= 16 * SMALL
        && (/^(manifest\.json|index\.json|oci-layout|repositories)$/.test(name) || /^blobs\/sha(256|512)\/[0-9a-f]+$/.test(name) || /^[^/]+\.json$/.test(name));
      if (interesting) {
        const b = await drain(body);
        kept += b.length;
        files.set(name, b);
      } else await skip(body);
    });
  } catch (e) {
    throw tarError(what, e);
  }
  if (!names.size) throw new ImageError(`${what}: the archive is empty`);
  if (files.has('manifest.json')) {
    const m = parseJson<Array<{ Config?: string; Layers?: string[]; RepoTags?: string[] }>>(files, 'manifest.json', what);
    if (!Array.isArray(m) || !m.length || !Array.isArray(m[0].Layers)) throw new ImageError(`${what}: manifest.json has no image with Layers`);
    const img = m[0];
    const layers = img.Layers!.map(clean);
    for (const l of layers) if (!names.has(l)) throw new ImageError(`${what}: layer ${l} named by manifest.json is missing from the archive`);
    const cfg = img.Config ? parseJson<{ config?: ImageConfig }>(files, clean(img.Config), what).config ?? {} : {};
    return { format: 'docker-save', layers, config: cfg, ref: img.RepoTags?.[0] };
  }
  if (files.has('oci-layout') && files.has('index.json')) {
    const plan = planOci(files, what);
    for (const l of plan.layers) if (!names.has(l)) throw new ImageError(`${what}: layer ${l} is missing from the archive`);
    return plan;
  }
  return { format: 'rootfs', layers: [], config: {} };
}

/**
 * Resolves `rel` under `root` following symlinks in the parent components as if `root` were "/"
 * (absolute targets restart at root, ".." stops at root). The last component is not followed.
 */
export function resolveInRoot(root: string, rel: string, followLast = false): string {
  const queue = rel.split('/').filter((p) => p && p !== '.');
  if (!followLast && queue[queue.length - 1] === '..') throw new ImageError(`unsafe path "${rel}"`);
  let cur: string[] = [];
  let hops = 0;
  while (queue.length) {
    const p = queue.shift()!;
    if (p === '..') {
      cur.pop();
      continue;
    }
    const candidate = path.join(root, ...cur, p);
    const st = queue.length || followLast ? fs.lstatSync(candidate, { throwIfNoEntry: false }) : undefined;
    if (st?.isSymbolicLink()) {
      if (++hops > 40) throw new ImageError(`too many symlinks resolving ${rel}`);
      const target = fs.readlinkSync(candidate);
      if (target.startsWith('/')) cur = [];
      queue.unshift(...target.split('/').filter((x) => x && x !== '.'));
      continue;
    }
    cur.push(p);
  }
  return path.join(root, ...cur);
}

function removeAny(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

/** A parent directory chain under root, resolved safely; created as plain directories. */
function ensureParent(root: string, rel: string): void {
  const dir = path.posix.dirname(rel);
  if (dir === '.' || dir === '') return;
  const real = resolveInRoot(root, dir, true);
  const st = fs.lstatSync(real, { throwIfNoEntry: false });
  if (st?.isDirectory()) return;
  if (st) removeAny(real);
  ensureParent(root, path.relative(root, real));
  fs.mkdirSync(real, { mode: 0o755 });
}

/** Container id -> file owner id (see the module comment); identity when absent. */
export interface IdShift {
  uid: IdMapping[];
  gid: IdMapping[];
}

function shifted(map: IdMapping[] | undefined, id: number): number | null {
  if (!map) return id;
  const m = map.find((x) => id >= x.containerId && id - x.containerId < x.size);
  return m ? m.hostId + (id - m.containerId) : null;
}

function chownOrExplain(p: string, name: string, uid: number, gid: number, shift: IdShift | undefined): void {
  const u = shifted(shift?.uid, uid);
  const g = shifted(shift?.gid, gid);
  const tooBig = () => new ImageError(`"${name}" is owned by ${uid}:${gid}, an id outside the container's user namespace; give a larger mapping (e.g. --userns auto:size=${Math.max(uid, gid) + 1})`);
  if (u === null || g === null) throw tooBig();
  try {
    fs.lchownSync(p, u, g);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') throw tooBig();
    throw e;
  }
}

/** Applies one layer (a tar stream) onto `root`. */
export async function applyLayer(root: string, input: NodeJS.ReadableStream, stats: UnpackStats, opts: { chown: boolean; idMap?: IdShift }): Promise<void> {
  const created = new Set<string>();
  const dirModes: Array<[string, number, Date]> = [];
  await walkTar(input, async (h, body) => {
    const rel = clean(h.name);
    const done = () => skip(body);
    if (rel === '.' || rel === '') {
      await done();
      return;
    }
    if (rel === '..' || rel.startsWith('../')) throw new ImageError(`unsafe path "${h.name}" (leaves the root)`);
    stats.entries++;
    const base = path.posix.basename(rel);
    if (base.startsWith('.wh.')) {
      stats.whiteouts++;
      const dirRel = path.posix.dirname(rel);
      const dir = resolveInRoot(root, dirRel, true);
      if (base === '.wh..wh..opq') {
        // hide what lower layers put in this directory; keep what this layer added
        for (const child of fs.readdirSync(dir, { withFileTypes: true }).map((d) => d.name)) {
          const childRel = dirRel === '.' ? child : `${dirRel}/${child}`;
          if (!created.has(childRel)) removeAny(path.join(dir, child));
        }
      } else removeAny(path.join(dir, base.slice(4)));
      await done();
      return;
    }
    ensureParent(root, rel);
    const p = resolveInRoot(root, rel);
    created.add(rel);
    const existing = fs.lstatSync(p, { throwIfNoEntry: false });
    const mode = h.mode & 0o7777;
    switch (h.type) {
      case 'directory':
        if (existing && !existing.isDirectory()) removeAny(p);
        if (!existing || !existing.isDirectory()) fs.mkdirSync(p, { mode: 0o700 });
        if (opts.chown) chownOrExplain(p, h.name, h.uid ?? 0, h.gid ?? 0, opts.idMap);
        dirModes.push([p, mode, h.mtime]);
        await done();
        return;
      case 'file':
      case 'contiguous-file': {
        if (existing) removeAny(p);
        const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
        await pipeline(body, fs.createWriteStream('', { fd }));
        break;
      }
      case 'symlink':
        if (existing) removeAny(p);
        fs.symlinkSync(h.linkname, p);
        await done();
        break;
      case 'link': {
        const target = clean(h.linkname);
        if (target === '..' || target.startsWith('../')) throw new ImageError(`unsafe hard link "${h.name}" -> "${h.linkname}"`);
        const src = resolveInRoot(root, target);
        if (!fs.lstatSync(src, { throwIfNoEntry: false })) throw new ImageError(`hard link "${h.name}" points to "${h.linkname}", which the archive has not created`);
        if (existing) removeAny(p);
        fs.linkSync(src, p);
        await done();
        return; // shares the target's inode: its owner and mode are already set
      }
      case 'character-device':
      case 'block-device':
        stats.skippedDevices++;
        await done();
        return;
      case 'fifo':
        stats.skippedFifos++;
        await done();
        return;
      default:
        await done();
        return;
    }
    if (opts.chown) chownOrExplain(p, h.name, h.uid ?? 0, h.gid ?? 0, opts.idMap);
    if (h.type !== 'symlink') fs.chmodSync(p, mode); // after chown, which clears set-id bits
    try {
      fs.lutimesSync(p, h.mtime, h.mtime);
    } catch {
      // times are cosmetic
    }
  });
  // Directory modes last: a read-only directory must still take its entries first.
  for (const [p, mode, mtime] of dirModes.reverse()) {
    fs.chmodSync(p, mode);
    try {
      fs.utimesSync(p, mtime, mtime);
    } catch {
      // cosmetic
    }
  }
}

/** Pass 2: spools the layers out of the archive (any order there), then applies them in order. */
export async function unpackImage(file: string, plan: ImagePlan, root: string, opts: { chown: boolean; spoolDir: string; idMap?: IdShift }): Promise<UnpackStats> {
  const what = `--image ${file}`;
  const stats: UnpackStats = { entries: 0, whiteouts: 0, skippedDevices: 0, skippedFifos: 0 };
  fs.mkdirSync(root, { recursive: true });
  if (opts.chown) chownOrExplain(root, '/', 0, 0, opts.idMap);
  if (plan.format === 'rootfs') {
    try {
      await applyLayer(root, await openMaybeCompressed(file), stats, opts);
    } catch (e) {
      throw tarError(what, e);
    }
    return stats;
  }
  fs.mkdirSync(opts.spoolDir, { recursive: true, mode: 0o700 });
  try {
    const wanted = new Map(plan.layers.map((l, i) => [l, i]));
    const spooled = new Set<string>();
    try {
      await walkTar(await openMaybeCompressed(file), async (h, body) => {
        const name = clean(h.name);
        if (wanted.has(name) && !spooled.has(name)) {
          spooled.add(name);
          await pipeline(body, fs.createWriteStream(path.join(opts.spoolDir, String(wanted.get(name)))));
        } else await skip(body);
      });
    } catch (e) {
      throw tarError(what, e);
    }
    for (const [i, layer] of plan.layers.entries()) {
      // one blob can serve as several layers (an empty layer repeated): spooled once, by first index
      const spool = path.join(opts.spoolDir, String(wanted.get(layer)));
      try {
        await applyLayer(root, await openMaybeCompressed(spool), stats, opts);
      } catch (e) {
        throw tarError(`${what}: layer ${i + 1} of ${plan.layers.length} (${layer})`, e);
      }
    }
  } finally {
    removeAny(opts.spoolDir);
  }
  return stats;
}
