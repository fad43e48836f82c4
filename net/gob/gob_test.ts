/**
 * The gob subset against bytes captured from the reference dhcp plugin and daemon 1.1.1
 * (testdata/capture.sh): both directions of DHCP.Allocate and DHCP.Release decode to what the
 * Go side sent; what burrow encodes decodes back, and its bytes for the reference's own values are
 * what Go sent; hostile input is a GobError, never a crash or a runaway allocation.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GobDecoder, GobEncoder, GobError, MAX_MESSAGE, type GobValue, type StructSchema } from './gob.js';

const DATA = path.join(path.dirname(fileURLToPath(import.meta.url)), 'testdata');
/** A captured connection without its HTTP CONNECT exchange. */
const stream = (name: string) => {
  const b = fs.readFileSync(path.join(DATA, name));
  return b.subarray(b.indexOf('\n\n') + 2);
};
const all = (b: Buffer) => {
  const d = new GobDecoder();
  d.push(b);
  const out: Array<{ typeId: number; value: GobValue }> = [];
  for (let v = d.next(); v; v = d.next()) out.push(v);
  t0(d.pending === 0);
  return out;
};
function t0(ok: boolean) {
  if (!ok) throw new Error('bytes left over');
}

const request: StructSchema = { struct: 'Request', fields: [['ServiceMethod', 'string'], ['Seq', 'uint']] };
const cmdArgs: StructSchema = { struct: 'CmdArgs', fields: [['ContainerID', 'string'], ['Netns', 'string'], ['IfName', 'string'], ['Args', 'string'], ['Path', 'string'], ['StdinData', 'bytes']] };

test('the reference plugin\'s Allocate request decodes by field name', (t) => {
  const [req, args] = all(stream('allocate.c2s'));
  t.deepEqual({ ...(req.value as object) }, { ServiceMethod: 'DHCP.Allocate' }, 'Seq 0 is left out');
  const a = args.value as Record<string, GobValue>;
  t.is(a.ContainerID, 'abc123');
  t.is(a.Netns, '/run/netns/capctr');
  t.is(a.IfName, 'eth0');
  t.is(a.Args, 'IgnoreUnknown=1;K8S_POD_NAME=web');
  t.is(a.Path, '/usr/lib/cni');
  t.like(JSON.parse((a.StdinData as Buffer).toString()), { name: 'webnet', ipam: { type: 'dhcp' } });
});

test('the reference daemon\'s Allocate reply: the Result with 4-byte addresses, and the empty body of Release', (t) => {
  const [resp, result] = all(stream('allocate.s2c'));
  t.deepEqual({ ...(resp.value as object) }, { ServiceMethod: 'DHCP.Allocate' });
  const r = result.value as { IPs: Array<{ Address: { IP: Buffer; Mask: Buffer }; Gateway: Buffer }>; Routes: Array<{ Dst: { IP: Buffer; Mask: Buffer }; GW: Buffer }>; DNS: object };
  t.is(r.IPs.length, 1);
  t.is(r.IPs[0].Address.IP.toString('hex'), 'c0a84d51');
  t.is(r.IPs[0].Address.Mask.toString('hex'), 'ffffff00');
  t.is(r.IPs[0].Gateway.toString('hex'), 'c0a84d01');
  t.is(r.Routes[0].Dst.IP.toString('hex'), '00000000');
  t.is(r.Routes[0].GW.toString('hex'), 'c0a84d01');
  t.deepEqual({ ...r.DNS }, {}, 'a nested struct is sent even when empty');
  // the same values as the plugin printed them
  const printed = JSON.parse(fs.readFileSync(path.join(DATA, 'allocate.result.json'), 'utf8'));
  t.is(printed.ips[0].address, '192.168.77.81/24');
  const [, empty] = all(stream('release.s2c'));
  t.is(empty.typeId, 76, 'type ids are process-wide in Go: the daemon\'s 76th type');
  t.deepEqual({ ...(empty.value as object) }, {});
});

test('burrow\'s encoding of the reference plugin\'s request is the bytes Go sent', (t) => {
  const captured = stream('allocate.c2s');
  const [, args] = all(captured);
  const enc = new GobEncoder();
  const mine = Buffer.concat([enc.encode(request, { ServiceMethod: 'DHCP.Allocate', Seq: 0 }), enc.encode(cmdArgs, args.value)]);
  t.is(mine.toString('hex'), captured.toString('hex'));
  // a second value of a known type sends no definition again
  const again = enc.encode(request, { ServiceMethod: 'DHCP.Release', Seq: 1 });
  t.deepEqual(all(Buffer.concat([mine, again])).map((v) => v.typeId), [65, 66, 65]);
});

