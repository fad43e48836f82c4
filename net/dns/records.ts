/**
 * Container name records: the per-network record file, and the answer to one question from one
 * client. Pure code; the server (net/dns/server.ts) does the I/O.
 *
 * Theory of operation
 * -------------------
 * - A network's records are one text file in aardvark-dns's format (netavark writes the same):
 *   line 1 is the network's comma-joined gateway addresses, optionally followed by its
 *   comma-joined DNS servers; every other line is `<ctrid> <ipv4s,> <ipv6s,> <names,>` with an
 *   optional fifth field, the container's own DNS servers. Fields are separated by one space
 *   and an empty address list is an empty field. burrow's dnsname files add two things that
 *   aardvark-dns would reject, so they stay in dnsname's directory: a gateway may carry its prefix
 *   ("10.89.0.1/24"), which tells the server which sources belong to the network, and line 1
 *   may end with `domain=NAME`, the network's search domain (containers/dnsname's
 *   `domainName`; "dns.podman" by default). Names are lower-cased when written.
 * - A query is answered for the network whose gateway received it. Its source must belong to
 *   that network (inside a gateway's prefix, or a container address of the network when no
 *   prefix is known); anything else is REFUSED. The requester's networks are that network and
 *   every other network where the same container id (the requester's record) appears, so a
 *   container on two networks resolves names on both and nothing else.
 * - A name (with the network's domain suffix stripped) is looked up in the receiving network
 *   first, then in the requester's other networks in file order; the first network that has it
 *   answers with its own addresses, so one name on two networks answers each network's address.
 *   A known name without records of the asked type answers NOERROR with no records (NODATA).
 * - PTR for an address of a record on the requester's networks answers each name as
 *   `name.domain`. An unknown single-label name, an unknown name inside a domain, and a PTR for
 *   an address inside the networks' prefixes get NXDOMAIN at once; everything else is forwarded,
 *   unless the receiving network says `noForward` (then NXDOMAIN as well).
 */
import * as ipv4 from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import * as dns from '../wire/dns.js';

export const DEFAULT_DOMAIN = 'dns.podman';
/** Local answers are not cached: a container that goes and comes back with another address is seen at once. */
export const LOCAL_TTL_S = 0;

export interface Gateway {
  ip: string;
  /** Prefix length, when the file gave one. */
  prefix?: number;
}

export interface RecordEntry {
  id: string;
  v4: string[];
  v6: string[];
  names: string[];
  servers: string[];
}

export interface NetworkRecords {
  network: string;
  gateways: Gateway[];
  servers: string[];
  domain: string;
  entries: RecordEntry[];
  /** Names that are not local get NXDOMAIN instead of being forwarded (aardvark-dns's internal networks, `AARDVARK_NO_PROXY`). */
  noForward?: boolean;
}

export class RecordFileError extends Error {}

const list = (field: string | undefined) => (field ? field.split(',').map((x) => x.trim()).filter(Boolean) : []);
const isV4 = (s: string) => ipv4.parseAddr(s) !== null;
const isV6 = (s: string) => ipv6.parseAddr(s) !== null;
const NAME_RE = /^[a-z0-9_][a-z0-9_.-]{0,252}$/;

/** A valid record name: what podman allows in container names and aliases, lower-cased. */
export function validName(name: string): boolean {
  return NAME_RE.test(name) && !name.endsWith('.') && !name.includes('..');
}

/**
 * Reads a record file. Bad lines are skipped and listed in `skipped` (the server logs them), so
 * one bad entry never hides the others; a bad first line throws.
 */
