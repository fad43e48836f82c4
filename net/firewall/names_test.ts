import test from 'ava';
import { hashedChainName, masqChainName, masqComment, nftInstanceHash, nftMasqComment, nftNetworkHash } from './names.js';
import { iptablesMasqRules, nftMasqSetupScript, parseMasqComment } from './ipmasq.js';
import { spoofcheckScript } from './spoofcheck.js';
import { parseCidr } from '../ip/addr.js';

test('chain names and hashes match the reference test vectors', (t) => {
  t.is(masqChainName('mynet', 'ctr1'), 'CNI-5145007e2a8415ce07579739');
  t.is(hashedChainName('DN-', 'mynet', 'ctr1'), 'CNI-DN-5145007e2a8415ce07579');
  t.is(hashedChainName('SN-', 'mynet', 'ctr1'), 'CNI-SN-5145007e2a8415ce07579');
  t.is(nftNetworkHash('mynet'), 'd23676b4f2d9fe04');
  t.is(nftInstanceHash('mynet', 'eth0', 'ctr1'), 'd23676b4f2d9fe04-7883a6f9ce71eedb');
  t.is(masqComment('mynet', 'ctr1'), 'name: "mynet" id: "ctr1"');
  t.is(nftMasqComment('mynet', 'eth0', 'ctr1'), 'd23676b4f2d9fe04-7883a6f9ce71eedb, net: mynet, if: eth0, id: ctr1');
  t.is(nftMasqComment('n', 'eth0', 'x'.repeat(200)).length, 128);
});

test('iptables masquerade rules, golden text (as iptables-save prints them)', (t) => {
  const t4 = iptablesMasqRules({ network: 'mynet', ifname: 'eth0', containerId: 'ctr1' }, parseCidr('10.88.0.2/16'));
  t.deepEqual(t4, {
    chainRules: [
      '-A CNI-5145007e2a8415ce07579739 -d 10.88.0.0/16 -m comment --comment "name: \\"mynet\\" id: \\"ctr1\\"" -j ACCEPT',
      '-A CNI-5145007e2a8415ce07579739 ! -d 224.0.0.0/4 -m comment --comment "name: \\"mynet\\" id: \\"ctr1\\"" -j MASQUERADE',
    ],
    jump: '-A POSTROUTING -s 10.88.0.2/32 -m comment --comment "name: \\"mynet\\" id: \\"ctr1\\"" -j CNI-5145007e2a8415ce07579739',
  });
  const t6 = iptablesMasqRules({ network: 'mynet', ifname: 'eth0', containerId: 'ctr1' }, parseCidr('fd00::2/64'));
  t.is(t6.chainRules[1], '-A CNI-5145007e2a8415ce07579739 ! -d ff00::/8 -m comment --comment "name: \\"mynet\\" id: \\"ctr1\\"" -j MASQUERADE');
  t.is(t6.jump, '-A POSTROUTING -s fd00::2/128 -m comment --comment "name: \\"mynet\\" id: \\"ctr1\\"" -j CNI-5145007e2a8415ce07579739');
  t.deepEqual(parseMasqComment(t4.jump), { network: 'mynet', containerId: 'ctr1' });
  t.is(parseMasqComment('-A X -j ACCEPT'), null);
});

test('nftables masquerade and spoof-check scripts, golden text', (t) => {
  t.is(nftMasqSetupScript({ network: 'mynet', ifname: 'eth0', containerId: 'ctr1' }, [parseCidr('10.88.0.2/16')], [7]), [
    'add table inet cni_plugins_masquerade { comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }',
    'add chain inet cni_plugins_masquerade masq_checks { comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }',
    'add chain inet cni_plugins_masquerade postrouting { type nat hook postrouting priority srcnat ; }',
    'flush chain inet cni_plugins_masquerade postrouting',
    'add rule inet cni_plugins_masquerade postrouting ip daddr == 224.0.0.0/4 return',
    'add rule inet cni_plugins_masquerade postrouting ip6 daddr == ff00::/8 return',
    'add rule inet cni_plugins_masquerade postrouting goto masq_checks',
    'delete rule inet cni_plugins_masquerade masq_checks handle 7',
    'add rule inet cni_plugins_masquerade masq_checks ip saddr == 10.88.0.2 ip daddr != 10.88.0.0/16 masquerade comment "d23676b4f2d9fe04-7883a6f9ce71eedb, net: mynet, if: eth0, id: ctr1"',
    '',
  ].join('\n'));
  t.is(spoofcheckScript('veth1', '02:00:00:00:00:01', 'ctr1-eth0'), [
    'add table bridge nat',
    'add chain bridge nat PREROUTING { type filter hook prerouting priority -300 ; policy accept ; }',
    'add chain bridge nat cni-br-iface-ctr1-eth0',
    'add chain bridge nat cni-br-iface-ctr1-eth0-mac',
    'flush chain bridge nat cni-br-iface-ctr1-eth0',
    'flush chain bridge nat cni-br-iface-ctr1-eth0-mac',
    'add rule bridge nat PREROUTING iifname "veth1" jump cni-br-iface-ctr1-eth0 comment "macspoofchk-ctr1-eth0"',
    'add rule bridge nat cni-br-iface-ctr1-eth0 jump cni-br-iface-ctr1-eth0-mac comment "macspoofchk-ctr1-eth0"',
    'add rule bridge nat cni-br-iface-ctr1-eth0-mac ether saddr 02:00:00:00:00:01 return comment "macspoofchk-ctr1-eth0"',
    'add rule bridge nat cni-br-iface-ctr1-eth0-mac drop comment "macspoofchk-ctr1-eth0"',
    '',
  ].join('\n'));
});
