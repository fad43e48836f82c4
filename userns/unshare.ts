/**
 * Running a command in a new user namespace (`burrow unshare`, like `podman unshare`).
 *
 * The maps are computed and checked first (userns/mapping.ts), then native/burrow-ns clones the
 * child and waits; this side writes the maps (newuidmap/newgidmap as an unprivileged user,
 * /proc/PID/{uid,gid}_map directly as root) and lets the child exec. Every failure names what to
 * fix, and a child that never got its maps is told to exit, so nothing is left running.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkMapping, compose, intermediateMap, mapArgs, modeMapping, unownedHostIds, UsernsError, type IdMapping, type UsernsMode,
} from './mapping.js';
import { findOverlaps, parseSubIdFile, rangesFor, totalIds, type SubIdRange } from './subid.js';

export interface UnshareOptions {
  mode: UsernsMode;
  uidmaps?: IdMapping[];
  gidmaps?: IdMapping[];
  /** Namespaces besides user: net, mnt, pid, uts, ipc. */
  namespaces?: string[];
  subuidFile?: string;
  subgidFile?: string;
}

export interface Maps {
  uid: IdMapping[];
  gid: IdMapping[];
}

const SYSTEM_DIRS = ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/local/bin'];

function findTool(name: string): string | null {
  for (const d of SYSTEM_DIRS) if (fs.existsSync(path.join(d, name))) return path.join(d, name);
  return null;
}

/** build/Release/burrow-ns of the install root. */
export function helperPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    dir = path.dirname(dir);
    const p = path.join(dir, 'build', 'Release', 'burrow-ns');
    if (fs.existsSync(p)) return p;
  }
  throw new UsernsError('native/burrow-ns is not built: run "npm ci"');
}

function readSubIds(file: string, user: { name: string; uid: number }, kind: string): SubIdRange[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new UsernsError(`cannot read ${file}: user ${user.name} needs ${kind} ranges there (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${user.name})`);
  }
  const parsed = parseSubIdFile(text, file);
  const ranges = rangesFor(parsed, user);
  // Another user's range overlapping ours would hand the same host ids to two users.
  for (const [a, b] of findOverlaps(parsed)) {
    const mine = [a, b].find((r) => ranges.includes(r));
    const other = [a, b].find((r) => !ranges.includes(r));
    if (mine && other) {
      throw new UsernsError(`${file}:${mine.line}: the ${kind} range ${mine.start}-${mine.start + mine.count - 1} of "${user.name}" overlaps ${file}:${other.line} (${other.owner}: ${other.start}-${other.start + other.count - 1}); give each user its own range`);
    }
  }
  if (!ranges.length) {
    throw new UsernsError(`no ${kind} ranges found for user "${user.name}" in ${file} (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${user.name})`);
  }
  return ranges;
}

/** The uid and gid maps for the caller, checked against the kernel's rules and the caller's ranges. */
export function computeMaps(o: UnshareOptions): Maps {
  const uid = process.getuid!();
  const gid = process.getgid!();
  if (uid === 0) {
    if (o.mode.kind === 'keep-id' || o.mode.kind === 'nomap') throw new UsernsError(`--userns ${o.mode.kind} is for rootless use; as root give --uidmap/--gidmap or use host`);
    const full = [{ containerId: 0, hostId: 0, size: 0xffffffff }];
    const maps = { uid: o.uidmaps?.length ? o.uidmaps : full, gid: o.gidmaps?.length ? o.gidmaps : o.uidmaps?.length ? o.uidmaps : full };
    for (const [k, m] of Object.entries(maps)) {
      const problems = checkMapping(m, `${k}_map`);
      if (problems.length) throw new UsernsError(problems.join('; '));
    }
    return maps;
  }
  const name = os.userInfo().username;
  // BURROW_SUBUID_FILE/BURROW_SUBGID_FILE point elsewhere (tests, or hosts that keep them apart).
  const subuid = readSubIds(o.subuidFile ?? process.env.BURROW_SUBUID_FILE ?? '/etc/subuid', { name, uid }, 'subuid');
  const subgid = readSubIds(o.subgidFile ?? process.env.BURROW_SUBGID_FILE ?? '/etc/subgid', { name, uid }, 'subgid');
  const build = (which: 'uid' | 'gid', own: number, ranges: SubIdRange[], explicit?: IdMapping[]) => {
    const inter = intermediateMap(own, ranges);
    const outer = explicit?.length ? explicit : modeMapping(o.mode, own, totalIds(ranges), which);
    const map = compose(outer, inter);
    const problems = checkMapping(map, `${which}_map`);
    if (problems.length) throw new UsernsError(problems.join('; '));
    const unowned = unownedHostIds(map, own, ranges);
    if (unowned.length) throw new UsernsError(`${which}_map needs host ids ${unowned.map((m) => `${m.hostId}-${m.hostId + m.size - 1}`).join(', ')} that user ${name} does not own`);
    return map;
  };
  return { uid: build('uid', uid, subuid, o.uidmaps), gid: build('gid', gid, subgid, o.gidmaps ?? o.uidmaps) };
}

