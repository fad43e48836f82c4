/**
 * The bench's DNS section: a container's lookups of container names against its gateway's
 * resolver, for burrow's server (`dnsname serve`), dnsmasq configured as containers/dnsname
 * configures it, and aardvark-dns 1.4 (Debian's, from /usr/lib/podman or unpacked from the .deb
 * by scripts/setup.sh), all serving the same network of N records (1,000 by default).
 *
 * Topology, inside the caller's network namespace (the bench's "host"): a bridge with the
 * gateway 10.89.0.1/16 and a client namespace of its own at 10.89.0.2, which is the network's
 * first record (burrow and aardvark answer only their networks' members). Every server binds
 * 10.89.0.1:53 in turn, so runs are interleaved: server A, B, C, A, B, C ... Each run:
 *   - latency: bench/dns_client.py, one query outstanding, for the run's duration: p50 and p99;
 *   - rate: dnsperf with 8 clients, one query outstanding each (-c 8 -q 8): queries per second;
 *   - memory: RSS and PSS of the process bound to port 53, after the load.
 * Queries are the records' names in the network's domain (`c0007.dns.podman`, type A), in turn.
 * Nothing is forwarded: dnsmasq gets `no-resolv`, and every name asked is local.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatRatio, renderTable, summarize } from './stats.js';

export const DNS_SERVERS = ['burrow', 'dnsmasq', 'aardvark-dns'] as const;
export type DnsServerName = (typeof DNS_SERVERS)[number];

export interface DnsRun {
  p50Us: number;
  p99Us: number;
  /** lookups the latency client made, and those unanswered or answered wrongly */
  lookups: number;
  errors: number;
  qps: number;
  /** dnsperf's lost queries */
  lost: number;
  /** the server's CPU time (user + system, all threads) per query at a fixed 10,000 queries/s */
  cpuUsPerQuery: number;
  rssKiB: number;
  pssKiB: number;
}

export interface DnsReport {
  records: number;
  versions: Partial<Record<DnsServerName, string>>;
  runs: Partial<Record<DnsServerName, DnsRun[]>>;
  errors: Record<string, string>;
}

export interface DnsBenchOptions {
  runs: number;
  durationS: number;
  records: number;
  /** false: burrow's server only */
  anchors: boolean;
  /** where the client namespace is made (a name the bench's stale collection knows) */
  clientNetns: string;
  netnsCreate: (name: string) => string;
  netnsRemove: (p: string) => boolean;
  root: string;
  progress: (text: string) => void;
  stopping: () => boolean;
}

