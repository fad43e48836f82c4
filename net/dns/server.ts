/**
 * The DNS server's sockets: UDP and TCP on port 53 of every gateway address in the loaded
 * records, local answers from {@link RecordSet}, and forwarding of other names to the host's
 * resolvers. The process around it (record files, control socket, lifetime) is
 * plugins/dnsname/server.ts.
 *
 * Theory of operation
 * -------------------
 * - `load(records)` swaps the record set in one step (queries in flight finish against the old
 *   one) and then binds what is new and closes what went; sockets of gateways that stay are
 *   kept, so a reload drops no query. A gateway address that cannot be bound yet (the bridge
 *   lost it, or an IPv6 address is still tentative) is retried every 250 ms and reported.
 * - UDP goes through the addon's thread (native/dns_responder.cc) when the addon loads: it
 *   charges each query to its client's bucket, answers repeated questions from a cache of this
 *   server's own local answers (keyed by the client's address and the whole query after its
 *   id), and hands the rest to onMessage. The cache is emptied by every load(), so it never
 *   answers from records that are gone. Without the addon, a Node dgram socket feeds onMessage.
 *   Measured on 2 cores (bench/dns.ts): the thread serves a cached answer in about a third of
 *   the CPU time of a query through Node's dgram and JS.
 * - Every query is charged to its source address: {@link RateLimiter} per client (flood) on the
 *   JS path, the addon's buckets (hard limit and fair share) on the native one; then parsed.
 *   A message whose header cannot be read is dropped; one whose question cannot be read gets
 *   FORMERR; a response, or an opcode other than QUERY, gets its error code. Each of these
 *   is counted by reason and never throws.
 * - Forwarding: a new UDP socket per query (a random source port, RFC 5452), a new random id,
 *   the answer accepted only from the server asked with that id and the same question, 2 s per
 *   server before the next; the client's id is put back. Queries that came over TCP are
 *   forwarded over TCP. At most `maxForwards` queries are forwarded at once, and
 *   `maxForwardsPerClient` for one client; past that SERVFAIL.
 * - TCP: RFC 7766 framing (a 2-byte length), several queries per connection, at most
 *   `maxTcpPerClient` connections per client, closed after 10 s idle.
 */
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import * as dns from '../wire/dns.js';
import { addonAvailable, dnsResponder, dnsResponderClear, dnsResponderReply, dnsResponderStats, dnsResponderStop, type DnsResponder, type DnsResponderStats } from '../../native/mod.js';
import { RateLimiter } from './limit.js';
import { RecordSet } from './records.js';

export interface DnsServerOptions {
  port?: number;
  /** The port the resolvers listen on (53; tests use others). */
  forwardPort?: number;
  /** The resolvers for names that are not local (re-read by the owner on reload). */
  hostServers(): string[];
  log(msg: string): void;
  /** a client's hard limit: queries per second and burst */
  ratePerS?: number;
  burst?: number;
  /** a client's fair share, enforced while the native UDP socket is saturated (default 5,000/s) */
  sharePerS?: number;
  forwardTimeoutMs?: number;
  maxForwards?: number;
  maxForwardsPerClient?: number;
  maxTcpPerClient?: number;
  tcpIdleMs?: number;
  /** UDP through the addon's thread and answer cache (the default when the addon loads), or Node's dgram */
  nativeUdp?: boolean;
}

/** Where an answer goes; `cacheKind` (0 answer, 1 NXDOMAIN) marks it as cacheable for this query. */
type Sink = (reply: Buffer, cacheKind?: 0 | 1) => void;

/** One gateway's UDP socket, native or dgram. */
interface UdpEndpoint {
  /** forgets cached answers */
  clear(): void;
  stats(): DnsResponderStats | null;
  /** resolves once the port is free again */
  close(): Promise<void>;
}

// A client's hard limit is far above what any resolver library asks (glibc, musl: a few queries
// per lookup) and above what one server can answer on a small machine, so it bounds a flood, not
// a busy client; the fair share applies only once the native socket is saturated.
const RATE_PER_S = 200_000;
const BURST = 200_000;
const SHARE_PER_S = 5_000;

const BIND_RETRY_MS = 250;

const literalLookup = (address: string, _family: unknown, cb: (err: Error | null, address: string, family: number) => void) => cb(null, address, address.includes(':') ? 6 : 4);

