import test from 'ava';
import * as dns from '../wire/dns.js';
import { RateLimiter } from './limit.js';
import { formatRecordFile, parseRecordFile, RecordSet, reverseAddress, type NetworkRecords } from './records.js';

// aardvark-dns's own format, as netavark 1.4 writes it (../shared/reference/podman-helpers.md)
const AARDVARK = '10.89.7.1,fd9c:4d26:edc5:aac9::1\n9d76abda8ca8c530aaaa 10.89.7.50 fd9c:4d26:edc5:aac9::2 c1,web,9d76abda8ca8\n';

test('record files: aardvark-dns\'s format reads as is; burrow\'s prefixes, servers and domain round-trip; bad lines are skipped, not fatal', (t) => {
  const a = parseRecordFile('stubnet', AARDVARK);
  t.deepEqual(a.gateways, [{ ip: '10.89.7.1' }, { ip: 'fd9c:4d26:edc5:aac9::1' }]);
  t.is(a.domain, 'dns.podman');
  t.deepEqual(a.entries, [{ id: '9d76abda8ca8c530aaaa', v4: ['10.89.7.50'], v6: ['fd9c:4d26:edc5:aac9::2'], names: ['c1', 'web', '9d76abda8ca8'], servers: [] }]);
  const own: NetworkRecords = { network: 'app', gateways: [{ ip: '10.90.0.1', prefix: 24 }], servers: ['192.0.2.53'], domain: 'corp.example', entries: [{ id: 'ab', v4: ['10.90.0.2'], v6: [], names: ['db'], servers: ['192.0.2.1'] }] };
  const text = formatRecordFile(own);
  t.is(text, '10.90.0.1/24 192.0.2.53 domain=corp.example\nab 10.90.0.2  db 192.0.2.1\n');
  const back = parseRecordFile('app', text);
  t.deepEqual({ ...back, skipped: undefined }, { ...own, skipped: undefined });
  const bad = parseRecordFile('n', '10.1.0.1/24\nnot-hex 10.1.0.2 "" a\nab 10.1.0.999 "" a\nab 10.1.0.3 "" -bad\nab 10.1.0.4 "" ok\n');
  t.is(bad.entries.length, 1);
  t.is(bad.skipped.length, 3);
  // netavark's empty fields: one line per address family (aardvark-dns's podman_v6_entries test config)
  const split = parseRecordFile('n', '10.89.0.1\n7b46c7ad93fc 10.89.0.2  test1,7b46c7ad93fc\n7b46c7ad93fc  fdfd:733b:dc3:220b::2 test1,7b46c7ad93fc\n');
  t.deepEqual(split.skipped, []);
  t.deepEqual(split.entries.map((e) => [e.v4, e.v6, e.names]), [[['10.89.0.2'], [], ['test1', '7b46c7ad93fc']], [[], ['fdfd:733b:dc3:220b::2'], ['test1', '7b46c7ad93fc']]]);
  const both = new RecordSet([split]);
  t.deepEqual(addrs(both.decide(q('test1'), '10.89.0.1', '10.89.0.2', [])), ['10.89.0.2']);
  t.deepEqual(addrs(both.decide(q('test1', dns.TYPE_AAAA), '10.89.0.1', '10.89.0.2', [])), ['v6'], 'the name\'s IPv6 line answers AAAA');
  t.throws(() => parseRecordFile('n', 'nonsense\n'), { message: /bad gateway "nonsense"/ });
  t.throws(() => parseRecordFile('n', '10.1.0.1/33\n'), { message: /bad gateway/ });
});

const net = (network: string, gw: string, domain: string, entries: Array<[string, string, string[]]>, v6gw?: string): NetworkRecords => ({
  network, domain, servers: [],
  gateways: [{ ip: gw, prefix: 24 }, ...(v6gw ? [{ ip: v6gw, prefix: 64 }] : [])],
  entries: entries.map(([id, ip, names]) => ({ id, v4: ip.includes(':') ? [] : [ip], v6: ip.includes(':') ? [ip] : [], names, servers: [] })),
});

const q = (name: string, type = dns.TYPE_A) => ({ name, type, qclass: dns.CLASS_IN });
const addrs = (d: ReturnType<RecordSet['decide']>) => (d.kind === 'answer' ? d.answers.map((a) => (a.data.length === 4 ? Array.from(a.data).join('.') : a.data.length === 16 ? 'v6' : Buffer.from(a.data).toString('latin1'))) : d.kind);

test('decide: names, aliases, the domain suffix, NODATA, NXDOMAIN for single labels and the domain, forwarding the rest', (t) => {
  const set = new RecordSet([net('a', '10.1.0.1', 'dns.podman', [['c1', '10.1.0.2', ['web', 'www', 'c1c1c1c1c1c1']], ['c2', '10.1.0.3', ['db']]])]);
  const at = (name: string, type?: number) => set.decide(q(name, type), '10.1.0.1', '10.1.0.3', ['192.0.2.53']);
  t.deepEqual(addrs(at('web')), ['10.1.0.2']);
  t.deepEqual(addrs(at('www.dns.podman')), ['10.1.0.2']);
  t.deepEqual(addrs(at('c1c1c1c1c1c1')), ['10.1.0.2']);
  t.deepEqual(at('web', dns.TYPE_AAAA), { kind: 'answer', rcode: 0, answers: [] }, 'NODATA, not NXDOMAIN: glibc then stops');
  t.is((at('nosuch') as { rcode: number }).rcode, dns.RCODE_NXDOMAIN);
  t.is((at('nosuch.dns.podman') as { rcode: number }).rcode, dns.RCODE_NXDOMAIN);
  t.deepEqual(at('example.org'), { kind: 'forward', servers: ['192.0.2.53'] });
  t.deepEqual(at('web', 16), { kind: 'answer', rcode: 0, answers: [] });
});

