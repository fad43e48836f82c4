/**
 * Where the container name records live, how they are changed, and how the one DNS server is
 * told (or started): shared by the dnsname plugin and the runtime.
 *
 * Layout, under `<root>` = `$BURROW_DNS_ROOT`, `$XDG_RUNTIME_DIR/containers/cni` or `/run/containers/cni` (the base
 * containers/dnsname uses; inside a rootless user's network namespace /run is the user's):
 * - `dnsname/<network>/records`: the network's records (net/dns/records.ts);
 * - `burrow-dns/lock`: held (flock) by every change of records and by the start of a server, so
 *   a change, its reload and the server's decision to exit never interleave;
 * - `burrow-dns/control.sock`, `server.json` (pid and start time) and `server.log`.
 *
 * A change writes the file (atomically), then asks the server to reload over the control
 * socket and waits for its answer, which comes once the new gateways are bound; with no server
 * (none yet, or one killed), it starts one, which reads every file before it says it is ready.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, flock } from '../../native/mod.js';
import { processLive, spawnReady } from '../../native/system.js';
import { parseRecordFile, formatRecordFile, type Gateway, type NetworkRecords, type RecordEntry } from '../../net/dns/records.js';

export interface DnsPaths {
  root: string;
  records: string;
  server: string;
}

/** The paths for an environment (a CNI call's, or the runtime's). */
export function dnsPaths(env: Record<string, string | undefined> = process.env): DnsPaths {
  // BURROW_DNS_ROOT: another root (tests give each "host" namespace its own server)
  const root = env.BURROW_DNS_ROOT || path.join(env.XDG_RUNTIME_DIR || '/run', 'containers', 'cni');
  return { root, records: path.join(root, 'dnsname'), server: path.join(root, 'burrow-dns') };
}

export const recordFile = (p: DnsPaths, network: string) => path.join(p.records, network, 'records');

/** What the server says to a reload. */
export interface ReloadReply {
  ok: boolean;
  error?: string;
  records?: number;
  bound?: string[];
  pending?: Array<{ ip: string; error: string }>;
  exiting?: boolean;
  counters?: Record<string, number>;
}

