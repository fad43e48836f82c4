/**
 * `burrow cni install`: writes a launcher per burrow plugin into a CNI bin dir. Each launcher
 * carries the marker line (so burrow's runtime runs it in-process when it finds it on CNI_PATH)
 * and requires the bundle by absolute path, so it works from any directory. `burrow compat
 * install` does the same for the drop-ins of podman's helpers (bin/compat: slirp4netns,
 * aardvark-dns), for containers.conf's `network_cmd_path` and `helper_binaries_dir`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BurrowError } from '../../native/errors.js';
import { isLauncher, LAUNCHER_MARKER } from '../../plugins/registry.js';
import { installRoot } from '../config.js';

/** The plugins burrow ships: every dist/plugins/<name>.cjs. */
export function shippedPlugins(): string[] {
  const dir = path.join(installRoot(), 'dist', 'plugins');
  if (!fs.existsSync(dir)) throw new BurrowError('ENOENT', `"${dir}" is missing: run "npm ci" (it builds the plugin bundles)`);
  return fs.readdirSync(dir).filter((f) => f.endsWith('.cjs')).map((f) => f.slice(0, -4)).sort();
}

/** A launcher's body: the bundle, by absolute path, through bin/load.cjs (with its code cache). */
const loadLine = (bundle: string) => `require(${JSON.stringify(path.join(installRoot(), 'bin', 'load.cjs'))})(${JSON.stringify(bundle)});\n`;

export function launcherText(name: string): string {
  const bundle = path.join(installRoot(), 'dist', 'plugins', `${name}.cjs`);
  return `#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node\n// ${LAUNCHER_MARKER} ${name}: installed by "burrow cni install"\n${loadLine(bundle)}`;
}

/** Installs every launcher; refuses (before writing anything) to replace foreign files unless `force`. */
export function installPlugins(dir: string, force: boolean): string[] {
  return installLaunchers(dir, shippedPlugins(), launcherText, isLauncher, force, 'the reference plugins?');
}

export function uninstallPlugins(dir: string): string[] {
  return uninstallLaunchers(dir, isLauncher);
}

/** The marker of a compat launcher (a drop-in for one of podman's helpers). */
export const COMPAT_MARKER = 'burrow-compat-helper';

/** The drop-ins burrow ships: every dist/compat/<name>.cjs (slirp4netns, aardvark-dns, ...). */
export function shippedCompat(): string[] {
  const dir = path.join(installRoot(), 'dist', 'compat');
  if (!fs.existsSync(dir)) throw new BurrowError('ENOENT', `"${dir}" is missing: run "npm ci" (it builds the bundles)`);
  return fs.readdirSync(dir).filter((f) => f.endsWith('.cjs')).map((f) => f.slice(0, -4)).sort();
}

export function compatLauncherText(name: string): string {
  const bundle = path.join(installRoot(), 'dist', 'compat', `${name}.cjs`);
  return `#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node --\n// ${COMPAT_MARKER} ${name}: installed by "burrow compat install"\n${loadLine(bundle)}`;
}

const isCompatLauncher = (file: string) => {
  try {
    return fs.readFileSync(file).subarray(0, 512).includes(COMPAT_MARKER);
  } catch {
    return false;
  }
};

/** Installs the drop-ins for podman's helpers into `dir` (as `burrow cni install` does the plugins). */
export function installCompat(dir: string, force: boolean): string[] {
  return installLaunchers(dir, shippedCompat(), compatLauncherText, isCompatLauncher, force, "podman's own helpers?");
}

export function uninstallCompat(dir: string): string[] {
  return uninstallLaunchers(dir, isCompatLauncher);
}

function installLaunchers(dir: string, names: string[], text: (name: string) => string, ours: (file: string) => boolean, force: boolean, hint: string): string[] {
  const foreign = names.filter((n) => fs.existsSync(path.join(dir, n)) && !ours(path.join(dir, n)));
  if (foreign.length && !force) {
    throw new BurrowError('EEXIST', `${dir} already has ${foreign.join(', ')} that burrow did not install (${hint}): use --force to replace them`);
  }
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
