/**
 * Parsing and validation of CNI network configuration (.conflist and the
 * deprecated single-plugin .conf), container IDs, interface names and
 * CNI_ARGS. Pure: bytes in, values or CniError(7/6/4) out, with messages that
 * name the file and the offending key.
 */
import { validIfname } from '../netlink/client.js';
import { CniCode, CniError, type NetworkConfigList, type PluginConf } from './types.js';
import { isVersion } from './version.js';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** CNI's rule for network names and container IDs. */
export function validName(s: unknown): s is string {
  return typeof s === 'string' && NAME_RE.test(s);
}

/** Throws CniError(4) unless `id` is a valid container ID (3 when empty, as skel). */
export function checkContainerId(id: string | undefined): void {
  if (!id) throw new CniError(CniCode.UnknownContainer, 'missing containerID');
  if (!NAME_RE.test(id)) throw new CniError(CniCode.InvalidEnvironment, `invalid characters in containerID "${id}"`, 'containerID must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$');
}

/** Throws CniError(4) unless `name` is a valid interface name. */
export function checkIfname(name: string | undefined): void {
  if (!name || !validIfname(name)) {
    throw new CniError(CniCode.InvalidEnvironment, `invalid interface name "${name ?? ''}"`, 'an interface name is 1-15 bytes without "/", ":" or whitespace, and not "." or ".."');
  }
}

function where(file?: string): string {
  return file ? ` in "${file}"` : '';
}

function bool(v: unknown, key: string, file?: string): boolean {
  // libcni also accepts the strings "true"/"false" for these flags.
  if (v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  throw new CniError(CniCode.InvalidNetworkConfig, `invalid "${key}"${where(file)}: expected a boolean, got ${JSON.stringify(v)}`);
}

function parseJsonObject(bytes: Buffer, file?: string): Record<string, unknown> {
  let obj: unknown;
  try {
    obj = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, `cannot parse network config${where(file)}: ${(err as Error).message}`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new CniError(CniCode.DecodingFailure, `cannot parse network config${where(file)}: expected a JSON object`);
  }
  return obj as Record<string, unknown>;
}

function checkPlugin(p: unknown, i: number, file?: string): PluginConf {
  if (!p || typeof p !== 'object' || Array.isArray(p)) throw new CniError(CniCode.InvalidNetworkConfig, `plugins[${i}]${where(file)} is not an object`);
  const plugin = p as PluginConf;
  if (typeof plugin.type !== 'string' || !plugin.type) throw new CniError(CniCode.InvalidNetworkConfig, `plugins[${i}]${where(file)} has no "type"`);
  if (plugin.type.includes('/') || plugin.type === '.' || plugin.type === '..') {
    throw new CniError(CniCode.InvalidNetworkConfig, `plugins[${i}]${where(file)}: invalid plugin type "${plugin.type}" (a binary name, without "/")`);
  }
  if (plugin.capabilities !== undefined) {
    const caps = plugin.capabilities as unknown;
    if (!caps || typeof caps !== 'object' || Array.isArray(caps) || Object.values(caps).some((v) => typeof v !== 'boolean')) {
      throw new CniError(CniCode.InvalidNetworkConfig, `plugins[${i}] ("${plugin.type}")${where(file)}: "capabilities" must map names to booleans`);
    }
  }
  return plugin;
}

function checkNetName(name: unknown, file?: string): string {
  if (name === undefined || name === '') throw new CniError(CniCode.InvalidNetworkConfig, `missing network name${where(file)}`);
  if (!validName(name)) throw new CniError(CniCode.InvalidNetworkConfig, `invalid characters found in network name ${JSON.stringify(name)}${where(file)}`);
  return name;
}

function checkVersions(obj: Record<string, unknown>, file?: string): { cniVersion: string; cniVersions?: string[] } {
  const v = obj.cniVersion ?? '';
  if (v !== '' && !isVersion(v)) throw new CniError(CniCode.InvalidNetworkConfig, `invalid cniVersion ${JSON.stringify(v)}${where(file)}: expected X.Y.Z`);
  let list: string[] | undefined;
  if (obj.cniVersions !== undefined) {
    if (!Array.isArray(obj.cniVersions) || !obj.cniVersions.every(isVersion)) {
      throw new CniError(CniCode.InvalidNetworkConfig, `invalid cniVersions ${JSON.stringify(obj.cniVersions)}${where(file)}: expected a list of X.Y.Z`);
    }
    list = obj.cniVersions as string[];
  }
  if (v === '' && !list?.length) throw new CniError(CniCode.InvalidNetworkConfig, `missing cniVersion${where(file)}`);
  return { cniVersion: (v as string) || '', cniVersions: list };
}

/** Parses a .conflist. */
export function parseConfList(bytes: Buffer, file?: string): NetworkConfigList {
  const obj = parseJsonObject(bytes, file);
  const name = checkNetName(obj.name, file);
  const { cniVersion, cniVersions } = checkVersions(obj, file);
  if (!Array.isArray(obj.plugins) || obj.plugins.length === 0) {
    throw new CniError(CniCode.InvalidNetworkConfig, `network "${name}"${where(file)} has no "plugins" list`);
  }
  return {
    name, cniVersion, cniVersions,
    disableCheck: bool(obj.disableCheck, 'disableCheck', file),
    disableGC: bool(obj.disableGC, 'disableGC', file),
    loadOnlyInlinedPlugins: bool(obj.loadOnlyInlinedPlugins, 'loadOnlyInlinedPlugins', file),
    plugins: obj.plugins.map((p, i) => checkPlugin(p, i, file)),
    bytes, file, raw: obj,
  };
}

/** Parses a deprecated single-plugin .conf and lifts it to a list, as libcni does. */
export function parseSingleConf(bytes: Buffer, file?: string): NetworkConfigList {
  const obj = parseJsonObject(bytes, file);
  if (Array.isArray(obj.plugins)) return parseConfList(bytes, file);
  const name = checkNetName(obj.name, file);
  const { cniVersion, cniVersions } = checkVersions(obj, file);
  const plugin = checkPlugin(obj, 0, file);
  const list = { cniVersion, name, plugins: [plugin] };
  return {
    name, cniVersion, cniVersions, disableCheck: false, disableGC: false, loadOnlyInlinedPlugins: false,
    plugins: [plugin], bytes: Buffer.from(JSON.stringify(list)), file, raw: list,
  };
}

/** Parses "K1=V1;K2=V2" (CNI_ARGS). Throws CniError(4) for a pair without "=". */
export function parseCniArgs(text: string | undefined): [string, string][] {
  if (!text) return [];
  const out: [string, string][] = [];
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(CniCode.InvalidEnvironment, `invalid CNI_ARGS pair "${pair}": expected KEY=VALUE`);
    out.push([pair.slice(0, eq), pair.slice(eq + 1)]);
  }
  return out;
}

/** Formats pairs as CNI_ARGS. */
export function formatCniArgs(args: [string, string][]): string {
  return args.map(([k, v]) => `${k}=${v}`).join(';');
}
