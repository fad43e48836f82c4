import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniRuntime } from './runtime.js';
import { parseConfList } from '../../net/cni/config.js';
import { CniError, type Result } from '../../net/cni/types.js';
import type { CniPlugin, PluginRequest } from '../../net/cni/skel.js';
import { inProcessResolver, registerPlugin, LAUNCHER_MARKER } from '../../plugins/registry.js';

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'record_plugin.py');

interface Call { plugin: string; cmd: string; env: Record<string, string>; conf: Record<string, unknown> }

function setup(t: { teardown(fn: () => void): void }, plugins: unknown[], version = '1.0.0') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const name of ['rec-a', 'rec-b']) fs.symlinkSync(fixture, path.join(bin, name));
  const log = path.join(dir, 'calls.jsonl');
  const list = parseConfList(Buffer.from(JSON.stringify({ cniVersion: version, name: 'testnet', plugins })));
  const rt = new CniRuntime({ path: [bin], cacheDir: path.join(dir, 'cache'), env: { ...process.env, RECORD_LOG: log } });
  const calls = (): Call[] => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Call) : []);
  return { dir, bin, list, rt, calls };
}

const att = { containerId: 'ctr1', netns: '/run/netns/fake', ifname: 'eth0' };

test('ADD runs the chain in order, derives each stdin as libcni does, and caches in libcni layout', async (t) => {
  const { list, rt, calls, dir } = setup(t, [
    { type: 'rec-a', capabilities: { portMappings: true, mac: false }, custom: 1 },
    { type: 'rec-b', capabilities: { ips: true } },
  ]);
  const caps = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], mac: '02:00:00:00:00:01' };
  const result = (await rt.addNetworkList(list, { ...att, args: [['IgnoreUnknown', '1']], capabilityArgs: caps })) as Result;
  t.deepEqual(result.ips!.map((i) => i.address), ['10.99.0.2/24', '10.99.0.3/24']);
  const [a, b] = calls();
  t.is(a.plugin, 'rec-a');
  t.deepEqual(a.env, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ctr1', CNI_NETNS: '/run/netns/fake', CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1', CNI_PATH: path.join(dir, 'bin') });
  t.is(a.conf.name, 'testnet');
  t.is(a.conf.cniVersion, '1.0.0');
  t.is(a.conf.custom, 1);
  t.deepEqual(a.conf.capabilities, { portMappings: true, mac: false }, 'capabilities stay in stdin');
  t.deepEqual(a.conf.runtimeConfig, { portMappings: caps.portMappings }, 'only declared, true capabilities are injected');
  t.false('prevResult' in a.conf);
  t.false('runtimeConfig' in b.conf, 'no runtimeConfig when no declared capability has a value');
  t.deepEqual((b.conf.prevResult as Result).ips!.map((i) => i.address), ['10.99.0.2/24']);

  const cacheFile = path.join(dir, 'cache', 'results', 'testnet-ctr1-eth0');
  const entry = JSON.parse(fs.readFileSync(cacheFile, 'utf8'));
  t.is(entry.kind, 'cniCacheV1');
  t.is(Buffer.from(entry.config, 'base64').toString(), list.bytes.toString());
  t.deepEqual(entry.cniArgs, [['IgnoreUnknown', '1']]);
  t.is(entry.netns, '/run/netns/fake');
  t.is((fs.statSync(cacheFile).mode & 0o777), 0o600);
});

