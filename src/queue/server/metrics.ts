/**
 * Prometheus series of the queue server. The request path only bumps plain numbers in
 * `ServerCounters`; the series read them at scrape time. Per-queue, per-partition and per-group
 * series are read from the engines at scrape time too, and capped (`MAX_SERIES_PER_METRIC`) so a
 * server with very many queues cannot make a scrape unbounded.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { METRIC_PREFIX } from '../../core/metrics.js';
import { frameTypeName } from '../protocol/frame.js';
import type { BrokerApi, LogApi, QueueStats, TopicInfo } from '../types.js';

/** Most label sets one engine-backed metric exports per scrape. */
export const MAX_SERIES_PER_METRIC = 1000;
/** Consumer groups whose lag is exported (the first ones seen joining through this server). */
export const MAX_TRACKED_GROUPS = 100;

/** Plain counters bumped by connections and the gateway. */
export class ServerCounters {
  connectionsOpen = 0;
  connectionsAccepted = 0;
  connectionsRefused = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Requests by frame type. */
  readonly requests = new Float64Array(256);
  readonly errors = new Map<string, number>();
  appendedBatches = 0;
  appendedRecords = 0;
  appendedBytes = 0;
  fetches = 0;
  fetchedBytes = 0;
  published = 0;
  deliveries = 0;
  acks = 0;
  nacks = 0;
  readonly httpRequests = new Map<string, number>();
  sseClients = 0;
  readonly groups = new Set<string>();

