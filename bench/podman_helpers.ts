/**
 * The bench's podman-helpers section: Debian's podman 4.3.1 on burrow's drop-ins (bin/compat, as
 * `burrow compat install` writes them) against the same podman on the helpers they replace, in
 * the same run, interleaved (A, B, A, B ...):
 *   - rootful, `network_backend = "netavark"`: netavark 1.4 with aardvark-dns 1.4 (Debian's,
 *     unpacked by scripts/setup.sh) against burrow's netavark with burrow's aardvark-dns, chosen
 *     by `helper_binaries_dir`; a DNS-enabled bridge network; `podman run -d` (setup) and
 *     `podman rm -f -t 0` (teardown) wall times;
 *   - rootless, as the bench user: slirp4netns 1.2 against burrow's slirp4netns, chosen by
 *     `network_cmd_path` (podman passes both --enable-sandbox --enable-seccomp); `podman run -d
 *     -p` (setup) and `podman rm -f -t 0` wall times; then iperf3 TCP throughput, egress (the
 *     container's client to a server in a namespace of the bench's, through the helper) and
 *     port forward (a client on the host's loopback to the container's server, through `-p`,
 *     which podman's rootlessport serves). The rootless podman runs in a "host" namespace of the
 *     section's own, with that server's namespace beyond a veth.
 * Rootful podman keeps its run dir in /run/containers and its netns files in /run/netns: the
 * section holds a mount namespace of its own with a tmpfs on each, so the host's stay untouched.
 * Containers run a busybox rootfs that only waits.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { IperfError, iperfNotReady, parseIperf } from './iperf.js';
import { formatRatio, renderTable, summarize } from './stats.js';

export const DEBIAN_HELPERS = '/opt/burrow-anchors';

export interface HelperTimes {
  setupMs: number[];
  teardownMs: number[];
}

export interface HelpersReport {
  versions: Record<string, string>;
  /** 'netavark' (Debian's 1.4) and 'burrow' */
  rootful: Record<string, HelperTimes>;
  /** 'slirp4netns' and 'burrow' */
  rootless: Record<string, HelperTimes>;
  /** rootless iperf3 TCP throughput, Gbit/s per run: 'slirp4netns' and 'burrow' */
  rootlessTput?: Record<string, { egressGbps: number[]; forwardGbps: number[] }>;
  errors: Record<string, string>;
}

export interface HelpersBenchOptions {
  runs: number;
  /** the checkout (for bin/burrow) */
  root: string;
  /** a directory of the bench's, removed by the caller */
  dir: string;
  user: string;
  uid: number;
  busybox: string;
  runtime: string;
  /** rootful, rootless, or both */
  modes: Array<'rootful' | 'rootless'>;
  progress(text: string): void;
  stopping(): boolean;
}

const ms = () => Number(process.hrtime.bigint() / 1000n) / 1000;

function run(argv: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { env, encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }));
  });
}

function rootfs(dir: string, busybox: string): string {
  const r = path.join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp']) fs.mkdirSync(path.join(r, d), { recursive: true });
  fs.copyFileSync(busybox, path.join(r, 'bin', 'busybox'));
  fs.chmodSync(path.join(r, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'sleep']) if (!fs.existsSync(path.join(r, 'bin', a))) fs.symlinkSync('busybox', path.join(r, 'bin', a));
  return r;
}

