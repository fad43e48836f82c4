/**
 * burrow's macvlan plugin: differential against the reference, and the classic scenario by
 * traffic. The parent is one end of a veth pair whose other end sits in a "LAN" namespace with
 * a LAN host; containers on the parent reach the LAN host and, in bridge mode, each other; in
 * private mode they must not.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nsExec, requireRoot, testNetns } from './helpers/netns.js';
import { callPlugin, hostSnapshot, normalizeResult, OWN_BIN, REF_BIN, storeFiles } from './helpers/cni.js';

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

test('macvlan differential: result, container state, IPAM files, errors; cross-implementation DEL', async (t) => {
  if (!requireRoot(t)) return;
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

for (const mode of ['bridge', 'private'] as const) {
  test(`macvlan ${mode} mode by traffic: LAN host <-> containers; containers ${mode === 'bridge' ? 'reach' : 'do NOT reach'} each other`, async (t) => {
    if (!requireRoot(t)) return;
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
    else t.is(c2c, 'no reply', 'private mode: containers must not talk');
    for (const [id, c] of [['a', c1], ['b', c2]] as const) t.is((await callPlugin(host, OWN_BIN, 'macvlan', { command: 'DEL', containerId: id, netns: c }, conf(dataDir, { mode }))).code, 0);
    t.deepEqual(nsExec(host, ['ip', '-o', 'link']).split('\n').filter((l) => /macvlan|@par0/.test(l)), [], 'no macvlan left');
  });
}
