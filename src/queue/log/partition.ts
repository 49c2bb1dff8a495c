/**
 * One partition: its segments, the ordered write path, group commit, fetch, recovery, retention and
 * compaction. The decisions (roll, retention, compaction, idempotence) are the pure functions of
 * policy.ts and producer-state.ts; this is the shell that carries them out on files.
 *
 * Write path. `append` runs synchronously up to the queue: idempotence check, offset assignment
 * (the base offset is stamped into the batch, outside its CRC), disk budget. A single writer loop
 * then drains the queue in order, rolling when policy says, writing every queued batch that fits the
 * active segment with ONE writev (synchronous: a page-cache copy, see Segment.append), and settling
 * acks: 'leader' when written, 'fsync' when an fdatasync that started after the write completes.
 * While one fdatasync runs, later fsync waiters gather and share the next one (group commit). If a
 * write fails (ENOSPC, EIO), the partial bytes are cut off, that write and everything queued behind
 * it fail (their offsets were provisional), and the assigned offsets and producer state roll back to
 * what is on disk: nothing unwritten is acked.
 *
 * Recovery (open). A `checkpoint` file holds the offset below which every segment was fsynced and
 * its index saved (written when a rolled segment is finished and at a clean close). Segments wholly
 * below it load their index files and check that the batch chain from the last index entry reaches
 * the end of the file; anything at or past it is scanned batch by batch with CRCs checked (indexes
 * rebuilt as it goes). In the last segment a torn tail (bytes that run out, or zeros) is truncated; a
 * CRC-bad batch followed by a good one is corruption, not a torn write. Corruption anywhere fails the
 * open with ARCHLAB_QUEUE_CORRUPT (or, with onCorrupt 'truncate', cuts the partition there).
 * Producer state comes from the newest `<offset>.snapshot` (one per roll and at close) plus the batch
 * headers after it.
 */
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock, TimerHandle } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import { QueueError } from '../errors.js';
import type { Acks, AppendResult, PartitionInfo, TopicConfig } from '../types.js';
import { TMP_EXT, fsyncDir, readJsonIfExists, writeFileAtomic } from './files.js';
import { compactionKeeps, planCompaction, planRetention, shouldRoll, type SegmentSummary } from './policy.js';
import { ProducerStateMap } from './producer-state.js';
import {
  BATCH_HEADER_BYTES,
  BATCH_LOG_OVERHEAD_BYTES,
  batchLastOffsetAt,
  batchSizeAt,
  decodeRecordBatch,
  encodeRetainedBatch,
  setBaseOffset,
  type BatchHeader,
} from './record-batch.js';
import { Segment, parseSegmentName, segmentName, storageError } from './segment.js';

/** Shared by every partition of a log: bytes of segments on disk against the data dir's limit. */
export interface DiskBudget {
  usedBytes: number;
  /** Infinity = no limit. */
  maxBytes: number;
}

/** Plain counters, shared by every partition of a log (the server exports them to Prometheus). */
export interface LogCounters {
  appends: number;
  appendedRecords: number;
  appendedBytes: number;
  duplicates: number;
  fetches: number;
  fetchedBytes: number;
  fsyncs: number;
  fsyncedBatches: number;
  rolls: number;
  segmentsDeleted: number;
  compactions: number;
  compactionBytesReclaimed: number;
  writeErrors: number;
}

export function newCounters(): LogCounters {
  return {
    appends: 0,
    appendedRecords: 0,
    appendedBytes: 0,
    duplicates: 0,
    fetches: 0,
    fetchedBytes: 0,
    fsyncs: 0,
    fsyncedBatches: 0,
    rolls: 0,
    segmentsDeleted: 0,
    compactions: 0,
    compactionBytesReclaimed: 0,
    writeErrors: 0,
  };
}

export interface PartitionOptions {
  /** The partition's directory, `<dataDir>/<topic>-<partition>`. */
  dir: string;
  topic: string;
  partition: number;
  config: TopicConfig;
  clock: Clock;
  logger: Logger;
  counters: LogCounters;
  disk: DiskBudget;
  /** Bytes of log between offset index entries. */
  indexIntervalBytes: number;
  /** Producer ids whose sequence state is held. */
  maxProducers: number;
  /** Bytes of batches accepted but not yet written; past it appends fail ARCHLAB_QUEUE_LIMIT. */
  maxPendingBytes: number;
  /** Long-polling fetches waiting on this partition; past it a fetch fails ARCHLAB_QUEUE_LIMIT. */
  maxFetchWaiters: number;
  /** 'unflushed': CRC-check what lies past the checkpoint; 'all': every batch of every segment. */
  verifyOnOpen: 'unflushed' | 'all';
  /** 'fail': a corrupt batch fails the open; 'truncate': the partition is cut at it. */
  onCorrupt: 'fail' | 'truncate';
  minCleanableDirtyRatio: number;
  /** Distinct keys compaction remembers per pass. */
  compactionMaxKeys: number;
}

