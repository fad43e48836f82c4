/**
 * Port forwards into a userspace-networked container, as pasta does them, on two paths:
 *  - loopback clients (127.0.0.0/8, ::1) are spliced: a socket created inside the container's
 *    namespace connects to the service, and bytes go kernel socket to kernel socket (relayed by
 *    the host process, with no userspace TCP);
 *  - every other client goes through the TAP with its real address as the source the container
 *    sees (the request of podman#5138 and #8193).
 * A spec binds exactly the host address it names ("" = every address, IPv4 and IPv6).
 */
import fs from 'node:fs';
import net from 'node:net';
import { dupFd, spliceRelay } from '../../native/mod.js';
import { bindError, bindHostPort } from '../ports/host_ports.js';
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import type { PortSpec } from '../ports/portspec.js';
import { wrapTcp, type Clock } from './host_sockets.js';
import type { Usernet } from './usernet.js';

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

  /** Loopback connections in each phase, for the API's stats. */
  spliceCounts(): { connecting: number; relaying: number } {
    return { connecting: this.splicing, relaying: this.relays };
  }
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
