/**
 * DNS messages (RFC 1035 section 4, EDNS(0) of RFC 6891): the query a resolver sends, and the
 * answers a local server builds. Pure code over Buffers.
 *
 * `parseQuery(b)` returns a reason string for anything it will not read (the caller counts it and
 * answers FORMERR when the header could be read) or a {@link Query}. After it passes, every offset
 * in the Query is inside `b`. Names are read label by label with these limits, so a hostile query
 * cannot loop or grow: compression pointers must point strictly backwards (RFC 1035 section 4.1.4
 * allows only earlier occurrences, which also rules out loops), at most {@link MAX_POINTERS}
 * of them; a label is at most 63 octets and a name at most 255 on the wire (section 2.3.4);
 * the extended label types (0x40, 0x80) are refused.
 *
 * Names are returned in presentation form, lower-cased: labels joined by ".", no trailing dot,
 * "" for the root; a "." or "\" inside a label and octets outside 0x21-0x7e are escaped as
 * `\DDD` (RFC 4343's decimal form), so two different wire names never read the same.
 */
import * as ipv6 from './ipv6.js';

export const HDR_LEN = 12;
export const PORT = 53;

/** RFC 1035 section 3.2.2, RFC 3596 (AAAA), RFC 6891 (OPT). */
export const TYPE_A = 1;
export const TYPE_NS = 2;
export const TYPE_CNAME = 5;
export const TYPE_SOA = 6;
export const TYPE_PTR = 12;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;

/** RFC 1035 section 4.1.1 (and RFC 6895). */
export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

export const OPCODE_QUERY = 0;

/** The largest UDP answer without EDNS (RFC 1035 section 4.2.1). */
export const UDP_PLAIN_MAX = 512;
/** The UDP payload size burrow offers and accepts with EDNS (the DNS flag day 2020 figure). */
export const UDP_EDNS_MAX = 1232;
export const MAX_NAME_WIRE = 255;
export const MAX_LABEL = 63;
export const MAX_POINTERS = 16;

const F_QR = 0x8000;
const F_AA = 0x0400;
const F_TC = 0x0200;
const F_RD = 0x0100;
const F_RA = 0x0080;

export const id = (b: Uint8Array): number => (b[0] << 8) | b[1];
export const flags = (b: Uint8Array): number => (b[2] << 8) | b[3];
export const isResponse = (b: Uint8Array): boolean => (b[2] & 0x80) !== 0;
export const opcode = (b: Uint8Array): number => (b[2] >> 3) & 0x0f;
export const rcode = (b: Uint8Array): number => b[3] & 0x0f;
export const truncated = (b: Uint8Array): boolean => (b[2] & 0x02) !== 0;
export const qdcount = (b: Uint8Array): number => (b[4] << 8) | b[5];
export const ancount = (b: Uint8Array): number => (b[6] << 8) | b[7];
export const nscount = (b: Uint8Array): number => (b[8] << 8) | b[9];
export const arcount = (b: Uint8Array): number => (b[10] << 8) | b[11];

export interface Query {
  id: number;
  /** The header's flags word. */
  flags: number;
  opcode: number;
  /** The question, lower-cased presentation form ("web.dns.podman"). */
  name: string;
  type: number;
  qclass: number;
  /** [HDR_LEN, questionEnd) is the question section as sent: answers copy it. */
  questionEnd: number;
  /** The requester's UDP payload size: 512, or its EDNS OPT size clamped to [512, UDP_EDNS_MAX]. */
  udpSize: number;
  /** The query carried an OPT record (the answer then carries one). */
  edns: boolean;
}

/** A name read from `b` at `off`: its presentation form and where the name ends in place. */
export interface NameRead {
  name: string;
  /** The offset after the name's last octet at `off` (after the first pointer, if any). */
  end: number;
}

function escapeLabel(b: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let i = off; i < off + len; i++) {
    let c = b[i];
    if (c >= 0x41 && c <= 0x5a) c += 0x20; // ASCII case folding only (RFC 4343)
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

/** Reads a (possibly compressed) name; a reason string when it is malformed. */
export function readName(b: Uint8Array, off: number): NameRead | string {
  const labels: string[] = [];
  let wire = 0;
  let pos = off;
  let end = -1;
  let pointers = 0;
  let floor = off; // a pointer must go strictly below the start of what it continues
  for (;;) {
    if (pos >= b.length) return 'name-truncated';
    const len = b[pos];
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= b.length) return 'name-truncated';
      const target = ((len & 0x3f) << 8) | b[pos + 1];
      if (end < 0) end = pos + 2;
      if (++pointers > MAX_POINTERS) return 'name-pointer-loop';
      if (target >= floor) return 'name-pointer-forward';
      pos = target;
      floor = target;
      continue;
    }
    if (len & 0xc0) return 'name-bad-label-type';
    wire += len + 1;
    if (wire > MAX_NAME_WIRE) return 'name-too-long';
    if (len === 0) {
      if (end < 0) end = pos + 1;
      return { name: labels.join('.'), end };
    }
    if (pos + 1 + len > b.length) return 'name-truncated';
    labels.push(escapeLabel(b, pos + 1, len));
    pos += 1 + len;
  }
}

