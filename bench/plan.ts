/** What a bench run measures: the paths, the metrics, the sections, the options that pick them, the anchors installed, and how long it takes. */
import fs from 'node:fs';
import path from 'node:path';
import { podmanMissing } from './podman.js';
import { have, REFERENCE_DIR } from './procs.js';



// ---- what is measured ------------------------------------------------------------------------

export type Kind = 'rootful' | 'rootless' | 'pod';

export const PATHS: Array<{ name: string; kind: Kind; title: string }> = [
  { name: 'bridge-c2h', kind: 'rootful', title: 'rootful bridge, container -> host' },
  { name: 'bridge-h2c', kind: 'rootful', title: 'rootful bridge, host -> container' },
  { name: 'portmap-lo', kind: 'rootful', title: 'rootful -p, client on 127.0.0.1' },
  { name: 'portmap-remote', kind: 'rootful', title: 'rootful -p, client in another netns' },
  { name: 'bridge-c2c', kind: 'rootful', title: 'rootful, container -> container, one bridge' },
  { name: 'macvlan-c2c', kind: 'rootful', title: 'rootful macvlan, container -> container' },
  { name: 'rootless-out', kind: 'rootless', title: 'rootless, container -> host loopback' },
  { name: 'rootless-fwd-lo', kind: 'rootless', title: 'rootless -p, client on 127.0.0.1' },
  { name: 'rootless-fwd-remote', kind: 'rootless', title: 'rootless -p, client in another netns' },
  { name: 'rootless-c2c', kind: 'rootless', title: 'rootless container -> container via published port' },
  { name: 'rootless-pod', kind: 'pod', title: 'rootless, two containers in one pod (localhost)' },
  // burrow only (the anchors have no user networks): read it against bridge-c2c, rootful
  { name: 'rootless-net-c2c', kind: 'pod', title: 'rootless, container -> container, one user network' },
  // -p on a user network (the one stack's forward, then portmap's DNAT): read against rootless-fwd-*
  { name: 'rootless-net-fwd-lo', kind: 'pod', title: 'rootless -p on a user network, client on 127.0.0.1' },
  { name: 'rootless-net-fwd-remote', kind: 'pod', title: 'rootless -p on a user network, client in another netns' },
];

export interface MetricDef {
  name: string;
  unit: string;
  higherIsBetter: boolean;
}

export const METRICS: MetricDef[] = [
  { name: 'tcp', unit: 'Gbit/s', higherIsBetter: true },
  { name: 'tcp-P', unit: 'Gbit/s', higherIsBetter: true },
  { name: 'udp', unit: 'Gbit/s', higherIsBetter: true },
  { name: 'udp-loss', unit: '%', higherIsBetter: false },
  { name: 'rr-p50', unit: 'us', higherIsBetter: false },
  { name: 'rr-p99', unit: 'us', higherIsBetter: false },
  { name: 'http-1', unit: 'req/s', higherIsBetter: true },
  { name: 'http-8', unit: 'req/s', higherIsBetter: true },
  { name: 'http-32', unit: 'req/s', higherIsBetter: true },
  { name: 'setup', unit: 'ms', higherIsBetter: false },
  { name: 'teardown', unit: 'ms', higherIsBetter: false },
];

export interface Options {
  durationS: number;
  runs: number;
  parallel: number;
  only: string[];
  json?: string;
  svg?: string;
  anchors: 'auto' | 'none';
  /** Container counts for the scale section (rootless uses those up to 50). */
  scale: number[];
  /** --full: every path and the whole scale (what the default leaves out). */
  full: boolean;
}

export const SECTIONS = ['scale', 'cpu', 'dns', 'cni', 'podman-helpers'];

/**
 * The default run: one path of each kind (rootful with the reference plugins and podman, rootless
 * with pasta and slirp4netns, a user network), every section with every anchor, and a short scale
 * step, with 2 s per measurement; about 9 minutes on the README's 2-core VM. --full is every path,
 * 1 to 100 containers and 3 s per measurement, 45 to 55 minutes.
 */
export const DEFAULT_PATHS = ['bridge-c2c', 'rootless-fwd-lo', 'rootless-net-c2c'];
const FULL_SCALE = [1, 10, 50, 100];
const DEFAULT_SCALE = [1, 10];

export function parseOptions(argv: string[]): Options {
  const o: Options = { durationS: 2, runs: 3, parallel: 4, only: [...DEFAULT_PATHS, ...SECTIONS], anchors: 'auto', scale: DEFAULT_SCALE, full: false };
  let only = false;
  let scale = false;
  let duration = false;
  const num = (flag: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${flag} wants a number >= ${min}, not "${v ?? ''}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--duration') {
      o.durationS = num(a, argv[++i], 0.5);
      duration = true;
    }
    else if (a === '--runs') o.runs = Math.round(num(a, argv[++i], 1));
    else if (a === '--parallel') o.parallel = Math.round(num(a, argv[++i], 2));
    else if (a === '--only') {
      o.only = (argv[++i] ?? '').split(',').filter(Boolean);
      only = true;
    } else if (a === '--full') o.full = true;
    else if (a === '--json') o.json = argv[++i];
    else if (a === '--svg') o.svg = argv[++i];
    else if (a === '--anchors') {
      const v = argv[++i];
      if (v !== 'auto' && v !== 'none') throw new Error(`--anchors is auto or none, not "${v ?? ''}"`);
      o.anchors = v;
    } else if (a === '--scale') {
      o.scale = (argv[++i] ?? '').split(',').map((s) => num('--scale', s, 1));
      scale = true;
    } else throw new Error(`unknown argument "${a}" (burrow bench --help)`);
  }
  if (o.full && only) throw new Error('--full measures every path and section; --only picks some: give one of them');
  if (o.full) {
    o.only = [...PATHS.map((p) => p.name), ...SECTIONS];
    if (!scale) o.scale = FULL_SCALE;
    if (!duration) o.durationS = 3;
  }
  const known = [...PATHS.map((p) => p.name), ...SECTIONS];
  for (const p of o.only) if (!known.includes(p)) throw new Error(`--only: unknown path or section "${p}" (known: ${known.join(', ')})`);
  if (!o.only.length) throw new Error('--only names nothing to measure');
  return o;
}

