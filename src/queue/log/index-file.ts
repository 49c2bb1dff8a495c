/**
 * The two sparse indexes of a segment, in memory as growable typed arrays and on disk as flat files
 * (big-endian, fixed-size entries, like Kafka's):
 *
 * - OffsetIndex (`.index`, 8 bytes an entry): relative offset (u32, batch base offset minus segment
 *   base offset) -> file position (u32) of that batch. One entry every `indexIntervalBytes` of log,
 *   so a lookup is a binary search then a scan of at most that many bytes.
 * - TimeIndex (`.timeindex`, 12 bytes an entry): running max timestamp (int64 ms) -> relative offset
 *   (u32) of the first batch AFTER the batches it covers: "every record below this offset has a
 *   timestamp <= this". Entries only when the max grows.
 *
 * Pure: no I/O. The segment shell loads, appends and saves them.
 */
import { QueueError } from '../errors.js';

export const OFFSET_INDEX_ENTRY_BYTES = 8;
export const TIME_INDEX_ENTRY_BYTES = 12;

const TWO_32 = 4294967296;

function inconsistent(what: string, details: Record<string, unknown>): QueueError {
  return new QueueError('ARCHLAB_QUEUE_CORRUPT', `index is inconsistent: ${what}`, { details });
}

function grow<T extends Uint32Array | Float64Array>(a: T, need: number, make: (n: number) => T): T {
  if (need <= a.length) return a;
  const b = make(Math.max(need, a.length * 2, 64));
  b.set(a);
  return b;
}

/** Relative offset -> position, strictly increasing in both. */
export class OffsetIndex {
  private rel = new Uint32Array(0);
  private pos = new Uint32Array(0);
  private n = 0;

  get size(): number {
    return this.n;
  }

  /** Appends an entry; both must be above the last entry's (else ARCHLAB_QUEUE_CORRUPT). */
  append(relOffset: number, position: number): void {
    if (relOffset < 0 || relOffset >= TWO_32 || position < 0 || position >= TWO_32) {
      throw inconsistent(`entry (${relOffset}, ${position}) out of u32 range`, { relOffset, position });
    }
    if (this.n > 0 && (relOffset <= this.rel[this.n - 1]! || position <= this.pos[this.n - 1]!)) {
      throw inconsistent(`entry (${relOffset}, ${position}) not above the last (${this.rel[this.n - 1]}, ${this.pos[this.n - 1]})`, { relOffset, position });
    }
    this.rel = grow(this.rel, this.n + 1, (k) => new Uint32Array(k));
    this.pos = grow(this.pos, this.n + 1, (k) => new Uint32Array(k));
    this.rel[this.n] = relOffset;
    this.pos[this.n] = position;
    this.n++;
  }

  /**
   * Position of the last indexed batch whose relative base offset is <= `relOffset`, or 0 when none
   * is: the place to start scanning for `relOffset`.
   */
  lookup(relOffset: number): number {
    let lo = 0;
    let hi = this.n - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.rel[mid]! <= relOffset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? 0 : this.pos[found]!;
  }

  /** The last entry, or null when empty. */
  last(): { relOffset: number; position: number } | null {
    return this.n === 0 ? null : { relOffset: this.rel[this.n - 1]!, position: this.pos[this.n - 1]! };
  }

  entry(i: number): { relOffset: number; position: number } {
    return { relOffset: this.rel[i]!, position: this.pos[i]! };
  }

  /** Drops every entry whose position is >= `position` (after a truncation). */
  truncateToPosition(position: number): void {
    while (this.n > 0 && this.pos[this.n - 1]! >= position) this.n--;
  }

  clear(): void {
    this.n = 0;
  }

  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.n * OFFSET_INDEX_ENTRY_BYTES);
    for (let i = 0; i < this.n; i++) {
      out.writeUInt32BE(this.rel[i]!, i * 8);
      out.writeUInt32BE(this.pos[i]!, i * 8 + 4);
    }
    return out;
  }

  /**
   * Parses an index file. Throws ARCHLAB_QUEUE_CORRUPT when its length is not a whole number of
   * entries, entries do not increase, or a position is at or past `logSizeBytes`.
   */
  static fromBuffer(buf: Buffer, logSizeBytes: number): OffsetIndex {
    if (buf.length % OFFSET_INDEX_ENTRY_BYTES !== 0) throw inconsistent(`offset index of ${buf.length} bytes is not whole entries`, { bytes: buf.length });
    const idx = new OffsetIndex();
    for (let at = 0; at < buf.length; at += 8) {
      const position = buf.readUInt32BE(at + 4);
      if (position >= logSizeBytes) throw inconsistent(`offset index position ${position} is past the log's ${logSizeBytes} bytes`, { position, logSizeBytes });
      idx.append(buf.readUInt32BE(at), position);
    }
    return idx;
  }
}

