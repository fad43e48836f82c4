/**
 * HostSockets over node:net and node:dgram: the stack's flows become ordinary host sockets owned
 * by the unprivileged user (socket-level NAT). Every callback is stamped with `clock()`.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
import { pingSocket, recvFrom, sendTo, unwatch, watchReadable } from '../../native/mod.js';
import type { HostPing, HostPingHandlers, HostSockets, HostTcp, HostTcpHandlers, HostUdp, HostUdpHandlers } from '../stack/host.js';

export type Clock = () => number;

/** Wraps a connected (or connecting) net.Socket as a HostTcp driving `h`. */
export function wrapTcp(sock: net.Socket, h: HostTcpHandlers, clock: Clock): HostTcp {
  let done = false;
  sock.setNoDelay(true);
  sock.on('connect', () => h.onConnect(clock()));
  sock.on('data', (d: Buffer) => h.onData(d, clock()));
  sock.on('end', () => h.onEnd(clock()));
  sock.on('drain', () => h.onDrain(clock()));
  sock.on('error', (err: NodeJS.ErrnoException) => {
    if (done) return;
    done = true;
    h.onError(err.code ?? 'EIO', clock());
  });
  sock.on('close', () => {
    done = true;
  });
  return {
    write: (d) => {
      if (!sock.destroyed) sock.write(d);
    },
    end: () => {
      if (!sock.destroyed) sock.end();
    },
    destroy: (reset) => {
      done = true;
      if (reset && !sock.destroyed) sock.resetAndDestroy();
      else sock.destroy();
    },
    pause: () => sock.pause(),
    resume: () => sock.resume(),
    pending: () => sock.writableLength,
  };
}

export class NodeHostSockets implements HostSockets {
  constructor(private readonly clock: Clock = () => performance.now()) {}

  connectTcp(family: 4 | 6, address: string, port: number, h: HostTcpHandlers): HostTcp {
    // Half-open allowed: the container may keep sending after the host peer's FIN (TCP half-close).
    const sock = net.connect({ host: address, port, family, allowHalfOpen: true });
    return wrapTcp(sock, h, this.clock);
  }

  openPing(family: 4 | 6, h: HostPingHandlers): HostPing {
    const fd = pingSocket(family);
    const buf = Buffer.allocUnsafe(65536);
    let closed = false;
    watchReadable(fd, () => {
      for (let i = 0; i < 64 && !closed; i++) {
        let r: { length: number } | null;
        try {
          r = recvFrom(fd, buf);
        } catch {
          return; // an ICMP error queued on the socket; the next reply still arrives
        }
        if (!r) return;
        h.onReply(Buffer.from(buf.subarray(0, r.length)), this.clock());
      }
    });
    return {
      send: (m, address) => {
        try {
          sendTo(fd, m, address);
        } catch {
          // unreachable right now: the container sees no reply, as with a lost packet
        }
      },
      close: () => {
        if (closed) return;
        closed = true;
        unwatch(fd);
        fs.closeSync(fd);
      },
    };
  }

  openUdp(family: 4 | 6, address: string, port: number, h: HostUdpHandlers): HostUdp {
    const sock = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    let ready = false;
    let closed = false;
    const queue: Buffer[] = [];
    sock.on('message', (d) => h.onMessage(d, this.clock()));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!closed) h.onError(err.code ?? 'EIO', this.clock());
    });
    sock.connect(port, address, () => {
      ready = true;
      for (const d of queue.splice(0)) sock.send(d);
    });
    return {
      send: (d) => {
        if (closed) return;
        if (ready) sock.send(d);
        else if (queue.length < 64) queue.push(d);
      },
      close: () => {
        if (closed) return;
        closed = true;
        try {
          sock.close();
        } catch {
          // already closed by an error
        }
      },
    };
  }
}
