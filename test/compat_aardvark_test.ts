/**
 * bin/compat/aardvark-dns for real, in a test "host" namespace with containers' namespaces on a
 * bridge: started as netavark starts it (the parent exits once the daemon is ready, with
 * stdio detached), answers by name, alias and `.dns.podman`, NXDOMAIN for unknown single
 * labels, forwarding to the resolv.conf servers; SIGHUP reloads (a half-written file keeps its
 * records, `%int` stops forwarding); with no file left it exits and removes its pid file. Then
 * Debian's netavark 1.4 drives it through two containers' setup and teardown.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { ROOT } from './helpers/burrow.js';
import { nsExec, rootTest, testNetns } from './helpers/netns.js';

const BIN = path.join(ROOT, 'bin', 'compat', 'aardvark-dns');
const NETAVARK = '/opt/burrow-anchors/netavark/usr/lib/podman/netavark';
const Q = path.join(ROOT, 'test', 'fixtures', 'dns_query.cjs');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
interface Reply { rcode?: number; error?: string; answers?: Array<{ type: number; value: string }> }

/** Asks `server` from inside `ns`. */
function ask(ns: string, server: string, name: string, proto = 'udp'): Reply {
  const r = spawnSync('nsenter', [`--net=${ns}`, '--', process.execPath, Q, server, name, 'A', proto], { encoding: 'utf8', timeout: 15_000 });
  return JSON.parse(r.stdout || '{"error":"no output"}') as Reply;
}
const addrs = (r: Reply) => (r.error ? r.error : r.rcode ? `rcode ${r.rcode}` : (r.answers ?? []).map((a) => a.value).join(','));

/** Polls until `name` answers `want` (a reload is asynchronous to its SIGHUP). */
async function until(t: ExecutionContext, ns: string, server: string, name: string, want: string): Promise<void> {
  let got = '';
  for (let i = 0; i < 100; i++) {
    got = addrs(ask(ns, server, name));
    if (got === want) return;
    await sleep(100);
  }
  t.fail(`${name}: ${got}, expected ${want}`);
}

/** A bridge `br` with `gw`/24 in `host`, and one namespace per address, each on a veth to it. */
function topology(t: ExecutionContext, host: string, br: string, gw: string, ips: string[]): string[] {
  const sh = (ns: string, cmd: string) => nsExec(ns, ['sh', '-ec', cmd]);
  sh(host, `ip link set lo up; ip link add ${br} type bridge; ip addr add ${gw}/24 dev ${br}; ip link set ${br} up`);
  return ips.map((ip, i) => {
    const c = testNetns(t, 'ac');
    sh(host, `ip link add vh${i} type veth peer name eth0 netns ${c}; ip link set vh${i} master ${br} up`);
    sh(c, `ip link set lo up; ip addr add ${ip}/24 dev eth0; ip link set eth0 up; ip route add default via ${gw}`);
    return c;
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

rootTest('aardvark-dns drop-in: netavark\'s start, answers and forwarding, SIGHUP reloads, %int, exit when no network is left', async (t) => {
  const host = testNetns(t, 'ah');
  const [c1] = topology(t, host, 'avbr0', '10.89.40.1', ['10.89.40.2', '10.89.40.3']);
  nsExec(host, ['ip', 'addr', 'add', '127.0.0.77/8', 'dev', 'lo']);
  const resolver = spawn('nsenter', [`--net=${host}`, '--', process.execPath, path.join(ROOT, 'test', 'fixtures', 'fake_resolver.cjs'), '127.0.0.77'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => resolver.kill('SIGKILL'));
  await new Promise((r) => resolver.stdout!.once('data', r));
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'avrun-'));
  t.teardown(() => fs.rmSync(run, { recursive: true, force: true }));
  const cfg = path.join(run, 'aardvark-dns');
  fs.mkdirSync(cfg);
  fs.writeFileSync(path.join(run, 'resolv.conf'), 'nameserver 127.0.0.77\n');
  const id1 = '9d76abda8ca8c530'.padEnd(64, 'a');
  const id2 = '1b2c3d4e5f60'.padEnd(64, 'b');
  const id3 = '77aa88bb99cc'.padEnd(64, 'c');
  const file = path.join(cfg, 'net1');
  fs.writeFileSync(file, `10.89.40.1\n${id1} 10.89.40.2  c1,web,${id1.slice(0, 12)}\n${id2} 10.89.40.3  c2,${id2.slice(0, 12)}\n`);

  // netavark waits for the parent and reads nothing of its output: the daemon must not hold our pipes
  const started = spawnSync('nsenter', [`--net=${host}`, '--', BIN, '--config', cfg, '-p', '53', 'run'], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, BURROW_RESOLV_CONF: path.join(run, 'resolv.conf') } });
  t.is(started.status, 0, `${started.stderr} ${started.error ?? ''}`);
  t.is(started.stdout, '');
  const pid = Number(fs.readFileSync(path.join(cfg, 'aardvark.pid'), 'utf8'));
  t.true(Number.isInteger(pid) && alive(pid), 'the bare pid of a live daemon');
  t.teardown(() => alive(pid) && process.kill(pid, 'SIGKILL'));
  t.is(fs.readlinkSync(`/proc/${pid}/fd/1`), '/dev/null', 'stdio detached');

  t.is(addrs(ask(c1, '10.89.40.1', 'c2')), '10.89.40.3');
  t.is(addrs(ask(c1, '10.89.40.1', 'web.dns.podman')), '10.89.40.2');
  t.is(addrs(ask(c1, '10.89.40.1', id2.slice(0, 12), 'tcp')), '10.89.40.3', 'TCP too, and the short id');
  t.is(addrs(ask(c1, '10.89.40.1', 'nope')), 'rcode 3');
  t.is(addrs(ask(c1, '10.89.40.1', 'outside.test')), '192.0.2.80', 'forwarded to resolv.conf\'s server');

  // c2 goes, c3 comes on the same address
  fs.writeFileSync(file, `10.89.40.1\n${id1} 10.89.40.2  c1,web\n${id3} 10.89.40.3  c3\n`);
  process.kill(pid, 'SIGHUP');
  await until(t, c1, '10.89.40.1', 'c3', '10.89.40.3');
  t.is(addrs(ask(c1, '10.89.40.1', 'c2')), 'rcode 3');
  // a half-written file keeps the network's records
  fs.writeFileSync(file, '10.89.40.');
  process.kill(pid, 'SIGHUP');
  await sleep(500);
  t.true(alive(pid));
  t.is(addrs(ask(c1, '10.89.40.1', 'c3')), '10.89.40.3');
  // an internal network: local names answer, nothing is forwarded
  fs.rmSync(file);
  fs.writeFileSync(path.join(cfg, 'net1%int'), `10.89.40.1\n${id1} 10.89.40.2  c1,web\n${id3} 10.89.40.3  c3\n`);
  process.kill(pid, 'SIGHUP');
  await until(t, c1, '10.89.40.1', 'outside.test', 'rcode 3');
  t.is(addrs(ask(c1, '10.89.40.1', 'c3')), '10.89.40.3');
  // no network left: the daemon removes its pid file and exits
  fs.rmSync(path.join(cfg, 'net1%int'));
  process.kill(pid, 'SIGHUP');
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  t.false(alive(pid), 'exited with no network file left');
  t.false(fs.existsSync(path.join(cfg, 'aardvark.pid')));
  t.deepEqual(fs.readdirSync(cfg), []);
});