test('decide: isolation — the requester\'s networks only; one name on two networks answers each network\'s address; a container on two networks sees both', (t) => {
  const set = new RecordSet([
    net('a', '10.1.0.1', 'dns.podman', [['c1', '10.1.0.2', ['web']], ['both', '10.1.0.9', ['both']]]),
    net('b', '10.2.0.1', 'dns.podman', [['c3', '10.2.0.2', ['web']], ['c4', '10.2.0.3', ['db']], ['both', '10.2.0.9', ['both']]]),
    net('c', '10.3.0.1', 'dns.podman', [['c5', '10.3.0.2', ['secret']]]),
  ]);
  t.deepEqual(addrs(set.decide(q('web'), '10.1.0.1', '10.1.0.2', [])), ['10.1.0.2']);
  t.deepEqual(addrs(set.decide(q('web'), '10.2.0.1', '10.2.0.3', [])), ['10.2.0.2'], 'the same name, the other network\'s address');
  t.is((set.decide(q('db'), '10.1.0.1', '10.1.0.2', []) as { rcode: number }).rcode, dns.RCODE_NXDOMAIN, 'b\'s db is not a\'s');
  t.deepEqual(addrs(set.decide(q('db'), '10.1.0.1', '10.1.0.9', [])), ['10.2.0.3'], 'on a and b: finds b\'s names through a\'s gateway');
  t.deepEqual(addrs(set.decide(q('web'), '10.1.0.1', '10.1.0.9', [])), ['10.1.0.2'], '...the receiving network first');
  t.is((set.decide(q('secret'), '10.1.0.1', '10.1.0.9', []) as { rcode: number }).rcode, dns.RCODE_NXDOMAIN);
  t.deepEqual(set.decide(q('web'), '10.1.0.1', '10.2.0.2', []), { kind: 'refuse', why: 'outside-network' });
  t.deepEqual(set.decide(q('web'), '10.9.0.1', '10.1.0.2', []), { kind: 'refuse', why: 'not-a-gateway' });
  // a gateway without a prefix (aardvark's own files): only the network's containers may ask
  const bare = new RecordSet([parseRecordFile('s', AARDVARK)]);
  t.deepEqual(addrs(bare.decide(q('web'), '10.89.7.1', '10.89.7.50', [])), ['10.89.7.50']);
  t.is(bare.decide(q('web'), '10.89.7.1', '10.89.7.60', []).kind, 'refuse');
});

test('decide: PTR for the networks\' addresses (v4 and v6) as name.domain; NXDOMAIN inside the subnets, forwarded outside', (t) => {
  const set = new RecordSet([net('a', '10.1.0.1', 'corp.example', [['c1', '10.1.0.2', ['web', 'www']], ['c6', 'fd00:1::5', ['six']]], 'fd00:1::1')]);
  const ptr = (n: string) => set.decide(q(n, dns.TYPE_PTR), '10.1.0.1', '10.1.0.2', ['192.0.2.53']);
  const names = (d: ReturnType<RecordSet['decide']>) => (d.kind === 'answer' ? d.answers.map((a) => (dns.readName(Buffer.concat([Buffer.alloc(12), a.data]), 12) as dns.NameRead).name) : d.kind);
  t.deepEqual(names(ptr('2.0.1.10.in-addr.arpa')), ['web.corp.example', 'www.corp.example']);
  const rev6 = `${'fd000001000000000000000000000005'.split('').reverse().join('.')}.ip6.arpa`;
  t.is(reverseAddress(rev6), 'fd00:1::5');
  t.deepEqual(names(ptr(rev6)), ['six.corp.example']);
  t.is((ptr('77.0.1.10.in-addr.arpa') as { rcode: number }).rcode, dns.RCODE_NXDOMAIN);
  t.deepEqual(ptr('8.8.8.8.in-addr.arpa'), { kind: 'forward', servers: ['192.0.2.53'] });
  t.is(reverseAddress('300.0.1.10.in-addr.arpa'), null);
});

test('rate limiter: a burst, then the rate; clients apart; bounded memory', (t) => {
  const l = new RateLimiter(10, 20, 3);
  let ok = 0;
  for (let i = 0; i < 50; i++) if (l.take('a', 1000)) ok++;
  t.is(ok, 20, 'the burst');
  t.false(l.take('a', 1050));
  t.true(l.take('a', 1100), '100 ms at 10/s gives one');
  t.true(l.take('b', 1100), 'another client is not charged');
  for (const k of ['c', 'd', 'e']) l.take(k, 1100);
  t.is(l.clients(), 3);
});

test('records: a noForward network (aardvark-dns\'s internal networks, AARDVARK_NO_PROXY) answers NXDOMAIN for names it would forward; local names still answer', (t) => {
  const open = net('pub', '10.91.0.1', 'dns.podman', [['aa', '10.91.0.2', ['web']]]);
  const closed = { ...net('int', '10.92.0.1', 'dns.podman', [['bb', '10.92.0.2', ['db']]]), noForward: true };
  const set = new RecordSet([open, closed]);
  t.deepEqual(set.decide(q('example.org'), '10.91.0.1', '10.91.0.2', ['192.0.2.53']), { kind: 'forward', servers: ['192.0.2.53'] });
  const nx = set.decide(q('example.org'), '10.92.0.1', '10.92.0.2', ['192.0.2.53']);
  t.is(nx.kind === 'answer' && nx.rcode, dns.RCODE_NXDOMAIN);
  t.deepEqual(addrs(set.decide(q('db'), '10.92.0.1', '10.92.0.2', [])), ['10.92.0.2']);
});
