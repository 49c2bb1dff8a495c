/**
 * archlab's log and queue as bench targets, written against the contracts (LogApi & RawLogApi,
 * BrokerApi in src/queue/types.ts) so one adapter drives the embedded engines and the TCP client.
 *
 * - log: one topic of one partition per run. The producer batches as Kafka's does, by count and by
 *   bytes: `send()` adds the record to the open batch, which goes out as one `appendRaw` (an encoded
 *   record batch, the log's own format) when it holds `batchRecords` records or the next record
 *   would take its encoded size past `batchBytes` (Kafka's batch.size), or when the runner flushes
 *   (the window of unacknowledged messages is full, every latency tick), or through the driver
 *   API's Producer when a target asks for it. Every message's promise is its batch's. The consumer
 *   joins a group, long-polls `fetch` from offset 0 on its own connection and commits its offset
 *   every `commitIntervalMs` and at the end — the log's ack.
 * - queue: one durable queue per run, published through the default exchange; a consumer with
 *   prefetch on its own connection acks every delivery.
 */
import { BATCH_HEADER_BYTES, encodeRecordBatch, recordBytesInBatch } from '../../src/queue/log/record-batch.js';
import { isQueueError } from '../../src/queue/errors.js';
import type { Acks, BrokerApi, LogApi, Producer, ProducerRecord, RawLogApi } from '../../src/queue/types.js';
import type { LevelTarget } from './levelling.js';
import { BenchCheckError } from './payload.js';
import type { PreparedBatch, RunMode, Session, Target } from './runner.js';

export type LogClient = LogApi & RawLogApi;

export interface Pair<T> {
  /** The producer's handle. */
  producer: T;
  /** The consumer's handle (a second connection over TCP; the same engine when embedded). */
  consumer: T;
}

export interface LogTargetOptions {
  system: string;
  durability: string;
  method: string;
  acks: Acks;
  /** Records per batch in throughput runs, at most. */
  batchRecords: number;
  /** Encoded bytes per batch, at most (a record bigger than that goes alone): Kafka's batch.size. */
  batchBytes: number;
  /** Long-poll wait of a fetch. */
  fetchMaxWaitMs: number;
  /** Bytes per fetch at most. */
  fetchMaxBytes: number;
  /** The consumer commits its offset at most this often, and once more at the end (Kafka's auto-commit: every 5 s). */
  commitIntervalMs: number;
  clients: () => Promise<Pair<LogClient>>;
  close: () => Promise<void>;
  /** Untimed messages before the first timed run (V8's JIT). */
  warmupMessages?: number;
  /** Produce batches encoded before the clock starts (the broker's capacity, not the client's). No latency run. */
  preEncoded?: boolean;
  /**
   * Produce through the driver API's `Producer` (src/queue/drivers: batching by linger and batch
   * bytes, one promise per record) instead of the adapter's own batches; made per run.
   */
  producer?: (mode: RunMode) => Producer;
}

/**
 * Kafka's rule for closing a batch, on the log's own encoding: a batch holds at most `maxRecords`
 * records and at most `maxBytes` encoded bytes (header included, exact: recordBytesInBatch), except
 * that a record too big for any batch goes in one of its own. Records carry no timestamp here (the
 * encoder stamps them all with the same `now`), so every timestamp delta is 0.
 */
export class BatchSizer {
  /** Records in the open batch. */
  records = 0;
  /** Encoded bytes of the open batch so far. */
  bytes = BATCH_HEADER_BYTES;

  constructor(
    readonly maxRecords: number,
    readonly maxBytes: number,
  ) {
    if (!Number.isSafeInteger(maxRecords) || maxRecords < 1) throw new RangeError(`maxRecords must be a positive integer, got ${maxRecords}`);
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= BATCH_HEADER_BYTES) throw new RangeError(`maxBytes must be an integer above ${BATCH_HEADER_BYTES}, got ${maxBytes}`);
  }

  /** True when `record` does not fit the open batch, which must then be closed first. */
  full(record: ProducerRecord): boolean {
    return this.records > 0 && (this.records >= this.maxRecords || this.bytes + recordBytesInBatch(record, this.records) > this.maxBytes);
  }

  /** Counts `record` into the open batch; true when the batch is now full whatever comes next. */
  add(record: ProducerRecord): boolean {
    this.bytes += recordBytesInBatch(record, this.records);
    this.records++;
    return this.records >= this.maxRecords || this.bytes >= this.maxBytes;
  }

  /** Starts the next batch. */
  reset(): void {
    this.records = 0;
    this.bytes = BATCH_HEADER_BYTES;
  }
}

