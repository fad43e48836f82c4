import test from 'ava';
import { mulberry32 } from '../stack/testing.js';
import * as dns from './dns.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('parseQuery: a query as glibc sends it (A, RD, one question), names lower-cased', (t) => {
  const q = dns.buildQuery(0xbeef, 'Web.DNS.podman', dns.TYPE_A);
  const p = dns.parseQuery(q);
  if (typeof p === 'string') return t.fail(p);
  t.is(p.id, 0xbeef);
  t.is(p.name, 'web.dns.podman');
  t.is(p.type, dns.TYPE_A);
  t.is(p.qclass, dns.CLASS_IN);
  t.is(p.udpSize, 512);
  t.false(p.edns);
  t.is(p.questionEnd, q.length);
});

test('parseQuery: EDNS OPT sets the UDP size, clamped to [512, 1232]; two OPTs are refused', (t) => {
  const big = dns.parseQuery(dns.buildQuery(1, 'a', dns.TYPE_A, { ednsSize: 4096 }));
  const small = dns.parseQuery(dns.buildQuery(1, 'a', dns.TYPE_A, { ednsSize: 100 }));
  if (typeof big === 'string' || typeof small === 'string') return t.fail();
  t.true(big.edns);
  t.is(big.udpSize, dns.UDP_EDNS_MAX);
  t.is(small.udpSize, 512);
  const q = dns.buildQuery(1, 'a', dns.TYPE_A, { ednsSize: 1232 });
  const opt = q.subarray(q.length - 11);
  const two = Buffer.concat([q, opt]);
  two.writeUInt16BE(2, 10);
  t.is(dns.parseQuery(two), 'two-opt');
});

test('readName: escapes, compression backwards only, loops and forward pointers refused, 255-octet limit', (t) => {
  // "a.b" then a pointer to it at 12
  const b = Buffer.concat([Buffer.alloc(12), hex('01 61 01 62 00'), hex('01 63 c0 0c')]);
  t.deepEqual(dns.readName(b, 17), { name: 'c.a.b', end: 21 });
  // a self pointer and a forward pointer
  t.is(dns.readName(Buffer.concat([Buffer.alloc(12), hex('c0 0c')]), 12), 'name-pointer-forward');
  t.is(dns.readName(Buffer.concat([Buffer.alloc(12), hex('c0 0e 00')]), 12), 'name-pointer-forward');
  // a label holding a dot, a backslash, a space and a high octet reads unambiguously
  t.is((dns.readName(Buffer.concat([Buffer.alloc(12), hex('04 61 2e 5c 20 01 ff 00')]), 12) as dns.NameRead).name, 'a\\046\\092\\032.\\255');
  const long = Buffer.concat([Buffer.alloc(12), ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])), Buffer.from([0])]);
  t.is(dns.readName(long, 12), 'name-too-long');
  t.is(dns.readName(Buffer.concat([Buffer.alloc(12), hex('40 61 00')]), 12), 'name-bad-label-type');
  t.is(dns.readName(Buffer.concat([Buffer.alloc(12), hex('05 61 62')]), 12), 'name-truncated');
  // encodeName is readName's inverse
  for (const n of ['web', 'a.b.c', 'x\\046y.z', '']) t.is((dns.readName(Buffer.concat([Buffer.alloc(12), dns.encodeName(n)]), 12) as dns.NameRead).name, n);
});

