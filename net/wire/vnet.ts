/**
 * struct virtio_net_hdr_v1 (12 bytes, little-endian on every host we run on): the header that
 * precedes each frame on a TAP opened with IFF_VNET_HDR and TUNSETVNETHDRSZ(12).
 *
 *   0 flags u8 | 1 gso_type u8 | 2 hdr_len u16 | 4 gso_size u16 | 6 csum_start u16 |
 *   8 csum_offset u16 | 10 num_buffers u16
 *
 * check(b) guarantees b holds a full header.
 */
export const VNET_HDR_LEN = 12;

/** flags: the checksum at csum_start+csum_offset is partial (virtio spec 5.1.6.2). */
export const F_NEEDS_CSUM = 1;
/** flags: the checksum was validated (receive side). */
export const F_DATA_VALID = 2;

export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_UDP = 3;
export const GSO_TCPV6 = 4;
export const GSO_UDP_L4 = 5;
export const GSO_ECN = 0x80;

export interface VnetHdr {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function check(b: Uint8Array): string | null {
  return b.length < VNET_HDR_LEN ? 'truncated' : null;
}

export function parse(b: Buffer): VnetHdr {
  return { flags: b[0], gsoType: b[1], hdrLen: b.readUInt16LE(2), gsoSize: b.readUInt16LE(4), csumStart: b.readUInt16LE(6), csumOffset: b.readUInt16LE(8) };
}

/** Writes `h` at `off` (num_buffers = 0); returns VNET_HDR_LEN. */
export function emit(h: VnetHdr, out: Buffer, off = 0): number {
  out[off] = h.flags;
  out[off + 1] = h.gsoType;
  out.writeUInt16LE(h.hdrLen, off + 2);
  out.writeUInt16LE(h.gsoSize, off + 4);
  out.writeUInt16LE(h.csumStart, off + 6);
  out.writeUInt16LE(h.csumOffset, off + 8);
  out.writeUInt16LE(0, off + 10);
  return VNET_HDR_LEN;
}
