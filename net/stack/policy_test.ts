/** The destination policy as a table: every special address of both families, with and without the host-loopback opt-in. */
import test from 'ava';
import { isDhcpRequest, plausibleSource, routeFromContainer, visibleSource, type PolicyConfig, type Proto } from './policy.js';
import { a4, a6 } from './testing.js';

const base: PolicyConfig = {
  v4: { guest: a4('10.0.2.100'), gateway: a4('10.0.2.2'), dns: a4('10.0.2.3'), prefixLength: 24 },
  v6: { prefix: a6('fd00::'), prefixLength: 64, guest: a6('fd00::100'), gateway: a6('fd00::2'), dns: a6('fd00::3'), linkLocal: a6('fe80::2') },
  nameservers: { v4: '127.0.0.53', v6: '::1' },
};
const mapped: PolicyConfig = { ...base, mapHostLoopback: { v4: a4('10.0.2.2'), v6: a6('fd00::2') } };
const v4only: PolicyConfig = { ...base, v6: undefined, nameservers: { v4: '192.0.2.53' } };
const noNs: PolicyConfig = { ...base, nameservers: {} };

type Row = [config: string, proto: Proto, dst: string, port: number, expect: string];
const configs: Record<string, PolicyConfig> = { base, mapped, v4only, noNs };
const rows: Row[] = [
  // remote hosts go out through host sockets, as written
  ['base', 'tcp', '192.0.2.80', 80, 'host 4 192.0.2.80:80'],
  ['base', 'udp', '198.51.100.1', 9, 'host 4 198.51.100.1:9'],
  ['base', 'icmp', '192.0.2.1', 0, 'host 4 192.0.2.1:0'],
  ['base', 'tcp', '2001:db8::1', 443, 'host 6 2001:db8::1:443'],
  // DNS: port 53 only, to the host's nameserver (even 127.0.0.53 or ::1: the host sends it)
  ['base', 'udp', '10.0.2.3', 53, 'host 4 127.0.0.53:53'],
  ['base', 'tcp', '10.0.2.3', 53, 'host 4 127.0.0.53:53'],
  ['base', 'udp', '10.0.2.3', 54, 'refused dns-port'],
  ['base', 'udp', 'fd00::3', 53, 'host 6 ::1:53'],
  ['v4only', 'udp', '10.0.2.3', 53, 'host 4 192.0.2.53:53'],
  ['noNs', 'udp', '10.0.2.3', 53, 'refused no-nameserver'],
  ['base', 'icmp', '10.0.2.3', 0, 'local'],
  // our own addresses: echo is ours; nothing else reaches the host's loopback without the opt-in
  ['base', 'icmp', '10.0.2.2', 0, 'local'],
  ['base', 'tcp', '10.0.2.2', 22, 'refused gateway'],
  ['base', 'icmp', 'fd00::2', 0, 'local'],
  ['base', 'icmp', 'fe80::2', 0, 'local'],
  ['base', 'udp', 'fd00::2', 53, 'refused gateway'],
  ['mapped', 'tcp', '10.0.2.2', 8080, 'host 4 127.0.0.1:8080'],
  ['mapped', 'udp', 'fd00::2', 9, 'host 6 ::1:9'],
  ['mapped', 'icmp', '10.0.2.2', 0, 'local'],
  // never to the host itself or its own link
  ['base', 'tcp', '127.0.0.1', 22, 'refused loopback'],
  ['base', 'tcp', '127.255.0.9', 22, 'refused loopback'],
  ['base', 'udp', '0.0.0.0', 9, 'refused unspecified'],
  ['base', 'udp', '0.1.2.3', 9, 'refused unspecified'],
  ['base', 'udp', '224.0.0.251', 5353, 'refused multicast'],
  ['base', 'udp', '255.255.255.255', 9, 'refused broadcast'],
  ['base', 'udp', '240.0.0.1', 9, 'refused broadcast'],
  ['base', 'tcp', '10.0.2.100', 80, 'refused self'],
  ['base', 'tcp', '10.0.2.50', 80, 'refused on-link'],
  ['base', 'udp', '10.0.2.255', 9, 'refused on-link'],
  ['base', 'tcp', '::1', 22, 'refused loopback'],
  ['base', 'tcp', '::', 22, 'refused unspecified'],
  ['base', 'tcp', '::ffff:127.0.0.1', 22, 'refused v4-mapped'],
  ['base', 'tcp', '::ffff:192.0.2.1', 22, 'refused v4-mapped'],
  ['base', 'tcp', '::127.0.0.1', 22, 'refused v4-mapped'],
  ['base', 'tcp', 'fe80::1', 22, 'refused link-local'],
  ['base', 'udp', 'ff02::fb', 5353, 'refused multicast'],
  ['base', 'tcp', 'fd00::100', 80, 'refused self'],
  ['base', 'tcp', 'fd00::55', 80, 'refused on-link'],
  ['base', 'tcp', 'fd01::55', 80, 'host 6 fd01::55:80'],
  ['v4only', 'tcp', '2001:db8::1', 80, 'refused ipv6-disabled'],
  // DHCP only at the broadcast address or the gateway; port 67 elsewhere is ordinary UDP
  ['base', 'udp', '255.255.255.255', 67, 'dhcp'],
  ['base', 'udp', '10.0.2.2', 67, 'dhcp'],
  ['base', 'udp', '192.0.2.67', 67, 'host 4 192.0.2.67:67'],
  ['base', 'tcp', '10.0.2.2', 67, 'refused gateway'],
];

const show = (r: ReturnType<typeof routeFromContainer>) => (r.kind === 'host' ? `host ${r.family} ${r.address}:${r.port}` : r.kind === 'refused' ? `refused ${r.reason}` : r.kind);

for (const [cfg, proto, dst, port, expect] of rows) {
  test(`route ${cfg}: ${proto} ${dst}${port ? `:${port}` : ''} -> ${expect}`, (t) => {
    const d = dst.includes(':') ? a6(dst) : a4(dst);
    t.is(show(routeFromContainer(configs[cfg], d.length === 16 ? 6 : 4, proto, d, port)), expect);
  });
}

test('DHCP requests are recognised by address and port together', (t) => {
  t.true(isDhcpRequest(base, a4('255.255.255.255'), 67));
  t.true(isDhcpRequest(base, a4('10.0.2.2'), 67));
  t.false(isDhcpRequest(base, a4('10.0.2.3'), 67));
  t.false(isDhcpRequest(base, a4('255.255.255.255'), 68));
});

test('sources: the container may not claim ours, loopback, multicast or nothing; forwarded clients keep their address unless local', (t) => {
  for (const s of ['10.0.2.2', '10.0.2.3', '127.0.0.1', '0.0.0.0', '224.0.0.1']) t.false(plausibleSource(base, 4, a4(s)), s);
  t.true(plausibleSource(base, 4, a4('10.0.2.100')));
  for (const s of ['fd00::2', 'fe80::2', '::', 'ff02::1']) t.false(plausibleSource(base, 6, a6(s)), s);
  t.true(plausibleSource(base, 6, a6('fe80::aa')));
  t.deepEqual(visibleSource(base, 4, a4('192.0.2.9')), a4('192.0.2.9'));
  t.deepEqual(visibleSource(base, 4, a4('127.0.0.1')), a4('10.0.2.2'));
  t.deepEqual(visibleSource(base, 4, a4('10.0.2.100')), a4('10.0.2.2'));
  t.deepEqual(visibleSource(mapped, 6, a6('::1')), a6('fd00::2'));
  t.deepEqual(visibleSource(base, 6, a6('2001:db8::9')), a6('2001:db8::9'));
});
