/** The DNS server's sockets on loopback (no root: high ports), with a fake upstream resolver. */
import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import net from 'node:net';
import * as dns from '../wire/dns.js';
import { RecordSet, type NetworkRecords } from './records.js';
import { DnsServer, resolvConfServers } from './server.js';

const PORT = 20_000 + Math.floor(Math.random() * 20_000);
const UP = PORT + 1;
const GW = '127.0.0.1';

const records = (entries: NetworkRecords['entries']): RecordSet => new RecordSet([{ network: 'n', domain: 'dns.podman', servers: [], gateways: [{ ip: GW, prefix: 8 }], entries }]);

function udpAsk(msg: Buffer, port = PORT, timeoutMs = 3000): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => { s.close(); resolve(null); }, timeoutMs);
    s.on('message', (b) => { clearTimeout(timer); s.close(); resolve(b); });
    s.bind(0, '127.0.0.3', () => s.send(msg, port, GW));
  });
}

function tcpAsk(msgs: Buffer[]): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: GW, port: PORT, localAddress: '127.0.0.3' }, () => {
      for (const m of msgs) {
        const l = Buffer.alloc(2);
        l.writeUInt16BE(m.length);
        s.write(Buffer.concat([l, m]));
      }
    });
    let buf = Buffer.alloc(0);
    const out: Buffer[] = [];
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === msgs.length) { s.end(); resolve(out); }
    });
    s.on('error', reject);
  });
}

/** An upstream resolver on 127.0.0.2: answers every A query with 192.0.2.7 (and first sends a stray answer with a wrong id). */
async function upstream(t: { teardown(f: () => void): void }, o: { silent?: boolean } = {}) {
  const s = dgram.createSocket('udp4');
  const seen: string[] = [];
  s.on('message', (m, r) => {
    const q = dns.parseQuery(m) as dns.Query;
    seen.push(q.name);
    if (o.silent) return;
    const stray = dns.buildResponse(m, q, { rcode: 0, authoritative: false, answers: [{ type: dns.TYPE_A, ttlS: 60, data: Buffer.from([6, 6, 6, 6]) }] }, 512);
    stray.writeUInt16BE((q.id + 1) & 0xffff, 0);
    s.send(stray, r.port, r.address);
    s.send(dns.buildResponse(m, q, { rcode: 0, authoritative: false, answers: [{ type: dns.TYPE_A, ttlS: 60, data: Buffer.from([192, 0, 2, 7]) }] }, 512), r.port, r.address);
  });
  const tcp = net.createServer((c) => c.on('data', (d: Buffer) => {
    const m = d.subarray(2);
    const q = dns.parseQuery(m) as dns.Query;
    seen.push(`tcp:${q.name}`);
    const a = dns.buildResponse(m, q, { rcode: 0, authoritative: false, answers: Array.from({ length: 200 }, (_, i) => ({ type: dns.TYPE_A, ttlS: 60, data: Buffer.from([198, 51, 100, i]) })) }, 65535);
    const l = Buffer.alloc(2);
    l.writeUInt16BE(a.length);
    c.end(Buffer.concat([l, a]));
  }));
  await new Promise<void>((r) => s.bind(UP, '127.0.0.2', () => r()));
  await new Promise<void>((r) => tcp.listen(UP, '127.0.0.2', () => r()));
  t.teardown(() => { s.close(); tcp.close(); });
  return seen;
}

async function server(t: ExecutionContext, set: RecordSet, o: Partial<ConstructorParameters<typeof DnsServer>[0]> = {}) {
  const logs: string[] = [];
  const s = new DnsServer({ port: PORT, forwardPort: UP, hostServers: () => ['127.0.0.2'], log: (m) => logs.push(m), forwardTimeoutMs: 300, ...o });
  t.teardown(() => s.close());
  t.deepEqual(await s.load(set), []);
  return { s, logs };
}

for (const nativeUdp of [true, false]) test.serial(`local names over UDP (${nativeUdp ? 'the addon\'s thread' : 'Node\'s dgram'}) and TCP; a big answer is truncated over UDP and whole over TCP`, async (t) => {
  const many = Array.from({ length: 120 }, (_, i) => `10.9.${i >> 8}.${i & 255}`);
  const { s } = await server(t, records([{ id: 'aa', v4: ['127.0.0.5'], v6: [], names: ['web'], servers: [] }, { id: 'bb', v4: many, v6: [], names: ['big'], servers: [] }]), { nativeUdp });
  t.is(s.nativeUdp, nativeUdp);
  const a = dns.parseResponse((await udpAsk(dns.buildQuery(9, 'web', dns.TYPE_A)))!) as Exclude<ReturnType<typeof dns.parseResponse>, string>;
  t.like(a, { id: 9, rcode: 0, aa: true, tc: false });
  t.deepEqual(a.answers.map((x) => x.value), ['127.0.0.5']);
  const tc = dns.parseResponse((await udpAsk(dns.buildQuery(10, 'big', dns.TYPE_A)))!) as { tc: boolean; answers: unknown[] };
  t.true(tc.tc, 'over 512 bytes: TC');
  const [whole] = await tcpAsk([dns.buildQuery(11, 'big', dns.TYPE_A)]);
  t.is((dns.parseResponse(whole) as { answers: unknown[] }).answers.length, 120);
  const two = await tcpAsk([dns.buildQuery(12, 'web', dns.TYPE_A), dns.buildQuery(13, 'nosuch', dns.TYPE_A)]);
  t.deepEqual(two.map((b) => [dns.id(b), dns.rcode(b)]), [[12, 0], [13, dns.RCODE_NXDOMAIN]], 'several queries on one connection');
});

