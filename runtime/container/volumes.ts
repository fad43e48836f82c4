/**
 * Mounts as podman's flags give them (-v, --mount, --tmpfs) and named volumes.
 *
 * -v SRC:DST[:OPTS]: SRC starting with / or . is a host path (relative ones resolved against the
 * caller's directory); any other SRC names a volume, created on first use; -v DST alone is an
 * anonymous volume, removed with the container when it goes with --rm or `rm -v`. Options: ro, rw,
 * z and Z (SELinux relabelling: accepted, nothing to do on a host without SELinux), U (chown the
 * source to the container's user), [no]exec, [no]suid, [no]dev, bind (not recursive), rbind, and
 * the private propagations (a container's mounts are private; shared and slave are refused).
 *
 * A volume is <volume_path>/<name>/_data plus volume.json. A new volume is chowned to the user the
 * container runs as the first time one mounts it (podman's NeedsChown), so a container's root,
 * which may be a subordinate id, can write to it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseUsernsMode } from '../../userns/mapping.js';
import { ContainerError } from './containers.js';

export interface MountSpec {
  type: 'bind' | 'volume' | 'tmpfs';
  /** A host path (bind), a volume name (volume), or "tmpfs". */
  source: string;
  destination: string;
  ro: boolean;
  /** Helper mount options: nosuid, nodev, noexec, norec. */
  flags: string[];
  /** tmpfs: size=, mode=, nr_inodes= */
  tmpfsOptions?: string;
  /** U: chown the source to the container's user. */
  chown?: boolean;
  /** -v DST alone: a volume made for this container. */
  anonymous?: boolean;
  /** The options as given (inspect's Mounts[].Options), z/Z included. */
  options: string[];
}

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function parseOptions(list: string[], what: string, m: MountSpec): void {
  for (const o of list) {
    switch (o) {
      case 'ro': case 'readonly': m.ro = true; break;
      case 'rw': m.ro = false; break;
      case 'z': case 'Z': break; // SELinux labels: nothing to relabel without SELinux
      case 'U': m.chown = true; break;
      case 'noexec': case 'nosuid': case 'nodev': m.flags = [...new Set([...m.flags, o])]; break;
      case 'exec': case 'suid': case 'dev': m.flags = m.flags.filter((f) => f !== `no${o}`); break;
      case 'bind': if (m.type === 'bind') m.flags = [...new Set([...m.flags, 'norec'])]; break;
      case 'rbind': m.flags = m.flags.filter((f) => f !== 'norec'); break;
      case 'private': case 'rprivate': break;
      case 'shared': case 'rshared': case 'slave': case 'rslave':
        throw new ContainerError(`${what}: "${o}" propagation is not supported: a container's mounts are private (use private or rprivate)`);
      case 'O': throw new ContainerError(`${what}: overlay mounts (O) are not supported`);
      case 'idmap': throw new ContainerError(`${what}: idmapped mounts are not supported`);
      case 'copy': case 'nocopy': break;
      default: throw new ContainerError(`${what}: unknown option "${o}" (known: ro, rw, z, Z, U, [no]exec, [no]suid, [no]dev, bind, rbind, private, rprivate)`);
    }
  }
}

/** -v / --volume. */
export function parseVolumeFlag(v: string, cwd: string): MountSpec {
  const what = `invalid --volume "${v}"`;
  const parts = v.split(':');
  if (parts.length > 3 || parts.some((p) => p === '')) throw new ContainerError(`${what}: expected [HOST-PATH|VOLUME:]CONTAINER-PATH[:OPTIONS]`);
  if (parts.length === 1) {
    if (!path.isAbsolute(parts[0])) throw new ContainerError(`${what}: the container path must be absolute`);
    return { type: 'volume', source: '', destination: path.normalize(parts[0]), ro: false, flags: ['nosuid', 'nodev'], anonymous: true, options: ['rbind'] };
  }
  // CONTAINER-PATH:OPTIONS (an anonymous volume with options) when the first part is absolute and the second is not a path
  if (parts.length === 2 && path.isAbsolute(parts[0]) && !parts[1].startsWith('/')) {
    const m: MountSpec = { type: 'volume', source: '', destination: path.normalize(parts[0]), ro: false, flags: ['nosuid', 'nodev'], anonymous: true, options: parts[1].split(',') };
    parseOptions(m.options, what, m);
    return m;
  }
  const [src, dst, opts] = parts;
  if (!path.isAbsolute(dst)) throw new ContainerError(`${what}: the container path must be absolute`);
  const options = opts ? opts.split(',') : [];
  let m: MountSpec;
  if (src.startsWith('/') || src.startsWith('.')) {
    const abs = path.resolve(cwd, src);
    if (!fs.existsSync(abs)) throw new ContainerError(`--volume source "${abs}" does not exist`);
    m = { type: 'bind', source: abs, destination: path.normalize(dst), ro: false, flags: [], options };
  } else {
    if (!VOLUME_NAME.test(src)) throw new ContainerError(`${what}: "${src}" is neither a path (start it with / or ./) nor a volume name (letters, digits, _ . -)`);
    m = { type: 'volume', source: src, destination: path.normalize(dst), ro: false, flags: ['nosuid', 'nodev'], options };
  }
  parseOptions(options, what, m);
  return m;
}

