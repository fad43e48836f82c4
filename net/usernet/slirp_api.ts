/**
 * slirp4netns 1.2's API socket, for clients that speak it (podman's `port_handler=slirp4netns`,
 * rootlesskit, scripts): one request per connection. The client writes one JSON object and
 * shuts down writing (or just waits); the answer comes once the object is complete or at EOF,
 * as one JSON object with no newline, and the connection is closed.
 *
 *   {"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80}}
 *     -> {"return":{"id":1}}
 *   {"execute":"list_hostfwd"} -> {"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}
 *     (slirp4netns's own shape: no "return" around it)
 *   {"execute":"remove_hostfwd","arguments":{"id":1}} -> {"return":{}}
 *
 * Errors are slirp4netns's texts, `{"error":{"desc":"bad request: ..."}}`: "cannot parse JSON",
 * "json_object() failed" (valid JSON that is not an object), "no execute found", "unknown
 * execute", "<command>: bad arguments.<field>", "add_hostfwd: slirp_add_hostfwd failed" (the
 * port cannot be bound), "too large message" (4096 bytes or more, slirp4netns's read buffer).
 * Where slirp4netns crashes (add_hostfwd without arguments or without proto) or accepts nonsense
 * (port 70000, 8080.5, a guest address that is not the guest), this answers "bad arguments".
 * The parsing is pure ({@link answerRequest}); {@link serveSlirpApi} is the socket.
 */
import net from 'node:net';
import * as ipv4 from '../wire/ipv4.js';
import type { PortSpec } from '../ports/portspec.js';
import { listenUnix } from './api.js';

/** slirp4netns reads a request with one read() into a 4096-byte buffer. */
export const MAX_REQUEST = 4096;

/** What the API changes: the stack's forwards. */
export interface SlirpForwards {
  add(spec: PortSpec): Promise<{ id: number }>;
  remove(id: number): boolean;
  list(): Array<{ id: number; spec: PortSpec }>;
}

const bad = (desc: string) => ({ error: { desc: `bad request: ${desc}` } });
const isPort = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535;

/** The answer to one request's text, as slirp4netns gives it. */
export async function answerRequest(text: string, fwd: SlirpForwards, guest4: string): Promise<object> {
  if (Buffer.byteLength(text) >= MAX_REQUEST) return bad('too large message');
  let req: unknown;
  try {
    req = JSON.parse(text);
  } catch {
    return bad('cannot parse JSON');
  }
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return bad('json_object() failed');
  const r = req as { execute?: unknown; arguments?: unknown };
  if (typeof r.execute !== 'string') return bad('no execute found');
  const a = (typeof r.arguments === 'object' && r.arguments !== null && !Array.isArray(r.arguments) ? r.arguments : null) as Record<string, unknown> | null;
  switch (r.execute) {
    case 'add_hostfwd': {
      if (!a) return bad('add_hostfwd: bad arguments');
      if (a.proto !== 'tcp' && a.proto !== 'udp') return bad('add_hostfwd: bad arguments.proto');
      const hostAddr = a.host_addr ?? '0.0.0.0';
      if (typeof hostAddr !== 'string' || (hostAddr !== '' && !ipv4.parseAddr(hostAddr))) return bad('add_hostfwd: bad arguments.host_addr');
      if (!isPort(a.host_port)) return bad('add_hostfwd: bad arguments.host_port');
      const guestAddr = a.guest_addr ?? '';
      // the stack has one guest: the address podman leaves empty for "the recommended guest"
      if (typeof guestAddr !== 'string' || (guestAddr !== '' && guestAddr !== guest4)) return bad('add_hostfwd: bad arguments.guest_addr');
      if (!isPort(a.guest_port)) return bad('add_hostfwd: bad arguments.guest_port');
      try {
        const e = await fwd.add({ proto: a.proto, hostAddr: hostAddr === '0.0.0.0' ? '' : hostAddr, hostPort: a.host_port, guestPort: a.guest_port, count: 1 });
        return { return: { id: e.id } };
      } catch {
        return bad('add_hostfwd: slirp_add_hostfwd failed');
      }
    }
    case 'list_hostfwd':
      return {
        entries: fwd.list().map((e) => ({ id: e.id, proto: e.spec.proto, host_addr: e.spec.hostAddr || '0.0.0.0', host_port: e.spec.hostPort, guest_addr: guest4, guest_port: e.spec.guestPort })),
      };
    case 'remove_hostfwd': {
      const id = a?.id;
      if (typeof id !== 'number' || !Number.isInteger(id) || !fwd.remove(id)) return bad('remove_hostfwd: bad arguments.id');
      return { return: {} };
    }
    default:
      return bad('unknown execute');
  }
}

/** Whether `text` already holds one whole JSON value (the client need not shut down writing). */
function complete(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Serves the API on `path` (replacing a stale socket file); returns a closer that removes it. */
export function serveSlirpApi(path: string, fwd: SlirpForwards, guest4: string): Promise<() => void> {
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    let text = '';
    let answered = false;
    const answer = () => {
      if (answered) return;
      answered = true;
      if (!text.trim()) return void sock.end(); // EOF with nothing asked: nothing to answer
      void answerRequest(text, fwd, guest4).then((reply) => sock.end(JSON.stringify(reply)));
    };
    sock.on('error', () => sock.destroy());
    sock.setTimeout(30_000, () => sock.destroy());
    sock.on('data', (d: Buffer) => {
      if (answered) return;
      text += d.toString();
      if (Buffer.byteLength(text) >= MAX_REQUEST || complete(text)) answer();
    });
    sock.on('end', answer);
  });
  return listenUnix(path, server);
}
