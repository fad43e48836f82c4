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
import { chooseHostPorts } from '../../net/ports/host_ports.js';
import { formatPortSpec, parsePortSpec, parseRecordedPorts, type PortSpec } from '../../net/ports/portspec.js';
import { parseIdMapSpec, parseUsernsMode, type UsernsMode } from '../../userns/mapping.js';
import { computeMaps, ownershipShift, relaySignals, releaseMaps, startInNamespaces, type HelperMount, type Maps, type Started } from '../../userns/unshare.js';
import { capabilityMask, capabilityNames } from './caps.js';
import { ContainerConsole } from './console.js';
import { ContainerError, ContainerStore, PodStore, type CniAttachment, type ContainerRecord, type ContainerUser, type MountRecord } from './containers.js';
import type { ImageConfig, ImagePlan } from './image.js';
import { chooseMode, UndoStack } from '../attach/index.js';
import { gcContainers } from './gc.js';
import { finishContainer } from './teardown.js';
import { helperUserArg, resolveUser } from './passwd.js';
import { containerCommand, containerEnv, parseAddHosts, parseEnvFile, parseLabels, parseSecurityOpts } from './run_spec.js';
import { checkDestinations, parseMountFlag, parseTmpfsFlag, parseVolumeFlag, removeTree, VolumeStore, type MountSpec } from './volumes.js';
import { makeContext } from '../context.js';
import { processStartTime } from '../../native/system.js';
import { parseNetworkArgs, SPECIAL_NETWORKS } from '../network/netspec.js';

export interface RunOptions {
  cmd: string[];
  name?: string;
  /** --network values (repeatable; NAME:ip=..,mac=..,interface_name=.. per CNI network; a,b lists). */
  network?: string | string[];
  publish: string[];
  ip?: string;
  mac?: string;
  /** --network-alias: names on every CNI network of the container, beside its own. */
  networkAlias?: string[];
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
  /** -v [HOST-PATH|VOLUME:]CTR[:OPTIONS], --mount, --tmpfs (runtime/container/volumes.ts). */
  volume?: string[];
  mount?: string[];
  tmpfs?: string[];
  env: string[];
  envFile?: string[];
  workdir?: string;
  mapHostLoopback?: string;
  /** Remove the container when it exits (otherwise it stays, exited, until burrow rm). */
  rm?: boolean;
  /** -t: a terminal from the container's devpts; -i: stdin open for attached clients. */
  tty?: boolean;
  interactive?: boolean;
  /** --user USER[:GROUP], resolved in the container's /etc/passwd. */
  user?: string;
  entrypoint?: string;
  readOnly?: boolean;
  /** All capabilities, the host's /dev, no masked paths. */
  privileged?: boolean;
  securityOpt?: string[];
  addHost?: string[];
  label?: string[];
  /** --init: accepted; burrow's own init is always the container's pid 1. */
  init?: boolean;
  /** Set by a detached run's supervisor: the id the parent chose, and the fd to report "OK" on. */
  fixedId?: string;
  readyFd?: number;
  detached?: boolean;
  /** run -it, start -a: the command waits for the caller's client to attach. */
  waitAttach?: boolean;
  /** `burrow start`: run the existing container fixedId again with its recorded options. */
  restart?: boolean;
  /**
   * `run -d` without a Node supervisor: this process sets the container up, under a native holder
   * from the start (burrow-holder --spawn), hands it over, says the id and exits. Refused with
   * {@link NeedsSupervisor} (before anything exists) where a Node process must stay.
   */
  inCli?: { announce(id: string): void };
}

/** `run -d` in the CLI cannot go on without a Node supervisor: nothing was made yet, start one. */
export class NeedsSupervisor extends Error {}

function checkRootfs(dir: string | undefined): void {
  if (dir === undefined) return;
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st) throw new ContainerError(`--rootfs "${dir}" does not exist`);
  if (!st.isDirectory()) throw new ContainerError(`--rootfs "${dir}" is not a directory`);
}

