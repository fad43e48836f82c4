/**
 * Running a command in a new user namespace (`burrow unshare`, like `podman unshare`).
 *
 * The maps are computed and checked first (userns/mapping.ts), then native/burrow-ns clones the
 * child and waits; this side writes the maps (newuidmap/newgidmap as an unprivileged user,
 * /proc/PID/{uid,gid}_map directly as root) and lets the child exec. Every failure names what to
 * fix, and a child that never got its maps is told to exit, so nothing is left running.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, recvFds, recvFdsNow, socketPair, unwatch, watchReadable } from '../native/mod.js';
import { toolPath } from '../native/system.js';
import { AutoRegistry, autoSizeFor, type AutoEntry } from './auto.js';
import {
  checkMapping, compose, intermediateMap, mapArgs, modeMapping, unownedHostIds, UsernsError, type IdMapping, type UsernsMode,
} from './mapping.js';
import { findOverlaps, parseSubIdFile, rangesFor, totalIds, type SubIdFile, type SubIdRange } from './subid.js';

export interface UnshareOptions {
  mode: UsernsMode;
  uidmaps?: IdMapping[];
  gidmaps?: IdMapping[];
  /** Namespaces besides user: net, mnt, pid, uts, ipc. */
  namespaces?: string[];
  subuidFile?: string;
  subgidFile?: string;
  /** auto: the rootfs whose highest uid/gid sizes the namespace. */
  rootfs?: string;
  /** auto: where allocations of running containers are recorded. */
  stateDir?: string;
  /** Create a TAP with this name inside the new network namespace and hand its fd back. */
  tap?: string;
  /** Hand the namespace fds (and the TAP) back to the caller. */
  wantFds?: boolean;
  /** With wantFds/tap: the command waits until Started.go() (configure the network first). */
  holdUntilGo?: boolean;
  /** The command's stdin, stdout, stderr (one value for all three, or each). */
  stdio?: StdioMode | [StdioMode, StdioMode, StdioMode];
  /** With a mount namespace: "host" (host filesystem read-only) or a rootfs directory to pivot into. */
  root?: string;
  /** Read-only bind mounts "SRC:DST" inside the root. */
  binds?: string[];
  /** Writable bind mounts "SRC:DST" (volumes). */
  volumes?: string[];
  hostname?: string;
  workdir?: string;
  env?: NodeJS.ProcessEnv;
  /** Capabilities the command keeps (bit mask); all of the namespace's when absent. */
  capabilities?: bigint;
  /**
   * Share the user, network, uts and ipc namespaces of this pid (a pod's infra, --network
   * container:NAME) instead of creating them; no maps are written.
   */
  joinPid?: number;
  /**
   * Make the namespaces inside the user namespace of this pid (a user's network namespace holder)
   * instead of a new one: they are owned by it, so its root (the network plugins) can configure
   * them. No maps are written.
   */
  insidePid?: number;
  /** Run no command: the init only holds the namespaces until SIGTERM (a pod's infra). */
  pause?: boolean;
  /**
   * With pause: the helper outlives this process (no parent-death signal, its own session), so no
   * burrow process has to stay to hold the namespaces. Give it stdio that outlives this process
   * too (files, or "ignore"); the caller unrefs the child.
   */
  linger?: boolean;
  /**
   * Start the helper under native/burrow-holder.c's spawn mode (`file`), which becomes its parent
   * and can later hold the container (Started.holderCtl); its own messages go to the fd `log`.
   */
  holder?: { file: string; log: number };
  /** More mounts, in order, after binds and volumes: binds and tmpfs with their options. */
  mounts?: HelperMount[];
  /** The command's user, as the helper's -u takes it: UID:GID[:G,...] (ids of the container). */
  user?: string;
  /** Maps computed beforehand (computeMaps), e.g. to unpack an image first; released as if computed here. */
  maps?: Maps;
  noNewPrivs?: boolean;
  /** A rootfs mounted read-only (--read-only). */
  readOnlyRoot?: boolean;
  /** --privileged: the host's /dev, and no masked paths. */
  hostDevices?: boolean;
  unmasked?: boolean;
  /** Give the command a terminal from the container's devpts: see Started.console. */
  console?: boolean;
}

