import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalSubnet, logLevel, NetavarkError, parseArgs, parseOptions, subnetOf } from './netavark.js';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'netavark', 'capnet.setup.json');

test('netavark args: podman 4.3.1\'s argv, clap\'s forms, podman 5\'s extra flags, update and version', (t) => {
  t.like(parseArgs(['--config', '/run/containers/networks', '--rootless=false', '--aardvark-binary=/usr/lib/podman/aardvark-dns', 'setup', '/run/netns/netns-1']),
    { command: 'setup', config: '/run/containers/networks', rootless: false, aardvark: '/usr/lib/podman/aardvark-dns', netns: '/run/netns/netns-1' });
  t.like(parseArgs(['-c', '/x', '-r', 'true', '-a', '', '-f', 'opts.json', 'teardown', '/ns']), { config: '/x', rootless: true, aardvark: '', file: 'opts.json', command: 'teardown' });
  t.like(parseArgs(['--plugin-directory', '/p', '--firewall-driver', 'iptables', 'setup', '/ns']), { command: 'setup' });
  t.like(parseArgs(['update', 'podman', '--network-dns-servers', '1.1.1.1,8.8.8.8']), { command: 'update', network: 'podman', dnsServers: ['1.1.1.1', '8.8.8.8'] });
  t.like(parseArgs(['version']), { command: 'version' });
  t.throws(() => parseArgs(['--rootless', 'maybe', 'setup', '/ns']), { instanceOf: NetavarkError, message: /expected true or false/ });
  t.throws(() => parseArgs(['setup']), { message: /needs the path of a network namespace/ });
  t.throws(() => parseArgs(['frob']), { message: /unrecognized subcommand 'frob'/ });
});

test('netavark options: podman\'s JSON (the fixture Debian\'s netavark was checked against), and clear errors', (t) => {
  const o = parseOptions(fs.readFileSync(FIXTURE, 'utf8'));
  t.deepEqual(o.networks.capnet.static_ips, ['10.89.9.5', 'fd10:1:2:3::5']);
  t.is(o.port_mappings?.length, 2);
  t.throws(() => parseOptions('{'), { message: /^failed to parse network options/ });
  t.throws(() => parseOptions(JSON.stringify({ ...o, container_id: 'zz' })), { message: /container_id must be hex/ });
  t.throws(() => parseOptions(JSON.stringify({ ...o, network_info: { capnet: { ...o.network_info.capnet, driver: 'ipvlan' } } })), { message: /unknown network driver "ipvlan"/ });
  t.throws(() => parseOptions(JSON.stringify({ ...o, networks: { capnet: { ...o.networks.capnet, static_ips: ['10.1.1.1'] } } })), { message: /static ip 10\.1\.1\.1 is in none of its subnets/ });
  t.throws(() => parseOptions(JSON.stringify({ ...o, port_mappings: [{ host_ip: '', container_port: 80, host_port: 65535, range: 2, protocol: 'tcp' }] })), { message: /invalid port mapping/ });
});

test('netavark helpers: subnets as iptables-save prints them, which subnet holds an address, RUST_LOG levels', (t) => {
  t.is(canonicalSubnet('10.89.9.7/24'), '10.89.9.0/24');
  t.is(canonicalSubnet('fd10:0001:0002:0003::1/64'), 'fd10:1:2:3::/64');
  const info = { name: 'n', id: '', driver: 'bridge', subnets: [{ subnet: '10.89.9.0/24' }, { subnet: 'fd10:1:2:3::/64' }] };
  t.is(subnetOf(info, '10.89.9.200')?.subnet, '10.89.9.0/24');
  t.is(subnetOf(info, 'fd10:1:2:3::ff')?.subnet, 'fd10:1:2:3::/64');
  t.is(subnetOf(info, '10.89.10.1'), undefined);
  t.is(logLevel(''), 0);
  t.is(logLevel('netavark=info'), 2);
  t.is(logLevel('warning'), 1);
  t.is(logLevel('aardvark=debug,netavark=warn'), 1);
  t.is(logLevel('debug'), 3);
});
