/**
 * Rootless networking for real, as an unprivileged user (created with useradd): burrow's
 * userspace stack serves a container made by `burrow unshare --network usernet`. The user's
 * "host" is a network namespace of the test's own, linked to a "remote" namespace that plays the
 * outside world, so the machine's own stack is never touched.
 */
import { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nsExec, rootTest } from './helpers/netns.js';
import { burrowAs, CHECKS, finished, inContainerAs, SERVERS, servers, world, type Check, type ServerSpec } from './helpers/usernet.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrownet';


const burrow = (ns: string, args: string[], env: Record<string, string> = {}) => burrowAs(USER, ns, args, env);
const inContainer = (ns: string, args: string[], checks: Check[], env: Record<string, string> = {}) => inContainerAs(USER, ns, args, checks, env);

rootTest.serial('outbound: gateway ping, DNS through a host resolver on 127.0.0.53, TCP/UDP to the remote world on v4 and v6', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  await servers(t, w.remote, [
    { proto: 'tcp', host: '10.98.0.2', port: 7001, mode: 'peer' },
    { proto: 'udp', host: '10.98.0.2', port: 7002, mode: 'echo' },
    { proto: 'tcp', host: 'fd98::2', port: 7001, mode: 'peer' },
    { proto: 'udp', host: 'fd98::2', port: 7002, mode: 'echo' },
  ]);
  await servers(t, w.host, [{ proto: 'udp', host: '127.0.0.53', port: 53, mode: 'dns' }]);
  // Echo to other hosts uses unprivileged ping sockets, which the (per-netns) sysctl must allow.
  nsExec(w.host, ['sysctl', '-q', '-w', 'net.ipv4.ping_group_range=0 2147483647']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-resolv-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.53\noptions edns0\n', { mode: 0o644 });
  const query = '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01';
  const r = await inContainer(w.host, [], [
    { name: 'ping-gw', kind: 'ping', host: '10.0.2.2' },
    { name: 'ping-gw6', kind: 'ping', host: 'fd00::2' },
    { name: 'ping-remote', kind: 'ping', host: '10.98.0.2' },
    { name: 'ping-remote6', kind: 'ping', host: 'fd98::2' },
    { name: 'dns', kind: 'udp', host: '10.0.2.3', port: 53, msg: query },
    { name: 'tcp4', kind: 'tcp', host: '10.98.0.2', port: 7001 },
    { name: 'udp4', kind: 'udp', host: '10.98.0.2', port: 7002, msg: 'hello' },
    { name: 'tcp6', kind: 'tcp', host: 'fd98::2', port: 7001 },
    { name: 'udp6', kind: 'udp', host: 'fd98::2', port: 7002, msg: 'hello6' },
    { name: 'refused', kind: 'tcp', host: '10.98.0.2', port: 7999 },
    { name: 'addr', kind: 'sh', cmd: 'ip -br addr show tap0; ip route show default' },
  ], { BURROW_RESOLV_CONF: path.join(dir, 'resolv.conf') });
  t.is(r['ping-gw'], 'ok');
  t.is(r['ping-gw6'], 'ok');
  t.is(r['ping-remote'], 'ok', 'echo to another host through a ping socket');
  t.is(r['ping-remote6'], 'ok');
  const dns = Buffer.from(r.dns as string, 'latin1');
  t.deepEqual([dns[0], dns[1], dns[2] & 0x80], [0x12, 0x34, 0x80], 'the host resolver on 127.0.0.53 answered through 10.0.2.3');
  // Outbound is socket-level NAT: the remote sees the host's address (the user's sockets).
  t.regex(r.tcp4 as string, /^10\.98\.0\.1 \d+$/);
  t.is(r.udp4, 'echo:hello from 10.98.0.1');
  t.regex(r.tcp6 as string, /^fd98::1 \d+$/);
  t.is(r.udp6, 'echo:hello6 from fd98::1');
  t.is(r.refused, 'ERR ECONNREFUSED', 'a refused host connect is a refused container connect');
  t.regex(r.addr as string, /tap0\s+UNKNOWN\s+10\.0\.2\.100\/24 fd00::100\/64/);
  t.regex(r.addr as string, /default via 10\.0\.2\.2 dev tap0/);
});

