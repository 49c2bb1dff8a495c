/**
 * The broker's journal: one append-only file per broker (`<dataDir>/broker.journal`) holding every
 * change to durable state (declarations, bindings, publishes to durable queues, deliveries, settles).
 * The byte format is in codec.ts. This is the disk shell: group commit, torn-tail repair, compaction,
 * disk-full handling, the lock.
 *
 * Group commit: the broker appends records to an in-memory RecordWriter synchronously; a pump takes
 * everything pending, writes it with one writev() and (when anything waiting needs it) one fdatasync,
 * then resolves every waiter of that batch. Records appended while a batch is on its way form the
 * next one. Acks and delivery records never wait: a lost ack means a redelivery, not a loss.
 *
 * Disk full (ENOSPC on write): the batch is cut back off the file, its waiters are refused with
 * ARCHLAB_QUEUE_DISK_FULL, its records stay pending and are retried every DISK_FULL_RETRY_MS; until a
 * write succeeds, checkRoom() refuses new publishes and declarations. maxDiskBytes works the same way
 * without the failed write. Any other write or fsync failure breaks the journal (after a failed fsync
 * the kernel may have dropped dirty pages): durable calls then fail with ARCHLAB_QUEUE_STORAGE.
 *
 * Compaction: when the file is over compactMinBytes and more than twice the live data (as estimated by
 * the broker, and twice the size of the last compaction, so a poor estimate cannot loop), the broker
 * writes a snapshot of its durable state into a new file, which is fsynced, renamed over the journal
 * and made durable with an fsync of the directory. The snapshot is taken between batches, so it covers
 * every record pending at that moment; their waiters resolve when it is durable.
 *
 * Open: frames are read and applied in order; a frame cut short or failing its CRC at the end of the
 * file is a torn tail, truncated and logged. The same damage followed by a valid frame is corruption
 * in the middle: open fails with ARCHLAB_QUEUE_CORRUPT and the position, rather than silently drop
 * acknowledged messages. One process at a time: `<dataDir>/broker.lock` holds the owner's pid; a lock
 * left by a dead process (kill -9) is taken over.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Clock, TimerHandle } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import { WindowReader, fsyncDir, takePidLock } from '../../core/files.js';
import { QueueError } from '../errors.js';
import { applyFrame, emptyReplayState, FRAME_HEADER_BYTES, FRAME_MAGIC, readFrameHeader, RecordWriter, type ReplayState } from './codec.js';
import type { BrokerFsync } from './options.js';

/** The file operations the journal uses; node:fs/promises FileHandles fit. Tests wrap them to inject faults. */
export interface JournalFile {
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

export interface JournalIo {
  open(path: string, flags: number, mode: number): Promise<JournalFile>;
}

export const nodeJournalIo: JournalIo = {
  open: (path, flags, mode) => fsp.open(path, flags, mode),
};

/** What the journal needs from the broker. */
export interface JournalSource {
  /** Estimated bytes a snapshot would take now. */
  liveBytes(): number;
  /** Writes the whole durable state (declarations, bindings, live messages) as records. */
  snapshot(w: RecordWriter): void;
}

export interface JournalOptions {
  dataDir: string;
  fsync: BrokerFsync;
  fsyncIntervalMs: number;
  maxDiskBytes: number;
  compactMinBytes: number;
  clock: Clock;
  logger?: Logger;
  io?: JournalIo;
}

export interface JournalStats {
  /** Bytes in the journal file. */
  fileBytes: number;
  /** Bytes appended and not yet written. */
  pendingBytes: number;
  /** writev calls (one per group-commit batch). */
  writes: number;
  /** fdatasync calls. */
  syncs: number;
  compactions: number;
  /** Bytes cut off a torn tail at open. */
  truncatedBytes: number;
  /** True while writes fail for lack of space (or maxDiskBytes is reached). */
  diskFull: boolean;
}

export const JOURNAL_FILE = 'broker.journal';
export const LOCK_FILE = 'broker.lock';
/** After ENOSPC, pending records are retried this often, in ms. */
export const DISK_FULL_RETRY_MS = 1000;
const READ_CHUNK_BYTES = 4 << 20;

/** Data dirs open in this process (the lock file covers other processes). */
const openDirs = new Set<string>();

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function storageError(message: string, details: Record<string, unknown>, cause?: unknown): QueueError {
  return new QueueError('ARCHLAB_QUEUE_STORAGE', message, { details, cause });
}

function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

async function writeAll(file: JournalFile, frames: Buffer[], position: number): Promise<number> {
  let bufs = frames;
  let pos = position;
  let total = 0;
  for (const b of bufs) total += b.length;
  let left = total;
  while (left > 0) {
    const { bytesWritten } = await file.writev(bufs, pos);
    if (bytesWritten <= 0) throw storageError('writev wrote nothing', { position: pos });
    pos += bytesWritten;
    left -= bytesWritten;
    if (left === 0) break;
    // A short write: carry on from where it stopped.
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const b of bufs) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    bufs = rest;
  }
  return total;
}

