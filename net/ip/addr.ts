/**
 * IP address and CIDR arithmetic for IPv4 and IPv6.
 *
 * ipaddr.js parses, validates and formats at the edges (RFC 5952 output for
 * IPv6); inside, an address is a `bigint` so that offsets, ranges, containment
 * and overlap are plain integer arithmetic for both families. Parsing is
 * strict: four-part decimal IPv4 only (no "10.1" or octal), no zone IDs.
 */
import ipaddr from 'ipaddr.js';
import { BurrowError } from '../../native/errors.js';

export type Family = 4 | 6;

/** An address: its family and its value as an unsigned integer. */
export interface Ip {
  readonly family: Family;
  readonly value: bigint;
}

/** A prefix as written ("10.88.0.5/16"): the address as given, and its length. */
export interface Cidr {
  readonly ip: Ip;
  readonly prefixLen: number;
}

/** An inclusive range of addresses of one family. */
export interface IpRange {
  readonly start: Ip;
  readonly end: Ip;
}

/** Bad address text. `code` is "EADDR". */
export class AddressError extends BurrowError {
  constructor(message: string) {
    super('EADDR', message);
  }
}

/** Width of a family in bits. */
export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

function maxOf(family: Family): bigint {
  return (1n << BigInt(bitsOf(family))) - 1n;
}

/** Returns 4 or 6 for a well-formed address, else null. Never throws. */
export function ipFamily(text: string): Family | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return 4;
  if (!text.includes('%') && ipaddr.IPv6.isValid(text)) return 6;
  return null;
}

/** Parses an address. Throws AddressError naming the text. */
export function parseIp(text: string): Ip {
  const family = ipFamily(text);
  if (family === null) throw new AddressError(`invalid IP address "${text}"`);
  const bytes = ipaddr.parse(text).toByteArray();
  return { family, value: bytesToBigint(bytes) };
}

function bytesToBigint(bytes: ArrayLike<number>): bigint {
  let v = 0n;
  for (let i = 0; i < bytes.length; i++) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/** Formats an address: dotted quad, or RFC 5952 compressed IPv6. */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    const n = Number(ip.value);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  const parts: number[] = [];
  for (let i = 7; i >= 0; i--) parts.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  return new ipaddr.IPv6(parts).toRFC5952String();
}

/** Network byte order bytes (4 or 16), e.g. for netlink attributes. */
export function ipToBuffer(ip: Ip): Buffer {
  const len = ip.family === 4 ? 4 : 16;
  const out = Buffer.alloc(len);
  let v = ip.value;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Inverse of {@link ipToBuffer}; the family follows the length (4 or 16). */
export function ipFromBuffer(b: Uint8Array): Ip {
  if (b.length !== 4 && b.length !== 16) throw new AddressError(`an IP address is 4 or 16 bytes, got ${b.length}`);
  return { family: b.length === 4 ? 4 : 6, value: bytesToBigint(b) };
}

/** Parses "addr/len". With `strict`, host bits must be zero (a network address). */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): Cidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new AddressError(`invalid CIDR "${text}": missing "/prefix"`);
  const ip = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  const prefixLen = /^\d{1,3}$/.test(lenText) ? Number(lenText) : NaN;
  if (!(prefixLen >= 0 && prefixLen <= bitsOf(ip.family))) {
    throw new AddressError(`invalid CIDR "${text}": prefix length must be 0-${bitsOf(ip.family)}`);
  }
  const cidr = { ip, prefixLen };
  if (opts.strict && networkOf(cidr).value !== ip.value) {
    throw new AddressError(`invalid subnet "${text}": host bits are set (the network is ${formatCidr({ ip: networkOf(cidr), prefixLen })})`);
  }
  return cidr;
}

/** "addr/len" with the address as given. */
export function formatCidr(c: Cidr): string {
  return `${formatIp(c.ip)}/${c.prefixLen}`;
}

/** The netmask as an integer. */
export function maskOf(family: Family, prefixLen: number): bigint {
  const bits = BigInt(bitsOf(family));
  return maxOf(family) ^ ((1n << (bits - BigInt(prefixLen))) - 1n);
}

/** Dotted/colon netmask text ("255.255.0.0"). */
export function formatMask(family: Family, prefixLen: number): string {
  return formatIp({ family, value: maskOf(family, prefixLen) });
}

/** The network address (host bits cleared). */
export function networkOf(c: Cidr): Ip {
  return { family: c.ip.family, value: c.ip.value & maskOf(c.ip.family, c.prefixLen) };
}

