/**
 * Rate-limited debug logging of what the stack counts (drops by reason, faults, reclaims), for
 * `BURROW_DEBUG=drops` (or `all`). The first event of a reason is logged at once; later ones
 * are summed and logged at most once per interval per reason, so a flood costs a line a second.
 */
import type { Clock } from './host_sockets.js';

/** Counted events that are the normal life of flows, not drops: never logged. */
const QUIET = /^(tcp-close-done|udp-expired|icmp-unreachable-sent)$/;

/** True when BURROW_DEBUG asks for the drop log. */
export function dropLogWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.BURROW_DEBUG ?? '').split(',').some((w) => w.trim() === 'drops' || w.trim() === 'all');
}

export class DropLog {
  private readonly pending = new Map<string, { n: number; detail?: string; last: number }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly write: (line: string) => void,
    private readonly clock: Clock = () => performance.now(),
    private readonly intervalMs = 1000,
    private readonly prefix = 'burrow usernet',
  ) {}

  /** One counted event. */
  note(reason: string, detail?: string): void {
    if (QUIET.test(reason)) return;
    const now = this.clock();
    const p = this.pending.get(reason);
    if (!p) {
      this.pending.set(reason, { n: 0, last: now });
      this.line(reason, 1, detail, 0);
      return;
    }
    p.n++;
    if (detail) p.detail = detail;
    if (now - p.last >= this.intervalMs) this.emit(reason, p, now);
    else this.arm();
  }

  private emit(reason: string, p: { n: number; detail?: string; last: number }, now: number): void {
    if (p.n) this.line(reason, p.n, p.detail, now - p.last);
    p.n = 0;
    p.detail = undefined;
    p.last = now;
  }

  private line(reason: string, n: number, detail: string | undefined, spanMs: number): void {
    this.write(`${this.prefix}: ${reason}${detail ? ` (${detail})` : ''}${n > 1 || spanMs ? ` x${n} in ${(spanMs / 1000).toFixed(1)} s` : ''}\n`);
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Logs every sum still pending. */
  flush(): void {
    const now = this.clock();
    for (const [reason, p] of this.pending) this.emit(reason, p, now);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flush();
  }
}