function checkUsernsEnabled(): void {
  const read = (f: string) => {
    try {
      return fs.readFileSync(f, 'utf8').trim();
    } catch {
      return null;
    }
  };
  if (read('/proc/sys/kernel/unprivileged_userns_clone') === '0' && process.getuid!() !== 0) {
    throw new UsernsError('unprivileged user namespaces are disabled: set the sysctl kernel.unprivileged_userns_clone=1');
  }
  if (read('/proc/sys/user/max_user_namespaces') === '0') throw new UsernsError('user namespaces are disabled: raise the sysctl user.max_user_namespaces (it is 0)');
}

function writeMaps(pid: number, maps: Maps): void {
  if (process.getuid!() === 0) {
    const line = (m: IdMapping[]) => m.map((x) => `${x.containerId} ${x.hostId} ${x.size}\n`).join('');
    fs.writeFileSync(`/proc/${pid}/uid_map`, line(maps.uid));
    fs.writeFileSync(`/proc/${pid}/gid_map`, line(maps.gid));
    return;
  }
  for (const [tool, map] of [['newuidmap', maps.uid], ['newgidmap', maps.gid]] as const) {
    const file = findTool(tool);
    if (!file) throw new UsernsError(`${tool} not found: install the uidmap package (apt-get install uidmap)`);
    const st = fs.statSync(file);
    const r = spawnSync(file, [String(pid), ...mapArgs(map)], { encoding: 'utf8' });
    if (r.status !== 0) {
      const hint = (st.mode & 0o4000) === 0 ? ` (${file} is not setuid root: reinstall uidmap, or chmod u+s ${file})` : '';
      throw new UsernsError(`${tool} ${pid} ${mapArgs(map).join(' ')} failed: ${(r.stderr || '').trim() || `exit ${r.status}`}${hint}`);
    }
  }
}

/** Runs `cmd` in new namespaces with the computed maps; resolves to its exit status. */
export async function unshare(cmd: string[], o: UnshareOptions): Promise<number> {
  const maps = computeMaps(o);
  checkUsernsEnabled();
  const helper = helperPath();
  const args = o.namespaces?.length ? ['-n', o.namespaces.join(','), '--', ...cmd] : ['--', ...cmd];
  const child = spawn(helper, args, { stdio: ['inherit', 'inherit', 'inherit', 'pipe', 'pipe'] });
  const report = child.stdio[3] as NodeJS.ReadableStream;
  const control = child.stdio[4] as NodeJS.WritableStream;
  const exited = new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1))));
  const line = await new Promise<string>((resolve) => {
    let buf = '';
    report.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(buf);
    });
    report.on('end', () => resolve(buf));
  });
  const m = /^PID (\d+)/.exec(line);
  if (!m) {
    const code = await exited;
    throw new UsernsError(code === 124 ? 'cannot create a user namespace: the kernel refused (user namespaces disabled or limit reached)' : `the namespace helper failed (exit ${code})`);
  }
  try {
    writeMaps(Number(m[1]), maps);
  } catch (err) {
    control.end('NO\n'); // the child exits without running anything
    await exited;
    throw err;
  }
  control.end('GO\n');
  return exited;
}
