/**
 * The subset of Go's encoding/gob that the CNI dhcp plugin and daemon exchange (net/rpc):
 * bools, ints, uints, floats, strings, byte slices, structs, slices, arrays and maps, with the type
 * definitions (wireType) that precede the first value of each type on a stream. Pure code over
 * Buffers; hostile input ends in a GobError, never in a crash or an unbounded allocation.
 *
 * Wire (golang.org/pkg/encoding/gob): a stream of messages, each a uint byte count, a signed type
 * id and a payload. A negative id defines type -id (a wireType value follows); a positive one is a
 * value of that type. Uints below 128 are one byte, others the negated byte count and the bytes
 * big-endian; an int is sent as a uint, shifted left one, complemented when negative, low bit set.
 * A struct is (field delta, value) pairs ended by a 0 delta, zero-valued basic fields left out and
 * nested structs always sent; a top-level value that is not a struct is preceded by a 0 delta.
 * Decoding matches struct fields by name: a decoded struct is a plain object keyed by field name.
 */

export class GobError extends Error {
  constructor(message: string) {
    super(`gob: ${message}`);
    this.name = 'GobError';
  }
}

/** gob's predefined type ids. */
export const T = { bool: 1, int: 2, uint: 3, float: 4, bytes: 5, string: 6, complex: 7, interface: 8 } as const;
const WIRE_TYPE = 16;
const FIRST_USER_ID = 65;

/** A message longer than this is refused (the dhcp RPCs' messages are a few kB). */
export const MAX_MESSAGE = 1 << 20;
const MAX_DEPTH = 32;

/** A type as the encoder describes it. Struct and slice schemas are objects: their identity is the type. */
export type Schema = 'bool' | 'int' | 'uint' | 'float' | 'string' | 'bytes' | StructSchema | SliceSchema;
export interface StructSchema {
  struct: string;
  fields: Array<[string, Schema]>;
}
export interface SliceSchema {
  slice: Schema;
  name?: string;
}

/** A type as a stream defines it. */
type WireType =
  | { kind: 'struct'; name: string; fields: Array<{ name: string; id: number }> }
  | { kind: 'slice'; name: string; elem: number }
  | { kind: 'array'; name: string; elem: number; len: number }
  | { kind: 'map'; name: string; key: number; elem: number }
  | { kind: 'opaque'; name: string }; // GobEncoder, BinaryMarshaler, TextMarshaler: bytes

export type GobValue = boolean | number | bigint | string | Buffer | GobValue[] | Map<GobValue, GobValue> | { [field: string]: GobValue };

// ---------------------------------------------------------------------------------------------
// primitives

class Reader {
  pos = 0;
  constructor(readonly b: Buffer, readonly end: number = b.length) {}

  byte(): number {
    if (this.pos >= this.end) throw new GobError('truncated message');
    return this.b[this.pos++];
  }

  /** A uint; above 2^53 a bigint. */
  uint(): number | bigint {
    const first = this.byte();
    if (first < 0x80) return first;
    const n = 256 - first;
    if (n > 8) throw new GobError(`uint of ${n} bytes`);
    if (this.pos + n > this.end) throw new GobError('truncated uint');
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.b[this.pos++]);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  /** A uint that counts or indexes something: a safe number. */
  count(what: string): number {
    const v = this.uint();
    if (typeof v === 'bigint') throw new GobError(`${what} out of range`);
    return v;
  }

  int(): number | bigint {
    const u = this.uint();
    const b = BigInt(u);
    const v = b & 1n ? ~(b >> 1n) : b >> 1n;
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  /** A type id or a field delta: a small int. */
  smallInt(what: string): number {
    const v = this.int();
    if (typeof v === 'bigint' || v > 0x7fffffff || v < -0x80000000) throw new GobError(`${what} out of range`);
    return v;
  }

  float(): number {
    // a uint whose bytes are the float64's, reversed
    let u = BigInt(this.uint());
    let r = 0n;
    for (let i = 0; i < 8; i++) {
      r = (r << 8n) | (u & 0xffn);
      u >>= 8n;
    }
    const buf = Buffer.alloc(8);
    buf.writeBigUInt64BE(r);
    return buf.readDoubleBE();
  }

  bytes(): Buffer {
    const n = this.count('length');
    if (n > this.end - this.pos) throw new GobError(`length ${n} beyond the message`);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return Buffer.from(v);
  }
}

class Writer {
  private cur = Buffer.alloc(256);
  private n = 0;

