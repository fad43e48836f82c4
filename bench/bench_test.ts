import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IperfError, iperfNotReady, iperfVersion, parseIperf } from './iperf.js';
import { estimateSeconds, METRICS, parseOptions, PATHS, runOrder, SECTIONS } from './plan.js';
import { chartOf, leadRatio, renderReport, renderTimings, type Report } from './report.js';
import { relativeSpread, summarize, untrustworthy } from './stats.js';
import { escapeXml, niceScale, renderSvg, shortNumber } from './svg.js';
import { containersConf, parsePodmanInspect, podmanArgv, podmanLayout, podmanMissing } from './podman.js';
import { renderHelpers } from './podman_helpers.js';

const DATA = path.join(path.dirname(fileURLToPath(import.meta.url)), 'testdata');

test('iperf3 JSON: TCP (parallel streams) and UDP with loss, from real iperf 3.12 output', (t) => {
  const tcp = parseIperf(fs.readFileSync(path.join(DATA, 'iperf3_tcp_p2.json'), 'utf8'));
  t.is(tcp.bytes, 2717122560);
  t.is(tcp.gbps.toFixed(3), '21.732');
  t.is(tcp.lostPercent, undefined);
  const udp = parseIperf(`warning: something first\n${fs.readFileSync(path.join(DATA, 'iperf3_udp.json'), 'utf8')}`);
  t.is(udp.gbps.toFixed(4), '0.9927');
  t.is(udp.lostPercent!.toFixed(3), '0.626');
  t.true(udp.jitterMs! > 0);
});

test('iperf3 failures are errors with iperf3\'s own words', (t) => {
  t.throws(() => parseIperf('{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}'), { instanceOf: IperfError, message: 'iperf3: unable to connect to server: Connection refused' });
  t.throws(() => parseIperf(''), { message: /printed no JSON: \(nothing\)/ });
  t.throws(() => parseIperf('{"start": {"connected": ['), { message: /truncated or invalid/ });
  t.throws(() => parseIperf('{"end": {}}'), { message: /no end.sum_received/ });
  t.is(iperfVersion('iperf 3.12 (cJSON 1.7.15)'), '3.12');
  t.is(iperfVersion('something else'), 'unknown');
});

test('iperf3 "not listening yet" is retried; other failures are results', (t) => {
  t.true(iperfNotReady('iperf3: unable to connect to server: Connection refused'));
  t.true(iperfNotReady('iperf3: the server is busy running a test. try again later'));
  t.false(iperfNotReady('iperf3: unable to connect to server: No route to host'));
  t.false(iperfNotReady('iperf3 JSON has no end.sum_received'));
});

test('spread: half the range around the median; a ratio from wide runs is untrustworthy', (t) => {
  const tight = summarize([10, 10.5, 9.8]);
  const wide = summarize([5, 10, 20]);
  t.true(relativeSpread(tight) < 0.05);
  t.is(relativeSpread(wide), 0.75);
  t.false(untrustworthy(tight, tight));
  t.true(untrustworthy(tight, wide));
  t.is(relativeSpread(summarize([7])), 0, 'one run: no spread to judge');
});

test('options: defaults, --full, checks, --only names paths and sections', (t) => {
  const d = parseOptions([]);
  t.is(d.durationS, 2);
  t.is(d.runs, 3);
  t.deepEqual(d.scale, [1, 10]);
  t.deepEqual(d.only, ['bridge-c2c', 'rootless-fwd-lo', 'rootless-net-c2c', 'scale', 'cpu', 'dns', 'cni', 'podman-helpers'], 'one path of each kind, then every section');
  t.deepEqual(new Set(d.only.flatMap((n) => PATHS.filter((p) => p.name === n).map((p) => p.kind))), new Set(['rootful', 'rootless', 'pod']), 'every kind of path');
  t.deepEqual(SECTIONS, ['scale', 'cpu', 'dns', 'cni', 'podman-helpers']);
  const f = parseOptions(['--full']);
  t.deepEqual(f.only, [...PATHS.map((p) => p.name), ...SECTIONS], '--full: every path, then every section');
  t.deepEqual(f.scale, [1, 10, 50, 100]);
  t.is(f.durationS, 3);
  t.is(parseOptions(['--full', '--duration', '1']).durationS, 1);
  t.deepEqual(parseOptions(['--full', '--scale', '1,3']).scale, [1, 3], '--scale still picks the counts');
  t.throws(() => parseOptions(['--full', '--only', 'scale']), { message: /--full measures every path.*--only picks some/ });
  const o = parseOptions(['--duration', '1', '--runs', '1', '--only', 'bridge-c2h,scale', '--scale', '1,5', '--anchors', 'none', '--json', 'x.json']);
  t.like(o, { durationS: 1, runs: 1, only: ['bridge-c2h', 'scale'], scale: [1, 5], anchors: 'none', json: 'x.json' });
  t.throws(() => parseOptions(['--only', 'nope']), { message: /unknown path or section "nope"/ });
  t.throws(() => parseOptions(['--runs', '0']), { message: /--runs wants a number >= 1/ });
  t.throws(() => parseOptions(['--anchors', 'some']), { message: /--anchors is auto or none/ });
  t.throws(() => parseOptions(['--frobnicate']), { message: /unknown argument "--frobnicate"/ });
});

