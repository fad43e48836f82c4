/**
 * bin/compat/slirp4netns for real. As root, in a test "host" namespace with a "remote" one
 * beyond it: podman's argv on a `--netns-type=path` target (ready fd, configured TAP at
 * cidr+100 with the MTU and IPv6, egress with and without --outbound-addr, host loopback closed
 * and open, the API socket's add/list/remove reaching the guest, exit at the exit fd's EOF with
 * the socket removed), DHCP for an unconfigured guest, SIGTERM. Podman's default argv with
 * --enable-sandbox --enable-seccomp: the same pid confined (root, capabilities, no_new_privs,
 * seccomp) and still serving. As a user: the `PID tap0` form
 * on a user namespace the user created, as rootless podman's runtime creates them.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { ROOT } from './helpers/burrow.js';
import { ipJson, nsExec, peerEchoServer, rootTest, tcpRequest, testNetns, uplink } from './helpers/netns.js';
import { ensureUser } from './helpers/users.js';

const BIN = path.join(ROOT, 'bin', 'compat', 'slirp4netns');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Slirp {
  p: ChildProcess;
  out: () => string;
  /** resolves with what came on the ready fd (fd 4), or rejects when the process exits first */
  ready: Promise<string>;
  exited: Promise<number | null>;
}

/** Starts the drop-in with fd 3 = exit fd and fd 4 = ready fd (podman's `-e 3 -r 4`). */
function start(t: ExecutionContext, argv: string[]): Slirp {
  const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
  t.teardown(() => p.kill('SIGKILL'));
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  const ready = new Promise<string>((resolve, reject) => {
    (p.stdio[4] as NodeJS.ReadableStream).once('data', (d: Buffer) => resolve(d.toString()));
    void exited.then((code) => reject(new Error(`slirp4netns exited ${code} before it was ready: ${out}`)));
  });
  ready.catch(() => undefined);
  return { p, out: () => out, ready, exited };
}

/** One slirp4netns API exchange: write, shut down writing, read to EOF. */
function api(sock: string, req: object): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let out = '';
    c.on('connect', () => c.end(JSON.stringify(req)));
    c.on('data', (d) => (out += d.toString()));
    c.on('close', () => {
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`not JSON: ${out}`));
      }
    });
    c.on('error', reject);
  });
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms)))]);
  clearTimeout(timer);
  return r;
}