  private room(k: number): void {
    if (this.n + k <= this.cur.length) return;
    const next = Buffer.alloc(Math.max(this.cur.length * 2, this.n + k));
    this.cur.copy(next, 0, 0, this.n);
    this.cur = next;
  }

  byte(v: number): void {
    this.room(1);
    this.cur[this.n++] = v;
  }

  uint(v: number | bigint): void {
    let b = BigInt(v);
    if (b < 0n) throw new GobError('negative uint');
    if (b < 128n) return this.byte(Number(b));
    const bytes: number[] = [];
    while (b > 0n) {
      bytes.unshift(Number(b & 0xffn));
      b >>= 8n;
    }
    this.byte(256 - bytes.length);
    for (const x of bytes) this.byte(x);
  }

  int(v: number | bigint): void {
    const b = BigInt(v);
    this.uint(b < 0n ? (~b << 1n) | 1n : b << 1n);
  }

  float(v: number): void {
    const buf = Buffer.alloc(8);
    buf.writeDoubleBE(v);
    let r = 0n;
    for (let i = 7; i >= 0; i--) r = (r << 8n) | BigInt(buf[i]);
    this.uint(r);
  }

  bytes(v: Uint8Array): void {
    this.uint(v.length);
    this.room(v.length);
    this.cur.set(v, this.n);
    this.n += v.length;
  }

  done(): Buffer {
    return this.cur.subarray(0, this.n);
  }
}

// ---------------------------------------------------------------------------------------------
// the bootstrap types: how a wireType itself is encoded (their field order is gob's)

const BOOT = new Map<number, WireType>([
  [WIRE_TYPE, { kind: 'struct', name: 'wireType', fields: [{ name: 'ArrayT', id: 17 }, { name: 'SliceT', id: 19 }, { name: 'StructT', id: 20 }, { name: 'MapT', id: 23 }, { name: 'GobEncoderT', id: -2 }, { name: 'BinaryMarshalerT', id: -2 }, { name: 'TextMarshalerT', id: -2 }] }],
  [17, { kind: 'struct', name: 'arrayType', fields: [{ name: 'CommonType', id: 18 }, { name: 'Elem', id: T.int }, { name: 'Len', id: T.int }] }],
  [18, { kind: 'struct', name: 'CommonType', fields: [{ name: 'Name', id: T.string }, { name: 'Id', id: T.int }] }],
  [19, { kind: 'struct', name: 'sliceType', fields: [{ name: 'CommonType', id: 18 }, { name: 'Elem', id: T.int }] }],
  [20, { kind: 'struct', name: 'structType', fields: [{ name: 'CommonType', id: 18 }, { name: 'Field', id: 22 }] }],
  [21, { kind: 'struct', name: 'fieldType', fields: [{ name: 'Name', id: T.string }, { name: 'Id', id: T.int }] }],
  [22, { kind: 'slice', name: '[]fieldType', elem: 21 }],
  [23, { kind: 'struct', name: 'mapType', fields: [{ name: 'CommonType', id: 18 }, { name: 'Key', id: T.int }, { name: 'Elem', id: T.int }] }],
  [-2, { kind: 'struct', name: 'gobEncoderType', fields: [{ name: 'CommonType', id: 18 }] }],
]);

function wireTypeOf(v: GobValue): WireType {
  const w = v as Record<string, Record<string, GobValue> | undefined>;
  const common = (t: Record<string, GobValue>) => ((t.CommonType as Record<string, GobValue> | undefined)?.Name as string | undefined) ?? '';
  const id = (x: GobValue | undefined, what: string) => {
    if (typeof x !== 'number' || !Number.isInteger(x)) throw new GobError(`type definition without ${what}`);
    return x;
  };
  if (w.StructT) return { kind: 'struct', name: common(w.StructT), fields: ((w.StructT.Field as GobValue[] | undefined) ?? []).map((f) => ({ name: ((f as Record<string, GobValue>).Name as string) ?? '', id: id((f as Record<string, GobValue>).Id, 'a field type') })) };
  if (w.SliceT) return { kind: 'slice', name: common(w.SliceT), elem: id(w.SliceT.Elem, 'an element type') };
  if (w.ArrayT) return { kind: 'array', name: common(w.ArrayT), elem: id(w.ArrayT.Elem, 'an element type'), len: id(w.ArrayT.Len ?? 0, 'a length') };
  if (w.MapT) return { kind: 'map', name: common(w.MapT), key: id(w.MapT.Key, 'a key type'), elem: id(w.MapT.Elem, 'an element type') };
  const opaque = w.GobEncoderT ?? w.BinaryMarshalerT ?? w.TextMarshalerT;
  if (opaque) return { kind: 'opaque', name: common(opaque) };
  throw new GobError('empty type definition');
}

// ---------------------------------------------------------------------------------------------
// decoding

/**
 * Decodes one stream's messages as they arrive: push bytes, then take values. Type definitions
 * are kept for the stream's life and never returned.
 */
export class GobDecoder {
  private readonly types = new Map<number, WireType>();
  private buf = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
  }

