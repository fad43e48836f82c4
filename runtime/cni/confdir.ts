/**
 * Loading network configurations from a CNI config directory, as libcni
 * does: *.conflist sorted by file name, the first whose "name" matches wins;
 * deprecated *.conf/*.json single-plugin files after that; and unless
 * loadOnlyInlinedPlugins, extra plugins from <dir>/<network>/*.conf.
 */
import fs from 'node:fs';
import path from 'node:path';
import { hasCode } from '../../native/errors.js';
import { parseConfList, parseSingleConf } from '../../net/cni/config.js';
import { CniCode, CniError, type NetworkConfigList, type PluginConf } from '../../net/cni/types.js';

export interface ConfDirEntry {
  file: string;
  list?: NetworkConfigList;
  /** Why the file could not be used. */
  error?: CniError;
}

function filesOf(dir: string, exts: string[]): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if (hasCode(err, 'ENOENT')) return [];
    throw new CniError(CniCode.IoFailure, `cannot read CNI config dir "${dir}": ${(err as Error).message}`);
  }
  return names.filter((n) => exts.includes(path.extname(n))).sort().map((n) => path.join(dir, n));
}

function parseFile(file: string): ConfDirEntry {
  try {
    const bytes = fs.readFileSync(file);
    const list = path.extname(file) === '.conflist' ? parseConfList(bytes, file) : parseSingleConf(bytes, file);
    return { file, list };
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CniCode.IoFailure, `cannot read "${file}": ${(err as Error).message}`);
    return { file, error: e };
  }
}

/** Every config file in `dir`, parsed, in libcni's order. Broken files carry their error. */
export function scanConfDir(dir: string): ConfDirEntry[] {
  return [...filesOf(dir, ['.conflist']), ...filesOf(dir, ['.conf', '.json'])].map(parseFile);
}

/** Plugins from <dir>/<name>/*.conf, appended unless loadOnlyInlinedPlugins. */
function extraPlugins(dir: string, list: NetworkConfigList): PluginConf[] {
  if (list.loadOnlyInlinedPlugins) return [];
  return filesOf(path.join(dir, list.name), ['.conf']).map((file) => {
    const entry = parseFile(file);
    if (entry.error) throw entry.error;
    return entry.list!.plugins[0];
  });
}

/** Loads network `name` from `dir`, or throws a CniError that says where it looked. */
export function loadNetwork(dir: string, name: string): NetworkConfigList {
  const entries = scanConfDir(dir);
  const hit = entries.find((e) => e.list?.name === name);
  if (!hit) {
    const broken = entries.filter((e) => e.error).map((e) => e.file);
    const note = broken.length ? ` (${broken.length} unreadable file(s): ${broken.join(', ')})` : '';
    throw new CniError(CniCode.InvalidNetworkConfig, `network "${name}" not found in "${dir}"${note}`);
  }
  const list = hit.list!;
  const extra = extraPlugins(dir, list);
  if (!extra.length) return list;
  return { ...list, plugins: [...list.plugins, ...extra] };
}
