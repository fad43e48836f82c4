/**
 * burrow's own plugins (bridge, host-local, loopback, tuning) on the real
 * kernel, through burrow's runtime in-process and as exec'd executables: real
 * traffic (gateway, container to container, masquerade to an "outside" host,
 * IPv6), hairpin, and that nothing is left afterwards.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ipJson, nsExec, peerEchoServer, rootTest, tcpRequest, testNetns, uplink } from './helpers/netns.js';
import { listTree, sandbox } from './helpers/burrow.js';
import { OWN_BIN, callPlugin, hostSnapshot } from './helpers/cni.js';

const rand = () => crypto.randomBytes(3).toString('hex');

function writeConflist(confDir: string, name: string, doc: object): void {
  fs.mkdirSync(confDir, { recursive: true });
  fs.writeFileSync(path.join(confDir, `${name}.conflist`), JSON.stringify(doc));
}

for (const mode of ['auto', 'exec'] as const) {
  rootTest(`dual-stack chain on burrow's plugins (${mode === 'auto' ? 'in-process' : 'exec'}): traffic, CHECK, DEL, nothing left`, async (t) => {
    const sb = sandbox(t, [OWN_BIN]);
    fs.appendFileSync(sb.configFile, `plugin_mode = "${mode}"\n`);
    const host = testNetns(t, 'ph');
    const outside = testNetns(t, 'po');
    const [c1, c2] = [testNetns(t, 'pc'), testNetns(t, 'pc')];
    await uplink(host, outside, '198.18.1.2', '198.18.1.1');
    const net = `own-${rand()}`;
    const dataDir = path.join(sb.dir, 'ipam');
    writeConflist(sb.confDir, net, {
      cniVersion: '1.0.0', name: net,
      plugins: [
        {
          type: 'bridge', bridge: `bo-${rand()}`, isGateway: true, ipMasq: true, hairpinMode: true,
          ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '10.241.0.0/24' }], [{ subnet: 'fd00:241::/64' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] },
        },
        { type: 'tuning', sysctl: { 'net.ipv4.conf.IFNAME.arp_filter': '1' } },
      ],
    });
    const r1 = JSON.parse(sb.ok(['cni', 'add', net, c1, '--id', 'p1'], { netns: host }));
    const r2 = JSON.parse(sb.ok(['cni', 'add', net, c2, '--id', 'p2'], { netns: host }));
    t.deepEqual(r1.ips.map((i: { address: string }) => i.address), ['10.241.0.2/24', 'fd00:241::2/64']);
    t.deepEqual(r2.ips.map((i: { address: string }) => i.address), ['10.241.0.3/24', 'fd00:241::3/64']);
    sb.ok(['cni', 'check', net, c1, '--id', 'p1'], { netns: host });

    const inet6 = ipJson<{ addr_info: { family: string; local: string; tentative?: boolean }[] }[]>(c1, ['addr', 'show', 'eth0'])[0].addr_info.filter((a) => a.family === 'inet6' && !a.local.startsWith('fe80'));
    t.deepEqual(inet6.map((a) => [a.local, !!a.tentative]), [['fd00:241::2', false]], 'IPv6 address usable at once (no DAD wait)');
    t.regex(nsExec(c1, ['ping', '-c1', '-W2', '10.241.0.1']), /1 received/);
    t.regex(nsExec(c1, ['ping', '-6', '-c1', '-W2', 'fd00:241::3']), /1 received/);
    await peerEchoServer(t, c2, '0.0.0.0', 7100);
    t.is(await tcpRequest(c1, '10.241.0.3', 7100), '10.241.0.2');
    await peerEchoServer(t, outside, '198.18.1.1', 7101);
    t.is(await tcpRequest(c1, '198.18.1.1', 7101), '198.18.1.2', 'masqueraded to the host address');
    t.is(nsExec(c1, ['sysctl', '-n', 'net.ipv4.conf.eth0.arp_filter']).trim(), '1', 'tuning ran');

    sb.ok(['cni', 'del', net, c1, '--id', 'p1'], { netns: host });
    sb.ok(['cni', 'del', net, c2, '--id', 'p2'], { netns: host });
    sb.ok(['cni', 'del', net, c2, '--id', 'p2'], { netns: host });
    sb.ok(['network', 'rm', net], { netns: host });
    const snap = hostSnapshot(host) as { links: string[]; nat4: string[]; nat6: string[] };
    t.deepEqual(snap.links, ['lo loopback mtu=65536 master=- UP', 'up0 veth mtu=1500 master=- UP']);
    t.deepEqual([...snap.nat4, ...snap.nat6].filter((r) => r.includes('CNI')), []);
    t.deepEqual(listTree(path.join(dataDir, net)).filter((f) => /^\d|:/.test(f)), []);
    t.deepEqual(listTree(path.join(sb.cacheDir, 'results')), []);
  });
}

rootTest('hairpinMode lets a container reach itself through a DNAT on the host; without it the same request fails', async (t) => {
  for (const hairpin of [true, false]) {
    const host = testNetns(t, 'hh');
    const ctr = testNetns(t, 'hc');
    nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
    nsExec(host, ['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1']);
    const conf = {
      cniVersion: '1.0.0', name: `hp-${rand()}`, type: 'bridge', bridge: 'hpbr0', isGateway: true, hairpinMode: hairpin,
      ipam: { type: 'host-local', dataDir: path.join('/tmp', `burrow-hp-${rand()}`), ranges: [[{ subnet: '10.242.0.0/24' }]] },
    };
    t.teardown(() => fs.rmSync(conf.ipam.dataDir, { recursive: true, force: true }));
    const r = await callPlugin(host, OWN_BIN, 'bridge', { command: 'ADD', containerId: 'h1', netns: ctr }, conf);
    t.is(r.code, 0, r.raw);
    t.is(JSON.parse(nsExec(host, ['bridge', '-d', '-j', 'link', 'show'])).find((p: { master: string }) => p.master === 'hpbr0').hairpin, hairpin);
    nsExec(host, ['iptables', '-t', 'nat', '-A', 'PREROUTING', '-d', '10.242.0.1', '-p', 'tcp', '--dport', '9000', '-j', 'DNAT', '--to-destination', '10.242.0.2:80']);
    nsExec(host, ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.242.0.2', '-d', '10.242.0.2', '-j', 'MASQUERADE']);
    await peerEchoServer(t, ctr, '0.0.0.0', 80);
    // with hairpin the answer may wait on ARP and a SYN retransmit on a loaded machine: 5 s;
    // without, 2 s of silence is the proof
    const got = await tcpRequest(ctr, '10.242.0.1', 9000, hairpin ? 5 : 2).then((s) => s, () => 'timeout');
    if (hairpin) t.is(got, '10.242.0.1', 'the request came back to the container, masqueraded to the gateway');
    else t.is(got, 'timeout', 'without hairpin the bridge does not send the frame back out its port');
    t.is((await callPlugin(host, OWN_BIN, 'bridge', { command: 'DEL', containerId: 'h1', netns: ctr }, conf)).code, 0);
  }
});

rootTest('GC (spec 1.1.0 via cniVersions) removes dead attachments, crash leftovers and ghost reservations', async (t) => {
  const sb = sandbox(t, [OWN_BIN]);
  const host = testNetns(t, 'gh');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const net = `gc-${rand()}`;
  const store = path.join('/var/lib/cni/networks', net);
  t.teardown(() => fs.rmSync(store, { recursive: true, force: true }));
  sb.ok(['network', 'create', '--subnet', '10.247.0.0/24', '-o', `com.docker.network.bridge.name=bg-${rand()}`, net]);
  // burrow has no portmap and firewall yet: keep the chain to burrow's own plugins.
  const file = path.join(sb.confDir, `${net}.conflist`);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  doc.plugins = doc.plugins.filter((p: { type: string }) => !['portmap', 'firewall'].includes(p.type));
  fs.writeFileSync(file, JSON.stringify(doc));
  const [a, b, c] = [testNetns(t, 'gc'), testNetns(t, 'gc'), testNetns(t, 'gc')];
  const ra = JSON.parse(sb.ok(['cni', 'add', net, a, '--id', 'a'], { netns: host }));
  t.is(ra.cniVersion, '1.1.0', 'burrow picked 1.1.0 from cniVersions: every plugin supports it');
  sb.ok(['cni', 'add', net, b, '--id', 'b'], { netns: host });
  sb.ok(['cni', 'add', net, c, '--id', 'c'], { netns: host });
  t.regex(sb.ok(['cni', 'status', net], { netns: host }), /ready/);
  fs.writeFileSync(path.join(store, '10.247.0.200'), 'ghost\r\neth0'); // a reservation nobody holds
  (await import('../native/mod.js')).netnsRemove(b);
  (await import('../native/mod.js')).netnsRemove(c);
  fs.rmSync(path.join(sb.cacheDir, 'results', `${net}-c-eth0`)); // a crash lost c's cache entry
  const out = sb.ok(['cni', 'gc', net], { netns: host });
  t.regex(out, /removed b\/eth0/);
  t.regex(out, /plugins garbage-collected/);
  t.deepEqual(fs.readdirSync(store).filter((f) => /^\d/.test(f)), ['10.247.0.2'], 'only a keeps its address');
  const nat = nsExec(host, ['iptables-save', '-t', 'nat']);
  t.is((nat.match(/^:CNI-[0-9a-f]{24}/gm) ?? []).length, 1, 'only a keeps its masquerade chain');
  t.regex(nat, /id: \\"a\\"/);
  t.deepEqual(listTree(path.join(sb.cacheDir, 'results')), [`${net}-a-eth0`]);
  sb.ok(['network', 'rm', '-f', net], { netns: host });
  t.false(fs.existsSync(store));
});

rootTest('ipMasq on the nftables backend and the MAC spoof check, by traffic; DEL removes both', async (t) => {
  const host = testNetns(t, 'nh');
  const outside = testNetns(t, 'no');
  const ctr = testNetns(t, 'nc');
  await uplink(host, outside, '198.18.2.2', '198.18.2.1');
  const dataDir = path.join('/tmp', `burrow-nft-${rand()}`);
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const conf = {
    cniVersion: '1.1.0', name: 'nftnet', type: 'bridge', bridge: 'nftbr0', isGateway: true, ipMasq: true, ipMasqBackend: 'nftables', macspoofchk: true,
    ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '10.248.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] },
  };
  const add = await callPlugin(host, OWN_BIN, 'bridge', { command: 'ADD', containerId: 'n1', netns: ctr }, conf);
  t.is(add.code, 0, add.raw);
  const ruleset = nsExec(host, ['nft', 'list', 'ruleset']);
  t.regex(ruleset, /ip saddr 10\.248\.0\.2 ip daddr != 10\.248\.0\.0\/24 masquerade comment "[0-9a-f]{16}-[0-9a-f]{16}, net: nftnet, if: eth0, id: n1"/);
  t.regex(ruleset, /macspoofchk-n1-eth0/);
  t.notRegex(nsExec(host, ['iptables-save', '-t', 'nat']), /CNI-/, 'nothing in iptables');
  await peerEchoServer(t, outside, '198.18.2.1', 7200);
  t.is(await tcpRequest(ctr, '198.18.2.1', 7200), '198.18.2.2', 'masqueraded by nftables');
  // A spoofed source MAC is dropped at the bridge port.
  nsExec(ctr, ['ip', 'link', 'set', 'eth0', 'address', '02:66:66:66:66:66']);
  nsExec(ctr, ['ip', 'neigh', 'flush', 'all']);
  t.is(await tcpRequest(ctr, '198.18.2.1', 7200, 2).then(() => 'answered', () => 'dropped'), 'dropped');
  const check = await callPlugin(host, OWN_BIN, 'bridge', { command: 'CHECK', containerId: 'n1', netns: ctr }, { ...conf, prevResult: add.out });
  t.regex(String(check.out.msg), /has MAC 02:66:66:66:66:66/, 'CHECK notices the changed MAC');
  const del = await callPlugin(host, OWN_BIN, 'bridge', { command: 'DEL', containerId: 'n1', netns: ctr }, { ...conf, prevResult: add.out });
  t.is(del.code, 0, del.raw);
  const after = nsExec(host, ['nft', 'list', 'ruleset']);
  t.notRegex(after, /masquerade comment|macspoofchk|cni-br-iface/, 'no masquerade rule and no spoof-check chain left');
});
