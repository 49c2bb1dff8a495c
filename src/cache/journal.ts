/**
 * The write-back journal: an append-only local file that makes acknowledged writes survive a crash
 * (kill -9) until the flusher has put them in the source.
 *
 * File format: a sequence of records, each
 *
 *   [u32 LE payload length][u32 LE CRC-32 of the payload][payload]
 *
 * where the payload is one of
 *
 *   write:      [u8 1][f64 LE seq][u8 op: 0 put, 1 delete][u32 LE key length][key UTF-8][value bytes]
 *   checkpoint: [u8 2][f64 LE seq]   "every write with seq <= this is in the source (or superseded)"
 *
 * Values are encoded with a Codec (jsonCodec by default, so Buffers and Dates come back as they went
 * in). The header is binary rather than JSON: nothing to escape, fixed-size fields, and the seq can be
 * stamped into an already-encoded record.
 *
 * Durability: `fsync: 'always'` resolves an append only after its bytes are fdatasync'ed; appends that
 * arrive while one fdatasync runs share the next one (group commit), so N concurrent writers pay for
 * far fewer than N syncs. `{ everyMs }` resolves after write() (the bytes are in the OS page cache,
 * which survives kill -9 but not a power loss or kernel crash) and fdatasyncs every `everyMs`.
 *
 * Replay at open reads every record, keeps the last write per key with seq above the last checkpoint
 * and returns them in seq order. A record that is cut short or fails its CRC at the end of the file
 * is a torn tail (a write the crash interrupted, never acknowledged under fsync 'always'): the file
 * is truncated there and the event logged. The same damage followed by a valid record is corruption
 * in the middle: open fails with ARCHLAB_CACHE_JOURNAL and the offset, rather than drop acknowledged
 * writes silently.
 *
 * Size: at most `maxBytes`. When an append would pass it, the file is compacted: a new file holding
 * a checkpoint and the live records (the last write per key not yet flushed) is written, fsynced and
 * renamed over the old one, and the directory fsynced. Compaction is only admitted while live records
 * fill at most half of maxBytes (so each compaction frees at least as much as it copies); beyond
 * that, appends are refused with ARCHLAB_CACHE_BACKPRESSURE until flushes catch up.
 *
 * One process at a time: a `<path>.lock` file holds the owner's pid; a lock left by a dead process
 * (kill -9) is taken over.
 */
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { SystemClock, type Clock, type TimerHandle } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import { WindowReader, fsyncDir, openOrCreate, takePidLock, writeAllAt } from '../core/files.js';
import type { Logger } from '../core/log.js';
import { encodeValue, decodeValue, jsonCodec } from './codec.js';
import { CacheError, checkKey } from './errors.js';
import type { Codec, SourceWrite } from './types.js';

export type JournalFsync = 'always' | { everyMs: number };

export interface JournalOptions {
  /** The journal file; its directory is created if missing. */
  path: string;
  /** 'always': an append resolves after fdatasync (group commit). { everyMs }: after write(), fdatasync every everyMs ms. */
  fsync: JournalFsync;
  /** Largest file size in bytes. Default 64 MiB. Minimum 4 KiB. */
  maxBytes?: number;
  /** Encodes values. Default jsonCodec (Buffer and Date kept). The same codec must read the file back. */
  codec?: Codec;
  /** Timers for { everyMs }. Default SystemClock. */
  clock?: Clock;
  /** Torn tails and compactions are logged here. */
  logger?: Logger;
}

export const DEFAULT_JOURNAL_MAX_BYTES = 64 * 1024 * 1024;
const MIN_JOURNAL_BYTES = 4096;
/** A payload longer than this is never valid, whatever maxBytes was when the file was written. */
const MAX_PAYLOAD_BYTES = 1 << 30;
const HEADER_BYTES = 8;
const TYPE_WRITE = 1;
const TYPE_CHECKPOINT = 2;
/** type + seq + op + key length. */
const WRITE_FIXED_BYTES = 1 + 8 + 1 + 4;
const CHECKPOINT_PAYLOAD_BYTES = 1 + 8;
const CHECKPOINT_RECORD_BYTES = HEADER_BYTES + CHECKPOINT_PAYLOAD_BYTES;
/** Bytes read per syscall at replay and compaction. */
const READ_CHUNK_BYTES = 1 << 20;

