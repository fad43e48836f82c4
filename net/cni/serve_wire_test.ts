import test from 'ava';
import { emitRequest, emitResponse, MAX_REQUEST_BYTES, parseRequest, parseResponse, requestLength, ServeStatus, type ServeRequest } from './serve_wire.js';

const req: ServeRequest = {
  name: 'bridge',
  root: '/opt/burrow',
  netnsInode: 4026531992n,
  euid: 0,
  umask: 0o022,
  env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', EMPTY: '', 'WITH=EQ': 'x' },
  stdin: Buffer.from('{"cniVersion":"1.0.0","name":"n","type":"bridge"}'),
};

test('a request round-trips, environment entries with "=" in the value included', (t) => {
  const b = emitRequest(req);
  t.is(requestLength(b), b.length);
  const got = parseRequest(b);
  if (typeof got === 'string') return t.fail(got);
  t.deepEqual(got, { ...req, env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', EMPTY: '', WITH: 'EQ=x' } });
});

test('the head says how much to wait for; a bad head is a reason', (t) => {
  const b = emitRequest(req);
  t.is(requestLength(b.subarray(0, 7)), null);
  t.is(requestLength(b.subarray(0, 8)), b.length);
  const bad = Buffer.from(b);
  bad.write('XXXX', 0, 'latin1');
  t.is(requestLength(bad), 'bad-magic');
  const big = Buffer.from(b);
  big.writeUInt32BE(MAX_REQUEST_BYTES + 1, 4);
  t.is(requestLength(big), 'too-large');
});

test('every truncation and every inflated length is a reason, never a throw', (t) => {
  const b = emitRequest(req);
  for (let n = 0; n < b.length; n++) {
    const cut = Buffer.from(b.subarray(0, n));
    if (n >= 8) cut.writeUInt32BE(n - 8, 4); // a head that agrees with the cut: the fields must not
    t.is(typeof parseRequest(cut), 'string', `cut at ${n}`);
  }
  // each u32 field in turn set to 0xffffffff
  for (let off = 8; off + 4 <= b.length; off += 1) {
    const x = Buffer.from(b);
    x.writeUInt32BE(0xffffffff, off);
    x.writeUInt32BE(b.length - 8, 4);
    t.notThrows(() => parseRequest(x), `0xffffffff at ${off}`);
  }
  t.is(parseRequest(Buffer.concat([b, Buffer.alloc(1)])), 'bad-length');
  const trailing = Buffer.concat([b, Buffer.alloc(3)]);
  trailing.writeUInt32BE(trailing.length - 8, 4);
  t.is(parseRequest(trailing), 'trailing-bytes');
});

test('an environment entry without a name is dropped; the first of a repeated name wins', (t) => {
  const b = emitRequest({ ...req, env: {} });
  // rebuild with raw entries: count 3, "=x", "A=1", "A=2"
  const got = parseRequest(withEnv(b, ['=x', 'A=1', 'A=2']));
  if (typeof got === 'string') return t.fail(got);
  t.deepEqual(got.env, { A: '1' });
});

test('a response round-trips; truncations and bad lengths are reasons', (t) => {
  const r = { status: ServeStatus.Served, exitCode: 7, stdout: Buffer.from('{"code":7}'), stderr: Buffer.from('why\n') };
  const b = emitResponse(r);
  t.deepEqual(parseResponse(b), r);
  for (let n = 0; n < b.length; n++) t.is(typeof parseResponse(b.subarray(0, n)), 'string', `cut at ${n}`);
  t.deepEqual(parseResponse(emitResponse({ status: ServeStatus.NotServed, exitCode: 0, stdout: Buffer.from('another root'), stderr: Buffer.alloc(0) })), { status: ServeStatus.NotServed, exitCode: 0, stdout: Buffer.from('another root'), stderr: Buffer.alloc(0) });
});

/** `b` (a request with an empty env) with `entries` as its raw environment. */
function withEnv(b: Buffer, entries: string[]): Buffer {
  // head(8) name root ino(8) euid umask count: find count by walking the two strings
  let off = 8;
  for (let i = 0; i < 2; i++) off += 4 + b.readUInt32BE(off);
  off += 8 + 4 + 4;
  const parts = [b.subarray(0, off)];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(entries.length);
  parts.push(count);
  for (const e of entries) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(Buffer.byteLength(e));
    parts.push(len, Buffer.from(e));
  }
  parts.push(b.subarray(off + 4));
  const out = Buffer.concat(parts);
  out.writeUInt32BE(out.length - 8, 4);
  return out;
}
