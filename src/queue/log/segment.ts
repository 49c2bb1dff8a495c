/**
 * One segment of a partition: `<20-digit baseOffset>.log` (record batches end to end) with its sparse
 * `.index` and `.timeindex`. A thin file shell: it appends bytes it is given, reads ranges, scans
 * and verifies batches, and keeps the in-memory indexes up to date; the partition decides what to
 * write and when.
 *
 * Index files are written whole when a segment is finished (roll) and at a clean close; the active
 * segment's index lives in memory and is rebuilt by scanning after a crash (the partition scans that
 * segment anyway to find a torn tail), so appends pay for no index I/O.
 */
import { constants as fsConstants, ftruncateSync, writevSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { QueueError } from '../errors.js';
import { OffsetIndex, TimeIndex } from './index-file.js';
import {
  BATCH_HEADER_BYTES,
  BATCH_LOG_OVERHEAD_BYTES,
  BATCH_MAGIC,
  batchBaseOffsetAt,
  batchSizeAt,
  readBatchHeader,
  verifyBatch,
  type BatchHeader,
} from './record-batch.js';

/** `00000000000000001234` for 1234, the file stem of a segment (Kafka's naming). */
export function segmentName(baseOffset: number): string {
  return String(baseOffset).padStart(20, '0');
}

/** Base offset of a segment file name, or null when the name is not `<20 digits>.<ext>`. */
export function parseSegmentName(file: string, ext: string): number | null {
  if (!file.endsWith(ext)) return null;
  const stem = file.slice(0, -ext.length);
  if (!/^\d{20}$/.test(stem)) return null;
  const n = Number(stem);
  return Number.isSafeInteger(n) ? n : null;
}

export function storageError(op: string, path: string, err: unknown): QueueError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new QueueError('ARCHLAB_QUEUE_DISK_FULL', `disk full while ${op} ${path} (${code}); nothing was acknowledged`, {
      cause: err,
      details: { path, op, errno: code },
    });
  }
  return new QueueError('ARCHLAB_QUEUE_STORAGE', `storage error while ${op} ${path}: ${(err as Error).message}`, {
    cause: err,
    details: { path, op, errno: code },
  });
}

/** What a scan found wrong at `position` (the first bad byte). */
export interface ScanProblem {
  position: number;
  /** 'torn': the bytes run out (a write cut short); 'corrupt': a whole batch fails its checks. */
  kind: 'torn' | 'corrupt';
  error: QueueError;
}

export interface ScanResult {
  /** Position after the last good batch. */
  endPosition: number;
  problem: ScanProblem | null;
}

/** Bytes read at a time when scanning. */
const SCAN_CHUNK_BYTES = 1024 * 1024;

export class Segment {
  readonly baseOffset: number;
  readonly logPath: string;
  readonly indexPath: string;
  readonly timeIndexPath: string;
  /** Bytes of whole batches in the file (reads never go past it). */
  sizeBytes = 0;
  /** One past the last offset held (baseOffset when empty). */
  nextOffset: number;
  /** Largest record timestamp held; -Infinity when empty. */
  maxTimestamp = -Infinity;
  /** When the first batch was appended: the log's clock while live, the first batch's max timestamp after reopen. */
  firstAppendAtMs: number | null = null;
  offsetIndex = new OffsetIndex();
  timeIndex = new TimeIndex();
  /** Written since the last fdatasync. */
  dirty = false;
  /** Readers in flight; a deleted segment closes its file when the last one leaves. */
  private refs = 0;
  private deleted = false;
  private closed = false;
  private bytesSinceIndex = 0;

  private constructor(
    readonly dir: string,
    baseOffset: number,
    private fh: FileHandle,
    private readonly indexIntervalBytes: number,
  ) {
    this.baseOffset = baseOffset;
    this.nextOffset = baseOffset;
    const stem = join(dir, segmentName(baseOffset));
    this.logPath = `${stem}.log`;
    this.indexPath = `${stem}.index`;
    this.timeIndexPath = `${stem}.timeindex`;
  }

