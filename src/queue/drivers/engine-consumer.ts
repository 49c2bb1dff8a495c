/**
 * The consumer of the embedded and archlab drivers: a Kafka group member on any LogApi.
 *
 * - Membership: joinGroup (which answers once the rebalance completed, with this member's
 *   partitions), then heartbeats every `heartbeatIntervalMs` (below a third of the session timeout).
 *   A heartbeat answering `rebalance: true`, or a commit or heartbeat fenced (ILLEGAL_GENERATION,
 *   UNKNOWN_MEMBER, REBALANCE_IN_PROGRESS), makes the member stop its partitions (after the record
 *   in the handler), commit what it handled, and join again (with its member id, or a new one when
 *   the group forgot it).
 * - Fetching: one long-polling fetch per assigned partition (up to `fetchMaxWaitMs`, `fetchMaxBytes`),
 *   from the group's committed offset, or `from` ('earliest' / 'latest') when there is none, or when
 *   the committed offset fell out of the log (Kafka's auto.offset.reset). Memory held: at most one
 *   fetch result per assigned partition.
 * - Commits: with autoCommit, after the handler resolved for the last record of each fetched batch
 *   (so a record is committed only after its handler resolved: at-least-once), before a rebalance
 *   and on close. Records handled after the last commit of a member that dies are read again by the
 *   next owner.
 * - close(): stops fetching, waits for the handler, commits, and leaves the group (so the others
 *   rebalance at once instead of after the session timeout).
 */
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import { isQueueError } from '../errors.js';
import type { Assignor, ConsumerOptions, LogApi, LogRecord, SeekTarget } from '../types.js';
import { badArgument, deferred, intOption, sleep, workTimer, type Deferred } from './common.js';
import { PartitionedConsumer, type OpenedSource, type PartitionSource, type PartitionState, type SourceItem } from './partitioned-consumer.js';

/** Consumer settings of the engine drivers beyond ConsumerOptions. */
export interface EngineConsumerLimits {
  /** Heartbeat period, ms; must be below sessionTimeoutMs / 3. Default sessionTimeoutMs / 4. */
  heartbeatIntervalMs?: number;
  /** Longest a fetch waits for new records (long poll), ms. Default 500. */
  fetchMaxWaitMs?: number;
  /** Bytes one fetch returns at most (at least one batch). Default 1 MiB. */
  fetchMaxBytes?: number;
  /** Backoff after a failed fetch, join or commit, doubled up to 2 s, ms. Default 100. */
  retryBackoffMs?: number;
  /** Shown in group descriptions. Default 'archlab-driver'. */
  clientId?: string;
}

export interface EngineConsumerOptions extends ConsumerOptions, EngineConsumerLimits {
  clock?: Clock;
  logger?: Logger;
}

/** A record in an engine source, marked when it ends its fetched batch (the commit point). */
export interface EngineMessage {
  lastInBatch: boolean;
}

const ASSIGNORS: readonly Assignor[] = ['range', 'round-robin', 'sticky'];
const DEFAULT_SESSION_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_MS = 2000;

function fenced(err: unknown): boolean {
  return (
    isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION') ||
    isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER') ||
    isQueueError(err, 'ARCHLAB_QUEUE_REBALANCE_IN_PROGRESS')
  );
}

