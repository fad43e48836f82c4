/**
 * /etc/subuid and /etc/subgid: a pure parser. Lines are `name-or-uid:start:count`; a user may have
 * several ranges; entries match by login name or numeric uid. Malformed lines are reported with
 * the file and line number (and skipped), and ranges that overlap between owners are found, since
 * an overlap is what later surfaces as newuidmap's opaque "write to uid_map failed: Invalid argument".
 */
export interface SubIdRange {
  owner: string;
  start: number;
  count: number;
  /** 1-based line in the file. */
  line: number;
}

export interface SubIdProblem {
  file: string;
  line: number;
  message: string;
}

export interface SubIdFile {
  file: string;
  ranges: SubIdRange[];
  problems: SubIdProblem[];
}

const MAX_ID = 0xffffffff; // ids are u32; 4294967295 is (uid_t)-1 and never valid

/** Parses the text of a subuid/subgid file. Never throws: bad lines become problems. */
export function parseSubIdFile(text: string, file = '/etc/subuid'): SubIdFile {
  const ranges: SubIdRange[] = [];
  const problems: SubIdProblem[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const parts = line.split(':');
    const bad = (message: string) => problems.push({ file, line: i + 1, message: `${file}:${i + 1}: ${message}: "${raw}"` });
    if (parts.length !== 3) return bad('expected NAME:START:COUNT');
    const [owner, s, c] = parts;
    if (!owner || /\s/.test(owner)) return bad('missing or invalid owner');
    if (!/^\d+$/.test(s) || !/^\d+$/.test(c)) return bad('START and COUNT must be non-negative integers');
    const start = Number(s);
    const count = Number(c);
    if (count === 0) return bad('COUNT must be at least 1');
    if (start + count > MAX_ID) return bad('range overflows the 32-bit id space');
    ranges.push({ owner, start, count, line: i + 1 });
  });
  return { file, ranges, problems };
}

/** The ranges of a user, matched by login name or numeric uid (as shadow does), in file order. */
export function rangesFor(f: SubIdFile, user: { name?: string; uid: number }): SubIdRange[] {
  return f.ranges.filter((r) => r.owner === user.name || r.owner === String(user.uid));
}

/** Pairs of ranges of different owners that share ids. */
export function findOverlaps(f: SubIdFile): [SubIdRange, SubIdRange][] {
  const sorted = [...f.ranges].sort((a, b) => a.start - b.start);
  const out: [SubIdRange, SubIdRange][] = [];
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length && sorted[j].start < sorted[i].start + sorted[i].count; j++) {
      if (sorted[i].owner !== sorted[j].owner) out.push([sorted[i], sorted[j]]);
    }
  }
  return out;
}

/** Total ids in a list of ranges. */
export function totalIds(ranges: { count: number }[]): number {
  return ranges.reduce((n, r) => n + r.count, 0);
}
