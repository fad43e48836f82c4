/**
 * The outer process: the lock (one bench at a time), the "host" and "remote" namespaces, the
 * throwaway user, the temp dir and its configs; it runs the bench inside the host namespace and
 * removes everything afterwards, also on Ctrl-C, and what a killed bench left before it starts.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { anchorsOf, estimateSeconds, parseOptions } from './plan.js';
import { podmanLayout, removePodmanState, unmountUnder } from './podman.js';
import { CLI, have, killTagged, REFERENCE_DIR, ROOT, SELF, TAG, USER } from './procs.js';

/** Deletes the throwaway user, its home and its rootless state dir ($TMPDIR/burrow-UID when XDG_RUNTIME_DIR is unset). */
export function removeUser(): void {
  const uid = spawnSync('id', ['-u', USER], { encoding: 'utf8' }).stdout.trim();
  if (!uid) return;
  spawnSync('pkill', ['-9', '-u', USER]);
  fs.rmSync(path.join(os.tmpdir(), `burrow-${uid}`), { recursive: true, force: true });
  // userdel refuses (8) while a just-killed process of the user is still exiting
  for (let i = 0; i < 40 && spawnSync('userdel', ['-r', USER], { stdio: 'ignore' }).status === 8; i++) spawnSync('sleep', ['0.05']);
}

/**
 * What an earlier bench left when it was killed with -9 (or its machine was stopped) before its
 * cleanup ran: its tagged processes, namespaces, temp dir and the throwaway user. Called with the
 * lock held, so no other bench is running and all of it is stale. Returns what was removed.
 */
export function collectStale(netnsRemove: (p: string) => boolean, netnsDir = '/run/netns', tmp = os.tmpdir()): string[] {
  const removed: string[] = [];
  // every tag but our own (set when this bench itself runs under a tagged parent)
  for (const [tag, n] of killTagged((t) => t !== process.env.BURROW_BENCH_TAG)) removed.push(`${n} process(es) tagged ${tag}`);
  const staleDirs = fs.readdirSync(tmp).filter((n) => /^burrow-bench-/.test(n)).map((n) => path.join(tmp, n));
  for (const d of staleDirs) {
    // podman's containers (conmon does not carry the tag): removed inside the bench's host netns
    let hostNs: string | undefined;
    try {
      hostNs = fs.readFileSync(path.join(d, 'host-netns'), 'utf8').trim();
    } catch {
      // set-up stopped before it was written
    }
    const l = podmanLayout(d);
    if (fs.existsSync(l.conf)) {
      removePodmanState(l, hostNs);
      removed.push(`podman containers of ${d}`);
    }
  }
  for (const name of fs.existsSync(netnsDir) ? fs.readdirSync(netnsDir) : []) {
    if (!/^bb[hrdc]bb[0-9a-z]+$/.test(name)) continue;
    netnsRemove(path.join(netnsDir, name));
    removed.push(`netns ${name}`);
  }
  for (const d of staleDirs) {
    unmountUnder(d);
    fs.rmSync(d, { recursive: true, force: true });
    removed.push(d);
  }
  // the name is the bench's own (README); it exists now only if a bench was stopped before userdel
  if (spawnSync('id', ['-u', USER]).status === 0) {
    removeUser();
    removed.push(`user ${USER}`);
  }
  return removed;
}

