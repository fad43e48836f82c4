/**
 * The containers a path needs, started as users start them (`burrow run`, `podman run -d`), and
 * where each path's servers and clients run. Names and host ports come from the run's Env, so
 * two runs in one process never share them.
 */
import fs from 'node:fs';
import { CLI, TAG, USER, inNs, run, start, until } from './procs.js';
import { PATHS, type Kind } from './plan.js';
import { parsePodmanInspect, podmanArgv, podmanLayout } from './podman.js';

// ---- burrow invocations ---------------------------------------------------------------------

/**
 * Who runs burrow: root with burrow's plugins, root with the reference plugins, the bench user, or
 * (for podman's networks, which `burrow network create` writes in podman's format) root on podman's dir.
 */
export type Who = 'own' | 'ref' | 'pm' | 'user';

export interface Env {
  dir: string;
  host: string;
  remote: string;
  configs: Record<'own' | 'ref' | 'pm', string>;
  uid: number;
  /** What the run has handed out so far: container and pod names, blocks of host ports. */
  seq: { names: number; ports: number };
}

export function burrowArgv(env: Env, who: Who, args: string[]): string[] {
  if (who === 'user') {
    return ['setpriv', `--reuid=${USER}`, `--regid=${USER}`, '--init-groups', '--', 'env', '-i', `HOME=/home/${USER}`, `USER=${USER}`, 'PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', `BURROW_BENCH_TAG=${TAG}`, process.execPath, CLI, ...args];
  }
  return [process.execPath, CLI, '--config', env.configs[who], ...args];
}

export async function burrow(env: Env, who: Who, args: string[]): Promise<string> {
  const r = await run(burrowArgv(env, who, args));
  if (r.code !== 0) throw new Error(`burrow ${args.slice(0, 3).join(' ')}: ${r.out.trim().split('\n').slice(-1)[0]}`);
  return r.out;
}

export interface Ctr {
  name: string;
  /** The processes that hold the container's network: burrow's supervisor, or podman's conmon. */
  netPids: number[];
  setupMs: number;
  ns: string;
  ip: string;
  /** Stops the container (SIGTERM to burrow); resolves to the teardown time in ms. */
  stop: () => Promise<number>;
}

/** A name no other container or pod of this bench has (the bench's tag, then a counter of the run's). */
export function nextName(env: Env, prefix: string): string {
  return `${prefix}${TAG}${env.seq.names++}`;
}

/** `burrow run --rm` of a container that only waits; resolves once its command runs. */
export async function startContainer(env: Env, who: Who, args: string[]): Promise<Ctr> {
  const name = nextName(env, 'b');
  const t0 = performance.now();
  const proc = start(burrowArgv(env, who, ['run', '--rm', '--name', name, ...args, '--', 'sh', '-c', 'echo up; exec sleep 100000']));
  await until(proc, 'up', 60_000);
  const setupMs = performance.now() - t0;
  const rec = JSON.parse(await burrow(env, who, ['inspect', name]))[0] as { initPid: number; ips?: string[] };
  const stop = async () => {
    if (proc.child.exitCode !== null) return 0;
    const s = performance.now();
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 20_000);
    await proc.done;
    clearTimeout(timer);
    return performance.now() - s;
  };
  return { name, netPids: [proc.child.pid!], setupMs, ns: `/proc/${rec.initPid}/ns/net`, ip: rec.ips?.[0] ?? '', stop };
}

/** The parent pid of `pid` (0 when it is gone). */
function parentOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/**
 * `burrow run -d --rm` of a container that only waits (burrow returns once it runs), as podman's
 * run -d: the processes that hold it are its holder (the record's pid: burrow-holder, or the Node
 * supervisor with BURROW_HOLDER=node) and the namespace helper above the container's init.
 * stop = `burrow rm -f -t 0`.
 */
export async function startDetached(env: Env, who: Who, args: string[]): Promise<Ctr> {
  const name = nextName(env, 'b');
  const t0 = performance.now();
  await burrow(env, who, ['run', '-d', '--rm', '--name', name, ...args, '--', 'sh', '-c', 'exec sleep 100000']);
  const setupMs = performance.now() - t0;
  let stopped = false;
  const stop = async () => {
    if (stopped) return 0;
    stopped = true;
    const s = performance.now();
    await burrow(env, who, ['rm', '-f', '-t', '0', name]);
    return performance.now() - s;
  };
  try {
    const rec = JSON.parse(await burrow(env, who, ['inspect', name]))[0] as { pid: number; initPid: number; ips?: string[] };
    const helper = parentOf(rec.initPid);
    return { name, netPids: [...new Set([rec.pid, helper].filter((p) => p > 1))], setupMs, ns: `/proc/${rec.initPid}/ns/net`, ip: rec.ips?.[0] ?? '', stop };
  } catch (err) {
    await stop().catch(() => 0);
    throw err;
  }
}