export function parseRecordFile(network: string, text: string): NetworkRecords & { skipped: string[] } {
  const lines = text.split('\n').map((l) => l.trim());
  const head = (lines.shift() ?? '').split(/\s+/).filter(Boolean);
  const gateways: Gateway[] = [];
  for (const g of list(head[0])) {
    const [ip, pfx] = g.split('/');
    const prefix = pfx === undefined ? undefined : Number(pfx);
    if (!(isV4(ip) || isV6(ip)) || (prefix !== undefined && !(Number.isInteger(prefix) && prefix >= 0 && prefix <= (isV4(ip) ? 32 : 128)))) {
      throw new RecordFileError(`network ${network}: bad gateway "${g}" on line 1`);
    }
    gateways.push({ ip: ip.toLowerCase(), ...(prefix !== undefined ? { prefix } : {}) });
  }
  if (!gateways.length) throw new RecordFileError(`network ${network}: line 1 names no gateway address`);
  let domain = DEFAULT_DOMAIN;
  let servers: string[] = [];
  for (const tok of head.slice(1)) {
    if (tok.startsWith('domain=')) domain = tok.slice(7).toLowerCase().replace(/\.$/, '');
    else servers = list(tok).filter((s) => isV4(s) || isV6(s));
  }
  const entries: RecordEntry[] = [];
  const skipped: string[] = [];
  for (const line of lines) {
    if (!line || line.startsWith('#')) continue;
    // fields are split on single spaces: an empty address list is an empty field, as netavark
    // writes it ("<id> 10.89.0.2  web"); '""' is read as empty too (burrow's files before 2026-12-03)
    const f = line.split(/[ \t]/);
    const v4 = f[1] === '""' ? [] : list(f[1]);
    const v6 = f[2] === '""' ? [] : list(f[2]);
    const names = list(f[3]).map((n) => n.toLowerCase());
    if (f.length < 4 || !/^[0-9a-f]{1,64}$/i.test(f[0]) || !v4.every(isV4) || !v6.every(isV6) || !names.length || !names.every(validName)) {
      skipped.push(line.slice(0, 200));
      continue;
    }
    entries.push({ id: f[0].toLowerCase(), v4, v6: v6.map((a) => a.toLowerCase()), names, servers: list(f[4]).filter((s) => isV4(s) || isV6(s)) });
  }
  return { network, gateways, servers, domain, entries, skipped };
}

/** The first line of a record file. */
export function formatRecordHead(r: Pick<NetworkRecords, 'gateways' | 'servers' | 'domain'>): string {
  const gws = r.gateways.map((g) => (g.prefix !== undefined ? `${g.ip}/${g.prefix}` : g.ip)).join(',');
  return [gws, ...(r.servers.length ? [r.servers.join(',')] : []), ...(r.domain !== DEFAULT_DOMAIN ? [`domain=${r.domain}`] : [])].join(' ');
}

/** One entry's line. */
export function formatRecordLine(e: RecordEntry): string {
  const f = (xs: string[]) => xs.join(',');
  return [e.id, f(e.v4), f(e.v6), e.names.map((n) => n.toLowerCase()).join(','), ...(e.servers.length ? [e.servers.join(',')] : [])].join(' ');
}

/** The whole file. */
export function formatRecordFile(r: Pick<NetworkRecords, 'gateways' | 'servers' | 'domain' | 'entries'>): string {
  return `${[formatRecordHead(r), ...r.entries.map(formatRecordLine)].join('\n')}\n`;
}

/** 128-bit value of an address, for prefix tests. */
function addrValue(ip: string): { family: 4 | 6; value: bigint } | null {
  const a = ipv4.parseAddr(ip) ?? ipv6.parseAddr(ip);
  if (!a) return null;
  let v = 0n;
  for (const byte of a) v = (v << 8n) | BigInt(byte);
  return { family: a.length === 4 ? 4 : 6, value: v };
}

function inPrefix(ip: string, g: Gateway): boolean {
  if (g.prefix === undefined) return false;
  const a = addrValue(ip);
  const b = addrValue(g.ip);
  if (!a || !b || a.family !== b.family) return false;
  const bits = BigInt(a.family === 4 ? 32 : 128);
  const shift = bits - BigInt(g.prefix);
  return a.value >> shift === b.value >> shift;
}

/** The address a reverse name (`4.3.2.1.in-addr.arpa`, nibbles `.ip6.arpa`) stands for, or null. */
export function reverseAddress(name: string): string | null {
  let m = /^((?:\d{1,3}\.){4})in-addr\.arpa$/.exec(name);
  if (m) {
    const octets = m[1].slice(0, -1).split('.').reverse();
    return octets.every((o) => Number(o) <= 255 && String(Number(o)) === o) ? octets.join('.') : null;
  }
  m = /^((?:[0-9a-f]\.){32})ip6\.arpa$/.exec(name);
  if (!m) return null;
  const hex = m[1].replace(/\./g, '').split('').reverse().join('');
  const b = Buffer.from(hex, 'hex');
  return ipv6.formatAddr(b);
}

const canonical = (ip: string) => {
  if (!ip.includes(':')) return ip; // IPv4 text is canonical already (the hot path: every query's source)
  const v6 = ipv6.parseAddr(ip);
  return v6 ? ipv6.formatAddr(v6) : ip;
};

export type Decision =
  | { kind: 'answer'; rcode: number; answers: dns.Answer[] }
  | { kind: 'forward'; servers: string[] }
  | { kind: 'refuse'; why: string };

interface Indexed {
  rec: NetworkRecords;
  /** every entry with the name: netavark writes one line per address family for a container */
  byName: Map<string, RecordEntry[]>;
  /** the answers for each name, encoded once when the records load rather than per query */
  answers: Map<string, { a: dns.Answer[]; aaaa: dns.Answer[]; any: dns.Answer[] }>;
  byAddr: Map<string, RecordEntry>;
  ids: Set<string>;
}

