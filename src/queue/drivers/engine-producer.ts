/**
 * The producer of the embedded and archlab drivers: Kafka's producer on any LogApi.
 *
 * - Partitioning: a keyed record goes to toPositive(murmur2(key)) % partitions, computed here with
 *   the log's own murmur2 (so keys land where Kafka and the log's partitionFor put them); records
 *   without a key go round robin, one partition after the other per record (not Kafka's sticky
 *   partitioner: simpler, and even spread matters more here than batch size). Partition counts come
 *   from describeTopic, cached for `metadataMaxAgeMs`.
 * - Batching: records collect per partition until the batch reaches `maxBatchBytes` or `lingerMs`
 *   passes; a record bigger than maxBatchBytes goes in a batch of its own.
 * - One batch in flight per partition, so a retry can never reorder a partition; partitions send in
 *   parallel.
 * - Retries: a batch failing with a retryable error is sent again after a backoff (doubling from
 *   `retryBackoffMs` to 1 s), at most `maxRetries` times. A batch refused as too large is split in
 *   two and each half sent (as Kafka does), down to single records.
 * - Idempotence: initProducerId() once; every batch carries the producer id, epoch and the sequence
 *   of its first record, assigned when the batch is first sent and kept by its retries, so the log
 *   writes a retried batch once (AppendResult.duplicate). When a batch fails for good, the producer
 *   takes a new producer id, so no later batch can be taken for a retry of the failed one.
 * - Memory: records buffered or in flight hold at most `maxBufferBytes`; send() waits for room up
 *   to `maxBlockMs` (Kafka's max.block.ms) and then fails with ARCHLAB_QUEUE_LIMIT, as do sends past
 *   `maxBlockedSends` waiting at once. A record alone over maxBufferBytes fails at once with
 *   ARCHLAB_QUEUE_MESSAGE_TOO_LARGE.
 */
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { QueueError, checkName, isQueueError } from '../errors.js';
import { partitionForKey } from '../log/murmur2.js';
import type { Acks, AppendResult, Compression, LogApi, Producer, ProducerOptions, ProducerRecord, SendResult } from '../types.js';
import { badArgument, closedError, intOption, recordBytes, sleep, workTimer } from './common.js';
import { checkAcks, checkRecord } from './validate.js';

/** Producer settings of the engine drivers beyond ProducerOptions. */
export interface EngineProducerLimits {
  /** Bytes of records buffered or in flight per producer. Default 32 MiB. */
  maxBufferBytes?: number;
  /** How long send() waits for buffer room before ARCHLAB_QUEUE_LIMIT, ms. Default 10,000. */
  maxBlockMs?: number;
  /** send() calls waiting for buffer room at once; more fail with ARCHLAB_QUEUE_LIMIT at once. Default 10,000. */
  maxBlockedSends?: number;
  /** Retries of a batch that failed with a retryable error. Default 5. */
  maxRetries?: number;
  /** First retry backoff, doubled per retry up to 1 s, ms. Default 100. */
  retryBackoffMs?: number;
  /** Partition counts are looked up again after this long, ms. Default 30,000. */
  metadataMaxAgeMs?: number;
}

export interface EngineProducerOptions extends ProducerOptions, EngineProducerLimits {
  clock?: Clock;
}

interface Pending {
  record: ProducerRecord;
  bytes: number;
  resolve: (r: SendResult) => void;
  reject: (err: unknown) => void;
}

interface Batch {
  topic: string;
  partition: number;
  key: string;
  items: Pending[];
  bytes: number;
  timer: TimerHandle | null;
}

interface PartitionSender {
  queue: Batch[];
  busy: boolean;
}

/** A topic's partition count: the lookup, when it started (monotonic ms), and the answer once known. */
interface CountEntry {
  n: Promise<number>;
  at: number;
  known?: number;
}

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: TimerHandle;
}

const MAX_BACKOFF_MS = 1000;