/** Running max timestamp -> relative offset below which every record is at or before it. */
export class TimeIndex {
  private ts = new Float64Array(0);
  private rel = new Uint32Array(0);
  private n = 0;

  get size(): number {
    return this.n;
  }

  /** Appends an entry when `maxTimestamp` is above the last entry's (otherwise ignored). */
  maybeAppend(maxTimestamp: number, relOffsetAfter: number): void {
    if (this.n > 0 && maxTimestamp <= this.ts[this.n - 1]!) return;
    if (this.n > 0 && relOffsetAfter <= this.rel[this.n - 1]!) {
      throw inconsistent(`time index offset ${relOffsetAfter} not above the last ${this.rel[this.n - 1]}`, { relOffsetAfter });
    }
    if (relOffsetAfter < 0 || relOffsetAfter >= TWO_32) throw inconsistent(`time index offset ${relOffsetAfter} out of u32 range`, { relOffsetAfter });
    this.ts = grow(this.ts, this.n + 1, (k) => new Float64Array(k));
    this.rel = grow(this.rel, this.n + 1, (k) => new Uint32Array(k));
    this.ts[this.n] = maxTimestamp;
    this.rel[this.n] = relOffsetAfter;
    this.n++;
  }

  /**
   * The relative offset from which to scan for the first record with timestamp >= `timestamp`:
   * the offset of the last entry whose max timestamp is below it (every record before that offset
   * is older), or 0 when no entry is.
   */
  lookup(timestamp: number): number {
    let lo = 0;
    let hi = this.n - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ts[mid]! < timestamp) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? 0 : this.rel[found]!;
  }

  last(): { maxTimestamp: number; relOffset: number } | null {
    return this.n === 0 ? null : { maxTimestamp: this.ts[this.n - 1]!, relOffset: this.rel[this.n - 1]! };
  }

  /** Drops entries whose offset is above `relOffset` (they cover records a truncation removed). */
  truncateToOffset(relOffset: number): void {
    while (this.n > 0 && this.rel[this.n - 1]! > relOffset) this.n--;
  }

  clear(): void {
    this.n = 0;
  }

  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.n * TIME_INDEX_ENTRY_BYTES);
    for (let i = 0; i < this.n; i++) {
      const t = this.ts[i]!;
      const hi = Math.floor(t / TWO_32);
      out.writeInt32BE(hi, i * 12);
      out.writeUInt32BE(t - hi * TWO_32, i * 12 + 4);
      out.writeUInt32BE(this.rel[i]!, i * 12 + 8);
    }
    return out;
  }

  /** Parses a time index file; throws ARCHLAB_QUEUE_CORRUPT unless whole, increasing entries below `maxRelOffset`. */
  static fromBuffer(buf: Buffer, maxRelOffset: number): TimeIndex {
    if (buf.length % TIME_INDEX_ENTRY_BYTES !== 0) throw inconsistent(`time index of ${buf.length} bytes is not whole entries`, { bytes: buf.length });
    const idx = new TimeIndex();
    for (let at = 0; at < buf.length; at += 12) {
      const ts = buf.readInt32BE(at) * TWO_32 + buf.readUInt32BE(at + 4);
      const rel = buf.readUInt32BE(at + 8);
      if (rel > maxRelOffset) throw inconsistent(`time index offset ${rel} is past the segment's end ${maxRelOffset}`, { rel, maxRelOffset });
      const before = idx.n;
      idx.maybeAppend(ts, rel);
      if (idx.n === before) throw inconsistent(`time index timestamps do not increase at entry ${at / 12}`, { entry: at / 12 });
    }
    return idx;
  }
}
