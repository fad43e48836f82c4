/** What every CLI command shares: the loaded config, the CNI runtime, the network store. */
import fs from 'node:fs';
import { inProcessResolver } from '../plugins/registry.js';
import { CniRuntime } from './cni/runtime.js';
import { loadConfig, type BurrowConfig } from './config.js';
import { NetworkStore } from './network/networks.js';
import { BurrowError } from '../native/errors.js';

export interface Context {
  config: BurrowConfig;
  runtime: CniRuntime;
  networks: NetworkStore;
  inProcess?: ReturnType<typeof inProcessResolver>;
}

/**
 * Builds the context from --config (or the default file), or from a config already loaded, so a
 * command reads it once. burrow's plugins load only for commands that run them.
 */
export async function makeContext(from?: string | BurrowConfig, opts: { plugins?: boolean } = {}): Promise<Context> {
  const config = typeof from === 'object' ? from : loadConfig(from);
  if (opts.plugins && config.pluginMode === 'auto') await import('../plugins/all.js');
  const inProcess = config.pluginMode === 'auto' ? inProcessResolver() : undefined;
  // as podman runs plugins as root: XDG_RUNTIME_DIR empty, so dnsname keeps its records in /run
  const env = process.getuid?.() === 0 ? { ...process.env, XDG_RUNTIME_DIR: '' } : undefined;
  const runtime = new CniRuntime({ path: config.cniPath, cacheDir: config.cniCacheDir, inProcess, env });
  return { config, runtime, networks: new NetworkStore(config), inProcess };
}

/** Resolves a netns argument: a path, or a name under /run/netns. */
export function netnsPath(arg: string): string {
  return arg.includes('/') ? arg : `/run/netns/${arg}`;
}

/** Throws unless the netns exists (ADD and CHECK need it; DEL does not). */
export function requireNetns(arg: string): string {
  const p = netnsPath(arg);
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new BurrowError('ENOENT', `network namespace "${p}" does not exist (create it with "ip netns add ${arg.includes('/') ? 'NAME' : arg}")`);
  }
  if (!st.isFile() && !st.isCharacterDevice()) {
    // nsfs files stat as regular files; anything else (a directory) is a mistake
    throw new BurrowError('EINVAL', `"${p}" is not a network namespace file`);
  }
  return p;
}
