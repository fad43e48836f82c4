/**
 * Debian's rootful podman 4.3.1 with `network_backend = "netavark"` and `helper_binaries_dir`
 * holding only what `burrow compat install` wrote (this machine has no netavark of Debian's where
 * podman looks), in a test "host" namespace with a mount namespace of its own (tmpfs on
 * /run/netns and /run/containers), private storage and a busybox image made locally: a bridge
 * network with `-p`, names and `--network-alias` through burrow's aardvark-dns, an internal
 * network, a macvlan network on a veth parent; after `podman rm` nothing of the network is left.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI } from './helpers/burrow.js';
import { nsExec, rootTest, testNetns } from './helpers/netns.js';

const podmanMissing = () => (spawnSync('podman', ['--version']).status === 0 ? null : 'podman is not installed (scripts/setup.sh installs it)');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

rootTest.serial('rootful podman 4.3.1 on burrow\'s netavark and aardvark-dns: -p, names and aliases, internal, macvlan, nothing left', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-podnv-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'www', 'proc', 'sys', 'dev', 'etc', 'tmp']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'httpd', 'ip', 'cat', 'wget', 'ping']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
  fs.writeFileSync(path.join(rootfs, 'www', 'index.html'), 'hello from podman on burrow\'s netavark\n');
  t.is(spawnSync('tar', ['-C', rootfs, '-cf', path.join(dir, 'rootfs.tar'), '.']).status, 0);
  const helpers = path.join(dir, 'helpers');
  t.is(spawnSync(process.execPath, [CLI, 'compat', 'install', '--dir', helpers]).status, 0);
  const conf = path.join(dir, 'containers.conf');
  fs.writeFileSync(conf, `[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\nhelper_binaries_dir = ["${helpers}"]\n[network]\nnetwork_backend = "netavark"\nnetwork_config_dir = "${path.join(dir, 'networks')}"\n`);
  const host = testNetns(t, 'pn');
  const lan = testNetns(t, 'pl');
  nsExec(host, ['sh', '-c', `ip link set lo up && ip link add mvpar0 type veth peer name lan0 netns ${lan} && ip link set mvpar0 up`]);
  nsExec(lan, ['sh', '-c', 'ip addr add 192.168.78.1/24 dev lan0 && ip link set lan0 up']);
  // the host's mount namespace: podman's netns files and run dir live on its tmpfs
  const holder = spawn('nsenter', [`--net=${host}`, '--', 'unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mkdir -p /run/netns /run/containers && mount -t tmpfs none /run/netns && mount -t tmpfs none /run/containers && echo up && exec sleep 3600'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise((r) => holder.stdout!.once('data', r));
  const pid = spawnSync('pgrep', ['-P', String(holder.pid), 'sleep'], { encoding: 'utf8' }).stdout.trim() || String(holder.pid);
  const enter = ['nsenter', '-t', pid, '-m', '-n', '--'];
  const base = ['podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--tmpdir', path.join(dir, 'tmp'), '--storage-driver', 'vfs'];
  const env = { ...process.env, CONTAINERS_CONF: conf };
  const podman = (...args: string[]) => new Promise<string>((resolve, reject) => execFile(enter[0], [...enter.slice(1), ...base, ...args], { env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => (err ? reject(new Error(`podman ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout.trim()))));
  const inHost = (cmd: string) => spawnSync(enter[0], [...enter.slice(1), 'sh', '-c', cmd], { encoding: 'utf8' }).stdout;
  t.teardown(() => void spawnSync(enter[0], [...enter.slice(1), ...base, 'rm', '-af', '-t', '0'], { env }));

  await podman('import', path.join(dir, 'rootfs.tar'), 'localhost/bb:1');
  await podman('network', 'create', '--subnet', '10.89.60.0/24', 'app');
  await podman('network', 'create', '--internal', '--subnet', '10.89.61.0/24', 'back');
  await podman('network', 'create', '-d', 'macvlan', '-o', 'parent=mvpar0', '--subnet', '192.168.78.0/24', 'lan');
  await podman('run', '-d', '--name', 'web', '--network', 'app', '--network-alias', 'www', '-p', '18090:80', 'localhost/bb:1', 'httpd', '-f', '-p', '80', '-h', '/www');
  t.regex(inHost('ps -eo args | grep "[h]elpers/aardvark-dns"'), /aardvark-dns --config \S+ -p 53 run/, 'podman\'s netavark (burrow\'s) started burrow\'s aardvark-dns');
  t.regex(await podman('run', '--rm', '--network', 'app', 'localhost/bb:1', 'wget', '-q', '-O', '-', 'http://www/'), /hello from podman on burrow's netavark/, 'by --network-alias');
  t.regex(await podman('run', '--rm', '--network', 'app', 'localhost/bb:1', 'wget', '-q', '-O', '-', 'http://web.dns.podman/'), /hello/, 'by name.dns.podman');
  t.regex(inHost('timeout 5 bash -c \'exec 3<>/dev/tcp/127.0.0.1/18090; printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3\''), /hello from podman on burrow's netavark/, '-p through the host\'s loopback');
  t.regex(await podman('run', '--rm', '--network', 'back', 'localhost/bb:1', 'ip', 'route'), /^10\.89\.61\.0\/24 dev eth0/m);
  t.notRegex(await podman('run', '--rm', '--network', 'back', 'localhost/bb:1', 'ip', 'route'), /default/, 'an internal network has no default route');
  const lanOut = await podman('run', '--rm', '--network', 'lan', 'localhost/bb:1', 'sh', '-c', 'ip -o addr show eth0; ping -c 1 -W 2 192.168.78.1');
  t.regex(lanOut, /inet 192\.168\.78\.\d+\/24/, 'an address on the macvlan network');
  t.regex(lanOut, /1 packets received/, 'the LAN host answers');
  await podman('rm', '-f', '-t', '0', 'web');
  for (let i = 0; i < 50 && inHost('ps -eo args | grep "[h]elpers/aardvark-dns"'); i++) await sleep(100);
  t.is(inHost('ps -eo args | grep "[h]elpers/aardvark-dns"'), '', 'aardvark-dns exited with the last container');
  t.is(inHost('ip -o link show | grep -v " lo:\\| mvpar0@" || true'), '', 'no bridge or veth left');
  t.is(inHost('iptables-save; ip6tables-save').split('\n').filter((l) => /NETAVARK-[0-9A-F]{13}|NETAVARK-DN-|10\.89\.6/.test(l)).join('\n'), '', 'no rule of a network left');
}, podmanMissing);