  /** Creates a new empty segment (fails if the file exists). */
  static async create(dir: string, baseOffset: number, indexIntervalBytes: number): Promise<Segment> {
    const path = join(dir, `${segmentName(baseOffset)}.log`);
    let fh: FileHandle;
    try {
      fh = await fsp.open(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
    } catch (err) {
      throw storageError('creating', path, err);
    }
    return new Segment(dir, baseOffset, fh, indexIntervalBytes);
  }

  /** Opens an existing segment file; its size and indexes are settled by load()/scan(). */
  static async open(dir: string, baseOffset: number, indexIntervalBytes: number): Promise<{ segment: Segment; fileBytes: number }> {
    const path = join(dir, `${segmentName(baseOffset)}.log`);
    let fh: FileHandle;
    let fileBytes: number;
    try {
      fh = await fsp.open(path, fsConstants.O_RDWR);
      fileBytes = (await fh.stat()).size;
    } catch (err) {
      throw storageError('opening', path, err);
    }
    return { segment: new Segment(dir, baseOffset, fh, indexIntervalBytes), fileBytes };
  }

  get isEmpty(): boolean {
    return this.sizeBytes === 0;
  }

  /**
   * Notes a batch now in the file at `position` (appended or found by a scan): index entries every
   * indexIntervalBytes, the running max timestamp, the end offset.
   */
  noteBatch(position: number, size: number, baseOffset: number, lastOffset: number, maxTimestamp: number): void {
    if (this.bytesSinceIndex >= this.indexIntervalBytes) {
      const rel = baseOffset - this.baseOffset;
      const lastEntry = this.offsetIndex.last();
      if (lastEntry === null || (rel > lastEntry.relOffset && position > lastEntry.position)) {
        this.offsetIndex.append(rel, position);
        if (this.maxTimestamp !== -Infinity) this.timeIndex.maybeAppend(this.maxTimestamp, rel);
      }
      this.bytesSinceIndex = 0;
    }
    this.bytesSinceIndex += size;
    if (maxTimestamp > this.maxTimestamp) this.maxTimestamp = maxTimestamp;
    this.nextOffset = lastOffset + 1;
    this.sizeBytes = position + size;
  }

  /**
   * Writes `bufs` (whole batches, `totalBytes` in all) at the end of the file with one writev, on
   * the calling thread, as Kafka's request handler threads write to the page cache themselves: the
   * copy into the page cache takes tens of microseconds for 256 KiB, while a round trip through
   * libuv's thread pool took milliseconds whenever the event loop kept the core busy (the server
   * runs on one), and every ack of the write waited for it (docs/queue.md, "Where the TCP path's
   * time went"). fdatasync stays on the thread pool (sync()). On failure the file is cut back to
   * where it was, so no partial batch stays; if even that fails, the error says the segment can no
   * longer be trusted (`truncated: false` in details).
   */
  append(bufs: Buffer[], totalBytes: number): void {
    const start = this.sizeBytes;
    const fd = this.fh.fd;
    let written = 0;
    try {
      while (written < totalBytes) {
        const n = writevSync(fd, written === 0 ? bufs : remaining(bufs, written), start + written);
        if (n <= 0) throw new QueueError('ARCHLAB_QUEUE_STORAGE', `writev to ${this.logPath} wrote nothing`, { details: { path: this.logPath } });
        written += n;
      }
      this.dirty = true;
    } catch (err) {
      const e = err instanceof QueueError ? err : storageError('appending to', this.logPath, err);
      if (written === 0) throw e;
      try {
        ftruncateSync(fd, start);
      } catch (terr) {
        throw new QueueError('ARCHLAB_QUEUE_STORAGE', `${e.message}; cutting the partial write back also failed: ${(terr as Error).message}`, {
          cause: err,
          details: { ...(e.details ?? {}), truncated: false },
        });
      }
      throw e;
    }
  }

  /** Reads `length` bytes at `position` (fewer at the end of the file). */
  async read(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    try {
      while (got < length) {
        const { bytesRead } = await this.fh.read(buf, got, length - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      throw storageError('reading', this.logPath, err);
    }
    return got === length ? buf : buf.subarray(0, got);
  }

  /** fdatasync of the log file. */
  async sync(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (err) {
      throw storageError('syncing', this.logPath, err);
    }
  }

  /** Cuts the file to `position` (a torn tail) and forgets index entries past it. */
  async truncateTo(position: number, nextOffset: number): Promise<void> {
    try {
      await this.fh.truncate(position);
    } catch (err) {
      throw storageError('truncating', this.logPath, err);
    }
    this.sizeBytes = position;
    this.nextOffset = nextOffset;
    this.offsetIndex.truncateToPosition(position);
    this.timeIndex.truncateToOffset(nextOffset - this.baseOffset);
  }

  /**
   * Loads the index files written at the last roll or clean close. Returns the position to scan
   * from to reach the end (the last index entry's), or null when an index is missing or does not fit
   * the file (the caller rebuilds by scanning from 0).
   */
  async loadIndexes(fileBytes: number): Promise<{ scanFrom: number; relOffset: number } | null> {
    try {
      const [ib, tb] = await Promise.all([fsp.readFile(this.indexPath), fsp.readFile(this.timeIndexPath)]);
      const oi = OffsetIndex.fromBuffer(ib, fileBytes);
      const last = oi.last();
      const ti = TimeIndex.fromBuffer(tb, last === null ? 0 : last.relOffset);
      if (last !== null) {
        // the entry must point at a batch that starts where it says and carries that offset
        const head = await this.read(last.position, BATCH_LOG_OVERHEAD_BYTES);
        if (head.length < BATCH_LOG_OVERHEAD_BYTES || batchBaseOffsetAt(head) !== this.baseOffset + last.relOffset) return null;
      }
      this.offsetIndex = oi;
      this.timeIndex = ti;
      const tl = ti.last();
      if (tl !== null) this.maxTimestamp = tl.maxTimestamp;
      return last === null ? { scanFrom: 0, relOffset: 0 } : { scanFrom: last.position, relOffset: last.relOffset };
    } catch (err) {
      if (err instanceof QueueError || (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw storageError('reading the index of', this.logPath, err);
    }
  }

  /** Drops the in-memory indexes (before a rebuild from position 0). */
  resetIndexes(): void {
    this.offsetIndex = new OffsetIndex();
    this.timeIndex = new TimeIndex();
    this.maxTimestamp = -Infinity;
    this.bytesSinceIndex = 0;
    this.sizeBytes = 0;
    this.nextOffset = this.baseOffset;
  }

  /** Prepares noteBatch() to continue from a loaded index entry: the batch at `position` holds offset base + `relOffset`. */
  resumeAt(position: number, relOffset: number): void {
    this.sizeBytes = position;
    this.nextOffset = this.baseOffset + relOffset;
    this.bytesSinceIndex = 0;
  }

  /**
   * Walks the batches from `from` to `fileBytes`, noting each good one in the indexes. With `verify`, each batch's CRC and fields are checked; without, only that lengths
   * chain (cheap: headers only). Stops at the first problem and reports it.
   */
  async scan(from: number, fileBytes: number, verify: boolean): Promise<ScanResult> {
    let pos = from;
    let buf: Buffer = Buffer.alloc(0);
    let bufAt = from;
    const need = async (at: number, n: number): Promise<Buffer | null> => {
      if (at + n > fileBytes) return null;
      if (at >= bufAt && at + n <= bufAt + buf.length) return buf.subarray(at - bufAt, at - bufAt + n);
      const len = Math.min(Math.max(n, SCAN_CHUNK_BYTES), fileBytes - at);
      buf = await this.read(at, len);
      bufAt = at;
      return buf.length >= n ? buf.subarray(0, n) : null;
    };
    while (pos < fileBytes) {
      const head = await need(pos, BATCH_HEADER_BYTES);
      if (head === null) return { endPosition: pos, problem: torn(pos, `${fileBytes - pos} bytes at the end are less than a batch header`) };
      const size = batchSizeAt(head);
      if (size < BATCH_HEADER_BYTES || head[16] !== BATCH_MAGIC) {
        const allZero = head.every((b) => b === 0);
        return { endPosition: pos, problem: allZero ? torn(pos, 'zeros where a batch should start') : corruptAt(pos, `bad batch header (size ${size}, magic ${head[16]})`) };
      }
      if (pos + size > fileBytes) return { endPosition: pos, problem: torn(pos, `batch of ${size} bytes runs past the end of the file`) };
      let header: BatchHeader;
      if (verify) {
        const whole = await need(pos, size);
        if (whole === null) return { endPosition: pos, problem: torn(pos, 'batch runs past the end of the file') };
        try {
          header = verifyBatch(whole, 0, true);
        } catch (err) {
          return { endPosition: pos, problem: { position: pos, kind: 'corrupt', error: err as QueueError } };
        }
      } else header = readBatchHeader(head);
      const expectBase = this.nextOffset;
      if (header.baseOffset < expectBase || header.baseOffset - this.baseOffset > 0xfffffffe) {
        return { endPosition: pos, problem: corruptAt(pos, `batch base offset ${header.baseOffset} is below the previous end ${expectBase}`) };
      }
      this.noteBatch(pos, size, header.baseOffset, header.lastOffset, header.maxTimestamp);
      pos += size;
    }
    return { endPosition: pos, problem: null };
  }

  /**
   * Calls `visit` with each whole batch (a view into a read chunk, valid after the call) from
   * `from` up to the segment's current size, in order. Read-only: the indexes are not touched. With
   * `verify`, each batch's CRC is checked (ARCHLAB_QUEUE_CORRUPT on failure).
   */
  async forEachBatch(from: number, verify: boolean, visit: (batch: Buffer, header: BatchHeader, position: number) => void | Promise<void>): Promise<void> {
    const end = this.sizeBytes;
    let pos = from;
    while (pos < end) {
      const chunk = await this.read(pos, Math.min(SCAN_CHUNK_BYTES, end - pos));
      let at = 0;
      while (at + BATCH_LOG_OVERHEAD_BYTES <= chunk.length) {
        const size = batchSizeAt(chunk, at);
        if (size < BATCH_HEADER_BYTES) throw corruptAt(pos + at, `batch size ${size} below the header size`).error;
        if (at + size > chunk.length) break;
        const batch = chunk.subarray(at, at + size);
        const header = verify ? verifyBatch(batch, 0, true) : readBatchHeader(batch);
        await visit(batch, header, pos + at);
        at += size;
      }
      if (at === 0) {
        // one batch larger than the chunk: read it whole
        const size = batchSizeAt(await this.read(pos, BATCH_LOG_OVERHEAD_BYTES));
        if (size < BATCH_HEADER_BYTES || pos + size > end) throw corruptAt(pos, `batch of ${size} bytes does not fit the segment`).error;
        const batch = await this.read(pos, size);
        await visit(batch, verify ? verifyBatch(batch, 0, true) : readBatchHeader(batch), pos);
        at = size;
      }
      pos += at;
    }
  }

  /** Whether a whole, CRC-valid batch starts at `position` (tells a corrupt batch from a torn tail). */
  async validBatchAt(position: number, fileBytes: number): Promise<boolean> {
    if (position + BATCH_HEADER_BYTES > fileBytes) return false;
    const size = batchSizeAt(await this.read(position, BATCH_LOG_OVERHEAD_BYTES));
    if (size < BATCH_HEADER_BYTES || position + size > fileBytes) return false;
    try {
      verifyBatch(await this.read(position, size), 0, true);
      return true;
    } catch {
      return false;
    }
  }

  /** Writes both index files whole (at roll and at a clean close). Not fsynced: a bad index is rebuilt. */
  async saveIndexes(): Promise<void> {
    try {
      await Promise.all([fsp.writeFile(this.indexPath, this.offsetIndex.toBuffer()), fsp.writeFile(this.timeIndexPath, this.timeIndex.toBuffer())]);
    } catch (err) {
      throw storageError('writing the index of', this.logPath, err);
    }
  }

  /** Reads the header of the batch at `position`. */
  async headerAt(position: number): Promise<BatchHeader> {
    return readBatchHeader(await this.read(position, BATCH_HEADER_BYTES));
  }

  /** Takes a reader reference; pair with release(). Returns false when the segment is gone. */
  acquire(): boolean {
    if (this.deleted || this.closed) return false;
    this.refs++;
    return true;
  }

  release(): void {
    this.refs--;
    if (this.refs === 0 && this.deleted) void this.closeFile();
  }

  /**
   * Retires the segment: with `unlink`, its files are removed now (readers holding it keep reading
   * the unlinked file); the file handle closes when the last reader leaves.
   */
  async retire(unlink: boolean): Promise<void> {
    this.deleted = true;
    if (unlink) {
      await Promise.all([this.logPath, this.indexPath, this.timeIndexPath].map((p) => fsp.rm(p, { force: true })));
    }
    if (this.refs === 0) await this.closeFile();
  }

  async close(): Promise<void> {
    await this.closeFile();
  }

  private async closeFile(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close().catch(() => undefined);
  }
}

function torn(position: number, why: string): ScanProblem {
  return { position, kind: 'torn', error: new QueueError('ARCHLAB_QUEUE_CORRUPT', `torn write at position ${position}: ${why}`, { details: { position } }) };
}

function corruptAt(position: number, why: string): ScanProblem {
  return { position, kind: 'corrupt', error: new QueueError('ARCHLAB_QUEUE_CORRUPT', `corrupt batch at position ${position}: ${why}`, { details: { position } }) };
}

/** The part of `bufs` after the first `skip` bytes (a short writev). */
function remaining(bufs: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
