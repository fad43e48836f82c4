/**
 * `burrow cni install`: writes a launcher per burrow plugin into a CNI bin dir. Each launcher
 * carries the marker line (so burrow's runtime runs it in-process when it finds it on CNI_PATH)
 * and requires the bundle by absolute path, so it works from any directory.
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

export function launcherText(name: string): string {
  const bundle = path.join(installRoot(), 'dist', 'plugins', `${name}.cjs`);
  return `#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node\n// ${LAUNCHER_MARKER} ${name}: installed by "burrow cni install"\nrequire(${JSON.stringify(bundle)});\n`;
}

/** Installs every launcher; refuses (before writing anything) to replace foreign files unless `force`. */
export function installPlugins(dir: string, force: boolean): string[] {
  const names = shippedPlugins();
  const foreign = names.filter((n) => fs.existsSync(path.join(dir, n)) && !isLauncher(path.join(dir, n)));
  if (foreign.length && !force) {
    throw new BurrowError('EEXIST', `${dir} already has ${foreign.join(', ')} that burrow did not install (the reference plugins?): use --force to replace them`);
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  return names.map((n) => {
    const file = path.join(dir, n);
    const tmp = `${file}.burrow-tmp`;
    fs.writeFileSync(tmp, launcherText(n), { mode: 0o755 });
    fs.renameSync(tmp, file); // atomic: a runtime exec'ing the plugin meanwhile sees old or new, never half
    return `installed ${file}`;
  });
}

export function uninstallPlugins(dir: string): string[] {
  const out: string[] = [];
  for (const n of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const file = path.join(dir, n);
    if (fs.statSync(file).isFile() && isLauncher(file)) {
      fs.rmSync(file);
      out.push(`removed ${file}`);
    }
  }
  return out;
}
