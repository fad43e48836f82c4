/**
 * ARP for IPv4 over Ethernet (RFC 826). check(b) guarantees a full 28-byte Ethernet/IPv4 packet
 * with the expected hardware and protocol types and sizes; accessors then stay in bounds.
 */
export const ARP_LEN = 28;
export const OP_REQUEST = 1;
export const OP_REPLY = 2;

export function check(b: Uint8Array): string | null {
  if (b.length < ARP_LEN) return 'truncated';
  if (((b[0] << 8) | b[1]) !== 1 || ((b[2] << 8) | b[3]) !== 0x0800 || b[4] !== 6 || b[5] !== 4) return 'unsupported';
  return null;
}

export interface Arp {
  op: number;
  senderMac: Buffer;
  senderIp: Buffer;
  targetMac: Buffer;
  targetIp: Buffer;
}

/** The addresses are views into `b`. */
export function parse(b: Buffer): Arp {
  return { op: (b[6] << 8) | b[7], senderMac: b.subarray(8, 14), senderIp: b.subarray(14, 18), targetMac: b.subarray(18, 24), targetIp: b.subarray(24, 28) };
}

export function emit(a: Arp, out: Buffer, off = 0): number {
  out.writeUInt16BE(1, off);
  out.writeUInt16BE(0x0800, off + 2);
  out[off + 4] = 6;
  out[off + 5] = 4;
  out.writeUInt16BE(a.op, off + 6);
  out.set(a.senderMac, off + 8);
  out.set(a.senderIp, off + 14);
  out.set(a.targetMac, off + 18);
  out.set(a.targetIp, off + 24);
  return ARP_LEN;
}
