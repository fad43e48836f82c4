/**
 * Rootless user networks end to end, as a real unprivileged user in a test-owned "host"
 * namespace with a "remote" one: containers on the user's own bridge networks (made inside the
 * user's network namespace, burrow's plugins run there as its root) reach each other by address
 * at kernel speed, another isolated network's containers cannot; outbound and -p go through the
 * one stack of the user's namespace (the client's address kept, loopback clients spliced); kill -9
 * of a supervisor, of the stack and of the holder are collected; network rm while in use; and
 * nothing is left: no process of the user, no namespace, no address reserved.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/burrow.js';
import { rootTest, tcpRequest } from './helpers/netns.js';
import { FIXTURES, sync, userArgv, world } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrowunet';
const PEER = (port: number, file = '/run/fixtures/servers.cjs') => [process.execPath, file, JSON.stringify([{ proto: 'tcp', host: '0.0.0.0', port, mode: 'peer' }])];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

rootTest.serial('rootless user networks: containers reach each other, isolation, outbound, -p with the client\'s address, kill -9 collected, nothing left', async (t) => {
  const uid = ensureUser(t, USER);
  const w = await world(t);
  const b = (args: string[]) => sync(userArgv(USER, w.host, args));
  const ok = (args: string[]) => {
    const r = b(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const state = path.join(os.tmpdir(), `burrow-${uid}`, 'burrow');
  const holderFile = path.join(state, 'netns', 'holder.json');
  const ipam = path.join(state, 'netns', 'lib', 'cni', 'networks');
  const reserved = () => (fs.existsSync(ipam) ? fs.readdirSync(ipam).flatMap((n) => fs.readdirSync(path.join(ipam, n)).filter((f) => /^\d/.test(f)).map((f) => `${n}/${f}`)) : []);
  const userProcs = () => spawnSync('pgrep', ['-a', '-u', USER], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l && !/<defunct>/.test(l) && !/\[.*\]$/.test(l));
  const ipOf = (name: string, net: string) => (JSON.parse(ok(['inspect', name]))[0].NetworkSettings.Networks[net]?.IPAddress ?? '') as string;
  // a server in the remote namespace, for outbound
  const remoteServer = spawn('nsenter', [`--net=${w.remote}`, '--', ...PEER(18790, path.join(ROOT, 'test', 'fixtures', 'servers.cjs'))], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => remoteServer.kill('SIGKILL'));
  await new Promise((r) => remoteServer.stdout!.once('data', r));

  ok(['network', 'create', '--subnet', '10.57.1.0/24', '-o', 'isolate=true', 'un1']);
  ok(['network', 'create', '--subnet', '10.57.2.0/24', '-o', 'isolate=true', 'un2']);
  t.false(fs.existsSync(holderFile), 'network create needs no namespace yet');

  // a server on un1 with published ports; the first container makes the user's namespace and stack
  ok(['run', '-d', '--name', 'srv', '--network', 'un1', '-p', '18780:8080', ...FIXTURES, '--', ...PEER(8080)]);
  const srvIp = ipOf('srv', 'un1');
  t.regex(srvIp, /^10\.57\.1\.\d+$/, 'inspect shows the address');
  t.true(fs.existsSync(holderFile));
  const net = (args: string[]) => b(['run', '--rm', ...FIXTURES, ...args]);
  const reach = (netArgs: string[], host: string, port: number) => net([...netArgs, '--', process.execPath, '-e', `const s=require('net').connect(${port},'${host}');s.setTimeout(2000,()=>{console.log('timeout');process.exit(3)});s.on('data',d=>{process.stdout.write(d);process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(4)})`]);
  let r;
  for (let i = 0; i < 50; i++) {
    r = reach(['--network', 'un1'], srvIp, 8080);
    if (r.code === 0) break;
    await sleep(100);
  }
  t.is(r!.code, 0, `a container on un1 reaches srv: ${r!.stdout} ${r!.stderr}`);
  t.regex(r!.stdout, /^10\.57\.1\.\d+ \d+$/, 'with its own address on the bridge (no NAT between containers)');
  const other = reach(['--network', 'un2'], srvIp, 8080);
  t.not(other.code, 0, `a container on the isolated un2 does not: ${other.stdout}`);
  // several networks, with per-network options
  const multi = net(['--network', 'un1', '--network', 'un2:ip=10.57.2.77,interface_name=lan1', '--', 'sh', '-c', 'ip -br addr show eth0; ip -br addr show lan1; cat /etc/resolv.conf']);
  t.is(multi.code, 0, multi.stderr);
  t.regex(multi.stdout, /^eth0@\S+\s+UP\s+10\.57\.1\.\d+\/24/m);
  t.regex(multi.stdout, /^lan1@\S+\s+UP\s+10\.57\.2\.77\/24/m);
  t.regex(multi.stdout, /^nameserver 10\.0\.2\.3$/m, 'the stack\'s DNS forwarder');
  // outbound through the one stack: the remote sees the host's address
  const out = reach(['--network', 'un1'], '10.98.0.2', 18790);
  t.is(out.code, 0, `outbound: ${out.stdout} ${out.stderr}`);
  t.regex(out.stdout, /^10\.98\.0\.1 /, 'the remote sees the host');
  // -p: from the host's loopback (spliced) and from the remote namespace (the client's address kept)
  t.regex(await tcpRequest(w.host, '127.0.0.1', 18780), /^10\.0\.2\.100 \d+$/, 'a loopback client comes from the namespace\'s own address');
  t.regex(await tcpRequest(w.remote, '10.98.0.1', 18780), /^10\.98\.0\.2 \d+$/, 'a remote client keeps its address');
  t.regex(ok(['port', 'srv']), /^8080\/tcp -> 0\.0\.0\.0:18780$/m);
  const taken = b(['run', '--rm', '--network', 'un1', '-p', '18780:80', '--', 'true']);
  t.is(taken.code, 125);
  t.regex(taken.stderr, /18780/, 'a published port in use is refused');

  // 20 containers in parallel on one network, then all gone
  const many = await Promise.all(Array.from({ length: 20 }, (_, i) => new Promise<{ code: number; out: string }>((resolve) => {
    const argv = userArgv(USER, w.host, ['run', '--rm', '--network', 'un1', '--name', `p${i}`, '--', 'sh', '-c', 'ip -4 -br addr show eth0']);
    const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let o = '';
    c.stdout.on('data', (d: Buffer) => (o += d.toString()));
    c.stderr.on('data', (d: Buffer) => (o += d.toString()));
    c.on('close', (code) => resolve({ code: code ?? 1, out: o }));
  })));
  t.deepEqual(many.filter((m) => m.code !== 0).map((m) => m.out), [], 'every parallel container ran');
  t.is(new Set(many.map((m) => m.out.trim().split(/\s+/)[2])).size, 20, 'each with its own address');
  t.deepEqual(reserved().sort(), [`un1/${srvIp}`], 'only srv holds an address now');

  // kill -9 of the stack: the next container starts it again
  const holder = JSON.parse(fs.readFileSync(holderFile, 'utf8')) as { pid: number; stack: { pid: number } };
  process.kill(holder.stack.pid, 'SIGKILL');
  await sleep(200);
  const again = reach(['--network', 'un1'], '10.98.0.2', 18790);
  t.is(again.code, 0, `outbound after the stack was killed: ${again.stdout} ${again.stderr}`);
  t.not((JSON.parse(fs.readFileSync(holderFile, 'utf8')) as { stack: { pid: number } }).stack.pid, holder.stack.pid, 'a new stack');
  t.regex(await tcpRequest(w.remote, '10.98.0.1', 18780), /^10\.98\.0\.2 \d+$/, 'the new stack forwards srv\'s published port again');

  // ADD and DEL ran in the namespace's one CNI server, in the holder's namespaces; killed, the
  // next container starts another
  const cniRecord = path.join(state, 'netns', 'cni.json');
  const server = (JSON.parse(fs.readFileSync(cniRecord, 'utf8')) as { pid: number }).pid;
  t.is(fs.readlinkSync(`/proc/${server}/ns/net`), fs.readlinkSync(`/proc/${holder.pid}/ns/net`), 'the server is in the user\'s network namespace');
  t.is(fs.readlinkSync(`/proc/${server}/ns/user`), fs.readlinkSync(`/proc/${holder.pid}/ns/user`));
  process.kill(server, 'SIGKILL');
  for (let i = 0; i < 100 && fs.existsSync(`/proc/${server}`); i++) await sleep(20); // init reaps it
  const afterServer = reach(['--network', 'un1'], srvIp, 8080);
  t.is(afterServer.code, 0, `a container after the CNI server was killed: ${afterServer.stdout} ${afterServer.stderr}`);
  t.not((JSON.parse(fs.readFileSync(cniRecord, 'utf8')) as { pid: number }).pid, server, 'a new server');

  // network reload, rootless: the rules inside the namespace come back after a flush there
  t.is(b(['unshare', '--rootless-netns', '--', 'sh', '-c', 'iptables -t nat -F && iptables -t nat -X']).code, 0);
  t.notRegex(await tcpRequest(w.remote, '10.98.0.1', 18780, 3).catch(() => ''), /^10\.98\.0\.2 /, 'no DNAT: the published port leads nowhere');
  t.regex(ok(['network', 'reload', 'un1']), /^un1: 1 attachment\(s\) reloaded$/m);
  t.regex(await tcpRequest(w.remote, '10.98.0.1', 18780), /^10\.98\.0\.2 \d+$/, 'published again after reload');

  // network rm while in use is refused; rm -f removes its containers
  const inUse = b(['network', 'rm', 'un1']);
  t.not(inUse.code, 0);
  t.regex(inUse.stderr, /srv/, 'names the container');

  // kill -9 of a container's supervisor: the next command collects it (CNI DEL inside the namespace)
  const listening = (port: number) => spawnSync('nsenter', [`--net=${w.host}`, '--', 'ss', '-Hltn', `sport = :${port}`], { encoding: 'utf8' }).stdout.trim() !== '';
  ok(['run', '-d', '--name', 'victim', '--network', 'un2', '-p', '18785:80', '--', 'sleep', '300']);
  t.true(listening(18785));
  // a detached container on a user network is held by burrow-holder (podman's ConmonPid)
  const sup = String((JSON.parse(ok(['inspect', 'victim'])) as Array<{ State: { ConmonPid: number } }>)[0].State.ConmonPid);
  t.regex(fs.readFileSync(`/proc/${sup}/cmdline`, 'utf8'), /^[^\0]*burrow-holder\0/);
  process.kill(Number(sup), 'SIGKILL');
  for (let i = 0; i < 100 && fs.existsSync(`/proc/${sup}`); i++) await sleep(20); // init reaps it
  ok(['system', 'gc']);
  t.deepEqual(reserved(), [`un1/${srvIp}`], 'the killed container\'s address is released');
  t.false(listening(18785), 'and the stack no longer forwards its published port');

  // kill -9 of the holder: srv is cut off; rm -f still collects it, then nothing needs a namespace
  process.kill(holder.pid, 'SIGKILL');
  await sleep(200);
  ok(['network', 'rm', '-f', 'un1']);
  ok(['network', 'rm', 'un2']);
  t.is(b(['ps', '-aq']).stdout, '');
  t.deepEqual(reserved(), []);
  for (let i = 0; i < 100 && userProcs().length; i++) await sleep(30);
  t.deepEqual(userProcs(), [], 'no process of the user is left: no holder, no stack, no CNI server, no supervisor');
  t.false(fs.existsSync(holderFile), 'the namespace\'s record is gone');
});
