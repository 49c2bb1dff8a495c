/**
 * Primitive field codecs of the payloads: big-endian integers, int64 as two 32-bit halves (JS numbers,
 * exact to 2^53, no BigInt), and strings as u16 byte length + UTF-8. A reader that runs out of bytes
 * throws ARCHLAB_QUEUE_PROTOCOL ("truncated payload"), which closes the connection that sent it.
 */
import { QueueError } from '../errors.js';

const TWO_32 = 4294967296;

/** Longest string field, in UTF-8 bytes. */
export const MAX_STRING_BYTES = 0xffff;

export function protocolError(message: string, details?: Record<string, unknown>): QueueError {
  return new QueueError('ARCHLAB_QUEUE_PROTOCOL', message, details === undefined ? {} : { details });
}

/** Reads fields from a payload in order; every read checks the bounds. */
export class PayloadReader {
  pos = 0;

  /** `what` names the frame in error messages ("PRODUCE"). */
  constructor(
    public buf: Buffer,
    public what: string,
  ) {}

  /** Reuses this reader for another payload (decoders share one: no allocation per frame). */
  reset(buf: Buffer, what: string): this {
    this.buf = buf;
    this.what = what;
    this.pos = 0;
    return this;
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.buf.length) {
      throw protocolError(`truncated ${this.what} payload: needed ${n} more bytes at ${at}, have ${this.buf.length - at}`, {
        frame: this.what,
        position: at,
      });
    }
    this.pos = at + n;
    return at;
  }

  u8(): number {
    return this.buf[this.need(1)]!;
  }

  u16(): number {
    return this.buf.readUInt16BE(this.need(2));
  }

  u32(): number {
    return this.buf.readUInt32BE(this.need(4));
  }

  /** A signed int64 written by `writeI64`; refuses values outside the safe integer range. */
  i64(): number {
    const at = this.need(8);
    const v = this.buf.readInt32BE(at) * TWO_32 + this.buf.readUInt32BE(at + 4);
    if (!Number.isSafeInteger(v)) throw protocolError(`${this.what}: int64 at ${at} is outside the safe integer range`);
    return v;
  }

  str16(): string {
    const n = this.u16();
    const at = this.need(n);
    return this.buf.toString('utf8', at, at + n);
  }

  /** `n` bytes as a view. */
  bytes(n: number): Buffer {
    const at = this.need(n);
    return this.buf.subarray(at, at + n);
  }

  /** Everything left, as a view. */
  rest(): Buffer {
    const at = this.pos;
    this.pos = this.buf.length;
    return this.buf.subarray(at);
  }

  /** Throws unless every byte was read: trailing garbage is a malformed frame too. */
  done(): void {
    if (this.pos !== this.buf.length) {
      throw protocolError(`${this.what} payload has ${this.buf.length - this.pos} unexpected trailing bytes`, { frame: this.what });
    }
  }
}

/** Byte length of `s` as a str16 field (2 + UTF-8 bytes); throws BAD_ARGUMENT when too long. */
export function str16Bytes(s: string, field: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > MAX_STRING_BYTES) {
    throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `${field} is ${n} bytes in UTF-8; the protocol allows at most ${MAX_STRING_BYTES}`, {
      details: { field, bytes: n },
    });
  }
  return 2 + n;
}

/** Writes fields into a buffer of a size computed beforehand. */
export class PayloadWriter {
  pos: number;

  constructor(
    public buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  /** Reuses this writer for another buffer (encoders share one: no allocation per frame). */
  reset(buf: Buffer, start: number): this {
    this.buf = buf;
    this.pos = start;
    return this;
  }

  u8(v: number): this {
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  i64(v: number): this {
    const hi = Math.floor(v / TWO_32);
    this.buf.writeInt32BE(hi, this.pos);
    this.buf.writeUInt32BE(v - hi * TWO_32, this.pos + 4);
    this.pos += 8;
    return this;
  }

  /** `bytes` is the str16Bytes() of `s` computed for the size, so the length is not measured twice. */
  str16(s: string, bytes: number): this {
    this.buf.writeUInt16BE(bytes - 2, this.pos);
    this.buf.write(s, this.pos + 2, bytes - 2, 'utf8');
    this.pos += bytes;
    return this;
  }

  raw(b: Buffer): this {
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }
}

/** Checks an integer field before it is written as u32 (BAD_ARGUMENT otherwise). */
export function checkU32(field: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `${field} must be an integer 0..4294967295, got ${v}`, { details: { field, value: v } });
  }
  return v;
}

/** Checks an integer field before it is written as int64 (BAD_ARGUMENT otherwise). */
export function checkI64(field: string, v: number): number {
  if (!Number.isSafeInteger(v)) {
    throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `${field} must be a safe integer, got ${v}`, { details: { field, value: v } });
  }
  return v;
}
