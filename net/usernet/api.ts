/**
 * The API socket of a running stack: one JSON request per line on a unix socket, one JSON reply
 * per line, in slirp4netns's shape so existing clients work:
 *   {"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "0.0.0.0", "host_port": 8080, "guest_port": 80}}
 *     -> {"return": {"id": 1}}
 *   {"execute": "list_hostfwd"}  -> {"return": {"entries": [{"id", "proto", "host_addr", "host_port", "guest_addr", "guest_port"}]}}
 *   {"execute": "remove_hostfwd", "arguments": {"id": 1}} -> {"return": {}}
 *   {"execute": "stats"} -> {"return": {"link": {...}, "stack": {...}, "flows": {...}}}
 * Errors are {"error": {"desc": "..."}}. burrow also accepts "spec" ("8080:80/tcp") in add_hostfwd.
 */
import fs from 'node:fs';
import net from 'node:net';
import { chooseHostPorts } from '../ports/host_ports.js';
import { formatPortSpec, parsePortSpec, type PortSpec } from '../ports/portspec.js';
import type { Forwarder } from './forward.js';

export interface ApiContext {
  forwarder: Forwarder;
  guest4: string;
  stats(): Record<string, unknown>;
}

async function handle(ctx: ApiContext, req: unknown): Promise<unknown> {
  const r = req as { execute?: unknown; arguments?: Record<string, unknown> };
  const a = r?.arguments ?? {};
  switch (r?.execute) {
    case 'add_hostfwd': {
      let specs: PortSpec[];
      if (typeof a.spec === 'string') specs = await chooseHostPorts(parsePortSpec(a.spec));
      else {
        const proto = a.proto ?? 'tcp';
        const hostPort = Number(a.host_port);
        const guestPort = Number(a.guest_port);
        if ((proto !== 'tcp' && proto !== 'udp') || !Number.isInteger(hostPort) || !Number.isInteger(guestPort)) throw new Error('add_hostfwd needs proto (tcp|udp), host_port and guest_port');
        const hostAddr = typeof a.host_addr === 'string' && a.host_addr !== '0.0.0.0' ? a.host_addr : '';
        specs = parsePortSpec(`${hostAddr.includes(':') ? `[${hostAddr}]:` : hostAddr ? `${hostAddr}:` : ''}${hostPort}:${guestPort}/${proto}`);
      }
      const ids: number[] = [];
      for (const s of specs) ids.push((await ctx.forwarder.add(s)).id);
      return { id: ids[0], ids };
    }
    case 'list_hostfwd':
      return {
        entries: ctx.forwarder.list().map((e) => ({ id: e.id, proto: e.spec.proto, host_addr: e.spec.hostAddr || '0.0.0.0', host_port: e.spec.hostPort, guest_addr: ctx.guest4, guest_port: e.spec.guestPort, count: e.spec.count, spec: formatPortSpec(e.spec), counters: e.counters })),
      };
    case 'remove_hostfwd': {
      const id = Number(a.id);
      if (!ctx.forwarder.remove(id)) throw new Error(`no forward with id ${a.id}`);
      return {};
    }
    case 'stats':
      return ctx.stats();
    default:
      throw new Error(`unknown command ${JSON.stringify(r?.execute)} (known: add_hostfwd, list_hostfwd, remove_hostfwd, stats)`);
  }
}

/** Has `server` listen on unix socket `path` (replacing a stale socket file, mode 0600); returns a closer that removes it. */
export async function listenUnix(path: string, server: net.Server): Promise<() => void> {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // absent
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  fs.chmodSync(path, 0o600);
  return () => {
    server.close();
    fs.rmSync(path, { force: true });
  };
}

/** Serves the API on `path`; returns a closer that removes it. */
export async function serveApi(path: string, ctx: ApiContext): Promise<() => void> {
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('error', () => undefined);
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.length > 65536) return void sock.destroy(); // a client that never sends a newline
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let req: unknown;
        try {
          req = JSON.parse(line);
        } catch {
          sock.write(`${JSON.stringify({ error: { desc: 'request is not JSON' } })}\n`);
          continue;
        }
        handle(ctx, req).then(
          (ret) => sock.write(`${JSON.stringify({ return: ret })}\n`),
          (err: Error) => sock.write(`${JSON.stringify({ error: { desc: err.message } })}\n`),
        );
      }
    });
  });
  return listenUnix(path, server);
}

/**
 * Sends one request to an API socket and resolves to its "return" (throws its "error"). Speaks to
 * burrow's stack (a reply ends with a newline) and to slirp4netns's (a reply ends when it closes
 * the connection), so `--network slirp4netns` and `burrow port` share this one client.
 */
export function callApi(path: string, req: unknown, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    let buf = '';
    let done = false;
    const finish = (text: string | null, err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) return reject(err);
      let reply: { return?: unknown; error?: { desc?: string } };
      try {
        reply = JSON.parse(text!) as typeof reply;
      } catch {
        return reject(new Error(`${path} answered with something that is not JSON: ${JSON.stringify(text!.slice(0, 200))}`));
      }
      if (reply.error) reject(new Error(reply.error.desc ?? JSON.stringify(reply.error)));
      else resolve(reply.return);
    };
    const timer = setTimeout(() => finish(null, new Error(`no answer from ${path} within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err: NodeJS.ErrnoException) => finish(null, new Error(`cannot reach the API socket ${path}: ${err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no stack is listening there' : err.message}`)));
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(buf.slice(0, nl));
    });
    sock.on('close', () => finish(buf.trim() ? buf : null, buf.trim() ? undefined : new Error(`${path} closed the connection without an answer`)));
  });
}
