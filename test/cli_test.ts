/**
 * The CLI as a user meets it: `burrow network ...` output, and bad input of
 * every kind getting one clear line, a non-zero exit, and no change on disk.
 */
import test from 'ava';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { listTree, sandbox, type BurrowSandbox } from './helpers/burrow.js';
import { toolPath } from '../native/system.js';

function snapshot(sb: BurrowSandbox): string[] {
  return [...listTree(sb.confDir).map((f) => `conf:${f}`), ...listTree(sb.cacheDir).map((f) => `cache:${f}`)];
}

/** Runs a command that must fail with `re` on stderr and leave the sandbox as it was. */
function rejects(t: import('ava').ExecutionContext, sb: BurrowSandbox, args: string[], re: RegExp): void {
  const before = snapshot(sb);
  const r = sb.run(args);
  t.not(r.code, 0, `burrow ${args.join(' ')} should fail`);
  t.regex(r.stderr, re, `burrow ${args.join(' ')}`);
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
  t.is(r.stdout, '', 'nothing on stdout');
  t.deepEqual(snapshot(sb), before, 'nothing changed');
}

test('network create, ls, inspect and rm with podman-style flags', (t) => {
  const sb = sandbox(t);
  // podman's default network has 10.88.0.0/16 wherever podman is installed: burrow's moves aside.
  const defaultSubnet = toolPath('podman') ? '10\\.90\\.0\\.0/16' : '10\\.88\\.0\\.0/16';
  t.regex(sb.ok(['network', 'ls']), new RegExp(`^NETWORK ID\\s+NAME\\s+DRIVER\\s+SUBNETS\\n[0-9a-f]{12}\\s+burrow\\s+bridge\\s+${defaultSubnet}\\n$`));
  t.is(sb.ok(['network', 'create', 'auto1']), 'auto1\n');
  t.is(sb.ok(['network', 'create', '--subnet', '10.55.0.0/16', '--gateway', '10.55.0.254', '--ip-range', '10.55.3.0/24', '-o', 'mtu=1400', '--label', 'team=net', 'custom']), 'custom\n');
  t.is(sb.ok(['network', 'create', '--ipv6', 'dual']), 'dual\n');
  t.is(sb.ok(['network', 'create', '--internal', '--subnet', 'fd12:3456::/64', 'v6only']), 'v6only\n');
  const all = JSON.parse(sb.ok(['network', 'ls', '--format', 'json'])) as { name: string; subnets: { subnet: string; gateway?: string; lease_range?: unknown }[]; network_interface: string; internal: boolean; ipv6_enabled: boolean; default?: boolean; options: Record<string, string>; labels: Record<string, string> }[];
  const by = Object.fromEntries(all.map((n) => [n.name, n]));
  t.true(by.burrow.default);
  t.deepEqual(by.auto1.subnets, [{ subnet: '10.89.0.0/24', gateway: '10.89.0.1' }], 'first free /24 of the pool');
  t.is(by.auto1.network_interface, 'burrow1');
  t.deepEqual(by.custom.subnets, [{ subnet: '10.55.0.0/16', gateway: '10.55.0.254', lease_range: { start_ip: '10.55.3.1', end_ip: '10.55.3.254' } }]);
  t.deepEqual(by.custom.options, { mtu: '1400' });
  t.deepEqual(by.custom.labels, { team: 'net' });
  t.deepEqual(by.dual.subnets.map((s) => s.subnet), ['10.89.1.0/24', 'fd89::/64']);
  t.true(by.dual.ipv6_enabled);
  t.true(by.v6only.internal);
  const conf = JSON.parse(fs.readFileSync(path.join(sb.confDir, 'custom.conflist'), 'utf8'));
  t.is(conf.plugins[0].mtu, 1400);
  t.deepEqual(conf.plugins[0].ipam.routes, [{ dst: '0.0.0.0/0' }]);
  const internal = JSON.parse(fs.readFileSync(path.join(sb.confDir, 'v6only.conflist'), 'utf8'));
  t.false(internal.plugins[0].isGateway);
  t.false('routes' in internal.plugins[0].ipam, 'internal networks have no default route');
  const inspected = JSON.parse(sb.ok(['network', 'inspect', 'custom', 'burrow']));
  t.deepEqual(inspected.map((n: { name: string }) => n.name), ['custom', 'burrow']);
  t.is(sb.ok(['network', 'ls', '-q']), 'burrow\nauto1\ncustom\ndual\nv6only\n');
  t.is(sb.ok(['network', 'rm', 'auto1']), 'auto1\n');
  t.is(sb.ok(['network', 'prune']), 'custom\ndual\nv6only\n');
  t.deepEqual(listTree(sb.confDir), []);
});

