/**
 * `burrow bench`: rootful against rootless networking, burrow against the established tools, in
 * one process on one machine, always as ratios.
 *
 * Every container is a real `burrow run` (so setup and teardown are what users get). Rootful
 * paths run twice, once with burrow's plugins and once with Debian's reference CNI plugins driven
 * by the same runtime (the "reference" anchor, cni_path = /usr/lib/cni); rootless paths run on
 * burrow's userspace stack and, where installed, on pasta and slirp4netns (`--network pasta` /
 * `--network slirp4netns`, which hand the container to those tools). Where podman is installed,
 * rootful paths also run as `podman run -d` on its CNI backend with the reference plugins (the
 * "podman" anchor: podman's own start-up and teardown around the same plugins; bench/podman.ts).
 * Servers (iperf3, an HTTP server, a TCP echo server) and clients (iperf3, undici, a 1-byte
 * request/response loop) are started by nsenter in the right network namespace, so each path
 * carries exactly its traffic.
 *
 * Runs are interleaved: run 1 of every path and tool, then run 2, ... so drift hits every tool
 * alike. A ratio whose runs spread by more than ±25 % is flagged.
 *
 * Isolation: the bench re-runs itself inside a "host" network namespace of its own linked to a
 * "remote" one (10.98.0.1 <-> 10.98.0.2), with its own burrow state, CNI config and cache in a
 * temp dir and a throwaway user for rootless runs. Every process it starts carries a tag in its
 * environment; at the end (also on Ctrl-C or a crash) the outer process kills every tagged
 * process and removes the namespaces, the user and the temp dir, so nothing is left behind.
 *
 * The modules: plan (paths, metrics, options), sandbox (the outer process), procs (tagged
 * processes), topology (containers per path), measure (the rounds, scale, CPU), report (table,
 * chart); this file runs the plan inside the sandbox and prints the report.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agent } from './agent.js';
import { dnsBench, type DnsReport } from './dns.js';
import { cniSetupBench, type CniReport } from './setup_latency.js';
import { iperfVersion } from './iperf.js';
import { cpuPerGb, measurePath, rssWithFlows, scalePoint, USER_NET_TOOL, type Samples } from './measure.js';
import { anchorsOf, cniRounds, estimateSeconds, parseOptions, PATHS, runOrder } from './plan.js';
import { podmanLayout, preparePodman } from './podman.js';
import { helpersBench, type HelpersReport } from './podman_helpers.js';
import { CLI, firstLine, have, REFERENCE_DIR, ROOT, TAG, tracked, USER } from './procs.js';
import { chartOf, renderReport, type Report } from './report.js';
import { outer } from './sandbox.js';
import { renderSvg } from './svg.js';
import { burrow, whoRuns, type Env } from './topology.js';

// ---- inner: the run -------------------------------------------------------------------------

async function inner(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  const { dir, host, remote } = JSON.parse(process.env.BURROW_BENCH_INNER!) as { dir: string; host: string; remote: string };
  const env: Env = { dir, host, remote, configs: { own: path.join(dir, 'own.toml'), ref: path.join(dir, 'ref.toml'), pm: path.join(dir, 'pm.toml') }, uid: Number(spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout.trim()), seq: { names: 0, ports: 0 } };
  let stopping = false;
  process.on('SIGINT', () => {
    stopping = true;
  });
  const { refOk, podmanOk, podmanGaps, tools } = anchorsOf(o);
  const runtime = have('crun') ? 'crun' : 'runc';
  const estimate = estimateSeconds(o, tools, podmanOk);
  const timings: Record<string, number> = {};
  /** Starts the clock of one part of the run; the function it returns stops it (the report's timings, in s). */
  const mark = (part: string) => {
    const s = performance.now();
    return () => void (timings[part] = (timings[part] ?? 0) + (performance.now() - s) / 1000);
  };
  const setupDone = mark('setup');
  const versions: Record<string, string> = {
    burrow: firstLine([process.execPath, CLI, '--version']),
    iperf3: iperfVersion(firstLine(['iperf3', '--version'])),
    node: process.version,
    ...(refOk ? { 'cni-reference': firstLine(['dpkg-query', '-W', '-f', '${Version}', 'containernetworking-plugins']) || 'installed' } : {}),
    // Debian's 2023 pasta says "pasta unknown version": the package version names the snapshot
    ...(tools.rootless.includes('pasta') ? { pasta: [firstLine(['pasta', '--version']), firstLine(['dpkg-query', '-W', '-f', 'passt ${Version}', 'passt'])].filter((v) => v && !/unknown/.test(v)).join(', ') || 'unknown' } : {}),
    ...(tools.rootless.includes('slirp4netns') ? { slirp4netns: firstLine(['slirp4netns', '--version']) } : {}),
    ...(podmanOk ? { podman: `${firstLine(['podman', '--version'])} (CNI backend, reference plugins, runtime ${runtime})` } : o.anchors === 'auto' ? { podman: `not measured: missing ${podmanGaps.join(', ')}` } : {}),
  };
  if (podmanOk) {
    preparePodman(podmanLayout(dir), { referenceDir: REFERENCE_DIR, runtime, defaultNetwork: 'bbpodman', busybox: firstLine(['sh', '-c', 'command -v busybox']) });
    await burrow(env, 'pm', ['network', 'create', '--disable-dns', '--subnet', '10.86.0.0/16', '-o', 'com.docker.network.bridge.name=pbr0', 'bbpodman']);
  }
  const paths = PATHS.filter((p) => o.only.includes(p.name));
  if (paths.some((p) => p.name.startsWith('rootless-net')) || o.only.includes('scale')) await burrow(env, 'user', ['network', 'create', '--disable-dns', '--subnet', '10.58.0.0/24', 'benchun']);
  if (paths.some((p) => p.name === 'macvlan-c2c')) {
    for (const [who, subnet] of [['own', '10.77.1.0/24'], ['ref', '10.77.2.0/24'], ['pm', '10.77.3.0/24']] as const) {
      if ((who === 'ref' && !refOk) || (who === 'pm' && !podmanOk)) continue;
      await burrow(env, who, ['network', 'create', '-d', 'macvlan', '-o', 'parent=mvpar0', '--subnet', subnet, 'benchmv']);
    }
  }
  setupDone();
  const samples: Samples = {};
  const errors: Record<string, string> = {};
  const jobs = paths.flatMap((p) => (p.kind === 'rootful' ? tools.rootful : p.kind === 'rootless' ? tools.rootless : ['burrow']).map((tool) => ({ p, tool })));
  const total = jobs.length * o.runs;
  let done = 0;
  const t0 = Date.now();
  for (let r = 0; r < o.runs && !stopping; r++) {
    for (const { p, tool } of runOrder(jobs, r)) {
      if (stopping) break;
      const progress = (what: string) => process.stderr.write(`\r\x1b[K[${String(done + 1).padStart(3)}/${total} · ${Math.round((Date.now() - t0) / 1000)} s] run ${r + 1}/${o.runs} ${p.name} ${tool}: ${what}`);
      const measured = mark(`${p.name}|${tool}`);
      try {
        await measurePath(env, o, p.name, tool, samples, errors, progress);
      } catch (err) {
        errors[`${p.name}|setup|${tool}`] = (err as Error).message.split('\n')[0];
      }
      measured();
      done++;
    }
  }
  const scale: Report['scale'] = { rootful: [], rootless: [] };
  const scaled = mark('scale');
  if (o.only.includes('scale') && !stopping) {
    for (const n of o.scale) {
      for (const tool of tools.rootful) {
        process.stderr.write(`\r\x1b[Kscale: ${n} rootful containers, ${tool}`);
        try {
          scale.rootful.push(await scalePoint(env, whoRuns(tool, 'rootful'), tool, n));
        } catch (err) {
          errors[`scale|${n}|${tool}`] = (err as Error).message;
        }
      }
    }
    for (const n of o.scale.filter((x) => x <= 50)) {
      for (const tool of [...tools.rootless, USER_NET_TOOL]) {
        process.stderr.write(`\r\x1b[Kscale: ${n} rootless ${tool === USER_NET_TOOL ? 'containers on one user network' : `stacks, ${tool}`}`);
        try {
          scale.rootless.push(await scalePoint(env, 'user', tool, n));
        } catch (err) {
          errors[`scale|${n}|${tool}`] = (err as Error).message;
        }
      }
    }
  }
  const flowsRss: Record<string, number> = {};
  if (o.only.includes('scale') && !stopping) {
    for (const tool of tools.rootless) {
      process.stderr.write(`\r\x1b[Kscale: 1000 open connections, ${tool}`);
      try {
        flowsRss[tool] = await rssWithFlows(env, tool, 1000);
      } catch (err) {
        errors[`flows|${tool}`] = (err as Error).message;
      }
    }
  }
  scaled();
  const cpu: Record<string, number[]> = {};
  const cpuDone = mark('cpu');
  if (o.only.includes('cpu') && !stopping) {
    for (let r = 0; r < o.runs; r++) {
      for (const tool of tools.rootless) {
        process.stderr.write(`\r\x1b[Kcpu per GB: run ${r + 1}/${o.runs} ${tool}`);
        try {
          (cpu[tool] ??= []).push(await cpuPerGb(env, o, tool));
        } catch (err) {
          errors[`cpu|${tool}`] = (err as Error).message;
        }
      }
    }
  }
  cpuDone();
  let dns: DnsReport | undefined;
  const dnsDone = mark('dns');
  if (o.only.includes('dns') && !stopping) {
    const { netnsCreate, netnsRemove } = await import('../native/mod.js');
    dns = await dnsBench({
      runs: o.runs, durationS: o.durationS, records: 1000, anchors: o.anchors === 'auto', clientNetns: `bbd${TAG}`, netnsCreate, netnsRemove, root: ROOT,
      progress: (t) => process.stderr.write(`\r\x1b[K${t}`), stopping: () => stopping,
    });
    for (const [k, e] of Object.entries(dns.errors)) if (k.startsWith('burrow|') || k === 'setup') errors[`dns|${k}`] = e;
  }
  dnsDone();
  let cni: CniReport | undefined;
  const cniDone = mark('cni');
  if (o.only.includes('cni') && !stopping) {
    // podman's default chain (and, with --full, bridge + host-local) under burrow's runtime: the
    // reference plugins, burrow's executables cold (script and native launcher), through `burrow
    // cni serve`, and in-process; the 1000-port chain, a minute per reference ADD, stays in the script
    try {
      cni = await cniSetupBench({
        rounds: cniRounds(o), chains: o.full ? ['podman-default', 'bridge+host-local'] : ['podman-default'],
        progress: (t) => process.stderr.write(`\r\x1b[Kcni: ${t}`), stopping: () => stopping, netnsName: (i) => `bbc${TAG}${i}`,
      });
    } catch (err) {
      errors['cni|setup'] = (err as Error).message;
    }
  }
  cniDone();
  let helpers: HelpersReport | undefined;
  const helpersDone = mark('podman-helpers');
  if (o.only.includes('podman-helpers') && !stopping && o.anchors === 'auto' && podmanOk) {
    helpers = await helpersBench({
      runs: o.runs, root: ROOT, dir, user: USER, uid: env.uid, busybox: firstLine(['sh', '-c', 'command -v busybox']), runtime, modes: ['rootful', 'rootless'],
      progress: (t) => process.stderr.write(`\r\x1b[K${t}`), stopping: () => stopping,
    });
    for (const [k, e] of Object.entries(helpers.errors)) if (k.includes('burrow') || k === 'rootful' || k === 'rootless') errors[`podman-helpers|${k}`] = e;
  }
  helpersDone();
  process.stderr.write('\r\x1b[K');
  const osName = /^PRETTY_NAME="?([^"\n]*)/m.exec(fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '')?.[1] ?? os.type();
  const report: Report = {
    date: new Date().toISOString(),
    machine: { kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', memGiB: Math.round(os.totalmem() / 2 ** 30), os: osName, node: process.version },
    versions, options: o, tools, samples, errors, scale, flowsRss, cpuPerGb: cpu, ...(dns ? { dns } : {}), ...(cni ? { cni } : {}), ...(helpers ? { helpers } : {}),
    timings, estimateS: estimate,
  };
  console.log(renderReport(report));
  if (o.json) fs.writeFileSync(o.json, `${JSON.stringify(report, null, 1)}\n`);
  if (o.svg) fs.writeFileSync(o.svg, renderSvg(chartOf(report)));
  if (o.json || o.svg) console.log([o.json && `JSON: ${o.json}`, o.svg && `SVG: ${o.svg}`].filter(Boolean).join('  '));
  return stopping ? 130 : 0;
}

/** Entry of dist/bench.cjs: the agent roles, the inner run (inside the bench's netns), or the outer. */
export function main(argv: string[]): void {
  const job = argv[0] === '--agent' ? agent(argv.slice(1)).then(() => 0) : process.env.BURROW_BENCH_INNER ? inner(argv) : outer(argv);
  job.then((code) => {
    if (argv[0] !== '--agent' || code !== 0) process.exit(code);
  }, (err: Error) => {
    for (const c of tracked) c.kill('SIGKILL');
    console.error(`burrow bench: ${err.message}`);
    process.exit(1);
  });
}
