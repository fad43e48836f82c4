import test from 'ava';
import { MemoryKernel, MemoryNetlink } from './memory_client.js';
import { MemorySysctl } from './sysctl.js';

test('the fake kernel keeps names unique per netns and veth peers die together', async (t) => {
  const k = new MemoryKernel();
  const host = new MemoryNetlink(k, '');
  const ctr = new MemoryNetlink(k, '/run/netns/c1');
  await host.addBridge('br0');
  await host.addVeth('vh0', 'eth0', { peerNetns: '/run/netns/c1', peerMac: '02:00:00:00:00:09' });
  t.is((await ctr.getLink('eth0'))?.mac, '02:00:00:00:00:09');
  t.deepEqual((await ctr.listLinks()).map((l) => l.name), ['lo', 'eth0']);
  await t.throwsAsync(host.addVeth('x0', 'vh0'), { code: 'EEXIST' });
  await host.setMaster('vh0', 'br0');
  t.is((await host.getLink('vh0'))?.master, (await host.getLink('br0'))?.index);
  await t.throwsAsync(host.setMaster('br0', 'vh0'), { code: 'EOPNOTSUPP' });
  await t.throwsAsync(host.setUp('nope', true), { code: 'ENODEV', message: 'link "nope" not found' });
  t.true(await host.removeLink('vh0'));
  t.is(await ctr.getLink('eth0'), null);
  t.false(await host.removeLink('vh0'));
});

test('addresses bring connected routes; routes and moves behave like the kernel', async (t) => {
  const k = new MemoryKernel();
  const nl = new MemoryNetlink(k, '/run/netns/a');
  await nl.addVeth('a0', 'a1');
  await nl.addAddress('a0', '10.1.0.2/24');
  await t.throwsAsync(nl.addAddress('a0', '10.1.0.2/16'), { code: 'EEXIST' });
  await nl.addRoute({ dst: 'default', gateway: '10.1.0.1' });
  await t.throwsAsync(nl.addRoute({ dst: 'default', gateway: '10.1.0.9' }), { code: 'EEXIST' });
  await nl.replaceRoute({ dst: 'default', gateway: '10.1.0.9' });
  const routes = await nl.listRoutes(4);
  t.deepEqual(routes.map((r) => `${r.dst} ${r.gateway ?? r.dev}`), ['10.1.0.0/24 a0', 'default 10.1.0.9']);
  t.true(await nl.removeRoute({ dst: 'default', family: 4 }));
  t.false(await nl.removeRoute({ dst: 'default', family: 4 }));
  await nl.moveToNetns('a1', '/run/netns/b', 'eth0');
  t.is(await nl.getLink('a1'), null);
  t.is((await new MemoryNetlink(k, '/run/netns/b').getLink('eth0'))?.kind, 'veth');
  k.deleteNetns('/run/netns/b');
  t.is(await nl.getLink('a0'), null, 'deleting a netns kills the veth peer outside it');
  const s = new MemorySysctl('', { 'net.ipv4.ip_forward': '0' });
  s.set('net/ipv4/ip_forward', '1');
  t.is(s.get('net.ipv4.ip_forward'), '1');
  t.is(s.get('net.ipv4.conf.x.forwarding'), null);
});
