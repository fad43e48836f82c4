/**
 * burrow's portmap on the real kernel, with each backend: every path a published port is reached
 * by, proven by traffic (outside client, host via 127.0.0.1, host via its own address, a container
 * to its own published port, a container to another's, IPv6), a 1000-port range, host-port
 * conflicts, and nothing left after DEL.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { nsExec, peerEchoServer, rootTest, tcpRequest, testNetns, uplink } from './helpers/netns.js';
import { sandbox } from './helpers/burrow.js';
import { OWN_BIN } from './helpers/cni.js';

const rand = () => crypto.randomBytes(3).toString('hex');

for (const backend of ['iptables', 'nftables'] as const) {
  rootTest.serial(`portmap (${backend}): every path by traffic, IPv6, a 1000-port range, conflicts, clean DEL`, async (t) => {
    const sb = sandbox(t, [OWN_BIN]);
    const host = testNetns(t, 'mh');
    const outside = testNetns(t, 'mo');
    const [c1, c2, c3] = [testNetns(t, 'mc'), testNetns(t, 'mc'), testNetns(t, 'mc')];
    await uplink(host, outside, '198.18.3.2', '198.18.3.1');
    nsExec(host, ['ip', '-6', 'addr', 'add', 'fd00:198::2/64', 'dev', 'up0', 'nodad']);
    nsExec(outside, ['ip', '-6', 'addr', 'add', 'fd00:198::1/64', 'dev', 'eth0', 'nodad']);
    const net = `pm-${rand()}`;
    fs.mkdirSync(sb.confDir, { recursive: true });
    fs.writeFileSync(path.join(sb.confDir, `${net}.conflist`), JSON.stringify({
      cniVersion: '1.0.0', name: net,
      plugins: [
        {
          type: 'bridge', bridge: 'pmbr0', isGateway: true, ipMasq: true, hairpinMode: true, ipMasqBackend: backend,
          ipam: { type: 'host-local', dataDir: path.join(sb.dir, 'ipam'), ranges: [[{ subnet: '10.249.0.0/24' }], [{ subnet: 'fd00:249::/64' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] },
        },
        { type: 'portmap', backend, capabilities: { portMappings: true } },
      ],
    }));
    const range = Array.from({ length: 1000 }, (_, i) => ({ hostPort: 20000 + i, containerPort: 30000 + i, protocol: 'tcp' }));
    const caps1 = JSON.stringify({ portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }, ...range] });
    const caps2 = JSON.stringify({ portMappings: [{ hostPort: 8081, containerPort: 80, protocol: 'tcp' }] });
    sb.ok(['cni', 'add', net, c1, '--id', 'm1', '--cap-args', caps1], { netns: host });
    sb.ok(['cni', 'add', net, c2, '--id', 'm2', '--cap-args', caps2], { netns: host });
    for (const [c, port] of [[c1, 80], [c2, 80], [c1, 30000], [c1, 30999], [c1, 30500]] as const) await peerEchoServer(t, c, '0.0.0.0', port);
    await peerEchoServer(t, c1, '::', 80);

    t.is(await tcpRequest(outside, '198.18.3.2', 8080), '198.18.3.1', 'outside client, source kept');
    t.is(await tcpRequest(host, '127.0.0.1', 8080), '10.249.0.1', 'host via 127.0.0.1 (route_localnet), masqueraded');
    t.is(await tcpRequest(host, '198.18.3.2', 8080), '198.18.3.2', 'host via its own address');
    t.is(await tcpRequest(c1, '198.18.3.2', 8080), '10.249.0.1', 'container to its own published port (hairpin, masqueraded)');
    t.is(await tcpRequest(c2, '198.18.3.2', 8080), '10.249.0.1', 'container to another container\'s published port (same subnet: masqueraded, as the reference does)');
    t.is(await tcpRequest(outside, 'fd00:198::2', 8080), 'fd00:198::1', 'IPv6 from outside');
    for (const p of [20000, 20999, 20500]) t.is(await tcpRequest(outside, '198.18.3.2', p), '198.18.3.1', `range port ${p} -> ${p + 10000}`);
    const rules = backend === 'iptables' ? nsExec(host, ['iptables-save', '-t', 'nat']) : nsExec(host, ['nft', 'list', 'table', 'ip', 'cni_hostport']);
    const ruleCount = rules.split('\n').filter((l) => /-j DNAT|dnat to/.test(l)).length;
    t.is(ruleCount, 3, 'm1\'s 1001 mappings cost two DNAT rules (8080, and one for the range), m2\'s one');

    const conflict = sb.run(['cni', 'add', net, c3, '--id', 'm3', '--cap-args', caps2], { netns: host });
    t.is(conflict.code, 125);
    t.regex(conflict.stderr, /host port 8081\/tcp is already mapped to container "m2"/);
    t.deepEqual(nsExec(c3, ['ip', '-o', 'link']).split('\n').filter(Boolean).length, 1, 'the failed ADD was rolled back');

    sb.ok(['cni', 'del', net, c1, '--id', 'm1'], { netns: host });
    sb.ok(['cni', 'del', net, c2, '--id', 'm2'], { netns: host });
    const after = backend === 'iptables' ? nsExec(host, ['iptables-save']) + nsExec(host, ['ip6tables-save']) : nsExec(host, ['nft', 'list', 'ruleset']);
    t.notRegex(after, /CNI-|cni_hostport|masquerade comment/, 'no port-mapping or masquerade rule left');
  });
}

rootTest.serial('network reload puts the rules back after the firewall was flushed (plugins#512)', async (t) => {
  const sb = sandbox(t, [OWN_BIN]);
  const host = testNetns(t, 'rh');
  const outside = testNetns(t, 'ro');
  const ctr = testNetns(t, 'rc');
  await uplink(host, outside, '198.18.5.2', '198.18.5.1');
  const net = `rl-${rand()}`;
  fs.mkdirSync(sb.confDir, { recursive: true });
  fs.writeFileSync(path.join(sb.confDir, `${net}.conflist`), JSON.stringify({
    cniVersion: '1.0.0', name: net,
    plugins: [
      { type: 'bridge', bridge: 'rlbr0', isGateway: true, ipMasq: true, ipam: { type: 'host-local', dataDir: path.join(sb.dir, 'ipam'), ranges: [[{ subnet: '10.252.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'firewall' },
    ],
  }));
  sb.ok(['cni', 'add', net, ctr, '--id', 'r1', '--cap-args', JSON.stringify({ portMappings: [{ hostPort: 8090, containerPort: 80, protocol: 'tcp' }] })], { netns: host });
  await peerEchoServer(t, ctr, '0.0.0.0', 80);
  await peerEchoServer(t, outside, '198.18.5.1', 7400);
  t.is(await tcpRequest(outside, '198.18.5.2', 8090), '198.18.5.1', 'published port works before the flush');
  const before = nsExec(host, ['iptables-save']).split('\n').filter((l) => /^[-:]/.test(l)).sort();
  for (const table of ['nat', 'filter']) for (const flag of ['-F', '-X']) nsExec(host, ['iptables', '-t', table, flag]);
  t.is(await tcpRequest(outside, '198.18.5.2', 8090, 2).then(() => 'passed', () => 'broken'), 'broken', 'the flush broke the published port');
  t.regex(sb.ok(['network', 'reload', net], { netns: host }), new RegExp(`${net}: 1 attachment\\(s\\) reloaded`));
  t.deepEqual(nsExec(host, ['iptables-save']).split('\n').filter((l) => /^[-:]/.test(l) && !l.startsWith(':FORWARD')).sort(), before.filter((l) => !l.startsWith(':FORWARD')), 'the same rules are back');
  t.is(await tcpRequest(outside, '198.18.5.2', 8090), '198.18.5.1', 'the published port works again');
  t.is(await tcpRequest(ctr, '198.18.5.1', 7400), '198.18.5.2', 'outbound masquerade and forwarding work again');
  sb.ok(['cni', 'del', net, ctr, '--id', 'r1'], { netns: host });
  t.notRegex(nsExec(host, ['iptables-save']), /CNI-/);
});
