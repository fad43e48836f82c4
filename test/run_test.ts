/**
 * `burrow run` end to end, rootful (default bridge network through burrow's CNI runtime) and
 * rootless (usernet, as a real unprivileged user), each inside a "host" namespace of the test's
 * own with a "remote" namespace as the outside world.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, type BurrowSandbox } from './helpers/burrow.js';
import { nsExec, rootTest, tcpRequest } from './helpers/netns.js';
import { defaultNet, failingDelNetwork, FIXTURES, http, HTTP, reservations, rootArgv, rootSandbox, start, until, userArgv, world, type Proc } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';

const USER = 'burrowrun'; // one user per test file: files run in parallel, and a file deletes the user it created

const rootRun = (sb: BurrowSandbox, ns: string, args: string[]): Proc => start(rootArgv(sb, ns, ['run', ...FIXTURES, ...args]));
const userRun = (ns: string, args: string[]): Proc => start(userArgv(USER, ns, ['run', ...FIXTURES, ...args]));

rootTest.serial('rootful: the default bridge network, -p from the host and from another namespace, /etc files, read-only host fs, signals and exit codes, nothing left', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const c = rootRun(sb, w.host, ['--rm', '-p', '18080:8080', '--hostname', 'web', '--', 'sh', '-c', `hostname; tail -1 /etc/hosts; touch /usr/x 2>&1 | tail -1; exec ${HTTP(8080).map((a) => `'${a}'`).join(' ')}`]);
  t.teardown(() => void c.child.kill('SIGKILL'));
  await until(c, 'ready');
  t.regex(c.out(), new RegExp(`^web\n${defaultNet(sb)}\\.\\d+\\.\\d+\tweb burrow-[0-9a-f]{12}\n.*Read-only file system`, 'm'));
  t.is(http(w.host, 'http://127.0.0.1:18080/'), '200', 'from the host through 127.0.0.1');
  t.is(http(w.remote, 'http://10.98.0.1:18080/'), '200', 'from another namespace');
  const state = path.join(sb.dir, 'state', 'containers');
  t.is(fs.readdirSync(state).length, 1, 'the container is recorded while it runs');
  t.regex(reservations(sb).join(), new RegExp(`^burrow/${defaultNet(sb)}\\.\\d+\\.\\d+$`), 'one address reserved while it runs');
  c.child.kill('SIGTERM');
  t.is(await c.done, 143, 'SIGTERM reached the container; its status came back');
  t.deepEqual(fs.readdirSync(state), [], 'state removed');
  t.deepEqual(reservations(sb), [], 'address released');
  t.deepEqual(fs.readdirSync(path.join(sb.cacheDir, 'results')), [], 'CNI attachment deleted');
  t.notRegex(nsExec(w.host, ['iptables-save']), /CNI-DN-|dport 18080/, 'port rules removed');
  const exit = spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, CLI, '--config', sb.configFile, 'run', '--rm', '--network', 'none', '--', 'sh', '-c', 'ip -br link | wc -l; exit 7'], { encoding: 'utf8' });
  t.is(exit.status, 7);
  t.is(exit.stdout.trim(), '1', '--network none: only loopback');
});

rootTest.serial('rootful: kill -9 of burrow kills the container; burrow system gc removes the attachment and the state', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const c = rootRun(sb, w.host, ['-p', '18081:8080', '--', ...HTTP(8080)]);
  await until(c, 'ready');
  // nsenter execs node, so the child is burrow itself.
  c.child.kill('SIGKILL');
  await c.done;
  await new Promise((r) => setTimeout(r, 200));
  t.not(http(w.host, 'http://127.0.0.1:18081/'), '200', 'the container died with burrow');
  t.is(fs.readdirSync(path.join(sb.cacheDir, 'results')).length, 1, 'the attachment is still cached');
  const gc = sb.run(['system', 'gc'], { netns: w.host });
  t.is(gc.code, 0, gc.stderr);
  t.regex(gc.stdout, /^removed burrow-[0-9a-f]{12} \([0-9a-f]{12}\)$/m);
  t.deepEqual(fs.readdirSync(path.join(sb.cacheDir, 'results')), []);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), []);
  t.notRegex(nsExec(w.host, ['iptables-save']), /dport 18081/);
  t.deepEqual(reservations(sb), [], 'gc released the address');
});

rootTest.serial('rootful: 20 containers in parallel on the default network, each reached through its own port, then all gone', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const cs = Array.from({ length: 20 }, (_, i) => rootRun(sb, w.host, ['--rm', '-p', `${18100 + i}:8080`, '--', ...HTTP(8080)]));
  t.teardown(() => cs.forEach((c) => c.child.kill('SIGKILL')));
  await Promise.all(cs.map((c) => until(c, 'ready', 60_000)));
  t.is(new Set(reservations(sb)).size, 20, 'twenty distinct addresses');
  const codes = cs.map((_, i) => http(w.remote, `http://10.98.0.1:${18100 + i}/`));
  t.deepEqual(codes, Array(20).fill('200'));
  for (const c of cs) c.child.kill('SIGTERM');
  t.deepEqual(await Promise.all(cs.map((c) => c.done)), Array(20).fill(143));
  t.deepEqual(fs.readdirSync(path.join(sb.cacheDir, 'results')), []);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), []);
  t.deepEqual(reservations(sb), []);
  t.notRegex(nsExec(w.host, ['iptables-save']), /dport 181\d\d/);
  const links = nsExec(w.host, ['ip', '-br', 'link']);
  t.notRegex(links, /veth/, 'no veth left');
});

rootTest.serial('rootless: usernet by default, -p from the host and from another namespace, DNS config, keep-id, exit codes, kill -9 cleanup', async (t) => {
  const uid = ensureUser(t, USER);
  const w = await world(t);
  const c = userRun(w.host, ['--rm', '-p', '18200:8080', '--', 'sh', '-c', `cat /etc/resolv.conf; ip -br addr show eth0; exec ${HTTP(8080).map((a) => `'${a}'`).join(' ')}`]);
  t.teardown(() => void c.child.kill('SIGKILL'));
  await until(c, 'ready');
  t.regex(c.out(), /nameserver 10\.0\.2\.3/);
  t.regex(c.out(), /eth0\s+UNKNOWN\s+10\.0\.2\.100\/24/);
  t.is(http(w.host, 'http://127.0.0.1:18200/'), '200');
  t.is(http(w.remote, 'http://10.98.0.1:18200/'), '200');
  c.child.kill('SIGTERM');
  t.is(await c.done, 143);
  const keep = spawnSync('nsenter', [`--net=${w.host}`, '--', 'setpriv', `--reuid=${USER}`, `--regid=${USER}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${USER}`, 'PATH=/usr/bin:/bin', process.execPath, CLI, 'run', '--rm', '--userns', 'keep-id', '--', 'sh', '-c', 'id -u; exit 4'], { encoding: 'utf8', cwd: '/' });
  t.is(keep.status, 4, keep.stderr);
  t.is(keep.stdout.trim(), String(uid), '--userns keep-id: the user keeps its uid inside');
  // kill -9 of the rootless burrow: the container and its stack go, the next command cleans the state
  const k = userRun(w.host, ['-p', '18201:8080', '--', ...HTTP(8080)]);
  t.teardown(() => void k.child.kill('SIGKILL'));
  await until(k, 'ready');
  t.is(http(w.host, 'http://127.0.0.1:18201/'), '200');
  k.child.kill('SIGKILL'); // nsenter, setpriv and env exec: this is burrow itself
  await k.done;
  await new Promise((r) => setTimeout(r, 200));
  t.not(http(w.host, 'http://127.0.0.1:18201/'), '200', 'the forward died with burrow');
  const ps = spawnSync(userArgv(USER, w.host, ['ps', '-a'])[0], userArgv(USER, w.host, ['ps', '-a']).slice(1), { encoding: 'utf8', cwd: '/' });
  t.is(ps.stdout.trim().split('\n').length, 1, 'the stale record was collected: only the header');
  t.deepEqual(fs.readdirSync(path.join('/tmp', `burrow-${uid}`, 'burrow', 'containers')), []);
});

rootTest.serial('bad input: clear errors and nothing left behind', async (t) => {
  ensureUser(t, USER);
  const sb = rootSandbox(t);
  const w = await world(t);
  const root = (args: string[]) => spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, CLI, '--config', sb.configFile, 'run', '--rm', ...args], { encoding: 'utf8' });
  const user = (args: string[]) => spawnSync('nsenter', [`--net=${w.host}`, '--', 'setpriv', `--reuid=${USER}`, `--regid=${USER}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${USER}`, 'PATH=/usr/bin:/bin', process.execPath, CLI, 'run', ...args], { encoding: 'utf8', cwd: '/' });
  t.regex(root(['--network', 'nosuch', '--', 'true']).stderr, /nosuch/);
  t.regex(root(['--rootfs', '/nonexistent/rootfs', '--', 'true']).stderr, /--rootfs "\/nonexistent\/rootfs" does not exist/);
  t.regex(root(['-p', '80:http', '--', 'true']).stderr, /invalid port mapping "80:http"/);
  t.regex(user(['--network', 'nosuch', '--', 'true']).stderr, /network "nosuch" not found in "\/home\/[a-z]+\/\.config\/cni\/net\.d"/, 'a user\'s networks are the user\'s own files');
  t.regex(user(['--network', 'burrow', '--userns', 'nomap', '--', 'true']).stderr, /--userns nomap: a container on the user network "burrow" shares the user's network namespace and its id map/);
  const missing = root(['--', 'no-such-command-here']);
  t.is(missing.status, 127);
  t.regex(missing.stderr, /cannot execute "no-such-command-here"/);
  t.regex(root(['-v', '/etc:/nowhere-on-a-read-only-root', '--', 'true']).stderr, /cannot create the mount point "\/nowhere-on-a-read-only-root": the container's root is read-only there/);
  const busy = spawn('nsenter', [`--net=${w.host}`, '--', process.execPath, '-e', 'require("net").createServer().listen(18300, "0.0.0.0", () => console.log("up"))']);
  t.teardown(() => void busy.kill());
  await new Promise((r) => busy.stdout.once('data', r));
  const inUse = user(['-p', '18300:80', '--', 'true']);
  t.is(inUse.status, 125);
  t.regex(inUse.stderr, /host port \*:18300\/tcp is already in use/);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), [], 'no state left by the failures');
  t.deepEqual(reservations(sb), [], 'no address left reserved by the failures');
  t.deepEqual(fs.existsSync(path.join(sb.cacheDir, 'results')) ? fs.readdirSync(path.join(sb.cacheDir, 'results')) : [], []);
});

rootTest.serial('detached: run -d prints the id; ps, logs, port, stop, ps -a, rm; a failing start reports its error', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sb.run(args, { netns: w.host });
  const d = b(['run', '-d', '--name', 'web', ...FIXTURES, '-p', '18400:8080', '--', ...HTTP(8080)]);
  t.is(d.code, 0, d.stderr);
  const id = d.stdout.trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  t.teardown(() => void sb.run(['rm', '-f', 'web'], { netns: w.host }));
  let up = '';
  for (let i = 0; i < 100 && up !== '200'; i++) {
    await new Promise((r) => setTimeout(r, 50));
    up = http(w.remote, 'http://10.98.0.1:18400/');
  }
  t.is(up, '200', 'reachable while burrow run -d has returned');
  const ps = b(['ps']);
  t.regex(ps.stdout, new RegExp(`^${id.slice(0, 12)}\\s+.*Up .*0\\.0\\.0\\.0:18400->8080/tcp\\s+web$`, 'm'), 'podman\'s columns: PORTS, then NAMES last');
  t.regex(b(['logs', 'web']).stdout, /ready/);
  t.is(b(['port', 'web']).stdout.trim(), '8080/tcp -> 0.0.0.0:18400');
  t.is(b(['port', 'web', '8080']).stdout.trim(), '0.0.0.0:18400');
  const json = JSON.parse(b(['ps', '--format', 'json']).stdout);
  t.like(json[0], { Id: id, Names: ['web'], State: 'running' });
  t.is(b(['rm', 'web']).code, 125, 'rm of a running container without -f refuses');
  t.is(b(['stop', '-t', '5', 'web']).code, 0);
  t.not(http(w.remote, 'http://10.98.0.1:18400/'), '200');
  t.regex(b(['ps', '-a']).stdout, /Exited \(143\).*\s+web$/m);
  t.is(b(['ps']).stdout.trim().split('\n').length, 1, 'ps without -a: only the header');
  t.is(b(['rm', 'web']).code, 0);
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), []);
  t.deepEqual(fs.readdirSync(path.join(sb.cacheDir, 'results')), []);
  const failed = b(['run', '-d', '--rootfs', '/nonexistent', '--', 'true']);
  t.is(failed.code, 125);
  t.regex(failed.stderr, /--rootfs "\/nonexistent" does not exist/, 'a supervisor that fails reports why');
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), [], 'nothing left by the failed start');
  t.deepEqual(reservations(sb), []);
});

rootTest.serial('rootless --network pasta and slirp4netns: the established tools attach to the container, with -p', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  for (const [net, port] of [['slirp4netns', 18500], ['pasta', 18501]] as const) {
    const c = userRun(w.host, ['--rm', '--network', net, '-p', `${port}:8080`, '--', ...HTTP(8080)]);
    t.teardown(() => void c.child.kill('SIGKILL'));
    await until(c, 'ready');
    let code = '';
    for (let i = 0; i < 50 && code !== '200'; i++) {
      code = http(w.host, `http://127.0.0.1:${port}/`);
      if (code !== '200') await new Promise((r) => setTimeout(r, 50));
    }
    t.is(code, '200', `${net}: published port reachable from the host`);
    c.child.kill('SIGTERM');
    t.is(await c.done, 143);
  }
  t.is(spawnSync('pgrep', ['-u', USER, '-x', 'slirp4netns']).status, 1, 'slirp4netns stopped with the container');
  for (let i = 0; i < 50 && spawnSync('pgrep', ['-u', USER, '-x', 'pasta']).status === 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.is(spawnSync('pgrep', ['-u', USER, '-x', 'pasta']).status, 1, 'pasta quit with the container');
});

rootTest.serial('rootful -p reserves its host ports: one in use is refused before any rule exists, and a running container holds its ports', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, CLI, '--config', sb.configFile, ...args], { encoding: 'utf8' });
  t.teardown(() => void b(['rm', '-f', 'resv1', 'resv2']));
  const rules = () => nsExec(w.host, ['iptables-save']).split('\n').filter((l) => l.startsWith('-A')).sort();
  // A server on 127.0.0.1 only: the DNAT of a 0.0.0.0 publish would have taken its traffic.
  const busy = spawn('nsenter', [`--net=${w.host}`, '--', process.execPath, '-e', 'require("net").createServer((s) => s.end("mine")).listen(18310, "127.0.0.1", () => console.log("up"))']);
  t.teardown(() => void busy.kill());
  await new Promise((r) => busy.stdout.once('data', r));
  const before = rules();
  const taken = b(['run', '-d', '--name', 'resv1', '-p', '18310:8000', '--', 'sleep', '60']);
  t.is(taken.status, 125);
  t.regex(taken.stderr, /cannot publish 18310:8000\/tcp: host port \*:18310\/tcp is already in use/);
  t.deepEqual(rules(), before, 'no firewall rule was written');
  t.is(await tcpRequest(w.host, '127.0.0.1', 18310), 'mine', 'the server keeps its traffic');
  t.deepEqual(fs.readdirSync(path.join(sb.dir, 'state', 'containers')), []);
  t.deepEqual(reservations(sb), []);
  // A running container holds its ports: no one else may bind them, and another container is told who has them.
  t.is(b(['run', '-d', '--name', 'resv1', '-p', '18311:8000', '-p', '18312:53/udp', '--', 'sleep', '60']).status, 0);
  for (const [kind, port] of [['tcp', 18311], ['udp', 18312]] as const) {
    const bind = spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, '-e', `const s = require('${kind === 'tcp' ? 'net' : 'dgram'}')${kind === 'tcp' ? '.createServer().listen' : ".createSocket('udp4').bind"}(${port}, '0.0.0.0'); s.on('error', (e) => { console.log(e.code); process.exit(0); }); setTimeout(() => { console.log('bound'); process.exit(0); }, 300);`], { encoding: 'utf8' });
    t.is(bind.stdout.trim(), 'EADDRINUSE', `${kind} ${port} is held while the container runs`);
  }
  const clash = b(['run', '-d', '--name', 'resv2', '-p', '18311:9000', '--', 'sleep', '60']);
  t.is(clash.status, 125);
  t.regex(clash.stderr, /container "resv1" \([0-9a-f]{12}\) already publishes 18311:8000\/tcp/);
  t.is(b(['rm', '-f', 'resv1']).status, 0);
  const free = spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, '-e', "require('net').createServer().listen(18311, '0.0.0.0', () => { console.log('bound'); process.exit(0); })"], { encoding: 'utf8' });
  t.is(free.stdout.trim(), 'bound', 'released when the container goes');
});

rootTest.serial('network rm -f removes the containers on the network (as podman does), not only their attachments', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, CLI, '--config', sb.configFile, ...args], { encoding: 'utf8' });
  t.teardown(() => void b(['rm', '-f', 'onnet', 'sharer', 'kept']));
  t.is(b(['network', 'create', '--subnet', '10.77.0.0/24', 'doomed']).status, 0);
  t.is(b(['run', '-d', '--name', 'onnet', '--network', 'doomed', '--', 'sleep', '60']).status, 0);
  t.is(b(['run', '-d', '--name', 'sharer', '--network', 'container:onnet', '--', 'sleep', '60']).status, 0);
  t.is(b(['run', '--name', 'kept', '--network', 'doomed', '--', 'true']).status, 0, 'an exited container on the network');
  t.is(b(['run', '-d', '--name', 'elsewhere', '--network', 'none', '--', 'sleep', '60']).status, 0);
  t.teardown(() => void b(['rm', '-f', 'elsewhere']));
  const busy = b(['network', 'rm', 'doomed']);
  t.is(busy.status, 125);
  t.regex(busy.stderr, /network "doomed" is in use by container\(s\) sharer, onnet, kept: remove them first, or use -f/);
  t.is(b(['network', 'rm', '-f', 'doomed']).status, 0);
  const left = JSON.parse(b(['ps', '-a', '--format', 'json']).stdout).map((r: { Names: string[] }) => r.Names[0]);
  t.deepEqual(left, ['elsewhere'], 'the containers of the network are gone; others stay');
  t.false(fs.existsSync(path.join(sb.confDir, 'doomed.conflist')));
  t.deepEqual(reservations(sb), []);
  t.deepEqual(fs.existsSync(path.join(sb.cacheDir, 'results')) ? fs.readdirSync(path.join(sb.cacheDir, 'results')) : [], []);
  t.false(nsExec(w.host, ['ip', '-br', 'link']).includes('veth'), 'no veth is left half-attached');
});

rootTest.serial('run -d resolves relative --rootfs, --image and --config against the caller\'s directory; port rm leaves the port list', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  const dir = fs.mkdtempSync('/tmp/burrow-rel-');
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { busyboxImage } = await import('./helpers/image.js');
  fs.writeFileSync(path.join(dir, 'img.tar'), await busyboxImage(), { mode: 0o644 });
  fs.mkdirSync(path.join(dir, 'rootfs', 'bin'), { recursive: true });
  for (const d of ['srv', 'etc', 'tmp', 'run', 'proc', 'dev', 'sys']) fs.mkdirSync(path.join(dir, 'rootfs', d));
  for (const f of ['hosts', 'resolv.conf', 'hostname']) fs.writeFileSync(path.join(dir, 'rootfs', 'etc', f), '');
  fs.copyFileSync('/bin/busybox', path.join(dir, 'rootfs', 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'rootfs', 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'cat', 'sleep']) fs.symlinkSync('busybox', path.join(dir, 'rootfs', 'bin', a));
  fs.writeFileSync(path.join(dir, 'rootfs', 'srv', 'index.html'), 'from ./rootfs\n');
  fs.writeFileSync(path.join(dir, 'b.toml'), `[network]\ncni_config_dir = "${dir}/net.d"\ncni_cache_dir = "${dir}/cache"\n[engine]\nstate_dir = "${dir}/state"\n`);
  const here = (args: string[]) => spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, CLI, ...args], { encoding: 'utf8', cwd: dir });
  t.teardown(() => void here(['--config', 'b.toml', 'rm', '-f', 'relfs', 'relimg']));
  const fsRun = here(['--config', 'b.toml', 'run', '-d', '--name', 'relfs', '--network', 'none', '--rootfs', './rootfs', '--', 'sh', '-c', 'cat /srv/index.html; sleep 30']);
  t.is(fsRun.status, 0, fsRun.stderr);
  const imgRun = here(['--config', 'b.toml', 'run', '-d', '--name', 'relimg', '--network', 'none', '--image', 'img.tar', '--', 'sh', '-c', 'cat /srv/index.html; sleep 30']);
  t.is(imgRun.status, 0, imgRun.stderr);
  await new Promise((r) => setTimeout(r, 300));
  t.is(here(['--config', 'b.toml', 'logs', 'relfs']).stdout, 'from ./rootfs\n');
  t.is(here(['--config', 'b.toml', 'logs', 'relimg']).stdout, 'hello from an image\n');
  t.is(here(['--config', 'b.toml', 'rm', '-f', 'relfs', 'relimg']).status, 0);
  // port rm: the list follows what is published.
  const u = (args: string[]) => spawnSync(userArgv(USER, w.host, args)[0], userArgv(USER, w.host, args).slice(1), { encoding: 'utf8', cwd: '/' });
  t.teardown(() => void u(['rm', '-f', 'ported']));
  t.is(u(['run', '-d', '--name', 'ported', '-p', '18420:80', '--', 'sleep', '30']).status, 0);
  t.is(u(['port', 'ported', 'add', '18421:81']).stdout.trim(), '2');
  t.deepEqual(u(['port', 'ported']).stdout.trim().split('\n'), ['80/tcp -> 0.0.0.0:18420', '81/tcp -> 0.0.0.0:18421']);
  t.is(u(['port', 'ported', 'rm', '1']).status, 0);
  t.deepEqual(u(['port', 'ported']).stdout.trim().split('\n'), ['81/tcp -> 0.0.0.0:18421'], 'the removed forward is no longer listed');
});

rootTest.serial('teardown that fails is reported, recorded for inspect and ps, and retried by system gc until it completes', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const flag = failingDelNetwork(t, sb, 'tdnet', 'tdbr0', '10.78.0.0/24');
  const b = (args: string[]) => spawnSync('nsenter', [`--net=${w.host}`, '--', process.execPath, CLI, '--config', sb.configFile, ...args], { encoding: 'utf8' });
  fs.writeFileSync(flag, '');
  const r = b(['run', '--rm', '--name', 'td', '--network', 'tdnet', '--', 'true']);
  t.is(r.status, 0, 'the container\'s own exit status');
  t.regex(r.stderr, /Error: teardown of container "td" \([0-9a-f]{12}\) is incomplete: CNI DEL of network "tdnet" \(eth0\): .*injected DEL failure; "burrow system gc" retries it/);
  const [rec] = JSON.parse(b(['inspect', 'td']).stdout);
  t.like(rec.teardown, { remove: true, retry: [{ network: 'tdnet', ifname: 'eth0' }] });
  t.regex(rec.teardown.errors[0].error, /injected DEL failure/);
  t.regex(b(['ps', '-a']).stdout, /Exited \(0\).*teardown incomplete.*\s+td$/m);
  t.deepEqual(reservations(sb), [], 'the rest of the chain was torn down all the same (bridge and IPAM)');
  const still = b(['system', 'gc']);
  t.regex(still.stdout, /still failing: teardown of container td \([0-9a-f]{12}\) is incomplete/);
  fs.rmSync(flag);
  t.regex(b(['system', 'gc']).stdout, /teardown of td \([0-9a-f]{12}\) completed; removed/);
  t.deepEqual(JSON.parse(b(['ps', '-a', '--format', 'json']).stdout), [], '--rm happens once teardown is complete');
  t.deepEqual(fs.existsSync(path.join(sb.cacheDir, 'results')) ? fs.readdirSync(path.join(sb.cacheDir, 'results')) : [], []);
});
