import test from 'ava';
import { makeBridge, type BridgeDeps } from './index.js';
import { parseBridgeConf } from './config.js';
import { MemoryKernel, MemoryNetlink } from '../../net/netlink/memory_client.js';
import { MemorySysctl } from '../../net/netlink/sysctl.js';
import { buildRequest, dispatch } from '../../net/cni/skel.js';
import type { MasqBackend } from '../../net/firewall/ipmasq.js';
import type { Result } from '../../net/cni/types.js';

/** Sysctls that exist for every key (reads "0" until written). */
class AnySysctl extends MemorySysctl {
  override get(key: string): string | null {
    return super.get(key) ?? '0';
  }
}

function fakes(opts: { ipamFail?: boolean; masqFail?: boolean } = {}) {
  const kernel = new MemoryKernel();
  const namespaces = new Set(['/run/netns/c1', '/run/netns/c2']);
  for (const ns of namespaces) kernel.ensureNetns(ns);
  const sysctls = new Map<string, AnySysctl>();
  const log: string[] = [];
  const rules = new Set<string>();
  let n = 0;
  const masq: MasqBackend = {
    kind: 'iptables',
    async setup(t, ips) {
      if (opts.masqFail) throw new Error('iptables-restore: boom');
      rules.add(`${t.network}/${t.containerId}`);
      log.push(`masq setup ${t.containerId} ${ips.length}`);
    },
    async teardown(t) {
      log.push(`masq teardown ${t.containerId}`);
      return rules.delete(`${t.network}/${t.containerId}`);
    },
    async has(t) {
      return rules.has(`${t.network}/${t.containerId}`);
    },
    async gc() {},
  };
  const deps: BridgeDeps = {
    netlink: (ns) => new MemoryNetlink(kernel, ns),
    sysctl: (ns) => {
      if (!sysctls.has(ns)) sysctls.set(ns, new AnySysctl(ns));
      return sysctls.get(ns)!;
    },
    masq: () => masq,
    ipam: async (req, _type, cmd) => {
      log.push(`ipam ${cmd} ${req.containerId}`);
      if (cmd === 'ADD') {
        if (opts.ipamFail) throw new Error('no IP addresses available');
        return { cniVersion: '1.1.0', ips: [{ address: req.containerId === 'c2' ? '10.1.0.3/24' : '10.1.0.2/24' }, { address: 'fd01::2/64' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} } as Result;
      }
      return undefined;
    },
    spoof: { setup: async () => void log.push('spoof setup'), teardown: async () => { log.push('spoof teardown'); return true; }, has: async () => true },
    randomBytes: (len) => Buffer.alloc(len, ++n),
    netnsExists: (p) => namespaces.has(p),
  };
  return { kernel, deps, log, rules, namespaces, sysctls };
}

const env = (cmd: string, id = 'c1', netns = '/run/netns/c1') => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent' });
const conf = (extra: object = {}) => Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'net1', type: 'bridge', bridge: 'br9', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'fake' }, ...extra }));

