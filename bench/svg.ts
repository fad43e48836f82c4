/**
 * The bench's chart as a standalone SVG (no dependencies): panels of horizontal grouped bars
 * (one group per path, one bar per tool, whiskers from the lowest to the highest run, the median
 * written at the bar's end), then line panels for the scale curves. Pure: data in, text out.
 */

export interface Bar {
  tool: string;
  value: number;
  min: number;
  max: number;
}

export interface BarPanel {
  title: string;
  unit: string;
  /** Printed under the title, e.g. "higher is better". */
  note?: string;
  groups: Array<{ label: string; bars: Bar[] }>;
}

export interface LinePanel {
  title: string;
  unit: string;
  xLabel: string;
  series: Array<{ tool: string; points: Array<{ x: number; y: number }> }>;
}

export interface Chart {
  title: string;
  subtitle: string;
  bars: BarPanel[];
  lines: LinePanel[];
}

const COLORS: Record<string, string> = { burrow: '#1f6fb2', reference: '#8c8c8c', pasta: '#e0822c', slirp4netns: '#5a9e44', podman: '#892ca0' };
const EXTRA = ['#b04a8a', '#7a5cc0', '#2aa198', '#b58900'];

export function colorOf(tool: string, all: string[]): string {
  return COLORS[tool] ?? EXTRA[Math.max(0, all.indexOf(tool)) % EXTRA.length];
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A short human number: 3 significant digits, k/M suffixes for large values. */
export function shortNumber(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(3)}k`;
  if (a >= 100) return v.toFixed(0);
  return v.toPrecision(3);
}

/** "Nice" axis maximum and tick step for values up to `max`. */
export function niceScale(max: number, ticks = 5): { max: number; step: number } {
  if (!(max > 0) || !Number.isFinite(max)) return { max: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  return { max: Math.ceil(max / step) * step, step };
}

const W = 980;
const LABEL_W = 230;
const BAR_H = 13;

function barPanel(p: BarPanel, y0: number, tools: string[]): { svg: string; height: number } {
  const rows = p.groups.reduce((n, g) => n + Math.max(1, g.bars.length), 0);
  const height = 46 + rows * (BAR_H + 3) + p.groups.length * 8 + 22;
  const plotX = LABEL_W;
  const plotW = W - LABEL_W - 90;
  const { max, step } = niceScale(Math.max(0, ...p.groups.flatMap((g) => g.bars.map((b) => (Number.isFinite(b.max) ? b.max : b.value)))));
  const x = (v: number) => plotX + (Math.max(0, v) / max) * plotW;
  const out: string[] = [`<g transform="translate(0,${y0})">`];
  out.push(`<text x="10" y="18" class="pt">${escapeXml(p.title)} <tspan class="unit">(${escapeXml(p.unit)})</tspan></text>`);
  if (p.note) out.push(`<text x="10" y="34" class="note">${escapeXml(p.note)}</text>`);
  let y = 46;
  const axisTop = y;
  const gridAt = out.length; // the grid goes under the bars, once their extent is known
  for (const g of p.groups) {
    const gh = Math.max(1, g.bars.length) * (BAR_H + 3);
    out.push(`<text x="${plotX - 8}" y="${y + gh / 2 + 4}" text-anchor="end" class="gl">${escapeXml(g.label)}</text>`);
    if (!g.bars.length) out.push(`<text x="${plotX + 4}" y="${y + BAR_H - 2}" class="note">no result</text>`);
    for (const b of g.bars) {
      const c = colorOf(b.tool, tools);
      out.push(`<rect x="${plotX}" y="${y}" width="${Math.max(1, x(b.value) - plotX).toFixed(1)}" height="${BAR_H}" fill="${c}"><title>${escapeXml(`${b.tool}: ${shortNumber(b.value)} ${p.unit} (runs ${shortNumber(b.min)}..${shortNumber(b.max)})`)}</title></rect>`);
      if (Number.isFinite(b.min) && Number.isFinite(b.max) && b.max > b.min) {
        const cy = y + BAR_H / 2;
        out.push(`<path d="M${x(b.min).toFixed(1)} ${cy}H${x(b.max).toFixed(1)}M${x(b.min).toFixed(1)} ${cy - 4}v8M${x(b.max).toFixed(1)} ${cy - 4}v8" class="err"/>`);
      }
      out.push(`<text x="${(Math.max(x(b.value), Number.isFinite(b.max) ? x(b.max) : 0) + 5).toFixed(1)}" y="${y + BAR_H - 2}" class="val">${escapeXml(shortNumber(b.value))}</text>`);
      y += BAR_H + 3;
    }
    y += 8;
  }
  const grid: string[] = [];
  for (let v = 0; v <= max + step / 2; v += step) {
    grid.push(`<line x1="${x(v).toFixed(1)}" y1="${axisTop - 4}" x2="${x(v).toFixed(1)}" y2="${y}" class="grid"/>`);
    grid.push(`<text x="${x(v).toFixed(1)}" y="${y + 14}" text-anchor="middle" class="tick">${escapeXml(shortNumber(v))}</text>`);
  }
  out.splice(gridAt, 0, ...grid);
  out.push('</g>');
  return { svg: out.join('\n'), height };
}

function linePanel(p: LinePanel, x0: number, y0: number, w: number, h: number, tools: string[]): string {
  const left = 60;
  const bottom = 40;
  const top = 36;
  const pw = w - left - 20;
  const ph = h - top - bottom;
  const xs = [...new Set(p.series.flatMap((s) => s.points.map((q) => q.x)))].sort((a, b) => a - b);
  const xMax = Math.max(1, ...xs);
  const { max: yMax, step } = niceScale(Math.max(0, ...p.series.flatMap((s) => s.points.map((q) => q.y))));
  const px = (v: number) => left + (v / xMax) * pw;
  const py = (v: number) => top + ph - (v / yMax) * ph;
  const out = [`<g transform="translate(${x0},${y0})">`, `<text x="10" y="18" class="pt">${escapeXml(p.title)} <tspan class="unit">(${escapeXml(p.unit)})</tspan></text>`];
  for (let v = 0; v <= yMax + step / 2; v += step) {
    out.push(`<line x1="${left}" y1="${py(v).toFixed(1)}" x2="${left + pw}" y2="${py(v).toFixed(1)}" class="grid"/>`);
    out.push(`<text x="${left - 6}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end" class="tick">${escapeXml(shortNumber(v))}</text>`);
  }
  for (const v of xs) out.push(`<text x="${px(v).toFixed(1)}" y="${top + ph + 16}" text-anchor="middle" class="tick">${v}</text>`);
  out.push(`<text x="${left + pw / 2}" y="${top + ph + 32}" text-anchor="middle" class="note">${escapeXml(p.xLabel)}</text>`);
  p.series.forEach((s, i) => {
    const c = colorOf(s.tool, tools);
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((q) => `${px(q.x).toFixed(1)},${py(q.y).toFixed(1)}`).join(' ')}"/>`);
    for (const q of pts) out.push(`<circle cx="${px(q.x).toFixed(1)}" cy="${py(q.y).toFixed(1)}" r="3.5" fill="${c}"><title>${escapeXml(`${s.tool}, ${q.x}: ${shortNumber(q.y)} ${p.unit}`)}</title></circle>`);
    out.push(`<rect x="${left + 8}" y="${top + 6 + i * 15}" width="10" height="10" fill="${c}"/><text x="${left + 22}" y="${top + 15 + i * 15}" class="tick">${escapeXml(s.tool)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

/** The whole chart. */
export function renderSvg(c: Chart): string {
  const tools = [...new Set([...c.bars.flatMap((p) => p.groups.flatMap((g) => g.bars.map((b) => b.tool))), ...c.lines.flatMap((l) => l.series.map((s) => s.tool))])];
  const parts: string[] = [];
  let y = 70;
  // legend
  const legend = tools.map((t, i) => `<rect x="${10 + i * 140}" y="${y - 16}" width="12" height="12" fill="${colorOf(t, tools)}"/><text x="${28 + i * 140}" y="${y - 6}" class="gl">${escapeXml(t)}</text>`);
  parts.push(...legend);
  y += 6;
  for (const p of c.bars) {
    const r = barPanel(p, y, tools);
    parts.push(r.svg);
    y += r.height + 10;
  }
  const LW = W / 2;
  const LH = 280;
  c.lines.forEach((l, i) => {
    parts.push(linePanel(l, (i % 2) * LW, y + Math.floor(i / 2) * LH, LW, LH, tools));
  });
  y += Math.ceil(c.lines.length / 2) * LH + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    '<style>.pt{font-size:15px;font-weight:bold;fill:#222}.unit{font-weight:normal;fill:#555}.note{font-size:11px;fill:#666}.gl{font-size:12px;fill:#222}.val{font-size:11px;fill:#333}.tick{font-size:10px;fill:#555}.grid{stroke:#e4e4e4;stroke-width:1}.err{stroke:#222;stroke-width:1.2;fill:none}</style>',
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="24" style="font-size:19px;font-weight:bold;fill:#111">${escapeXml(c.title)}</text>`,
    `<text x="10" y="42" class="note">${escapeXml(c.subtitle)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
