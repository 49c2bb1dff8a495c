/**
 * The driver API on NATS JetStream (the `nats` v2 client).
 *
 * Log model: a stream per topic, `ARCHLAB_LOG_<topic>`, file storage, with one subject per partition,
 * `archlab.log.<topic>.<partition>` (the subject list is the partition count). Names are made
 * subject-safe by natsToken(): '.' and '_' are escaped, long names hashed.
 * - Offsets are stream sequences. A topic's partitions share one stream, so a partition's offsets
 *   increase but have gaps (the other partitions' records), unlike Kafka's dense per-partition
 *   offsets. SendResult.offset is the PubAck's sequence; seek to an offset is opt_start_seq.
 * - Consumer groups: a durable pull consumer per group and partition (filter subject = the
 *   partition), explicit acks: "committed" means acked. JetStream assigns no partitions, so
 *   capabilities.consumerGroups is false: every member reads every partition, and members of one
 *   group compete for a partition's records (per-partition order holds for one member). A record not
 *   acked within `consumerAckWaitMs` is delivered again. Group durables unused for
 *   `groupRetentionMs` are removed by the server (like Kafka's offsets.retention).
 * - Seek to a timestamp: opt_start_time (the stream's receive time), then records whose create time
 *   is older than the target are skipped in the client.
 * - Idempotent producer: each record carries Nats-Msg-Id `<producer>:<partition>:<sequence>`, and a
 *   retried publish keeps its id, so the stream drops the copy within its duplicate window
 *   (`duplicateWindowMs`). An idempotent producer keeps one publish in flight per partition, so a
 *   retry cannot reorder a partition. acks 'none' is a core NATS publish (no PubAck, nothing
 *   retried); 'leader' and 'fsync' wait for the PubAck, which JetStream sends after the write, not
 *   after an fsync (the server syncs every sync_interval). No compaction (refused).
 *
 * Queue model: a work-queue stream per queue, `ARCHLAB_Q_<queue>` on subject `archlab.q.<queue>`,
 * with one durable pull consumer shared by every subscriber (competing consumers): ack_wait is the
 * visibility timeout, max_deliver is maxDeliveries. Dead letters: when a message reaches
 * max_deliver, JetStream emits an advisory; the driver (each subscriber listens, one of them acts
 * through a queue group) copies the message to the dead-letter queue (header x-death-reason:
 * max-deliveries, or rejected for a nack without requeue) and deletes it from the stream.
 * maxLength / maxLengthBytes are max_msgs / max_bytes, overflow 'reject-publish' is discard new
 * (ARCHLAB_QUEUE_FULL), 'drop-head' is discard old.
 *
 * Exchanges: JetStream refuses two streams with overlapping subjects, so bindings cannot be stream
 * subjects (two queues bound to one key, or `a.*` and `a.#`, would overlap). The driver therefore
 * routes in the client with AMQP semantics (`*` one word, `#` zero or more words anywhere, headers
 * all/any): exchanges and bindings live in a KV bucket every driver instance watches, and publish()
 * writes the message to each matching queue's stream and resolves when every one acked it.
 * A binding made by another process takes effect here when its KV update arrives (milliseconds).
 *
 * Refused with ARCHLAB_QUEUE_UNSUPPORTED: priorities, delayed delivery, per-message TTL (JetStream
 * 2.9 has none of them), and dead-lettering of messages that expire (messageTtlMs) or are dropped by
 * 'drop-head' (JetStream deletes them silently), so those do not combine with deadLetterQueue.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  connect,
  headers as natsHeaders,
  nanos,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type KV,
  type KvEntry,
  type MsgHdrs,
  type NatsConnection,
  type QueuedIterator,
  type StreamConfig,
  type Subscription as NatsCoreSubscription,
} from 'nats';
import { SystemClock, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import { QueueError, checkName } from '../errors.js';
import type {
  BindingArgs,
  Consumer,
  ConsumerOptions,
  DriverCapabilities,
  ExchangeConfig,
  ExchangeType,
  Producer,
  ProducerOptions,
  ProducerRecord,
  PublishMessage,
  QueueConfig,
  QueueDriver,
  ReceivedMessage,
  SeekTarget,
  SendResult,
  Subscription,
  TopicConfig,
} from '../types.js';
import { PartitionedConsumer, type OpenedSource, type PartitionState, type SourceItem } from './partitioned-consumer.js';
import {
  PushQueue,
  Semaphore,
  badArgument,
  closedError,
  decodeRecord,
  encodeRecord,
  headersMatch,
  intOption,
  resolveQueueConfig,
  resolveTopicConfig,
  sleep,
  topicMatches,
  unsupported,
} from './common.js';
import { checkExchangeConfig, checkPublishMessage } from './validate.js';
import { RecordProducer } from './record-producer.js';

export const NATS_CAPABILITIES: DriverCapabilities = Object.freeze({
  partitionedLog: true,
  consumerGroups: false,
  seekByTimestamp: true,
  idempotentProducer: true,
  exchangeTypes: ['direct', 'topic', 'fanout', 'headers'],
  visibilityTimeout: true,
  maxDeliveries: true,
  priorities: false,
  delayedDelivery: false,
  perMessageTtl: false,
}) as DriverCapabilities;

export interface NatsDriverOptions {
  /** NATS server(s), "host:port" or a list of them. Required. */
  servers: string | string[];
  /** Connect timeout, ms. Default 5000. */
  connectTimeoutMs?: number;
  /** Timeout of JetStream API requests and publishes, ms. Default 5000. */
  requestTimeoutMs?: number;
  /** KV bucket holding exchanges and bindings. Default 'archlab_routes'. */
  routesBucket?: string;
  /** Largest routes bucket, bytes (puts fail with ARCHLAB_QUEUE_LIMIT beyond). Default 64 MiB. */
  routesMaxBytes?: number;
  /** Exchanges whose bindings this driver watches at once; the least recently used stops first. Default 1000. */
  maxWatchedExchanges?: number;
  /** Publishes awaiting their PubAck at once, per driver. Default 1024. */
  maxInFlightPublishes?: number;
  /** Publishes waiting for an in-flight slot before further ones fail with ARCHLAB_QUEUE_LIMIT. Default 100,000. */
  maxWaitingPublishes?: number;
  /** Log consumers: records of one group and partition delivered and not yet acked (max_ack_pending). Default 256. */
  consumerMaxAckPending?: number;
  /** Log consumers: a record not acked (committed) within this is delivered again, ms. Default 30,000. */
  consumerAckWaitMs?: number;
  /** A group's durable consumers unused this long are removed by the server, ms. Default 7 days. */
  groupRetentionMs?: number;
  /** Topics: the window in which a retried idempotent publish is deduplicated, ms. Default 120,000. */
  duplicateWindowMs?: number;
  /** Idempotent producers: retries of a publish that failed retryably. Default 5. */
  maxRetries?: number;
  /** Idempotent producers: first retry backoff, doubled per retry up to 1 s, ms. Default 100. */
  retryBackoffMs?: number;
  /** Subscriptions: how long one pull waits for messages, ms (JetStream's minimum is 1000). Default 1000. */
  pullExpiresMs?: number;
  /** Work-queue consumers: unacked messages across all subscribers of a queue (max_ack_pending). Default 10,000. */
  queueMaxAckPending?: number;
  /** Timestamps of records sent without one. Default SystemClock. */
  clock?: Clock;
  /** Handler failures and dead-lettering problems are logged here. */
  logger?: Logger;
}