export class DnsServer {
  records = new RecordSet([]);
  private readonly own = new Map<string, number>();
  /** the native sockets' counters, of those closed since */
  private readonly retired: DnsResponderStats[] = [];
  private readonly native: boolean;
  private readonly udp = new Map<string, UdpEndpoint>();
  private readonly closing = new Map<string, Promise<void>>();
  private readonly tcp = new Map<string, net.Server>();
  private readonly pendingBind = new Map<string, string>();
  private retry: NodeJS.Timeout | null = null;
  private readonly limiter: RateLimiter;
  private forwards = 0;
  private readonly forwardsBy = new Map<string, number>();
  private readonly tcpBy = new Map<string, number>();
  private readonly port: number;
  private closed = false;

  constructor(private readonly o: DnsServerOptions) {
    this.port = o.port ?? dns.PORT;
    this.limiter = new RateLimiter(o.ratePerS ?? RATE_PER_S, o.burst ?? BURST);
    this.native = o.nativeUdp ?? addonAvailable();
  }

  count(reason: string): void {
    this.own.set(reason, (this.own.get(reason) ?? 0) + 1);
  }

  /** Every count by reason: JS's own and the native sockets' (cache hits, drops). */
  get counters(): Map<string, number> {
    const out = new Map(this.own);
    const add = (k: string, n: number) => n && out.set(k, (out.get(k) ?? 0) + n);
    for (const st of [...this.retired, ...[...this.udp.values()].map((u) => u.stats())]) {
      if (!st) continue;
      add('answered', st.answered);
      add('nxdomain', st.nxdomain);
      add('rate-limited', st.limited);
      add('shed', st.shed);
      add('queue-full', st.queueFull);
      add('malformed-oversized', st.oversized);
    }
    return out;
  }

  /** The native sockets' answer caches now: answers served from them (ever) and answers held. */
  cacheStats(): { hits: number; cached: number } {
    const live = [...this.udp.values()].map((u) => u.stats()).filter((x) => x !== null);
    const hits = [...this.retired, ...live].reduce((n, st) => n + st.answered + st.nxdomain, 0);
    return { hits, cached: live.reduce((n, st) => n + st.cached, 0) };
  }

  /** true when UDP is served by the addon's thread (with its answer cache) */
  get nativeUdp(): boolean {
    return this.native;
  }

  /** Swaps in `records` and binds or closes sockets to match; resolves with what could not be bound (yet). */
  async load(records: RecordSet): Promise<Array<{ ip: string; error: string }>> {
    this.records = records;
    for (const u of this.udp.values()) u.clear();
    const want = new Set(records.gateways());
    for (const ip of [...this.udp.keys()]) if (!want.has(ip)) this.unbind(ip);
    for (const ip of [...this.pendingBind.keys()]) if (!want.has(ip)) this.pendingBind.delete(ip);
    await Promise.all([...want].filter((ip) => !this.udp.has(ip)).map((ip) => this.bind(ip)));
    this.armRetry();
    return [...this.pendingBind].map(([ip, error]) => ({ ip, error }));
  }

  /** The addresses bound now. */
  bound(): string[] {
    return [...this.udp.keys()];
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearInterval(this.retry);
    for (const ip of [...this.udp.keys()]) this.unbind(ip);
    await Promise.all(this.closing.values());
  }

  private unbind(ip: string): void {
    const u = this.udp.get(ip);
    if (u) {
      const done = u.close().finally(() => this.closing.get(ip) === done && this.closing.delete(ip));
      this.closing.set(ip, done);
    }
    this.udp.delete(ip);
    this.tcp.get(ip)?.close();
    this.tcp.delete(ip);
  }

  private armRetry(): void {
    if (this.pendingBind.size && !this.retry && !this.closed) {
      this.retry = setInterval(() => {
        if (!this.pendingBind.size) {
          clearInterval(this.retry!);
          this.retry = null;
          return;
        }
        for (const ip of [...this.pendingBind.keys()]) void this.bind(ip);
      }, BIND_RETRY_MS);
      this.retry.unref();
    }
  }