/** Batches written with one writev at most (iovec count) and bytes per writev. */
const MAX_WRITE_BATCHES = 1024;
const MAX_WRITE_BYTES = 16 * 1024 * 1024;
/** Producer snapshots kept per partition (the newest ones). */
const SNAPSHOTS_KEPT = 2;
const CHECKPOINT_FILE = 'checkpoint';

type Item =
  | {
      kind: 'batch';
      buf: Buffer;
      bytes: number;
      baseOffset: number;
      lastOffset: number;
      maxTimestamp: number;
      records: number;
      acks: Acks;
      producerId: number;
      producerEpoch: number;
      baseSequence: number;
      result: AppendResult;
      resolve: (r: AppendResult) => void;
      reject: (e: unknown) => void;
    }
  /** A duplicate whose original is still on its way: settled in order with it. */
  | { kind: 'marker'; acks: Acks; result: AppendResult; resolve: (r: AppendResult) => void; reject: (e: unknown) => void }
  /** Roll the active segment now (retention of an expired active segment). */
  | { kind: 'roll'; resolve: () => void; reject: (e: unknown) => void };

/** Settles nothing: an acks 'none' append was answered when it was accepted. */
function noop(): void {}

interface FetchWaiter {
  wake: () => void;
}

export interface RawFetch {
  batches: Buffer[];
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

function closedError(topic: string, partition: number): QueueError {
  return new QueueError('ARCHLAB_QUEUE_CLOSED', `partition ${topic}-${partition} is closed`, { details: { topic, partition } });
}

export class Partition {
  readonly topic: string;
  readonly partition: number;
  config: TopicConfig;
  private readonly o: PartitionOptions;
  private segments: Segment[] = [];
  /** Next offset to assign (includes batches queued, not yet written). */
  private nextOffset = 0;
  /** One past the last offset written: what fetches see. */
  private hw = 0;
  /** One past the last offset known fsynced. */
  private syncedEnd = 0;
  private logStart = 0;
  /** Producer state including queued batches (appends are checked against it). */
  private live: ProducerStateMap;
  /** Producer state of written batches only (snapshots; rollback target on a failed write). */
  private applied: ProducerStateMap;

