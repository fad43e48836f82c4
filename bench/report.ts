/** The report of a run: its JSON shape, the terminal table, and the chart's panels. */
import type { DnsReport } from './dns.js';
import { renderDns } from './dns.js';
import { renderCni, type CniReport } from './setup_latency.js';
import type { Samples, ScalePoint } from './measure.js';
import { METRICS, PATHS, type Options } from './plan.js';
import { renderHelpers, type HelpersReport } from './podman_helpers.js';
import { renderTable, summarize, untrustworthy, type Summary } from './stats.js';
import type { BarPanel, Chart, LinePanel } from './svg.js';

// ---- report ---------------------------------------------------------------------------------

export interface Report {
  date: string;
  machine: { kernel: string; cpus: number; cpuModel: string; memGiB: number; os: string; node: string };
  versions: Record<string, string>;
  options: Options;
  tools: { rootful: string[]; rootless: string[] };
  samples: Samples;
  errors: Record<string, string>;
  scale: { rootful: ScalePoint[]; rootless: ScalePoint[] };
  /** RSS (MiB) of each rootless tool's network process holding 1000 TCP connections. */
  flowsRss: Record<string, number>;
  cpuPerGb: Record<string, number[]>;
  /** the DNS section (bench/dns.ts), when it ran */
  dns?: DnsReport;
  /** the CNI setup-latency section (bench/setup_latency.ts), when it ran */
  cni?: CniReport;
  /** the podman-helpers section (bench/podman_helpers.ts), when it ran */
  helpers?: HelpersReport;
  /** Seconds each part took: setup, each path and tool (all runs), and each section. */
  timings?: Record<string, number>;
  /** What plan.ts's estimateSeconds said at the start. */
  estimateS?: number;
}

