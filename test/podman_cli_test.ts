/**
 * The same podman-style script against Debian's podman 4.3.1 and against burrow, in one throwaway
 * "host" namespace, with their outputs compared once ids and times are masked: `ps` in its
 * forms, `inspect -f`, `port`, `logs`, `exec`, `stop`/`start`/`restart`, `rm -f $(ps -aq)`,
 * volumes, and the exit code of each class of failure. Where burrow differs on purpose (its
 * own init is the container's pid 1; messages), the script checks only what both promise.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootTest, testNetns } from './helpers/netns.js';
import { rootArgv, rootSandbox } from './helpers/run.js';

const podmanMissing = () => (spawnSync('podman', ['--version']).status === 0 ? null : 'podman is not installed (scripts/setup.sh installs it)');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** ids, times and durations masked: what is left must be the same for both tools. */
function mask(s: string): string {
  return s
    .replace(/\b[0-9a-f]{64}\b/g, '<ID64>')
    .replace(/\b[0-9a-f]{12}\b/g, '<ID12>')
    .replace(/\b(Less than a second|\d+ seconds?|About a minute) ago\b/g, '<T> ago');
}

const CMD = ['sh', '-c', 'trap "exit 0" TERM; echo hello; echo oops >&2; while :; do sleep 1; done'];

/** The script: each step's arguments; run steps name the container's command separately (--rootfs R CMD vs --rootfs R -- CMD). */
function script(rootfs: string, tool: (args: string[], cmd?: string[]) => Result): Record<string, Result> {
  const out: Record<string, Result> = {};
  const step = (name: string, args: string[], cmd?: string[]) => {
    out[name] = tool(cmd ? [...args, '--rootfs', rootfs] : args, cmd);
    return out[name];
  };
  step('run -d', ['run', '-d', '--name', 'c1', '-l', 'app=web', '-p', '18700:8080'], CMD);
  spawnSync('sleep', ['1']);
  step('ps template', ['ps', '--format', '{{.Names}} {{.Ports}} {{.Command}} {{.Labels}} {{.State}}']);
  step('ps -q', ['ps', '-q']);
  step('ps label filter', ['ps', '-a', '--filter', 'label=app=web', '--format', '{{.Names}}']);
  step('ps name+status filter', ['ps', '--filter', 'name=c', '--filter', 'status=running', '--format', '{{.Names}}']);
  step('ps status exited', ['ps', '--filter', 'status=exited', '--format', '{{.Names}}']);
  step('ps json', ['ps', '--format', 'json']);
  step('inspect -f', ['inspect', '-f', '{{.State.Status}} {{.State.Running}} {{.Name}} {{.Config.Cmd}} {{.Path}} {{.Args}} {{.Config.Labels}} {{.HostConfig.PortBindings}} {{.RestartCount}} {{.Config.Tty}} {{.HostConfig.AutoRemove}} {{json .NetworkSettings.Ports}}', 'c1']);
  step('inspect', ['inspect', 'c1']);
  step('port', ['port', 'c1']);
  step('port 8080', ['port', 'c1', '8080']);
  step('logs', ['logs', 'c1']);
  step('exec status', ['exec', 'c1', 'sh', '-c', 'exit 3']);
  step('exec not found', ['exec', 'c1', 'nosuch']);
  step('exec not executable', ['exec', 'c1', '/etc/passwd']);
  step('top header', ['top', 'c1']);
  step('stop', ['stop', 'c1']);
  step('ps -a after stop', ['ps', '-a', '--format', '{{.Names}} {{.Status}}']);
  step('start', ['start', 'c1']);
  step('restart', ['restart', 'c1']);
  step('inspect after restart', ['inspect', '-f', '{{.RestartCount}} {{.State.Status}}', 'c1']);
  step('logs --tail 1', ['logs', '--tail', '1', 'c1']);
  step('run status', ['run', '--rm'], ['sh', '-c', 'exit 7']);
  step('run not found', ['run', '--rm'], ['nosuch']);
  step('run dns conflict', ['run', '--rm', '--dns', '1.1.1.1', '--network', 'none'], ['true']);
  step('run name in use', ['run', '--name', 'c1'], ['true']);
  step('stop unknown', ['stop', 'nosuch']);
  step('bad flag', ['ps', '--bogus']);
  step('volume create', ['volume', 'create', 'v1']);
  step('volume ls', ['volume', 'ls', '--format', '{{.Name}} {{.Driver}}']);
  step('volume inspect', ['volume', 'inspect', 'v1', '--format', '{{.Name}} {{.Driver}} {{.Scope}}']);
  step('volume rm', ['volume', 'rm', 'v1']);
  const ids = tool(['ps', '-aq']).stdout.trim().split('\n').filter(Boolean);
  step('rm -f $(ps -aq)', ['rm', '-f', ...ids]);
  step('ps -aq after', ['ps', '-aq']);
  return out;
}