test('ADD builds bridge, veth, addresses, routes, gateway and masquerade; DEL removes them', async (t) => {
  const f = fakes();
  const plugin = makeBridge(f.deps);
  const out = await dispatch(plugin, env('ADD'), conf({ macspoofchk: true }));
  t.is(out.exitCode, 0, out.stdout);
  const r = JSON.parse(out.stdout);
  t.deepEqual(r.interfaces.map((i: { name: string }) => i.name), ['br9', 'veth01010101', 'eth0']);
  t.is(r.interfaces[2].sandbox, '/run/netns/c1');
  t.deepEqual(r.ips, [{ address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 2 }, { address: 'fd01::2/64', gateway: 'fd01::1', interface: 2 }]);
  const host = new MemoryNetlink(f.kernel, '');
  const ctr = new MemoryNetlink(f.kernel, '/run/netns/c1');
  const br = await host.getLink('br9');
  t.is(br?.kind, 'bridge');
  t.true(br?.up);
  t.is((await host.getLink('veth01010101'))?.master, br?.index);
  t.true(host.portState('veth01010101').hairpin);
  t.deepEqual((await host.listAddresses('br9')).map((a) => a.cidr), ['10.1.0.1/24', 'fd01::1/64']);
  t.deepEqual((await ctr.listAddresses('eth0')).map((a) => `${a.cidr} nodad=${a.flags.nodad}`), ['10.1.0.2/24 nodad=true', 'fd01::2/64 nodad=true']);
  t.truthy((await ctr.listRoutes(4)).find((x) => x.dst === 'default' && x.gateway === '10.1.0.1'));
  t.is(f.sysctls.get('/run/netns/c1')!.get('net/ipv6/conf/eth0/accept_dad'), '0');
  t.is(f.sysctls.get('')!.get('net/ipv4/ip_forward'), '1');
  t.deepEqual(f.log, ['ipam ADD c1', 'masq setup c1 2', 'spoof setup']);

  const del = await dispatch(plugin, env('DEL'), conf({ macspoofchk: true }));
  t.is(del.exitCode, 0, del.stdout);
  t.is(await ctr.getLink('eth0'), null);
  t.is(await host.getLink('veth01010101'), null);
  t.is(f.rules.size, 0);
  t.deepEqual(f.log.slice(3), ['ipam DEL c1', 'masq teardown c1', 'spoof teardown']);
  t.is((await dispatch(plugin, env('DEL'), conf())).exitCode, 0, 'DEL again');
});

test('DEL without the netns still releases IPAM and masquerade', async (t) => {
  const f = fakes();
  const plugin = makeBridge(f.deps);
  await dispatch(plugin, env('ADD'), conf());
  f.kernel.deleteNetns('/run/netns/c1');
  f.namespaces.delete('/run/netns/c1');
  const out = await dispatch(plugin, env('DEL'), conf());
  t.is(out.exitCode, 0, out.stdout);
  t.deepEqual(f.log.slice(-2), ['ipam DEL c1', 'masq teardown c1']);
  t.is(f.rules.size, 0);
  t.is(await new MemoryNetlink(f.kernel, '').getLink('veth01010101'), null);
});

test('a failing ADD rolls back everything it did', async (t) => {
  for (const [opts, step] of [[{ ipamFail: true }, 'ipam'], [{ masqFail: true }, 'masq']] as const) {
    const f = fakes(opts);
    const out = await dispatch(makeBridge(f.deps), env('ADD'), conf());
    t.is(out.exitCode, 1, step);
    const host = new MemoryNetlink(f.kernel, '');
    t.deepEqual((await host.listLinks()).map((l) => l.name), ['lo'], `${step}: no bridge and no veth left`);
    t.deepEqual((await new MemoryNetlink(f.kernel, '/run/netns/c1').listLinks()).map((l) => l.name), ['lo']);
    if (step === 'masq') t.true(f.log.includes('ipam DEL c1'), 'the reservation was released');
  }
});

test('clear errors: existing non-bridge link, taken ifname, missing netns', async (t) => {
  const f = fakes();
  const plugin = makeBridge(f.deps);
  await new MemoryNetlink(f.kernel, '').addVeth('br9', 'peer9');
  let out = JSON.parse((await dispatch(plugin, env('ADD'), conf())).stdout);
  t.is(out.msg, '"br9" already exists but is not a bridge');
  await new MemoryNetlink(f.kernel, '').removeLink('br9');
  await new MemoryNetlink(f.kernel, '/run/netns/c1').addVeth('eth0', 'x0');
  out = JSON.parse((await dispatch(plugin, env('ADD'), conf())).stdout);
  t.is(out.msg, 'container veth name provided (eth0) already exists');
  t.deepEqual((await new MemoryNetlink(f.kernel, '').listLinks()).map((l) => l.name), ['lo'], 'the bridge it created was removed again');
  out = JSON.parse((await dispatch(plugin, env('ADD', 'c3', '/run/netns/gone'), conf())).stdout);
  t.is(out.code, 3);
  t.regex(out.msg, /failed to open netns "\/run\/netns\/gone"/);
});

