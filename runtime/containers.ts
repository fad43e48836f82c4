/**
 * Container state: one directory per container under <stateDir>/containers/<id>/ holding
 * container.json and the generated /etc files. A record names the burrow process that supervises
 * the container (pid + start time), so a record whose supervisor died (kill -9) is recognised and
 * garbage-collected: its CNI attachment is deleted (IPAM, port rules) and the directory removed.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BurrowError } from '../native/errors.js';
import { processStartTime } from '../userns/auto.js';

export interface CniAttachment {
  network: string;
  netns: string;
  ifname: string;
}

export interface ContainerRecord {
  id: string;
  name: string;
  /** The supervising burrow process. */
  pid: number;
  startTime: string;
  command: string[];
  created: string;
  network: { mode: 'cni'; attachments: CniAttachment[] } | { mode: 'usernet' | 'host' | 'none' | 'pasta' | 'slirp4netns' };
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
}

export class ContainerError extends BurrowError {
  constructor(message: string) {
    super('ECONTAINER', message);
  }
}

export class ContainerStore {
  readonly dir: string;

  constructor(stateDir: string) {
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
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: ContainerRecord[] = [];
    for (const n of names) {
      try {
        out.push(JSON.parse(fs.readFileSync(path.join(this.dir, n, 'container.json'), 'utf8')) as ContainerRecord);
      } catch {
        // being created or half removed
      }
    }
    return out;
  }

  /** True while the record's supervisor runs. */
  static alive(r: ContainerRecord): boolean {
    return processStartTime(r.pid) === r.startTime;
  }

  /** Creates the directory and record; refuses a name a live container holds. */
  create(r: ContainerRecord): string {
    const clash = this.list().find((c) => c.name === r.name && ContainerStore.alive(c));
    if (clash) throw new ContainerError(`the container name "${r.name}" is already in use by ${clash.id.slice(0, 12)}; choose another --name or remove that container`);
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

  remove(id: string): void {
    fs.rmSync(this.pathOf(id), { recursive: true, force: true });
  }

  /** Records of containers that should be running but whose supervisor is gone (kill -9). */
  stale(): ContainerRecord[] {
    return this.list().filter((r) => r.state !== 'exited' && !ContainerStore.alive(r));
  }

  /** A container by full id, unique id prefix, or name. */
  find(ref: string): ContainerRecord {
    const all = this.list();
    const hit = all.find((r) => r.name === ref) ?? all.find((r) => r.id === ref);
    if (hit) return hit;
    const prefix = ref.length >= 3 ? all.filter((r) => r.id.startsWith(ref)) : [];
    if (prefix.length === 1) return prefix[0];
    if (prefix.length > 1) throw new ContainerError(`"${ref}" matches ${prefix.length} containers; give more of the id`);
    throw new ContainerError(`no such container "${ref}"`);
  }
}