/** Skips one resource record at `off`; the offset after it, or a reason. */
function skipRecord(b: Uint8Array, off: number): { type: number; cls: number; ttl: number; rdOff: number; end: number } | string {
  const n = readName(b, off);
  if (typeof n === 'string') return n;
  const p = n.end;
  if (p + 10 > b.length) return 'record-truncated';
  const rdlen = (b[p + 8] << 8) | b[p + 9];
  if (p + 10 + rdlen > b.length) return 'record-truncated';
  const ttl = ((b[p + 4] << 24) | (b[p + 5] << 16) | (b[p + 6] << 8) | b[p + 7]) >>> 0;
  return { type: (b[p] << 8) | b[p + 1], cls: (b[p + 2] << 8) | b[p + 3], ttl, rdOff: p + 10, end: p + 10 + rdlen };
}

/**
 * A query: header, exactly one question, and (for EDNS) the additional section. Reasons:
 * "truncated", "not-a-query" (QR set), "qdcount", "answers-in-query", a name's reason,
 * "question-truncated", "record-truncated", "two-opt".
 */
export function parseQuery(b: Uint8Array): Query | string {
  if (b.length < HDR_LEN) return 'truncated';
  if (isResponse(b)) return 'not-a-query';
  if (qdcount(b) !== 1) return 'qdcount';
  if (ancount(b) !== 0) return 'answers-in-query';
  const q = readName(b, HDR_LEN);
  if (typeof q === 'string') return q;
  if (q.end + 4 > b.length) return 'question-truncated';
  const type = (b[q.end] << 8) | b[q.end + 1];
  const qclass = (b[q.end + 2] << 8) | b[q.end + 3];
  const questionEnd = q.end + 4;
  let pos = questionEnd;
  let udpSize = UDP_PLAIN_MAX;
  let edns = false;
  const more = nscount(b) + arcount(b);
  for (let i = 0; i < more; i++) {
    const r = skipRecord(b, pos);
    if (typeof r === 'string') return r;
    if (r.type === TYPE_OPT && i >= nscount(b)) {
      if (edns) return 'two-opt';
      edns = true;
      udpSize = Math.min(UDP_EDNS_MAX, Math.max(UDP_PLAIN_MAX, r.cls));
    }
    pos = r.end;
  }
  return { id: id(b), flags: flags(b), opcode: opcode(b), name: q.name, type, qclass, questionEnd, udpSize, edns };
}

/** One answer record for the question's name (written as a pointer to it). */
export interface Answer {
  type: number;
  ttlS: number;
  /** Record data: 4 bytes (A), 16 (AAAA), or a wire name from {@link encodeName} (PTR). */
  data: Uint8Array;
}

/** A name in presentation form ("a.b", escapes as {@link readName} writes them) on the wire, uncompressed. */
export function encodeName(name: string): Buffer {
  const parts: number[] = [];
  const labels = name === '' ? [] : name.split(/(?<!\\)\./);
  for (const l of labels) {
    const bytes: number[] = [];
    for (let i = 0; i < l.length; i++) {
      if (l[i] === '\\' && /^\d{3}$/.test(l.slice(i + 1, i + 4))) {
        bytes.push(Number(l.slice(i + 1, i + 4)));
        i += 3;
      } else if (l[i] === '\\' && i + 1 < l.length) {
        bytes.push(l.charCodeAt(++i));
      } else bytes.push(l.charCodeAt(i) & 0xff);
    }
    if (bytes.length === 0 || bytes.length > MAX_LABEL) throw new RangeError(`bad label in name "${name}"`);
    parts.push(bytes.length, ...bytes);
  }
  parts.push(0);
  if (parts.length > MAX_NAME_WIRE) throw new RangeError(`name "${name}" is longer than 255 octets`);
  return Buffer.from(parts);
}

export interface ResponseSpec {
  rcode: number;
  authoritative: boolean;
  answers: Answer[];
}

/**
 * The response to `q` (read from `query`): the question copied as sent, then the answers with
 * their names as pointers to it, then an OPT record when the query had one. When it would not
 * fit in `maxBytes` (the UDP size; 65535 for TCP) the answers are left out and TC is set
 * (RFC 2181 section 9), so the client asks again over TCP. Returns a new Buffer.
 */
