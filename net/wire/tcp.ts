/**
 * TCP segment headers (RFC 9293) and the options we speak: MSS (kind 2), window scale (3,
 * RFC 7323), SACK-permitted (4) and SACK blocks (5, RFC 2018). Timestamps are skipped.
 *
 * check(b, off, end) verifies the header and data offset against [off, end); after it passes,
 * `parse` stays in bounds. Malformed options end option parsing (as Linux does) rather than
 * dropping the segment.
 */
export const TCP_HDR_LEN = 20;
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;

export interface TcpOptions {
  mss?: number;
  wscale?: number;
  sackOk?: boolean;
  /** SACK blocks as [left, right) sequence pairs. */
  sack?: Array<[number, number]>;
}

export interface TcpHeader {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options: TcpOptions;
  /** Offset of the payload in the buffer given to parse. */
  payloadOff: number;
}

export function check(b: Uint8Array, off: number, end: number): string | null {
  if (end - off < TCP_HDR_LEN) return 'truncated';
  const hl = (b[off + 12] >> 4) * 4;
  if (hl < TCP_HDR_LEN || off + hl > end) return 'bad-data-offset';
  if (((b[off] << 8) | b[off + 1]) === 0 || ((b[off + 2] << 8) | b[off + 3]) === 0) return 'port-zero';
  return null;
}

const u32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

export function parse(b: Uint8Array, off: number): TcpHeader {
  const hl = (b[off + 12] >> 4) * 4;
  return {
    srcPort: (b[off] << 8) | b[off + 1],
    dstPort: (b[off + 2] << 8) | b[off + 3],
    seq: u32(b, off + 4),
    ack: u32(b, off + 8),
    flags: b[off + 13] & 0x3f,
    window: (b[off + 14] << 8) | b[off + 15],
    options: hl > TCP_HDR_LEN ? parseOptions(b, off + TCP_HDR_LEN, off + hl) : {},
    payloadOff: off + hl,
  };
}

function parseOptions(b: Uint8Array, i: number, end: number): TcpOptions {
  const o: TcpOptions = {};
  while (i < end) {
    const kind = b[i];
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const len = b[i + 1];
    if (len < 2 || i + len > end) break;
    if (kind === 2 && len === 4) o.mss = (b[i + 2] << 8) | b[i + 3];
    else if (kind === 3 && len === 3) o.wscale = Math.min(b[i + 2], 14); // RFC 7323 section 2.3
    else if (kind === 4 && len === 2) o.sackOk = true;
    else if (kind === 5 && len >= 10 && (len - 2) % 8 === 0) {
      o.sack = [];
      for (let j = i + 2; j + 8 <= i + len; j += 8) o.sack.push([u32(b, j), u32(b, j + 4)]);
    }
    i += len;
  }
  return o;
}

/** Bytes the options take on the wire, padded to 4. */
export function optionsLength(o: TcpOptions): number {
  let n = 0;
  if (o.mss !== undefined) n += 4;
  if (o.wscale !== undefined) n += 4; // NOP + 3
  if (o.sackOk) n += 4; // NOP NOP + 2
  if (o.sack?.length) n += 4 + 8 * o.sack.length; // NOP NOP + 2 + 8n
  return n;
}

/**
 * Writes the header and options at `off` with a zero checksum (the caller fills it in, or leaves
 * the pseudo-header sum for the kernel to complete); returns the header length.
 */
export function emit(h: Omit<TcpHeader, 'payloadOff'>, out: Buffer, off = 0): number {
  const hl = TCP_HDR_LEN + optionsLength(h.options);
  out.writeUInt16BE(h.srcPort, off);
  out.writeUInt16BE(h.dstPort, off + 2);
  out.writeUInt32BE(h.seq >>> 0, off + 4);
  out.writeUInt32BE(h.ack >>> 0, off + 8);
  out[off + 12] = (hl / 4) << 4;
  out[off + 13] = h.flags;
  out.writeUInt16BE(h.window, off + 14);
  out.writeUInt32BE(0, off + 16); // checksum + urgent pointer
  let i = off + TCP_HDR_LEN;
  const o = h.options;
  if (o.mss !== undefined) {
    out[i++] = 2;
    out[i++] = 4;
    out.writeUInt16BE(o.mss, i);
    i += 2;
  }
  if (o.wscale !== undefined) {
    out[i++] = 1;
    out[i++] = 3;
    out[i++] = 3;
    out[i++] = o.wscale;
  }
  if (o.sackOk) {
    out[i++] = 1;
    out[i++] = 1;
    out[i++] = 4;
    out[i++] = 2;
  }
  if (o.sack?.length) {
    out[i++] = 1;
    out[i++] = 1;
    out[i++] = 5;
    out[i++] = 2 + 8 * o.sack.length;
    for (const [l, r] of o.sack) {
      out.writeUInt32BE(l >>> 0, i);
      out.writeUInt32BE(r >>> 0, i + 4);
      i += 8;
    }
  }
  return hl;
}

/** Sequence-space comparisons (RFC 9293 section 3.4, modulo 2^32). */
export const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
export const seqLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0;
export const seqAdd = (a: number, n: number): number => (a + n) >>> 0;
export const seqDiff = (a: number, b: number): number => (a - b) | 0;
