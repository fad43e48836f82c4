/**
 * `dhcp daemon`: the long-lived DHCP client of every container on a DHCP network, serving the
 * plugin's RPC (rpc.ts) as the reference daemon does, and beyond it:
 * - leases are kept in a file (default /run/cni/dhcp-leases.json) and taken up again after a
 *   restart, renewals going on (the reference forgets them, plugins#235, #767);
 * - Allocate for a client id that holds a lease returns that lease (CHECK and a repeated ADD
 *   start no new exchange: the reference orphaned a lease and leaked an fd per try);
 * - a stale socket is removed at start; one that answers is another daemon, and is left alone;
 * - an acquisition ends with a clear error within -resendtimeout (30 s), leaving nothing;
 * - each lease holds its container's network namespace open, so a DEL after the runtime dropped
 *   it still sends the RELEASE through the container's interface.
 * Every message goes through an AF_PACKET socket on the container's interface (the addon makes it
 * inside the namespace), broadcast, as the reference's d2g client sends them; replies are read
 * from the same socket. A reply that does not parse is dropped and counted.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { packetSend, packetSocket, readFrames, unwatch, watchReadable } from '../../native/mod.js';
import { RtnlClient } from '../../net/netlink/rtnl_client.js';
import { buildClientMessage, frameToServer, parseReply, payloadToClient, type ClientMessage } from '../../net/wire/dhcp_client.js';
import * as ipv4 from '../../net/wire/ipv4.js';
import { LeaseMachine, type LeaseOptions, type LeaseSnapshot, type Step } from './lease.js';
import { answers } from '../../native/system.js';
import { DEFAULT_SOCKET, EMPTY, RESULT, serveConnection, type CmdArgs } from './rpc.js';
import { leaseOptionsOf, resultOf } from './options.js';

export interface DaemonOptions {
  socketPath: string;
  pidfile?: string;
  hostPrefix: string;
  broadcast: boolean;
  timeoutMs: number;
  resendMaxMs: number;
  acquireTimeoutMs: number;
  leaseFile: string;
  log: (line: string) => void;
}

export const DEFAULTS: Omit<DaemonOptions, 'log'> = { socketPath: DEFAULT_SOCKET, hostPrefix: '', broadcast: false, timeoutMs: 10_000, resendMaxMs: 62_000, acquireTimeoutMs: 30_000, leaseFile: '/run/cni/dhcp-leases.json' };

interface Record0 {
  clientId: string;
  containerId: string;
  network: string;
  ifname: string;
  netns: string;
  options: Omit<LeaseOptions, 'chaddr' | 'replyTimeoutMs' | 'resendMaxMs' | 'acquireTimeoutMs' | 'broadcast'> & { chaddr?: string };
  snapshot: LeaseSnapshot;
}

/** One container's lease and what drives it. */
class Entry {
  machine: LeaseMachine;
  nsFd = -1;
  sock: { fd: number; ifindex: number; mac: Buffer } | null = null;
  timer: NodeJS.Timeout | null = null;
  waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  dropped = 0;
  constructor(readonly d: Daemon, readonly rec: Record0, opts: LeaseOptions) {
    this.machine = new LeaseMachine(opts);
  }

  get nsPath(): string {
    return `/proc/self/fd/${this.nsFd}`;
  }

  /** Opens the packet socket on the container's interface (for an exchange). */
  open(): void {
    if (this.sock) return;
    this.sock = packetSocket(this.nsPath, this.rec.ifname, 68);
    const buf = Buffer.alloc(64 * 1024);
    const lens = new Uint32Array(16);
    watchReadable(this.sock.fd, () => {
      if (!this.sock) return;
      let n: number;
      try {
        n = readFrames(this.sock.fd, buf, lens, 2048);
      } catch {
        return this.closeSocket(); // the interface went away
      }
      let off = 0;
      for (let i = 0; i < n; i++) {
        const pkt = buf.subarray(off, off + lens[i]);
        off += lens[i];
        const payload = payloadToClient(pkt);
        const reply = typeof payload === 'string' ? payload : parseReply(payload);
        if (typeof reply === 'string') {
          // a malformed or truncated packet: dropped and counted, its first reasons logged
          if (this.dropped++ < 3) this.d.log(`${this.rec.clientId}: dropped a packet on ${this.rec.ifname}: ${reply}`);
          this.d.dropped++;
          continue;
        }
        const before = this.machine.ignored;
        this.apply(this.machine.receive(reply, Date.now()));
        if (process.env.BURROW_DHCP_DEBUG) this.d.log(`${this.rec.clientId}: got type ${reply.type} xid ${reply.xid}${this.machine.ignored > before ? ' (ignored)' : ''} in ${this.machine.state}`);
      }
    });
  }

