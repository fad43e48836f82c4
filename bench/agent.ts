/**
 * The bench's small programs that run inside a namespace (started with nsenter):
 *
 *   serve HOST HTTP_PORT ECHO_PORT   an HTTP/1.1 server (2-byte body) and a TCP echo server;
 *                                    prints "ready"
 *   http URL SECONDS CONCURRENCY     undici Pool with CONCURRENCY connections, as many requests
 *                                    as it can; prints {"rps":N,"failed":N}
 *   rr HOST PORT SECONDS             TCP_RR-style: one byte out, one byte back, on one
 *                                    connection, over and over; prints {"n":N,"p50us":..,"p99us":..}
 *   hold HOST PORT                   accepts connections and keeps them open; prints "ready"
 *   open HOST PORT COUNT             opens COUNT connections, prints {"open":N}, keeps them
 */
import http from 'node:http';
import net from 'node:net';
import { percentile } from './stats.js';

function serve(host: string, httpPort: number, echoPort: number): void {
  let pending = 2;
  const ready = () => {
    if (--pending === 0) console.log('ready');
  };
  http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    req.resume();
    res.end('ok');
  }).listen({ host, port: httpPort, backlog: 1024 }, ready);
  net.createServer((c) => {
    c.setNoDelay(true);
    c.on('error', () => undefined);
    c.pipe(c);
  }).listen({ host, port: echoPort }, ready);
}

async function httpClient(url: string, seconds: number, concurrency: number): Promise<void> {
  const { Pool } = await import('undici');
  const u = new URL(url);
  // A request that stalls counts as failed instead of hanging the run.
  const pool = new Pool(u.origin, { connections: concurrency, pipelining: 1, headersTimeout: 5000, bodyTimeout: 5000, connectTimeout: 5000 });
  let done = 0;
  let failed = 0;
  const end = Date.now() + seconds * 1000;
  const worker = async () => {
    while (Date.now() < end) {
      try {
        const r = await pool.request({ path: u.pathname, method: 'GET' });
        await r.body.dump();
        done++;
      } catch {
        failed++;
        if (failed > 1000) return;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const secs = (performance.now() - t0) / 1000;
  await pool.close();
  console.log(JSON.stringify({ rps: done / secs, failed }));
}

async function rrClient(host: string, port: number, seconds: number): Promise<void> {
  const sock = net.connect({ host, port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  const one = Buffer.from([0x5a]);
  await new Promise<void>((resolve, reject) => {
    let t0 = performance.now();
    sock.on('data', (d: Buffer) => {
      // one byte per round trip: a chunk of several means several answers (never here)
      for (let i = 0; i < d.length; i++) lat.push((performance.now() - t0) * 1000);
      if (performance.now() >= end) return resolve();
      t0 = performance.now();
      sock.write(one);
    });
    sock.on('error', reject);
    sock.write(one);
  });
  sock.destroy();
  console.log(JSON.stringify({ n: lat.length, p50us: percentile(lat, 50), p99us: percentile(lat, 99) }));
}

function hold(host: string, port: number): void {
  const conns: net.Socket[] = [];
  net.createServer((c) => {
    c.on('error', () => undefined);
    conns.push(c);
  }).listen({ host, port, backlog: 4096 }, () => console.log('ready'));
}

async function open(host: string, port: number, count: number): Promise<void> {
  const socks: net.Socket[] = [];
  let ok = 0;
  // in batches, so a slow stack sees a realistic rate of SYNs rather than one burst
  for (let i = 0; i < count; i += 64) {
    await Promise.all(Array.from({ length: Math.min(64, count - i) }, () => new Promise<void>((resolve) => {
      const s = net.connect({ host, port });
      socks.push(s);
      s.once('connect', () => {
        ok++;
        resolve();
      });
      s.once('error', () => resolve());
      s.setTimeout(5000, () => {
        s.destroy();
        resolve();
      });
    })));
  }
  for (const s of socks) s.setTimeout(0);
  console.log(JSON.stringify({ open: ok }));
}

/** Runs the agent role in argv (after "--agent"); resolves when a client is done. */
export async function agent(argv: string[]): Promise<void> {
  const [role, ...a] = argv;
  if (role === 'serve') return serve(a[0], Number(a[1]), Number(a[2]));
  if (role === 'http') return httpClient(a[0], Number(a[1]), Number(a[2]));
  if (role === 'rr') return rrClient(a[0], Number(a[1]), Number(a[2]));
  if (role === 'hold') return hold(a[0], Number(a[1]));
  if (role === 'open') return open(a[0], Number(a[1]), Number(a[2]));
  throw new Error(`unknown agent role "${role}"`);
}
