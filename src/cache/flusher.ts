/**
 * The write-back flusher: the queue of acknowledged writes not yet in the source, coalesced per key,
 * and the loop that sends them to the source in batches.
 *
 * Queue: one entry per key (a later write replaces the pending one: coalescing), in the order keys
 * first became pending, bounded by `maxQueueKeys` through admission (tryAdmit). Every write has a
 * sequence number; the flusher reports checkpoints, "every write with seq <= S is in the source or
 * superseded by a later pending write of its key", which the journal records so replay can skip them.
 *
 * Schedule (one batch in flight at a time, so writes of one key reach the source in order):
 * - while anything is pending, a batch of the `maxBatch` oldest pending keys is sent every
 *   `flushIntervalMs` (the first one flushIntervalMs after a write finds the queue idle), so writes
 *   to one key within an interval reach the source once;
 * - when the oldest pending write has waited `maxDelayMs`, batches are sent back to back until it
 *   has not (catching up while the source keeps up, however large the queue);
 * - when a batch fails, it stays queued and is retried after an exponential backoff with jitter
 *   (`retry.initialMs` doubling to `retry.maxMs`); writes are never dropped.
 * A key whose write is in flight when a new write arrives stays queued with the new write, and is
 * sent again after the flight ends.
 *
 * A shell over a Clock and a Random (timers via clock.setTimer), so tests drive it with ManualClock.
 */
import type { Clock, TimerHandle } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Random } from '../core/random.js';
import { CacheError } from './errors.js';
import type { SourceWrite } from './types.js';

export interface RetryOptions {
  /** First backoff after a failed batch, in ms. Default 50. */
  initialMs: number;
  /** Longest backoff, in ms (the delay doubles per consecutive failure up to this). Default 5000. */
  maxMs: number;
}

export interface FlusherOptions {
  /** How often a batch is sent while writes are pending, in ms. Default 100. */
  flushIntervalMs: number;
  /** Most writes per source batch (one writeBatch call, one transaction). Default 500. */
  maxBatch: number;
  /** The oldest pending write waits at most this long for a flush attempt while the source keeps up, in ms. Default 1000. */
  maxDelayMs: number;
  /** Most distinct keys pending (plus writes being admitted); beyond it tryAdmit() refuses. Default 100,000. */
  maxQueueKeys: number;
  /** Backoff while the source fails. */
  retry: RetryOptions;
}

export const DEFAULT_FLUSHER_OPTIONS: FlusherOptions = {
  flushIntervalMs: 100,
  maxBatch: 500,
  maxDelayMs: 1000,
  maxQueueKeys: 100_000,
  retry: { initialMs: 50, maxMs: 5000 },
};

export interface FlusherDeps<V> {
  clock: Clock;
  random: Random;
  /** Applies a batch to the source, in order (keys are distinct within a batch). */
  apply: (writes: readonly SourceWrite<V>[]) => Promise<void>;
  /** Every write with seq <= `seq` is in the source (or superseded by a pending write of its key). */
  onCheckpoint?: (seq: number) => void;
  /** A batch finished (either way) or writes left the queue: room may have been freed. */
  onProgress?: () => void;
  logger?: Logger;
  /** For logs. */
  name?: string;
}

/**
 * Lets the event loop run between two batches sent back to back. A synchronous source (SQLite via
 * better-sqlite3) answers within the microtask queue, so a catch-up of many batches would otherwise
 * hold the loop (timers, sockets) until the queue is empty. Not a timer: no time passes.
 */
function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** One pending key. */
interface Pending<V> {
  /** The latest write of the key. */
  write: SourceWrite<V>;
  /** Its seq. */
  seq: number;
  /**
   * The seq of the first write of the key not yet confirmed in the source. Never changes while the
   * entry is queued, so the queue (in insertion order) is in firstSeq order and the checkpoint is
   * the front entry's firstSeq - 1: conservative for a key re-queued after a flight, never unsafe.
   */
  firstSeq: number;
  /** When that write was acknowledged (epoch ms): flush lag and maxDelay count from here. */
  firstAtMs: number;
  /** The seq sent in the batch in flight, 0 when not in flight. */
  inFlightSeq: number;
}

