/**
 * The driver API on RabbitMQ (AMQP 0-9-1 through amqplib).
 *
 * Broker model, natively: exchanges of the four types, bindings, queues with x-max-length,
 * x-max-length-bytes, x-overflow, x-message-ttl, x-dead-letter-exchange/-routing-key (the default
 * exchange and the dead-letter queue's name, so dead letters land in that queue) and x-max-priority.
 * A queue with maxDeliveries > 0 (or every queue, with `quorumQueues: true`) is a quorum queue with
 * x-delivery-limit = maxDeliveries - 1 (RabbitMQ counts redeliveries, we count deliveries). Publishes
 * go through a confirm channel: publish() resolves when RabbitMQ confirmed it took the message (for a
 * durable queue: written, and for quorum queues replicated); a negative confirm (a queue at
 * max-length with reject-publish) is ARCHLAB_QUEUE_FULL. subscribe() opens a channel with basic.qos =
 * prefetch per consumer; nack maps to basic.nack with requeue.
 *
 * Where RabbitMQ differs (capabilities false, the option refused with ARCHLAB_QUEUE_UNSUPPORTED):
 * - visibility timeout: RabbitMQ only has consumer_timeout, which closes the whole channel; an unacked
 *   message comes back when its channel or connection closes, not after a per-queue time.
 * - delayed delivery: needs the rabbitmq_delayed_message_exchange plugin.
 * - priorities on a quorum queue (RabbitMQ 3.x): so maxPriority and maxDeliveries do not combine.
 * - deliveryCount: quorum queues report it (x-delivery-count); classic queues only say `redelivered`,
 *   so a classic queue's redelivered message reports deliveryCount 2 however often it came back.
 *
 * Log model on streams (x-queue-type: stream), one stream per partition named
 * `${streamPrefix}${topic}.${partition}`; the partition count is found by probing those names.
 * - Offsets are stream offsets (x-stream-offset), per partition, like Kafka's. A send() does not learn
 *   its offset (AMQP confirms carry none): SendResult.offset is -1.
 * - Consumer groups: AMQP 0-9-1 has no partition assignment, so capabilities.consumerGroups is false:
 *   every member reads every partition, and committed offsets are kept by the driver in memory, per
 *   group (a new consumer of the group on the same driver resumes; they are lost when the driver
 *   closes).
 * - Seek by timestamp: x-stream-offset takes a timestamp (seconds); records older than the target are
 *   skipped client-side to the millisecond.
 * - Not supported: idempotent producers (stream deduplication needs the stream protocol), log
 *   compaction. acks 'leader' and 'fsync' both wait for the publisher confirm (RabbitMQ confirms a
 *   stream write once it is written, it does not fsync per message); 'none' does not wait.
 *   lingerMs and maxBatchBytes do not apply: each record is one AMQP message, written as sent.
 *   gzip/lz4 compress each record's value in the client.
 *
 * No automatic reconnect: when the connection drops, calls fail with ARCHLAB_QUEUE_DISCONNECTED and
 * subscriptions and consumers end.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { SystemClock, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import { QueueError, checkName } from '../errors.js';
import type {
  BindingArgs,
  Consumer,
  ConsumerOptions,
  DriverCapabilities,
  ExchangeConfig,
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
  TopicPartition,
} from '../types.js';
import { PartitionedConsumer, type OpenedSource, type PartitionState, type SourceItem } from './partitioned-consumer.js';
import {
  PushQueue,
  QUEUE_DEFAULTS,
  Semaphore,
  SerialRunner,
  badArgument,
  closedError,
  decodeRecord,
  encodeRecord,
  explicitlySet,
  intOption,
  resolveQueueConfig,
  resolveTopicConfig,
  unsupported,
} from './common.js';
import { checkPublishMessage, checkExchangeConfig } from './validate.js';
import { RecordProducer } from './record-producer.js';

export const RABBITMQ_CAPABILITIES: DriverCapabilities = Object.freeze({
  partitionedLog: true,
  consumerGroups: false,
  seekByTimestamp: true,
  idempotentProducer: false,
  exchangeTypes: ['direct', 'topic', 'fanout', 'headers'],
  visibilityTimeout: false,
  maxDeliveries: true,
  priorities: true,
  delayedDelivery: false,
  perMessageTtl: true,
}) as DriverCapabilities;

export interface RabbitmqDriverOptions {
  /** amqp:// or amqps:// URL, e.g. amqp://guest:guest@127.0.0.1:5672. Required. */
  url: string;
  /** Prefix of the stream names that hold topic partitions (`<prefix><topic>.<partition>`). Default 'archlab.log.'. */
  streamPrefix?: string;
  /** Declare every queue as a quorum queue, not only those with maxDeliveries > 0. Default false. */
  quorumQueues?: boolean;
  /** Publishes (queue messages and records) awaiting their confirm at once, per driver. Default 1024. */
  maxInFlightPublishes?: number;
  /** Publishes waiting for an in-flight slot before further ones fail with ARCHLAB_QUEUE_LIMIT. Default 100,000. */
  maxWaitingPublishes?: number;
  /** Log consumers: stream messages one partition may hold unhandled (basic.qos per consumer). Default 256. */
  consumerPrefetch?: number;
  /** Largest message body sent, in bytes; larger fails with ARCHLAB_QUEUE_MESSAGE_TOO_LARGE. Default 16 MiB (RabbitMQ's own limit is max_message_size, 128 MiB). */
  maxMessageBytes?: number;
  /** TCP connect and AMQP handshake timeout, ms. Default 5000. */
  connectTimeoutMs?: number;
  /** Consumer groups whose committed offsets the driver keeps in memory. Default 10,000. */
  maxGroups?: number;
  /** Timestamps of records sent without one. Default SystemClock. */
  clock?: Clock;
  /** Handler failures of subscriptions are logged here. */
  logger?: Logger;
}