/** `bodies` as record batches closed by `sizer`'s rule, in order. */
export function splitIntoBatches(bodies: readonly Buffer[], sizer: BatchSizer): ProducerRecord[][] {
  const out: ProducerRecord[][] = [];
  let open: ProducerRecord[] = [];
  sizer.reset();
  for (const value of bodies) {
    const r: ProducerRecord = { key: null, value };
    if (sizer.full(r)) {
      out.push(open);
      open = [];
      sizer.reset();
    }
    open.push(r);
    if (sizer.add(r)) {
      out.push(open);
      open = [];
      sizer.reset();
    }
  }
  if (open.length > 0) out.push(open);
  sizer.reset();
  return out;
}

export function logTarget(o: LogTargetOptions): Target {
  return {
    system: o.system,
    durability: o.durability,
    method: o.method,
    ...(o.warmupMessages === undefined ? {} : { warmupMessages: o.warmupMessages }),
    ...(o.preEncoded ? { prepared: true, latency: false } : {}),
    async open(topic: string, mode: RunMode): Promise<Session> {
      const { producer, consumer } = await o.clients();
      await producer.createTopic(topic, { partitions: 1 });
      const driverProducer = o.producer?.(mode);
      // A latency run sends what each tick made (the runner flushes), however few.
      const sizer = new BatchSizer(mode === 'latency' ? Number.MAX_SAFE_INTEGER : o.batchRecords, o.batchBytes);
      let records: ProducerRecord[] = [];
      // One promise per batch, shared by its messages (no promise or callback pair per message).
      let settled: Promise<void> | undefined;
      let settle: { resolve: () => void; reject: (err: unknown) => void } | undefined;
      const sendBatch = (): void => {
        if (records.length === 0) return;
        const batch = encodeRecordBatch(records, { now: Date.now() });
        const waiting = settle!;
        records = [];
        settled = undefined;
        settle = undefined;
        sizer.reset();
        producer.appendRaw(topic, 0, batch, o.acks).then(() => waiting.resolve(), waiting.reject);
      };
      const own = {
        send(body: Buffer): Promise<void> {
          const r: ProducerRecord = { key: null, value: body };
          if (sizer.full(r)) sendBatch();
          settled ??= new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
          const mine = settled;
          records.push(r);
          if (sizer.add(r)) sendBatch();
          return mine;
        },
        flush: sendBatch,
      };
      const viaDriver = driverProducer && {
        async send(body: Buffer): Promise<void> {
          await driverProducer.send(topic, { key: null, value: body });
        },
        flush(): void {
          // The runner only asks for the lingering batch to go now; send()'s promises report the outcome.
          driverProducer.flush().catch(() => undefined);
        },
      };
      return {
        ...(viaDriver ?? own),
        prepare: (bodies: Buffer[]): PreparedBatch[] =>
          splitIntoBatches(bodies, new BatchSizer(o.batchRecords, o.batchBytes)).map((records) => ({ messages: records.length, data: encodeRecordBatch(records, { now: Date.now() }) })),
        async sendPrepared(prepared: unknown): Promise<void> {
          await producer.appendRaw(topic, 0, prepared as Buffer, o.acks);
        },
        async highWatermark(): Promise<number> {
          const info = await producer.describeTopic(topic);
          return info.partitions[0]?.highWatermark ?? 0;
        },
        async readAt(offset: number): Promise<Buffer | undefined> {
          // A fetch returns whole batches; the first may start before `offset`.
          const r = await consumer.fetch({ topic, partition: 0, offset, maxBytes: 1, maxWaitMs: 0 });
          return r.records.find((rec) => rec.offset === offset)?.value ?? undefined;
        },
        async consume(onMessage) {
          const group = `${topic}-g`;
          const joined = await consumer.joinGroup({ group, topics: [topic], sessionTimeoutMs: 30_000 });
          let stopped = false;
          let failure: unknown;
          let offset = 0;
          let committed = 0;
          let lastCommitAt = performance.now();
          const commit = (): Promise<void> => {
            committed = offset;
            lastCommitAt = performance.now();
            return consumer.commitOffsets(group, joined.memberId, joined.generation, [{ topic, partition: 0, offset }]);
          };
          const loop = (async () => {
            while (!stopped) {
              const r = await consumer.fetch({ topic, partition: 0, offset, maxBytes: o.fetchMaxBytes, maxWaitMs: o.fetchMaxWaitMs });
              for (const rec of r.records) if (rec.value) onMessage(rec.value);
              offset = r.nextOffset;
              // Pipelined with the next fetch; a failed commit fails the run at stop().
              if (offset !== committed && performance.now() - lastCommitAt >= o.commitIntervalMs) {
                commit().catch((err: unknown) => {
                  failure ??= err;
                });
              }
            }
          })();
          loop.catch((err: unknown) => {
            failure ??= err;
          });
          return {
            async stop() {
              stopped = true;
              await loop.catch(() => undefined);
              if (!failure && offset !== committed) await commit().catch((err: unknown) => (failure ??= err));
              await consumer.leaveGroup(group, joined.memberId).catch(() => undefined);
              if (failure) throw failure;
            },
          };
        },
        async drop() {
          sendBatch();
          await driverProducer?.close().catch(() => undefined);
          await producer.deleteTopic(topic);
        },
      };
    },
    close: o.close,
  };
}

