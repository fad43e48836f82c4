/**
 * `--user` as podman resolves it: NAME or UID, optionally :GROUP or :GID, looked up in the
 * container's own /etc/passwd and /etc/group (never the host's), with the supplementary groups
 * that list the user and the home directory for HOME. Pure code over the files' text.
 */
import { ContainerError } from './containers.js';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups (the primary one excluded). */
  groups: number[];
  home: string;
  /** The user's name, where the passwd file has one. */
  name?: string;
}

const ID = /^\d+$/;
const MAX_ID = 0xfffffffe;

/** name:x:uid:gid:gecos:home:shell lines; malformed ones are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').flatMap((l) => {
    const f = l.split(':');
    if (f.length < 7 || !f[0] || !ID.test(f[2]) || !ID.test(f[3])) return [];
    return [{ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' }];
  });
}

/** name:x:gid:member,member lines; malformed ones are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  return text.split('\n').flatMap((l) => {
    const f = l.split(':');
    if (f.length < 4 || !f[0] || !ID.test(f[2])) return [];
    return [{ name: f[0], gid: Number(f[2]), members: f[3].split(',').map((m) => m.trim()).filter(Boolean) }];
  });
}

function id(text: string, what: string): number {
  const n = Number(text);
  if (!ID.test(text) || n > MAX_ID) throw new ContainerError(`invalid ${what} "${text}" in --user: a name or a number up to ${MAX_ID}`);
  return n;
}

/**
 * Resolves a --user value against the container's files (either may be absent: "" text). A
 * number needs no entry (gid 0 unless given, HOME /, as runc does); a name must have one.
 */
export function resolveUser(spec: string, passwdText: string, groupText: string): ResolvedUser {
  const [u, g, ...extra] = spec.split(':');
  if (!u || extra.length || g === '') throw new ContainerError(`invalid --user "${spec}": expected USER[:GROUP] (names or numbers)`);
  const users = parsePasswd(passwdText);
  const groups = parseGroup(groupText);
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (ID.test(u)) {
    uid = id(u, 'uid');
    entry = users.find((e) => e.uid === uid);
  } else {
    entry = users.find((e) => e.name === u);
    if (!entry) throw new ContainerError(`unable to find user ${u}: no matching entries in the container's /etc/passwd`);
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  if (g !== undefined) {
    if (ID.test(g)) gid = id(g, 'gid');
    else {
      const ge = groups.find((x) => x.name === g);
      if (!ge) throw new ContainerError(`unable to find group ${g}: no matching entries in the container's /etc/group`);
      gid = ge.gid;
    }
  }
  // Supplementary groups come with a named user (and with a uid that has an entry) unless a
  // group was given, as runc sets them up.
  const supplementary = entry && g === undefined ? groups.filter((x) => x.members.includes(entry!.name) && x.gid !== gid).map((x) => x.gid) : [];
  return { uid, gid, groups: [...new Set(supplementary)], home: entry?.home ?? '/', ...(entry ? { name: entry.name } : {}) };
}

/** The helper's -u argument: UID:GID[:G,G...]. */
export function helperUserArg(u: ResolvedUser): string {
  return `${u.uid}:${u.gid}${u.groups.length ? `:${u.groups.join(',')}` : ''}`;
}
