/**
 * `burrow top`: the processes of a container with podman's default columns (USER PID PPID %CPU
 * ELAPSED TTY TIME COMMAND) and its descriptors. Pids are the container's own (the last NSpid
 * of each process in the container's pid namespace), users the container's (uids mapped back
 * through the container's uid_map and named from its /etc/passwd). The parsing is pure; the
 * caller reads /proc.
 */
import { parsePasswd, parseGroup } from './passwd.js';
import { ContainerError } from './containers.js';

export interface ProcInfo {
  hostPid: number;
  /** In the container's pid namespace. */
  pid: number;
  ppid: number;
  uid: number;
  gid: number;
  state: string;
  tty: string;
  /** Seconds since it started; CPU seconds used. */
  elapsed: number;
  cpu: number;
  args: string;
  comm: string;
  vszKiB: number;
  pgid: number;
  nice: number;
  hostUser: number;
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses). */
export function parseStat(text: string): { comm: string; fields: string[] } {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  return { comm: text.slice(open + 1, close), fields: text.slice(close + 2).trim().split(/\s+/) };
}

/** NSpid, Uid and Gid (real ids) of /proc/PID/status. */
export function parseStatus(text: string): { nspid: number[]; uid: number; gid: number } {
  const line = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(text)?.[1] ?? '';
  return { nspid: line('NSpid').split(/\s+/).filter(Boolean).map(Number), uid: Number(line('Uid').split(/\s+/)[0]), gid: Number(line('Gid').split(/\s+/)[0]) };
}

/** A host id -> the container's id through a uid_map/gid_map text ("inside outside count" lines); -1 if unmapped. */
export function mapBack(mapText: string, hostId: number): number {
  for (const l of mapText.split('\n')) {
    const [inside, outside, count] = l.trim().split(/\s+/).map(Number);
    if (count > 0 && hostId >= outside && hostId < outside + count) return inside + (hostId - outside);
  }
  return -1;
}

/** A tty number of /proc/PID/stat (tty_nr) as ps names it: pts/N, ttyN, or "?". */
export function ttyName(nr: number): string {
  if (!nr) return '?';
  const major = (nr >> 8) & 0xfff;
  const minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
  if (major >= 136 && major <= 143) return `pts/${(major - 136) * 256 + minor}`;
  if (major === 4) return minor < 64 ? `tty${minor}` : `ttyS${minor - 64}`;
  return '?';
}

/** Go's time.Duration String(): 8.957978159s, 1m30s, 2h3m4.5s, 0s, 500ms. */
export function goDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  const ns = Math.round(seconds * 1e9);
  if (ns < 1_000) return `${ns}ns`;
  if (ns < 1_000_000) return `${trim(ns / 1_000)}µs`;
  if (ns < 1_000_000_000) return `${trim(ns / 1_000_000)}ms`;
  const h = Math.floor(ns / 3.6e12);
  const m = Math.floor((ns % 3.6e12) / 6e10);
  const s = (ns % 6e10) / 1e9;
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${trim(s)}s`;
}

function trim(n: number): string {
  return n.toFixed(9).replace(/\.?0+$/, '');
}

export const DEFAULT_DESCRIPTORS = ['user', 'pid', 'ppid', 'pcpu', 'etime', 'tty', 'time', 'args'];

const HEADERS: Record<string, string> = {
  user: 'USER', pid: 'PID', ppid: 'PPID', pcpu: '%CPU', etime: 'ELAPSED', tty: 'TTY', time: 'TIME', args: 'COMMAND', comm: 'COMMAND',
  group: 'GROUP', uid: 'UID', gid: 'GID', hpid: 'HPID', huser: 'HUSER', state: 'STATE', vsz: 'VSZ', pgid: 'PGID', nice: 'NI',
};

/** podman also takes ps(1)'s AIX names for them. */
const ALIASES: Record<string, string> = { '%C': 'pcpu', '%a': 'args', '%c': 'comm', '%g': 'group', '%n': 'nice', '%p': 'pid', '%P': 'ppid', '%r': 'pgid', '%t': 'etime', '%U': 'user', '%u': 'user', '%x': 'time', '%y': 'tty', '%z': 'vsz', '%cpu': 'pcpu', '%CPU': 'pcpu' };

export function checkDescriptors(list: string[]): string[] {
  const out = (list.length ? list : DEFAULT_DESCRIPTORS).flatMap((d) => d.split(',')).filter(Boolean).map((d) => ALIASES[d] ?? d);
  for (const d of out) if (!HEADERS[d]) throw new ContainerError(`unknown descriptor: ${d} (burrow top knows ${Object.keys(HEADERS).join(', ')})`);
  return out;
}

/** The table, as podman prints it (Go's tabwriter: columns at least 12 wide, padded by 2). */
export function formatTop(procs: ProcInfo[], descriptors: string[], files: { passwd: string; group: string }): string {
  const users = parsePasswd(files.passwd);
  const groups = parseGroup(files.group);
  const name = (uid: number) => (uid < 0 ? '?' : users.find((u) => u.uid === uid)?.name ?? String(uid));
  const gname = (gid: number) => (gid < 0 ? '?' : groups.find((g) => g.gid === gid)?.name ?? String(gid));
  const cell = (p: ProcInfo, d: string): string => {
    switch (d) {
      case 'user': return name(p.uid);
      case 'uid': return String(p.uid);
      case 'group': return gname(p.gid);
      case 'gid': return String(p.gid);
      case 'pid': return String(p.pid);
      case 'ppid': return String(p.ppid);
      case 'hpid': return String(p.hostPid);
      case 'huser': return String(p.hostUser);
      case 'pcpu': return (p.elapsed > 0 ? (p.cpu / p.elapsed) * 100 : 0).toFixed(3);
      case 'etime': return goDuration(p.elapsed);
      case 'time': return goDuration(Math.floor(p.cpu));
      case 'tty': return p.tty;
      case 'args': return p.args || `[${p.comm}]`;
      case 'comm': return p.comm;
      case 'state': return p.state;
      case 'vsz': return String(p.vszKiB);
      case 'pgid': return String(p.pgid);
      case 'nice': return String(p.nice);
      default: return '';
    }
  };
  const rows = [descriptors.map((d) => HEADERS[d]), ...procs.sort((a, b) => a.pid - b.pid).map((p) => descriptors.map((d) => cell(p, d)))];
  const widths = descriptors.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(Math.max(widths[i] + 2, 12)))).join('').trimEnd()).join('\n') + '\n';
}