type StdioMode = 'inherit' | 'pipe' | 'ignore' | number;

export interface HelperMount {
  kind: 'bind' | 'tmpfs';
  /** bind: the host path */
  source?: string;
  destination: string;
  ro?: boolean;
  /** nosuid, nodev, noexec, norec, ro (tmpfs) */
  flags?: string[];
  /** tmpfs: size=, mode= */
  data?: string;
}

/** The helper's arguments for `mounts`. */
export function mountArgs(mounts: HelperMount[]): string[] {
  return mounts.flatMap((m) => {
    const head = m.kind === 'tmpfs' ? ['-M', `${m.destination}:${m.data ?? ''}`] : [m.ro ? '-B' : '-V', `${m.source}:${m.destination}`];
    const flags = [...(m.flags ?? []), ...(m.kind === 'tmpfs' && m.ro ? ['ro'] : [])];
    return flags.length ? [...head, '-E', flags.join(',')] : head;
  });
}

export interface Maps {
  uid: IdMapping[];
  gid: IdMapping[];
  /**
   * Rootless: the caller's own ids as a namespace of its whole range sees them (the "host" mode
   * intermediate map: 0 = the caller, 1.. = its subordinate ids), to shift file ownership.
   */
  intermediate?: { uid: IdMapping[]; gid: IdMapping[] };
  /** auto: the registry entry, released when the container ends. */
  auto?: { registry: AutoRegistry; entry: AutoEntry };
}


/** build/Release/burrow-ns of the install root. */
export function helperPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    dir = path.dirname(dir);
    const p = path.join(dir, 'build', 'Release', 'burrow-ns');
    if (fs.existsSync(p)) return p;
  }
  throw new UsernsError('native/burrow-ns is not built: run "npm ci"');
}

const usermodHint = (name: string) => name === 'containers'
  ? 'root\'s --userns auto takes ids from the user "containers", as podman does: as root, add a line such as containers:2147483647:2147483648 to /etc/subuid and /etc/subgid'
  : `as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${name}`;

/** Parses `getsubids [-g] USER` output ("0: alice 100000 65536" per range) into a SubIdFile. */
export function parseGetsubids(text: string, source: string): SubIdFile {
  const f: SubIdFile = { file: source, ranges: [], problems: [] };
  text.split('\n').forEach((line, i) => {
    const m = /^\s*\d+:\s+(\S+)\s+(\d+)\s+(\d+)\s*$/.exec(line);
    if (m) f.ranges.push({ owner: m[1], start: Number(m[2]), count: Number(m[3]), line: i + 1 });
    else if (line.trim()) f.problems.push({ file: source, line: i + 1, message: `${source}:${i + 1}: unexpected output: "${line}"` });
  });
  return f;
}

/**
 * The file's entries, or, when the file does not exist and libsubid's getsubids is installed,
 * what getsubids reports (subid ranges kept in LDAP/SSSD through nsswitch).
 */
function loadSubIds(file: string, user: { name: string; uid: number }, kind: string): SubIdFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const getsubids = (err as NodeJS.ErrnoException).code === 'ENOENT' ? toolPath('getsubids') : null;
    if (getsubids) {
      const r = spawnSync(getsubids, kind === 'subgid' ? ['-g', user.name] : [user.name], { encoding: 'utf8' });
      // getsubids exits 1 ("Error fetching ranges") when the user has none: that is "no ranges".
      return parseGetsubids(r.status === 0 ? r.stdout : '', `getsubids${kind === 'subgid' ? ' -g' : ''} ${user.name}`);
    }
    throw new UsernsError(`cannot read ${file}: user ${user.name} needs ${kind} ranges there (${usermodHint(user.name)})`);
  }
  return parseSubIdFile(text, file);
}

function readSubIds(file: string, user: { name: string; uid: number }, kind: string): SubIdRange[] {
  const parsed = loadSubIds(file, user, kind);
  const ranges = rangesFor(parsed, user);
  // Another user's range overlapping ours would hand the same host ids to two users.
  for (const [a, b] of findOverlaps(parsed)) {
    const mine = [a, b].find((r) => ranges.includes(r));
    const other = [a, b].find((r) => !ranges.includes(r));
    if (mine && other) {
      throw new UsernsError(`${file}:${mine.line}: the ${kind} range ${mine.start}-${mine.start + mine.count - 1} of "${user.name}" overlaps ${file}:${other.line} (${other.owner}: ${other.start}-${other.start + other.count - 1}); give each user its own range`);
    }
  }
  if (!ranges.length) {
    throw new UsernsError(`no ${kind} ranges found for user "${user.name}" in ${file} (${usermodHint(user.name)})`);
  }
  return ranges;
}

