/**
 * The driver API on archlab's own engines: any `LogApi & BrokerApi` pair, in process (src/queue/log
 * and src/queue/broker, the `embedded` driver) or over TCP (src/queue/client, the `archlab` driver).
 * The engines have every feature of the contract, so every capability is true: the producer and
 * consumer here (engine-producer.ts, engine-consumer.ts) are the Kafka client logic, the broker side
 * maps one to one.
 *
 * Subscriptions: the handler is called for each delivery as it arrives (up to `prefetch` unsettled
 * at once, the broker's bound), without waiting for the previous handler; a handler that throws
 * before settling its message has it nacked with requeue.
 */
import { SystemClock, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import { QueueError, checkName } from '../errors.js';
import type {
  BindingArgs,
  BrokerApi,
  Consumer,
  ConsumerOptions,
  Delivery,
  DriverCapabilities,
  ExchangeConfig,
  LogApi,
  Producer,
  ProducerOptions,
  PublishMessage,
  QueueConfig,
  QueueDriver,
  ReceivedMessage,
  Subscription,
  TopicConfig,
} from '../types.js';
import { badArgument, closedError, intOption } from './common.js';
import { EngineConsumer, type EngineConsumerLimits } from './engine-consumer.js';
import { EngineProducer, type EngineProducerLimits } from './engine-producer.js';

export const ENGINE_CAPABILITIES: DriverCapabilities = Object.freeze({
  partitionedLog: true,
  consumerGroups: true,
  seekByTimestamp: true,
  idempotentProducer: true,
  exchangeTypes: ['direct', 'topic', 'fanout', 'headers'],
  visibilityTimeout: true,
  maxDeliveries: true,
  priorities: true,
  delayedDelivery: true,
  perMessageTtl: true,
}) as DriverCapabilities;

export interface EngineDriverOptions {
  /** Defaults for every producer of the driver (ProducerOptions and buffer, blocking, retries, metadata age). */
  producer?: ProducerOptions & EngineProducerLimits;
  /** Defaults for every consumer of the driver (heartbeat, fetch size and wait, backoff). */
  consumer?: Partial<Pick<ConsumerOptions, 'sessionTimeoutMs' | 'assignor' | 'from' | 'autoCommit'>> & EngineConsumerLimits;
  /** Heartbeat and linger timers. Default SystemClock. */
  clock?: Clock;
  /** Handler failures, rebalances and offset resets are logged here. */
  logger?: Logger;
  /** Called by close() after the driver's producers, consumers and subscriptions closed (to close the engines). */
  onClose?: () => Promise<void>;
}

export type EngineDriver = QueueDriver & {
  readonly name: 'embedded' | 'archlab';
  /** The engines the driver runs on (for tests and tools that need more than the driver API). */
  readonly log: LogApi;
  readonly broker: BrokerApi;
  producer(options?: ProducerOptions & EngineProducerLimits): Producer;
  consumer(options: ConsumerOptions & EngineConsumerLimits): Consumer;
};

/** A QueueDriver on `log` and `broker`; they stay the caller's unless `options.onClose` closes them. */
export function engineDriver(name: 'embedded' | 'archlab', log: LogApi, broker: BrokerApi, options: EngineDriverOptions = {}): EngineDriver {
  if (name !== 'embedded' && name !== 'archlab') throw badArgument(`engine driver name must be 'embedded' or 'archlab', got ${JSON.stringify(name)}`);
  return new EngineDriverImpl(name, log, broker, options);
}

class EngineDriverImpl implements EngineDriver {
  readonly capabilities = ENGINE_CAPABILITIES;
  private readonly clock: Clock;
  private readonly producers = new Set<EngineProducer>();
  private readonly consumers = new Set<EngineConsumer>();
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    readonly name: 'embedded' | 'archlab',
    readonly log: LogApi,
    readonly broker: BrokerApi,
    private readonly options: EngineDriverOptions,
  ) {
    this.clock = options.clock ?? new SystemClock();
  }

  private checkOpen(): void {
    if (this.closed) throw closedError(`${this.name} driver`);
  }

  // log

  async createTopic(name: string, config?: Partial<TopicConfig>): Promise<void> {
    this.checkOpen();
    await this.log.createTopic(name, config);
  }

  async deleteTopic(name: string): Promise<void> {
    this.checkOpen();
    await this.log.deleteTopic(name);
  }

  producer(options?: ProducerOptions & EngineProducerLimits): Producer {
    this.checkOpen();
    const producer: EngineProducer = new EngineProducer(this.log, { ...this.options.producer, ...options, clock: this.clock }, () => this.producers.delete(producer));
    this.producers.add(producer);
    return producer;
  }

  consumer(options: ConsumerOptions & EngineConsumerLimits): Consumer {
    this.checkOpen();
    checkName('group', options?.group);
    for (const topic of options.topics ?? []) checkName('topic', topic);
    const consumer: EngineConsumer = new EngineConsumer(
      this.log,
      { ...this.options.consumer, ...options, clock: this.clock, ...(this.options.logger === undefined ? {} : { logger: this.options.logger }) },
      () => this.consumers.delete(consumer),
    );
    this.consumers.add(consumer);
    return consumer;
  }

  // broker

  async declareExchange(name: string, config?: Partial<ExchangeConfig>): Promise<void> {
    this.checkOpen();
    await this.broker.declareExchange(name, config);
  }

  async deleteExchange(name: string): Promise<void> {
    this.checkOpen();
    await this.broker.deleteExchange(name);
  }

  async declareQueue(name: string, config?: Partial<QueueConfig>): Promise<void> {
    this.checkOpen();
    await this.broker.declareQueue(name, config);
  }

  async deleteQueue(name: string): Promise<void> {
    this.checkOpen();
    await this.broker.deleteQueue(name);
  }

  async bind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void> {
    this.checkOpen();
    await this.broker.bind(queue, exchange, routingKey, args);
  }

  async publish(exchange: string, routingKey: string, message: PublishMessage): Promise<void> {
    this.checkOpen();
    await this.broker.publish(exchange, routingKey, message);
  }

  async subscribe(queue: string, options: { prefetch?: number }, handler: (message: ReceivedMessage) => Promise<void> | void): Promise<Subscription> {
    this.checkOpen();
    if (typeof handler !== 'function') throw badArgument('subscribe needs a handler function');
    const prefetch = intOption('prefetch', options?.prefetch, 100, 1, 65_535);
    const broker = this.broker;
    const logger = this.options.logger;
    const deliver = (d: Delivery): void => {
      let settled = false;
      const settle = (what: string): void => {
        if (settled) {
          throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_DELIVERY', `${what}: delivery ${d.deliveryTag} was already acked or nacked`, { details: { deliveryTag: d.deliveryTag } });
        }
        settled = true;
      };
      const message: ReceivedMessage = {
        body: d.body,
        headers: d.headers,
        deliveryCount: d.deliveryCount,
        redelivered: d.redelivered,
        messageId: d.messageId,
        ack: async () => {
          settle('ack');
          await broker.ack(d.deliveryTag);
        },
        nack: async (o) => {
          settle('nack');
          await broker.nack(d.deliveryTag, { requeue: o?.requeue ?? true });
        },
      };
      Promise.resolve()
        .then(() => handler(message))
        .catch(async (err: unknown) => {
          logger?.warn({ err, queue }, 'subscription handler failed; message requeued');
          if (!settled) await message.nack({ requeue: true }).catch(() => undefined);
        });
    };
    const inner = await broker.consume(queue, { prefetch, onDelivery: deliver });
    const subscriptions = this.subscriptions;
    const sub: Subscription = {
      consumerTag: inner.consumerTag,
      async cancel() {
        subscriptions.delete(sub);
        await inner.cancel();
      },
    };
    subscriptions.add(sub);
    return sub;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const p of [...this.producers]) await p.close().catch(() => undefined);
      for (const c of [...this.consumers]) await c.close().catch(() => undefined);
      for (const s of [...this.subscriptions]) await s.cancel().catch(() => undefined);
      await this.options.onClose?.();
    })();
    return this.closing;
  }
}
