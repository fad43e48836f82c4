/**
 * The lease state machine on a manual clock with a scripted server: DORA, renewal at T1,
 * rebinding at T2, expiry, NAKs, the bounded acquisition, replies that are not ours, and a restart
 * taken up at the phase it falls in. Also the client codec and the netconf's options.
 */
import test from 'ava';
import { ACK, DISCOVER, NAK, OFFER, RELEASE, REQUEST } from '../../net/wire/dhcp.js';
import { buildClientMessage, frameToServer, leaseOf, OPT, parseClasslessRoutes, parseReply, payloadToClient, type ClientMessage, type ServerReply } from '../../net/wire/dhcp_client.js';
import { LeaseMachine, type LeaseOptions } from './lease.js';
import { leaseOptionsOf, OptionError, resultOf } from './options.js';
import { fromGob } from './index.js';

const MAC = Buffer.from('02aabbccddee', 'hex');
const opts = (o: Partial<LeaseOptions> = {}): LeaseOptions => ({ chaddr: MAC, clientId: Buffer.from('\0abc/net/eth0', 'latin1'), paramRequest: [3, 1], provide: [], broadcast: false, replyTimeoutMs: 10_000, resendMaxMs: 62_000, acquireTimeoutMs: 30_000, rand: seq(), ...o });
/** A repeatable sequence in [0, 1). */
const seq = () => {
  let k = 0;
  return () => (++k * 0.618034) % 1;
};
const ip = (s: string) => Buffer.from(s.split('.').map(Number));

/** A server reply to `m` as a parsed message (through the wire codec both ways). */
function reply(m: ClientMessage, type: number, o: { lease?: number; t1?: number; t2?: number; xid?: number; mask?: boolean } = {}): ServerReply {
  const opts: Array<[number, Buffer]> = [[OPT.messageType, Buffer.of(type)], [OPT.serverId, ip('192.168.77.1')]];
  if (type !== NAK) {
    if (o.mask !== false) opts.push([OPT.subnetMask, ip('255.255.255.0')]);
    opts.push([OPT.router, ip('192.168.77.1')]);
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    opts.push([OPT.leaseTime, u32(o.lease ?? 120)]);
    if (o.t1) opts.push([OPT.renewalTime, u32(o.t1)]);
    if (o.t2) opts.push([OPT.rebindingTime, u32(o.t2)]);
  }
  const b = Buffer.alloc(300);
  b[0] = 2;
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(o.xid ?? m.xid, 4);
  if (type !== NAK) ip('192.168.77.50').copy(b, 16);
  Buffer.from(m.chaddr).copy(b, 28);
  b.writeUInt32BE(0x63825363, 236);
  let i = 240;
  for (const [c, v] of opts) {
    b[i] = c;
    b[i + 1] = v.length;
    v.copy(b, i + 2);
    i += 2 + v.length;
  }
  b[i] = 255;
  const r = parseReply(b);
  if (typeof r === 'string') throw new Error(r);
  return r;
}

test('DORA, renewal at T1 with ciaddr, rebinding at T2 with a new DISCOVER, expiry', (t) => {
  const m = new LeaseMachine(opts());
  const d = m.start(0).send!;
  t.is(d.type, DISCOVER);
  t.deepEqual(d.paramRequest, [3, 1]);
  const r = m.receive(reply(d, OFFER), 100).send!;
  t.is(r.type, REQUEST);
  t.deepEqual(Buffer.from(r.requestedIp!), ip('192.168.77.50'));
  t.deepEqual(Buffer.from(r.serverId!), ip('192.168.77.1'));
  t.is(m.receive(reply(r, ACK, { t1: 20, t2: 40 }), 200).event, 'bound');
  t.is(m.state, 'bound');
  t.is(m.deadline, 200 + 20_000, 'renewal at T1');
  const renew = m.tick(20_200).send!;
  t.is(m.state, 'renewing');
  t.is(renew.type, REQUEST);
  t.deepEqual(Buffer.from(renew.ciaddr!), ip('192.168.77.50'));
  t.is(renew.requestedIp, undefined, 'RFC 2131 4.3.6: no requested address while renewing');
  t.not(renew.xid, d.xid, 'a new transaction');
  t.is(m.receive(reply(renew, ACK, { t1: 20, t2: 40 }), 20_300).event, 'renewed');
  t.is(m.deadline, 40_300);
  // no answer to the renewal: resent until T2, then a DISCOVER for the same address
  m.tick(40_300);
  let s = m.tick(m.deadline);
  while (m.state === 'renewing') s = m.tick(m.deadline);
  t.is(m.state, 'rebinding');
  t.is(s.send!.type, DISCOVER);
  t.deepEqual(Buffer.from(s.send!.requestedIp!), ip('192.168.77.50'));
  // nothing answers: at the lease's end (120 s after the last ACK) it expires
  let last;
  for (let i = 0; i < 100 && m.state === 'rebinding'; i++) last = m.tick(m.deadline);
  t.is(m.state, 'expired');
  t.is(last!.event, 'expired');
  t.true(m.deadline === Infinity);
});

