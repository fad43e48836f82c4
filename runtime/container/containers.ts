/**
 * Container state: one directory per container under <stateDir>/containers/<id>/ holding
 * container.json and the generated /etc files. A record names the burrow process that supervises
 * the container (pid + start time), so a record whose supervisor died (kill -9) is recognised and
 * garbage-collected: its CNI attachment is deleted (IPAM, port rules) and the directory removed.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BurrowError } from '../../native/errors.js';
import { processStartTime } from '../../native/system.js';

export interface CniAttachment {
  network: string;
  netns: string;
  ifname: string;
  /** What ADD gave (inspect's NetworkSettings): addresses with prefix and gateway, the MAC. */
  result?: { ips: Array<{ address: string; gateway?: string }>; mac?: string };
}

/** A mount as the container got it (inspect's Mounts; start reuses them, volume names included). */
export interface MountRecord {
  type: 'bind' | 'volume' | 'tmpfs';
  /** The host path (a volume's _data), or "tmpfs". */
  source: string;
  destination: string;
  /** The volume's name. */
  name?: string;
  ro: boolean;
  flags: string[];
  options: string[];
  tmpfsOptions?: string;
  chown?: boolean;
  anonymous?: boolean;
}

/** The command's identity inside (ids of the container). */
export interface ContainerUser {
  /** As given to --user, or "" for the default. */
  spec: string;
  uid: number;
  gid: number;
  groups: number[];
}

export interface ContainerRecord {
  id: string;
  name: string;
  /** The supervising burrow process. */
  pid: number;
  startTime: string;
  command: string[];
  created: string;
  network: { mode: 'cni'; attachments: CniAttachment[]; /** rootless: attached inside the user's network namespace */ userNetns?: boolean } | { mode: 'usernet' | 'host' | 'none' | 'pasta' | 'slirp4netns' } | { mode: 'container'; target: string };
  ports: string[];
  /** running while the supervisor lives; exited once the container ended (kept until rm). */
  state: 'created' | 'running' | 'exited';
  /** Host pid of the container's pid 1 (burrow's init), for stop and kill. */
  initPid?: number;
  exitCode?: number;
  finished?: string;
  detached?: boolean;
  /** usernet: the stack's API socket (burrow port). */
  apiSocket?: string;
  hostname?: string;
  ips?: string[];
  /** The pod (id) this container belongs to; infra = it is the pod's infra container. */
  pod?: string;
  infra?: boolean;
  /** Capabilities the command kept (CAP_ names). */
  capabilities?: string[];
  /** --image: the tarball the root filesystem was unpacked from, and its config. */
  image?: string;
  imageConfig?: import('./image.js').ImageConfig;
  /**
   * The run's options as `burrow start` needs them again: host paths resolved, published ports
   * with the host ports chosen, the env files read.
   */
  spec?: import('./run.js').RunSpec;
  labels?: Record<string, string>;
  /** The environment, workdir and user the command got (exec starts from them). */
  env?: string[];
  workdir?: string;
  user?: ContainerUser;
  mounts?: MountRecord[];
  tty?: boolean;
  interactive?: boolean;
  noNewPrivs?: boolean;
  privileged?: boolean;
  readOnly?: boolean;
  /** When the command last started (state running). */
  startedAt?: string;
  /** `burrow attach` connects here while the supervisor runs. */
  attachSocket?: string;
  /** How many times `burrow start`/`restart` ran it again. */
  restarts?: number;
  /** What holds a running detached container when it is not burrow's Node supervisor: the native holder. */
  holder?: 'burrow-holder';
  /**
   * Teardown steps that failed when the container ended: shown by inspect and ps, retried by
   * `burrow system gc` (every command runs it). `retry` are the network attachments still to
   * delete; `remove`: the container asked for --rm, which happens once teardown completes.
   */
  teardown?: { errors: Array<{ step: string; error: string }>; retry: CniAttachment[]; remove: boolean; at: string };
}

export interface PodRecord {
  id: string;
  name: string;
  created: string;
  /** The infra container holding the pod's namespaces ('' while it starts). */
  infraId: string;
  hostname: string;
  network?: string;
  ports: string[];
}

export class ContainerError extends BurrowError {
  constructor(message: string) {
    super('ECONTAINER', message);
  }
}

export class ContainerStore {
  readonly dir: string;

  constructor(readonly stateDir: string) {
    this.dir = path.join(stateDir, 'containers');
  }

  pathOf(id: string): string {
    return path.join(this.dir, id);
  }

  static newId(): string {
    return crypto.randomBytes(32).toString('hex');
  }

