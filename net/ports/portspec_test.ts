import test from 'ava';
import { formatPortSpec, parsePortSpec, PortSpecError } from './portspec.js';

test('podman\'s -p forms: host port, address, ranges, protocols, IPv6 in brackets', (t) => {
  t.deepEqual(parsePortSpec('8080:80'), [{ proto: 'tcp', hostAddr: '', hostPort: 8080, guestPort: 80, count: 1 }]);
  t.deepEqual(parsePortSpec('127.0.0.1:8080:80/udp'), [{ proto: 'udp', hostAddr: '127.0.0.1', hostPort: 8080, guestPort: 80, count: 1 }]);
  t.deepEqual(parsePortSpec('[::1]:8080:80'), [{ proto: 'tcp', hostAddr: '::1', hostPort: 8080, guestPort: 80, count: 1 }]);
  t.deepEqual(parsePortSpec('9000-9002:7000-7002'), [{ proto: 'tcp', hostAddr: '', hostPort: 9000, guestPort: 7000, count: 3 }]);
  t.deepEqual(parsePortSpec('53:53/tcp,udp').map((s) => s.proto), ['tcp', 'udp']);
});

test('without a host port the host port is 0 (chosen when the container starts), as podman', (t) => {
  t.deepEqual(parsePortSpec('80'), [{ proto: 'tcp', hostAddr: '', hostPort: 0, guestPort: 80, count: 1 }]);
  t.deepEqual(parsePortSpec('127.0.0.1::80'), [{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 0, guestPort: 80, count: 1 }]);
  t.deepEqual(parsePortSpec(':80'), [{ proto: 'tcp', hostAddr: '', hostPort: 0, guestPort: 80, count: 1 }]);
  t.deepEqual(parsePortSpec('7000-7001'), [{ proto: 'tcp', hostAddr: '', hostPort: 0, guestPort: 7000, count: 2 }]);
});

test('bad specs are refused with the reason', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /expected \[\[hostIP:\]/],
    ['80/sctp', /the protocol must be tcp or udp/],
    ['::1:8080:80', /expected|not an IPv4 address/],
    ['[nope]:8080:80', /"nope" is not an IPv6 address/],
    ['300.1.1.1:80:80', /"300.1.1.1" is not an IPv4 address/],
    ['0:80', /outside 1-65535/],
    ['70000:80', /outside 1-65535/],
    ['90-80:90-80', /reversed/],
    ['9000-9002:80', /the host range has 3 ports and the container range 1/],
    ['http:80', /host port "http" is not a port or range/],
    ['1:2:3:4', /expected|not an IPv4 address/],
  ];
  for (const [spec, re] of cases) {
    const err = t.throws(() => parsePortSpec(spec), { instanceOf: PortSpecError }, spec);
    t.regex(err!.message, re, spec);
    t.true(err!.message.startsWith(`invalid port mapping "${spec}"`), spec);
  }
});

test('format is parse\'s inverse', (t) => {
  for (const spec of ['8080:80/tcp', '127.0.0.1:8080:80/udp', '[::1]:8080:80/tcp', '9000-9002:7000-7002/tcp', ':80/tcp', '127.0.0.1::80/tcp']) {
    const [s] = parsePortSpec(spec);
    t.is(formatPortSpec(s), spec);
    t.deepEqual(parsePortSpec(formatPortSpec(s)), [s]);
  }
});
