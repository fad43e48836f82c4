/**
 * bin/compat/netavark for real, in test "host" namespaces. Burrow's netavark and aardvark-dns
 * together: two containers on an isolated dual-stack bridge network, by name over DNS, a port
 * through the host's loopback, teardown one by one down to nothing. Against Debian's netavark
 * 1.4 in twin hosts: the same StatusBlock, the same iptables-save, and each tears down the
 * other's setup. Errors as netavark reports them, with nothing left behind. A macvlan network.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { ROOT } from './helpers/burrow.js';
import { nsExec, peerEchoServer, rootTest, tcpRequest, testNetns } from './helpers/netns.js';

const OURS = path.join(ROOT, 'bin', 'compat', 'netavark');
const AARDVARK = path.join(ROOT, 'bin', 'compat', 'aardvark-dns');
const DEBIAN = '/opt/burrow-anchors/netavark/usr/lib/podman/netavark';
const Q = path.join(ROOT, 'test', 'fixtures', 'dns_query.cjs');
const needsDebian = () => (fs.existsSync(DEBIAN) ? null : `needs ${DEBIAN} (scripts/setup.sh unpacks it)`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Call { status: number | null; stdout: string; stderr: string }

/** One netavark call inside `host` (asynchronous: test servers in this process keep serving). */
function netavark(bin: string, host: string, run: string, verb: string, netns: string, opts: object, aardvark = ''): Promise<Call> {
  return new Promise((resolve) => {
    const p = execFile('nsenter', [`--net=${host}`, '--', bin, '--config', run, '--rootless=false', `--aardvark-binary=${aardvark}`, verb, netns], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    p.stdin!.end(JSON.stringify(opts));
  });
}

async function ok(t: ExecutionContext, c: Promise<Call>, what: string): Promise<string> {
  const r = await c;
  t.is(r.status, 0, `${what}: ${r.stdout} ${r.stderr}`);
  return r.stdout;
}

function network(name: string, bridge: string, n: number, extra: object = {}) {
  return {
    name, id: crypto.randomUUID().replace(/-/g, '').padEnd(64, '0'), driver: 'bridge', network_interface: bridge, created: '2026-12-03T00:00:00Z',
    subnets: [{ subnet: `10.89.${n}.0/24`, gateway: `10.89.${n}.1` }, { subnet: `fd10:${n}::/64`, gateway: `fd10:${n}::1` }],
    ipv6_enabled: true, internal: false, dns_enabled: true, ipam_options: { driver: 'host-local' }, ...extra,
  };
}

function container(name: string, i: number, net: ReturnType<typeof network>, n: number, ports: object[] = [], alias?: string) {
  const id = `${(i + 10).toString(16)}`.repeat(32).slice(0, 64);
  return {
    container_id: id, container_name: name, ...(ports.length ? { port_mappings: ports } : {}),
    networks: { [net.name]: { static_ips: [`10.89.${n}.${i + 2}`, `fd10:${n}::${i + 2}`], aliases: [...(alias ? [alias] : []), id.slice(0, 12)], interface_name: 'eth0', static_mac: `02:00:00:00:${n.toString(16).padStart(2, '0')}:${(i + 2).toString(16).padStart(2, '0')}` } },
    network_info: { [net.name]: net },
  };
}

const iptables = (host: string) => ['iptables-save', 'ip6tables-save'].map((c) => nsExec(host, [c]).split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':N')).join('\n')).join('\n---\n');
const bridges = (host: string) => nsExec(host, ['ip', '-o', 'link', 'show', 'type', 'bridge']).trim();
const ask = (ns: string, server: string, name: string) => new Promise<string>((resolve) => execFile('nsenter', [`--net=${ns}`, '--', process.execPath, Q, server, name], { encoding: 'utf8' }, (_e, out) => {
  try {
    const r = JSON.parse(out) as { rcode?: number; answers?: Array<{ value: string }> };
    resolve(r.rcode ? `rcode ${r.rcode}` : (r.answers ?? []).map((a) => a.value).join(','));
  } catch {
    resolve(`bad output ${out}`);
  }
}));