rootTest.serial('host loopback: unreachable by default, reachable only through --map-host-loopback', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  await servers(t, w.host, [
    { proto: 'tcp', host: '127.0.0.1', port: 7101, mode: 'peer' },
    { proto: 'udp', host: '127.0.0.1', port: 7102, mode: 'echo' },
  ]);
  const checks: Check[] = [
    { name: 'gw-tcp', kind: 'tcp', host: '10.0.2.2', port: 7101 },
    { name: 'gw-udp', kind: 'udp', host: '10.0.2.2', port: 7102, msg: 'x' },
    { name: 'zero', kind: 'tcp', host: '0.0.0.0', port: 7101 },
  ];
  const closed = await inContainer(w.host, [], checks);
  t.is(closed['gw-tcp'], 'ERR ECONNREFUSED');
  t.is(closed['gw-udp'], 'ERR timeout');
  t.regex(closed.zero as string, /^ERR/, '0.0.0.0 means the container\'s own loopback, never the host\'s');
  const open = await inContainer(w.host, ['--map-host-loopback', '10.0.2.2'], checks.slice(0, 2));
  t.regex(open['gw-tcp'] as string, /^127\.0\.0\.1 \d+$/);
  t.is(open['gw-udp'], 'echo:x from 127.0.0.1');
});

/** Starts a container with servers inside and the given publish flags; resolves once they listen. */
async function publishing(t: ExecutionContext, ns: string, args: string[], inside: ServerSpec[]): Promise<ChildProcess> {
  const c = burrow(ns, ['unshare', '--network', 'usernet', ...args, '--', process.execPath, SERVERS, JSON.stringify(inside)]);
  t.teardown(() => void c.kill('SIGTERM'));
  let err = '';
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    c.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    c.once('exit', (code) => reject(new Error(`container exited ${code}: ${err}`)));
  });
  return c;
}

function request(ns: string, host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn('nsenter', [`--net=${ns}`, '--', process.execPath, '-e', `
      const s = require('net').connect({ host: ${JSON.stringify(host)}, port: ${port} });
      let o = ''; s.on('data', (d) => (o += d)); s.on('end', () => console.log(o));
      s.on('error', (e) => console.log('ERR ' + e.code)); setTimeout(() => { console.log('ERR timeout'); process.exit(); }, 4000).unref();`]);
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => resolve(out.trim()));
  });
}

function udpRequest(ns: string, host: string, port: number, msg: string): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn('nsenter', [`--net=${ns}`, '--', process.execPath, '-e', `
      const s = require('dgram').createSocket(${JSON.stringify(host.includes(':') ? 'udp6' : 'udp4')});
      s.on('message', (m) => { console.log(String(m)); process.exit(); });
      s.send(${JSON.stringify(msg)}, ${port}, ${JSON.stringify(host)}); setTimeout(() => { console.log('ERR timeout'); process.exit(); }, 3000);`]);
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => resolve(out.trim()));
  });
}

rootTest.serial('port forwards: loopback clients spliced, other clients through the TAP with their own address, UDP, IPv6, bound address only, API at runtime', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  const api = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-api-')), 'api.sock');
  fs.chmodSync(path.dirname(api), 0o777);
  t.teardown(() => fs.rmSync(path.dirname(api), { recursive: true, force: true }));
  await publishing(t, w.host, ['-p', '8080:80', '-p', '127.0.0.1:8081:81', '-p', '5353:53/udp', '--api-socket', api], [
    { proto: 'tcp', host: '::', port: 80, mode: 'peer' },
    { proto: 'tcp', host: '::', port: 81, mode: 'peer' },
    { proto: 'tcp', host: '::', port: 82, mode: 'peer' },
    { proto: 'udp', host: '0.0.0.0', port: 53, mode: 'echo' },
  ]);
  // Loopback client: the spliced path; the container sees its own address (as pasta does).
  t.regex(await request(w.host, '127.0.0.1', 8080), /^(::ffff:)?10\.0\.2\.100 \d+$/);
  // A client in another namespace: the TAP path, with the real source address and port.
  const remote = await request(w.remote, '10.98.0.1', 8080);
  t.regex(remote, /^(::ffff:)?10\.98\.0\.2 \d+$/, 'the client\'s own address reaches the container (podman#5138)');
  t.regex(await request(w.remote, 'fd98::1', 8080), /^fd98::2 \d+$/, 'IPv6 clients keep their address too');
  t.is(await request(w.remote, '10.98.0.1', 8081), 'ERR ECONNREFUSED', 'a forward bound to 127.0.0.1 is not reachable from outside');
  t.regex(await request(w.host, '127.0.0.1', 8081), /10\.0\.2\.100/);
  t.is(await udpRequest(w.remote, '10.98.0.1', 5353, 'q'), 'echo:q from 10.98.0.2', 'UDP forwards keep the source too');
  // The API adds and removes forwards at runtime.
  const asUser = (args: string[]) => finished(burrow(w.host, ['usernet', 'port', '--api-socket', api, ...args]));
  const added = await asUser(['add', '8082:82']);
  t.is(added.code, 0, added.stderr);
  t.regex(await request(w.remote, '10.98.0.1', 8082), /10\.98\.0\.2/);
  const ls = await asUser(['ls']);
  t.deepEqual(ls.stdout.trim().split('\n').map((l) => l.split('\t')[1]), ['8080:80/tcp', '127.0.0.1:8081:81/tcp', '5353:53/udp', '8082:82/tcp']);
  t.is((await asUser(['rm', added.stdout.trim()])).code, 0);
  t.is(await request(w.remote, '10.98.0.1', 8082), 'ERR ECONNREFUSED');
  const dup = await asUser(['add', '8080:80']);
  t.regex(dup.stderr, /host port \*:8080\/tcp is already in use/);
});

