/**
 * HostSockets over node:net and node:dgram: the stack's flows become ordinary host sockets owned
 * by the unprivileged user (socket-level NAT). Every callback is stamped with `clock()`.
 *
 * Every callback checks its error first and reports it through the handlers' onError, exactly
 * once; no method throws. Node throws synchronously from some socket calls (a dgram send on a
 * socket whose connect failed, a send after close): those are caught here and become onError.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
import { pingSocket, recvFrom, sendTo, unwatch, watchReadable } from '../../native/mod.js';
import type { HostPing, HostPingHandlers, HostSockets, HostTcp, HostTcpHandlers, HostUdp, HostUdpHandlers } from '../stack/host.js';

export type Clock = () => number;

/** Datagrams (and bytes) a UDP flow may queue before its connect completes (one loop turn). */
const UDP_CONNECT_QUEUE = 16;
const UDP_CONNECT_QUEUE_BYTES = 256 << 10;
/** Bytes libuv may hold for a UDP socket the kernel cannot take right now; beyond, datagrams drop (UDP may). */
const UDP_SEND_QUEUE_BYTES = 1 << 20;

/** The read buffer of outbound host TCP sockets (Node's own read size), and the read size from which a socket reads into its own. */
const READ_BUFFER_BYTES = 64 << 10;
const KEEP_READ_BYTES = 16 << 10;

const codeOf = (err: unknown): string => (err as NodeJS.ErrnoException | undefined)?.code ?? 'EIO';

/**
 * Wraps a connected (or connecting) net.Socket as a HostTcp driving `h`. `reads` is given for a
 * socket made with `onread` (its bytes come through the callback that `reads` receives, not as
 * 'data' events).
 */
export function wrapTcp(sock: net.Socket, h: HostTcpHandlers, clock: Clock, reads?: (deliver: (d: Buffer) => void) => void): HostTcp {
  let done = false;
  sock.setNoDelay(true);
  sock.on('connect', () => {
    if (!done) h.onConnect(clock());
  });
  const deliver = (d: Buffer) => {
    if (!done) h.onData(d, clock());
  };
  if (reads) reads(deliver);
  else sock.on('data', deliver);
  sock.on('end', () => {
    if (!done) h.onEnd(clock());
  });
  sock.on('drain', () => {
    if (!done) h.onDrain(clock());
  });
  sock.on('error', (err: NodeJS.ErrnoException) => {
    if (done) return;
    done = true;
    h.onError(codeOf(err), clock());
  });
  sock.on('close', () => {
    done = true;
  });
  return {
    write: (d) => {
      if (!sock.destroyed && sock.writable) sock.write(d);
    },
    end: () => {
      if (!sock.destroyed) sock.end();
    },
    destroy: (reset) => {
      done = true;
      if (sock.destroyed) return;
      if (reset) sock.resetAndDestroy();
      else sock.destroy();
    },
    pause: () => sock.pause(),
    resume: () => sock.resume(),
    pending: () => sock.writableLength,
  };
}

export class NodeHostSockets implements HostSockets {
  private readonly readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

  /** `outbound`: the source address of each family's sockets (slirp4netns --outbound-addr[6]). */
  constructor(private readonly clock: Clock = () => performance.now(), private readonly outbound: { v4?: string; v6?: string } = {}) {}

  private source(family: 4 | 6): string | undefined {
    return family === 4 ? this.outbound.v4 : this.outbound.v6;
  }

  connectTcp(family: 4 | 6, address: string, port: number, h: HostTcpHandlers): HostTcp {
    // Half-open allowed: the container may keep sending after the host peer's FIN (TCP half-close).
    const localAddress = this.source(family);
    // onread: reads go to a buffer of ours, without a stream's push and 'data' machinery per read
    // (about 6 % of the CPU of a 1-byte round trip). Node takes a socket's next buffer right after
    // its read, so: every socket reads into one shared buffer, always copied out (a shared buffer
    // the stack kept would be written by another socket's read); a socket whose read was large
    // gets a buffer of its own for the next, which a large read keeps (no copy on bulk transfers:
    // the socket gets a new one), and which a small read gives back for the shared one.
    let deliver: (d: Buffer) => void = () => undefined;
    let own: Buffer | null = null;
    const onread = {
      buffer: () => own ?? this.readBuffer,
      callback: (n: number, buf: Uint8Array) => {
        let d: Buffer;
        if (buf === own && n >= KEEP_READ_BYTES) d = Buffer.from(own.buffer, own.byteOffset, n);
        else d = Buffer.from(buf.subarray(0, n));
        own = n >= KEEP_READ_BYTES ? Buffer.allocUnsafeSlow(READ_BUFFER_BYTES) : null;
        deliver(d);
        return true;
      },
    };
    const sock = net.connect({ host: address, port, family, allowHalfOpen: true, onread, ...(localAddress ? { localAddress } : {}) });
    return wrapTcp(sock, h, this.clock, (d) => (deliver = d));
  }

  openPing(family: 4 | 6, h: HostPingHandlers): HostPing {
    const fd = pingSocket(family);
    const buf = Buffer.allocUnsafe(65536);
    let closed = false;
    const onReadable = () => {
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
    };
    try {
      watchReadable(fd, onReadable);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return {
      send: (m, address) => {
        if (closed) return;
        try {
          sendTo(fd, m, address);
        } catch (err) {
          h.onError?.(codeOf(err), this.clock()); // the stack answers with ICMP unreachable
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
    let failed = false;
    let queued = 0;
    const queue: Buffer[] = [];
    const fail = (err: unknown) => {
      if (closed || failed) return;
      failed = true;
      queue.length = 0;
      h.onError(codeOf(err), this.clock());
    };
    const sendNow = (d: Buffer) => {
      // A kernel that cannot take datagrams leaves them to libuv; UDP may drop instead of queueing without bound.
      if (sock.getSendQueueSize() > UDP_SEND_QUEUE_BYTES) return;
      sock.send(d, (err) => {
        if (err) fail(err);
      });
    };
    sock.on('message', (d) => {
      if (!closed && !failed) h.onMessage(d, this.clock());
    });
    sock.on('error', fail);
    const connect = () => sock.connect(port, address, (err?: Error) => {
      // A connect that fails (ENETUNREACH: no route to that family) leaves the socket unconnected;
      // sending on it would throw. The flow ends here instead.
      if (err) return fail(err);
      ready = true;
      queued = 0;
      try {
        for (const d of queue.splice(0)) sendNow(d);
      } catch (e) {
        fail(e);
      }
    });
    try {
      // an outbound address: bound first, so the connect keeps it as the source
      const localAddress = this.source(family);
      if (localAddress) {
        sock.bind({ address: localAddress, port: 0 }, () => {
          try {
            if (!closed && !failed) connect();
          } catch (e) {
            fail(e);
          }
        });
      } else connect();
    } catch (err) {
      queueMicrotask(() => fail(err));
    }
    return {
      send: (d) => {
        if (closed || failed) return;
        try {
          if (ready) sendNow(d);
          else if (queue.length < UDP_CONNECT_QUEUE && queued + d.length <= UDP_CONNECT_QUEUE_BYTES) {
            queue.push(d);
            queued += d.length;
          }
        } catch (err) {
          fail(err);
        }
      },
      close: () => {
        if (closed) return;
        closed = true;
        queue.length = 0;
        try {
          sock.close();
        } catch {
          // already closed by an error
        }
      },
    };
  }
}