/** True when every line maps into intermediate id 0 only (the caller's own id). */
function selfOnly(m?: IdMapping[]): boolean {
  return !!m?.length && m.every((x) => x.hostId === 0 && x.size === 1);
}

function checked(maps: Maps): Maps {
  for (const [k, m] of [['uid', maps.uid], ['gid', maps.gid]] as const) {
    const problems = checkMapping(m, `${k}_map`);
    if (problems.length) throw new UsernsError(problems.join('; '));
  }
  return maps;
}

/**
 * auto: reserves a slice of `size` ids from intermediate ids 1..total (the subordinate ranges,
 * laid end to end) and maps container ids 0..size-1 onto it.
 */
function autoMaps(o: UnshareOptions, inner: { uid: IdMapping[]; gid: IdMapping[] }, totals: { uid: number; gid: number }): Maps {
  if (o.mode.kind !== 'auto') throw new UsernsError('not an auto mode');
  if (!o.stateDir) throw new UsernsError('--userns auto needs a state directory to record allocations');
  const size = autoSizeFor(o.mode, o.rootfs);
  const registry = new AutoRegistry(o.stateDir);
  const entry = registry.allocate(size, totals);
  try {
    return { ...checked({ uid: compose([entry.uid], inner.uid), gid: compose([entry.gid], inner.gid) }), auto: { registry, entry } };
  } catch (err) {
    registry.release(entry);
    throw err;
  }
}

/** Intermediate ids 1..total laid over `ranges` (root's auto: the "containers" user's ranges). */
function rangesAsIntermediate(ranges: SubIdRange[]): IdMapping[] {
  return intermediateMap(0, ranges).slice(1);
}

/**
 * The uid and gid maps for the caller, checked against the kernel's rules and the caller's ranges.
 * For auto, the returned maps hold a registry reservation that {@link releaseMaps} gives back.
 */
export function computeMaps(o: UnshareOptions): Maps {
  const uid = process.getuid!();
  const gid = process.getgid!();
  const subuidFile = o.subuidFile ?? process.env.BURROW_SUBUID_FILE ?? '/etc/subuid';
  const subgidFile = o.subgidFile ?? process.env.BURROW_SUBGID_FILE ?? '/etc/subgid';
  if (uid === 0) {
    if (o.mode.kind === 'keep-id' || o.mode.kind === 'nomap') throw new UsernsError(`--userns ${o.mode.kind} is for rootless use; as root give --uidmap/--gidmap or use host`);
    if (o.mode.kind === 'auto') {
      // As podman: root's auto namespaces come from the ranges of the user "containers".
      const who = { name: 'containers', uid: -1 };
      const ru = readSubIds(subuidFile, who, 'subuid');
      const rg = readSubIds(subgidFile, who, 'subgid');
      return autoMaps(o, { uid: rangesAsIntermediate(ru), gid: rangesAsIntermediate(rg) }, { uid: totalIds(ru), gid: totalIds(rg) });
    }
    const full = [{ containerId: 0, hostId: 0, size: 0xffffffff }];
    return checked({ uid: o.uidmaps?.length ? o.uidmaps : full, gid: o.gidmaps?.length ? o.gidmaps : o.uidmaps?.length ? o.uidmaps : full });
  }
  const name = os.userInfo().username;
  // A map of the caller's own ids only needs no subordinate ids (and no newuidmap).
  const gidmaps = o.gidmaps ?? o.uidmaps;
  if (selfOnly(o.uidmaps) && selfOnly(gidmaps)) {
    const own = (m: IdMapping[], id: number) => m.map((x) => ({ ...x, hostId: id }));
    return { ...checked({ uid: own(o.uidmaps!, uid), gid: own(gidmaps!, gid) }), intermediate: { uid: intermediateMap(uid, []), gid: intermediateMap(gid, []) } };
  }
  const subuid = readSubIds(subuidFile, { name, uid }, 'subuid');
  const subgid = readSubIds(subgidFile, { name, uid }, 'subgid');
  const intermediate = { uid: intermediateMap(uid, subuid), gid: intermediateMap(gid, subgid) };
  if (o.mode.kind === 'auto' && !o.uidmaps?.length) {
    return { ...autoMaps(o, intermediate, { uid: totalIds(subuid), gid: totalIds(subgid) }), intermediate };
  }
  const build = (which: 'uid' | 'gid', own: number, ranges: SubIdRange[], explicit?: IdMapping[]) => {
    const inter = intermediateMap(own, ranges);
    const outer = explicit?.length ? explicit : modeMapping(o.mode, own, totalIds(ranges), which);
    const map = compose(outer, inter);
    const problems = checkMapping(map, `${which}_map`);
    if (problems.length) throw new UsernsError(problems.join('; '));
    const unowned = unownedHostIds(map, own, ranges);
    if (unowned.length) throw new UsernsError(`${which}_map needs host ids ${unowned.map((m) => `${m.hostId}-${m.hostId + m.size - 1}`).join(', ')} that user ${name} does not own`);
    return map;
  };
  return { uid: build('uid', uid, subuid, o.uidmaps), gid: build('gid', gid, subgid, gidmaps), intermediate };
}

