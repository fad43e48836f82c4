/**
 * The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sums.
 *
 * `sum16` returns an unfolded 32-bit-safe partial sum so that sums over several pieces can be
 * added before one `fold`. Odd-length pieces must come last (only the final piece may be odd).
 */

/** Adds the 16-bit big-endian words of b[start, end) to `acc` (RFC 1071 section 4.1). */
export function sum16(b: Uint8Array, start: number, end: number, acc = 0): number {
  let i = start;
  // Eight bytes per turn keep the loop short; the accumulator stays below 2^53 for any frame size.
  for (; i + 7 < end; i += 8) acc += ((b[i] << 8) | b[i + 1]) + ((b[i + 2] << 8) | b[i + 3]) + ((b[i + 4] << 8) | b[i + 5]) + ((b[i + 6] << 8) | b[i + 7]);
  for (; i + 1 < end; i += 2) acc += (b[i] << 8) | b[i + 1];
  if (i < end) acc += b[i] << 8;
  return acc;
}

/** Folds a partial sum to 16 bits (not complemented). */
export function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

/** The checksum field value for a partial sum: the complement of the folded sum. */
export function finish(acc: number): number {
  return ~fold(acc) & 0xffff;
}

/** Pseudo-header partial sum for IPv4 (RFC 793 section 3.1): addresses, protocol, L4 length. */
export function pseudo4(b: Uint8Array, srcOff: number, dstOff: number, proto: number, l4Len: number): number {
  return sum16(b, srcOff, srcOff + 4, sum16(b, dstOff, dstOff + 4, proto + l4Len));
}

/** Pseudo-header partial sum for IPv6 (RFC 8200 section 8.1). */
export function pseudo6(b: Uint8Array, srcOff: number, dstOff: number, proto: number, l4Len: number): number {
  return sum16(b, srcOff, srcOff + 16, sum16(b, dstOff, dstOff + 16, proto + Math.floor(l4Len / 0x10000) + (l4Len & 0xffff)));
}
