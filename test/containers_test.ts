/**
 * The container commands as podman users type them, end to end, rootful (default bridge network)
 * and rootless (usernet, a real unprivileged user): exec on every network mode and in a pod,
 * start/restart keeping the ports (chosen ones too) reachable, volumes, run's podman flags,
 * conflicting options, and the exit code of each class of failure.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootTest } from './helpers/netns.js';
import { FIXTURES, http, httpUp, rootArgv, rootSandbox, sync, userArgv, world } from './helpers/run.js';
import { ensureUser } from './helpers/users.js';
import { busyboxImage } from './helpers/image.js';

const USER = 'burrowctl';
type Run = (args: string[]) => { code: number; stdout: string; stderr: string };

/** A command that must succeed: its stdout, or a failed assertion naming the command and its stderr. */
function okOf(t: import('ava').ExecutionContext, b: Run, what = ''): (args: string[]) => string {
  return (args) => {
    const r = b(args);
    t.is(r.code, 0, `${what ? `${what}: ` : ''}${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
}

const SERVERS = (...ports: number[]) => [process.execPath, '/run/fixtures/servers.cjs', JSON.stringify(ports.map((port) => ({ proto: 'tcp', host: '0.0.0.0', port, mode: 'http' })))];

async function execEverywhere(t: import('ava').ExecutionContext, b: Run, what: string, defaultNet: string): Promise<void> {
  const ok = okOf(t, b, what);
  ok(['run', '-d', '--name', 'e1', '-e', 'FOO=bar', '-w', '/tmp', '--hostname', 'h1', '--', 'sleep', '300']);
  const e = b(['exec', 'e1', 'sh', '-c', 'echo "$FOO $(pwd) $(hostname)"; tr -d "\\000" < /proc/1/cmdline; echo; exit 7']);
  t.is(e.code, 7, `${what} (${defaultNet}): the command's status`);
  t.is(e.stdout, 'bar /tmp h1\nburrow-init\n', `${what}: the container's env, workdir, uts and pid namespaces`);
  t.is(ok(['exec', '-u', 'nobody', 'e1', 'id', '-u']), '65534\n');
  t.is(ok(['exec', '-e', 'FOO=baz', '-w', '/', 'e1', 'sh', '-c', 'echo "$FOO $(pwd)"']), 'baz /\n');
  t.is(b(['exec', 'e1', 'nosuch']).code, 127, 'not found: 127');
  t.is(b(['exec', 'e1', '/etc/passwd']).code, 126, 'not executable: 126');
  t.is(ok(['exec', '-l', 'cat', '/etc/hostname']), 'h1\n', '--latest');
  t.regex(ok(['exec', '-d', 'e1', 'sleep', '299']), /^\d+\n$/, 'exec -d prints the host pid');
  const top = ok(['top', 'e1']);
  t.regex(top, /^USER\s+PID\s+PPID\s+%CPU\s+ELAPSED\s+TTY\s+TIME\s+COMMAND\n/);
  t.regex(top, /^root\s+1\s+0\s+.*burrow-init$/m);
  t.regex(top, /^root\s+2\s+1\s+.*sleep 300$/m, 'pids as the container sees them');
  t.regex(top, /sleep 299$/m, 'the exec -d command lives on in the container');
  t.regex(ok(['top', 'e1', 'pid', 'comm']), /^PID\s+COMMAND\n1\s+burrow-init\n2\s+sleep\n/);
  // a pod: the member's exec sees the pod's network and hostname
  ok(['pod', 'create', 'pe']);
  ok(['run', '-d', '--pod', 'pe', '--name', 'e2', '--', 'sleep', '300']);
  t.is(ok(['exec', 'e2', 'hostname']), 'pe\n', `${what}: in a pod`);
  t.regex(ok(['exec', 'e2', 'cat', '/proc/net/dev']), /eth0:/, 'the pod\'s network');
  // --network none: loopback only
  ok(['run', '-d', '--network', 'none', '--name', 'e3', '--', 'sleep', '300']);
  t.is(ok(['exec', 'e3', 'sh', '-c', 'grep -c : /proc/net/dev']), '1\n', `${what}: --network none`);
  ok(['stop', '-t', '0', 'e3']);
  const stopped = b(['exec', 'e3', 'true']);
  t.is(stopped.code, 125);
  t.regex(stopped.stderr, /can only create exec sessions on running containers/);
  t.is(b(['exec', 'nosuch', 'true']).code, 125);
  ok(['pod', 'rm', '-f', 'pe']);
  ok(['rm', '-f', 'e1', 'e3']);
}

async function startRestart(t: import('ava').ExecutionContext, b: Run, from: string, addr: string, what: string): Promise<void> {
  const ok = okOf(t, b, what);
  ok(['run', '-d', '--name', 'srv', ...FIXTURES, '-p', '18530:8080', '-p', '8081', '-v', 'srvdata:/tmp/data', '--', 'sh', '-c', `date +%s%N >> /tmp/data/starts; exec ${SERVERS(8080, 8081).map((a) => `'${a}'`).join(' ')}`]);
  const chosen = ok(['port', 'srv', '8081']).trim();
  t.regex(chosen, /^0\.0\.0\.0:\d+$/, `${what}: -p 8081 got a free host port`);
  const port = Number(chosen.split(':')[1]);
  t.not(port, 8081);
  t.is(await httpUp(from, `http://${addr}:18530/`), '200', `${what}: fixed port`);
  t.is(await httpUp(from, `http://${addr}:${port}/`), '200', `${what}: the chosen port`);
  t.is(ok(['stop', 'srv']), 'srv\n');
  t.not(http(from, `http://${addr}:18530/`), '200');
  t.regex(ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /^srv Exited \(\d+\)/m);
  t.is(ok(['start', 'srv']), 'srv\n');
  t.is(await httpUp(from, `http://${addr}:18530/`), '200', `${what}: reachable again after start`);
  t.is(await httpUp(from, `http://${addr}:${port}/`), '200', `${what}: the same chosen port after start`);
  t.is(ok(['port', 'srv', '8081']).trim(), chosen);
  t.is(ok(['restart', 'srv']), 'srv\n');
  t.is(await httpUp(from, `http://${addr}:18530/`), '200', `${what}: reachable again after restart`);
  t.is(ok(['inspect', '-f', '{{.RestartCount}} {{.restarts}} {{.State.Status}} {{.Name}}', 'srv']), '0 2 running srv\n', 'podman counts restart-policy restarts only; burrow its own starts');
  t.is(ok(['exec', 'srv', 'sh', '-c', 'wc -l < /tmp/data/starts']).trim(), '3', 'the volume is mounted again each time');
  t.is(ok(['logs', 'srv']).split('\n').filter((l) => l === 'ready').length, 3, 'the log keeps every run');
  t.is(ok(['start', 'srv']), 'srv\n', 'starting a running container changes nothing');
  ok(['rm', '-f', 'srv']);
  ok(['volume', 'rm', 'srvdata']);
}

rootTest.serial('rootful: exec on the default network, in a pod and on --network none; top', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  await execEverywhere(t, (args) => sync(rootArgv(sb, w.host, args)), 'rootful', 'bridge');
});

rootTest.serial('rootless: exec on usernet, in a pod and on --network none; top', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  await execEverywhere(t, (args) => sync(userArgv(USER, w.host, args)), 'rootless', 'usernet');
});

