/**
 * The seam between the stack and the host's sockets. The stack asks for host connections and
 * datagram sockets through {@link HostSockets}; the real implementation (net/usernet/host_sockets)
 * uses node:net and node:dgram, tests use an in-memory fake. Every callback carries the time, so
 * the stack itself never reads a clock.
 */

export interface HostTcpHandlers {
  onConnect(now: number): void;
  /** Bytes from the host peer; the buffer is the caller's to keep. */
  onData(data: Buffer, now: number): void;
  onEnd(now: number): void;
  /** A connect failure or a reset: `code` is an errno name such as ECONNREFUSED. */
  onError(code: string, now: number): void;
  /** The socket took everything written so far. */
  onDrain(now: number): void;
}

export interface HostTcp {
  /** Queues bytes (the socket may hold them: pass a buffer you will not reuse). */
  write(data: Buffer): void;
  /** Half-close after what was written. */
  end(): void;
  /** Closes at once; with reset, the peer sees an RST. */
  destroy(reset?: boolean): void;
  pause(): void;
  resume(): void;
  /** Bytes written but not yet taken by the kernel. */
  pending(): number;
}

export interface HostUdpHandlers {
  onMessage(data: Buffer, now: number): void;
  onError(code: string, now: number): void;
}

export interface HostUdp {
  send(data: Buffer): void;
  close(): void;
}

export interface HostPingHandlers {
  /** An ICMP/ICMPv6 echo reply message (type onward, no IP header); the buffer is the caller's. */
  onReply(message: Buffer, now: number): void;
  /** A send failed (`code`: ENETUNREACH, EHOSTUNREACH, ...): the destination cannot be reached now. */
  onError?(code: string, now: number): void;
}

export interface HostPing {
  /** Sends an echo request message (the kernel sets the identifier and the checksum). */
  send(message: Buffer, address: string): void;
  close(): void;
}

export interface HostSockets {
  /** Connects a TCP socket to address:port (the connect result comes through the handlers). */
  connectTcp(family: 4 | 6, address: string, port: number, h: HostTcpHandlers): HostTcp;
  /** A UDP socket connected to address:port. */
  openUdp(family: 4 | 6, address: string, port: number, h: HostUdpHandlers): HostUdp;
  /**
   * An unprivileged echo ("ping") socket; throws when the host does not allow one (the user's
   * gid outside net.ipv4.ping_group_range). Optional: without it echo is answered locally only.
   */
  openPing?(family: 4 | 6, h: HostPingHandlers): HostPing;
}
