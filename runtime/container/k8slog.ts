/**
 * Container logs in podman's k8s-file format (conmon's): one record per line of output,
 * `<RFC3339 time with nanoseconds and offset> <stdout|stderr> <F|P> <text>`, F for a full line, P
 * for a part of one (output that did not end in a newline yet). `podman logs` and burrow read
 * each other's files. Pure code: the time comes in as nanoseconds since the epoch.
 */
export type LogStream = 'stdout' | 'stderr';

export interface LogRecord {
  /** The time as written (RFC 3339, nanoseconds, offset). */
  time: string;
  stream: LogStream;
  /** A full line (the text's newline was dropped) or a part of one. */
  full: boolean;
  text: Buffer;
}

const pad = (n: number | bigint, w: number) => String(n).padStart(w, '0');

/** conmon's timestamp: 2026-12-02T02:41:28.274119951+00:00 (local time; the offset in minutes east). */
export function logTimestamp(epochNs: bigint, offsetMin = -new Date(Number(epochNs / 1_000_000n)).getTimezoneOffset()): string {
  const ms = Number(epochNs / 1_000_000n) + offsetMin * 60_000;
  const d = new Date(ms);
  const ns = epochNs % 1_000_000_000n;
  const sign = offsetMin < 0 ? '-' : '+';
  const off = Math.abs(offsetMin);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(ns, 9)}${sign}${pad(Math.floor(off / 60), 2)}:${pad(off % 60, 2)}`;
}

/** Go's RFC3339Nano, as `podman logs -t` prints it: trailing zeros of the fraction dropped, UTC as Z. */
export function displayTimestamp(time: string): string {
  const m = /^(.*?)(?:\.(\d+))?([+-]\d\d:\d\d|Z)$/.exec(time);
  if (!m) return time;
  const frac = (m[2] ?? '').replace(/0+$/, '');
  return `${m[1]}${frac ? `.${frac}` : ''}${m[3] === '+00:00' ? 'Z' : m[3]}`;
}

/**
 * Turns a chunk of output into log lines: each full line is an F record, a trailing piece without
 * its newline a P record (the next chunk continues the line, as conmon writes it).
 */
export function formatChunk(stream: LogStream, chunk: Buffer, time: string): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < chunk.length) {
    const nl = chunk.indexOf(0x0a, at);
    const end = nl < 0 ? chunk.length : nl;
    parts.push(Buffer.from(`${time} ${stream} ${nl < 0 ? 'P' : 'F'} `), chunk.subarray(at, end), Buffer.from('\n'));
    at = end + 1;
  }
  return Buffer.concat(parts);
}

/** Parses a log file's text into records; lines that are not k8s-file records are skipped. */
export function parseLog(data: Buffer): LogRecord[] {
  const out: LogRecord[] = [];
  let at = 0;
  while (at < data.length) {
    let nl = data.indexOf(0x0a, at);
    if (nl < 0) nl = data.length; // a torn last line (the writer is mid-write): taken as it is
    const line = data.subarray(at, nl);
    at = nl + 1;
    const s1 = line.indexOf(0x20);
    const s2 = s1 < 0 ? -1 : line.indexOf(0x20, s1 + 1);
    const s3 = s2 < 0 ? -1 : line.indexOf(0x20, s2 + 1);
    if (s3 < 0 && !(s2 > 0 && line.length === s2 + 2)) continue;
    const stream = line.subarray(s1 + 1, s2).toString();
    const tag = line.subarray(s2 + 1, s3 < 0 ? line.length : s3).toString();
    if ((stream !== 'stdout' && stream !== 'stderr') || (tag !== 'F' && tag !== 'P')) continue;
    out.push({ time: line.subarray(0, s1).toString(), stream, full: tag === 'F', text: s3 < 0 ? Buffer.alloc(0) : line.subarray(s3 + 1) });
  }
  return out;
}

export interface LogLine {
  time: string;
  stream: LogStream;
  /** With its newline, unless the output ended without one. */
  text: Buffer;
}

/** Joins P records to their line: one entry per line of output, stamped with its first part's time. */
export function joinLines(records: LogRecord[]): LogLine[] {
  const lines: LogLine[] = [];
  const open: Partial<Record<LogStream, { time: string; parts: Buffer[] }>> = {};
  for (const r of records) {
    const cur = open[r.stream] ?? { time: r.time, parts: [] };
    cur.parts.push(r.text);
    if (r.full) {
      cur.parts.push(Buffer.from('\n'));
      lines.push({ time: cur.time, stream: r.stream, text: Buffer.concat(cur.parts) });
      delete open[r.stream];
    } else open[r.stream] = cur;
  }
  for (const s of ['stdout', 'stderr'] as const) {
    const cur = open[s];
    if (cur) lines.push({ time: cur.time, stream: s, text: Buffer.concat(cur.parts) });
  }
  return lines;
}

/** Incremental reading for `logs -f`: feed what the file grew by, get the complete records. */
export class LogTail {
  private rest: Buffer = Buffer.alloc(0);

  push(data: Buffer): LogRecord[] {
    const all = this.rest.length ? Buffer.concat([this.rest, data]) : data;
    const last = all.lastIndexOf(0x0a);
    if (last < 0) {
      this.rest = all;
      return [];
    }
    this.rest = Buffer.from(all.subarray(last + 1));
    return parseLog(all.subarray(0, last + 1));
  }
}
