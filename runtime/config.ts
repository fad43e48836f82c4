/**
 * burrow.toml: defaults for the CNI config dir, plugin path, state and cache
 * dirs, firewall backend and subnet pools. Root reads /etc/burrow/burrow.toml,
 * other users ~/.config/burrow/burrow.toml; --config overrides both. A missing
 * file means built-in defaults; unknown keys and wrong types are errors that
 * name the file and key, so a typo never silently falls back to a default.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { BurrowError, hasCode } from '../native/errors.js';
import { parseCidr } from '../net/ip/addr.js';

export class ConfigError extends BurrowError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ECONFIG', message, options);
  }
}

export interface SubnetPool {
  base: string;
  size: number;
}

export interface BurrowConfig {
  /** Where network conflists live (shared with podman/containerd/kubelet when rootful). */
  cniConfigDir: string;
  /** CNI_PATH, searched in order. */
  cniPath: string[];
  /** libcni's cache dir (results/). */
  cniCacheDir: string;
  /** burrow's own state (containers, pods): runtime state, gone with a reboot like /run. */
  stateDir: string;
  /** Named volumes: persistent data (podman's engine.volume_path). */
  volumePath: string;
  /** host-local's dataDir in the networks burrow writes; null: the plugin's default, /var/lib/cni/networks. */
  ipamDataDir: string | null;
  /** auto | iptables | nftables | none */
  firewallBackend: 'auto' | 'iptables' | 'nftables' | 'none';
  /** "auto": burrow's own plugins run in-process when CNI_PATH resolves to them; "exec": always exec. */
  pluginMode: 'auto' | 'exec';
  defaultNetwork: string;
  defaultSubnet: string;
  defaultBridge: string;
  subnetPools: SubnetPool[];
  ipv6Pools: SubnetPool[];
  /** The file the values came from, or null for built-in defaults. */
  source: string | null;
  /** Keys the file set (section.key), so a choice made for the user can tell a default from a wish. */
  explicit: string[];
}

/** burrow's install root (the folder holding plugins/ and dist/). */
export function installRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // runtime/config.ts in source, dist/burrow.cjs when bundled: both one level down.
  return path.resolve(here, '..');
}

function rootless(): boolean {
  return process.getuid?.() !== 0;
}

/** The config file this user reads when --config is not given. */
export function defaultConfigFile(): string {
  if (!rootless()) return '/etc/burrow/burrow.toml';
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'burrow', 'burrow.toml');
}

/** Built-in defaults: like podman's, but burrow's own plugins first on the path. */
export function defaultConfig(): BurrowConfig {
  const runtimeDir = process.env.XDG_RUNTIME_DIR || path.join(os.tmpdir(), `burrow-${process.getuid?.() ?? 0}`);
  const user = rootless();
  const configHome = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  const dataHome = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return {
    cniConfigDir: user ? path.join(configHome, 'cni', 'net.d') : '/etc/cni/net.d',
    cniPath: [path.join(installRoot(), 'plugins', 'bin'), '/usr/local/libexec/cni', '/usr/libexec/cni', '/usr/local/lib/cni', '/usr/lib/cni', '/opt/cni/bin'],
    cniCacheDir: user ? path.join(dataHome, 'burrow', 'cni') : '/var/lib/cni',
    stateDir: user ? path.join(runtimeDir, 'burrow') : '/run/burrow',
    volumePath: user ? path.join(dataHome, 'burrow', 'volumes') : '/var/lib/burrow/volumes',
    ipamDataDir: null,
    firewallBackend: 'auto',
    pluginMode: 'auto',
    defaultNetwork: 'burrow',
    defaultSubnet: '10.88.0.0/16',
    defaultBridge: 'burrow0',
    subnetPools: [{ base: '10.89.0.0/16', size: 24 }],
    ipv6Pools: [{ base: 'fd89::/16', size: 64 }],
    source: null,
    explicit: [],
  };
}

type Field = { key: keyof BurrowConfig; check: (v: unknown) => unknown };

