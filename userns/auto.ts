/**
 * --userns auto: how big the namespace must be (the highest id a rootfs uses), and which slice of
 * the subordinate ids it gets without overlapping other running burrow containers.
 *
 * Allocations live in one JSON file under the state dir, read and rewritten under an exclusive
 * flock. Each entry names the process that holds it (pid + its start time from /proc/PID/stat,
 * so a recycled pid does not keep a slice alive); entries whose holder is gone are dropped on the
 * next allocation, so a kill -9 never leaks ids for longer than that.
 */
import fs from 'node:fs';
import path from 'node:path';
import { constants, flockSync } from '../native/mod.js';
import { allocateAuto, autoSize, UsernsError, type IdMapping } from './mapping.js';
import { processStartTime } from '../native/system.js';

/** ids that never size a namespace: nobody/nogroup and the 32-bit "no id" value. */
const IGNORED = new Set([65534, 4294967295]);

/**
 * The highest uid and gid used in `root`: file owners (not following symlinks, not leaving the
 * tree) and the entries of its /etc/passwd and /etc/group. Unreadable directories are skipped and
 * counted; a missing root is an error.
 */
export function highestIds(root: string): { uid: number; gid: number; files: number; unreadable: number } {
  const top = fs.lstatSync(root, { throwIfNoEntry: false });
  if (!top?.isDirectory()) throw new UsernsError(`rootfs "${root}" is not a directory`);
  let uid = 0;
  let gid = 0;
  let files = 0;
  let unreadable = 0;
  const note = (u: number, g: number) => {
    if (!IGNORED.has(u)) uid = Math.max(uid, u);
    if (!IGNORED.has(g)) gid = Math.max(gid, g);
  };
  const stack = [root];
  while (stack.length) {
    const dir = stack.pop()!;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      unreadable++;
      continue;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      files++;
      note(st.uid, st.gid);
      if (st.isDirectory() && st.dev === top.dev) stack.push(p);
    }
  }
  note(top.uid, top.gid);
  for (const [file, col] of [['passwd', 'uid'], ['group', 'gid']] as const) {
    let text = '';
    try {
      text = fs.readFileSync(path.join(root, 'etc', file), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const f = line.split(':');
      const id = Number(f[2]);
      if (f.length < 4 || !/^\d+$/.test(f[2]) || IGNORED.has(id)) continue;
      if (col === 'uid') {
        uid = Math.max(uid, id);
        if (/^\d+$/.test(f[3]) && !IGNORED.has(Number(f[3]))) gid = Math.max(gid, Number(f[3]));
      } else gid = Math.max(gid, id);
    }
  }
  return { uid, gid, files, unreadable };
}

export interface AutoEntry {
  uid: IdMapping;
  gid: IdMapping;
  pid: number;
  startTime: string;
}

export class AutoRegistry {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'userns-auto.json');
  }

  private locked<T>(fn: (entries: AutoEntry[]) => { entries: AutoEntry[]; result: T }): T {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const fd = fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      flockSync(fd, constants().LOCK_EX);
      let entries: AutoEntry[] = [];
      const text = fs.readFileSync(fd, 'utf8');
      if (text.trim()) {
        try {
          const parsed: unknown = JSON.parse(text);
          if (Array.isArray(parsed)) entries = parsed.filter(isEntry);
        } catch {
          // A torn or hand-edited file: start over rather than refuse every container.
        }
      }
      const live = entries.filter((e) => processStartTime(e.pid) === e.startTime);
      const { entries: next, result } = fn(live);
      const body = JSON.stringify(next, null, 1);
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, body, 0);
      return result;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Live allocations (stale ones are pruned on the way). */
  list(): AutoEntry[] {
    return this.locked((entries) => ({ entries, result: entries }));
  }

  /**
   * Reserves `size` uids and gids (first fit among intermediate ids 1..total of each kind) for the
   * process `pid`; the reservation lasts while that process lives or until {@link release}.
   */
  allocate(size: number, totals: { uid: number; gid: number }, pid = process.pid): AutoEntry {
    const startTime = processStartTime(pid);
    if (!startTime) throw new UsernsError(`process ${pid} is not running`);
    return this.locked((entries) => {
      const entry: AutoEntry = {
        uid: allocateAuto(size, totals.uid, entries.map((e) => e.uid)),
        gid: allocateAuto(size, totals.gid, entries.map((e) => e.gid)),
        pid,
        startTime,
      };
      return { entries: [...entries, entry], result: entry };
    });
  }

  release(entry: AutoEntry): void {
    this.locked((entries) => ({ entries: entries.filter((e) => !(e.pid === entry.pid && e.uid.hostId === entry.uid.hostId && e.gid.hostId === entry.gid.hostId)), result: undefined }));
  }
}

function isEntry(v: unknown): v is AutoEntry {
  const e = v as AutoEntry;
  const m = (x: IdMapping) => !!x && Number.isInteger(x.containerId) && Number.isInteger(x.hostId) && Number.isInteger(x.size);
  return !!e && typeof e === 'object' && Number.isInteger(e.pid) && typeof e.startTime === 'string' && m(e.uid) && m(e.gid);
}

/** The size an auto namespace needs for `rootfs` (or the minimum without one). */
export function autoSizeFor(mode: { size?: number }, rootfs?: string): number {
  if (mode.size !== undefined || !rootfs) return autoSize(mode, 0);
  const ids = highestIds(rootfs);
  return autoSize(mode, Math.max(ids.uid, ids.gid));
}
