/**
 * Port forwards into a userspace-networked container, as pasta does them, on two paths:
 *  - loopback clients (127.0.0.0/8, ::1) are spliced: a socket created inside the container's
 *    namespace connects to the service, and bytes go kernel socket to kernel socket (relayed by
 *    the host process, with no userspace TCP);
 *  - every other client goes through the TAP with its real address as the source the container
 *    sees (the request of podman#5138 and #8193).
 * A spec binds exactly the host address it names ("" = every address, IPv4 and IPv6).
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { dupFd, spliceRelay } from '../../native/mod.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import { wrapTcp, type Clock } from './host_sockets.js';
import type { Usernet } from './usernet.js';

export interface PortSpec {
  proto: 'tcp' | 'udp';
  /** "" binds every address. */
  hostAddr: string;
  /** 0: a free port is chosen when the container starts (chooseHostPorts), as podman does. */
  hostPort: number;
  guestPort: number;
  /** Ports in the range (hostPort..hostPort+count-1 -> guestPort..). */
  count: number;
}

export class PortSpecError extends Error {}

/**
 * Parses podman's -p syntax: [[hostIP:][hostPort[-end]]:]ctrPort[-end][/tcp|udp], with IPv6 host
 * addresses in brackets ([::1]:8080:80). Without a host port (-p 80, -p 127.0.0.1::80) the host
 * port is 0: chooseHostPorts picks free ones, as podman does (the same port could be the host's
 * own sshd's with -p 22).
 */
export function parsePortSpec(text: string): PortSpec[] {
  const bad = (why: string) => new PortSpecError(`invalid port mapping "${text}": ${why}`);
  let rest = text.trim();
  let protos: Array<'tcp' | 'udp'> = ['tcp'];
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1).split(',');
    if (!p.length || !p.every((x) => x === 'tcp' || x === 'udp')) throw bad('the protocol must be tcp or udp');
    protos = p as Array<'tcp' | 'udp'>;
    rest = rest.slice(0, slash);
  }
  let hostAddr = '';
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(rest);
  if (v6) {
    if (!ipv6.parseAddr(v6[1])) throw bad(`"${v6[1]}" is not an IPv6 address`);
    hostAddr = v6[1];
    rest = v6[2];
  }
  const parts = rest.split(':');
  if (!v6 && parts.length === 3) {
    hostAddr = parts.shift()!;
    if (hostAddr && !ipv4.parseAddr(hostAddr)) throw bad(`"${hostAddr}" is not an IPv4 address (put IPv6 addresses in brackets)`);
  }
  if (parts.length > 2 || !parts[parts.length - 1]) throw bad('expected [[hostIP:][hostPort[-end]]:]containerPort[-end][/tcp|udp]');
  const range = (s: string, what: string) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(s);
    if (!m) throw bad(`${what} "${s}" is not a port or range`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a < 1 || b > 65535 || b < a) throw bad(`${what} ${s} is outside 1-65535 or reversed`);
    return [a, b - a + 1];
  };
  const [guestPort, guestCount] = range(parts[parts.length - 1], 'container port');
  const [hostPort, hostCount] = parts.length === 2 && parts[0] ? range(parts[0], 'host port') : [0, guestCount];
  if (hostCount !== guestCount) throw bad(`the host range has ${hostCount} ports and the container range ${guestCount}`);
  return protos.map((proto) => ({ proto, hostAddr, hostPort, guestPort, count: hostCount }));
}

/** The clear error for a failed bind of one of `spec`'s host ports (`err.port` names which). */
export function bindError(spec: PortSpec, err: unknown): Error {
  const e = err as NodeJS.ErrnoException & { port?: number };
  const where = `${spec.hostAddr || '*'}:${e.port ?? spec.hostPort}/${spec.proto}`;
  if (e.code === 'EADDRINUSE') return new PortSpecError(`cannot publish ${formatPortSpec(spec)}: host port ${where} is already in use`);
  if (e.code === 'EACCES') return new PortSpecError(`cannot publish ${formatPortSpec(spec)}: binding ${where} needs privilege (ports below net.ipv4.ip_unprivileged_port_start)`);
  if (e.code === 'EADDRNOTAVAIL') return new PortSpecError(`cannot publish ${formatPortSpec(spec)}: ${spec.hostAddr} is not an address of this host`);
  return err as Error;
}

