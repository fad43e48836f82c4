import test from 'ava';
import { dispatch } from '../../net/cni/skel.js';
import { portmap } from './index.js';

const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/x' };
const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'br0' }, { name: 'eth0', sandbox: '/run/netns/x' }], ips: [{ address: '10.1.2.3/24', interface: 1 }] };
const conf = (extra: object, mappings: unknown = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }]) =>
  Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'portmap', runtimeConfig: { portMappings: mappings }, prevResult: prev, ...extra }));

test('bad input gets a clear error with the spec code, before any rule is written', async (t) => {
  const cases: [Buffer, number, RegExp][] = [
    [conf({}, [{ hostPort: 0, containerPort: 80 }]), 7, /Invalid host port number: 0/],
    [conf({}, [{ hostPort: 70000, containerPort: 80 }]), 7, /Invalid host port number: 70000/],
    [conf({}, [{ hostPort: 80, containerPort: 0 }]), 7, /Invalid container port number: 0/],
    [conf({}, [{ hostPort: 80, containerPort: 80, protocol: 'icmp' }]), 7, /unknown protocol "icmp"/],
    [conf({}, [{ hostPort: 80, containerPort: 80, hostIP: 'nope' }]), 7, /invalid hostIP "nope"/],
    [conf({ markMasqBit: 40 }), 7, /invalid "markMasqBit"/],
    [conf({ markMasqBit: 3, externalSetMarkChain: 'X' }), 7, /cannot specify externalSetMarkChain and markMasqBit/],
    [conf({ backend: 'pf' }), 7, /invalid "backend" "pf"/],
    [conf({ backend: 'nftables', conditionsV4: ['-s', '1.2.3.4'] }), 7, /iptables syntax but the backend is nftables/],
    [Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'portmap', runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 1 }] } })), 7, /must be called as chained plugin/],
  ];
  for (const [stdin, code, re] of cases) {
    const out = await dispatch(portmap, env, stdin);
    t.is(out.exitCode, 1);
    const e = JSON.parse(out.stdout);
    t.is(e.code, code, re.source);
    t.regex(e.msg, re);
  }
});

test('no mappings: ADD passes prevResult through and DEL does nothing at all (plugins#510)', async (t) => {
  const out = await dispatch(portmap, env, conf({}, []));
  t.is(out.exitCode, 0);
  t.deepEqual(JSON.parse(out.stdout).ips, [{ address: '10.1.2.3/24', interface: 1 }]);
  t.is((await dispatch(portmap, { ...env, CNI_COMMAND: 'DEL' }, conf({}, []))).exitCode, 0);
});