test('buildResponse: the question copied, answers as pointers to it, AA/RA/RD, OPT when asked; TC and no answers when it does not fit', (t) => {
  const query = dns.buildQuery(7, 'db.dns.podman', dns.TYPE_A, { ednsSize: 1232 });
  const q = dns.parseQuery(query) as dns.Query;
  const r = dns.buildResponse(query, q, { rcode: 0, authoritative: true, answers: [{ type: dns.TYPE_A, ttlS: 0, data: Buffer.from([10, 89, 0, 5]) }] }, 512);
  const p = dns.parseResponse(r);
  if (typeof p === 'string') return t.fail(p);
  t.deepEqual(p, { id: 7, rcode: 0, aa: true, tc: false, ra: true, answers: [{ name: 'db.dns.podman', type: dns.TYPE_A, ttlS: 0, value: '10.89.0.5' }] });
  t.is(dns.arcount(r), 1, 'an OPT record answers an EDNS query');
  t.is(r.readUInt16BE(2) & 0x0100, 0x0100, 'RD echoed');
  const many = Array.from({ length: 100 }, (_, i) => ({ type: dns.TYPE_AAAA, ttlS: 0, data: Buffer.alloc(16, i) }));
  const tc = dns.parseResponse(dns.buildResponse(query, q, { rcode: 0, authoritative: true, answers: many }, q.udpSize)) as { tc: boolean; answers: unknown[] };
  t.true(tc.tc);
  t.deepEqual(tc.answers, []);
  const full = dns.parseResponse(dns.buildResponse(query, q, { rcode: 0, authoritative: true, answers: many }, 65535)) as { tc: boolean; answers: unknown[] };
  t.false(full.tc);
  t.is(full.answers.length, 100);
});

test('parseQuery refuses what is not one plain question', (t) => {
  t.is(dns.parseQuery(Buffer.alloc(11)), 'truncated');
  const resp = dns.buildQuery(1, 'a', dns.TYPE_A);
  resp[2] |= 0x80;
  t.is(dns.parseQuery(resp), 'not-a-query');
  const two = dns.buildQuery(1, 'a', dns.TYPE_A);
  two.writeUInt16BE(2, 4);
  t.is(dns.parseQuery(two), 'qdcount');
  t.is(dns.parseQuery(dns.buildQuery(1, 'a', dns.TYPE_A).subarray(0, 16)), 'question-truncated');
  const hdr = dns.buildHeaderOnly(two, dns.RCODE_FORMERR);
  t.is(hdr.length, 12);
  t.is(dns.rcode(hdr), dns.RCODE_FORMERR);
  t.is(dns.id(hdr), 1);
});

test('fuzz: 100,000 hostile queries (random bytes, mutated valid queries, pointer games) never throw, and every accepted one answers in bounds', (t) => {
  const r = mulberry32(0x5eed);
  const seeds = [dns.buildQuery(1, 'web.dns.podman', dns.TYPE_A), dns.buildQuery(2, 'x', dns.TYPE_AAAA, { ednsSize: 4096 }), dns.buildQuery(3, '4.3.2.1.in-addr.arpa', dns.TYPE_PTR)];
  const reasons = new Map<string, number>();
  let accepted = 0;
  for (let i = 0; i < 100_000; i++) {
    let b: Buffer;
    const kind = i % 4;
    if (kind === 0) b = Buffer.from(Array.from({ length: Math.floor(r() * 80) }, () => Math.floor(r() * 256)));
    else {
      b = Buffer.from(seeds[i % seeds.length]);
      const flips = 1 + Math.floor(r() * 6);
      for (let k = 0; k < flips; k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      if (kind === 2) b = b.subarray(0, Math.floor(r() * b.length));
      if (kind === 3) {
        // pointers sprinkled into the name, pointing anywhere
        const at = 12 + Math.floor(r() * Math.max(1, b.length - 13));
        if (at + 1 < b.length) {
          b[at] = 0xc0 | Math.floor(r() * 4);
          b[at + 1] = Math.floor(r() * 256);
        }
      }
    }
    let p: dns.Query | string;
    try {
      p = dns.parseQuery(b);
    } catch (err) {
      return t.fail(`query ${i} (${b.toString('hex')}) threw ${(err as Error).message}`);
    }
    if (typeof p === 'string') {
      reasons.set(p, (reasons.get(p) ?? 0) + 1);
      continue;
    }
    accepted++;
    t.true(p.questionEnd <= b.length);
    const out = dns.buildResponse(b, p, { rcode: dns.RCODE_NXDOMAIN, authoritative: true, answers: [] }, p.udpSize);
    if (out.length > Math.max(p.udpSize, p.questionEnd + 11)) return t.fail(`answer ${out.length} > ${p.udpSize}`);
  }
  t.true(accepted > 1000, `some mutated queries still parse (${accepted})`);
  t.true((reasons.get('name-pointer-forward') ?? 0) > 100, JSON.stringify([...reasons]));
});
