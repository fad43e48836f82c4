/**
 * `burrow run` in the foreground: a command in new namespaces (net, mnt, pid, uts, ipc, user),
 * with the host's filesystem read-only (or --rootfs), generated /etc/hosts, resolv.conf and
 * hostname, and networking from burrow's CNI runtime (rootful default: the default bridge network)
 * or burrow's userspace stack (rootless default: usernet).
 *
 * Order of events, so that nothing is left behind: validate everything; record the container
 * (supervisor = this process); start the namespaces with the command held; attach the network
 * (CNI ADD into the held netns, or the userspace stack on the TAP); write the /etc files; let the
 * command run; relay signals; on exit (or any error on the way) detach the network (CNI DEL while
 * our fd still keeps the netns alive), and remove the record. If this process is killed with -9,
 * the container dies with it (PR_SET_PDEATHSIG) and `gcContainers` (run by the next `burrow run`
 * and by `burrow system gc`) deletes the stale attachment and record.
 */
import fs from 'node:fs';
import path from 'node:path';
import { toolPath } from '../native/system.js';
import { formatPortSpec, parsePortSpec, reserveHostPorts, type PortSpec } from '../net/usernet/forward.js';
import { parseIdMapSpec, parseUsernsMode } from '../userns/mapping.js';
import { ownershipShift, relaySignals, startInNamespaces, type Maps, type Started } from '../userns/unshare.js';
import { capabilityMask, capabilityNames } from './caps.js';
import { TeardownError } from '../native/errors.js';
import { ContainerError, ContainerStore, PodStore, type CniAttachment, type ContainerRecord } from './containers.js';
import type { ImageConfig, ImagePlan } from './image.js';
import { makeContext, type Context } from './context.js';
import { planAddressing, DEFAULT_ADDRESSING } from '../net/usernet/usernet.js';
import { processStartTime } from '../native/system.js';
import { parseNetworkArgs, SPECIAL_NETWORKS } from './netspec.js';

export interface RunOptions {
  cmd: string[];
  name?: string;
  /** --network values (repeatable; NAME:ip=..,mac=..,interface_name=.. per CNI network; a,b lists). */
  network?: string | string[];
  publish: string[];
  ip?: string;
  mac?: string;
  dns: string[];
  hostname?: string;
  userns?: string;
  uidmap: string[];
  gidmap: string[];
  rootfs?: string;
  /** An image tarball (docker save, OCI layout or plain rootfs) unpacked as the root. */
  image?: string;
  capAdd?: string[];
  capDrop?: string[];
  /** Join this pod (its infra container's namespaces). */
  pod?: string;
  /** This is the pod's infra container: no command, it only holds the namespaces. */
  infra?: boolean;
  /** -v HOST:CTR[:ro|rw] bind mounts. */
  volume?: string[];
  env: string[];
  workdir?: string;
  mapHostLoopback?: string;
  /** Remove the container when it exits (otherwise it stays, exited, until burrow rm). */
  rm?: boolean;
  /** Set by a detached run's supervisor: the id the parent chose, and the fd to report "OK" on. */
  fixedId?: string;
  readyFd?: number;
  detached?: boolean;
}

/**
 * --network pasta|slirp4netns: the established tools attach to the held container's namespaces
 * (as `pasta PID` and `slirp4netns PID eth0` do), with -p as their port forwards, so users can
 * compare and migrate. Returns the teardown.
 */
