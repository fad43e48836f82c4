/**
 * The dhcp plugin's RPC with its daemon, as the reference speaks it: Go's net/rpc over an HTTP
 * CONNECT on a unix socket, gob-encoded (../shared/reference/dhcp.md section 2). Two methods:
 * DHCP.Allocate (ADD and CHECK: skel.CmdArgs in, a types100.Result back) and DHCP.Release (DEL:
 * CmdArgs in, an empty struct back). One call per connection from the plugin; the server takes
 * several in turn.
 */
import net from 'node:net';
import { GobDecoder, GobEncoder, type GobValue, type StructSchema } from '../../net/gob/gob.js';

export const DEFAULT_SOCKET = '/run/cni/dhcp.sock';
const CONNECT = 'CONNECT /_goRPC_ HTTP/1.0\n\n';
const CONNECTED = 'HTTP/1.0 200 Connected to Go RPC\n\n';
/** The plugin's wait for an answer: longer than any acquisition the daemon allows. */
export const CALL_TIMEOUT_MS = 300_000;

const REQUEST: StructSchema = { struct: 'Request', fields: [['ServiceMethod', 'string'], ['Seq', 'uint']] };
const RESPONSE: StructSchema = { struct: 'Response', fields: [['ServiceMethod', 'string'], ['Seq', 'uint'], ['Error', 'string']] };
export const CMD_ARGS: StructSchema = { struct: 'CmdArgs', fields: [['ContainerID', 'string'], ['Netns', 'string'], ['IfName', 'string'], ['Args', 'string'], ['Path', 'string'], ['StdinData', 'bytes']] };
const IPNET: StructSchema = { struct: 'IPNet', fields: [['IP', 'bytes'], ['Mask', 'bytes']] };
const INTERFACE: StructSchema = { struct: 'Interface', fields: [['Name', 'string'], ['Mac', 'string'], ['Sandbox', 'string']] };
const IPCONFIG: StructSchema = { struct: 'IPConfig', fields: [['Interface', 'int'], ['Address', IPNET], ['Gateway', 'bytes']] };
const ROUTE: StructSchema = { struct: 'Route', fields: [['Dst', IPNET], ['GW', 'bytes']] };
const DNS: StructSchema = { struct: 'DNS', fields: [['Nameservers', { slice: 'string' }], ['Domain', 'string'], ['Search', { slice: 'string' }], ['Options', { slice: 'string' }]] };
export const RESULT: StructSchema = { struct: 'Result', fields: [['CNIVersion', 'string'], ['Interfaces', { slice: INTERFACE }], ['IPs', { slice: IPCONFIG }], ['Routes', { slice: ROUTE }], ['DNS', DNS]] };
export const EMPTY: StructSchema = { struct: '', fields: [] };

export interface CmdArgs {
  ContainerID: string;
  Netns: string;
  IfName: string;
  Args: string;
  Path: string;
  StdinData: Buffer;
}

/** Result as it travels: addresses as 4- or 16-byte Buffers, masks as bytes. */
export interface GobResult {
  IPs?: Array<{ Address: { IP: Buffer; Mask: Buffer }; Gateway?: Buffer }>;
  Routes?: Array<{ Dst: { IP: Buffer; Mask: Buffer }; GW?: Buffer }>;
}

export class RpcError extends Error {}

/** Reads the bytes up to the end of the HTTP head ("\n\n" or "\r\n\r\n"). */
function head(buf: Buffer): { text: string; rest: Buffer } | null {
  for (const sep of ['\r\n\r\n', '\n\n']) {
    const i = buf.indexOf(sep);
    if (i >= 0) return { text: buf.subarray(0, i).toString('latin1'), rest: buf.subarray(i + sep.length) };
  }
  return null;
}

/**
 * One call to the daemon at `socket`; resolves to the reply's value, rejects with an RpcError
 * whose message is the reference plugin's ("error dialing DHCP daemon: ...", "error calling
 * DHCP.Allocate: ...").
 */
