/**
 * ICMPv6 (RFC 4443) echo, and the Neighbor Discovery messages a router answers (RFC 4861):
 * router/neighbor solicitations and advertisements with the source/target link-layer address,
 * prefix information, MTU and RDNSS (RFC 8106) options. check(b, off, end, pseudoSum) verifies
 * the length and the checksum (the pseudo-header partial sum is passed in).
 */
import { finish, sum16 } from './checksum.js';

export const ICMPV6_HDR_LEN = 4;
export const DEST_UNREACH = 1;
export const ECHO_REQUEST = 128;
export const ECHO_REPLY = 129;
export const ROUTER_SOLICIT = 133;
export const ROUTER_ADVERT = 134;
export const NEIGHBOR_SOLICIT = 135;
export const NEIGHBOR_ADVERT = 136;

const OPT_SOURCE_LL = 1;
const OPT_TARGET_LL = 2;
const OPT_PREFIX = 3;
const OPT_MTU = 5;
const OPT_RDNSS = 25;

export function check(b: Uint8Array, off: number, end: number, pseudoSum: number): string | null {
  if (end - off < ICMPV6_HDR_LEN + 4) return 'truncated';
  if (finish(sum16(b, off, end, pseudoSum)) !== 0) return 'bad-checksum';
  return null;
}

export const type = (b: Uint8Array, off: number): number => b[off];
export const code = (b: Uint8Array, off: number): number => b[off + 1];

/** Target address of a neighbor solicitation: a view into `b` (needs 24 bytes, else null). */
export function nsTarget(b: Buffer, off: number, end: number): Buffer | null {
  return end - off >= 24 ? b.subarray(off + 8, off + 24) : null;
}

export interface RouterAdvert {
  mac: Uint8Array;
  mtu: number;
  prefix: Uint8Array;
  prefixLength: number;
  dns?: Uint8Array;
  lifetimeS: number;
}

/** Bytes {@link emitRouterAdvert} writes for `ra`. */
export function routerAdvertLength(ra: RouterAdvert): number {
  return 16 + 8 + 8 + 32 + (ra.dns ? 24 : 0);
}

/** Writes a router advertisement (the whole ICMPv6 message, checksum left 0); returns its length. */
export function emitRouterAdvert(ra: RouterAdvert, out: Buffer, off: number): number {
  let i = off;
  out[i++] = ROUTER_ADVERT;
  out[i++] = 0;
  out.writeUInt16BE(0, i);
  i += 2;
  out[i++] = 64; // cur hop limit
  out[i++] = 0; // M=0 O=0: addresses by SLAAC
  out.writeUInt16BE(ra.lifetimeS, i); // router lifetime
  i += 2;
  out.writeUInt32BE(0, i); // reachable time
  out.writeUInt32BE(0, i + 4); // retrans timer
  i += 8;
  out[i++] = OPT_SOURCE_LL;
  out[i++] = 1;
  out.set(ra.mac.subarray(0, 6), i);
  i += 6;
  out[i++] = OPT_MTU;
  out[i++] = 1;
  out.writeUInt16BE(0, i);
  out.writeUInt32BE(ra.mtu, i + 2);
  i += 6;
  out[i++] = OPT_PREFIX;
  out[i++] = 4;
  out[i++] = ra.prefixLength;
  out[i++] = 0xc0; // L (on-link) and A (autonomous), RFC 4861 section 4.6.2
  out.writeUInt32BE(0xffffffff, i); // valid lifetime
  out.writeUInt32BE(0xffffffff, i + 4); // preferred lifetime
  out.writeUInt32BE(0, i + 8);
  out.set(ra.prefix.subarray(0, 16), i + 12);
  i += 28;
  if (ra.dns) {
    out[i++] = OPT_RDNSS;
    out[i++] = 3;
    out.writeUInt16BE(0, i);
    out.writeUInt32BE(0xffffffff, i + 2);
    out.set(ra.dns.subarray(0, 16), i + 6);
    i += 22;
  }
  return i - off;
}

/** Bytes {@link emitNeighborAdvert} writes. */
export const NEIGHBOR_ADVERT_LEN = 32;

/**
 * Writes a neighbor advertisement for `target` with our MAC; returns its length. `solicited` is
 * false when it answers a DAD probe, which goes to all-nodes (RFC 4861 section 7.2.4).
 */
export function emitNeighborAdvert(target: Uint8Array, mac: Uint8Array, out: Buffer, off: number, solicited = true): number {
  out[off] = NEIGHBOR_ADVERT;
  out[off + 1] = 0;
  out.writeUInt16BE(0, off + 2);
  out.writeUInt32BE(solicited ? 0xe0000000 : 0xa0000000, off + 4); // R (router), S (solicited), O (override)
  out.set(target.subarray(0, 16), off + 8);
  out[off + 24] = OPT_TARGET_LL;
  out[off + 25] = 1;
  out.set(mac.subarray(0, 6), off + 26);
  return 32;
}

/** Destination-unreachable codes (RFC 4443 section 3.1). */
export const UNREACH_NO_ROUTE = 0;
export const UNREACH_PROHIBITED = 1;
export const UNREACH_ADDRESS = 3;
export const UNREACH_PORT = 4;

/**
 * Writes a destination-unreachable message quoting `invoking` (as much of the offending packet
 * as fits a 1280-byte IPv6 packet, RFC 4443 section 3.1; the caller trims it); returns its
 * length, 8 + invoking.length. Checksum left 0.
 */
export function emitDestUnreach(code: number, invoking: Uint8Array, out: Buffer, off: number): number {
  out[off] = DEST_UNREACH;
  out[off + 1] = code;
  out.writeUInt32BE(0, off + 2);
  out.writeUInt16BE(0, off + 6);
  out.set(invoking, off + 8);
  return 8 + invoking.length;
}

/** Fills the checksum of the ICMPv6 message at [off, end) given the pseudo-header partial sum. */
export function setChecksum(out: Buffer, off: number, end: number, pseudoSum: number): void {
  out.writeUInt16BE(0, off + 2);
  out.writeUInt16BE(finish(sum16(out, off, end, pseudoSum)), off + 2);
}