test('the acquisition fails clearly within its budget, and ignores what is not its own', (t) => {
  const m = new LeaseMachine(opts({ acquireTimeoutMs: 30_000 }));
  const d = m.start(0).send!;
  t.deepEqual(m.receive(reply(d, OFFER, { xid: d.xid + 1 }), 10), {}, 'another transaction');
  t.deepEqual(m.receive({ ...reply(d, OFFER), chaddr: Buffer.alloc(6) }, 10), {}, 'another client');
  t.is(m.ignored, 2);
  let sends = 1;
  let step;
  for (let i = 0; i < 100 && m.state === 'selecting'; i++) {
    step = m.tick(m.deadline);
    if (step.send) sends++;
  }
  t.is(m.state, 'failed');
  t.true(m.deadline === Infinity);
  t.regex(step!.error!, /^no DHCPOFFER within 30 s after \d+ tries$/);
  t.true(sends >= 7 && sends <= 16, `resent with backoff (${sends} DISCOVERs)`);
});

test('a NAK to the REQUEST starts over (three at most); a NAK to a renewal ends the lease; an ACK without a mask fails', (t) => {
  const m = new LeaseMachine(opts());
  let d = m.start(0).send!;
  for (let i = 0; i < 2; i++) {
    const r = m.receive(reply(d, OFFER), 1).send!;
    const s = m.receive(reply(r, NAK), 2);
    t.is(s.event, 'nak');
    t.is(s.send!.type, DISCOVER);
    d = s.send!;
  }
  const r = m.receive(reply(d, OFFER), 3).send!;
  t.regex(m.receive(reply(r, NAK), 4).error!, /refused the offered address three times/);
  t.is(m.state, 'failed');
  const b = new LeaseMachine(opts());
  const d2 = b.start(0).send!;
  const r2 = b.receive(reply(d2, OFFER), 1).send!;
  b.receive(reply(r2, ACK, { t1: 20, t2: 40 }), 2);
  const renew = b.tick(b.deadline).send!;
  const s = b.receive(reply(renew, NAK), 20_010);
  t.is(s.event, 'nak');
  t.is(b.state, 'expired');
  const c = new LeaseMachine(opts());
  const d3 = c.start(0).send!;
  const r3 = c.receive(reply(d3, OFFER), 1).send!;
  t.is(c.receive(reply(r3, ACK, { mask: false }), 2).error, 'DHCP option Subnet Mask not found in DHCPACK');
});

test('a restart takes the lease up at its phase; RELEASE carries ciaddr, server id and client id', (t) => {
  const m = new LeaseMachine(opts());
  const d = m.start(0).send!;
  const r = m.receive(reply(d, OFFER), 1).send!;
  m.receive(reply(r, ACK, { t1: 20, t2: 40 }), 1000);
  const snap = JSON.parse(JSON.stringify(m.snapshot()));
  const early = new LeaseMachine(opts());
  t.deepEqual(early.restore(snap, 5000), {});
  t.is(early.state, 'bound');
  t.is(early.deadline, 21_000);
  const mid = new LeaseMachine(opts());
  t.is(mid.restore(snap, 30_000).send!.type, REQUEST);
  t.is(mid.state, 'renewing');
  const late = new LeaseMachine(opts());
  t.is(late.restore(snap, 50_000).send!.type, DISCOVER);
  t.is(late.state, 'rebinding');
  const gone = new LeaseMachine(opts());
  t.is(gone.restore(snap, 200_000).event, 'expired');
  const rel = m.release()!;
  t.is(rel.type, RELEASE);
  t.deepEqual(Buffer.from(rel.ciaddr!), ip('192.168.77.50'));
  t.deepEqual(Buffer.from(rel.serverId!), ip('192.168.77.1'));
  t.is(m.release(), null, 'nothing held any more');
});