function takeLock(lockPath: string): Promise<void> {
  return takePidLock(lockPath, (owner) =>
    owner === undefined
      ? storageError(`could not take the broker lock ${lockPath}`, { lockPath })
      : storageError(`broker data dir is in use by process ${owner} (${lockPath})`, { lockPath, pid: owner }),
  );
}


export interface OpenedJournal {
  journal: BrokerJournal;
  state: ReplayState;
}

export class BrokerJournal {
  readonly path: string;
  /** Records are appended here by the broker, then kick() or durable(). */
  readonly writer = new RecordWriter();

  private readonly lockPath: string;
  private readonly o: Required<Omit<JournalOptions, 'logger'>> & { logger: Logger | undefined };
  private file: JournalFile;
  private size: number;
  private source: JournalSource | undefined;

  private waiters: Deferred[] = [];
  private openWaiter: Deferred | null = null;
  /** Something pending must be fdatasync'ed before its waiters resolve. */
  private pendingNeedsSync = false;
  private dirty = false;
  private pumping: Promise<void> | undefined;
  private kickScheduled = false;
  private syncTimer: TimerHandle | undefined;
  private retryTimer: TimerHandle | undefined;
  private diskFull: QueueError | null = null;
  /** The disk-full retry timer fired: the pump may try the pending records again. */
  private retryDue = false;
  private broken: QueueError | null = null;
  private closing = false;
  private closed = false;
  private compactRequested = false;
  /** File size right after the last compaction (0 before any): the next one waits until the file doubles it. */
  private sizeAfterCompaction = 0;
  private readonly counters = { writes: 0, syncs: 0, compactions: 0, truncatedBytes: 0 };

  private constructor(o: JournalOptions, file: JournalFile, size: number) {
    this.o = { io: nodeJournalIo, ...o, logger: o.logger };
    this.path = join(o.dataDir, JOURNAL_FILE);
    this.lockPath = join(o.dataDir, LOCK_FILE);
    this.file = file;
    this.size = size;
  }

  /** Opens (creating) the journal in `dataDir`, takes the lock, and replays it. */
  static async open(o: JournalOptions): Promise<OpenedJournal> {
    const dir = o.dataDir;
    const key = join(dir);
    if (openDirs.has(key)) throw storageError(`broker data dir ${dir} is already open in this process`, { dataDir: dir });
    const io = o.io ?? nodeJournalIo;
    try {
      await fsp.mkdir(dir, { recursive: true });
    } catch (err) {
      throw storageError(`cannot create broker data dir ${dir}: ${(err as Error).message}`, { path: dir, op: 'mkdir' }, err);
    }
    openDirs.add(key);
    let file: JournalFile | undefined;
    let locked = false;
    try {
      await takeLock(join(dir, LOCK_FILE));
      locked = true;
      await fsp.rm(join(dir, JOURNAL_FILE + '.compact'), { force: true });
      const path = join(dir, JOURNAL_FILE);
      const existed = await fsp.stat(path).then(() => true, () => false);
      file = await io.open(path, fsc.O_RDWR | fsc.O_CREAT, 0o600);
      if (!existed) await fsyncDir(dir);
      const { size } = await file.stat();
      const state = emptyReplayState();
      const { validBytes } = await replay(file, size, state, path);
      const journal = new BrokerJournal(o, file, validBytes);
      if (validBytes < size) {
        await file.truncate(validBytes);
        await file.datasync();
        journal.counters.truncatedBytes = size - validBytes;
        o.logger?.warn({ path, validBytes, truncatedBytes: size - validBytes }, 'broker journal: torn tail truncated');
      }
      return { journal, state };
    } catch (err) {
      await file?.close().catch(() => undefined);
      if (locked) await fsp.rm(join(dir, LOCK_FILE), { force: true }).catch(() => undefined);
      openDirs.delete(key);
      if (err instanceof QueueError) throw err;
      throw storageError(`cannot open broker journal in ${dir}: ${(err as Error).message}`, { path: dir, op: 'open' }, err);
    }
  }