rootTest.serial('a 1 GiB transfer each way arrives intact (sha256 on both ends)', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  await servers(t, w.remote, [{ proto: 'tcp', host: '10.98.0.2', port: 7201, mode: 'sha' }]);
  const r = await inContainer(w.host, [], [{ name: 'up', kind: 'bulk', host: '10.98.0.2', port: 7201, bytes: 1 << 30 }]);
  const up = r.up as { local: string; remote: string };
  t.is(up.remote, up.local, 'container -> outside: the remote saw every byte in order');
  t.regex(up.local, / 1073741824$/);
  // Into the container through a forward (TAP path): a client in the remote namespace sends 1 GiB.
  await publishing(t, w.host, ['-p', '7301:7301'], [{ proto: 'tcp', host: '0.0.0.0', port: 7301, mode: 'sha' }]);
  const send = spawnSync('nsenter', [`--net=${w.remote}`, '--', process.execPath, CHECKS, JSON.stringify([{ name: 'down', kind: 'bulk', host: '10.98.0.1', port: 7301, bytes: 1 << 30 }])], { encoding: 'utf8', maxBuffer: 1 << 20 });
  const down = JSON.parse(send.stdout).down as { local: string; remote: string };
  t.is(down.remote, down.local, 'outside -> container through the TAP path');
});

