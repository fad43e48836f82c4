import test from 'ava';
import { formatMs, formatRatio, percentile, renderTable, summarize } from './stats.js';

test('percentiles interpolate between closest ranks', (t) => {
  t.is(percentile([3, 1, 2], 50), 2);
  t.is(percentile([1, 2, 3, 4], 50), 2.5);
  t.is(percentile([10, 20], 95), 19.5);
  t.is(percentile([7], 95), 7);
  t.true(Number.isNaN(percentile([], 50)));
  const s = summarize([5, 1, 4, 2, 3]);
  t.deepEqual({ ...s }, { n: 5, p50: 3, p95: 4.8, p99: 4.96, min: 1, max: 5, mean: 3 });
});

test('ratios and table formatting', (t) => {
  t.is(formatRatio(5, 20), '0.25x');
  t.is(formatRatio(1, 40), '0.025x');
  t.is(formatRatio(1, 0), 'n/a');
  t.is(formatRatio(NaN, 1), 'n/a');
  t.is(formatMs(3.14159), '3.14 ms');
  t.is(formatMs(31.4159), '31.4 ms');
  t.is(renderTable([['a', 'bb'], ['ccc', 'd']]), 'a    bb\nccc  d');
});
