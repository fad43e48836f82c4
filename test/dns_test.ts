/**
 * Container names end to end, rootful and rootless, in a test "host" namespace with a "remote"
 * one holding the outside resolver: by name, by --network-alias and by NAME:alias=, the short id
 * and PTR; removal; one alias on two networks; a container on two networks; a name on another
 * network not resolving; a pod by its name and --network-alias; queries from outside the network refused; forwarding (UDP, and TCP
 * with a large answer); kill -9 of the server and its return with every record; 50 containers
 * started in parallel, all resolvable; and nothing left (no server, no record file). Rootful, the
 * host namespace's INPUT policy is DROP, as on a host with ufw: dnsname's INPUT rules let DNS in.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { ROOT } from './helpers/burrow.js';
import { nsExec, rootTest } from './helpers/netns.js';
import { FIXTURES, rootArgv, rootSandbox, sync, userArgv, world } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const Q = '/run/fixtures/dns_query.cjs';
type B = ((args: string[]) => { code: number; stdout: string; stderr: string }) & { argv(args: string[]): string[] };
interface Reply { rcode?: number; tc?: boolean; error?: string; answers?: Array<{ type: number; value: string }> }

/** The outside resolver, in the remote namespace at 10.98.0.2; its log of names asked. */
async function outsideResolver(t: ExecutionContext, remote: string): Promise<() => string[]> {
  const p = spawn('nsenter', [`--net=${remote}`, '--', process.execPath, path.join(ROOT, 'test', 'fixtures', 'fake_resolver.cjs'), '10.98.0.2'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => p.kill('SIGKILL'));
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 100 && !out.includes('ready'); i++) await sleep(50);
  return () => out.split('\n').filter((l) => l && l !== 'ready');
}

