/**
 * burrow's CNI runtime driving the reference plugins (Debian's
 * containernetworking-plugins in /usr/lib/cni) through podman's default chain
 * (bridge + host-local, portmap, firewall, tuning) in throwaway namespaces:
 * a "host" netns where the plugins run, an "outside" netns behind its uplink,
 * and container netns. Asserts on real traffic and on kernel state, and that
 * nothing is left once the attachments and the network are gone.
 */
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { netnsRemove } from '../native/mod.js';
import { ipJson, nsExec, peerEchoServer, rootTest, tcpRequest, testNetns, uplink } from './helpers/netns.js';
import { listTree, REFERENCE_CNI, sandbox } from './helpers/burrow.js';

interface IpAddr { ifname: string; addr_info: { family: string; local: string; prefixlen: number }[] }

const rand = () => crypto.randomBytes(3).toString('hex');

function hostLocalDir(network: string): string {
  return path.join('/var/lib/cni/networks', network);
}

test.before(() => {
  if (!fs.existsSync(path.join(REFERENCE_CNI, 'bridge')) && process.env.CI) throw new Error(`reference plugins missing in ${REFERENCE_CNI}: install containernetworking-plugins`);
});

rootTest('podman default chain on the reference plugins: ADD, CHECK, traffic both ways, DEL and rm leave nothing', async (t) => {
  const sb = sandbox(t);
  const host = testNetns(t, 'bh');
  const outside = testNetns(t, 'bo');
  const c1 = testNetns(t, 'bc');
  const c2 = testNetns(t, 'bc');
  await uplink(host, outside, '198.18.0.2', '198.18.0.1');
  const net = `ref-${rand()}`;
  const bridge = `br-${rand()}`;
  const octet = 100 + crypto.randomInt(100);
  const subnet = `10.${octet}.7.0/24`;
  t.teardown(() => fs.rmSync(hostLocalDir(net), { recursive: true, force: true }));

  sb.ok(['network', 'create', '--subnet', subnet, '-o', `com.docker.network.bridge.name=${bridge}`, net]);
  const conflist = JSON.parse(fs.readFileSync(path.join(sb.confDir, `${net}.conflist`), 'utf8'));
  t.deepEqual(conflist.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap', 'firewall', 'tuning']);

  const caps = JSON.stringify({ portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] });
  const r1 = JSON.parse(sb.ok(['cni', 'add', net, c1, '--id', 'ctr1', '--cap-args', caps], { netns: host }));
  const r2 = JSON.parse(sb.ok(['cni', 'add', net, c2, '--id', 'ctr2'], { netns: host }));
  t.is(r1.cniVersion, '1.0.0');
  t.deepEqual(r1.interfaces.map((i: { name: string }) => i.name)[0], bridge);
  t.is(r1.interfaces[2].sandbox, c1);
  const ip1 = r1.ips[0].address.split('/')[0];
  const ip2 = r2.ips[0].address.split('/')[0];
  t.is(r1.ips[0].address, `10.${octet}.7.2/24`);
  t.is(r2.ips[0].address, `10.${octet}.7.3/24`);
  t.is(r1.ips[0].gateway, `10.${octet}.7.1`);

  // Kernel state: the container's address and default route, the bridge's gateway address, the DNAT rule.
  const addrs = ipJson<IpAddr[]>(c1, ['addr', 'show', 'eth0'])[0].addr_info.filter((a) => a.family === 'inet');
  t.deepEqual(addrs.map((a) => `${a.local}/${a.prefixlen}`), [`${ip1}/24`]);
  t.regex(nsExec(c1, ['ip', 'route', 'show', 'default']), new RegExp(`default via 10\\.${octet}\\.7\\.1 dev eth0`));
  t.truthy(ipJson<IpAddr[]>(host, ['addr', 'show', bridge])[0].addr_info.find((a) => a.local === `10.${octet}.7.1`));
  t.regex(nsExec(host, ['iptables-save', '-t', 'nat']), new RegExp(`DNAT --to-destination ${ip1.replace(/\./g, '\\.')}:80`));

  sb.ok(['cni', 'check', net, c1, '--id', 'ctr1'], { netns: host });
  sb.ok(['cni', 'check', net, c2, '--id', 'ctr2'], { netns: host });

  // Traffic: container to gateway, container to container, masquerade out, port mapping in.
  t.regex(nsExec(c1, ['ping', '-c1', '-W2', `10.${octet}.7.1`]), /1 received/);
  await peerEchoServer(t, c2, '0.0.0.0', 7000);
  t.is(await tcpRequest(c1, ip2, 7000), ip1, 'same bridge: no NAT between containers');
  await peerEchoServer(t, outside, '198.18.0.1', 7001);
  t.is(await tcpRequest(c1, '198.18.0.1', 7001), '198.18.0.2', 'ipMasq: the outside sees the host address');
  await peerEchoServer(t, c1, '0.0.0.0', 80);
  t.is(await tcpRequest(outside, '198.18.0.2', 8080), '198.18.0.1', 'portmap: outside client reaches the container, source kept');

  sb.ok(['cni', 'del', net, c1, '--id', 'ctr1'], { netns: host });
  sb.ok(['cni', 'del', net, c1, '--id', 'ctr1'], { netns: host }); // idempotent
  sb.ok(['cni', 'del', net, c2, '--id', 'ctr2'], { netns: host });
  t.deepEqual(listTree(path.join(sb.cacheDir, 'results')), []);
  sb.ok(['network', 'rm', net], { netns: host });

  const links = ipJson<{ ifname: string }[]>(host, ['link']).map((l) => l.ifname).sort();
  t.deepEqual(links, ['lo', 'up0'], 'no bridge and no veth left in the host');
  for (const tableName of ['nat', 'filter']) {
    const rules = nsExec(host, ['iptables-save', '-t', tableName]);
    t.notRegex(rules, new RegExp(`10\\.${octet}\\.7\\.`), `no ${tableName} rule mentions the subnet`);
    t.notRegex(rules, /CNI-DN-|:CNI-[0-9a-f]{24}/, `no per-container chain left in ${tableName}`);
  }
  t.false(fs.existsSync(hostLocalDir(net)), 'the host-local store is gone');
  t.false(fs.existsSync(path.join(sb.confDir, `${net}.conflist`)));
});

