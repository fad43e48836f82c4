/**
 * burrow's bridge + host-local executables under stress and abuse, on the real
 * kernel: 100 parallel ADDs on one network, kill -9 at 20 points during ADD
 * followed by DEL, and bad input of every kind. Each ends with the host clean.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { netnsCreate, netnsRemove } from '../native/mod.js';
import { nsExec, rootTest, testNetns, uniqueName } from './helpers/netns.js';
import { callPlugin, hostSnapshot, OWN_BIN } from './helpers/cni.js';

type Snap = { links: string[]; nat4: string[]; filter4: string[] };

function tempDir(t: import('ava').ExecutionContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-rob-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function reservations(dataDir: string, net: string): string[] {
  const dir = path.join(dataDir, net);
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^\d|:/.test(f)) : [];
}

/** n container namespaces, removed at the end. */
function pool(t: import('ava').ExecutionContext, n: number): string[] {
  const out = Array.from({ length: n }, () => netnsCreate(uniqueName('rc')));
  t.teardown(() => out.forEach((p) => netnsRemove(p)));
  return out;
}

function bridgeConf(dataDir: string, net: string, subnet: string, extra: object = {}) {
  return { cniVersion: '1.0.0', name: net, type: 'bridge', bridge: 'robbr0', isGateway: true, ipMasq: true, hairpinMode: true, ...extra, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet }]] } };
}

function assertClean(t: import('ava').ExecutionContext, host: string, dataDir: string, net: string, ctrs: string[]): void {
  const snap = hostSnapshot(host) as Snap;
  t.deepEqual(snap.links.filter((l) => !l.startsWith('lo ') && !l.startsWith('robbr0 ')), [], 'no veth left in the host');
  t.deepEqual(snap.nat4.filter((r) => r.includes('CNI-')), [], 'no masquerade rule left');
  t.deepEqual(reservations(dataDir, net), [], 'no reservation left');
  for (const c of ctrs) t.deepEqual(nsExec(c, ['ip', '-o', 'link']).split('\n').filter(Boolean).map((l) => l.split(': ')[1]), ['lo'], `nothing left in ${c}`);
}

rootTest.serial('100 parallel ADDs get unique addresses; 100 DELs leave nothing', async (t) => {
  const host = testNetns(t, 'rh');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const dataDir = tempDir(t);
  const conf = bridgeConf(dataDir, 'par', '10.243.0.0/24');
  const ctrs = pool(t, 100);
  const adds = await Promise.all(ctrs.map((c, i) => callPlugin(host, OWN_BIN, 'bridge', { command: 'ADD', containerId: `par${i}`, netns: c }, conf)));
  const failed = adds.filter((r) => r.code !== 0);
  t.deepEqual(failed.map((r) => r.raw), [], 'every ADD succeeded');
  const ips = adds.map((r) => (r.out as { ips: { address: string }[] }).ips[0].address);
  t.is(new Set(ips).size, 100, 'unique addresses');
  t.is(reservations(dataDir, 'par').length, 100);
  t.is((hostSnapshot(host) as Snap).nat4.filter((r) => r.startsWith('-A POSTROUTING')).length, 100, 'one masquerade jump each, none lost');
  const dels = await Promise.all(ctrs.map((c, i) => callPlugin(host, OWN_BIN, 'bridge', { command: 'DEL', containerId: `par${i}`, netns: c }, conf)));
  t.deepEqual(dels.filter((r) => r.code !== 0).map((r) => r.raw), []);
  assertClean(t, host, dataDir, 'par', ctrs.slice(0, 5));
});