/**
 * Container id -> the id a file must get where the unpacking process runs: the host id as root,
 * the intermediate id (a namespace of the caller's whole range) rootless.
 */
export function ownershipShift(maps: Maps): { uid: IdMapping[]; gid: IdMapping[] } {
  if (!maps.intermediate) return { uid: maps.uid, gid: maps.gid };
  const invert = (m: IdMapping[]) => m.map((x) => ({ containerId: x.hostId, hostId: x.containerId, size: x.size }));
  return { uid: compose(maps.uid, invert(maps.intermediate.uid)), gid: compose(maps.gid, invert(maps.intermediate.gid)) };
}

/** Gives back an auto reservation (no-op for other modes). */
export function releaseMaps(maps: Maps): void {
  maps.auto?.registry.release(maps.auto.entry);
}

function checkUsernsEnabled(): void {
  const read = (f: string) => {
    try {
      return fs.readFileSync(f, 'utf8').trim();
    } catch {
      return null;
    }
  };
  if (read('/proc/sys/kernel/unprivileged_userns_clone') === '0' && process.getuid!() !== 0) {
    throw new UsernsError('unprivileged user namespaces are disabled: set the sysctl kernel.unprivileged_userns_clone=1');
  }
  if (read('/proc/sys/user/max_user_namespaces') === '0') throw new UsernsError('user namespaces are disabled: raise the sysctl user.max_user_namespaces (it is 0)');
}

function writeMaps(pid: number, maps: Maps): void {
  const line = (m: IdMapping[]) => m.map((x) => `${x.containerId} ${x.hostId} ${x.size}\n`).join('');
  if (process.getuid!() === 0) {
    fs.writeFileSync(`/proc/${pid}/uid_map`, line(maps.uid));
    fs.writeFileSync(`/proc/${pid}/gid_map`, line(maps.gid));
    return;
  }
  const own = (m: IdMapping[], id: number) => m.length === 1 && m[0].hostId === id && m[0].size === 1;
  if (own(maps.uid, process.getuid!()) && own(maps.gid, process.getgid!())) {
    // The kernel lets the namespace's owner map its own ids itself, but a gid_map written without
    // CAP_SETGID in the parent namespace requires setgroups to be denied first (user_namespaces(7)).
    fs.writeFileSync(`/proc/${pid}/setgroups`, 'deny');
    fs.writeFileSync(`/proc/${pid}/uid_map`, line(maps.uid));
    fs.writeFileSync(`/proc/${pid}/gid_map`, line(maps.gid));
    return;
  }
  for (const [tool, map] of [['newuidmap', maps.uid], ['newgidmap', maps.gid]] as const) {
    const file = toolPath(tool);
    if (!file) throw new UsernsError(`${tool} not found: install the uidmap package (apt-get install uidmap)`);
    const st = fs.statSync(file);
    const r = spawnSync(file, [String(pid), ...mapArgs(map)], { encoding: 'utf8' });
    if (r.status !== 0) {
      const hint = (st.mode & 0o4000) === 0 ? ` (${file} is not setuid root: reinstall uidmap, or chmod u+s ${file})` : '';
      throw new UsernsError(`${tool} ${pid} ${mapArgs(map).join(' ')} failed: ${(r.stderr || '').trim() || `exit ${r.status}`}${hint}`);
    }
  }
}

