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