/** --mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,...]. */
export function parseMountFlag(v: string, cwd: string): MountSpec {
  const what = `invalid --mount "${v}"`;
  const kv = new Map<string, string>();
  for (const item of v.split(',')) {
    if (!item) continue;
    const eq = item.indexOf('=');
    kv.set((eq < 0 ? item : item.slice(0, eq)).toLowerCase(), eq < 0 ? '' : item.slice(eq + 1));
  }
  const take = (...keys: string[]) => {
    for (const k of keys) {
      if (kv.has(k)) {
        const val = kv.get(k)!;
        kv.delete(k);
        return val;
      }
    }
    return undefined;
  };
  const type = take('type');
  if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs') throw new ContainerError(`${what}: type must be bind, volume or tmpfs`);
  const target = take('target', 'destination', 'dst');
  if (!target || !path.isAbsolute(target)) throw new ContainerError(`${what}: needs an absolute target=`);
  const bool = (s: string | undefined) => s === undefined ? undefined : s === '' || s === 'true' || s === '1';
  const ro = bool(take('readonly', 'ro')) ?? false;
  const m: MountSpec = { type, source: '', destination: path.normalize(target), ro, flags: type === 'bind' ? [] : ['nosuid', 'nodev'], options: [] };
  if (type === 'tmpfs') {
    m.source = 'tmpfs';
    const size = take('tmpfs-size');
    const mode = take('tmpfs-mode');
    m.tmpfsOptions = [size ? `size=${size}` : '', `mode=${mode ?? '1777'}`].filter(Boolean).join(',');
    if (mode && !/^[0-7]{3,4}$/.test(mode)) throw new ContainerError(`${what}: tmpfs-mode must be octal`);
    if (size && !/^\d+[kmgKMG%]?$/.test(size)) throw new ContainerError(`${what}: tmpfs-size must be a number with k, m, g or %`);
    take('notmpcopyup', 'tmpcopyup');
    m.flags = ['nosuid', 'nodev', 'noexec'];
  } else {
    const src = take('source', 'src');
    if (type === 'bind') {
      if (!src) throw new ContainerError(`${what}: a bind mount needs source=`);
      m.source = path.resolve(cwd, src);
      if (!fs.existsSync(m.source)) throw new ContainerError(`--mount source "${m.source}" does not exist`);
      const prop = take('bind-propagation');
      if (prop) parseOptions([prop], what, m);
      if (bool(take('bind-nonrecursive'))) m.flags.push('norec');
    } else if (src) {
      if (!VOLUME_NAME.test(src)) throw new ContainerError(`${what}: "${src}" is not a volume name (letters, digits, _ . -)`);
      m.source = src;
      take('volume-nocopy');
    } else m.anonymous = true;
    const relabel = take('relabel');
    if (relabel !== undefined && relabel !== 'shared' && relabel !== 'private') throw new ContainerError(`${what}: relabel is shared or private`);
    if (bool(take('u', 'chown'))) m.chown = true;
  }
  if (kv.size) throw new ContainerError(`${what}: unknown option${kv.size > 1 ? 's' : ''} ${[...kv.keys()].join(', ')}`);
  m.options = m.ro ? ['ro'] : [];
  return m;
}

