import test from 'ava';
import { inInitialUserns, inputRules } from './input.js';

test('INPUT rules: UDP and TCP to port 53 from the bridge, in iptables-save\'s own form, marked with the network', (t) => {
  t.deepEqual(inputRules('dn1', 'cni-podman1'), [
    '-i cni-podman1 -p udp -m udp --dport 53 -m comment --comment "burrow dnsname: dn1" -j ACCEPT',
    '-i cni-podman1 -p tcp -m tcp --dport 53 -m comment --comment "burrow dnsname: dn1" -j ACCEPT',
  ]);
});

test('the initial user namespace is the identity map of every id; a rootless one is not', (t) => {
  t.true(inInitialUserns('         0          0 4294967295\n'));
  t.false(inInitialUserns('         0       1000          1\n         1     100000      65536\n'));
  t.false(inInitialUserns(''));
});
