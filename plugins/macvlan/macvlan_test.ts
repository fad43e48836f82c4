import test from 'ava';
import { makeMacvlan, type MacvlanDeps } from './index.js';
import { MemoryKernel, MemoryNetlink } from '../../net/netlink/memory_client.js';
import { MemorySysctl } from '../../net/netlink/sysctl.js';
import { dispatch } from '../../net/cni/skel.js';
import type { Result } from '../../net/cni/types.js';

function fakes() {
  const kernel = new MemoryKernel();
  kernel.ensureNetns('/run/netns/c1');
  const log: string[] = [];
  const deps: MacvlanDeps = {
    netlink: (ns) => new MemoryNetlink(kernel, ns),
    sysctl: (ns) => new MemorySysctl(ns),
    ipam: async (_req, _type, cmd) => {
      log.push(cmd);
      return cmd === 'ADD' ? ({ cniVersion: '1.1.0', ips: [{ address: '10.9.0.5/24', gateway: '10.9.0.1' }], routes: [{ dst: '0.0.0.0/0' }] } as Result) : undefined;
    },
    netnsExists: (p) => p === '/run/netns/c1',
  };
  return { kernel, deps, log };
}

const env = (cmd: string) => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/c1', CNI_IFNAME: 'eth0', CNI_PATH: '/x' });
const conf = (type: string, extra: object = {}) => Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'n', type, master: 'par0', ipam: { type: 'fake' }, ...extra }));

test('ipvlan (and macvlan) against the fake kernel: link kind and mode in the container, address, route; DEL', async (t) => {
  for (const [kind, mode] of [['ipvlan', 'l3'], ['ipvlan', 'l2'], ['macvlan', 'vepa']] as const) {
    const f = fakes();
    await new MemoryNetlink(f.kernel, '').addVeth('par0', 'lan0');
    const plugin = makeMacvlan(f.deps, kind);
    const out = await dispatch(plugin, env('ADD'), conf(kind, { mode }));
    t.is(out.exitCode, 0, out.stdout);
    const r = JSON.parse(out.stdout);
    t.deepEqual(r.ips, [{ address: '10.9.0.5/24', gateway: '10.9.0.1', interface: 0 }]);
    const ctr = new MemoryNetlink(f.kernel, '/run/netns/c1');
    const link = await ctr.getLink('eth0');
    t.is(link?.kind, kind);
    t.is(link?.mode, mode);
    t.deepEqual((await ctr.listAddresses('eth0')).map((a) => a.cidr), ['10.9.0.5/24']);
    t.truthy((await ctr.listRoutes(4)).find((x) => x.dst === 'default' && x.gateway === '10.9.0.1'));
    t.is((await dispatch(plugin, env('DEL'), conf(kind, { mode }))).exitCode, 0);
    t.is(await ctr.getLink('eth0'), null);
    t.deepEqual(f.log, ['ADD', 'DEL']);
  }
});

test('config errors and rollback', async (t) => {
  const f = fakes();
  await new MemoryNetlink(f.kernel, '').addVeth('par0', 'lan0');
  const ipvlan = makeMacvlan(f.deps, 'ipvlan');
  const err = async (p: ReturnType<typeof makeMacvlan>, stdin: Buffer) => JSON.parse((await dispatch(p, env('ADD'), stdin)).stdout);
  t.regex((await err(ipvlan, conf('ipvlan', { mode: 'bridge' }))).msg, /unknown ipvlan mode: "bridge" \(expected l2, l3, l3s\)/);
  t.regex((await err(ipvlan, conf('ipvlan', { mac: '02:00:00:00:00:01' }))).msg, /ipvlan interfaces share the parent's MAC/);
  t.regex((await err(ipvlan, conf('ipvlan', { master: 'nope' }))).msg, /failed to lookup master "nope"/);
  const macvlan = makeMacvlan({ ...f.deps, ipam: async () => { throw new Error('no IP addresses available'); } }, 'macvlan');
  t.regex((await err(macvlan, conf('macvlan'))).msg, /no IP addresses available/);
  t.deepEqual((await new MemoryNetlink(f.kernel, '/run/netns/c1').listLinks()).map((l) => l.name), ['lo'], 'the failed ADD removed its link');
});
