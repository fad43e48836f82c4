import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { PortSpec } from '../../net/ports/portspec.js';
import type { CniAttachment, ContainerRecord } from '../container/containers.js';
import { anchorMode, pastaArgs, pastaForwards, slirpArgs, slirpForwards } from './anchor.js';
import { cniMode, gcCni, portMappings, type CniOps, type CniRuntimeConf } from './cni.js';
import { joinMode } from './join.js';
import { hostMode, noneMode } from './plain.js';
import { resolvConf } from './resolv.js';
import type { AttachContext, NetworkRecord } from './types.js';
import { UndoStack } from './undo.js';
import { usernetApiSocket, usernetMode } from './usernet.js';

const P = (p: Partial<PortSpec>): PortSpec => ({ proto: 'tcp', hostAddr: '', hostPort: 8080, guestPort: 80, count: 1, ...p });
const HOST_RESOLV = 'search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\n';

function context(over: Partial<AttachContext> = {}): AttachContext & { saved: NetworkRecord[] } {
  const saved: NetworkRecord[] = [];
  return { id: 'c'.repeat(64), name: 'web', dir: '/nonexistent', stateDir: '/run/x', ports: [], dns: [], saveNetwork: (n) => saved.push(structuredClone(n)), saved, ...over };
}

/** A CNI runtime that remembers every call; `failAdd`/`failDel` name networks whose ADD/DEL throws. */
function fakeCni(o: { failAdd?: string; failDel?: string; networks?: string[]; badIp?: string; dns?: string[] } = {}) {
  const calls: string[] = [];
  let released = 0;
  const ops: CniOps = {
    get: (name) => {
      if (!(o.networks ?? ['a', 'b']).includes(name)) throw new Error(`network "${name}" not found`);
      return { name };
    },
    checkIp: (_list, ip) => {
      if (ip === o.badIp) throw new Error(`requested static ip ${ip} not in any subnet`);
    },
    add: async (list, rt: CniRuntimeConf) => {
      const n = (list as { name: string }).name;
      calls.push(`add ${n} ${rt.ifname} ${JSON.stringify(rt.capabilityArgs)}${rt.args ? ` ${JSON.stringify(rt.args)}` : ''}`);
      if (n === o.failAdd) throw new Error(`plugin failed on ${n}`);
      const i = n === 'a' ? 5 : 6;
      return { ips: [{ address: `10.0.${i}.2/24`, gateway: `10.0.${i}.1` }, { address: `fd00:${i}::2/64`, gateway: `fd00:${i}::1` }], interfaces: [{ name: 'veth0' }, { name: rt.ifname, mac: `02:00:00:00:00:0${i}`, sandbox: rt.netns }],
        // a DNS-enabled network (dnsname chained): its gateway and domain
        ...(o.dns?.includes(n) ? { dns: { nameservers: [`10.0.${i}.1`], search: ['dns.podman'] } } : {}) };
    },
    del: async (list, rt: CniRuntimeConf) => {
      const n = (list as { name: string }).name;
      calls.push(`del ${n} ${rt.ifname}`);
      if (n === o.failDel) throw new Error(`DEL failed on ${n}`);
    },
    reservePorts: async (ports) => {
      calls.push(`reserve ${ports.length}`);
      return () => void released++;
    },
  };
  return { ops, calls, released: () => released };
}

test('undo stack: reverse order, goes on past failures, reports them with their tags, runs once', async (t) => {
  const order: string[] = [];
  const u = new UndoStack<string>();
  u.push('one', () => void order.push('one'));
  u.push('two', () => {
    order.push('two');
    throw new Error('two broke');
  }, 'tag2');
  u.push('three', async () => void order.push('three'));
  const failures = await u.run();
  t.deepEqual(order, ['three', 'two', 'one']);
  t.is(failures.length, 1);
  t.is(failures[0].step, 'two');
  t.is(failures[0].tag, 'tag2');
  t.is((failures[0].error as Error).message, 'two broke');
  t.deepEqual(await u.run(), [], 'nothing is undone twice');
  t.deepEqual(order, ['three', 'two', 'one']);
});

