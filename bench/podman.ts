/**
 * podman as a rootful anchor of `burrow bench`: `podman run -d` with Debian's podman 4.3.1 on its
 * CNI backend and the reference plugins, so the setup and teardown columns compare what a user
 * compares (`podman run` against `burrow run`), not only the plugins.
 *
 * Everything podman keeps lives in the bench's temp dir: storage (--root/--runroot, vfs), its
 * containers.conf and the network conflists (written by `burrow network create`, which writes
 * podman's format, with host-local's dataDir in the temp dir too). Containers run a busybox
 * rootfs (--rootfs, no image); the servers are started by nsenter from the host's filesystem, as
 * for every other tool. libcni keeps its results cache in /var/lib/cni/results while a container
 * runs; `podman rm` removes it, and {@link removePodmanState} does that also for a killed bench.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The programs the anchor needs besides the reference plugins; an empty list means usable. */
export function podmanMissing(have: (bin: string) => boolean): string[] {
  const missing = ['podman', 'conmon', 'busybox'].filter((b) => !have(b));
  if (!have('runc') && !have('crun')) missing.push('runc or crun');
  return missing;
}

export interface PodmanLayout {
  /** The anchor's directory inside the bench's temp dir. */
  dir: string;
  conf: string;
  netd: string;
  rootfs: string;
}

export function podmanLayout(benchDir: string): PodmanLayout {
  const dir = path.join(benchDir, 'podman');
  return { dir, conf: path.join(dir, 'containers.conf'), netd: path.join(dir, 'net.d'), rootfs: path.join(dir, 'rootfs') };
}

/** containers.conf for the bench: CNI backend, the reference plugins, its own network dir and default network. */
export function containersConf(l: PodmanLayout, opts: { referenceDir: string; runtime: string; defaultNetwork: string }): string {
  return [
    '[containers]',
    'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]', // within the limits a root shell has here
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    `runtime = "${opts.runtime}"`,
    'events_logger = "none"',
    '[network]',
    'network_backend = "cni"',
    `cni_plugin_dirs = ["${opts.referenceDir}"]`,
    `network_config_dir = "${l.netd}"`,
    `default_network = "${opts.defaultNetwork}"`,
    '',
  ].join('\n');
}

/** Writes the rootfs (busybox: sh and sleep are all a waiting container runs) and containers.conf. */
export function preparePodman(l: PodmanLayout, opts: { referenceDir: string; runtime: string; defaultNetwork: string; busybox: string }): void {
  fs.mkdirSync(l.netd, { recursive: true });
  fs.mkdirSync(path.join(l.rootfs, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'etc', 'tmp']) fs.mkdirSync(path.join(l.rootfs, d), { recursive: true });
  fs.copyFileSync(opts.busybox, path.join(l.rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(l.rootfs, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'sleep']) fs.symlinkSync('busybox', path.join(l.rootfs, 'bin', a));
  fs.writeFileSync(l.conf, containersConf(l, opts));
}

/** argv of a podman command on the bench's storage and configuration. */
export function podmanArgv(l: PodmanLayout, args: string[]): string[] {
  return ['env', `CONTAINERS_CONF=${l.conf}`, 'podman', '--root', path.join(l.dir, 'root'), '--runroot', path.join(l.dir, 'runroot'), '--storage-driver', 'vfs', ...args];
}

/** What `podman inspect` tells about a running container: its netns, its address, conmon's pid. */
export function parsePodmanInspect(json: string): { ns: string; ip: string; conmonPid: number; pid: number } {
  const doc = JSON.parse(json) as Array<{ State?: { Pid?: number; ConmonPid?: number }; NetworkSettings?: { SandboxKey?: string; IPAddress?: string; Networks?: Record<string, { IPAddress?: string }> } }>;
  const c = doc[0];
  if (!c?.State?.Pid) throw new Error('podman inspect: the container is not running');
  const ns = c.NetworkSettings?.SandboxKey || `/proc/${c.State.Pid}/ns/net`;
  const ip = c.NetworkSettings?.IPAddress || Object.values(c.NetworkSettings?.Networks ?? {}).map((n) => n.IPAddress ?? '').find(Boolean) || '';
  return { ns, ip, conmonPid: c.State.ConmonPid ?? 0, pid: c.State.Pid };
}

/**
 * Removes every container of the bench's podman (CNI DEL, its netns, libcni's cache entries) and
 * unmounts what podman left mounted under the anchor's dir. `hostNs` is the bench's host netns,
 * where the bridge and the port-mapping rules live (DEL must run there); skipped when it is gone.
 */
export function removePodmanState(l: PodmanLayout, hostNs?: string): void {
  if (!fs.existsSync(l.conf)) return;
  const argv = podmanArgv(l, ['rm', '-af', '-t', '0']);
  const inNs = hostNs && fs.existsSync(hostNs) ? ['nsenter', `--net=${hostNs}`, '--', ...argv] : argv;
  spawnSync(inNs[0], inNs.slice(1), { stdio: 'ignore', timeout: 120_000 });
  unmountUnder(l.dir);
}

/** Lazily unmounts every mount at or below `dir` (deepest first), so the dir can be removed. */
export function unmountUnder(dir: string): void {
  let info = '';
  try {
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return;
  }
  const points = info.split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => !!p)
    .map((p) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of points) spawnSync('umount', ['-l', p], { stdio: 'ignore' });
}