/** A write as the journal keeps it: a source write and its sequence number. */
export type JournalWrite<V> = SourceWrite<V> & { seq: number };

/** What open() found in the file. */
export interface JournalReplay<V> {
  /** Writes not covered by the last checkpoint, the last one per key, in seq order. */
  writes: JournalWrite<V>[];
  /** The highest seq in the file (records and checkpoints); new writes must use higher ones. 0 when empty. */
  lastSeq: number;
  /** The last checkpoint's seq (0 when none). */
  checkpointSeq: number;
  /** Bytes cut off a torn tail (0 when the file ended cleanly). */
  truncatedBytes: number;
}

/** An encoded write record whose seq is stamped in at append time. */
export interface EncodedWrite {
  readonly key: string;
  readonly buf: Buffer;
}

export interface JournalStats {
  /** Write records appended since open. */
  appends: number;
  /** fdatasync calls since open. */
  syncs: number;
  /** Compactions since open. */
  compactions: number;
}

interface Queued {
  buf: Buffer;
  /** Set for write records: the key and seq, for the live index. */
  key?: string;
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Where the last write of a key not yet covered by a checkpoint sits in the file. */
interface LiveRecord {
  seq: number;
  offset: number;
  length: number;
}

/** Journals open in this process, by absolute path (the lock file covers other processes). */
const openPaths = new Set<string>();

function journalError(message: string, details: Record<string, unknown>, cause?: unknown): CacheError {
  return new CacheError('ARCHLAB_CACHE_JOURNAL', message, { details, cause });
}

function frame(payload: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  buf.writeUInt32LE(payload.length, 0);
  buf.writeUInt32LE(crc32(payload), 4);
  payload.copy(buf, HEADER_BYTES);
  return buf;
}

function checkpointRecord(seq: number): Buffer {
  const payload = Buffer.allocUnsafe(CHECKPOINT_PAYLOAD_BYTES);
  payload.writeUInt8(TYPE_CHECKPOINT, 0);
  payload.writeDoubleLE(seq, 1);
  return frame(payload);
}

/** Parses a payload whose CRC matched; throws a plain description when it is not a valid record. */
function parsePayload<V>(p: Buffer, codec: Codec): { type: 'write'; write: JournalWrite<V> } | { type: 'checkpoint'; seq: number } {
  const type = p.readUInt8(0);
  if (type === TYPE_CHECKPOINT) {
    if (p.length !== CHECKPOINT_PAYLOAD_BYTES) throw journalError('checkpoint record of the wrong length', { length: p.length });
    return { type: 'checkpoint', seq: p.readDoubleLE(1) };
  }
  if (type !== TYPE_WRITE || p.length < WRITE_FIXED_BYTES) throw journalError(`unknown record type ${type}`, { type });
  const seq = p.readDoubleLE(1);
  const op = p.readUInt8(9);
  const keyLen = p.readUInt32LE(10);
  if (!Number.isSafeInteger(seq) || seq <= 0 || op > 1 || WRITE_FIXED_BYTES + keyLen > p.length || keyLen === 0) {
    throw journalError('malformed write record', { seq, op, keyLen });
  }
  const key = p.toString('utf8', WRITE_FIXED_BYTES, WRITE_FIXED_BYTES + keyLen);
  if (op === 1) return { type: 'write', write: { seq, op: 'delete', key } };
  const value = decodeValue(codec, key, p.subarray(WRITE_FIXED_BYTES + keyLen)) as V;
  return { type: 'write', write: { seq, op: 'put', key, value } };
}

function takeLock(lockPath: string): Promise<void> {
  return takePidLock(lockPath, (owner) =>
    owner === undefined
      ? journalError(`could not take the journal lock ${lockPath}`, { lockPath })
      : journalError(`journal ${lockPath.slice(0, -5)} is in use by process ${owner}`, { lockPath, pid: owner }),
  );
}

export class Journal<V = unknown> {
  readonly path: string;
  readonly maxBytes: number;
  private readonly fsyncMode: JournalFsync;
  private readonly codec: Codec;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly lockPath: string;