/** "took 8.2 min (estimated 8.9); longest: ..." from a report's timings. */
export function renderTimings(timings: Record<string, number>, estimateS?: number): string {
  const total = Object.values(timings).reduce((a, b) => a + b, 0);
  const parts = Object.entries(timings).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${k} ${v.toFixed(0)} s`);
  return `took ${(total / 60).toFixed(1)} min${estimateS ? ` (estimated ${(estimateS / 60).toFixed(1)})` : ''}; longest parts: ${parts.join(', ')}`;
}

export const metricOf = (name: string) => METRICS.find((m) => m.name === name)!;

/** burrow / anchor, oriented so that > 1 means burrow leads. */
export function leadRatio(metric: string, burrow: number, anchor: number): number {
  if (!(burrow > 0) || !(anchor > 0)) return NaN;
  return metricOf(metric).higherIsBetter ? burrow / anchor : anchor / burrow;
}

export function fmt(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** The terminal table: per path, one row per metric, each tool's median ± half range, and ratios. */
export function renderReport(r: Report): string {
  const lines: string[] = [];
  let wide = 0;
  for (const p of PATHS) {
    const bym = r.samples[p.name];
    if (!bym) continue;
    const tools = p.kind === 'rootful' ? r.tools.rootful : p.kind === 'rootless' ? r.tools.rootless : ['burrow'];
    const anchors = tools.filter((t) => t !== 'burrow');
    const rows = [['metric', 'unit', ...tools, ...anchors.map((a) => `burrow/${a}`)]];
    for (const m of METRICS) {
      const cells = bym[m.name];
      if (!cells) continue;
      const sum: Record<string, Summary> = {};
      for (const t of tools) if (cells[t]?.length) sum[t] = summarize(cells[t]);
      const row = [m.name, m.unit, ...tools.map((t) => (sum[t] ? `${fmt(sum[t].p50)} ±${fmt((sum[t].max - sum[t].min) / 2)}` : r.errors[`${p.name}|${m.name}|${t}`] ? 'error' : '-'))];
      for (const a of anchors) {
        if (!sum.burrow || !sum[a]) {
          row.push('-');
          continue;
        }
        const ratio = leadRatio(m.name, sum.burrow.p50, sum[a].p50);
        const flag = untrustworthy(sum.burrow, sum[a]) ? ' ~' : '';
        if (flag) wide++;
        row.push(`${Number.isFinite(ratio) ? ratio.toFixed(2) : 'n/a'}x${flag}`);
      }
      rows.push(row);
    }
    lines.push(`\n${p.name}: ${p.title}`, renderTable(rows));
  }
  if (r.scale.rootful.length || r.scale.rootless.length) {
    const rows = [['section', 'tool', 'containers', 'setup wall ms', 'setup p50 ms', 'teardown wall ms', 'RSS MiB/ctr', 'PSS MiB/ctr (holding processes)']];
    for (const [sec, pts] of [['rootful', r.scale.rootful], ['rootless', r.scale.rootless]] as const) {
      for (const s of pts) rows.push([sec, s.tool, String(s.n), fmt(s.setupWallMs), fmt(s.setupP50Ms), fmt(s.teardownWallMs), fmt(s.rssPerCtrMiB), fmt(s.pssPerCtrMiB)]);
    }
    lines.push('\nscale: containers started at once (rootful: default bridge; rootless: one stack each, burrow-usernet: one user network, its namespace and stack shared)', renderTable(rows));
  }
  if (Object.keys(r.flowsRss ?? {}).length) {
    const rows = [['tool', 'network process RSS MiB, 1000 open TCP connections']];
    for (const [t, v] of Object.entries(r.flowsRss)) rows.push([t, fmt(v)]);
    lines.push('\nrootless stack memory under load', renderTable(rows));
  }
  if (Object.keys(r.cpuPerGb).length) {
    const rows = [['tool', 'CPU s per GB (forward from another netns)']];
    for (const [t, v] of Object.entries(r.cpuPerGb)) rows.push([t, fmt(summarize(v).p50)]);
    lines.push('\nrootless stack CPU cost', renderTable(rows));
  }
  if (r.dns) lines.push(renderDns(r.dns));
  if (r.cni) lines.push(renderCni(r.cni));
  if (r.helpers) lines.push(renderHelpers(r.helpers));
  lines.push(`\nmedians of ${r.options.runs} interleaved run(s) of ${r.options.durationS} s; ± is half the range. Ratios > 1.00x mean burrow leads (for ms, us, %, MiB: less is better, so the ratio is anchor/burrow).`);
  if (r.timings) lines.push(renderTimings(r.timings, r.estimateS));
  if (wide) lines.push(`warning: ${wide} ratio(s) marked ~ come from runs spread more than ±25 % around their median: too noisy to trust; run again with more --runs.`);
  const errs = Object.entries(r.errors);
  if (errs.length) lines.push(`${errs.length} measurement(s) failed:`, ...errs.map(([k, e]) => `  ${k}: ${e}`));
  return lines.join('\n');
}

/** The chart: TCP, HTTP-32, RR p50 and setup per path, then the scale curves. */
export function chartOf(r: Report): Chart {
  const panel = (metric: string, title: string, note: string): BarPanel => ({
    title, unit: metricOf(metric).unit, note,
    groups: PATHS.filter((p) => r.samples[p.name]?.[metric]).map((p) => ({
      label: p.name,
      bars: Object.entries(r.samples[p.name][metric]).map(([tool, v]) => {
        const s = summarize(v);
        return { tool, value: s.p50, min: s.min, max: s.max };
      }),
    })),
  });
  const lines: LinePanel[] = [];
  const series = (pts: ScalePoint[], f: (s: ScalePoint) => number) => [...new Set(pts.map((s) => s.tool))].map((tool) => ({ tool, points: pts.filter((s) => s.tool === tool).map((s) => ({ x: s.n, y: f(s) })) }));
  if (r.scale.rootful.length) {
    lines.push({ title: 'rootful: setup wall time', unit: 'ms', xLabel: 'containers started at once', series: series(r.scale.rootful, (s) => s.setupWallMs) });
    lines.push({ title: 'rootful: memory per container', unit: 'MiB PSS', xLabel: 'containers', series: series(r.scale.rootful, (s) => s.pssPerCtrMiB) });
  }
  if (r.scale.rootless.length) {
    lines.push({ title: 'rootless: setup wall time', unit: 'ms', xLabel: 'stacks started at once', series: series(r.scale.rootless, (s) => s.setupWallMs) });
    lines.push({ title: 'rootless: network process memory per stack', unit: 'MiB PSS', xLabel: 'stacks', series: series(r.scale.rootless, (s) => s.pssPerCtrMiB) });
  }
  return {
    title: 'burrow bench: rootful and rootless container networking',
    subtitle: `${r.date.slice(0, 10)} · ${r.machine.os} · kernel ${r.machine.kernel} · ${r.machine.cpus} CPUs (${r.machine.cpuModel}) · medians of ${r.options.runs} run(s) of ${r.options.durationS} s, whiskers = range`,
    bars: [
      panel('tcp', 'TCP throughput, one stream', 'iperf3; higher is better'),
      panel('http-32', 'HTTP requests per second, 32 clients', 'undici against a Node server; higher is better'),
      panel('rr-p50', 'Request/response latency, p50', '1 byte each way on one TCP connection; lower is better'),
      panel('setup', 'Container setup time', 'burrow run until the command runs; lower is better'),
    ].filter((p) => p.groups.length),
    lines,
  };
}