rootTest('netavark drop-in with burrow\'s aardvark-dns: two containers on an isolated dual-stack bridge, by name, a port through loopback, teardown to nothing', async (t) => {
  const host = testNetns(t, 'vh');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'nvrun-'));
  t.teardown(() => fs.rmSync(run, { recursive: true, force: true }));
  const net = network('nvnet', 'podman8', 30, { options: { isolate: 'true' } });
  const [n1, n2] = [testNetns(t, 'v1'), testNetns(t, 'v2')];
  const c1 = container('web', 0, net, 30, [{ host_ip: '', container_port: 80, host_port: 8080, range: 1, protocol: 'tcp' }], 'www');
  const c2 = container('db', 1, net, 30);
  const status = JSON.parse(await ok(t, netavark(OURS, host, run, 'setup', n1, c1, AARDVARK), 'setup web'));
  t.deepEqual(status, { nvnet: { dns_search_domains: ['dns.podman'], dns_server_ips: ['10.89.30.1', 'fd10:30::1'], interfaces: { eth0: { mac_address: '02:00:00:00:1e:02', subnets: [{ gateway: '10.89.30.1', ipnet: '10.89.30.2/24' }, { gateway: 'fd10:30::1', ipnet: 'fd10:30::2/64' }] } } } });
  await ok(t, netavark(OURS, host, run, 'setup', n2, c2, AARDVARK), 'setup db');
  t.regex(nsExec(n1, ['ip', 'route']), /^default via 10\.89\.30\.1 dev eth0 proto static metric 100/m);
  t.is(fs.readFileSync(path.join(run, 'aardvark-dns', 'nvnet'), 'utf8'), `10.89.30.1,fd10:30::1\n${c1.container_id} 10.89.30.2 fd10:30::2 web,www,${c1.container_id.slice(0, 12)}\n${c2.container_id} 10.89.30.3 fd10:30::3 db,${c2.container_id.slice(0, 12)}\n`);
  t.is(await ask(n2, '10.89.30.1', 'www'), '10.89.30.2', 'by alias through burrow\'s aardvark-dns');
  t.is(await ask(n1, '10.89.30.1', 'db.dns.podman'), '10.89.30.3');
  await peerEchoServer(t, n1, '0.0.0.0', 80);
  t.is(await tcpRequest(n2, '10.89.30.2', 80), '10.89.30.3', 'container to container on the bridge');
  t.is(await tcpRequest(host, '127.0.0.1', 8080), '10.89.30.1', 'the port through the host\'s loopback (route_localnet, masqueraded by the mark)');
  t.is(nsExec(host, ['cat', '/proc/sys/net/ipv4/conf/podman8/route_localnet']).trim(), '1');
  await ok(t, netavark(OURS, host, run, 'teardown', n1, c1, AARDVARK), 'teardown web');
  for (let i = 0; i < 50 && (await ask(n2, '10.89.30.1', 'www')) !== 'rcode 3'; i++) await sleep(100);
  t.is(await ask(n2, '10.89.30.1', 'www'), 'rcode 3', 'gone from DNS');
  await t.throwsAsync(tcpRequest(host, '127.0.0.1', 8080, 2), undefined, 'the port is gone');
  t.false(iptables(host).includes(c1.container_id), 'no rule of the container left');
  await ok(t, netavark(OURS, host, run, 'teardown', n2, c2, AARDVARK), 'teardown db');
  t.is(bridges(host), '', 'the bridge went with its last container');
  t.false(/NETAVARK-(DN-)?[0-9A-F]{13}|-A FORWARD -j NETAVARK_ISOLATION_1|10\.89\.30|fd10:30/.test(iptables(host)), iptables(host));
  for (let i = 0; i < 50 && fs.existsSync(path.join(run, 'aardvark-dns', 'aardvark.pid')); i++) await sleep(100);
  t.deepEqual(fs.readdirSync(path.join(run, 'aardvark-dns')), [], 'aardvark-dns exited with its last network');
});