/** The checks every mode shares, through `b` (burrow as root or as the user). */
async function nameChecks(t: ExecutionContext, b: B, net: (n: number) => string, asked: () => string[], serverPids: () => string[]) {
  const ok = (args: string[]) => {
    const r = b(args);
    t.is(r.code, 0, `burrow ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  ok(['network', 'create', '--subnet', `${net(1)}.0/24`, 'dn1']);
  ok(['network', 'create', '--subnet', `${net(2)}.0/24`, 'dn2']);
  ok(['network', 'create', '--subnet', `${net(3)}.0/24`, '--disable-dns', 'dn3']);
  const info = JSON.parse(ok(['network', 'inspect', 'dn1', 'dn3'])) as Array<{ dns_enabled: boolean }>;
  t.deepEqual(info.map((n) => n.dns_enabled), [true, false], 'DNS on by default, off with --disable-dns');
  const ip = (name: string, n: string) => (JSON.parse(ok(['inspect', name]))[0].NetworkSettings.Networks[n]?.IPAddress ?? '') as string;
  const id = (name: string) => (JSON.parse(ok(['inspect', name]))[0].Id as string);
  ok(['run', '-d', '--name', 'db', '--network', 'dn1', '--network-alias', 'postgresql', '--', 'sleep', '600']);
  ok(['run', '-d', '--name', 'cache1', '--network', 'dn1:alias=cache', '--', 'sleep', '600']);
  ok(['run', '-d', '--name', 'cache2', '--network', 'dn2:alias=cache', '--', 'sleep', '600']);
  ok(['run', '-d', '--name', 'web', '--network', 'dn2', '--', 'sleep', '600']);
  ok(['run', '-d', '--name', 'both', '--network', 'dn1,dn2', '--', 'sleep', '600']);
  const dbIp = ip('db', 'dn1');
  const gw1 = `${net(1)}.1`;
  // one client per network set, asking many questions at once (a container per question is slow)
  const ask = (nets: string[], qs: Array<[string, string, string?, string?]>): Reply[] => {
    const script = qs.map(([server, name, type = 'A', proto = 'udp']) => `node ${Q} ${server} ${name} ${type} ${proto}`).join('; ');
    const r = b(['run', '--rm', ...FIXTURES, ...nets.flatMap((n) => ['--network', n]), '--', 'sh', '-c', `cat /etc/resolv.conf >&2; PATH=$PATH:${path.dirname(process.execPath)}; ${script.replace(/node /g, `${process.execPath} `)}`]);
    t.is(r.code, 0, r.stderr);
    return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Reply);
  };
  const v = (r: Reply) => (r.answers ?? []).map((a) => a.value);
  const resolv = b(['run', '--rm', '--network', 'dn1', '--', 'cat', '/etc/resolv.conf']).stdout;
  t.regex(resolv, new RegExp(`^search dns\\.podman`, 'm'));
  t.regex(resolv, new RegExp(`^nameserver ${gw1.replace(/\./g, '\\.')}$`, 'm'), 'the gateway is the first nameserver');
  const [byName, byAlias, byNetAlias, qualified, shortId, other, ptr, nx, tcp, outside, big] = ask(['dn1'], [
    [gw1, 'db'], [gw1, 'postgresql'], [gw1, 'cache'], [gw1, 'db.dns.podman'], [gw1, id('db').slice(0, 12)], [gw1, 'web'],
    [gw1, `${dbIp.split('.').reverse().join('.')}.in-addr.arpa`, 'PTR'], [gw1, 'nosuch'], [gw1, 'db', 'A', 'tcp'], [gw1, 'outside.test'], [gw1, 'big.test', 'A', 'tcp'],
  ]);
  t.deepEqual(v(byName), [dbIp], 'by name');
  t.deepEqual(v(byAlias), [dbIp], 'by --network-alias');
  t.deepEqual(v(byNetAlias), [ip('cache1', 'dn1')], 'by NAME:alias=, this network\'s own');
  t.deepEqual(v(qualified), [dbIp], 'with the search domain');
  t.deepEqual(v(shortId), [dbIp], 'by short id');
  t.is(other.rcode, 3, 'a name on another network does not resolve');
  t.deepEqual(v(ptr), ['db.dns.podman', 'postgresql.dns.podman', id('db').slice(0, 12) + '.dns.podman']);
  t.is(nx.rcode, 3);
  t.deepEqual(v(tcp), [dbIp], 'over TCP');
  t.deepEqual(v(outside), ['192.0.2.80'], 'an outside name is forwarded to the host\'s resolver');
  t.is(v(big).length, 100, 'a large answer over TCP, forwarded over TCP');
  await sleep(100); // spawnSync held the event loop: the resolver's log arrives now
  t.true(asked().includes('outside.test') && asked().includes('big.test'), asked().join(' '));
  t.false(asked().some((n) => n.startsWith('db') || n === 'nosuch'), 'local names never leave');
  const [cache2, webOn2] = ask(['dn2'], [[`${net(2)}.1`, 'cache'], [`${net(2)}.1`, 'web']]);
  t.deepEqual(v(cache2), [ip('cache2', 'dn2')], 'one alias on two networks: each network\'s address');
  t.deepEqual(v(webOn2), [ip('web', 'dn2')]);
  const [fromBoth1, fromBoth2] = ask(['dn1', 'dn2'], [[gw1, 'web'], [gw1, 'db']]);
  t.deepEqual(v(fromBoth1), [ip('web', 'dn2')], 'a container on two networks resolves names on both');
  t.deepEqual(v(fromBoth2), [dbIp]);
  const [off] = ask(['dn3'], [[gw1, 'db']]);
  t.true(off.rcode === 5 || off.error === 'timeout', `a network without DNS is outside: ${JSON.stringify(off)}`);

  // kill -9 of the server: the next burrow command brings it back with every record
  const before = serverPids();
  t.is(before.length, 1, 'one server for every network');
  spawnSync('kill', ['-9', ...before]);
  await sleep(200);
  ok(['ps']);
  const after = serverPids();
  t.is(after.length, 1);
  t.notDeepEqual(after, before);
  const [again] = ask(['dn1'], [[gw1, 'postgresql']]);
  t.deepEqual(v(again), [dbIp], 'records intact after the restart');

  // removal: the name goes with the container
  ok(['rm', '-f', 'db']);
  const [gone] = ask(['dn1'], [[gw1, 'db']]);
  t.is(gone.rcode, 3, 'removed: NXDOMAIN');

  // a pod is known by its own name and its --network-alias, at its (infra's) address
  ok(['pod', 'create', '--name', 'shop', '--network', 'dn1', '--network-alias', 'store']);
  ok(['run', '-d', '--pod', 'shop', '--name', 'shopdb', '--', 'sleep', '600']);
  const podIp = (JSON.parse(ok(['pod', 'inspect', 'shop'])) as Array<{ IPs: string[] }>)[0].IPs[0] ?? '';
  t.regex(podIp, /^\d+\.\d+\.\d+\.\d+$/);
  const [byPod, byPodAlias] = ask(['dn1'], [[gw1, 'shop'], [gw1, 'store']]);
  t.deepEqual([v(byPod), v(byPodAlias)], [[podIp], [podIp]], 'the pod by name and by alias');
  ok(['pod', 'rm', '-f', 'shop']);
  t.is(ask(['dn1'], [[gw1, 'shop']])[0].rcode, 3, 'the pod\'s name goes with it');

  // 50 containers started in parallel, all resolvable
  const names = Array.from({ length: 50 }, (_, i) => `p${i}`);
  const started = await Promise.all(names.map((n) => new Promise<number>((resolve) => {
    const c = spawn('sh', ['-c', '"$@" >/dev/null 2>&1', 'sh', ...b.argv(['run', '-d', '--name', n, '--network', 'dn1', '--', 'sleep', '600'])]);
    c.on('exit', (code) => resolve(code ?? 1));
  })));
  t.deepEqual(started.filter((c) => c !== 0), [], 'all 50 started');
  const all = ask(['dn1'], names.map((n) => [gw1, n] as [string, string]));
  t.deepEqual(all.filter((r) => v(r).length !== 1).map((r) => JSON.stringify(r)), [], 'all 50 resolve');
  ok(['rm', '-f', ...names, 'cache1', 'cache2', 'web', 'both']);
  for (let i = 0; i < 50 && serverPids().length; i++) await sleep(100);
  t.deepEqual(serverPids(), [], 'the server leaves with the last record');
  for (const n of ['dn1', 'dn2', 'dn3']) ok(['network', 'rm', n]);
}

rootTest.serial('rootful: names, aliases, isolation, forwarding, TCP, refusal from outside, kill -9 and recovery, 50 in parallel', async (t) => {
  const w = await world(t);
  const asked = await outsideResolver(t, w.remote);
  const sb = rootSandbox(t);
  const root = path.join(sb.dir, 'dns');
  const resolvConf = path.join(sb.dir, 'resolv.conf');
  fs.writeFileSync(resolvConf, 'nameserver 10.98.0.2\n');
  const env = ['env', `BURROW_DNS_ROOT=${root}`, `BURROW_RESOLV_CONF=${resolvConf}`];
  const argv = (args: string[]) => [...env, ...rootArgv(sb, w.host, args)];
  const b = Object.assign((args: string[]) => sync(argv(args)), { argv }) as B;
  const serverPids = () => spawnSync('pgrep', ['-f', `dnsname.cjs serve --root ${root}`], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  t.teardown(() => void spawnSync('pkill', ['-9', '-f', `dnsname.cjs serve --root ${root}`]));
  t.teardown(() => void sync(argv(['rm', '-f', '-a'])));
  // from outside the network (the remote namespace, routed to it): refused
  nsExec(w.remote, ['ip', 'route', 'add', '10.61.0.0/16', 'via', '10.98.0.1']);
  b(['network', 'create', '--subnet', '10.61.9.0/24', 'probe']);
  t.is(b(['run', '-d', '--name', 'probe', '--network', 'probe', '--', 'sleep', '600']).code, 0);
  const refused = JSON.parse(nsExec(w.remote, [process.execPath, path.join(ROOT, 'test', 'fixtures', 'dns_query.cjs'), '10.61.9.1', 'probe'])) as Reply;
  t.is(refused.rcode, 5, `a query from outside the network is refused: ${JSON.stringify(refused)}`);
  t.is(b(['rm', '-f', 'probe']).code, 0);
  b(['network', 'rm', 'probe']);
  // a host firewall that drops INPUT but what it asked for (ufw's shape): dnsname's INPUT rules
  // are what lets the containers reach their gateway's port 53
  nsExec(w.host, ['iptables', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
  nsExec(w.host, ['iptables', '-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT']);
  nsExec(w.host, ['iptables', '-P', 'INPUT', 'DROP']);
  await nameChecks(t, b, (n) => `10.61.${n}`, asked, serverPids);
  t.notRegex(nsExec(w.host, ['iptables-save', '-t', 'filter']), /burrow dnsname/, 'the INPUT rules went with the last records');
  t.deepEqual(fs.existsSync(path.join(root, 'dnsname')) ? fs.readdirSync(path.join(root, 'dnsname')) : [], [], 'no record file left');
});

rootTest.serial('rootless: the same inside the user\'s network namespace, its server forwarding through the stack', async (t) => {
  const user = 'burrowdns';
  const uid = ensureUser(t, user);
  const w = await world(t);
  const asked = await outsideResolver(t, w.remote);
  const resolvConf = path.join(os.tmpdir(), `burrow-dns-resolv-${process.pid}`);
  fs.writeFileSync(resolvConf, 'nameserver 10.98.0.2\n');
  t.teardown(() => fs.rmSync(resolvConf, { force: true }));
  const env = [`BURROW_RESOLV_CONF=${resolvConf}`];
  const argv = (args: string[]) => userArgv(user, w.host, args, env);
  const b = Object.assign((args: string[]) => sync(argv(args)), { argv }) as B;
  const serverPids = () => spawnSync('pgrep', ['-u', user, '-f', 'dnsname.cjs serve'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  t.teardown(() => {
    sync(argv(['rm', '-f', '-a']));
    spawnSync('pkill', ['-9', '-u', user]);
  });
  await nameChecks(t, b, (n) => `10.62.${n}`, asked, serverPids);
  const records = path.join(os.tmpdir(), `burrow-${uid}`, 'burrow', 'netns', 'run', 'containers', 'cni', 'dnsname');
  t.deepEqual(fs.existsSync(records) ? fs.readdirSync(records) : [], [], 'no record file left');
});