export class EngineConsumer extends PartitionedConsumer<EngineMessage> {
  private readonly sessionTimeoutMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly fetchMaxWaitMs: number;
  private readonly fetchMaxBytes: number;
  private readonly retryBackoffMs: number;
  private readonly assignor: Assignor | undefined;
  private readonly clientId: string;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private memberId = '';
  private generation = -1;
  private rejoin: Deferred<void> | null = null;
  private heartbeatTimer: TimerHandle | null = null;
  private heartbeatBusy = false;
  /** True while a joinGroup is outstanding (it may wait for the whole rebalance). */
  private joining = false;
  private membership: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: LogApi,
    options: EngineConsumerOptions,
    private readonly onClosed: () => void = () => undefined,
  ) {
    super('engine', options);
    this.sessionTimeoutMs = intOption('sessionTimeoutMs', options.sessionTimeoutMs, DEFAULT_SESSION_TIMEOUT_MS, 100, 1_800_000);
    this.heartbeatIntervalMs = intOption('heartbeatIntervalMs', options.heartbeatIntervalMs, Math.max(1, Math.floor(this.sessionTimeoutMs / 4)), 1, 600_000);
    if (this.heartbeatIntervalMs * 3 >= this.sessionTimeoutMs) {
      throw badArgument(`heartbeatIntervalMs (${this.heartbeatIntervalMs}) must be below sessionTimeoutMs / 3 (${this.sessionTimeoutMs / 3})`);
    }
    this.fetchMaxWaitMs = intOption('fetchMaxWaitMs', options.fetchMaxWaitMs, 500, 0, 30_000);
    this.fetchMaxBytes = intOption('fetchMaxBytes', options.fetchMaxBytes, 1024 * 1024, 1, 64 * 1024 * 1024);
    this.retryBackoffMs = intOption('retryBackoffMs', options.retryBackoffMs, 100, 1, 60_000);
    if (options.assignor !== undefined && !ASSIGNORS.includes(options.assignor)) {
      throw badArgument(`assignor must be one of ${ASSIGNORS.join(', ')}, got ${JSON.stringify(options.assignor)}`);
    }
    this.assignor = options.assignor;
    this.clientId = options.clientId ?? 'archlab-driver';
    this.clock = options.clock ?? new SystemClock();
    this.logger = options.logger;
  }

  protected partitionsOf(topic: string): Promise<number> {
    return this.log.describeTopic(topic).then((t) => t.config.partitions);
  }

  protected override async begin(): Promise<void> {
    this.membership = this.memberLoop().catch((err: unknown) => this.fail(err));
  }

  /** Join, hold the assignment until a rebalance (or close), commit, give it back, join again. */
  private async memberLoop(): Promise<void> {
    let backoffMs = this.retryBackoffMs;
    while (this.running) {
      let joined;
      this.joining = true;
      try {
        joined = await this.log.joinGroup({
          group: this.group,
          ...(this.memberId === '' ? {} : { memberId: this.memberId }),
          clientId: this.clientId,
          topics: this.topics,
          sessionTimeoutMs: this.sessionTimeoutMs,
          ...(this.assignor === undefined ? {} : { assignor: this.assignor }),
        });
      } catch (err) {
        if (isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER')) this.memberId = '';
        if (!isQueueError(err) || !err.retryable) throw err;
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
        continue;
      } finally {
        this.joining = false;
      }
      backoffMs = this.retryBackoffMs;
      this.memberId = joined.memberId;
      this.generation = joined.generation;
      if (!this.running) {
        // close() came while the join waited: it did not wait for us, so leave here.
        await this.leave();
        return;
      }
      this.rejoin = deferred<void>();
      this.startHeartbeat();
      await this.assign(joined.assignment);
      await this.rejoin.promise;
      this.stopHeartbeat();
      if (!this.running) return;
      // Kafka's onPartitionsRevoked: stop, commit what was handled, give the partitions back.
      await this.revokeAll(() => this.commitHandled().catch((err: unknown) => this.logger?.warn({ err, group: this.group }, 'commit before rejoin failed')));
    }
  }

  private requestRejoin(): void {
    this.rejoin?.resolve();
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    const tick = (): void => {
      this.heartbeatTimer = workTimer(this.clock, this.heartbeatIntervalMs, tick);
      if (this.heartbeatBusy || !this.running) return;
      this.heartbeatBusy = true;
      const generation = this.generation;
      this.log
        .heartbeat(this.group, this.memberId, generation)
        .then((r) => {
          if (r.rebalance && generation === this.generation) this.requestRejoin();
        })
        .catch((err: unknown) => {
          if (generation !== this.generation) return;
          if (isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER')) this.memberId = '';
          if (fenced(err)) this.requestRejoin();
          else if (isQueueError(err) && err.retryable) this.logger?.debug({ err, group: this.group }, 'heartbeat failed; next one will retry');
          else this.fail(err);
        })
        .finally(() => (this.heartbeatBusy = false));
    };
    this.heartbeatTimer = workTimer(this.clock, this.heartbeatIntervalMs, tick);
  }

  private stopHeartbeat(): void {
    this.heartbeatTimer?.cancel();
    this.heartbeatTimer = null;
  }

  /** Resolves a seek to an offset first (ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE fails the seek, not the partition). */
  protected override async resolveTarget(state: PartitionState<EngineMessage>, target: SeekTarget): Promise<SeekTarget> {
    return { kind: 'offset', offset: await this.log.resolveSeek(state.tp.topic, state.tp.partition, target) };
  }

  protected async openSource(state: PartitionState<EngineMessage>, target: SeekTarget | null): Promise<OpenedSource<EngineMessage>> {
    const { topic, partition } = state.tp;
    let position: number | null = null;
    if (target !== null) {
      position = target.kind === 'offset' ? target.offset : await this.log.resolveSeek(topic, partition, target);
      state.position = position;
    }
    const source = new EngineSource(this, state, position);
    return { source, skipBelow: position ?? -1, skipBeforeTimestamp: -1 };
  }

  /** Where a partition starts: the group's committed offset, else `from`. */
  async startPosition(state: PartitionState<EngineMessage>): Promise<number> {
    const { topic, partition } = state.tp;
    const [c] = await this.log.fetchOffsets(this.group, [{ topic, partition }]);
    if (c !== undefined && c.offset >= 0) {
      state.committed = c.offset;
      return c.offset;
    }
    return this.log.resolveSeek(topic, partition, { kind: this.from });
  }

  /** After OFFSET_OUT_OF_RANGE (retention moved the log start past us): Kafka's auto.offset.reset. */
  resetPosition(state: PartitionState<EngineMessage>): Promise<number> {
    this.logger?.warn({ group: this.group, ...state.tp, position: state.position, reset: this.from }, 'offset out of range; resetting');
    return this.log.resolveSeek(state.tp.topic, state.tp.partition, { kind: this.from });
  }

  fetch(state: PartitionState<EngineMessage>, offset: number): ReturnType<LogApi['fetch']> {
    return this.log.fetch({ topic: state.tp.topic, partition: state.tp.partition, offset, maxBytes: this.fetchMaxBytes, maxWaitMs: this.fetchMaxWaitMs });
  }

  get backoffMs(): number {
    return this.retryBackoffMs;
  }

  isRunning(): boolean {
    return this.running;
  }

  /** A fetch found its topic or partition gone: the group will rebalance without it. */
  partitionGone(): void {
    this.requestRejoin();
  }

  protected async handled(state: PartitionState<EngineMessage>, item: SourceItem<EngineMessage>): Promise<void> {
    if (this.autoCommit && item.message.lastInBatch) await this.commitParts([state]);
  }

  protected skipped(): void {
    // Nothing to hand back: a log record stays in the log.
  }

  protected async commitHandled(): Promise<void> {
    await this.commitParts([...this.parts.values()]);
  }

  /** Commits positions past what this member committed. A fenced commit asks for a rejoin instead of failing. */
  private async commitParts(states: PartitionState<EngineMessage>[]): Promise<void> {
    const due = states.filter((s) => s.position >= 0 && s.position > s.committed);
    if (due.length === 0 || this.generation < 0) return;
    const offsets = due.map((s) => ({ topic: s.tp.topic, partition: s.tp.partition, offset: s.position }));
    try {
      await this.log.commitOffsets(this.group, this.memberId, this.generation, offsets);
    } catch (err) {
      if (fenced(err)) {
        this.requestRejoin();
        return;
      }
      throw err;
    }
    offsets.forEach((o, i) => {
      const s = due[i]!;
      if (s.committed < o.offset) s.committed = o.offset;
    });
  }

  private async leave(): Promise<void> {
    const memberId = this.memberId;
    this.memberId = '';
    if (memberId === '') return;
    await this.log.leaveGroup(this.group, memberId).catch((err: unknown) => this.logger?.debug({ err, group: this.group }, 'leaveGroup failed'));
  }

  protected async shutdown(): Promise<void> {
    this.stopHeartbeat();
    this.requestRejoin();
    // A join still waiting for its rebalance may take up to the rebalance timeout: the member loop
    // leaves the group itself when it returns.
    if (!this.joining) {
      await this.membership;
      await this.leave();
    }
    this.onClosed();
  }
}

/** One partition's records, fetched batch by batch; close() ends a waiting next() at once. */
class EngineSource implements PartitionSource<EngineMessage> {
  private buffer: LogRecord[] = [];
  private closed = false;
  private readonly stop = deferred<null>();

  constructor(
    private readonly consumer: EngineConsumer,
    private readonly state: PartitionState<EngineMessage>,
    /** Next offset to fetch; null until the start position is resolved. */
    private position: number | null,
  ) {}

  async next(): Promise<SourceItem<EngineMessage> | null> {
    let backoffMs = this.consumer.backoffMs;
    while (!this.closed) {
      const record = this.buffer.shift();
      if (record !== undefined) return { record, message: { lastInBatch: this.buffer.length === 0 } };
      try {
        if (this.position === null) {
          const start = await Promise.race([this.consumer.startPosition(this.state), this.stop.promise]);
          if (start === null) return null;
          this.position = start;
          this.state.position = start;
        }
        const res = await Promise.race([this.consumer.fetch(this.state, this.position), this.stop.promise]);
        if (res === null) return null;
        const from = this.position;
        this.buffer = res.records.filter((r) => r.offset >= from);
        this.position = Math.max(from, res.nextOffset);
        backoffMs = this.consumer.backoffMs;
      } catch (err) {
        if (this.closed) return null;
        if (isQueueError(err, 'ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE')) {
          this.position = await this.consumer.resetPosition(this.state);
          this.state.position = this.position;
          continue;
        }
        if (isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC') || isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_PARTITION')) {
          this.consumer.partitionGone();
          return null;
        }
        if (!isQueueError(err) || !err.retryable) throw err;
        await Promise.race([sleep(backoffMs), this.stop.promise]);
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
      }
    }
    return null;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.buffer = [];
    this.stop.resolve(null);
  }
}