/** Connects to RabbitMQ; the driver owns the connection and closes it in close(). */
export async function rabbitmqDriver(options: RabbitmqDriverOptions): Promise<QueueDriver> {
  if (typeof options?.url !== 'string' || !/^amqps?:\/\//.test(options.url)) {
    throw badArgument(`rabbitmq driver: url must be an amqp:// or amqps:// URL, got ${JSON.stringify(options?.url)}`);
  }
  const timeout = intOption('connectTimeoutMs', options.connectTimeoutMs, 5000, 1, 600_000);
  let conn: ChannelModel;
  try {
    conn = await amqp.connect(options.url, { timeout });
  } catch (err) {
    throw new QueueError('ARCHLAB_QUEUE_DISCONNECTED', `rabbitmq driver: cannot connect: ${(err as Error).message}`, { cause: err });
  }
  return new RabbitmqDriver(conn, options);
}

interface AmqpContext {
  op: string;
  queue?: string;
  exchange?: string;
}

/** amqplib's errors (channel closed by the server with an AMQP reply code, or a closed channel) as QueueErrors. */
export function mapAmqpError(err: unknown, ctx: AmqpContext): QueueError {
  if (err instanceof QueueError) return err;
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const details = { op: ctx.op, ...(ctx.queue === undefined ? {} : { queue: ctx.queue }), ...(ctx.exchange === undefined ? {} : { exchange: ctx.exchange }) };
  if (code === 404) {
    if (/no exchange/.test(message)) return new QueueError('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE', `${ctx.op}: exchange ${JSON.stringify(ctx.exchange)} does not exist`, { cause: err, details });
    return new QueueError('ARCHLAB_QUEUE_UNKNOWN_QUEUE', `${ctx.op}: queue ${JSON.stringify(ctx.queue)} does not exist`, { cause: err, details });
  }
  if (code === 406 && /inequivalent/.test(message)) {
    return new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `${ctx.op}: declared before with other settings (${message})`, { cause: err, details });
  }
  if (code === 403) return new QueueError('ARCHLAB_QUEUE_UNAUTHORIZED', `${ctx.op}: refused by RabbitMQ (${message})`, { cause: err, details });
  if (code === 406 || code === 405) return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `${ctx.op}: refused by RabbitMQ (${message})`, { cause: err, details });
  return new QueueError('ARCHLAB_QUEUE_DISCONNECTED', `${ctx.op}: ${message}`, { cause: err, details });
}

/** A lazily opened channel, opened again after RabbitMQ closed it (a channel error closes the channel). */
class ChannelSlot<C extends Channel> {
  private ch: Promise<C> | null = null;

  constructor(private readonly open: () => Promise<C>) {}

  get(): Promise<C> {
    if (this.ch === null) {
      const p: Promise<C> = this.open().then((ch) => {
        ch.on('error', () => undefined);
        ch.on('close', () => {
          if (this.ch === p) this.ch = null;
        });
        return ch;
      });
      p.catch(() => {
        if (this.ch === p) this.ch = null;
      });
      this.ch = p;
    }
    return this.ch;
  }