rootTest('DEL succeeds after the container netns is gone and releases the address; GC removes dead attachments', async (t) => {
  const sb = sandbox(t);
  const host = testNetns(t, 'bh');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const net = `gone-${rand()}`;
  t.teardown(() => fs.rmSync(hostLocalDir(net), { recursive: true, force: true }));
  sb.ok(['network', 'create', '--subnet', `10.${100 + crypto.randomInt(100)}.8.0/24`, '-o', `com.docker.network.bridge.name=bg-${rand()}`, net]);
  const [a, b, c] = [testNetns(t, 'bc'), testNetns(t, 'bc'), testNetns(t, 'bc')];
  for (const [ns, id] of [[a, 'a'], [b, 'b'], [c, 'c']]) sb.ok(['cni', 'add', net, ns, '--id', id], { netns: host });
  t.is(listTree(hostLocalDir(net)).filter((f) => /^\d/.test(f)).length, 3);

  netnsRemove(a);
  sb.ok(['cni', 'del', net, a, '--id', 'a'], { netns: host });
  t.is(listTree(hostLocalDir(net)).filter((f) => /^\d/.test(f)).length, 2, 'DEL without a netns still released the address');

  netnsRemove(b);
  const gc = sb.ok(['cni', 'gc', net], { netns: host });
  t.regex(gc, /removed b\/eth0/);
  t.regex(gc, /1 stale attachment\(s\) removed/);
  t.deepEqual(listTree(path.join(sb.cacheDir, 'results')), [`${net}-c-eth0`]);
  t.is(listTree(hostLocalDir(net)).filter((f) => /^\d/.test(f)).length, 1);

  const busy = sb.run(['network', 'rm', net], { netns: host });
  t.is(busy.code, 125);
  t.regex(busy.stderr, new RegExp(`network "${net}" is in use by 1 attachment\\(s\\) \\(c\\): detach them first or use -f`));
  sb.ok(['network', 'rm', '-f', net], { netns: host });
  t.deepEqual(listTree(path.join(sb.cacheDir, 'results')), []);
  t.false(fs.existsSync(hostLocalDir(net)));
  t.deepEqual(ipJson<{ ifname: string }[]>(host, ['link']).map((l) => l.ifname), ['lo']);
});
