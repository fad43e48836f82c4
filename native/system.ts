/**
 * Facts about the host system that every layer needs, kept at the bottom so each layer can import
 * them: where a system tool is installed, and when a process started (with its pid, the identity
 * of a process that survives pid reuse).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BurrowError } from './errors.js';

/**
 * System directories tools are looked up in. Deliberately not $PATH: under `npm run` (and in many
 * runtimes' environments) PATH starts with node_modules/.bin, where an unrelated package can
 * install a program called "nft" (ava's dependency @vercel/nft does).
 */
export const SYSTEM_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

/** The absolute path of a system tool, or null when it is not installed. */
export function toolPath(cmd: string): string | null {
  for (const d of SYSTEM_DIRS) {
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Whether `pid` is still the process that started at `startTime` and has not exited (a zombie has). */
export function processLive(pid: number, startTime: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] === startTime && fields[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Field 22 of /proc/PID/stat (start time in clock ticks), or null when the process is gone: a
 * zombie counts as gone (its fds, a netns among them, are closed; only its parent's wait is left).
 */
export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return null;
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * Starts `cmd` detached (its own session, output appended to `logFile`) and resolves once it
 * writes on fd 3, naming it by pid and start time; one that exits first, or is silent for 20 s,
 * is killed and `what` is named in the error.
 */
export async function spawnReady(cmd: string, args: string[], logFile: string, what: string): Promise<{ pid: number; startTime: string }> {
  const { spawn } = await import('node:child_process');
  const log = fs.openSync(logFile, 'a', 0o600);
  const from = fs.fstatSync(log).size;
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log, 'pipe'] });
  fs.closeSync(log);
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 20_000);
    (child.stdio[3] as NodeJS.ReadableStream).once('data', () => {
      clearTimeout(timer);
      resolve(true);
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once('error', () => resolve(false));
  });
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  const startTime = child.pid ? processStartTime(child.pid) : null;
  if (!ready || !startTime) {
    child.kill('SIGKILL');
    // what it said before it went names the cause (no /dev/net/tun, a port in use)
    let said = '';
    try {
      said = fs.readFileSync(logFile).subarray(from).toString().trim().split('\n').slice(-3).join('; ').replace(/^Error: /, '');
    } catch {
      // no log
    }
    throw new BurrowError('EIO', `${what} did not start${said ? `: ${said}` : ''} (see ${logFile})`);
  }
  child.unref();
  return { pid: child.pid!, startTime };
}

/** Whether something answers on the unix socket `p` (a service's: the DHCP daemon's, `cni serve`'s). */
export function answers(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