export interface FlusherStats {
  /** Distinct keys pending. */
  queueDepth: number;
  /** Age of the oldest pending write, in ms (0 when none). */
  flushLagMs: number;
  /** Writes applied to the source. */
  flushedWrites: number;
  /** Writes replaced by a later write of their key before they were flushed. */
  coalescedWrites: number;
  /** Batches that failed (and were retried). */
  flushFailures: number;
  /** Consecutive failures of the current run (0 when the last batch succeeded). */
  consecutiveFailures: number;
}

function checkOptions(o: FlusherOptions): void {
  const int = (name: string, v: number, min: number): void => {
    if (!Number.isSafeInteger(v) || v < min) throw new InvalidArgumentError(`writeBack.${name} must be an integer >= ${min}, got ${v}`);
  };
  int('flushIntervalMs', o.flushIntervalMs, 1);
  int('maxBatch', o.maxBatch, 1);
  int('maxDelayMs', o.maxDelayMs, 1);
  int('maxQueueKeys', o.maxQueueKeys, 1);
  int('retry.initialMs', o.retry.initialMs, 1);
  int('retry.maxMs', o.retry.maxMs, o.retry.initialMs);
}

export class Flusher<V> {
  readonly options: FlusherOptions;
  private readonly deps: FlusherDeps<V>;
  private readonly pending = new Map<string, Pending<V>>();
  /** Seqs handed out and not yet committed or cancelled, in seq order (they hold the checkpoint back). */
  private readonly inProgress = new Set<number>();
  /** Writes admitted and not yet committed or released. */
  private admitted = 0;
  private lastSeq: number;
  private lastCheckpoint: number;
  /** Serializes batches: one in flight at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private running = false;
  private lastRunAtMs = Number.NEGATIVE_INFINITY;
  private failures = 0;
  private retryAtMs = 0;
  private timer: TimerHandle | undefined;
  private timerAtMs = 0;
  private closed = false;
  private readonly counters = { flushedWrites: 0, coalescedWrites: 0, flushFailures: 0 };

  /**
   * `lastSeq`: the highest seq already used (a replayed journal's), so new writes get higher ones;
   * `checkpointSeq`: the journal's last checkpoint, so flushing replayed writes is checkpointed again.
   */
  constructor(options: Partial<FlusherOptions>, deps: FlusherDeps<V>, lastSeq = 0, checkpointSeq = lastSeq) {
    this.options = { ...DEFAULT_FLUSHER_OPTIONS, ...options, retry: { ...DEFAULT_FLUSHER_OPTIONS.retry, ...options.retry } };
    checkOptions(this.options);
    this.deps = deps;
    this.lastSeq = lastSeq;
    this.lastCheckpoint = checkpointSeq;
  }

  // ------------------------------------------------------------- admission and queueing

  /**
   * Admits one write of `key` if the queue has room (a key already pending always has room: its
   * write coalesces). Each admitted write must end in commit() or cancel() (after assignSeq) or
   * release() (before).
   */
  tryAdmit(key: string): boolean {
    if (this.closed) return false;
    if (!this.pending.has(key) && this.pending.size + this.admitted >= this.options.maxQueueKeys) return false;
    this.admitted++;
    return true;
  }

  /** Gives back an admission that will not be used (before assignSeq). */
  release(): void {
    if (this.admitted > 0) this.admitted--;
  }

  /** The seq of an admitted write; call right before journaling it, in the same tick. */
  assignSeq(): number {
    const seq = ++this.lastSeq;
    this.inProgress.add(seq);
    return seq;
  }

  /** The admitted write with `seq` was not acknowledged. */
  cancel(seq: number): void {
    this.inProgress.delete(seq);
    this.release();
  }

  /** The admitted write with `seq` is acknowledged: queue it (replacing a pending write of its key). */
  commit(seq: number, write: SourceWrite<V>): void {
    this.inProgress.delete(seq);
    this.release();
    this.enqueue(seq, write);
  }