test('the time estimate: the default within 10 minutes on the 2-core VM, --full 40 to 60, growing with runs and duration', (t) => {
  const tools = { rootful: ['burrow', 'reference', 'podman'], rootless: ['burrow', 'pasta', 'slirp4netns'] };
  const min = (argv: string[], podman = true) => estimateSeconds(parseOptions(argv), tools, podman) / 60;
  t.true(min([]) > 5 && min([]) <= 10, `default: ${min([]).toFixed(1)} min`);
  t.true(min(['--full']) >= 40 && min(['--full']) <= 60, `--full: ${min(['--full']).toFixed(1)} min`);
  t.true(min(['--runs', '5']) > min([]) && min(['--duration', '6']) > min([]));
  t.true(min([], false) < min([]), 'podman missing: its rounds and section are not counted');
  t.true(estimateSeconds(parseOptions(['--only', 'bridge-c2c']), { rootful: ['burrow'], rootless: ['burrow'] }, false) < estimateSeconds(parseOptions(['--only', 'bridge-c2c']), tools, true));
});

test('ratios point the same way for every metric: > 1 means burrow leads', (t) => {
  t.is(leadRatio('tcp', 20, 10), 2);
  t.is(leadRatio('setup', 100, 200), 2, 'less time is better');
  t.is(leadRatio('udp-loss', 1, 4), 4);
  t.true(Number.isNaN(leadRatio('tcp', 0, 10)));
  t.true(METRICS.every((m) => typeof m.higherIsBetter === 'boolean'));
});

function sampleReport(): Report {
  return {
    date: '2026-11-22T12:00:00.000Z',
    machine: { kernel: '6.18', cpus: 2, cpuModel: 'Test CPU', memGiB: 24, os: 'Debian GNU/Linux 12 (bookworm)', node: 'v20.20.2' },
    versions: { burrow: '0.1.0' },
    options: parseOptions(['--runs', '3']),
    tools: { rootful: ['burrow', 'reference'], rootless: ['burrow', 'pasta', 'slirp4netns'] },
    samples: {
      'bridge-h2c': { tcp: { burrow: [20, 21, 22], reference: [10, 10, 10] }, setup: { burrow: [100, 100, 100], reference: [200, 100, 300] } },
      'rootless-fwd-lo': { 'http-32': { burrow: [9000, 9100, 8900], pasta: [10000, 10000, 10000] } },
    },
    errors: { 'rootless-fwd-lo|udp|pasta': 'iperf3 gave no result within 13 s' },
    scale: { rootful: [{ tool: 'burrow', n: 1, setupWallMs: 200, setupP50Ms: 200, teardownWallMs: 90, rssPerCtrMiB: 50, pssPerCtrMiB: 20 }, { tool: 'burrow', n: 10, setupWallMs: 900, setupP50Ms: 700, teardownWallMs: 300, rssPerCtrMiB: 48, pssPerCtrMiB: 18 }], rootless: [] },
    flowsRss: { burrow: 66.7, pasta: 22.5 },
    cpuPerGb: { burrow: [1.5, 1.4, 1.6] },
  };
}