rootTest('aardvark-dns drop-in under Debian\'s netavark 1.4: two containers by name and alias, one torn down, then the other; nothing left', async (t) => {
  const host = testNetns(t, 'nh');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'nvrun-'));
  t.teardown(() => fs.rmSync(run, { recursive: true, force: true }));
  const network = {
    name: 'avnet', id: 'a1'.repeat(32), driver: 'bridge', network_interface: 'podman7', created: '2026-12-03T00:00:00Z',
    subnets: [{ subnet: '10.89.41.0/24', gateway: '10.89.41.1' }], ipv6_enabled: false, internal: false, dns_enabled: true, ipam_options: { driver: 'host-local' },
  };
  const ctrs = [['c1', '10.89.41.2', 'web'], ['c2', '10.89.41.3', 'db']].map(([name, ip, alias], i) => {
    const id = `${i + 1}f`.repeat(32);
    return { name, ip, id, ns: testNetns(t, 'nc'), opts: { container_id: id, container_name: name, networks: { avnet: { static_ips: [ip], aliases: [alias, id.slice(0, 12)], interface_name: 'eth0' } }, network_info: { avnet: network } } };
  });
  const netavark = (verb: string, c: (typeof ctrs)[number]) => {
    const r = spawnSync('nsenter', [`--net=${host}`, '--', NETAVARK, '--config', run, '--rootless=false', `--aardvark-binary=${BIN}`, verb, c.ns], { input: JSON.stringify(c.opts), encoding: 'utf8', timeout: 30_000 });
    t.is(r.status, 0, `netavark ${verb} ${c.name}: ${r.stdout} ${r.stderr} ${r.error ?? ''}`);
    return r.stdout;
  };
  t.teardown(() => {
    try {
      process.kill(Number(fs.readFileSync(path.join(run, 'aardvark-dns', 'aardvark.pid'), 'utf8')), 'SIGKILL');
    } catch {
      // gone
    }
  });
  const status = JSON.parse(netavark('setup', ctrs[0])) as Record<string, { dns_server_ips: string[]; dns_search_domains: string[] }>;
  t.deepEqual(status.avnet.dns_server_ips, ['10.89.41.1']);
  t.deepEqual(status.avnet.dns_search_domains, ['dns.podman']);
  netavark('setup', ctrs[1]);
  const pid = Number(fs.readFileSync(path.join(run, 'aardvark-dns', 'aardvark.pid'), 'utf8'));
  t.true(alive(pid));
  const [c1, c2] = ctrs;
  await until(t, c1.ns, '10.89.41.1', 'db', '10.89.41.3');
  t.is(addrs(ask(c2.ns, '10.89.41.1', 'web.dns.podman')), '10.89.41.2');
  t.is(addrs(ask(c2.ns, '10.89.41.1', c1.id.slice(0, 12))), '10.89.41.2');
  netavark('teardown', c1);
  await until(t, c2.ns, '10.89.41.1', 'web', 'rcode 3');
  t.is(addrs(ask(c2.ns, '10.89.41.1', 'db')), '10.89.41.3', 'the remaining container still resolves');
  t.is(addrs(ask(c2.ns, '10.89.41.1', 'never-asked')), 'rcode 3');
  t.true(alive(pid), 'the same daemon, reloaded');
  netavark('teardown', c2);
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  t.false(alive(pid), 'netavark removed the last file; the daemon exited');
  t.deepEqual(fs.readdirSync(path.join(run, 'aardvark-dns')), []);
  t.is(nsExec(host, ['ip', '-o', 'link', 'show', 'type', 'bridge']).trim(), '', 'netavark removed its bridge');
}, () => (fs.existsSync(NETAVARK) ? null : `needs ${NETAVARK} (scripts/setup.sh unpacks it)`));