/**
 * Binds a host port: TCP listens (connections that reach the socket, not DNAT, are closed at
 * once), UDP binds; resolves to its closer. `onTcp`/`onUdp` take the traffic for a forward;
 * without them the socket only reserves the port (rootful -p: the kernel's DNAT does the work).
 */
export async function bindHostPort(proto: 'tcp' | 'udp', addr: string, port: number, handlers: { onTcp?: (s: net.Socket) => void; onUdp?: (sock: dgram.Socket) => void } = {}): Promise<() => void> {
  try {
    return await bindOne(proto, addr, port, handlers);
  } catch (err) {
    // "every address" on a host without IPv6 (ipv6.disable=1): IPv4's every address then
    const code = (err as NodeJS.ErrnoException).code;
    if (addr || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw err;
    return bindOne(proto, '0.0.0.0', port, handlers);
  }
}

function bindOne(proto: 'tcp' | 'udp', addr: string, port: number, handlers: { onTcp?: (s: net.Socket) => void; onUdp?: (sock: dgram.Socket) => void }): Promise<() => void> {
  if (proto === 'tcp') {
    const server = net.createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true }, handlers.onTcp ?? ((s) => s.destroy()));
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(Object.assign(err, { port })));
      server.listen({ host: addr || '::', port, ipv6Only: false, backlog: handlers.onTcp ? 511 : 1 }, () => {
        server.removeAllListeners('error');
        server.on('error', () => undefined);
        resolve(() => server.close());
      });
    });
  }
  const v6 = !addr || addr.includes(':');
  const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: false });
  handlers.onUdp?.(sock);
  return new Promise((resolve, reject) => {
    sock.once('error', (err) => reject(Object.assign(err, { port })));
    sock.bind({ address: addr || '::', port }, () => {
      sock.removeAllListeners('error');
      sock.on('error', () => undefined);
      resolve(() => {
        try {
          sock.close();
        } catch {
          // already closed
        }
      });
    });
  });
}

/**
 * Reserves every host port of `specs` (all or none), as podman does for rootful -p, so that a
 * port already in use is refused with a clear error instead of having its traffic taken by DNAT,
 * and no other program can bind it while the container runs. Resolves to the release.
 */
export async function reserveHostPorts(specs: PortSpec[]): Promise<() => void> {
  const closers: Array<() => void> = [];
  try {
    for (const spec of specs) {
      for (let i = 0; i < spec.count; i++) {
        try {
          closers.push(await bindHostPort(spec.proto, spec.hostAddr, spec.hostPort + i));
        } catch (err) {
          throw bindError(spec, err);
        }
      }
    }
  } catch (err) {
    for (const c of closers) c();
    throw err;
  }
  return () => closers.forEach((c) => c());
}

/** The kernel's ephemeral port range (net.ipv4.ip_local_port_range), where random host ports come from. */
function ephemeralRange(): [number, number] {
  try {
    const [a, b] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (a > 0 && b >= a && b <= 65535) return [a, b];
  } catch {
    // not Linux, or no procfs
  }
  return [32768, 60999];
}

/**
 * Gives every spec without a host port (hostPort 0) free ports: one the kernel picks (bind to
 * port 0), or for a range a run of consecutive ports that are all free now, as podman picks
 * them. Ports chosen for one spec are not chosen again for another. Specs with ports pass as they are.
 */