rootTest.serial('cleanup: the container exiting stops the stack; killing the stack removes the TAP and frees the ports', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  const r = await finished(burrow(w.host, ['unshare', '--network', 'usernet', '-p', '7401:80', '--', 'sh', '-c', 'exit 3']));
  t.is(r.code, 3, 'the exit status comes through');
  const free = (port = 7401) => new Promise<boolean>((resolve) => {
    const c = spawn('nsenter', [`--net=${w.host}`, '--', process.execPath, '-e', `require('net').createServer().listen(${port}, () => process.exit(0)).on('error', () => process.exit(1))`]);
    c.on('close', (code) => resolve(code === 0));
  });
  t.true(await free(), 'the forwarded port is free again');

  // burrow itself killed with -9: the container dies with it (PR_SET_PDEATHSIG) and the port frees.
  const doomed = burrow(w.host, ['unshare', '--network', 'usernet', '-p', '7401:80', '--', 'sleep', '41']);
  let victim = 0;
  for (let i = 0; i < 400 && !victim; i++) { // up to 20 s: a loaded 2-core CI machine starts it late
    await new Promise((res) => setTimeout(res, 50));
    victim = Number(spawnSync('pgrep', ['-u', USER, '-f', '^sleep 41$'], { encoding: 'utf8' }).stdout.trim().split('\n')[0] || 0);
  }
  t.true(victim > 0, 'the container started');
  doomed.kill('SIGKILL');
  await new Promise((res) => doomed.once('exit', res));
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await new Promise((res) => setTimeout(res, 20));
    gone = !fs.existsSync(`/proc/${victim}`) || fs.readFileSync(`/proc/${victim}/stat`, 'utf8').split(') ')[1].startsWith('Z');
  }
  t.true(gone, 'the container process died with burrow');
  t.true(await free(), 'and the port is free');

  // attach to a running namespace, then kill -9 the stack.
  let pid = 0;
  const holder = burrow(w.host, ['unshare', '--ns', 'net', '--', 'sleep', '31']);
  t.teardown(() => {
    holder.kill('SIGKILL');
    if (pid) spawnSync('kill', ['-9', String(pid)]);
  });
  for (let i = 0; i < 400 && !pid; i++) {
    await new Promise((res) => setTimeout(res, 50));
    const ps = spawnSync('pgrep', ['-u', USER, '-f', '^sleep 31$'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
    pid = Number(ps[0] ?? 0);
  }
  t.true(pid > 0, 'the namespace holder started');
  const attach = burrow(w.host, ['usernet', 'attach', String(pid), '--configure', '-p', '7402:80']);
  let attached = false;
  for (let i = 0; i < 100 && !attached; i++) {
    await new Promise((res) => setTimeout(res, 50));
    attached = spawnSync('nsenter', ['-t', String(pid), '-n', 'ip', '-br', 'addr', 'show', 'tap0'], { encoding: 'utf8' }).stdout.includes('10.0.2.100');
  }
  t.true(attached, 'attach configured tap0 inside the running namespace');
  attach.kill('SIGKILL');
  await new Promise((res) => attach.once('close', res));
  await new Promise((res) => setTimeout(res, 200));
  const links = spawnSync('nsenter', ['-t', String(pid), '-n', 'ip', '-br', 'link'], { encoding: 'utf8' }).stdout;
  t.notRegex(links, /tap0/, 'the TAP died with the stack');
  t.true(await free(7402), 'the port is free once the stack is gone');
  spawnSync('kill', ['-9', String(pid)]);
  const end = await finished(holder);
  t.is(end.code, 137, 'the container died by SIGKILL, reported as 128+9');
});

rootTest.serial('guests that ask: DHCPv4 (busybox udhcpc) and SLAAC from router advertisements, without --configure', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  const holder = burrow(w.host, ['unshare', '--ns', 'net', '--', 'sleep', '32']);
  let pid = 0;
  t.teardown(() => {
    holder.kill('SIGKILL');
    if (pid) spawnSync('kill', ['-9', String(pid)]);
  });
  for (let i = 0; i < 100 && !pid; i++) {
    await new Promise((res) => setTimeout(res, 50));
    pid = Number(spawnSync('pgrep', ['-u', USER, '-f', '^sleep 32$'], { encoding: 'utf8' }).stdout.trim().split('\n')[0] || 0);
  }
  const attach = burrow(w.host, ['usernet', 'attach', String(pid)]);
  t.teardown(() => void attach.kill('SIGKILL'));
  const inNs = (cmd: string) => spawnSync('nsenter', ['-t', String(pid), '-n', 'sh', '-c', cmd], { encoding: 'utf8' });
  for (let i = 0; i < 100 && !inNs('ip link show tap0').stdout; i++) await new Promise((res) => setTimeout(res, 50));
  inNs('ip link set lo up; ip link set tap0 up');
  // udhcpc hands the lease to a script; ours prints what it was given.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-dhcp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const script = path.join(dir, 'lease.sh');
  fs.writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] && echo "lease ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu"\nexit 0\n', { mode: 0o755 });
  const dhcp = inNs(`busybox udhcpc -i tap0 -n -q -f -t 5 -T 1 -s ${script}`);
  t.regex(dhcp.stdout, /lease ip=10\.0\.2\.100 mask=24 router=10\.0\.2\.2 dns=10\.0\.2\.3 mtu=65520/, dhcp.stderr);
  let slaac = '';
  for (let i = 0; i < 100 && !/fd00::/.test(slaac); i++) {
    if (i % 20 === 0) inNs('sysctl -q -w net.ipv6.conf.tap0.accept_ra=2; ip link set tap0 down; ip link set tap0 up');
    await new Promise((res) => setTimeout(res, 100));
    slaac = inNs('ip -6 -br addr show dev tap0 scope global').stdout;
  }
  t.regex(slaac, /fd00::[0-9a-f:]+\/64/, 'an address from the advertised prefix');
  t.regex(inNs('ip -6 route show default').stdout, /default via fe80::2 dev tap0/, 'the router advertisement made us the default router');
});