  /** Forgets the channel so the next get() opens a new one (after an error closed it). */
  discard(): void {
    this.ch = null;
  }

  async close(): Promise<void> {
    const p = this.ch;
    this.ch = null;
    if (p === null) return;
    const ch = await p.catch(() => null);
    await ch?.close().catch(() => undefined);
  }
}

/** AMQP header values as strings (numbers, booleans, buffers as UTF-8, tables as JSON). */
function headerString(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

function stringHeaders(raw: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === undefined) return out;
  for (const [key, value] of Object.entries(raw)) {
    const s = headerString(value);
    if (s !== undefined) out[key] = s;
  }
  return out;
}

const MAX_KNOWN_EXCHANGES = 10_000;

class RabbitmqDriver implements QueueDriver {
  readonly name = 'rabbitmq' as const;
  readonly capabilities = RABBITMQ_CAPABILITIES;
  readonly streamPrefix: string;
  readonly clock: Clock;
  readonly consumerPrefetch: number;
  private readonly quorumQueues: boolean;
  private readonly maxMessageBytes: number;
  private readonly maxGroups: number;
  private readonly logger: Logger | undefined;
  private readonly admin: ChannelSlot<Channel>;
  private readonly confirm: ChannelSlot<ConfirmChannel>;
  private readonly adminSerial = new SerialRunner();
  private readonly inflight: Semaphore;
  private readonly knownExchanges = new Set<string>(['']);
  private readonly partitionCounts = new Map<string, Promise<number>>();
  /** group -> "topic\0partition" -> committed offset (the next offset to read). */
  private readonly committed = new Map<string, Map<string, number>>();
  private readonly subscriptions = new Set<RabbitSubscription>();
  private readonly consumers = new Set<RabbitLogConsumer>();
  private readonly producers = new Set<RabbitProducer>();
  private closed = false;
  /** Set when the connection dropped without close(): calls fail with DISCONNECTED. */
  private lost: Error | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    readonly conn: ChannelModel,
    options: RabbitmqDriverOptions,
  ) {
    this.streamPrefix = options.streamPrefix ?? 'archlab.log.';
    if (typeof this.streamPrefix !== 'string' || this.streamPrefix.length > 40) throw badArgument('streamPrefix must be a string of at most 40 characters');
    this.quorumQueues = options.quorumQueues ?? false;
    this.consumerPrefetch = intOption('consumerPrefetch', options.consumerPrefetch, 256, 1, 65_535);
    this.maxMessageBytes = intOption('maxMessageBytes', options.maxMessageBytes, 16 * 1024 * 1024, 1, 128 * 1024 * 1024);
    this.maxGroups = intOption('maxGroups', options.maxGroups, 10_000, 1, 10_000_000);
    this.inflight = new Semaphore(
      intOption('maxInFlightPublishes', options.maxInFlightPublishes, 1024, 1, 1_000_000),
      intOption('maxWaitingPublishes', options.maxWaitingPublishes, 100_000, 0, 100_000_000),
      'rabbitmq in-flight publishes',
    );
    this.clock = options.clock ?? new SystemClock();
    this.logger = options.logger;
    this.admin = new ChannelSlot(() => conn.createChannel());
    this.confirm = new ChannelSlot(() => conn.createConfirmChannel());
    conn.on('error', (err: Error) => this.logger?.warn({ err }, 'rabbitmq connection error'));
    conn.on('close', (err?: Error) => {
      if (!this.closed) this.lost = err ?? new QueueError('ARCHLAB_QUEUE_DISCONNECTED', 'rabbitmq connection closed');
      for (const s of [...this.subscriptions]) void s.close();
      for (const c of [...this.consumers]) void c.close();
    });
  }

  private checkOpen(): void {
    if (this.closed) throw closedError('rabbitmq driver');
    if (this.lost !== null) {
      throw new QueueError('ARCHLAB_QUEUE_DISCONNECTED', `rabbitmq connection lost: ${this.lost.message}`, { cause: this.lost });
    }
  }

  /** Runs `fn` on the admin channel, one at a time (a failed call closes the channel for the next). */
  adminCall<T>(ctx: AmqpContext, fn: (ch: Channel) => Promise<T>): Promise<T> {
    this.checkOpen();
    return this.adminSerial.run(async () => {
      try {
        const ch = await this.admin.get();
        return await fn(ch);
      } catch (err) {
        this.admin.discard();
        throw mapAmqpError(err, ctx);
      }
    });
  }

  /** Opens a channel of its own (subscriptions, log consumers). */
  async openChannel(): Promise<Channel> {
    this.checkOpen();
    try {
      const ch = await this.conn.createChannel();
      ch.on('error', () => undefined);
      return ch;
    } catch (err) {
      throw mapAmqpError(err, { op: 'open channel' });
    }
  }

  /**
   * Publishes through the confirm channel. Resolves after the confirm (or, `waitConfirm` false, once
   * the message is written to the socket; its in-flight slot is still held until the confirm).
   */
  async publishRaw(exchange: string, routingKey: string, body: Buffer, props: Options.Publish, waitConfirm: boolean, ctx: AmqpContext): Promise<void> {
    this.checkOpen();
    if (body.length > this.maxMessageBytes) {
      throw new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `message of ${body.length} bytes is over the driver's maxMessageBytes ${this.maxMessageBytes}`, {
        details: { bytes: body.length, maxBytes: this.maxMessageBytes },
      });
    }
    await this.inflight.acquire();
    let confirmed: Promise<void>;
    try {
      const ch = await this.confirm.get();
      confirmed = new Promise<void>((resolve, reject) => {
        ch.publish(exchange, routingKey, body, props, (err: unknown) => {
          if (err === null || err === undefined) resolve();
          else if (err instanceof Error && err.message === 'message nacked') {
            reject(
              new QueueError('ARCHLAB_QUEUE_FULL', `${ctx.op}: RabbitMQ refused the message (a queue at its max-length with reject-publish)`, {
                details: { exchange, routingKey },
              }),
            );
          } else reject(mapAmqpError(err, ctx));
        });
      });
    } catch (err) {
      this.confirm.discard();
      this.inflight.release();
      throw mapAmqpError(err, ctx);
    }
    const settled = confirmed.finally(() => this.inflight.release());
    if (waitConfirm) return settled;
    settled.catch(() => undefined);
  }

  // -------------------------------------------------------------------------------------------
  // broker
  // -------------------------------------------------------------------------------------------

  async declareExchange(name: string, config?: Partial<ExchangeConfig>): Promise<void> {
    checkName('exchange', name);
    const c = checkExchangeConfig(config);
    await this.adminCall({ op: 'declareExchange', exchange: name }, (ch) => ch.assertExchange(name, c.type, { durable: c.durable }));
    this.rememberExchange(name);
  }

  /** Deletes an exchange (not in the QueueDriver contract yet; the conformance suite cleans up with it). */
  async deleteExchange(name: string): Promise<void> {
    checkName('exchange', name);
    await this.adminCall({ op: 'deleteExchange', exchange: name }, (ch) => ch.deleteExchange(name));
    this.knownExchanges.delete(name);
  }

  private rememberExchange(name: string): void {
    if (this.knownExchanges.size >= MAX_KNOWN_EXCHANGES) this.knownExchanges.clear();
    this.knownExchanges.add(name);
  }

  async declareQueue(name: string, partial?: Partial<QueueConfig>): Promise<void> {
    checkName('queue', name);
    const config = resolveQueueConfig(partial);
    if (explicitlySet(partial, QUEUE_DEFAULTS, 'visibilityTimeoutMs')) {
      throw unsupported('rabbitmq', 'visibilityTimeoutMs', 'RabbitMQ redelivers an unacked message when its channel closes (consumer_timeout closes the channel), not after a per-queue timeout');
    }
    const quorum = this.quorumQueues || config.maxDeliveries > 0;
    if (quorum && config.maxPriority > 0) {
      throw unsupported('rabbitmq', 'maxPriority with maxDeliveries', 'priorities need a classic queue, a delivery limit needs a quorum queue (RabbitMQ 3.x)');
    }
    if (quorum && !config.durable) throw unsupported('rabbitmq', 'durable: false with maxDeliveries', 'quorum queues are always durable');
    const args: Record<string, unknown> = {
      'x-max-length': config.maxLength,
      'x-max-length-bytes': config.maxLengthBytes,
      'x-overflow': config.overflow,
    };
    if (quorum) args['x-queue-type'] = 'quorum';
    if (config.maxDeliveries > 0) args['x-delivery-limit'] = config.maxDeliveries - 1;
    if (config.messageTtlMs >= 0) args['x-message-ttl'] = config.messageTtlMs;
    if (config.deadLetterQueue !== null) {
      args['x-dead-letter-exchange'] = '';
      args['x-dead-letter-routing-key'] = config.deadLetterQueue;
    }
    if (config.maxPriority > 0) args['x-max-priority'] = config.maxPriority;
    await this.adminCall({ op: 'declareQueue', queue: name }, (ch) => ch.assertQueue(name, { durable: config.durable, arguments: args }));
  }

  async deleteQueue(name: string): Promise<void> {
    checkName('queue', name);
    await this.adminCall({ op: 'deleteQueue', queue: name }, (ch) => ch.deleteQueue(name));
  }

  async bind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void> {
    checkName('queue', queue);
    checkName('exchange', exchange);
    if (typeof routingKey !== 'string' || Buffer.byteLength(routingKey) > 255) throw badArgument('routing key must be a string of at most 255 bytes');
    await this.adminCall({ op: 'bind', queue, exchange }, (ch) => ch.bindQueue(queue, exchange, routingKey, args ?? {}));
  }

  async publish(exchange: string, routingKey: string, message: PublishMessage): Promise<void> {
    if (exchange !== '') checkName('exchange', exchange);
    if (typeof routingKey !== 'string' || Buffer.byteLength(routingKey) > 255) throw badArgument('routing key must be a string of at most 255 bytes');
    checkPublishMessage(message);
    if (message.delayMs !== undefined && message.delayMs > 0) {
      throw unsupported('rabbitmq', 'delayMs', 'delayed delivery needs the rabbitmq_delayed_message_exchange plugin');
    }
    if (!this.knownExchanges.has(exchange)) {
      // A publish to a missing exchange closes the confirm channel and fails every publish in flight
      // on it; checking first keeps one bad name from failing the others.
      await this.adminCall({ op: 'publish', exchange }, (ch) => ch.checkExchange(exchange));
      this.rememberExchange(exchange);
    }
    const props: Options.Publish = {
      persistent: true,
      headers: message.headers ?? {},
      messageId: message.messageId ?? randomUUID(),
      timestamp: Math.floor(this.clock.now() / 1000),
    };
    if (message.priority !== undefined) props.priority = message.priority;
    if (message.ttlMs !== undefined) props.expiration = String(message.ttlMs);
    await this.publishRaw(exchange, routingKey, message.body, props, true, { op: 'publish', exchange });
  }

  async subscribe(queue: string, options: { prefetch?: number }, handler: (message: ReceivedMessage) => Promise<void> | void): Promise<Subscription> {
    checkName('queue', queue);
    const prefetch = intOption('prefetch', options?.prefetch, 100, 1, 65_535);
    if (typeof handler !== 'function') throw badArgument('subscribe needs a handler function');
    const ch = await this.openChannel();
    const sub = new RabbitSubscription(ch, handler, this.logger, () => this.subscriptions.delete(sub));
    try {
      await ch.prefetch(prefetch, false);
      const reply = await ch.consume(queue, (m) => sub.deliver(m), { noAck: false });
      sub.consumerTag = reply.consumerTag;
    } catch (err) {
      await ch.close().catch(() => undefined);
      throw mapAmqpError(err, { op: 'subscribe', queue });
    }
    this.subscriptions.add(sub);
    return sub;
  }

  // -------------------------------------------------------------------------------------------
  // log
  // -------------------------------------------------------------------------------------------

  streamName(topic: string, partition: number): string {
    return `${this.streamPrefix}${topic}.${partition}`;
  }

  /** Partitions of `topic` by probing its stream names (0 = no such topic): exponential, then binary search. */
  private async probePartitions(topic: string): Promise<number> {
    const exists = async (p: number): Promise<boolean> => {
      try {
        await this.adminCall({ op: 'describeTopic', queue: this.streamName(topic, p) }, (ch) => ch.checkQueue(this.streamName(topic, p)));
        return true;
      } catch (err) {
        if (err instanceof QueueError && err.code === 'ARCHLAB_QUEUE_UNKNOWN_QUEUE') return false;
        throw err;
      }
    };
    if (!(await exists(0))) return 0;
    // Partitions are 0..n-1 with n <= 1024: gallop to a missing one, then binary search below it.
    let known = 1; // n >= known
    let probe = 1;
    while (probe < 1024 && (await exists(probe))) {
      known = probe + 1;
      probe = Math.min(1024, probe * 2);
    }
    // n is in [known, probe]: partition `probe` is missing (or is 1024, past the limit).
    let lo = known;
    let hi = probe;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (await exists(mid)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The partition count of `topic`, cached; ARCHLAB_QUEUE_UNKNOWN_TOPIC when there is none. */
  partitionCount(topic: string): Promise<number> {
    let p = this.partitionCounts.get(topic);
    if (p === undefined) {
      p = this.probePartitions(topic).then((n) => {
        if (n === 0) {
          throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `topic ${JSON.stringify(topic)} does not exist (no stream ${this.streamName(topic, 0)})`, {
            details: { topic },
          });
        }
        return n;
      });
      this.partitionCounts.set(topic, p);
      p.catch(() => this.partitionCounts.delete(topic));
    }
    return p;
  }

  async createTopic(name: string, partial?: Partial<TopicConfig>): Promise<void> {
    checkName('topic', name);
    const config = resolveTopicConfig(partial);
    if (config.cleanupPolicy !== 'delete') throw unsupported('rabbitmq', `cleanupPolicy '${config.cleanupPolicy}'`, 'RabbitMQ streams have no compaction');
    const existing = await this.probePartitions(name);
    if (existing > 0 && existing !== config.partitions) {
      throw new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `topic ${name} exists with ${existing} partitions, not ${config.partitions}`, {
        details: { name, field: 'partitions' },
      });
    }
    const args: Record<string, unknown> = { 'x-queue-type': 'stream', 'x-stream-max-segment-size-bytes': config.segmentBytes };
    if (config.retentionBytes > 0) args['x-max-length-bytes'] = config.retentionBytes;
    if (config.retentionMs > 0) args['x-max-age'] = `${Math.ceil(config.retentionMs / 1000)}s`;
    for (let p = 0; p < config.partitions; p++) {
      const stream = this.streamName(name, p);
      await this.adminCall({ op: 'createTopic', queue: stream }, (ch) => ch.assertQueue(stream, { durable: true, arguments: args }));
    }
    this.partitionCounts.set(name, Promise.resolve(config.partitions));
  }

  async deleteTopic(name: string): Promise<void> {
    checkName('topic', name);
    this.partitionCounts.delete(name);
    const n = await this.probePartitions(name);
    if (n === 0) throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `topic ${JSON.stringify(name)} does not exist`, { details: { topic: name } });
    for (let p = 0; p < n; p++) {
      const stream = this.streamName(name, p);
      await this.adminCall({ op: 'deleteTopic', queue: stream }, (ch) => ch.deleteQueue(stream));
    }
    for (const offsets of this.committed.values()) {
      for (const key of offsets.keys()) if (key.startsWith(`${name}\u0000`)) offsets.delete(key);
    }
  }

  producer(options?: ProducerOptions): Producer {
    this.checkOpen();
    const producer = new RabbitProducer(this, options ?? {}, () => this.producers.delete(producer));
    this.producers.add(producer);
    return producer;
  }

  consumer(options: ConsumerOptions): Consumer {
    this.checkOpen();
    checkName('group', options?.group);
    for (const topic of options.topics ?? []) checkName('topic', topic);
    const consumer = new RabbitLogConsumer(this, options, () => this.consumers.delete(consumer));
    this.consumers.add(consumer);
    return consumer;
  }

  committedOffset(group: string, tp: TopicPartition): number | undefined {
    return this.committed.get(group)?.get(`${tp.topic}\u0000${tp.partition}`);
  }

  storeOffset(group: string, tp: TopicPartition, offset: number): void {
    let offsets = this.committed.get(group);
    if (offsets === undefined) {
      if (this.committed.size >= this.maxGroups) {
        throw new QueueError('ARCHLAB_QUEUE_LIMIT', `rabbitmq driver keeps offsets of at most ${this.maxGroups} groups`, {
          details: { limit: 'maxGroups', value: this.maxGroups },
        });
      }
      offsets = new Map();
      this.committed.set(group, offsets);
    }
    offsets.set(`${tp.topic}\u0000${tp.partition}`, offset);
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    for (const p of [...this.producers]) await p.close().catch(() => undefined);
    for (const c of [...this.consumers]) await c.close().catch(() => undefined);
    for (const s of [...this.subscriptions]) await s.close();
    this.closed = true;
    await this.admin.close();
    await this.confirm.close();
    await this.conn.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// subscriptions
// ---------------------------------------------------------------------------------------------

class RabbitSubscription implements Subscription {
  consumerTag = '';
  private unacked = 0;
  private cancelled = false;
  private channelClosed = false;

  constructor(
    private readonly ch: Channel,
    private readonly handler: (message: ReceivedMessage) => Promise<void> | void,
    private readonly logger: Logger | undefined,
    private readonly onClosed: () => void,
  ) {
    ch.on('close', () => {
      this.channelClosed = true;
      this.onClosed();
    });
  }

  deliver(m: ConsumeMessage | null): void {
    if (m === null) {
      // RabbitMQ cancelled the consumer (the queue was deleted).
      this.cancelled = true;
      this.maybeClose();
      return;
    }
    this.unacked++;
    const raw = m.properties.headers as Record<string, unknown> | undefined;
    const count = raw?.['x-delivery-count'];
    let settled = false;
    const settle = (what: string): void => {
      if (settled) {
        throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_DELIVERY', `${what}: message ${m.fields.deliveryTag} was already acked or nacked`, {
          details: { deliveryTag: m.fields.deliveryTag },
        });
      }
      if (this.channelClosed) {
        throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_DELIVERY', `${what}: the subscription's channel closed; the message goes back to the queue`, {
          details: { deliveryTag: m.fields.deliveryTag },
        });
      }
      settled = true;
      this.unacked--;
    };
    const message: ReceivedMessage = {
      body: m.content,
      headers: stringHeaders(raw),
      deliveryCount: typeof count === 'number' ? count + 1 : m.fields.redelivered ? 2 : 1,
      redelivered: m.fields.redelivered,
      messageId: typeof m.properties.messageId === 'string' ? m.properties.messageId : '',
      ack: async () => {
        settle('ack');
        this.ch.ack(m);
        this.maybeClose();
      },
      nack: async (options) => {
        settle('nack');
        this.ch.nack(m, false, options?.requeue ?? true);
        this.maybeClose();
      },
    };
    Promise.resolve()
      .then(() => this.handler(message))
      .catch(async (err: unknown) => {
        this.logger?.warn({ err, consumerTag: this.consumerTag }, 'rabbitmq subscription handler failed; message requeued');
        if (!settled) await message.nack({ requeue: true }).catch(() => undefined);
      });
  }

  /** After cancel, the channel stays open until every held delivery is settled (closing it would requeue them). */
  private maybeClose(): void {
    if (this.cancelled && this.unacked === 0 && !this.channelClosed) void this.close();
  }

  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    if (!this.channelClosed) await this.ch.cancel(this.consumerTag).catch(() => undefined);
    this.maybeClose();
  }

  async close(): Promise<void> {
    this.cancelled = true;
    if (this.channelClosed) return;
    this.channelClosed = true;
    await this.ch.close().catch(() => undefined);
    this.onClosed();
  }
}

// ---------------------------------------------------------------------------------------------
// log producer
// ---------------------------------------------------------------------------------------------

class RabbitProducer extends RecordProducer {
  constructor(
    private readonly driver: RabbitmqDriver,
    options: ProducerOptions,
    onClosed: () => void,
  ) {
    super('rabbitmq', options, onClosed);
    if (options.idempotent === true) {
      throw unsupported('rabbitmq', 'idempotent producers', 'stream deduplication needs the RabbitMQ stream protocol, not AMQP 0-9-1');
    }
  }

  protected partitionCount(topic: string): Promise<number> {
    return this.driver.partitionCount(topic);
  }

  protected async publish(topic: string, partition: number, record: ProducerRecord): Promise<SendResult> {
    const now = this.driver.clock.now();
    const enc = encodeRecord(record, now, this.compression);
    const stream = this.driver.streamName(topic, partition);
    await this.driver.publishRaw(
      '',
      stream,
      enc.body,
      { persistent: true, headers: enc.headers, timestamp: Math.floor((record.timestamp ?? now) / 1000) },
      this.acks !== 'none',
      { op: 'send', queue: stream },
    );
    return { partition, offset: -1 };
  }
}

// ---------------------------------------------------------------------------------------------
// log consumer
// ---------------------------------------------------------------------------------------------

class RabbitLogConsumer extends PartitionedConsumer<ConsumeMessage> {
  private channel: Promise<Channel> | null = null;

  constructor(
    private readonly driver: RabbitmqDriver,
    options: ConsumerOptions,
    private readonly onClosed: () => void,
  ) {
    super('rabbitmq', options);
    if (options.sessionTimeoutMs !== undefined) intOption('sessionTimeoutMs', options.sessionTimeoutMs, 0, 1, 3_600_000);
  }

  private getChannel(): Promise<Channel> {
    if (this.channel === null) {
      this.channel = this.driver.openChannel().then(async (ch) => {
        await ch.prefetch(this.driver.consumerPrefetch, false);
        return ch;
      });
    }
    return this.channel;
  }

  protected partitionsOf(topic: string): Promise<number> {
    return this.driver.partitionCount(topic);
  }

  protected async openSource(state: PartitionState<ConsumeMessage>, target: SeekTarget | null): Promise<OpenedSource<ConsumeMessage>> {
    let spec: unknown;
    let skipBelow = -1;
    let skipBeforeTimestamp = -1;
    const committed = target === null ? this.driver.committedOffset(this.group, state.tp) : undefined;
    const t: SeekTarget = target ?? (committed !== undefined ? { kind: 'offset', offset: committed } : { kind: this.from });
    switch (t.kind) {
      case 'earliest':
        spec = 'first';
        break;
      case 'latest':
        spec = 'next';
        break;
      case 'offset':
        intOption('offset', t.offset, 0, 0, Number.MAX_SAFE_INTEGER);
        spec = { '!': 'long', value: t.offset };
        skipBelow = t.offset;
        break;
      case 'timestamp':
        intOption('timestamp', t.timestamp, 0, 0, Number.MAX_SAFE_INTEGER);
        spec = { '!': 'timestamp', value: Math.floor(t.timestamp / 1000) };
        skipBeforeTimestamp = t.timestamp;
        break;
      default:
        throw badArgument(`unknown seek target ${JSON.stringify(t)}`);
    }
    const ch = await this.getChannel();
    const stream = this.driver.streamName(state.tp.topic, state.tp.partition);
    const queue = new PushQueue<ConsumeMessage>();
    let tag: string;
    try {
      const reply = await ch.consume(stream, (m) => (m === null ? queue.end() : queue.push(m)), {
        noAck: false,
        arguments: { 'x-stream-offset': spec },
      });
      tag = reply.consumerTag;
    } catch (err) {
      this.channel = null;
      throw mapAmqpError(err, { op: 'consume', queue: stream });
    }
    const { topic, partition } = state.tp;
    const clock = this.driver.clock;
    return {
      skipBelow,
      skipBeforeTimestamp,
      source: {
        next: async (): Promise<SourceItem<ConsumeMessage> | null> => {
          const m = await queue.next();
          if (m === null) return null;
          const headers = (m.properties.headers ?? {}) as Record<string, unknown>;
          const offset = Number(headers['x-stream-offset']);
          const ts = typeof m.properties.timestamp === 'number' ? m.properties.timestamp * 1000 : clock.now();
          const record = decodeRecord(topic, partition, offset, m.content, (name) => headerString(headers[name]), ts);
          return { record, message: m };
        },
        close: async (): Promise<void> => {
          await ch.cancel(tag).catch(() => undefined);
          for (const m of queue.end()) this.ackQuietly(ch, m);
        },
      },
    };
  }

  private ackQuietly(ch: Channel, m: ConsumeMessage): void {
    try {
      ch.ack(m);
    } catch {
      // The channel closed: the stream consumer is gone and so is the credit.
    }
  }

  protected async handled(state: PartitionState<ConsumeMessage>, item: SourceItem<ConsumeMessage>): Promise<void> {
    if (this.channel !== null) this.ackQuietly(await this.channel, item.message);
    if (this.autoCommit) this.driver.storeOffset(this.group, state.tp, state.position);
  }

  /** Filtered or returned, a stream message is acked: on a stream an ack only returns credit. */
  protected skipped(_state: PartitionState<ConsumeMessage>, item: SourceItem<ConsumeMessage>): void {
    void this.channel?.then((ch) => this.ackQuietly(ch, item.message));
  }

  protected async commitHandled(): Promise<void> {
    for (const part of this.parts.values()) if (part.position >= 0) this.driver.storeOffset(this.group, part.tp, part.position);
  }

  protected async shutdown(): Promise<void> {
    const ch = this.channel;
    this.channel = null;
    if (ch !== null) await (await ch.catch(() => null))?.close().catch(() => undefined);
    this.onClosed();
  }
}