test('resolv.conf: --dns wins; the host\'s loopback nameservers only on the host network', (t) => {
  t.is(resolvConf(['1.1.1.1', '9.9.9.9'], HOST_RESOLV), 'nameserver 1.1.1.1\nnameserver 9.9.9.9\n');
  t.is(resolvConf([], HOST_RESOLV), 'search lan\nnameserver 192.0.2.53\n');
  t.is(resolvConf([], HOST_RESOLV, { hostNetwork: true }), HOST_RESOLV);
  t.is(resolvConf([], ''), '');
});

test('cni: ADD each network in order with ports on the first, static ip/mac where asked; the record is saved before ADD; DEL from the undo stack', async (t) => {
  const cni = fakeCni();
  const mode = cniMode(cni.ops, [{ name: 'a', ifname: 'eth0', ips: ['10.0.5.9'], aliases: [] }, { name: 'b', ifname: 'lan1', ips: [], mac: '02:00:00:00:00:aa', aliases: [] }], () => HOST_RESOLV);
  t.deepEqual(mode.initialRecord(), { mode: 'cni', attachments: [] });
  t.true(mode.ownNetns);
  const c = context({ ports: [P({}), P({ proto: 'udp', hostPort: 5353, guestPort: 53, count: 2 })] });
  const undo = new UndoStack<CniAttachment>();
  const got = await mode.attach(c, { pid: 42, netnsPath: '/proc/1/fd/9' }, undo);
  t.deepEqual(cni.calls, [
    'reserve 2',
    `add a eth0 ${JSON.stringify({ portMappings: portMappings(c.ports), ips: ['10.0.5.9'], aliases: { a: [] } })} ${JSON.stringify([['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web']])}`,
    `add b lan1 ${JSON.stringify({ mac: '02:00:00:00:00:aa', aliases: { b: [] } })} ${JSON.stringify([['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web']])}`,
  ]);
  t.is(portMappings(c.ports).length, 3, 'a range is one mapping per port');
  t.deepEqual(got, { ips: ['10.0.5.2', 'fd00:5::2', '10.0.6.2', 'fd00:6::2'], resolv: 'search lan\nnameserver 192.0.2.53\n', extraHosts: [], hostGateway: '10.0.5.1', networkDns: { nameservers: [], search: [] } });
  t.deepEqual(c.saved[0], { mode: 'cni', attachments: [{ network: 'a', netns: '/proc/1/fd/9', ifname: 'eth0' }, { network: 'b', netns: '/proc/1/fd/9', ifname: 'lan1' }] }, 'saved before any ADD: a crash mid-ADD is collected');
  const last = c.saved.at(-1) as { attachments: CniAttachment[] };
  t.deepEqual(last.attachments[1].result, { ips: [{ address: '10.0.6.2/24', gateway: '10.0.6.1' }, { address: 'fd00:6::2/64', gateway: 'fd00:6::1' }], mac: '02:00:00:00:00:06' });
  t.deepEqual(await undo.run(), []);
  t.deepEqual(cni.calls.slice(3), ['del b lan1', 'del a eth0']);
  t.is(cni.released(), 1, 'the host ports are released');
});

test('cni: DNS-enabled networks put their gateways first in resolv.conf with their search domain; each network gets its own aliases; --dns replaces all', async (t) => {
  const cni = fakeCni({ dns: ['a', 'b'] });
  const mode = cniMode(cni.ops, [{ name: 'a', ifname: 'eth0', ips: [], aliases: ['db', 'pg'] }, { name: 'b', ifname: 'eth1', ips: [], aliases: [] }], () => HOST_RESOLV);
  const got = await mode.attach(context({ name: 'postgres' }), { pid: 1, netnsPath: '/x' }, new UndoStack<CniAttachment>());
  t.is(got.resolv, 'search dns.podman lan\nnameserver 10.0.5.1\nnameserver 10.0.6.1\nnameserver 192.0.2.53\n');
  t.true(cni.calls[0].includes('"aliases":{"a":["db","pg"]}') && cni.calls[0].includes('["K8S_POD_NAME","postgres"]'), cni.calls[0]);
  t.true(cni.calls[1].includes('"aliases":{"b":[]}'), cni.calls[1]);
  const own = await cniMode(fakeCni({ dns: ['a'] }).ops, [{ name: 'a', ifname: 'eth0', ips: [], aliases: [] }], () => HOST_RESOLV).attach(context({ dns: ['9.9.9.9'] }), { pid: 1, netnsPath: '/x' }, new UndoStack<CniAttachment>());
  t.is(own.resolv, 'nameserver 9.9.9.9\n');
});

