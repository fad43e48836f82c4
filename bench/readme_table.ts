/**
 * Prints the README's benchmark tables from a `burrow bench --json` file:
 *   tsx bench/readme_table.ts bench/results/latest.json
 * Each cell: burrow's median, then burrow's ratio to each anchor (> 1 = burrow leads, whatever
 * the unit), "~" where the runs spread too much to trust the ratio.
 */
import fs from 'node:fs';
import { METRICS, PATHS } from './plan.js';
import { leadRatio, type Report } from './report.js';
import { summarize, untrustworthy } from './stats.js';

const COLS = ['tcp', 'tcp-P', 'udp', 'rr-p50', 'http-1', 'http-32', 'setup', 'teardown'];

function value(v: number): string {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function markdown(r: Report): string {
  const out: string[] = [];
  for (const kind of ['rootful', 'rootless'] as const) {
    const anchors = (kind === 'rootful' ? r.tools.rootful : r.tools.rootless).filter((t) => t !== 'burrow');
    const paths = PATHS.filter((p) => (kind === 'rootful' ? p.kind === 'rootful' : p.kind !== 'rootful') && r.samples[p.name]);
    if (!paths.length) continue;
    out.push(`${kind === 'rootful' ? 'Rootful' : 'Rootless'}: burrow's median, then burrow/${anchors.join(', burrow/') || '(no anchor)'}`, '');
    out.push(`| path | ${COLS.map((c) => `${c} (${METRICS.find((m) => m.name === c)!.unit})`).join(' | ')} |`, `|---|${COLS.map(() => '---').join('|')}|`);
    for (const p of paths) {
      const cells = COLS.map((c) => {
        const by = r.samples[p.name][c];
        if (!by?.burrow?.length) return 'n/a';
        const b = summarize(by.burrow);
        const ratios = anchors.map((a) => {
          if (!by[a]?.length) return r.errors[`${p.name}|${c}|${a}`] ? 'err' : '–';
          const s = summarize(by[a]);
          return `${leadRatio(c, b.p50, s.p50).toFixed(2)}x${untrustworthy(b, s) ? '~' : ''}`;
        });
        return [value(b.p50), ...ratios].join(' · ');
      });
      out.push(`| ${p.name} | ${cells.join(' | ')} |`);
    }
    out.push('');
  }
  const sc = [...r.scale.rootful.map((s) => ({ ...s, sec: 'rootful' })), ...r.scale.rootless.map((s) => ({ ...s, sec: 'rootless' }))];
  if (sc.length) {
    out.push('Scale: containers started at once; memory of the processes that carry the network, per container (RSS, and PSS: shared pages split among the processes that map them)', '');
    out.push('| section | containers | tool | setup wall | setup p50 | teardown wall | RSS/container | PSS/container |', '|---|---|---|---|---|---|---|---|');
    for (const s of sc) out.push(`| ${s.sec} | ${s.n} | ${s.tool} | ${value(s.setupWallMs)} ms | ${value(s.setupP50Ms)} ms | ${value(s.teardownWallMs)} ms | ${value(s.rssPerCtrMiB)} MiB | ${s.pssPerCtrMiB === undefined ? 'n/a' : `${value(s.pssPerCtrMiB)} MiB`} |`);
    out.push('');
  }
  if (Object.keys(r.flowsRss ?? {}).length || Object.keys(r.cpuPerGb).length) {
    out.push('| rootless stack | RSS with 1000 open TCP connections | CPU seconds per GB through a forward |', '|---|---|---|');
    for (const t of new Set([...Object.keys(r.flowsRss ?? {}), ...Object.keys(r.cpuPerGb)])) {
      out.push(`| ${t} | ${r.flowsRss?.[t] !== undefined ? `${value(r.flowsRss[t])} MiB` : 'n/a'} | ${r.cpuPerGb[t]?.length ? value(summarize(r.cpuPerGb[t]).p50) : 'n/a'} |`);
    }
  }
  return out.join('\n');
}

if (process.argv[1]?.endsWith('readme_table.ts')) {
  console.log(markdown(JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as Report));
}