  /** Every readable record (unreadable or torn ones are skipped). */
  list(): ContainerRecord[] {
    return readRecords<ContainerRecord>(this.dir, 'container.json');
  }

  /** True while the record's supervisor runs. */
  static alive(r: ContainerRecord): boolean {
    return processStartTime(r.pid) === r.startTime;
  }

  /** Creates the directory and record; refuses a name another container holds (podman: until it is removed). */
  create(r: ContainerRecord): string {
    const clash = this.list().find((c) => c.name === r.name && c.id !== r.id);
    if (clash) throw new ContainerError(`the container name "${r.name}" is already in use by ${clash.id.slice(0, 12)}. You have to remove that container to be able to reuse that name: that name is already in use`);
    const dir = this.pathOf(r.id);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o755); // the generated /etc files are read by the container's users
    this.write(r);
    return dir;
  }

  write(r: ContainerRecord): void {
    const file = path.join(this.pathOf(r.id), 'container.json');
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(r, null, 1));
    fs.renameSync(`${file}.tmp`, file);
  }

  /**
   * Removes the container's directory. A rootless --image root holds files owned by subordinate
   * ids, which the user cannot delete directly: those go from inside a user namespace that maps
   * the user's whole range (as `podman unshare rm`).
   */
  async remove(id: string): Promise<void> {
    const dir = this.pathOf(id);
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (process.getuid?.() === 0 || (code !== 'EACCES' && code !== 'EPERM')) throw err;
    }
    const { unshare } = await import('../../userns/unshare.js');
    const { parseUsernsMode } = await import('../../userns/mapping.js');
    const rc = await unshare(['rm', '-rf', '--one-file-system', '--', dir], { mode: parseUsernsMode('host'), stdio: 'ignore' });
    if (rc !== 0 || fs.existsSync(dir)) throw new ContainerError(`cannot remove ${dir} (rm exited ${rc})`);
  }

  /** Records of containers that should be running but whose supervisor is gone (kill -9). */
  stale(): ContainerRecord[] {
    return this.list().filter((r) => r.state !== 'exited' && !ContainerStore.alive(r));
  }

  /** A container by full id, unique id prefix, or name. */
  find(ref: string): ContainerRecord {
    return findRecord(this.list(), ref, 'container');
  }

  /** Running containers that share `id`'s namespaces (--network container:, pod members). */
  dependents(id: string): ContainerRecord[] {
    return this.list().filter((r) => r.network.mode === 'container' && r.network.target === id && r.state !== 'exited' && ContainerStore.alive(r));
  }
}

/** The JSON records <dir>/<id>/<file>; ones being created or half removed are skipped. */
function readRecords<T>(dir: string, file: string): T[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    try {
      return [JSON.parse(fs.readFileSync(path.join(dir, n, file), 'utf8')) as T];
    } catch {
      return [];
    }
  });
}

function findRecord<T extends { id: string; name: string }>(all: T[], ref: string, kind: string): T {
  const hit = all.find((r) => r.name === ref) ?? all.find((r) => r.id === ref);
  if (hit) return hit;
  const prefix = ref.length >= 3 ? all.filter((r) => r.id.startsWith(ref)) : [];
  if (prefix.length === 1) return prefix[0];
  if (prefix.length > 1) throw new ContainerError(`"${ref}" matches ${prefix.length} ${kind}s; give more of the id`);
  // podman's wording, which scripts and users search for
  throw new ContainerError(`no ${kind} with name or ID "${ref}" found: no such ${kind}`);
}

/** Pods: <stateDir>/pods/<id>/pod.json; the namespaces live in the infra container. */
export class PodStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'pods');
  }

  list(): PodRecord[] {
    return readRecords<PodRecord>(this.dir, 'pod.json');
  }

  find(ref: string): PodRecord {
    return findRecord(this.list(), ref, 'pod');
  }

  /** Creates the record; refuses a name another pod holds. */
  create(p: PodRecord): void {
    if (this.list().some((x) => x.name === p.name)) throw new ContainerError(`the pod name "${p.name}" is already in use; choose another --name or burrow pod rm it`);
    fs.mkdirSync(path.join(this.dir, p.id), { recursive: true, mode: 0o700 });
    this.write(p);
  }

  write(p: PodRecord): void {
    const file = path.join(this.dir, p.id, 'pod.json');
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(p, null, 1));
    fs.renameSync(`${file}.tmp`, file);
  }

  remove(id: string): void {
    fs.rmSync(path.join(this.dir, id), { recursive: true, force: true });
  }
}