rootTest.serial('a podman script gives podman 4.3.1\'s output and exit codes with burrow', async (t) => {
  const missing = podmanMissing();
  if (missing) return t.fail(missing);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-pmcli-'));
  const rootfs = path.join(dir, 'rootfs');
  const netd = path.join(dir, 'net.d');
  fs.mkdirSync(netd);
  for (const d of ['bin', 'proc', 'sys', 'dev', 'etc', 'tmp', 'run']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.copyFileSync('/usr/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'sleep', 'cat', 'echo', 'true']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
  fs.writeFileSync(path.join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  // podman's own default network would keep its addresses in the machine's /var/lib/cni/networks:
  // a network of the test's, with host-local's store in the temp dir, is the default instead
  fs.writeFileSync(path.join(netd, 'pmcli.conflist'), JSON.stringify({
    cniVersion: '0.4.0', name: 'pmcli',
    plugins: [
      { type: 'bridge', bridge: 'pmcli0', isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', dataDir: path.join(dir, 'ipam'), routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.89.250.0/24', gateway: '10.89.250.1' }]] } },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'firewall' },
      { type: 'tuning' },
    ],
  }));
  const conf = path.join(dir, 'containers.conf');
  fs.writeFileSync(conf, `[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\nevents_logger = "file"\n[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "${netd}"\ndefault_network = "pmcli"\n`);
  const host = testNetns(t, 'pq');
  spawnSync('ip', ['-n', path.basename(host), 'link', 'set', 'lo', 'up']);
  const podmanArgs = ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--storage-driver', 'vfs'];
  const podman = (args: string[], cmd?: string[]): Result => {
    const r = spawnSync('nsenter', [`--net=${host}`, '--', 'podman', ...podmanArgs, ...args, ...(cmd ?? [])], { env: { ...process.env, CONTAINERS_CONF: conf }, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  t.teardown(() => {
    podman(['rm', '-af']);
    podman(['volume', 'rm', '-af']);
    spawnSync('umount', ['-R', path.join(dir, 'root')]);
    spawnSync('umount', ['-R', path.join(dir, 'runroot')]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const sb = rootSandbox(t);
  const burrow = (args: string[], cmd?: string[]): Result => {
    const argv = rootArgv(sb, host, [...args, ...(cmd ? ['--', ...cmd] : [])]);
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 120_000 });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const theirs = script(rootfs, podman);
  t.is(theirs['run -d'].code, 0, `podman itself must run here: ${theirs['run -d'].stderr}`);
  const ours = script(rootfs, burrow);
  if (process.env.SHOW) for (const k of Object.keys(ours)) t.log(k, JSON.stringify(theirs[k]), JSON.stringify(ours[k]));

  // Same output, byte for byte once ids and times are masked
  for (const name of ['run -d', 'ps template', 'ps -q', 'ps label filter', 'ps name+status filter', 'ps status exited', 'inspect -f', 'port', 'port 8080', 'logs', 'stop', 'ps -a after stop', 'start', 'restart', 'inspect after restart', 'logs --tail 1', 'volume create', 'volume ls', 'volume inspect', 'volume rm', 'rm -f $(ps -aq)', 'ps -aq after']) {
    t.is(mask(ours[name].stdout), mask(theirs[name].stdout), `${name}: stdout`);
    t.is(ours[name].code, theirs[name].code, `${name}: exit code (${ours[name].stderr.trim()})`);
  }
  t.is(ours.logs.stderr, theirs.logs.stderr, 'logs: the container\'s stderr on stderr');
  // Exit codes of each class of failure, and the messages podman's users search for
  for (const name of ['exec status', 'exec not found', 'exec not executable', 'run status', 'run not found', 'run dns conflict', 'run name in use', 'stop unknown', 'bad flag']) {
    t.is(ours[name].code, theirs[name].code, `${name}: exit code ${theirs[name].code} (podman: ${theirs[name].stderr.trim()} / burrow: ${ours[name].stderr.trim()})`);
  }
  t.is(ours['run dns conflict'].stderr, theirs['run dns conflict'].stderr);
  t.is(ours['stop unknown'].stderr, theirs['stop unknown'].stderr);
  t.regex(ours['run name in use'].stderr, /the container name "c1" is already in use by [0-9a-f]{12}\. You have to remove that container to be able to reuse that name: that name is already in use/);
  // ps --format json: podman's keys and values where they do not depend on the tool
  const pj = JSON.parse(theirs['ps json'].stdout)[0];
  const bj = JSON.parse(ours['ps json'].stdout)[0];
  for (const k of ['Names', 'Labels', 'Ports', 'State', 'Command', 'Exited', 'ExitCode', 'AutoRemove', 'IsInfra', 'Pod', 'PodName', 'Mounts']) t.deepEqual(bj[k], pj[k], `ps json .${k}`);
  t.deepEqual(Object.keys(bj).filter((k) => !(k in pj)), [], 'no key podman lacks');
  // inspect: the documented podman fields exist with podman's types
  const pi = JSON.parse(theirs.inspect.stdout)[0];
  const bi = JSON.parse(ours.inspect.stdout)[0];
  for (const key of ['Id', 'Created', 'Path', 'Args', 'State.Status', 'State.Running', 'State.Pid', 'State.ExitCode', 'State.StartedAt', 'State.FinishedAt', 'Name', 'Mounts', 'NetworkSettings.IPAddress', 'NetworkSettings.Gateway', 'NetworkSettings.MacAddress', 'NetworkSettings.Ports', 'NetworkSettings.SandboxKey', 'Config.Hostname', 'Config.Env', 'Config.Cmd', 'Config.Labels', 'Config.Tty', 'Config.OpenStdin', 'HostConfig.Binds', 'HostConfig.NetworkMode', 'HostConfig.PortBindings', 'HostConfig.AutoRemove', 'HostConfig.Privileged', 'HostConfig.ReadonlyRootfs', 'HostConfig.CapAdd', 'HostConfig.Dns', 'HostConfig.ExtraHosts']) {
    const get = (o: Record<string, unknown>) => key.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);
    t.is(typeof get(bi), typeof get(pi), `inspect .${key}: ${JSON.stringify(get(bi))} vs podman's ${JSON.stringify(get(pi))}`);
    t.is(Array.isArray(get(bi)), Array.isArray(get(pi)), `inspect .${key} is a list in both or neither`);
  }
  t.deepEqual(Object.keys(bi.NetworkSettings.Networks), ['burrow'], 'the network the container is on');
  t.regex(bi.NetworkSettings.Networks.burrow.IPAddress, /^10\.\d+\.\d+\.\d+$/);
  // top: podman's columns (burrow's init is pid 1; podman's is the command itself)
  t.is(ours['top header'].stdout.split('\n')[0].replace(/\s+/g, ' '), theirs['top header'].stdout.split('\n')[0].replace(/\s+/g, ' '));
});
