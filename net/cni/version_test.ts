import test from 'ava';
import { compareVersions, convertResult, fromCurrent, negotiateListVersion, toCurrent } from './version.js';
import type { Result } from './types.js';

const r110: Result = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'cni0', mac: '00:11:22:33:44:55' }, { name: 'eth0', mac: '00:11:22:33:44:66', sandbox: '/run/netns/x', mtu: 1400 }],
  ips: [
    { address: '10.1.2.3/24', gateway: '10.1.2.1', interface: 1 },
    { address: '10.1.9.3/24', interface: 1 },
    { address: 'fd00::3/64', gateway: 'fd00::1', interface: 1 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1', mtu: 1300, table: 100 }, { dst: '::/0' }],
  dns: { nameservers: ['1.2.3.4'], search: ['example.com'] },
};

test('version ordering and list negotiation (libcni rules)', (t) => {
  t.true(compareVersions('0.3.1', '0.3.0') > 0);
  t.true(compareVersions('0.10.0', '0.4.0') > 0);
  t.is(compareVersions('1.0.0', '1.0.0'), 0);
  t.is(negotiateListVersion('0.4.0', ['1.0.0', '0.3.1']), '1.0.0');
  t.is(negotiateListVersion('1.0.0', ['9.9.9']), '1.0.0', 'versions newer than we implement are dropped');
  t.throws(() => negotiateListVersion('9.9.9', undefined), { message: /no supported cniVersion in \[9\.9\.9\]/ });
  t.throws(() => negotiateListVersion('1.0', undefined), { message: /invalid cniVersion "1\.0"/ });
});

test('1.1.0 to 1.0.0 drops route metrics and interface mtu', (t) => {
  const out = fromCurrent(r110, '1.0.0') as Result;
  t.is(out.cniVersion, '1.0.0');
  t.deepEqual(out.routes, [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }, { dst: '::/0' }]);
  t.deepEqual(out.interfaces![1], { name: 'eth0', mac: '00:11:22:33:44:66', sandbox: '/run/netns/x' });
  t.is(out.ips!.length, 3);
});

test('1.x to 0.4.0/0.3.1 adds ip versions; and back again drops them', (t) => {
  for (const v of ['0.4.0', '0.3.1', '0.3.0']) {
    const out = fromCurrent(r110, v) as { cniVersion: string; ips: { version: string; address: string }[] };
    t.is(out.cniVersion, v);
    t.deepEqual(out.ips.map((i) => i.version), ['4', '4', '6']);
    const back = toCurrent(out);
    t.deepEqual(back.ips!.map((i) => Object.keys(i).includes('version')), [false, false, false]);
    t.deepEqual(back.ips![0], { address: '10.1.2.3/24', gateway: '10.1.2.1', interface: 1 });
  }
});

test('to 0.2.0 keeps the first address per family and sorts routes by family (libcni)', (t) => {
  const out = fromCurrent(r110, '0.2.0');
  t.deepEqual(out, {
    cniVersion: '0.2.0',
    ip4: { ip: '10.1.2.3/24', gateway: '10.1.2.1', routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }] },
    ip6: { ip: 'fd00::3/64', gateway: 'fd00::1', routes: [{ dst: '::/0' }] },
    dns: { nameservers: ['1.2.3.4'], search: ['example.com'] },
  });
  t.throws(() => fromCurrent({ cniVersion: '1.0.0', ips: [] }, '0.1.0'), { message: /no IP addresses/ });
});

test('0.2.0 up to 1.0.0', (t) => {
  const out = convertResult({ cniVersion: '0.2.0', ip4: { ip: '10.0.0.5/8', gateway: '10.0.0.1', routes: [{ dst: '0.0.0.0/0' }] }, dns: {} }, '1.0.0');
  t.deepEqual(out, { cniVersion: '1.0.0', ips: [{ address: '10.0.0.5/8', gateway: '10.0.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
});

test('a result without cniVersion is read in the fallback version; garbage is a decoding error', (t) => {
  t.is(toCurrent({ ips: [{ version: '4', address: '10.0.0.2/24' }] }, '0.4.0').ips![0].address, '10.0.0.2/24');
  t.throws(() => toCurrent({ cniVersion: '1.0.0', ips: [{ address: 'nope' }] }), { message: /cannot decode 1\.0\.0 result/ });
  t.throws(() => toCurrent('x'), { message: /not a JSON object/ });
});
