import test from 'ava';
import { dispatch, type CniPlugin } from './skel.js';
import { CniError } from './types.js';

const plugin: CniPlugin = {
  name: 'fake',
  supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'],
  async add(req) {
    if (req.config.boom) throw new Error('kaboom');
    if (req.config.cnierr) throw new CniError(7, 'bad field "x"', 'details here');
    return { cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }], routes: [{ dst: '0.0.0.0/0', mtu: 1000 }] };
  },
  async del() {},
  async check() {},
  async gc(req) {
    if (req.validAttachments?.length !== 1) throw new Error('attachments not parsed');
  },
};

const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/bin' };
const conf = (o: Record<string, unknown>) => Buffer.from(JSON.stringify({ name: 'n', type: 'fake', ...o }));

test('ADD prints the result in the config version', async (t) => {
  const out = await dispatch(plugin, env, conf({ cniVersion: '0.4.0' }));
  t.is(out.exitCode, 0);
  t.deepEqual(JSON.parse(out.stdout), { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.2/24', gateway: '10.0.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
});

test('validation errors carry the spec codes', async (t) => {
  const cases: [Record<string, string | undefined>, Buffer, number, RegExp][] = [
    [{ ...env, CNI_NETNS: undefined }, conf({ cniVersion: '1.0.0' }), 4, /required env variables \[CNI_NETNS\] missing/],
    [{ ...env, CNI_CONTAINERID: '' }, conf({ cniVersion: '1.0.0' }), 4, /required env variables \[CNI_CONTAINERID\] missing/],
    [{ ...env, CNI_IFNAME: 'a/b' }, conf({ cniVersion: '1.0.0' }), 4, /invalid interface name/],
    [{ ...env, CNI_COMMAND: 'FROB' }, conf({ cniVersion: '1.0.0' }), 4, /unknown CNI_COMMAND: FROB/],
    [env, Buffer.from('{oops'), 6, /error unmarshall network config/],
    [env, conf({ cniVersion: '9.9.9' }), 1, /incompatible CNI versions/],
    [env, conf({}), 1, /incompatible CNI versions/],
    [{ ...env, CNI_COMMAND: 'CHECK' }, conf({ cniVersion: '0.3.1' }), 1, /config version does not allow CHECK/],
    [{ ...env, CNI_COMMAND: 'GC' }, conf({ cniVersion: '1.0.0' }), 1, /config version does not allow GC/],
    [env, conf({ cniVersion: '1.0.0', boom: true }), 999, /kaboom/],
    [env, conf({ cniVersion: '1.0.0', cnierr: true }), 7, /bad field "x"/],
  ];
  for (const [e, stdin, code, re] of cases) {
    const out = await dispatch(plugin, e, stdin);
    t.is(out.exitCode, 1);
    const err = JSON.parse(out.stdout);
    t.is(err.code, code, re.source);
    t.regex(err.msg, re);
  }
  const v = JSON.parse((await dispatch(plugin, env, conf({ cniVersion: '9.9.9' }))).stdout);
  t.is(v.details, 'config is "9.9.9", plugin supports ["0.3.1" "0.4.0" "1.0.0" "1.1.0"]');
});

test('VERSION, GC attachments, and the no-command banner', async (t) => {
  const v = await dispatch(plugin, { CNI_COMMAND: 'VERSION' }, Buffer.from('{"cniVersion":"0.4.0"}'));
  t.deepEqual(JSON.parse(v.stdout), { cniVersion: '0.4.0', supportedVersions: plugin.supportedVersions });
  const gc = await dispatch(plugin, { CNI_COMMAND: 'GC', CNI_PATH: '/bin' }, conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }] }));
  t.is(gc.exitCode, 0, gc.stdout);
  const about = await dispatch(plugin, {}, Buffer.alloc(0));
  t.is(about.exitCode, 0);
  t.regex(about.stderr, /CNI protocol versions supported: 0.3.1, 0.4.0, 1.0.0, 1.1.0/);
});