/** The last address of the prefix (the IPv4 broadcast address). */
export function lastOf(c: Cidr): Ip {
  return { family: c.ip.family, value: networkOf(c).value | (maxOf(c.ip.family) ^ maskOf(c.ip.family, c.prefixLen)) };
}

/** The canonical network prefix of `c` ("10.88.0.0/16" for "10.88.3.4/16"). */
export function canonical(c: Cidr): Cidr {
  return { ip: networkOf(c), prefixLen: c.prefixLen };
}

/** Number of addresses in the prefix. */
export function sizeOf(c: Cidr): bigint {
  return 1n << BigInt(bitsOf(c.ip.family) - c.prefixLen);
}

/**
 * The usable host range, as CNI's host-local computes it by default: from
 * network+1 to broadcast-1 for IPv4, and to the last address for IPv6.
 * Null for prefixes too small to allocate from (/31, /32, /127, /128).
 */
export function usableRange(c: Cidr): IpRange | null {
  const tooSmall = c.ip.family === 4 ? c.prefixLen >= 31 : c.prefixLen >= 127;
  if (tooSmall) return null;
  const net = networkOf(c).value;
  const last = lastOf(c).value;
  return { start: { family: c.ip.family, value: net + 1n }, end: { family: c.ip.family, value: c.ip.family === 4 ? last - 1n : last } };
}

/** The conventional gateway: the network address plus one. */
export function defaultGateway(c: Cidr): Ip {
  return { family: c.ip.family, value: networkOf(c).value + 1n };
}

/** True when `ip` lies inside prefix `c` (same family). */
export function contains(c: Cidr, ip: Ip): boolean {
  return c.ip.family === ip.family && (ip.value & maskOf(ip.family, c.prefixLen)) === networkOf(c).value;
}

/** True when `inner` is wholly inside `outer`. */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefixLen >= outer.prefixLen && contains(outer, inner.ip);
}

/** True when the two prefixes share any address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.ip.family !== b.ip.family) return false;
  return a.prefixLen <= b.prefixLen ? contains(a, b.ip) : contains(b, a.ip);
}

/** True when two inclusive ranges share any address. */
export function rangesOverlap(a: IpRange, b: IpRange): boolean {
  return a.start.family === b.start.family && a.start.value <= b.end.value && b.start.value <= a.end.value;
}

/** `ip + n`, or null when that leaves the address space. */
export function offsetIp(ip: Ip, n: bigint | number): Ip | null {
  const v = ip.value + BigInt(n);
  return v < 0n || v > maxOf(ip.family) ? null : { family: ip.family, value: v };
}

/** The next address, or null past the end of the address space. */
export function nextIp(ip: Ip): Ip | null {
  return offsetIp(ip, 1n);
}

/** The previous address, or null before 0. */
export function prevIp(ip: Ip): Ip | null {
  return offsetIp(ip, -1n);
}

/** Orders by family, then value: negative, zero or positive. */
export function compareIp(a: Ip, b: Ip): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** True when both are the same address. */
export function ipEquals(a: Ip, b: Ip): boolean {
  return a.family === b.family && a.value === b.value;
}

/** True when `ip` lies in the inclusive range. */
export function inRange(r: IpRange, ip: Ip): boolean {
  return r.start.family === ip.family && ip.value >= r.start.value && ip.value <= r.end.value;
}

/** Yields every address of an inclusive range in order (lazily; ranges may be huge). */
export function* iterateRange(r: IpRange): Generator<Ip> {
  for (let v = r.start.value; v <= r.end.value; v++) yield { family: r.start.family, value: v };
}

/** Parses "a.b.c.d-e.f.g.h" or a CIDR into an inclusive range (podman's --ip-range). */
export function parseRange(text: string): IpRange {
  if (text.includes('/')) {
    const c = parseCidr(text);
    return { start: networkOf(c), end: lastOf(c) };
  }
  const dash = text.indexOf('-');
  if (dash < 0) throw new AddressError(`invalid IP range "${text}": expected CIDR or START-END`);
  const start = parseIp(text.slice(0, dash));
  const end = parseIp(text.slice(dash + 1));
  if (start.family !== end.family || start.value > end.value) throw new AddressError(`invalid IP range "${text}": start must not be after end and both must be one family`);
  return { start, end };
}

/** IPv4 as uint32, for hot loops that want plain numbers. */
export function ipv4ToUint32(ip: Ip): number {
  if (ip.family !== 4) throw new AddressError(`"${formatIp(ip)}" is not IPv4`);
  return Number(ip.value);
}

/** uint32 to IPv4. */
export function uint32ToIpv4(n: number): Ip {
  return { family: 4, value: BigInt(n >>> 0) };
}