  setSource(source: JournalSource): void {
    this.source = source;
  }

  stats(): JournalStats {
    return { fileBytes: this.size, pendingBytes: this.writer.bytes, ...this.counters, diskFull: this.diskFull !== null };
  }

  /**
   * Throws unless `bytes` more may be appended for a publish or declaration: ARCHLAB_QUEUE_CLOSED,
   * ARCHLAB_QUEUE_STORAGE (broken), ARCHLAB_QUEUE_DISK_FULL (ENOSPC not cleared, or maxDiskBytes).
   */
  checkRoom(bytes: number): void {
    if (this.closing) throw new QueueError('ARCHLAB_QUEUE_CLOSED', 'the broker is closed');
    if (this.broken) throw this.broken;
    if (this.diskFull) throw this.diskFull;
    const max = this.o.maxDiskBytes;
    if (max !== Infinity && this.size + this.writer.bytes + bytes > max) {
      // A compaction helps when the live data is well under the limit and the file grew since the last one.
      if (!this.compactRequested && this.size > this.sizeAfterCompaction && (this.source?.liveBytes() ?? 0) + bytes <= max / 2) {
        this.compactRequested = true;
        this.kick();
      }
      throw new QueueError('ARCHLAB_QUEUE_DISK_FULL', `the broker journal is at its maxDiskBytes limit (${max} bytes); nothing was stored`, {
        details: { path: this.path, fileBytes: this.size, maxDiskBytes: max },
      });
    }
  }

  /** Starts writing what is pending (on the next turn of the event loop, so a burst shares one batch). */
  kick(): void {
    if (this.pumping !== undefined || this.kickScheduled) return;
    this.kickScheduled = true;
    setImmediate(this.startPump);
  }

