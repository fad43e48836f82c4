/** burrow's default network next to podman's, and subnets the host already routes (issue 14, items 13 and 15). */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseCidr } from '../../net/ip/addr.js';
import { defaultConfig, type BurrowConfig } from '../config.js';
import { NetworkStore, podmanDefaultSubnet } from './networks.js';

const PODMAN_CONFLIST = fs.existsSync('/usr/share/doc/podman/examples/cni/net.d/87-podman-bridge.conflist')
  ? fs.readFileSync('/usr/share/doc/podman/examples/cni/net.d/87-podman-bridge.conflist', 'utf8')
  : JSON.stringify({ cniVersion: '0.4.0', name: 'podman', plugins: [{ type: 'bridge', bridge: 'cni-podman0', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.88.0.0/16', gateway: '10.88.0.1' }]] } }, { type: 'portmap', capabilities: { portMappings: true } }, { type: 'firewall' }, { type: 'tuning' }] });

function store(t: ExecutionContext, o: { podmanFile?: boolean; podmanInstalled?: boolean; files?: Record<string, object>; config?: Partial<BurrowConfig>; attached?: string } = {}): NetworkStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-nets-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const conf = path.join(dir, 'net.d');
  fs.mkdirSync(conf);
  if (o.podmanFile) fs.writeFileSync(path.join(conf, '87-podman-bridge.conflist'), PODMAN_CONFLIST);
  for (const [name, doc] of Object.entries(o.files ?? {})) fs.writeFileSync(path.join(conf, `${name}.conflist`), JSON.stringify(doc));
  if (o.attached) {
    fs.mkdirSync(path.join(dir, 'cache', 'results'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cache', 'results', `${o.attached}-abc-eth0`), '{}');
  }
  return new NetworkStore({ ...defaultConfig(), cniConfigDir: conf, cniCacheDir: path.join(dir, 'cache'), source: path.join(dir, 'burrow.toml'), ...o.config }, () => !!o.podmanInstalled);
}

const bridgeOn = (name: string, subnet: string) => ({ cniVersion: '1.0.0', name, plugins: [{ type: 'bridge', bridge: `br-${name}`, ipam: { type: 'host-local', ranges: [[{ subnet }]] } }] });
const subnetOf = (s: NetworkStore) => (s.defaultList().plugins[0].ipam as { ranges: Array<Array<{ subnet: string }>> }).ranges[0][0].subnet;

test('without podman: burrow\'s built-in network on 10.88.0.0/16', (t) => {
  const s = store(t);
  t.is(s.defaultName(), 'burrow');
  t.is(subnetOf(s), '10.88.0.0/16');
});

test('podman\'s default conflist next to ours: burrow uses podman\'s network instead of a second one on the same subnet, and says so', (t) => {
  const s = store(t, { podmanFile: true, podmanInstalled: true });
  t.is(s.defaultName(), 'podman');
  t.is(s.defaultList().plugins[0].bridge, 'cni-podman0');
  const d = s.list().networks.find((n) => n.default)!;
  t.is(d.name, 'podman');
  t.regex(d.default_reason!, /podman's default network .*share its bridge and addresses/);
  t.is(s.list().networks.filter((n) => n.default).length, 1, 'one default');
  t.throws(() => s.get('burrow'), { message: /network "burrow" not found .*the default network is "podman"/ });
});

test('podman installed without a conflist here: its default network still claims 10.88.0.0/16, so burrow takes the next free subnet', (t) => {
  const s = store(t, { podmanInstalled: true });
  t.is(s.defaultName(), 'burrow');
  t.is(subnetOf(s), '10.90.0.0/16');
  t.regex(s.list().networks[0].default_reason!, /10\.88\.0\.0\/16 is taken by podman's default network, so it uses 10\.90\.0\.0\/16/);
  t.throws(() => s.create('x', { subnets: ['10.88.5.0/24'] }), { message: /subnet 10\.88\.5\.0\/24 overlaps subnet 10\.88\.0\.0\/16 of podman's default network/ });
  t.throws(() => s.create('y', { subnets: ['10.90.1.0/24'] }), { message: /overlaps subnet 10\.90\.0\.0\/16 of network "burrow"/ });
});

test('another network on the configured subnet moves the built-in default; an explicit choice is kept', (t) => {
  const s = store(t, { files: { lan: bridgeOn('lan', '10.88.5.0/24'), other: bridgeOn('other', '10.90.0.0/24') } });
  t.is(subnetOf(s), '10.91.0.0/16', '10.90 is taken too');
  const pinned = store(t, { files: { lan: bridgeOn('lan', '10.88.5.0/24') }, config: { explicit: ['network.default_subnet'] } });
  t.is(subnetOf(pinned), '10.88.0.0/16');
  const named = store(t, { podmanFile: true, files: { mine: bridgeOn('mine', '10.70.0.0/16') }, config: { defaultNetwork: 'mine', explicit: ['network.default_network'] } });
  t.is(named.defaultName(), 'mine');
});

test('the built-in network keeps being the default while containers are attached to it, even once podman\'s conflist appears', (t) => {
  const s = store(t, { podmanFile: true, attached: 'burrow' });
  t.is(s.defaultName(), 'burrow');
  t.regex(s.list().networks.find((n) => n.default)!.default_reason!, /kept while containers are attached/);
});

test('a --subnet the host already routes is refused, naming the route; automatic subnets avoid it; macvlan subnets are the LAN\'s own', (t) => {
  const s = store(t);
  const routes = [{ cidr: parseCidr('192.168.50.0/24'), dev: 'wlan0' }, { cidr: parseCidr('10.89.0.0/24'), dev: 'tun0' }];
  t.throws(() => s.create('x', { subnets: ['192.168.50.128/25'] }, routes), { message: /subnet 192\.168\.50\.128\/25 overlaps 192\.168\.50\.0\/24, which the host already routes via wlan0/ });
  t.is(s.create('auto', {}, routes).subnets[0].subnet, '10.89.1.0/24');
  t.is(s.create('lan', { driver: 'macvlan', subnets: ['192.168.50.0/24'], options: { parent: 'eth9' } }, routes, [{ name: 'eth9', kind: 'veth' }]).subnets[0].subnet, '192.168.50.0/24');
});

test('podman\'s default subnet follows containers.conf', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-cc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'containers.conf');
  fs.writeFileSync(f, '[network]\ndefault_subnet = "10.77.0.0/16"\n');
  t.is(podmanDefaultSubnet({ CONTAINERS_CONF: f }), '10.77.0.0/16');
  fs.writeFileSync(f, '[engine]\ncgroup_manager = "cgroupfs"\n');
  t.is(podmanDefaultSubnet({ CONTAINERS_CONF: f }), '10.88.0.0/16');
});