  private fh: FileHandle;
  /** Bytes in the file. */
  private written: number;
  /** Bytes of records queued and not yet written. */
  private queuedBytes = 0;
  /** Bytes promised to appends that have not been queued yet (reserve()). */
  private reservedBytes = 0;
  private queue: Queued[] = [];
  /** Last write per key with seq above the checkpoint, in seq order (re-inserted when a key is written again). */
  private readonly live = new Map<string, LiveRecord>();
  private liveBytes = 0;
  private checkpointSeq: number;
  private lastSeq: number;
  private pumping: Promise<void> | undefined;
  private syncRequested = false;
  private dirty = false;
  private syncTimer: TimerHandle | undefined;
  private closed = false;
  /** Set when the file can no longer be trusted (a failed fdatasync); every later append fails with it. */
  private broken: CacheError | undefined;
  private readonly counters: JournalStats = { appends: 0, syncs: 0, compactions: 0 };

  private constructor(opts: Required<Omit<JournalOptions, 'logger'>> & { logger: Logger | undefined }, fh: FileHandle, size: number, lastSeq: number, checkpointSeq: number) {
    this.path = opts.path;
    this.maxBytes = opts.maxBytes;
    this.fsyncMode = opts.fsync;
    this.codec = opts.codec;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.lockPath = `${opts.path}.lock`;
    this.fh = fh;
    this.written = size;
    this.lastSeq = lastSeq;
    this.checkpointSeq = checkpointSeq;
  }

  /**
   * Opens (or creates) the journal at `opts.path`, replays it, and returns it with what it holds.
   * Fails with ARCHLAB_CACHE_JOURNAL when the file is corrupt beyond a torn tail, written with another
   * codec, or in use by another live process.
   */
  static async open<V>(opts: JournalOptions): Promise<{ journal: Journal<V>; replay: JournalReplay<V> }> {
    if (typeof opts.path !== 'string' || opts.path.length === 0) throw new InvalidArgumentError('journal path must be a non-empty string');
    const fsync = opts.fsync;
    if (fsync !== 'always' && !(typeof fsync === 'object' && fsync !== null && Number.isInteger(fsync.everyMs) && fsync.everyMs > 0)) {
      throw new InvalidArgumentError(`journal fsync must be 'always' or { everyMs: a positive integer }, got ${JSON.stringify(fsync)}`);
    }
    const maxBytes = opts.maxBytes ?? DEFAULT_JOURNAL_MAX_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < MIN_JOURNAL_BYTES) throw new InvalidArgumentError(`journal maxBytes must be an integer >= ${MIN_JOURNAL_BYTES}, got ${maxBytes}`);
    const path = resolve(opts.path);
    if (openPaths.has(path)) throw journalError(`journal ${path} is already open in this process`, { path });
    openPaths.add(path);
    let fh: FileHandle | undefined;
    let locked = false;
    try {
      const dir = dirname(path);
      await fsp.mkdir(dir, { recursive: true });
      await takeLock(`${path}.lock`);
      locked = true;
      // A compaction the last owner did not finish: the journal itself was never replaced, drop the copy.
      await fsp.rm(`${path}.compact`, { force: true });
      fh = await openOrCreate(path, dir);
      const full = { path, fsync, maxBytes, codec: opts.codec ?? jsonCodec, clock: opts.clock ?? new SystemClock(), logger: opts.logger };
      const size = (await fh.stat()).size;
      const journal = new Journal<V>(full, fh, size, 0, 0);
      const replay = await journal.replay(size);
      if (journal.written > maxBytes) {
        // Opened with a smaller maxBytes than the file was written with: shrink it now if we can.
        journal.counters.compactions++;
        await journal.compact();
      }
      return { journal, replay };
    } catch (err) {
      await fh?.close().catch(() => undefined);
      if (locked) await fsp.rm(`${path}.lock`, { force: true }).catch(() => undefined);
      openPaths.delete(path);
      if (err instanceof CacheError || err instanceof InvalidArgumentError) throw err;
      throw journalError(`cannot open journal ${path}: ${(err as Error).message}`, { path }, err);
    }
  }

