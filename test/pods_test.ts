/**
 * Pods and shared network namespaces (`burrow pod create/ls/inspect/rm`, `run --pod`,
 * `--network container:NAME`), rootful and rootless, and `--cap-add/--cap-drop`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { nsExec, rootTest } from './helpers/netns.js';
import { defaultNet, FIXTURES, HTTP, httpUp, reservations, rootArgv, rootSandbox, sync, userArgv, world } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrowpod'; // one user per test file

const CURL = (url: string) => ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', url];

rootTest.serial('rootful pod: members share localhost, the pod publishes the port, ls/inspect, rm refuses then rm -f leaves nothing', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  t.teardown(() => void b(['pod', 'rm', '-f', 'p1']));
  const created = b(['pod', 'create', '--name', 'p1', '-p', '18700:8080']);
  t.is(created.code, 0, created.stderr);
  const podId = created.stdout.trim();
  t.regex(podId, /^[0-9a-f]{64}$/);
  const web = b(['run', '-d', '--pod', 'p1', '--name', 'web', ...FIXTURES, '--', ...HTTP(8080)]);
  t.is(web.code, 0, web.stderr);
  t.is(await httpUp(w.host, 'http://127.0.0.1:18700/'), '200', 'the pod\'s published port reaches the member from the host');
  t.is(await httpUp(w.remote, 'http://10.98.0.1:18700/'), '200', 'and from another namespace');
  const peer = b(['run', '--rm', '--pod', 'p1', '--', 'sh', '-c', `hostname; ${CURL('http://127.0.0.1:8080/').join(' ')}`]);
  t.is(peer.code, 0, peer.stderr);
  t.is(peer.stdout, 'p1\n200', 'another member reaches it on localhost; the pod name is the hostname');
  const ls = JSON.parse(b(['pod', 'ls', '--format', 'json']).stdout);
  t.like(ls[0], { Id: podId, Name: 'p1', Status: 'Running', NumberOfContainers: 2, Ports: ['18700:8080'] });
  const inspect = JSON.parse(b(['pod', 'inspect', 'p1']).stdout)[0];
  t.is(inspect.Containers.length, 2);
  t.regex(inspect.IPs[0], new RegExp(`^${defaultNet(sb)}\\.`));
  const infra = inspect.Containers.find((c: { Infra: boolean }) => c.Infra).Name;
  t.regex(b(['rm', '-f', infra]).stderr, /is the infra container of a pod: remove the pod with "burrow pod rm"/);
  const refused = b(['pod', 'rm', 'p1']);
  t.is(refused.code, 125);
  t.regex(refused.stderr, /pod "p1" has running containers \(web\): stop them or use pod rm -f/);
  t.is(b(['pod', 'rm', '-f', '-t', '2', 'p1']).code, 0);
  t.not(http18700(w.host), '200');
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), [], 'no container state left');
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'pods')), [], 'no pod state left');
  t.deepEqual(fs.readdirSync(path.join(sb.cacheDir, 'results')), [], 'the infra\'s CNI attachment is deleted');
  t.deepEqual(reservations(sb), [], 'the pod\'s address is released');
  t.notRegex(nsExec(w.host, ['iptables-save']), /dport 18700/, 'port rules removed');
  t.notRegex(nsExec(w.host, ['ip', '-br', 'link']), /veth/, 'no veth left');

  // --pod new:NAME: the pod is made first and takes the run's -p; it outlives the container
  t.teardown(() => void b(['pod', 'rm', '-f', 'np']));
  const np = b(['run', '-d', '--pod', 'new:np', '--name', 'npweb', '-p', '18704:8080', ...FIXTURES, '--', ...HTTP(8080)]);
  t.is(np.code, 0, np.stderr);
  t.is(await httpUp(w.host, 'http://127.0.0.1:18704/'), '200', 'the new pod publishes the run\'s port');
  t.like(JSON.parse(b(['pod', 'inspect', 'np']).stdout)[0], { Name: 'np', Hostname: 'np', Ports: ['18704:8080'] });
  t.is(b(['rm', '-f', 'npweb']).code, 0);
  t.like(JSON.parse(b(['pod', 'ls', '--format', 'json']).stdout)[0], { Name: 'np', Status: 'Running', NumberOfContainers: 1 });
  t.regex(b(['run', '--rm', '--pod', 'new:np', '--', 'true']).stderr, /pod .*np.* exists|already/, 'a taken name is refused');
  t.is(b(['pod', 'rm', '-f', 'np']).code, 0);
  // a run that cannot start leaves no pod behind
  t.regex(b(['run', '--rm', '--pod', 'new:np2', '--rootfs', '/nonexistent/rootfs', '--', 'true']).stderr, /--rootfs "\/nonexistent\/rootfs" does not exist/);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'pods')), [], 'the pod made for a failed run is removed');
  t.deepEqual(reservations(sb), [], 'and its address released');
});

function http18700(ns: string): string {
  return spawnSync('nsenter', [`--net=${ns}`, '--', ...CURL('http://127.0.0.1:18700/')], { encoding: 'utf8' }).stdout;
}

rootTest.serial('rootful --network container:NAME shares the address; capabilities follow --cap-add/--cap-drop; --network a,b', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  t.teardown(() => void b(['rm', '-f', 'base']));
  t.is(b(['run', '-d', '--name', 'base', '--', 'sleep', '60']).code, 0);
  const addr = (args: string[]) => b(['run', '--rm', ...args, '--', 'sh', '-c', 'ip -4 -o addr show eth0 | awk \'{print $4}\'']).stdout.trim();
  const own = JSON.parse(b(['inspect', 'base']).stdout)[0].ips[0];
  t.is(addr(['--network', 'container:base']), `${own}/16`, 'the joining container sees the same eth0');
  t.regex(b(['rm', 'base']).stderr, /is running/);
  // capabilities: podman's default set, then changes
  const capBnd = (args: string[]) => b(['run', '--rm', '--network', 'none', ...args, '--', 'sh', '-c', 'grep CapBnd /proc/self/status']).stdout.trim().split('\t')[1];
  t.is(capBnd([]), '00000000800405fb');
  t.is(capBnd(['--cap-drop', 'ALL', '--cap-add', 'NET_BIND_SERVICE']), '0000000000000400');
  const mtu = (args: string[]) => b(['run', '--rm', '--network', 'none', ...args, '--', 'ip', 'link', 'set', 'lo', 'mtu', '1300']);
  const denied = mtu([]);
  t.not(denied.code, 0, 'without NET_ADMIN the container cannot change its links');
  t.regex(denied.stderr, /Operation not permitted/);
  t.is(mtu(['--cap-add', 'net_admin']).code, 0, 'with --cap-add NET_ADMIN it can');
  t.regex(b(['run', '--rm', '--cap-add', 'NET_ADMN', '--', 'true']).stderr, /unknown capability "NET_ADMN"/);
  t.is(b(['rm', '-f', 'base']).code, 0);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), []);
  // several CNI networks: eth0, eth1 in order; both detached afterwards
  t.is(b(['network', 'create', '--subnet', '10.91.0.0/24', 'second']).code, 0);
  const two = b(['run', '--rm', '--network', 'burrow,second', '--', 'sh', '-c', 'ip -4 -o addr show | awk \'{print $2, $4}\'']);
  t.is(two.code, 0, two.stderr);
  t.regex(two.stdout, new RegExp(`^eth0 ${defaultNet(sb)}\\.\\d+\\.\\d+/16\neth1 10\\.91\\.0\\.\\d+/24$`, 'm'));
  t.deepEqual(fs.readdirSync(path.join(sb.cacheDir, 'results')), [], 'both attachments deleted');
  t.deepEqual(reservations(sb), [], 'both addresses released');
  // podman's per-network options, the flag repeated: interface name, static address and MAC
  const opts = b(['run', '--rm', '--network', 'burrow:interface_name=lan0', '--network', 'second:ip=10.91.0.50,mac=02:42:0A:5B:00:32', '--', 'sh', '-c', 'ip -4 -o addr show | awk \'{print $2, $4}\'; cat /sys/class/net/eth0/address']);
  t.is(opts.code, 0, opts.stderr);
  t.regex(opts.stdout, new RegExp(`^lan0 ${defaultNet(sb)}\\.\\d+\\.\\d+/16\neth0 10\\.91\\.0\\.50/24\n02:42:0a:5b:00:32$`, 'm'));
  t.deepEqual(reservations(sb), [], 'the static address released too');
  t.regex(b(['run', '--rm', '--network', 'second:ip=10.91.0.50', '--network', 'usernet', '--', 'true']).stderr, /only CNI networks can be combined/);
  t.regex(b(['run', '--rm', '--network', 'second:ip=10.91.0', '--', 'true']).stderr, /--network second: ip: "10\.91\.0" is not an IPv4 or IPv6 address/);
  t.is(b(['network', 'rm', 'second']).code, 0);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'ipam')), ['burrow'], 'the removed network\'s IPAM store went with it');
  t.regex(b(['run', '--rm', '--network', 'burrow,usernet', '--', 'true']).stderr, /only CNI networks can be combined/);
  t.regex(b(['run', '--rm', '--network', 'burrow,second', '--ip', '10.91.0.9', '--', 'true']).stderr, /--ip with several networks is ambiguous/);
});

rootTest.serial('rootless pod: one user namespace, members share localhost, published port, rm -f leaves nothing', async (t) => {
  const uid = ensureUser(t, USER);
  const w = await world(t);
  const u = (args: string[]) => sync(userArgv(USER, w.host, args));
  t.teardown(() => void u(['pod', 'rm', '-f', 'rp']));
  t.is(u(['pod', 'create', '--name', 'rp', '-p', '18701:8080']).code, 0);
  const web = u(['run', '-d', '--pod', 'rp', '--name', 'rweb', ...FIXTURES, '--', ...HTTP(8080)]);
  t.is(web.code, 0, web.stderr);
  t.is(await httpUp(w.host, 'http://127.0.0.1:18701/'), '200', 'published by the pod\'s usernet stack');
  t.is(await httpUp(w.remote, 'http://10.98.0.1:18701/'), '200');
  const peer = u(['run', '--rm', '--pod', 'rp', '--', ...CURL('http://127.0.0.1:8080/')]);
  t.is(peer.stdout, '200', peer.stderr);
  const ps = JSON.parse(u(['ps', '--format', 'json']).stdout) as Array<{ Names: string[]; Pod: string; IsInfra: boolean }>;
  t.is(ps.length, 2);
  t.true(ps.some((c) => c.IsInfra));
  t.regex(u(['run', '--rm', '--pod', 'rp', '-p', '9000:80', '--', 'true']).stderr, /-p cannot be used with --pod: the container shares the network namespace of pod "rp"/);
  t.regex(u(['run', '--rm', '--pod', 'rp', '--userns', 'keep-id', '--', 'true']).stderr, /shares the user namespace/);
  t.is(u(['pod', 'rm', '-f', '-t', '2', 'rp']).code, 0);
  const state = path.join('/tmp', `burrow-${uid}`, 'burrow');
  t.deepEqual(fs.readdirSync(path.join(state, 'containers')), []);
  t.deepEqual(fs.readdirSync(path.join(state, 'pods')), []);
  for (let i = 0; i < 40 && spawnSync('pgrep', ['-u', USER]).status === 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.is(spawnSync('pgrep', ['-u', USER]).status, 1, 'no process of the user is left');
});

rootTest.serial('pods: bad input gets clear errors', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  t.regex(b(['run', '--rm', '--pod', 'nosuch', '--', 'true']).stderr, /no pod with name or ID "nosuch" found: no such pod/);
  t.regex(b(['run', '--rm', '--network', 'container:nosuch', '--', 'true']).stderr, /no container with name or ID "nosuch" found: no such container/);
  t.teardown(() => void b(['pod', 'rm', '-f', 'dup']));
  t.is(b(['pod', 'create', '--name', 'dup', '--network', 'none']).code, 0);
  t.regex(b(['pod', 'create', '--name', 'dup']).stderr, /the pod name "dup" is already in use/);
  t.regex(b(['run', '--rm', '--pod', 'dup', '--network', 'host', '--', 'true']).stderr, /--pod and --network/);
  t.regex(b(['pod', 'create', '--name', 'bad', '--network', 'nosuch']).stderr, /nosuch/);
  t.deepEqual(JSON.parse(b(['pod', 'ls', '--format', 'json']).stdout).map((p: { Name: string }) => p.Name), ['dup'], 'the failed create left no pod');
  t.is(b(['pod', 'rm', 'dup']).code, 0);
});