  private async bind(ip: string): Promise<void> {
    const family = net.isIPv6(ip) ? 6 : 4;
    await this.closing.get(ip); // a socket of this address being closed: until its port is free
    const t = net.createServer({ noDelay: true }, (s) => this.onTcp(s, ip));
    let u: UdpEndpoint | undefined;
    try {
      u = this.native ? this.bindNative(ip) : await this.bindDgram(ip, family);
      await new Promise<void>((resolve, reject) => {
        t.once('error', reject);
        t.listen({ host: ip, port: this.port, exclusive: true, ipv6Only: family === 6 }, () => {
          t.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      void u?.close();
      t.close();
      const msg = (err as Error).message;
      if (this.pendingBind.get(ip) !== msg) this.o.log(`cannot listen on ${ip} port ${this.port} yet: ${msg} (retrying)`);
      this.pendingBind.set(ip, msg);
      return;
    }
    if (this.closed || !this.records.gateways().includes(ip)) {
      void u.close();
      t.close();
      this.pendingBind.delete(ip);
      return;
    }
    if (this.pendingBind.delete(ip)) this.o.log(`listening on ${ip} port ${this.port} now`);
    t.on('error', (err) => this.o.log(`tcp ${ip}: ${err.message}`));
    this.udp.set(ip, u);
    this.tcp.set(ip, t);
  }

  /** UDP through the addon's thread: cached answers never reach JS; misses come to onMessage. */
  private bindNative(ip: string): UdpEndpoint {
    const h: DnsResponder = dnsResponder(ip, this.port, this.o.ratePerS ?? RATE_PER_S, this.o.burst ?? BURST, this.o.sharePerS ?? SHARE_PER_S, (query, from, port) => {
      // the thread has charged the query to its client already
      this.onMessage(query, ip, from, false, (reply, kind) => dnsResponderReply(h, reply, from, port, query, kind ?? -1), true);
    }, () => gone());
    let gone: () => void = () => {};
    const done = new Promise<void>((resolve) => (gone = resolve));
    let closed = false;
    return {
      clear: () => dnsResponderClear(h),
      stats: () => dnsResponderStats(h),
      close: () => {
        if (!closed) {
          closed = true;
          this.retired.push(dnsResponderStats(h));
          dnsResponderStop(h);
        }
        return done;
      },
    };
  }

  /** UDP on a Node socket: every query through JS (when the addon is not there). */
  private async bindDgram(ip: string, family: 4 | 6): Promise<UdpEndpoint> {
    // Every address this socket binds or sends to is a literal (a gateway, a query's source), so
    // the lookup is the identity: dgram's default, dns.lookup, costs a tick and a parse per reply.
    const u = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6, lookup: literalLookup });
    try {
      await new Promise<void>((resolve, reject) => {
        u.once('error', reject);
        u.bind({ address: ip, port: this.port, exclusive: true }, () => {
          u.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      u.close();
      throw err;
    }
    u.on('error', (err) => this.o.log(`udp ${ip}: ${err.message}`));
    u.on('message', (msg, rinfo) => this.onMessage(msg, ip, rinfo.address, false, (reply) => u.send(reply, rinfo.port, rinfo.address)));
    return { clear: () => {}, stats: () => null, close: () => new Promise<void>((resolve) => u.close(() => resolve())) };
  }

  /** One query from `from` to gateway `local`; the answer goes to `reply`. Never throws. */
  onMessage(msg: Buffer, local: string, from: string, overTcp: boolean, reply: Sink, charged = false): void {
    if (!charged && !this.limiter.take(from, Date.now())) return this.count('rate-limited');
    const q = dns.parseQuery(msg);
    if (typeof q === 'string') {
      this.count(`malformed-${q}`);
      // a response (maybe reflected at us) gets nothing back; a query we cannot read, FORMERR
      if (msg.length >= dns.HDR_LEN && !dns.isResponse(msg)) reply(dns.buildHeaderOnly(msg, dns.RCODE_FORMERR));
      return;
    }
    const max = overTcp ? 65535 : q.udpSize;
    if (q.opcode !== dns.OPCODE_QUERY) {
      this.count('not-implemented');
      return reply(dns.buildResponse(msg, q, { rcode: dns.RCODE_NOTIMP, authoritative: false, answers: [] }, max));
    }
    let d;
    try {
      d = this.records.decide(q, local, from, this.o.hostServers());
    } catch (err) {
      this.count('internal-error');
      this.o.log(`answering ${q.name}: ${(err as Error).message}`);
      return reply(dns.buildResponse(msg, q, { rcode: dns.RCODE_SERVFAIL, authoritative: false, answers: [] }, max));
    }
    if (d.kind === 'answer') {
      const nx = d.rcode === dns.RCODE_NXDOMAIN;
      this.count(nx ? 'nxdomain' : 'answered');
      // a local answer is a function of the query and the records alone: cacheable until the next load
      return reply(dns.buildResponse(msg, q, { rcode: d.rcode, authoritative: true, answers: d.answers }, max), nx ? 1 : 0);
    }
    if (d.kind === 'refuse') {
      this.count(`refused-${d.why}`);
      return reply(dns.buildResponse(msg, q, { rcode: dns.RCODE_REFUSED, authoritative: false, answers: [] }, max));
    }
    const servers = d.servers.filter((s) => !this.udp.has(s) && !this.records.gateways().includes(s));
    const mine = this.forwardsBy.get(from) ?? 0;
    if (!servers.length || this.forwards >= (this.o.maxForwards ?? 1024) || mine >= (this.o.maxForwardsPerClient ?? 128)) {
      this.count(servers.length ? 'forward-limit' : 'no-forwarder');
      return reply(dns.buildResponse(msg, q, { rcode: dns.RCODE_SERVFAIL, authoritative: false, answers: [] }, max));
    }
    this.forwards++;
    this.forwardsBy.set(from, mine + 1);
    void this.forward(msg, servers, overTcp).then((answer) => {
      this.forwards--;
      const n = (this.forwardsBy.get(from) ?? 1) - 1;
      if (n) this.forwardsBy.set(from, n);
      else this.forwardsBy.delete(from);
      if (!answer) {
        this.count('forward-failed');
        return reply(dns.buildResponse(msg, q, { rcode: dns.RCODE_SERVFAIL, authoritative: false, answers: [] }, max));
      }
      this.count('forwarded');
      answer.writeUInt16BE(q.id, 0);
      reply(answer);
    });
  }

  /** Asks `servers` in turn; the answer (with our id), or null. */
  private async forward(query: Buffer, servers: string[], overTcp: boolean): Promise<Buffer | null> {
    const qEnd = dns.questionEnd(query);
    const question = query.subarray(dns.HDR_LEN, qEnd).toString('latin1').toLowerCase();
    for (const server of servers.slice(0, 3)) {
      const out = Buffer.from(query);
      const id = crypto.randomInt(0, 65536);
      out.writeUInt16BE(id, 0);
      const matches = (b: Buffer) => b.length >= dns.HDR_LEN && dns.isResponse(b) && dns.id(b) === id
        && dns.questionEnd(b) === qEnd && b.subarray(dns.HDR_LEN, qEnd).toString('latin1').toLowerCase() === question;
      const answer = overTcp ? await this.askTcp(out, server, matches) : await this.askUdp(out, server, matches);
      if (answer) return answer;
    }
    return null;
  }

  private askUdp(out: Buffer, server: string, matches: (b: Buffer) => boolean): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const s = dgram.createSocket(net.isIPv6(server) ? 'udp6' : 'udp4');
      let done = false;
      const finish = (b: Buffer | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.close();
        resolve(b);
      };
      const timer = setTimeout(() => finish(null), this.o.forwardTimeoutMs ?? 2000);
      s.on('error', () => finish(null));
      s.on('message', (b, rinfo) => {
        if (rinfo.address === server && rinfo.port === (this.o.forwardPort ?? dns.PORT) && matches(b)) finish(b);
        else this.count('forward-stray-answer');
      });
      s.send(out, this.o.forwardPort ?? dns.PORT, server, (err) => err && finish(null));
    });
  }

  private askTcp(out: Buffer, server: string, matches: (b: Buffer) => boolean): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const s = net.connect({ host: server, port: this.o.forwardPort ?? dns.PORT });
      let buf: Buffer = Buffer.alloc(0);
      let done = false;
      const finish = (b: Buffer | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.destroy();
        resolve(b);
      };
      const timer = setTimeout(() => finish(null), (this.o.forwardTimeoutMs ?? 2000) * 2);
      s.on('error', () => finish(null));
      s.on('close', () => finish(null));
      s.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        s.write(Buffer.concat([len, out]));
      });
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const b = buf.subarray(2, 2 + buf.readUInt16BE(0));
          finish(matches(b) ? Buffer.from(b) : null);
        }
      });
    });
  }

  private onTcp(s: net.Socket, local: string): void {
    const from = s.remoteAddress ?? '';
    const n = this.tcpBy.get(from) ?? 0;
    if (n >= (this.o.maxTcpPerClient ?? 16)) {
      this.count('tcp-limit');
      s.destroy();
      return;
    }
    this.tcpBy.set(from, n + 1);
    s.on('close', () => {
      const m = (this.tcpBy.get(from) ?? 1) - 1;
      if (m) this.tcpBy.set(from, m);
      else this.tcpBy.delete(from);
    });
    s.on('error', () => s.destroy());
    s.setTimeout(this.o.tcpIdleMs ?? 10_000, () => s.destroy());
    let buf: Buffer = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (len < dns.HDR_LEN) {
          this.count('malformed-truncated');
          s.destroy();
          return;
        }
        this.onMessage(msg, local, from, true, (reply) => {
          if (s.destroyed) return;
          const l = Buffer.alloc(2);
          l.writeUInt16BE(reply.length);
          s.write(Buffer.concat([l, reply]));
        });
      }
    });
  }
}

/** Every nameserver of a resolv.conf text, in order. */
export function resolvConfServers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && net.isIP(m[1].split('%')[0])) out.push(m[1].split('%')[0]);
  }
  return out;
}