async function attachAnchor(tool: 'pasta' | 'slirp4netns', pid: number, ports: PortSpec[], dir: string, sockBase: string, mapHostLoopback: boolean): Promise<() => void> {
  const { spawn } = await import('node:child_process');
  const bin = toolPath(tool);
  if (!bin) throw new ContainerError(`${tool} is not installed (apt-get install ${tool === 'pasta' ? 'passt' : 'slirp4netns'})`);
  if (ports.some((p) => p.proto === 'udp' && tool === 'slirp4netns' && p.hostAddr.includes(':'))) throw new ContainerError('slirp4netns forwards IPv4 only');
  if (tool === 'pasta') {
    const pidFile = path.join(dir, 'pasta.pid');
    const fwd = (proto: 'tcp' | 'udp') => {
      const list = ports.filter((p) => p.proto === proto).map((p) => `${p.hostAddr ? `${p.hostAddr}/` : ''}${p.count > 1 ? `${p.hostPort}-${p.hostPort + p.count - 1}:${p.guestPort}-${p.guestPort + p.count - 1}` : `${p.hostPort}:${p.guestPort}`}`);
      return list.length ? list.join(',') : 'none';
    };
    const args = ['--config-net', '--quiet', '-T', 'none', '-U', 'none', '-t', fwd('tcp'), '-u', fwd('udp'), ...(mapHostLoopback ? [] : ['--no-map-gw']), '--pid', pidFile, String(pid)];
    // Without --foreground pasta returns once the namespace is configured, then runs detached.
    const r = await new Promise<{ code: number; err: string }>((resolve) => {
      const c = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      c.on('close', (code) => resolve({ code: code ?? 1, err }));
    });
    if (r.code !== 0) throw new ContainerError(`pasta failed: ${r.err.trim() || `exit ${r.code}`}`);
    return () => {
      try {
        process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGTERM');
      } catch {
        // pasta quits by itself when the namespace goes
      }
    };
  }
  // Unix socket paths are limited to 108 bytes: the state dir's short socket directory.
  const api = `${sockBase}-slirp.sock`;
  fs.mkdirSync(path.dirname(api), { recursive: true, mode: 0o700 });
  const child = spawn(bin, ['--configure', '--mtu=65520', ...(mapHostLoopback ? [] : ['--disable-host-loopback']), '--api-socket', api, '--ready-fd', '3', String(pid), 'eth0'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const ready = await new Promise<boolean>((resolve) => {
    (child.stdio[3] as NodeJS.ReadableStream).on('data', () => resolve(true));
    child.once('exit', () => resolve(false));
  });
  const stop = () => {
    child.kill('SIGTERM');
    fs.rmSync(api, { force: true });
  };
  if (!ready) throw new ContainerError(`slirp4netns failed: ${err.trim() || 'exited before the network was ready'}`);
  const net = await import('node:net');
  for (const p of ports) {
    for (let i = 0; i < p.count; i++) {
      const req = { execute: 'add_hostfwd', arguments: { proto: p.proto, host_addr: p.hostAddr || '0.0.0.0', host_port: p.hostPort + i, guest_port: p.guestPort + i } };
      const reply = await new Promise<string>((resolve) => {
        const c = net.connect(api, () => c.end(JSON.stringify(req)));
        let out = '';
        c.on('data', (d) => (out += d));
        c.on('close', () => resolve(out));
        c.on('error', (e) => resolve(`{"error":{"desc":"${e.message}"}}`));
      });
      if (!reply.includes('"return"')) {
        stop();
        throw new ContainerError(`slirp4netns could not publish ${p.hostPort + i}: ${reply.trim()}`);
      }
    }
  }
  return stop;
}

function checkRootfs(dir: string | undefined): void {
  if (dir === undefined) return;
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st) throw new ContainerError(`--rootfs "${dir}" does not exist`);
  if (!st.isDirectory()) throw new ContainerError(`--rootfs "${dir}" is not a directory`);
}

/** -v HOST:CTR[:ro|rw] -> read-only and writable bind specs. */
function parseVolumes(specs: string[]): { ro: string[]; rw: string[] } {
  const out = { ro: [] as string[], rw: [] as string[] };
  for (const v of specs) {
    const [src, dst, mode = 'rw', ...extra] = v.split(':');
    if (!src || !dst || extra.length || (mode !== 'ro' && mode !== 'rw')) throw new ContainerError(`invalid --volume "${v}": expected HOST-PATH:CONTAINER-PATH[:ro|rw]`);
    if (!path.isAbsolute(src) || !path.isAbsolute(dst)) throw new ContainerError(`invalid --volume "${v}": both paths must be absolute`);
    if (!fs.existsSync(src)) throw new ContainerError(`--volume source "${src}" does not exist`);
    (mode === 'ro' ? out.ro : out.rw).push(`${src}:${dst}`);
  }
  return out;
}

function containerEnv(o: RunOptions, hostname: string, image: ImageConfig = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', TERM: 'xterm', HOSTNAME: hostname, HOME: '/root', container: 'burrow' };
  for (const kv of [...(image.Env ?? []), ...o.env]) {
    const eq = kv.indexOf('=');
    if (eq <= 0) {
      // -e NAME passes the caller's value, as podman does
      if (process.env[kv] !== undefined) env[kv] = process.env[kv];
      continue;
    }
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}

/** portMappings capability entries (one per port of a range). */
function portMappings(specs: PortSpec[]): Array<Record<string, unknown>> {
  return specs.flatMap((s) => Array.from({ length: s.count }, (_, i) => ({ hostPort: s.hostPort + i, containerPort: s.guestPort + i, protocol: s.proto, ...(s.hostAddr ? { hostIP: s.hostAddr } : {}) })));
}

function writeEtc(dir: string, hostname: string, name: string, ips: string[], resolv: string, extraHosts: string[]): string[] {
  const hosts = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', ...ips.map((ip) => `${ip}\t${hostname} ${name}`), ...extraHosts].join('\n');
  fs.writeFileSync(path.join(dir, 'hosts'), `${hosts}\n`, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'resolv.conf'), resolv, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'hostname'), `${hostname}\n`, { mode: 0o644 });
  return ['hosts', 'resolv.conf', 'hostname'].map((f) => `${path.join(dir, f)}:/etc/${f}`);
}