  closeSocket(): void {
    if (!this.sock) return;
    unwatch(this.sock.fd);
    fs.closeSync(this.sock.fd);
    this.sock = null;
  }

  send(m: ClientMessage): void {
    try {
      this.open();
      const src = m.ciaddr ?? Buffer.alloc(4);
      const n = packetSend(this.sock!.fd, this.sock!.ifindex, frameToServer(buildClientMessage(m), src));
      if (process.env.BURROW_DHCP_DEBUG) this.d.log(`${this.rec.clientId}: sent type ${m.type} xid ${m.xid} (${n} bytes)`);
    } catch (err) {
      this.d.log(`${this.rec.clientId}: sending failed: ${(err as Error).message}`);
    }
  }

  schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const due = this.machine.deadline;
    if (!Number.isFinite(due)) return;
    // setTimeout holds at most 2^31-1 ms; a long lease is woken early and sleeps again
    this.timer = setTimeout(() => this.apply(this.machine.tick(Date.now())), Math.min(Math.max(0, due - Date.now()), 0x7fffffff));
  }

  apply(step: Step): void {
    if (step.send) this.send(step.send);
    const st = this.machine.state;
    if (st === 'bound' || st === 'expired' || st === 'failed' || st === 'released') this.closeSocket();
    switch (step.event) {
      case 'bound':
        this.d.log(`${this.rec.clientId}: lease acquired: ${this.machine.lease!.address}/${this.machine.lease!.prefix}, renewal in ${this.machine.lease!.t1S} s`);
        this.settle(null);
        break;
      case 'renewed': case 'rebound':
        this.d.log(`${this.rec.clientId}: lease ${step.event}: ${this.machine.lease!.address}, next renewal in ${this.machine.lease!.t1S} s`);
        break;
      case 'failed':
        this.d.log(`${this.rec.clientId}: ${step.error}`);
        this.settle(new Error(step.error));
        break;
      case 'expired': case 'nak':
        if (st === 'expired') {
          this.d.log(`${this.rec.clientId}: ${step.error}; taking ${this.rec.ifname} down`);
          void this.linkDown();
        }
        break;
      default:
        break;
    }
    if (step.event) this.d.save();
    this.schedule();
  }

  private settle(err: Error | null): void {
    for (const w of this.waiters.splice(0)) (err ? w.reject(err) : w.resolve());
  }

  private async linkDown(): Promise<void> {
    try {
      const nl = new RtnlClient(this.nsPath);
      try {
        await nl.setUp(this.rec.ifname, false);
      } finally {
        nl.close();
      }
    } catch (err) {
      this.d.log(`${this.rec.clientId}: taking ${this.rec.ifname} down failed: ${(err as Error).message}`);
    }
  }

  /** Stops everything this lease holds. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.closeSocket();
    if (this.nsFd >= 0) fs.closeSync(this.nsFd);
    this.nsFd = -1;
  }
}

export class Daemon {
  readonly leases = new Map<string, Entry>();
  dropped = 0;
  private server: net.Server | null = null;
  private ownSocket = false;
  /** Where it listens, for the log. */
  where = '';

  constructor(readonly o: DaemonOptions) {}

  log(line: string): void {
    this.o.log(line);
  }

  /** Listens (a systemd socket when handed one), takes up the saved leases, writes the pidfile. */
  async start(): Promise<void> {
    const server = net.createServer((sock) => serveConnection(sock, (m, a) => this.call(m, a), (why) => this.log(`dropped a connection: ${why}`)));
    this.server = server;
    const listenFds = Number(process.env.LISTEN_FDS ?? 0);
    if (listenFds >= 1 && Number(process.env.LISTEN_PID) === process.pid) {
      if (listenFds !== 1) throw new Error(`expected 1 socket from systemd, got ${listenFds}`);
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ fd: 3 }, resolve));
      this.where = 'the socket systemd handed over (fd 3)';
    } else {
      const p = this.o.hostPrefix + this.o.socketPath;
      fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
      if (fs.existsSync(p)) {
        if (await answers(p)) throw new Error(`another DHCP daemon is listening on ${p}`);
        fs.rmSync(p, { force: true }); // stale: a daemon that was killed (the reference fails "address already in use")
      }
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(p, resolve));
      this.ownSocket = true;
      this.where = p;
    }
    if (this.o.pidfile) fs.writeFileSync(this.o.pidfile, `${process.pid}\n`);
    this.restore();
  }

  async stop(): Promise<void> {
    this.save();
    for (const e of this.leases.values()) e.close();
    this.leases.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    if (this.ownSocket) fs.rmSync(this.o.hostPrefix + this.o.socketPath, { force: true });
    if (this.o.pidfile) fs.rmSync(this.o.pidfile, { force: true });
  }

  private async call(method: string, a: CmdArgs): Promise<{ schema: typeof RESULT; value: unknown }> {
    if (method === 'DHCP.Allocate') return { schema: RESULT, value: await this.allocate(a) };
    if (method === 'DHCP.Release') {
      await this.release(a);
      return { schema: EMPTY, value: {} };
    }
    throw new Error(`rpc: can't find method ${method}`);
  }

  private confOf(a: CmdArgs): Record<string, unknown> {
    try {
      return JSON.parse(a.StdinData.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new Error('error parsing netconf: not JSON');
    }
  }

  /** The reference's client id: <container id>/<network name>/<interface>, at most 254 bytes. */
  static clientId(a: CmdArgs, network: string): string {
    return Buffer.from(`${a.ContainerID}/${network}/${a.IfName}`).subarray(0, 254).toString('latin1');
  }

  async allocate(a: CmdArgs): Promise<unknown> {
    const conf = this.confOf(a);
    const network = typeof conf.name === 'string' ? conf.name : '';
    const id = Daemon.clientId(a, network);
    const live = this.leases.get(id);
    if (live && ['bound', 'renewing', 'rebinding'].includes(live.machine.state)) return resultOf(live.machine.lease!);
    if (live && (live.machine.state === 'selecting' || live.machine.state === 'requesting')) {
      await new Promise<void>((resolve, reject) => live.waiters.push({ resolve, reject }));
      return resultOf(live.machine.lease!);
    }
    if (live) this.drop(id);
    const opts = leaseOptionsOf(conf, a.Args, id);
    const rec: Record0 = { clientId: id, containerId: a.ContainerID, network, ifname: a.IfName, netns: a.Netns, options: { ...opts, clientId: opts.clientId }, snapshot: { state: 'selecting' } };
    const nsFile = this.o.hostPrefix + (path.isAbsolute(a.Netns) ? a.Netns : path.resolve(a.Netns));
    let nsFd: number;
    try {
      nsFd = fs.openSync(nsFile, 'r');
    } catch (err) {
      throw new Error(`error opening netns ${nsFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    let e: Entry | null = null;
    try {
      // the link's MAC is the client's hardware address; a link that is down is brought up first
      const nl = new RtnlClient(`/proc/self/fd/${nsFd}`);
      let mac: string;
      try {
        const link = await nl.getLink(a.IfName);
        if (!link) throw new Error(`error looking up interface "${a.IfName}" in ${a.Netns}: no such link`);
        if (!link.up) await nl.setUp(a.IfName, true);
        mac = link.mac;
        // what goes out before the link is operationally up is lost (the reference's first try
        // failed "network is down"): wait for it, a second at most
        for (let i = 0; i < 100 && (await nl.getLink(a.IfName))?.operState !== 'up'; i++) await new Promise((r) => setTimeout(r, 10));
      } finally {
        nl.close();
      }
      rec.options.chaddr = mac;
      e = new Entry(this, rec, this.full(rec));
      e.nsFd = nsFd;
      this.leases.set(id, e);
      this.log(`${id}: acquiring lease`);
      const entry = e;
      const got = new Promise<void>((resolve, reject) => entry.waiters.push({ resolve, reject }));
      e.apply(e.machine.start(Date.now()));
      await got;
      return resultOf(e.machine.lease!);
    } catch (err) {
      if (e) this.drop(id);
      else fs.closeSync(nsFd);
      this.save();
      throw err;
    }
  }

  private full(rec: Record0): LeaseOptions {
    return {
      ...rec.options, chaddr: Buffer.from((rec.options.chaddr ?? '').split(':').map((h) => parseInt(h, 16) || 0)), clientId: Buffer.from(rec.options.clientId),
      provide: rec.options.provide.map(([c, v]) => [c, Buffer.from(v)]), broadcast: this.o.broadcast, replyTimeoutMs: this.o.timeoutMs, resendMaxMs: this.o.resendMaxMs, acquireTimeoutMs: this.o.acquireTimeoutMs,
    };
  }

  private drop(id: string): void {
    this.leases.get(id)?.close();
    this.leases.delete(id);
  }

  async release(a: CmdArgs): Promise<void> {
    let network = '';
    try {
      network = String(this.confOf(a).name ?? '');
    } catch {
      // a DEL with an unreadable netconf still finds nothing to release
    }
    const id = Daemon.clientId(a, network);
    const e = this.leases.get(id);
    if (!e) return; // unknown: success, as the reference (PR plugins#78)
    this.log(`${id}: releasing lease`);
    const m = e.machine.release();
    if (m) {
      if (e.nsFd >= 0) e.send(m);
      else await sendFromHost(m).catch((err: Error) => this.log(`${id}: RELEASE from the host failed: ${err.message}`));
    }
    this.drop(id);
    this.save();
  }

  /** Writes every lease (atomically) for a restart to take up. */
  save(): void {
    const recs = [...this.leases.values()].map((e) => ({ ...e.rec, options: { ...e.rec.options, clientId: Buffer.from(e.rec.options.clientId).toString('base64'), provide: e.rec.options.provide.map(([c, v]) => [c, Buffer.from(v).toString('base64')]) }, snapshot: e.machine.snapshot() }));
    const file = this.o.hostPrefix + this.o.leaseFile;
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, `${JSON.stringify({ version: 1, leases: recs }, null, 1)}\n`, { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch (err) {
      this.log(`cannot save the leases to ${file}: ${(err as Error).message}`);
    }
  }

  private restore(): void {
    const file = this.o.hostPrefix + this.o.leaseFile;
    let saved: { leases?: Array<Omit<Record0, 'options'> & { options: { clientId: string; provide: Array<[number, string]>; paramRequest: number[]; chaddr?: string } }> };
    try {
      saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      return;
    }
    for (const r of saved.leases ?? []) {
      try {
        const rec: Record0 = { ...r, options: { ...r.options, clientId: Buffer.from(r.options.clientId, 'base64'), provide: r.options.provide.map(([c, v]) => [c, Buffer.from(v, 'base64')]) } };
        const e = new Entry(this, rec, this.full(rec));
        try {
          e.nsFd = fs.openSync(this.o.hostPrefix + rec.netns, 'r');
        } catch {
          // the namespace is gone: the lease is kept for DEL's RELEASE, sent from the host
        }
        this.leases.set(rec.clientId, e);
        const step = e.machine.restore(rec.snapshot, Date.now());
        this.log(`${rec.clientId}: lease taken up again after a restart (${e.machine.state}${e.nsFd < 0 ? ', namespace gone' : ''})`);
        if (e.nsFd >= 0) e.apply(step);
      } catch (err) {
        this.log(`a saved lease could not be taken up: ${(err as Error).message}`);
      }
    }
  }
}


/** A RELEASE from the host's own stack to the server (the container's namespace is gone). */
async function sendFromHost(m: ClientMessage): Promise<void> {
  const dgram = await import('node:dgram');
  const s = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => s.send(buildClientMessage(m), 67, ipv4.formatAddr(m.serverId!), (err) => (err ? reject(err) : resolve())));
  } finally {
    s.close();
  }
}
