/**
 * Committed offsets on disk: the coordinator's storage shell. Every offset is also held in memory;
 * the file exists so they survive a restart (and kill -9).
 *
 * File `<dir>/offsets.log`: a sequence of records, each
 *
 *   [u32 LE payload length][u32 LE CRC-32 of the payload][payload]
 *
 * where the payload is one of
 *
 *   commit:        [u8 1][f64 LE timestamp ms][u16 LE group length][group]
 *                  [u32 LE count] count x ([u16 LE topic length][topic][u32 LE partition]
 *                                          [f64 LE offset][u32 LE metadata length][metadata UTF-8])
 *   delete group:  [u8 2][u16 LE group length][group]
 *   delete topic:  [u8 3][u16 LE topic length][topic]
 *
 * One commitOffsets call is one record, so after a crash it is there whole or not at all. A commit
 * resolves after its record is written and (fsync true) fdatasync'ed; commits that arrive while one
 * fdatasync runs share the next (group commit). The in-memory map is updated only once the record is
 * durable, so a fetch never sees an offset a crash could take back.
 *
 * Replay at open applies every record in order. A record cut short or failing its CRC at the end of
 * the file is a torn tail (never acknowledged): the file is truncated there and a warning logged. The
 * same damage followed by a valid record is corruption: open fails with ARCHLAB_QUEUE_CORRUPT rather
 * than drop acknowledged commits silently.
 *
 * Compaction: when the file is past `compactMinBytes` and more than twice the size the live offsets
 * would take, it is rewritten as one commit record per group (chunked at about 1 MiB) into
 * `offsets.log.compact`, fsynced, renamed over the log, and the directory fsynced: the snapshot is the
 * head of the new log and later commits append to it.
 *
 * One process at a time: `<dir>/offsets.lock` holds the owner's pid; a lock left by a dead process is
 * taken over.
 */
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from '../../../core/log.js';
import { fsyncDir, openOrCreate, takePidLock, writeAllAt } from '../../../core/files.js';
import { QueueError } from '../../errors.js';
import type { TopicPartition } from '../../types.js';

export interface StoredOffset {
  offset: number;
  /** '' when the commit carried none. */
  metadata: string;
}

export interface OffsetStoreOptions {
  /** Directory of the offsets log; created if missing. */
  dir: string;
  /** fdatasync each batch of commits before resolving them. */
  fsync: boolean;
  /** Compact once the file is past this many bytes (and more than twice the live offsets). Default 4 MiB; at least 4 KiB. */
  compactMinBytes?: number;
  /** Torn tails and compactions are logged here. */
  logger?: Logger;
}

export interface OffsetStoreStats {
  /** Bytes in the file now. */
  bytes: number;
  /** Bytes a compacted file would take. */
  liveBytes: number;
  /** Records written since open. */
  records: number;
  /** fdatasync calls since open. */
  syncs: number;
  compactions: number;
  /** Bytes cut off a torn tail at open. */
  truncatedBytes: number;
}

export const DEFAULT_COMPACT_MIN_BYTES = 4 * 1024 * 1024;
const MIN_COMPACT_MIN_BYTES = 4096;
/** A commit record larger than this is refused (a compacted group is split into records of ~1 MiB). */
export const MAX_COMMIT_RECORD_BYTES = 16 * 1024 * 1024;
/** A payload length above this is never valid: damage, not data. */
const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
const COMPACT_CHUNK_BYTES = 1024 * 1024;
const HEADER_BYTES = 8;
const TYPE_COMMIT = 1;
const TYPE_DELETE_GROUP = 2;
const TYPE_DELETE_TOPIC = 3;
/** type + timestamp + group length + count, without the group name. */
const COMMIT_FIXED_BYTES = 1 + 8 + 2 + 4;
/** topic length + partition + offset + metadata length, without topic and metadata. */
const ENTRY_FIXED_BYTES = 2 + 4 + 8 + 4;
const LOG_NAME = 'offsets.log';

interface GroupOffsets {
  /** Wall-clock ms of the newest commit. */
  lastCommitMs: number;
  /** topic -> partition -> offset. */
  topics: Map<string, Map<number, StoredOffset>>;
  /** Bytes of entries in a compacted record (without the record's fixed part). */
  entryBytes: number;
}

