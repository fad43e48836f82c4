/**
 * burrow's firewall plugin by traffic: with the host's FORWARD policy at DROP, a container reaches
 * the outside only through the plugin's accept rules (iptables); ingress isolation keeps new
 * connections from outside off the bridge while the container's own connections work (both
 * backends); DEL removes everything.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { nsExec, peerEchoServer, rootTest, tcpRequest, testNetns, uplink } from './helpers/netns.js';
import { callPlugin, OWN_BIN } from './helpers/cni.js';

const rand = () => crypto.randomBytes(3).toString('hex');

async function attach(t: import('ava').ExecutionContext, backend: string, ingressPolicy: string) {
  const host = testNetns(t, 'fh');
  const outside = testNetns(t, 'fo');
  const ctr = testNetns(t, 'fc');
  await uplink(host, outside, '198.18.4.2', '198.18.4.1');
  nsExec(outside, ['ip', 'route', 'add', '10.250.0.0/24', 'via', '198.18.4.2']);
  const dataDir = path.join('/tmp', `burrow-fw-${rand()}`);
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const bridge = { cniVersion: '1.0.0', name: 'fwt', type: 'bridge', bridge: 'fwbr0', isGateway: true, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '10.250.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } };
  const b = await callPlugin(host, OWN_BIN, 'bridge', { command: 'ADD', containerId: 'w1', netns: ctr }, bridge);
  t.is(b.code, 0, b.raw);
  const fw = { cniVersion: '1.0.0', name: 'fwt', type: 'firewall', backend, ingressPolicy, prevResult: b.out };
  const f = await callPlugin(host, OWN_BIN, 'firewall', { command: 'ADD', containerId: 'w1', netns: ctr }, fw);
  t.is(f.code, 0, f.raw);
  return { host, outside, ctr, fw, bridge };
}

rootTest.serial('iptables: with FORWARD policy DROP the container gets out only through the plugin\'s rules', async (t) => {
  const { host, outside, ctr, fw } = await attach(t, 'iptables', 'open');
  nsExec(host, ['iptables', '-P', 'FORWARD', 'DROP']);
  await peerEchoServer(t, outside, '198.18.4.1', 7300);
  t.is(await tcpRequest(ctr, '198.18.4.1', 7300), '10.250.0.2', 'accepted by CNI-FORWARD (routed, no masquerade)');
  t.is((await callPlugin(host, OWN_BIN, 'firewall', { command: 'CHECK', containerId: 'w1', netns: ctr }, fw)).code, 0);
  t.is((await callPlugin(host, OWN_BIN, 'firewall', { command: 'DEL', containerId: 'w1', netns: ctr }, fw)).code, 0);
  t.is(await tcpRequest(ctr, '198.18.4.1', 7300, 2).then(() => 'passed', () => 'dropped'), 'dropped', 'without the rules the policy drops it');
  t.notRegex(nsExec(host, ['iptables-save', '-t', 'filter']), /CNI-/, 'the last DEL removed the chains');
});

for (const backend of ['iptables', 'nftables']) {
  rootTest.serial(`${backend}: ingressPolicy same-bridge keeps two isolated networks apart; the outside stays reachable`, async (t) => {
    const { host, outside, ctr, fw } = await attach(t, backend, 'same-bridge');
    const ctr2 = testNetns(t, 'fc');
    const dataDir = path.join('/tmp', `burrow-fw-${rand()}`);
    t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const bridge2 = { cniVersion: '1.0.0', name: 'fwt2', type: 'bridge', bridge: 'fwbr1', isGateway: true, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '10.251.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } };
    const b2 = await callPlugin(host, OWN_BIN, 'bridge', { command: 'ADD', containerId: 'w2', netns: ctr2 }, bridge2);
    const fw2 = { cniVersion: '1.0.0', name: 'fwt2', type: 'firewall', backend, ingressPolicy: 'same-bridge', prevResult: b2.out };
    t.is((await callPlugin(host, OWN_BIN, 'firewall', { command: 'ADD', containerId: 'w2', netns: ctr2 }, fw2)).code, 0);
    await peerEchoServer(t, outside, '198.18.4.1', 7301);
    await peerEchoServer(t, ctr2, '0.0.0.0', 7302);
    t.is(await tcpRequest(ctr, '198.18.4.1', 7301), '10.250.0.2', 'to the outside: allowed');
    t.is(await tcpRequest(ctr, '10.251.0.2', 7302, 2).then(() => 'passed', () => 'dropped'), 'dropped', 'to the other isolated network: dropped');
    const lost = await callPlugin(host, OWN_BIN, 'firewall', { command: 'DEL', containerId: 'gone', netns: ctr2 }, { ...fw2, prevResult: undefined });
    t.is(lost.code, 0, `a DEL without prevResult (its cache entry lost) succeeds: ${JSON.stringify(lost.out)}`);
    t.is(await tcpRequest(ctr, '10.251.0.2', 7302, 2).then(() => 'passed', () => 'dropped'), 'dropped', 'and leaves the others\' isolation alone');
    for (const [id, c, f] of [['w1', ctr, fw], ['w2', ctr2, fw2]] as const) t.is((await callPlugin(host, OWN_BIN, 'firewall', { command: 'DEL', containerId: id, netns: c }, f)).code, 0);
    t.is(await tcpRequest(ctr, '10.251.0.2', 7302), '10.250.0.2', 'after DEL the networks reach each other again');
    const rules = backend === 'iptables' ? nsExec(host, ['iptables-save']) : nsExec(host, ['nft', 'list', 'ruleset']);
    t.notRegex(rules, /CNI-|cni_firewall/, 'nothing left');
  });
}
