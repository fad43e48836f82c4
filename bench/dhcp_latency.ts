/**
 * bench/dhcp_latency: CNI ADD with a DHCP lease, and DEL, for the four combinations of the
 * reference's and burrow's dhcp plugin and daemon, with the same dnsmasq as the LAN's server;
 * then the daemons' peak RSS with N leases at once (100 by default).
 *
 * The chain is podman 4.3's macvlan network without a subnet: the reference macvlan plugin
 * (exec'd, as libcni runs it) delegating to the dhcp plugin under test. dnsmasq runs with
 * --no-ping (its default ping check waits 3 s before each new offer, for every daemon alike).
 * Rounds are interleaved (A B C D A B C D ...); every figure is also a ratio to reference/reference
 * in the same run. Everything happens in namespaces the bench creates (a "host" netns, a LAN
 * netns at the far end of the macvlan parent, a pool of container netns), removed at the end.
 *
 *   tsx bench/dhcp_latency.ts [--rounds N] [--leases N] [--json FILE]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { netnsCreate, netnsRemove } from '../native/mod.js';
import { formatMs, formatRatio, renderTable, summarize, type Summary } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REF = '/usr/lib/cni';
const OWN = path.join(ROOT, 'plugins', 'bin');
const DNSMASQ = '/usr/sbin/dnsmasq';
type Kind = 'reference' | 'burrow';
const COMBOS: Array<{ plugin: Kind; daemon: Kind }> = [
  { plugin: 'reference', daemon: 'reference' }, { plugin: 'reference', daemon: 'burrow' }, { plugin: 'burrow', daemon: 'reference' }, { plugin: 'burrow', daemon: 'burrow' },
];

function sh(cmd: string[]): string {
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function args(argv: string[]) {
  const out = { rounds: 10, leases: 100, json: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rounds') out.rounds = Number(argv[++i]);
    else if (a === '--leases') out.leases = Number(argv[++i]);
    else if (a === '--json') out.json = argv[++i];
    else throw new Error(`unknown argument "${a}" (use --rounds N, --leases N, --json FILE)`);
  }
  if (!(out.rounds >= 1) || !(out.leases >= 1 && out.leases <= 200)) throw new Error('--rounds >= 1, --leases 1-200');
  return out;
}

/** One exec'd CNI call of the macvlan plugin with CNI_PATH `bin`; resolves to its time in ms. */
function cni(host: string, bin: string, command: 'ADD' | 'DEL', id: string, netns: string, conf: object): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn('nsenter', [`--net=${host}`, '--', path.join(bin, 'macvlan')], { env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: bin }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${command} ${id}: ${out}`))));
    c.stdin.end(JSON.stringify(conf));
  });
}

async function main(argv: string[]): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench/dhcp_latency needs root: it creates network namespaces, a veth and macvlan links (all in its own namespaces).');
    return 1;
  }
  if (!fs.existsSync(DNSMASQ)) {
    console.error('bench/dhcp_latency needs dnsmasq (apt-get install dnsmasq-base)');
    return 1;
  }
  const o = args(argv);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-dhcp-'));
  const made: string[] = [];
  const procs: ChildProcess[] = [];
  const cleanup = () => {
    for (const p of procs) p.kill('SIGKILL');
    for (const ns of made.splice(0)) netnsRemove(ns);
    fs.rmSync(work, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { cleanup(); process.exit(130); });
  try {
    const ns = (name: string) => {
      const p = netnsCreate(`bd-${name}-${process.pid}`);
      made.push(p);
      return p;
    };
    const host = ns('host');
    const lan = ns('lan');
    sh(['ip', '-n', path.basename(host), 'link', 'add', 'par0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', path.basename(lan)]);
    sh(['ip', '-n', path.basename(host), 'link', 'set', 'par0', 'up']);
    sh(['ip', '-n', path.basename(lan), 'addr', 'add', '192.168.0.1/16', 'dev', 'lan0']);
    sh(['ip', '-n', path.basename(lan), 'link', 'set', 'lan0', 'up']);
    const server = spawn('nsenter', [`--net=${lan}`, '--', DNSMASQ, '--no-daemon', '--port=0', '--interface=lan0', '--bind-interfaces', '--pid-file=', '--no-ping', '--dhcp-range=192.168.1.1,192.168.3.250,255.255.0.0,10m', '--dhcp-option=option:router,192.168.0.1', `--dhcp-leasefile=${path.join(work, 'leases')}`, '--dhcp-lease-max=5000'], { stdio: 'ignore' });
    procs.push(server);
    const daemons: Record<Kind, { socket: string; proc: ChildProcess }> = {} as never;
    for (const k of ['reference', 'burrow'] as Kind[]) {
      const socket = path.join(work, `${k}.sock`);
      const exe = k === 'reference' ? [path.join(REF, 'dhcp')] : [process.execPath, path.join(ROOT, 'dist', 'plugins', 'dhcp.cjs')];
      const proc = spawn('nsenter', [`--net=${host}`, '--', ...exe, 'daemon', '-socketpath', socket, ...(k === 'burrow' ? ['-leasefile', path.join(work, 'leases.json')] : [])], { stdio: 'ignore' });
      procs.push(proc);
      daemons[k] = { socket, proc };
    }
    for (let i = 0; i < 250 && !Object.values(daemons).every((d) => fs.existsSync(d.socket)); i++) await new Promise((r) => setTimeout(r, 20));
    const bins: Record<Kind, string> = {} as never;
    for (const k of ['reference', 'burrow'] as Kind[]) {
      const b = path.join(work, `bin-${k}`);
      fs.mkdirSync(b);
      fs.symlinkSync(path.join(REF, 'macvlan'), path.join(b, 'macvlan'));
      fs.symlinkSync(path.join(k === 'reference' ? REF : OWN, 'dhcp'), path.join(b, 'dhcp'));
      bins[k] = b;
    }
    const conf = (d: Kind) => ({ cniVersion: '0.4.0', name: 'benchdhcp', type: 'macvlan', master: 'par0', ipam: { type: 'dhcp', daemonSocketPath: daemons[d].socket } });
    const ctr = ns('ctr');
    const samples = COMBOS.map(() => ({ add: [] as number[], del: [] as number[] }));
    for (let round = 0; round <= o.rounds; round++) {
      if (process.stderr.isTTY) process.stderr.write(`\rround ${round}/${o.rounds}   `);
      for (const [i, c] of COMBOS.entries()) {
        const id = `r${round}-${i}`;
        const add = await cni(host, bins[c.plugin], 'ADD', id, ctr, conf(c.daemon));
        const del = await cni(host, bins[c.plugin], 'DEL', id, ctr, conf(c.daemon));
        if (round > 0) { // round 0 warms up
          samples[i].add.push(add);
          samples[i].del.push(del);
        }
      }
    }
    if (process.stderr.isTTY) process.stderr.write('\n');
    const sum = samples.map((s) => ({ add: summarize(s.add), del: summarize(s.del) }));
    const base = sum[0];
    const rows = [['plugin', 'daemon', 'ADD p50', 'ADD p95', 'DEL p50', 'ADD p50 vs ref/ref', 'DEL p50 vs ref/ref']];
    COMBOS.forEach((c, i) => rows.push([c.plugin, c.daemon, formatMs(sum[i].add.p50), formatMs(sum[i].add.p95), formatMs(sum[i].del.p50), formatRatio(base.add.p50, sum[i].add.p50), formatRatio(base.del.p50, sum[i].del.p50)]));
    console.log(`dhcp ADD/DEL through the reference macvlan plugin (exec'd), dnsmasq --no-ping, ${o.rounds} interleaved rounds; ratios > 1.00x mean faster than reference/reference`);
    console.log(renderTable(rows));
    // N leases at once per daemon (burrow's plugin against each): peak RSS of the daemon
    const peak: Record<string, number> = {};
    const ctrs = Array.from({ length: o.leases }, (_, i) => ns(`c${i}`));
    for (const k of ['reference', 'burrow'] as Kind[]) {
      await Promise.all(ctrs.map((c, i) => cni(host, bins.burrow, 'ADD', `m-${k}-${i}`, c, conf(k))));
      const pid = daemons[k].proc.pid!;
      peak[k] = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
      await Promise.all(ctrs.map((c, i) => cni(host, bins.burrow, 'DEL', `m-${k}-${i}`, c, conf(k))));
    }
    console.log(renderTable([['daemon', `peak RSS with ${o.leases} leases`], ['reference', `${peak.reference.toFixed(1)} MiB`], ['burrow', `${peak.burrow.toFixed(1)} MiB`]]));
    if (o.json) fs.writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), kernel: os.release(), cpus: os.cpus().length, node: process.version, rounds: o.rounds, combos: COMBOS.map((c, i) => ({ ...c, add: samples[i].add, del: samples[i].del, summary: sum[i] as { add: Summary; del: Summary } })), peakRssMiB: peak, leases: o.leases }, null, 2));
    return 0;
  } finally {
    cleanup();
  }
}

process.exitCode = await main(process.argv.slice(2));