/**
 * The jobs of run `r`: paths in order, each path's tools rotated by r (A B C, then B C A, ...), so
 * no tool is always the first to run after a path change or a previous run's teardown.
 */
export function runOrder<J extends { p: { name: string }; tool: string }>(jobs: J[], r: number): J[] {
  const out: J[] = [];
  for (let i = 0; i < jobs.length;) {
    let j = i;
    while (j < jobs.length && jobs[j].p.name === jobs[i].p.name) j++;
    const group = jobs.slice(i, j);
    const k = r % group.length;
    out.push(...group.slice(k), ...group.slice(0, k));
    i = j;
  }
  return out;
}

/** The tools measured on each kind of path: burrow, and the anchors installed (with --anchors auto). */
export interface Tools {
  rootful: string[];
  rootless: string[];
}

/** Which anchors this machine has: the reference plugins, podman (which needs them), pasta, slirp4netns. */
export function anchorsOf(o: Options): { refOk: boolean; podmanOk: boolean; podmanGaps: string[]; tools: Tools } {
  const refOk = o.anchors === 'auto' && ['bridge', 'host-local', 'portmap', 'firewall', 'tuning', 'macvlan'].every((p) => fs.existsSync(path.join(REFERENCE_DIR, p)));
  const podmanGaps = [...podmanMissing(have), ...(refOk ? [] : [`the reference plugins in ${REFERENCE_DIR}`])];
  const podmanOk = o.anchors === 'auto' && podmanGaps.length === 0;
  return {
    refOk, podmanOk, podmanGaps,
    tools: {
      rootful: ['burrow', ...(refOk ? ['reference'] : []), ...(podmanOk ? ['podman'] : [])],
      rootless: ['burrow', ...(o.anchors === 'auto' ? ['pasta', 'slirp4netns'].filter(have) : [])],
    },
  };
}

/**
 * Seconds a run of `o` takes, from the parts' costs measured on the README's 2-core VM
 * (bench/results/latest.json's timings): per path, tool and run, the seven measurements of
 * --duration s each plus set-up, servers and teardown; per section, its own steps. An estimate to
 * plan by, printed at the start; the report gives what each part took.
 */
export function estimateSeconds(o: Options, tools: Tools, podman: boolean): number {
  const d = o.durationS;
  const toolsOf = (k: Kind) => (k === 'rootful' ? tools.rootful : k === 'rootless' ? tools.rootless : ['burrow']);
  let s = 0;
  for (const p of PATHS.filter((x) => o.only.includes(x.name))) {
    // pasta's and slirp4netns's UDP through a forward gets no replies: iperf3 runs to its limit
    const hang = (t: string) => (p.kind === 'rootless' && t !== 'burrow' && p.name.includes('fwd') ? 2 * d + 10 : 0);
    for (const t of toolsOf(p.kind)) s += o.runs * (7 * d + COST.round + hang(t));
  }
  if (o.only.includes('scale')) {
    for (const n of o.scale) s += tools.rootful.length * (COST.scaleStep + COST.scalePerCtr * n);
    for (const n of o.scale.filter((x) => x <= 50)) s += (tools.rootless.length + 1) * (COST.scaleStep + COST.scalePerCtr * n);
    s += tools.rootless.length * COST.flows;
  }
  if (o.only.includes('cpu')) s += o.runs * tools.rootless.length * (d + COST.cpuRound);
  if (o.only.includes('dns')) s += COST.dnsSetup + o.runs * COST.dnsServers * (d + COST.dnsRound);
  if (o.only.includes('cni')) s += COST.cniSetup + cniRounds(o) * COST.cniRound * (o.full ? 1.4 : 1);
  if (o.only.includes('podman-helpers') && podman) s += o.runs * COST.helpersRun;
  return s;
}

/** Interleaved rounds of the CNI section: 5 in the default run, 10 per run with --full. */
export function cniRounds(o: Options): number {
  return o.full ? 10 * o.runs : 5;
}

/** The parts' costs in seconds (see estimateSeconds). */
const COST = {
  round: 1.5,
  scaleStep: 0.8, scalePerCtr: 0.15, flows: 3,
  cpuRound: 0.3,
  dnsSetup: 10, dnsServers: 3, dnsRound: 5.7,
  helpersRun: 15,
  cniSetup: 3, cniRound: 1.9,
};