  private queue: Item[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private writing: Promise<void> | null = null;
  private syncWaiters: Item[] = [];
  private syncing: Promise<void> | null = null;
  /** Finishing rolled segments (index files, fsync, snapshot, checkpoint), one after another. */
  private finalizing: Promise<void> = Promise.resolve();
  private readonly fetchWaiters = new Set<FetchWaiter>();
  /** Set when the partition's files can no longer be trusted (failed fsync, failed cut-back). */
  private broken: QueueError | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** End of the last compaction pass (offsets below were cleaned). */
  private cleanedUpTo = 0;
  private cleaning: Promise<void> = Promise.resolve();

  private constructor(o: PartitionOptions) {
    this.o = o;
    this.topic = o.topic;
    this.partition = o.partition;
    this.config = o.config;
    this.live = new ProducerStateMap(o.maxProducers);
    this.applied = new ProducerStateMap(o.maxProducers);
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  get highWatermark(): number {
    return this.hw;
  }

  get logStartOffset(): number {
    return this.logStart;
  }

  // -------------------------------------------------------------------------------------------
  // open and recovery
  // -------------------------------------------------------------------------------------------

  static async open(o: PartitionOptions): Promise<Partition> {
    const p = new Partition(o);
    try {
      await p.recover();
    } catch (err) {
      await Promise.all(p.segments.map((s) => s.close()));
      throw err;
    }
    return p;
  }

  private async recover(): Promise<void> {
    const { dir, indexIntervalBytes } = this.o;
    let files: string[];
    try {
      await fsp.mkdir(dir, { recursive: true });
      files = await fsp.readdir(dir);
    } catch (err) {
      throw storageError('opening', dir, err);
    }
    // leftovers of an interrupted compaction or metadata write
    await Promise.all(files.filter((f) => f.endsWith(TMP_EXT) || f.endsWith('.cleaned')).map((f) => fsp.rm(join(dir, f), { force: true })));
    const bases = files
      .map((f) => parseSegmentName(f, '.log'))
      .filter((b): b is number => b !== null)
      .sort((a, b) => a - b);
    const cp = await readJsonIfExists(join(dir, CHECKPOINT_FILE)).catch(() => undefined);
    const checkpoint = this.o.verifyOnOpen === 'all' ? 0 : typeof (cp as { recoveryPoint?: unknown })?.recoveryPoint === 'number' ? (cp as { recoveryPoint: number }).recoveryPoint : 0;

    if (bases.length === 0) {
      this.segments.push(await Segment.create(dir, checkpoint, indexIntervalBytes));
    }
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i]!;
      const isLast = i === bases.length - 1;
      const { segment, fileBytes } = await Segment.open(dir, base, indexIntervalBytes);
      this.segments.push(segment);
      const prev = this.segments[this.segments.length - 2];
      if (prev !== undefined && prev.nextOffset > base) {
        throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `segment ${segment.logPath} starts at ${base}, below the previous segment's end ${prev.nextOffset}`, {
          details: { path: segment.logPath, position: 0 },
        });
      }
      const wholeBelowCheckpoint = !isLast && bases[i + 1]! <= checkpoint;
      const partlyBelowCheckpoint = isLast && base < checkpoint;
      let problem = null;
      let loaded = null;
      if (wholeBelowCheckpoint || partlyBelowCheckpoint) loaded = await segment.loadIndexes(fileBytes);
      if (loaded !== null) {
        segment.resumeAt(loaded.scanFrom, loaded.relOffset);
        // below the checkpoint only the chain of lengths is checked; the last segment's tail is verified
        const r = await segment.scan(loaded.scanFrom, fileBytes, partlyBelowCheckpoint);
        problem = r.problem;
        if (problem !== null && wholeBelowCheckpoint) loaded = null; // look closer: full verified rescan
      }
      if (loaded === null) {
        segment.resetIndexes();
        problem = (await segment.scan(0, fileBytes, true)).problem;
      }
      if (problem !== null) {
        const tornTail =
          isLast && (problem.kind === 'torn' || !(await segment.validBatchAt(problem.position + (await this.sizeAt(segment, problem.position, fileBytes)), fileBytes)));
        if (!tornTail && this.o.onCorrupt === 'fail') {
          throw new QueueError(
            'ARCHLAB_QUEUE_CORRUPT',
            `${segment.logPath}: ${problem.error.message}; the partition ${this.topic}-${this.partition} is not opened ` +
              `(open with onCorrupt 'truncate' to cut it at position ${problem.position}, losing what follows)`,
            { cause: problem.error, details: { path: segment.logPath, position: problem.position, topic: this.topic, partition: this.partition } },
          );
        }
        this.o.logger.warn(
          { topic: this.topic, partition: this.partition, path: segment.logPath, position: problem.position, kind: tornTail ? 'torn' : problem.kind, dropBytes: fileBytes - problem.position },
          tornTail ? 'truncating a torn tail' : 'truncating at a corrupt batch (onCorrupt truncate)',
        );
        await segment.truncateTo(problem.position, segment.nextOffset);
        if (!isLast) {
          // everything after the cut goes: later segments would leave a hole
          for (const later of bases.slice(i + 1)) {
            const stem = join(dir, segmentName(later));
            await Promise.all(['.log', '.index', '.timeindex'].map((e) => fsp.rm(stem + e, { force: true })));
          }
          this.o.disk.usedBytes += segment.sizeBytes;
          break;
        }
      } else if (segment.sizeBytes !== fileBytes) {
        await segment.truncateTo(segment.sizeBytes, segment.nextOffset);
      }
      this.o.disk.usedBytes += segment.sizeBytes;
    }
    const active = this.active;
    if (!active.isEmpty) active.firstAppendAtMs = (await active.headerAt(0)).maxTimestamp;
    this.logStart = this.segments[0]!.baseOffset;
    this.hw = active.nextOffset;
    this.nextOffset = this.hw;
    this.syncedEnd = this.hw;
    this.cleanedUpTo = this.logStart;
    // a cut below the checkpoint (onCorrupt 'truncate') must not leave it claiming offsets now gone
    if (checkpoint > this.hw) await this.writeCheckpoint(this.hw);
    await this.recoverProducerState(files);
    this.live = this.applied.clone();
  }

  /** Size field of the batch at `position` (0 when unreadable), to look for a good batch after a bad one. */
  private async sizeAt(segment: Segment, position: number, fileBytes: number): Promise<number> {
    if (position + 12 > fileBytes) return fileBytes;
    const size = batchSizeAt(await segment.read(position, 12));
    return size > 0 ? size : fileBytes;
  }

