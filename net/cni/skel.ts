/**
 * The plugin side of the CNI protocol (the equivalent of libcni's pkg/skel).
 *
 * `dispatch` turns an environment and stdin into a call on a CniPlugin and
 * back into stdout, stderr and an exit code. The CNI executables in
 * plugins/bin and the runtime's in-process fast path both go through it, so
 * a plugin sees exactly the same request either way. Validation follows skel:
 * required variables per command (code 4), stdin JSON (6), the config's
 * cniVersion against the plugin's list (1), CHECK from 0.4.0 and GC/STATUS
 * from 1.1.0 (1); anything a plugin throws that is not a CniError is 999.
 */
import { checkContainerId, checkIfname, parseCniArgs } from './config.js';
import { CniCode, CniError, type Attachment, type Result } from './types.js';
import { compareVersions, fromCurrent, toCurrent } from './version.js';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';

/** What a plugin handler receives. The config is the parsed stdin, unknown keys included. */
export interface PluginRequest {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: [string, string][];
  path: string[];
  cniVersion: string;
  config: Record<string, unknown>;
  /** prevResult in the 1.1.0 shape, when the config carried one. */
  prevResult?: Result;
  /** GC only: cni.dev/valid-attachments. */
  validAttachments?: Attachment[];
  stdin: Buffer;
  /** The environment the call came with (the process's, or the runtime's for an in-process call). */
  env: Record<string, string | undefined>;
}

/** A CNI plugin implemented in TypeScript. Results are in the 1.1.0 shape; skel converts them. */
export interface CniPlugin {
  /** The binary name ("bridge"). */
  readonly name: string;
  readonly supportedVersions: readonly string[];
  add(req: PluginRequest): Promise<Result>;
  del(req: PluginRequest): Promise<void>;
  check(req: PluginRequest): Promise<void>;
  status?(req: PluginRequest): Promise<void>;
  gc?(req: PluginRequest): Promise<void>;
}

export interface DispatchOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const REQUIRED: Record<Exclude<CniCommand, 'VERSION'>, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  STATUS: ['CNI_PATH'],
  GC: ['CNI_PATH'],
};

const MIN_VERSION: Partial<Record<CniCommand, string>> = { CHECK: '0.4.0', STATUS: '1.1.0', GC: '1.1.0' };

function parseStdin(stdin: Buffer): Record<string, unknown> {
  let obj: unknown;
  try {
    obj = JSON.parse(stdin.toString('utf8'));
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, `error unmarshall network config: ${(err as Error).message}`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new CniError(CniCode.DecodingFailure, 'error unmarshall network config: expected a JSON object');
  return obj as Record<string, unknown>;
}

function parseAttachments(v: unknown): Attachment[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((a) => a && typeof a.containerID === 'string' && typeof a.ifname === 'string')) {
    throw new CniError(CniCode.InvalidNetworkConfig, 'invalid "cni.dev/valid-attachments": expected [{"containerID": "...", "ifname": "..."}]');
  }
  return v as Attachment[];
}

/** Builds the request, validating as skel does. Throws CniError. */
export function buildRequest(plugin: CniPlugin, command: CniCommand, env: Record<string, string | undefined>, stdin: Buffer): PluginRequest {
  const req = REQUIRED[command as Exclude<CniCommand, 'VERSION'>];
  if (!req) throw new CniError(CniCode.InvalidEnvironment, `unknown CNI_COMMAND: ${command}`);
  const missing = req.filter((k) => env[k] === undefined || (env[k] === '' && k !== 'CNI_PATH'));
  if (missing.length) throw new CniError(CniCode.InvalidEnvironment, `required env variables [${missing.join(',')}] missing`);
  if (command === 'ADD' || command === 'DEL' || command === 'CHECK') {
    checkContainerId(env.CNI_CONTAINERID);
    checkIfname(env.CNI_IFNAME);
  }
  const config = parseStdin(stdin);
  const cniVersion = typeof config.cniVersion === 'string' && config.cniVersion ? config.cniVersion : '0.1.0';
  if (!plugin.supportedVersions.includes(cniVersion)) {
    throw new CniError(CniCode.IncompatibleVersion, 'incompatible CNI versions',
      `config is "${cniVersion}", plugin supports [${plugin.supportedVersions.map((v) => `"${v}"`).join(' ')}]`);
  }
  const min = MIN_VERSION[command];
  if (min && compareVersions(cniVersion, min) < 0) {
    throw new CniError(CniCode.IncompatibleVersion, `config version does not allow ${command}`, `config is "${cniVersion}", ${command} needs at least "${min}"`);
  }
  const prev = config.prevResult;
  return {
    command,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname: env.CNI_IFNAME ?? '',
    args: parseCniArgs(env.CNI_ARGS),
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
    cniVersion,
    config,
    prevResult: prev && typeof prev === 'object' ? toCurrent(prev, cniVersion) : undefined,
    validAttachments: command === 'GC' ? parseAttachments(config['cni.dev/valid-attachments'] ?? config['cni.dev/attachments']) : undefined,
    stdin,
    env,
  };
}

function versionOutput(plugin: CniPlugin, stdin: Buffer): string {
  let cniVersion = '1.1.0';
  try {
    const v = (JSON.parse(stdin.toString('utf8') || '{}') as { cniVersion?: unknown }).cniVersion;
    if (typeof v === 'string' && v) cniVersion = v;
  } catch {
    // VERSION ignores unparsable stdin, as skel does.
  }
  return JSON.stringify({ cniVersion, supportedVersions: plugin.supportedVersions });
}

/** Runs one CNI call on `plugin`. Never throws: failures become the spec's error JSON. */
export async function dispatch(plugin: CniPlugin, env: Record<string, string | undefined>, stdin: Buffer, about = ''): Promise<DispatchOutput> {
  const command = env.CNI_COMMAND as CniCommand | undefined;
  if (!command) {
    return { exitCode: 0, stdout: '', stderr: `${about || `CNI ${plugin.name} plugin`}\nCNI protocol versions supported: ${plugin.supportedVersions.join(', ')}\n` };
  }
  if (command === 'VERSION') return { exitCode: 0, stdout: versionOutput(plugin, stdin), stderr: '' };
  let cniVersion: string | undefined;
  try {
    const req = buildRequest(plugin, command, env, stdin);
    cniVersion = req.cniVersion;
    switch (command) {
      case 'ADD': {
        const result = await plugin.add(req);
        return { exitCode: 0, stdout: JSON.stringify(fromCurrent(result, req.cniVersion)), stderr: '' };
      }
      case 'DEL':
        await plugin.del(req);
        break;
      case 'CHECK':
        await plugin.check(req);
        break;
      case 'STATUS':
        await plugin.status?.(req);
        break;
      case 'GC':
        await plugin.gc?.(req);
        break;
    }
    return { exitCode: 0, stdout: '', stderr: '' };
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CniCode.Internal, (err as Error)?.message ?? String(err));
    return { exitCode: 1, stdout: JSON.stringify(e.toJSON(cniVersion), null, 1), stderr: '' };
  }
}