  /** Bytes received but not yet taken. */
  get pending(): number {
    return this.buf.length;
  }

  /** The next value on the stream with its type id, or null until more bytes arrive. */
  next(): { typeId: number; value: GobValue } | null {
    for (;;) {
      if (!this.buf.length) return null;
      const head = new Reader(this.buf);
      let len: number;
      try {
        len = head.count('message length');
      } catch (err) {
        if (this.buf.length < 9 && (err as Error).message.includes('truncated')) return null;
        throw err;
      }
      if (len > MAX_MESSAGE) throw new GobError(`message of ${len} bytes (at most ${MAX_MESSAGE})`);
      if (len === 0) throw new GobError('empty message');
      if (this.buf.length < head.pos + len) return null;
      const r = new Reader(this.buf, head.pos + len);
      r.pos = head.pos;
      this.buf = this.buf.subarray(head.pos + len);
      const id = r.smallInt('type id');
      if (id < 0) {
        if (-id < FIRST_USER_ID) throw new GobError(`type ${-id} is predefined and cannot be redefined`);
        const def = wireTypeOf(this.struct(r, BOOT.get(WIRE_TYPE) as Extract<WireType, { kind: 'struct' }>, BOOT, 0));
        this.types.set(-id, def);
        if (r.pos !== r.end) throw new GobError('bytes after a type definition');
        continue;
      }
      const t = this.lookup(id);
      let value: GobValue;
      if (t && t.kind === 'struct') value = this.struct(r, t, this.types, 0);
      else {
        if (r.byte() !== 0) throw new GobError('a top-level value that is not a struct needs a 0 delta first');
        value = this.value(r, id, this.types, 0);
      }
      if (r.pos !== r.end) throw new GobError('bytes after a value');
      return { typeId: id, value };
    }
  }

  private lookup(id: number): WireType | undefined {
    if (id >= 1 && id <= 8) return undefined;
    const t = this.types.get(id);
    if (!t) throw new GobError(`value of type ${id}, which the stream never defined`);
    return t;
  }

  private value(r: Reader, id: number, types: Map<number, WireType>, depth: number): GobValue {
    if (depth > MAX_DEPTH) throw new GobError('nested too deeply');
    switch (id) {
      case T.bool: return r.count('bool') !== 0;
      case T.int: return r.int();
      case T.uint: return r.uint();
      case T.float: return r.float();
      case T.bytes: return r.bytes();
      case T.string: return r.bytes().toString('utf8');
      case T.complex: return [r.float(), r.float()];
      case T.interface: throw new GobError('interface values are not supported');
      default: break;
    }
    const t = types.get(id) ?? BOOT.get(id);
    if (!t) throw new GobError(`type ${id} is not defined`);
    switch (t.kind) {
      case 'struct': return this.struct(r, t, types, depth + 1);
      case 'opaque': return r.bytes();
      case 'slice': case 'array': {
        const n = r.count('element count');
        if (n > r.end - r.pos) throw new GobError(`${n} elements beyond the message`);
        if (t.kind === 'array' && n !== t.len) throw new GobError(`array of ${t.len} sent with ${n} elements`);
        const out: GobValue[] = [];
        for (let i = 0; i < n; i++) out.push(this.value(r, t.elem, types, depth + 1));
        return out;
      }
      case 'map': {
        const n = r.count('map size');
        if (n > r.end - r.pos) throw new GobError(`${n} map entries beyond the message`);
        const m = new Map<GobValue, GobValue>();
        for (let i = 0; i < n; i++) m.set(this.value(r, t.key, types, depth + 1), this.value(r, t.elem, types, depth + 1));
        return m;
      }
    }
  }

