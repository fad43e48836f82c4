/** Runs firewall tools (iptables-restore, nft) with input on stdin; failures name the tool and its stderr. */
import { spawn } from 'node:child_process';
import { SYSTEM_DIRS, toolPath } from '../../native/system.js';
import { BurrowError } from '../../native/errors.js';
import { addonAvailable, runProgram } from '../../native/mod.js';

export class FirewallError extends BurrowError {
  readonly stderr: string;
  constructor(message: string, stderr: string, options?: { cause?: unknown }) {
    super('EFIREWALL', message, options);
    this.stderr = stderr;
  }
}

export interface RunOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs system tool `cmd` with `input` on stdin and resolves with its output; never rejects for a
 * non-zero exit. Through the addon's runProgram (no child_process module to load: a cold plugin
 * start is about 16 ms shorter), or child_process where the addon is not built.
 */
export async function runTool(cmd: string, args: string[], input = ''): Promise<RunOutput> {
  const file = toolPath(cmd);
  if (!file) throw new FirewallError(`cannot run ${cmd}: not installed in ${SYSTEM_DIRS.join(', ')}`, '');
  if (addonAvailable()) {
    try {
      const r = await runProgram(file, args, Buffer.from(input));
      return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
    } catch (e) {
      throw new FirewallError(`cannot run ${cmd}: ${(e as Error).message}`, '', { cause: e });
    }
  }
  return spawnTool(cmd, file, args, input);
}

function spawnTool(cmd: string, file: string, args: string[], input: string): Promise<RunOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new FirewallError(`cannot run ${cmd}: ${e.message}`, '', { cause: e })));
    child.stdin.on('error', () => {});
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(input);
  });
}

/** `nft -j <args>` as parsed JSON objects, or null when the object does not exist. */
export async function nftJson<T>(args: string[], what: string): Promise<T[] | null> {
  const r = await runTool('nft', ['-j', ...args]);
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new FirewallError(`cannot list ${what}: ${r.stderr.trim() || `nft exited ${r.code}`}`, r.stderr);
  }
  try {
    return (JSON.parse(r.stdout) as { nftables: T[] }).nftables;
  } catch (err) {
    throw new FirewallError(`cannot parse nft's listing of ${what}: ${(err as Error).message}`, r.stderr);
  }
}

/** Like runTool, but throws a FirewallError naming `action` unless the tool exits 0. */
export async function mustRun(action: string, cmd: string, args: string[], input = ''): Promise<string> {
  const r = await runTool(cmd, args, input);
  if (r.code !== 0) throw new FirewallError(`cannot ${action}: ${cmd} ${args.join(' ')} failed: ${r.stderr.trim() || `exit status ${r.code}`}`, r.stderr);
  return r.stdout;
}

/** True when system tool `cmd` is installed. */
export function onPath(cmd: string): boolean {
  return toolPath(cmd) !== null;
}

/**
 * The firewall backend for an explicit preference or "auto": iptables when its tools are
 * installed (what the reference plugins use, so either side's DEL works), else nftables; this
 * also picks nftables on nft-only hosts, where the reference's probe gets it wrong (plugins#1280).
 */
export function pickBackend(preference: string | undefined, what: string): 'iptables' | 'nftables' {
  if (preference === 'iptables' || preference === 'nftables') return preference;
  if (onPath('iptables-restore')) return 'iptables';
  if (onPath('nft')) return 'nftables';
  throw new FirewallError(`no firewall tool found for ${what}: install iptables or nftables`, '');
}