export async function chooseHostPorts(specs: PortSpec[]): Promise<PortSpec[]> {
  const taken = new Set<string>();
  const out: PortSpec[] = [];
  const key = (proto: string, port: number) => `${proto}/${port}`;
  const free = async (s: PortSpec, port: number) => {
    try {
      (await bindHostPort(s.proto, s.hostAddr, port))();
      return true;
    } catch {
      return false;
    }
  };
  for (const s of specs) {
    if (s.hostPort) {
      out.push(s);
      continue;
    }
    let chosen = 0;
    if (s.count === 1) {
      for (let i = 0; i < 16 && !chosen; i++) {
        const probe = (addr: string) => (s.proto === 'tcp' ? probeTcp(addr, 0) : probeUdp(addr, 0));
        // "every address" on a host without IPv6: IPv4's every address then (as bindHostPort)
        const port = await probe(s.hostAddr).catch((err: NodeJS.ErrnoException) => {
          if (s.hostAddr || (err.code !== 'EAFNOSUPPORT' && err.code !== 'EADDRNOTAVAIL')) throw bindError(s, err);
          return probe('0.0.0.0');
        });
        if (!taken.has(key(s.proto, port))) chosen = port;
      }
    } else {
      const [lo, hi] = ephemeralRange();
      for (let i = 0; i < 200 && !chosen; i++) {
        const start = lo + Math.floor(Math.random() * Math.max(1, hi - lo - s.count + 2));
        let ok = true;
        for (let p = start; p < start + s.count && ok; p++) ok = !taken.has(key(s.proto, p)) && (await free(s, p));
        if (ok) chosen = start;
      }
    }
    if (!chosen) throw new PortSpecError(`cannot publish ${formatPortSpec(s)}: found no free host port${s.count > 1 ? ` range of ${s.count}` : ''}`);
    for (let p = chosen; p < chosen + s.count; p++) taken.add(key(s.proto, p));
    out.push({ ...s, hostPort: chosen });
  }
  return out;
}

function probeTcp(addr: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: addr || '::', port, ipv6Only: false }, () => {
      const p = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(p));
    });
  });
}

function probeUdp(addr: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: !addr || addr.includes(':') ? 'udp6' : 'udp4', ipv6Only: false });
    sock.once('error', reject);
    sock.bind({ address: addr || '::', port }, () => {
      const p = sock.address().port;
      sock.close(() => resolve(p));
    });
  });
}

export function formatPortSpec(s: PortSpec): string {
  const host = s.hostAddr.includes(':') ? `[${s.hostAddr}]:` : s.hostAddr ? `${s.hostAddr}:` : '';
  const r = (p: number) => (s.count > 1 ? `${p}-${p + s.count - 1}` : `${p}`);
  return `${host}${s.hostPort ? r(s.hostPort) : ''}:${r(s.guestPort)}/${s.proto}`;
}

/** Opens a socket connected to the container's `port` from inside its namespace; resolves to its fd. */
export type NamespaceConnect = (family: 4 | 6, port: number) => Promise<number>;

export interface ForwardEntry {
  id: number;
  spec: PortSpec;
  /** Connections and datagrams handled, by path. */
  counters: { spliced: number; tap: number; refused: number; udp: number };
}

interface Listening {
  entry: ForwardEntry;
  close: () => void;
}

/** Client address of an accepted socket, with v4-mapped IPv6 unwrapped. */
function clientOf(addr: string | undefined): { family: 4 | 6; buf: Buffer; loopback: boolean } | null {
  if (!addr) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  const a = mapped ? mapped[1] : addr;
  const b4 = ipv4.parseAddr(a);
  if (b4) return { family: 4, buf: b4, loopback: b4[0] === 127 };
  const b6 = ipv6.parseAddr(a);
  if (b6) return { family: 6, buf: b6, loopback: a === '::1' };
  return null;
}

export class Forwarder {
  private readonly usernet: Usernet;
  private readonly connectInside: NamespaceConnect | null;
  private readonly clock: Clock;
  private readonly listening = new Map<number, Listening>();
  private nextId = 1;
  /** Spliced connections still open (each holds a relay thread). */
  relays = 0;
  /** Loopback clients waiting for their inside connect. */
  private splicing = 0;
  private closed = false;
  /** At most this many spliced connections at once (each is a thread); more are reset. */
  static readonly MAX_RELAYS = 1024;

  constructor(usernet: Usernet, connectInside: NamespaceConnect | null, clock: Clock = () => performance.now()) {
    this.usernet = usernet;
    this.connectInside = connectInside;
    this.clock = clock;
  }

  /** Binds every port of `spec` (all or none); resolves to the new entry. */
  async add(spec: PortSpec): Promise<ForwardEntry> {
    const entry: ForwardEntry = { id: this.nextId++, spec, counters: { spliced: 0, tap: 0, refused: 0, udp: 0 } };
    const closers: Array<() => void> = [];
    try {
      for (let i = 0; i < spec.count; i++) {
        const hostPort = spec.hostPort + i;
        const guestPort = spec.guestPort + i;
        closers.push(spec.proto === 'tcp' ? await this.listenTcp(spec.hostAddr, hostPort, guestPort, entry) : await this.listenUdp(spec.hostAddr, hostPort, guestPort, entry));
      }
    } catch (err) {
      for (const c of closers) c();
      throw bindError(spec, err);
    }
    this.listening.set(entry.id, { entry, close: () => closers.forEach((c) => c()) });
    return entry;
  }

