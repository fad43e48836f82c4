import test from 'ava';
import fs from 'node:fs';
import { errnoName, RtnlClient } from './rtnl_client.js';
import { ProcSysctl } from './sysctl.js';
import { ipJson, nsExec, rootTest, testNetns } from '../../test/helpers/netns.js';

type IpLink = { ifname: string; mtu: number; address: string; master?: string; flags: string[]; linkinfo?: { info_kind: string; info_data?: { mode?: string } } };
type IpAddr = { ifname: string; addr_info: { local: string; prefixlen: number; broadcast?: string }[] };

rootTest('links, bridge, veth peer born in another netns, addresses and routes', async (t) => {
  const host = testNetns(t, 'bh');
  const ctr = testNetns(t, 'bc');
  const nl = new RtnlClient(host);
  t.teardown(() => nl.close());
  await nl.addBridge('br0', { mtu: 1400 });
  await nl.addVeth('vh0', 'eth0', { peerNetns: ctr, mtu: 1400, peerMac: '02:11:22:33:44:55' });
  await nl.setMaster('vh0', 'br0');
  await nl.setUp('br0', true);
  await nl.setUp('vh0', true);
  await nl.addAddress('br0', '10.77.0.1/24');
  await nl.addAddress('br0', 'fd77::1/64', { noDad: true });
  const links = ipJson<IpLink[]>(host, ['-d', 'link']);
  const vh0 = links.find((l) => l.ifname === 'vh0')!;
  t.is(vh0.master, 'br0');
  t.is(vh0.mtu, 1400);
  t.is(links.find((l) => l.ifname === 'br0')!.linkinfo!.info_kind, 'bridge');
  const inCtr = ipJson<IpLink[]>(ctr, ['link']).find((l) => l.ifname === 'eth0')!;
  t.is(inCtr.address, '02:11:22:33:44:55');
  const addrs = ipJson<IpAddr[]>(host, ['addr', 'show', 'br0'])[0].addr_info;
  t.truthy(addrs.find((a) => a.local === '10.77.0.1' && a.prefixlen === 24 && a.broadcast === '10.77.0.255'));
  t.truthy(addrs.find((a) => a.local === 'fd77::1'));
  const mine = await nl.listAddresses('br0');
  t.deepEqual(mine.map((a) => a.cidr).filter((c) => !c.startsWith('fe80')).sort(), ['10.77.0.1/24', 'fd77::1/64']);

  const c = new RtnlClient(ctr);
  t.teardown(() => c.close());
  await c.addAddress('eth0', '10.77.0.2/24');
  await c.setUp('eth0', true);
  await c.setUp('lo', true);
  await c.addRoute({ dst: 'default', gateway: '10.77.0.1' });
  await c.addRoute({ dst: '192.0.2.0/24', gateway: '10.77.0.1', priority: 50 });
  const routes = await c.listRoutes(4);
  t.truthy(routes.find((r) => r.dst === 'default' && r.gateway === '10.77.0.1' && r.dev === 'eth0'));
  t.truthy(routes.find((r) => r.dst === '10.77.0.0/24' && r.scope === 'link'));
  t.true(await c.removeRoute({ dst: '192.0.2.0/24', gateway: '10.77.0.1', priority: 50 }));
  t.false(await c.removeRoute({ dst: '192.0.2.0/24', gateway: '10.77.0.1', priority: 50 }));
  // Real traffic: container to the bridge address.
  t.regex(nsExec(ctr, ['ping', '-c1', '-W2', '10.77.0.1']), /1 received/);

  const err = await t.throwsAsync(nl.addBridge('br0'));
  t.is((err as { code?: string }).code, 'EEXIST');
  t.regex(err!.message, /cannot add bridge "br0" in netns ".*bh.*": EEXIST/);
  t.true(await nl.removeLink('vh0'));
  t.false(await nl.removeLink('vh0'));
  t.is(await c.getLink('eth0'), null, 'peer dies with its veth');
});

rootTest('macvlan and ipvlan on a veth parent, moved and renamed', async (t) => {
  const host = testNetns(t, 'bh');
  const ctr = testNetns(t, 'bc');
  const nl = new RtnlClient(host);
  t.teardown(() => nl.close());
  await nl.addVeth('par0', 'par1');
  await nl.addMacvlan('mv0', 'par0', 'private', { netns: ctr });
  // Some kernels are built without ipvlan; the error must then say so clearly.
  const ipvlan = await nl.addIpvlan('iv0', 'par1', 'l3').then(() => true, (e: Error) => {
    t.regex(e.message, /cannot add ipvlan "iv0" on "par1" in netns .*: (EOPNOTSUPP|ENOTSUP)/);
    t.log('kernel has no ipvlan support: checked the error instead');
    return false;
  });
  const c = new RtnlClient(ctr);
  t.teardown(() => c.close());
  const mv = await c.getLink('mv0');
  t.is(mv?.kind, 'macvlan');
  t.is(mv?.mode, 'private');
  if (ipvlan) {
    t.is((await nl.getLink('iv0'))?.mode, 'l3');
    await nl.moveToNetns('iv0', ctr, 'eth1');
    t.is((await c.getLink('eth1'))?.kind, 'ipvlan');
  }
  await nl.moveToNetns('par1', ctr, 'eth2');
  t.is((await c.getLink('eth2'))?.kind, 'veth');
  t.is(await nl.getLink('par1'), null);
  await c.rename('mv0', 'eth0');
  await c.setMtu('eth0', 1300);
  await c.setMac('eth0', '02:aa:bb:cc:dd:ee');
  const l = await c.getLink('eth0');
  t.is(l?.mtu, 1300);
  t.is(l?.mac, '02:aa:bb:cc:dd:ee');
  await t.throwsAsync(nl.addMacvlan('mv1', 'nope0', 'bridge'), { message: /link "nope0" not found/ });
});

rootTest('sysctls are per netns', async (t) => {
  const a = testNetns(t, 'bs');
  const b = testNetns(t, 'bs');
  // New namespaces may inherit init_net's value (net.core.devconf_inherit_init_net), so set both.
  new ProcSysctl(a).set('net.ipv4.ip_forward', '1');
  new ProcSysctl(b).set('net.ipv4.ip_forward', '0');
  t.is(new ProcSysctl(a).get('net/ipv4/ip_forward'), '1');
  t.is(new ProcSysctl(b).get('net.ipv4.ip_forward'), '0');
  t.is(new ProcSysctl('').get('net.ipv4.ip_forward'), fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), 'the caller netns is untouched');
  t.is(new ProcSysctl(b).get('net.ipv4.conf.nope0.forwarding'), null);
  t.throws(() => new ProcSysctl(b).set('kernel.hostname', 'x'), { message: /only keys below net\// });
  t.throws(() => new ProcSysctl(b).set('net.ipv4.conf.nope0.forwarding', '1'), { message: /nope0/ });
});

test('kernel errnos become their names, and unnamed ones stay readable', (t) => {
  t.is(errnoName(17), 'EEXIST');
  t.is(errnoName(19), 'ENODEV');
  t.is(errnoName(4095), 'E4095');
});
