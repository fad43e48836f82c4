/**
 * podman's -p syntax as pure code: what CNI containers (portmap), usernet forwards and the
 * podman views (ps, port, inspect) all read.
 */
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';

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

export function formatPortSpec(s: PortSpec): string {
  const host = s.hostAddr.includes(':') ? `[${s.hostAddr}]:` : s.hostAddr ? `${s.hostAddr}:` : '';
  const r = (p: number) => (s.count > 1 ? `${p}-${p + s.count - 1}` : `${p}`);
  return `${host}${s.hostPort ? r(s.hostPort) : ''}:${r(s.guestPort)}/${s.proto}`;
}

/** Specs as a container record keeps them; one that does not parse (another version wrote it) is skipped. */
export function parseRecordedPorts(specs: string[]): PortSpec[] {
  return specs.flatMap((spec) => {
    try {
      return parsePortSpec(spec);
    } catch {
      return [];
    }
  });
}