const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
const strList = (v: unknown) => (Array.isArray(v) && v.every((x) => typeof x === 'string' && x) ? v : undefined);
const oneOf = (...allowed: string[]) => (v: unknown) => (typeof v === 'string' && allowed.includes(v) ? v : undefined);
const cidr = (v: unknown) => {
  if (typeof v !== 'string') return undefined;
  try {
    parseCidr(v, { strict: true });
    return v;
  } catch {
    return undefined;
  }
};
const pools = (v: unknown) => {
  if (!Array.isArray(v)) return undefined;
  for (const p of v) {
    if (!p || typeof p !== 'object' || !cidr((p as SubnetPool).base) || !Number.isInteger((p as SubnetPool).size)) return undefined;
    const base = parseCidr((p as SubnetPool).base);
    const size = (p as SubnetPool).size;
    if (size < base.prefixLen || size > (base.ip.family === 4 ? 30 : 126)) return undefined;
  }
  return v.map((p: SubnetPool) => ({ base: p.base, size: p.size }));
};

/** TOML key (section.key) to field, with its validator and what it expects. */
const FIELDS: Record<string, Field & { expects: string }> = {
  'network.cni_config_dir': { key: 'cniConfigDir', check: str, expects: 'a path' },
  'network.cni_path': { key: 'cniPath', check: strList, expects: 'a list of directories' },
  'network.cni_cache_dir': { key: 'cniCacheDir', check: str, expects: 'a path' },
  'network.ipam_data_dir': { key: 'ipamDataDir', check: str, expects: 'a path' },
  'network.firewall_backend': { key: 'firewallBackend', check: oneOf('auto', 'iptables', 'nftables', 'none'), expects: '"auto", "iptables", "nftables" or "none"' },
  'network.plugin_mode': { key: 'pluginMode', check: oneOf('auto', 'exec'), expects: '"auto" or "exec"' },
  'network.default_network': { key: 'defaultNetwork', check: str, expects: 'a network name' },
  'network.default_subnet': { key: 'defaultSubnet', check: cidr, expects: 'a CIDR network such as "10.88.0.0/16"' },
  'network.default_bridge': { key: 'defaultBridge', check: str, expects: 'an interface name' },
  'network.default_subnet_pools': { key: 'subnetPools', check: pools, expects: 'a list of {base = "CIDR", size = N}' },
  'network.default_ipv6_pools': { key: 'ipv6Pools', check: pools, expects: 'a list of {base = "CIDR", size = N}' },
  'engine.state_dir': { key: 'stateDir', check: str, expects: 'a path' },
  'engine.volume_path': { key: 'volumePath', check: str, expects: 'a path' },
};

/** Applies a parsed TOML document over the defaults. Throws ConfigError naming the file and key. */
export function applyToml(doc: Record<string, unknown>, file: string, base = defaultConfig()): BurrowConfig {
  const out: BurrowConfig = { ...base, source: file, explicit: [] };
  for (const [section, body] of Object.entries(doc)) {
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      throw new ConfigError(`${file}: unknown top-level key "${section}" (expected the [network] or [engine] table)`);
    }
    for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
      const f = FIELDS[`${section}.${k}`];
      if (!f) throw new ConfigError(`${file}: unknown key "${section}.${k}" (known: ${Object.keys(FIELDS).join(', ')})`);
      const value = f.check(v);
      if (value === undefined) throw new ConfigError(`${file}: "${section}.${k}" must be ${f.expects}, got ${JSON.stringify(v)}`);
      (out as unknown as Record<string, unknown>)[f.key] = value;
      out.explicit.push(`${section}.${k}`);
    }
  }
  return out;
}

/** Loads the config: `file` if given (must exist), else the default file if present, else defaults. */
export function loadConfig(file?: string): BurrowConfig {
  const target = file ?? defaultConfigFile();
  let text: string;
  try {
    text = fs.readFileSync(target, 'utf8');
  } catch (err) {
    if (!file && hasCode(err, 'ENOENT')) return defaultConfig();
    throw new ConfigError(`cannot read config "${target}": ${(err as Error).message}`, { cause: err });
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${target}: invalid TOML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  return applyToml(doc, target);
}