test('DEL runs in reverse with the cached result and cached capability args, then is idempotent', async (t) => {
  const { list, rt, calls, dir } = setup(t, [{ type: 'rec-a', capabilities: { portMappings: true } }, { type: 'rec-b' }]);
  const caps = { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'udp' }] };
  await rt.addNetworkList(list, { ...att, capabilityArgs: caps });
  await rt.delNetworkList(list, { ...att, netns: '' });
  const dels = calls().filter((c) => c.cmd === 'DEL');
  t.deepEqual(dels.map((c) => c.plugin), ['rec-b', 'rec-a']);
  t.is(dels[0].env.CNI_NETNS, '/run/netns/fake', 'netns comes from the cache when the caller has none');
  t.deepEqual((dels[1].conf.prevResult as Result).ips!.length, 2);
  t.deepEqual(dels[1].conf.runtimeConfig, caps, 'portmap-style plugins get their mappings back on DEL');
  t.false(fs.existsSync(path.join(dir, 'cache', 'results', 'testnet-ctr1-eth0')));
  await t.notThrowsAsync(rt.delNetworkList(list, att));
  t.false('prevResult' in calls().at(-1)!.conf, 'a second DEL has no cached result to pass');
});

test('DEL never replays a cached fd path as the netns: it named the netns only for the process that held the fd', async (t) => {
  const { list, rt, calls } = setup(t, [{ type: 'rec-a' }]);
  await rt.addNetworkList(list, { ...att, netns: '/proc/self/fd/3' });
  await rt.delNetworkList(list, { ...att, netns: '' });
  t.is(calls().filter((c) => c.cmd === 'DEL')[0].env.CNI_NETNS, '', 'the netns is gone for DEL');
});

test('a failing ADD rolls the chain back and reports the plugin, code and details', async (t) => {
  const { list, rt, calls, dir } = setup(t, [{ type: 'rec-a' }, { type: 'rec-b' }]);
  const err = (await t.throwsAsync(rt.addNetworkList(list, { ...att, args: [['FAIL', 'ADD']] }))) as CniError;
  t.is(err.cniCode, 11);
  t.regex(err.message, /plugin "rec-a" failed \(ADD\): injected failure/);
  t.is(err.details, 'FAIL=ADD');
  t.deepEqual(calls().map((c) => `${c.cmd}:${c.plugin}`), ['ADD:rec-a', 'DEL:rec-b', 'DEL:rec-a']);
  t.false(fs.existsSync(path.join(dir, 'cache', 'results')) && fs.readdirSync(path.join(dir, 'cache', 'results')).length > 0);
});

test('DEL carries on past a failing plugin and reports it; the cache stays for a retry', async (t) => {
  const { list, rt, calls, dir } = setup(t, [{ type: 'rec-a' }, { type: 'rec-b' }]);
  await rt.addNetworkList(list, att);
  await t.throwsAsync(rt.delNetworkList(list, { ...att, args: [['FAIL', 'DEL']] }), { message: /"rec-b" failed \(DEL\).*"rec-a" failed \(DEL\)/ });
  t.deepEqual(calls().filter((c) => c.cmd === 'DEL').map((c) => c.plugin), ['rec-b', 'rec-a']);
  t.true(fs.existsSync(path.join(dir, 'cache', 'results', 'testnet-ctr1-eth0')));
});

test('CHECK needs 0.4.0 and a cached result; a missing plugin is named', async (t) => {
  const { list, rt, calls } = setup(t, [{ type: 'rec-a' }]);
  await t.throwsAsync(rt.checkNetworkList(list, att), { message: /no cached result for container "ctr1"/ });
  await rt.addNetworkList(list, att);
  await rt.checkNetworkList(list, att);
  t.is(calls().at(-1)!.cmd, 'CHECK');
  t.deepEqual((calls().at(-1)!.conf.prevResult as Result).ips!.length, 1);
  const old = setup(t, [{ type: 'rec-a' }], '0.3.1');
  await t.throwsAsync(old.rt.checkNetworkList(old.list, att), { message: /does not support the CHECK command/ });
  const missing = setup(t, [{ type: 'nope' }]);
  await t.throwsAsync(missing.rt.addNetworkList(missing.list, att), { message: /failed to find plugin "nope" in path/ });
});

