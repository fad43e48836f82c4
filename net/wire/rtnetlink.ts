/**
 * rtnetlink messages (include/uapi/linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h): the
 * netlink header, attributes, and the three bodies burrow speaks (ifinfomsg for links, ifaddrmsg
 * for addresses, rtmsg for routes). Netlink is in host byte order: this module writes and reads
 * little-endian, the byte order of every machine burrow runs on (x86-64, arm64).
 *
 * Emitters return new Buffers. Parsers check every length first and return a reason string for
 * truncated or inconsistent input; once they return a value, nothing reads out of bounds. Parsed
 * attribute payloads are views into the input: copy them to keep them past the buffer.
 */

// nlmsghdr flags and types (netlink.h)
export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff; // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)

// message types (rtnetlink.h)
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;

// IFLA_* (if_link.h)
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_PROTINFO = 12;
export const IFLA_TXQLEN = 13;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_AF_SPEC = 26;
export const IFLA_NET_NS_FD = 28;
export const IFLA_LINK_NETNSID = 37;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const VETH_INFO_PEER = 1;
export const IFLA_MACVLAN_MODE = 1;
export const IFLA_IPVLAN_MODE = 1;

// IFA_* (if_addr.h)
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_BROADCAST = 4;
export const IFA_FLAGS = 8;

// RTA_* and RTAX_* (rtnetlink.h)
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_METRICS = 8;
export const RTA_TABLE = 15;
export const RTAX_MTU = 2;
export const RTAX_ADVMSS = 8;

// IFF_* (if.h)
export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFF_PROMISC = 0x100;
export const IFF_ALLMULTI = 0x200;

export const NLMSG_HDRLEN = 16;
export const IFINFOMSG_LEN = 16;
export const IFADDRMSG_LEN = 8;
export const RTMSG_LEN = 12;

const align4 = (n: number) => (n + 3) & ~3;

export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  /** The message after its header: a view into the parsed buffer. */
  body: Buffer;
}

/** One netlink message: the 16-byte header (pid 0: the kernel fills in ours), then `body`. */
export function emitMessage(type: number, flags: number, seq: number, body: Buffer): Buffer {
  const out = Buffer.alloc(NLMSG_HDRLEN + body.length);
  out.writeUInt32LE(out.length, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq >>> 0, 8);
  body.copy(out, NLMSG_HDRLEN);
  return out;
}

/** Splits a buffer of netlink messages (as recv returns them); a reason when a length is off. */
export function parseMessages(b: Buffer): NlMessage[] | string {
  const out: NlMessage[] = [];
  let off = 0;
  while (off < b.length) {
    if (b.length - off < NLMSG_HDRLEN) return 'truncated';
    const len = b.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > b.length) return 'bad-length';
    out.push({ type: b.readUInt16LE(off + 4), flags: b.readUInt16LE(off + 6), seq: b.readUInt32LE(off + 8), body: b.subarray(off + NLMSG_HDRLEN, off + len) });
    off += align4(len);
  }
  return out;
}

/** The errno of an NLMSG_ERROR body (0 for an ack); null when the body is too short to say. */
export function errorOf(body: Buffer): number | null {
  return body.length >= 4 ? -body.readInt32LE(0) || 0 : null;
}

/** One attribute: length, type, payload, padded to 4 bytes. */
export function nla(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

export const nlaU8 = (type: number, v: number) => nla(type, Buffer.from([v & 0xff]));
export function nlaU16(type: number, v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return nla(type, b);
}
export function nlaU32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return nla(type, b);
}
export const nlaStr = (type: number, s: string) => nla(type, Buffer.concat([Buffer.from(s), Buffer.alloc(1)]));
export const nlaNested = (type: number, parts: Buffer[]) => nla(type | NLA_F_NESTED, Buffer.concat(parts));

