/**
 * NodeHostSockets' TCP reads (onread into a shared buffer): what the stack keeps by reference is
 * never overwritten by a later read on the same or another socket, small reads and large alike,
 * and pause() stops the reads until resume().
 */
import test from 'ava';
import net from 'node:net';
import { NodeHostSockets } from './host_sockets.js';
import type { HostTcpHandlers } from '../stack/host.js';

function server(t: import('ava').ExecutionContext, onConn: (c: net.Socket) => void): Promise<number> {
  const s = net.createServer(onConn);
  t.teardown(() => void s.close());
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port)));
}

/** Connects through NodeHostSockets; resolves with every chunk it delivered (kept by reference, as the stack keeps them) once the peer ends. */
function collect(hs: NodeHostSockets, port: number, onChunk?: (n: number, pause: () => void, resume: () => void) => void): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const h: HostTcpHandlers = {
      onConnect: () => undefined,
      onData: (d) => {
        chunks.push(d);
        total += d.length;
        onChunk?.(total, () => tcp.pause(), () => tcp.resume());
      },
      onEnd: () => {
        tcp.destroy();
        resolve(chunks);
      },
      onDrain: () => undefined,
      onError: (code) => reject(new Error(code)),
    };
    const tcp = hs.connectTcp(4, '127.0.0.1', port, h);
  });
}

const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

test('chunks kept by reference stay intact across later reads of the same and another socket, small reads and large', async (t) => {
  // small writes spaced out (one read each), then large ones, then small again; each connection its own bytes
  const partsOf = (k: number) => [pattern(100, 1 + k), pattern(200, 2 + k), pattern(60_000, 3 + k), pattern(300_000, 4 + k), pattern(50, 5 + k)];
  let conns = 0;
  const port = await server(t, (c) => {
    const parts = partsOf(conns++);
    let i = 0;
    const next = () => {
      if (i === parts.length) return void c.end();
      c.write(parts[i++], () => setTimeout(next, 5));
    };
    next();
  });
  const hs = new NodeHostSockets();
  const got = await Promise.all([collect(hs, port), collect(hs, port)]);
  // which connection is which: the first byte tells
  const wants = [0, 1].map((k) => Buffer.concat(partsOf(k)));
  for (const g of got) {
    const all = Buffer.concat(g);
    t.true(g.length >= 5, 'one read per spaced write at least');
    t.true(all.equals(wants[0]) || all.equals(wants[1]), 'every kept chunk still holds what was read into it');
  }
  t.false(Buffer.concat(got[0]).equals(Buffer.concat(got[1])));
});

test('pause stops delivery until resume, with nothing lost', async (t) => {
  const want = pattern(2 << 20, 9);
  const port = await server(t, (c) => c.end(want));
  const hs = new NodeHostSockets();
  let paused = false;
  let deliveredWhilePaused = 0;
  const got = await collect(hs, port, (total, pause, resume) => {
    if (paused) deliveredWhilePaused++;
    if (!paused && total >= 256 << 10 && total < 512 << 10) {
      paused = true;
      pause();
      setTimeout(() => {
        paused = false;
        resume();
      }, 100);
    }
  });
  t.is(deliveredWhilePaused, 0);
  t.true(Buffer.concat(got).equals(want));
});
