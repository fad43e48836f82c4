/**
 * `burrow cni install`: writes a launcher per burrow plugin into a CNI bin dir. Each launcher
 * carries the marker line (so burrow's runtime runs it in-process when it finds it on CNI_PATH).
 * By default the launchers run a copy of the runtime that install puts beside them
 * (runtime/cni/copy.ts: DIR/.burrow/ID, named relative to the launcher), so DIR keeps working when
 * the checkout moves or goes; --link names the checkout itself instead (for development).
 * `burrow compat install` writes the drop-ins of podman's helpers (bin/compat: slirp4netns,
 * aardvark-dns), for containers.conf's `network_cmd_path` and `helper_binaries_dir`; they name the
 * checkout.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BurrowError } from '../../native/errors.js';
import { isLauncher, LAUNCHER_MARKER } from '../../plugins/registry.js';
import { nativeExecutable } from '../../native/mod.js';
import { installRoot } from '../config.js';
import { buildId, COPY_DIR, copyRuntime, pruneCopies, removeCopies, retireCopies, withCopyLock } from '../cni/copy.js';

/** The plugins burrow ships: every dist/plugins/<name>.cjs. */
export function shippedPlugins(): string[] {
  const dir = path.join(installRoot(), 'dist', 'plugins');
  if (!fs.existsSync(dir)) throw new BurrowError('ENOENT', `"${dir}" is missing: run "npm ci" (it builds the plugin bundles)`);
  return fs.readdirSync(dir).filter((f) => f.endsWith('.cjs')).map((f) => f.slice(0, -4)).sort();
}

/** A launcher's body: the bundle, by absolute path, through bin/load.cjs (with its code cache). */
const loadLine = (bundle: string) => `require(${JSON.stringify(path.join(installRoot(), 'bin', 'load.cjs'))})(${JSON.stringify(bundle)});\n`;

/**
 * A script launcher: the bundle through bin/load.cjs (with its code cache), from the checkout
 * (`copy` null) or from the copy `copy` (relative to the launcher's own directory).
 */
export function launcherText(name: string, copy: string | null = null): string {
  const head = `#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node\n// ${LAUNCHER_MARKER} ${name}: installed by "burrow cni install"\n`;
  if (!copy) return head + loadLine(path.join(installRoot(), 'dist', 'plugins', `${name}.cjs`));
  const at = (f: string) => `path.join(__dirname, ${JSON.stringify(path.join(copy, f))})`;
  return `${head}const path = require('node:path');\nrequire(${at('bin/load.cjs')})(${at(`dist/plugins/${name}.cjs`)});\n`;
}

/** How `burrow cni install` writes the plugins. */
export interface PluginInstall {
  /** Native launchers (native/burrow-cni.c) that hand calls to `burrow cni serve` at `socket`. */
  native: boolean;
  /** Where the launchers look for the service (BURROW_CNI_SOCKET overrides it per call). */
  socket: string;
  /** Name the checkout instead of a copy of the runtime in DIR/.burrow (the launchers break when it moves). */
  link?: boolean;
  /** Put Node itself into the copy too: DIR then depends on nothing outside it but glibc and libstdc++. */
  withNode?: boolean;
}

/** What a native launcher's trailer names; paths relative to the launcher's directory, or absolute. */
export interface LauncherPaths {
  root: string;
  node: string;
  load: string;
  bundle: string;
  /** The build ID (runtime/cni/copy.ts), which `burrow cni serve` compares with its own. */
  build: string;
}

/** The paths of the checkout itself (--link). */
function checkoutPaths(name: string, build: string): LauncherPaths {
  const root = installRoot();
  return { root, node: process.execPath, load: path.join(root, 'bin', 'load.cjs'), bundle: path.join(root, 'dist', 'plugins', `${name}.cjs`), build };
}

/**
 * A native launcher: the built burrow-cni, then the trailer that names what it runs (the format
 * native/burrow-cni.c reads: "key=value" lines, then "BCNI-TRAILER %08x\n" with their length).
 */
