/**
 * Write-back (write-behind): a write is acknowledged once the cache has it, and a background flusher
 * (flusher.ts) puts it in the source later, coalesced per key and batched.
 *
 * set(key, value) / delete(key), in order:
 *   1. room: the queue admits the key (maxQueueKeys distinct keys) and, with a journal, the journal
 *      reserves room for the record; if either stays full for enqueueTimeoutMs the call fails with
 *      ARCHLAB_CACHE_BACKPRESSURE (bounded memory and disk, never unbounded growth);
 *   2. the store takes the value (or, for a delete, the invalidation);
 *   3. with a journal, the record is appended and made durable per its fsync policy;
 *   4. the write joins the pending queue, and the call resolves: acknowledged.
 * Reads look at the pending queue first (read-your-writes, even after the store evicted the entry;
 * a pending delete reads as absent), then go through the shared read engine (core.ts: store, then
 * the source with single-flight, stale windows, breaker).
 *
 * Durability (`writeBack.durability`):
 * - 'none' (default): the queue lives in this process's memory; what was acknowledged and not yet
 *   flushed is lost if the process dies (the textbook risk). The window is the flush lag: about
 *   flushIntervalMs when the source keeps up, up to maxDelayMs and beyond when it does not;
 * - { journal: { path, fsync } }: every acknowledged write is first appended to a local journal
 *   (journal.ts), replayed by the next open() (re-queued and put back in the store), so acknowledged
 *   writes survive kill -9. fsync 'always': survives power loss too; { everyMs: N }: a power loss or
 *   kernel crash may lose the last N ms (kill -9 does not: the bytes are in the page cache).
 *
 * When the store is down (or its breaker open):
 * - with a journal, writes are still acknowledged: the journal and the pending queue carry them, the
 *   key is marked for repair in the read engine (reads bypass the store for it until the store has
 *   taken an invalidation), and the flusher still delivers them to the source;
 * - without one, set() and delete() fail with ARCHLAB_CACHE_STORE_UNAVAILABLE (fast when the breaker
 *   is open): acknowledging a write that reached neither the store nor a disk would promise more than
 *   this process's memory can keep. Reads still work (pending queue, then the source).
 *
 * When the source is down, writes keep being acknowledged until the queue (or the journal) is full,
 * then backpressure; batches are retried with backoff and never dropped.
 */