  /** Queues a write replayed from the journal (already durable, never admitted). */
  restore(seq: number, write: SourceWrite<V>): void {
    if (seq > this.lastSeq) this.lastSeq = seq;
    this.enqueue(seq, write);
  }

  private enqueue(seq: number, write: SourceWrite<V>): void {
    const e = this.pending.get(write.key);
    if (e === undefined) {
      this.pending.set(write.key, { write, seq, firstSeq: seq, firstAtMs: this.deps.clock.now(), inFlightSeq: 0 });
    } else if (seq > e.seq) {
      // Coalesce. A write still in flight is not counted: it reaches the source anyway.
      if (e.inFlightSeq !== e.seq) this.counters.coalescedWrites++;
      e.write = write;
      e.seq = seq;
    }
    this.schedule();
  }

  /** The pending write of `key`, if any (reads see it first: read-your-writes). */
  get(key: string): SourceWrite<V> | undefined {
    return this.pending.get(key)?.write;
  }

  get size(): number {
    return this.pending.size;
  }

  stats(): FlusherStats {
    const oldest = this.front();
    return {
      queueDepth: this.pending.size,
      flushLagMs: oldest === undefined ? 0 : Math.max(0, this.deps.clock.now() - oldest.firstAtMs),
      ...this.counters,
      consecutiveFailures: this.failures,
    };
  }

  private front(): Pending<V> | undefined {
    for (const e of this.pending.values()) return e;
    return undefined;
  }

  /** The highest seq every write at or below which is in the source or superseded (see Pending.firstSeq). */
  checkpointSeq(): number {
    let s = this.lastSeq;
    const f = this.front();
    if (f !== undefined) s = Math.min(s, f.firstSeq - 1);
    for (const seq of this.inProgress) {
      s = Math.min(s, seq - 1);
      break;
    }
    return s;
  }

  // ------------------------------------------------------------- schedule

  /** Sets the timer for the next batch, or clears it when nothing is due. */
  private schedule(): void {
    if (this.closed || this.running) return;
    const oldest = this.firstIdle();
    if (oldest === undefined) {
      this.timer?.cancel();
      this.timer = undefined;
      return;
    }
    let dueMs: number;
    if (this.failures > 0) {
      dueMs = this.retryAtMs;
    } else {
      // Every flushIntervalMs, counted from the last batch or from the write that found the queue idle;
      // never later than the oldest write's maxDelayMs.
      const tick = Math.max(this.lastRunAtMs, oldest.firstAtMs) + this.options.flushIntervalMs;
      dueMs = Math.min(tick, oldest.firstAtMs + this.options.maxDelayMs);
    }
    if (this.timer !== undefined && this.timerAtMs === dueMs) return;
    this.timer?.cancel();
    this.timerAtMs = dueMs;
    this.timer = this.deps.clock.setTimer(dueMs - this.deps.clock.now(), () => {
      this.timer = undefined;
      void this.runDue();
    });
  }

  /** The oldest pending entry not in flight. */
  private firstIdle(): Pending<V> | undefined {
    for (const e of this.pending.values()) if (e.inFlightSeq === 0) return e;
    return undefined;
  }

