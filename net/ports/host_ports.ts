/**
 * Host ports for published container ports: binding them (a forward's listener, or a reservation
 * that holds a rootful -p port while DNAT does the work), choosing free ones for -p 80, and the
 * clear error when one is taken.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { formatPortSpec, PortSpecError, type PortSpec } from './portspec.js';

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
export async function bindHostPort(proto: 'tcp' | 'udp', addr: string, port: number, handlers: { onTcp?: (s: net.Socket) => void; onUdp?: (sock: dgram.Socket) => void } = {}): Promise<PortCloser> {
  try {
    return await bindOne(proto, addr, port, handlers);
  } catch (err) {
    // "every address" on a host without IPv6 (ipv6.disable=1): IPv4's every address then
    const code = (err as NodeJS.ErrnoException).code;
    if (addr || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw err;
    return bindOne(proto, '0.0.0.0', port, handlers);
  }
}

/** A closer of a socket that holds a host port, and the socket's fd (a native holder keeps it open). */
export type PortCloser = (() => void) & { fd?: number };

const withFd = (close: () => void, fd: number | undefined): PortCloser => Object.assign(close, fd !== undefined && fd >= 0 ? { fd } : {});

function bindOne(proto: 'tcp' | 'udp', addr: string, port: number, handlers: { onTcp?: (s: net.Socket) => void; onUdp?: (sock: dgram.Socket) => void }): Promise<PortCloser> {
  if (proto === 'tcp') {
    const server = net.createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true }, handlers.onTcp ?? ((s) => s.destroy()));
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(Object.assign(err, { port })));
      server.listen({ host: addr || '::', port, ipv6Only: false, backlog: handlers.onTcp ? 511 : 1 }, () => {
        server.removeAllListeners('error');
        server.on('error', () => undefined);
        resolve(withFd(() => server.close(), (server as unknown as { _handle?: { fd?: number } })._handle?.fd));
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
      const state = Object.getOwnPropertySymbols(sock).find((k) => k.description === 'state symbol');
      const handle = state && (sock as unknown as Record<symbol, { handle?: { fd?: number } }>)[state]?.handle;
      resolve(withFd(() => {
        try {
          sock.close();
        } catch {
          // already closed
        }
      }, handle?.fd));
    });
  });
}

/**
 * Reserves every host port of `specs` (all or none), as podman does for rootful -p, so that a
 * port already in use is refused with a clear error instead of having its traffic taken by DNAT,
 * and no other program can bind it while the container runs. Resolves to the release.
 */
export async function reserveHostPorts(specs: PortSpec[]): Promise<(() => void) & { fds: number[] }> {
  const closers: PortCloser[] = [];
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
  return Object.assign(() => closers.forEach((c) => c()), { fds: closers.flatMap((c) => (c.fd !== undefined ? [c.fd] : [])) });
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