const GATEWAY = '10.89.0.1';
const NETWORK = 'benchdns';
const DOMAIN = 'dns.podman';
const DNSMASQ = '/usr/sbin/dnsmasq';
const AARDVARK = ['/usr/lib/podman/aardvark-dns', '/opt/burrow-anchors/aardvark-dns/usr/lib/podman/aardvark-dns'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The address of record i: 10.89.0.2, 10.89.0.3, ... (record 0 is the client). */
function recordAddress(i: number): string {
  const n = 2 + i;
  return `10.89.${n >> 8}.${n & 255}`;
}

function sh(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

export function aardvarkBinary(): string | undefined {
  return AARDVARK.find((p) => fs.existsSync(p));
}

/** Which servers this machine can run, and their versions. */
export function dnsServers(root: string): Partial<Record<DnsServerName, string>> {
  const v: Partial<Record<DnsServerName, string>> = { burrow: sh([process.execPath, path.join(root, 'dist', 'burrow.cjs'), '--version']).trim() };
  if (fs.existsSync(DNSMASQ)) v.dnsmasq = /version (\S+)/.exec(sh([DNSMASQ, '--version']))?.[1] ?? 'installed';
  const a = aardvarkBinary();
  if (a) v['aardvark-dns'] = sh([a, '--version']).trim().replace(/^aardvark-dns\s*/, '') || 'installed';
  return v;
}

interface Running {
  stop: () => Promise<void>;
}

/** Starts one server on GATEWAY:53 in this namespace; resolves once it is running (the client waits for answers). */
function startServer(kind: DnsServerName, dir: string, root: string): Running {
  const procs: ChildProcess[] = [];
  const spawnOne = (argv: string[]) => {
    const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    c.stderr!.resume();
    procs.push(c);
    return c;
  };
  let pidFile: string | undefined;
  if (kind === 'burrow') {
    spawnOne([path.join(root, 'plugins', 'bin', 'dnsname'), 'serve', '--root', path.join(dir, 'burrow'), '--stay', '--resolv-conf', '/dev/null']);
  } else if (kind === 'dnsmasq') {
    spawnOne([DNSMASQ, '-u', 'root', '--keep-in-foreground', `--conf-file=${path.join(dir, 'dnsmasq', 'dnsmasq.conf')}`]);
  } else {
    // aardvark-dns forks; the parent exits once the child serves; the child's pid is in the pid file
    pidFile = path.join(dir, 'aardvark', 'aardvark.pid');
    fs.rmSync(pidFile, { force: true });
    spawnOne([aardvarkBinary()!, '--config', path.join(dir, 'aardvark'), '-p', '53', 'run']);
  }
  return {
    stop: async () => {
      const pids = procs.map((p) => p.pid!).filter(Boolean);
      if (pidFile && fs.existsSync(pidFile)) pids.push(Number(fs.readFileSync(pidFile, 'utf8')));
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      // until nothing holds the port (a forked child may still be exiting)
      for (let i = 0; i < 100 && boundPid() !== undefined; i++) await sleep(20);
    },
  };
}

/** The pid of the process bound to GATEWAY:53 (UDP) in this namespace. */
function boundPid(): number | undefined {
  const out = spawnSync('ss', ['-Hulpn', `src ${GATEWAY}:53`], { encoding: 'utf8' }).stdout ?? '';
  const m = /pid=(\d+)/.exec(out);
  return m ? Number(m[1]) : undefined;
}

const CLK_TCK = 100; // USER_HZ: the unit of /proc/PID/stat's times on Linux

/** utime + stime of every thread of `pid`, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
  return Number(f[11]) + Number(f[12]);
}

function memoryOf(pid: number): { rssKiB: number; pssKiB: number } {
  const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? NaN);
  return { rssKiB: field('Rss'), pssKiB: field('Pss') };
}

/** Writes every server's configuration for the same records. */
function writeConfigs(dir: string, n: number): string {
  const id = (i: number) => (i.toString(16).padStart(8, '0') + '0'.repeat(56));
  const names = Array.from({ length: n }, (_, i) => `c${String(i).padStart(4, '0')}`);
  // aardvark-dns's format (netavark writes it; burrow's server reads it as it is)
  const records = [GATEWAY, ...names.map((name, i) => `${id(i)} ${recordAddress(i)}  ${name},${id(i).slice(0, 12)}`)].join('\n') + '\n';
  fs.mkdirSync(path.join(dir, 'aardvark'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'aardvark', NETWORK), records);
  fs.mkdirSync(path.join(dir, 'burrow', 'dnsname', NETWORK), { recursive: true });
  fs.writeFileSync(path.join(dir, 'burrow', 'dnsname', NETWORK, 'records'), records);
  // containers/dnsname's dnsmasq.conf and addnhosts (plugins/dnsname/config.go), plus no-resolv
  const dm = path.join(dir, 'dnsmasq');
  fs.mkdirSync(dm, { recursive: true });
  fs.writeFileSync(path.join(dm, 'addnhosts'), names.map((name, i) => `${recordAddress(i)}\t${name}\t${id(i).slice(0, 12)}\n`).join(''));
  fs.writeFileSync(path.join(dm, 'dnsmasq.conf'), ['strict-order', `local=/${DOMAIN}/`, `domain=${DOMAIN}`, 'expand-hosts', `pid-file=${path.join(dm, 'pidfile')}`, 'except-interface=lo', 'bind-dynamic', 'no-hosts', 'interface=bdns0', `addn-hosts=${path.join(dm, 'addnhosts')}`, 'no-resolv', ''].join('\n'));
  const queries = path.join(dir, 'names');
  fs.writeFileSync(queries, names.map((x) => `${x}.${DOMAIN}\n`).join(''));
  fs.writeFileSync(path.join(dir, 'dnsperf'), names.map((x) => `${x}.${DOMAIN} A\n`).join(''));
  return queries;
}

/** Runs argv in the client namespace to completion; rejects on a non-zero exit. */
function inClient(ns: string, argv: string[], limitMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('nsenter', [`--net=${ns}`, '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), limitMs);
    c.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(argv[0])} exited ${code}: ${(err || out).trim().split('\n').slice(-2).join(' ')}`));
    });
  });
}

export async function dnsBench(o: DnsBenchOptions): Promise<DnsReport> {
  const report: DnsReport = { records: o.records, versions: dnsServers(o.root), runs: {}, errors: {} };
  if (!spawnSync('sh', ['-c', 'command -v dnsperf']).stdout?.toString().trim()) {
    report.errors.dnsperf = 'dnsperf is not installed (apt-get install dnsperf): no DNS rates';
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-dns-'));
  let client: string | undefined;
  try {
    const names = writeConfigs(dir, o.records);
    client = o.netnsCreate(o.clientNetns);
    sh(['ip', 'link', 'add', 'bdns0', 'type', 'bridge']);
    sh(['ip', 'addr', 'add', `${GATEWAY}/16`, 'dev', 'bdns0']);
    sh(['ip', 'link', 'set', 'bdns0', 'up']);
    sh(['ip', 'link', 'add', 'vdns0', 'master', 'bdns0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', path.basename(client)]);
    sh(['ip', 'link', 'set', 'vdns0', 'up']);
    sh(['ip', '-n', path.basename(client), 'addr', 'add', `${recordAddress(0)}/16`, 'dev', 'eth0']);
    sh(['ip', '-n', path.basename(client), 'link', 'set', 'eth0', 'up']);
    sh(['ip', '-n', path.basename(client), 'link', 'set', 'lo', 'up']);
    const servers = DNS_SERVERS.filter((s) => report.versions[s] && (o.anchors || s === 'burrow'));
    const client_py = path.join(o.root, 'bench', 'dns_client.py');
    for (let run = 0; run < o.runs && !o.stopping(); run++) {
      for (const s of servers) {
        if (o.stopping()) break;
        o.progress(`dns: run ${run + 1}/${o.runs} ${s}`);
        const srv = startServer(s, dir, o.root);
        try {
          await inClient(client, ['python3', client_py, GATEWAY, names, '--wait', '10'], 15_000).catch(() => {
            throw new Error(`${s} did not answer ${names.length ? 'c0000' : ''} within 10 s`);
          });
          await inClient(client, ['python3', client_py, GATEWAY, names, '0.3'], 10_000); // warm-up
          const lat = JSON.parse(await inClient(client, ['python3', client_py, GATEWAY, names, String(o.durationS)], o.durationS * 1000 + 10_000)) as { us: number[]; errors: number };
          if (!lat.us.length) throw new Error(`${s}: no lookup answered (${lat.errors} errors)`);
          const sum = summarize(lat.us);
          let qps = NaN;
          let lost = 0;
          let cpuUsPerQuery = NaN;
          const pid = boundPid();
          if (!report.errors.dnsperf) {
            // 8 clients (source ports), 64 queries in flight between them. With only 8 in flight,
            // dnsperf 2.10 on 2 cores now and then stops sending for most of a run against a fast
            // server (no query lost or late: its own pacing; a plain 8-socket client does not).
            const perf = async (extra: string[]) => {
              const out = await inClient(client!, ['dnsperf', '-s', GATEWAY, '-d', path.join(dir, 'dnsperf'), '-c', '8', '-q', '64', '-l', String(o.durationS), ...extra], o.durationS * 1000 + 15_000);
              if (!/NOERROR \d+ \(100\.00%\)/.test(out)) throw new Error(`${s}: dnsperf saw answers other than NOERROR: ${/Response codes:.*/.exec(out)?.[0] ?? out.slice(-200)}`);
              return { qps: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN), lost: Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? 0), completed: Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? NaN) };
            };
            ({ qps, lost } = await perf([]));
            if (pid) {
              const t0 = cpuTicks(pid);
              const paced = await perf(['-Q', '10000']);
              cpuUsPerQuery = ((cpuTicks(pid) - t0) * 1e6) / CLK_TCK / paced.completed;
            }
          }
          const mem = pid ? memoryOf(pid) : { rssKiB: NaN, pssKiB: NaN };
          (report.runs[s] ??= []).push({ p50Us: sum.p50, p99Us: sum.p99, lookups: lat.us.length + lat.errors, errors: lat.errors, qps, lost, cpuUsPerQuery, ...mem });
        } catch (err) {
          report.errors[`${s}|run ${run + 1}`] = (err as Error).message;
        } finally {
          await srv.stop();
        }
      }
    }
  } catch (err) {
    report.errors.setup = (err as Error).message;
  } finally {
    spawnSync('ip', ['link', 'del', 'bdns0']);
    if (client) o.netnsRemove(client);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return report;
}

/** The DNS table: per server, medians over runs, and burrow's ratio to each anchor (> 1.00x: burrow leads). */
export function renderDns(r: DnsReport): string {
  const med = (runs: DnsRun[], k: keyof DnsRun) => summarize(runs.map((x) => x[k]).filter(Number.isFinite)).p50;
  const fmt = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const rows = [['server', 'version', 'lookup p50 us', 'lookup p99 us', 'qps (8 clients)', 'CPU us/query', 'RSS MiB', 'PSS MiB', 'p50 vs burrow', 'qps vs burrow', 'CPU vs burrow']];
  const own = r.runs.burrow ?? [];
  for (const s of DNS_SERVERS) {
    const runs = r.runs[s];
    if (!runs?.length) continue;
    const [p50, p99, qps] = [med(runs, 'p50Us'), med(runs, 'p99Us'), med(runs, 'qps')];
    // oriented so that > 1.00x means burrow leads: anchor's latency / burrow's, burrow's rate / anchor's
    const lat = s === 'burrow' ? '' : own.length ? formatRatio(p50, med(own, 'p50Us')) : '-';
    const rate = s === 'burrow' ? '' : own.length ? formatRatio(med(own, 'qps'), qps) : '-';
    const cpu = s === 'burrow' ? '' : own.length ? formatRatio(med(runs, 'cpuUsPerQuery'), med(own, 'cpuUsPerQuery')) : '-';
    rows.push([s, r.versions[s] ?? '', fmt(p50, 1), fmt(p99, 1), fmt(qps), fmt(med(runs, 'cpuUsPerQuery'), 1), fmt(med(runs, 'rssKiB') / 1024, 1), fmt(med(runs, 'pssKiB') / 1024, 1), lat, rate, cpu]);
  }
  const lines = [`\ndns: a container's A lookups of ${r.records} container names at its gateway (medians of ${Math.max(0, ...Object.values(r.runs).map((x) => x?.length ?? 0))} interleaved run(s); ratios > 1.00x mean burrow leads)`, renderTable(rows)];
  for (const [k, e] of Object.entries(r.errors)) lines.push(`  dns ${k}: ${e}`);
  return lines.join('\n');
}