/** --tmpfs DST[:OPTIONS]: podman's defaults rw,noexec,nosuid,nodev, mode 1777. */
export function parseTmpfsFlag(v: string): MountSpec {
  const what = `invalid --tmpfs "${v}"`;
  const colon = v.indexOf(':');
  const dst = colon < 0 ? v : v.slice(0, colon);
  if (!path.isAbsolute(dst)) throw new ContainerError(`${what}: the container path must be absolute`);
  const m: MountSpec = { type: 'tmpfs', source: 'tmpfs', destination: path.normalize(dst), ro: false, flags: ['noexec', 'nosuid', 'nodev'], options: [] };
  const data: string[] = [];
  for (const o of colon < 0 ? [] : v.slice(colon + 1).split(',').filter(Boolean)) {
    if (/^(size|mode|nr_inodes|uid|gid)=/.test(o)) {
      if (o.startsWith('mode=') && !/^mode=[0-7]{3,4}$/.test(o)) throw new ContainerError(`${what}: mode must be octal`);
      data.push(o);
    } else if (o === 'tmpcopyup' || o === 'notmpcopyup') continue;
    else parseOptions([o], what, m);
    m.options.push(o);
  }
  if (!data.some((d) => d.startsWith('mode='))) data.push('mode=1777');
  m.tmpfsOptions = data.join(',');
  return m;
}

/** The container paths of `mounts` must be distinct (podman: "duplicate mount destination"). */
export function checkDestinations(mounts: MountSpec[]): void {
  const seen = new Set<string>();
  for (const m of mounts) {
    if (seen.has(m.destination)) throw new ContainerError(`${m.destination}: duplicate mount destination`);
    seen.add(m.destination);
  }
}

export interface VolumeRecord {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Options: Record<string, string>;
  Scope: 'local';
  Anonymous: boolean;
  /** Until the first container mounts it: it is chowned then to that container's user. */
  NeedsChown: boolean;
}

export class VolumeStore {
  constructor(readonly dir: string) {}

  private file(name: string): string {
    return path.join(this.dir, name, 'volume.json');
  }

  list(): VolumeRecord[] {
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    return names.flatMap((n) => {
      try {
        return [JSON.parse(fs.readFileSync(this.file(n), 'utf8')) as VolumeRecord];
      } catch {
        return [];
      }
    }).sort((a, b) => a.CreatedAt.localeCompare(b.CreatedAt));
  }

  get(name: string): VolumeRecord | null {
    try {
      return JSON.parse(fs.readFileSync(this.file(name), 'utf8')) as VolumeRecord;
    } catch {
      return null;
    }
  }

  find(name: string): VolumeRecord {
    const v = this.get(name);
    if (!v) throw new ContainerError(`no volume with name "${name}" found: no such volume`);
    return v;
  }

  /** Creates a volume (anonymous: a random name); refuses a name in use unless `ifMissing`. */
  create(name: string | null, o: { labels?: Record<string, string>; anonymous?: boolean; ifMissing?: boolean } = {}): VolumeRecord {
    const n = name ?? crypto.randomBytes(32).toString('hex');
    if (!VOLUME_NAME.test(n)) throw new ContainerError(`invalid volume name "${n}": letters, digits, _ . - (not first)`);
    const existing = this.get(n);
    if (existing) {
      if (o.ifMissing) return existing;
      throw new ContainerError(`volume with name ${n} already exists: volume already exists`);
    }
    const data = path.join(this.dir, n, '_data');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(path.join(this.dir, n), { mode: 0o700 });
    fs.mkdirSync(data, { mode: 0o755 });
    const v: VolumeRecord = { Name: n, Driver: 'local', Mountpoint: data, CreatedAt: new Date().toISOString(), Labels: o.labels ?? {}, Options: {}, Scope: 'local', Anonymous: !!o.anonymous, NeedsChown: true };
    this.write(v);
    return v;
  }

  write(v: VolumeRecord): void {
    const f = this.file(v.Name);
    fs.writeFileSync(`${f}.tmp`, JSON.stringify(v, null, 1));
    fs.renameSync(`${f}.tmp`, f);
  }

  /** Removes the volume and its data (files owned by subordinate ids go through `rmTree`). */
  async remove(name: string, rmTree: (dir: string) => Promise<void>): Promise<void> {
    this.find(name);
    await rmTree(path.join(this.dir, name));
  }
}

/** Removes a directory tree; rootless, files owned by subordinate ids go from inside the user's range. */
export async function removeTree(dir: string): Promise<void> {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (process.getuid!() === 0 || (code !== 'EACCES' && code !== 'EPERM')) throw err;
  }
  const { unshare } = await import('../../userns/unshare.js');
  const rc = await unshare(['rm', '-rf', '--one-file-system', '--', dir], { mode: parseUsernsMode('host'), stdio: 'ignore' });
  if (rc !== 0 || fs.existsSync(dir)) throw new ContainerError(`cannot remove ${dir} (rm exited ${rc})`);
}
