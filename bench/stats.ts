/** Small statistics for benchmarks: percentiles, summaries and ratio formatting. */

/** The p-th percentile (0-100) by linear interpolation between closest ranks. NaN for no samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (!samples.length) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo] + (s[hi] - s[lo]) * (rank - lo);
}

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

export function summarize(samples: readonly number[]): Summary {
  const n = samples.length;
  return {
    n,
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    p99: percentile(samples, 99),
    min: n ? Math.min(...samples) : NaN,
    max: n ? Math.max(...samples) : NaN,
    mean: n ? samples.reduce((a, b) => a + b, 0) / n : NaN,
  };
}

/** "0.25x" style ratio of value to anchor; "n/a" when either is missing. */
export function formatRatio(value: number, anchor: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(anchor) || anchor <= 0) return 'n/a';
  const r = value / anchor;
  return `${r < 0.1 ? r.toFixed(3) : r.toFixed(2)}x`;
}

/** Milliseconds with sensible precision. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(1)} ms`;
}

/** A plain-text table with aligned columns. */
export function renderTable(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/** Half the range relative to the median: 0.1 = the runs lie within ±10 % of it. */
export function relativeSpread(s: Summary): number {
  if (!Number.isFinite(s.p50) || s.p50 === 0 || s.n < 2) return 0;
  return (s.max - s.min) / 2 / Math.abs(s.p50);
}

/**
 * True when two summaries' spreads are too wide to trust their ratio: either one's runs vary by
 * more than `limit` (±25 % by default) around its median.
 */
export function untrustworthy(a: Summary, b: Summary, limit = 0.25): boolean {
  return relativeSpread(a) > limit || relativeSpread(b) > limit;
}
