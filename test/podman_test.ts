/**
 * Debian's podman 4.3.1 (CNI backend) as a real client of burrow's plugins alone: its
 * cni_plugin_dirs holds only what `burrow cni install` wrote. podman runs inside a throwaway
 * "host" netns with private storage. After each step nothing of burrow's may be left.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nsExec, rootTest, tcpRequest, testNetns, uplink } from './helpers/netns.js';
import { sandbox } from './helpers/burrow.js';

const podmanMissing = () => (spawnSync('podman', ['--version']).status === 0 ? null : 'podman is not installed (scripts/setup.sh installs it)');

rootTest.serial('podman runs containers on burrow\'s plugins alone, and nothing is left after each step', async (t) => {
  const sb = sandbox(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-podman-'));
  const bin = path.join(dir, 'bin');
  const netd = path.join(dir, 'net.d');
  const rootfs = path.join(dir, 'rootfs');
  fs.mkdirSync(netd);
  fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'etc', 'tmp', 'www']) fs.mkdirSync(path.join(rootfs, d));
  fs.copyFileSync('/usr/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'httpd', 'ip', 'sleep', 'cat', 'nslookup', 'wget']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
  fs.writeFileSync(path.join(rootfs, 'www', 'index.html'), 'hello from podman on burrow\n');
  sb.ok(['cni', 'install', '--dir', bin]);
  const conf = path.join(dir, 'containers.conf');
  // conmon_env_vars: podman gives conmon (and the `podman container cleanup` it execs when a
  // container exits, which tears the network down) only these, so the test's DNS root goes too
  const dnsRoot = path.join(dir, 'dns');
  fs.writeFileSync(conf, `[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\nconmon_env_vars = ["PATH=${process.env.PATH}", "BURROW_DNS_ROOT=${dnsRoot}"]\n[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["${bin}"]\nnetwork_config_dir = "${netd}"\n`);
  const host = testNetns(t, 'ph');
  const client = testNetns(t, 'pc');
  await uplink(host, client, '198.18.6.2', '198.18.6.1');
  const podman = (...args: string[]) => {
    const r = spawnSync('nsenter', [`--net=${host}`, '--', 'podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--storage-driver', 'vfs', ...args], { env: { ...process.env, CONTAINERS_CONF: conf, BURROW_DNS_ROOT: dnsRoot }, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`podman ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  const stores: string[] = [];
  t.teardown(() => {
    try {
      podman('rm', '-af');
      podman('network', 'rm', '-f', 'pa', 'pb', 'pm', 'pd');
    } catch {
      // best effort; the netns goes anyway
    }
    // the DNS server of this test's records, had a step failed before its last record went
    spawnSync('pkill', ['-9', '-f', `dnsname.cjs serve --root ${path.join(dir, 'dns')}`]);
    spawnSync('umount', ['-R', path.join(dir, 'root')]);
    spawnSync('umount', ['-R', path.join(dir, 'runroot')]);
    fs.rmSync(dir, { recursive: true, force: true });
    for (const s of stores) fs.rmSync(s, { recursive: true, force: true });
  });
  const clean = (step: string) => {
    const rules = nsExec(host, ['iptables-save']) + nsExec(host, ['ip6tables-save']);
    t.notRegex(rules, /CNI-/, `${step}: no CNI rule left`);
    t.deepEqual(nsExec(host, ['ip', '-o', 'link']).split('\n').filter((l) => /veth/.test(l)), [], `${step}: no veth left`);
    for (const s of stores) t.deepEqual(fs.existsSync(s) ? fs.readdirSync(s).filter((f) => /^\d/.test(f)) : [], [], `${step}: no reservation left in ${s}`);
  };

  podman('network', 'create', '--subnet', '10.237.0.0/24', 'pa');
  podman('network', 'create', '--subnet', '10.238.0.0/24', 'pb');
  stores.push('/var/lib/cni/networks/pa', '/var/lib/cni/networks/pb');
  t.regex(fs.readFileSync(path.join(netd, 'pa.conflist'), 'utf8'), /"type": "portmap"/);

  podman('run', '-d', '--name', 'web', '--network', 'pa', '-p', '8088:80', '--rootfs', rootfs, '/bin/httpd', '-f', '-p', '80', '-h', '/www');
  const get = (ns: string, hostAddr: string) => tcpRequest(ns, hostAddr, 8088).catch(() => '');
  for (let i = 0; i < 20 && !(await get(host, '127.0.0.1').then(() => true)); i++) await new Promise((r) => setTimeout(r, 100));
  const http = (ns: string, addr: string) => nsExec(ns, ['bash', '-c', `exec 3<>/dev/tcp/${addr}/8088; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3`]);
  t.regex(http(host, '127.0.0.1'), /hello from podman on burrow/, 'from the host through -p');
  t.regex(http(client, '198.18.6.2'), /hello from podman on burrow/, 'from a client namespace through -p');
  // names: podman 4.3 found burrow's dnsname and chained it; a container reaches web by name and alias
  t.regex(fs.readFileSync(path.join(netd, 'pa.conflist'), 'utf8'), /"type": "dnsname"/, 'podman chains dnsname when it finds the plugin');
  podman('run', '-d', '--name', 'db', '--network', 'pa', '--network-alias', 'postgresql', '--rootfs', rootfs, '/bin/sleep', '300');
  const dbIp = podman('inspect', '-f', '{{.NetworkSettings.Networks.pa.IPAddress}}', 'db');
  const look = podman('run', '--rm', '--network', 'pa', '--rootfs', rootfs, '/bin/sh', '-c', 'cat /etc/resolv.conf; nslookup db; nslookup postgresql; wget -qO- http://web/');
  t.regex(look, /search dns\.podman/);
  t.regex(look, /nameserver 10\.237\.0\.1/);
  t.is(look.split(dbIp).length - 1 >= 2, true, `db and postgresql resolve to ${dbIp}: ${look}`);
  t.regex(look, /hello from podman on burrow/, 'web by name');
  podman('rm', '-f', 'db');
  podman('rm', '-f', 'web');
  t.false(fs.existsSync(path.join(dnsRoot, 'dnsname', 'pa', 'records')), 'every record gone, the `run --rm` client\'s too');

  clean('run -p, rm -f');

  podman('run', '-d', '--name', 'two', '--network', 'pa,pb', '--rootfs', rootfs, '/bin/sleep', '300');
  // podman attaches the networks in parallel: which one becomes eth0 varies.
  const addrs = podman('exec', 'two', 'ip', '-o', '-4', 'addr');
  t.regex(addrs, /eth[01] .*10\.237\.0\.\d+\/24/);
  t.regex(addrs, /eth[01] .*10\.238\.0\.\d+\/24/);
  podman('rm', '-f', 'two');
  clean('--network a,b');

  podman('run', '-d', '--name', 'fixed', '--network', 'pa', '--ip', '10.237.0.77', '--mac-address', '02:11:22:33:44:55', '--rootfs', rootfs, '/bin/sleep', '300');
  t.regex(podman('exec', 'fixed', 'ip', '-o', 'addr', 'show', 'eth0'), /10\.237\.0\.77\/24/);
  t.regex(podman('exec', 'fixed', 'ip', '-o', 'link', 'show', 'eth0'), /02:11:22:33:44:55/);
  podman('network', 'connect', 'pb', 'fixed');
  t.regex(podman('exec', 'fixed', 'ip', '-o', '-4', 'addr'), /eth1 .*10\.238\.0\.\d+/);
  podman('network', 'disconnect', 'pb', 'fixed');
  t.notRegex(podman('exec', 'fixed', 'ip', '-o', '-4', 'addr'), /10\.238/);
  t.deepEqual(fs.readdirSync(stores[1]).filter((f) => /^\d/.test(f)), [], 'disconnect released the address');
  const pid = podman('inspect', '-f', '{{.State.Pid}}', 'fixed');
  process.kill(Number(pid), 'SIGKILL');
  for (let i = 0; i < 50 && !/Exited/.test(podman('ps', '-a', '--format', '{{.Status}}')); i++) await new Promise((r) => setTimeout(r, 100));
  // podman's cleanup (conmon -> podman container cleanup -> CNI DEL) runs after the exit: wait for it.
  for (let i = 0; i < 150 && /CNI-/.test(nsExec(host, ['iptables-save'])); i++) await new Promise((r) => setTimeout(r, 100));
  clean('kill -9 of the container');
  podman('rm', '-f', 'fixed');

  // macvlan: the parent is the host end of the veth to the client namespace (never eth0).
  podman('network', 'create', '-d', 'macvlan', '-o', 'parent=up0', '--subnet', '198.18.6.0/24', '--ip-range', '198.18.6.128/25', 'pm');
  stores.push('/var/lib/cni/networks/pm');
  t.regex(fs.readFileSync(path.join(netd, 'pm.conflist'), 'utf8'), /"type": "macvlan"[\s\S]*"master": "up0"/);
  podman('run', '-d', '--name', 'mv', '--network', 'pm', '--rootfs', rootfs, '/bin/httpd', '-f', '-p', '80', '-h', '/www');
  const mvIp = podman('inspect', '-f', '{{.NetworkSettings.Networks.pm.IPAddress}}', 'mv');
  t.regex(mvIp, /^198\.18\.6\.1(29|[3-9]\d)$|^198\.18\.6\.2\d\d$/);
  t.regex(nsExec(client, ['ping', '-c1', '-W2', mvIp]), /1 received/, 'a LAN host reaches the macvlan container');
  t.regex(nsExec(client, ['bash', '-c', `exec 3<>/dev/tcp/${mvIp}/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3`]), /hello from podman on burrow/);
  podman('rm', '-f', 'mv');
  clean('macvlan run, rm -f');
  t.deepEqual(nsExec(host, ['ip', '-o', 'link']).split('\n').filter((l) => /@up0/.test(l)), [], 'no macvlan left on the parent');

  // macvlan without a subnet: podman 4.3 writes the dhcp IPAM; the LAN's server (dnsmasq in the
  // client namespace) leases the address through burrow's dhcp plugin and daemon. podman's
  // conflist names no socket: the daemon is on the default /run/cni/dhcp.sock for this step.
  if (fs.existsSync('/usr/sbin/dnsmasq')) {
    t.false(fs.existsSync('/run/cni/dhcp.sock'), 'no DHCP daemon of the machine is in the way');
    const leases = path.join(dir, 'dnsmasq.leases');
    const dns = spawn('nsenter', [`--net=${client}`, '--', '/usr/sbin/dnsmasq', '--no-daemon', '--port=0', '--interface=eth0', '--bind-interfaces', '--pid-file=', '--no-ping', '--dhcp-range=198.18.6.200,198.18.6.220,255.255.255.0,2m', `--dhcp-leasefile=${leases}`], { stdio: 'ignore' });
    const daemon = spawn('nsenter', [`--net=${host}`, '--', path.join(bin, 'dhcp'), 'daemon', '-leasefile', path.join(dir, 'dhcp-leases.json')], { stdio: 'ignore' });
    const stopAll = async () => {
      for (const p of [daemon, dns]) {
        if (p.exitCode !== null || p.signalCode !== null) continue;
        p.kill('SIGTERM');
        await new Promise((r) => p.once('exit', r));
      }
    };
    t.teardown(stopAll);
    for (let i = 0; i < 200 && !fs.existsSync('/run/cni/dhcp.sock'); i++) await new Promise((r) => setTimeout(r, 20));
    podman('network', 'create', '-d', 'macvlan', '-o', 'parent=up0', 'pd');
    t.regex(fs.readFileSync(path.join(netd, 'pd.conflist'), 'utf8'), /"ipam": \{\s*"type": "dhcp"\s*\}/, 'podman wrote the dhcp IPAM');
    podman('run', '-d', '--name', 'dh', '--network', 'pd', '--rootfs', rootfs, '/bin/httpd', '-f', '-p', '80', '-h', '/www');
    const dhIp = podman('inspect', '-f', '{{.NetworkSettings.Networks.pd.IPAddress}}', 'dh');
    t.regex(dhIp, /^198\.18\.6\.2(0\d|1\d|20)$/, 'an address from the LAN\'s DHCP server');
    t.regex(nsExec(client, ['bash', '-c', `exec 3<>/dev/tcp/${dhIp}/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3`]), /hello from podman on burrow/);
    podman('rm', '-f', 'dh');
    for (let i = 0; i < 50 && fs.readFileSync(leases, 'utf8').includes(dhIp); i++) await new Promise((r) => setTimeout(r, 50));
    t.false(fs.readFileSync(leases, 'utf8').includes(dhIp), 'podman rm released the lease');
    podman('network', 'rm', 'pd');
    await stopAll();
    t.false(fs.existsSync('/run/cni/dhcp.sock'), 'the daemon removed its socket');
  }
}, podmanMissing);