rootTest.serial('rootful: start and restart keep the ports (a chosen one too) and the volumes; reachable again', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  await startRestart(t, (args) => sync(rootArgv(sb, w.host, args)), w.remote, '10.98.0.1', 'rootful');
});

rootTest.serial('rootless: start and restart keep the ports and volumes on usernet', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  await startRestart(t, (args) => sync(userArgv(USER, w.host, args)), w.remote, '10.98.0.1', 'rootless');
});

async function imageFile(t: import('ava').ExecutionContext, owner?: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-ctl-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'busybox.tar');
  fs.writeFileSync(file, await busyboxImage(), { mode: 0o644 });
  if (owner) spawnSync('chown', ['-R', owner, dir]);
  return file;
}

rootTest.serial('run flags: --user from the image\'s passwd, --read-only, --privileged, no-new-privileges, masks, --add-host, host.containers.internal, --env-file, --entrypoint, labels, mounts', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  const ok = okOf(t, b);
  const image = await imageFile(t);
  const dir = path.dirname(image);
  fs.writeFileSync(path.join(dir, 'app.env'), '# settings\nAPP_MODE=test\nAPP_NAME="quoted"\n');
  t.is(ok(['run', '--rm', '--image', image, '-u', 'www-data', '--', 'sh', '-c', 'echo "$(id -u):$(id -g) $HOME"']), '33:33 /srv\n', '--user names a user of the image (HOME from its passwd)');
  t.is(b(['run', '--rm', '--image', image, '-u', 'nosuch', '--', 'true']).code, 125);
  t.regex(b(['run', '--rm', '--image', image, '-u', 'nosuch', '--', 'true']).stderr, /unable to find user nosuch/);
  t.is(ok(['run', '--rm', '--image', image, '-u', '1234:5678', '--', 'sh', '-c', 'echo $(id -u):$(id -g)']), '1234:5678\n');
  const ro = b(['run', '--rm', '--image', image, '--read-only', '--', 'sh', '-c', 'busybox touch /x 2>/dev/null && echo rw || echo ro; busybox touch /tmp/y /run/w && echo tmp-ok']);
  t.is(ro.stdout, 'ro\ntmp-ok\n', '--read-only: the root is, /tmp and /run are not');
  t.is(ok(['run', '--rm', '--network', 'none', '--', 'sh', '-c', 'grep ^CapEff /proc/self/status; echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-rw || echo sys-ro; ls /proc/acpi | wc -l; ls /dev | wc -l']).replace(/\s+/g, ' ').trim(), 'CapEff: 00000000800405fb sys-ro 0 13', 'defaults: podman\'s capabilities, /proc/sys read-only, /proc/acpi masked, a minimal /dev');
  const priv = ok(['run', '--rm', '--network', 'none', '--privileged', '--', 'sh', '-c', 'grep ^CapEff /proc/self/status; echo 1 > /proc/sys/kernel/domainname && echo sys-rw; test -e /dev/vda -o -e /dev/sda -o -e /dev/loop0 -o -e /dev/mem && echo host-dev']);
  t.regex(priv, /^CapEff:\s+000001ffffffffff\nsys-rw\nhost-dev\n$/, '--privileged: every capability, no masks, the host\'s devices');
  t.is(ok(['run', '--rm', '--network', 'none', '--security-opt', 'no-new-privileges', '--', 'grep', '^NoNewPrivs', '/proc/self/status']).replace(/\s+/g, ' ').trim(), 'NoNewPrivs: 1');
  t.regex(b(['run', '--rm', '--security-opt', 'seccomp=/x.json', '--', 'true']).stderr, /applies no seccomp filter/);
  const hosts = ok(['run', '--rm', '--add-host', 'db:10.1.2.3', '--', 'cat', '/etc/hosts']);
  t.regex(hosts, /^10\.1\.2\.3\tdb$/m);
  t.regex(hosts, /^\d+\.\d+\.\d+\.1\thost\.containers\.internal host\.docker\.internal$/m, 'the bridge\'s gateway, as podman writes it');
  t.is(ok(['run', '--rm', '--network', 'none', '--env-file', path.join(dir, 'app.env'), '-e', 'APP_MODE=flag', '--', 'sh', '-c', 'echo "$APP_MODE $APP_NAME"']), 'flag "quoted"\n');
  t.is(ok(['run', '--rm', '--image', image, '--entrypoint', '/bin/echo', '--', 'from', 'entrypoint']), 'from entrypoint\n');
  ok(['run', '-d', '--name', 'lab', '--network', 'none', '-l', 'app=web', '--label', 'tier', '--init', '--', 'sleep', '300']);
  t.is(ok(['ps', '--filter', 'label=app=web', '--format', '{{.Names}} {{.Labels}}']), 'lab map[app:web tier:]\n');
  t.is(ok(['inspect', '-f', '{{json .Config.Labels}} {{.HostConfig.Init}}', 'lab']), '{"app":"web","tier":""} true\n');
  ok(['rm', '-f', 'lab']);
  // mounts: relative -v with -d, :Z, --tmpfs, --mount, anonymous volumes that go with --rm, mount points made in the root
  fs.mkdirSync(path.join(dir, 'site'));
  fs.writeFileSync(path.join(dir, 'site', 'index.html'), 'relative\n');
  const rel = spawnSync(rootArgv(sb, w.host, [])[0], [...rootArgv(sb, w.host, []).slice(1), 'run', '-d', '--name', 'relv', '--image', image, '-v', './site:/srv:ro,Z', '--', 'sleep', '300'], { cwd: dir, encoding: 'utf8' });
  t.is(rel.status, 0, rel.stderr);
  t.is(ok(['exec', 'relv', 'cat', '/srv/index.html']), 'relative\n', '-v ./site resolved against the caller\'s directory, with -d');
  t.is(b(['exec', 'relv', 'busybox', 'touch', '/srv/x']).code, 1, ':ro,Z is read-only');
  ok(['rm', '-f', 'relv']);
  const m = ok(['run', '--rm', '--image', image, '--tmpfs', '/scratch:size=1m', '--mount', 'type=tmpfs,target=/t2,tmpfs-mode=0700', '--mount', `type=bind,source=${dir},target=/host,readonly`, '-v', '/cache', '--', 'sh', '-c', 'grep -E " /(scratch|t2|host|cache) " /proc/mounts | busybox cut -d" " -f2,3,4 | busybox sort; stat -c %a /t2; busybox touch /cache/x && echo cache-rw']);
  t.regex(m, /^\/cache ext4 rw,nosuid,nodev.*\n\/host \S+ ro.*\n\/scratch tmpfs rw,nosuid,nodev,noexec.*size=1024k.*\n\/t2 tmpfs rw,nosuid,nodev,noexec.*\n700\ncache-rw\n$/);
  t.deepEqual(JSON.parse(ok(['volume', 'ls', '--format', 'json'])), [], '--rm took the anonymous volume along');
  // named volumes outlive their containers; in use they stay (podman's exit status 2)
  ok(['run', '--rm', '--network', 'none', '-v', 'keep:/tmp/k', '--', 'sh', '-c', 'echo kept > /tmp/k/f']);
  t.is(ok(['run', '--rm', '--network', 'none', '-v', 'keep:/tmp/k:ro', '--', 'cat', '/tmp/k/f']), 'kept\n');
  t.is(ok(['volume', 'ls', '--format', '{{.Name}} {{.Driver}}']), 'keep local\n');
  t.regex(ok(['volume', 'inspect', 'keep']), /"Mountpoint": ".*\/volumes\/keep\/_data"/);
  ok(['run', '-d', '--name', 'user-of-keep', '--network', 'none', '-v', 'keep:/tmp/k', '--', 'sleep', '300']);
  const inUse = b(['volume', 'rm', 'keep']);
  t.is(inUse.code, 2);
  t.regex(inUse.stderr, /volume keep is being used by the following container\(s\): [0-9a-f]{64}: volume is being used/);
  t.is(ok(['volume', 'rm', '-f', 'keep']), 'keep\n', '-f removes the container first');
  t.is(ok(['ps', '-aq']), '');
});