test('client codec: messages round-trip through the packet framing; hostile replies are reasons', (t) => {
  const msg = buildClientMessage({ type: DISCOVER, xid: 0x1234, chaddr: MAC, clientId: Buffer.from('\0x'), paramRequest: [3, 1], options: [[12, Buffer.from('web')]], broadcast: true });
  t.is(msg.length, 300);
  t.is(msg.readUInt16BE(10), 0x8000);
  const pkt = frameToServer(msg);
  t.is(pkt.readUInt16BE(22), 67);
  // as if a server's packet to port 68: swap the ports and check the payload comes back
  const back = Buffer.from(pkt);
  back.writeUInt16BE(67, 20);
  back.writeUInt16BE(68, 22);
  t.deepEqual(payloadToClient(back), msg);
  t.is(payloadToClient(pkt), 'not to port 68');
  t.regex(payloadToClient(Buffer.alloc(10)) as string, /^ip: /);
  t.is(parseReply(Buffer.alloc(100)), 'truncated');
  const r = Buffer.alloc(300);
  r[0] = 2;
  r.writeUInt32BE(0x63825363, 236);
  r[240] = 53;
  r[241] = 200;
  t.is(parseReply(r), 'option runs past the end');
  r[241] = 1;
  r[242] = ACK;
  t.is(parseReply(r), 'no end option');
  r[243] = 255;
  t.like(parseReply(r), { type: ACK });
  t.throws(() => buildClientMessage({ type: DISCOVER, xid: 1, chaddr: MAC, options: [[12, Buffer.alloc(256)]] }), { instanceOf: RangeError });
});

test('routes: option 121 wins over 33 and the router; 33 is classful; malformed 121 falls back', (t) => {
  t.deepEqual(parseClasslessRoutes(Buffer.from([24, 10, 1, 2, 192, 168, 77, 1, 0, 192, 168, 77, 254, 32, 10, 0, 0, 9, 0, 0, 0, 0])), [
    { dst: '10.1.2.0/24', gw: '192.168.77.1' }, { dst: '0.0.0.0/0', gw: '192.168.77.254' }, { dst: '10.0.0.9/32' },
  ]);
  t.is(parseClasslessRoutes(Buffer.from([33, 1])), null);
  const base = reply({ type: REQUEST, xid: 1, chaddr: MAC }, ACK);
  const withStatic = { ...base, options: new Map(base.options).set(33, Buffer.from([10, 9, 0, 0, 192, 168, 77, 2])) };
  t.like(leaseOf(withStatic), { routes: [{ dst: '10.9.0.0/8', gw: '192.168.77.2' }, { dst: '0.0.0.0/0', gw: '192.168.77.1' }], gateway: '192.168.77.1', prefix: 24, leaseS: 120, t1S: 60, t2S: 105 });
  const withClassless = { ...base, options: new Map(withStatic.options).set(121, Buffer.from([8, 10, 192, 168, 77, 3])) };
  t.like(leaseOf(withClassless), { routes: [{ dst: '10.0.0.0/8', gw: '192.168.77.3' }] });
  // the Result both ways: gob values, then a CNI result
  const lease = leaseOf(withStatic);
  if (typeof lease === 'string') throw new Error(lease);
  t.deepEqual(fromGob(resultOf(lease) as never), { cniVersion: '1.1.0', ips: [{ address: '192.168.77.50/24', gateway: '192.168.77.1' }], routes: [{ dst: '10.9.0.0/8', gw: '192.168.77.2' }, { dst: '0.0.0.0/0', gw: '192.168.77.1' }], dns: {} });
});

test('netconf options: request and provide as the reference reads them', (t) => {
  const o = leaseOptionsOf({ ipam: { request: [{ option: 'host-name' }, { option: '121' }], provide: [{ option: 'host-name', fromArg: 'K8S_POD_NAME' }, { option: 60, value: 'burrow' }, { option: 'user-class', fromArg: 'MISSING' }] } }, 'IgnoreUnknown=1;K8S_POD_NAME=web', 'c1/net/eth0');
  t.deepEqual(o.paramRequest, [3, 1, 12, 121]);
  t.deepEqual(o.provide, [[12, Buffer.from('web')], [60, Buffer.from('burrow')]]);
  t.deepEqual(o.clientId, Buffer.from('\0c1/net/eth0', 'latin1'), 'type 0, then the id');
  t.deepEqual(leaseOptionsOf({ ipam: { request: [{ option: 'routers', skipDefault: true }] } }, '', 'x').paramRequest, [3]);
  t.throws(() => leaseOptionsOf({ ipam: { request: [{ option: 'no-such' }] } }, '', 'x'), { instanceOf: OptionError, message: /ipam.request\[0\]: unknown DHCP option "no-such"/ });
  t.is(leaseOptionsOf({}, '', 'x'.repeat(400)).clientId.length, 255, 'at most 254 bytes of id');
});