/** A name as one subject token and a stream/consumer name part: '_' -> '_u', '.' -> '_d'; over 64 chars, a prefix and a hash. */
export function natsToken(name: string): string {
  const esc = name.replace(/_/g, '_u').replace(/\./g, '_d');
  if (esc.length <= 64) return esc;
  return `${esc.slice(0, 40)}_h${createHash('sha256').update(name).digest('hex').slice(0, 20)}`;
}

const QUEUE_CONSUMER = 'archlab';
const QUEUE_META_VERSION = 1;
const HDR_MESSAGE_ID = 'archlab-msg-id';
const HDR_DEATH = 'x-death-reason';

export async function natsDriver(options: NatsDriverOptions): Promise<QueueDriver> {
  if (options === undefined || (typeof options.servers !== 'string' && !Array.isArray(options.servers))) {
    throw badArgument('nats driver: servers must be "host:port" or a list of them');
  }
  const timeout = intOption('connectTimeoutMs', options.connectTimeoutMs, 5000, 1, 600_000);
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: options.servers, timeout, name: 'archlab-queue-driver' });
  } catch (err) {
    throw new QueueError('ARCHLAB_QUEUE_DISCONNECTED', `nats driver: cannot connect: ${(err as Error).message}`, { cause: err });
  }
  try {
    const requestTimeoutMs = intOption('requestTimeoutMs', options.requestTimeoutMs, 5000, 1, 600_000);
    const jsm = await nc.jetstreamManager({ timeout: requestTimeoutMs });
    const js = nc.jetstream({ timeout: requestTimeoutMs });
    return new NatsDriver(nc, jsm, js, options);
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw mapNatsError(err, { op: 'connect' });
  }
}

interface NatsContext {
  op: string;
  queue?: string;
  topic?: string;
  exchange?: string;
}

/** NatsErrors (a code, and for JetStream API errors an api_error) as QueueErrors. */
export function mapNatsError(err: unknown, ctx: NatsContext): QueueError {
  if (err instanceof QueueError) return err;
  const e = err as { code?: string; message?: string; api_error?: { code: number; err_code?: number; description: string } };
  const message = e.api_error?.description ?? e.message ?? String(err);
  const details: Record<string, unknown> = { op: ctx.op };
  for (const k of ['queue', 'topic', 'exchange'] as const) if (ctx[k] !== undefined) details[k] = ctx[k];
  const errCode = e.api_error?.err_code;
  const opts = { cause: err, details };
  if (errCode === 10059) {
    if (ctx.topic !== undefined) return new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `${ctx.op}: topic ${JSON.stringify(ctx.topic)} does not exist`, opts);
    return new QueueError('ARCHLAB_QUEUE_UNKNOWN_QUEUE', `${ctx.op}: queue ${JSON.stringify(ctx.queue)} does not exist`, opts);
  }
  if (errCode === 10058) return new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `${ctx.op}: declared before with other settings`, opts);
  if (errCode === 10077 || errCode === 10078) return new QueueError('ARCHLAB_QUEUE_FULL', `${ctx.op}: ${message}`, opts);
  if (errCode === 10047 || errCode === 10028) return new QueueError('ARCHLAB_QUEUE_DISK_FULL', `${ctx.op}: ${message}`, opts);
  if (e.code === 'MAX_PAYLOAD_EXCEEDED' || errCode === 10054) return new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `${ctx.op}: ${message}`, opts);
  if (e.code === 'TIMEOUT' || e.code === '408') return new QueueError('ARCHLAB_QUEUE_TIMEOUT', `${ctx.op}: ${message}`, opts);
  if (e.code === 'AUTHORIZATION_VIOLATION' || e.code === 'PERMISSIONS_VIOLATION' || e.code === 'BAD_AUTHENTICATION') {
    return new QueueError('ARCHLAB_QUEUE_UNAUTHORIZED', `${ctx.op}: ${message}`, opts);
  }
  if (e.api_error !== undefined && e.api_error.code >= 400 && e.api_error.code < 500) {
    return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `${ctx.op}: refused by JetStream (${message})`, opts);
  }
  return new QueueError('ARCHLAB_QUEUE_DISCONNECTED', `${ctx.op}: ${message}`, opts);
}

function apiErrCode(err: unknown): number | undefined {
  return (err as { api_error?: { err_code?: number } }).api_error?.err_code;
}

function isNoResponders(err: unknown): boolean {
  return (err as { code?: string }).code === '503' && apiErrCode(err) === undefined;
}

/** The header names our encodings use, plus NATS's own, are not passed to message handlers. */
function userHeaders(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (h === undefined) return out;
  for (const key of h.keys()) {
    if (key.startsWith('archlab-') || key.startsWith('Nats-')) continue;
    out[key] = h.get(key);
  }
  return out;
}

const HEADER_KEY_RE = /^[!-9;-~]+$/;

function checkNatsHeader(key: string, value: string): void {
  if (!HEADER_KEY_RE.test(key)) throw badArgument(`nats driver: header name ${JSON.stringify(key)} must be printable ASCII without ':' or spaces`);
  if (/[\r\n]/.test(value)) throw badArgument(`nats driver: header ${JSON.stringify(key)} must not contain CR or LF`);
}