test('round trip: every kind the subset has, zero values left out and restored as absent', (t) => {
  const inner: StructSchema = { struct: 'Inner', fields: [['N', 'int'], ['B', 'bytes']] };
  const outer: StructSchema = { struct: 'Outer', fields: [['S', 'string'], ['U', 'uint'], ['I', 'int'], ['F', 'float'], ['Ok', 'bool'], ['In', inner], ['List', { slice: inner }], ['Names', { slice: 'string' }], ['Zero', 'int']] };
  const value = { S: 'héllo', U: 2n ** 60n, I: -129, F: 1.5, Ok: true, In: { N: 7, B: Buffer.from([1, 2]) }, List: [{ N: -1 }, { N: 0, B: Buffer.from('x') }], Names: ['a', ''], Zero: 0 };
  const [v] = all(new GobEncoder().encode(outer, value));
  const o = v.value as Record<string, GobValue>;
  t.is(o.S, 'héllo');
  t.is(o.U, 2n ** 60n, 'beyond 2^53 as a bigint');
  t.is(o.I, -129);
  t.is(o.F, 1.5);
  t.is(o.Ok, true);
  t.deepEqual({ ...(o.In as object) }, { N: 7, B: Buffer.from([1, 2]) });
  t.deepEqual((o.List as object[]).map((x) => ({ ...x })), [{ N: -1 }, { B: Buffer.from('x') }]);
  t.deepEqual(o.Names, ['a', '']);
  t.false('Zero' in o);
  // a top-level slice (not a struct) has its 0 delta
  const [s] = all(new GobEncoder().encode({ slice: 'string' }, ['x', 'y']));
  t.deepEqual(s.value, ['x', 'y']);
});

test('bytes arriving in pieces: nothing until a message is whole', (t) => {
  const b = stream('allocate.s2c');
  const d = new GobDecoder();
  const got: number[] = [];
  for (let i = 0; i < b.length; i++) {
    d.push(b.subarray(i, i + 1));
    for (let v = d.next(); v; v = d.next()) got.push(v.typeId);
  }
  t.deepEqual(got, [65, 66]);
});

test('hostile input: truncated, oversized, undefined types, bad deltas, deep nesting, huge counts', (t) => {
  const bad = (b: Buffer, re: RegExp, what: string) => {
    const d = new GobDecoder();
    d.push(b);
    t.throws(() => {
      for (let v = d.next(); v; v = d.next());
    }, { instanceOf: GobError, message: re }, what);
  };
  const frame = (payload: number[]) => Buffer.from([payload.length, ...payload]);
  bad(Buffer.from([0xfc, 0x7f, 0xff, 0xff, 0xff]), /at most/, 'a 2 GB message is refused before it is buffered');
  t.true(MAX_MESSAGE < 0x7fffffff);
  bad(frame([0xff, 0x82, 0x00]), /never defined/, 'a value of an undefined type');
  bad(frame([0x01 << 1 | 1]), /predefined/, 'redefining a builtin');
  // a struct type with one string field, then a value with a delta past it
  const def = new GobEncoder().encode({ struct: 'S', fields: [['A', 'string']] }, { A: 'x' });
  const defOnly = def.subarray(0, def[0] + 1);
  bad(Buffer.concat([defOnly, frame([0xff, 0x82, 0x05, 0x01, 0x41, 0x00])]), /field 4/, 'a field the type does not have');
  bad(Buffer.concat([defOnly, frame([0xff, 0x82, 0x01, 0x7f])]), /beyond the message/, 'a string longer than its message');
  bad(Buffer.concat([defOnly, frame([0xff, 0x82, 0x01, 0xf7, 1, 2, 3, 4, 5, 6, 7, 8, 9])]), /uint of 9 bytes/, 'a 9-byte uint');
  bad(Buffer.concat([defOnly, frame([0xff, 0x82, 0x01])]), /truncated/, 'a message that ends inside its value');
  // a slice claiming 2^40 elements
  const sl = new GobEncoder().encode({ slice: 'int' }, [1]);
  const slDef = sl.subarray(0, sl[0] + 1);
  bad(Buffer.concat([slDef, frame([0xff, 0x82, 0x00, 0xfb, 0x01, 0, 0, 0, 0])]), /elements beyond the message/, 'a count past the bytes');
  // a self-referencing struct nested past the depth limit
  const selfDef = frame([0xff, 0x83, 0x03, 0x01, 0x01, 0x01, 0x52, 0x01, 0xff, 0x84, 0x00, 0x01, 0x01, 0x01, 0x01, 0x52, 0x01, 0xff, 0x84, 0x00, 0x00, 0x00]);
  const deep = Buffer.alloc(100, 0x01);
  bad(Buffer.concat([selfDef, Buffer.from([deep.length + 2, 0xff, 0x84]), deep]), /nested too deeply/, 'recursion');
  bad(frame([0x00]), /never defined/, 'a message of type 0');
});