rootTest.serial('rootless: a volume is chowned to the container\'s root (--userns nomap) and --image mount points are made', async (t) => {
  ensureUser(t, USER);
  const w = await world(t);
  const image = await imageFile(t, USER);
  const b = (args: string[]) => sync(userArgv(USER, w.host, args));
  const r = b(['run', '--rm', '--userns', 'nomap', '--network', 'none', '--image', image, '-v', 'nm:/data', '--', 'sh', '-c', 'id -u; busybox touch /data/f && ls -ln /data']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^0\n.*\n-rw-r--r--\s+1 0\s+0\s+0 .* f\n$/s, 'the container\'s root owns the new volume');
  t.is(b(['volume', 'rm', 'nm']).code, 0, 'files of subordinate ids go too');
});

rootTest.serial('exit codes and conflicting options, as podman\'s', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  const cases: Array<[string[], number, RegExp?]> = [
    [['run', '--bogus-flag', '--', 'true'], 125, /unknown option '--bogus-flag'/],
    [['stop', 'nosuch'], 125, /no container with name or ID "nosuch" found: no such container/],
    [['run', '--rm', '--network', 'nosuchnet', '--', 'true'], 125, /nosuchnet/],
    [['run', '--rm', '--', 'nosuch-command'], 127, /cannot execute "nosuch-command": No such file or directory/],
    [['run', '--rm', '--', '/etc/passwd'], 126, /Permission denied/],
    [['run', '--rm', '--', 'sh', '-c', 'exit 7'], 7],
    [['run', '--rm', '--dns', '1.1.1.1', '--network', 'none', '--', 'true'], 125, /^Error: conflicting options: dns and the network mode: none$/m],
    [['run', '--rm', '--ip', '10.99.99.5', '--', 'true'], 125, /requested static ip 10\.99\.99\.5 not in any subnet on network/],
    [['run', '--rm', '--ip', '10.88.0.5', '--network', 'none', '--', 'true'], 125, /--ip can only be set when the network mode is bridge/],
    [['run', '--rm', '--mac-address', '02:00:00:00:00:01', '--network', 'host', '--', 'true'], 125, /--mac-address can only be set when the network mode is bridge/],
    [['run', '--rm', '--add-host', 'nocolon', '--', 'true'], 125, /bad format for add-host: "nocolon"/],
    [['run', '--rm', '-u', 'a:b:c', '--', 'true'], 125, /invalid --user/],
    [['run', '--rm', '--tmpfs', 'relative', '--', 'true'], 125, /must be absolute/],
    [['run', '--rm', '--env-file', '/nonexistent.env', '--', 'true'], 125, /parsing env file "\/nonexistent.env"/],
    [['logs', '-l'], 125, /no containers to act on with --latest/],
    [['rm', '-l', 'x'], 125, /cannot be used together/],
  ];
  for (const [args, code, re] of cases) {
    const r = b(args);
    t.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    if (re) t.regex(r.stderr, re, args.join(' '));
  }
  // the default network's subnet, whichever it is: --ip outside its range is refused before the plugin runs
  const subnet = JSON.parse(b(['network', 'inspect', 'burrow']).stdout)[0].subnets[0].subnet as string;
  const gw = subnet.replace(/\.0\/16$/, '.1');
  t.regex(b(['run', '--rm', '--ip', gw, '--', 'true']).stderr, /is the gateway of network burrow/);
  // name in use (an exited container keeps its name until rm, as podman's), port in use
  t.is(b(['run', '--name', 'taken', '--network', 'none', '--', 'true']).code, 0);
  const clash = b(['run', '--rm', '--name', 'taken', '--network', 'none', '--', 'true']);
  t.is(clash.code, 125);
  t.regex(clash.stderr, /the container name "taken" is already in use by [0-9a-f]{12}/);
  t.is(b(['run', '-d', '--name', 'holder', '-p', '18540:80', '--', 'sleep', '300']).code, 0);
  const port = b(['run', '--rm', '-p', '18540:80', '--', 'true']);
  t.is(port.code, 125);
  t.regex(port.stderr, /18540/);
  // -p on --network none: podman's warning, and the container runs
  const none = b(['run', '--rm', '-p', '80', '--network', 'none', '--', 'echo', 'ran']);
  t.is(none.code, 0);
  t.is(none.stdout, 'ran\n');
  t.regex(none.stderr, /Port mappings have been discarded/);
  t.is(b(['rm', '-f', '-a']).code, 0);
  t.is(b(['ps', '-aq']).stdout, '');
});