test('terminal report: medians, spreads, ratios, flags for noisy ratios, errors', (t) => {
  const text = renderReport(sampleReport());
  t.regex(text, /^tcp\s+Gbit\/s\s+21\.00 ±1\.00\s+10\.00 ±0\.000\s+2\.10x$/m);
  t.regex(text, /^setup\s+ms\s+100\.0 ±0\.000\s+200\.0 ±100\.0\s+2\.00x ~$/m, 'the reference\'s runs spread ±50 %: flagged');
  t.regex(text, /^http-32\s+req\/s\s+9000 ±100\.0\s+10000 ±0\.000\s+-\s+0\.90x\s+-$/m);
  t.regex(text, /warning: 1 ratio\(s\) marked ~/);
  t.regex(text, /rootless-fwd-lo\|udp\|pasta: iperf3 gave no result/);
  t.regex(text, /^rootful\s+burrow\s+10\s+900\.0/m);
  t.regex(text, /CPU s per GB/);
  t.regex(text, /^pasta\s+22\.50$/m);
  t.notRegex(text, /^took /m, 'no timings, no line');
  const timed = renderReport({ ...sampleReport(), timings: { setup: 12, 'bridge-c2c|burrow': 90, scale: 150, cpu: 30, dns: 60 }, estimateS: 330 });
  t.regex(timed, /^took 5\.7 min \(estimated 5\.5\); longest parts: scale 150 s, bridge-c2c\|burrow 90 s, dns 60 s, cpu 30 s$/m);
  t.is(renderTimings({ a: 30 }), 'took 0.5 min; longest parts: a 30 s');
});