  /**
   * Resolves when every record appended so far is stored per the fsync policy (fdatasync'ed for
   * 'always' or when `sync`; written to the OS otherwise). Rejects with DISK_FULL or STORAGE when the
   * batch could not be written.
   */
  durable(sync = false): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.diskFull) return Promise.reject(this.diskFull);
    if (this.closed) return Promise.reject(new QueueError('ARCHLAB_QUEUE_CLOSED', 'the broker is closed'));
    let w = this.openWaiter;
    if (w === null) {
      w = deferred();
      this.openWaiter = w;
      this.waiters.push(w);
    }
    if (sync || this.o.fsync === 'always') this.pendingNeedsSync = true;
    this.kick();
    return w.promise;
  }

  /** Writes and fdatasyncs everything pending, then closes the file and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closing) {
      while (!this.closed) await (this.pumping ?? new Promise((r) => setImmediate(r)));
      return;
    }
    this.closing = true;
    this.syncTimer?.cancel();
    this.retryTimer?.cancel();
    this.syncTimer = this.retryTimer = undefined;
    // One last attempt even when the disk was full.
    this.diskFull = null;
    this.pendingNeedsSync = true;
    while (this.pumping) await this.pumping;
    this.pumping = this.pump();
    await this.pumping;
    this.pumping = undefined;
    try {
      if (this.dirty && !this.broken) {
        this.counters.syncs++;
        await this.file.datasync();
        this.dirty = false;
      }
    } catch (err) {
      this.o.logger?.error({ err, path: this.path }, 'broker journal: fdatasync at close failed');
    } finally {
      const err = new QueueError('ARCHLAB_QUEUE_CLOSED', 'the broker closed before this was written');
      for (const w of this.waiters) w.reject(err);
      this.waiters = [];
      this.openWaiter = null;
      this.closed = true;
      await this.file.close().catch(() => undefined);
      await fsp.rm(this.lockPath, { force: true }).catch(() => undefined);
      openDirs.delete(join(this.o.dataDir));
    }
  }

  private readonly startPump = (): void => {
    this.kickScheduled = false;
    if (this.pumping !== undefined || this.closing) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (!this.closing && !this.diskFull && !this.broken && (!this.writer.empty || this.waiters.length > 0 || this.compactRequested)) this.kick();
    });
  };

  private async pump(): Promise<void> {
    for (;;) {
      if (this.broken) {
        this.failWaiters(this.broken);
        this.writer.discard();
        return;
      }
      if (this.diskFull && !this.closing && !this.retryDue) return;
      this.retryDue = false;
      if (this.source !== undefined && this.shouldCompact()) {
        await this.compact();
        continue;
      }
      if (this.writer.empty && this.waiters.length === 0) return;
      await this.writeBatch();
      if (this.diskFull && this.closing) return;
    }
  }

  private shouldCompact(): boolean {
    if (this.compactRequested) return true;
    if (this.size <= this.o.compactMinBytes) return false;
    return this.size > 2 * Math.max(this.source!.liveBytes(), this.sizeAfterCompaction);
  }

  private failWaiters(err: unknown): void {
    const waiters = this.waiters;
    this.waiters = [];
    this.openWaiter = null;
    for (const w of waiters) w.reject(err);
  }

  private async writeBatch(): Promise<void> {
    const frames = this.writer.take();
    const waiters = this.waiters;
    this.waiters = [];
    this.openWaiter = null;
    const needSync = this.pendingNeedsSync;
    this.pendingNeedsSync = false;
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    if (bytes > 0) {
      try {
        await writeAll(this.file, frames, this.size);
        this.counters.writes++;
        this.size += bytes;
        this.dirty = true;
        this.diskFull = null;
      } catch (err) {
        // Cut the partial batch off, so the file ends on a whole frame, and keep the records for a retry.
        try {
          await this.file.truncate(this.size);
        } catch (truncErr) {
          this.broken = storageError(`broker journal ${this.path}: a write failed and its partial frame could not be removed: ${(truncErr as Error).message}`, { path: this.path, op: 'truncate' }, truncErr);
        }
        this.writer.unshiftFrames(frames);
        if (!this.broken && isNoSpace(err)) {
          this.diskFull = new QueueError('ARCHLAB_QUEUE_DISK_FULL', `the disk is full (${(err as NodeJS.ErrnoException).code}) writing ${this.path}; nothing was acknowledged`, {
            details: { path: this.path },
            cause: err,
          });
          for (const w of waiters) w.reject(this.diskFull);
          this.o.logger?.warn({ path: this.path, pendingBytes: this.writer.bytes }, 'broker journal: disk full; publishes refused until a write succeeds');
          if (!this.closing) {
            this.retryTimer?.cancel();
            this.retryTimer = this.o.clock.setTimer(DISK_FULL_RETRY_MS, () => {
              this.retryTimer = undefined;
              this.retryDue = true;
              this.kick();
            });
          }
          return;
        }
        this.broken ??= storageError(`broker journal ${this.path}: write failed: ${(err as Error).message}`, { path: this.path, op: 'write' }, err);
        for (const w of waiters) w.reject(this.broken);
        this.o.logger?.error({ err, path: this.path }, 'broker journal: write failed; durable operations refused from now on');
        return;
      }
    }
    if (this.dirty && needSync) {
      try {
        this.counters.syncs++;
        await this.file.datasync();
        this.dirty = false;
      } catch (err) {
        this.broken = storageError(`broker journal ${this.path}: fdatasync failed: ${(err as Error).message}`, { path: this.path, op: 'fdatasync' }, err);
        for (const w of waiters) w.reject(this.broken);
        this.o.logger?.error({ err, path: this.path }, 'broker journal: fdatasync failed; durable operations refused from now on');
        return;
      }
    } else if (this.dirty && this.o.fsync === 'interval' && this.syncTimer === undefined && !this.closing) {
      this.syncTimer = this.o.clock.setTimer(this.o.fsyncIntervalMs, () => {
        this.syncTimer = undefined;
        if (this.closing) return;
        this.pendingNeedsSync = true;
        this.durable(true).catch(() => undefined);
      });
    }
    for (const w of waiters) w.resolve();
  }

  /** Rewrites the file as a snapshot of the live state. Returns after success or a logged, harmless failure. */
  private async compact(): Promise<void> {
    this.compactRequested = false;
    const w = new RecordWriter();
    this.source!.snapshot(w);
    // Everything pending is part of the state just snapshotted.
    const covered = this.writer.take();
    const waiters = this.waiters;
    this.waiters = [];
    this.openWaiter = null;
    const frames = w.take();
    const tmp = `${this.path}.compact`;
    let out: JournalFile | undefined;
    let renamed = false;
    let bytes: number;
    try {
      out = await this.o.io.open(tmp, fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
      bytes = frames.length ? await writeAll(out, frames, 0) : 0;
      await out.datasync();
      await fsp.rename(tmp, this.path);
      renamed = true;
      await fsyncDir(this.o.dataDir);
    } catch (err) {
      if (!renamed) {
        await out?.close().catch(() => undefined);
        await fsp.rm(tmp, { force: true }).catch(() => undefined);
        this.writer.unshiftFrames(covered);
        this.waiters = [...waiters, ...this.waiters];
        if (waiters.length) this.pendingNeedsSync = true;
        this.o.logger?.warn({ err, path: this.path }, 'broker journal: compaction failed; carrying on with the old file');
        // Do not retry at once: wait for the file to grow again.
        this.sizeAfterCompaction = this.size;
        return;
      }
      this.broken = storageError(`broker journal ${this.path}: compaction failed after the rename: ${(err as Error).message}`, { path: this.path, op: 'compact' }, err);
      for (const d of waiters) d.reject(this.broken);
      return;
    }
    const old = this.file;
    const before = this.size;
    this.file = out!;
    this.size = bytes;
    this.sizeAfterCompaction = bytes;
    this.dirty = false;
    this.diskFull = null;
    this.counters.compactions++;
    await old.close().catch(() => undefined);
    this.o.logger?.info({ path: this.path, beforeBytes: before, afterBytes: bytes }, 'broker journal: compacted');
    for (const d of waiters) d.resolve();
  }
}

