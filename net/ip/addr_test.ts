import test from 'ava';
import {
  parseIp, formatIp, parseCidr, formatCidr, networkOf, lastOf, usableRange, defaultGateway, contains, containsCidr,
  overlaps, offsetIp, nextIp, prevIp, iterateRange, parseRange, ipToBuffer, ipFromBuffer, compareIp, formatMask, sizeOf,
  ipFamily, rangesOverlap, canonical,
} from './addr.js';

const f = (c: string) => formatIp(parseIp(c));

test('parses and formats both families canonically', (t) => {
  t.is(f('10.88.0.1'), '10.88.0.1');
  t.is(f('FD00:0:0:0:0:0:0:1'), 'fd00::1');
  t.is(f('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  t.is(f('::'), '::');
  t.is(f('255.255.255.255'), '255.255.255.255');
});

test('rejects malformed addresses with the text in the message', (t) => {
  for (const bad of ['10.1', '010.0.0.1', '1.2.3.256', 'fe80::1%eth0', 'x', '', '1.2.3.4 ']) {
    t.is(ipFamily(bad), null, bad);
    t.throws(() => parseIp(bad), { message: new RegExp(`"${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`) });
  }
});

test('CIDR network, last, usable range and gateway (IPv4)', (t) => {
  const c = parseCidr('10.88.3.4/16');
  t.is(formatIp(networkOf(c)), '10.88.0.0');
  t.is(formatIp(lastOf(c)), '10.88.255.255');
  const r = usableRange(c)!;
  t.is(formatIp(r.start), '10.88.0.1');
  t.is(formatIp(r.end), '10.88.255.254');
  t.is(formatIp(defaultGateway(c)), '10.88.0.1');
  t.is(formatCidr(canonical(c)), '10.88.0.0/16');
  t.is(sizeOf(c), 65536n);
  t.is(formatMask(4, 20), '255.255.240.0');
  t.is(usableRange(parseCidr('10.0.0.0/31')), null);
  t.is(usableRange(parseCidr('10.0.0.0/32')), null);
});

test('CIDR range for IPv6 runs to the last address', (t) => {
  const c = parseCidr('fd00:10::/64');
  const r = usableRange(c)!;
  t.is(formatIp(r.start), 'fd00:10::1');
  t.is(formatIp(r.end), 'fd00:10::ffff:ffff:ffff:ffff');
  t.is(usableRange(parseCidr('fd00::/127')), null);
  t.is(formatIp(offsetIp(r.start, 70000)!), 'fd00:10::1:1171');
});

test('strict CIDR parsing refuses host bits and bad prefixes', (t) => {
  t.throws(() => parseCidr('10.88.0.1/16', { strict: true }), { message: /host bits are set \(the network is 10\.88\.0\.0\/16\)/ });
  t.throws(() => parseCidr('10.88.0.0/33'), { message: /prefix length must be 0-32/ });
  t.throws(() => parseCidr('fd00::/129'), { message: /0-128/ });
  t.throws(() => parseCidr('10.88.0.0'), { message: /missing "\/prefix"/ });
  t.throws(() => parseCidr('10.88.0.0/-1'));
  t.notThrows(() => parseCidr('fd00::/64', { strict: true }));
});

test('containment and overlap', (t) => {
  const a = parseCidr('10.88.0.0/16');
  t.true(contains(a, parseIp('10.88.255.255')));
  t.false(contains(a, parseIp('10.89.0.0')));
  t.false(contains(a, parseIp('::1')));
  t.true(containsCidr(a, parseCidr('10.88.4.0/24')));
  t.false(containsCidr(parseCidr('10.88.4.0/24'), a));
  t.true(overlaps(a, parseCidr('10.0.0.0/8')));
  t.true(overlaps(parseCidr('10.0.0.0/8'), a));
  t.false(overlaps(a, parseCidr('10.89.0.0/16')));
  t.false(overlaps(a, parseCidr('fd00::/8')));
  t.true(overlaps(parseCidr('fd00::/8'), parseCidr('fd00:1::/64')));
  t.true(rangesOverlap(parseRange('10.0.0.5-10.0.0.9'), parseRange('10.0.0.9-10.0.0.20')));
  t.false(rangesOverlap(parseRange('10.0.0.5-10.0.0.8'), parseRange('10.0.0.9-10.0.0.20')));
});

test('iteration, offsets and edges of the address space', (t) => {
  const r = parseRange('10.0.0.254-10.0.1.1');
  t.deepEqual([...iterateRange(r)].map(formatIp), ['10.0.0.254', '10.0.0.255', '10.0.1.0', '10.0.1.1']);
  t.is(nextIp(parseIp('255.255.255.255')), null);
  t.is(prevIp(parseIp('0.0.0.0')), null);
  t.is(nextIp(parseIp('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')), null);
  t.is(formatIp(nextIp(parseIp('fd00::ffff'))!), 'fd00::1:0');
  t.throws(() => parseRange('10.0.0.9-10.0.0.1'));
  t.throws(() => parseRange('10.0.0.1-fd00::1'));
  t.true(compareIp(parseIp('10.0.0.1'), parseIp('10.0.0.2')) < 0);
  t.true(compareIp(parseIp('10.0.0.1'), parseIp('::1')) < 0);
});

test('buffer round trip in network byte order', (t) => {
  t.deepEqual([...ipToBuffer(parseIp('10.88.0.1'))], [10, 88, 0, 1]);
  t.is(formatIp(ipFromBuffer(ipToBuffer(parseIp('fd00::1:2')))), 'fd00::1:2');
  t.throws(() => ipFromBuffer(Buffer.alloc(5)));
});
