/**
 * The wire format between a CNI plugin's native launcher (native/burrow-cni.c) and `burrow cni
 * serve` (plugins/serve.ts): one request and one response per unix stream connection.
 *
 * Request:  "BCNQ" | total length (u32 BE, of what follows) | fields
 *   fields: name (str) | root (str: the build ID, or the install root) | netns inode (u64) | euid (u32) | umask (u32)
 *           | env count (u32) | env entries "K=V" (str each) | stdin (str)
 *   str:    length (u32 BE) | bytes
 * Response: "BCNR" | total length (u32 BE) | status (u32) | exit code (u32) | stdout (str) | stderr (str)
 *   status: 0 served (exit code, stdout and stderr are the plugin's, byte for byte as the cold path
 *           prints them); 1 not served (the launcher runs the cold path: stdout holds why)
 *
 * The launcher sends what makes a call's outcome depend on the calling process: its build (the
 * same code), the caller's network namespace, euid and umask. The service serves only a caller
 * that matches it in all four; any other gets status 1 and the same result from the cold path.
 *
 * parseRequest checks every length against the buffer before reading: a truncated or oversized
 * request is a reason string, never a throw. Strings in the result are copies.
 */

export const REQUEST_MAGIC = 'BCNQ';
export const RESPONSE_MAGIC = 'BCNR';
/** A request larger than this (the launcher sends the whole environment and stdin) is refused. */
export const MAX_REQUEST_BYTES = 16 << 20;
const HEAD = 8;

export const enum ServeStatus {
  Served = 0,
  NotServed = 1,
}

export interface ServeRequest {
  /** The plugin's binary name (bridge, portmap, ...). */
  name: string;
  /** The burrow checkout or install the launcher runs the cold path from. */
  root: string;
  /** st_ino of the caller's /proc/self/ns/net. */
  netnsInode: bigint;
  euid: number;
  umask: number;
  env: Record<string, string>;
  stdin: Buffer;
}

export interface ServeResponse {
  status: ServeStatus;
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/**
 * How many bytes of `b` (a connection's data so far) the request needs in all: null until the
 * 8-byte head has arrived; a reason when the head is not a request's or announces too much.
 */
export function requestLength(b: Buffer): number | null | string {
  if (b.length < HEAD) return null;
  if (b.toString('latin1', 0, 4) !== REQUEST_MAGIC) return 'bad-magic';
  const n = b.readUInt32BE(4);
  if (n > MAX_REQUEST_BYTES) return 'too-large';
  return HEAD + n;
}

/** Decodes a whole request (requestLength bytes); a reason string when it is malformed. */
export function parseRequest(b: Buffer): ServeRequest | string {
  const total = requestLength(b);
  if (typeof total !== 'number') return total ?? 'truncated';
  if (b.length !== total) return 'bad-length';
  let off = HEAD;
  const need = (n: number) => off + n <= b.length;
  const u32 = (): number | null => {
    if (!need(4)) return null;
    off += 4;
    return b.readUInt32BE(off - 4);
  };
  const str = (): Buffer | null => {
    const n = u32();
    if (n === null || !need(n)) return null;
    off += n;
    return Buffer.from(b.subarray(off - n, off));
  };
  const name = str();
  const root = str();
  if (!name || !root || !need(8)) return 'truncated';
  const netnsInode = b.readBigUInt64BE(off);
  off += 8;
  const euid = u32();
  const umask = u32();
  const count = u32();
  if (euid === null || umask === null || count === null) return 'truncated';
  if (count > (b.length - off) / 4) return 'bad-count';
  const env: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const e = str();
    if (!e) return 'truncated';
    const s = e.toString();
    const eq = s.indexOf('=');
    if (eq <= 0) continue; // as execve's environment: an entry without a name is nobody's
    const k = s.slice(0, eq);
    if (!(k in env)) env[k] = s.slice(eq + 1); // getenv(3) takes the first
  }
  const stdin = str();
  if (!stdin) return 'truncated';
  if (off !== b.length) return 'trailing-bytes';
  return { name: name.toString(), root: root.toString(), netnsInode, euid, umask, env, stdin };
}

/** Encodes a request, as the launcher does (for tests and for in-process clients). */
export function emitRequest(r: ServeRequest): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const x = Buffer.alloc(4);
    x.writeUInt32BE(v >>> 0);
    parts.push(x);
  };
  const str = (v: Buffer | string) => {
    const x = typeof v === 'string' ? Buffer.from(v) : v;
    u32(x.length);
    parts.push(x);
  };
  str(r.name);
  str(r.root);
  const ino = Buffer.alloc(8);
  ino.writeBigUInt64BE(r.netnsInode);
  parts.push(ino);
  u32(r.euid);
  u32(r.umask);
  const env = Object.entries(r.env);
  u32(env.length);
  for (const [k, v] of env) str(`${k}=${v}`);
  str(r.stdin);
  return frame(REQUEST_MAGIC, Buffer.concat(parts));
}

/** Encodes a response. */
export function emitResponse(r: ServeResponse): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt32BE(r.status, 0);
  head.writeUInt32BE(r.exitCode >>> 0, 4);
  head.writeUInt32BE(r.stdout.length, 8);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(r.stderr.length);
  return frame(RESPONSE_MAGIC, Buffer.concat([head, r.stdout, len, r.stderr]));
}

/** Decodes a whole response; a reason string when it is truncated or malformed. */
export function parseResponse(b: Buffer): ServeResponse | string {
  if (b.length < HEAD + 16) return 'truncated';
  if (b.toString('latin1', 0, 4) !== RESPONSE_MAGIC) return 'bad-magic';
  if (b.readUInt32BE(4) !== b.length - HEAD) return 'bad-length';
  const status = b.readUInt32BE(8);
  const exitCode = b.readUInt32BE(12);
  const outLen = b.readUInt32BE(16);
  if (20 + outLen + 4 > b.length) return 'truncated';
  const errLen = b.readUInt32BE(20 + outLen);
  if (24 + outLen + errLen !== b.length) return 'bad-length';
  return { status, exitCode, stdout: Buffer.from(b.subarray(20, 20 + outLen)), stderr: Buffer.from(b.subarray(24 + outLen)) };
}

function frame(magic: string, body: Buffer): Buffer {
  const head = Buffer.alloc(HEAD);
  head.write(magic, 0, 'latin1');
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}
