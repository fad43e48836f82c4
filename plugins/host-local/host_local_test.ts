import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dispatch } from '../../net/cni/skel.js';
import { hostLocal } from './index.js';

function setup(t: { teardown(fn: () => void): void }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-hl-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const env = (cmd: string, id = 'c1', extra: Record<string, string> = {}) => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/x', ...extra });

function conf(dataDir: string, ipam: object, extra: object = {}, version = '1.1.0') {
  return Buffer.from(JSON.stringify({ cniVersion: version, name: 'hlnet', type: 'bridge', ipam: { type: 'host-local', dataDir, ...ipam }, ...extra }));
}

async function add(stdin: Buffer, id = 'c1', extra: Record<string, string> = {}) {
  const out = await dispatch(hostLocal, env('ADD', id, extra), stdin);
  return { code: out.exitCode, body: JSON.parse(out.stdout || '{}') };
}

test('dual stack allocation writes the reference store layout', async (t) => {
  const dir = setup(t);
  const stdin = conf(dir, { ranges: [[{ subnet: '10.99.0.0/29' }], [{ subnet: 'fd00:99::/125' }]], routes: [{ dst: '0.0.0.0/0' }] }, {}, '1.0.0');
  const r = await add(stdin);
  t.is(r.code, 0, JSON.stringify(r.body));
  t.deepEqual(r.body, {
    cniVersion: '1.0.0',
    ips: [{ address: '10.99.0.2/29', gateway: '10.99.0.1' }, { address: 'fd00:99::2/125', gateway: 'fd00:99::1' }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: {},
  });
  const store = path.join(dir, 'hlnet');
  t.deepEqual(fs.readdirSync(store).sort(), ['10.99.0.2', 'fd00:99::2', 'last_reserved_ip.0', 'last_reserved_ip.1', 'lock']);
  t.is(fs.readFileSync(path.join(store, '10.99.0.2'), 'utf8'), 'c1\r\neth0');
  t.is(fs.readFileSync(path.join(store, 'last_reserved_ip.1'), 'utf8'), 'fd00:99::2');
  t.is((await dispatch(hostLocal, env('CHECK'), stdin)).exitCode, 0);
  t.is((await dispatch(hostLocal, env('DEL'), stdin)).exitCode, 0);
  t.deepEqual(fs.readdirSync(store).sort(), ['last_reserved_ip.0', 'last_reserved_ip.1', 'lock']);
  t.is((await dispatch(hostLocal, env('DEL'), stdin)).exitCode, 0, 'DEL twice');
  t.regex(JSON.parse((await dispatch(hostLocal, env('CHECK'), stdin)).stdout).msg, /Failed to find address added by container c1/);
});

test('exhaustion, duplicates and requested addresses fail with the reference messages and reserve nothing', async (t) => {
  const dir = setup(t);
  const stdin = conf(dir, { ranges: [[{ subnet: '10.99.0.0/30' }]] });
  t.is((await add(stdin, 'a')).body.ips[0].address, '10.99.0.2/30');
  let r = await add(stdin, 'b');
  t.is(r.code, 1);
  t.deepEqual(r.body, { code: 999, msg: 'failed to allocate for range 0: no IP addresses available in range set: 10.99.0.1-10.99.0.2', cniVersion: '1.1.0' });
  r = await add(stdin, 'a');
  t.is(r.body.msg, 'failed to allocate for range 0: 10.99.0.2 has been allocated to a, duplicate allocation is not allowed');
  const dual = conf(dir, { ranges: [[{ subnet: '10.98.0.0/24' }], [{ subnet: 'fd00:98::/64' }]] }, { name: 'dual' });
  r = await add(dual, 'x', { CNI_ARGS: 'IgnoreUnknown=1;IP=10.98.0.50,fd00:98::99' });
  t.deepEqual(r.body.ips.map((i: { address: string }) => i.address), ['10.98.0.50/24', 'fd00:98::99/64']);
  r = await add(dual, 'y', { CNI_ARGS: 'IP=10.98.0.50' });
  t.is(r.body.msg, 'failed to allocate for range 0: requested IP address 10.98.0.50 is not available in range set 10.98.0.1-10.98.0.254');
  t.deepEqual(fs.readdirSync(path.join(dir, 'dual')).filter((f) => /^\d|:/.test(f)).sort(), ['10.98.0.50', 'fd00:98::99'], 'the failed ADD left no IPv6 reservation behind');
  r = await add(dual, 'z', { CNI_ARGS: 'IP=10.77.0.1' });
  t.is(r.body.msg, 'failed to allocate all requested IPs: 10.77.0.1');
  r = await add(conf(dir, { ranges: [[{ subnet: '10.97.0.0/24' }]] }, { name: 'gw', runtimeConfig: { ips: ['10.97.0.1/24'] } }), 'g');
  t.is(r.body.msg, "failed to allocate for range 0: requested ip 10.97.0.1 is subnet's gateway");
  r = await add(conf(dir, { ranges: [[{ subnet: '10.96.0.0/24' }]] }, { name: 'args', args: { cni: { ips: ['10.96.0.77'] } } }), 'q');
  t.is(r.body.ips[0].address, '10.96.0.77/24');
});

test('legacy subnet, runtimeConfig.ipRanges prepended, resolvConf, and config errors with code 7', async (t) => {
  const dir = setup(t);
  const resolv = path.join(dir, 'resolv.conf');
  fs.writeFileSync(resolv, 'nameserver 192.0.2.53\nsearch a.example b.example\noptions ndots:2\n# comment\n');
  let r = await add(conf(dir, { subnet: '10.90.0.0/24', rangeStart: '10.90.0.100', resolvConf: resolv }, { runtimeConfig: { ipRanges: [[{ subnet: '10.91.0.0/24' }]] } }));
  t.deepEqual(r.body.ips.map((i: { address: string }) => i.address), ['10.91.0.2/24', '10.90.0.100/24']);
  t.deepEqual(r.body.dns, { nameservers: ['192.0.2.53'], search: ['a.example', 'b.example'], options: ['ndots:2'] });
  const bad: [object, RegExp][] = [
    [{}, /no IP ranges specified/],
    [{ ranges: [[{ subnet: '10.0.0.1/24' }]] }, /Network has host bits set/],
    [{ ranges: [[{ subnet: '10.0.0.0/32' }]] }, /too small to allocate from/],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/25' }]] }, /range set 0 overlaps with 1/],
    [{ ranges: [[{ subnet: 'nope' }]] }, /invalid subnet "nope"/],
    [{ ranges: 'x' }, /invalid ipam "ranges"/],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }]], routes: [{ gw: '1.2.3.4' }] }, /invalid ipam routes\[0\]: missing "dst"/],
  ];
  for (const [ipam, re] of bad) {
    r = await add(conf(dir, ipam));
    t.is(r.body.code, 7, re.source);
    t.regex(r.body.msg, re);
  }
  r = await add(Buffer.from(JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'x' })));
  t.deepEqual([r.body.code, r.body.msg], [7, "IPAM config missing 'ipam' key"]);
  r = await add(conf(dir, { ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.1.0.0/24' }]] }, {}, '0.2.0'));
  t.regex(r.body.msg, /CNI version 0\.2\.0 does not support more than 1 address per family/);
  r = await add(conf(dir, { ranges: [[{ subnet: '10.2.0.0/24' }]] }), 'c9', { CNI_ARGS: 'FOO=1' });
  t.deepEqual([r.body.code, r.body.msg], [4, 'ARGS: unknown args ["FOO"]']);
});

test('GC releases reservations of attachments that are not valid; STATUS reports exhaustion', async (t) => {
  const dir = setup(t);
  const stdin = conf(dir, { ranges: [[{ subnet: '10.95.0.0/29' }]] });
  for (const id of ['a', 'b', 'c']) await add(stdin, id);
  fs.writeFileSync(path.join(dir, 'hlnet', '10.95.0.6'), 'legacy-id'); // a pre-0.4 reservation
  const gc = Buffer.from(JSON.stringify({ ...JSON.parse(stdin.toString()), 'cni.dev/valid-attachments': [{ containerID: 'b', ifname: 'eth0' }, { containerID: 'legacy-id', ifname: 'eth0' }] }));
  const out = await dispatch(hostLocal, { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, gc);
  t.is(out.exitCode, 0, out.stdout);
  t.deepEqual(fs.readdirSync(path.join(dir, 'hlnet')).filter((f) => /^\d/.test(f)).sort(), ['10.95.0.3', '10.95.0.6']);
  t.is((await dispatch(hostLocal, { CNI_COMMAND: 'STATUS', CNI_PATH: '/x' }, stdin)).exitCode, 0);
  for (const id of ['d', 'e', 'f']) t.is((await add(stdin, id)).code, 0);
  const st = JSON.parse((await dispatch(hostLocal, { CNI_COMMAND: 'STATUS', CNI_PATH: '/x' }, stdin)).stdout);
  t.deepEqual([st.code, st.msg], [50, 'no IP addresses available in range set: 10.95.0.1-10.95.0.6']);
});