export class EngineProducer implements Producer {
  private readonly acks: Acks;
  private readonly compression: Compression;
  private readonly lingerMs: number;
  private readonly maxBatchBytes: number;
  private readonly idempotent: boolean;
  private readonly maxBufferBytes: number;
  private readonly maxBlockMs: number;
  private readonly maxBlockedSends: number;
  private readonly maxRetries: number;
  private readonly retryBackoffMs: number;
  private readonly metadataMaxAgeMs: number;
  private readonly clock: Clock;

  private readonly partitionCounts = new Map<string, CountEntry>();
  private readonly open = new Map<string, Batch>();
  private readonly senders = new Map<string, PartitionSender>();
  private readonly roundRobin = new Map<string, number>();
  private bufferedBytes = 0;
  private readonly waiters: Waiter[] = [];
  /** Sends not yet in a batch, in call order (they wait for buffer room or a partition count). */
  private intake: Promise<void> = Promise.resolve();
  private intakePending = 0;
  /** Batches sealed and not yet settled. */
  private readonly inflight = new Set<Promise<void>>();
  private producerId: Promise<{ producerId: number; producerEpoch: number }> | null = null;
  private readonly sequences = new Map<string, number>();
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly log: LogApi,
    options: EngineProducerOptions,
    private readonly onClosed: () => void = () => undefined,
  ) {
    this.acks = checkAcks(options.acks);
    this.compression = options.compression ?? 'none';
    if (!['none', 'gzip', 'lz4', 'zstd'].includes(this.compression)) throw badArgument(`unknown compression ${JSON.stringify(this.compression)}`);
    this.lingerMs = intOption('lingerMs', options.lingerMs, 5, 0, 60_000);
    this.maxBatchBytes = intOption('maxBatchBytes', options.maxBatchBytes, 256 * 1024, 64, 1 << 30);
    this.idempotent = options.idempotent ?? false;
    if (typeof this.idempotent !== 'boolean') throw badArgument('idempotent must be a boolean');
    if (this.idempotent && this.acks === 'none') throw badArgument("an idempotent producer needs acks 'leader' or 'fsync'");
    this.maxBufferBytes = intOption('maxBufferBytes', options.maxBufferBytes, 32 * 1024 * 1024, 1024, Number.MAX_SAFE_INTEGER);
    this.maxBlockMs = intOption('maxBlockMs', options.maxBlockMs, 10_000, 0, 3_600_000);
    this.maxBlockedSends = intOption('maxBlockedSends', options.maxBlockedSends, 10_000, 0, 10_000_000);
    this.maxRetries = intOption('maxRetries', options.maxRetries, 5, 0, 100);
    this.retryBackoffMs = intOption('retryBackoffMs', options.retryBackoffMs, 100, 1, 60_000);
    this.metadataMaxAgeMs = intOption('metadataMaxAgeMs', options.metadataMaxAgeMs, 30_000, 0, 86_400_000);
    this.clock = options.clock ?? new SystemClock();
  }

  /** Bytes of records buffered or in flight now. */
  get bufferedBytesNow(): number {
    return this.bufferedBytes;
  }

  send(topic: string, record: ProducerRecord): Promise<SendResult> {
    if (this.closed) return Promise.reject(closedError('producer'));
    let bytes: number;
    try {
      checkName('topic', topic);
      record = checkRecord(record);
      bytes = recordBytes(record);
    } catch (err) {
      return Promise.reject(err);
    }
    if (bytes > this.maxBufferBytes) {
      return Promise.reject(
        new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `a record of ${bytes} bytes can never fit the producer's ${this.maxBufferBytes}-byte buffer`, {
          details: { bytes, maxBytes: this.maxBufferBytes },
        }),
      );
    }
    return new Promise<SendResult>((resolve, reject) => {
      const pending: Pending = { record, bytes, resolve, reject };
      // Fast path: nothing queued before it, room in the buffer, partition count known.
      const cached = this.cachedCount(topic);
      if (this.intakePending === 0 && this.waiters.length === 0 && this.bufferedBytes + bytes <= this.maxBufferBytes && cached !== undefined) {
        this.bufferedBytes += bytes;
        this.place(topic, cached, pending);
        return;
      }
      // Slow path, in call order: wait for room, then for the partition count.
      this.intakePending++;
      this.intake = this.intake
        .then(async () => {
          await this.reserve(bytes);
          let n: number;
          try {
            n = await this.partitionCount(topic);
          } catch (err) {
            this.releaseBytes(bytes);
            throw err;
          }
          this.place(topic, n, pending);
        })
        .catch((err: unknown) => reject(err))
        .finally(() => this.intakePending--);
    });
  }

  private cachedCount(topic: string): number | undefined {
    const c = this.partitionCounts.get(topic);
    if (c === undefined || this.clock.monotonic() - c.at > this.metadataMaxAgeMs) return undefined;
    return c.known;
  }

  private partitionCount(topic: string): Promise<number> {
    const c = this.partitionCounts.get(topic);
    if (c !== undefined && this.clock.monotonic() - c.at <= this.metadataMaxAgeMs) return c.n;
    const entry: CountEntry = { n: Promise.resolve(0), at: this.clock.monotonic() };
    entry.n = this.log.describeTopic(topic).then((info) => {
      entry.known = info.config.partitions;
      return info.config.partitions;
    });
    entry.n.catch(() => {
      if (this.partitionCounts.get(topic) === entry) this.partitionCounts.delete(topic);
    });
    this.partitionCounts.set(topic, entry);
    return entry.n;
  }

  /** Waits until `bytes` fit in the buffer (FIFO), up to maxBlockMs. */
  private reserve(bytes: number): Promise<void> {
    if (this.waiters.length === 0 && this.bufferedBytes + bytes <= this.maxBufferBytes) {
      this.bufferedBytes += bytes;
      return Promise.resolve();
    }
    if (this.waiters.length >= this.maxBlockedSends) {
      return Promise.reject(
        new QueueError('ARCHLAB_QUEUE_LIMIT', `producer buffer full and ${this.waiters.length} sends already waiting`, {
          details: { limit: 'maxBlockedSends', value: this.maxBlockedSends },
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        resolve,
        reject,
        timer: workTimer(this.clock, this.maxBlockMs, () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(
            new QueueError('ARCHLAB_QUEUE_LIMIT', `producer buffer of ${this.maxBufferBytes} bytes stayed full for ${this.maxBlockMs} ms`, {
              details: { limit: 'maxBufferBytes', value: this.maxBufferBytes },
            }),
          );
          this.admit();
        }),
      };
      this.waiters.push(waiter);
    });
  }

  private admit(): void {
    while (this.waiters.length > 0 && this.bufferedBytes + this.waiters[0]!.bytes <= this.maxBufferBytes) {
      const w = this.waiters.shift()!;
      w.timer.cancel();
      this.bufferedBytes += w.bytes;
      w.resolve();
    }
  }

  private releaseBytes(bytes: number): void {
    this.bufferedBytes -= bytes;
    this.admit();
  }

  private place(topic: string, n: number, p: Pending): void {
    let partition: number;
    if (p.record.key !== null) partition = partitionForKey(p.record.key, n);
    else {
      const rr = this.roundRobin.get(topic) ?? 0;
      this.roundRobin.set(topic, (rr + 1) % n);
      partition = rr % n;
    }
    const key = `${topic}\u0000${partition}`;
    let batch = this.open.get(key);
    if (batch !== undefined && batch.bytes + p.bytes > this.maxBatchBytes && batch.items.length > 0) {
      this.seal(batch);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { topic, partition, key, items: [], bytes: 0, timer: null };
      this.open.set(key, batch);
      const b = batch;
      if (this.lingerMs > 0) b.timer = workTimer(this.clock, this.lingerMs, () => this.seal(b));
      else queueMicrotask(() => this.seal(b));
    }
    batch.items.push(p);
    batch.bytes += p.bytes;
    if (batch.bytes >= this.maxBatchBytes) this.seal(batch);
  }

  /** Closes an open batch and queues it on its partition's sender. */
  private seal(batch: Batch): void {
    if (this.open.get(batch.key) !== batch) return;
    this.open.delete(batch.key);
    batch.timer?.cancel();
    batch.timer = null;
    let sender = this.senders.get(batch.key);
    if (sender === undefined) {
      sender = { queue: [], busy: false };
      this.senders.set(batch.key, sender);
    }
    sender.queue.push(batch);
    if (!sender.busy) {
      const run = this.drain(batch.key, sender);
      this.inflight.add(run);
      void run.finally(() => this.inflight.delete(run));
    }
  }

  private async drain(key: string, sender: PartitionSender): Promise<void> {
    sender.busy = true;
    try {
      for (let batch = sender.queue.shift(); batch !== undefined; batch = sender.queue.shift()) {
        await this.sendBatch(batch.topic, batch.partition, batch.items);
      }
    } finally {
      sender.busy = false;
      if (sender.queue.length === 0) this.senders.delete(key);
    }
  }

  private getProducerId(): Promise<{ producerId: number; producerEpoch: number }> {
    if (this.producerId === null) {
      const p = this.log.initProducerId();
      this.producerId = p;
      p.catch(() => {
        if (this.producerId === p) this.producerId = null;
      });
    }
    return this.producerId;
  }

  /** Sends `items` as one batch (retried, split when too large) and settles each record's promise. */
  private async sendBatch(topic: string, partition: number, items: Pending[]): Promise<void> {
    const key = `${topic}\u0000${partition}`;
    let ids: { producerId: number; producerEpoch: number } | undefined;
    let baseSequence = 0;
    try {
      if (this.idempotent) {
        ids = await this.getProducerId();
        baseSequence = this.sequences.get(key) ?? 0;
        this.sequences.set(key, baseSequence + items.length);
      }
      await this.appendWithRetry(topic, partition, items, ids, baseSequence);
    } catch (err) {
      for (const p of items) p.reject(err);
      if (this.idempotent && ids !== undefined) this.resetProducerId(ids.producerId);
    } finally {
      let bytes = 0;
      for (const p of items) bytes += p.bytes;
      this.releaseBytes(bytes);
    }
  }

  private resetProducerId(failedId: number): void {
    // Only once per failed id: batches of other partitions failing with it too do not reset again.
    void this.producerId?.then((current) => {
      if (current.producerId === failedId) {
        this.producerId = null;
        this.sequences.clear();
      }
    });
  }

  private async appendWithRetry(
    topic: string,
    partition: number,
    items: Pending[],
    ids: { producerId: number; producerEpoch: number } | undefined,
    baseSequence: number,
  ): Promise<void> {
    let backoffMs = this.retryBackoffMs;
    for (let attempt = 0; ; attempt++) {
      let result: AppendResult;
      try {
        result = await this.log.append({
          topic,
          partition,
          records: items.map((p) => p.record),
          acks: this.acks,
          compression: this.compression,
          ...(ids === undefined ? {} : { producerId: ids.producerId, producerEpoch: ids.producerEpoch, baseSequence }),
        });
      } catch (err) {
        if (isQueueError(err, 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE') && items.length > 1) {
          // Split, as Kafka does: the halves keep the sequence range the whole batch had.
          const half = items.length >>> 1;
          await this.appendWithRetry(topic, partition, items.slice(0, half), ids, baseSequence);
          await this.appendWithRetry(topic, partition, items.slice(half), ids, baseSequence + half);
          return;
        }
        if (isQueueError(err) && err.retryable && attempt < this.maxRetries && !this.closedHard) {
          await sleep(backoffMs);
          backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
          continue;
        }
        throw err;
      }
      // acks 'none' may answer before offsets are known (baseOffset -1): then every offset is -1.
      items.forEach((p, i) => p.resolve({ partition, offset: result.baseOffset < 0 ? -1 : result.baseOffset + i }));
      return;
    }
  }

  /** Set by close(): retries stop. */
  private closedHard = false;

  async flush(): Promise<void> {
    // Sends still waiting for room or a partition count join the batches first.
    await this.intake;
    for (const batch of [...this.open.values()]) this.seal(batch);
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      try {
        await this.flush();
      } finally {
        this.closedHard = true;
        for (const w of this.waiters.splice(0)) {
          w.timer.cancel();
          w.reject(closedError('producer'));
        }
        this.onClosed();
      }
    })();
    return this.closing;
  }
}