test('SVG: one bar per tool and path, whiskers, legend, scale curves, escaped text', (t) => {
  const r = sampleReport();
  r.samples['bridge-h2c'].tcp['a<b&c'] = [1, 2, 3];
  const svg = renderSvg(chartOf(r));
  t.true(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  t.true(svg.trimEnd().endsWith('</svg>'));
  t.is((svg.match(/<rect x="230"/g) ?? []).length, 3 + 2 + 2, 'tcp: 3 bars; http-32: 2; setup: 2');
  t.regex(svg, /<path d="M[\d.]+ [\d.]+H[\d.]+/, 'whiskers for runs that differ');
  t.regex(svg, /rootful: setup wall time/);
  t.regex(svg, /<polyline /);
  t.regex(svg, /a&lt;b&amp;c/);
  t.notRegex(svg, /a<b&c/);
  t.is((svg.match(/<text/g) ?? []).length > 20, true);
});

test('axis and number helpers', (t) => {
  t.deepEqual(niceScale(17.3), { max: 20, step: 5 });
  t.deepEqual(niceScale(0), { max: 1, step: 0.2 });
  t.is(niceScale(21100).max, 25000);
  t.is(shortNumber(21100), '21.1k');
  t.is(shortNumber(0.5), '0.500');
  t.is(shortNumber(150), '150');
  t.is(escapeXml('"<&>'), '&quot;&lt;&amp;&gt;');
});

test('run order: each path\'s tools rotate from run to run, paths stay in order', (t) => {
  const jobs = [['a', 'burrow'], ['a', 'pasta'], ['a', 'slirp4netns'], ['b', 'burrow'], ['b', 'reference'], ['c', 'burrow']].map(([p, tool]) => ({ p: { name: p }, tool }));
  const order = (r: number) => runOrder(jobs, r).map((j) => `${j.p.name}:${j.tool}`).join(' ');
  t.is(order(0), 'a:burrow a:pasta a:slirp4netns b:burrow b:reference c:burrow');
  t.is(order(1), 'a:pasta a:slirp4netns a:burrow b:reference b:burrow c:burrow');
  t.is(order(2), 'a:slirp4netns a:burrow a:pasta b:burrow b:reference c:burrow');
  t.is(runOrder(jobs, 5).length, jobs.length);
});

test('podman anchor: inspect from real podman 4.3.1 output, its configuration, what it needs', (t) => {
  const c = parsePodmanInspect(fs.readFileSync(path.join(DATA, 'podman_inspect.json'), 'utf8'));
  t.deepEqual(c, { ns: '/run/netns/netns-a8b03d34-fbe7-8382-ac70-4dfc28eea928', ip: '10.86.0.2', conmonPid: 9038, pid: 9048 });
  // a stopped container has no pid: an error, not a netns path of pid 0
  t.throws(() => parsePodmanInspect('[{"State":{"Pid":0},"NetworkSettings":{}}]'), { message: /not running/ });
  // no SandboxKey (podman on a netns it did not create): the container's own; address from its networks
  t.deepEqual(parsePodmanInspect('[{"State":{"Pid":42,"ConmonPid":41},"NetworkSettings":{"SandboxKey":"","IPAddress":"","Networks":{"mv":{"IPAddress":"10.77.3.2"}}}}]'), { ns: '/proc/42/ns/net', ip: '10.77.3.2', conmonPid: 41, pid: 42 });

  const l = podmanLayout('/tmp/burrow-bench-x');
  t.is(l.rootfs, '/tmp/burrow-bench-x/podman/rootfs');
  const conf = containersConf(l, { referenceDir: '/usr/lib/cni', runtime: 'runc', defaultNetwork: 'bbpodman' });
  for (const line of ['network_backend = "cni"', 'cni_plugin_dirs = ["/usr/lib/cni"]', 'network_config_dir = "/tmp/burrow-bench-x/podman/net.d"', 'default_network = "bbpodman"', 'runtime = "runc"']) t.true(conf.split('\n').includes(line), line);
  // storage in the bench dir, never the machine's /var/lib/containers
  t.deepEqual(podmanArgv(l, ['ps']), ['env', 'CONTAINERS_CONF=/tmp/burrow-bench-x/podman/containers.conf', 'podman', '--root', '/tmp/burrow-bench-x/podman/root', '--runroot', '/tmp/burrow-bench-x/podman/runroot', '--storage-driver', 'vfs', 'ps']);

  const missing = podmanMissing((b) => b !== 'conmon' && b !== 'runc' && b !== 'crun');
  t.deepEqual(missing, ['conmon', 'runc or crun']);
});

test('dns table: medians per server, ratios oriented so that > 1.00x means burrow leads, errors listed', async (t) => {
  const { renderDns } = await import('./dns.js');
  const run = (p50Us: number, qps: number, cpuUsPerQuery: number) => ({ p50Us, p99Us: p50Us * 2, lookups: 100, errors: 0, qps, lost: 0, cpuUsPerQuery, rssKiB: 51200, pssKiB: 20480 });
  const text = renderDns({
    records: 1000,
    versions: { burrow: '0.1.0', dnsmasq: '2.90' },
    runs: { burrow: [run(20, 100_000, 10), run(30, 90_000, 12), run(25, 80_000, 11)], dnsmasq: [run(50, 50_000, 22)] },
    errors: { 'aardvark-dns|run 1': 'did not answer' },
  });
  const row = (name: string) => text.split('\n').find((l) => l.startsWith(name))!.trim().split(/\s{2,}/);
  t.deepEqual(row('burrow').slice(0, 8), ['burrow', '0.1.0', '25.0', '50.0', '90000', '11.0', '50.0', '20.0']);
  t.deepEqual(row('dnsmasq').slice(-3), ['2.00x', '1.80x', '2.00x'], 'latency and CPU: anchor/burrow; rate: burrow/anchor');
  t.regex(text, /dns aardvark-dns\|run 1: did not answer/);
});

test('podman-helpers table: each helper beside burrow\'s, ratios oriented so > 1.00x means burrow\'s is faster', (t) => {
  const out = renderHelpers({
    versions: { podman: 'podman version 4.3.1', netavark: '1.4.0' },
    rootful: { netavark: { setupMs: [200, 210, 220], teardownMs: [300, 300, 300] }, burrow: { setupMs: [100, 100, 100], teardownMs: [600, 600, 600] } },
    rootless: {},
    rootlessTput: { slirp4netns: { egressGbps: [1, 2, 3], forwardGbps: [4, 4, 4] }, burrow: { egressGbps: [6, 6, 6], forwardGbps: [2, 2, 2] } },
    errors: { 'rootless-anchor': 'not measured: slirp4netns is not installed' },
  });
  t.regex(out, /burrow's slirp4netns\s+6\.00\s+2\.00\s+3\.00x\s+0\.50x/, 'throughput ratios are burrow over the anchor');
  t.regex(out, /rootful\s+netavark 1\.4\.0\s+210\s+300\s+2\.10x\s+0\.50x/);
  t.regex(out, /rootful\s+burrow's netavark\s+100\s+600/);
  t.regex(out, /podman-helpers rootless-anchor: not measured/);
});
