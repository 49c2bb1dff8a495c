/**
 * The log consumer every driver shares: one pump per assigned partition pulls records from the
 * engine in partition order, and the one handler runs serially across partitions (it is never called
 * again before the previous call settled). A subclass says how a partition's records are read (its
 * "source"), what committing means on its engine, and which partitions the member holds:
 *
 * - by default (RabbitMQ streams, NATS JetStream, no consumer groups in the engine) every member
 *   holds every partition of its topics, from run() to close();
 * - the embedded/archlab engine overrides begin() to join the group and calls assign()/revokeAll()
 *   at every rebalance.
 *
 * Lifecycle: run() starts the consumer and resolves when close() is called; a handler that throws
 * stops the consumer and run() rejects with that error (records handled before it stay committed,
 * the failed one is read again by the next consumer of the group: at-least-once). close() waits for
 * the handler in progress, except when the handler itself calls it (or seek()): then it does not
 * wait for any pump, and the record being handled is not committed by close().
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { QueueError } from '../errors.js';
import type { Consumer, ConsumerOptions, LogRecord, SeekTarget, TopicPartition } from '../types.js';
import { SerialRunner, badArgument, closedError, deferred, type Deferred } from './common.js';

/** One record from a partition source, with whatever the engine needs to settle it. */
export interface SourceItem<M> {
  record: LogRecord;
  message: M;
}

/** A partition's records in order, as the engine delivers them. */
export interface PartitionSource<M> {
  /** The next record; null when the source ended (closed, or the partition was deleted). */
  next(): Promise<SourceItem<M> | null>;
  /** Stops delivery at once; next() then returns null. */
  close(): Promise<void>;
}

/** A newly opened source, and what it should skip on the way. */
export interface OpenedSource<M> {
  source: PartitionSource<M>;
  /** Skip records below this offset (engines that start at a chunk boundary). -1 = none. */
  skipBelow: number;
  /** Skip records older than this until the first one that is not (seek by timestamp). -1 = none. */
  skipBeforeTimestamp: number;
}

export interface PartitionState<M> {
  readonly tp: TopicPartition;
  readonly key: string;
  source: PartitionSource<M> | null;
  /** Bumped by every (re)open, seek and revoke; a pump of an older epoch stops. */
  epoch: number;
  /** Next offset to hand to the handler (-1 until known). */
  position: number;
  /** Last offset committed by this member (-1 when none). */
  committed: number;
  skipBelow: number;
  skipBeforeTimestamp: number;
  pump: Promise<void>;
}

type State = 'idle' | 'running' | 'closing' | 'closed';

/** Set while a consumer's handler runs, so close() called from inside the handler does not wait for it. */
const inHandler = new AsyncLocalStorage<object>();