  /** Timer: send one batch, then more back to back while the oldest write is overdue. */
  private async runDue(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      let ok: boolean;
      try {
        ok = await this.batch(false);
      } catch {
        ok = false;
      }
      if (!ok) break;
      const oldest = this.firstIdle();
      if (oldest === undefined || this.deps.clock.now() - oldest.firstAtMs < this.options.maxDelayMs) break;
      await yieldToLoop();
    }
    this.schedule();
  }

  // ------------------------------------------------------------- batches

  /**
   * Sends one batch (after any batch in flight). Resolves true when it succeeded (or had nothing to
   * send). On failure the writes stay queued, the backoff grows, and the error is thrown when
   * `rethrow`, else false is returned.
   */
  private batch(rethrow: boolean): Promise<boolean> {
    const run = this.chain.then(() => this.sendBatch(rethrow));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async sendBatch(rethrow: boolean): Promise<boolean> {
    const sent: { e: Pending<V>; seq: number }[] = [];
    for (const e of this.pending.values()) {
      if (e.inFlightSeq !== 0) continue;
      e.inFlightSeq = e.seq;
      sent.push({ e, seq: e.seq });
      if (sent.length >= this.options.maxBatch) break;
    }
    if (sent.length === 0) return true;
    this.running = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.lastRunAtMs = this.deps.clock.now();
    const writes = sent.map((s) => s.e.write);
    try {
      await this.deps.apply(writes);
    } catch (err) {
      for (const s of sent) s.e.inFlightSeq = 0;
      this.failures++;
      this.counters.flushFailures++;
      const { initialMs, maxMs } = this.options.retry;
      const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.failures - 1, 30));
      // Equal jitter: between half and all of the ceiling, so a fleet does not retry in lockstep.
      this.retryAtMs = this.deps.clock.now() + Math.max(1, Math.round(ceiling * (0.5 + 0.5 * this.deps.random.next())));
      this.deps.logger?.warn(
        { cache: this.deps.name, err, writes: sent.length, failures: this.failures, retryInMs: this.retryAtMs - this.deps.clock.now() },
        'write-back flush failed; the batch stays queued',
      );
      this.running = false;
      this.schedule();
      this.deps.onProgress?.();
      if (rethrow) throw err;
      return false;
    }
    this.failures = 0;
    for (const { e, seq } of sent) {
      if (e.seq === seq) this.pending.delete(e.write.key);
      else e.inFlightSeq = 0; // written again during the flight: stays queued with the newer write
    }
    this.counters.flushedWrites += sent.length;
    this.running = false;
    const cp = this.checkpointSeq();
    if (cp > this.lastCheckpoint) {
      this.lastCheckpoint = cp;
      this.deps.onCheckpoint?.(cp);
    }
    this.schedule();
    this.deps.onProgress?.();
    return true;
  }

  /**
   * Flushes every write queued before the call (a write since replaced by a later one counts as
   * flushed once the later one is). Batches are sent now, ignoring the interval and any backoff;
   * rejects with the source's error if a batch fails (the writes stay queued and are retried).
   */
  async flush(): Promise<void> {
    const target = this.lastSeq;
    const snapshot = [...this.pending.values()];
    let i = 0;
    for (;;) {
      // An entry is done when it left the queue or now holds a write made after the call.
      while (i < snapshot.length && (this.pending.get(snapshot[i]!.write.key) !== snapshot[i] || snapshot[i]!.seq > target)) i++;
      if (i === snapshot.length) break;
      await this.batch(true);
      await yieldToLoop();
    }
    this.schedule();
  }

  /**
   * Stops the timers and drains: sends batches, retrying failures with backoff, until the queue is
   * empty or `drainTimeoutMs` has passed. Resolves to the number of keys still pending.
   */
  async close(drainTimeoutMs: number): Promise<number> {
    if (this.closed) return this.pending.size;
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    const deadline = this.deps.clock.now() + drainTimeoutMs;
    while (this.pending.size > 0) {
      const ok = await this.batch(false);
      if (ok) {
        await yieldToLoop();
        continue;
      }
      const wait = Math.min(this.retryAtMs, deadline) - this.deps.clock.now();
      if (this.deps.clock.now() >= deadline) break;
      await new Promise<void>((resolve) => this.deps.clock.setTimer(wait, resolve));
    }
    return this.pending.size;
  }

  /** Keys still pending (for close() reporting and tests). */
  pendingKeys(): string[] {
    return [...this.pending.keys()];
  }
}

/** The error set() fails with when the queue stayed full for enqueueTimeoutMs. */
export function backpressureError(name: string, what: string, waitedMs: number, details: Record<string, unknown>): CacheError {
  return new CacheError('ARCHLAB_CACHE_BACKPRESSURE', `cache ${name}: ${what} stayed full for ${waitedMs} ms; the source is not keeping up`, { details: { ...details, waitedMs } });
}
