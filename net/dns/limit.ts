/**
 * Per-client token buckets, pure (the time is passed in): `take(key, nowMs)` is true while the
 * client is within `ratePerS` with bursts of `burst`. At most `maxClients` buckets are kept;
 * past that the oldest is forgotten (a Map keeps insertion order), so a flood of spoofed sources
 * costs bounded memory and at worst resets one honest client's bucket to full.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    readonly ratePerS: number,
    readonly burst: number,
    private readonly maxClients = 4096,
  ) {}

  take(key: string, nowMs: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxClients) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, atMs: nowMs };
      this.buckets.set(key, b);
    } else if (nowMs > b.atMs) {
      b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.atMs) * this.ratePerS) / 1000);
      b.atMs = nowMs;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  clients(): number {
    return this.buckets.size;
  }
}