rootTest('netavark drop-in against Debian\'s netavark 1.4: the same StatusBlock and iptables-save in twin hosts, and each tears down the other\'s setup', async (t) => {
  const hosts = [testNetns(t, 'va'), testNetns(t, 'vb')];
  for (const h of hosts) nsExec(h, ['ip', 'link', 'set', 'lo', 'up']);
  const runs = hosts.map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'nvrun-')));
  t.teardown(() => runs.forEach((r) => fs.rmSync(r, { recursive: true, force: true })));
  const net = network('twin', 'podman7', 31, { options: { isolate: 'true', mtu: '1400' } });
  const ctrs = [container('a', 0, net, 31, [{ host_ip: '', container_port: 80, host_port: 8080, range: 1, protocol: 'tcp' }, { host_ip: '127.0.0.1', container_port: 53, host_port: 5353, range: 3, protocol: 'udp' }]), container('b', 1, net, 31)];
  const ns = hosts.map(() => ctrs.map(() => testNetns(t, 'vc')));
  const impl = [DEBIAN, OURS];
  const out: string[][] = [[], []];
  for (const [h, bin] of impl.entries()) for (const [i, c] of ctrs.entries()) out[h].push(await ok(t, netavark(bin, hosts[h], runs[h], 'setup', ns[h][i], c), `${bin} setup ${c.container_name}`));
  t.deepEqual(out[1].map((s) => JSON.parse(s)), out[0].map((s) => JSON.parse(s)), 'the same StatusBlocks');
  t.is(out[1][0], out[0][0], 'byte for byte');
  t.is(iptables(hosts[1]), iptables(hosts[0]), 'the same rules');
  const inside = (n: string) => nsExec(n, ['sh', '-c', 'ip -o addr show eth0 | awk \'{print $3, $4}\'; ip route; ip -6 route | grep -v fe80; ip -o link show eth0 | grep -o "mtu [0-9]*"; cat /proc/sys/net/ipv6/conf/eth0/accept_dad /proc/sys/net/ipv6/conf/eth0/autoconf']);
  t.is(inside(ns[1][0]), inside(ns[0][0]), 'the same container side');
  // cross teardown: Debian's netavark removes burrow's setup and burrow's removes Debian's
  for (const [h, bin] of [OURS, DEBIAN].entries()) for (const [i, c] of ctrs.entries()) await ok(t, netavark(bin, hosts[h], runs[h], 'teardown', ns[h][i], c), `${bin} teardown ${c.container_name} on ${impl[h]}'s setup`);
  // netavark 1.4 leaves the network's port chain, empty, when its last container has no ports; burrow removes it
  const leftByDebian = iptables(hosts[1]);
  t.notRegex(leftByDebian, /-A NETAVARK-DN-/);
  t.is(leftByDebian.replace(/^:NETAVARK-DN-[0-9A-F]{13} - \[0:0\]\n/gm, ''), iptables(hosts[0]), 'the same rules left');
  t.false(/NETAVARK-(DN-)?[0-9A-F]{13}|-A FORWARD -j NETAVARK_ISOLATION_1|10\.89\.31|fd10:31/.test(iptables(hosts[0])), iptables(hosts[0]));
  t.deepEqual(hosts.map(bridges), ['', '']);
  // a teardown of what is gone already succeeds (podman may retry)
  await ok(t, netavark(OURS, hosts[1], runs[1], 'teardown', ns[1][0], ctrs[0]), 'teardown again');
}, needsDebian);