/** -v, --mount and --tmpfs, in that order, resolved against the caller's directory; exact repeats count once. */
function parseMounts(o: RunOptions, cwd: string): MountSpec[] {
  const all = [...(o.volume ?? []).map((v) => parseVolumeFlag(v, cwd)), ...(o.mount ?? []).map((v) => parseMountFlag(v, cwd)), ...(o.tmpfs ?? []).map((v) => parseTmpfsFlag(v))];
  const seen = new Set<string>();
  const mounts = all.filter((m) => {
    const k = JSON.stringify(m);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  checkDestinations(mounts);
  return mounts;
}

/**
 * The volumes of `mounts` as records: named ones created if missing, anonymous ones made (and
 * named) now. Returns the records and the volumes this run created (removed again if it fails).
 */
function resolveVolumes(mounts: MountSpec[], volumes: VolumeStore): { records: MountRecord[]; created: string[] } {
  const created: string[] = [];
  const records = mounts.map((m): MountRecord => {
    const base = { destination: m.destination, ro: m.ro, flags: m.flags, options: m.options, ...(m.chown ? { chown: true } : {}) };
    if (m.type === 'tmpfs') return { ...base, type: 'tmpfs', source: 'tmpfs', tmpfsOptions: m.tmpfsOptions };
    if (m.type === 'bind') return { ...base, type: 'bind', source: m.source };
    const existed = !m.anonymous && volumes.get(m.source);
    const v = existed || volumes.create(m.anonymous ? null : m.source, { anonymous: m.anonymous });
    if (!existed) created.push(v.Name);
    return { ...base, type: 'volume', source: v.Mountpoint, name: v.Name, ...(m.anonymous ? { anonymous: true } : {}) };
  });
  return { records, created };
}

/** The helper's mounts for the records: binds (volumes are binds of their _data) and tmpfs. */
function helperMounts(mounts: MountRecord[]): HelperMount[] {
  return mounts.map((m) => (m.type === 'tmpfs'
    ? { kind: 'tmpfs', destination: m.destination, data: m.tmpfsOptions, ro: m.ro, flags: m.flags }
    : { kind: 'bind', source: m.source, destination: m.destination, ro: m.ro, flags: m.flags }));
}

/**
 * Chowns what must belong to the container's user before it starts: volumes nobody mounted yet
 * (podman's NeedsChown) and sources with the U option (recursively). Rootless, through a user
 * namespace of the user's whole range, where the container's ids can be set.
 */
async function chownForContainer(mounts: MountRecord[], volumes: VolumeStore, user: ContainerUser, maps: Maps): Promise<void> {
  const jobs: Array<{ dir: string; recursive: boolean }> = [];
  for (const m of mounts) {
    if (m.type === 'tmpfs') continue;
    if (m.chown) jobs.push({ dir: m.source, recursive: true });
    else if (m.type === 'volume' && m.name && volumes.get(m.name)?.NeedsChown) jobs.push({ dir: m.source, recursive: false });
  }
  if (!jobs.length) return;
  const shift = ownershipShift(maps);
  const to = (list: Array<{ containerId: number; hostId: number; size: number }>, id: number) => {
    const r = list.find((x) => id >= x.containerId && id < x.containerId + x.size);
    if (!r) throw new ContainerError(`cannot chown a volume to the container's id ${id}: the user namespace does not map it`);
    return r.hostId + (id - r.containerId);
  };
  const uid = to(shift.uid, user.uid);
  const gid = to(shift.gid, user.gid);
  for (const j of jobs) {
    if (process.getuid!() === 0) {
      const walk = (p: string) => {
        fs.lchownSync(p, uid, gid);
        if (j.recursive && fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
      };
      walk(j.dir);
    } else {
      const { unshare } = await import('../../userns/unshare.js');
      const rc = await unshare(['chown', ...(j.recursive ? ['-R'] : []), '-h', `${uid}:${gid}`, '--', j.dir], { mode: parseUsernsMode('host'), stdio: 'ignore' });
      if (rc !== 0) throw new ContainerError(`cannot chown ${j.dir} to the container's user ${user.uid}:${user.gid} (chown exited ${rc})`);
    }
  }
  for (const m of mounts) {
    const v = m.type === 'volume' && m.name ? volumes.get(m.name) : null;
    if (v?.NeedsChown) volumes.write({ ...v, NeedsChown: false });
  }
}

/** The container's passwd and group text (either may be missing: ""). */
function userFiles(root: string): { passwd: string; group: string } {
  const read = (f: string) => {
    try {
      return fs.readFileSync(path.join(root, 'etc', f), 'utf8');
    } catch {
      return '';
    }
  };
  return { passwd: read('passwd'), group: read('group') };
}

/** The user the command runs as: --user (or the image's User) resolved in the container's files, else the namespace's default. */
function commandUser(spec: string | undefined, root: string | null, mode: UsernsMode): { user: ContainerUser; home?: string } {
  if (spec) {
    const files = root ? userFiles(root) : { passwd: '', group: '' };
    const u = resolveUser(spec, files.passwd, files.group);
    return { user: { spec, uid: u.uid, gid: u.gid, groups: u.groups }, home: u.home };
  }
  if (mode.kind === 'keep-id') return { user: { spec: '', uid: mode.uid ?? process.getuid!(), gid: mode.gid ?? process.getgid!(), groups: [] } };
  return { user: { spec: '', uid: 0, gid: 0, groups: [] } };
}

/** /etc/hosts as podman writes it: --add-host entries first, then localhost, host.containers.internal, this container. */
function writeEtc(dir: string, f: { hostname: string; name: string; ips: string[]; resolv: string; extraHosts: string[]; addHosts: string[]; hostGateway?: string }): string[] {
  const hosts = [
    ...f.addHosts, '127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback',
    ...(f.hostGateway ? [`${f.hostGateway}\thost.containers.internal host.docker.internal`] : []),
    ...f.ips.map((ip) => `${ip}\t${f.hostname} ${f.name}`), ...f.extraHosts,
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'hosts'), `${hosts}\n`, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'resolv.conf'), f.resolv, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'hostname'), `${f.hostname}\n`, { mode: 0o644 });
  return ['hosts', 'resolv.conf', 'hostname'].map((x) => `${path.join(dir, x)}:/etc/${x}`);
}
/** Refuses host ports another running container of this store publishes, naming it. */
function refusePublishedElsewhere(ports: PortSpec[], stateDir: string, self?: string): void {
  if (!ports.length) return;
  const overlaps = (a: PortSpec, b: PortSpec) => a.proto === b.proto && a.hostPort < b.hostPort + b.count && b.hostPort < a.hostPort + a.count && (!a.hostAddr || !b.hostAddr || a.hostAddr === b.hostAddr);
  for (const r of new ContainerStore(stateDir).list()) {
    if (r.id === self || r.state !== 'running' || !ContainerStore.alive(r)) continue;
    for (const theirs of parseRecordedPorts(r.ports)) {
      const mine = ports.find((p) => overlaps(p, theirs));
      if (mine) throw new ContainerError(`cannot publish ${formatPortSpec(mine)}: container "${r.name}" (${r.id.slice(0, 12)}) already publishes ${formatPortSpec(theirs)}`);
    }
  }
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
  const { unshareCapture } = await import('../../userns/unshare.js');
  const whole = maps.intermediate!.uid.length > 1 ? { mode: parseUsernsMode('host') } : { mode: parseUsernsMode('host'), uidmaps: [{ containerId: 0, hostId: 0, size: 1 }], gidmaps: [{ containerId: 0, hostId: 0, size: 1 }] };
  const r = await unshareCapture([process.execPath, '--', process.argv[1], 'internal', 'unpack-image', '--id-map', JSON.stringify(idMap), file, root], whole);
  if (r.code !== 0) throw new ContainerError(r.stderr.trim().replace(/^Error: /, '') || `unpacking ${file} failed (exit ${r.code})`);
}

