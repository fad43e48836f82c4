/**
 * `burrow bench`: runs the benchmark program (dist/bench.cjs, built from bench/) with the given
 * options. It is a program of its own because it re-executes itself inside the namespaces it
 * creates and as the agents it starts there.
 */
import { Command } from 'commander';
import path from 'node:path';
import { installRoot } from '../config.js';
import fs from 'node:fs';
import { BurrowError } from '../../native/errors.js';

export function benchCommand(setExit: (code: number) => void): Command {
  return new Command('bench')
    .description('rootful vs rootless throughput, latency, HTTP and setup time, with the reference CNI plugins, podman, pasta and slirp4netns measured in the same run (needs root)')
    .option('--duration <s>', 'seconds per throughput/latency/HTTP measurement (default 2, with --full 3)')
    .option('--runs <n>', 'interleaved runs of every path and tool', '3')
    .option('--parallel <p>', 'streams for the parallel TCP measurement', '4')
    .option('--full', 'every path and section, scale up to 100 containers (45 to 55 min on a 2-core VM; the default, one path of each kind with every anchor, about 9)')
    .option('--only <list>', 'comma-separated paths and sections (bridge-c2h, bridge-h2c, portmap-lo, portmap-remote, bridge-c2c, macvlan-c2c, rootless-out, rootless-fwd-lo, rootless-fwd-remote, rootless-c2c, rootless-pod, rootless-net-c2c, rootless-net-fwd-lo, rootless-net-fwd-remote, scale, cpu, dns, podman-helpers; default: bridge-c2c, rootless-fwd-lo, rootless-net-c2c and every section)')
    .option('--json <file>', 'write every raw sample, the machine and the tool versions as JSON')
    .option('--svg <file>', 'write the bar chart and scale curves as SVG')
    .option('--anchors <mode>', 'auto: measure the installed established tools too; none: burrow only', 'auto')
    .option('--scale <list>', 'container counts for the scale section (rootless: those up to 50; default 1,10, with --full 1,10,50,100)')
    .action(async (o: { duration?: string; runs: string; parallel: string; full?: boolean; only?: string; json?: string; svg?: string; anchors: string; scale?: string }) => {
      const bench = path.join(installRoot(), 'dist', 'bench.cjs');
      if (!fs.existsSync(bench)) throw new BurrowError('ENOENT', 'dist/bench.cjs is not built: run "npm ci" or "npm run build"');
      const args = [...(o.duration ? ['--duration', o.duration] : []), '--runs', o.runs, '--parallel', o.parallel, '--anchors', o.anchors, ...(o.full ? ['--full'] : []), ...(o.scale ? ['--scale', o.scale] : []), ...(o.only ? ['--only', o.only] : []), ...(o.json ? ['--json', path.resolve(o.json)] : []), ...(o.svg ? ['--svg', path.resolve(o.svg)] : [])];
      const { spawn } = await import('node:child_process');
      const child = spawn(process.execPath, [bench, ...args], { stdio: 'inherit' });
      // Ctrl-C reaches the bench through the terminal's process group; it cleans up and exits.
      const ignore = () => undefined;
      process.on('SIGINT', ignore);
      setExit(await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1))));
      process.off('SIGINT', ignore);
    });
}
