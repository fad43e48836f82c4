/**
 * ICMPv4 (RFC 792): echo request/reply and destination unreachable. check(b, off, end) verifies
 * the length and the checksum over [off, end).
 */
import { finish, sum16 } from './checksum.js';

export const ICMP_HDR_LEN = 8;
export const ECHO_REPLY = 0;
export const DEST_UNREACH = 3;
export const ECHO_REQUEST = 8;
/** Destination-unreachable codes (RFC 792, RFC 1812 section 5.2.7.1). */
export const UNREACH_NET = 0;
export const UNREACH_HOST = 1;
export const UNREACH_PORT = 3;
export const UNREACH_ADMIN = 13;

export function check(b: Uint8Array, off: number, end: number): string | null {
  if (end - off < ICMP_HDR_LEN) return 'truncated';
  if (finish(sum16(b, off, end)) !== 0) return 'bad-checksum';
  return null;
}

export const type = (b: Uint8Array, off: number): number => b[off];
export const code = (b: Uint8Array, off: number): number => b[off + 1];
/** Echo identifier and sequence (meaningful for echo messages). */
export const echoId = (b: Uint8Array, off: number): number => (b[off + 4] << 8) | b[off + 5];
export const echoSeq = (b: Uint8Array, off: number): number => (b[off + 6] << 8) | b[off + 7];

/** Bytes {@link emit} writes for a message with `bodyLength` bytes of body. */
export const byteLength = (bodyLength: number): number => ICMP_HDR_LEN + bodyLength;

/**
 * Writes an ICMP message at `off`: type, code, the 4-byte rest-of-header word and `body`, with
 * its checksum; returns the length.
 */
export function emit(m: { type: number; code: number; rest: number; body: Uint8Array }, out: Buffer, off = 0): number {
  out[off] = m.type;
  out[off + 1] = m.code;
  out.writeUInt16BE(0, off + 2);
  out.writeUInt32BE(m.rest >>> 0, off + 4);
  out.set(m.body, off + 8);
  const end = off + ICMP_HDR_LEN + m.body.length;
  out.writeUInt16BE(finish(sum16(out, off, end)), off + 2);
  return end - off;
}