export function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export abstract class PartitionedConsumer<M> implements Consumer {
  protected readonly group: string;
  protected readonly topics: string[];
  protected readonly from: 'earliest' | 'latest';
  protected readonly autoCommit: boolean;
  protected readonly parts = new Map<string, PartitionState<M>>();
  private state: State = 'idle';
  private handler: ((record: LogRecord) => Promise<void> | void) | null = null;
  private readonly serial = new SerialRunner();
  private failure: unknown = undefined;
  private done: Deferred<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    protected readonly driverName: string,
    options: ConsumerOptions,
  ) {
    if (options === null || typeof options !== 'object') throw badArgument('consumer needs options { group, topics }');
    if (!Array.isArray(options.topics) || options.topics.length === 0) throw badArgument('consumer topics must be a non-empty array');
    this.group = options.group;
    this.topics = [...new Set(options.topics)].sort();
    this.from = options.from ?? 'earliest';
    if (this.from !== 'earliest' && this.from !== 'latest') throw badArgument(`from must be 'earliest' or 'latest', got ${String(this.from)}`);
    this.autoCommit = options.autoCommit ?? true;
    if (typeof this.autoCommit !== 'boolean') throw badArgument('autoCommit must be a boolean');
  }

  /** Partition counts of the consumer's topics (ARCHLAB_QUEUE_UNKNOWN_TOPIC when one is missing). */
  protected abstract partitionsOf(topic: string): Promise<number>;
  /** Opens `state.tp` at `target`, or (target null) at the group's committed position, else at `from`. */
  protected abstract openSource(state: PartitionState<M>, target: SeekTarget | null): Promise<OpenedSource<M>>;
  /** The handler resolved for `item` (state.position is already past it). */
  protected abstract handled(state: PartitionState<M>, item: SourceItem<M>): Promise<void>;
  /**
   * `item` will not reach the handler: 'filtered' = before the start point (behind the cursor);
   * 'returned' = the consumer stopped, seeked or failed before handling it (read it again later).
   */
  protected abstract skipped(state: PartitionState<M>, item: SourceItem<M>, why: 'filtered' | 'returned'): void;
  /** Makes every handled record committed. */
  protected abstract commitHandled(): Promise<void>;
  /** Releases engine resources after the last pump stopped. */
  protected abstract shutdown(): Promise<void>;

  /**
   * Checks a seek target before the partition's current source is stopped, so a seek that cannot
   * work fails without stalling the partition. Returns the target to open at. Default: as given.
   */
  protected async resolveTarget(_state: PartitionState<M>, target: SeekTarget): Promise<SeekTarget> {
    return target;
  }

  /** Starts consuming. Default: hold every partition of the topics until close(). */
  protected async begin(): Promise<void> {
    const tps: TopicPartition[] = [];
    for (const topic of this.topics) {
      const n = await this.partitionsOf(topic);
      for (let partition = 0; partition < n; partition++) tps.push({ topic, partition });
    }
    await this.assign(tps);
  }

  protected get running(): boolean {
    return this.state === 'running';
  }

  /** Takes `tps` (on top of what is held) and starts their pumps. */
  protected async assign(tps: TopicPartition[]): Promise<void> {
    const fresh: PartitionState<M>[] = [];
    for (const tp of tps) {
      const key = tpKey(tp.topic, tp.partition);
      if (this.parts.has(key)) continue;
      const part: PartitionState<M> = {
        tp: { topic: tp.topic, partition: tp.partition },
        key,
        source: null,
        epoch: 0,
        position: -1,
        committed: -1,
        skipBelow: -1,
        skipBeforeTimestamp: -1,
        pump: Promise.resolve(),
      };
      this.parts.set(key, part);
      fresh.push(part);
    }
    for (const part of fresh) {
      if (this.state !== 'running') break;
      await this.start(part, null);
    }
  }

  /**
   * Stops every pump (after the record in the handler) and gives up every partition; `beforeRelease`
   * runs once the pumps stopped and before the partitions are forgotten (to commit what was handled).
   */
  protected async revokeAll(beforeRelease?: () => Promise<void>): Promise<void> {
    const pumps: Promise<void>[] = [];
    for (const part of this.parts.values()) {
      part.epoch++;
      const source = part.source;
      part.source = null;
      if (source !== null) await source.close().catch(() => undefined);
      pumps.push(part.pump);
    }
    await Promise.all(pumps);
    if (beforeRelease !== undefined) await beforeRelease();
    this.parts.clear();
  }

  async run(handler: (record: LogRecord) => Promise<void> | void): Promise<void> {
    if (typeof handler !== 'function') throw badArgument('run needs a handler function');
    if (this.state !== 'idle') {
      throw this.state === 'running' ? badArgument('run() was already called on this consumer') : closedError(`${this.driverName} consumer`);
    }
    this.state = 'running';
    this.handler = handler;
    this.done = deferred<void>();
    try {
      await this.begin();
    } catch (err) {
      this.fail(err);
    }
    return this.done.promise;
  }

  async seek(topic: string, partition: number, target: SeekTarget): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') throw closedError(`${this.driverName} consumer`);
    if (target === null || typeof target !== 'object') throw badArgument('seek needs a target { kind, ... }');
    const part = this.parts.get(tpKey(topic, partition));
    if (part === undefined) {
      throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_PARTITION', `seek: ${topic}/${partition} is not assigned to this consumer now`, {
        details: { topic, partition },
      });
    }
    const resolved = await this.resolveTarget(part, target);
    const old = part.source;
    part.epoch++;
    part.source = null;
    if (old !== null) await old.close();
    // From inside the handler, pumps may be queued behind it: waiting for one would deadlock. Their
    // epoch moved on, so they drop what they hold without running the handler.
    if (inHandler.getStore() !== this) await part.pump;
    if (this.state === 'running' && this.parts.get(part.key) === part) await this.start(part, resolved);
  }

  async commit(): Promise<void> {
    if (this.state === 'closed') throw closedError(`${this.driverName} consumer`);
    await this.commitHandled();
  }

  assignment(): TopicPartition[] {
    return [...this.parts.values()].map((p) => ({ ...p.tp }));
  }

  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'closing';
    const fromHandler = inHandler.getStore() === this;
    const pumps: Promise<void>[] = [];
    for (const part of this.parts.values()) {
      part.epoch++;
      const source = part.source;
      part.source = null;
      if (source !== null) await source.close().catch(() => undefined);
      if (!fromHandler) pumps.push(part.pump);
    }
    await Promise.all(pumps);
    let commitError: unknown;
    if (wasRunning && this.autoCommit) await this.commitHandled().catch((err: unknown) => (commitError = err));
    await this.shutdown().catch(() => undefined);
    this.state = 'closed';
    const failure = this.failure ?? commitError;
    if (this.done !== null) {
      if (failure !== undefined) this.done.reject(failure);
      else this.done.resolve();
    }
  }

  /** Stops the consumer; run() rejects with `err` (the first failure wins). */
  protected fail(err: unknown): void {
    if (this.failure === undefined) this.failure = err;
    void this.close();
  }

  private async start(part: PartitionState<M>, target: SeekTarget | null): Promise<void> {
    const epoch = ++part.epoch;
    const opened = await this.openSource(part, target);
    if (part.epoch !== epoch || this.state !== 'running') {
      await opened.source.close();
      return;
    }
    part.source = opened.source;
    part.skipBelow = opened.skipBelow;
    part.skipBeforeTimestamp = opened.skipBeforeTimestamp;
    part.pump = this.pump(part, epoch, opened.source).catch((err: unknown) => this.fail(err));
  }

  private async pump(part: PartitionState<M>, epoch: number, source: PartitionSource<M>): Promise<void> {
    const handler = this.handler!;
    for (;;) {
      const item = await source.next();
      if (item === null || part.epoch !== epoch || this.state !== 'running') {
        if (item !== null) this.skipped(part, item, 'returned');
        return;
      }
      const { record } = item;
      if (record.offset < part.skipBelow || (part.skipBeforeTimestamp >= 0 && record.timestamp < part.skipBeforeTimestamp)) {
        this.skipped(part, item, 'filtered');
        continue;
      }
      part.skipBeforeTimestamp = -1;
      // The handler runs serially across partitions; a seek, revoke or close that came while this
      // record waited for its turn means it must not run.
      let ran: boolean;
      try {
        ran = await this.serial.run(async () => {
          if (part.epoch !== epoch || this.state !== 'running') return false;
          await inHandler.run(this, () => handler(record));
          return true;
        });
      } catch (err) {
        this.skipped(part, item, 'returned');
        throw err;
      }
      if (!ran) {
        this.skipped(part, item, 'returned');
        return;
      }
      if (part.epoch === epoch) part.position = record.offset + 1;
      await this.handled(part, item);
    }
  }
}
