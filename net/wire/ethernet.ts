/**
 * Ethernet II frames (IEEE 802.3 with EtherType). check(b) guarantees the 14-byte header is there;
 * VLAN tags are not parsed (a tagged frame has EtherType 0x8100 and is dropped by the stack).
 */
export const ETH_HDR_LEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;

export const BROADCAST = Buffer.from('ffffffffffff', 'hex');

export function check(b: Uint8Array): string | null {
  return b.length < ETH_HDR_LEN ? 'truncated' : null;
}

/** Destination MAC: a view into `b`. */
export const dst = (b: Buffer): Buffer => b.subarray(0, 6);
/** Source MAC: a view into `b`. */
export const src = (b: Buffer): Buffer => b.subarray(6, 12);
export const etherType = (b: Buffer): number => (b[12] << 8) | b[13];

/** Writes the header at `off`; returns ETH_HDR_LEN. */
export function emit(h: { dst: Uint8Array; src: Uint8Array; etherType: number }, out: Buffer, off = 0): number {
  out.set(h.dst, off);
  out.set(h.src, off + 6);
  out.writeUInt16BE(h.etherType, off + 12);
  return ETH_HDR_LEN;
}

/** "aa:bb:..." -> 6 bytes. Throws on a malformed address (configuration input only). */
export function parseMac(text: string): Buffer {
  const m = /^([0-9a-f]{2})(?::([0-9a-f]{2})){5}$/i.exec(text);
  if (!m) throw new Error(`invalid MAC address "${text}"`);
  return Buffer.from(text.replace(/:/g, ''), 'hex');
}

export function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, '0')).join(':');
}