test('cni: a failed ADD leaves DELs of every network reached on the stack; a failed DEL is reported with its attachment', async (t) => {
  const cni = fakeCni({ failAdd: 'b', failDel: 'a' });
  const mode = cniMode(cni.ops, [{ name: 'a', ifname: 'eth0', ips: [], aliases: [] }, { name: 'b', ifname: 'eth1', ips: [], aliases: [] }]);
  const undo = new UndoStack<CniAttachment>();
  await t.throwsAsync(mode.attach(context(), { pid: 1, netnsPath: '/x' }, undo), { message: 'plugin failed on b' });
  const failures = await undo.run();
  t.deepEqual(cni.calls.filter((x) => x.startsWith('del')), ['del b eth1', 'del a eth0']);
  t.is(failures.length, 1);
  t.is(failures[0].step, 'CNI DEL of network "a" (eth0)');
  t.is(failures[0].tag?.network, 'a');
});

test('cni: an unknown network or an address it cannot give is refused when the mode is made, before anything starts', (t) => {
  t.throws(() => cniMode(fakeCni().ops, [{ name: 'nosuch', ifname: 'eth0', ips: [], aliases: [] }]), { message: 'network "nosuch" not found' });
  t.throws(() => cniMode(fakeCni({ badIp: '10.9.9.9' }).ops, [{ name: 'a', ifname: 'eth0', ips: ['10.9.9.9'], aliases: [] }]), { message: /not in any subnet/ });
});

test('cni gc: DELs a killed supervisor\'s attachments, skips networks that are gone, returns what still fails', async (t) => {
  const cni = fakeCni({ failDel: 'b', networks: ['a', 'b'] });
  const atts: CniAttachment[] = [{ network: 'a', netns: '', ifname: 'eth0' }, { network: 'gone', netns: '', ifname: 'eth1' }, { network: 'b', netns: '', ifname: 'eth2' }];
  const failed = await gcCni(cni.ops, 'id1', atts);
  t.deepEqual(cni.calls, ['del a eth0', 'del b eth2']);
  t.deepEqual(failed.map((f) => f.attachment.network), ['b']);
});

