/**
 * UDP headers (RFC 768). check(b, off, end) verifies the length field against [off, end); after
 * it passes, the payload is [off + 8, off + length).
 */
export const UDP_HDR_LEN = 8;

export function check(b: Uint8Array, off: number, end: number): string | null {
  if (end - off < UDP_HDR_LEN) return 'truncated';
  const len = (b[off + 4] << 8) | b[off + 5];
  if (len < UDP_HDR_LEN || off + len > end) return 'bad-length';
  if (((b[off + 2] << 8) | b[off + 3]) === 0) return 'port-zero';
  return null;
}

export const srcPort = (b: Uint8Array, off: number): number => (b[off] << 8) | b[off + 1];
export const dstPort = (b: Uint8Array, off: number): number => (b[off + 2] << 8) | b[off + 3];
export const length = (b: Uint8Array, off: number): number => (b[off + 4] << 8) | b[off + 5];
export const checksum = (b: Uint8Array, off: number): number => (b[off + 6] << 8) | b[off + 7];

/** Writes the header with a zero checksum at `off`; returns 8. */
export function emit(h: { srcPort: number; dstPort: number; payloadLength: number }, out: Buffer, off = 0): number {
  out.writeUInt16BE(h.srcPort, off);
  out.writeUInt16BE(h.dstPort, off + 2);
  out.writeUInt16BE(UDP_HDR_LEN + h.payloadLength, off + 4);
  out.writeUInt16BE(0, off + 6);
  return UDP_HDR_LEN;
}