/** The run's options kept in the record for `burrow start` (the runtime-only ones dropped). */
export type RunSpec = Omit<RunOptions, 'fixedId' | 'readyFd' | 'detached' | 'waitAttach' | 'restart' | 'inCli'>;

/** Refuses option combinations podman refuses, with its reasons, before anything starts. */
function refuseConflicts(o: RunOptions, netName: string, joining: boolean): void {
  const mode = joining ? 'container' : netName;
  if (o.dns.length && (mode === 'none' || mode === 'container')) throw new ContainerError(`conflicting options: dns and the network mode: ${mode}`);
  if ((o.addHost ?? []).length && mode === 'container') throw new ContainerError('invalid config provided: cannot set extra host entries when the container is joined to another containers network namespace: invalid configuration');
  const cniMode = !SPECIAL_NETWORKS.includes(netName) && !joining;
  if (o.ip && !cniMode) throw new ContainerError('--ip can only be set when the network mode is bridge: invalid argument');
  if (o.mac && !cniMode) throw new ContainerError('--mac-address can only be set when the network mode is bridge: invalid argument');
  if (o.infra && (o.tty || o.interactive)) throw new ContainerError('an infra container has no terminal or stdin');
}

/** Runs a container in the foreground; resolves to its exit status. */
export async function runContainer(opts: RunOptions, configArg?: string): Promise<number> {
  const rootless = process.getuid!() !== 0;
  const configFile = configArg && path.resolve(configArg);
  const { loadConfig } = await import('../config.js');
  const config = loadConfig(configFile);
  // `burrow start`: the record holds the options, resolved when the container was created.
  const previous = opts.restart ? new ContainerStore(config.stateDir).find(opts.fixedId!) : null;
  if (previous && !previous.spec) throw new ContainerError(`container "${previous.name}" was created by an older burrow and cannot be started again`);
  // Host paths are the caller's: a detached run's supervisor starts in the caller's directory,
  // resolves them there, then leaves it (it must not keep a mount busy for the container's life).
  const cwd = process.cwd();
  const base: RunOptions = previous ? { ...previous.spec!, fixedId: opts.fixedId, readyFd: opts.readyFd, detached: opts.detached, waitAttach: opts.waitAttach, restart: true, inCli: opts.inCli } : opts;
  const o: RunOptions = { ...base, rootfs: base.rootfs && path.resolve(base.rootfs), image: base.image && path.resolve(base.image) };
  const envFiles = previous ? [] : (o.envFile ?? []).flatMap((f) => {
    const file = path.resolve(cwd, f);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ContainerError(`parsing env file "${f}": ${(err as Error).message}`);
    }
    return parseEnvFile(text, f, process.env);
  });
  const mountSpecs = previous ? [] : parseMounts(o, cwd);
  if (o.detached) process.chdir('/');
  const netValues = [o.network ?? []].flat();
  const joinTarget = joinTargetOf(o, netValues, config.stateDir);
  const network = joinTarget ? 'container' : netValues.length === 1 ? netValues[0] : netValues.length ? netValues.join(' --network ') : rootless ? 'usernet' : undefined;
  const ctx = await makeContext(config, { plugins: !rootless && !SPECIAL_NETWORKS.includes(network ?? '') && !joinTarget });
  const netName = network ?? ctx.networks.defaultName();
  // ---- validate everything before anything starts
  const cni = !SPECIAL_NETWORKS.includes(netName) && !joinTarget;
  if (netName.startsWith('container:')) throw new ContainerError('--network container: needs a container name');
  refuseConflicts(o, netName, !!joinTarget);
  // a user network's containers live in the user's network namespace, whose user namespace maps
  // the user as root and the subordinate range after it: --userns host's map, which they share
  if (cni && rootless && ((o.userns && o.userns !== 'host') || o.uidmap.length || o.gidmap.length)) throw new ContainerError(`--userns ${o.userns ?? ''}${o.uidmap.length || o.gidmap.length ? ' --uidmap/--gidmap' : ''}: a container on the user network "${netName}" shares the user's network namespace and its id map (--userns host); other modes are not supported there yet`.replace('--userns  ', ''));
  // several CNI networks (a,b or --network repeated): eth0, eth1, ... in that order unless
  // NAME:interface_name=.. says otherwise; published ports on the first
  const requests = cni ? parseNetworkArgs(netValues.length ? netValues : [netName], { ip: o.ip, mac: o.mac, aliases: o.networkAlias }) : [];
  if (!cni && o.networkAlias?.length) throw new ContainerError(`--network-alias: the ${joinTarget ? 'joined container\'s' : netName} network has no container names; aliases need a CNI network`);
  if (o.rootfs && o.image) throw new ContainerError('--rootfs and --image both give the root filesystem: choose one');
  checkRootfs(o.rootfs);
  let publish = o.publish;
  // podman's behaviour: a warning (the CLI prints it), and the container runs without them
  if (publish.length && (netName === 'host' || netName === 'none')) publish = [];
  // -p 80 and -p IP::80 get free host ports now; start reuses them, as podman keeps them
  const ports = await chooseHostPorts(publish.flatMap((p) => parsePortSpec(p)));
  publish = ports.map(formatPortSpec);
  refusePublishedElsewhere(ports, config.stateDir, o.fixedId);
  const id = o.fixedId ?? ContainerStore.newId();
  const netMode = chooseMode(ctx, { id, network: netName, requests, ports, mapHostLoopback: o.mapHostLoopback, join: joinTarget ? { target: joinTarget, dir: new ContainerStore(config.stateDir).pathOf(joinTarget.id) } : undefined });
  const holderFile = o.inCli ? (await import('./holder.js')).holderFor() : null;
  if (o.inCli && (!holderFile || !netMode.holdable || o.infra)) throw new NeedsSupervisor(holderFile ? 'this network mode needs a live process' : 'no native holder');
  const security = parseSecurityOpts(o.securityOpt ?? []);
  const caps = o.privileged ? capabilityMask(['ALL'], []) : capabilityMask(o.capAdd, o.capDrop);
  const labels = parseLabels(o.label ?? []);
  const addHosts = parseAddHosts(o.addHost ?? []);
  const imagePlan = o.image && !previous ? await (await import('./image.js')).planImage(path.resolve(o.image)) : null;
  const imageCfg: ImageConfig = previous?.imageConfig ?? imagePlan?.config ?? {};
  const cmd = previous ? previous.command : containerCommand(o.cmd, o.entrypoint, imageCfg);
  if (!cmd.length && !o.infra) throw new ContainerError(`no command given (burrow run [OPTIONS] -- CMD [ARGS...])${o.image ? `, and ${o.image} names none` : ''}`);
  const mode = parseUsernsMode(o.userns ?? 'host');
  const uidmaps = o.uidmap.map((s) => parseIdMapSpec(s, '--uidmap'));
  const gidmaps = o.gidmap.map((s) => parseIdMapSpec(s, '--gidmap'));
  const userSpec = o.user ?? (imageCfg.User || undefined);
  await gcContainers(ctx);

  // ---- record, start held, attach, go
  const store = new ContainerStore(ctx.config.stateDir);
  const volumeStore = new VolumeStore(ctx.config.volumePath);
  const name = previous?.name ?? o.name ?? `burrow-${id.slice(0, 12)}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new ContainerError(`invalid --name "${name}": letters, digits, _ . - (not first)`);
  const hostname = joinTarget?.hostname ?? o.hostname ?? id.slice(0, 12);
  const dir = store.pathOf(id);
  const rootDir = o.image ? path.join(dir, 'rootfs') : o.rootfs;
  // what start needs to run it again: mounts are kept resolved in the record (volume names too)
  const { fixedId: _f, readyFd: _r, detached: _d, waitAttach: _w, restart: _s, inCli: _c, ...rest } = o;
  const spec: RunSpec = { ...rest, publish, envFile: [], env: [...envFiles, ...o.env], volume: [], mount: [], tmpfs: [] };
  const volumes = previous ? { records: previous.mounts ?? [], created: [] as string[] } : resolveVolumes(mountSpecs, volumeStore);
  const record: ContainerRecord = {
    id, name, pid: process.pid, startTime: processStartTime(process.pid) ?? '', command: o.infra ? ['(infra)'] : cmd, created: previous?.created ?? new Date().toISOString(),
    network: netMode.initialRecord(), ports: publish,
    state: 'created', hostname, detached: !!o.detached, capabilities: capabilityNames(caps),
    ...(o.pod ? { pod: o.infra ? o.pod : joinTarget!.pod, infra: !!o.infra } : {}), ...(o.image ? { image: path.resolve(o.image), imageConfig: imageCfg } : {}),
    spec: previous?.spec ?? spec, labels, mounts: volumes.records, tty: !!o.tty, interactive: !!o.interactive, noNewPrivs: security.noNewPrivs, privileged: !!o.privileged,
    readOnly: !!o.readOnly, restarts: previous ? (previous.restarts ?? 0) + 1 : 0,
  };
  let supervisorLog: number | undefined;
  try {
    store.create(record);
    // the holder's own messages (and the teardown's), where a Node supervisor's would go
    if (o.inCli) supervisorLog = fs.openSync(path.join(dir, 'supervisor.log'), 'a', 0o600);
  } catch (err) {
    for (const v of volumes.created) await volumeStore.remove(v, (d) => removeTree(d)).catch(() => undefined);
    throw err;
  }
  let started: Started | null = null;
  let console: ContainerConsole | null = null;
  let maps: Maps | null = null;
  // Teardown steps, undone in reverse. A step that fails is reported and the rest carry on; an
  // attachment whose DEL failed is recorded for `system gc` to retry.
  const undo = new UndoStack<CniAttachment>();
  let exitCode: number | null = null;
  // A container that never ran goes again (and the volumes made for it); one started again stays, exited.
  const removeOnExit = () => (o.rm && exitCode !== null) || (exitCode === null && !previous);
  const cleanup = async () => {
    const failures = await undo.run();
    // --rm takes the container's anonymous volumes along (podman does too); a failed start, the volumes it made
    const gone = exitCode === null ? volumes.created : volumes.records.filter((m) => m.anonymous && m.name).map((m) => m.name!);
    await finishContainer(store, record, { exitCode, failures, remove: removeOnExit(), volumes: gone, volumeStore });
  };
  try {
    const ownNet = netMode.ownNetns;
    if (o.image && !fs.existsSync(rootDir!)) fs.mkdirSync(rootDir!, { mode: 0o755 });
    // The maps first: an image is unpacked with them before anything starts, so its files (its
    // /etc/passwd for --user, its volumes' owners) are there for what follows.
    maps = joinTarget ? { uid: [], gid: [] } : computeMaps({ mode, uidmaps, gidmaps, rootfs: rootDir, stateDir: ctx.config.stateDir });
    if (o.image && !previous) await unpackInto(path.resolve(o.image), imagePlan!, rootDir!, maps);
    const resolved = previous?.user ? { user: previous.user, home: undefined } : commandUser(userSpec, rootDir ?? '/', mode);
    record.user = resolved.user;
    await chownForContainer(volumes.records, volumeStore, resolved.user, maps);
    // Output goes through this process (the log, attached clients, a foreground caller's terminal).
    if (!o.infra) {
      console = await ContainerConsole.open({
        logFile: path.join(dir, 'ctr.log'), socketPath: attachSocketPath(ctx.config.stateDir, id), tty: !!o.tty, interactive: !!o.interactive, name,
        local: !o.detached, signal: (sig) => started?.child.kill(sig),
      });
      record.attachSocket = attachSocketPath(ctx.config.stateDir, id);
    }
    // The /etc files are bind-mounted after "go", so they may still change until then.
    const binds = writeEtc(dir, { hostname, name, ips: [], resolv: '', extraHosts: [], addHosts: [] });
    // held until go: the network is attached first, a terminal's client attached
    const hold = ownNet || !!o.waitAttach;
    record.env = previous?.env ?? containerEnv({ image: imageCfg.Env, flags: [...envFiles, ...o.env] }, hostname, resolved.home ?? '/root', process.env);
    record.workdir = o.workdir ?? (imageCfg.WorkingDir || undefined);
    await netMode.prepare?.(undo);
    const m = maps;
    maps = null; // startInNamespaces owns them now (and releases them)
    started = await startInNamespaces(cmd, {
      insidePid: netMode.insidePid?.(),
      mode, uidmaps, gidmaps, rootfs: rootDir, stateDir: ctx.config.stateDir, maps: m,
      namespaces: joinTarget ? ['mnt', 'pid'] : ['mnt', 'pid', 'uts', 'ipc', ...(ownNet ? ['net'] : [])], joinPid: joinTarget?.initPid,
      tap: netMode.tap, wantFds: hold, holdUntilGo: hold, pause: o.infra, capabilities: caps,
      root: rootDir ?? 'host', binds, mounts: helperMounts(volumes.records), hostname: joinTarget ? undefined : hostname,
      workdir: record.workdir, env: Object.fromEntries(record.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
      stdio: o.infra ? 'ignore' : [o.interactive && !o.tty ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      user: resolved.user.spec ? helperUserArg({ ...resolved.user, home: '' }) : undefined,
      noNewPrivs: security.noNewPrivs, readOnlyRoot: !!o.readOnly && !!rootDir, hostDevices: !!o.privileged, unmasked: !!o.privileged || security.unmasked,
      console: !!o.tty,
      holder: supervisorLog !== undefined ? { file: holderFile!, log: supervisorLog } : undefined,
    });
    if (supervisorLog !== undefined) fs.closeSync(supervisorLog);
    supervisorLog = undefined;
    const s = started;
    console?.connectPipes(s.child.stdout, s.child.stderr, s.child.stdin);
    undo.push('close the namespace fds', () => {
      for (const fd of [s.fds?.netns, s.fds?.userns]) if (fd !== undefined) fs.closeSync(fd);
    });
    undo.hold([s.fds?.netns, s.fds?.userns].filter((fd): fd is number => fd !== undefined));
    const net = await netMode.attach({
      // a pod is known on its networks by the pod's name, as podman passes it, not its infra's
      id, name: o.infra && o.pod ? new PodStore(ctx.config.stateDir).find(o.pod).name : record.name, dir, stateDir: ctx.config.stateDir, ports, dns: o.dns, mapHostLoopback: o.mapHostLoopback,
      saveNetwork: (n) => {
        record.network = n;
        store.write(record);
      },
    }, { pid: s.pid, netnsPath: s.fds?.netns !== undefined ? `/proc/${process.pid}/fd/${s.fds.netns}` : undefined, tapFd: s.fds?.tap }, undo);
    const { ips } = net;
    if (net.apiSocket) record.apiSocket = net.apiSocket;
    writeEtc(dir, { hostname, name, ips, resolv: net.resolv, extraHosts: net.extraHosts, addHosts, hostGateway: net.hostGateway }); // same paths: the binds above still hold
    Object.assign(record, { state: 'running', initPid: s.pid, ips, startedAt: new Date().toISOString() });
    delete record.teardown;
    store.write(record);
    const unrelay = relaySignals(s.child);
    if (o.waitAttach && console) await waitForClient(console, o.readyFd);
    s.go();
    if (s.console) {
      try {
        const master = await s.console.master;
        console?.connectTerminal(master);
      } catch {
        // the helper failed before it made the terminal: its stderr (in the log) says why
      }
      s.console.ready();
    }
    if (o.inCli) {
      o.inCli.announce(id);
      // handed over: the holder has the container, and this process leaves at once (no finally:
      // closing the console's server would unlink the attach socket the holder listens on)
      if (await handOverFromCli({ s, console, undo, record, store, configFile })) process.exit(0);
      if (s.child.exitCode === null && s.child.signalCode === null && !(await Promise.race([s.exited.then(() => true), new Promise((r) => setTimeout(r, 100, false))]))) {
        process.stderr.write('burrow: the container could not be handed to burrow-holder: this process holds it until it exits\n');
      }
    }
    if (o.readyFd !== undefined && !o.waitAttach) {
      fs.writeSync(o.readyFd, 'OK\n');
      // the caller returns at its end: after the exec to the holder (which closes it), so that
      // what the caller sees next (ps, inspect, /proc) is the holder already
      try {
        if (o.detached && netMode.holdable) await handOver({ s, console, undo, record, store, configFile });
      } finally {
        fs.closeSync(o.readyFd);
      }
    }
    const code = await s.exited;
    unrelay();
    await console?.drain();
    exitCode = code;
    return code;
  } catch (err) {
    if (maps) releaseMaps(maps);
    if (supervisorLog !== undefined) fs.closeSync(supervisorLog);
    if (started) {
      started.abort();
      started.child.kill('SIGKILL');
      await started.exited;
    }
    throw err;
  } finally {
    await cleanup();
    // attached clients learn the exit code once the container is cleaned up (and gone, with --rm)
    if (console) await console.finish(exitCode ?? 125);
  }
}

/**
 * A detached run's supervisor gives the running container to the native holder (holder.ts): it
 * execve()s, so this returns only when it does not (no holder built, BURROW_HOLDER=node, the
 * command already gone, a console write still pending, or the exec failed: said in the log).
 */
async function handOver(h: { s: Started; console: ContainerConsole | null; undo: UndoStack<CniAttachment>; record: ContainerRecord; store: ContainerStore; configFile?: string }): Promise<void> {
  const { execHolder, holderFor, teardownCommand } = await import('./holder.js');
  const file = holderFor();
  const { s, record } = h;
  if (!file || s.child.pid === undefined || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const fds = h.console ? await h.console.handOver({ stdout: s.child.stdout, stderr: s.child.stderr, stdin: s.child.stdin }) : null;
  if (h.console && !fds) return;
  // the command may have ended while the console's writes drained: its exit is ours to see then
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  h.store.write({ ...record, holder: 'burrow-holder' });
  try {
    execHolder(file, { child: s.child.pid, keep: h.undo.held, console: fds, socketPath: record.attachSocket, name: record.name, tty: !!record.tty, interactive: !!record.interactive, teardown: teardownCommand(record.id, h.configFile) });
  } catch (err) {
    h.store.write(record);
    process.stderr.write(`burrow: the container stays with this supervisor: ${(err as Error).message}\n`);
  }
}

/**
 * `run -d` in the CLI: gives the running container to the burrow-holder that is the helper's
 * parent (native/burrow-holder.c, spawn mode): the record names the holder first (its pid, and
 * the netns paths under /proc/HOLDER/fd, where the holder keeps the same fd numbers), then the
 * fds go over the control socket and HOLD starts it. False (the record as it was) when the console
 * cannot be handed over or the command is gone already: this process then holds the container
 * (until it exits, at once when it is gone) and cleans up.
 */
async function handOverFromCli(h: { s: Started; console: ContainerConsole | null; undo: UndoStack<CniAttachment>; record: ContainerRecord; store: ContainerStore; configFile?: string }): Promise<boolean> {
  const { holderArgs, teardownCommand } = await import('./holder.js');
  const { sendFds } = await import('../../native/mod.js');
  const { s, record } = h;
  const gone = () => s.child.exitCode !== null || s.child.signalCode !== null;
  const holder = s.child.pid;
  if (s.holderCtl === undefined || holder === undefined || gone()) return false;
  const fds = h.console ? await h.console.handOver({ stdout: s.child.stdout, stderr: s.child.stderr, stdin: s.child.stdin }) : null;
  if ((h.console && !fds) || gone()) return false;
  const args = holderArgs({ child: 0, keep: h.undo.held, console: fds, socketPath: record.attachSocket, name: record.name, tty: !!record.tty, interactive: !!record.interactive, teardown: teardownCommand(record.id, h.configFile) }).slice(2);
  const pass = [...h.undo.held, ...(fds ? [fds.log, fds.listen, fds.stdout, fds.stderr, fds.stdin, fds.master, ...fds.clients, ...fds.informed] : [])].filter((x): x is number => x !== undefined);
  // the holder runs with the container's environment (the helper's): the teardown gets ours
  const env = Object.entries(process.env).filter(([k, v]) => v !== undefined && k !== 'NODE_EXTRA_CA_CERTS').map(([k, v]) => `${k}=${v}\0`).join('');
  if (Buffer.byteLength(env) > 60_000) return false; // more than one message holds: this process stays
  const network = JSON.parse(JSON.stringify(record.network).split(`/proc/${process.pid}/fd/`).join(`/proc/${holder}/fd/`)) as ContainerRecord['network'];
  h.store.write({ ...record, network, pid: holder, startTime: processStartTime(holder) ?? '', holder: 'burrow-holder' });
  try {
    for (let i = 0; i < pass.length; i += 200) {
      const part = pass.slice(i, i + 200);
      sendFds(s.holderCtl, part, Buffer.from(`FDS ${part.join(' ')}`));
    }
    sendFds(s.holderCtl, [], Buffer.from(`ENV\0${env}`));
    sendFds(s.holderCtl, [], Buffer.from(`HOLD\0${args.join('\0')}\0`));
    return true;
  } catch {
    // the holder is gone: the command ended before the hand-over and it left with its status
    // (had HOLD been on its way it would hold, teardown and all); this process cleans up
    h.store.write(record);
    return false;
  }
}

/** The container's attach socket (unix socket paths are limited to 108 bytes: the short id). */
export function attachSocketPath(stateDir: string, id: string): string {
  return path.join(stateDir, 'sock', `${id.slice(0, 12)}.attach`);
}

/**
 * run -it, start -a: tells the caller the container is ready ("OK" on fd 3), then holds the
 * command until the caller's client has attached (or the caller went away: it runs detached then).
 */
async function waitForClient(console: ContainerConsole, readyFd: number | undefined): Promise<void> {
  if (readyFd === undefined) return console.attached;
  fs.writeSync(readyFd, 'OK\n');
  const net = await import('node:net');
  const caller = new net.Socket({ fd: readyFd, readable: true, writable: false });
  await Promise.race([console.attached, new Promise<void>((resolve) => {
    caller.on('end', () => resolve());
    caller.on('close', () => resolve());
    caller.on('error', () => resolve());
  })]);
  caller.destroy();
}


/**
 * `run -d`: starts a supervisor (this CLI again, in its own session, with BURROW_SUPERVISE set)
 * whose own messages go to the container's supervisor.log, waits until it reports the container
 * running on fd 3, and returns the id. A supervisor that fails reports nothing: its log says why.
 */
export async function detachRun(argv: string[], configFile?: string): Promise<string> {
  const dash = argv.indexOf('--');
  const head = (dash < 0 ? argv : argv.slice(0, dash)).filter((a) => a !== '-d' && a !== '--detach');
  return (await startSupervisor([...head, ...(dash < 0 ? [] : argv.slice(dash))], configFile)).id;
}

/** `burrow start`: supervises the existing container `id` again (waitAttach: start -a). */
export async function restartSupervisor(id: string, configFile: string | undefined, o: { waitAttach?: boolean } = {}): Promise<Supervisor> {
  return startSupervisor([...(configFile ? ['--config', configFile] : []), 'internal', 'start', id], configFile, { ...o, existing: id });
}

export interface Supervisor {
  id: string;
  /** The container's attach socket. */
  socket: string;
  /** waitAttach: tells the supervisor this caller is done waiting (attached, or giving up). */
  release(): void;
}

/**
 * Starts `burrow ARGS` (a run without -d, or `internal start ID`) as a detached supervisor;
 * resolves once it runs the container (with waitAttach: once it is ready for the first client,
 * the command held until one attaches or release() is called).
 */
export async function startSupervisor(args: string[], configFile?: string, o: { waitAttach?: boolean; existing?: string } = {}): Promise<Supervisor> {
  const { spawn } = await import('node:child_process');
  const { loadConfig } = await import('../config.js');
  const stateDir = loadConfig(configFile).stateDir;
  const s = new ContainerStore(stateDir);
  const id = o.existing ?? ContainerStore.newId();
  const dir = s.pathOf(id);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const log = path.join(dir, 'supervisor.log');
  const fd = fs.openSync(log, 'a', 0o600);
  // Read through our own fd: a supervisor that fails removes the directory, log included.
  const reader = fs.openSync(log, 'r');
  const skip = fs.fstatSync(reader).size; // a restarted container's log holds earlier runs
  // NODE_EXTRA_CA_CERTS is dropped as bin/burrow's shebang drops it: a CLI started as `node
  // bin/burrow` would otherwise make the supervisor parse the bundle too (~100 ms per start)
  const { NODE_EXTRA_CA_CERTS: _, ...inherited } = process.env;
  const env = { ...inherited, BURROW_SUPERVISE: id, ...(o.waitAttach ? { BURROW_WAIT_ATTACH: '1' } : {}) };
  // "--": Node 20 would take a run's --env-file as its own option
  const child = spawn(process.execPath, ['--', process.argv[1], ...args], { detached: true, stdio: ['ignore', fd, fd, 'pipe'], env });
  fs.closeSync(fd);
  const pipe = child.stdio[3] as import('node:net').Socket;
  // "OK" says the container runs; the pipe's end that the supervisor has handed it to its holder
  // (or stays itself). The console's hand-over waits at most a second: the end comes soon after.
  const ready = await new Promise<boolean>((resolve) => {
    let buf = '';
    pipe.on('data', (d: Buffer) => {
      buf += d.toString();
      if (!buf.includes('OK')) return;
      if (o.waitAttach) resolve(true);
      else setTimeout(() => resolve(true), 5000).unref();
    });
    pipe.on('end', () => resolve(buf.includes('OK')));
    pipe.on('error', () => resolve(buf.includes('OK')));
  });
  const release = () => pipe.destroy();
  if (!o.waitAttach) release();
  if (ready) {
    fs.closeSync(reader);
    child.unref(); // the supervisor lives on in its own session
    pipe.unref();
    return { id, socket: attachSocketPath(stateDir, id), release };
  }
  release();
  await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
  const buf = Buffer.alloc(Math.max(0, fs.fstatSync(reader).size - skip));
  fs.readSync(reader, buf, 0, buf.length, skip);
  const why = buf.toString().trim().split('\n').slice(-3).join('\n');
  fs.closeSync(reader);
  if (!o.existing) fs.rmSync(dir, { recursive: true, force: true });
  throw new ContainerError(why.replace(/^Error: /, '') || 'the container supervisor exited before the container started');
}