/** Every loaded network, indexed for lookups; rebuilt whole on each reload. */
export class RecordSet {
  private readonly nets: Indexed[] = [];
  private readonly byGateway = new Map<string, Indexed>();

  constructor(networks: NetworkRecords[]) {
    for (const rec of networks) {
      const ix: Indexed = { rec, byName: new Map(), answers: new Map(), byAddr: new Map(), ids: new Set() };
      for (const e of rec.entries) {
        ix.ids.add(e.id);
        for (const n of e.names) {
          const list = ix.byName.get(n);
          if (!list) ix.byName.set(n, [e]);
          else if (!list.includes(e)) list.push(e);
        }
        for (const a of [...e.v4, ...e.v6]) ix.byAddr.set(canonical(a), e);
      }
      for (const [n, es] of ix.byName) {
        const a = es.flatMap((e) => e.v4.map((x) => ({ type: dns.TYPE_A, ttlS: LOCAL_TTL_S, data: ipv4.parseAddr(x)! })));
        const aaaa = es.flatMap((e) => e.v6.map((x) => ({ type: dns.TYPE_AAAA, ttlS: LOCAL_TTL_S, data: ipv6.parseAddr(x)! })));
        ix.answers.set(n, { a, aaaa, any: [...a, ...aaaa] });
      }
      this.nets.push(ix);
      for (const g of rec.gateways) if (!this.byGateway.has(canonical(g.ip))) this.byGateway.set(canonical(g.ip), ix);
    }
  }

  /** Every gateway address the server listens on. */
  gateways(): string[] {
    return [...this.byGateway.keys()];
  }

  /** Records in all networks. */
  size(): number {
    return this.nets.reduce((n, x) => n + x.rec.entries.length, 0);
  }

  networks(): NetworkRecords[] {
    return this.nets.map((x) => x.rec);
  }

  /** What to do with question `q` that gateway `local` received from `from`; `hostServers` are the forwarders of last resort. */
  decide(q: Pick<dns.Query, 'name' | 'type' | 'qclass'>, local: string, from: string, hostServers: string[]): Decision {
    const here = this.byGateway.get(canonical(local));
    if (!here) return { kind: 'refuse', why: 'not-a-gateway' };
    const src = canonical(from);
    const requester = here.byAddr.get(src);
    const inside = requester !== undefined || here.rec.gateways.some((g) => inPrefix(src, g));
    if (!inside) return { kind: 'refuse', why: 'outside-network' };
    const mine = [here, ...(requester ? this.nets.filter((n) => n !== here && n.ids.has(requester.id)) : [])];
    const servers = requester?.servers.length ? requester.servers : here.rec.servers.length ? here.rec.servers : hostServers;
    if (q.qclass !== dns.CLASS_IN) return { kind: 'forward', servers };
    if (q.type === dns.TYPE_PTR) {
      const addr = reverseAddress(q.name);
      if (addr) {
        for (const n of mine) {
          const e = n.byAddr.get(canonical(addr));
          if (e) return { kind: 'answer', rcode: dns.RCODE_NOERROR, answers: e.names.map((name) => ({ type: dns.TYPE_PTR, ttlS: LOCAL_TTL_S, data: dns.encodeName(`${name}.${n.rec.domain}`) })) };
        }
        if (mine.some((n) => n.rec.gateways.some((g) => inPrefix(addr, g)))) return { kind: 'answer', rcode: dns.RCODE_NXDOMAIN, answers: [] };
      }
      return { kind: 'forward', servers };
    }
    let underDomain = false;
    for (const n of mine) {
      const d = n.rec.domain;
      let name = q.name;
      if (d && name.endsWith(`.${d}`)) {
        name = name.slice(0, -d.length - 1);
        underDomain = true;
      } else if (d && name === d) {
        underDomain = true;
        continue;
      }
      const found = n.answers.get(name);
      if (!found) continue;
      // shared, read-only lists: buildResponse only reads them
      const answers = q.type === dns.TYPE_A ? found.a : q.type === dns.TYPE_AAAA ? found.aaaa : q.type === dns.TYPE_ANY ? found.any : [];
      return { kind: 'answer', rcode: dns.RCODE_NOERROR, answers };
    }
    if (underDomain || (q.name !== '' && !q.name.includes('.')) || here.rec.noForward) return { kind: 'answer', rcode: dns.RCODE_NXDOMAIN, answers: [] };
    return { kind: 'forward', servers };
  }
}