/** `podman run -d` of a container that only waits (podman returns once it runs); stop = `podman rm -f -t 0`. */
export async function startPodman(env: Env, args: string[]): Promise<Ctr> {
  const l = podmanLayout(env.dir);
  const name = nextName(env, 'b');
  const t0 = performance.now();
  const r = await run(podmanArgv(l, ['run', '-d', '--name', name, ...args, '--rootfs', l.rootfs, '/bin/sh', '-c', 'exec sleep 100000']), 120_000);
  const setupMs = performance.now() - t0;
  const remove = async () => run(podmanArgv(l, ['rm', '-f', '-t', '0', name]), 120_000);
  if (r.code !== 0) {
    await remove();
    throw new Error(`podman run: ${r.out.trim().split('\n').slice(-1)[0]}`);
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return 0;
    stopped = true;
    const s = performance.now();
    const rm = await remove();
    if (rm.code !== 0) throw new Error(`podman rm: ${rm.out.trim().split('\n').slice(-1)[0]}`);
    return performance.now() - s;
  };
  try {
    const inspect = await run(podmanArgv(l, ['inspect', name]));
    const c = parsePodmanInspect(inspect.out);
    return { name, netPids: c.conmonPid ? [c.conmonPid] : [], setupMs, ns: c.ns, ip: c.ip, stop };
  } catch (err) {
    await stop().catch(() => 0);
    throw err;
  }
}

/** A waiting container of `tool`: podman's own, or burrow's (with burrow's or the reference plugins, or rootless). */
export const startCtr = (env: Env, who: Who, tool: string, args: string[]) => (tool === 'podman' ? startPodman(env, args) : startContainer(env, who, args));

// ---- topologies -----------------------------------------------------------------------------

export interface Topo {
  serverNs: string;
  /** Address the servers bind to. */
  bind: string;
  clientNs: string;
  target: string;
  /** Ports the client connects to (published host ports where there is a forward). */
  ports: { iperf: number; http: number; echo: number };
  /** Ports the servers listen on. */
  listen: { iperf: number; http: number; echo: number };
  setupMs: number;
  teardown: () => Promise<number>;
}

/** Host ports of their own for one path's servers (21000 up, 4 at a time). */
export function nextPorts(env: Env): { iperf: number; http: number; echo: number } {
  const b = 21000 + 4 * env.seq.ports++;
  return { iperf: b, http: b + 1, echo: b + 2 };
}

export const INNER = { iperf: 5201, http: 8080, echo: 7777 };
export const publish = (p: { iperf: number; http: number; echo: number }, addr = '') => [
  '-p', `${addr}${p.iperf}:${INNER.iperf}`, '-p', `${addr}${p.iperf}:${INNER.iperf}/udp`, '-p', `${addr}${p.http}:${INNER.http}`, '-p', `${addr}${p.echo}:${INNER.echo}`,
];

/** The address a rootless container reaches the host's loopback at, per tool. */
export function loopbackFor(tool: string): { args: string[]; addr: string } {
  if (tool === 'burrow') return { args: ['--map-host-loopback', '10.0.2.2'], addr: '10.0.2.2' };
  if (tool === 'slirp4netns') return { args: ['--network', 'slirp4netns', '--map-host-loopback', '10.0.2.2'], addr: '10.0.2.2' };
  // pasta maps its gateway address (the host's default gateway) to the host
  return { args: ['--network', 'pasta', '--map-host-loopback', '10.98.0.2'], addr: '10.98.0.2' };
}

export const rootlessNet = (tool: string) => (tool === 'burrow' ? [] : ['--network', tool]);

export async function gatewayOf(ns: string): Promise<string> {
  const r = await run(inNs(ns, ['ip', '-4', 'route', 'show', 'default']));
  const m = /via (\S+)/.exec(r.out);
  if (!m) throw new Error(`no default route in the container: ${r.out}`);
  return m[1];
}

export function whoRuns(tool: string, kind: Kind): Who {
  return tool === 'reference' ? 'ref' : tool === 'podman' ? 'pm' : kind === 'rootful' ? 'own' : 'user';
}