test('bad network input is refused with a clear message and changes nothing', (t) => {
  const sb = sandbox(t);
  sb.ok(['network', 'create', '--subnet', '10.60.0.0/24', 'taken']);
  rejects(t, sb, ['network', 'create', '--subnet', '10.60.0.128/25', 'x'], /Error: subnet 10\.60\.0\.128\/25 overlaps subnet 10\.60\.0\.0\/24 of network "taken"/);
  // The default network's subnet: 10.88.0.0/16, or the next free one where podman's default network has it.
  const def = (JSON.parse(sb.ok(['network', 'inspect', 'burrow']))[0].subnets[0].subnet as string).replace(/\.0\.0\/16$/, '');
  rejects(t, sb, ['network', 'create', '--subnet', `${def}.5.0/24`, 'x'], new RegExp(`overlaps subnet ${def.replace(/\./g, '\\.')}\\.0\\.0/16 of network "burrow"`));
  if (toolPath('podman')) rejects(t, sb, ['network', 'create', '--subnet', '10.88.5.0/24', 'x'], /overlaps subnet 10\.88\.0\.0\/16 of podman's default network/);
  rejects(t, sb, ['network', 'create', 'taken'], /Error: network "taken" already exists/);
  rejects(t, sb, ['network', 'create', 'burrow'], /network "burrow" already exists/);
  rejects(t, sb, ['network', 'create', '--subnet', '10.61.0.0/33', 'x'], /invalid CIDR "10\.61\.0\.0\/33": prefix length must be 0-32/);
  rejects(t, sb, ['network', 'create', '--subnet', '10.61.0.1/24', 'x'], /host bits are set \(the network is 10\.61\.0\.0\/24\)/);
  rejects(t, sb, ['network', 'create', '--subnet', 'banana', 'x'], /invalid CIDR "banana"/);
  rejects(t, sb, ['network', 'create', '--subnet', '10.61.0.0/24', '--gateway', '10.62.0.1', 'x'], /gateway 10\.62\.0\.1 is not inside subnet 10\.61\.0\.0\/24/);
  rejects(t, sb, ['network', 'create', '--subnet', '10.61.0.0/24', '--gateway', '10.61.0.255', 'x'], /network or broadcast address/);
  rejects(t, sb, ['network', 'create', '--subnet', '10.61.0.0/24', '--ip-range', '10.70.0.0/28', 'x'], /ip range 10\.70\.0\.0\/28 is not inside any --subnet/);
  rejects(t, sb, ['network', 'create', '-o', 'mtu=abc', 'x'], /invalid mtu "abc"/);
  rejects(t, sb, ['network', 'create', '-o', 'color=blue', 'x'], /unsupported bridge option "color"/);
  rejects(t, sb, ['network', 'create', '-d', 'overlay', 'x'], /unsupported network driver "overlay"/);
  rejects(t, sb, ['network', 'create', 'bad/name'], /invalid network name "bad\/name"/);
  rejects(t, sb, ['network', 'create', '-o', 'com.docker.network.bridge.name=burrow0', 'x'], /bridge name "burrow0" is already used/);
  rejects(t, sb, ['network', 'create', '--frobnicate', 'x'], /error: unknown option '--frobnicate'/);
  rejects(t, sb, ['network', 'rm', 'burrow'], /"burrow" is the default network and cannot be removed/);
  rejects(t, sb, ['network', 'rm', 'nope'], /network "nope" not found in/);
  rejects(t, sb, ['network', 'inspect', 'nope'], /network "nope" not found in/);
});

test('bad CNI input: malformed conflist, missing plugin, missing netns, bad args', (t) => {
  const sb = sandbox(t);
  fs.mkdirSync(sb.confDir, { recursive: true });
  fs.writeFileSync(path.join(sb.confDir, '10-broken.conflist'), '{"cniVersion": "1.0.0", "name": "broken", "plugins": [');
  fs.writeFileSync(path.join(sb.confDir, '20-noplugin.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'noplugin', plugins: [{ type: 'no-such-plugin' }] }));
  const ls = sb.run(['network', 'ls']);
  t.is(ls.code, 0, 'ls still works');
  t.regex(ls.stderr, /warning: skipping cannot parse network config in ".*10-broken\.conflist"/);
  t.regex(ls.stdout, /noplugin/);
  rejects(t, sb, ['cni', 'add', 'broken', '/proc/self/ns/net'], /network "broken" not found in ".*" \(1 unreadable file\(s\): cannot parse network config in ".*10-broken\.conflist": /);
  rejects(t, sb, ['cni', 'add', 'noplugin', '/proc/self/ns/net'], /failed to find plugin "no-such-plugin" in path \[\/usr\/lib\/cni\].*\[CNI error code 7\]/);
  rejects(t, sb, ['cni', 'add', 'burrow', 'no-such-netns'], /network namespace "\/run\/netns\/no-such-netns" does not exist/);
  rejects(t, sb, ['cni', 'check', 'burrow', '/run/netns/none'], /does not exist/);
  rejects(t, sb, ['cni', 'add', 'burrow', '/proc/self/ns/net', '--cap-args', '{nope'], /invalid --cap-args/);
  rejects(t, sb, ['cni', 'add', 'burrow', '/proc/self/ns/net', '--args', 'novalue'], /invalid CNI_ARGS pair "novalue"/);
  rejects(t, sb, ['cni', 'add', 'burrow', '/proc/self/ns/net', '--ifname', 'bad/if'], /invalid interface name "bad\/if"/);
  rejects(t, sb, ['cni', 'add', 'burrow', '/proc/self/ns/net', '--id', '-bad'], /invalid characters in containerID "-bad"/);
  rejects(t, sb, ['cni', 'gc', 'burrow', '--valid', 'noslash'], /invalid --valid "noslash"/);
  rejects(t, sb, ['cni', 'frob'], /error: unknown command 'frob'/);
  // DEL of something never added is a success with nothing to do.
  t.is(sb.run(['cni', 'del', 'noplugin', '/run/netns/gone', '--id', 'x']).code, 125, 'DEL still needs its plugins to exist');
  t.regex(sb.ok(['cni', 'status', 'burrow']), /predates STATUS/);
});

test('config file errors name the file and key', (t) => {
  const sb = sandbox(t);
  fs.writeFileSync(sb.configFile, '[network]\ncni_confg_dir = "/x"\n');
  let r = sb.run(['network', 'ls']);
  t.is(r.code, 125);
  t.regex(r.stderr, /burrow\.toml: unknown key "network\.cni_confg_dir" \(known: network\.cni_config_dir/);
  fs.writeFileSync(sb.configFile, '[network]\nfirewall_backend = "pf"\n');
  r = sb.run(['network', 'ls']);
  t.regex(r.stderr, /"network\.firewall_backend" must be "auto", "iptables", "nftables" or "none", got "pf"/);
  fs.writeFileSync(sb.configFile, '[network\n');
  r = sb.run(['network', 'ls']);
  t.regex(r.stderr, /burrow\.toml: invalid TOML/);
  r = sb.run(['--config', '/nonexistent/burrow.toml', 'network', 'ls']);
  t.regex(r.stderr, /cannot read config "\/nonexistent\/burrow\.toml"/);
});

test('cni install writes working launchers, refuses to clobber foreign plugins, uninstall removes only its own', (t) => {
  const sb = sandbox(t);
  const dir = path.join(sb.dir, 'bin');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'bridge'), '#!/bin/sh\necho reference\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'vrf'), '#!/bin/sh\n', { mode: 0o755 });
  const r = sb.run(['cni', 'install', '--dir', dir]);
  t.is(r.code, 125);
  t.regex(r.stderr, /already has bridge that burrow did not install .* use --force/);
  t.deepEqual(fs.readdirSync(dir).sort(), ['bridge', 'vrf'], 'nothing written');
  t.regex(sb.ok(['cni', 'install', '--dir', dir, '--force']), /installed .*\/bin\/host-local\n/);
  const version = spawnSync(path.join(dir, 'host-local'), [], { env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8' });
  t.is(JSON.parse(version.stdout).supportedVersions.at(-1), '1.1.0');
  t.regex(sb.ok(['cni', 'uninstall', '--dir', dir]), /removed .*\/bin\/bridge/);
  t.deepEqual(fs.readdirSync(dir), ['vrf']);
});

test('compat install writes the drop-ins for podman\'s helpers, refuses to clobber podman\'s own, uninstall removes only its own', (t) => {
  const sb = sandbox(t);
  const dir = path.join(sb.dir, 'helpers');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'slirp4netns'), '#!/bin/sh\necho the real one\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'rootlessport'), '#!/bin/sh\n', { mode: 0o755 });
  const r = sb.run(['compat', 'install', '--dir', dir]);
  t.is(r.code, 125);
  t.regex(r.stderr, /already has slirp4netns that burrow did not install .* use --force/);
  t.regex(sb.ok(['compat', 'install', '--dir', dir, '--force']), /installed .*\/helpers\/aardvark-dns\ninstalled .*\/helpers\/netavark\ninstalled .*\/helpers\/slirp4netns\n/);
  t.regex(spawnSync(path.join(dir, 'slirp4netns'), ['--version'], { encoding: 'utf8' }).stdout, /^slirp4netns version 1\.2\.0\n/);
  t.regex(spawnSync(path.join(dir, 'aardvark-dns'), ['version'], { encoding: 'utf8' }).stdout, /"version": "1\.4\.0"/);
  t.regex(spawnSync(path.join(dir, 'netavark'), ['version'], { encoding: 'utf8' }).stdout, /"version": "1\.4\.0"/);
  t.regex(sb.ok(['compat', 'uninstall', '--dir', dir]), /removed .*\/helpers\/slirp4netns/);
  t.deepEqual(fs.readdirSync(dir), ['rootlessport']);
});

test('version and info: podman\'s layout, --format json and Go templates', (t) => {
  const sb = sandbox(t);
  fs.appendFileSync(sb.configFile, `[engine]\nstate_dir = "${path.join(sb.dir, 'state')}"\nvolume_path = "${path.join(sb.dir, 'volumes')}"\n`);
  t.regex(sb.ok(['version']), /^Client:\s+burrow\nVersion:\s+\d+\.\d+\.\d+\nNode Version:\s+v\d+\.\d+\.\d+\nOS\/Arch:\s+linux\/\w+\n$/);
  t.regex(sb.ok(['version', '--format', '{{.Client.Version}}']), /^\d+\.\d+\.\d+\n$/, 'the template podman scripts use');
  const info = JSON.parse(sb.ok(['info', '--format', 'json']));
  t.is(info.Host.Os, 'linux');
  t.is(info.Host.Rootless, process.getuid!() !== 0);
  t.is(typeof info.Host.Kernel, 'string');
  t.is(info.Store.StateDir, path.join(sb.dir, 'state'));
  t.is(info.Store.VolumePath, path.join(sb.dir, 'volumes'));
  t.deepEqual(info.Store.ContainerStore, { Number: 0, Running: 0, Stopped: 0 });
  t.is(info.Network.CniConfigDir, sb.confDir);
  t.true('Tun' in info.Rootless && 'PingGroupRange' in info.Rootless && 'Newuidmap' in info.Rootless);
  t.regex(sb.ok(['info']), /^Host:\n  Arch: \w+\n/m, 'YAML by default, as podman info');
  t.is(sb.ok(['info', '--format', '{{.Store.VolumePath}}']), `${path.join(sb.dir, 'volumes')}\n`);
  const bad = sb.run(['info', '--format', '{{.Nope']);
  t.is(bad.code, 125);
  t.regex(bad.stderr, /template: .*unclosed action/);
});
