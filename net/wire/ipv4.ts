/**
 * IPv4 headers (RFC 791). check(b) verifies version, header length, total length against the
 * buffer and the header checksum, and reports fragments; after it passes, accessors stay in
 * bounds and `payloadEnd(b)` <= b.length (trailing Ethernet padding is excluded).
 */
import { finish, sum16 } from './checksum.js';

export const IPV4_HDR_LEN = 20;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

export function check(b: Uint8Array): string | null {
  if (b.length < IPV4_HDR_LEN) return 'truncated';
  if (b[0] >> 4 !== 4) return 'bad-version';
  const ihl = (b[0] & 0x0f) * 4;
  if (ihl < IPV4_HDR_LEN || ihl > b.length) return 'bad-header-length';
  const total = (b[2] << 8) | b[3];
  if (total < ihl || total > b.length) return 'bad-length';
  if (finish(sum16(b, 0, ihl)) !== 0) return 'bad-checksum';
  // More-fragments set or a non-zero offset: we do not reassemble (neither does passt).
  if ((b[6] & 0x20) !== 0 || (((b[6] & 0x1f) << 8) | b[7]) !== 0) return 'fragment';
  return null;
}

export const headerLength = (b: Uint8Array): number => (b[0] & 0x0f) * 4;
export const payloadEnd = (b: Uint8Array): number => (b[2] << 8) | b[3];
export const ttl = (b: Uint8Array): number => b[8];
export const protocol = (b: Uint8Array): number => b[9];
/** Source address: a view into `b`. */
export const src = (b: Buffer): Buffer => b.subarray(12, 16);
export const dst = (b: Buffer): Buffer => b.subarray(16, 20);

/** Writes a 20-byte header (no options, DF set) with its checksum at `off`; returns 20. */
export function emit(h: { src: Uint8Array; dst: Uint8Array; protocol: number; payloadLength: number; ttl?: number; id?: number }, out: Buffer, off = 0): number {
  out[off] = 0x45;
  out[off + 1] = 0;
  out.writeUInt16BE(IPV4_HDR_LEN + h.payloadLength, off + 2);
  out.writeUInt16BE(h.id ?? 0, off + 4);
  out.writeUInt16BE(0x4000, off + 6); // DF: we never fragment (RFC 791 section 3.1)
  out[off + 8] = h.ttl ?? 64;
  out[off + 9] = h.protocol;
  out.writeUInt16BE(0, off + 10);
  out.set(h.src, off + 12);
  out.set(h.dst, off + 16);
  out.writeUInt16BE(finish(sum16(out, off, off + IPV4_HDR_LEN)), off + 10);
  return IPV4_HDR_LEN;
}

/** "10.0.2.2" -> 4 bytes; null when malformed. */
export function parseAddr(text: string): Buffer | null {
  const p = text.split('.');
  if (p.length !== 4 || !p.every((x) => /^\d{1,3}$/.test(x) && Number(x) < 256)) return null;
  return Buffer.from(p.map(Number));
}

export function formatAddr(b: Uint8Array, off = 0): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}
