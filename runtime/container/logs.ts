/**
 * `burrow logs`: a container's k8s-file log as podman prints it: stdout lines to stdout, stderr
 * lines to stderr, -t with each line's time, --tail N, --since/--until, and -f following the file
 * until the container has exited (and its last lines are out).
 */
import fs from 'node:fs';
import path from 'node:path';
import { ContainerError, ContainerStore, type ContainerRecord } from './containers.js';
import { displayTimestamp, joinLines, LogTail, parseLog, type LogLine, type LogRecord } from './k8slog.js';

export interface LogOptions {
  follow: boolean;
  timestamps: boolean;
  /** -1: every line */
  tail: number;
  since?: string;
  until?: string;
}

/** --since/--until: RFC 3339 (or a date), a Unix time, or a duration back from now (10m, 1h30m, 45s). */
export function parseSince(v: string, now = Date.now()): number {
  const dur = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(v);
  if (dur && v) return now - ((Number(dur[1] ?? 0) * 3600 + Number(dur[2] ?? 0) * 60 + Number(dur[3] ?? 0)) * 1000);
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new ContainerError(`invalid time "${v}": RFC 3339 (2026-12-02T03:00:00Z), a Unix time, or a duration (10m)`);
  return t;
}

function write(l: LogLine, timestamps: boolean): void {
  const sink = l.stream === 'stdout' ? process.stdout : process.stderr;
  sink.write(timestamps ? Buffer.concat([Buffer.from(`${displayTimestamp(l.time)} `), l.text]) : l.text);
}

function inWindow(time: string, since: number | null, until: number | null): boolean {
  const t = Date.parse(time);
  return (since === null || t >= since) && (until === null || t <= until);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function printLogs(s: ContainerStore, r: ContainerRecord, o: LogOptions): Promise<void> {
  const file = path.join(s.pathOf(r.id), 'ctr.log');
  if (!fs.existsSync(file)) {
    if (r.infra) throw new ContainerError(`container "${r.name}" is a pod's infra container: it has no output`);
    throw new ContainerError(`container "${r.name}" has no log`);
  }
  const since = o.since ? parseSince(o.since) : null;
  const until = o.until ? parseSince(o.until) : null;
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const data = Buffer.alloc(size);
    fs.readSync(fd, data, 0, size, 0);
    // a record cut by the writer is left for -f to complete
    const last = data.lastIndexOf(0x0a);
    let lines = joinLines(parseLog(data.subarray(0, last + 1)).filter((x) => inWindow(x.time, since, until)));
    if (o.tail >= 0) lines = o.tail === 0 ? [] : lines.slice(-o.tail);
    for (const l of lines) write(l, o.timestamps);
    if (!o.follow) return;
    let offset = last + 1;
    const tail = new LogTail();
    const pending: LogRecord[] = [];
    for (;;) {
      const now = fs.fstatSync(fd).size;
      if (now > offset) {
        const chunk = Buffer.alloc(now - offset);
        fs.readSync(fd, chunk, 0, chunk.length, offset);
        offset = now;
        // full lines print as they complete; a part waits for the rest of its line
        pending.push(...tail.push(chunk).filter((x) => inWindow(x.time, since, until)));
        let done = pending.length - 1;
        while (done >= 0 && !pending[done].full) done--;
        if (done >= 0) for (const l of joinLines(pending.splice(0, done + 1))) write(l, o.timestamps);
        continue;
      }
      const rec = s.list().find((x) => x.id === r.id);
      if (!rec || rec.state === 'exited' || !ContainerStore.alive(rec)) {
        for (const l of joinLines(pending.splice(0))) write(l, o.timestamps);
        return;
      }
      await sleep(100);
    }
  } finally {
    fs.closeSync(fd);
  }
}