/** Adds the host's iperf3 and the libraries it loads (ldd) to a rootfs, at their own paths. */
function addIperf(r: string): void {
  const libs = spawnSync('ldd', ['/usr/bin/iperf3'], { encoding: 'utf8' }).stdout.split('\n').map((l) => /(\/\S+) \(0x/.exec(l)?.[1]).filter((x): x is string => !!x);
  for (const f of ['/usr/bin/iperf3', ...libs]) {
    fs.mkdirSync(path.join(r, path.dirname(f)), { recursive: true });
    fs.copyFileSync(fs.realpathSync(f), path.join(r, f));
    fs.chmodSync(path.join(r, f), 0o755);
  }
}

const conf = (lines: string[]) => `${['[containers]', 'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]', '[engine]', 'cgroup_manager = "cgroupfs"', 'events_logger = "none"', ...lines].join('\n')}\n`;

/** One timed podman run -d / rm pair; throws with podman's last line on failure. */
async function cycle(podman: (args: string[]) => Promise<{ code: number; out: string }>, name: string, runArgs: string[], into: HelperTimes): Promise<void> {
  const t0 = ms();
  const r = await podman(['run', '-d', '--name', name, ...runArgs]);
  const t1 = ms();
  if (r.code !== 0) {
    await podman(['rm', '-f', '-t', '0', name]);
    throw new Error(`podman run: ${r.out.trim().split('\n').slice(-1)[0]}`);
  }
  const rm = await podman(['rm', '-f', '-t', '0', name]);
  const t2 = ms();
  if (rm.code !== 0) throw new Error(`podman rm: ${rm.out.trim().split('\n').slice(-1)[0]}`);
  into.setupMs.push(t1 - t0);
  into.teardownMs.push(t2 - t1);
}

async function rootful(o: HelpersBenchOptions, report: HelpersReport): Promise<void> {
  const debian = ['netavark', 'aardvark-dns'].map((b) => path.join(DEBIAN_HELPERS, b, 'usr', 'lib', 'podman', b));
  if (!debian.every((b) => fs.existsSync(b))) {
    report.errors['rootful-anchor'] = `not measured: ${debian.filter((b) => !fs.existsSync(b)).join(', ')} missing (scripts/setup.sh unpacks them)`;
    return;
  }
  const dir = path.join(o.dir, 'helpers-rootful');
  const dirs = { netavark: path.join(dir, 'debian'), burrow: path.join(dir, 'burrow') };
  fs.mkdirSync(dirs.netavark, { recursive: true });
  for (const b of debian) fs.symlinkSync(b, path.join(dirs.netavark, path.basename(b)));
  const inst = spawnSync(process.execPath, [path.join(o.root, 'dist', 'burrow.cjs'), 'compat', 'install', '--dir', dirs.burrow], { encoding: 'utf8' });
  if (inst.status !== 0) throw new Error(`burrow compat install: ${inst.stderr.trim()}`);
  report.versions['netavark'] = spawnSync(debian[0], ['version'], { encoding: 'utf8' }).stdout.match(/"version": "([^"]+)"/)?.[1] ?? '?';
  const fsRoot = rootfs(dir, o.busybox);
  const confs: Record<string, string> = {};
  for (const [k, d] of Object.entries(dirs)) {
    confs[k] = path.join(dir, `${k}.conf`);
    fs.writeFileSync(confs[k], conf([`runtime = "${o.runtime}"`, `helper_binaries_dir = ["${d}"]`, '[network]', 'network_backend = "netavark"', `network_config_dir = "${path.join(dir, 'networks')}"`]));
  }
  // a mount namespace of the section's own: podman's /run/netns and /run/containers on tmpfs
  const holder: ChildProcess = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /run/netns && mount -t tmpfs none /run/containers && echo up && exec sleep 100000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise((resolve, reject) => {
      holder.stdout!.once('data', resolve);
      holder.once('exit', () => reject(new Error('the mount namespace holder exited')));
    });
    const base = (k: string) => ['nsenter', '-t', String(holder.pid), '-m', '--', 'env', `CONTAINERS_CONF=${confs[k]}`, 'podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--storage-driver', 'vfs'];
    const podman = (k: string) => (args: string[]) => run([...base(k), ...args], process.env);
    const net = await podman('burrow')(['network', 'create', '--subnet', '10.79.0.0/24', 'bhnet']);
    if (net.code !== 0) throw new Error(`podman network create: ${net.out.trim()}`);
    for (const k of Object.keys(dirs)) report.rootful[k] = { setupMs: [], teardownMs: [] };
    for (let i = 0; i < o.runs + 1 && !o.stopping(); i++) {
      for (const k of Object.keys(dirs)) {
        o.progress(`podman-helpers: rootful run ${i + 1}/${o.runs + 1} ${k}`);
        const scratch: HelperTimes = { setupMs: [], teardownMs: [] };
        try {
          // the first run of each warms podman's storage and page cache: not counted
          await cycle(podman(k), `bh-${k}-${i}`, ['--network', 'bhnet', '--rootfs', fsRoot, '/bin/sh', '-c', 'exec sleep 100000'], i === 0 ? scratch : report.rootful[k]);
        } catch (err) {
          report.errors[`rootful|${k}`] = (err as Error).message;
        }
      }
    }
    await podman('burrow')(['rm', '-af', '-t', '0']);
  } finally {
    holder.kill('SIGKILL');
  }
}