/** Every network's records on disk (unreadable files are listed in `errors`). */
export function readAllRecords(p: DnsPaths): { networks: NetworkRecords[]; errors: string[] } {
  const networks: NetworkRecords[] = [];
  const errors: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(p.records);
  } catch {
    return { networks, errors };
  }
  for (const n of names.sort()) {
    let text;
    try {
      text = fs.readFileSync(recordFile(p, n), 'utf8');
    } catch {
      continue; // containers/dnsname's own directory, or one being removed
    }
    try {
      const r = parseRecordFile(n, text);
      for (const s of r.skipped) errors.push(`network ${n}: skipped a bad record line: ${s}`);
      if (r.entries.length) networks.push(r);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  return { networks, errors };
}

/** Runs `fn` holding the records lock. */
export async function withDnsLock<T>(p: DnsPaths, fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(p.server, { recursive: true, mode: 0o755 });
  const fd = fs.openSync(path.join(p.server, 'lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    await flock(fd, constants().LOCK_EX);
    return await fn();
  } finally {
    fs.closeSync(fd);
  }
}

function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

/**
 * Puts `entry` into `network`'s records (replacing the container's earlier line), with the
 * network's current gateways and domain. Call under {@link withDnsLock}.
 */
export function putRecord(p: DnsPaths, network: string, head: { gateways: Gateway[]; domain: string; servers?: string[] }, entry: RecordEntry): void {
  let entries: RecordEntry[] = [];
  try {
    entries = parseRecordFile(network, fs.readFileSync(recordFile(p, network), 'utf8')).entries;
  } catch {
    // a new (or unreadable, then rewritten) file
  }
  entries = [...entries.filter((e) => e.id !== entry.id), entry];
  writeAtomic(recordFile(p, network), formatRecordFile({ gateways: head.gateways, servers: head.servers ?? [], domain: head.domain, entries }));
}

/** Removes container `id`'s lines from `network` (all networks when null); true when one was there. Under the lock. */
export function dropRecord(p: DnsPaths, network: string | null, id: string | ((id: string) => boolean)): boolean {
  const nets = network === null ? (() => {
    try {
      return fs.readdirSync(p.records);
    } catch {
      return [];
    }
  })() : [network];
  const gone = typeof id === 'string' ? (x: string) => x === id : id;
  let found = false;
  for (const n of nets) {
    const file = recordFile(p, n);
    let r;
    try {
      r = parseRecordFile(n, fs.readFileSync(file, 'utf8'));
    } catch {
      continue;
    }
    const keep = r.entries.filter((e) => !gone(e.id));
    if (keep.length === r.entries.length) continue;
    found = true;
    if (keep.length) writeAtomic(file, formatRecordFile({ ...r, entries: keep }));
    else {
      fs.rmSync(file, { force: true });
      try {
        fs.rmdirSync(path.dirname(file)); // only when nothing else (containers/dnsname's files) is there
      } catch {
        // not empty
      }
    }
  }
  return found;
}

/** The server's record, when it is alive. */
export function findDnsServer(p: DnsPaths): { pid: number; startTime: string } | null {
  try {
    const r = JSON.parse(fs.readFileSync(path.join(p.server, 'server.json'), 'utf8')) as { pid: number; startTime: string };
    return Number.isInteger(r.pid) && r.pid > 0 && processLive(r.pid, r.startTime) ? r : null;
  } catch {
    return null;
  }
}

/** One request line to the control socket; the reply, or null when no server answers. */
export function askServer(p: DnsPaths, line: string, timeoutMs = 10_000): Promise<ReloadReply | null> {
  return new Promise((resolve) => {
    const s = net.connect(path.join(p.server, 'control.sock'));
    let buf = '';
    let done = false;
    const finish = (r: ReloadReply | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    s.on('error', () => finish(null));
    s.on('close', () => finish(null));
    s.on('connect', () => s.write(`${line}\n`));
    s.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      try {
        finish(JSON.parse(buf.slice(0, nl)) as ReloadReply);
      } catch {
        finish({ ok: false, error: `the DNS server answered ${JSON.stringify(buf.slice(0, 100))}` });
      }
    });
  });
}

/** The bundle that serves (dist/plugins/dnsname.cjs), found from wherever this code was loaded. */
export function serverBundle(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = path.dirname(dir)) {
    for (const c of [path.join(dir, 'dist', 'plugins', 'dnsname.cjs'), path.join(dir, 'plugins', 'dnsname.cjs')]) if (fs.existsSync(c)) return c;
  }
  throw new Error(`cannot find dist/plugins/dnsname.cjs above ${fileURLToPath(import.meta.url)} (run npm run build)`);
}

export interface SyncOptions {
  /** Resolvers the server forwards to instead of /etc/resolv.conf's (a rootless user's namespace: its stack's DNS address). */
  forward?: string[];
  /** How long to wait for gateways that cannot be bound yet. */
  bindWaitMs?: number;
}

/**
 * Brings the server in line with the files: reload when one runs, start one when records exist
 * and none does. Call under {@link withDnsLock}. Resolves with the server's answer (null when
 * there is nothing to serve and no server).
 */
export async function syncServer(p: DnsPaths, o: SyncOptions = {}, need: string[] = []): Promise<ReloadReply | null> {
  const deadline = Date.now() + (o.bindWaitMs ?? 3000);
  for (;;) {
    let reply = await askServer(p, 'reload');
    if (!reply) {
      const { networks } = readAllRecords(p);
      if (!networks.length) return null;
      const forward = o.forward ?? [];
      const holder = process.env.BURROW_DNS_HOLDER;
      await spawnReady(process.execPath, ['--', serverBundle(), 'serve', '--root', p.root, '--ready-fd', '3', ...forward.flatMap((f) => ['--forward', f]), ...(holder ? ['--holder', holder] : [])],
        path.join(p.server, 'server.log'), 'the DNS server');
      reply = await askServer(p, 'reload');
      if (!reply) throw new Error(`the DNS server started but does not answer on ${path.join(p.server, 'control.sock')} (see ${path.join(p.server, 'server.log')})`);
    }
    if (!reply.ok) throw new Error(`the DNS server: ${reply.error}`);
    const waiting = (reply.pending ?? []).filter((x) => need.includes(x.ip));
    if (!waiting.length || Date.now() > deadline) return reply;
    await new Promise((r) => setTimeout(r, 100));
  }
}
