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
import { constants, flockSync } from '../../native/mod.js';

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
    ...list('dist/compat', bundles),
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

/**
 * A code cache's first line ties it to one bundle's size and mtime (bin/load.cjs's stamp): made
 * anew for the copy, when the cache fits the bundle it was made from (else the copy has none and
 * compiles from source, as the original would).
 */
export function restampCache(from: string, to: string, bundleCopy: string): void {
  const data = fs.readFileSync(from);
  const nl = data.indexOf(0x0a);
  const head = nl > 0 ? data.toString('latin1', 0, nl).split(' ') : [];
  if (head.length !== 5) return; // not a cache this build understands
  const orig = fs.statSync(from.slice(0, -'.cache'.length));
  if (head[3] !== String(orig.size) || head[4] !== String(orig.mtimeMs)) return; // stale already
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
  if (withNode && linksLibnode()) {
    throw new BurrowError('ENOTSUP', `--with-node: this Node (${process.execPath}) is built on a shared libnode and the system's libraries, so a copy of it alone would not run elsewhere; use a self-contained Node build (nodejs.org's or NodeSource's), or leave out --with-node`);
  }
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
        const st = fs.statSync(path.join(root, f));
        fs.mkdirSync(path.dirname(out), { recursive: true, mode: 0o755 });
        if (f.endsWith('.cache')) {
          restampCache(path.join(root, f), out, path.join(tmp, f.slice(0, -'.cache'.length)));
          if (!fs.existsSync(out)) continue; // a stale cache stays behind
        } else fs.copyFileSync(path.join(root, f), out);
        // whole seconds: a copy of DIR made by tar or cp -a keeps them, and with them the caches' stamps
        if (f.endsWith('.cjs')) fs.utimesSync(out, Math.floor(st.mtimeMs / 1000), Math.floor(st.mtimeMs / 1000));
        fs.chmodSync(out, st.mode & 0o755);
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

function linksLibnode(): boolean {
  try {
    return /\/libnode\.so/.test(fs.readFileSync('/proc/self/maps', 'utf8'));
  } catch {
    return false;
  }
}

/**
 * For each copy, a process that runs from it (its command line or its mapped files name a path
 * in it: a plugin's cold call, a DHCP daemon or DNS server started from it, a service with its
 * addon loaded), found in one pass over /proc. A copy in use is kept: what it has not loaded yet
 * must stay there.
 */
function copyUsers(copies: string[]): Map<string, { pid: number; cmd: string }> {
  const users = new Map<string, { pid: number; cmd: string }>();
  if (!copies.length) return users;
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return users;
  }
  for (const pid of pids) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ').trim();
      const maps = fs.readFileSync(`/proc/${pid}/maps`, 'latin1');
      for (const c of copies) if (!users.has(c) && (cmd.includes(`${c}/`) || maps.includes(`${c}/`))) users.set(c, { pid: Number(pid), cmd: cmd.slice(0, 120) });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return users;
}

/**
 * The copies that a file in DIR names (the plugin launchers of `cni install` and the drop-ins of
 * `compat install` may share one DIR, each naming its own copy): their IDs.
 */
function namedCopies(dir: string): string[] {
  const ids = new Set<string>();
  for (const e of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
    if (!e.isFile()) continue;
    let text: string;
    try {
      // a launcher is 26 KB at most: larger files (the reference plugins beside ours) are not read
      if (fs.statSync(path.join(dir, e.name)).size > 1 << 20) continue;
      text = fs.readFileSync(path.join(dir, e.name), 'latin1');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/\.burrow\/([0-9a-f]{16}(?:-node)?)\b/g)) ids.add(m[1]);
  }
  return [...ids];
}

/** The copies in DIR/.burrow (not `current`, the lock or a temporary directory), by real path. */
function copiesIn(base: string): string[] {
  return fs.existsSync(base) ? fs.readdirSync(base).filter((e) => e !== 'current' && !e.startsWith('.')).map((e) => fs.realpathSync(path.join(base, e))) : [];
}

