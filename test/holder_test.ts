/**
 * The native holder of detached containers (native/burrow-holder.c, runtime/container/holder.ts):
 * a detached rootful container is held by it, not by Node, and every lifecycle command, the log,
 * the exit code, signals, attach, kill -9 of either side and `system gc` work as they did.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { nsExec, rootTest } from './helpers/netns.js';
import { failingDelNetwork, FIXTURES, http, HTTP, reservations, rootSandbox, world } from './helpers/run.js';
import { CLI, ROOT, type BurrowSandbox } from './helpers/burrow.js';

// run -d sets up in the CLI under a spawn-mode holder (opt-in while a race under 50 parallel runs
// is open: runtime/cli/cmd_run.ts); `start` and BURROW_HOLDER=node still go through a supervisor
process.env.BURROW_RUN_IN_CLI = '1';

const records = (sb: BurrowSandbox) => {
  const dir = path.join(sb.dir, 'state', 'containers');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((id) => fs.existsSync(path.join(dir, id, 'container.json'))).map((id) => JSON.parse(fs.readFileSync(path.join(dir, id, 'container.json'), 'utf8'))) : [];
};
const record = (sb: BurrowSandbox, name: string) => records(sb).find((r) => r.name === name);
const exe = (pid: number) => {
  try {
    return path.basename(fs.readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return '';
  }
};
const alive = (pid: number) => {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false; // gone (or gone between two reads)
  }
};
async function eventually(what: () => boolean, ms = 10_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (what()) return true;
  return what();
}

rootTest.serial('holder: run -d is held by burrow-holder; logs, exit code, signals to the holder, ports held, stop, start, rm', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sb.run(args, { netns: w.host });
  t.teardown(() => void b(['rm', '-f', 'web', 'sig', 'quick']));
  const d = b(['run', '-d', '--name', 'web', ...FIXTURES, '-p', '18410:8080', '--', ...HTTP(8080)]);
  t.is(d.code, 0, d.stderr);
  const r = record(sb, 'web');
  t.is(r.holder, 'burrow-holder');
  t.is(exe(r.pid), 'burrow-holder', 'the record\'s pid is the holder now (the CLI spawned it as the helper\'s parent and handed the container over)');
  t.regex(fs.readFileSync(`/proc/${r.pid}/cmdline`, 'utf8'), /^[^\0]*burrow-holder\0--spawn\0/, 'no Node supervisor in between');
  t.true(r.network.attachments.every((a: { netns: string }) => a.netns.startsWith(`/proc/${r.pid}/fd/`)), 'the attachments name the netns through the holder\'s fds');
  t.regex(b(['ps']).stdout, /Up .*0\.0\.0\.0:18410->8080\/tcp\s+web$/m, 'the record is valid: running');
  let up = '';
  for (let i = 0; i < 100 && up !== '200'; i++) {
    await new Promise((res) => setTimeout(res, 50));
    up = http(w.remote, 'http://10.98.0.1:18410/');
  }
  t.is(up, '200');
  // the holder keeps the reservation of the published port
  const bind = spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, '-e', 'require("net").createServer().listen(18410,()=>process.exit(0)).on("error",(e)=>{console.log(e.code);process.exit(1)})'], { encoding: 'utf8' });
  t.is(bind.stdout.trim(), 'EADDRINUSE', 'the host port stays reserved by the holder');
  t.is(b(['stop', '-t', '5', 'web']).code, 0);
  t.regex(b(['ps', '-a']).stdout, /Exited \(143\).*\s+web$/m);
  t.false(alive(r.pid), 'the holder is gone once the container is');
  t.deepEqual(reservations(sb), [], 'the teardown released the address');
  t.deepEqual(fs.readdirSync(path.join(sb.cacheDir, 'results')), [], 'and deleted the attachment');
  t.notRegex(nsExec(w.host, ['iptables-save']), /dport 18410/, 'and its port rules');
  t.is(record(sb, 'web').holder, undefined);
  // start again: held again, the same port
  t.is(b(['start', 'web']).code, 0);
  t.is(exe(record(sb, 'web').pid), 'burrow-holder');
  t.is(await (async () => {
    for (let i = 0; i < 100; i++) {
      if (http(w.remote, 'http://10.98.0.1:18410/') === '200') return '200';
      await new Promise((res) => setTimeout(res, 50));
    }
    return '';
  })(), '200');
  t.is(b(['rm', '-f', 'web']).code, 0);
  t.deepEqual(reservations(sb), []);

  // stdout and stderr in the log; SIGTERM to the holder reaches the command; its status is recorded
  t.is(b(['run', '-d', '--name', 'sig', '--', 'sh', '-c', 'trap "echo got-term; exit 42" TERM; echo out; echo err >&2; while :; do sleep 0.1; done']).code, 0);
  const s = record(sb, 'sig');
  t.true(await eventually(() => /out/.test(b(['logs', 'sig']).stdout)));
  const logs = b(['logs', 'sig']);
  t.is(logs.stdout, 'out\n');
  t.is(logs.stderr, 'err\n');
  process.kill(s.pid, 'SIGTERM');
  t.true(await eventually(() => record(sb, 'sig')?.state === 'exited'));
  t.is(record(sb, 'sig').exitCode, 42);
  t.regex(b(['logs', 'sig']).stdout, /got-term/);
  t.regex(fs.readFileSync(path.join(sb.dir, 'state', 'containers', s.id, 'ctr.log'), 'utf8'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d stdout F out$/m, 'conmon\'s k8s-file format');

  // a command that exits at once, with --rm: removed by the teardown
  t.is(b(['run', '-d', '--rm', '--name', 'quick', '--', 'sh', '-c', 'exit 3']).code, 0);
  t.true(await eventually(() => !record(sb, 'quick')), '--rm removes the record');
  t.deepEqual(reservations(sb), []);
});

rootTest.serial('holder: attach to a held container (stdin, output, EXIT after cleanup); bad frames drop the client only', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sb.run(args, { netns: w.host });
  t.teardown(() => void b(['rm', '-f', 'cat']));
  t.is(b(['run', '-d', '-i', '--name', 'cat', '--network', 'none', '--', 'sh', '-c', 'while read l; do echo "got $l"; done; exit 5']).code, 0);
  const r = record(sb, 'cat');
  t.is(exe(r.pid), 'burrow-holder');
  const talk = (frames: Buffer[], wait: (got: Buffer) => boolean) => new Promise<Buffer>((resolve) => {
    const sock = net.connect(r.attachSocket);
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => sock.destroy(), 5000);
    sock.on('connect', () => frames.forEach((f) => sock.write(f)));
    sock.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (wait(got)) sock.end();
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
  const frame = (type: number, body: Buffer | string) => {
    const p = Buffer.from(body);
    const h = Buffer.alloc(5);
    h[0] = type;
    h.writeUInt32BE(p.length, 1);
    return Buffer.concat([h, p]);
  };
  // a client with an unknown frame is dropped; the container goes on
  const bad = await talk([frame(0x7f, 'x')], () => false);
  t.is(bad[0], 0x11, 'INFO first');
  t.regex(bad.subarray(5).toString(), /^\{"tty":false,"stdin":true,"name":"cat"\}/);
  t.true(alive(r.pid));
  const got = await talk([frame(0x01, '{"rows":0,"cols":0}'), frame(0x02, 'one\n'), frame(0x02, 'two\n'), frame(0x03, '')], (g) => g.includes(Buffer.from([0x14, 0, 0, 0, 4])));
  t.true(got.includes(Buffer.from('got one\n')) && got.includes(Buffer.from('got two\n')), 'stdin in, stdout out');
  const exitAt = got.indexOf(Buffer.from([0x14, 0, 0, 0, 4]));
  t.true(exitAt > 0, 'the EXIT frame');
  t.is(got.readInt32BE(exitAt + 5), 5, 'with the exit status');
  t.is(record(sb, 'cat').state, 'exited', 'EXIT comes once the container is cleaned up');
  t.false(fs.existsSync(r.attachSocket), 'the attach socket is removed');
});

rootTest.serial('holder: kill -9 of the holder or of the container; 50 detached containers, then system gc has nothing to do', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sb.run(args, { netns: w.host });
  t.is(b(['run', '-d', '--name', 'k1', '-p', '18420:80', '--', 'sleep', '300']).code, 0);
  const k1 = record(sb, 'k1');
  process.kill(k1.pid, 'SIGKILL');
  t.true(await eventually(() => !alive(k1.initPid)), 'the container dies with its holder (parent-death signal)');
  t.regex(b(['system', 'gc']).stdout, /removed k1/);
  t.deepEqual(reservations(sb), [], 'gc deleted the attachment');
  t.notRegex(nsExec(w.host, ['iptables-save']), /dport 18420/);

  t.is(b(['run', '-d', '--name', 'k2', '--', 'sleep', '300']).code, 0);
  const k2 = record(sb, 'k2');
  process.kill(k2.initPid, 'SIGKILL');
  t.true(await eventually(() => record(sb, 'k2')?.state === 'exited'));
  t.is(record(sb, 'k2').exitCode, 137);
  // the record says exited once the teardown ran; the holder then sends EXIT and leaves
  t.true(await eventually(() => !alive(k2.pid)), 'the holder leaves after the teardown');
  t.is(b(['rm', 'k2']).code, 0);

  const names = Array.from({ length: 50 }, (_, i) => `many${i}`);
  for (const n of names) t.is(b(['run', '-d', '--name', n, '--', 'sleep', '300']).code, 0);
  const held = records(sb);
  t.is(held.length, 50);
  t.true(held.every((r) => exe(r.pid) === 'burrow-holder'), 'every one is held natively');
  t.is(b(['system', 'gc']).stdout.trim(), '', 'nothing to collect while they run');
  t.is(b(['rm', '-f', '-t', '0', ...names]).code, 0);
  t.deepEqual(records(sb), []);
  t.is(b(['system', 'gc']).stdout.trim(), '', 'nothing to collect once they are gone');
  t.deepEqual(reservations(sb), []);
  t.true(await eventually(() => !held.some((r) => alive(r.pid))), 'no holder left');
});

rootTest.serial('holder: BURROW_HOLDER=node keeps the Node supervisor', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  t.teardown(() => void sb.run(['rm', '-f', 'n1'], { netns: w.host }));
  const d = sb.run(['run', '-d', '--name', 'n1', '--', 'sleep', '300'], { netns: w.host, env: { ...process.env, BURROW_HOLDER: 'node' } });
  t.is(d.code, 0, d.stderr);
  const r = record(sb, 'n1');
  t.is(r.holder, undefined);
  t.is(exe(r.pid), path.basename(process.execPath));
  t.is(sb.run(['rm', '-f', 'n1'], { netns: w.host }).code, 0);
  t.deepEqual(reservations(sb), []);
});

rootTest.serial('holder: a teardown that fails is recorded by the held container\'s teardown and retried by system gc', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const flag = failingDelNetwork(t, sb, 'hdnet', 'hdbr0', '10.79.0.0/24');
  const b = (args: string[]) => sb.run(args, { netns: w.host });
  fs.writeFileSync(flag, '');
  t.is(b(['run', '-d', '--rm', '--name', 'hd', '--network', 'hdnet', '--', 'sh', '-c', 'sleep 0.3; exit 4']).code, 0);
  t.is(exe(record(sb, 'hd').pid), 'burrow-holder');
  t.true(await eventually(() => record(sb, 'hd')?.state === 'exited'));
  const rec = record(sb, 'hd');
  t.is(rec.exitCode, 4);
  t.like(rec.teardown, { remove: true, retry: [{ network: 'hdnet', ifname: 'eth0', netns: '' }] });
  t.regex(rec.teardown.errors[0].error, /injected DEL failure/);
  t.regex(fs.readFileSync(path.join(sb.dir, 'state', 'containers', rec.id, 'supervisor.log'), 'utf8'), /teardown of container "hd" \([0-9a-f]{12}\) is incomplete: CNI DEL of network "hdnet" \(eth0\)/, 'said in the log');
  t.deepEqual(reservations(sb), [], 'the rest of the chain was torn down all the same');
  fs.rmSync(flag);
  t.regex(b(['system', 'gc']).stdout, /teardown of hd \([0-9a-f]{12}\) completed; removed/);
  t.deepEqual(records(sb), []);
});

rootTest.serial('holder: run -d sets up in the CLI; the CLI killed in the middle of it leaves no process, and system gc collects the rest; a setup error is the CLI\'s own', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  // a network whose second plugin blocks in ADD until told, so the CLI can be killed mid-setup
  const plugins = fs.mkdtempSync('/tmp/burrow-slowadd-');
  t.teardown(() => fs.rmSync(plugins, { recursive: true, force: true }));
  const marker = path.join(plugins, 'in-add');
  fs.writeFileSync(path.join(plugins, 'slowadd'), `#!/usr/bin/env python3
import json, os, sys, time
conf = json.loads(sys.stdin.read() or '{}')
cmd = os.environ.get('CNI_COMMAND')
if cmd == 'VERSION':
    print(json.dumps({'cniVersion': '1.0.0', 'supportedVersions': ['0.4.0', '1.0.0', '1.1.0']}))
elif cmd == 'ADD' and conf.get('fail'):
    print(json.dumps({'code': 11, 'msg': 'injected ADD failure'}))
    sys.exit(1)
elif cmd == 'ADD':
    open(conf['marker'], 'w').close()
    time.sleep(30)
    print(json.dumps(conf['prevResult']))
`, { mode: 0o755 });
  fs.writeFileSync(sb.configFile, fs.readFileSync(sb.configFile, 'utf8').replace(/^cni_path = .*$/m, `cni_path = ${JSON.stringify([path.join(ROOT, 'plugins', 'bin'), plugins])}`));
  fs.mkdirSync(sb.confDir, { recursive: true });
  const net = (name: string, subnet: string, extra: object) => fs.writeFileSync(path.join(sb.confDir, `${name}.conflist`), JSON.stringify({
    cniVersion: '1.0.0', name,
    plugins: [{ type: 'bridge', bridge: `${name}0`, isGateway: true, ipam: { type: 'host-local', dataDir: path.join(sb.dir, 'ipam'), ranges: [[{ subnet }]] } }, { type: 'slowadd', marker, ...extra }],
  }));
  net('slownet', '10.79.4.0/24', {});
  net('failnet', '10.79.5.0/24', { fail: true });
  const b = (args: string[]) => sb.run(args, { netns: w.host });
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const cli = spawn('nsenter', [`--net=${w.host}`, '--', process.execPath, '--', CLI, '--config', sb.configFile, 'run', '-d', '--name', 'mid', '--network', 'slownet', '--', 'sleep', '1000'], { stdio: 'ignore', env });
  t.teardown(() => {
    cli.kill('SIGKILL');
    spawnSync('pkill', ['-f', path.join(plugins, 'slowadd')]);
  });
  t.true(await eventually(() => fs.existsSync(marker)), 'the CLI reached the network setup');
  const rec = record(sb, 'mid');
  const helpers = () => fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      return /burrow-(holder|ns)/.test(cmd.split('\0')[0]) && cmd.includes(rec.id);
    } catch {
      return false;
    }
  });
  t.true(helpers().length >= 2, 'the holder and the namespace helper, its child (and the helper\'s own child, the init)');
  cli.kill('SIGKILL');
  t.true(await eventually(() => helpers().length === 0), `the holder kills the helper once the CLI is gone: ${helpers().join(' ')}`);
  spawnSync('pkill', ['-f', path.join(plugins, 'slowadd')]);
  t.regex(b(['system', 'gc']).stdout, /removed mid\b/);
  t.is(record(sb, 'mid'), undefined, 'gc collected the record');
  t.deepEqual(reservations(sb), [], 'and the address');
  // a failure in the setup: the CLI says why itself, and nothing stays
  const f = b(['run', '-d', '--name', 'failed', '--network', 'failnet', '--', 'sleep', '1000']);
  t.is(f.code, 125);
  t.regex(f.stderr, /injected ADD failure/);
  t.is(record(sb, 'failed'), undefined);
  t.deepEqual(reservations(sb), []);
});

rootTest.serial('holder: a 600-port -p range is held (one reservation socket per port), handed over by the CLI and, after start, exec\'d by a supervisor', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sb.run(args, { netns: w.host });
  t.teardown(() => void b(['rm', '-f', 'range']));
  const inUse = (port: number) => spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, '-e', `require("net").createServer().listen(${port},()=>process.exit(0)).on("error",(e)=>{console.log(e.code);process.exit(1)})`], { encoding: 'utf8' }).stdout.trim() === 'EADDRINUSE';
  const d = b(['run', '-d', '--name', 'range', '-p', '21000-21599:21000-21599', '--', 'sleep', '300']);
  t.is(d.code, 0, d.stderr);
  for (const how of ['run -d', 'start']) {
    const r = record(sb, 'range');
    t.is(exe(r.pid), 'burrow-holder', `${how}: held`);
    t.true(inUse(21000) && inUse(21599), `${how}: the range's ends stay reserved by the holder`);
    t.is(b(['stop', '-t', '0', 'range']).code, 0);
    t.false(inUse(21300), `${how}: released`);
    if (how === 'run -d') t.is(b(['start', 'range']).code, 0);
  }
  t.is(b(['rm', 'range']).code, 0);
});