  /** Reads every record, truncates a torn tail, rebuilds the live index and returns the unflushed writes. */
  private async replay(size: number): Promise<JournalReplay<V>> {
    const reader = new WindowReader(this.fh, size, READ_CHUNK_BYTES);
    const values = new Map<string, JournalWrite<V>>();
    let offset = 0;
    let bad: string | undefined;
    while (offset < size) {
      const header = await reader.read(offset, HEADER_BYTES);
      if (!header) {
        bad = 'a header cut short';
        break;
      }
      const len = header.readUInt32LE(0);
      const crc = header.readUInt32LE(4);
      if (len < CHECKPOINT_PAYLOAD_BYTES || len > MAX_PAYLOAD_BYTES) {
        bad = `an impossible length ${len}`;
        break;
      }
      const payload = await reader.read(offset + HEADER_BYTES, len);
      if (!payload) {
        bad = 'a record cut short';
        break;
      }
      if (crc32(payload) !== crc) {
        bad = 'a CRC mismatch';
        break;
      }
      let rec: ReturnType<typeof parsePayload<V>>;
      try {
        rec = parsePayload<V>(payload, this.codec);
      } catch (err) {
        // The CRC matched, so these are the bytes we wrote: a different codec or format, not a torn write.
        throw journalError(`journal ${this.path}: record at offset ${offset} cannot be read: ${(err as Error).message}`, { path: this.path, offset }, err);
      }
      const length = HEADER_BYTES + len;
      if (rec.type === 'checkpoint') {
        this.setCheckpoint(rec.seq);
        // `values` is in seq order, like the live index.
        for (const [key, w] of values) {
          if (w.seq > this.checkpointSeq) break;
          values.delete(key);
        }
        this.lastSeq = Math.max(this.lastSeq, rec.seq);
      } else {
        const w = rec.write;
        this.lastSeq = Math.max(this.lastSeq, w.seq);
        const prev = values.get(w.key);
        if (w.seq > this.checkpointSeq && (prev === undefined || prev.seq < w.seq)) {
          values.delete(w.key);
          values.set(w.key, w);
          this.addLive(w.key, w.seq, offset, length);
        }
      }
      offset += length;
    }
    let truncatedBytes = 0;
    if (bad !== undefined) {
      const next = await this.findValidRecord(offset + 1, size);
      if (next !== undefined) {
        throw journalError(`journal ${this.path} is corrupt at offset ${offset} (${bad}) with valid records after it (at ${next}); refusing to drop acknowledged writes`, {
          path: this.path,
          offset,
          nextValidOffset: next,
        });
      }
      truncatedBytes = size - offset;
      await this.fh.truncate(offset);
      await this.fh.datasync();
      this.written = offset;
      this.logger?.warn({ path: this.path, offset, truncatedBytes, reason: bad }, 'journal: torn tail truncated');
    }
    const writes = [...values.values()].sort((a, b) => a.seq - b.seq);
    return { writes, lastSeq: this.lastSeq, checkpointSeq: this.checkpointSeq, truncatedBytes };
  }