import { SystemClock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { TimerHandle } from '../../core/clock.js';
import { SystemRandom } from '../../core/random.js';
import { closedError, ReadEngine, type EngineOptions, type Loader } from '../core.js';
import { CacheError, checkKey } from '../errors.js';
import { backpressureError, DEFAULT_FLUSHER_OPTIONS, Flusher, type FlusherOptions, type RetryOptions } from '../flusher.js';
import { Journal, type EncodedWrite, type JournalFsync } from '../journal.js';
import type { CacheStats, MeteredCache, WriteBackStats } from '../metrics.js';
import { applyWrites } from '../sources/function.js';
import type { Codec, Source, SourceWrite, StrategyName } from '../types.js';
import type { SourcedCacheOptions } from './types.js';

export interface JournalDurability {
  journal: {
    /** The journal file (its directory is created). One process at a time. */
    path: string;
    /** 'always': acknowledge after fdatasync (group commit); { everyMs }: after write(), fdatasync every everyMs ms. */
    fsync: JournalFsync;
    /** Largest journal in bytes; full of unflushed writes -> backpressure. Default 64 MiB. */
    maxBytes?: number;
    /** Encodes values in the journal. Default jsonCodec (Buffer and Date kept). */
    codec?: Codec;
  };
}

export type Durability = 'none' | JournalDurability;

export interface WriteBackOptions extends FlusherOptions {
  /** How long set()/delete() wait for room in a full queue or journal before ARCHLAB_CACHE_BACKPRESSURE, in ms. Default 1000. */
  enqueueTimeoutMs: number;
  /** 'none' (default: unflushed acknowledged writes die with the process) or a journal. */
  durability: Durability;
  /** How long close() keeps trying to flush what is pending, in ms; what is left stays in the journal (or is lost without one). Default 5000. */
  closeTimeoutMs: number;
}

export const DEFAULT_WRITE_BACK_OPTIONS: Omit<WriteBackOptions, keyof FlusherOptions> = {
  enqueueTimeoutMs: 1000,
  durability: 'none',
  closeTimeoutMs: 5000,
};

export type WriteBackOpenOptions<V> = SourcedCacheOptions<V> &
  Pick<EngineOptions<V>, 'maxRepairKeys' | 'timeResolutionMs'> & {
    writeBack?: Partial<Omit<WriteBackOptions, 'retry'>> & { retry?: Partial<RetryOptions> };
  };

interface RoomWaiter {
  resolve: () => void;
  timer: TimerHandle;
}

export class WriteBack<V> implements MeteredCache {
  readonly name: string;
  readonly strategy: StrategyName = 'write-back';
  readonly options: WriteBackOptions;
  private readonly engine: ReadEngine<V>;
  private readonly source: Source<V>;
  private readonly flusher: Flusher<V>;
  private readonly journal: Journal<V> | undefined;
  private readonly opts: WriteBackOpenOptions<V>;
  private readonly load: Loader<V>;
  private readonly waiters = new Set<RoomWaiter>();
  /** set()/delete() calls between admission and acknowledgement (close() waits for them). */
  private active = 0;
  private idle: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  private constructor(opts: WriteBackOpenOptions<V>, options: WriteBackOptions, journal: Journal<V> | undefined, lastSeq: number, checkpointSeq: number) {
    this.engine = new ReadEngine<V>(opts);
    this.name = opts.name;
    this.source = opts.source;
    this.opts = opts;
    this.options = options;
    this.journal = journal;
    const source = opts.source;
    this.load = (key) => source.load(key);
    const clock = opts.clock ?? new SystemClock();
    this.flusher = new Flusher<V>(
      options,
      {
        clock,
        random: opts.random ?? new SystemRandom(),
        apply: (writes) => applyWrites(source, writes),
        onCheckpoint: (seq) => {
          journal?.checkpoint(seq).catch((err: unknown) => opts.logger?.warn({ cache: this.name, err }, 'journal checkpoint not written'));
        },
        onProgress: () => this.wake(),
        logger: opts.logger,
        name: opts.name,
      },
      lastSeq,
      checkpointSeq,
    );
  }

  /**
   * Opens a write-back cache: with a journal, replays it (the writes it still holds are queued for the
   * source again and put back in the store) before the first call is served.
   */
  static async open<V>(opts: WriteBackOpenOptions<V>): Promise<WriteBack<V>> {
    if (opts.source === undefined || opts.source === null || typeof opts.source.load !== 'function' || typeof opts.source.write !== 'function' || typeof opts.source.remove !== 'function') {
      throw new InvalidArgumentError(`cache ${opts.name}: write-back needs a source with load(), write() and remove()`);
    }
    const options = resolveWriteBackOptions(opts.writeBack);
    let journal: Journal<V> | undefined;
    let replay: Awaited<ReturnType<typeof Journal.open<V>>>['replay'] | undefined;
    if (options.durability !== 'none') {
      const j = options.durability.journal;
      ({ journal, replay } = await Journal.open<V>({ path: j.path, fsync: j.fsync, maxBytes: j.maxBytes, codec: j.codec, clock: opts.clock, logger: opts.logger }));
    }
    let wb: WriteBack<V>;
    try {
      wb = new WriteBack<V>(opts, options, journal, replay?.lastSeq ?? 0, replay?.checkpointSeq ?? 0);
    } catch (err) {
      await journal?.close();
      throw err;
    }
    if (replay && replay.writes.length > 0) {
      for (const w of replay.writes) {
        const write: SourceWrite<V> = w.op === 'put' ? { op: 'put', key: w.key, value: w.value } : { op: 'delete', key: w.key };
        wb.flusher.restore(w.seq, write);
        try {
          if (write.op === 'put') await wb.engine.set(write.key, write.value);
          else await wb.engine.invalidate(write.key);
        } catch (err) {
          // The store refused the value (too large, codec): it is still queued and served from the queue.
          opts.logger?.warn({ cache: opts.name, key: w.key, err }, 'replayed write not cached');
        }
      }
      opts.logger?.info({ cache: opts.name, writes: replay.writes.length, truncatedBytes: replay.truncatedBytes }, 'write-back journal replayed');
    }
    opts.metrics?.register(wb);
    return wb;
  }

  // ------------------------------------------------------------- reads

  /**
   * The value of `key`: a pending write first (a pending delete reads as undefined), else the
   * cache, else the source (single-flight, stored for next time).
   */
  get(key: string): Promise<V | undefined> {
    if (this.closing) return Promise.reject(closedError(this.name));
    try {
      checkKey(key);
    } catch (err) {
      return Promise.reject(err);
    }
    const p = this.flusher.get(key);
    if (p !== undefined) {
      this.engine.stats.hits++;
      return Promise.resolve(p.op === 'put' ? p.value : undefined);
    }
    return this.engine.read(key, this.load);
  }

  /** Synchronous: a pending write of `key`, else its fresh value in the in-process tier, else undefined. Never loads. */
  peek(key: string): V | undefined {
    if (this.closing) throw closedError(this.name);
    checkKey(key);
    const p = this.flusher.get(key);
    if (p !== undefined) {
      this.engine.stats.hits++;
      return p.op === 'put' ? p.value : undefined;
    }
    return this.engine.peek(key);
  }

  // ------------------------------------------------------------- writes

  /**
   * Writes `value` to the cache now and to the source later. Resolves when acknowledged (see the top
   * of this file). Fails with ARCHLAB_CACHE_BACKPRESSURE (queue or journal full for
   * enqueueTimeoutMs), ARCHLAB_CACHE_VALUE_TOO_LARGE or ARCHLAB_CACHE_CODEC (the store or the journal
   * refused the value), ARCHLAB_CACHE_STORE_UNAVAILABLE (no journal and the store is down),
   * ARCHLAB_CACHE_JOURNAL (the journal cannot be written), ARCHLAB_CACHE_CLOSED.
   */
  async set(key: string, value: V): Promise<void> {
    this.check(key);
    if (value === undefined) throw new InvalidArgumentError('cannot write undefined; use delete(key)');
    return this.write({ op: 'put', key, value });
  }

  /** Deletes `key`: a tombstone now (reads see it absent), source.remove() at the flush. Fails like set(). */
  async delete(key: string): Promise<void> {
    this.check(key);
    return this.write({ op: 'delete', key });
  }

  private async write(w: SourceWrite<V>): Promise<void> {
    // Encode first: a value the journal cannot take fails before anything changed.
    const rec: EncodedWrite | undefined = this.journal?.encode(w);
    const bytes = rec?.buf.length ?? 0;
    this.active++;
    try {
      await this.admit(w.key, bytes);
      let admitted = true;
      let reserved = rec !== undefined;
      try {
        const inStore = w.op === 'put' ? await this.engine.set(w.key, w.value) : await this.engine.invalidate(w.key);
        if (!inStore && this.journal === undefined) {
          throw new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `cache ${this.name}: the store is unavailable and there is no journal; the write to ${JSON.stringify(w.key.slice(0, 64))} was not accepted`, {
            details: { key: w.key, op: w.op },
          });
        }
        // The seq is assigned and the record queued in the same tick: the journal sees seqs in order.
        const seq = this.flusher.assignSeq();
        admitted = false;
        if (rec !== undefined) {
          reserved = false;
          try {
            await this.journal!.append(rec, seq, true);
          } catch (err) {
            this.flusher.cancel(seq);
            // Not acknowledged: take it back out of the store (a pending older write still reads first).
            await this.engine.invalidate(w.key);
            throw err;
          }
        }
        this.flusher.commit(seq, w);
      } catch (err) {
        if (admitted) this.flusher.release();
        if (reserved) this.journal!.unreserve(bytes);
        throw err;
      }
    } finally {
      this.active--;
      if (this.active === 0) this.idle?.();
    }
  }

  /** Waits (up to enqueueTimeoutMs) until the queue admits `key` and the journal has room for `bytes`. */
  private async admit(key: string, bytes: number): Promise<void> {
    const clock = this.engine.clock;
    let deadline: number | undefined;
    for (;;) {
      if (this.closing) throw closedError(this.name);
      let full: 'queue' | 'journal';
      if (this.flusher.tryAdmit(key)) {
        if (this.journal === undefined || this.journal.reserve(bytes)) return;
        this.flusher.release();
        full = 'journal';
      } else {
        full = 'queue';
      }
      const now = clock.now();
      deadline ??= now + this.options.enqueueTimeoutMs;
      if (now >= deadline) {
        throw backpressureError(this.name, full === 'queue' ? `the write-back queue (${this.options.maxQueueKeys} keys)` : `the journal (${this.journal!.maxBytes} bytes)`, this.options.enqueueTimeoutMs, {
          key,
          queueDepth: this.flusher.size,
          ...(this.journal ? { journalBytes: this.journal.bytes } : {}),
        });
      }
      await new Promise<void>((resolve) => {
        const waiter: RoomWaiter = {
          resolve,
          timer: clock.setTimer(deadline! - now, () => {
            this.waiters.delete(waiter);
            resolve();
          }),
        };
        this.waiters.add(waiter);
      });
    }
  }

  /** Something left the queue (or close() began): every waiter checks again. */
  private wake(): void {
    for (const w of this.waiters) {
      w.timer.cancel();
      w.resolve();
    }
    this.waiters.clear();
  }

  /**
   * Flushes every write acknowledged before the call to the source now (ignoring the interval and any
   * backoff). Rejects with the source's error if a batch fails; the writes stay queued and retried.
   */
  async flush(): Promise<void> {
    if (this.closing) throw closedError(this.name);
    await this.flusher.flush();
  }

  // ------------------------------------------------------------- stats and lifecycle

  stats(): CacheStats {
    return { ...this.engine.stats };
  }

  writeBackStats(): WriteBackStats {
    const s = this.flusher.stats();
    return {
      queueDepth: s.queueDepth,
      flushLagMs: s.flushLagMs,
      journalBytes: this.journal?.bytes ?? 0,
      flushedWrites: s.flushedWrites,
      coalescedWrites: s.coalescedWrites,
      flushFailures: s.flushFailures,
    };
  }

  /** Keys awaiting an invalidation the store has not taken (see core.ts), and whether a full clear is pending. */
  repairState(): { keys: number; all: boolean } {
    return this.engine.repairState();
  }

  /**
   * Stops accepting writes (later calls fail with ARCHLAB_CACHE_CLOSED), waits for writes being
   * acknowledged, flushes what is pending for up to closeTimeoutMs (retrying with backoff), then closes
   * the journal (fsynced), the store and the source. With a journal, what could not be flushed stays
   * in it for the next open() and close() resolves; without one it is lost and close() rejects with
   * ARCHLAB_CACHE_SOURCE_FAILED saying how many keys.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.wake();
    if (this.active > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    const left = await this.flusher.close(this.options.closeTimeoutMs);
    const lost = left > 0 ? this.flusher.pendingKeys().slice(0, 10) : [];
    try {
      await this.journal?.close();
    } finally {
      await this.engine.shutdown(this, this.source);
    }
    if (left > 0) {
      if (this.journal) {
        this.opts.logger?.warn({ cache: this.name, pending: left, journal: this.journal.path }, 'write-back closed with unflushed writes; they stay in the journal');
      } else {
        throw new CacheError('ARCHLAB_CACHE_SOURCE_FAILED', `cache ${this.name}: closed with ${left} acknowledged writes the source did not take within ${this.options.closeTimeoutMs} ms; without a journal they are lost`, {
          details: { pending: left, keys: lost },
        });
      }
    }
  }

  private check(key: string): void {
    if (this.closing) throw closedError(this.name);
    checkKey(key);
  }
}

/** Fills in defaults and validates (the flusher validates its own fields). */
export function resolveWriteBackOptions(o: WriteBackOpenOptions<unknown>['writeBack'] = {}): WriteBackOptions {
  const { retry, ...rest } = o;
  const options: WriteBackOptions = {
    ...DEFAULT_FLUSHER_OPTIONS,
    ...DEFAULT_WRITE_BACK_OPTIONS,
    ...stripUndefined(rest),
    retry: { ...DEFAULT_FLUSHER_OPTIONS.retry, ...stripUndefined(retry ?? {}) },
  };
  for (const name of ['enqueueTimeoutMs', 'closeTimeoutMs'] as const) {
    const v = options[name];
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`writeBack.${name} must be an integer >= 0, got ${v}`);
  }
  const d = options.durability;
  if (d !== 'none' && (typeof d !== 'object' || d === null || typeof d.journal !== 'object' || d.journal === null || typeof d.journal.path !== 'string')) {
    throw new InvalidArgumentError(`writeBack.durability must be 'none' or { journal: { path, fsync } }, got ${JSON.stringify(d)}`);
  }
  return options;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