export async function topology(env: Env, pathName: string, tool: string): Promise<Topo> {
  const who = whoRuns(tool, PATHS.find((p) => p.name === pathName)!.kind);
  const ctr = (args: string[]) => startCtr(env, who, tool, args);
  const stops: Array<() => Promise<number>> = [];
  const teardown = async () => {
    let first = 0;
    for (const [i, s] of stops.entries()) {
      const ms = await s();
      if (i === 0) first = ms;
    }
    return first;
  };
  try {
    switch (pathName) {
      case 'bridge-c2h': {
        const c = await ctr([]);
        stops.push(c.stop);
        const p = nextPorts(env);
        return { serverNs: env.host, bind: '0.0.0.0', clientNs: c.ns, target: await gatewayOf(c.ns), ports: p, listen: p, setupMs: c.setupMs, teardown };
      }
      case 'bridge-h2c': {
        const c = await ctr([]);
        stops.push(c.stop);
        return { serverNs: c.ns, bind: '0.0.0.0', clientNs: env.host, target: c.ip, ports: INNER, listen: INNER, setupMs: c.setupMs, teardown };
      }
      case 'portmap-lo':
      case 'portmap-remote':
      case 'rootless-fwd-lo':
      case 'rootless-fwd-remote':
      case 'rootless-net-fwd-lo':
      case 'rootless-net-fwd-remote': {
        const p = nextPorts(env);
        const rootless = pathName.startsWith('rootless');
        const net = pathName.startsWith('rootless-net') ? ['--network', 'benchun'] : rootless ? rootlessNet(tool) : [];
        const c = await ctr([...net, ...publish(p)]);
        stops.push(c.stop);
        const remote = pathName.endsWith('remote');
        return { serverNs: c.ns, bind: '0.0.0.0', clientNs: remote ? env.remote : env.host, target: remote ? '10.98.0.1' : '127.0.0.1', ports: p, listen: INNER, setupMs: c.setupMs, teardown };
      }
      case 'bridge-c2c':
      case 'macvlan-c2c': {
        const net = pathName === 'macvlan-c2c' ? ['--network', 'benchmv'] : [];
        const a = await ctr(net);
        stops.push(a.stop);
        const b = await ctr(net);
        stops.push(b.stop);
        return { serverNs: a.ns, bind: '0.0.0.0', clientNs: b.ns, target: a.ip, ports: INNER, listen: INNER, setupMs: a.setupMs, teardown };
      }
      case 'rootless-out': {
        const lb = loopbackFor(tool);
        const c = await ctr(lb.args);
        stops.push(c.stop);
        const p = nextPorts(env);
        return { serverNs: env.host, bind: '127.0.0.1', clientNs: c.ns, target: lb.addr, ports: p, listen: p, setupMs: c.setupMs, teardown };
      }
      case 'rootless-c2c': {
        const p = nextPorts(env);
        const a = await ctr([...rootlessNet(tool), ...publish(p)]);
        stops.push(a.stop);
        const lb = loopbackFor(tool);
        const b = await ctr(lb.args);
        stops.push(b.stop);
        return { serverNs: a.ns, bind: '0.0.0.0', clientNs: b.ns, target: lb.addr, ports: p, listen: INNER, setupMs: a.setupMs, teardown };
      }
      case 'rootless-net-c2c': {
        // both on the bench user's own bridge network, inside the user's network namespace
        const a = await ctr(['--network', 'benchun']);
        stops.push(a.stop);
        const b = await ctr(['--network', 'benchun']);
        stops.push(b.stop);
        return { serverNs: a.ns, bind: '0.0.0.0', clientNs: b.ns, target: a.ip, ports: INNER, listen: INNER, setupMs: a.setupMs, teardown };
      }
      case 'rootless-pod': {
        const pod = nextName(env, 'p');
        await burrow(env, who, ['pod', 'create', '--name', pod]);
        stops.push(async () => {
          const s = performance.now();
          await run(burrowArgv(env, who, ['pod', 'rm', '-f', '-t', '2', pod]));
          return performance.now() - s;
        });
        const a = await ctr(['--pod', pod]);
        const b = await ctr(['--pod', pod]);
        return { serverNs: a.ns, bind: '127.0.0.1', clientNs: b.ns, target: '127.0.0.1', ports: INNER, listen: INNER, setupMs: a.setupMs, teardown };
      }
      default:
        throw new Error(`unknown path ${pathName}`);
    }
  } catch (err) {
    await teardown().catch(() => 0);
    throw err;
  }
}