  /** The offset of the first complete, CRC-valid record at or after `from`, if any (used only after damage). */
  private async findValidRecord(from: number, size: number): Promise<number | undefined> {
    if (from >= size) return undefined;
    const rest = Buffer.allocUnsafe(size - from);
    let got = 0;
    while (got < rest.length) {
      const { bytesRead } = await this.fh.read(rest, got, rest.length - got, from + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    for (let i = 0; i + HEADER_BYTES + CHECKPOINT_PAYLOAD_BYTES <= got; i++) {
      const type = rest[i + HEADER_BYTES];
      if (type !== TYPE_WRITE && type !== TYPE_CHECKPOINT) continue;
      const len = rest.readUInt32LE(i);
      if (len < CHECKPOINT_PAYLOAD_BYTES || i + HEADER_BYTES + len > got) continue;
      if (crc32(rest.subarray(i + HEADER_BYTES, i + HEADER_BYTES + len)) === rest.readUInt32LE(i + 4)) return from + i;
    }
    return undefined;
  }

  private setCheckpoint(seq: number): void {
    if (seq <= this.checkpointSeq) return;
    this.checkpointSeq = seq;
    // The live index is in seq order: drop from the front what the checkpoint covers.
    for (const [key, rec] of this.live) {
      if (rec.seq > seq) break;
      this.live.delete(key);
      this.liveBytes -= rec.length;
    }
  }

  private addLive(key: string, seq: number, offset: number, length: number): void {
    const prev = this.live.get(key);
    if (prev) {
      this.live.delete(key);
      this.liveBytes -= prev.length;
    }
    this.live.set(key, { seq, offset, length });
    this.liveBytes += length;
  }

  /** Bytes the file will hold once queued records are written. */
  get bytes(): number {
    return this.written + this.queuedBytes;
  }

  /** The highest seq written or replayed. */
  get highestSeq(): number {
    return this.lastSeq;
  }

  stats(): JournalStats {
    return { ...this.counters };
  }

  /**
   * Encodes a write (the value through the codec, failing with ARCHLAB_CACHE_CODEC naming the key);
   * the seq is stamped in by append(). A record larger than a quarter of maxBytes is refused with
   * ARCHLAB_CACHE_VALUE_TOO_LARGE.
   */
  encode(write: SourceWrite<V>): EncodedWrite {
    checkKey(write.key);
    const key = Buffer.from(write.key, 'utf8');
    let value: Buffer | undefined;
    if (write.op === 'put') {
      const v = encodeValue(this.codec, write.key, write.value);
      value = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    }
    const payloadLen = WRITE_FIXED_BYTES + key.length + (value?.length ?? 0);
    if (HEADER_BYTES + payloadLen > this.maxBytes / 4) {
      throw new CacheError('ARCHLAB_CACHE_VALUE_TOO_LARGE', `journal record for key "${write.key.slice(0, 64)}" is ${HEADER_BYTES + payloadLen} bytes, over a quarter of the journal's maxBytes (${this.maxBytes})`, {
        details: { key: write.key, bytes: HEADER_BYTES + payloadLen, maxBytes: Math.floor(this.maxBytes / 4) },
      });
    }
    const buf = Buffer.allocUnsafe(HEADER_BYTES + payloadLen);
    buf.writeUInt8(TYPE_WRITE, HEADER_BYTES);
    buf.writeUInt8(write.op === 'put' ? 0 : 1, HEADER_BYTES + 9);
    buf.writeUInt32LE(key.length, HEADER_BYTES + 10);
    key.copy(buf, HEADER_BYTES + WRITE_FIXED_BYTES);
    value?.copy(buf, HEADER_BYTES + WRITE_FIXED_BYTES + key.length);
    buf.writeUInt32LE(payloadLen, 0);
    return { key: write.key, buf };
  }

  /**
   * Whether `bytes` more would fit: directly, or after a compaction while live records fill at most
   * half of maxBytes.
   */
  hasRoom(bytes: number): boolean {
    const pending = this.queuedBytes + this.reservedBytes + bytes;
    return this.written + pending <= this.maxBytes || this.liveBytes + pending + CHECKPOINT_RECORD_BYTES <= this.maxBytes / 2;
  }

  /** Reserves room for a record of `bytes` that will be appended shortly; false when there is none. */
  reserve(bytes: number): boolean {
    if (!this.hasRoom(bytes)) return false;
    this.reservedBytes += bytes;
    return true;
  }

  /** Gives back a reservation that will not be used. */
  unreserve(bytes: number): void {
    this.reservedBytes = Math.max(0, this.reservedBytes - bytes);
  }

  /**
   * Appends an encoded write with `seq` (greater than every seq before it). Resolves when the record is
   * durable per the fsync policy. Pass `reserved` when room was reserved for it. Fails with
   * ARCHLAB_CACHE_BACKPRESSURE when there is no room, ARCHLAB_CACHE_JOURNAL when the file cannot be
   * written, ARCHLAB_CACHE_CLOSED after close().
   */
  append(rec: EncodedWrite, seq: number, reserved = false): Promise<void> {
    const len = rec.buf.length;
    if (reserved) this.unreserve(len);
    if (this.closed) return Promise.reject(new CacheError('ARCHLAB_CACHE_CLOSED', `journal ${this.path} is closed`));
    if (this.broken) return Promise.reject(this.broken);
    if (!Number.isSafeInteger(seq) || seq <= this.lastSeq) return Promise.reject(new InvalidArgumentError(`journal seq must increase: got ${seq} after ${this.lastSeq}`));
    if (!reserved && !this.hasRoom(len)) {
      return Promise.reject(
        new CacheError('ARCHLAB_CACHE_BACKPRESSURE', `journal ${this.path} is full: ${this.liveBytes} bytes of unflushed writes (maxBytes ${this.maxBytes})`, {
          details: { path: this.path, liveBytes: this.liveBytes, maxBytes: this.maxBytes },
        }),
      );
    }
    this.lastSeq = seq;
    // Stamp the seq and seal the record: the buffer is ours from here on.
    const buf = Buffer.from(rec.buf);
    buf.writeDoubleLE(seq, HEADER_BYTES + 1);
    buf.writeUInt32LE(crc32(buf.subarray(HEADER_BYTES)), 4);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ buf, key: rec.key, seq, resolve, reject });
      this.queuedBytes += len;
      this.kick();
    });
  }

  /**
   * Records that every write with seq <= `seq` is in the source (or superseded by a later write of its
   * key that is still live). The record needs no fsync of its own: a lost checkpoint only makes replay
   * hand back writes that were already flushed. When the file is full it is skipped (the next
   * compaction writes it).
   */
  checkpoint(seq: number): Promise<void> {
    if (this.closed || this.broken || seq <= this.checkpointSeq) return Promise.resolve();
    this.setCheckpoint(seq);
    this.lastSeq = Math.max(this.lastSeq, seq);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ buf: checkpointRecord(seq), seq, resolve, reject });
      this.queuedBytes += CHECKPOINT_RECORD_BYTES;
      this.kick();
    });
  }

  /** Makes everything written so far durable now (whatever the policy). */
  sync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.syncRequested = true;
    this.kick();
    return this.pumping ?? Promise.resolve();
  }

  private kick(): void {
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
      // Anything queued while the pump was finishing starts a new one.
      if (this.queue.length || this.syncRequested) this.kick();
    });
  }

  /** Writes queued records in batches, one write() and (fsync 'always') one fdatasync per batch. */
  private async pump(): Promise<void> {
    while (this.queue.length || this.syncRequested) {
      const batch = this.queue;
      this.queue = [];
      let bytes = 0;
      for (const q of batch) bytes += q.buf.length;
      this.queuedBytes -= bytes;
      if (this.broken) {
        for (const q of batch) q.reject(this.broken);
        this.syncRequested = false;
        continue;
      }
      let toWrite = batch;
      try {
        if (this.written + bytes > this.maxBytes) {
          let dataBytes = 0;
          for (const q of batch) if (q.key !== undefined) dataBytes += q.buf.length;
          if (this.liveBytes + dataBytes + CHECKPOINT_RECORD_BYTES <= this.maxBytes) {
            this.counters.compactions++;
            await this.compact();
          }
          if (this.written + bytes > this.maxBytes) {
            // Checkpoints are optional (compaction writes the latest); data that does not fit is refused.
            for (const q of batch) if (q.key === undefined) q.resolve();
            toWrite = [];
            let room = this.maxBytes - this.written;
            for (const q of batch) {
              if (q.key === undefined) continue;
              if (q.buf.length <= room) {
                toWrite.push(q);
                room -= q.buf.length;
              } else {
                q.reject(new CacheError('ARCHLAB_CACHE_BACKPRESSURE', `journal ${this.path} is full (maxBytes ${this.maxBytes})`, { details: { path: this.path, maxBytes: this.maxBytes } }));
              }
            }
          }
        }
        const start = this.written;
        if (toWrite.length) {
          const out = toWrite.length === 1 ? toWrite[0]!.buf : Buffer.concat(toWrite.map((q) => q.buf));
          await this.writeAll(out, start);
          this.written += out.length;
          let offset = start;
          for (const q of toWrite) {
            if (q.key !== undefined) {
              this.counters.appends++;
              if (q.seq > this.checkpointSeq) this.addLive(q.key, q.seq, offset, q.buf.length);
            }
            offset += q.buf.length;
          }
          this.dirty = true;
        }
        const hasData = toWrite.some((q) => q.key !== undefined);
        if (this.dirty && (this.syncRequested || (this.fsyncMode === 'always' && hasData))) {
          this.syncRequested = false;
          this.dirty = false;
          this.counters.syncs++;
          try {
            await this.fh.datasync();
          } catch (err) {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing in the file can be trusted.
            this.broken = journalError(`journal ${this.path}: fdatasync failed: ${(err as Error).message}`, { path: this.path }, err);
            throw this.broken;
          }
        } else if (this.dirty && this.fsyncMode !== 'always') {
          this.syncRequested = false;
          this.syncTimer ??= this.clock.setTimer(this.fsyncMode.everyMs, () => {
            this.syncTimer = undefined;
            if (this.closed) return;
            this.syncRequested = true;
            this.kick();
          });
        } else {
          this.syncRequested = false;
        }
        for (const q of toWrite) q.resolve();
      } catch (err) {
        const e = err instanceof CacheError ? err : journalError(`journal ${this.path}: write failed: ${(err as Error).message}`, { path: this.path }, err);
        for (const q of toWrite) q.reject(e);
        this.logger?.error({ err: e, path: this.path }, 'journal: write failed');
      }
    }
  }

  /** Writes all of `buf` at `position`; on failure cuts the file back to `position` (or marks the journal broken). */
  private writeAll(buf: Buffer, position: number): Promise<void> {
    return writeAllAt(this.fh, buf, position, (truncErr) => {
      this.broken = journalError(`journal ${this.path}: write failed and the partial record could not be removed: ${(truncErr as Error).message}`, { path: this.path }, truncErr);
    });
  }

  /**
   * Rewrites the file as a checkpoint plus the live records (in seq order), via a temporary file that
   * is fsynced, renamed over the journal, and made durable with an fsync of the directory.
   */
  private async compact(): Promise<void> {
    const tmp = `${this.path}.compact`;
    // Read-write: after the rename this handle is the journal, read by the next compaction.
    const out = await fsp.open(tmp, 'w+', 0o600);
    let renamed = false;
    try {
      const parts: Buffer[] = [checkpointRecord(this.checkpointSeq)];
      let partsBytes = CHECKPOINT_RECORD_BYTES;
      let outOffset = 0;
      const newLive: [string, LiveRecord][] = [];
      let newOffset = CHECKPOINT_RECORD_BYTES;
      const reader = new WindowReader(this.fh, this.written, READ_CHUNK_BYTES);
      const flushParts = async (): Promise<void> => {
        const buf = Buffer.concat(parts, partsBytes);
        let done = 0;
        while (done < buf.length) done += (await out.write(buf, done, buf.length - done, outOffset + done)).bytesWritten;
        outOffset += buf.length;
        parts.length = 0;
        partsBytes = 0;
      };
      for (const [key, rec] of this.live) {
        const bytes = await reader.read(rec.offset, rec.length);
        if (!bytes) throw journalError(`journal ${this.path}: live record at ${rec.offset} is past the end of the file`, { path: this.path, offset: rec.offset });
        parts.push(Buffer.from(bytes));
        partsBytes += rec.length;
        newLive.push([key, { seq: rec.seq, offset: newOffset, length: rec.length }]);
        newOffset += rec.length;
        if (partsBytes >= READ_CHUNK_BYTES) await flushParts();
      }
      await flushParts();
      await out.datasync();
      await fsp.rename(tmp, this.path);
      renamed = true;
      await fsyncDir(dirname(this.path));
      const old = this.fh;
      this.fh = out;
      const before = this.written;
      this.written = outOffset;
      this.live.clear();
      for (const [k, r] of newLive) this.live.set(k, r);
      this.dirty = false;
      await old.close();
      this.logger?.info({ path: this.path, beforeBytes: before, afterBytes: outOffset, liveRecords: newLive.length }, 'journal: compacted');
    } catch (err) {
      if (!renamed) {
        await out.close().catch(() => undefined);
        await fsp.rm(tmp, { force: true }).catch(() => undefined);
      } else {
        this.broken = journalError(`journal ${this.path}: compaction failed after the rename: ${(err as Error).message}`, { path: this.path }, err);
      }
      throw err;
    }
  }

  /** Writes and fsyncs what is queued, then closes the file and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    // New appends and checkpoints are refused from here; what is queued is written and synced.
    this.closed = true;
    this.syncRequested = true;
    this.kick();
    while (this.pumping) await this.pumping;
    this.syncTimer?.cancel();
    this.syncTimer = undefined;
    try {
      if (this.dirty && !this.broken) {
        this.counters.syncs++;
        await this.fh.datasync();
      }
    } finally {
      await this.fh.close().catch(() => undefined);
      await fsp.rm(this.lockPath, { force: true }).catch(() => undefined);
      openPaths.delete(this.path);
    }
  }
}
