/**
 * Helpers every burrow CNI plugin shares: CNI_ARGS with IgnoreUnknown, config
 * errors with the spec's codes, and delegation to the IPAM plugin named in the
 * config (run in-process when it is one of ours, exec'd otherwise).
 */
import { formatCniArgs } from '../net/cni/config.js';
import { invokePlugin } from '../net/cni/invoke.js';
import type { CniCommand, PluginRequest } from '../net/cni/skel.js';
import { CniCode, CniError, type Result } from '../net/cni/types.js';
import { toCurrent } from '../net/cni/version.js';
import { inProcessResolver } from './registry.js';

/** CniError(7): the network configuration is invalid. */
export function configError(msg: string, details?: string): CniError {
  return new CniError(CniCode.InvalidNetworkConfig, msg, details);
}

/**
 * CNI_ARGS as a map, accepting only `known` keys unless IgnoreUnknown is 1/true
 * (as libcni's types.LoadArgs; every real runtime sends IgnoreUnknown=1).
 */
export function loadArgs(req: PluginRequest, known: string[]): Map<string, string> {
  const out = new Map(req.args);
  const ignore = ['1', 'true'].includes((out.get('IgnoreUnknown') ?? '').toLowerCase());
  const unknown = [...out.keys()].filter((k) => k !== 'IgnoreUnknown' && !known.includes(k));
  if (unknown.length && !ignore) {
    throw new CniError(CniCode.InvalidEnvironment, `ARGS: unknown args ${JSON.stringify(unknown)}`, 'add IgnoreUnknown=1 to CNI_ARGS to ignore them');
  }
  return out;
}

/** The `ipam` object of the config, or null when absent or empty. */
export function ipamType(config: Record<string, unknown>): string | null {
  const ipam = config.ipam as { type?: unknown } | undefined;
  if (!ipam || typeof ipam !== 'object') return null;
  if (ipam.type === undefined || ipam.type === '') return null;
  if (typeof ipam.type !== 'string') throw configError(`invalid ipam type ${JSON.stringify(ipam.type)}`);
  return ipam.type;
}

/** Runs the IPAM plugin for `command` with the plugin's own stdin and environment. */
export async function delegateIpam(req: PluginRequest, type: string, command: CniCommand): Promise<Result | undefined> {
  let out: unknown;
  try {
    out = await invokePlugin(type, {
      command,
    containerId: req.containerId,
    netns: req.netns,
    ifname: req.ifname,
    args: formatCniArgs(req.args),
    path: req.path,
    stdin: req.stdin,
  }, { inProcess: inProcessResolver() });
  } catch (err) {
    // Pass the delegate's own error through unchanged, as the reference plugins do.
    if (err instanceof CniError && err.pluginMsg !== undefined) throw new CniError(err.cniCode, err.pluginMsg, err.details);
    throw err;
  }
  return out === undefined ? undefined : toCurrent(out, req.cniVersion);
}

/** Reads an optional boolean option; config errors name the key. */
export function optBool(config: Record<string, unknown>, key: string, def = false): boolean {
  const v = config[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'boolean') throw configError(`invalid "${key}": expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** Reads an optional integer option within [min, max]. */
export function optInt(config: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw configError(`invalid "${key}": expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Reads an optional string option. */
export function optString(config: Record<string, unknown>, key: string): string | undefined {
  const v = config[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw configError(`invalid "${key}": expected a string, got ${JSON.stringify(v)}`);
  return v;
}
