/**
 * Debian's rootless podman 4.3.1 on burrow's slirp4netns drop-in (containers.conf
 * `network_cmd_path`, where `burrow compat install` put it), in a test "host" namespace, as a real user with private storage and a
 * busybox image made locally: `podman run -p` through podman's default port handler
 * (rootlessport) and through `port_handler=slirp4netns` (the drop-in's API socket), the guest
 * at cidr+100, the host's loopback closed, and nothing of the drop-in left after `podman rm`.
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI } from './helpers/burrow.js';
import { nsExec, rootTest, testNetns } from './helpers/netns.js';
import { ensureUser } from './helpers/users.js';

const podmanMissing = () => (spawnSync('podman', ['--version']).status === 0 ? null : 'podman is not installed (scripts/setup.sh installs it)');
const http = (ns: string, port: number) => new Promise<string>((resolve) => execFile('nsenter', [`--net=${ns}`, '--', 'timeout', '10', 'bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3`], { encoding: 'utf8' }, (_e, out) => resolve(out)));
// the drop-in as podman started it, and once it re-executed into its sandbox
const slirps = (user: string) => spawnSync('pgrep', ['-u', user, '-a', '-f', '/slirp4netns(\\.cjs)? '], { encoding: 'utf8' }).stdout.trim();

rootTest.serial('rootless podman 4.3.1 on burrow\'s slirp4netns: -p with rootlessport and with port_handler=slirp4netns, the guest at 10.0.2.100, host loopback closed, nothing left', async (t) => {
  const user = 'burrowpodr';
  const uid = ensureUser(t, user);
  t.teardown(() => void spawnSync('pkill', ['-9', '-u', user])); // podman's pause process
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-podr-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'www', 'proc', 'sys', 'dev', 'etc', 'tmp']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'httpd', 'ip', 'cat', 'wget']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
  fs.writeFileSync(path.join(rootfs, 'www', 'index.html'), 'hello from rootless podman on burrow\n');
  t.is(spawnSync('tar', ['-C', rootfs, '-cf', path.join(dir, 'rootfs.tar'), '.']).status, 0);
  // the drop-in as a user installs it: `burrow compat install`, then network_cmd_path
  const helpers = path.join(dir, 'helpers');
  t.is(spawnSync(process.execPath, [CLI, 'compat', 'install', '--dir', helpers]).status, 0);
  const BIN = path.join(helpers, 'slirp4netns');
  const conf = path.join(dir, 'containers.conf');
  fs.writeFileSync(conf, `[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\nnetwork_cmd_path = "${BIN}"\n`);
  const xdg = path.join(dir, 'xdg');
  fs.mkdirSync(xdg, { mode: 0o700 });
  spawnSync('chown', ['-R', `${uid}:${uid}`, dir]);
  const host = testNetns(t, 'pr');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const podman = (...args: string[]) => {
    const r = spawnSync('nsenter', [`--net=${host}`, '--', 'setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${user}`, `USER=${user}`, 'PATH=/usr/bin:/bin:/usr/sbin:/sbin', `XDG_RUNTIME_DIR=${xdg}`, `CONTAINERS_CONF=${conf}`,
      'podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--tmpdir', path.join(dir, 'tmp'), '--storage-driver', 'vfs', ...args], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.error ?? ''}`);
    return r.stdout.trim();
  };
  podman('import', path.join(dir, 'rootfs.tar'), 'localhost/bb:1');
  podman('run', '-d', '--name', 'web', '-p', '18088:80', 'localhost/bb:1', 'httpd', '-f', '-p', '80', '-h', '/www');
  t.regex(slirps(user), /--disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4 --netns-type=path \S+ tap0/, 'podman passes its argv, with the sandbox flags --help offers');
  const pid = Number(slirps(user).split(' ')[0]);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s+(\\S+)`, 'm').exec(status)?.[1];
  t.deepEqual([field('CapEff'), field('NoNewPrivs'), field('Seccomp')], ['0000000000000400', '1', '2'], 'confined: CAP_NET_BIND_SERVICE only, no_new_privs, seccomp');
  t.false(fs.readdirSync(`/proc/${pid}/root`).includes('home'), 'in its own root');
  t.regex(await http(host, 18088), /hello from rootless podman on burrow/, 'the page through rootlessport');
  t.regex(podman('exec', 'web', 'ip', 'addr', 'show', 'tap0'), /inet 10\.0\.2\.100\/24/);
  t.regex(podman('exec', 'web', 'cat', '/etc/resolv.conf'), /^nameserver 10\.0\.2\.3$/m);
  podman('run', '-d', '--name', 'web2', '--network', 'slirp4netns:port_handler=slirp4netns', '-p', '18089:80', 'localhost/bb:1', 'httpd', '-f', '-p', '80', '-h', '/www');
  t.regex(slirps(user), /--api-socket \S+\.net --netns-type=path/);
  t.regex(await http(host, 18089), /hello from rootless podman on burrow/, 'the page through the drop-in\'s API socket');
  const loop = spawnSync('nsenter', [`--net=${host}`, '--', 'setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${user}`, 'PATH=/usr/bin:/bin', `XDG_RUNTIME_DIR=${xdg}`, `CONTAINERS_CONF=${conf}`,
    'podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--tmpdir', path.join(dir, 'tmp'), '--storage-driver', 'vfs', 'exec', 'web2', 'wget', '-q', '-T', '3', '-O', '-', 'http://10.0.2.2:18088/'], { encoding: 'utf8', timeout: 30_000 });
  t.not(loop.status, 0, 'the host\'s loopback is closed (podman passes --disable-host-loopback)');
  podman('rm', '-f', '-t', '0', 'web', 'web2');
  for (let i = 0; i < 50 && slirps(user); i++) await new Promise((r) => setTimeout(r, 100));
  t.is(slirps(user), '', 'no drop-in left');
  t.deepEqual(fs.readdirSync(path.join(dir, 'tmp')).filter((f) => f.endsWith('.net')), [], 'no API socket left');
  t.deepEqual(fs.existsSync(path.join(xdg, 'netns')) ? fs.readdirSync(path.join(xdg, 'netns')) : [], [], 'no netns left');
}, podmanMissing);
