/**
 * The host-local store on disk, in the reference plugin's layout, so burrow
 * and the reference host-local can share one store:
 *
 *   <dataDir>/<network>/lock                  flock(2)ed for every operation (as go-filemutex)
 *   <dataDir>/<network>/<ip>                  "<containerID>\r\n<ifname>", created O_EXCL, no trailing newline
 *   <dataDir>/<network>/last_reserved_ip.<N>  the last IP reserved in range set N
 *
 * Files are written 0600 (the reference moved from 0644 to 0600 after 1.1.1).
 */
import fs from 'node:fs';
import path from 'node:path';
import { constants as nativeConstants, flock } from '../../native/mod.js';
import { hasCode } from '../../native/errors.js';
import { formatIp, ipFamily, parseIp, type Ip } from '../ip/addr.js';
import type { Owner, Reservation, Store } from './store.js';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';
const LAST_PREFIX = 'last_reserved_ip.';
const LINE_BREAK = '\r\n';
/** Temp files of reservations in flight; those of dead processes are swept under the lock. */
const TMP_PREFIX = '.reserve-';

export class DiskStore implements Store {
  readonly dir: string;
  private lockFd: number | null = null;

  constructor(network: string, dataDir = DEFAULT_DATA_DIR) {
    this.dir = path.join(dataDir || DEFAULT_DATA_DIR, network);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
  }

  async lock(): Promise<void> {
    const fd = fs.openSync(path.join(this.dir, 'lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      await flock(fd, nativeConstants().LOCK_EX);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    this.lockFd = fd;
    this.sweepTemps();
  }

  /** Removes temp files left by reservations whose process died (kill -9 mid-reserve). */
  private sweepTemps(): void {
    for (const name of fs.readdirSync(this.dir)) {
      if (!name.startsWith(TMP_PREFIX)) continue;
      const pid = Number(name.slice(TMP_PREFIX.length).split('-')[0]);
      if (pid === process.pid) continue;
      try {
        process.kill(pid, 0);
      } catch {
        fs.rmSync(path.join(this.dir, name), { force: true }); // ESRCH: its writer is gone
      }
    }
  }

  async unlock(): Promise<void> {
    if (this.lockFd === null) return;
    fs.closeSync(this.lockFd); // closing the last fd drops the flock
    this.lockFd = null;
  }

  /**
   * Reserves atomically: the content goes to a temp file that is then hard-linked to the IP's
   * name, so the reservation appears whole or not at all. (The reference creates the file and
   * then writes it; a kill -9 between the two leaves an empty file that no DEL ever matches.)
   * link(2) fails with EEXIST when the address is taken, like O_EXCL.
   */
  reserve(owner: Owner, ip: Ip, rangeSetId: number): boolean {
    const file = path.join(this.dir, formatIp(ip));
    const tmp = path.join(this.dir, `${TMP_PREFIX}${process.pid}-${formatIp(ip)}`);
    fs.writeFileSync(tmp, `${owner.id.trim()}${LINE_BREAK}${owner.ifname}`, { mode: 0o600 });
    try {
      fs.linkSync(tmp, file);
    } catch (err) {
      if (hasCode(err, 'EEXIST')) return false;
      throw err;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    fs.writeFileSync(path.join(this.dir, `${LAST_PREFIX}${rangeSetId}`), formatIp(ip), { mode: 0o600 });
    return true;
  }

  lastReservedIp(rangeSetId: number): Ip | null {
    try {
      const text = fs.readFileSync(path.join(this.dir, `${LAST_PREFIX}${rangeSetId}`), 'utf8').trim();
      return ipFamily(text) ? parseIp(text) : null;
    } catch (err) {
      if (hasCode(err, 'ENOENT')) return null;
      throw err;
    }
  }

  /** Reservation files: every entry whose name is an IP address. */
  private entries(): { ip: Ip; file: string; content: string }[] {
    const out: { ip: Ip; file: string; content: string }[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      if (!ipFamily(name)) continue;
      const file = path.join(this.dir, name);
      try {
        out.push({ ip: parseIp(name), file, content: fs.readFileSync(file, 'utf8').trim() });
      } catch {
        // vanished or unreadable: not ours to judge
      }
    }
    return out;
  }

  private static owner(content: string): Owner {
    const i = content.indexOf(LINE_BREAK);
    return i < 0 ? { id: content, ifname: '' } : { id: content.slice(0, i), ifname: content.slice(i + LINE_BREAK.length) };
  }

  releaseByOwner(owner: Owner): Ip[] {
    const entries = this.entries();
    const exact = `${owner.id.trim()}${LINE_BREAK}${owner.ifname}`;
    let hits = entries.filter((e) => e.content === exact);
    // Files from before 0.4 hold only the container ID; match those only when nothing matched exactly.
    if (!hits.length) hits = entries.filter((e) => e.content === owner.id.trim());
    for (const h of hits) fs.rmSync(h.file, { force: true });
    return hits.map((h) => h.ip);
  }

  release(ip: Ip): boolean {
    try {
      fs.unlinkSync(path.join(this.dir, formatIp(ip)));
      return true;
    } catch (err) {
      if (hasCode(err, 'ENOENT')) return false;
      throw err;
    }
  }

  getByOwner(owner: Owner): Ip[] {
    const exact = `${owner.id.trim()}${LINE_BREAK}${owner.ifname}`;
    return this.entries().filter((e) => e.content === exact).map((e) => e.ip);
  }

  list(): Reservation[] {
    return this.entries().map((e) => ({ ...DiskStore.owner(e.content), ip: e.ip }));
  }

  close(): void {
    if (this.lockFd !== null) {
      fs.closeSync(this.lockFd);
      this.lockFd = null;
    }
  }
}
