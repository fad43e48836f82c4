import test from 'ava';
import { parseNetworkArgs } from './netspec.js';

test('--network: names, a,b lists, repeated flags; eth0, eth1 in order', (t) => {
  t.deepEqual(parseNetworkArgs(['burrow']), [{ name: 'burrow', ifname: 'eth0', ips: [], aliases: [] }]);
  t.deepEqual(parseNetworkArgs(['a,b']).map((r) => `${r.name}/${r.ifname}`), ['a/eth0', 'b/eth1']);
  t.deepEqual(parseNetworkArgs(['a', 'b', 'c']).map((r) => `${r.name}/${r.ifname}`), ['a/eth0', 'b/eth1', 'c/eth2']);
});

test('--network NAME:options: ip (either family), ip6, mac, interface_name, as podman takes them', (t) => {
  const [a, b] = parseNetworkArgs(['a:ip=10.89.0.5,ip6=fd00::5,mac=02:AA:bb:cc:dd:ee', 'b:interface_name=lan0,ip=fd01::7']);
  t.deepEqual(a, { name: 'a', ifname: 'eth0', ips: ['10.89.0.5', 'fd00::5'], mac: '02:aa:bb:cc:dd:ee', aliases: [] });
  t.deepEqual(b, { name: 'b', ifname: 'lan0', ips: ['fd01::7'], aliases: [] });
  // default names fill in around a given one
  t.deepEqual(parseNetworkArgs(['a:interface_name=eth0', 'b']).map((r) => r.ifname), ['eth0', 'eth1']);
  t.deepEqual(parseNetworkArgs(['a:interface_name=eth1', 'b']).map((r) => r.ifname), ['eth1', 'eth0']);
});

test('--network NAME:alias= (repeatable, per network) and --network-alias (every network); lower-cased, deduplicated', (t) => {
  const [a, b] = parseNetworkArgs(['a:alias=DB,alias=pg,ip=10.89.0.5', 'b:alias=db'], { aliases: ['postgresql', 'pg'] });
  t.deepEqual(a.aliases, ['db', 'pg', 'postgresql']);
  t.deepEqual(b.aliases, ['db', 'postgresql', 'pg']);
  t.throws(() => parseNetworkArgs(['usernet'], { aliases: ['x'] }), { message: /--network-alias: usernet has no container names/ });
  t.throws(() => parseNetworkArgs(['a'], { aliases: ['bad name'] }), { message: /--network-alias: "bad name" cannot be a DNS name/ });
});

test('--network: global --ip/--mac-address apply to one network; never ambiguous', (t) => {
  t.deepEqual(parseNetworkArgs(['a'], { ip: '10.1.2.3', mac: '02:00:00:00:00:01' }), [{ name: 'a', ifname: 'eth0', ips: ['10.1.2.3'], mac: '02:00:00:00:00:01', aliases: [] }]);
  t.throws(() => parseNetworkArgs(['a', 'b'], { ip: '10.1.2.3' }), { message: /--ip with several networks is ambiguous.*NAME:ip=/ });
  t.throws(() => parseNetworkArgs(['a:ip=10.1.2.4'], { ip: '10.1.2.3' }), { message: /both give the address/ });
  t.throws(() => parseNetworkArgs(['a:mac=02:00:00:00:00:02'], { mac: '02:00:00:00:00:01' }), { message: /both give the MAC/ });
  // special modes take no addresses of their own: the flags are left to the caller
  t.deepEqual(parseNetworkArgs(['usernet'], { ip: '10.1.2.3' }), [{ name: 'usernet', ifname: 'eth0', ips: [], aliases: [] }]);
});

test('--network: bad values are clear errors', (t) => {
  const bad: Array<[string[], RegExp]> = [
    [['a:ip=10.1.2'], /"10\.1\.2" is not an IPv4 or IPv6 address/],
    [['a:ip6=10.1.2.3'], /not an IPv6 address/],
    [['a:ip=10.1.2.3,ip=10.1.2.4'], /two IPv4 addresses/],
    [['a:mac=01:00:5e:00:00:01'], /multicast/],
    [['a:mac=02:00:00:00:00'], /not a MAC address/],
    [['a:interface_name=way-too-long-name0'], /not a valid interface name/],
    [['a:interface_name=lo'], /loopback/],
    [['a:interface_name=x/y'], /not a valid interface name/],
    [['a:dns=1.1.1.1'], /unknown option "dns" \(valid: alias=, ip=, ip6=, mac=, interface_name=\)/],
    [['a:alias=-web'], /"-web" cannot be a DNS name/],
    [['a:alias=a..b'], /cannot be a DNS name/],
    [['a:ip'], /ip needs a value/],
    [[':ip=10.1.2.3'], /a network name is needed/],
    [['usernet:ip=10.0.2.5'], /options after ":" apply to CNI networks; usernet takes none/],
    [['a,,b'], /empty network name/],
    [['a', 'a'], /names a twice/],
    [['a:interface_name=x', 'b:interface_name=x'], /same interface_name/],
    [['burrow', 'usernet'], /only CNI networks can be combined/],
    [['container:web', 'burrow'], /only CNI networks can be combined/],
  ];
  for (const [values, re] of bad) t.throws(() => parseNetworkArgs(values), { message: re }, values.join(' '));
});