test('GC deletes stale cached attachments and sends valid-attachments to every plugin (1.1.0)', async (t) => {
  const { list, rt, calls, dir } = setup(t, [{ type: 'rec-a' }, { type: 'rec-b' }], '1.1.0');
  await rt.addNetworkList(list, att);
  await rt.addNetworkList(list, { ...att, containerId: 'ctr2' });
  const report = await rt.gcNetworkList(list, [{ containerID: 'ctr1', ifname: 'eth0' }]);
  t.deepEqual(report.removed, [{ containerID: 'ctr2', ifname: 'eth0' }]);
  t.true(report.pluginsCalled);
  const c = calls();
  t.deepEqual(c.filter((x) => x.cmd === 'DEL').map((x) => x.env.CNI_CONTAINERID), ['ctr2', 'ctr2']);
  const gc = c.filter((x) => x.cmd === 'GC');
  t.is(gc.length, 2);
  t.deepEqual(gc[0].conf['cni.dev/valid-attachments'], [{ containerID: 'ctr1', ifname: 'eth0' }]);
  t.is(gc[0].env.CNI_CONTAINERID, '');
  t.deepEqual(fs.readdirSync(path.join(dir, 'cache', 'results')), ['testnet-ctr1-eth0']);
  t.true(await rt.statusNetworkList(list));
  t.is(calls().filter((x) => x.cmd === 'STATUS').length, 2);
  const old = setup(t, [{ type: 'rec-a' }], '1.0.0');
  t.false(await old.rt.statusNetworkList(old.list), 'STATUS is not sent below 1.1.0');
  t.false((await old.rt.gcNetworkList(old.list, [])).pluginsCalled);
});

test('VERSION validation of a list', async (t) => {
  const { list, rt } = setup(t, [{ type: 'rec-a' }, { type: 'rec-b' }]);
  await t.notThrowsAsync(rt.validateNetworkList(list));
  const old = setup(t, [{ type: 'rec-a' }], '0.2.0');
  await t.throwsAsync(old.rt.validateNetworkList(old.list), { message: /does not support config version "0.2.0"/ });
});

test('in-process fast path: a launcher on CNI_PATH runs the registered plugin without a process', async (t) => {
  const seen: PluginRequest[] = [];
  const plugin: CniPlugin = {
    name: 'inproc-test',
    supportedVersions: ['0.4.0', '1.0.0', '1.1.0'],
    async add(req) {
      seen.push(req);
      return { cniVersion: '1.1.0', interfaces: [{ name: req.ifname, sandbox: req.netns, mtu: 1400 }], ips: [{ address: '10.5.0.2/16', interface: 0 }] };
    },
    async del(req) { seen.push(req); },
    async check(req) { seen.push(req); },
  };
  registerPlugin(plugin);
  const { bin, list, dir } = setup(t, [{ type: 'inproc-test', capabilities: { mac: true } }]);
  // The launcher would fail if exec'd: proof that it ran in-process.
  fs.writeFileSync(path.join(bin, 'inproc-test'), `#!/bin/sh\n# ${LAUNCHER_MARKER}\nexit 99\n`, { mode: 0o755 });
  const rt = new CniRuntime({ path: [bin], cacheDir: path.join(dir, 'cache'), inProcess: inProcessResolver() });
  const result = (await rt.addNetworkList(list, { ...att, capabilityArgs: { mac: '02:00:00:00:00:09' } })) as Result;
  t.deepEqual(result, { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/run/netns/fake' }], ips: [{ address: '10.5.0.2/16', interface: 0 }], dns: {} });
  t.is(seen[0].command, 'ADD');
  t.deepEqual(seen[0].config.runtimeConfig, { mac: '02:00:00:00:00:09' });
  await rt.delNetworkList(list, att);
  t.is(seen[1].command, 'DEL');
  t.deepEqual(seen[1].prevResult!.ips, [{ address: '10.5.0.2/16', interface: 0 }]);
  const execOnly = new CniRuntime({ path: [bin], cacheDir: path.join(dir, 'cache') });
  await t.throwsAsync(execOnly.addNetworkList(list, att), { message: /plugin "inproc-test" failed \(ADD\): netplugin failed: "exit status 99"/ });
});
