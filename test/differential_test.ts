/**
 * Differential tests: the same config and arguments go to the reference plugin
 * (/usr/lib/cni) and to burrow's, each in its own twin "host" and "container"
 * namespaces. Results (apart from MACs and veth names), kernel state, firewall
 * rules and the host-local files must match; then DEL of one implementation
 * must clean up the ADD of the other.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nsExec, rootTest, testNetns } from './helpers/netns.js';
import { callPlugin, hostSnapshot, normalizeResult, OWN_BIN, REF_BIN, storeFiles } from './helpers/cni.js';

interface Twin {
  host: string;
  ctr: string;
  dataDir: string;
}

function twin(t: import('ava').ExecutionContext): Twin {
  const host = testNetns(t, 'dh');
  const ctr = testNetns(t, 'dc');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-diff-'));
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  return { host, ctr, dataDir };
}

function bridgeConf(tw: Twin, extra: object, ipam: object | null) {
  return {
    cniVersion: '1.0.0',
    name: 'diffnet',
    type: 'bridge',
    bridge: 'cni-diff0',
    ...extra,
    ...(ipam ? { ipam: { type: 'host-local', dataDir: tw.dataDir, ...ipam } } : {}),
  };
}

const CASES: { name: string; extra: object; ipam: object | null; expectFailure?: RegExp }[] = [
  { name: 'gateway + ipMasq + hairpin (podman style)', extra: { isGateway: true, ipMasq: true, hairpinMode: true }, ipam: { ranges: [[{ subnet: '10.231.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } },
  {
    name: 'dual stack, default gateway, mtu',
    extra: { isGateway: true, isDefaultGateway: true, ipMasq: true, mtu: 1400 },
    ipam: { ranges: [[{ subnet: '10.232.0.0/24', rangeStart: '10.232.0.10' }], [{ subnet: 'fd00:232::/64' }]] },
  },
  { name: 'L2 only (no IPAM)', extra: {}, ipam: null },
  {
    name: 'vlan with gateway', extra: { isGateway: true, vlan: 42 }, ipam: { ranges: [[{ subnet: '10.233.0.0/24' }]] },
    expectFailure: /cannot add bridge "cni-diff0".*(EOPNOTSUPP|ENOTSUP)/,
  },
];

for (const c of CASES) {
  rootTest(`bridge differential: ${c.name}`, async (t) => {
    const ref = twin(t);
    const own = twin(t);
    const files = (tw: Twin) => storeFiles(path.join(tw.dataDir, 'diffnet'));
    const spec = (tw: Twin) => ({ command: 'ADD', containerId: 'ctr-diff', netns: tw.ctr });
    const rRef = await callPlugin(ref.host, REF_BIN, 'bridge', spec(ref), bridgeConf(ref, c.extra, c.ipam));
    const rOwn = await callPlugin(own.host, OWN_BIN, 'bridge', spec(own), bridgeConf(own, c.extra, c.ipam));
    if (c.expectFailure && rRef.code !== 0) {
      // This kernel lacks what the case needs (bridge VLAN filtering): both must fail, cleanly.
      t.log(`reference: ${(rRef.out as { msg?: string }).msg}`);
      t.is(rOwn.code, 1, rOwn.raw);
      t.regex((rOwn.out as { msg: string }).msg, c.expectFailure);
      for (const tw of [ref, own]) {
        t.deepEqual((hostSnapshot(tw.host) as { links: string[] }).links, ['lo loopback mtu=65536 master=- UP'], 'nothing left in the host');
        t.deepEqual(Object.keys(files(tw)).filter((f) => /^\d|:/.test(f)), [], 'no reservation left');
      }
      return;
    }
    t.is(rRef.code, 0, rRef.raw + rRef.stderr);
    t.is(rOwn.code, 0, rOwn.raw + rOwn.stderr);
    t.deepEqual(normalizeResult(rOwn.out), normalizeResult(rRef.out), 'result JSON');
    t.deepEqual(hostSnapshot(own.host), hostSnapshot(ref.host), 'host netns: links, addresses, routes, rules');
    t.deepEqual(hostSnapshot(own.ctr), hostSnapshot(ref.ctr), 'container netns');
    t.deepEqual(files(own), files(ref), 'host-local files');
    if (c.extra && (c.extra as { vlan?: number }).vlan) {
      const vlans = (ns: string) => nsExec(ns, ['bridge', 'vlan', 'show']).replace(/veth[0-9a-f]{8}/g, 'vethX').split('\n').map((l) => l.trim()).filter(Boolean).sort();
      t.deepEqual(vlans(own.host), vlans(ref.host), 'bridge VLAN table');
    }

    // Cross-implementation DEL: each side's DEL cleans up the other's ADD.
    const conf = (tw: Twin) => ({ ...bridgeConf(tw, c.extra, c.ipam), prevResult: tw === ref ? rRef.out : rOwn.out });
    const dRef = await callPlugin(own.host, REF_BIN, 'bridge', { ...spec(own), command: 'DEL' }, conf(own));
    const dOwn = await callPlugin(ref.host, OWN_BIN, 'bridge', { ...spec(ref), command: 'DEL' }, conf(ref));
    t.is(dRef.code, 0, dRef.raw);
    t.is(dOwn.code, 0, dOwn.raw);
    for (const tw of [ref, own]) {
      const snap = hostSnapshot(tw.host) as { links: string[]; nat4: string[]; nat6: string[] };
      t.false(snap.links.some((l) => l.startsWith('vethX')), 'no host veth left');
      t.deepEqual(snap.nat4.filter((r) => r.includes('CNI-')), [], 'no masquerade chain or jump left (IPv4)');
      t.deepEqual(snap.nat6.filter((r) => r.includes('CNI-')), [], 'no masquerade chain or jump left (IPv6)');
      t.deepEqual(Object.keys(files(tw)).filter((f) => /^\d|:/.test(f)), [], 'no reservation left');
      t.deepEqual((hostSnapshot(tw.ctr) as { links: string[] }).links, ['lo loopback mtu=65536 master=- '], 'container interface gone');
    }
  });
}

rootTest('host-local differential: allocation order, wraparound, requested IPs, errors and files', async (t) => {
  const ref = twin(t);
  const own = twin(t);
  const conf = (tw: Twin) => ({ cniVersion: '1.0.0', name: 'hlnet', type: 'host-local', ipam: { type: 'host-local', dataDir: tw.dataDir, ranges: [[{ subnet: '10.234.0.0/29' }], [{ subnet: 'fd00:234::/125' }]] } });
  const steps: [string, string, string?][] = [['ADD', 'a'], ['ADD', 'b'], ['ADD', 'c', 'IP=10.234.0.6'], ['DEL', 'b'], ['ADD', 'd'], ['ADD', 'e'], ['ADD', 'f'], ['ADD', 'g'], ['ADD', 'a'], ['CHECK', 'a'], ['CHECK', 'zz'], ['DEL', 'a'], ['DEL', 'a']];
  for (const [command, id, args] of steps) {
    const spec = { command, containerId: id, netns: ref.ctr, args: args ? `IgnoreUnknown=1;${args}` : 'IgnoreUnknown=1' };
    const r = await callPlugin(ref.host, REF_BIN, 'host-local', spec, conf(ref));
    const o = await callPlugin(own.host, OWN_BIN, 'host-local', { ...spec, netns: own.ctr }, conf(own));
    t.is(o.code, r.code, `${command} ${id}: exit code (${r.raw} vs ${o.raw})`);
    const strip = (x: Record<string, unknown>) => { const { cniVersion: _v, ...rest } = x; return rest; };
    if (r.code === 0) t.deepEqual(o.out, r.out, `${command} ${id}: result`);
    else t.deepEqual(strip(o.out), strip(r.out), `${command} ${id}: error JSON`);
    t.deepEqual(storeFiles(path.join(own.dataDir, 'hlnet')), storeFiles(path.join(ref.dataDir, 'hlnet')), `${command} ${id}: files`);
  }
});

rootTest('loopback and tuning differential, and cross-implementation DEL of tuning', async (t) => {
  const ref = twin(t);
  const own = twin(t);
  const lo = { cniVersion: '1.0.0', name: 'lonet', type: 'loopback' };
  const lr = await callPlugin(ref.host, REF_BIN, 'loopback', { command: 'ADD', containerId: 'l1', netns: ref.ctr }, lo);
  const lw = await callPlugin(own.host, OWN_BIN, 'loopback', { command: 'ADD', containerId: 'l1', netns: own.ctr }, lo);
  t.deepEqual(normalizeResult(lw.out), normalizeResult(lr.out));
  t.deepEqual(hostSnapshot(own.ctr), hostSnapshot(ref.ctr));
  for (const tw of [ref, own]) nsExec(tw.ctr, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
  const tuningDir = (tw: Twin) => path.join(tw.dataDir, 'tuning');
  const tun = (tw: Twin) => ({
    cniVersion: '1.0.0', name: 'tnet', type: 'tuning', mtu: 1300, promisc: true, mac: '02:12:34:56:78:9a', dataDir: tuningDir(tw),
    sysctl: { 'net.ipv4.conf.IFNAME.arp_filter': '1' },
    prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: tw.ctr }] },
  });
  const tr = await callPlugin(ref.host, REF_BIN, 'tuning', { command: 'ADD', containerId: 't1', netns: ref.ctr }, tun(ref));
  const tw2 = await callPlugin(own.host, OWN_BIN, 'tuning', { command: 'ADD', containerId: 't1', netns: own.ctr }, tun(own));
  t.is(tr.code, 0, tr.raw);
  t.is(tw2.code, 0, tw2.raw);
  t.deepEqual(normalizeResult(tw2.out), normalizeResult(tr.out));
  const link = (tw: Twin) => nsExec(tw.ctr, ['ip', '-d', 'link', 'show', 'eth0']).replace(/^\d+: /, '').split('\n').slice(0, 2).join(' ').replace(/peer0@\S+/, '');
  t.is(link(own), link(ref));
  t.is(nsExec(own.ctr, ['sysctl', '-n', 'net.ipv4.conf.eth0.arp_filter']).trim(), '1');
  const saved = (tw: Twin) => fs.readFileSync(path.join(tuningDir(tw), 't1_eth0.json'), 'utf8').replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/, 'MAC');
  t.is(saved(own), saved(ref), 'the saved originals, byte for byte (the random MAC aside)');
  // Each implementation's DEL restores what the other's ADD changed.
  t.is((await callPlugin(own.host, REF_BIN, 'tuning', { command: 'DEL', containerId: 't1', netns: own.ctr }, tun(own))).code, 0);
  t.is((await callPlugin(ref.host, OWN_BIN, 'tuning', { command: 'DEL', containerId: 't1', netns: ref.ctr }, tun(ref))).code, 0);
  for (const tw of [ref, own]) {
    t.regex(nsExec(tw.ctr, ['ip', 'link', 'show', 'eth0']), /mtu 1500 /);
    t.notRegex(nsExec(tw.ctr, ['ip', 'link', 'show', 'eth0']), /PROMISC|02:12:34:56:78:9a/);
    t.deepEqual(fs.readdirSync(tuningDir(tw)), []);
  }
});

rootTest('portmap differential: rule text byte for byte, both families; cross-implementation DEL', async (t) => {
  const ref = twin(t);
  const own = twin(t);
  const conf = (tw: Twin) => ({
    cniVersion: '1.0.0', name: 'pmnet', type: 'portmap', capabilities: { portMappings: true },
    runtimeConfig: { portMappings: [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' }, { hostPort: 53, containerPort: 53, protocol: 'udp' },
      { hostPort: 9000, containerPort: 90, protocol: 'tcp', hostIP: '127.0.0.1' }, { hostPort: 7000, containerPort: 70, protocol: 'sctp' },
      { hostPort: 8443, containerPort: 443, protocol: 'tcp' },
    ] },
    prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'br0' }, { name: 'eth0', sandbox: tw.ctr }], ips: [{ address: '10.235.0.3/24', interface: 1 }, { address: 'fd00:235::3/64', interface: 1 }], dns: {} },
  });
  const spec = (tw: Twin, command: string) => ({ command, containerId: 'pm1', netns: tw.ctr });
  const r = await callPlugin(ref.host, REF_BIN, 'portmap', spec(ref, 'ADD'), conf(ref));
  const o = await callPlugin(own.host, OWN_BIN, 'portmap', spec(own, 'ADD'), conf(own));
  t.is(r.code, 0, r.raw);
  t.is(o.code, 0, o.raw);
  t.deepEqual(normalizeResult(o.out), normalizeResult(r.out));
  const rules = (tw: Twin) => ({ v4: nsExec(tw.host, ['iptables-save', '-t', 'nat']).split('\n').filter((l) => /^[-:]/.test(l)), v6: nsExec(tw.host, ['ip6tables-save', '-t', 'nat']).split('\n').filter((l) => /^[-:]/.test(l)) });
  t.deepEqual(rules(own), rules(ref), 'iptables-save output identical');
  t.is((await callPlugin(own.host, OWN_BIN, 'portmap', spec(own, 'CHECK'), conf(own))).code, 0);
  // Each implementation's DEL removes the other's ADD.
  t.is((await callPlugin(own.host, REF_BIN, 'portmap', spec(own, 'DEL'), conf(own))).code, 0);
  const crossDel = await callPlugin(ref.host, OWN_BIN, 'portmap', spec(ref, 'DEL'), conf(ref));
  t.is(crossDel.code, 0, crossDel.raw);
  for (const tw of [ref, own]) {
    const left = [...rules(tw).v4, ...rules(tw).v6].filter((l) => l.includes('CNI-DN-'));
    t.deepEqual(left, [], 'no per-container chain or jump left');
  }
  t.deepEqual(rules(ref).v4.filter((l) => l.includes('CNI-')), [], 'burrow also removes the shared chains once unused');
});

rootTest('firewall differential: rule text for open and same-bridge policies; cross-implementation DEL', async (t) => {
  const ref = twin(t);
  const own = twin(t);
  const conf = (tw: Twin, _id: string, ip: string, ingressPolicy = 'open') => ({
    cniVersion: '1.0.0', name: 'fwnet', type: 'firewall', backend: '', ingressPolicy,
    prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'br0' }, { name: 'veth1' }, { name: 'eth0', sandbox: tw.ctr }], ips: [{ address: `10.236.0.${ip}/24`, interface: 2 }, { address: `fd00:236::${ip}/64`, interface: 2 }], dns: {} },
  });
  const filter = (tw: Twin) => [...nsExec(tw.host, ['iptables-save', '-t', 'filter']).split('\n'), ...nsExec(tw.host, ['ip6tables-save', '-t', 'filter']).split('\n')].filter((l) => /^[-:]/.test(l));
  const steps: [string, string, string, string][] = [['ADD', 'f1', '3', 'open'], ['ADD', 'f2', '4', 'same-bridge'], ['ADD', 'f1', '3', 'open'], ['CHECK', 'f2', '4', 'same-bridge'], ['DEL', 'f1', '3', 'open']];
  for (const [command, id, ip, pol] of steps) {
    const r = await callPlugin(ref.host, REF_BIN, 'firewall', { command, containerId: id, netns: ref.ctr }, conf(ref, id, ip, pol));
    const o = await callPlugin(own.host, OWN_BIN, 'firewall', { command, containerId: id, netns: own.ctr }, conf(own, id, ip, pol));
    t.is(o.code, r.code, `${command} ${id}: ${r.raw} / ${o.raw}`);
    t.deepEqual(normalizeResult(o.out), normalizeResult(r.out), `${command} ${id}: result`);
    t.deepEqual(filter(own), filter(ref), `${command} ${id}: iptables-save filter`);
  }
  // The reference's DEL removes burrow's rules and the other way round.
  t.is((await callPlugin(own.host, REF_BIN, 'firewall', { command: 'DEL', containerId: 'f2', netns: own.ctr }, conf(own, 'f2', '4', 'same-bridge'))).code, 0);
  t.is((await callPlugin(ref.host, OWN_BIN, 'firewall', { command: 'DEL', containerId: 'f2', netns: ref.ctr }, conf(ref, 'f2', '4', 'same-bridge'))).code, 0);
  t.false(filter(own).some((l) => /10\.236|fd00:236/.test(l)), 'no per-address rule left (reference DEL of burrow ADD)');
  t.deepEqual(filter(ref).filter((l) => l.includes('CNI')), [], 'burrow\'s DEL of the last attachment removes the chains too');
});