test('CHECK compares the kernel with prevResult', async (t) => {
  const f = fakes();
  const plugin = makeBridge(f.deps);
  const added = JSON.parse((await dispatch(plugin, env('ADD'), conf())).stdout);
  const check = (prev: unknown) => dispatch(plugin, env('CHECK'), conf({ prevResult: prev }));
  const ok = await check(added);
  t.is(ok.exitCode, 0, ok.stdout);
  await new MemoryNetlink(f.kernel, '/run/netns/c1').removeAddress('eth0', '10.1.0.2/24');
  t.regex(JSON.parse((await check(added)).stdout).msg, /address 10\.1\.0\.2\/24 not found on "eth0"/);
  t.regex(JSON.parse((await dispatch(plugin, env('CHECK'), conf())).stdout).msg, /Required prevResult missing/);
});

test('config: every option parsed, contradictions refused', (t) => {
  const req = (c: object, args: [string, string][] = []) => ({ ...buildRequest(makeBridge(fakes().deps), 'ADD', env('ADD'), conf(c)), args });
  const full = parseBridgeConf(req({
    isDefaultGateway: true, forceAddress: true, ipMasqBackend: 'nftables', mtu: 1400, vlan: 100, vlanTrunk: [{ id: 5 }, { minID: 10, maxID: 20 }],
    preserveDefaultVlan: false, macspoofchk: true, enabledad: true, portIsolation: true, dns: { nameservers: ['1.1.1.1'] }, hairpinMode: false,
    runtimeConfig: { mac: '02:AA:00:00:00:01' },
  }));
  t.like(full, { bridge: 'br9', isGateway: true, isDefaultGateway: true, forceAddress: true, ipMasqBackend: 'nftables', mtu: 1400, vlan: 100, preserveDefaultVlan: false, macspoofchk: true, enabledad: true, portIsolation: true, mac: '02:aa:00:00:00:01' });
  t.deepEqual(full.vlanTrunk, [{ minID: 5, maxID: 5 }, { minID: 10, maxID: 20 }]);
  t.is(parseBridgeConf(req({}, [['MAC', '02:00:00:00:00:07'], ['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'x']])).mac, '02:00:00:00:00:07');
  const bad: [object, RegExp][] = [
    [{ promiscMode: true }, /cannot set hairpin mode and promiscuous mode at the same time/],
    [{ vlan: 5000 }, /invalid "vlan": expected an integer from 0 to 4094/],
    [{ vlanTrunk: [{ minID: 9, maxID: 3 }] }, /minID 9 is greater than maxID 3/],
    [{ vlanTrunk: [{ id: 0 }] }, /invalid VLAN ID 0 in vlanTrunk/],
    [{ ipMasqBackend: 'pf' }, /invalid "ipMasqBackend" "pf"/],
    [{ bridge: 'a-very-long-bridge-name' }, /invalid bridge name/],
    [{ mtu: 'big' }, /invalid "mtu"/],
    [{ isGateway: 'yes' }, /invalid "isGateway": expected true or false/],
    [{ disableContainerInterface: true }, /cannot use IPAM when "disableContainerInterface" is set/],
    [{ runtimeConfig: { mac: 'zz' } }, /invalid MAC address "zz"/],
  ];
  for (const [c, re] of bad) t.throws(() => parseBridgeConf(req(c)), { message: re });
  t.throws(() => parseBridgeConf(req({}, [['MAC', '02:00:00:00:00:07'], ['K8S_POD_NAME', 'x']])), { message: /ARGS: unknown args \["K8S_POD_NAME"\]/ });
});

test('VLAN: the port gets the PVID, trunk VLANs, and loses VLAN 1 unless preserved', async (t) => {
  const f = fakes();
  const out = await dispatch(makeBridge(f.deps), env('ADD'), conf({ isGateway: false, ipMasq: false, vlan: 7, vlanTrunk: [{ minID: 20, maxID: 21 }], preserveDefaultVlan: false }));
  t.is(out.exitCode, 0, out.stdout);
  const host = new MemoryNetlink(f.kernel, '');
  t.deepEqual(host.portState('veth01010101').vlans, [[7, { pvid: true, untagged: true }], [20, { pvid: false, untagged: false }], [21, { pvid: false, untagged: false }]]);
});
