/**
 * `burrow run`'s options as podman reads them, turned into what the container gets: the
 * environment (--env-file, -e, the image's), the command (--entrypoint, the image's Entrypoint
 * and Cmd), labels, extra /etc/hosts entries, and --security-opt. Pure code: files come in as
 * text, the caller's environment as an argument. Every bad value gets podman's reason.
 */
import net from 'node:net';
import { ContainerError } from './containers.js';
import type { ImageConfig } from './image.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * An --env-file: KEY=VALUE lines (the value taken literally, quotes included, as podman does),
 * a bare KEY takes the caller's value, # starts a comment line; blank lines are skipped.
 */
export function parseEnvFile(text: string, file: string, callerEnv: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/^\s+/, '');
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line.trimEnd() : line.slice(0, eq);
    if (!key || /\s/.test(key)) throw new ContainerError(`parsing env file "${file}": line ${i + 1}: variable "${key}" contains whitespaces`);
    if (eq < 0) {
      if (callerEnv[key] !== undefined) out.push(`${key}=${callerEnv[key]}`);
      continue;
    }
    out.push(line);
  }
  return out;
}

/**
 * The container's environment, later entries winning: burrow's defaults (PATH, TERM, HOSTNAME,
 * HOME, container), the image's Env, --env-file entries, then -e (a bare -e NAME passes the
 * caller's value; NAME* passes every caller variable with that prefix, as podman does).
 */
export function containerEnv(parts: { image?: string[]; files?: string[]; flags?: string[] }, hostname: string, home: string, callerEnv: NodeJS.ProcessEnv): string[] {
  const env = new Map<string, string>([['PATH', DEFAULT_PATH], ['TERM', 'xterm'], ['HOSTNAME', hostname], ['HOME', home], ['container', 'burrow']]);
  for (const kv of [...(parts.image ?? []), ...(parts.files ?? []), ...(parts.flags ?? [])]) {
    const eq = kv.indexOf('=');
    if (eq === 0) throw new ContainerError(`invalid environment variable "${kv}": the name is empty`);
    if (eq > 0) {
      env.set(kv.slice(0, eq), kv.slice(eq + 1));
      continue;
    }
    if (kv.endsWith('*')) {
      const prefix = kv.slice(0, -1);
      for (const [k, v] of Object.entries(callerEnv)) if (k.startsWith(prefix) && v !== undefined) env.set(k, v);
      continue;
    }
    if (callerEnv[kv] !== undefined) env.set(kv, callerEnv[kv]!);
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/** --entrypoint: a JSON array, or one string (the program alone, as podman takes it). */
export function parseEntrypoint(v: string): string[] {
  if (v.trim().startsWith('[')) {
    let a: unknown;
    try {
      a = JSON.parse(v);
    } catch {
      throw new ContainerError(`invalid --entrypoint ${v}: not a JSON array of strings`);
    }
    if (!Array.isArray(a) || !a.every((x) => typeof x === 'string')) throw new ContainerError(`invalid --entrypoint ${v}: not a JSON array of strings`);
    return a;
  }
  return v === '' ? [] : [v];
}

/**
 * The command: the entrypoint (--entrypoint, else the image's) followed by the arguments given,
 * else the image's Cmd. As podman and docker do, a new --entrypoint drops the image's Cmd.
 */
export function containerCommand(args: string[], entrypoint: string | undefined, image: ImageConfig): string[] {
  const ep = entrypoint !== undefined ? parseEntrypoint(entrypoint) : image.Entrypoint ?? [];
  const rest = args.length ? args : entrypoint !== undefined ? [] : image.Cmd ?? [];
  return [...ep, ...rest];
}

/** --label KEY=VALUE (a bare KEY: an empty value). */
export function parseLabels(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list) {
    const eq = l.indexOf('=');
    const k = eq < 0 ? l : l.slice(0, eq);
    if (!k) throw new ContainerError(`invalid label "${l}": the key is empty`);
    out[k] = eq < 0 ? '' : l.slice(eq + 1);
  }
  return out;
}

/** --add-host HOST:IP (IPv6 addresses as they are, or in brackets) -> "IP\tHOST" lines, as podman writes them. */
export function parseAddHosts(list: string[]): string[] {
  return list.map((h) => {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new ContainerError(`bad format for add-host: "${h}"`);
    const host = h.slice(0, colon);
    const ip = h.slice(colon + 1).replace(/^\[(.*)\]$/, '$1');
    if (!net.isIP(ip) && ip !== 'host-gateway') throw new ContainerError(`invalid IP address in add-host: "${ip}"`);
    if (!/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(host)) throw new ContainerError(`invalid hostname in add-host: "${host}"`);
    return `${ip}\t${host}`;
  });
}

export interface SecurityOptions {
  noNewPrivs: boolean;
  /** unmask=ALL: no masked or read-only /proc and /sys paths. */
  unmasked: boolean;
}

/**
 * --security-opt, the forms podman takes. burrow honours no-new-privileges and unmask=ALL; it has
 * no SELinux, AppArmor or seccomp, so label=..., apparmor=unconfined and seccomp=unconfined
 * change nothing and are accepted, while a profile to load is refused (burrow cannot apply it).
 */
export function parseSecurityOpts(list: string[]): SecurityOptions {
  const out: SecurityOptions = { noNewPrivs: false, unmasked: false };
  for (const raw of list) {
    const m = /^([a-z-]+)(?:[=:](.*))?$/.exec(raw);
    const key = m?.[1] ?? '';
    const val = m?.[2];
    switch (key) {
      case 'no-new-privileges':
        if (val !== undefined && val !== 'true' && val !== 'false') throw new ContainerError(`invalid --security-opt "${raw}": no-new-privileges takes true or false`);
        out.noNewPrivs = val !== 'false';
        break;
      case 'label':
        if (val === undefined) throw new ContainerError(`invalid --security-opt "${raw}": label needs a value (label=disable)`);
        break; // no SELinux here: nothing is labelled
      case 'apparmor':
        if (val !== 'unconfined') throw new ContainerError(`--security-opt ${raw}: burrow applies no AppArmor profiles (apparmor=unconfined is what every burrow container gets)`);
        break;
      case 'seccomp':
        if (val !== 'unconfined') throw new ContainerError(`--security-opt ${raw}: burrow applies no seccomp filter, so it cannot load a profile (seccomp=unconfined is what every burrow container gets)`);
        break;
      case 'unmask':
        if (val !== 'ALL') throw new ContainerError(`--security-opt ${raw}: burrow unmasks all paths or none (unmask=ALL)`);
        out.unmasked = true;
        break;
      case 'mask':
      case 'proc-opts':
        throw new ContainerError(`--security-opt ${raw}: ${key} is not supported by burrow`);
      default:
        throw new ContainerError(`invalid --security-opt "${raw}" (known: no-new-privileges, label=..., apparmor=unconfined, seccomp=unconfined, unmask=ALL)`);
    }
  }
  return out;
}