export function call(socket: string, method: 'DHCP.Allocate' | 'DHCP.Release', args: CmdArgs, timeoutMs = CALL_TIMEOUT_MS): Promise<GobValue> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socket);
    let connected = false;
    let buf = Buffer.alloc(0);
    let http = false;
    const dec = new GobDecoder();
    let response: Record<string, GobValue> | null = null;
    const done = (err: Error | null, v?: GobValue) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    const timer = setTimeout(() => done(new RpcError(`error calling ${method}: no answer from the DHCP daemon at ${socket} within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    sock.on('connect', () => {
      connected = true;
      // the call goes after the server's answer: Go's server hijacks the connection and drops
      // whatever its HTTP reader had buffered beyond the request head
      sock.write(CONNECT);
    });
    sock.on('error', (err: NodeJS.ErrnoException) => done(new RpcError(connected ? `error calling ${method}: ${err.message}` : `error dialing DHCP daemon: dial unix ${socket}: connect: ${err.code === 'ENOENT' ? 'no such file or directory' : err.code === 'ECONNREFUSED' ? 'connection refused' : err.message}`)));
    sock.on('close', () => done(new RpcError(`error calling ${method}: the DHCP daemon closed the connection without answering`)));
    sock.on('data', (d: Buffer) => {
      try {
        if (!http) {
          buf = Buffer.concat([buf, d]);
          const h = head(buf);
          if (!h) return;
          if (`${h.text}\n\n` !== CONNECTED) return done(new RpcError(`error dialing DHCP daemon: unexpected HTTP response: ${h.text.split('\n')[0]}`));
          http = true;
          d = h.rest;
          const enc = new GobEncoder();
          sock.write(Buffer.concat([enc.encode(REQUEST, { ServiceMethod: method, Seq: 0 }), enc.encode(CMD_ARGS, args)]));
        }
        dec.push(d);
        for (let v = dec.next(); v; v = dec.next()) {
          if (!response) {
            response = v.value as Record<string, GobValue>;
            continue;
          }
          if (response.Error) return done(new RpcError(`error calling ${method}: ${String(response.Error)}`));
          return done(null, v.value);
        }
      } catch (err) {
        done(new RpcError(`error calling ${method}: ${(err as Error).message}`));
      }
    });
  });
}

export type Handler = (method: string, args: CmdArgs) => Promise<{ schema: StructSchema; value: unknown }>;

/**
 * Serves one connection: the HTTP CONNECT, then calls in turn until the client closes. A
 * malformed stream closes the connection (Go's server does the same); a failed call answers
 * with its error and an empty body, as Go's server does.
 */
export function serveConnection(sock: net.Socket, handle: Handler, onBad: (why: string) => void): void {
  let buf = Buffer.alloc(0);
  let http = false;
  const dec = new GobDecoder();
  const enc = new GobEncoder();
  let pending: Record<string, GobValue> | null = null;
  let chain = Promise.resolve();
  sock.on('error', () => undefined);
  sock.on('data', (d: Buffer) => {
    try {
      if (!http) {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 4096) throw new Error('HTTP head too long');
        const h = head(buf);
        if (!h) return;
        const [verb, path] = h.text.split(/\s+/);
        if (verb !== 'CONNECT' || path !== '/_goRPC_') {
          sock.end('HTTP/1.0 405 must CONNECT\n\n');
          onBad(`not an RPC CONNECT: ${h.text.split('\n')[0].slice(0, 80)}`);
          return;
        }
        http = true;
        sock.write(CONNECTED);
        d = h.rest;
      }
      dec.push(d);
      for (let v = dec.next(); v; v = dec.next()) {
        if (!pending) {
          pending = v.value as Record<string, GobValue>;
          continue;
        }
        const req = pending;
        pending = null;
        const args = v.value as Record<string, GobValue>;
        const method = String(req.ServiceMethod ?? '');
        const seq = req.Seq ?? 0;
        const a: CmdArgs = { ContainerID: str(args.ContainerID), Netns: str(args.Netns), IfName: str(args.IfName), Args: str(args.Args), Path: str(args.Path), StdinData: Buffer.isBuffer(args.StdinData) ? args.StdinData : Buffer.alloc(0) };
        chain = chain.then(async () => {
          let out: Buffer;
          try {
            const r = await handle(method, a);
            out = Buffer.concat([enc.encode(RESPONSE, { ServiceMethod: method, Seq: seq }), enc.encode(r.schema, r.value)]);
          } catch (err) {
            out = Buffer.concat([enc.encode(RESPONSE, { ServiceMethod: method, Seq: seq, Error: (err as Error).message || 'error' }), enc.encode(EMPTY, {})]);
          }
          if (!sock.destroyed) sock.write(out);
        });
      }
    } catch (err) {
      onBad((err as Error).message);
      sock.destroy();
    }
  });
}

const str = (v: GobValue | undefined): string => (typeof v === 'string' ? v : '');
