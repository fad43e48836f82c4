import test from 'ava';
import { formatCniArgs, parseCniArgs, parseConfList, parseSingleConf, checkContainerId, checkIfname } from './config.js';

const b = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o));

test('parses a podman-style conflist and keeps unknown keys', (t) => {
  const l = parseConfList(b({ cniVersion: '0.4.0', name: 'podman', disableCheck: 'true', plugins: [{ type: 'bridge', bridge: 'cni-podman0', ipam: { type: 'host-local' } }, { type: 'portmap', capabilities: { portMappings: true } }], args: { podman_labels: {} } }), '/x.conflist');
  t.is(l.name, 'podman');
  t.is(l.cniVersion, '0.4.0');
  t.true(l.disableCheck);
  t.false(l.disableGC);
  t.is(l.plugins[0].bridge, 'cni-podman0');
  t.deepEqual(l.raw.args, { podman_labels: {} });
});

test('rejects malformed configs with messages naming the file and key', (t) => {
  const cases: [unknown, RegExp][] = [
    ['{not json', /cannot parse network config in "f": /],
    [[], /expected a JSON object/],
    [{ cniVersion: '1.0.0', plugins: [{ type: 'bridge' }] }, /missing network name in "f"/],
    [{ cniVersion: '1.0.0', name: 'bad name', plugins: [{ type: 'bridge' }] }, /invalid characters found in network name "bad name"/],
    [{ cniVersion: '1.0.0', name: 'n', plugins: [] }, /network "n" in "f" has no "plugins" list/],
    [{ cniVersion: '1.0.0', name: 'n', plugins: [{}] }, /plugins\[0\] in "f" has no "type"/],
    [{ cniVersion: '1.0.0', name: 'n', plugins: [{ type: '../bin/sh' }] }, /invalid plugin type "..\/bin\/sh"/],
    [{ cniVersion: '1.0', name: 'n', plugins: [{ type: 'x' }] }, /invalid cniVersion "1.0" in "f"/],
    [{ name: 'n', plugins: [{ type: 'x' }] }, /missing cniVersion in "f"/],
    [{ cniVersion: '1.0.0', name: 'n', disableGC: 3, plugins: [{ type: 'x' }] }, /invalid "disableGC" in "f"/],
    [{ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'x', capabilities: { a: 'yes' } }] }, /"capabilities" must map names to booleans/],
  ];
  for (const [input, re] of cases) {
    const e = t.throws(() => parseConfList(b(input), 'f'));
    t.regex(e!.message, re);
  }
});

test('a single-plugin .conf is lifted to a list', (t) => {
  const l = parseSingleConf(b({ cniVersion: '0.3.1', name: 'old', type: 'bridge', bridge: 'br9' }));
  t.is(l.plugins.length, 1);
  t.is(l.plugins[0].bridge, 'br9');
  t.deepEqual(JSON.parse(l.bytes.toString()).plugins[0].type, 'bridge');
});

test('CNI_ARGS round trip and errors; container IDs and ifnames', (t) => {
  t.deepEqual(parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=a=b;'), [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'a=b']]);
  t.is(formatCniArgs([['A', '1'], ['B', '']]), 'A=1;B=');
  t.throws(() => parseCniArgs('novalue'), { message: /invalid CNI_ARGS pair "novalue"/ });
  t.notThrows(() => checkContainerId('abc_1.2-3'));
  t.throws(() => checkContainerId(''), { message: 'missing containerID' });
  t.throws(() => checkContainerId('-x'), { message: /invalid characters in containerID/ });
  t.notThrows(() => checkIfname('eth0'));
  for (const bad of ['', '.', '..', 'a/b', 'a:b', 'a b', 'sixteen-chars-xx']) t.throws(() => checkIfname(bad));
});