/** resolv.conf for a CNI container: --dns, else the host's nameservers that work from a netns. */
function cniResolv(dns: string[]): string {
  if (dns.length) return dns.map((d) => `nameserver ${d}`).join('\n') + '\n';
  let text = '';
  try {
    text = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
  // 127.0.0.x (systemd-resolved) is the host's own loopback: unreachable from the container.
  const lines = text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  return `${lines.join('\n').trim()}\n`;
}

/** Refuses host ports another running container of this store publishes, naming it. */
function refusePublishedElsewhere(ports: PortSpec[], stateDir: string): void {
  if (!ports.length) return;
  const overlaps = (a: PortSpec, b: PortSpec) => a.proto === b.proto && a.hostPort < b.hostPort + b.count && b.hostPort < a.hostPort + a.count && (!a.hostAddr || !b.hostAddr || a.hostAddr === b.hostAddr);
  for (const r of new ContainerStore(stateDir).list()) {
    if (r.state !== 'running' || !ContainerStore.alive(r)) continue;
    for (const theirs of r.ports.flatMap((p) => { try { return parsePortSpec(p); } catch { return []; } })) {
      const mine = ports.find((p) => overlaps(p, theirs));
      if (mine) throw new ContainerError(`cannot publish ${formatPortSpec(mine)}: container "${r.name}" (${r.id.slice(0, 12)}) already publishes ${formatPortSpec(theirs)}`);
    }
  }
}

/** DELs `attachments` of container `id`; returns those that failed, with why ("already gone" is done). */
async function deleteAttachments(ctx: Context, id: string, attachments: CniAttachment[]): Promise<Array<{ attachment: CniAttachment; error: unknown }>> {
  const failed: Array<{ attachment: CniAttachment; error: unknown }> = [];
  for (const a of attachments) {
    let list;
    try {
      list = ctx.networks.get(a.network);
    } catch {
      continue; // the network itself is gone: nothing of it to delete
    }
    try {
      await ctx.runtime.delNetworkList(list, { containerId: id, netns: a.netns, ifname: a.ifname });
    } catch (error) {
      failed.push({ attachment: a, error });
    }
  }
  return failed;
}

/**
 * Cleans up after containers: deletes the attachments and records of those whose supervisor is
 * gone (kill -9), and retries teardown that failed when a container ended. Returns a line per
 * container it acted on.
 */
export async function gcContainers(ctx: Context): Promise<string[]> {
  const store = new ContainerStore(ctx.config.stateDir);
  const cleaned: string[] = [];
  const who = (r: ContainerRecord) => `${r.name} (${r.id.slice(0, 12)})`;
  const stale = new Set(store.stale().map((r) => r.id));
  for (const r of store.list()) {
    const pending = stale.has(r.id) ? (r.network.mode === 'cni' ? r.network.attachments : []) : r.teardown?.retry;
    if (!pending) continue;
    const failed = await deleteAttachments(ctx, r.id, pending);
    if (failed.length) {
      const err = new TeardownError(`container ${who(r)}`, failed.map((f) => ({ step: `CNI DEL of network "${f.attachment.network}" (${f.attachment.ifname})`, error: f.error })));
      const at = new Date().toISOString();
      Object.assign(r, { state: 'exited', initPid: undefined, finished: r.finished ?? at, exitCode: r.exitCode ?? 137, teardown: { errors: failed.map((f) => ({ step: `CNI DEL of network "${f.attachment.network}" (${f.attachment.ifname})`, error: f.error instanceof Error ? f.error.message : String(f.error) })), retry: failed.map((f) => f.attachment), remove: r.teardown?.remove ?? true, at } });
      store.write(r);
      cleaned.push(`still failing: ${err.message}`);
      continue;
    }
    if (stale.has(r.id) || r.teardown?.remove) {
      await store.remove(r.id);
      cleaned.push(stale.has(r.id) ? `removed ${who(r)}` : `teardown of ${who(r)} completed; removed`);
    } else {
      delete r.teardown;
      store.write(r);
      cleaned.push(`teardown of ${who(r)} completed`);
    }
  }
  return cleaned;
}

/** The running container whose namespaces a new one shares (--pod, --network container:NAME). */
function joinTargetOf(o: RunOptions, netValues: string[], stateDir: string): ContainerRecord | null {
  const store = new ContainerStore(stateDir);
  const net0 = netValues[0] ?? '';
  let target: ContainerRecord;
  let what: string;
  if (o.pod && !o.infra) {
    if (netValues.length) throw new ContainerError(`--pod and --network: the containers of a pod share the pod's network; give --network to "burrow pod create"`);
    const pod = new PodStore(stateDir).find(o.pod);
    const infra = store.list().find((r) => r.id === pod.infraId);
    if (!infra || infra.state !== 'running' || !ContainerStore.alive(infra) || !infra.initPid) throw new ContainerError(`pod "${pod.name}" is not running (its infra container is gone); remove it with "burrow pod rm -f ${pod.name}" and create it again`);
    target = infra;
    what = `pod "${pod.name}"`;
  } else if (net0.startsWith('container:') && net0.length > 'container:'.length) {
    if (netValues.length > 1) parseNetworkArgs(netValues); // says why container: stands alone
    target = store.find(net0.slice('container:'.length));
    what = `container "${target.name}"`;
    if (target.state !== 'running' || !ContainerStore.alive(target) || !target.initPid) throw new ContainerError(`--network ${net0}: container "${target.name}" is not running`);
    if (target.network.mode === 'host') throw new ContainerError(`--network ${net0}: container "${target.name}" uses the host's network; use --network host`);
  } else return null;
  const shared = (flag: string, why: string, hint = '') => new ContainerError(`${flag} cannot be used with ${o.pod ? '--pod' : '--network container:'}: the container shares the ${why} of ${what}${hint}`);
  if (o.publish.length) throw shared('-p', 'network namespace', o.pod ? '; publish ports when creating the pod (burrow pod create -p)' : '; publish ports on that container');
  if (o.ip || o.mac) throw shared(o.ip ? '--ip' : '--mac-address', 'network namespace');
  if (o.userns || o.uidmap.length || o.gidmap.length) throw shared('--userns/--uidmap/--gidmap', 'user namespace');
  if (o.hostname) throw shared('--hostname', 'uts namespace');
  if (o.mapHostLoopback) throw shared('--map-host-loopback', 'network');
  return target;
}

/**
 * Unpacks --image into `root` with ownership shifted through the container's maps: in-process as
 * root; rootless in a user namespace of the user's whole subordinate range, where the user may
 * create and chown every id the container maps (the container's own root could not even enter
 * the user's 0700 state directory with --userns nomap or auto).
 */
async function unpackInto(file: string, plan: ImagePlan, root: string, maps: Maps): Promise<void> {
  const idMap = ownershipShift(maps);
  if (process.getuid!() === 0) {
    const { unpackImage } = await import('./image.js');
    await unpackImage(file, plan, root, { chown: true, spoolDir: `${root}.layers`, idMap });
    return;
  }
  const { unshareCapture } = await import('../userns/unshare.js');
  const whole = maps.intermediate!.uid.length > 1 ? { mode: parseUsernsMode('host') } : { mode: parseUsernsMode('host'), uidmaps: [{ containerId: 0, hostId: 0, size: 1 }], gidmaps: [{ containerId: 0, hostId: 0, size: 1 }] };
  const r = await unshareCapture([process.execPath, process.argv[1], 'internal', 'unpack-image', '--id-map', JSON.stringify(idMap), file, root], whole);
  if (r.code !== 0) throw new ContainerError(r.stderr.trim().replace(/^Error: /, '') || `unpacking ${file} failed (exit ${r.code})`);
}

/** Runs a container in the foreground; resolves to its exit status. */
export async function runContainer(opts: RunOptions, configArg?: string): Promise<number> {
  const rootless = process.getuid!() !== 0;
  const configFile = configArg && path.resolve(configArg);
  // Host paths are the caller's: a detached run's supervisor starts in the caller's directory,
  // resolves them there, then leaves it (it must not keep a mount busy for the container's life).
  const o: RunOptions = { ...opts, rootfs: opts.rootfs && path.resolve(opts.rootfs), image: opts.image && path.resolve(opts.image) };
  if (o.detached) process.chdir('/');
  const { loadConfig } = await import('./config.js');
  const netValues = [o.network ?? []].flat();
  const joinTarget = joinTargetOf(o, netValues, loadConfig(configFile).stateDir);
  const network = joinTarget ? 'container' : netValues.length === 1 ? netValues[0] : netValues.length ? netValues.join(' --network ') : rootless ? 'usernet' : undefined;
  const ctx = await makeContext(configFile, { plugins: !rootless && !SPECIAL_NETWORKS.includes(network ?? '') && !joinTarget });
  const netName = network ?? ctx.networks.defaultName();
  // ---- validate everything before anything starts
  const cni = !SPECIAL_NETWORKS.includes(netName) && !joinTarget;
  if (netName.startsWith('container:')) throw new ContainerError('--network container: needs a container name');
  if (cni && rootless) throw new ContainerError(`rootless containers cannot join the network "${netName}": a bridge network needs root to create its veth pair and bridge in the host namespace; use --network usernet (the default when rootless), which also publishes ports with -p`);
  // several CNI networks (a,b or --network repeated): eth0, eth1, ... in that order unless
  // NAME:interface_name=.. says otherwise; published ports on the first
  const requests = cni ? parseNetworkArgs(netValues.length ? netValues : [netName], { ip: o.ip, mac: o.mac }) : [];
  const lists = requests.map((r) => ctx.networks.get(r.name));
  if (o.rootfs && o.image) throw new ContainerError('--rootfs and --image both give the root filesystem: choose one');
  checkRootfs(o.rootfs);
  const volumes = parseVolumes(o.volume ?? []);
  const ports = o.publish.flatMap((p) => parsePortSpec(p));
  if (ports.length && (netName === 'host' || netName === 'none')) throw new ContainerError(`-p needs a container network; --network ${netName} has none to publish from`);
  refusePublishedElsewhere(ports, loadConfig(configFile).stateDir);
  const caps = capabilityMask(o.capAdd, o.capDrop);
  const imagePlan = o.image ? await (await import('./image.js')).planImage(path.resolve(o.image)) : null;
  const imageCfg = imagePlan?.config ?? {};
  // As podman: the image's Entrypoint stays; arguments given replace its Cmd.
  const cmd = [...(imageCfg.Entrypoint ?? []), ...(o.cmd.length ? o.cmd : imageCfg.Cmd ?? [])];
  if (!cmd.length && !o.infra) throw new ContainerError(`no command given (burrow run [OPTIONS] -- CMD [ARGS...])${o.image ? `, and ${o.image} names none` : ''}`);
  const mode = parseUsernsMode(o.userns ?? 'host');
  const uidmaps = o.uidmap.map((s) => parseIdMapSpec(s, '--uidmap'));
  const gidmaps = o.gidmap.map((s) => parseIdMapSpec(s, '--gidmap'));
  const usernetSetup = netName === 'usernet' ? await (await import('./cmd_usernet.js')).usernetSetup({ mtu: '65520', cidr: DEFAULT_ADDRESSING.cidr4, cidr6: DEFAULT_ADDRESSING.cidr6!, ipv6: true, publish: o.publish, mapHostLoopback: o.mapHostLoopback, tap: 'eth0' }, true) : null;
  await gcContainers(ctx);

  // ---- record, start held, attach, go
  const store = new ContainerStore(ctx.config.stateDir);
  const id = o.fixedId ?? ContainerStore.newId();
  const name = o.name ?? `burrow-${id.slice(0, 12)}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new ContainerError(`invalid --name "${name}": letters, digits, _ . - (not first)`);
  const hostname = joinTarget?.hostname ?? o.hostname ?? id.slice(0, 12);
  const record: ContainerRecord = {
    id, name, pid: process.pid, startTime: processStartTime(process.pid) ?? '', command: o.infra ? ['(infra)'] : cmd, created: new Date().toISOString(),
    network: joinTarget ? { mode: 'container', target: joinTarget.id } : cni ? { mode: 'cni', attachments: [] } : { mode: netName as 'usernet' | 'host' | 'none' | 'pasta' | 'slirp4netns' }, ports: o.publish,
    state: 'created', hostname, detached: !!o.detached, capabilities: capabilityNames(caps),
    ...(o.pod ? { pod: o.infra ? o.pod : joinTarget!.pod, infra: !!o.infra } : {}), ...(o.image ? { image: path.resolve(o.image) } : {}),
  };
  const dir = store.create(record);
  let started: Started | null = null;
  // Teardown steps, undone in reverse. A step that fails is reported and the rest carry on; an
  // attachment whose DEL failed is recorded for `system gc` to retry.
  let detach: Array<{ step: string; run: () => Promise<void> | void; attachment?: CniAttachment }> = [];
  const undo = (step: string, run: () => Promise<void> | void, attachment?: CniAttachment) => detach.push({ step, run, attachment });
  let exitCode: number | null = null;
  const cleanup = async () => {
    const failures: Array<{ step: string; error: unknown }> = [];
    const retry: CniAttachment[] = [];
    for (const d of detach.reverse()) {
      try {
        await d.run();
      } catch (error) {
        failures.push({ step: d.step, error });
        if (d.attachment) retry.push({ ...d.attachment, netns: '' }); // our netns fd goes with us
      }
    }
    detach = [];
    const finished = { state: 'exited' as const, exitCode: exitCode ?? 125, finished: new Date().toISOString(), initPid: undefined };
    if (failures.length) {
      const err = new TeardownError(`container "${name}" (${id.slice(0, 12)})`, failures);
      process.stderr.write(`Error: ${err.message}; "burrow system gc" retries it\n`);
      Object.assign(record, finished, { teardown: { errors: failures.map((f) => ({ step: f.step, error: f.error instanceof Error ? f.error.message : String(f.error) })), retry, remove: !!o.rm || exitCode === null, at: finished.finished } });
      store.write(record);
      return;
    }
    if (o.rm || exitCode === null) await store.remove(id);
    else {
      // Kept, exited, until `burrow rm`: the network is already detached.
      Object.assign(record, finished);
      store.write(record);
    }
  };
  try {
    const plan = usernetSetup?.plan ?? planAddressing(DEFAULT_ADDRESSING);
    const ownNet = netName !== 'host' && !joinTarget;
    const rootDir = o.image ? path.join(dir, 'rootfs') : o.rootfs;
    if (o.image) fs.mkdirSync(rootDir!, { mode: 0o755 });
    // The /etc files are bind-mounted after "go", so they may still change until then.
    const binds = writeEtc(dir, hostname, name, [], '', []);
    const hold = ownNet || !!o.image;
    started = await startInNamespaces(cmd, {
      mode, uidmaps, gidmaps, rootfs: rootDir, stateDir: ctx.config.stateDir,
      namespaces: joinTarget ? ['mnt', 'pid'] : ['mnt', 'pid', 'uts', 'ipc', ...(ownNet ? ['net'] : [])], joinPid: joinTarget?.initPid,
      tap: usernetSetup ? usernetSetup.tapName : undefined, wantFds: hold, holdUntilGo: hold, pause: o.infra, capabilities: caps,
      root: rootDir ?? 'host', binds: [...binds, ...volumes.ro], volumes: volumes.rw, hostname: joinTarget ? undefined : hostname,
      workdir: o.workdir ?? (imageCfg.WorkingDir || undefined), env: containerEnv(o, hostname, imageCfg), stdio: o.infra ? 'ignore' : 'inherit',
    });
    const s = started;
    undo('close the namespace fds', () => {
      for (const fd of [s.fds?.netns, s.fds?.userns]) if (fd !== undefined) fs.closeSync(fd);
    });
    if (o.image) await unpackInto(path.resolve(o.image), imagePlan!, rootDir!, s.maps);
    let ips: string[] = [];
    let resolv = '';
    const extraHosts: string[] = [];
    if (joinTarget) {
      // The namespace's own files: its addresses, nameservers and hostname, plus this name.
      const from = store.pathOf(joinTarget.id);
      ips = joinTarget.ips ?? [];
      resolv = o.dns.length ? cniResolv(o.dns) : fs.readFileSync(path.join(from, 'resolv.conf'), 'utf8');
      for (const l of fs.readFileSync(path.join(from, 'hosts'), 'utf8').split('\n').slice(2)) if (l.trim()) extraHosts.push(l);
    } else if (usernetSetup) {
      const { startUsernet } = await import('./usernet.js');
      const apiSocket = path.join(ctx.config.stateDir, 'sock', `${id.slice(0, 12)}.sock`);
      const session = await startUsernet(s.pid, s.fds!.tap!, { ...usernetSetup, apiSocket });
      record.apiSocket = apiSocket;
      undo('stop the usernet stack', () => session.stop());
      ips = [plan.guest4];
      resolv = `nameserver ${plan.dns4}\n${plan.dns6 ? `nameserver ${plan.dns6}\n` : ''}`;
      if (o.mapHostLoopback) extraHosts.push(`${o.mapHostLoopback}\thost.containers.internal host.docker.internal`);
    } else if (lists.length) {
      // Hold every published host port while the container runs (podman does the same): a port
      // in use fails here, before any rule exists, instead of having its traffic taken.
      if (ports.length) undo('release the reserved host ports', await reserveHostPorts(ports));
      const netns = `/proc/${process.pid}/fd/${s.fds!.netns}`;
      const attachments = requests.map((r) => ({ network: r.name, netns, ifname: r.ifname }));
      record.network = { mode: 'cni', attachments };
      store.write(record);
      for (const [i, list] of lists.entries()) {
        const first = i === 0;
        const req = requests[i];
        const rt = { containerId: id, netns, ifname: req.ifname, capabilityArgs: { ...(ports.length && first ? { portMappings: portMappings(ports) } : {}), ...(req.ips.length ? { ips: req.ips } : {}), ...(req.mac ? { mac: req.mac } : {}) } };
        undo(`CNI DEL of network "${req.name}" (${req.ifname})`, () => ctx.runtime.delNetworkList(list, rt), attachments[i]);
        const result = (await ctx.runtime.addNetworkList(list, rt)) as { ips?: Array<{ address: string }> };
        ips.push(...(result.ips ?? []).map((x) => x.address.split('/')[0]));
      }
      resolv = cniResolv(o.dns);
    } else if (netName === 'pasta' || netName === 'slirp4netns') {
      undo(`stop ${netName}`, await attachAnchor(netName, s.pid, ports, dir, path.join(ctx.config.stateDir, 'sock', id.slice(0, 12)), !!o.mapHostLoopback));
      if (netName === 'slirp4netns') {
        ips = ['10.0.2.100'];
        resolv = o.dns.length ? cniResolv(o.dns) : 'nameserver 10.0.2.3\n';
      } else resolv = cniResolv(o.dns);
    } else {
      resolv = netName === 'none' ? '' : cniResolv(o.dns);
    }
    if (o.dns.length && usernetSetup) resolv = o.dns.map((d) => `nameserver ${d}\n`).join('');
    writeEtc(dir, hostname, name, ips, resolv, extraHosts); // same paths: the binds above still hold
    Object.assign(record, { state: 'running', initPid: s.pid, ips });
    store.write(record);
    const unrelay = relaySignals(s.child);
    s.go();
    if (o.readyFd !== undefined) {
      fs.writeSync(o.readyFd, 'OK\n');
      fs.closeSync(o.readyFd);
    }
    const code = await s.exited;
    unrelay();
    exitCode = code;
    return code;
  } catch (err) {
    if (started) {
      started.abort();
      started.child.kill('SIGKILL');
      await started.exited;
    }
    throw err;
  } finally {
    await cleanup();
  }
}

/**
 * `run -d`: starts a supervisor (this CLI again, in its own session, with BURROW_SUPERVISE set)
 * whose stdout and stderr go to the container's log file, waits until it reports the container
 * running on fd 3, and returns the id. A supervisor that fails reports nothing: its log says why.
 */
export async function detachRun(argv: string[], configFile?: string): Promise<string> {
  const dash = argv.indexOf('--');
  const head = (dash < 0 ? argv : argv.slice(0, dash)).filter((a) => a !== '-d' && a !== '--detach');
  return startSupervisor([...head, ...(dash < 0 ? [] : argv.slice(dash))], configFile);
}

/** Starts `burrow ARGS` (a run without -d) as a detached supervisor; resolves to the container id once it runs. */
export async function startSupervisor(args: string[], configFile?: string): Promise<string> {
  const { spawn } = await import('node:child_process');
  const { loadConfig } = await import('./config.js');
  const s = new ContainerStore(loadConfig(configFile).stateDir);
  const id = ContainerStore.newId();
  const dir = s.pathOf(id);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const log = path.join(dir, 'ctr.log');
  const fd = fs.openSync(log, 'a', 0o600);
  // Read through our own fd: a supervisor that fails removes the directory, log included.
  const reader = fs.openSync(log, 'r');
  const child = spawn(process.execPath, [process.argv[1], ...args], { detached: true, stdio: ['ignore', fd, fd, 'pipe'], env: { ...process.env, BURROW_SUPERVISE: id } });
  fs.closeSync(fd);
  const ready = await new Promise<boolean>((resolve) => {
    let buf = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('OK')) resolve(true);
    });
    pipe.on('end', () => resolve(buf.includes('OK')));
    pipe.on('error', () => resolve(false));
  });
  (child.stdio[3] as unknown as { destroy(): void }).destroy();
  if (ready) {
    fs.closeSync(reader);
    child.unref(); // the supervisor lives on in its own session
    return id;
  }
  await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
  const why = fs.readFileSync(reader, 'utf8').trim().split('\n').slice(-3).join('\n');
  fs.closeSync(reader);
  fs.rmSync(dir, { recursive: true, force: true });
  throw new ContainerError(why.replace(/^Error: /, '') || 'the container supervisor exited before the container started');
}
