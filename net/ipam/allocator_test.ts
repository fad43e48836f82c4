import test from 'ava';
import { allocate, canonicalizeRange, canonicalizeRangeSet, checkRangeSetsDisjoint, countFree, iterateRangeSet, type RangeSet } from './allocator.js';
import { MemoryStore } from './memory_store.js';
import { formatCidr, formatIp, parseIp } from '../ip/addr.js';

const set = (...ranges: object[]): RangeSet => canonicalizeRangeSet(ranges, 0);
const owner = (id: string, ifname = 'eth0') => ({ id, ifname });

test('defaults: gateway .1, range .1 to broadcast-1 (IPv4) and to the last address (IPv6)', (t) => {
  const r4 = canonicalizeRange({ subnet: '10.99.0.0/29' });
  t.is(formatIp(r4.gateway), '10.99.0.1');
  t.is(formatIp(r4.rangeStart), '10.99.0.1');
  t.is(formatIp(r4.rangeEnd), '10.99.0.6');
  const r6 = canonicalizeRange({ subnet: 'fd00:99::/125' });
  t.is(formatIp(r6.rangeEnd), 'fd00:99::7');
});

test('config errors use the reference messages', (t) => {
  t.throws(() => canonicalizeRange({ subnet: '10.99.0.1/24' }), { message: 'Network has host bits set. For a subnet mask of length 24 the network address is 10.99.0.0' });
  t.throws(() => canonicalizeRange({ subnet: '10.99.0.0/31' }), { message: 'Network 10.99.0.0/31 too small to allocate from' });
  t.throws(() => canonicalizeRange({ subnet: '10.99.0.0/24', rangeStart: '10.98.0.5' }), { message: 'RangeStart 10.98.0.5 not in network 10.99.0.0/24' });
  t.throws(() => canonicalizeRange({ subnet: '10.99.0.0/24', rangeEnd: '10.100.0.5' }), { message: 'RangeEnd 10.100.0.5 not in network 10.99.0.0/24' });
  t.throws(() => canonicalizeRange({ subnet: '10.99.0.0/24', gateway: 'fd00::1' }), { message: /not in the family/ });
  t.throws(() => canonicalizeRangeSet([{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.0/25' }], 0), { message: 'subnets 10.0.0.0/24 and 10.0.0.0/25 overlap' });
  t.throws(() => canonicalizeRangeSet([{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }], 0), { message: /mixes address families/ });
  t.throws(() => checkRangeSetsDisjoint([set({ subnet: '10.0.0.0/24' }), canonicalizeRangeSet([{ subnet: '10.0.0.0/16' }], 1)]), { message: 'range set 0 overlaps with 1' });
});

test('round robin from the last reservation, skipping the gateway, wrapping, then exhaustion', (t) => {
  const s = new MemoryStore();
  const rs = set({ subnet: '10.99.0.0/29' });
  let n = 0;
  const got = () => formatCidr(allocate(s, rs, 0, owner(`c${n++}`), null).address);
  t.deepEqual([got(), got(), got()], ['10.99.0.2/29', '10.99.0.3/29', '10.99.0.4/29']);
  s.releaseByOwner(owner('c1')); // frees .3
  t.is(got(), '10.99.0.5/29', 'continues after the last reserved, not at the hole');
  t.is(got(), '10.99.0.6/29');
  t.is(got(), '10.99.0.3/29', 'wraps and finds the hole');
  t.throws(() => got(), { message: 'no IP addresses available in range set: 10.99.0.1-10.99.0.6' });
  // Reference behaviour: release .6 with last_reserved .3 → next ADD gets .6.
  s.release(parseIp('10.99.0.6'));
  t.is(got(), '10.99.0.6/29');
});

test('the walk visits each address once, across several ranges, starting after the last one', (t) => {
  const rs = set({ subnet: '10.0.0.0/30' }, { subnet: '10.0.1.0/30', gateway: '10.0.1.2' });
  const walk = (last: string | null) => [...iterateRangeSet(rs, last ? parseIp(last) : null)].map((x) => formatIp(x.ip));
  t.deepEqual(walk(null), ['10.0.0.2', '10.0.1.1']);
  t.deepEqual(walk('10.0.0.2'), ['10.0.1.1', '10.0.0.2']);
  t.deepEqual(walk('192.168.0.1'), ['10.0.0.2', '10.0.1.1'], 'a last IP outside the set restarts at the first range');
  t.deepEqual([...iterateRangeSet(set({ subnet: '10.0.0.0/30', rangeStart: '10.0.0.1', rangeEnd: '10.0.0.1' }), null)], [], 'only the gateway: nothing');
});

test('requested addresses, gateways and duplicate allocations', (t) => {
  const s = new MemoryStore();
  const rs = set({ subnet: '10.5.0.0/24', rangeStart: '10.5.0.10', rangeEnd: '10.5.0.20' });
  t.is(formatCidr(allocate(s, rs, 0, owner('a'), parseIp('10.5.0.15')).address), '10.5.0.15/24');
  t.throws(() => allocate(s, rs, 0, owner('b'), parseIp('10.5.0.15')), { message: 'requested IP address 10.5.0.15 is not available in range set 10.5.0.10-10.5.0.20' });
  t.throws(() => allocate(s, rs, 0, owner('b'), parseIp('10.5.0.30')), { message: /10\.5\.0\.30 not in range set/ });
  const gwSet = set({ subnet: '10.6.0.0/24' });
  t.throws(() => allocate(s, gwSet, 1, owner('b'), parseIp('10.6.0.1')), { message: "requested ip 10.6.0.1 is subnet's gateway" });
  t.throws(() => allocate(s, rs, 0, owner('a'), null), { message: '10.5.0.15 has been allocated to a, duplicate allocation is not allowed' });
  t.is(formatIp(allocate(s, rs, 0, owner('a', 'eth1'), null).address.ip), '10.5.0.16', 'another ifname of the same container is another owner');
});

test('large IPv6 ranges allocate without enumerating, and countFree stops at its cap', (t) => {
  const s = new MemoryStore();
  const rs = set({ subnet: 'fd00:1::/64' });
  t.is(formatCidr(allocate(s, rs, 0, owner('a'), null).address), 'fd00:1::2/64');
  t.is(countFree(s, rs, 3n), 3n);
  t.is(countFree(s, set({ subnet: '10.0.0.0/30' }), 5n), 1n);
});

test('legacy reservations (ID only) are released by ID', (t) => {
  const s = new MemoryStore();
  s.held.set('10.0.0.9', { id: 'old', ifname: '' });
  t.deepEqual(s.releaseByOwner(owner('old')).map(formatIp), ['10.0.0.9']);
});
