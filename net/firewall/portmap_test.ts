import test from 'ava';
import { mappingsFor, portRuns, type PortMapping } from './portmap.js';
import { iptablesPortmapRules } from './portmap_iptables.js';
import { nftPortmapScript } from './portmap_nft.js';
import { iptablesAcceptRules, iptablesIsolationRules, nftFirewallScript } from './forward.js';
import { parseCidr } from '../ip/addr.js';

const t0 = { network: 'x', containerId: 'c1', ifname: 'eth0' };
const opts = { snat: true, masqAll: false, markBit: 0x2000 };
const m = (hostPort: number, containerPort: number, protocol: 'tcp' | 'udp' | 'sctp' = 'tcp', hostIP = ''): PortMapping => ({ hostPort, containerPort, protocol, hostIP });

test('iptables port-mapping rules match the reference text (golden, from Debian 1.1.1)', (t) => {
  const r = iptablesPortmapRules(t0, parseCidr('10.1.2.3/24'), [m(8080, 80), m(53, 53, 'udp'), m(9000, 90, 'tcp', '127.0.0.1'), m(7000, 70, 'sctp')], opts);
  const D = 'CNI-DN-16bd9f8566a866436c084';
  t.deepEqual(r.dn, [
    `-A ${D} -s 10.1.2.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.2.3:80`,
    `-A ${D} -s 10.1.2.0/24 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -s 127.0.0.1/32 -p udp -m udp --dport 53 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -p udp -m udp --dport 53 -j DNAT --to-destination 10.1.2.3:53`,
    `-A ${D} -s 10.1.2.0/24 -d 127.0.0.1/32 -p tcp -m tcp --dport 9000 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m tcp --dport 9000 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -d 127.0.0.1/32 -p tcp -m tcp --dport 9000 -j DNAT --to-destination 10.1.2.3:90`,
    `-A ${D} -s 10.1.2.0/24 -p sctp -m sctp --dport 7000 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -s 127.0.0.1/32 -p sctp -m sctp --dport 7000 -j CNI-HOSTPORT-SETMARK`,
    `-A ${D} -p sctp -m sctp --dport 7000 -j DNAT --to-destination 10.1.2.3:70`,
  ]);
  t.deepEqual(r.jumps, [
    `-A CNI-HOSTPORT-DNAT -p sctp -m comment --comment "dnat name: \\"x\\" id: \\"c1\\"" -m multiport --dports 7000 -j ${D}`,
    `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"x\\" id: \\"c1\\"" -m multiport --dports 8080,9000 -j ${D}`,
    `-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \\"x\\" id: \\"c1\\"" -m multiport --dports 53 -j ${D}`,
  ]);
  const v6 = iptablesPortmapRules(t0, parseCidr('fd00::3/64'), [m(8080, 80), m(9000, 90, 'tcp', '127.0.0.1')], opts);
  t.deepEqual(v6.dn, [`-A ${D} -s fd00::/64 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`, `-A ${D} -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::3]:80`]);
});

test('runs of ports become ranged rules; multiport holds at most 15 ports (a range counts two)', (t) => {
  const range = Array.from({ length: 1000 }, (_, i) => m(20000 + i, 30000 + i));
  t.deepEqual(portRuns(range), [{ protocol: 'tcp', hostIP: '', hostStart: 20000, hostEnd: 20999, containerStart: 30000 }]);
  const r = iptablesPortmapRules(t0, parseCidr('10.1.2.3/24'), [...range, m(21000, 21000), m(21001, 21001)], { ...opts, snat: false });
  t.deepEqual(r.dn.map((x) => x.replace(/^-A \S+ /, '')), [
    '-p tcp -m tcp --dport 20000:20999 -j DNAT --to-destination 10.1.2.3:30000-30999/20000',
    '-p tcp -m tcp --dport 21000:21001 -j DNAT --to-destination 10.1.2.3',
  ]);
  const many = Array.from({ length: 20 }, (_, i) => m(1000 + i * 2, 80));
  const j = iptablesPortmapRules(t0, parseCidr('10.1.2.3/24'), many, opts).jumps;
  t.is(j.length, 2);
  t.is(j[0].match(/--dports (\S+)/)![1].split(',').length, 15);
  t.deepEqual(mappingsFor([m(1, 1, 'tcp', '0.0.0.0'), m(2, 2, 'tcp', '::1')], 4), [m(1, 1)]);
});

test('options: masqAll, snat off, another mark bit, external set-mark chain, conditions', (t) => {
  const D = 'CNI-DN-16bd9f8566a866436c084';
  const all = iptablesPortmapRules(t0, parseCidr('10.1.2.3/24'), [m(80, 80)], { ...opts, masqAll: true, externalSetMarkChain: 'MY-MARK', conditionsV4: ['!', '-s', '10.0.0.0/8'] });
  t.deepEqual(all.dn, [`-A ${D} -p tcp -m tcp --dport 80 -j MY-MARK`, `-A ${D} -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.2.3:80`]);
  t.regex(all.jumps[0], /--comment "dnat name: \\"x\\" id: \\"c1\\"" ! -s 10\.0\.0\.0\/8 -m multiport/);
});

test('nftables port-mapping and firewall scripts, golden text', (t) => {
  const s = nftPortmapScript(t0, parseCidr('10.1.2.3/24'), [m(8080, 80), m(9000, 9000, 'udp', '127.0.0.1'), m(20000, 30000), m(20001, 30001)], opts, [{ chain: 'hostports', handle: 4 }]);
  t.true(s.includes('delete rule ip cni_hostport hostports handle 4\n'));
  t.true(s.includes('add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.1.2.3:80 comment "c1, net: x, if: eth0"'));
  t.true(s.includes('add rule ip cni_hostport hostip_hostports ip daddr 127.0.0.1 udp dport 9000 dnat to 10.1.2.3:9000 comment "c1, net: x, if: eth0"'));
  t.true(s.includes('add rule ip cni_hostport hostports tcp dport 20000-20001 dnat to 10.1.2.3 : tcp dport map { 20000 : 30000, 20001 : 30001 } comment'));
  t.true(s.includes('add rule ip cni_hostport masquerading ip saddr 10.1.2.0/24 ip daddr 10.1.2.3 masquerade'));
  t.true(s.includes('add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.1.2.3 masquerade'));
  const fw = nftFirewallScript(t0, [parseCidr('10.1.2.3/24')], { adminChain: 'CNI-ADMIN', ingressPolicy: 'isolated', bridge: 'br0' }, []);
  t.true(fw.includes('add rule inet cni_firewall attachments ip daddr 10.1.2.3 ct state related,established accept comment "c1, net: x, if: eth0"'));
  t.true(fw.includes('add rule inet cni_firewall isolation iifname "br0" oifname "br0" drop'));
});

test('iptables firewall rules match the reference text (golden)', (t) => {
  t.deepEqual(iptablesAcceptRules(parseCidr('10.1.2.3/24')), ['-A CNI-FORWARD -d 10.1.2.3/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT', '-A CNI-FORWARD -s 10.1.2.3/32 -j ACCEPT']);
  t.deepEqual(iptablesAcceptRules(parseCidr('fd00::3/64'))[1], '-A CNI-FORWARD -s fd00::3/128 -j ACCEPT');
  const iso = iptablesIsolationRules('br0', 'same-bridge');
  t.is(iso.jump, '-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-1');
  t.deepEqual(iso.stage1, ['-A CNI-ISOLATION-STAGE-1 -i br0 ! -o br0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2']);
  t.deepEqual(iso.stage2, ['-A CNI-ISOLATION-STAGE-2 -o br0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j DROP']);
});
