/**
 * IPv6 headers (RFC 8200). check(b) verifies the version and the payload length against the
 * buffer and walks extension headers (hop-by-hop, routing, destination options) to the upper
 * layer; fragments are reported. After it passes, `upper(b)` gives the upper-layer protocol and
 * offset, and `payloadEnd(b)` <= b.length.
 */
export const IPV6_HDR_LEN = 40;
export const NH_TCP = 6;
export const NH_UDP = 17;
export const NH_ICMPV6 = 58;
const NH_HOP = 0;
const NH_ROUTING = 43;
const NH_FRAGMENT = 44;
const NH_DSTOPTS = 60;
const NH_NONE = 59;

export function check(b: Uint8Array): string | null {
  if (b.length < IPV6_HDR_LEN) return 'truncated';
  if (b[0] >> 4 !== 6) return 'bad-version';
  if (IPV6_HDR_LEN + ((b[4] << 8) | b[5]) > b.length) return 'bad-length';
  const u = walk(b);
  return typeof u === 'string' ? u : null;
}

function walk(b: Uint8Array): { proto: number; off: number } | string {
  const end = payloadEnd(b);
  let nh = b[6];
  let off = IPV6_HDR_LEN;
  for (let hops = 0; hops < 8; hops++) {
    if (nh === NH_FRAGMENT) return 'fragment';
    if (nh === NH_NONE) return 'no-next-header';
    if (nh !== NH_HOP && nh !== NH_ROUTING && nh !== NH_DSTOPTS) return { proto: nh, off };
    if (off + 8 > end) return 'truncated';
    const next = b[off];
    off += (b[off + 1] + 1) * 8;
    if (off > end) return 'truncated';
    nh = next;
  }
  return 'too-many-extension-headers';
}

/** Upper-layer protocol and its offset; only after check(b) passed. */
export function upper(b: Uint8Array): { proto: number; off: number } {
  return walk(b) as { proto: number; off: number };
}

export const payloadEnd = (b: Uint8Array): number => IPV6_HDR_LEN + ((b[4] << 8) | b[5]);
export const hopLimit = (b: Uint8Array): number => b[7];
/** Source address: a view into `b`. */
export const src = (b: Buffer): Buffer => b.subarray(8, 24);
export const dst = (b: Buffer): Buffer => b.subarray(24, 40);

/** Writes a 40-byte header at `off`; returns 40. */
export function emit(h: { src: Uint8Array; dst: Uint8Array; nextHeader: number; payloadLength: number; hopLimit?: number }, out: Buffer, off = 0): number {
  out.writeUInt32BE(0x60000000, off);
  out.writeUInt16BE(h.payloadLength, off + 4);
  out[off + 6] = h.nextHeader;
  out[off + 7] = h.hopLimit ?? 64;
  out.set(h.src, off + 8);
  out.set(h.dst, off + 24);
  return IPV6_HDR_LEN;
}

/** Parses an IPv6 address (with "::" and an embedded IPv4 tail); null when malformed. */
export function parseAddr(text: string): Buffer | null {
  let s = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const p = v4[1].split('.').map(Number);
    if (p.some((x) => x > 255)) return null;
    s = `${s.slice(0, -v4[1].length)}${((p[0] << 8) | p[1]).toString(16)}:${((p[2] << 8) | p[3]).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const words = (x: string) => (x ? x.split(':') : []);
  const head = words(halves[0]);
  const rest = halves.length === 2 ? words(halves[1]) : [];
  if (![...head, ...rest].every((w) => /^[0-9a-f]{1,4}$/i.test(w))) return null;
  const n = head.length + rest.length;
  if (halves.length === 1 ? n !== 8 : n > 7) return null;
  const all = [...head.map((w) => parseInt(w, 16)), ...Array(8 - n).fill(0), ...rest.map((w) => parseInt(w, 16))];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** RFC 5952 text form. */
export function formatAddr(b: Uint8Array, off = 0): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[off + i * 2] << 8) | b[off + i * 2 + 1]);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(w);
  return `${hex(w.slice(0, best))}::${hex(w.slice(best + bestLen))}`;
}
