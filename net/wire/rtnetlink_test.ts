import test from 'ava';
import * as w from './rtnetlink.js';

test('a GETLINK by name: the header, ifinfomsg and a NUL-terminated, padded IFLA_IFNAME, byte for byte', (t) => {
  const m = w.emitMessage(w.RTM_GETLINK, w.NLM_F_REQUEST | w.NLM_F_ACK, 7, w.emitIfinfo({}, [w.nlaStr(w.IFLA_IFNAME, 'eth0')]));
  t.is(m.toString('hex'), [
    '2c000000', '1200', '0500', '07000000', '00000000', // len 44, RTM_GETLINK, REQUEST|ACK, seq 7, pid 0
    '00' + '00' + '0000' + '00000000' + '00000000' + '00000000', // ifinfomsg: family, pad, type, index, flags, change
    '0900' + '0300' + '6574683000' + '000000', // len 9, IFLA_IFNAME, "eth0\0", 3 bytes of padding
  ].join(''));
});

test('messages and attributes round-trip; nested flags are masked off when parsing', (t) => {
  const body = w.emitIfinfo({ index: 3, flags: w.IFF_UP, change: w.IFF_UP }, [
    w.nlaU32(w.IFLA_MTU, 1400),
    w.nlaNested(w.IFLA_PROTINFO, [w.nlaU8(4, 1)]),
    w.nla(w.IFLA_LINKINFO, Buffer.concat([w.nlaStr(w.IFLA_INFO_KIND, 'veth')])),
  ]);
  const two = Buffer.concat([w.emitMessage(16, 2, 1, body), w.emitMessage(w.NLMSG_DONE, 2, 1, Buffer.alloc(4))]);
  const msgs = w.parseMessages(two);
  if (typeof msgs === 'string') return t.fail(msgs);
  t.deepEqual(msgs.map((m) => [m.type, m.seq]), [[16, 1], [w.NLMSG_DONE, 1]]);
  const link = w.parseLinkMessage(msgs[0].body);
  if (typeof link === 'string') return t.fail(link);
  t.is(link.index, 3);
  t.is(link.flags, w.IFF_UP);
  t.is(w.attrU32(link.attrs.get(w.IFLA_MTU)), 1400);
  t.true(link.attrs.has(w.IFLA_PROTINFO), 'NLA_F_NESTED masked');
  const info = w.parseAttrs(link.attrs.get(w.IFLA_LINKINFO)!);
  if (typeof info === 'string') return t.fail(info);
  t.is(w.attrStr(info.get(w.IFLA_INFO_KIND)), 'veth');
});

test('an NLMSG_ERROR carries the errno negated; an ack is 0', (t) => {
  const err = Buffer.alloc(20);
  err.writeInt32LE(-17, 0);
  t.is(w.errorOf(err), 17);
  t.is(w.errorOf(Buffer.alloc(20)), 0);
  t.is(w.errorOf(Buffer.alloc(2)), null);
});

test('truncated and inconsistent input is a reason, never a throw or a read past the end', (t) => {
  const m = w.emitMessage(w.RTM_NEWADDR, 0, 1, w.emitIfaddr({ family: 2, prefixLen: 24, flags: 0, scope: 0, index: 2 }, [w.nla(w.IFA_LOCAL, Buffer.from([10, 0, 0, 1]))]));
  for (let n = 1; n < m.length; n++) {
    const r = w.parseMessages(m.subarray(0, n));
    t.is(typeof r, 'string', `cut at ${n}`);
  }
  const short = Buffer.from(m);
  short.writeUInt32LE(8, 0);
  t.is(w.parseMessages(short), 'bad-length');
  t.is(w.parseAttrs(Buffer.from([3, 0, 1, 0])), 'bad-attr-length');
  t.is(w.parseAttrs(Buffer.from([9, 0, 1, 0, 0])), 'bad-attr-length');
  t.is(w.parseLinkMessage(Buffer.alloc(15)), 'truncated');
  t.is(w.parseAddrMessage(Buffer.alloc(7)), 'truncated');
  t.is(w.parseRouteMessage(Buffer.alloc(11)), 'truncated');
  t.is(w.attrU32(Buffer.alloc(3)), undefined);
});

test('rtmsg and ifaddrmsg fields land where the kernel reads them', (t) => {
  const r = w.emitRtmsg({ family: 10, dstLen: 64, table: 254, protocol: 3, scope: 253, type: 1 });
  t.is(r.toString('hex'), '0a400000fe03fd0100000000');
  const parsed = w.parseRouteMessage(Buffer.concat([r, w.nlaU32(w.RTA_OIF, 5)]));
  if (typeof parsed === 'string') return t.fail(parsed);
  t.like(parsed, { family: 10, dstLen: 64, table: 254, protocol: 3, scope: 253, type: 1 });
  t.is(w.attrU32(parsed.attrs.get(w.RTA_OIF)), 5);
  t.is(w.emitIfaddr({ family: 2, prefixLen: 24, flags: 2, scope: 0, index: 258 }).toString('hex'), '0218020002010000');
});
