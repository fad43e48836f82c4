/**
 * The hand-over of a detached container to native/burrow-holder.c (see its theory of operation):
 * `run -d` starts the holder in spawn mode as the namespace helper's parent and, once the
 * container runs, sends it the fds that hold the container (namespaces, reserved host ports, the
 * console's log, pipes, attach socket and clients) and these arguments (run.ts, handOverFromCli);
 * a Node supervisor (`start`, or a network mode that needs Node) execve()s the holder with them
 * instead, keeping its pid and start time. Either way the record names the holder, and the holder
 * runs `burrow internal teardown ID CODE` when the command exits.
 *
 * BURROW_HOLDER=node keeps the Node supervisor (the fallback, and what a mode without
 * `holdable`, or a build without the holder, gets anyway).
 */
import { execve, nativeExecutable } from '../../native/mod.js';
import type { ConsoleFds } from './console.js';

export interface HolderPlan {
  /** The namespace helper's pid (the supervisor's child). */
  child: number;
  /** fds kept open until teardown has finished. */
  keep: number[];
  console: ConsoleFds | null;
  socketPath?: string;
  name: string;
  tty: boolean;
  interactive: boolean;
  /** The teardown command; the holder appends the exit code. */
  teardown: string[];
}

/** The holder's argv after its path (pure). */
export function holderArgs(p: HolderPlan): string[] {
  const c = p.console;
  const fd = (flag: string, v: number | undefined) => (v === undefined ? [] : [flag, String(v)]);
  return [
    '-p', String(p.child), ...p.keep.flatMap((k) => ['-k', String(k)]),
    ...(c ? [...fd('-l', c.log), ...fd('-o', c.stdout), ...fd('-e', c.stderr), ...fd('-i', c.stdin), ...fd('-m', c.master), ...fd('-s', c.listen), ...c.clients.flatMap((x) => ['-c', String(x)]), ...c.informed.flatMap((x) => ['-C', String(x)])] : []),
    ...(c && p.socketPath ? ['-S', p.socketPath] : []),
    '-n', p.name, ...(p.tty ? ['-t'] : []), ...(p.interactive ? ['-I'] : []),
    '--', ...p.teardown,
  ];
}

/** Whether this supervisor hands its container to the native holder: the path, or null. */
export function holderFor(): string | null {
  if (process.env.BURROW_HOLDER === 'node') return null;
  return nativeExecutable('burrow-holder');
}

/** The teardown command for container `id`: this burrow again, as the supervisor was started. */
export function teardownCommand(id: string, configFile?: string): string[] {
  return [process.execPath, '--', process.argv[1], ...(configFile ? ['--config', configFile] : []), 'internal', 'teardown', id];
}

/** execve()s the holder (never returns; throws if the exec fails, with every fd still open). */
export function execHolder(file: string, p: HolderPlan): never {
  const c = p.console;
  // stdin, stdout and stderr too: the supervisor.log, where the holder and the teardown write
  const fds = [0, 1, 2, ...p.keep, ...(c ? [c.log, c.listen, c.stdout, c.stderr, c.stdin, c.master, ...c.clients, ...c.informed] : [])].filter((x): x is number => x !== undefined);
  const env = { ...process.env };
  delete env.BURROW_SUPERVISE;
  delete env.BURROW_WAIT_ATTACH;
  return execve(file, [file, ...holderArgs(p)], env, fds);
}