/** One iperf3 client run (3 s, JSON), retried while the server is not listening yet. */
async function iperfClient(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const r = await run([...argv, '-t', '3', '-J'], env, 30_000);
    try {
      return parseIperf(r.out).gbps;
    } catch (err) {
      if (!(err instanceof IperfError) || !iperfNotReady(err.message) || attempt >= 20) throw err;
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

async function rootless(o: HelpersBenchOptions, report: HelpersReport): Promise<void> {
  const real = spawnSync('sh', ['-c', 'command -v slirp4netns'], { encoding: 'utf8' }).stdout.trim();
  if (!real) {
    report.errors['rootless-anchor'] = 'not measured: slirp4netns is not installed';
    return;
  }
  report.versions['slirp4netns'] = /version (\S+)/.exec(spawnSync(real, ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? '?';
  fs.chmodSync(o.dir, 0o711); // the bench user reaches its own directory below the bench's
  const dir = path.join(o.dir, 'helpers-rootless');
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const inst = spawnSync(process.execPath, [path.join(o.root, 'dist', 'burrow.cjs'), 'compat', 'install', '--dir', path.join(dir, 'burrow')], { encoding: 'utf8' });
  if (inst.status !== 0) throw new Error(`burrow compat install: ${inst.stderr.trim()}`);
  const cmds: Record<string, string> = { slirp4netns: real, burrow: path.join(dir, 'burrow', 'slirp4netns') };
  const fsRoot = rootfs(dir, o.busybox);
  const iperf = fs.existsSync('/usr/bin/iperf3');
  if (iperf) addIperf(fsRoot);
  const xdg = path.join(dir, 'xdg');
  fs.mkdirSync(xdg, { mode: 0o700 });
  const confs: Record<string, string> = {};
  for (const [k, c] of Object.entries(cmds)) {
    confs[k] = path.join(dir, `${k}.conf`);
    fs.writeFileSync(confs[k], conf([`runtime = "${o.runtime}"`, `network_cmd_path = "${c}"`]));
  }
  spawnSync('chown', ['-R', `${o.uid}:${o.uid}`, dir]);
  // the section's "host" namespace and a "remote" one beyond it, for the egress server
  const ns = { host: `burrow-bhh-${process.pid}`, remote: `burrow-bhr-${process.pid}` };
  const ip = (...a: string[]) => {
    const r = spawnSync('ip', a, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${a.join(' ')}: ${r.stderr.trim()}`);
  };
  let server: ChildProcess | null = null;
  const podman = (k: string) => (args: string[]) => run(['nsenter', `--net=/run/netns/${ns.host}`, '--', 'setpriv', `--reuid=${o.user}`, `--regid=${o.user}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${o.user}`, `USER=${o.user}`, 'PATH=/usr/bin:/bin:/usr/sbin:/sbin', `XDG_RUNTIME_DIR=${xdg}`, `CONTAINERS_CONF=${confs[k]}`,
    'podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--tmpdir', path.join(dir, 'tmp'), '--storage-driver', 'vfs', ...args], process.env);
  for (const k of Object.keys(cmds)) report.rootless[k] = { setupMs: [], teardownMs: [] };
  try {
    ip('netns', 'add', ns.host);
    ip('netns', 'add', ns.remote);
    ip('-n', ns.host, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'dn0', 'netns', ns.remote);
    for (const [n, dev, addr] of [[ns.host, 'up0', '10.81.0.1/24'], [ns.remote, 'dn0', '10.81.0.2/24']]) {
      ip('-n', n, 'addr', 'add', addr, 'dev', dev);
      ip('-n', n, 'link', 'set', dev, 'up');
      ip('-n', n, 'link', 'set', 'lo', 'up');
    }
    for (let i = 0; i < o.runs + 1 && !o.stopping(); i++) {
      for (const k of Object.keys(cmds)) {
        o.progress(`podman-helpers: rootless run ${i + 1}/${o.runs + 1} ${k}`);
        const scratch: HelperTimes = { setupMs: [], teardownMs: [] };
        try {
          await cycle(podman(k), `bh-${k}-${i}`, ['-p', `${18300 + i}:80`, '--rootfs', fsRoot, '/bin/sh', '-c', 'exec sleep 100000'], i === 0 ? scratch : report.rootless[k]);
        } catch (err) {
          report.errors[`rootless|${k}`] = (err as Error).message;
        }
      }
    }
    if (!iperf) report.errors['rootless-throughput'] = 'not measured: iperf3 is not installed';
    else {
      server = spawn('ip', ['netns', 'exec', ns.remote, 'iperf3', '-s', '-B', '10.81.0.2', '-p', '5301'], { stdio: 'ignore' });
      report.rootlessTput = {};
      for (const k of Object.keys(cmds)) report.rootlessTput[k] = { egressGbps: [], forwardGbps: [] };
      const reps = Math.max(1, Math.min(3, o.runs));
      for (let i = 0; i < reps && !o.stopping(); i++) {
        for (const k of Object.keys(cmds)) {
          o.progress(`podman-helpers: rootless throughput ${i + 1}/${reps} ${k}`);
          const name = `bt-${k}-${i}`;
          try {
            const r = await podman(k)(['run', '-d', '--name', name, '-p', '18400:5201', '--rootfs', fsRoot, '/usr/bin/iperf3', '-s']);
            if (r.code !== 0) throw new Error(`podman run: ${r.out.trim().split('\n').slice(-1)[0]}`);
            report.rootlessTput[k].forwardGbps.push(await iperfClient(['nsenter', `--net=/run/netns/${ns.host}`, '--', 'iperf3', '-c', '127.0.0.1', '-p', '18400'], process.env));
            const eg = await podman(k)(['exec', name, '/usr/bin/iperf3', '-c', '10.81.0.2', '-p', '5301', '-t', '3', '-J']);
            report.rootlessTput[k].egressGbps.push(parseIperf(eg.out).gbps);
          } catch (err) {
            report.errors[`rootless-throughput|${k}`] = (err as Error).message;
          } finally {
            await podman(k)(['rm', '-f', '-t', '0', name]);
          }
        }
      }
    }
  } finally {
    server?.kill('SIGKILL');
    await podman('burrow')(['rm', '-af', '-t', '0']);
    spawnSync('pkill', ['-9', '-u', o.user, '-f', 'podman pause|catatonit']);
    for (const n of Object.values(ns)) spawnSync('ip', ['netns', 'del', n]);
  }
}

export async function helpersBench(o: HelpersBenchOptions): Promise<HelpersReport> {
  const report: HelpersReport = { versions: { podman: spawnSync('podman', ['--version'], { encoding: 'utf8' }).stdout.trim() }, rootful: {}, rootless: {}, errors: {} };
  for (const mode of o.modes) {
    if (o.stopping()) break;
    try {
      await (mode === 'rootful' ? rootful(o, report) : rootless(o, report));
    } catch (err) {
      report.errors[mode] = (err as Error).message;
    }
  }
  return report;
}

export function renderHelpers(r: HelpersReport): string {
  const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : 'n/a');
  const p50 = (xs: number[]) => summarize(xs).p50;
  const rows = [['mode', 'podman on', 'run -d ms p50', 'rm ms p50', 'run -d vs burrow', 'rm vs burrow']];
  for (const [mode, times, anchor] of [['rootful', r.rootful, 'netavark'], ['rootless', r.rootless, 'slirp4netns']] as const) {
    const own = times.burrow;
    for (const k of [anchor, 'burrow']) {
      const t = times[k];
      if (!t?.setupMs.length) continue;
      const label = k === 'burrow' ? `burrow's ${anchor}` : `${k} ${r.versions[k] ?? ''}`.trim();
      const vs = (key: keyof HelperTimes) => (k === 'burrow' || !own?.[key].length ? '' : formatRatio(p50(t[key]), p50(own[key])));
      rows.push([mode, label, fmt(p50(t.setupMs)), fmt(p50(t.teardownMs)), vs('setupMs'), vs('teardownMs')]);
    }
  }
  const lines = [`\npodman-helpers: ${r.versions.podman} on its helpers and on burrow's drop-ins (ratios > 1.00x mean burrow's is faster)`, rows.length > 1 ? renderTable(rows) : '  nothing measured'];
  const tp = r.rootlessTput;
  if (tp && (tp.slirp4netns || tp.burrow)) {
    const g = (xs: number[] | undefined) => (xs?.length ? summarize(xs).p50 : NaN);
    const trows = [['rootless iperf3 TCP', 'egress Gbit/s p50', 'forward Gbit/s p50', 'egress vs anchor', 'forward vs anchor']];
    for (const k of ['slirp4netns', 'burrow']) {
      const t = tp[k];
      if (!t) continue;
      const mine = k === 'burrow';
      trows.push([mine ? 'burrow\'s slirp4netns' : `slirp4netns ${r.versions.slirp4netns ?? ''}`.trim(), g(t.egressGbps).toFixed(2), g(t.forwardGbps).toFixed(2),
        mine && tp.slirp4netns ? formatRatio(g(t.egressGbps), g(tp.slirp4netns.egressGbps)) : '', mine && tp.slirp4netns ? formatRatio(g(t.forwardGbps), g(tp.slirp4netns.forwardGbps)) : '']);
    }
    lines.push(renderTable(trows));
  }
  for (const [k, e] of Object.entries(r.errors)) lines.push(`  podman-helpers ${k}: ${e}`);
  return lines.join('\n');
}