  remove(id: number): boolean {
    const l = this.listening.get(id);
    if (!l) return false;
    this.listening.delete(id);
    l.close();
    return true;
  }

  list(): ForwardEntry[] {
    return [...this.listening.values()].map((l) => l.entry);
  }

  /** Closes every listener (spliced connections end with their namespace). */
  close(): void {
    this.closed = true;
    for (const id of [...this.listening.keys()]) this.remove(id);
  }

  private listenTcp(addr: string, hostPort: number, guestPort: number, entry: ForwardEntry): Promise<() => void> {
    return bindHostPort('tcp', addr, hostPort, { onTcp: (sock) => this.onTcp(sock, guestPort, entry) });
  }

  private onTcp(sock: net.Socket, guestPort: number, entry: ForwardEntry): void {
    sock.on('error', () => undefined);
    const client = clientOf(sock.remoteAddress);
    if (!client) return void sock.destroy();
    if (client.loopback && this.connectInside) return this.splice(sock, client.family, guestPort, entry);
    const ok = this.usernet.stack.acceptInbound(client.family, client.buf, sock.remotePort ?? 0, guestPort, (h) => wrapTcp(sock, h, this.clock), this.clock());
    this.usernet.kick();
    if (!ok) {
      entry.counters.refused++;
      sock.destroy();
      return;
    }
    entry.counters.tap++;
  }

  /**
   * Loopback path: the client socket and a socket connected inside the namespace are handed to
   * a native splice relay (kernel to kernel, no copy through JS). The inside connect is
   * asynchronous; the client stays paused (pauseOnConnect) until it is done.
   */
  private splice(sock: net.Socket, family: 4 | 6, guestPort: number, entry: ForwardEntry): void {
    // Two host sockets per spliced connection (the client's and the inside one), from the same
    // budget as the stack's flows.
    const budgets = this.usernet.stack.budgets;
    if (this.relays + this.splicing >= Forwarder.MAX_RELAYS || !budgets.takeHostSockets(2)) {
      entry.counters.refused++;
      sock.resetAndDestroy();
      return;
    }
    let held = true;
    const giveBack = () => {
      if (held) budgets.giveHostSockets(2);
      held = false;
    };
    this.splicing++;
    this.connectInside!(family, guestPort).then((inner) => {
      this.splicing--;
      if (sock.destroyed || this.closed) {
        fs.closeSync(inner);
        sock.destroy();
        giveBack();
        return;
      }
      const handle = (sock as unknown as { _handle?: { fd?: number } })._handle;
      let outer: number;
      try {
        outer = dupFd(handle?.fd ?? -1);
      } catch {
        fs.closeSync(inner);
        sock.destroy();
        giveBack();
        return;
      }
      // Node's handle closes its fd; the relay's duplicate keeps the connection open.
      sock.destroy();
      entry.counters.spliced++;
      this.relays++;
      spliceRelay(outer, inner, () => {
        this.relays--;
        giveBack();
      });
    }, () => {
      this.splicing--;
      entry.counters.refused++;
      giveBack();
      if (!sock.destroyed) sock.resetAndDestroy();
    });
  }

  private listenUdp(addr: string, hostPort: number, guestPort: number, entry: ForwardEntry): Promise<() => void> {
    return bindHostPort('udp', addr, hostPort, {
      onUdp: (sock) => sock.on('message', (msg, rinfo) => {
        const client = clientOf(rinfo.address);
        if (!client) return;
        entry.counters.udp++;
        const reply = (d: Buffer) => {
          try {
            sock.send(d, rinfo.port, rinfo.address);
          } catch {
            // the listener closed (forward removed): the datagram is lost, as UDP may
          }
        };
        this.usernet.stack.forwardUdp(client.family, client.buf, rinfo.port, guestPort, msg, reply, this.clock());
        this.usernet.kick();
      }),
    });
  }
}