export interface NamespaceFds {
  netns: number;
  userns: number;
  tap?: number;
}

export interface Started {
  /** pid of the namespace's first process (the init in a new pid namespace). */
  pid: number;
  child: import('node:child_process').ChildProcess;
  maps: Maps;
  /** The fds handed back (with wantFds or tap); the caller owns and closes them. */
  fds: NamespaceFds | null;
  /** Resolves to the command's exit status once the helper exits; the auto reservation is released then. */
  exited: Promise<number>;
  /** holdUntilGo: lets the command run (go) or makes the child exit without running it (abort). */
  go(): void;
  abort(): void;
  /**
   * With `console`: the terminal's master, once the init made it (after go); the command starts
   * when ready() is called (set the window size first). `master` rejects if the helper failed
   * before (its stderr says why).
   */
  console?: { master: Promise<number>; ready(): void };
  /** With `holder`: the control socket to the holder (`child`), owned by the caller. */
  holderCtl?: number;
}

const closeFd = (fd: number) => fs.closeSync(fd);

function readLine(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    stream.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(buf);
    });
    stream.on('end', () => resolve(buf));
  });
}

/** Receives the helper's "OK" + fds (or "ERR reason") on `sock`; closes `sock` unless `keep`. */
function receiveFds(sock: number, tap: boolean, keep = false): NamespaceFds {
  let ok = false;
  try {
    const { data, fds } = recvFds(sock, 3, 512);
    const text = data.toString();
    if (text === 'OK' && fds.length === (tap ? 3 : 2)) {
      ok = true;
      return { netns: fds[0], userns: fds[1], tap: tap ? fds[2] : undefined };
    }
    for (const fd of fds) closeFd(fd);
    throw new UsernsError(text.startsWith('ERR ') ? text.slice(4) : 'the namespace helper exited before handing back its fds');
  } finally {
    if (!keep || !ok) closeFd(sock);
  }
}

/**
 * Starts `cmd` in new namespaces with the computed maps. The maps are written (and the fds
 * received) before the command runs; on any failure the helper is told to stop, the auto
 * reservation is released, and the error is thrown, so nothing is left behind.
 */