export interface QueueTargetOptions {
  system: string;
  durability: string;
  method: string;
  prefetch: number;
  /** maxLength of the run's queue: more than any run puts in it. */
  maxLength: number;
  maxLengthBytes: number;
  clients: () => Promise<Pair<BrokerApi>>;
  close: () => Promise<void>;
  /** Untimed messages before the first timed run (V8's JIT). */
  warmupMessages?: number;
}

export function queueTarget(o: QueueTargetOptions): Target {
  return {
    system: o.system,
    durability: o.durability,
    method: o.method,
    ...(o.warmupMessages === undefined ? {} : { warmupMessages: o.warmupMessages }),
    async open(queue: string, _mode: RunMode): Promise<Session> {
      const { producer, consumer } = await o.clients();
      await producer.declareQueue(queue, { durable: true, maxLength: o.maxLength, maxLengthBytes: o.maxLengthBytes, overflow: 'reject-publish' });
      return {
        async send(body: Buffer): Promise<void> {
          const r = await producer.publish('', queue, { body });
          if (r.routed !== 1) throw new BenchCheckError(`a publish to queue ${queue} was routed to ${r.routed} queues`);
        },
        async consume(onMessage) {
          const sub = await consumer.consume(queue, {
            prefetch: o.prefetch,
            onDelivery: (d) => {
              onMessage(d.body);
              consumer.ack(d.deliveryTag).catch(() => undefined);
            },
          });
          return { stop: () => sub.cancel() };
        },
        async drop() {
          await producer.deleteQueue(queue);
        },
      };
    },
    close: o.close,
  };
}

/** archlab's queue for load levelling: maxLength `bound`, reject-publish (ARCHLAB_QUEUE_FULL is the backpressure). */
export function queueLevelTarget(system: string, clients: () => Promise<Pair<BrokerApi>>, rssBytes: () => number | undefined): LevelTarget {
  return {
    system,
    boundCountsUnacked: true,
    rssBytes,
    async open(queue, bound) {
      const { producer, consumer } = await clients();
      await producer.declareQueue(queue, { durable: true, maxLength: bound, overflow: 'reject-publish' });
      return {
        async publish(body) {
          try {
            await producer.publish('', queue, { body });
            return 'ok';
          } catch (err) {
            if (isQueueError(err, 'ARCHLAB_QUEUE_FULL')) return 'full';
            throw err;
          }
        },
        async consume(prefetch, onMessage) {
          const sub = await consumer.consume(queue, {
            prefetch,
            onDelivery: (d) => onMessage(d.body, () => void consumer.ack(d.deliveryTag).catch(() => undefined)),
          });
          return { stop: () => sub.cancel() };
        },
        async depth() {
          const st = await producer.queueStats(queue);
          return st.ready + st.unacked;
        },
        async drop() {
          await producer.deleteQueue(queue);
        },
      };
    },
  };
}