/**
 * Runs `fn` holding DIR/.burrow/.lock: installs and uninstalls of one DIR take turns (one would
 * otherwise prune the other's half-made copy).
 */
export function withCopyLock<T>(dir: string, fn: () => T): T {
  const base = path.join(dir, COPY_DIR);
  const file = path.join(base, '.lock');
  for (;;) {
    fs.mkdirSync(base, { recursive: true, mode: 0o755 });
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    try {
      flockSync(fd, constants().LOCK_EX);
      // An uninstall that held the lock removed DIR/.burrow, lock file and all: the file locked
      // here is gone, and the next comer locks a new one. Take the lock of the file that is there.
      const held = fs.fstatSync(fd);
      const there = fs.statSync(file, { throwIfNoEntry: false });
      if (there?.ino === held.ino && there.dev === held.dev) return fn();
    } finally {
      fs.closeSync(fd);
    }
  }
}

/**
 * Removes every copy in DIR/.burrow but `keep` (names relative to DIR) and those a process still
 * runs from, and any temporary directory a killed install left; returns what it did.
 */
export function pruneCopies(dir: string, keep: (string | null)[]): string[] {
  const base = path.join(dir, COPY_DIR);
  const kept = new Set([...keep.filter((k): k is string => !!k).map((k) => path.basename(k)), ...namedCopies(dir)]);
  const candidates = copiesIn(base).filter((c) => !kept.has(path.basename(c)));
  const users = copyUsers(candidates);
  const said: string[] = [];
  for (const c of candidates) {
    const user = users.get(c);
    if (user) {
      said.push(`kept ${c}: pid ${user.pid} runs from it (${user.cmd})`);
      continue;
    }
    fs.rmSync(c, { recursive: true, force: true });
    said.push(`removed ${c}`);
  }
  for (const e of fs.existsSync(base) ? fs.readdirSync(base) : []) {
    if (e.startsWith('.tmp-') || e.startsWith('.current-')) fs.rmSync(path.join(base, e), { recursive: true, force: true });
  }
  // `current` named a copy that went (its launchers were uninstalled): it goes too
  const current = path.join(base, 'current');
  if (fs.lstatSync(current, { throwIfNoEntry: false })?.isSymbolicLink() && !fs.existsSync(current)) fs.rmSync(current, { force: true });
  return said;
}

/**
 * `install --link`: the launchers name the checkout now. DIR/.burrow/current goes; the copy it
 * named stays (a cold call that started from it finishes) until the next install prunes it, and
 * so does any copy a process runs from; the rest goes. Under the lock.
 */
export function retireCopies(dir: string): string[] {
  const base = path.join(dir, COPY_DIR);
  if (!fs.existsSync(base)) return [];
  return withCopyLock(dir, () => {
    let previous: string | null = null;
    try {
      previous = fs.readlinkSync(path.join(base, 'current'));
    } catch {
      // none: a link install before, or an old layout
    }
    fs.rmSync(path.join(base, 'current'), { force: true });
    const said = [...pruneCopies(dir, [previous]), ...(previous ? [`kept ${path.join(base, previous)} until the next install: the launchers named it until now`] : [])];
    // nothing left but the lock: DIR/.burrow goes (a waiting install takes the lock of a new one)
    if (fs.readdirSync(base).every((e) => e === '.lock')) {
      fs.rmSync(base, { recursive: true, force: true });
      said.push(`removed ${base}`);
    }
    return said;
  });
}

/** Removes DIR/.burrow altogether (uninstall); says which processes still run from a copy it removed. */
export function removeCopies(dir: string): string[] {
  const base = path.join(dir, COPY_DIR);
  if (!fs.existsSync(base)) return [];
  const said = [...copyUsers(copiesIn(base))].map(([c, u]) => `note: pid ${u.pid} still runs from ${c} (${u.cmd}); restart it`);
  fs.rmSync(base, { recursive: true, force: true });
  return [...said, `removed ${base}`];
}