export async function startInNamespaces(cmd: string[], o: UnshareOptions): Promise<Started> {
  const joining = o.joinPid !== undefined || o.insidePid !== undefined;
  const maps: Maps = o.maps ?? (joining ? { uid: [], gid: [] } : computeMaps(o));
  let pair: [number, number] | null = null;
  let consolePair: [number, number] | null = null;
  let ctlPair: [number, number] | null = null;
  try {
    if (!joining) checkUsernsEnabled();
    const helper = helperPath();
    const wantFds = !!(o.wantFds || o.tap);
    if (wantFds) pair = socketPair();
    const hold = wantFds && !!o.holdUntilGo;
    if (o.console) consolePair = socketPair();
    const fsArgs = [
      ...(o.root ? ['-R', o.root] : []), ...(o.readOnlyRoot ? ['-r'] : []), ...(o.hostDevices ? ['-D'] : []), ...(o.unmasked ? ['-U'] : []),
      ...(o.binds ?? []).flatMap((b) => ['-B', b]), ...(o.volumes ?? []).flatMap((b) => ['-V', b]), ...mountArgs(o.mounts ?? []),
      ...(o.hostname ? ['-H', o.hostname] : []), ...(o.workdir ? ['-C', o.workdir] : []),
    ];
    const caps = o.capabilities !== undefined ? ['-c', o.capabilities.toString(16)] : [];
    const join = o.joinPid !== undefined ? ['-J', String(o.joinPid)] : o.insidePid !== undefined ? ['-I', String(o.insidePid)] : [];
    const command = [...(o.user ? ['-u', o.user] : []), ...(o.noNewPrivs ? ['-N'] : []), ...(consolePair ? ['-T', pair ? '6' : '5'] : [])];
    const args = [...(o.namespaces?.length ? ['-n', o.namespaces.join(',')] : []), ...join, ...(o.tap ? ['-t', o.tap] : []), ...(wantFds ? ['-s', '5'] : []), ...(hold ? ['-w'] : []), ...fsArgs, ...caps, ...command, ...(o.pause ? ['-P', ...(o.linger ? ['-L'] : [])] : ['--', ...cmd])];
    const io = o.stdio ?? 'inherit';
    const [i0, i1, i2] = Array.isArray(io) ? io : [io, io, io];
    if (o.linger && !o.pause) throw new UsernsError('linger holds namespaces only (pause)');
    const extra = [...(pair ? [pair[1]] : []), ...(consolePair ? [consolePair[1]] : [])];
    if (o.holder) ctlPair = socketPair(constants().SOCK_SEQPACKET); // one message per send: HOLD must not run into ENV
    // under the holder: its control socket and log come after the helper's fds (it closes them for the helper)
    const [file, argv] = o.holder ? [o.holder.file, ['--spawn', String(5 + extra.length), String(6 + extra.length), '--', helper, ...args]] : [helper, args];
    const child = spawn(file, argv, { stdio: [i0, i1, i2, 'pipe', 'pipe', ...extra, ...(ctlPair && o.holder ? [ctlPair[1], o.holder.log] : [])], env: o.env ?? process.env, detached: !!o.linger || !!o.holder });
    if (ctlPair) {
      closeFd(ctlPair[1]);
      ctlPair = [ctlPair[0], -1];
    }
    if (pair) {
      closeFd(pair[1]);
      pair = [pair[0], -1];
    }
    if (consolePair) {
      closeFd(consolePair[1]);
      consolePair = [consolePair[0], -1];
    }
    const report = child.stdio[3] as NodeJS.ReadableStream;
    const control = child.stdio[4] as NodeJS.WritableStream;
    const exited = new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)))).finally(() => releaseMaps(maps));
    const m = /^PID (\d+)/.exec(await readLine(report));
    if (!m) {
      const code = await exited;
      throw new UsernsError(code === 124 ? 'cannot create a user namespace: the kernel refused (user namespaces disabled or limit reached)' : `the namespace helper failed (exit ${code})`);
    }
    const pid = Number(m[1]);
    try {
      if (!joining) writeMaps(pid, maps);
    } catch (err) {
      control.end('NO\n'); // the child exits without running anything
      await exited;
      throw err;
    }
    control.end('GO\n');
    let fds: NamespaceFds | null = null;
    let held = -1;
    if (pair) {
      const sock = pair[0];
      pair = null;
      try {
        fds = receiveFds(sock, !!o.tap, hold);
      } catch (err) {
        await exited;
        throw err;
      }
      if (hold) held = sock;
    }
    const release = (byte: boolean) => {
      if (held < 0) return;
      if (byte) {
        try {
          fs.writeSync(held, 'G');
        } catch {
          // the child is gone; exited tells the caller
        }
      }
      closeFd(held);
      held = -1;
    };
    const started: Started = { pid, child, maps, fds, exited, go: () => release(true), abort: () => release(false) };
    if (ctlPair) {
      started.holderCtl = ctlPair[0];
      ctlPair = null;
    }
    if (consolePair) {
      const sock = consolePair[0];
      consolePair = null;
      started.console = receiveConsole(sock);
    }
    return started;
  } catch (err) {
    if (pair) for (const fd of pair) if (fd >= 0) closeFd(fd);
    if (consolePair) for (const fd of consolePair) if (fd >= 0) closeFd(fd);
    if (ctlPair) for (const fd of ctlPair) if (fd >= 0) closeFd(fd);
    releaseMaps(maps);
    throw err;
  }
}

/**
 * The helper's -T side: waits (without blocking the loop) for "PTY" + the master on `sock`; ready()
 * sends the byte that lets the command start, and closes the socket.
 */