test('usernet: the stack on the TAP with the ports and API socket; slirp4netns addressing; its stop on the undo stack', async (t) => {
  const started: unknown[] = [];
  let stopped = 0;
  const mode = usernetMode({ mapHostLoopback: '10.0.2.2', start: async (pid, fd, s) => {
    started.push({ pid, fd, tap: s.tapName, ports: s.ports, api: s.apiSocket, configure: s.configure, loop: s.mapHostLoopback });
    return { stop: () => void stopped++ };
  } });
  t.is(mode.tap, 'eth0');
  const c = context({ ports: [P({})], mapHostLoopback: '10.0.2.2' });
  const undo = new UndoStack<CniAttachment>();
  const got = await mode.attach(c, { pid: 7, tapFd: 11 }, undo);
  t.deepEqual(started, [{ pid: 7, fd: 11, tap: 'eth0', ports: c.ports, api: usernetApiSocket('/run/x', c.id), configure: true, loop: '10.0.2.2' }]);
  t.deepEqual(got, { ips: ['10.0.2.100'], resolv: 'nameserver 10.0.2.3\nnameserver fd00::3\n', extraHosts: ['10.0.2.2\thost.containers.internal host.docker.internal'], apiSocket: '/run/x/sock/cccccccccccc.sock' });
  await undo.run();
  t.is(stopped, 1);
  t.is((await usernetMode({ start: async () => ({ stop: () => undefined }) }).attach(context({ dns: ['192.0.2.1'] }), { pid: 1, tapFd: 3 }, new UndoStack())).resolv, 'nameserver 192.0.2.1\n', '--dns replaces the stack\'s resolver');
  t.throws(() => usernetMode({ mapHostLoopback: '10.0.2.100' }), { message: /cannot be the container's own address/ });
  t.throws(() => usernetMode({ mapHostLoopback: 'nope' }), { message: /expected an IP address/ });
  await t.throwsAsync(usernetMode({ start: async () => ({ stop: () => undefined }) }).attach(context(), { pid: 1 }, new UndoStack()), { message: /needs the TAP/ });
});

test('anchors: pasta and slirp4netns command lines and forwards; a missing tool is refused up front', (t) => {
  const ports = [P({}), P({ hostAddr: '127.0.0.1', hostPort: 9000, guestPort: 9000, count: 3 }), P({ proto: 'udp', hostPort: 53, guestPort: 53 })];
  t.is(pastaForwards(ports, 'tcp'), '8080:80,127.0.0.1/9000-9002:9000-9002');
  t.is(pastaForwards(ports, 'udp'), '53:53');
  t.is(pastaForwards([], 'udp'), 'none');
  t.deepEqual(pastaArgs(42, ports, '/d/pasta.pid', false), ['--config-net', '--quiet', '-T', 'none', '-U', 'none', '-t', '8080:80,127.0.0.1/9000-9002:9000-9002', '-u', '53:53', '--no-map-gw', '--pid', '/d/pasta.pid', '42']);
  t.false(pastaArgs(42, [], '/p', true).includes('--no-map-gw'), '--map-host-loopback lets pasta map the gateway to the host');
  t.deepEqual(slirpArgs(42, '/s.sock', false), ['--configure', '--mtu=65520', '--disable-host-loopback', '--api-socket', '/s.sock', '--ready-fd', '3', '42', 'eth0']);
  t.deepEqual(slirpForwards(ports).map((r) => `${r.arguments.proto} ${r.arguments.host_addr}:${r.arguments.host_port}->${r.arguments.guest_port}`), ['tcp 0.0.0.0:8080->80', 'tcp 127.0.0.1:9000->9000', 'tcp 127.0.0.1:9001->9001', 'tcp 127.0.0.1:9002->9002', 'udp 0.0.0.0:53->53']);
  t.throws(() => anchorMode('pasta', { ports: [], bin: null }), { message: 'pasta is not installed (apt-get install passt)' });
  t.throws(() => anchorMode('slirp4netns', { ports: [P({ proto: 'udp', hostAddr: '::1' })], bin: '/bin/true' }), { message: /UDP over IPv4 only/ });
  t.is(anchorMode('slirp4netns', { ports: [], bin: '/bin/true' }).kind, 'slirp4netns');
});

test('anchors: a tool that fails says so, and what it printed', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-anchor-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fake = path.join(dir, 'tool');
  fs.writeFileSync(fake, '#!/bin/sh\necho "cannot open namespace" >&2\nexit 1\n', { mode: 0o755 });
  const undo = new UndoStack<CniAttachment>();
  await t.throwsAsync(anchorMode('pasta', { ports: [], bin: fake }).attach(context({ dir, stateDir: dir }), { pid: 1 }, undo), { message: 'pasta failed: cannot open namespace' });
  await t.throwsAsync(anchorMode('slirp4netns', { ports: [], bin: fake }).attach(context({ dir, stateDir: dir }), { pid: 1 }, undo), { message: 'slirp4netns failed: cannot open namespace' });
  t.deepEqual(await undo.run(), [], 'the failed slirp4netns is stopped from the stack');
});

test('host and none: no namespace of its own for host, loopback only for none; their resolv.conf', async (t) => {
  const host = hostMode(() => HOST_RESOLV);
  t.false(host.ownNetns);
  t.deepEqual(await host.attach(context(), { pid: 1 }, new UndoStack()), { ips: [], resolv: HOST_RESOLV, extraHosts: [] });
  t.is((await host.attach(context({ dns: ['192.0.2.9'] }), { pid: 1 }, new UndoStack())).resolv, 'nameserver 192.0.2.9\n');
  const none = noneMode();
  t.true(none.ownNetns);
  t.deepEqual(await none.attach(context(), { pid: 1 }, new UndoStack()), { ips: [], resolv: '', extraHosts: [] });
});

test('join: the target\'s addresses, nameservers and host entries; no namespace of its own', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-join-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'hosts'), '192.0.2.7\tdb\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.5.2\tinfra burrow-infra\n');
  fs.writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 10.0.5.1\n');
  const target = { id: 'f'.repeat(64), ips: ['10.0.5.2'] } as ContainerRecord;
  const mode = joinMode(target, dir);
  t.false(mode.ownNetns);
  t.deepEqual(mode.initialRecord(), { mode: 'container', target: target.id });
  t.deepEqual(await mode.attach(context(), { pid: 1 }, new UndoStack()), { ips: ['10.0.5.2'], resolv: 'nameserver 10.0.5.1\n', extraHosts: ['192.0.2.7\tdb', '10.0.5.2\tinfra burrow-infra'] });
});