/** Attributes by type (flags masked off; the last of a repeated type wins); a reason when malformed. */
export function parseAttrs(b: Buffer): Map<number, Buffer> | string {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= b.length) {
    const len = b.readUInt16LE(off);
    if (len < 4 || off + len > b.length) return 'bad-attr-length';
    out.set(b.readUInt16LE(off + 2) & NLA_TYPE_MASK, b.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

/** A NUL-terminated string attribute's text. */
export const attrStr = (v: Buffer | undefined) => (v === undefined ? undefined : v.toString('utf8', 0, v.indexOf(0) < 0 ? v.length : v.indexOf(0)));
export const attrU32 = (v: Buffer | undefined) => (v !== undefined && v.length >= 4 ? v.readUInt32LE(0) : undefined);
export const attrU16 = (v: Buffer | undefined) => (v !== undefined && v.length >= 2 ? v.readUInt16LE(0) : undefined);
export const attrU8 = (v: Buffer | undefined) => (v !== undefined && v.length >= 1 ? v[0] : undefined);
export const attrI32 = (v: Buffer | undefined) => (v !== undefined && v.length >= 4 ? v.readInt32LE(0) : undefined);

export interface IfInfo {
  family?: number;
  type?: number;
  index?: number;
  flags?: number;
  change?: number;
}

/** struct ifinfomsg (16 bytes), then `attrs`. */
export function emitIfinfo(i: IfInfo, attrs: Buffer[] = []): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b[0] = i.family ?? 0;
  b.writeUInt16LE(i.type ?? 0, 2);
  b.writeInt32LE(i.index ?? 0, 4);
  b.writeUInt32LE((i.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((i.change ?? 0) >>> 0, 12);
  return Buffer.concat([b, ...attrs]);
}

export interface LinkMessage {
  family: number;
  index: number;
  flags: number;
  attrs: Map<number, Buffer>;
}

export function parseLinkMessage(body: Buffer): LinkMessage | string {
  if (body.length < IFINFOMSG_LEN) return 'truncated';
  const attrs = parseAttrs(body.subarray(IFINFOMSG_LEN));
  if (typeof attrs === 'string') return attrs;
  return { family: body[0], index: body.readInt32LE(4), flags: body.readUInt32LE(8), attrs };
}

export interface IfAddr {
  family: number;
  prefixLen: number;
  flags: number;
  scope: number;
  index: number;
}

/** struct ifaddrmsg (8 bytes), then `attrs`. */
export function emitIfaddr(a: IfAddr, attrs: Buffer[] = []): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b[0] = a.family;
  b[1] = a.prefixLen;
  b[2] = a.flags & 0xff;
  b[3] = a.scope;
  b.writeUInt32LE(a.index >>> 0, 4);
  return Buffer.concat([b, ...attrs]);
}

export function parseAddrMessage(body: Buffer): (IfAddr & { attrs: Map<number, Buffer> }) | string {
  if (body.length < IFADDRMSG_LEN) return 'truncated';
  const attrs = parseAttrs(body.subarray(IFADDRMSG_LEN));
  if (typeof attrs === 'string') return attrs;
  return { family: body[0], prefixLen: body[1], flags: body[2], scope: body[3], index: body.readUInt32LE(4), attrs };
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen?: number;
  tos?: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags?: number;
}

/** struct rtmsg (12 bytes), then `attrs`. */
export function emitRtmsg(r: RtMsg, attrs: Buffer[] = []): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b[0] = r.family;
  b[1] = r.dstLen;
  b[2] = r.srcLen ?? 0;
  b[3] = r.tos ?? 0;
  b[4] = r.table;
  b[5] = r.protocol;
  b[6] = r.scope;
  b[7] = r.type;
  b.writeUInt32LE((r.flags ?? 0) >>> 0, 8);
  return Buffer.concat([b, ...attrs]);
}

export function parseRouteMessage(body: Buffer): (RtMsg & { attrs: Map<number, Buffer> }) | string {
  if (body.length < RTMSG_LEN) return 'truncated';
  const attrs = parseAttrs(body.subarray(RTMSG_LEN));
  if (typeof attrs === 'string') return attrs;
  return { family: body[0], dstLen: body[1], srcLen: body[2], tos: body[3], table: body[4], protocol: body[5], scope: body[6], type: body[7], flags: body.readUInt32LE(8), attrs };
}
