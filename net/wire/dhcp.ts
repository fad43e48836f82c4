/**
 * DHCPv4 messages (RFC 2131) and options (RFC 2132), as a server needs them. check(b, off, end)
 * verifies the fixed part and the magic cookie; options are parsed leniently up to `end`.
 */
export const DHCP_FIXED_LEN = 240;
export const SERVER_PORT = 67;
export const CLIENT_PORT = 68;
export const DISCOVER = 1;
export const OFFER = 2;
export const REQUEST = 3;
export const DECLINE = 4;
export const ACK = 5;
export const NAK = 6;
export const RELEASE = 7;
export const INFORM = 8;

const MAGIC = 0x63825363;

export function check(b: Uint8Array, off: number, end: number): string | null {
  if (end - off < DHCP_FIXED_LEN) return 'truncated';
  if (b[off] !== 1) return 'not-a-request';
  if (((b[off + 236] << 24) | (b[off + 237] << 16) | (b[off + 238] << 8) | b[off + 239]) >>> 0 !== MAGIC) return 'bad-cookie';
  return null;
}

export interface DhcpRequest {
  /** Hardware type and length (1 and 6 for Ethernet). */
  htype: number;
  hlen: number;
  xid: number;
  flags: number;
  chaddr: Buffer;
  ciaddr: Buffer;
  type: number;
  requestedIp?: Buffer;
  serverId?: Buffer;
}

/** Addresses are views into `b`. */
export function parse(b: Buffer, off: number, end: number): DhcpRequest {
  const r: DhcpRequest = { htype: b[off + 1], hlen: b[off + 2], xid: b.readUInt32BE(off + 4), flags: b.readUInt16BE(off + 10), ciaddr: b.subarray(off + 12, off + 16), chaddr: b.subarray(off + 28, off + 34), type: 0 };
  let i = off + DHCP_FIXED_LEN;
  while (i < end) {
    const code = b[i];
    if (code === 255) break;
    if (code === 0) {
      i++;
      continue;
    }
    if (i + 1 >= end || i + 2 + b[i + 1] > end) break;
    const len = b[i + 1];
    const v = b.subarray(i + 2, i + 2 + len);
    if (code === 53 && len === 1) r.type = v[0];
    else if (code === 50 && len === 4) r.requestedIp = v;
    else if (code === 54 && len === 4) r.serverId = v;
    i += 2 + len;
  }
  return r;
}

export interface DhcpReply {
  type: number;
  xid: number;
  flags: number;
  chaddr: Uint8Array;
  yiaddr: Uint8Array;
  server: Uint8Array;
  netmask: Uint8Array;
  router: Uint8Array;
  dns: Uint8Array[];
  mtu: number;
  /** Lease time; absent in the ACK to a DHCPINFORM (RFC 2131 section 3.4). */
  leaseS?: number;
  /** The client's address when it has one (INFORM: ciaddr, RFC 2131 table 3). */
  ciaddr?: Uint8Array;
}

/** Bytes {@link emitReply} writes for `r`: the fixed part and options, padded to 300 as BOOTP clients expect. */
export function replyLength(r: DhcpReply): number {
  let n = DHCP_FIXED_LEN + 3 + 6 + 1;
  if (r.type !== NAK) n += (r.leaseS !== undefined ? 6 : 0) + 6 + 6 + (r.dns.length ? 2 + 4 * r.dns.length : 0) + 4;
  return Math.max(n, 300);
}

/** Writes a BOOTREPLY at `off`; returns its length, {@link replyLength}. */
export function emitReply(r: DhcpReply, out: Buffer, off: number): number {
  out.fill(0, off, off + replyLength(r));
  out[off] = 2;
  out[off + 1] = 1;
  out[off + 2] = 6;
  out.writeUInt32BE(r.xid >>> 0, off + 4);
  out.writeUInt16BE(r.flags, off + 10);
  if (r.ciaddr) out.set(r.ciaddr, off + 12);
  out.set(r.yiaddr, off + 16);
  out.set(r.server, off + 20);
  out.set(r.chaddr.subarray(0, 6), off + 28);
  out.writeUInt32BE(MAGIC, off + 236);
  let i = off + DHCP_FIXED_LEN;
  const opt = (code: number, v: Uint8Array) => {
    out[i] = code;
    out[i + 1] = v.length;
    out.set(v, i + 2);
    i += 2 + v.length;
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };
  opt(53, Uint8Array.of(r.type));
  opt(54, r.server);
  if (r.type !== NAK) {
    if (r.leaseS !== undefined) opt(51, u32(r.leaseS));
    opt(1, r.netmask);
    opt(3, r.router);
    if (r.dns.length) opt(6, Buffer.concat(r.dns.map((d) => Buffer.from(d))));
    const mtu = Buffer.alloc(2);
    mtu.writeUInt16BE(Math.min(r.mtu, 0xffff));
    opt(26, mtu);
  }
  out[i++] = 255;
  return Math.max(i - off, 300);
}
