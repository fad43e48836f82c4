/**
 * burrow's macvlan plugin: differential against the reference, and the classic scenario by
 * traffic. The parent is one end of a veth pair whose other end sits in a "LAN" namespace with
 * a LAN host; containers on the parent reach the LAN host and, in bridge mode, each other; in
 * private mode they must not.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nsExec, rootTest, testNetns } from './helpers/netns.js';
import { callPlugin, hostSnapshot, normalizeResult, OWN_BIN, REF_BIN, storeFiles } from './helpers/cni.js';
import { sandbox } from './helpers/burrow.js';

function lanSetup(t: import('ava').ExecutionContext) {
  const host = testNetns(t, 'vh');
  const lan = testNetns(t, 'vl');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  nsExec(host, ['ip', 'link', 'add', 'par0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', lan]);
  nsExec(host, ['ip', 'link', 'set', 'par0', 'up']);
  nsExec(lan, ['ip', 'addr', 'add', '10.240.0.200/24', 'dev', 'lan0']);
  nsExec(lan, ['ip', 'link', 'set', 'lan0', 'up']);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-mv-'));
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  return { host, lan, dataDir };
}

const conf = (dataDir: string, extra: object = {}) => ({
  cniVersion: '1.0.0', name: 'mvnet', type: 'macvlan', master: 'par0', mode: 'bridge', ...extra,
  ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '10.240.0.0/24', rangeStart: '10.240.0.10' }]], routes: [{ dst: '0.0.0.0/0' }] },
});

rootTest('macvlan differential: result, container state, IPAM files, errors; cross-implementation DEL', async (t) => {
  const ref = lanSetup(t);
  const own = lanSetup(t);
  const [rc, oc] = [testNetns(t, 'vc'), testNetns(t, 'vc')];
  const r = await callPlugin(ref.host, REF_BIN, 'macvlan', { command: 'ADD', containerId: 'm1', netns: rc }, conf(ref.dataDir, { mtu: 1400 }));
  const o = await callPlugin(own.host, OWN_BIN, 'macvlan', { command: 'ADD', containerId: 'm1', netns: oc }, conf(own.dataDir, { mtu: 1400 }));
  t.is(r.code, 0, r.raw);
  t.is(o.code, 0, o.raw);
  t.deepEqual(normalizeResult(o.out), normalizeResult(r.out));
  const snap = (ns: string) => JSON.stringify(hostSnapshot(ns)).replace(/link-netns \S+/g, '');
  t.is(snap(oc), snap(rc), 'container: links, addresses, routes');
  t.regex(nsExec(oc, ['ip', '-d', 'link', 'show', 'eth0']), /macvlan mode bridge/);
  t.deepEqual(storeFiles(path.join(own.dataDir, 'mvnet')), storeFiles(path.join(ref.dataDir, 'mvnet')));
  for (const [extra, re] of [[{ mtu: 9000 }, /invalid MTU 9000, must be \[0, master MTU\(1500\)\]/], [{ mode: 'weird' }, /unknown macvlan mode: "weird"/], [{ master: 'nope0' }, /Link not found/]] as const) {
    const rr = await callPlugin(ref.host, REF_BIN, 'macvlan', { command: 'ADD', containerId: 'm2', netns: rc, ifname: 'eth1' }, conf(ref.dataDir, extra));
    const oo = await callPlugin(own.host, OWN_BIN, 'macvlan', { command: 'ADD', containerId: 'm2', netns: oc, ifname: 'eth1' }, conf(own.dataDir, extra));
    t.is(rr.code, 1);
    t.is(oo.code, 1);
    t.regex(String(oo.out.msg), re);
    t.false(nsExec(oc, ['ip', '-o', 'link']).includes('eth1'), 'nothing left by the failed ADD');
  }
  t.deepEqual(Object.keys(storeFiles(path.join(own.dataDir, 'mvnet'))).filter((f) => /^\d/.test(f)), ['10.240.0.10']);
  // Cross-implementation DEL.
  t.is((await callPlugin(own.host, REF_BIN, 'macvlan', { command: 'DEL', containerId: 'm1', netns: oc }, conf(own.dataDir))).code, 0);
  t.is((await callPlugin(ref.host, OWN_BIN, 'macvlan', { command: 'DEL', containerId: 'm1', netns: rc }, conf(ref.dataDir))).code, 0);
  for (const [ns, d] of [[oc, own.dataDir], [rc, ref.dataDir]]) {
    t.false(nsExec(ns, ['ip', '-o', 'link']).includes('eth0'));
    t.deepEqual(Object.keys(storeFiles(path.join(d, 'mvnet'))).filter((f) => /^\d/.test(f)), []);
  }
});

for (const mode of ['bridge', 'private', 'vepa'] as const) {
  rootTest(`macvlan ${mode} mode by traffic: LAN host <-> containers; containers ${mode === 'bridge' ? 'reach' : 'do NOT reach'} each other`, async (t) => {
    const { host, lan, dataDir } = lanSetup(t);
    const [c1, c2] = [testNetns(t, 'vc'), testNetns(t, 'vc')];
    for (const [id, c] of [['a', c1], ['b', c2]] as const) {
      const r = await callPlugin(host, OWN_BIN, 'macvlan', { command: 'ADD', containerId: id, netns: c }, conf(dataDir, { mode }));
      t.is(r.code, 0, r.raw);
    }
    t.regex(nsExec(lan, ['ping', '-c1', '-W2', '10.240.0.10']), /1 received/, 'LAN host to container');
    t.regex(nsExec(c2, ['ping', '-c1', '-W2', '10.240.0.200']), /1 received/, 'container to LAN host');
    const c2c = (() => {
      try {
        return nsExec(c1, ['ping', '-c1', '-W1', '10.240.0.11']);
      } catch {
        return 'no reply';
      }
    })();
    if (mode === 'bridge') t.regex(c2c, /1 received/, 'bridge mode: containers talk');
    // vepa sends even local traffic out to the parent's peer, which (a plain veth, not a
    // hairpinning switch) does not reflect it: no direct talk either.
    else t.is(c2c, 'no reply', `${mode} mode: containers must not talk`);
    for (const [id, c] of [['a', c1], ['b', c2]] as const) t.is((await callPlugin(host, OWN_BIN, 'macvlan', { command: 'DEL', containerId: id, netns: c }, conf(dataDir, { mode }))).code, 0);
    t.deepEqual(nsExec(host, ['ip', '-o', 'link']).split('\n').filter((l) => /macvlan|@par0/.test(l)), [], 'no macvlan left');
  });
}

rootTest('network create -d macvlan validates like podman; host shim: host <-> container both ways, gone after rm', async (t) => {
  const { host, lan } = lanSetup(t);
  nsExec(host, ['ip', 'addr', 'add', '10.240.0.250/24', 'dev', 'par0']); // the host's own address on the LAN
  const sb = sandbox(t, [OWN_BIN]);
  const create = (...a: string[]) => sb.run(['network', 'create', '-d', 'macvlan', ...a], { netns: host });
  sb.ok(['network', 'create', '--subnet', '10.60.0.0/16', 'taken'], { netns: host });
  const bad: [string[], RegExp][] = [
    [['-o', 'parent=nope0', '--subnet', '10.240.0.0/24', 'x'], /parent interface "nope0" does not exist/],
    [['-o', 'parent=par0', '-o', 'mode=weird', '--subnet', '10.240.0.0/24', 'x'], /invalid macvlan mode "weird"/],
    [['-o', 'parent=par0', '--ipam-driver', 'host-local', 'x'], /a macvlan network with host-local IPAM needs --subnet/],
    [['-o', 'parent=par0', '--ipam-driver', 'dhcp', '--subnet', '10.240.0.0/24', 'x'], /dhcp IPAM driver takes no --subnet/],
    [['-o', 'parent=par0', '--internal', 'x'], /dhcp IPAM driver cannot be used with --internal/],
    [['-o', 'parent=par0', '--ipam-driver', 'static', 'x'], /unsupported IPAM driver "static"/],
    [['-o', 'parent=par0', '--subnet', '10.60.1.0/24', 'x'], /overlaps subnet 10\.60\.0\.0\/16 of network "taken"/],
  ];
  for (const [args, re] of bad) {
    const r = create(...args);
    t.is(r.code, 125, args.join(' '));
    t.regex(r.stderr, re);
  }
  nsExec(host, ['ip', 'link', 'add', 'pt0', 'link', 'par0', 'type', 'macvlan', 'mode', 'passthru']);
  t.regex(create('-o', 'parent=pt0', '--subnet', '10.240.0.0/24', 'x').stderr, /"pt0" is a macvlan in passthru mode/);
  nsExec(host, ['ip', 'link', 'del', 'pt0']);
  t.regex(sb.run(['network', 'create', '-d', 'ipvlan', '-o', 'parent=par0', '-o', 'mode=bridge', '--subnet', '10.240.0.0/24', 'x'], { netns: host }).stderr, /invalid ipvlan mode "bridge": expected l2, l3, l3s/);
  t.regex(sb.run(['network', 'create', '-d', 'ipvlan', '-o', 'parent=par0', '-o', 'host_shim=true', '--subnet', '10.240.0.0/24', 'x'], { netns: host }).stderr, /unsupported ipvlan option "host_shim"/);
  sb.ok(['network', 'rm', 'taken'], { netns: host });
  t.deepEqual(fs.existsSync(sb.confDir) ? fs.readdirSync(sb.confDir) : [], [], 'no conflist written by the failures');
  t.is(sb.run(['network', 'create', '-d', 'ipvlan', '-o', 'parent=par0', '-o', 'mode=l3', '--subnet', '10.241.0.0/24', 'iv'], { netns: host }).code, 0);
  t.like(JSON.parse(fs.readFileSync(path.join(sb.confDir, 'iv.conflist'), 'utf8')).plugins[0], { type: 'ipvlan', master: 'par0', mode: 'l3' });
  sb.ok(['network', 'rm', 'iv'], { netns: host });

  const net = 'mvshim';
  t.is(create('-o', 'parent=par0', '-o', 'host_shim=true', '--subnet', '10.240.0.0/24', '--ip-range', '10.240.0.16/28', net).code, 0);
  const doc = JSON.parse(fs.readFileSync(path.join(sb.confDir, `${net}.conflist`), 'utf8'));
  t.like(doc.plugins[0], { type: 'macvlan', master: 'par0', hostShim: true, linkInContainer: false });
  const ctr = testNetns(t, 'vc');
  t.teardown(() => fs.rmSync(path.join('/var/lib/cni/networks', net), { recursive: true, force: true }));
  const r = JSON.parse(sb.ok(['cni', 'add', net, ctr, '--id', 's1'], { netns: host }));
  const ctrIp = r.ips[0].address.split('/')[0];
  t.regex(nsExec(host, ['ping', '-c1', '-W2', ctrIp]), /1 received/, 'host to container through the shim');
  const shimAddr = nsExec(host, ['ip', '-o', '-4', 'addr']).split('\n').find((l) => / bs[0-9a-f]{10} /.test(l))!.split(/\s+/)[3].split('/')[0];
  t.regex(nsExec(ctr, ['ping', '-c1', '-W2', shimAddr]), /1 received/, 'container to host (the shim address)');
  t.regex(nsExec(lan, ['ping', '-c1', '-W2', ctrIp]), /1 received/, 'the LAN still reaches the container');
  sb.ok(['cni', 'del', net, ctr, '--id', 's1'], { netns: host });
  sb.ok(['network', 'rm', net], { netns: host });
  t.deepEqual(nsExec(host, ['ip', '-o', 'link']).split('\n').filter((l) => / bs[0-9a-f]{10}@/.test(l)), [], 'no shim left');
  t.false(fs.existsSync(path.join('/var/lib/cni/networks', net)), 'the shim\'s reservation and the store are gone');
});

rootTest('without the shim the host cannot reach its macvlan container (the kernel property the shim works around)', async (t) => {
  const { host, dataDir } = lanSetup(t);
  nsExec(host, ['ip', 'addr', 'add', '10.240.0.250/24', 'dev', 'par0']);
  const ctr = testNetns(t, 'vc');
  t.is((await callPlugin(host, OWN_BIN, 'macvlan', { command: 'ADD', containerId: 'n1', netns: ctr }, conf(dataDir))).code, 0);
  t.throws(() => nsExec(host, ['ping', '-c1', '-W1', '10.240.0.10']), undefined, 'host to container fails through the parent');
  t.is((await callPlugin(host, OWN_BIN, 'macvlan', { command: 'DEL', containerId: 'n1', netns: ctr }, conf(dataDir))).code, 0);
});

rootTest('ipvlan on a kernel without ipvlan: burrow and the reference both fail clearly and leave nothing', async (t) => {
  const { host, dataDir } = lanSetup(t);
  const ctr = testNetns(t, 'vc');
  const ipvlan = (extra: object = {}) => ({ ...conf(dataDir), type: 'ipvlan', mode: 'l2', ...extra });
  const probe = (() => {
    try {
      nsExec(host, ['ip', 'link', 'add', 'ivprobe', 'link', 'par0', 'type', 'ipvlan']);
      nsExec(host, ['ip', 'link', 'del', 'ivprobe']);
      return true;
    } catch {
      return false;
    }
  })();
  const own = await callPlugin(host, OWN_BIN, 'ipvlan', { command: 'ADD', containerId: 'i1', netns: ctr }, ipvlan());
  const ref = await callPlugin(host, REF_BIN, 'ipvlan', { command: 'ADD', containerId: 'i2', netns: ctr, ifname: 'eth1' }, ipvlan());
  if (probe) {
    t.is(own.code, 0, own.raw);
    t.is(ref.code, 0, ref.raw);
    t.regex(nsExec(ctr, ['ip', '-d', 'link', 'show', 'eth0']), /ipvlan\s+mode l2/);
  } else {
    t.log('this kernel has no ipvlan driver: checking the failure path');
    t.is(own.code, 1);
    t.is(ref.code, 1);
    t.regex(String(own.out.msg), /cannot add ipvlan .* (EOPNOTSUPP|ENOTSUP)/);
    t.deepEqual(nsExec(ctr, ['ip', '-o', 'link']).split('\n').filter(Boolean).length, 1, 'nothing left in the container');
    t.deepEqual(Object.keys(storeFiles(path.join(dataDir, 'mvnet'))).filter((f) => /^\d/.test(f)), [], 'no reservation left');
  }
});

rootTest('macvlan passthru: one container takes over the parent and reaches the LAN; a second is refused', async (t) => {
  const { host, lan, dataDir } = lanSetup(t);
  const [c1, c2] = [testNetns(t, 'vc'), testNetns(t, 'vc')];
  const r = await callPlugin(host, OWN_BIN, 'macvlan', { command: 'ADD', containerId: 'p1', netns: c1 }, conf(dataDir, { mode: 'passthru' }));
  t.is(r.code, 0, r.raw);
  t.regex(nsExec(lan, ['ping', '-c1', '-W2', '10.240.0.10']), /1 received/);
  const second = await callPlugin(host, OWN_BIN, 'macvlan', { command: 'ADD', containerId: 'p2', netns: c2 }, conf(dataDir, { mode: 'passthru' }));
  t.is(second.code, 1, 'a passthru parent takes one macvlan only');
  t.deepEqual(nsExec(c2, ['ip', '-o', 'link']).split('\n').filter(Boolean).length, 1, 'nothing left by the refused ADD');
  t.deepEqual(Object.keys(storeFiles(path.join(dataDir, 'mvnet'))).filter((f) => /^\d/.test(f)), ['10.240.0.10']);
  t.is((await callPlugin(host, OWN_BIN, 'macvlan', { command: 'DEL', containerId: 'p1', netns: c1 }, conf(dataDir, { mode: 'passthru' }))).code, 0);
});

// An address that moves to a new container (a new MAC) must reach the LAN at once: the LAN still
// holds the old MAC, and Linux keeps using a STALE entry for about 8 s (DELAY, then 3 unicast
// probes) before it asks again. burrow's macvlan adds the addresses before it brings the link up
// with arp_notify=1, so the kernel announces them (gratuitous ARP) on link up. The reference has
// sent nothing since it replaced arping by arp_notify (plugins#687): it brings the link up first,
// when there is no address to announce (podman#24432, netavark#1114).
rootTest('macvlan: an address reused by a new container is announced; the LAN\'s stale entry gets the new MAC without traffic', async (t) => {
  const { host, lan, dataDir } = lanSetup(t);
  const neigh = () => nsExec(lan, ['ip', 'neigh', 'show', '10.240.0.10', 'dev', 'lan0']).trim();
  for (const [bin, announces] of [[OWN_BIN, true], [REF_BIN, false]] as const) {
    const c = testNetns(t, 'vc');
    nsExec(lan, ['ip', 'neigh', 'replace', '10.240.0.10', 'lladdr', '02:00:00:00:00:01', 'dev', 'lan0', 'nud', 'stale']);
    const r = await callPlugin(host, bin, 'macvlan', { command: 'ADD', containerId: 'garp', netns: c }, conf(dataDir));
    t.is(r.code, 0, r.raw);
    const mac = String((r.out.interfaces as Array<{ mac: string }>)[0].mac);
    let seen = neigh();
    for (let i = 0; i < 20 && !seen.includes(mac); i++) {
      await new Promise((res) => setTimeout(res, 25));
      seen = neigh();
    }
    if (announces) t.true(seen.includes(mac), `burrow: the LAN's entry after ADD: ${seen} (container ${mac})`);
    else t.true(seen.includes('02:00:00:00:00:01'), `the reference announces nothing (if it does again, this test can say so): ${seen}`);
    t.is((await callPlugin(host, bin, 'macvlan', { command: 'DEL', containerId: 'garp', netns: c }, conf(dataDir))).code, 0);
  }
});