  error(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  http(route: string): void {
    this.httpRequests.set(route, (this.httpRequests.get(route) ?? 0) + 1);
  }

  groupSeen(group: string): void {
    if (this.groups.size < MAX_TRACKED_GROUPS) this.groups.add(group);
  }
}

/** Memoises one engine call per scrape: several series read the same snapshot. */
function perScrape<T>(load: () => Promise<T>, ttlMs = 250): () => Promise<T> {
  let at = -Infinity;
  let p: Promise<T> | undefined;
  return () => {
    const now = performance.now();
    if (p === undefined || now - at > ttlMs) {
      at = now;
      p = load();
    }
    return p;
  };
}

export function registerQueueMetrics(
  registry: Registry,
  c: ServerCounters,
  engines: { log: LogApi; broker: BrokerApi },
  logger?: Logger,
): void {
  const p = METRIC_PREFIX + 'queue_';
  const reg = [registry];
  const queues = perScrape(async (): Promise<QueueStats[]> => {
    try {
      return (await engines.broker.listQueues()).slice(0, MAX_SERIES_PER_METRIC);
    } catch (err) {
      logger?.warn({ err }, 'metrics: listQueues failed');
      return [];
    }
  });
  const topics = perScrape(async (): Promise<TopicInfo[]> => {
    try {
      return await engines.log.listTopics();
    } catch (err) {
      logger?.warn({ err }, 'metrics: listTopics failed');
      return [];
    }
  });

  const plain = (name: string, help: string, read: () => number, kind: 'counter' | 'gauge' = 'counter'): void => {
    const M = kind === 'counter' ? Counter : Gauge;
    new M({
      name: p + name,
      help,
      registers: reg,
      collect(this: Counter | Gauge) {
        this.reset();
        (this as Gauge).inc(read());
      },
    });
  };
  plain('connections', 'Open protocol connections.', () => c.connectionsOpen, 'gauge');
  plain('connections_accepted_total', 'Protocol connections accepted.', () => c.connectionsAccepted);
  plain('connections_refused_total', 'Protocol connections refused at the connection limit.', () => c.connectionsRefused);
  plain('received_bytes_total', 'Bytes received on protocol connections.', () => c.bytesIn);
  plain('sent_bytes_total', 'Bytes sent on protocol connections.', () => c.bytesOut);
  plain('log_appended_batches_total', 'Record batches appended (TCP and HTTP).', () => c.appendedBatches);
  plain('log_appended_records_total', 'Records appended (TCP and HTTP).', () => c.appendedRecords);
  plain('log_appended_bytes_total', 'Bytes of record batches appended.', () => c.appendedBytes);
  plain('log_fetches_total', 'Fetches served (TCP and HTTP).', () => c.fetches);
  plain('log_fetched_bytes_total', 'Bytes of record batches fetched.', () => c.fetchedBytes);
  plain('published_total', 'Messages published through this server.', () => c.published);
  plain('deliveries_pushed_total', 'Deliveries pushed to protocol consumers and SSE streams.', () => c.deliveries);
  plain('acks_total', 'Acks received.', () => c.acks);
  plain('nacks_total', 'Nacks received.', () => c.nacks);
  plain('sse_clients', 'Open SSE streams on the gateway.', () => c.sseClients, 'gauge');

  new Counter({
    name: p + 'requests_total',
    help: 'Protocol requests by frame type.',
    labelNames: ['type'] as const,
    registers: reg,
    collect() {
      this.reset();
      for (let t = 0; t < 256; t++) {
        const n = c.requests[t]!;
        if (n > 0) this.inc({ type: frameTypeName(t) ?? `0x${t.toString(16)}` }, n);
      }
    },
  });
  new Counter({
    name: p + 'errors_total',
    help: 'Errors answered, by code.',
    labelNames: ['code'] as const,
    registers: reg,
    collect() {
      this.reset();
      for (const [code, n] of c.errors) this.inc({ code }, n);
    },
  });
  new Counter({
    name: p + 'http_requests_total',
    help: 'Gateway requests by route.',
    labelNames: ['route'] as const,
    registers: reg,
    collect() {
      this.reset();
      for (const [route, n] of c.httpRequests) this.inc({ route }, n);
    },
  });

  // Broker, per queue, read from the engine at scrape time.
  const perQueue = (name: string, help: string, field: keyof QueueStats, kind: 'counter' | 'gauge'): void => {
    const M = kind === 'counter' ? Counter : Gauge;
    new M({
      name: p + name,
      help,
      labelNames: ['queue'] as const,
      registers: reg,
      async collect(this: Counter<'queue'> | Gauge<'queue'>) {
        const list = await queues();
        this.reset();
        for (const q of list) (this as Gauge<'queue'>).inc({ queue: q.name }, q[field] as number);
      },
    });
  };
  perQueue('broker_ready', 'Messages ready in a queue.', 'ready', 'gauge');
  perQueue('broker_unacked', 'Messages delivered and not yet settled.', 'unacked', 'gauge');
  perQueue('broker_delayed', 'Messages waiting for their delivery time.', 'delayed', 'gauge');
  perQueue('broker_consumers', 'Consumers of a queue.', 'consumers', 'gauge');
  perQueue('broker_bytes', 'Bytes of message bodies held by a queue.', 'bytes', 'gauge');
  perQueue('broker_published_total', 'Messages routed into a queue.', 'published', 'counter');
  perQueue('broker_delivered_total', 'Deliveries from a queue.', 'delivered', 'counter');
  perQueue('broker_acked_total', 'Deliveries acked.', 'acked', 'counter');
  perQueue('broker_redelivered_total', 'Redeliveries (nack requeue, visibility timeout, consumer gone).', 'redelivered', 'counter');
  perQueue('broker_dead_lettered_total', 'Messages dead-lettered.', 'deadLettered', 'counter');
  perQueue('broker_dropped_total', 'Messages dropped (overflow or TTL without a dead-letter queue).', 'dropped', 'counter');

  // Log, per partition.
  const perPartition = (name: string, help: string, read: (pi: TopicInfo['partitions'][number]) => number): void => {
    new Gauge({
      name: p + name,
      help,
      labelNames: ['topic', 'partition'] as const,
      registers: reg,
      async collect() {
        const list = await topics();
        this.reset();
        let n = 0;
        for (const t of list) {
          for (const pi of t.partitions) {
            if (n++ >= MAX_SERIES_PER_METRIC) return;
            this.set({ topic: t.name, partition: String(pi.partition) }, read(pi));
          }
        }
      },
    });
  };
  perPartition('log_high_watermark', 'One past the last offset written.', (pi) => pi.highWatermark);
  perPartition('log_start_offset', 'First offset still held.', (pi) => pi.logStartOffset);
  perPartition('log_size_bytes', 'Bytes of segment files.', (pi) => pi.sizeBytes);

  new Gauge({
    name: p + 'group_lag',
    help: 'Records between a group\'s committed offset and the high watermark, per partition (groups that joined through this server).',
    labelNames: ['group', 'topic', 'partition'] as const,
    registers: reg,
    async collect() {
      this.reset();
      let n = 0;
      for (const group of c.groups) {
        try {
          const d = await engines.log.describeGroup(group);
          for (const o of d.offsets) {
            if (n++ >= MAX_SERIES_PER_METRIC) return;
            this.set({ group, topic: o.topic, partition: String(o.partition) }, o.lag);
          }
        } catch (err) {
          logger?.debug({ err, group }, 'metrics: describeGroup failed');
        }
      }
    },
  });
}