interface QueueMeta {
  archlab: number;
  queue: string;
  config: QueueConfig;
}

interface Binding {
  queue: string;
  routingKey: string;
  args?: BindingArgs;
}

/** An exchange's type and bindings, kept current by a KV watch. */
interface RouteTable {
  type: ExchangeType | null;
  bindings: Map<string, Binding>;
  ready: Promise<void>;
  watcher: QueuedIterator<KvEntry> | null;
}

class NatsDriver implements QueueDriver {
  readonly name = 'nats' as const;
  readonly capabilities = NATS_CAPABILITIES;
  readonly clock: Clock;
  readonly logger: Logger | undefined;
  readonly consumerMaxAckPending: number;
  readonly consumerAckWaitMs: number;
  readonly groupRetentionMs: number;
  readonly maxRetries: number;
  readonly retryBackoffMs: number;
  readonly pullExpiresMs: number;
  private readonly duplicateWindowMs: number;
  private readonly queueMaxAckPending: number;
  private readonly routesBucket: string;
  private readonly routesMaxBytes: number;
  private readonly maxWatchedExchanges: number;
  private readonly inflight: Semaphore;
  private kvPromise: Promise<KV> | null = null;
  private readonly routes = new Map<string, RouteTable>();
  private readonly partitionCounts = new Map<string, Promise<number>>();
  private readonly subscriptions = new Set<NatsSubscription>();
  private readonly consumers = new Set<NatsLogConsumer>();
  private readonly producers = new Set<NatsProducer>();
  /** Dead-letter advisory listeners per queue stream, with the number of subscriptions using each. */
  private readonly deadLetterListeners = new Map<string, { sub: NatsCoreSubscription; users: number }>();
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    readonly js: JetStreamClient,
    options: NatsDriverOptions,
  ) {
    this.clock = options.clock ?? new SystemClock();
    this.logger = options.logger;
    this.routesBucket = options.routesBucket ?? 'archlab_routes';
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(this.routesBucket)) throw badArgument('routesBucket must be 1-64 characters of A-Z a-z 0-9 _ -');
    this.routesMaxBytes = intOption('routesMaxBytes', options.routesMaxBytes, 64 * 1024 * 1024, 4096, Number.MAX_SAFE_INTEGER);
    this.maxWatchedExchanges = intOption('maxWatchedExchanges', options.maxWatchedExchanges, 1000, 1, 1_000_000);
    this.inflight = new Semaphore(
      intOption('maxInFlightPublishes', options.maxInFlightPublishes, 1024, 1, 1_000_000),
      intOption('maxWaitingPublishes', options.maxWaitingPublishes, 100_000, 0, 100_000_000),
      'nats in-flight publishes',
    );
    this.consumerMaxAckPending = intOption('consumerMaxAckPending', options.consumerMaxAckPending, 256, 1, 1_000_000);
    this.consumerAckWaitMs = intOption('consumerAckWaitMs', options.consumerAckWaitMs, 30_000, 100, 86_400_000);
    this.groupRetentionMs = intOption('groupRetentionMs', options.groupRetentionMs, 7 * 86_400_000, 1000, Number.MAX_SAFE_INTEGER);
    this.duplicateWindowMs = intOption('duplicateWindowMs', options.duplicateWindowMs, 120_000, 100, 86_400_000);
    this.maxRetries = intOption('maxRetries', options.maxRetries, 5, 0, 100);
    this.retryBackoffMs = intOption('retryBackoffMs', options.retryBackoffMs, 100, 1, 60_000);
    this.pullExpiresMs = intOption('pullExpiresMs', options.pullExpiresMs, 1000, 1000, 60_000);
    this.queueMaxAckPending = intOption('queueMaxAckPending', options.queueMaxAckPending, 10_000, 1, 1_000_000);
  }

  checkOpen(): void {
    if (this.closed) throw closedError('nats driver');
    if (this.nc.isClosed()) throw new QueueError('ARCHLAB_QUEUE_DISCONNECTED', 'nats connection closed');
  }

  /** Publishes to a JetStream subject, bounded by the in-flight semaphore. */
  async jsPublish(subject: string, body: Uint8Array, hdrs: MsgHdrs, msgID: string | undefined, ctx: NatsContext): Promise<{ seq: number; duplicate: boolean }> {
    this.checkOpen();
    const max = this.nc.info?.max_payload;
    if (max !== undefined && body.length > max) {
      throw new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `${ctx.op}: message of ${body.length} bytes is over the server's max_payload ${max}`, {
        details: { bytes: body.length, maxBytes: max },
      });
    }
    await this.inflight.acquire();
    try {
      const ack = await this.js.publish(subject, body, msgID === undefined ? { headers: hdrs } : { headers: hdrs, msgID });
      return { seq: ack.seq, duplicate: ack.duplicate };
    } finally {
      this.inflight.release();
    }
  }

  // -------------------------------------------------------------------------------------------
  // names
  // -------------------------------------------------------------------------------------------

  queueStream(queue: string): string {
    return `ARCHLAB_Q_${natsToken(queue)}`;
  }

  queueSubject(queue: string): string {
    return `archlab.q.${natsToken(queue)}`;
  }

  topicStream(topic: string): string {
    return `ARCHLAB_LOG_${natsToken(topic)}`;
  }

  partitionSubject(topic: string, partition: number): string {
    return `archlab.log.${natsToken(topic)}.${partition}`;
  }

  groupDurable(group: string, partition: number): string {
    return `g_${natsToken(group)}_p${partition}`;
  }

  // -------------------------------------------------------------------------------------------
  // routes (exchanges and bindings in KV)
  // -------------------------------------------------------------------------------------------

  private kv(): Promise<KV> {
    if (this.kvPromise === null) {
      this.kvPromise = this.js.views.kv(this.routesBucket, { history: 1, max_bytes: this.routesMaxBytes, storage: StorageType.File });
      this.kvPromise.catch(() => (this.kvPromise = null));
    }
    return this.kvPromise;
  }

  private exchangeKey(exchange: string): string {
    return `${natsToken(exchange)}.x`;
  }

  private bindingKey(exchange: string, queue: string, routingKey: string, args: BindingArgs | undefined): string {
    const h = createHash('sha256').update(routingKey).update('\u0000').update(JSON.stringify(args ?? {})).digest('hex').slice(0, 24);
    return `${natsToken(exchange)}.b.${natsToken(queue)}.${h}`;
  }

  /** The route table of `exchange`, watched from now on (the watch delivers the current keys first). */
  private table(exchange: string): Promise<RouteTable> {
    const t = this.routes.get(exchange);
    if (t !== undefined) {
      // Most recently used last, so the first entry is the one to stop watching.
      this.routes.delete(exchange);
      this.routes.set(exchange, t);
      return t.ready.then(() => t);
    }
    if (this.routes.size >= this.maxWatchedExchanges) {
      const [oldest, old] = this.routes.entries().next().value as [string, RouteTable];
      old.watcher?.stop();
      this.routes.delete(oldest);
    }
    const table: RouteTable = { type: null, bindings: new Map(), ready: Promise.resolve(), watcher: null };
    table.ready = (async () => {
      const kv = await this.kv();
      let initialized!: () => void;
      const init = new Promise<void>((resolve) => (initialized = resolve));
      const watcher = await kv.watch({ key: `${natsToken(exchange)}.>`, initializedFn: () => initialized() });
      table.watcher = watcher;
      void (async () => {
        for await (const e of watcher) this.applyRoute(table, e);
      })().catch((err: unknown) => this.logger?.warn({ err, exchange }, 'nats routes watch ended'));
      await init;
    })();
    this.routes.set(exchange, table);
    table.ready.catch(() => this.routes.delete(exchange));
    return table.ready.then(() => table);
  }

  private applyRoute(table: RouteTable, e: KvEntry): void {
    const isExchange = e.key.endsWith('.x');
    if (e.operation !== 'PUT') {
      if (isExchange) table.type = null;
      else table.bindings.delete(e.key);
      return;
    }
    try {
      if (isExchange) table.type = (e.json<ExchangeConfig>()).type;
      else table.bindings.set(e.key, e.json<Binding>());
    } catch (err) {
      this.logger?.warn({ err, key: e.key }, 'nats routes: unreadable entry ignored');
    }
  }

  private async kvCall<T>(ctx: NatsContext, fn: (kv: KV) => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      return await fn(await this.kv());
    } catch (err) {
      throw mapNatsError(err, ctx);
    }
  }

  async declareExchange(name: string, config?: Partial<ExchangeConfig>): Promise<void> {
    checkName('exchange', name);
    const c = checkExchangeConfig(config);
    const key = this.exchangeKey(name);
    await this.kvCall({ op: 'declareExchange', exchange: name }, async (kv) => {
      const existing = await kv.get(key);
      if (existing !== null && existing.operation === 'PUT') {
        const type = existing.json<ExchangeConfig>().type;
        if (type !== c.type) {
          throw new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `exchange ${name} exists as ${type}, not ${c.type}`, { details: { name, field: 'type' } });
        }
        return;
      }
      await kv.put(key, JSON.stringify(c));
    });
    const t = this.routes.get(name);
    if (t !== undefined) t.type = c.type;
  }

  /** Deletes an exchange and its bindings (not in the QueueDriver contract yet; the conformance suite cleans up with it). */
  async deleteExchange(name: string): Promise<void> {
    checkName('exchange', name);
    await this.kvCall({ op: 'deleteExchange', exchange: name }, async (kv) => {
      const keys: string[] = [];
      for await (const k of await kv.keys(`${natsToken(name)}.>`)) keys.push(k);
      for (const k of keys) await kv.delete(k);
    });
    const t = this.routes.get(name);
    if (t !== undefined) {
      t.type = null;
      t.bindings.clear();
    }
  }

  async bind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void> {
    checkName('queue', queue);
    checkName('exchange', exchange);
    if (typeof routingKey !== 'string' || Buffer.byteLength(routingKey) > 255) throw badArgument('routing key must be a string of at most 255 bytes');
    await this.streamInfo(this.queueStream(queue), { op: 'bind', queue });
    const binding: Binding = { queue, routingKey, ...(args === undefined ? {} : { args }) };
    const key = this.bindingKey(exchange, queue, routingKey, args);
    await this.kvCall({ op: 'bind', exchange, queue }, async (kv) => {
      const x = await kv.get(this.exchangeKey(exchange));
      if (x === null || x.operation !== 'PUT') {
        throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE', `bind: exchange ${JSON.stringify(exchange)} does not exist`, { details: { exchange } });
      }
      await kv.put(key, JSON.stringify(binding));
    });
    this.routes.get(exchange)?.bindings.set(key, binding);
  }

  private route(table: RouteTable, routingKey: string, headers: Record<string, string> | undefined): string[] {
    const out = new Set<string>();
    for (const b of table.bindings.values()) {
      let hit: boolean;
      switch (table.type) {
        case 'fanout':
          hit = true;
          break;
        case 'direct':
          hit = b.routingKey === routingKey;
          break;
        case 'topic':
          hit = topicMatches(b.routingKey, routingKey);
          break;
        case 'headers':
          hit = headersMatch(b.args, headers);
          break;
        default:
          hit = false;
      }
      if (hit) out.add(b.queue);
    }
    return [...out];
  }

  // -------------------------------------------------------------------------------------------
  // queues
  // -------------------------------------------------------------------------------------------

  async streamInfo(stream: string, ctx: NatsContext): Promise<StreamConfig> {
    this.checkOpen();
    try {
      return (await this.jsm.streams.info(stream)).config;
    } catch (err) {
      throw mapNatsError(err, ctx);
    }
  }

  async declareQueue(name: string, partial?: Partial<QueueConfig>): Promise<void> {
    checkName('queue', name);
    this.checkOpen();
    const config = resolveQueueConfig(partial);
    if (config.maxPriority > 0) throw unsupported('nats', 'maxPriority', 'JetStream streams deliver in sequence order only');
    if (config.deadLetterQueue !== null && config.messageTtlMs >= 0) {
      throw unsupported('nats', 'messageTtlMs with deadLetterQueue', 'JetStream deletes expired messages (max_age) without dead-lettering them');
    }
    if (config.deadLetterQueue !== null && config.overflow === 'drop-head') {
      throw unsupported('nats', "overflow 'drop-head' with deadLetterQueue", 'JetStream discards the oldest message (discard old) without dead-lettering it');
    }
    const stream = this.queueStream(name);
    const meta: QueueMeta = { archlab: QUEUE_META_VERSION, queue: name, config };
    const description = JSON.stringify(meta);
    const want: Partial<StreamConfig> = {
      name: stream,
      subjects: [this.queueSubject(name)],
      retention: RetentionPolicy.Workqueue,
      storage: config.durable ? StorageType.File : StorageType.Memory,
      max_msgs: config.maxLength,
      max_bytes: config.maxLengthBytes,
      discard: config.overflow === 'reject-publish' ? DiscardPolicy.New : DiscardPolicy.Old,
      max_age: config.messageTtlMs >= 0 ? nanos(Math.max(1, config.messageTtlMs)) : 0,
      num_replicas: 1,
      description,
    };
    const ctx = { op: 'declareQueue', queue: name };
    const existing = await this.queueMeta(name).catch((err: unknown) => {
      if (err instanceof QueueError && err.code === 'ARCHLAB_QUEUE_UNKNOWN_QUEUE') return null;
      throw err;
    });
    if (existing === null) {
      try {
        await this.jsm.streams.add(want);
      } catch (err) {
        const mapped = mapNatsError(err, ctx);
        if (mapped.code !== 'ARCHLAB_QUEUE_DECLARE_MISMATCH') throw mapped;
        // Another declare won the race; check below that it declared the same thing.
      }
    }
    const now = existing ?? (await this.queueMeta(name));
    if (JSON.stringify(now.config) !== JSON.stringify(config)) {
      const field = Object.keys(config).find((k) => JSON.stringify(now.config[k as keyof QueueConfig]) !== JSON.stringify(config[k as keyof QueueConfig]));
      throw new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `queue ${name} exists with another ${field ?? 'configuration'}`, { details: { name, field } });
    }
    const consumer: Partial<ConsumerConfig> = {
      durable_name: QUEUE_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      replay_policy: ReplayPolicy.Instant,
      ack_wait: nanos(config.visibilityTimeoutMs),
      max_deliver: config.maxDeliveries > 0 ? config.maxDeliveries : -1,
      max_ack_pending: Math.min(this.queueMaxAckPending, config.maxLength),
    };
    try {
      await this.jsm.consumers.add(stream, consumer);
    } catch (err) {
      // The queue's config matched; a durable that differs only in this driver's own limits
      // (queueMaxAckPending of another instance) is kept as it is.
      const exists = await this.jsm.consumers.info(stream, QUEUE_CONSUMER).then(
        () => true,
        () => false,
      );
      if (!exists) throw mapNatsError(err, ctx);
    }
  }

  /** The config a queue was declared with (from its stream's description). */
  async queueMeta(queue: string): Promise<QueueMeta> {
    const cfg = await this.streamInfo(this.queueStream(queue), { op: 'queue', queue });
    try {
      const meta = JSON.parse(cfg.description ?? '') as QueueMeta;
      if (meta.archlab !== QUEUE_META_VERSION || meta.queue !== queue) throw new TypeError('not an archlab queue stream');
      return meta;
    } catch (err) {
      throw new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `stream ${this.queueStream(queue)} exists but was not declared by this driver`, {
        cause: err,
        details: { name: queue, field: 'description' },
      });
    }
  }

  async deleteQueue(name: string): Promise<void> {
    checkName('queue', name);
    this.checkOpen();
    try {
      await this.jsm.streams.delete(this.queueStream(name));
    } catch (err) {
      throw mapNatsError(err, { op: 'deleteQueue', queue: name });
    }
    // Drop its bindings from every exchange (they are keyed <exchange>.b.<queue>.<hash>).
    await this.kvCall({ op: 'deleteQueue', queue: name }, async (kv) => {
      const keys: string[] = [];
      for await (const k of await kv.keys(`*.b.${natsToken(name)}.*`)) keys.push(k);
      for (const k of keys) await kv.delete(k);
    });
    for (const t of this.routes.values()) for (const [k, b] of t.bindings) if (b.queue === name) t.bindings.delete(k);
  }

  async publish(exchange: string, routingKey: string, message: PublishMessage): Promise<void> {
    if (exchange !== '') checkName('exchange', exchange);
    if (typeof routingKey !== 'string' || Buffer.byteLength(routingKey) > 255) throw badArgument('routing key must be a string of at most 255 bytes');
    checkPublishMessage(message);
    if (message.delayMs !== undefined && message.delayMs > 0) throw unsupported('nats', 'delayMs', 'JetStream 2.9 has no scheduled delivery');
    if (message.ttlMs !== undefined) throw unsupported('nats', 'per-message ttlMs', 'JetStream 2.9 has no per-message TTL (use the queue messageTtlMs)');
    for (const [k, v] of Object.entries(message.headers ?? {})) checkNatsHeader(k, v);
    this.checkOpen();
    let queues: string[];
    if (exchange === '') {
      queues = routingKey === '' ? [] : [routingKey];
    } else {
      let table: RouteTable;
      try {
        table = await this.table(exchange);
      } catch (err) {
        throw mapNatsError(err, { op: 'publish', exchange });
      }
      if (table.type === null) throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE', `publish: exchange ${JSON.stringify(exchange)} does not exist`, { details: { exchange } });
      queues = this.route(table, routingKey, message.headers);
    }
    if (queues.length === 0) return;
    const hdrs = natsHeaders();
    for (const [k, v] of Object.entries(message.headers ?? {})) hdrs.set(k, v);
    hdrs.set(HDR_MESSAGE_ID, message.messageId ?? randomUUID());
    await Promise.all(
      queues.map(async (q) => {
        try {
          await this.jsPublish(this.queueSubject(q), message.body, hdrs, undefined, { op: 'publish', queue: q });
        } catch (err) {
          // A queue that does not exist (no stream listens on its subject) is unroutable, like AMQP.
          if (isNoResponders(err)) return;
          throw mapNatsError(err, { op: 'publish', queue: q, exchange });
        }
      }),
    );
  }

  async subscribe(queue: string, options: { prefetch?: number }, handler: (message: ReceivedMessage) => Promise<void> | void): Promise<Subscription> {
    checkName('queue', queue);
    const prefetch = intOption('prefetch', options?.prefetch, 100, 1, 65_535);
    if (typeof handler !== 'function') throw badArgument('subscribe needs a handler function');
    const meta = await this.queueMeta(queue);
    let consumer;
    try {
      consumer = await this.js.consumers.get(this.queueStream(queue), QUEUE_CONSUMER);
    } catch (err) {
      throw mapNatsError(err, { op: 'subscribe', queue });
    }
    const stream = this.queueStream(queue);
    if (meta.config.maxDeliveries > 0) this.listenDeadLetters(stream, meta.config.deadLetterQueue);
    const sub = new NatsSubscription(this, meta, consumer, prefetch, handler, () => {
      this.subscriptions.delete(sub);
      if (meta.config.maxDeliveries > 0) this.unlistenDeadLetters(stream);
    });
    this.subscriptions.add(sub);
    sub.start();
    return sub;
  }

  /** Moves a message that reached max_deliver to the dead-letter queue (one driver of the queue group acts). */
  private listenDeadLetters(stream: string, deadLetterQueue: string | null): void {
    const existing = this.deadLetterListeners.get(stream);
    if (existing !== undefined) {
      existing.users++;
      return;
    }
    const sub = this.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${QUEUE_CONSUMER}`, { queue: 'archlab-dead-letters' });
    this.deadLetterListeners.set(stream, { sub, users: 1 });
    void (async () => {
      for await (const m of sub) {
        try {
          const advisory = m.json<{ stream: string; stream_seq: number }>();
          await this.deadLetter(advisory.stream, advisory.stream_seq, deadLetterQueue, 'max-deliveries');
        } catch (err) {
          this.logger?.warn({ err, stream }, 'nats: dead-lettering after max deliveries failed');
        }
      }
    })();
  }

  private unlistenDeadLetters(stream: string): void {
    const l = this.deadLetterListeners.get(stream);
    if (l === undefined) return;
    if (--l.users === 0) {
      l.sub.unsubscribe();
      this.deadLetterListeners.delete(stream);
    }
  }

  /** Copies stream message `seq` to `deadLetterQueue` (deduplicated by its id), then deletes it. */
  async deadLetter(stream: string, seq: number, deadLetterQueue: string | null, reason: string): Promise<void> {
    if (deadLetterQueue !== null) {
      let stored;
      try {
        stored = await this.jsm.streams.getMessage(stream, { seq });
      } catch (err) {
        if (apiErrCode(err) === 10037) return; // already gone: another driver moved it
        throw err;
      }
      const hdrs = natsHeaders();
      if (stored.header !== undefined) for (const k of stored.header.keys()) hdrs.set(k, stored.header.get(k));
      hdrs.set(HDR_DEATH, reason);
      try {
        await this.jsPublish(this.queueSubject(deadLetterQueue), stored.data, hdrs, `dlq:${stream}:${seq}`, { op: 'dead-letter', queue: deadLetterQueue });
      } catch (err) {
        if (!isNoResponders(err)) throw err;
        this.logger?.warn({ stream, seq, deadLetterQueue }, 'nats: dead-letter queue does not exist; message dropped');
      }
    }
    await this.jsm.streams.deleteMessage(stream, seq, false).catch((err: unknown) => {
      if (apiErrCode(err) !== 10057 && apiErrCode(err) !== 10037) throw err;
    });
  }

  // -------------------------------------------------------------------------------------------
  // log
  // -------------------------------------------------------------------------------------------

  partitionCount(topic: string): Promise<number> {
    let p = this.partitionCounts.get(topic);
    if (p === undefined) {
      p = this.streamInfo(this.topicStream(topic), { op: 'describeTopic', topic }).then((c) => c.subjects.length);
      this.partitionCounts.set(topic, p);
      p.catch(() => this.partitionCounts.delete(topic));
    }
    return p;
  }

  forgetTopic(topic: string): void {
    this.partitionCounts.delete(topic);
  }

  async createTopic(name: string, partial?: Partial<TopicConfig>): Promise<void> {
    checkName('topic', name);
    this.checkOpen();
    const config = resolveTopicConfig(partial);
    if (config.cleanupPolicy !== 'delete') throw unsupported('nats', `cleanupPolicy '${config.cleanupPolicy}'`, 'JetStream keeps the last messages per subject, not per record key');
    const subjects = Array.from({ length: config.partitions }, (_, p) => this.partitionSubject(name, p));
    const want: Partial<StreamConfig> = {
      name: this.topicStream(name),
      subjects,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_bytes: config.retentionBytes,
      max_age: config.retentionMs > 0 ? nanos(config.retentionMs) : 0,
      max_msg_size: config.maxMessageBytes,
      duplicate_window: nanos(Math.min(this.duplicateWindowMs, config.retentionMs > 0 ? config.retentionMs : this.duplicateWindowMs)),
      discard: DiscardPolicy.Old,
      num_replicas: 1,
      description: JSON.stringify({ archlab: 1, topic: name, partitions: config.partitions }),
    };
    try {
      await this.jsm.streams.add(want);
    } catch (err) {
      const mapped = mapNatsError(err, { op: 'createTopic', topic: name });
      if (mapped.code !== 'ARCHLAB_QUEUE_DECLARE_MISMATCH') throw mapped;
      const n = await this.streamInfo(this.topicStream(name), { op: 'createTopic', topic: name }).then((c) => c.subjects.length);
      throw new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `topic ${name} exists with other settings (${n} partitions)`, {
        cause: err,
        details: { name, field: n === config.partitions ? 'config' : 'partitions' },
      });
    }
    this.partitionCounts.set(name, Promise.resolve(config.partitions));
  }

  async deleteTopic(name: string): Promise<void> {
    checkName('topic', name);
    this.checkOpen();
    this.partitionCounts.delete(name);
    try {
      await this.jsm.streams.delete(this.topicStream(name));
    } catch (err) {
      throw mapNatsError(err, { op: 'deleteTopic', topic: name });
    }
  }

  producer(options?: ProducerOptions): Producer {
    this.checkOpen();
    const producer = new NatsProducer(this, options ?? {}, () => this.producers.delete(producer));
    this.producers.add(producer);
    return producer;
  }

  consumer(options: ConsumerOptions): Consumer {
    this.checkOpen();
    checkName('group', options?.group);
    for (const topic of options.topics ?? []) checkName('topic', topic);
    const consumer = new NatsLogConsumer(this, options, () => this.consumers.delete(consumer));
    this.consumers.add(consumer);
    return consumer;
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    for (const p of [...this.producers]) await p.close().catch(() => undefined);
    for (const c of [...this.consumers]) await c.close().catch(() => undefined);
    for (const s of [...this.subscriptions]) await s.cancel().catch(() => undefined);
    this.closed = true;
    for (const t of this.routes.values()) t.watcher?.stop();
    this.routes.clear();
    for (const l of this.deadLetterListeners.values()) l.sub.unsubscribe();
    this.deadLetterListeners.clear();
    await this.nc.drain().catch(() => undefined);
    await this.nc.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// subscriptions: a pull loop that never holds more than `prefetch` unsettled messages
// ---------------------------------------------------------------------------------------------

type PullConsumer = Awaited<ReturnType<JetStreamClient['consumers']['get']>>;

class NatsSubscription implements Subscription {
  readonly consumerTag = randomUUID();
  private held = 0;
  private cancelled = false;
  private wake: (() => void) | null = null;
  private current: ConsumerMessages | null = null;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly driver: NatsDriver,
    private readonly meta: QueueMeta,
    private readonly consumer: PullConsumer,
    private readonly prefetch: number,
    private readonly handler: (message: ReceivedMessage) => Promise<void> | void,
    private readonly onEnded: () => void,
  ) {}

  start(): void {
    this.loop = this.pull().finally(() => this.onEnded());
  }

  private async pull(): Promise<void> {
    let backoffMs = 50;
    while (!this.cancelled) {
      if (this.held >= this.prefetch) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      try {
        const iter = await this.consumer.fetch({ max_messages: this.prefetch - this.held, expires: this.driver.pullExpiresMs });
        this.current = iter;
        for await (const m of iter) {
          if (this.cancelled) m.nak();
          else this.deliver(m);
        }
        backoffMs = 50;
      } catch (err) {
        if (this.cancelled) break;
        const code = apiErrCode(err);
        if (code === 10059 || code === 10014 || (err as { code?: string }).code === 'CONNECTION_CLOSED') {
          this.driver.logger?.warn({ err, queue: this.meta.queue }, 'nats subscription ended: queue or connection gone');
          break;
        }
        this.driver.logger?.warn({ err, queue: this.meta.queue }, 'nats subscription pull failed; retrying');
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 2000);
      } finally {
        this.current = null;
      }
    }
  }

  private deliver(m: JsMsg): void {
    this.held++;
    let settled = false;
    const settle = (what: string): void => {
      if (settled) {
        throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_DELIVERY', `${what}: message ${m.seq} was already acked or nacked`, { details: { deliveryTag: m.seq } });
      }
      settled = true;
      this.held--;
      this.wake?.();
    };
    const { driver, meta } = this;
    const stream = driver.queueStream(meta.queue);
    const message: ReceivedMessage = {
      body: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength),
      headers: userHeaders(m.headers),
      deliveryCount: m.info.redeliveryCount,
      redelivered: m.redelivered,
      messageId: m.headers?.get(HDR_MESSAGE_ID) ?? '',
      ack: async () => {
        settle('ack');
        await m.ackAck().catch((err: unknown) => {
          throw mapNatsError(err, { op: 'ack', queue: meta.queue });
        });
      },
      nack: async (options) => {
        settle('nack');
        if (options?.requeue ?? true) {
          m.nak();
          return;
        }
        // No requeue: to the dead-letter queue (or dropped), then out of the work queue.
        try {
          await driver.deadLetter(stream, m.seq, meta.config.deadLetterQueue, 'rejected');
        } catch (err) {
          throw mapNatsError(err, { op: 'nack', queue: meta.queue });
        }
        m.term();
      },
    };
    Promise.resolve()
      .then(() => this.handler(message))
      .catch(async (err: unknown) => {
        driver.logger?.warn({ err, queue: meta.queue }, 'nats subscription handler failed; message requeued');
        if (!settled) await message.nack({ requeue: true }).catch(() => undefined);
      });
  }

  async cancel(): Promise<void> {
    if (this.cancelled) return this.loop;
    this.cancelled = true;
    this.wake?.();
    await this.current?.close().catch(() => undefined);
    await this.loop;
  }
}

// ---------------------------------------------------------------------------------------------
// log producer
// ---------------------------------------------------------------------------------------------

class NatsProducer extends RecordProducer {
  private readonly idempotent: boolean;
  private readonly producerId = randomBytes(9).toString('base64url');
  private readonly sequences = new Map<string, number>();
  /** Idempotent producers: the tail of each partition's chain of publishes (one in flight). */
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(
    private readonly driver: NatsDriver,
    options: ProducerOptions,
    onClosed: () => void,
  ) {
    super('nats', options, onClosed);
    this.idempotent = options.idempotent ?? false;
    if (this.idempotent && this.acks === 'none') throw badArgument("an idempotent producer needs acks 'leader' or 'fsync'");
  }

  protected partitionCount(topic: string): Promise<number> {
    return this.driver.partitionCount(topic);
  }

  protected async publish(topic: string, partition: number, record: ProducerRecord): Promise<SendResult> {
    const enc = encodeRecord(record, this.driver.clock.now(), this.compression);
    const hdrs = natsHeaders();
    for (const [k, v] of Object.entries(enc.headers)) hdrs.set(k, v);
    const subject = this.driver.partitionSubject(topic, partition);
    const ctx = { op: 'send', topic };
    if (this.acks === 'none') {
      this.driver.checkOpen();
      this.driver.nc.publish(subject, enc.body, { headers: hdrs });
      return { partition, offset: -1 };
    }
    if (!this.idempotent) {
      try {
        const ack = await this.driver.jsPublish(subject, enc.body, hdrs, undefined, ctx);
        return { partition, offset: ack.seq };
      } catch (err) {
        if (!isNoResponders(err)) throw mapNatsError(err, ctx);
        this.driver.forgetTopic(topic);
        throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `send: topic ${JSON.stringify(topic)} does not exist (no stream listens)`, { details: { topic } });
      }
    }
    const key = `${topic}\u0000${partition}`;
    const seq = this.sequences.get(key) ?? 0;
    this.sequences.set(key, seq + 1);
    const msgID = `${this.producerId}:${partition}:${seq}`;
    const prev = this.chains.get(key) ?? Promise.resolve();
    const mine = prev.catch(() => undefined).then(() => this.publishWithRetry(subject, enc.body, hdrs, msgID, ctx));
    this.chains.set(key, mine);
    const drop = (): void => {
      if (this.chains.get(key) === mine) this.chains.delete(key);
    };
    mine.then(drop, drop);
    const ack = await mine;
    return { partition, offset: ack.seq };
  }

  /** Retries a retryable failure with the same Nats-Msg-Id, so the stream writes the record once. */
  private async publishWithRetry(subject: string, body: Buffer, hdrs: MsgHdrs, msgID: string, ctx: NatsContext): Promise<{ seq: number }> {
    let backoffMs = this.driver.retryBackoffMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.driver.jsPublish(subject, body, hdrs, msgID, ctx);
      } catch (err) {
        const mapped = mapNatsError(err, ctx);
        if (!mapped.retryable || attempt >= this.driver.maxRetries) throw mapped;
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 1000);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// log consumer: a durable pull consumer per group and partition
// ---------------------------------------------------------------------------------------------

class NatsLogConsumer extends PartitionedConsumer<JsMsg> {
  /** Handled records not yet acked (autoCommit false). */
  private readonly uncommitted: JsMsg[] = [];
  /** Acks sent and not yet confirmed. */
  private readonly acking = new Set<Promise<unknown>>();

  constructor(
    private readonly driver: NatsDriver,
    options: ConsumerOptions,
    private readonly onClosed: () => void,
  ) {
    super('nats', options);
    if (options.sessionTimeoutMs !== undefined) intOption('sessionTimeoutMs', options.sessionTimeoutMs, 0, 1, 3_600_000);
  }

  protected partitionsOf(topic: string): Promise<number> {
    return this.driver.partitionCount(topic);
  }

  private consumerConfig(state: PartitionState<JsMsg>, target: SeekTarget | null): Partial<ConsumerConfig> {
    const d = this.driver;
    const base: Partial<ConsumerConfig> = {
      durable_name: d.groupDurable(this.group, state.tp.partition),
      ack_policy: AckPolicy.Explicit,
      replay_policy: ReplayPolicy.Instant,
      filter_subject: d.partitionSubject(state.tp.topic, state.tp.partition),
      ack_wait: nanos(d.consumerAckWaitMs),
      max_ack_pending: d.consumerMaxAckPending,
      max_deliver: -1,
      inactive_threshold: nanos(d.groupRetentionMs),
    };
    const t: SeekTarget = target ?? { kind: this.from };
    switch (t.kind) {
      case 'earliest':
        return { ...base, deliver_policy: DeliverPolicy.All };
      case 'latest':
        return { ...base, deliver_policy: DeliverPolicy.New };
      case 'offset':
        intOption('offset', t.offset, 0, 0, Number.MAX_SAFE_INTEGER);
        // Stream sequences start at 1; offset 0 is "from the start".
        return { ...base, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, t.offset) };
      case 'timestamp':
        intOption('timestamp', t.timestamp, 0, 0, Number.MAX_SAFE_INTEGER);
        return { ...base, deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(t.timestamp).toISOString() };
      default:
        throw badArgument(`unknown seek target ${JSON.stringify(t)}`);
    }
  }

  protected async openSource(state: PartitionState<JsMsg>, target: SeekTarget | null): Promise<OpenedSource<JsMsg>> {
    const d = this.driver;
    const stream = d.topicStream(state.tp.topic);
    const durable = d.groupDurable(this.group, state.tp.partition);
    const ctx = { op: 'consume', topic: state.tp.topic };
    try {
      if (target !== null) {
        // A seek moves the whole group's cursor on this partition: a new durable at the target.
        await d.jsm.consumers.delete(stream, durable).catch((err: unknown) => {
          if (apiErrCode(err) !== 10014) throw err;
        });
      }
      const exists =
        target === null &&
        (await d.jsm.consumers.info(stream, durable).then(
          () => true,
          (err: unknown) => {
            if (apiErrCode(err) === 10014) return false;
            throw err;
          },
        ));
      if (!exists) {
        await d.jsm.consumers.add(stream, this.consumerConfig(state, target)).catch(async (err: unknown) => {
          // Another member of the group created it first: use theirs.
          if (target === null) await d.jsm.consumers.info(stream, durable);
          else throw err;
        });
      }
    } catch (err) {
      throw mapNatsError(err, ctx);
    }
    const queue = new PushQueue<JsMsg>();
    let messages: ConsumerMessages;
    try {
      const c = await d.js.consumers.get(stream, durable);
      messages = await c.consume({ max_messages: d.consumerMaxAckPending, callback: (m) => queue.push(m) });
    } catch (err) {
      throw mapNatsError(err, ctx);
    }
    const { topic, partition } = state.tp;
    return {
      skipBelow: -1,
      skipBeforeTimestamp: target?.kind === 'timestamp' ? target.timestamp : -1,
      source: {
        next: async (): Promise<SourceItem<JsMsg> | null> => {
          const m = await queue.next();
          if (m === null) return null;
          const body = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
          const record = decodeRecord(topic, partition, m.seq, body, (name) => m.headers?.get(name) || undefined, Math.floor(m.info.timestampNanos / 1e6));
          return { record, message: m };
        },
        close: async (): Promise<void> => {
          await messages.close().catch(() => undefined);
          // Hand back what was delivered and not handled, so it need not wait for ack_wait.
          for (const m of queue.end()) m.nak();
        },
      },
    };
  }

  protected async handled(_state: PartitionState<JsMsg>, item: SourceItem<JsMsg>): Promise<void> {
    if (!this.autoCommit) {
      this.uncommitted.push(item.message);
      return;
    }
    const p = item.message.ackAck();
    this.acking.add(p);
    const drop = (): void => void this.acking.delete(p);
    p.then(drop, drop);
  }

  protected skipped(_state: PartitionState<JsMsg>, item: SourceItem<JsMsg>, why: 'filtered' | 'returned'): void {
    // Filtered (older than a timestamp seek's target) is behind the cursor: acked. Returned goes
    // back now rather than after ack_wait.
    if (why === 'filtered') item.message.ack();
    else item.message.nak();
  }

  protected async commitHandled(): Promise<void> {
    const batch = this.uncommitted.splice(0);
    const results = await Promise.allSettled([...batch.map((m) => m.ackAck()), ...this.acking]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw mapNatsError((failed as PromiseRejectedResult).reason, { op: 'commit' });
  }

  protected async shutdown(): Promise<void> {
    this.onClosed();
  }
}