export async function outer(argv: string[]): Promise<number> {
  const o = parseOptions(argv); // fail on bad flags before creating anything
  if (process.getuid?.() !== 0) throw new Error('burrow bench needs root: it creates network namespaces, a bridge, and a throwaway user for the rootless runs');
  for (const bin of ['iperf3', 'nsenter', 'setpriv', 'ip']) if (!have(bin)) throw new Error(`${bin} is not installed (run scripts/setup.sh, or apt-get install iperf3 util-linux iproute2)`);
  if (!fs.existsSync(CLI) || !fs.existsSync(SELF)) throw new Error(`${CLI} is not built: run "npm ci" (or npm run build)`);
  const { netnsCreate, netnsRemove } = await import('../native/mod.js');
  // One bench at a time: two would share the throwaway user, and each one's cleanup kills its processes.
  const lock = '/run/burrow-bench.pid';
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
  } catch {
    const holder = Number(fs.readFileSync(lock, 'utf8'));
    let alive = false;
    try {
      process.kill(holder, 0);
      alive = holder !== process.pid;
    } catch {
      // stale: its bench was killed with -9
    }
    if (alive) throw new Error(`another burrow bench is running (pid ${holder}); wait for it or stop it first`);
    fs.writeFileSync(lock, String(process.pid));
  }
  const tag = TAG;
  let dir: string | undefined;
  let host: string | undefined;
  let remote: string | undefined;
  let cleaned = false;
  // Tolerates a failure half-way through the set-up: removes whatever exists by then.
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    // twice: a supervisor killed first may have been about to start something
    killTagged((t) => t === tag);
    spawnSync('sleep', ['0.2']);
    killTagged((t) => t === tag);
    if (dir) removePodmanState(podmanLayout(dir), host);
    if (host) netnsRemove(host);
    if (remote) netnsRemove(remote);
    removeUser();
    if (dir) {
      unmountUnder(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    fs.rmSync(lock, { force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\n${sig}: cleaning up\n`);
    cleanup();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const stale = collectStale(netnsRemove);
    if (stale.length) process.stderr.write(`burrow bench: removed what an earlier bench left when it was killed: ${stale.join(', ')}\n`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-'));
    host = netnsCreate(`bbh${tag}`);
    // for a later bench, should this one be killed: podman's containers are removed inside it
    fs.writeFileSync(path.join(dir, 'host-netns'), host);
    remote = netnsCreate(`bbr${tag}`);
    const useradd = spawnSync('useradd', ['-m', '-c', 'burrow bench throwaway user', USER], { encoding: 'utf8' });
    if (useradd.status !== 0) throw new Error(`useradd ${USER}: ${useradd.stderr.trim()}`);
    const sh = (ns: string, cmd: string) => {
      const r = spawnSync('nsenter', [`--net=${ns}`, '--', 'sh', '-ec', cmd], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr.trim()}`);
    };
    spawnSync('ip', ['link', 'add', 'up0', 'netns', path.basename(host), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', path.basename(remote)]);
    sh(host, 'ip link set lo up; ip addr add 10.98.0.1/24 dev up0; ip link set up0 up; ip route add default via 10.98.0.2');
    sh(remote, 'ip link set lo up; ip addr add 10.98.0.2/24 dev eth0; ip link set eth0 up');
    // the macvlan parent: a veth of the bench's own, never the machine's eth0
    sh(host, 'ip link add mvpar0 type veth peer name mvpeer0; ip link set mvpar0 up; ip link set mvpeer0 up');
    fs.chmodSync('/dev/net/tun', 0o666);
    // pm: podman's own network dir, where `burrow network create` writes the anchor's conflists
    // (podman reads files only: its network bbpodman on pbr0, 10.86/16; this default is unused)
    for (const [who, cniPath, bridge, subnet] of [['own', path.join(ROOT, 'plugins', 'bin'), 'bbr0', '10.88.0.0/16'], ['ref', REFERENCE_DIR, 'rbr0', '10.87.0.0/16'], ['pm', REFERENCE_DIR, 'pbr9', '10.85.0.0/16']] as const) {
      const d = who === 'pm' ? podmanLayout(dir).dir : path.join(dir, who);
      fs.mkdirSync(path.join(d, 'net.d'), { recursive: true });
      fs.writeFileSync(path.join(dir, `${who}.toml`), `[network]\ncni_config_dir = "${d}/net.d"\ncni_cache_dir = "${d}/cache"\nipam_data_dir = "${d}/ipam"\ncni_path = ${JSON.stringify([cniPath])}\ndefault_bridge = "${bridge}"\ndefault_subnet = "${subnet}"\n[engine]\nstate_dir = "${d}/state"\n`);
    }
    const child = spawn('nsenter', [`--net=${host}`, '--', process.execPath, SELF, ...argv], {
      stdio: 'inherit', env: { ...process.env, BURROW_BENCH_INNER: JSON.stringify({ dir, host, remote }), BURROW_BENCH_TAG: tag, NODE_EXTRA_CA_CERTS: '' },
    });
    const { tools, podmanOk } = anchorsOf(o);
    const what = o.full ? 'every path and section (--full)' : o.only.join(', ');
    const est = estimateSeconds(o, tools, podmanOk);
    process.stderr.write(`burrow bench: ${what}; ${o.runs} run(s) of ${o.durationS} s each; about ${Math.max(1, Math.round(est / 60))} min on a 2-core VM${o.full ? '' : ' (--full: every path, up to 100 containers)'}; Ctrl-C stops and cleans up\n`);
    return await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  } finally {
    cleanup();
  }
}