rootTest.serial('kill -9 at 20 points during ADD, then DEL: the host is clean every time', async (t) => {
  const host = testNetns(t, 'rh');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const dataDir = tempDir(t);
  const conf = bridgeConf(dataDir, 'kill', '10.244.0.0/24', { macspoofchk: true });
  const [probe] = pool(t, 1);
  // The kill points spread over a warm ADD: the fastest of three probes.
  let addMs = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    t.is((await callPlugin(host, OWN_BIN, 'bridge', { command: 'ADD', containerId: 'probe', netns: probe }, conf)).code, 0);
    addMs = Math.min(addMs, performance.now() - t0);
    t.is((await callPlugin(host, OWN_BIN, 'bridge', { command: 'DEL', containerId: 'probe', netns: probe }, conf)).code, 0);
  }
  const ctrs = pool(t, 20);
  const outcomes: string[] = [];
  for (let i = 0; i < 20; i++) {
    const delayMs = (addMs * (i + 0.5)) / 20;
    const id = `kill${i}`;
    const env = { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_NETNS: ctrs[i], CNI_IFNAME: 'eth0', CNI_ARGS: '', CNI_PATH: OWN_BIN };
    const child = spawn('nsenter', [`--net=${host}`, '--', path.join(OWN_BIN, 'bridge')], { env, stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.end(JSON.stringify(conf));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await new Promise((r) => setTimeout(r, delayMs));
    child.kill('SIGKILL'); // nsenter execs the plugin in place: this pid is the plugin
    outcomes.push(`${Math.round(delayMs)}ms:${(await exited) === null ? 'killed' : 'finished'}`);
    const del = await callPlugin(host, OWN_BIN, 'bridge', { command: 'DEL', containerId: id, netns: ctrs[i] }, conf);
    t.is(del.code, 0, `DEL after kill at ${Math.round(delayMs)} ms: ${del.raw}`);
  }
  t.log(`ADD takes ~${Math.round(addMs)} ms; kill points: ${outcomes.join(' ')}`);
  t.true(outcomes.filter((o) => o.endsWith('killed')).length >= 12, 'most points really interrupted the ADD');
  assertClean(t, host, dataDir, 'kill', ctrs);
  t.deepEqual(nsExec(host, ['nft', 'list', 'table', 'bridge', 'nat']).split('\n').filter((l) => /cni-br-iface|macspoofchk/.test(l)), [], 'no spoof-check chain left');
});

rootTest.serial('bad input: clear error JSON with the right code, no partial state', async (t) => {
  const host = testNetns(t, 'rh');
  nsExec(host, ['ip', 'link', 'set', 'lo', 'up']);
  const dataDir = tempDir(t);
  const [a, b] = pool(t, 2);
  const tiny = bridgeConf(dataDir, 'tiny', '10.245.0.0/30');
  const call = (conf: object, id: string, netns: string, args = '', command = 'ADD') => callPlugin(host, OWN_BIN, 'bridge', { command, containerId: id, netns, args }, conf);
  t.is((await call(tiny, 'a', a)).code, 0);
  const before = hostSnapshot(host);
  const cases: [() => Promise<{ code: number; out: Record<string, unknown> }>, number, RegExp][] = [
    [() => call(tiny, 'b', b), 999, /no IP addresses available in range set: 10\.245\.0\.1-10\.245\.0\.2/],
    [() => call(bridgeConf(dataDir, 'tiny', '10.245.0.0/30'), 'b', b, 'IP=10.245.0.2'), 999, /requested IP address 10\.245\.0\.2 is not available/],
    [() => call(bridgeConf(dataDir, 'roomy', '10.246.0.0/24'), 'b', b, 'IP=10.9.9.9'), 999, /failed to allocate all requested IPs: 10\.9\.9\.9/],
    [() => call({ ...tiny, cniVersion: '9.9.9' }, 'b', b), 1, /incompatible CNI versions/],
    [() => call({ ...tiny, hairpinMode: true, promiscMode: true }, 'b', b), 7, /cannot set hairpin mode and promiscuous mode at the same time/],
    [() => call({ ...tiny, bridge: 'lo' }, 'b', b), 999, /"lo" already exists but is not a bridge/],
    [() => call(tiny, 'b', '/run/netns/no-such-ns'), 3, /failed to open netns "\/run\/netns\/no-such-ns"/],
    [() => call(tiny, 'b', b, 'FOO=bar'), 4, /ARGS: unknown args \["FOO"\]/],
  ];
  for (const [p, code, re] of cases) {
    const r = await p();
    t.is(r.code, 1);
    t.is(r.out.code, code, re.source);
    t.regex(String(r.out.msg), re);
  }
  const raw = await new Promise<string>((resolve) => {
    const child = spawn('nsenter', [`--net=${host}`, '--', path.join(OWN_BIN, 'bridge')], { env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'b', CNI_IFNAME: 'eth0', CNI_PATH: OWN_BIN } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', () => resolve(out));
    child.stdin.end('{"cniVersion": "1.0.0", "name": ');
  });
  t.is(JSON.parse(raw).code, 4, 'missing CNI_NETNS is reported before stdin is judged');
  t.deepEqual(hostSnapshot(host), before, 'the failed calls changed nothing in the host');
  t.deepEqual(nsExec(b, ['ip', '-o', 'link']).split('\n').filter(Boolean).length, 1, 'nothing in the failed container');
  t.deepEqual(reservations(dataDir, 'tiny'), ['10.245.0.2']);
  t.deepEqual(reservations(dataDir, 'roomy'), [], 'the address reserved before the failure was released');
  t.is((await call(tiny, 'a', a, '', 'DEL')).code, 0);
});

rootTest.serial('50 parallel portmap and firewall ADDs: no lost rules, no lock errors; 50 DELs leave nothing', async (t) => {
  const host = testNetns(t, 'rh');
  const ctrs = pool(t, 50);
  const conf = (type: string, i: number, ns: string) => ({
    cniVersion: '1.0.0', name: 'par50', type,
    runtimeConfig: { portMappings: [{ hostPort: 10000 + i, containerPort: 80, protocol: 'tcp' }] },
    prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'br0' }, { name: 'eth0', sandbox: ns }], ips: [{ address: `10.239.0.${i + 2}/24`, interface: 1 }], dns: {} },
  });
  for (const command of ['ADD', 'DEL']) {
    const runs = await Promise.all(ctrs.flatMap((c, i) => ['portmap', 'firewall'].map((type) => callPlugin(host, OWN_BIN, type, { command, containerId: `p${i}`, netns: c }, conf(type, i, c)))));
    t.deepEqual(runs.filter((r) => r.code !== 0).map((r) => r.raw), [], `every ${command} succeeded`);
    const nat = nsExec(host, ['iptables-save', '-t', 'nat']);
    const filter = nsExec(host, ['iptables-save', '-t', 'filter']);
    if (command === 'ADD') {
      t.is((nat.match(/^-A CNI-HOSTPORT-DNAT /gm) ?? []).length, 50, 'one jump per container');
      t.is((nat.match(/-j DNAT --to-destination/gm) ?? []).length, 50, 'one DNAT per container');
      t.is((filter.match(/^-A CNI-FORWARD -s /gm) ?? []).length, 50, 'one accept per container');
    } else {
      t.notRegex(nat + filter, /CNI-/, 'nothing left');
    }
  }
});