  private async recoverProducerState(files: string[]): Promise<void> {
    const snaps = files
      .map((f) => parseSegmentName(f, '.snapshot'))
      .filter((b): b is number => b !== null)
      .sort((a, b) => b - a);
    let from = this.logStart;
    for (const off of snaps) {
      const path = join(this.o.dir, `${segmentName(off)}.snapshot`);
      if (off > this.hw) {
        await fsp.rm(path, { force: true });
        continue;
      }
      try {
        this.applied = ProducerStateMap.fromSnapshot(await readJsonIfExists(path), this.o.maxProducers);
        from = off;
        break;
      } catch {
        await fsp.rm(path, { force: true });
      }
    }
    for (const seg of this.segments) {
      if (seg.nextOffset <= from || seg.isEmpty) continue;
      const start = seg.baseOffset >= from ? 0 : seg.offsetIndex.lookup(from - seg.baseOffset);
      await seg.forEachBatch(start, false, (_b, h) => {
        if (h.baseOffset >= from && h.producerId >= 0) this.applied.record(h.producerId, h.producerEpoch, h.baseSequence, h.lastOffsetDelta + 1, h.baseOffset, h.lastOffset);
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // append
  // -------------------------------------------------------------------------------------------

  private checkWritable(): void {
    if (this.closed) throw closedError(this.topic, this.partition);
    if (this.broken !== null) throw this.broken;
  }

  /**
   * Appends one verified batch (its base offset is overwritten). Resolves per `acks`; a retried
   * idempotent batch resolves with its original offsets and `duplicate: true`.
   */
  append(batch: Buffer, h: BatchHeader, acks: Acks): Promise<AppendResult> {
    try {
      this.checkWritable();
    } catch (err) {
      return Promise.reject(err);
    }
    const bytes = batch.length;
    if (this.queuedBytes > 0 && this.queuedBytes + bytes > this.o.maxPendingBytes) {
      return Promise.reject(
        new QueueError('ARCHLAB_QUEUE_LIMIT', `partition ${this.topic}-${this.partition} has ${this.queuedBytes} bytes waiting to be written; retry shortly`, {
          details: { limit: 'maxPendingBytes', value: this.o.maxPendingBytes },
        }),
      );
    }
    const disk = this.o.disk;
    if (disk.usedBytes + bytes > disk.maxBytes) {
      return Promise.reject(
        new QueueError('ARCHLAB_QUEUE_DISK_FULL', `the data dir's limit of ${disk.maxBytes} bytes is reached (${disk.usedBytes} used); nothing was acknowledged`, {
          details: { maxDiskBytes: disk.maxBytes, usedBytes: disk.usedBytes, bytes },
        }),
      );
    }
    const count = h.lastOffsetDelta + 1;
    if (h.producerId >= 0) {
      let check;
      try {
        check = this.live.check(h.producerId, h.producerEpoch, h.baseSequence, count);
      } catch (err) {
        return Promise.reject(err);
      }
      if (check.duplicate) {
        this.o.counters.duplicates++;
        const result: AppendResult = { baseOffset: check.baseOffset, lastOffset: check.lastOffset, duplicate: true };
        const settled = check.lastOffset < this.hw && (acks !== 'fsync' || check.lastOffset < this.syncedEnd);
        if (settled || acks === 'none') return Promise.resolve(result);
        return new Promise((resolve, reject) => this.enqueue({ kind: 'marker', acks, result, resolve, reject }));
      }
    }
    const baseOffset = this.nextOffset;
    const lastOffset = baseOffset + h.lastOffsetDelta;
    setBaseOffset(batch, baseOffset);
    this.nextOffset = lastOffset + 1;
    if (h.producerId >= 0) this.live.record(h.producerId, h.producerEpoch, h.baseSequence, count, baseOffset, lastOffset);
    disk.usedBytes += bytes;
    this.queuedBytes += bytes;
    const result: AppendResult = { baseOffset, lastOffset, duplicate: false };
    const item = {
      kind: 'batch' as const,
      buf: batch,
      bytes,
      baseOffset,
      lastOffset,
      maxTimestamp: h.maxTimestamp,
      records: h.recordCount,
      acks,
      producerId: h.producerId,
      producerEpoch: h.producerEpoch,
      baseSequence: h.baseSequence,
      result,
      resolve: noop as (r: AppendResult) => void,
      reject: noop as (e: unknown) => void,
    };
    if (acks === 'none') {
      this.enqueue(item);
      return Promise.resolve(result);
    }
    return new Promise((resolve, reject) => {
      item.resolve = resolve;
      item.reject = reject;
      this.enqueue(item);
    });
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    // start on a microtask, so that appends made in the same tick share the first write
    if (this.writing === null) this.writing = Promise.resolve().then(() => this.writeLoop());
  }

  private queueLength(): number {
    return this.queue.length - this.queueHead;
  }

  private shift(): Item {
    const it = this.queue[this.queueHead]!;
    this.queue[this.queueHead++] = undefined as unknown as Item;
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    return it;
  }

  private summary(s: Segment): SegmentSummary {
    return { baseOffset: s.baseOffset, nextOffset: s.nextOffset, sizeBytes: s.sizeBytes, maxTimestamp: s.maxTimestamp, firstAppendAtMs: s.firstAppendAtMs };
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.queueLength() > 0) {
        if (this.broken !== null) {
          this.failQueued(this.broken, []);
          break;
        }
        const first = this.queue[this.queueHead]!;
        if (first.kind === 'roll') {
          this.shift();
          try {
            if (!this.active.isEmpty) await this.roll(this.hw);
            first.resolve();
          } catch (err) {
            first.reject(err);
          }
          continue;
        }
        if (first.kind === 'batch' && shouldRoll(this.summary(this.active), first.bytes, first.lastOffset, this.o.clock.now(), this.config)) {
          try {
            await this.roll(first.baseOffset);
          } catch (err) {
            this.failQueued(err, []);
            continue;
          }
        }
        const seg = this.active;
        const start = seg.sizeBytes;
        const group: Item[] = [];
        const bufs: Buffer[] = [];
        let bytes = 0;
        while (this.queueLength() > 0 && bufs.length < MAX_WRITE_BATCHES) {
          const it = this.queue[this.queueHead]!;
          if (it.kind === 'roll') break;
          if (it.kind === 'batch') {
            if (bufs.length > 0 && (bytes + it.bytes > MAX_WRITE_BYTES || start + bytes + it.bytes > this.config.segmentBytes)) break;
            bufs.push(it.buf);
            bytes += it.bytes;
          }
          group.push(this.shift());
        }
        if (bytes > 0) {
          try {
            seg.append(bufs, bytes);
          } catch (err) {
            this.failQueued(err, group);
            continue;
          }
        }
        this.queuedBytes -= bytes;
        let pos = start;
        const now = this.o.clock.now();
        const c = this.o.counters;
        for (const it of group) {
          if (it.kind === 'batch') {
            seg.noteBatch(pos, it.bytes, it.baseOffset, it.lastOffset, it.maxTimestamp);
            if (seg.firstAppendAtMs === null) seg.firstAppendAtMs = now;
            pos += it.bytes;
            if (it.producerId >= 0) this.applied.record(it.producerId, it.producerEpoch, it.baseSequence, it.lastOffset - it.baseOffset + 1, it.baseOffset, it.lastOffset);
            this.hw = it.lastOffset + 1;
            c.appends++;
            c.appendedRecords += it.records;
            c.appendedBytes += it.bytes;
          }
          if (it.kind !== 'roll') this.settleWritten(it);
        }
        this.wakeFetchers();
      }
    } finally {
      this.writing = null;
      if (this.queueLength() > 0) this.writing = Promise.resolve().then(() => this.writeLoop());
    }
  }

  private settleWritten(it: Item & { kind: 'batch' | 'marker' }): void {
    if (it.acks === 'fsync') {
      this.syncWaiters.push(it);
      if (this.syncing === null) this.syncing = this.syncLoop();
    } else if (it.acks === 'leader') it.resolve(it.result);
  }

  /** Group commit: every fsync waiter present when an fdatasync starts is settled by it. */
  private async syncLoop(): Promise<void> {
    try {
      while (this.syncWaiters.length > 0) {
        const waiters = this.syncWaiters;
        this.syncWaiters = [];
        const target = this.hw;
        if (this.broken !== null) {
          for (const w of waiters) if (w.kind !== 'roll') w.reject(this.broken);
          continue;
        }
        const dirty = this.segments.filter((s) => s.dirty);
        for (const s of dirty) s.dirty = false;
        try {
          await Promise.all(dirty.map((s) => s.sync()));
        } catch (err) {
          // After a failed fsync the page cache may have dropped the dirty pages: trust nothing.
          this.broken = err instanceof QueueError ? err : storageError('syncing', this.o.dir, err);
          this.o.logger.error({ topic: this.topic, partition: this.partition, err: this.broken }, 'fdatasync failed; the partition refuses writes until reopened');
          for (const w of waiters) if (w.kind !== 'roll') w.reject(this.broken);
          continue;
        }
        this.o.counters.fsyncs++;
        this.o.counters.fsyncedBatches += waiters.length;
        if (target > this.syncedEnd) this.syncedEnd = target;
        for (const w of waiters) if (w.kind !== 'roll') w.resolve(w.result);
      }
    } finally {
      this.syncing = null;
    }
  }

  /**
   * A write failed: it and everything queued behind it fail (their offsets were provisional); the
   * next offset and the producer state go back to what is written.
   */
  private failQueued(err: unknown, group: Item[]): void {
    const e = err instanceof QueueError ? err : storageError('writing', this.o.dir, err);
    if (e.details?.truncated === false) this.broken = e;
    const failed = [...group];
    while (this.queueLength() > 0) failed.push(this.shift());
    let dropped = 0;
    for (const it of failed) {
      if (it.kind === 'batch') {
        this.o.disk.usedBytes -= it.bytes;
        this.queuedBytes -= it.bytes;
        if (it.acks === 'none') dropped++;
      }
      it.reject(e);
    }
    this.nextOffset = this.hw;
    this.live = this.applied.clone();
    this.o.counters.writeErrors++;
    this.o.logger.warn({ topic: this.topic, partition: this.partition, err: e, failed: failed.length, droppedAcksNone: dropped }, 'append failed; queued batches refused');
  }

  /** Starts a new segment at `base` and finishes the old one in the background. */
  private async roll(base: number): Promise<void> {
    const old = this.active;
    const seg = await Segment.create(this.o.dir, base, this.o.indexIntervalBytes);
    this.segments.push(seg);
    this.o.counters.rolls++;
    const snapshot = JSON.stringify(this.applied.toSnapshot(base));
    this.finalizing = this.finalizing.then(async () => {
      try {
        await old.sync();
        await old.saveIndexes();
        await writeFileAtomic(join(this.o.dir, `${segmentName(base)}.snapshot`), snapshot, false);
        await this.writeCheckpoint(base);
        await this.pruneSnapshots();
      } catch (err) {
        this.o.logger.warn({ topic: this.topic, partition: this.partition, err }, 'finishing a rolled segment failed; recovery will rescan it');
      }
    });
  }

  private async writeCheckpoint(recoveryPoint: number): Promise<void> {
    await writeFileAtomic(join(this.o.dir, CHECKPOINT_FILE), JSON.stringify({ recoveryPoint }), true);
  }

  private async pruneSnapshots(): Promise<void> {
    const files = await fsp.readdir(this.o.dir);
    const snaps = files
      .map((f) => parseSegmentName(f, '.snapshot'))
      .filter((b): b is number => b !== null)
      .sort((a, b) => b - a);
    await Promise.all(snaps.slice(SNAPSHOTS_KEPT).map((s) => fsp.rm(join(this.o.dir, `${segmentName(s)}.snapshot`), { force: true })));
  }

  // -------------------------------------------------------------------------------------------
  // fetch
  // -------------------------------------------------------------------------------------------

  private outOfRange(offset: number): QueueError {
    return new QueueError(
      'ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE',
      `offset ${offset} is outside ${this.topic}-${this.partition}'s [${this.logStart}, ${this.hw}]`,
      { details: { topic: this.topic, partition: this.partition, offset, logStartOffset: this.logStart, highWatermark: this.hw } },
    );
  }

  private wakeFetchers(): void {
    if (this.fetchWaiters.size === 0) return;
    const ws = [...this.fetchWaiters];
    this.fetchWaiters.clear();
    for (const w of ws) w.wake();
  }

  /** Waits until something is written at or after `offset`, or `maxWaitMs` passes, or the partition closes. */
  private waitFor(offset: number, maxWaitMs: number): Promise<void> {
    if (this.fetchWaiters.size >= this.o.maxFetchWaiters) {
      return Promise.reject(
        new QueueError('ARCHLAB_QUEUE_LIMIT', `${this.fetchWaiters.size} fetches already wait on ${this.topic}-${this.partition}`, {
          details: { limit: 'maxFetchWaitersPerPartition', value: this.o.maxFetchWaiters },
        }),
      );
    }
    return new Promise((resolve) => {
      let timer: TimerHandle | null = null;
      const w: FetchWaiter = {
        wake: () => {
          timer?.cancel();
          this.fetchWaiters.delete(w);
          resolve();
        },
      };
      this.fetchWaiters.add(w);
      // keepAlive: an embedded consumer blocked on a long poll keeps its process running, as a socket would.
      timer = this.o.clock.setTimer(maxWaitMs, w.wake, { keepAlive: true });
      if (this.hw > offset || this.closed) w.wake();
    });
  }

  /** Index of the segment holding `offset` (the last whose base is <= it). */
  private segmentFor(offset: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.segments[mid]!.baseOffset <= offset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /**
   * Whole batches from the one holding `offset` on, up to `maxBytes` (at least one batch), from one
   * segment (the next ones only when that one has nothing at or past `offset`: a compacted gap).
   */
  async fetchRaw(offset: number, maxBytes: number, maxWaitMs: number): Promise<RawFetch> {
    if (this.closed) throw closedError(this.topic, this.partition);
    this.o.counters.fetches++;
    if (!Number.isSafeInteger(offset) || offset < this.logStart || offset > this.hw) throw this.outOfRange(offset);
    if (offset === this.hw && maxWaitMs > 0) await this.waitFor(offset, maxWaitMs);
    const hw = this.hw;
    const batches: Buffer[] = [];
    let nextOffset = offset;
    if (offset < hw && offset >= this.logStart) {
      let bytes = 0;
      for (const seg of this.segments.slice(this.segmentFor(offset))) {
        if (batches.length > 0) break;
        if (!seg.acquire()) continue;
        try {
          const r = await this.readSegment(seg, offset, maxBytes, batches);
          bytes += r.bytes;
          if (r.nextOffset >= 0) nextOffset = r.nextOffset;
        } finally {
          seg.release();
        }
      }
      // everything in [offset, hw) was compacted away: move the reader past the gap
      if (batches.length === 0) nextOffset = hw;
      this.o.counters.fetchedBytes += bytes;
    }
    return { batches, nextOffset, highWatermark: hw, logStartOffset: this.logStart };
  }

  /**
   * Appends to `out` the batches of `seg` whose last offset is >= `offset`, from the index's
   * position on, until `maxBytes` (the first one whatever its size). Usually one read.
   */
  private async readSegment(seg: Segment, offset: number, maxBytes: number, out: Buffer[]): Promise<{ bytes: number; nextOffset: number }> {
    const end = seg.sizeBytes;
    let pos = seg.baseOffset <= offset ? seg.offsetIndex.lookup(offset - seg.baseOffset) : 0;
    let bytes = 0;
    let next = -1;
    const badSize = (size: number, at: number): QueueError =>
      new QueueError('ARCHLAB_QUEUE_CORRUPT', `${seg.logPath}: bad batch size ${size} at position ${at}`, { details: { path: seg.logPath, position: at } });
    while (pos < end) {
      const buf = await seg.read(pos, Math.min(end - pos, Math.max(maxBytes - bytes, 0) + this.o.indexIntervalBytes));
      let at = 0;
      let stop = false;
      while (at + BATCH_HEADER_BYTES <= buf.length) {
        const size = batchSizeAt(buf, at);
        if (size < BATCH_HEADER_BYTES) throw badSize(size, pos + at);
        const last = batchLastOffsetAt(buf, at);
        if (last >= offset && out.length > 0 && bytes + size > maxBytes) {
          stop = true;
          break;
        }
        if (at + size > buf.length) break; // cut by the read window: read on from its start
        if (last >= offset) {
          out.push(buf.subarray(at, at + size));
          bytes += size;
          next = last + 1;
          if (bytes >= maxBytes) stop = true;
        }
        at += size;
        if (stop) break;
      }
      pos += at;
      if (stop) break;
      if (at === 0) {
        // a single batch larger than the window
        const size = batchSizeAt(await seg.read(pos, BATCH_LOG_OVERHEAD_BYTES));
        if (size < BATCH_HEADER_BYTES || pos + size > end) throw badSize(size, pos);
        const whole = await seg.read(pos, size);
        const last = batchLastOffsetAt(whole);
        pos += size;
        if (last >= offset) {
          out.push(whole);
          bytes += size;
          next = last + 1;
          if (bytes >= maxBytes) break;
        }
      }
    }
    return { bytes, nextOffset: next };
  }

  /** Smallest offset whose record timestamp is >= `timestamp`, or the high watermark when none is. */
  async offsetForTimestamp(timestamp: number): Promise<number> {
    if (this.closed) throw closedError(this.topic, this.partition);
    for (const seg of [...this.segments]) {
      if (seg.maxTimestamp < timestamp || seg.isEmpty) continue;
      if (!seg.acquire()) continue;
      try {
        const rel = seg.timeIndex.lookup(timestamp);
        const start = seg.offsetIndex.lookup(rel);
        let found = -1;
        await seg.forEachBatch(start, false, (batch, h) => {
          if (found >= 0 || h.maxTimestamp < timestamp || h.recordCount === 0) return;
          for (const r of decodeRecordBatch(batch, this.topic, this.partition)) {
            if (r.timestamp >= timestamp) {
              found = r.offset;
              return;
            }
          }
        });
        if (found >= 0) return found;
      } finally {
        seg.release();
      }
    }
    return this.hw;
  }

  info(): PartitionInfo {
    let size = 0;
    for (const s of this.segments) size += s.sizeBytes;
    return { topic: this.topic, partition: this.partition, logStartOffset: this.logStart, highWatermark: this.hw, segments: this.segments.length, sizeBytes: size };
  }

  // -------------------------------------------------------------------------------------------
  // retention and compaction
  // -------------------------------------------------------------------------------------------

  /** Runs retention, then compaction, for this partition; one pass at a time. */
  clean(nowMs: number): Promise<void> {
    const run = this.cleaning.then(async () => {
      if (this.closed || this.broken !== null) return;
      await this.finalizing;
      await this.applyRetention(nowMs);
      await this.compact(nowMs);
    });
    this.cleaning = run.catch(() => undefined);
    return run;
  }

  private async applyRetention(nowMs: number): Promise<void> {
    const plan = planRetention(this.segments.map((s) => this.summary(s)), nowMs, this.config);
    if (plan.deleteCount === 0) return;
    if (plan.rollActive) {
      await new Promise<void>((resolve, reject) => this.enqueue({ kind: 'roll', resolve, reject }));
      await this.finalizing;
    }
    const count = Math.min(plan.deleteCount, this.segments.length - 1);
    const gone = this.segments.splice(0, count);
    this.logStart = this.segments[0]!.baseOffset;
    if (this.cleanedUpTo < this.logStart) this.cleanedUpTo = this.logStart;
    for (const s of gone) {
      this.o.disk.usedBytes -= s.sizeBytes;
      this.o.counters.segmentsDeleted++;
    }
    this.o.logger.info(
      { topic: this.topic, partition: this.partition, segments: count, reason: plan.reason, logStartOffset: this.logStart },
      'retention deleted old segments',
    );
    await Promise.all(gone.map((s) => s.retire(true)));
  }

  private async compact(nowMs: number): Promise<void> {
    const cfg = { cleanupPolicy: this.config.cleanupPolicy, minCleanableDirtyRatio: this.o.minCleanableDirtyRatio };
    const count = planCompaction(this.segments.map((s) => this.summary(s)), this.cleanedUpTo, cfg);
    if (count === 0) return;
    const segs = this.segments.slice();
    const targets = segs.slice(0, count);
    // 1. the newest offset of every key in the partition (bounded: unseen keys are kept)
    const latest = new Map<string, number>();
    const maxKeys = this.o.compactionMaxKeys;
    for (const seg of segs) {
      if (!seg.acquire()) continue;
      try {
        await seg.forEachBatch(0, false, (batch, h) => {
          if (h.recordCount === 0) return;
          for (const r of decodeRecordBatch(batch, this.topic, this.partition)) {
            if (r.key === null) continue;
            const k = r.key.toString('latin1');
            if (latest.size < maxKeys || latest.has(k)) latest.set(k, r.offset);
          }
        });
      } finally {
        seg.release();
      }
    }
    // 2. rewrite each closed segment with what it keeps, at the same offsets
    for (const seg of targets) {
      if (this.closed) return;
      await this.rewriteSegment(seg, latest, nowMs);
    }
    this.cleanedUpTo = targets[targets.length - 1]!.nextOffset;
    this.o.counters.compactions++;
  }

  private async rewriteSegment(seg: Segment, latest: Map<string, number>, nowMs: number): Promise<void> {
    const deleteRetentionMs = this.config.deleteRetentionMs;
    const parts: Buffer[] = [];
    let changed = false;
    let newBytes = 0;
    if (!seg.acquire()) return;
    try {
      await seg.forEachBatch(0, true, (batch, h) => {
        const records = h.recordCount === 0 ? [] : decodeRecordBatch(batch, this.topic, this.partition);
        const kept = records.filter((r) =>
          compactionKeeps({ offset: r.offset, key: r.key === null ? null : r.key.toString('latin1'), tombstone: r.value === null, timestamp: r.timestamp }, latest, nowMs, deleteRetentionMs),
        );
        let out: Buffer | null;
        if (kept.length === records.length) out = Buffer.from(batch);
        else {
          changed = true;
          out = kept.length === 0 ? null : encodeRetainedBatch(h, kept);
        }
        if (out !== null) {
          parts.push(out);
          newBytes += out.length;
        }
      });
    } finally {
      seg.release();
    }
    if (!changed) return;
    const dir = this.o.dir;
    const stem = join(dir, segmentName(seg.baseOffset));
    const cleaned = `${stem}.log.cleaned`;
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(cleaned, 'w', 0o644);
      if (parts.length > 0) await fh.writev(parts, 0);
      await fh.sync();
      await fh.close();
      fh = undefined;
      // indexes first, so a crash between the renames leaves a log with no index (rebuilt), never a wrong one
      await Promise.all([fsp.rm(`${stem}.index`, { force: true }), fsp.rm(`${stem}.timeindex`, { force: true })]);
      await fsp.rename(cleaned, `${stem}.log`);
      await fsyncDir(dir);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await fsp.rm(cleaned, { force: true }).catch(() => undefined);
      throw storageError('compacting', seg.logPath, err);
    }
    const { segment: fresh, fileBytes } = await Segment.open(dir, seg.baseOffset, this.o.indexIntervalBytes);
    const r = await fresh.scan(0, fileBytes, false);
    if (r.problem !== null) throw r.problem.error;
    fresh.nextOffset = seg.nextOffset; // the last batch may have gone: the segment still covers its offsets
    fresh.firstAppendAtMs = seg.firstAppendAtMs;
    await fresh.saveIndexes();
    const at = this.segments.indexOf(seg);
    if (at < 0) {
      await fresh.close();
      return;
    }
    this.segments[at] = fresh;
    this.o.disk.usedBytes += fresh.sizeBytes - seg.sizeBytes;
    this.o.counters.compactionBytesReclaimed += seg.sizeBytes - newBytes;
    await seg.retire(false);
  }

  // -------------------------------------------------------------------------------------------
  // close and delete
  // -------------------------------------------------------------------------------------------

  /** Writes what is queued, fsyncs, saves indexes, a producer snapshot and the checkpoint, closes files. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    while (this.writing !== null || this.syncing !== null) await Promise.all([this.writing, this.syncing]);
    this.wakeFetchers();
    await this.cleaning;
    await this.finalizing;
    try {
      if (this.broken === null) {
        const active = this.active;
        await active.sync();
        await active.saveIndexes();
        await writeFileAtomic(join(this.o.dir, `${segmentName(this.hw)}.snapshot`), JSON.stringify(this.applied.toSnapshot(this.hw)), true);
        await this.writeCheckpoint(this.hw);
        await this.pruneSnapshots();
      }
    } finally {
      await Promise.all(this.segments.map((s) => s.close()));
    }
  }

  /** Closes without the clean-close bookkeeping and removes the partition's directory. */
  async destroy(): Promise<void> {
    this.closed = true;
    while (this.writing !== null || this.syncing !== null) await Promise.all([this.writing, this.syncing]);
    this.wakeFetchers();
    await this.cleaning;
    await this.finalizing;
    for (const s of this.segments) this.o.disk.usedBytes -= s.sizeBytes;
    await Promise.all(this.segments.map((s) => s.retire(false)));
    await fsp.rm(this.o.dir, { recursive: true, force: true });
  }
}
