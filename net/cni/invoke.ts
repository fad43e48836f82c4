/**
 * The runtime side of one CNI call (libcni's pkg/invoke): find the plugin on
 * CNI_PATH, then either exec it with the CNI_* environment and the config on
 * stdin, or, when a resolver says the binary is one of burrow's own, run it
 * in-process through the same skel dispatch (the fast path). Failures become
 * a CniError that names the plugin, with the plugin's own code and message.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { dispatch, type CniCommand, type CniPlugin, type DispatchOutput } from './skel.js';
import { CniCode, CniError, type CniErrorJson } from './types.js';

export interface InvokeRequest {
  command: CniCommand;
  containerId?: string;
  netns?: string;
  ifname?: string;
  /** CNI_ARGS text. */
  args?: string;
  /** CNI_PATH directories, in order. */
  path: string[];
  stdin: Buffer;
  /** Base environment; defaults to process.env, as libcni passes the runtime's whole environment. */
  env?: NodeJS.ProcessEnv;
}

/** Says which binaries are burrow's own plugins; returns the plugin to run in-process, if any. */
export type InProcessResolver = (type: string, binary: string) => CniPlugin | undefined;

export interface InvokeOptions {
  inProcess?: InProcessResolver;
  /** Kill an exec'd plugin that runs longer than this. Default 5 minutes. */
  timeoutMs?: number;
}

/** Finds an executable named `type` in the CNI_PATH directories, or null. */
export function findPlugin(type: string, dirs: string[]): string | null {
  for (const dir of dirs) {
    const file = path.join(dir, type);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here; keep looking
    }
  }
  return null;
}

/** The CNI_* variables for a request, on top of the base environment. */
export function cniEnv(req: InvokeRequest): Record<string, string> {
  const base = req.env ?? process.env;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  Object.assign(env, {
    CNI_COMMAND: req.command,
    CNI_CONTAINERID: req.containerId ?? '',
    CNI_NETNS: req.netns ?? '',
    CNI_IFNAME: req.ifname ?? '',
    CNI_ARGS: req.args ?? '',
    CNI_PATH: req.path.join(':'),
  });
  return env;
}

function execOnce(binary: string, env: Record<string, string>, stdin: Buffer, timeoutMs: number): Promise<DispatchOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [], { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.stdin.on('error', () => {
      // A plugin that exits without reading stdin (EPIPE) is judged by its exit code.
    });
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({ exitCode: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: signal ? `${stderr}killed by ${signal}` : stderr });
    });
    child.stdin.end(stdin);
  });
}

/** Execs a plugin binary, retrying "text file busy" as libcni does (5 tries). */
export async function execPlugin(binary: string, env: Record<string, string>, stdin: Buffer, timeoutMs = 300_000): Promise<DispatchOutput> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await execOnce(binary, env, stdin, timeoutMs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ETXTBSY' && attempt < 4) {
        await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
        continue;
      }
      throw new CniError(CniCode.IoFailure, `cannot execute plugin "${binary}": ${(err as Error).message}`, undefined, { plugin: path.basename(binary), cause: err });
    }
  }
}

/** Turns a failed call's output into a CniError naming the plugin. */
function failure(type: string, command: string, out: DispatchOutput): CniError {
  let parsed: Partial<CniErrorJson> | undefined;
  try {
    parsed = out.stdout.trim() ? (JSON.parse(out.stdout) as CniErrorJson) : undefined;
  } catch {
    parsed = undefined;
  }
  if (parsed && typeof parsed.code === 'number' && typeof parsed.msg === 'string') {
    return new CniError(parsed.code, `plugin "${type}" failed (${command}): ${parsed.msg}`, parsed.details, { plugin: type, pluginMsg: parsed.msg });
  }
  const text = (out.stderr || out.stdout).trim() || `exit status ${out.exitCode}`;
  return new CniError(CniCode.Internal, `plugin "${type}" failed (${command}): netplugin failed: "${text}"`, undefined, { plugin: type });
}

/**
 * Runs one CNI call of plugin `type` and returns its parsed stdout (the
 * result for ADD/VERSION) or undefined when it printed nothing.
 */
export async function invokePlugin(type: string, req: InvokeRequest, opts: InvokeOptions = {}): Promise<unknown> {
  const binary = findPlugin(type, req.path);
  if (!binary) {
    throw new CniError(CniCode.InvalidNetworkConfig, `failed to find plugin "${type}" in path [${req.path.join(' ')}]`, undefined, { plugin: type });
  }
  const env = cniEnv(req);
  const own = opts.inProcess?.(type, binary);
  const out = own ? await dispatch(own, env, req.stdin) : await execPlugin(binary, env, req.stdin, opts.timeoutMs);
  if (out.exitCode !== 0) throw failure(type, req.command, out);
  const text = out.stdout.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, `plugin "${type}" printed invalid JSON (${req.command}): ${(err as Error).message}`, text.slice(0, 200), { plugin: type });
  }
}