rootTest('slirp4netns drop-in: podman\'s argv on a path target, egress, outbound address, host loopback, the API socket, exit fd; DHCP; SIGTERM', async (t) => {
  const host = testNetns(t, 'sh');
  const remote = testNetns(t, 'sr');
  await uplink(host, remote, '10.97.0.1', '10.97.0.2');
  nsExec(host, ['ip', 'addr', 'add', '10.97.0.5/24', 'dev', 'up0']);
  await peerEchoServer(t, remote, '10.97.0.2', 7000);
  const ctr = testNetns(t, 'sc');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slirp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'ctr.net');
  const s = start(t, ['nsenter', `--net=${host}`, '--', BIN, '--disable-host-loopback', '--mtu=65520', '--enable-ipv6', '-c', '-e', '3', '-r', '4', '--outbound-addr=10.97.0.5', '--api-socket', sock, '--netns-type=path', ctr, 'tap0']);
  t.is(await withTimeout(s.ready, 20_000, 'ready fd'), '1');
  const [tap] = ipJson<Array<{ mtu: number; addr_info: Array<{ local: string; prefixlen: number }> }>>(ctr, ['addr', 'show', 'tap0']);
  t.is(tap.mtu, 65520);
  t.true(tap.addr_info.some((a) => a.local === '10.0.2.100' && a.prefixlen === 24), JSON.stringify(tap.addr_info));
  t.true(tap.addr_info.some((a) => a.local.startsWith('fd00::')), 'IPv6 with --enable-ipv6');
  t.regex(s.out(), /Recommended IP:\s+10\.0\.2\.100/);
  t.is(await tcpRequest(ctr, '10.97.0.2', 7000), '10.97.0.5', 'egress leaves from --outbound-addr');
  // the host's loopback: closed with --disable-host-loopback
  // a server on the test host's own loopback
  const loPort = 17_321;
  const hostLo = spawn('nsenter', [`--net=${host}`, '--', process.execPath, '-e', `require('net').createServer((c) => c.end('host loopback')).listen(${loPort}, '127.0.0.1', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => hostLo.kill('SIGKILL'));
  await new Promise((r) => hostLo.stdout!.once('data', r));
  await t.throwsAsync(tcpRequest(ctr, '10.0.2.2', loPort, 2), undefined, 'host loopback is closed');
  // the API: a forward from the host's port to the guest, seen from the gateway (slirp's port handler)
  await peerEchoServer(t, ctr, '0.0.0.0', 8080);
  t.deepEqual(await api(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '0.0.0.0', host_port: 18080, guest_addr: '', guest_port: 8080 } }), { return: { id: 1 } });
  t.deepEqual(await api(sock, { execute: 'list_hostfwd' }), { entries: [{ id: 1, proto: 'tcp', host_addr: '0.0.0.0', host_port: 18080, guest_addr: '10.0.2.100', guest_port: 8080 }] });
  // a loopback client is spliced through a socket made inside: the guest sees its own address (as with rootlessport)
  t.is(await tcpRequest(host, '127.0.0.1', 18080), '10.0.2.100');
  t.deepEqual(await api(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: 18080, guest_port: 8080 } }), { error: { desc: 'bad request: add_hostfwd: slirp_add_hostfwd failed' } });
  t.deepEqual(await api(sock, { execute: 'remove_hostfwd', arguments: { id: 1 } }), { return: {} });
  await t.throwsAsync(tcpRequest(host, '127.0.0.1', 18080, 2), undefined, 'the forward is gone');
  // the exit fd's EOF ends it, and the socket goes with it
  (s.p.stdio[3] as NodeJS.WritableStream).end();
  t.is(await withTimeout(s.exited, 10_000, 'exit at EOF'), 0);
  t.false(fs.existsSync(sock));

  // an unconfigured guest gets its address by DHCP; host loopback is open by default; SIGTERM ends it
  const ctr2 = testNetns(t, 'sd');
  const s2 = start(t, ['nsenter', `--net=${host}`, '--', BIN, '-r', '4', '--netns-type=path', ctr2, 'tap1']);
  t.is(await withTimeout(s2.ready, 20_000, 'ready fd'), '1');
  nsExec(ctr2, ['ip', 'link', 'set', 'tap1', 'up']);
  const dhcp = spawnSync('nsenter', [`--net=${ctr2}`, '--', 'busybox', 'udhcpc', '-i', 'tap1', '-n', '-q', '-f', '-s', '/bin/true'], { encoding: 'utf8', timeout: 20_000 });
  t.regex(`${dhcp.stdout}${dhcp.stderr}`, /lease of 10\.0\.2\.100 obtained/);
  nsExec(ctr2, ['sh', '-c', 'ip addr add 10.0.2.100/24 dev tap1 && ip route add default via 10.0.2.2']);
  t.is(await tcpRequest(ctr2, '10.0.2.2', loPort), 'host loopback', 'the gateway reaches the host\'s 127.0.0.1');
  t.is(ipJson<Array<{ mtu: number }>>(ctr2, ['link', 'show', 'tap1'])[0].mtu, 1500, 'slirp4netns\'s default MTU');
  s2.p.kill('SIGTERM');
  t.is(await withTimeout(s2.exited, 10_000, 'exit at SIGTERM'), 0);
});

rootTest('slirp4netns drop-in sandboxed: --enable-sandbox --enable-seccomp confine the same pid (a root of /etc, /run and the runtime; CAP_NET_BIND_SERVICE only; no_new_privs; seccomp) and it still serves', async (t) => {
  const host = testNetns(t, 'xh');
  const remote = testNetns(t, 'xr');
  await uplink(host, remote, '10.97.2.1', '10.97.2.2');
  await peerEchoServer(t, remote, '10.97.2.2', 7002);
  const ctr = testNetns(t, 'xc');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slirp-sbx-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'ctr.net');
  const s = start(t, ['nsenter', `--net=${host}`, '--', BIN, '--disable-host-loopback', '--mtu=65520', '--enable-sandbox', '--enable-seccomp', '--enable-ipv6', '-c', '-e', '3', '-r', '4', '--api-socket', sock, '--netns-type=path', ctr, 'tap0']);
  t.is(await withTimeout(s.ready, 20_000, 'ready fd'), '1');
  t.regex(s.out(), /seccomp: The following syscalls will be blocked by seccomp: execve execveat .*setns umount2 unshare\./);
  const status = fs.readFileSync(`/proc/${s.p.pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s+(\\S+)`, 'm').exec(status)?.[1];
  t.is(field('CapEff'), '0000000000000400', 'CAP_NET_BIND_SERVICE only');
  t.is(field('CapBnd'), '0000000000000400', 'and no exec regains more');
  t.is(field('NoNewPrivs'), '1');
  t.is(field('Seccomp'), '2', 'a seccomp filter');
  t.regex(fs.readFileSync(`/proc/${s.p.pid}/cmdline`, 'utf8'), /dist\/compat\/slirp4netns\.cjs/, 'the same pid re-executed into the sandbox');
  const top = fs.readdirSync(`/proc/${s.p.pid}/root`);
  t.true(top.includes('etc') && top.includes('run') && top.includes('usr'), top.join(' '));
  for (const hidden of ['home', 'root', 'var', 'proc', 'dev', 'boot', 'srv']) t.false(top.includes(hidden), `/${hidden} is not in the sandbox: ${top.join(' ')}`);
  // of /tmp, only the API socket's directory (and burrow's own tree, when the checkout is there, as in CI)
  const inTmp = fs.readdirSync(`/proc/${s.p.pid}/root${os.tmpdir()}`).filter((n) => n !== path.basename(dir) && !`${fs.realpathSync(ROOT)}/`.startsWith(path.join(os.tmpdir(), n, '/')));
  t.deepEqual(inTmp, [], 'of /tmp, only the API socket\'s directory and burrow\'s tree');
  // it still serves: egress, and a forward whose loopback client takes the stack's path (no splice: no exec in here)
  t.is(await tcpRequest(ctr, '10.97.2.2', 7002), '10.97.2.1');
  await peerEchoServer(t, ctr, '0.0.0.0', 8081);
  t.deepEqual(await api(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: 18081, guest_port: 8081 } }), { return: { id: 1 } });
  t.is(await tcpRequest(host, '127.0.0.1', 18081), '10.0.2.2', 'the guest sees the gateway, as behind slirp4netns');
  (s.p.stdio[3] as NodeJS.WritableStream).end();
  t.is(await withTimeout(s.exited, 10_000, 'exit at EOF'), 0);
  t.false(fs.existsSync(sock), 'the socket is removed from inside the sandbox');
});

rootTest('slirp4netns drop-in as a user: the PID form on the user\'s own user namespace, configured and reachable; errors as slirp4netns words them', async (t) => {
  const user = 'burrows4n';
  ensureUser(t, user);
  const host = testNetns(t, 'uh');
  const remote = testNetns(t, 'ur');
  await uplink(host, remote, '10.97.1.1', '10.97.1.2');
  await peerEchoServer(t, remote, '10.97.1.2', 7001);
  const asUser = ['nsenter', `--net=${host}`, '--', 'setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--'];
  const holder = spawn(asUser[0], [...asUser.slice(1), 'unshare', '--user', '--map-root-user', '--net', 'sleep', '600'], { stdio: 'ignore' });
  t.teardown(() => holder.kill('SIGKILL'));
  let pid = 0;
  for (let i = 0; i < 100 && !pid; i++) {
    await sleep(50);
    const r = spawnSync('pgrep', ['-u', user, '-f', '^sleep 600'], { encoding: 'utf8' });
    pid = Number(r.stdout.trim().split('\n')[0]) || 0;
  }
  t.true(pid > 0, 'the user\'s namespace holder runs');
  const s = start(t, [...asUser, BIN, '-c', '-e', '3', '-r', '4', String(pid), 'tap0']);
  t.is(await withTimeout(s.ready, 20_000, 'ready fd'), '1');
  const inside = spawnSync('nsenter', ['-t', String(pid), '-U', '-n', '--preserve-credentials', 'ip', '-br', 'addr', 'show', 'tap0'], { encoding: 'utf8' });
  t.regex(inside.stdout, /10\.0\.2\.100\/24/);
  // asynchronous: the echo server answers from this process's event loop
  const reach = await new Promise<string>((resolve) => execFile('nsenter', ['-t', String(pid), '-U', '-n', '--preserve-credentials', 'timeout', '5', 'bash', '-c', 'exec 3<>/dev/tcp/10.97.1.2/7001; cat <&3'], { encoding: 'utf8' }, (_err, stdout, stderr) => resolve(`${stdout}${stderr}`)));
  t.is(reach, '10.97.1.1', `egress from the user's namespace: ${s.out()}`);
  (s.p.stdio[3] as NodeJS.WritableStream).end();
  t.is(await withTimeout(s.exited, 10_000, 'exit at EOF'), 0);

  const bad = (args: string[]) => spawnSync(BIN, args, { encoding: 'utf8' });
  let r = bad(['--mtu=70000', '1', 'tap0']);
  t.is(r.status, 1);
  t.is(r.stderr, 'MTU must be a positive integer (< 65522)\n');
  t.regex(r.stdout, /^Usage: slirp4netns \[OPTION\]\.\.\. PID\|PATH \[TAPNAME\]/);
  t.is(bad(['--cidr=10.0.2.0/26', '1']).stderr, 'prefix length needs to be 1-25\n');
  t.is(bad(['--cidr=foo', '1']).stderr, 'invalid CIDR: foo\n');
  t.is(bad(['--bogus', '1']).stderr, 'slirp4netns: unrecognized option \'--bogus\'\n');
  t.is(bad(['--netns-type=path', '/nonexistent/ns']).stderr, 'existing path expected when --netns-type=path: No such file or directory\n');
  t.is(bad(['-e', 'x', '1']).stderr, 'exit-fd must be a non-negative integer\n');
  r = bad(['--help']);
  for (const flag of ['--disable-host-loopback', '--mtu', '--cidr', '--outbound-addr', '--enable-ipv6']) t.true(r.stdout.includes(flag), `--help lists ${flag} (podman probes it)`);
  for (const flag of ['--enable-sandbox', '--enable-seccomp']) t.true(r.stdout.includes(flag), `--help offers ${flag}, so podman passes it`);
  t.regex(bad(['--version']).stdout, /^slirp4netns version 1\.2\.0\n(.*\n)*SLIRP_CONFIG_VERSION_MAX: 4\n/);
});