export function receiveConsole(sock: number): { master: Promise<number>; ready(): void } {
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    unwatch(sock);
    closeFd(sock);
  };
  const master = new Promise<number>((resolve, reject) => {
    watchReadable(sock, () => {
      let msg: { data: Buffer; fds: number[] } | null;
      try {
        msg = recvFdsNow(sock, 1, 64);
      } catch (err) {
        close();
        reject(err);
        return;
      }
      if (!msg) return;
      unwatch(sock);
      if (msg.data.toString() === 'PTY' && msg.fds.length === 1) resolve(msg.fds[0]);
      else {
        for (const fd of msg.fds) closeFd(fd);
        close();
        reject(new UsernsError('the namespace helper exited before it made the terminal'));
      }
    });
  });
  master.catch(() => undefined);
  return {
    master,
    ready: () => {
      if (!open) return;
      try {
        fs.writeSync(sock, 'G');
      } catch {
        // the helper is gone; its exit status tells
      }
      close();
    },
  };
}

/** The signals a container's caller passes on (the helper forwards them to the command). */
const RELAYED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Sends the caller's INT/TERM/HUP/QUIT/USR1/USR2 to `child` until the returned function is called. */
export function relaySignals(child: import('node:child_process').ChildProcess): () => void {
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  for (const sig of RELAYED) process.on(sig, forward);
  return () => {
    for (const sig of RELAYED) process.off(sig, forward);
  };
}

/** Runs `cmd` in new namespaces with the computed maps; resolves to its exit status. */
export async function unshare(cmd: string[], o: UnshareOptions): Promise<number> {
  return (await startInNamespaces(cmd, o)).exited;
}