rootTest('netavark drop-in errors: netavark\'s JSON on stdout with the os error, a failed setup leaves nothing; a macvlan network on a veth parent', async (t) => {
  const host = testNetns(t, 've');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const run = fs.mkdtempSync(path.join(os.tmpdir(), 'nvrun-'));
  t.teardown(() => fs.rmSync(run, { recursive: true, force: true }));
  const net = network('errnet', 'podman6', 32);
  const c = container('x', 0, net, 32, [{ host_ip: '', container_port: 80, host_port: 8081, range: 1, protocol: 'tcp' }]);
  const before = iptables(host);
  let r = await netavark(OURS, host, run, 'setup', '/run/netns/does-not-exist', c);
  t.is(r.status, 1);
  t.deepEqual(JSON.parse(r.stdout), { error: 'open netns /run/netns/does-not-exist: No such file or directory (os error 2)' });
  t.is(r.stderr, '', 'stderr is silent by default');
  const n = testNetns(t, 'vx');
  nsExec(n, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other']);
  r = await netavark(OURS, host, run, 'setup', n, c);
  t.is(r.status, 1);
  t.regex(JSON.parse(r.stdout).error, /interface eth0 already exists on container namespace/);
  t.is(bridges(host), '', 'the bridge made for it is gone again');
  t.is(iptables(host), before, 'no rule left');
  r = await netavark(OURS, host, run, 'setup', n, { ...c, networks: { errnet: { ...c.networks.errnet, static_ips: ['10.99.0.5'] } } });
  t.regex(JSON.parse(r.stdout).error, /static ip 10\.99\.0\.5 is in none of its subnets/);
  r = await new Promise<Call>((resolve) => {
    const p = execFile('nsenter', [`--net=${host}`, '--', OURS, '--config', run, 'setup', n], { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? 1 : 0, stdout, stderr }));
    p.stdin!.end('{not json');
  });
  t.regex(JSON.parse(r.stdout).error, /^failed to parse network options/);
  const info = await new Promise<Call>((resolve) => execFile('nsenter', [`--net=${host}`, '--', 'env', 'RUST_LOG=netavark=info', OURS, '--config', run, '--aardvark-binary=', 'setup', testNetns(t, 'vy')], { encoding: 'utf8' }, (err, stdout, stderr) => resolve({ status: err ? 1 : 0, stdout, stderr })).stdin!.end(JSON.stringify({ ...c, port_mappings: [] })));
  t.regex(info.stderr, /^\[INFO  netavark::firewall\] Using iptables firewall driver$/m, 'RUST_LOG=netavark=info names the firewall driver');

  // macvlan on a veth parent, the LAN beyond it in a namespace of its own
  const lan = testNetns(t, 'vl');
  nsExec(host, ['ip', 'link', 'add', 'mvpar0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', lan]);
  nsExec(host, ['ip', 'link', 'set', 'mvpar0', 'up']);
  nsExec(lan, ['sh', '-c', 'ip addr add 192.168.77.1/24 dev lan0 && ip link set lan0 up']);
  const mv = { name: 'mvnet', id: 'e'.repeat(64), driver: 'macvlan', network_interface: 'mvpar0', created: '2026-12-03T00:00:00Z', subnets: [{ subnet: '192.168.77.0/24', gateway: '192.168.77.1' }], ipv6_enabled: false, internal: false, dns_enabled: false, options: { mode: 'bridge', mtu: '1400' }, ipam_options: { driver: 'host-local' } };
  const mc = { container_id: 'f'.repeat(64), container_name: 'm', networks: { mvnet: { static_ips: ['192.168.77.50'], interface_name: 'eth0' } }, network_info: { mvnet: mv } };
  const mns = testNetns(t, 'vm');
  const st = JSON.parse(await ok(t, netavark(OURS, host, run, 'setup', mns, mc), 'macvlan setup'));
  t.deepEqual(st.mvnet.interfaces.eth0.subnets, [{ gateway: '192.168.77.1', ipnet: '192.168.77.50/24' }]);
  t.regex(nsExec(mns, ['ip', '-d', 'link', 'show', 'eth0']), /mtu 1400 [\s\S]*macvlan mode bridge/);
  await peerEchoServer(t, lan, '192.168.77.1', 7777);
  t.is(await tcpRequest(mns, '192.168.77.1', 7777), '192.168.77.50', 'the LAN host sees the container\'s own address');
  await ok(t, netavark(OURS, host, run, 'teardown', mns, mc), 'macvlan teardown');
  t.false(/ eth0[:@]/.test(nsExec(mns, ['ip', '-o', 'link', 'show'])), 'the macvlan is gone');
}, needsDebian);