export function nativeLauncher(binary: Buffer, name: string, socket: string, paths: LauncherPaths): Buffer {
  const text = [
    `\n# ${LAUNCHER_MARKER} ${name}: installed by "burrow cni install"`,
    `name=${name}`,
    `root=${paths.root}`,
    `node=${paths.node}`,
    `load=${paths.load}`,
    `bundle=${paths.bundle}`,
    ...(paths.build ? [`build=${paths.build}`] : []),
    `socket=${socket}`,
    '',
  ].join('\n');
  for (const v of [paths.root, paths.node, socket]) {
    if (v.includes('\n')) throw new BurrowError('EINVAL', `cannot install a launcher naming "${v}": it holds a newline`);
  }
  const len = Buffer.byteLength(text);
  // the launcher reads the last 8 KiB of itself
  if (len + 22 > 8192) throw new BurrowError('ENAMETOOLONG', `cannot install the ${name} launcher: its paths take ${len} bytes, more than its 8 KiB trailer holds`);
  return Buffer.concat([binary, Buffer.from(text), Buffer.from(`BCNI-TRAILER ${len.toString(16).padStart(8, '0')}\n`)]);
}

/**
 * Installs every launcher; refuses (before writing anything) to replace foreign files unless
 * `force`. Native launchers when `how.native` (and the native build has made burrow-cni), else
 * the script launchers. Unless `how.link`, first copies the runtime into DIR/.burrow (reused when
 * this build is there already); the copy the launchers named before stays until the next install.
 */
export function installPlugins(dir: string, force: boolean, how: PluginInstall = { native: false, socket: '' }): string[] {
  const built = how.native ? nativeExecutable('burrow-cni') : null;
  if (how.native && !built) throw new BurrowError('ENOENT', 'the native launcher is not built (build/Release/burrow-cni): run "npm ci", or install the script launchers with --no-native');
  if (how.withNode && !how.native) throw new BurrowError('EINVAL', '--with-node needs the native launchers: a script launcher runs the "node" on PATH');
  if (how.withNode && how.link) throw new BurrowError('EINVAL', '--with-node copies Node into the install dir; --link copies nothing');
  const names = shippedPlugins();
  refuseForeign(dir, names, isLauncher, force, 'the reference plugins?');
  const binary = built ? fs.readFileSync(built) : null;
  const root = installRoot();
  if (how.link) {
    const build = buildId(root);
    return [...installLaunchers(dir, names, (n) => (binary ? nativeLauncher(binary, n, how.socket, checkoutPaths(n, build)) : launcherText(n))), ...retireCopies(dir)];
  }
  return withCopyLock(dir, () => {
    const copy = copyRuntime(dir, root, !!how.withNode);
    const paths = (n: string): LauncherPaths => ({ root: copy.rel, node: copy.node, load: path.join(copy.rel, 'bin', 'load.cjs'), bundle: path.join(copy.rel, 'dist', 'plugins', `${n}.cjs`), build: copy.id });
    const lines = installLaunchers(dir, names, (n) => (binary ? nativeLauncher(binary, n, how.socket, paths(n)) : launcherText(n, copy.rel)));
    return [`copied the runtime to ${path.join(dir, copy.rel)}`, ...lines, ...pruneCopies(dir, [copy.rel, copy.previous])];
  });
}

/** Removes burrow's launchers from `dir`, then the runtime copies they ran (unless drop-ins there still use them). */
export function uninstallPlugins(dir: string): string[] {
  const removed = uninstallLaunchers(dir, isLauncher);
  return [...removed, ...(hasLaunchers(dir, isCompatLauncher) ? pruneUnnamed(dir) : dropCopies(dir))];
}

/** Whether `dir` holds a launcher that `ours` recognises. */
function hasLaunchers(dir: string, ours: (file: string) => boolean): boolean {
  return fs.existsSync(dir) && fs.readdirSync(dir).some((n) => ours(path.join(dir, n)));
}

/** The copies no file in `dir` names any more go (the others' launchers keep theirs). */
function pruneUnnamed(dir: string): string[] {
  return fs.existsSync(path.join(dir, COPY_DIR)) ? withCopyLock(dir, () => pruneCopies(dir, [])) : [];
}

/** Removes DIR/.burrow, if there is one, under its lock. */
function dropCopies(dir: string): string[] {
  return fs.existsSync(path.join(dir, COPY_DIR)) ? withCopyLock(dir, () => removeCopies(dir)) : [];
}