/** Like {@link unshare}, with the command's output captured. */
export async function unshareCapture(cmd: string[], o: UnshareOptions): Promise<{ code: number; stdout: string; stderr: string }> {
  const s = await startInNamespaces(cmd, { ...o, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  s.child.stdin?.end();
  s.child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  s.child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await s.exited;
  return { code, stdout, stderr };
}

/**
 * Namespaces to join: those of a process (`pid`), or a network namespace bound at a path with
 * the user namespace at `userns` or, without it, the one that owns it (slirp4netns's
 * `--netns-type=path` and `--userns-path`).
 */
export type NsTarget = number | { netns: string; userns?: string };

/** The helper's arguments that join `target`. */
export function joinArgs(target: NsTarget): string[] {
  if (typeof target === 'number') return ['-j', String(target)];
  if (!path.isAbsolute(target.netns) || (target.userns !== undefined && !path.isAbsolute(target.userns))) throw new UsernsError(`namespace paths must be absolute (got ${target.netns}${target.userns ? `, ${target.userns}` : ''})`);
  return ['-j', target.netns, ...(target.userns ? ['-Y', target.userns] : [])];
}

const describe = (target: NsTarget) => (typeof target === 'number' ? `pid ${target}` : target.netns);

/**
 * Enters the user and network namespaces of `target` (which the caller owns) and hands back their
 * fds, plus a TAP created there with `tap` (like slirp4netns attaching to a PID or a path).
 */
export async function joinNamespaces(target: NsTarget, o: { tap?: string } = {}): Promise<NamespaceFds> {
  const args = joinArgs(target);
  const pair = socketPair();
  const child = spawn(helperPath(), [...args, ...(o.tap ? ['-t', o.tap] : []), '-s', '3'], { stdio: ['ignore', 'ignore', 'pipe', pair[1]] });
  closeFd(pair[1]);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  if (code !== 0) {
    // the reason is on stderr (joining failed) or in the helper's "ERR" message (the TAP failed)
    let reason = stderr.trim().replace(/^burrow-ns: /, '');
    if (reason) closeFd(pair[0]);
    else {
      try {
        const got = receiveFds(pair[0], !!o.tap); // closes the socket
        for (const fd of [got.netns, got.userns, got.tap]) if (fd !== undefined) closeFd(fd);
      } catch (err) {
        reason = (err as Error).message;
      }
    }
    throw new UsernsError(`cannot join the namespaces of ${describe(target)}: ${reason || `exit ${code}`}`);
  }
  return receiveFds(pair[0], !!o.tap);
}

/**
 * Runs `cmd` as root inside the user and network namespaces of `pid` (a user's network namespace),
 * in a private mount namespace with `binds` (SRC:DST, in order) and `fds` as its fds 3, 4, ...;
 * resolves to its status and output.
 */
export async function runInsideNetns(pid: number, cmd: string[], o: { binds?: string[]; fds?: number[]; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(helperPath(), ['-j', String(pid), ...(o.binds ?? []).flatMap((b) => ['-B', b]), '--', ...cmd], { stdio: ['ignore', 'pipe', 'pipe', ...(o.fds ?? [])], env: o.env ?? process.env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(125));
    child.on('close', (c) => resolve(c ?? 1));
  });
  return { code, stdout, stderr };
}

/** Runs `cmd` inside the user and network namespaces of `target` with `input` on stdin. */
export async function runInNamespaces(target: NsTarget, cmd: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(helperPath(), [...joinArgs(target), '--', ...cmd], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(input);
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  return { code, stdout, stderr };
}

/**
 * A process inside the namespaces of `pid` that creates TCP sockets connected from there (the
 * helper's -F mode). Requests go out at once and are answered in order; answers are read when the
 * socket is readable, so no call ever blocks the event loop (the helper's own connect may take
 * up to a second; the loop that drives every flow does not wait for it).
 */
export class NamespaceSocketFactory {
  /** Requests in flight at most; beyond, connect() refuses at once. */
  static readonly MAX_PENDING = 64;
  private sock: number;
  private readonly child: import('node:child_process').ChildProcess;
  private readonly waiting: Array<{ resolve: (fd: number) => void; reject: (e: Error) => void; what: string }> = [];

  constructor(target: NsTarget) {
    const [mine, theirs] = socketPair(constants().SOCK_SEQPACKET);
    this.child = spawn(helperPath(), [...joinArgs(target), '-s', '3', '-F'], { stdio: ['ignore', 'ignore', 'inherit', theirs] });
    closeFd(theirs);
    this.sock = mine;
    this.child.on('error', () => this.close()); // the helper could not start: every connect fails
    this.child.on('close', () => this.close());
    watchReadable(mine, () => this.onReadable());
  }

  /** A socket connected to address:port inside the namespace (the caller owns the fd). */
  connect(family: 4 | 6, port: number, address: string): Promise<number> {
    const what = `${address}:${port}`;
    if (this.sock < 0) return Promise.reject(new UsernsError(`connect to ${what} inside the namespace failed: the namespace socket factory has exited`));
    if (this.waiting.length >= NamespaceSocketFactory.MAX_PENDING) return Promise.reject(new UsernsError(`connect to ${what} inside the namespace refused: ${this.waiting.length} connects already pending`));
    return new Promise((resolve, reject) => {
      try {
        // One small datagram on a local socket the helper drains: it does not block.
        fs.writeSync(this.sock, `CONNECT ${family} ${port} ${address}`);
      } catch (err) {
        reject(new UsernsError(`connect to ${what} inside the namespace failed: ${(err as Error).message}`));
        return;
      }
      this.waiting.push({ resolve, reject, what });
    });
  }

  private onReadable(): void {
    while (this.sock >= 0) {
      let msg: { data: Buffer; fds: number[] } | null;
      try {
        msg = recvFdsNow(this.sock, 1, 64);
      } catch {
        msg = { data: Buffer.alloc(0), fds: [] };
      }
      if (!msg) return;
      if (!msg.data.length && !msg.fds.length) return this.close(); // the helper went away
      const w = this.waiting.shift();
      const text = msg.data.toString();
      if (w && text === 'OK' && msg.fds.length === 1) {
        w.resolve(msg.fds[0]);
        continue;
      }
      for (const fd of msg.fds) closeFd(fd);
      if (!w) continue;
      const e = new UsernsError(`connect to ${w.what} inside the namespace failed: ${text.replace(/^ERR /, '') || 'factory exited'}`);
      (e as { errnoName?: string }).errnoName = text.replace(/^ERR /, '');
      w.reject(e);
    }
  }

  close(): void {
    if (this.sock < 0) return;
    unwatch(this.sock);
    closeFd(this.sock);
    this.sock = -1;
    this.child.kill();
    for (const w of this.waiting.splice(0)) w.reject(new UsernsError(`connect to ${w.what} inside the namespace failed: the namespace socket factory has exited`));
  }
}