rootTest.serial('logs: foreground runs log too; -f follows until the container exits; --tail, -t, --since; stderr to stderr', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  const fg = b(['run', '--name', 'fg', '--network', 'none', '--', 'sh', '-c', 'echo out1; echo err1 >&2; printf part; sleep 0.2; echo ial']);
  t.is(fg.code, 0, fg.stderr);
  t.is(fg.stdout, 'out1\npartial\n', 'the caller sees the output');
  const logs = b(['logs', 'fg']);
  t.is(logs.stdout, 'out1\npartial\n', 'a foreground container\'s log');
  t.is(logs.stderr, 'err1\n');
  t.is(b(['logs', '--tail', '1', 'fg']).stdout, 'partial\n');
  t.regex(b(['logs', '-t', 'fg']).stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z out1\n\S+ partial\n$/);
  t.is(b(['logs', '--since', '2000-01-01T00:00:00Z', '--until', '2000-01-02T00:00:00Z', 'fg']).stdout, '', 'nothing in that window');
  t.is(b(['logs', '--since', '10m', 'fg']).stdout, 'out1\npartial\n');
  const raw = fs.readFileSync(path.join(sb.dir, 'state', 'containers', JSON.parse(b(['inspect', 'fg']).stdout)[0].Id, 'ctr.log'), 'utf8');
  // podman's k8s-file format; the two pipes are read as they come, so stderr's line may fall anywhere
  const lines = raw.trimEnd().split('\n');
  for (const l of lines) t.regex(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+00:00 (stdout|stderr) [FP] /);
  t.deepEqual(lines.filter((l) => l.includes(' stdout ')).map((l) => l.split(' ').slice(1).join(' ')), ['stdout F out1', 'stdout P part', 'stdout F ial']);
  t.deepEqual(lines.filter((l) => l.includes(' stderr ')).map((l) => l.split(' ').slice(1).join(' ')), ['stderr F err1']);
  b(['rm', 'fg']);
  t.is(b(['run', '-d', '--name', 'slow', '--network', 'none', '--', 'sh', '-c', 'for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done']).code, 0);
  const follow = b(['logs', '-f', 'slow']);
  t.is(follow.code, 0);
  t.is(follow.stdout, 'line1\nline2\nline3\nline4\nline5\n', '-f printed every line and returned when the container exited');
  t.is(b(['rm', 'slow']).code, 0);
});