test.serial('forwarding: another name goes upstream, a stray answer with a wrong id is ignored, the client\'s id comes back; TCP forwards over TCP', async (t) => {
  const seen = await upstream(t);
  const { s } = await server(t, records([{ id: 'aa', v4: ['127.0.0.5'], v6: [], names: ['web'], servers: [] }]));
  const r = dns.parseResponse((await udpAsk(dns.buildQuery(77, 'example.org', dns.TYPE_A)))!) as { id: number; answers: Array<{ value: string }> };
  t.is(r.id, 77);
  t.deepEqual(r.answers.map((x) => x.value), ['192.0.2.7']);
  t.true((s.counters.get('forward-stray-answer') ?? 0) >= 1);
  const [big] = await tcpAsk([dns.buildQuery(78, 'large.example.org', dns.TYPE_A)]);
  t.is((dns.parseResponse(big) as { answers: unknown[] }).answers.length, 200);
  t.deepEqual(seen, ['example.org', 'tcp:large.example.org']);
});

test.serial('a silent upstream: SERVFAIL within the timeout', async (t) => {
  await upstream(t, { silent: true });
  await server(t, records([{ id: 'aa', v4: ['127.0.0.5'], v6: [], names: ['web'], servers: [] }]));
  const start = Date.now();
  const r = await udpAsk(dns.buildQuery(5, 'example.org', dns.TYPE_A));
  t.is(dns.rcode(r!), dns.RCODE_SERVFAIL);
  t.true(Date.now() - start < 2000);
});

for (const nativeUdp of [true, false]) test.serial(`hostile input (${nativeUdp ? 'native' : 'dgram'}): garbage gets FORMERR or nothing, never a crash; a flood past the client's rate is dropped and counted; the server goes on`, async (t) => {
  const { s } = await server(t, records([{ id: 'aa', v4: ['127.0.0.5'], v6: [], names: ['web'], servers: [] }]), { ratePerS: 50, burst: 50, nativeUdp });
  t.is(await udpAsk(Buffer.alloc(5), PORT, 300), null, 'shorter than a header: dropped');
  if (nativeUdp) {
    t.is(await udpAsk(Buffer.concat([dns.buildQuery(3, 'web', dns.TYPE_A), Buffer.alloc(5000)]), PORT, 300), null, 'longer than any query: dropped');
    t.is(s.counters.get('malformed-oversized'), 1);
  }
  const junk = Buffer.concat([dns.buildQuery(3, 'web', dns.TYPE_A).subarray(0, 12), Buffer.from([0xc0, 0x0c])]);
  t.is(dns.rcode((await udpAsk(junk))!), dns.RCODE_FORMERR);
  const resp = dns.buildQuery(3, 'web', dns.TYPE_A);
  resp[2] |= 0x80;
  t.is(await udpAsk(resp, PORT, 300), null, 'a response sent to us is not answered');
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.3', () => r()));
  for (let i = 0; i < 200; i++) sock.send(dns.buildQuery(i, 'web', dns.TYPE_A), PORT, GW);
  await new Promise((r) => setTimeout(r, 300));
  sock.close();
  t.true((s.counters.get('rate-limited') ?? 0) > 100, JSON.stringify([...s.counters]));
  t.true((s.counters.get('malformed-name-pointer-forward') ?? 0) === 1);
  await new Promise((r) => setTimeout(r, 1100));
  t.is(dns.rcode((await udpAsk(dns.buildQuery(4, 'web', dns.TYPE_A)))!), 0, 'served again once the bucket refills');
});