/** A commit as written: entries with metadata already in UTF-8. */
interface CommitEntry {
  topic: string;
  partition: number;
  offset: number;
  metadata: string;
  metadataBytes: number;
}

interface Queued {
  buf: Buffer;
  apply: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Offset stores open in this process, by absolute directory (the lock file covers other processes). */
const openDirs = new Set<string>();

function storeError(message: string, details: Record<string, unknown>, cause?: unknown): QueueError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new QueueError('ARCHLAB_QUEUE_DISK_FULL', message, { details, cause });
  return new QueueError('ARCHLAB_QUEUE_STORAGE', message, { details, cause });
}

function entryBytes(topic: string, metadataBytes: number): number {
  return ENTRY_FIXED_BYTES + topic.length + metadataBytes;
}

function seal(payload: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  buf.writeUInt32LE(payload.length, 0);
  buf.writeUInt32LE(crc32(payload), 4);
  payload.copy(buf, HEADER_BYTES);
  return buf;
}

function encodeCommit(group: string, timestampMs: number, entries: readonly CommitEntry[]): Buffer {
  let size = COMMIT_FIXED_BYTES + group.length;
  for (const e of entries) size += entryBytes(e.topic, e.metadataBytes);
  const p = Buffer.allocUnsafe(size);
  let o = p.writeUInt8(TYPE_COMMIT, 0);
  o = p.writeDoubleLE(timestampMs, o);
  o = p.writeUInt16LE(group.length, o);
  o += p.write(group, o, 'latin1');
  o = p.writeUInt32LE(entries.length, o);
  for (const e of entries) {
    o = p.writeUInt16LE(e.topic.length, o);
    o += p.write(e.topic, o, 'latin1');
    o = p.writeUInt32LE(e.partition, o);
    o = p.writeDoubleLE(e.offset, o);
    o = p.writeUInt32LE(e.metadataBytes, o);
    o += p.write(e.metadata, o, 'utf8');
  }
  return seal(p);
}

function encodeDelete(type: number, name: string): Buffer {
  const p = Buffer.allocUnsafe(1 + 2 + name.length);
  p.writeUInt8(type, 0);
  p.writeUInt16LE(name.length, 1);
  p.write(name, 3, 'latin1');
  return seal(p);
}

type Parsed =
  | { type: 'commit'; group: string; timestampMs: number; entries: CommitEntry[] }
  | { type: 'delete-group'; group: string }
  | { type: 'delete-topic'; topic: string };

