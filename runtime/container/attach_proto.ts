/**
 * The attach protocol between a container's supervisor and `burrow attach` (and `run -it`,
 * `start -a`) over the container's unix socket, and podman's detach keys. Pure code.
 *
 * Frames are `type (1 byte) | length (4 bytes, big-endian) | payload`.
 *   client -> supervisor: HELLO {"rows","cols","stdin"} first, then STDIN bytes, STDIN_EOF,
 *                         RESIZE rows(2) cols(2), SIGNAL "SIGTERM"
 *   supervisor -> client: INFO {"tty","stdin","name"} first, then STDOUT / STDERR bytes, and
 *                         EXIT code(4, signed) once the container ended and was cleaned up
 */
export const Frame = {
  HELLO: 0x01,
  STDIN: 0x02,
  STDIN_EOF: 0x03,
  RESIZE: 0x04,
  SIGNAL: 0x05,
  INFO: 0x11,
  STDOUT: 0x12,
  STDERR: 0x13,
  EXIT: 0x14,
} as const;

/** Larger frames are a protocol error (the sender is not burrow). */
export const MAX_FRAME = 1 << 20;

export class AttachProtocolError extends Error {}

export function encodeFrame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

export const resizeFrame = (rows: number, cols: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(Math.max(0, Math.min(0xffff, rows)), 0);
  b.writeUInt16BE(Math.max(0, Math.min(0xffff, cols)), 2);
  return encodeFrame(Frame.RESIZE, b);
};

export const exitFrame = (code: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(code, 0);
  return encodeFrame(Frame.EXIT, b);
};

export function parseResize(p: Buffer): { rows: number; cols: number } {
  if (p.length !== 4) throw new AttachProtocolError(`a RESIZE frame has 4 bytes, not ${p.length}`);
  return { rows: p.readUInt16BE(0), cols: p.readUInt16BE(2) };
}

export function parseExit(p: Buffer): number {
  if (p.length !== 4) throw new AttachProtocolError(`an EXIT frame has 4 bytes, not ${p.length}`);
  return p.readInt32BE(0);
}

/** Splits a byte stream into frames; throws AttachProtocolError on an oversized or unknown frame. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(data: Buffer): Array<{ type: number; payload: Buffer }> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: Array<{ type: number; payload: Buffer }> = [];
    while (this.buf.length >= 5) {
      const type = this.buf[0];
      const len = this.buf.readUInt32BE(1);
      if (!Object.values(Frame).includes(type as never)) throw new AttachProtocolError(`unknown frame type 0x${type.toString(16)}`);
      if (len > MAX_FRAME) throw new AttachProtocolError(`a frame of ${len} bytes (at most ${MAX_FRAME})`);
      if (this.buf.length < 5 + len) break;
      out.push({ type, payload: Buffer.from(this.buf.subarray(5, 5 + len)) });
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
}

/** podman's default: ctrl-p, ctrl-q. */
export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

/**
 * podman's --detach-keys: a comma-separated sequence of single characters and ctrl-<c>, where c
 * is a letter or one of @ [ \ ] ^ _ . "" disables detaching (an empty sequence).
 */
export function parseDetachKeys(spec: string): Buffer {
  if (spec === '') return Buffer.alloc(0);
  const bytes = spec.split(',').map((k) => {
    if (k.length === 1) return k.charCodeAt(0);
    const m = /^ctrl-(.)$/i.exec(k);
    if (m) {
      const c = m[1].toLowerCase();
      if (c >= 'a' && c <= 'z') return c.charCodeAt(0) - 0x60;
      const special = '@[\\]^_'.indexOf(c);
      if (special >= 0) return [0x00, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f][special];
    }
    throw new AttachProtocolError(`invalid detach key "${k}" in --detach-keys "${spec}": use single characters or ctrl-<a-z, @, [, \\, ], ^, _>, separated by commas`);
  });
  return Buffer.from(bytes);
}

/**
 * Watches input for the detach sequence. Bytes that start the sequence are held back until it
 * either completes (detach: they are never sent) or breaks (they go out, in order).
 */
export class DetachMatcher {
  private held = 0;

  constructor(private readonly keys: Buffer) {}

  push(chunk: Buffer): { forward: Buffer; detach: boolean } {
    if (!this.keys.length) return { forward: chunk, detach: false };
    const out: number[] = [];
    for (const b of chunk) {
      if (b === this.keys[this.held]) {
        this.held++;
        if (this.held === this.keys.length) return { forward: Buffer.from(out), detach: true };
        continue;
      }
      // the sequence broke: what was held goes out, and this byte may start it again
      for (let i = 0; i < this.held; i++) out.push(this.keys[i]);
      this.held = 0;
      if (b === this.keys[0]) this.held = 1;
      else out.push(b);
    }
    return { forward: Buffer.from(out), detach: false };
  }
}
