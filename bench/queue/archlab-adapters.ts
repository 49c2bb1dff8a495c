/**
 * archlab's log and queue as bench targets, written against the contracts (LogApi & RawLogApi,
 * BrokerApi in src/queue/types.ts) so one adapter drives the embedded engines and the TCP client.
 *
 * - log: one topic of one partition per run. The producer batches: `send()` adds the record to the
 *   open batch, which goes out as one `appendRaw` (an encoded record batch, the log's own format)
 *   when it holds `batchRecords` records, or when the runner flushes (the end of a window, every
 *   latency tick), or through the driver API's Producer when a target asks for it. The consumer
 *   joins a group, long-polls `fetch` from offset 0 on its own connection and commits its offset
 *   every `commitIntervalMs` and at the end — the log's ack.
 * - queue: one durable queue per run, published through the default exchange; a consumer with
 *   prefetch on its own connection acks every delivery.
 */
import { encodeRecordBatch } from '../../src/queue/log/record-batch.js';
import { isQueueError } from '../../src/queue/errors.js';
import type { Acks, BrokerApi, LogApi, Producer, ProducerRecord, RawLogApi } from '../../src/queue/types.js';
import type { LevelTarget } from './levelling.js';
import { BenchCheckError } from './payload.js';
import type { RunMode, Session, Target } from './runner.js';

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
  /** Records per batch in throughput runs. */
  batchRecords: number;
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

export function logTarget(o: LogTargetOptions): Target {
  return {
    system: o.system,
    durability: o.durability,
    method: o.method,
    ...(o.warmupMessages === undefined ? {} : { warmupMessages: o.warmupMessages }),
    ...(o.preEncoded ? { prepared: { batchMessages: o.batchRecords }, latency: false } : {}),
    async open(topic: string, mode: RunMode): Promise<Session> {
      const { producer, consumer } = await o.clients();
      await producer.createTopic(topic, { partitions: 1 });
      const driverProducer = o.producer?.(mode);
      const batchMax = mode === 'latency' ? Number.MAX_SAFE_INTEGER : o.batchRecords;
      let records: ProducerRecord[] = [];
      let settle: { resolve: () => void; reject: (err: unknown) => void }[] = [];
      const sendBatch = (): void => {
        if (records.length === 0) return;
        const batch = encodeRecordBatch(records, { now: Date.now() });
        const waiting = settle;
        records = [];
        settle = [];
        producer.appendRaw(topic, 0, batch, o.acks).then(
          () => {
            for (const w of waiting) w.resolve();
          },
          (err: unknown) => {
            for (const w of waiting) w.reject(err);
          },
        );
      };
      const own = {
        send(body: Buffer): Promise<void> {
          return new Promise<void>((resolve, reject) => {
            records.push({ key: null, value: body });
            settle.push({ resolve, reject });
            if (records.length >= batchMax) sendBatch();
          });
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
        prepare: (bodies: Buffer[]): Buffer => encodeRecordBatch(bodies.map((value) => ({ key: null, value })), { now: Date.now() }),
        async sendPrepared(prepared: unknown): Promise<void> {
          await producer.appendRaw(topic, 0, prepared as Buffer, o.acks);
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