  private struct(r: Reader, t: Extract<WireType, { kind: 'struct' }>, types: Map<number, WireType>, depth: number): Record<string, GobValue> {
    if (depth > MAX_DEPTH) throw new GobError('nested too deeply');
    const out: Record<string, GobValue> = Object.create(null) as Record<string, GobValue>;
    let field = -1;
    for (;;) {
      const delta = r.count('field delta');
      if (delta === 0) return out;
      field += delta;
      const f = t.fields[field];
      if (!f) throw new GobError(`field ${field} of ${t.name || 'a struct'} with ${t.fields.length} fields`);
      out[f.name] = this.value(r, f.id, types, depth + 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// encoding

const BASIC: Record<string, number> = { bool: T.bool, int: T.int, uint: T.uint, float: T.float, bytes: T.bytes, string: T.string };

/**
 * Encodes values of the given schemas onto one stream: each struct or slice schema gets a type
 * id on first use (from 65, as a fresh Go process), and its definition, with those of the types it
 * holds, goes out before its first value.
 */
export class GobEncoder {
  private readonly ids = new Map<object, number>();
  private next = FIRST_USER_ID;

  /** The messages for `value` of `schema`: definitions not sent yet, then the value. */
  encode(schema: StructSchema | SliceSchema, value: unknown): Buffer {
    const out: Buffer[] = [];
    const id = this.define(schema, out);
    const w = new Writer();
    w.int(id);
    if ('struct' in schema) this.struct(w, schema, value);
    else {
      w.uint(0);
      this.value(w, schema, value);
    }
    out.push(frame(w.done()));
    return Buffer.concat(out);
  }

  private idOf(s: Schema, out: Buffer[]): number {
    return typeof s === 'string' ? BASIC[s] : this.define(s, out);
  }

  private define(s: StructSchema | SliceSchema, out: Buffer[]): number {
    const known = this.ids.get(s);
    if (known) return known;
    const id = this.next++;
    this.ids.set(s, id);
    const w = new Writer();
    w.int(-id);
    if ('struct' in s) {
      // wireType{StructT: &structType{CommonType{Name, Id}, Field: [...]}}; definitions of the
      // field types go out first, as Go's encoder sends them
      const fieldIds = s.fields.map(([, f]) => this.idOf(f, out));
      w.uint(3); // delta to StructT (field 2)
      w.uint(1); // CommonType
      this.common(w, s.struct, id);
      if (s.fields.length) {
        w.uint(1); // Field
        w.uint(s.fields.length);
        s.fields.forEach(([name], i) => {
          w.uint(1);
          w.bytes(Buffer.from(name));
          w.uint(1);
          w.int(fieldIds[i]);
          w.uint(0);
        });
      }
      w.uint(0); // end structType
    } else {
      const elem = this.idOf(s.slice, out);
      w.uint(2); // delta to SliceT (field 1)
      w.uint(1);
      this.common(w, s.name ?? '', id);
      w.uint(1);
      w.int(elem);
      w.uint(0); // end sliceType
    }
    w.uint(0); // end wireType
    out.push(frame(w.done()));
    return id;
  }

  private common(w: Writer, name: string, id: number): void {
    if (name) {
      w.uint(1);
      w.bytes(Buffer.from(name));
      w.uint(1);
    } else w.uint(2);
    w.int(id);
    w.uint(0);
  }

  private struct(w: Writer, s: StructSchema, v: unknown): void {
    const obj = (v ?? {}) as Record<string, unknown>;
    let last = -1;
    s.fields.forEach(([name, f], i) => {
      const x = obj[name];
      if (typeof f === 'string' ? isZero(f, x) : 'slice' in f ? !(x as unknown[] | undefined)?.length : false) return;
      w.uint(i - last);
      last = i;
      this.value(w, f, x);
    });
    w.uint(0);
  }

  private value(w: Writer, s: Schema, v: unknown): void {
    if (typeof s === 'string') {
      switch (s) {
        case 'bool': return w.uint(v ? 1 : 0);
        case 'int': return w.int((v as number | bigint | undefined) ?? 0);
        case 'uint': return w.uint((v as number | bigint | undefined) ?? 0);
        case 'float': return w.float((v as number | undefined) ?? 0);
        case 'string': return w.bytes(Buffer.from((v as string | undefined) ?? '', 'utf8'));
        case 'bytes': return w.bytes((v as Uint8Array | undefined) ?? Buffer.alloc(0));
      }
    }
    if ('struct' in s) return this.struct(w, s, v);
    const items = (v as unknown[] | undefined) ?? [];
    w.uint(items.length);
    for (const x of items) this.value(w, s.slice, x);
  }
}

function isZero(s: string, v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (s === 'string' || s === 'bytes') return (v as { length: number }).length === 0;
  if (s === 'bool') return !v;
  return v === 0 || v === 0n;
}

function frame(payload: Buffer): Buffer {
  const w = new Writer();
  w.uint(payload.length);
  return Buffer.concat([w.done(), payload]);
}