test.serial('the native answer cache: a repeated question is answered by the thread with the asker\'s id and letter case; NXDOMAIN too; forwarded answers never; a reload empties it', async (t) => {
  const seen = await upstream(t);
  const { s } = await server(t, records([{ id: 'aa', v4: ['127.0.0.5'], v6: [], names: ['web'], servers: [] }]));
  t.true(s.nativeUdp, 'the addon is built here');
  const ask = async (id: number, name: string) => dns.parseResponse((await udpAsk(dns.buildQuery(id, name, dns.TYPE_A)))!) as Exclude<ReturnType<typeof dns.parseResponse>, string>;
  const first = await ask(100, 'web');
  t.deepEqual(s.cacheStats(), { hits: 0, cached: 1 }, 'the first answer came from JS and was kept');
  const again = await ask(101, 'web');
  t.like(again, { id: 101, rcode: 0, aa: true });
  t.deepEqual(again.answers.map((x) => x.value), first.answers.map((x) => x.value));
  t.is(s.cacheStats().hits, 1, 'the second from the cache');
  const upper = await udpAsk(dns.buildQuery(102, 'WeB', dns.TYPE_A));
  t.is(upper!.subarray(dns.HDR_LEN, dns.HDR_LEN + 4).toString('latin1'), '\x03WeB', 'the question comes back as asked (0x20), not as cached');
  t.is(s.cacheStats().hits, 1, 'another letter case is another question');
  t.is((await ask(103, 'nosuch')).rcode, dns.RCODE_NXDOMAIN);
  t.is((await ask(104, 'nosuch')).rcode, dns.RCODE_NXDOMAIN);
  t.is(s.cacheStats().hits, 2, 'NXDOMAIN is cached');
  await ask(105, 'example.org');
  await ask(106, 'example.org');
  t.deepEqual(seen.filter((x) => x === 'example.org').length, 2, 'both forwarded: an upstream answer is never cached');
  t.is(s.counters.get('answered'), 3);
  t.is(s.counters.get('nxdomain'), 2);
  await s.load(records([{ id: 'bb', v4: ['127.0.0.6'], v6: [], names: ['web'], servers: [] }]));
  t.is(s.cacheStats().cached, 0, 'a reload empties the cache');
  t.deepEqual((await ask(107, 'web')).answers.map((x) => x.value), ['127.0.0.6'], 'the new record at once');
});

for (const nativeUdp of [true, false]) test.serial(`an IPv6 gateway (${nativeUdp ? 'native' : 'dgram'}): AAAA and A to an IPv6 client, cached by its address`, async (t) => {
  const v6 = new RecordSet([{ network: 'n6', domain: 'dns.podman', servers: [], gateways: [{ ip: '::1', prefix: 128 }], entries: [{ id: 'cc', v4: ['127.0.0.7'], v6: ['fd00::7'], names: ['web6'], servers: [] }] }]);
  const { s } = await server(t, v6, { nativeUdp });
  t.deepEqual(s.bound(), ['::1']);
  const ask6 = (msg: Buffer) => new Promise<Buffer | null>((resolve) => {
    const c = dgram.createSocket('udp6');
    const timer = setTimeout(() => { c.close(); resolve(null); }, 3000);
    c.on('message', (b) => { clearTimeout(timer); c.close(); resolve(b); });
    c.bind(0, '::1', () => c.send(msg, PORT, '::1'));
  });
  for (const id of [1, 2]) {
    const r = dns.parseResponse((await ask6(dns.buildQuery(id, 'web6', dns.TYPE_AAAA)))!) as { id: number; answers: Array<{ value: string }> };
    t.is(r.id, id);
    t.deepEqual(r.answers.map((a) => a.value), ['fd00::7']);
  }
  const a = dns.parseResponse((await ask6(dns.buildQuery(3, 'web6', dns.TYPE_A)))!) as { answers: Array<{ value: string }> };
  t.deepEqual(a.answers.map((x) => x.value), ['127.0.0.7']);
  if (nativeUdp) t.is(s.cacheStats().hits, 1, 'the repeated AAAA question from the thread\'s cache');
});

test.serial('reload swaps records and keeps the sockets: a name added or removed is seen at once', async (t) => {
  const { s } = await server(t, records([{ id: 'aa', v4: ['127.0.0.5'], v6: [], names: ['web'], servers: [] }]));
  const before = s.bound();
  t.deepEqual(await s.load(records([{ id: 'bb', v4: ['127.0.0.6'], v6: [], names: ['db'], servers: [] }])), []);
  t.deepEqual(s.bound(), before);
  t.is(dns.rcode((await udpAsk(dns.buildQuery(1, 'web', dns.TYPE_A)))!), dns.RCODE_NXDOMAIN);
  t.deepEqual((dns.parseResponse((await udpAsk(dns.buildQuery(2, 'db', dns.TYPE_A)))!) as { answers: Array<{ value: string }> }).answers.map((a) => a.value), ['127.0.0.6']);
});

test('resolv.conf servers: every nameserver in order, zone ids dropped, junk skipped', (t) => {
  t.deepEqual(resolvConfServers('search x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\n# nameserver 1.1.1.1\nnameserver ::1\n'), ['127.0.0.53', 'fe80::1', '::1']);
});
