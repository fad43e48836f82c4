/**
 * The runtime an install carries with it, so installed plugins keep working when the checkout
 * that installed them moves or goes (`burrow cni install`).
 *
 * Theory of operation
 * -------------------
 * A plugin needs only what the build made: bin/load.cjs, its bundle in dist/plugins with its code
 * cache, the native addon and helpers in build/Release, and Node. Install copies those (about
 * 6 MB; with --with-node also the Node binary, about 100 MB) into DIR/.burrow/ID, where ID names the
 * build: a hash of every copied file and the Node version. The launchers name that directory
 * relative to their own location, so DIR can be moved, or packed and unpacked on another machine.
 *
 * A copy is never changed once made: a new build goes into a new ID beside it, the launchers move
 * to it (one rename each), and the copy they named before stays until the next install, so a call
 * that had started from it finishes. `current` is a symlink to the newest, for a service unit
 * (`DIR/.burrow/current/bin/burrow cni serve`).
 *
 * The build ID is also what `burrow cni serve` compares with a launcher's: a service started from
 * the checkout serves the launchers of a copy of the same build, and declines any other build.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BurrowError } from '../../native/errors.js';

/** Where a plugin install keeps its copies of the runtime. */
export const COPY_DIR = '.burrow';

/** The files a copy holds, relative to an install root: what the plugins and `burrow cni serve` load. */
export function runtimeFiles(root: string): string[] {
  const list = (dir: string, keep: (f: string) => boolean) => {
    const abs = path.join(root, dir);
    return fs.existsSync(abs) ? fs.readdirSync(abs).filter(keep).sort().map((f) => path.join(dir, f)) : [];
  };
  const bundles = (f: string) => f.endsWith('.cjs') || f.endsWith('.cjs.cache') || f === 'package.json';
  const files = [
    ...['bin/load.cjs', 'bin/burrow', 'bin/package.json', 'dist/package.json', 'dist/burrow.cjs', 'dist/burrow.cjs.cache'],
    ...list('dist/plugins', bundles),
    ...list('build/Release', (f) => ['burrow_native.node', 'burrow-ns', 'burrow-holder', 'burrow-cni'].includes(f)),
  ];
  const missing = files.filter((f) => !f.endsWith('.cache') && !fs.existsSync(path.join(root, f)));
  if (missing.length) throw new BurrowError('ENOENT', `${root} lacks ${missing.join(', ')}: run "npm ci" (it builds the bundles and the native code)`);
  return files.filter((f) => fs.existsSync(path.join(root, f)));
}

/**
 * The build's identity: a hash of the code a copy would hold (the code caches aside: they are a
 * compiled form of the bundles, and a copy rewrites their stamps) and of the Node that runs it.
 */
export function buildId(root: string): string {
  const h = crypto.createHash('sha256').update(`${process.version} ${process.arch}\n`);
  for (const f of runtimeFiles(root)) {
    if (f.endsWith('.cache')) continue;
    h.update(`${f}\n`).update(fs.readFileSync(path.join(root, f)));
  }
  return h.digest('hex').slice(0, 16);
}

/** A code cache's first line ties it to one bundle's size and mtime (bin/load.cjs's stamp): made anew for the copy. */
export function restampCache(from: string, to: string, bundleCopy: string): void {
  const data = fs.readFileSync(from);
  const nl = data.indexOf(0x0a);
  const head = nl > 0 ? data.toString('latin1', 0, nl).split(' ') : [];
  if (head.length !== 5) return; // not a cache this build understands: the copy compiles from source
  const st = fs.statSync(bundleCopy);
  const stamp = `${head.slice(0, 3).join(' ')} ${st.size} ${st.mtimeMs}\n`;
  fs.writeFileSync(to, Buffer.concat([Buffer.from(stamp, 'latin1'), data.subarray(nl + 1)]));
}

export interface RuntimeCopy {
  /** The build ID, which is also the copy's directory name (with "-node" when it carries Node). */
  id: string;
  /** The copy, relative to the install dir (what the launchers name). */
  rel: string;
  /** Node, relative to the install dir when the copy carries it, else absolute. */
  node: string;
  /** The copy that the launchers named before this install, kept until the next one (relative), or null. */
  previous: string | null;
}

/**
 * Makes (or reuses) DIR/.burrow/ID from the install root `root`. Copies go to a temporary
 * directory first and are renamed into place whole, so a copy is complete or absent.
 */
export function copyRuntime(dir: string, root: string, withNode: boolean): RuntimeCopy {
  const id = buildId(root);
  const name = withNode ? `${id}-node` : id;
  const base = path.join(dir, COPY_DIR);
  const target = path.join(base, name);
  fs.mkdirSync(base, { recursive: true, mode: 0o755 });
  let previous: string | null = null;
  try {
    previous = fs.readlinkSync(path.join(base, 'current'));
  } catch {
    // first install here
  }
  if (!fs.existsSync(target)) {
    const tmp = path.join(base, `.tmp-${name}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    try {
      for (const f of runtimeFiles(root)) {
        const out = path.join(tmp, f);
        fs.mkdirSync(path.dirname(out), { recursive: true, mode: 0o755 });
        if (f.endsWith('.cache')) restampCache(path.join(root, f), out, path.join(tmp, f.slice(0, -'.cache'.length)));
        else fs.copyFileSync(path.join(root, f), out);
        fs.chmodSync(out, fs.statSync(path.join(root, f)).mode & 0o755);
      }
      if (withNode) {
        fs.copyFileSync(process.execPath, path.join(tmp, 'node'));
        fs.chmodSync(path.join(tmp, 'node'), 0o755);
      }
      fs.renameSync(tmp, target);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }
  const link = path.join(base, `.current-${process.pid}`);
  fs.rmSync(link, { force: true });
  fs.symlinkSync(name, link);
  fs.renameSync(link, path.join(base, 'current'));
  return {
    id,
    rel: path.join(COPY_DIR, name),
    node: withNode ? path.join(COPY_DIR, name, 'node') : process.execPath,
    previous: previous && previous !== name ? path.join(COPY_DIR, previous) : null,
  };
}

/** Removes every copy in DIR/.burrow but `keep` (names relative to DIR); returns what it removed. */
export function pruneCopies(dir: string, keep: (string | null)[]): string[] {
  const base = path.join(dir, COPY_DIR);
  if (!fs.existsSync(base)) return [];
  const kept = new Set(keep.filter((k): k is string => !!k).map((k) => path.basename(k)));
  const gone: string[] = [];
  for (const e of fs.readdirSync(base)) {
    if (e === 'current' || kept.has(e)) continue;
    fs.rmSync(path.join(base, e), { recursive: true, force: true });
    gone.push(path.join(base, e));
  }
  return gone;
}

/** Removes DIR/.burrow altogether (uninstall, once no launcher names it). */
export function removeCopies(dir: string): string[] {
  const base = path.join(dir, COPY_DIR);
  if (!fs.existsSync(base)) return [];
  fs.rmSync(base, { recursive: true, force: true });
  return [base];
}