rootTest.serial('pods: create NAME, ps --pod, pod stop/start/restart keep the members and the published port', async (t) => {
  const sb = rootSandbox(t);
  const w = await world(t);
  const b = (args: string[]) => sync(rootArgv(sb, w.host, args));
  const ok = okOf(t, b);
  t.regex(ok(['pod', 'create', 'web', '-p', '18560:8080']), /^[0-9a-f]{64}\n$/, 'the name as podman takes it: positional');
  ok(['run', '-d', '--pod', 'web', '--name', 'app', ...FIXTURES, '--', ...SERVERS(8080)]);
  t.is(await httpUp(w.remote, 'http://10.98.0.1:18560/'), '200');
  t.regex(ok(['ps', '--pod']), /^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\s+POD ID\s+PODNAME\n/);
  t.regex(ok(['ps', '--filter', 'pod=web', '--format', '{{.Names}} {{.PodName}}']), /^[0-9a-f]{12}-infra web\napp web\n$/, 'the infra, then the member');
  t.is(ok(['pod', 'stop', 'web']).length, 65);
  t.is(ok(['pod', 'ps', '--format', '{{.Name}} {{.Status}}']), 'web Exited\n');
  t.not(http(w.remote, 'http://10.98.0.1:18560/'), '200');
  t.regex(ok(['ps', '-a', '--filter', 'name=app', '--format', '{{.Status}}']), /^Exited/, 'the member stays, exited');
  ok(['pod', 'start', 'web']);
  t.is(ok(['pod', 'ps', '--format', '{{.Name}} {{.Status}} {{.NumberOfContainers}}']), 'web Running 2\n');
  t.is(await httpUp(w.remote, 'http://10.98.0.1:18560/'), '200', 'the member serves on the pod\'s port again');
  ok(['pod', 'restart', 'web']);
  t.is(await httpUp(w.remote, 'http://10.98.0.1:18560/'), '200', 'and after a restart');
  t.is(ok(['exec', 'app', 'hostname']), 'web\n');
  ok(['pod', 'rm', '-f', 'web']);
  t.is(ok(['ps', '-aq']), '');
});