rootTest.serial('50 parallel portmap and firewall ADDs and DELs on the nftables backends: no lost rules, and the last DEL takes the tables', async (t) => {
  const host = testNetns(t, 'rh');
  const ctrs = pool(t, 50);
  const conf = (type: string, i: number, ns: string) => ({
    cniVersion: '1.0.0', name: 'nft50', type, backend: 'nftables',
    runtimeConfig: { portMappings: [{ hostPort: 11000 + i, containerPort: 80, protocol: 'tcp' }] },
    prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'br0' }, { name: 'eth0', sandbox: ns }], ips: [{ address: `10.238.0.${i + 2}/24`, interface: 1 }], dns: {} },
  });
  const comments = () => {
    const text = nsExec(host, ['nft', '-j', 'list', 'ruleset']).trim();
    const rules = ((text ? JSON.parse(text).nftables : []) as Array<{ rule?: { comment?: string; family: string; table: string } }>).flatMap((o) => (o.rule ? [o.rule] : []));
    return { dnat: rules.filter((r) => r.table === 'cni_hostport' && /^p\d+, net: nft50/.test(r.comment ?? '')).length, tables: nsExec(host, ['nft', 'list', 'tables']).trim() };
  };
  for (const command of ['ADD', 'DEL']) {
    const runs = await Promise.all(ctrs.flatMap((c, i) => ['portmap', 'firewall'].map((type) => callPlugin(host, OWN_BIN, type, { command, containerId: `p${i}`, netns: c }, conf(type, i, c)))));
    t.deepEqual(runs.filter((r) => r.code !== 0).map((r) => r.raw), [], `every ${command} succeeded`);
    const c = comments();
    if (command === 'ADD') t.true(c.dnat >= 50, `every container's port mapping is there (${c.dnat} rules)`);
    else t.notRegex(c.tables, /cni_hostport/, 'the last DEL removed the port-mapping table');
  }
});