/** The marker of a compat launcher (a drop-in for one of podman's helpers). */
export const COMPAT_MARKER = 'burrow-compat-helper';

/** The drop-ins burrow ships: every dist/compat/<name>.cjs (slirp4netns, aardvark-dns, ...). */
export function shippedCompat(): string[] {
  const dir = path.join(installRoot(), 'dist', 'compat');
  if (!fs.existsSync(dir)) throw new BurrowError('ENOENT', `"${dir}" is missing: run "npm ci" (it builds the bundles)`);
  return fs.readdirSync(dir).filter((f) => f.endsWith('.cjs')).map((f) => f.slice(0, -4)).sort();
}

/** A drop-in: the helper's bundle through bin/load.cjs, from the copy `copy` (relative to the drop-in's directory) or the checkout. */
export function compatLauncherText(name: string, copy: string | null = null): string {
  const head = `#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node --\n// ${COMPAT_MARKER} ${name}: installed by "burrow compat install"\n`;
  if (!copy) return head + loadLine(path.join(installRoot(), 'dist', 'compat', `${name}.cjs`));
  const at = (f: string) => `path.join(__dirname, ${JSON.stringify(path.join(copy, f))})`;
  return `${head}const path = require('node:path');\nrequire(${at('bin/load.cjs')})(${at(`dist/compat/${name}.cjs`)});\n`;
}

const isCompatLauncher = (file: string) => {
  try {
    return fs.readFileSync(file).subarray(0, 512).includes(COMPAT_MARKER);
  } catch {
    return false;
  }
};

/**
 * Installs the drop-ins for podman's helpers into `dir` (as `burrow cni install` does the
 * plugins): with a copy of the runtime in DIR/.burrow, so they keep working when the checkout
 * moves or goes (`link`: they name the checkout).
 */
export function installCompat(dir: string, force: boolean, link = false): string[] {
  const names = shippedCompat();
  refuseForeign(dir, names, isCompatLauncher, force, "podman's own helpers?");
  if (link) return [...installLaunchers(dir, names, (n) => compatLauncherText(n)), ...retireCopies(dir)];
  return withCopyLock(dir, () => {
    const copy = copyRuntime(dir, installRoot(), false);
    const lines = installLaunchers(dir, names, (n) => compatLauncherText(n, copy.rel));
    return [`copied the runtime to ${path.join(dir, copy.rel)}`, ...lines, ...pruneCopies(dir, [copy.rel, copy.previous])];
  });
}

/** Removes the drop-ins from `dir`, then the runtime copies, unless plugin launchers there still use them. */
export function uninstallCompat(dir: string): string[] {
  const removed = uninstallLaunchers(dir, isCompatLauncher);
  return [...removed, ...(hasLaunchers(dir, isLauncher) ? pruneUnnamed(dir) : dropCopies(dir))];
}

function refuseForeign(dir: string, names: string[], ours: (file: string) => boolean, force: boolean, hint: string): void {
  const foreign = names.filter((n) => fs.existsSync(path.join(dir, n)) && !ours(path.join(dir, n)));
  if (foreign.length && !force) {
    throw new BurrowError('EEXIST', `${dir} already has ${foreign.join(', ')} that burrow did not install (${hint}): use --force to replace them`);
  }
}

/** Writes each launcher (the caller has refused foreign files first). */
function installLaunchers(dir: string, names: string[], text: (name: string) => string | Buffer): string[] {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return names.map((n) => {
    const file = path.join(dir, n);
    const tmp = `${file}.burrow-tmp`;
    fs.writeFileSync(tmp, text(n), { mode: 0o755 });
    fs.renameSync(tmp, file); // atomic: a runtime exec'ing the file meanwhile sees old or new, never half
    return `installed ${file}`;
  });
}

function uninstallLaunchers(dir: string, ours: (file: string) => boolean): string[] {
  const out: string[] = [];
  for (const n of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const file = path.join(dir, n);
    if (fs.statSync(file).isFile() && ours(file)) {
      fs.rmSync(file);
      out.push(`removed ${file}`);
    }
  }
  return out;
}
