/** Shared pieces of the `burrow run` / pod / image integration tests. */
import type { ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, ROOT, sandbox, type BurrowSandbox } from './burrow.js';
import { testNetns, uplink } from './netns.js';

// The container has a private /tmp (where a checkout may live): the fixtures come in as a volume.
export const FIXTURES = ['-v', `${path.join(ROOT, 'test', 'fixtures')}:/run/fixtures:ro`];
export const HTTP = (port: number) => [process.execPath, '/run/fixtures/servers.cjs', JSON.stringify([{ proto: 'tcp', host: '0.0.0.0', port, mode: 'http' }])];

/** A "host" namespace with an uplink to a "remote" one (10.98.0.1 <-> 10.98.0.2). */
export async function world(t: ExecutionContext): Promise<{ host: string; remote: string }> {
  const host = testNetns(t, 'rh');
  const remote = testNetns(t, 'rr');
  await uplink(host, remote, '10.98.0.1', '10.98.0.2');
  return { host, remote };
}

/** A sandbox using burrow's plugins, with its own state dir and IPAM store (sb.dir/ipam/<network>). */
export function rootSandbox(t: ExecutionContext): BurrowSandbox {
  const sb = sandbox(t, [path.join(ROOT, 'plugins', 'bin')]);
  const toml = fs.readFileSync(sb.configFile, 'utf8').replace('[network]\n', `[network]\nipam_data_dir = "${path.join(sb.dir, 'ipam')}"\n`);
  fs.writeFileSync(sb.configFile, `${toml}[engine]\nstate_dir = "${path.join(sb.dir, 'state')}"\nvolume_path = "${path.join(sb.dir, 'volumes')}"\n`);
  return sb;
}

/** IP reservations held in a rootSandbox's IPAM store, as "network/ip" (the store's bookkeeping files are not reservations). */
export function reservations(sb: BurrowSandbox): string[] {
  const dir = path.join(sb.dir, 'ipam');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).flatMap((net) => fs.readdirSync(path.join(dir, net)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')).map((f) => `${net}/${f}`));
}

export interface Proc {
  child: ChildProcess;
  out: () => string;
  done: Promise<number>;
}

export function start(argv: string[]): Proc {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<number>((resolve) => child.on('exit', (code, sig) => resolve(code ?? 128 + (sig === 'SIGKILL' ? 9 : 15))));
  return { child, out: () => out, done };
}

/** `burrow ARGS` as root inside `ns` (argv for start/spawnSync). */
export const rootArgv = (sb: BurrowSandbox, ns: string, args: string[]) => ['nsenter', `--net=${ns}`, '--', process.execPath, '--', CLI, '--config', sb.configFile, ...args];

/** `burrow ARGS` as `user` inside `ns`, with a clean environment (argv for start/spawnSync). */
export const userArgv = (user: string, ns: string, args: string[], env: string[] = []) => ['nsenter', `--net=${ns}`, '--', 'setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${user}`, `USER=${user}`, 'PATH=/usr/bin:/bin:/usr/sbin:/sbin', ...env, process.execPath, '--', CLI, ...args];

export function sync(argv: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', cwd: '/' });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

export async function until(p: Proc, text: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!p.out().includes(text)) {
    if (Date.now() > end || p.child.exitCode !== null) throw new Error(`never saw "${text}": ${p.out()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// An HTTP client from inside a namespace: undici (the client users' Node code runs), in a node
// started there, since this test process lives in the machine's own namespace.
const UNDICI = path.join(ROOT, 'node_modules', 'undici');
const CLIENT = `require(${JSON.stringify(UNDICI)}).request(process.argv[1], { headersTimeout: 5000, bodyTimeout: 5000 })
  .then(async (r) => { await r.body.dump(); process.stdout.write(String(r.statusCode)); }, () => {})`;

/** The HTTP status of `url` fetched with undici from inside `ns` ('' when unreachable). */
export function http(ns: string, url: string): string {
  const r = spawnSync('nsenter', [`--net=${ns}`, '--', process.execPath, '-e', CLIENT, url], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  return r.stdout.trim();
}

/** Polls `http` until it answers 200 (a detached container's server takes a moment). */
export async function httpUp(ns: string, url: string, tries = 100): Promise<string> {
  let code = '';
  for (let i = 0; i < tries && code !== '200'; i++) {
    code = http(ns, url);
    if (code !== '200') await new Promise((r) => setTimeout(r, 50));
  }
  return code;
}

/**
 * The first two octets of the default network's subnet in `sb`, escaped for a RegExp: 10.88, or
 * the subnet burrow moved to where podman's default network claims 10.88.0.0/16.
 */
export function defaultNet(sb: BurrowSandbox): string {
  const subnet = JSON.parse(sb.ok(['network', 'inspect', 'burrow']))[0].subnets[0].subnet as string;
  return subnet.split('.').slice(0, 2).join('\\.');
}

/**
 * A network NAME (a bridge, then a chained plugin whose DEL fails while the returned flag file
 * exists) in sb's config, with burrow's plugins and the failing one on its cni_path.
 */
export function failingDelNetwork(t: ExecutionContext, sb: BurrowSandbox, name: string, bridge: string, subnet: string): string {
  const plugins = fs.mkdtempSync('/tmp/burrow-faildel-');
  t.teardown(() => fs.rmSync(plugins, { recursive: true, force: true }));
  const flag = path.join(plugins, 'fail');
  fs.writeFileSync(path.join(plugins, 'faildel'), `#!/usr/bin/env python3
import json, os, sys
conf = json.loads(sys.stdin.read() or '{}')
cmd = os.environ.get('CNI_COMMAND')
if cmd == 'VERSION':
    print(json.dumps({'cniVersion': '1.0.0', 'supportedVersions': ['0.4.0', '1.0.0', '1.1.0']}))
elif cmd == 'ADD':
    print(json.dumps(conf['prevResult']))
elif cmd == 'DEL' and os.path.exists(conf['flag']):
    print(json.dumps({'code': 11, 'msg': 'injected DEL failure'}))
    sys.exit(1)
`, { mode: 0o755 });
  fs.writeFileSync(sb.configFile, fs.readFileSync(sb.configFile, 'utf8').replace(/^cni_path = .*$/m, `cni_path = ${JSON.stringify([path.join(ROOT, 'plugins', 'bin'), plugins])}`));
  fs.mkdirSync(sb.confDir, { recursive: true });
  fs.writeFileSync(path.join(sb.confDir, `${name}.conflist`), JSON.stringify({
    cniVersion: '1.0.0', name,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipam: { type: 'host-local', dataDir: path.join(sb.dir, 'ipam'), ranges: [[{ subnet }]] } }, { type: 'faildel', flag }],
  }));
  return flag;
}