/** Decodes a CRC-checked payload; throws a plain description when the bytes do not follow the format. */
function parsePayload(p: Buffer): Parsed {
  let o = 0;
  const need = (n: number): void => {
    if (o + n > p.length) throw new RangeError(`record ends ${o + n - p.length} bytes early`);
  };
  const str = (): string => {
    need(2);
    const len = p.readUInt16LE(o);
    o += 2;
    need(len);
    const s = p.toString('latin1', o, o + len);
    o += len;
    return s;
  };
  need(1);
  const type = p.readUInt8(0);
  o = 1;
  if (type === TYPE_DELETE_GROUP) return { type: 'delete-group', group: str() };
  if (type === TYPE_DELETE_TOPIC) return { type: 'delete-topic', topic: str() };
  if (type !== TYPE_COMMIT) throw new RangeError(`unknown record type ${type}`);
  need(8);
  const timestampMs = p.readDoubleLE(o);
  o += 8;
  const group = str();
  need(4);
  const count = p.readUInt32LE(o);
  o += 4;
  const entries: CommitEntry[] = [];
  for (let i = 0; i < count; i++) {
    const topic = str();
    need(16);
    const partition = p.readUInt32LE(o);
    const offset = p.readDoubleLE(o + 4);
    const metadataBytes = p.readUInt32LE(o + 12);
    o += 16;
    need(metadataBytes);
    const metadata = p.toString('utf8', o, o + metadataBytes);
    o += metadataBytes;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset ${offset} is not a non-negative integer`);
    entries.push({ topic, partition, offset, metadata, metadataBytes });
  }
  if (o !== p.length) throw new RangeError(`${p.length - o} bytes after the last entry`);
  return { type: 'commit', group, timestampMs, entries };
}

function takeLock(lockPath: string): Promise<void> {
  return takePidLock(lockPath, (owner) =>
    owner === undefined
      ? new QueueError('ARCHLAB_QUEUE_STORAGE', `could not take the lock ${lockPath}`, { details: { path: lockPath, op: 'lock' } })
      : new QueueError('ARCHLAB_QUEUE_STORAGE', `offsets directory ${lockPath} is locked by process ${owner}`, { details: { path: lockPath, op: 'lock', pid: owner } }),
  );
}

export class OffsetStore {
  readonly dir: string;
  readonly path: string;
  private readonly fsync: boolean;
  private readonly compactMinBytes: number;
  private readonly logger: Logger | undefined;
  private readonly lockPath: string;
  private fh: FileHandle;
  private written: number;
  private readonly groupsMap = new Map<string, GroupOffsets>();
  private liveBytes = 0;
  private queue: Queued[] = [];
  private pumping: Promise<void> | undefined;
  private dirty = false;
  private closed = false;
  /** After a failed compaction, the file size before which none is tried again. */
  private nextCompactAt = 0;
  /** Set when the file can no longer be trusted (a failed fdatasync or an unremovable partial write). */
  private broken: QueueError | undefined;
  private readonly counters = { records: 0, syncs: 0, compactions: 0, truncatedBytes: 0 };

  private constructor(opts: { dir: string; fsync: boolean; compactMinBytes: number; logger: Logger | undefined }, fh: FileHandle, size: number) {
    this.dir = opts.dir;
    this.path = join(opts.dir, LOG_NAME);
    this.fsync = opts.fsync;
    this.compactMinBytes = opts.compactMinBytes;
    this.logger = opts.logger;
    this.lockPath = join(opts.dir, 'offsets.lock');
    this.fh = fh;
    this.written = size;
  }

  /**
   * Opens (or creates) the store in `opts.dir` and replays it. Fails with ARCHLAB_QUEUE_CORRUPT for
   * damage beyond a torn tail, ARCHLAB_QUEUE_STORAGE when the directory is in use or unreadable.
   */
  static async open(opts: OffsetStoreOptions): Promise<OffsetStore> {
    if (typeof opts.dir !== 'string' || opts.dir.length === 0) throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', 'offset store dir must be a non-empty string');
    const compactMinBytes = opts.compactMinBytes ?? DEFAULT_COMPACT_MIN_BYTES;
    if (!Number.isSafeInteger(compactMinBytes) || compactMinBytes < MIN_COMPACT_MIN_BYTES) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `compactMinBytes must be an integer >= ${MIN_COMPACT_MIN_BYTES}, got ${compactMinBytes}`, { details: { compactMinBytes } });
    }
    const dir = resolve(opts.dir);
    if (openDirs.has(dir)) throw new QueueError('ARCHLAB_QUEUE_STORAGE', `offset store ${dir} is already open in this process`, { details: { path: dir, op: 'open' } });
    openDirs.add(dir);
    const path = join(dir, LOG_NAME);
    const lockPath = join(dir, 'offsets.lock');
    let fh: FileHandle | undefined;
    let locked = false;
    try {
      await fsp.mkdir(dir, { recursive: true });
      await takeLock(lockPath);
      locked = true;
      // A compaction the last owner did not finish: the log itself was never replaced.
      await fsp.rm(`${path}.compact`, { force: true });
      fh = await openOrCreate(path, dir);
      const size = (await fh.stat()).size;
      const store = new OffsetStore({ dir, fsync: opts.fsync, compactMinBytes, logger: opts.logger }, fh, size);
      await store.replay(size);
      return store;
    } catch (err) {
      await fh?.close().catch(() => undefined);
      if (locked) await fsp.rm(lockPath, { force: true }).catch(() => undefined);
      openDirs.delete(dir);
      if (err instanceof QueueError) throw err;
      throw storeError(`cannot open offset store ${dir}: ${(err as Error).message}`, { path: dir, op: 'open' }, err);
    }
  }

  private async replay(size: number): Promise<void> {
    const data = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await this.fh.read(data, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    let pos = 0;
    let bad: string | undefined;
    while (pos < got) {
      if (pos + HEADER_BYTES > got) {
        bad = 'a header cut short';
        break;
      }
      const len = data.readUInt32LE(pos);
      if (len < 3 || len > MAX_PAYLOAD_BYTES) {
        bad = `an impossible length ${len}`;
        break;
      }
      if (pos + HEADER_BYTES + len > got) {
        bad = 'a record cut short';
        break;
      }
      const payload = data.subarray(pos + HEADER_BYTES, pos + HEADER_BYTES + len);
      if (crc32(payload) !== data.readUInt32LE(pos + 4)) {
        bad = 'a CRC mismatch';
        break;
      }
      let rec: Parsed;
      try {
        rec = parsePayload(payload);
      } catch (err) {
        // The CRC matched: these are bytes someone wrote in another format, not a torn write.
        throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `offsets log ${this.path}: record at ${pos} cannot be read: ${(err as Error).message}`, { details: { path: this.path, position: pos }, cause: err });
      }
      this.applyParsed(rec);
      pos += HEADER_BYTES + len;
    }
    if (bad !== undefined) {
      const next = this.findValidRecord(data.subarray(0, got), pos + 1);
      if (next !== undefined) {
        throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `offsets log ${this.path} is damaged at ${pos} (${bad}) with a valid record after it (at ${next}); refusing to drop committed offsets`, {
          details: { path: this.path, position: pos, nextValidPosition: next },
        });
      }
      this.counters.truncatedBytes = size - pos;
      await this.fh.truncate(pos);
      await this.fh.datasync();
      this.written = pos;
      this.logger?.warn({ path: this.path, position: pos, truncatedBytes: size - pos, reason: bad }, 'offsets log: torn tail truncated');
    }
  }

  /** The first position at or after `from` where a complete, CRC-valid record starts (only after damage). */
  private findValidRecord(data: Buffer, from: number): number | undefined {
    for (let i = from; i + HEADER_BYTES + 3 <= data.length; i++) {
      const type = data[i + HEADER_BYTES];
      if (type !== TYPE_COMMIT && type !== TYPE_DELETE_GROUP && type !== TYPE_DELETE_TOPIC) continue;
      const len = data.readUInt32LE(i);
      if (len < 3 || i + HEADER_BYTES + len > data.length) continue;
      if (crc32(data.subarray(i + HEADER_BYTES, i + HEADER_BYTES + len)) === data.readUInt32LE(i + 4)) return i;
    }
    return undefined;
  }

  private applyParsed(rec: Parsed): void {
    if (rec.type === 'commit') this.applyCommit(rec.group, rec.timestampMs, rec.entries);
    else if (rec.type === 'delete-group') this.applyDeleteGroup(rec.group);
    else this.applyDeleteTopic(rec.topic);
  }

  private applyCommit(group: string, timestampMs: number, entries: readonly CommitEntry[]): void {
    let g = this.groupsMap.get(group);
    if (g === undefined) {
      g = { lastCommitMs: timestampMs, topics: new Map(), entryBytes: 0 };
      this.groupsMap.set(group, g);
      this.liveBytes += HEADER_BYTES + COMMIT_FIXED_BYTES + group.length;
    }
    g.lastCommitMs = Math.max(g.lastCommitMs, timestampMs);
    for (const e of entries) {
      let parts = g.topics.get(e.topic);
      if (parts === undefined) {
        parts = new Map();
        g.topics.set(e.topic, parts);
      }
      const prev = parts.get(e.partition);
      const delta = entryBytes(e.topic, e.metadataBytes) - (prev === undefined ? 0 : entryBytes(e.topic, Buffer.byteLength(prev.metadata, 'utf8')));
      g.entryBytes += delta;
      this.liveBytes += delta;
      parts.set(e.partition, { offset: e.offset, metadata: e.metadata });
    }
  }

  private applyDeleteGroup(group: string): void {
    const g = this.groupsMap.get(group);
    if (g === undefined) return;
    this.groupsMap.delete(group);
    this.liveBytes -= HEADER_BYTES + COMMIT_FIXED_BYTES + group.length + g.entryBytes;
  }

  private applyDeleteTopic(topic: string): void {
    for (const [group, g] of this.groupsMap) {
      const parts = g.topics.get(topic);
      if (parts === undefined) continue;
      let bytes = 0;
      for (const o of parts.values()) bytes += entryBytes(topic, Buffer.byteLength(o.metadata, 'utf8'));
      g.topics.delete(topic);
      g.entryBytes -= bytes;
      this.liveBytes -= bytes;
      if (g.topics.size === 0) this.applyDeleteGroup(group);
    }
  }

  /** The committed offset of a partition, if any. */
  get(group: string, topic: string, partition: number): StoredOffset | undefined {
    return this.groupsMap.get(group)?.topics.get(topic)?.get(partition);
  }

  /** Every committed offset of a group, sorted by (topic, partition). */
  list(group: string): (TopicPartition & StoredOffset)[] {
    const g = this.groupsMap.get(group);
    if (g === undefined) return [];
    const out: (TopicPartition & StoredOffset)[] = [];
    for (const topic of [...g.topics.keys()].sort()) {
      const parts = g.topics.get(topic)!;
      for (const partition of [...parts.keys()].sort((a, b) => a - b)) out.push({ topic, partition, ...parts.get(partition)! });
    }
    return out;
  }

  hasGroup(group: string): boolean {
    return this.groupsMap.has(group);
  }

  /** Groups with at least one committed offset. */
  groups(): string[] {
    return [...this.groupsMap.keys()];
  }

  /** Wall-clock ms of a group's newest commit (undefined without commits). */
  lastCommitMs(group: string): number | undefined {
    return this.groupsMap.get(group)?.lastCommitMs;
  }

  stats(): OffsetStoreStats {
    return { bytes: this.written, liveBytes: this.liveBytes, ...this.counters };
  }

  /**
   * Stores offsets of `group` (names already checked, offsets non-negative integers); resolves once
   * durable per the fsync setting. A record over MAX_COMMIT_RECORD_BYTES is refused with
   * ARCHLAB_QUEUE_MESSAGE_TOO_LARGE; I/O failures reject with ARCHLAB_QUEUE_DISK_FULL or
   * ARCHLAB_QUEUE_STORAGE and change nothing.
   */
  commit(group: string, timestampMs: number, offsets: readonly (TopicPartition & { offset: number; metadata?: string })[]): Promise<void> {
    const entries: CommitEntry[] = offsets.map((o) => {
      const metadata = o.metadata ?? '';
      return { topic: o.topic, partition: o.partition, offset: o.offset, metadata, metadataBytes: Buffer.byteLength(metadata, 'utf8') };
    });
    let size = HEADER_BYTES + COMMIT_FIXED_BYTES + group.length;
    for (const e of entries) size += entryBytes(e.topic, e.metadataBytes);
    if (size > MAX_COMMIT_RECORD_BYTES) {
      return Promise.reject(
        new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `an offset commit of ${entries.length} partitions is ${size} bytes, over ${MAX_COMMIT_RECORD_BYTES}`, {
          details: { bytes: size, maxBytes: MAX_COMMIT_RECORD_BYTES },
        }),
      );
    }
    return this.enqueue(encodeCommit(group, timestampMs, entries), () => this.applyCommit(group, timestampMs, entries));
  }

  /** Forgets every offset of a group (offset retention). */
  deleteGroup(group: string): Promise<void> {
    if (!this.groupsMap.has(group)) return Promise.resolve();
    return this.enqueue(encodeDelete(TYPE_DELETE_GROUP, group), () => this.applyDeleteGroup(group));
  }

  /** Forgets every group's offsets of a topic (the topic was deleted). */
  deleteTopic(topic: string): Promise<void> {
    let any = false;
    for (const g of this.groupsMap.values()) if (g.topics.has(topic)) any = true;
    if (!any) return Promise.resolve();
    return this.enqueue(encodeDelete(TYPE_DELETE_TOPIC, topic), () => this.applyDeleteTopic(topic));
  }

  private enqueue(buf: Buffer, apply: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new QueueError('ARCHLAB_QUEUE_CLOSED', `offset store ${this.dir} is closed`));
    if (this.broken) return Promise.reject(this.broken);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ buf, apply, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
      if (this.queue.length) this.kick();
    });
  }

  /** Writes queued records in batches: one write() and (fsync) one fdatasync per batch. */
  private async pump(): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue;
      this.queue = [];
      if (this.broken) {
        for (const q of batch) q.reject(this.broken);
        continue;
      }
      try {
        if (this.written > this.compactMinBytes && this.written > 2 * this.liveBytes && this.written >= this.nextCompactAt) {
          try {
            await this.compact();
          } catch (err) {
            if (this.broken) throw this.broken;
            // The old file is intact: keep appending to it and try again after another compactMinBytes.
            this.nextCompactAt = this.written + this.compactMinBytes;
            this.logger?.warn({ err, path: this.path }, 'offsets log: compaction failed; will retry later');
          }
        }
        const out = batch.length === 1 ? batch[0]!.buf : Buffer.concat(batch.map((q) => q.buf));
        await this.writeAll(out, this.written);
        this.written += out.length;
        this.dirty = true;
        if (this.fsync) {
          this.counters.syncs++;
          try {
            await this.fh.datasync();
            this.dirty = false;
          } catch (err) {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written can be trusted.
            this.broken = storeError(`offsets log ${this.path}: fdatasync failed: ${(err as Error).message}`, { path: this.path, op: 'fdatasync' }, err);
            throw this.broken;
          }
        }
        for (const q of batch) {
          this.counters.records++;
          q.apply();
          q.resolve();
        }
      } catch (err) {
        const e = err instanceof QueueError ? err : storeError(`offsets log ${this.path}: write failed: ${(err as Error).message}`, { path: this.path, op: 'write' }, err);
        for (const q of batch) q.reject(e);
        this.logger?.error({ err: e, path: this.path }, 'offsets log: write failed');
      }
    }
  }

  /** Writes all of `buf` at `position`; on failure cuts the file back to `position` (or marks the store broken). */
  private writeAll(buf: Buffer, position: number): Promise<void> {
    return writeAllAt(this.fh, buf, position, (truncErr) => {
      this.broken = storeError(`offsets log ${this.path}: a write failed and its partial record could not be removed: ${(truncErr as Error).message}`, { path: this.path, op: 'truncate' }, truncErr);
    });
  }

  /** Rewrites the file from memory: one commit record per group (chunked), via a fsynced temp file and a rename. */
  private async compact(): Promise<void> {
    const tmp = `${this.path}.compact`;
    const out = await fsp.open(tmp, 'w+', 0o600);
    let renamed = false;
    try {
      const parts: Buffer[] = [];
      for (const [group, g] of this.groupsMap) {
        let chunk: CommitEntry[] = [];
        let chunkBytes = 0;
        const flush = (): void => {
          parts.push(encodeCommit(group, g.lastCommitMs, chunk));
          chunk = [];
          chunkBytes = 0;
        };
        for (const [topic, partsOfTopic] of g.topics) {
          for (const [partition, o] of partsOfTopic) {
            const metadataBytes = Buffer.byteLength(o.metadata, 'utf8');
            chunk.push({ topic, partition, offset: o.offset, metadata: o.metadata, metadataBytes });
            chunkBytes += entryBytes(topic, metadataBytes);
            if (chunkBytes >= COMPACT_CHUNK_BYTES) flush();
          }
        }
        if (chunk.length) flush();
      }
      const buf = Buffer.concat(parts);
      let done = 0;
      while (done < buf.length) done += (await out.write(buf, done, buf.length - done, done)).bytesWritten;
      await out.datasync();
      await fsp.rename(tmp, this.path);
      renamed = true;
      await fsyncDir(this.dir);
      const old = this.fh;
      const before = this.written;
      this.fh = out;
      this.written = buf.length;
      this.dirty = false;
      this.counters.compactions++;
      await old.close();
      this.logger?.info({ path: this.path, beforeBytes: before, afterBytes: buf.length, groups: this.groupsMap.size }, 'offsets log: compacted');
    } catch (err) {
      if (!renamed) {
        await out.close().catch(() => undefined);
        await fsp.rm(tmp, { force: true }).catch(() => undefined);
      } else {
        this.broken = storeError(`offsets log ${this.path}: compaction failed after the rename: ${(err as Error).message}`, { path: this.path, op: 'compact' }, err);
      }
      throw err;
    }
  }

  /** Writes what is queued, syncs, closes the file and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.pumping) await this.pumping;
    try {
      if (this.dirty && !this.broken) {
        this.counters.syncs++;
        await this.fh.datasync();
      }
    } finally {
      await this.fh.close().catch(() => undefined);
      await fsp.rm(this.lockPath, { force: true }).catch(() => undefined);
      openDirs.delete(this.dir);
    }
  }
}