export function buildResponse(query: Uint8Array, q: Query, r: ResponseSpec, maxBytes: number): Buffer {
  const qlen = q.questionEnd - HDR_LEN;
  const opt = q.edns ? 11 : 0;
  let size = HDR_LEN + qlen + opt;
  for (const a of r.answers) size += 12 + a.data.length;
  let answers = r.answers;
  let tc = false;
  if (size > maxBytes) {
    answers = [];
    tc = true;
    size = HDR_LEN + qlen + opt;
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16BE(q.id, 0);
  const f = F_QR | (q.opcode << 11) | (r.authoritative ? F_AA : 0) | (tc ? F_TC : 0) | (q.flags & F_RD) | F_RA | (r.rcode & 0x0f);
  out.writeUInt16BE(f, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(answers.length, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(q.edns ? 1 : 0, 10);
  out.set(query.subarray(HDR_LEN, q.questionEnd), HDR_LEN);
  let p = HDR_LEN + qlen;
  for (const a of answers) {
    out.writeUInt16BE(0xc000 | HDR_LEN, p); // the question's name
    out.writeUInt16BE(a.type, p + 2);
    out.writeUInt16BE(CLASS_IN, p + 4);
    out.writeUInt32BE(a.ttlS >>> 0, p + 6);
    out.writeUInt16BE(a.data.length, p + 10);
    out.set(a.data, p + 12);
    p += 12 + a.data.length;
  }
  if (q.edns) {
    out[p] = 0; // root name
    out.writeUInt16BE(TYPE_OPT, p + 1);
    out.writeUInt16BE(UDP_EDNS_MAX, p + 3);
    out.writeUInt32BE(0, p + 5); // extended rcode 0, version 0, no flags
    out.writeUInt16BE(0, p + 9);
  }
  return out;
}

/**
 * The shortest error answer for a message whose header could be read but whose question could
 * not (FORMERR, RFC 1035 section 4.1.1): the header alone, with the id, opcode and RD echoed.
 */
export function buildHeaderOnly(query: Uint8Array, rc: number): Buffer {
  const out = Buffer.alloc(HDR_LEN);
  out[0] = query[0];
  out[1] = query[1];
  out.writeUInt16BE(F_QR | (opcode(query) << 11) | (flags(query) & F_RD) | F_RA | (rc & 0x0f), 2);
  return out;
}

/** A query for `name` and `type` with `id` (clients, tests and the bench). */
export function buildQuery(idValue: number, name: string, type: number, o: { rd?: boolean; ednsSize?: number } = {}): Buffer {
  const n = encodeName(name);
  const opt = o.ednsSize ? 11 : 0;
  const out = Buffer.alloc(HDR_LEN + n.length + 4 + opt);
  out.writeUInt16BE(idValue & 0xffff, 0);
  out.writeUInt16BE(o.rd === false ? 0 : F_RD, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  n.copy(out, HDR_LEN);
  out.writeUInt16BE(type, HDR_LEN + n.length);
  out.writeUInt16BE(CLASS_IN, HDR_LEN + n.length + 2);
  if (opt) {
    const p = HDR_LEN + n.length + 4;
    out.writeUInt16BE(TYPE_OPT, p + 1);
    out.writeUInt16BE(o.ednsSize!, p + 3);
  }
  return out;
}

export interface ParsedAnswer {
  name: string;
  type: number;
  ttlS: number;
  /** A/AAAA as an address string, PTR/CNAME as a name, anything else as hex. */
  value: string;
}

/** A response read whole (clients, tests): rcode, flags and the answer section. Reason on error. */
export function parseResponse(b: Uint8Array): { id: number; rcode: number; aa: boolean; tc: boolean; ra: boolean; answers: ParsedAnswer[] } | string {
  if (b.length < HDR_LEN) return 'truncated';
  if (!isResponse(b)) return 'not-a-response';
  let pos = HDR_LEN;
  for (let i = 0; i < qdcount(b); i++) {
    const n = readName(b, pos);
    if (typeof n === 'string') return n;
    pos = n.end + 4;
    if (pos > b.length) return 'question-truncated';
  }
  const answers: ParsedAnswer[] = [];
  for (let i = 0; i < ancount(b); i++) {
    const name = readName(b, pos);
    if (typeof name === 'string') return name;
    const r = skipRecord(b, pos);
    if (typeof r === 'string') return r;
    let value: string;
    const d = b.subarray(r.rdOff, r.end);
    if (r.type === TYPE_A && d.length === 4) value = Array.from(d).join('.');
    else if (r.type === TYPE_AAAA && d.length === 16) value = ipv6.formatAddr(d);
    else if (r.type === TYPE_PTR || r.type === TYPE_CNAME) {
      const t = readName(b, r.rdOff);
      if (typeof t === 'string') return t;
      value = t.name;
    } else value = Buffer.from(d).toString('hex');
    answers.push({ name: name.name, type: r.type, ttlS: r.ttl, value });
    pos = r.end;
  }
  return { id: id(b), rcode: rcode(b), aa: (b[2] & 0x04) !== 0, tc: truncated(b), ra: (b[3] & 0x80) !== 0, answers };
}

/** The question section [HDR_LEN, end) of a message, or -1 (forwarded answers are matched on it). */
export function questionEnd(b: Uint8Array): number {
  if (b.length < HDR_LEN || qdcount(b) !== 1) return -1;
  const n = readName(b, HDR_LEN);
  if (typeof n === 'string' || n.end + 4 > b.length) return -1;
  return n.end + 4;
}
