/**
 * `burrow exec`: a command in a running container, as podman's exec runs one. The helper joins
 * every namespace of the container's init (user, ipc, uts, net, pid, mnt) and its root, and runs
 * the command with the container's environment, working directory, user, capabilities and
 * no_new_privs, unless -e, -w, -u or --privileged say otherwise. It works the same for every
 * network mode and pod, rootful and rootless: the namespaces are the init's, whatever made them.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { socketPair } from '../../native/mod.js';
import { helperPath, receiveConsole } from '../../userns/unshare.js';
import { capabilityMask } from './caps.js';
import { ContainerError, type ContainerRecord } from './containers.js';
import { helperUserArg, resolveUser } from './passwd.js';
import { containerEnv, parseEnvFile } from './run_spec.js';

export interface ExecOptions {
  interactive?: boolean;
  tty?: boolean;
  detach?: boolean;
  env: string[];
  envFile: string[];
  workdir?: string;
  user?: string;
  privileged?: boolean;
}

/** The exec'd command's user: --user resolved in the container's own files, else the container's. */
function execUser(r: ContainerRecord, spec: string | undefined): { arg?: string; home?: string } {
  if (!spec) return r.user ? { arg: helperUserArg({ ...r.user, home: '' }) } : {};
  const root = `/proc/${r.initPid}/root`;
  const read = (f: string) => {
    try {
      return fs.readFileSync(path.join(root, 'etc', f), 'utf8');
    } catch {
      return '';
    }
  };
  const u = resolveUser(spec, read('passwd'), read('group'));
  return { arg: helperUserArg(u), home: u.home };
}

/** Runs `cmd` in the running container `r`; resolves to its exit status (126/127 as a shell's). */
export async function execInContainer(r: ContainerRecord, cmd: string[], o: ExecOptions): Promise<number> {
  if (!cmd.length) throw new ContainerError('exec needs a command (burrow exec NAME CMD [ARGS...])');
  const user = execUser(r, o.user);
  const files = o.envFile.flatMap((f) => {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch (err) {
      throw new ContainerError(`parsing env file "${f}": ${(err as Error).message}`);
    }
    return parseEnvFile(text, f, process.env);
  });
  // the container's environment, then the exec's own (HOME follows --user unless given)
  const base = (r.env ?? []).filter((kv) => !(user.home && kv.startsWith('HOME=')));
  const env = containerEnv({ image: base, files, flags: o.env }, r.hostname ?? r.id.slice(0, 12), user.home ?? '/root', process.env);
  const caps = o.privileged ? capabilityMask(['ALL'], []) : r.capabilities ? namesToMask(r.capabilities) : capabilityMask();
  const args = [
    '-X', String(r.initPid), ...(o.detach ? ['-d'] : []), '-C', o.workdir ?? r.workdir ?? '/', '-c', caps.toString(16),
    ...(user.arg ? ['-u', user.arg] : []), ...(r.noNewPrivs ? ['-N'] : []), ...(o.tty ? ['-T', '3'] : []), '--', ...cmd,
  ];
  const pair = o.tty ? socketPair() : null;
  const stdin = o.interactive && !o.tty ? 'inherit' : 'ignore';
  const child = spawn(helperPath(), args, {
    stdio: o.detach ? ['ignore', 'pipe', 'inherit'] : [stdin, o.tty ? 'ignore' : 'inherit', 'inherit', ...(pair ? [pair[1]] : [])],
    env: Object.fromEntries(env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
  });
  if (pair) fs.closeSync(pair[1]);
  const exited = new Promise<number>((resolve) => {
    child.on('error', () => resolve(125));
    child.on('close', (code, sig) => resolve(code ?? (sig ? 128 + (({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 } as Record<string, number>)[sig] ?? 0) : 125)));
  });
  if (o.detach) {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d));
    const code = await exited;
    if (code === 0) process.stdout.write(out);
    return code;
  }
  if (!pair) {
    const { relaySignals } = await import('../../userns/unshare.js');
    const unrelay = relaySignals(child);
    const code = await exited;
    unrelay();
    return code;
  }
  const term = receiveConsole(pair[0]);
  let master: number;
  try {
    master = await term.master;
  } catch {
    return exited; // the helper failed before the terminal: its stderr said why
  }
  const { relayTerminal } = await import('./attach_client.js');
  const relay = relayTerminal(master, exited, { stdin: !!o.interactive, signal: (sig) => child.kill(sig) });
  term.ready();
  const res = await relay;
  return res.code ?? (await exited);
}

/** The mask of exactly these capabilities (the record's CAP_ names). */
function namesToMask(names: string[]): bigint {
  return names.length ? capabilityMask(names.map((n) => n.replace(/^CAP_/, '')), ['ALL']) : 0n;
}