/** Reads every frame from the start, applying it; returns where the valid part of the file ends. */
async function replay(file: JournalFile, size: number, state: ReplayState, path: string): Promise<{ validBytes: number }> {
  const reader = new WindowReader(file, size, READ_CHUNK_BYTES);
  let pos = 0;
  while (pos < size) {
    const head = await reader.read(pos, FRAME_HEADER_BYTES);
    const h = head === undefined ? undefined : readFrameHeader(head, 0);
    const payload = h === undefined ? undefined : await reader.read(pos + FRAME_HEADER_BYTES, h.length);
    if (h === undefined || payload === undefined || crc32(payload) !== h.crc) {
      const later = await findValidFrame(file, pos + 1, size);
      if (later !== undefined) {
        throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `broker journal ${path} is damaged at byte ${pos} and has valid data after it (at ${later}); refusing to drop acknowledged messages`, {
          details: { path, position: pos, nextValid: later },
        });
      }
      return { validBytes: pos };
    }
    applyFrame(state, payload, pos);
    pos += FRAME_HEADER_BYTES + h.length;
  }
  return { validBytes: pos };
}

/** The offset of the first whole, CRC-valid frame at or after `from`, if any (used only after damage). */
async function findValidFrame(file: JournalFile, from: number, size: number): Promise<number | undefined> {
  if (from + FRAME_HEADER_BYTES > size) return undefined;
  const rest = Buffer.allocUnsafe(size - from);
  let got = 0;
  while (got < rest.length) {
    const { bytesRead } = await file.read(rest, got, rest.length - got, from + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(FRAME_MAGIC, 0);
  for (let i = rest.indexOf(magic, 0); i >= 0 && i + FRAME_HEADER_BYTES <= got; i = rest.indexOf(magic, i + 1)) {
    const h = readFrameHeader(rest, i);
    if (h === undefined || i + FRAME_HEADER_BYTES + h.length > got) continue;
    if (crc32(rest.subarray(i + FRAME_HEADER_BYTES, i + FRAME_HEADER_BYTES + h.length)) === h.crc) return from + i;
  }
  return undefined;
}
