/**
 * The embedded RabbitMQ/SQS-style broker: exchanges route published messages through bindings into
 * queues; queues hand them to competing consumers and forget them when acknowledged.
 *
 * This file is the shell: it owns the maps of exchanges, queues and delivery tags, the journal, the
 * timers and the dispatch loop; each queue's decisions are made by its QueueCore (queue-core.ts), the
 * routing by Exchange (exchange.ts), the bytes by codec.ts and journal.ts.
 *
 * Semantics, where RabbitMQ and SQS differ or are silent:
 * - publish resolves once the message is stored, per the fsync policy, in every durable queue it was
 *   routed to. A message routed to several queues is one object shared by all of them, and one
 *   journal record listing them. When any target queue refuses it (reject-publish at maxLength or
 *   maxLengthBytes) the publish fails with ARCHLAB_QUEUE_FULL and nothing is stored anywhere
 *   (RabbitMQ would still deliver to the other queues).
 * - maxLength counts ready + unacked + delayed messages (the contract in types.ts; RabbitMQ counts
 *   only ready ones). drop-head drops the oldest ready message; when none is ready the publish is
 *   refused with ARCHLAB_QUEUE_FULL.
 * - Deliveries go to consumers with credit (unacked < prefetch) round robin, synchronously from a
 *   dispatch loop run as a microtask after the calls that made work (publish, ack, consume ...). One
 *   pass delivers at most DISPATCH_BUDGET messages before yielding to I/O (setImmediate), and at most
 *   DISPATCH_PER_QUEUE per queue at a time, so one busy queue cannot starve the others. A callback
 *   that throws is logged; its delivery stays unacked until its visibility timeout.
 * - Cancelling a consumer (Subscription.cancel(), or the server when a connection drops) requeues its
 *   unacked deliveries at once, at the front, redelivered (RabbitMQ). The visibility timeout (SQS)
 *   therefore only matters for live consumers that hold a delivery too long, and for get().
 *   cancel({ requeueUnacked: false }) keeps them held until acked, nacked or timed out.
 * - A delivery whose visibility timeout passed, or that was requeued by cancel, has a dead tag:
 *   ack/nack of it fail with ARCHLAB_QUEUE_UNKNOWN_DELIVERY (SQS's stale receipt handle).
 * - maxDeliveries: a message about to be delivered for the (maxDeliveries+1)th time is dead-lettered
 *   ('delivery-limit') instead. nack requeue:false dead-letters ('rejected'). Expiry ('expired') and
 *   drop-head ('maxlen') too. The dead-lettered copy gets headers x-death-reason, x-death-queue and
 *   x-death-count (times dead-lettered), loses its per-message TTL and delay (RabbitMQ drops the
 *   expiration), starts a fresh deliveryCount, and keeps messageId, body, priority and publishedAt.
 * - Dead-letter target missing, the queue itself, full with reject-publish, or the message already
 *   dead-lettered MAX_DEAD_LETTER_HOPS times (a cycle): the message is dropped and counted (`dropped`
 *   on the source queue; `deadLetterTargetMissing` in stats() when the target did not exist).
 * - Unroutable messages are dropped and counted (`unroutable`); with mandatory the publish fails with
 *   ARCHLAB_QUEUE_UNKNOWN_QUEUE (details.unroutable true) instead.
 * - Deleting a queue or exchange that does not exist is a no-op (RabbitMQ 3.x); so is unbinding a
 *   binding that does not exist. The default exchange '' and the built-in amq.direct, amq.fanout,
 *   amq.topic and amq.headers cannot be deleted; '' cannot be bound to.
 * - Durability: only queues declared durable on a broker with a dataDir keep messages across a
 *   restart. Bindings are durable when both the exchange and the queue are. Recovered messages that
 *   had been delivered (unacked at the crash, or requeued) come back ready with redelivered true and
 *   their delivery count kept, so maxDeliveries holds across crashes.
 */
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import { SystemRandom, type Random } from '../../core/random.js';
import { QueueError } from '../errors.js';
import type {
  BindingArgs,
  BrokerApi,
  ConsumeOptions,
  Delivery,
  ExchangeConfig,
  PublishMessage,
  PublishResult,
  QueueConfig,
  QueueStats,
  Subscription,
} from '../types.js';
import { publishRecordBytes, type RecordWriter, type ReplayState } from './codec.js';
import { bindingKey, canonicalArgs, Exchange, type Binding } from './exchange.js';
import { BrokerJournal, type JournalStats } from './journal.js';
import {
  badArgument,
  checkMessage,
  checkQueueName,
  checkShortString,
  DEFAULT_PREFETCH,
  isValidName,
  MAX_PREFETCH,
  queueConfigDiff,
  resolveBrokerOptions,
  resolveExchangeConfig,
  resolveQueueConfig,
  type BrokerOptions,
  type ResolvedBrokerOptions,
} from './options.js';
import {
  ADMIT_DROP_HEAD,
  ADMIT_REFUSE,
  Consumer,
  QueueCore,
  type DeathReason,
  type Entry,
  type QueueCounters,
  type QueueEvents,
  type RemoveReason,
  type StoredMessage,
} from './queue-core.js';

/** Deliveries one dispatch pass makes before yielding to I/O. */
export const DISPATCH_BUDGET = 4096;
/** Deliveries one queue makes in a row before the next dirty queue gets a turn. */
export const DISPATCH_PER_QUEUE = 512;
/** A message dead-lettered this many times is dropped instead (dead-letter cycles end). */
export const MAX_DEAD_LETTER_HOPS = 16;
/** Dead-letter cascades (drop-head into a full dead-letter queue ...) deeper than this drop. */
const MAX_DEAD_LETTER_DEPTH = 8;
/** Timers are armed at most this far ahead (and re-armed when they fire). */
const MAX_TIMER_MS = 3_600_000;
/** Journal bytes a durable queue entry is estimated to take in a snapshot, beyond its publish record. */
const ENTRY_OVERHEAD_BYTES = 24;
/** Journal bytes reserved by checkRoom for a declaration or binding. */
const META_RECORD_BYTES = 1024;

/** The built-in exchanges every broker has (RabbitMQ's amq.*); durable, never deleted, never journaled. */
const BUILTIN_EXCHANGES: [string, ExchangeConfig][] = [
  ['amq.direct', { type: 'direct', durable: true }],
  ['amq.fanout', { type: 'fanout', durable: true }],
  ['amq.topic', { type: 'topic', durable: true }],
  ['amq.headers', { type: 'headers', durable: true }],
];

interface BrokerMessage extends StoredMessage {
  /** Estimated journal bytes of this message (0 when not stored in a durable queue). */
  readonly recordBytes: number;
}

class BrokerQueue extends QueueCore {
  /** Journal id of the queue (0 when not durable). */
  qid = 0;
  durable = false;
  readonly bindings = new Map<string, Binding<BrokerQueue>>();
  /** In the broker's dirty list. */
  dirty = false;
  timer: TimerHandle | undefined;
  timerAt = Infinity;
  /** Journal bytes of this queue's live messages (estimate). */
  liveBytes = 0;
}

export interface BrokerStats {
  queues: number;
  exchanges: number;
  bindings: number;
  consumers: number;
  /** publish() calls that stored the message in at least one queue. */
  published: number;
  /** publish() calls routed to no queue. */
  unroutable: number;
  /** Counters summed over every queue, deleted ones included. */
  totals: QueueCounters;
  /** Messages dropped because their dead-letter queue did not exist. */
  deadLetterTargetMissing: number;
  /** Gauges summed over the live queues. */
  ready: number;
  unacked: number;
  delayed: number;
  bytes: number;
  /** null for a memory-only broker. */
  journal: JournalStats | null;
}

/** A Subscription whose cancel can also leave unacked deliveries held. */
export interface BrokerSubscription extends Subscription {
  /** requeueUnacked (default true): unacked deliveries go back to the queue now; false: they stay held until acked, nacked or timed out. */
  cancel(options?: { requeueUnacked?: boolean }): Promise<void>;
}

const RESOLVED: Promise<void> = Promise.resolve();

function closedError(): QueueError {
  return new QueueError('ARCHLAB_QUEUE_CLOSED', 'the broker is closed');
}

function mismatch(kind: string, name: string, field: string, had: unknown, asked: unknown): QueueError {
  return new QueueError(
    'ARCHLAB_QUEUE_DECLARE_MISMATCH',
    `${kind} "${name}" exists with ${field} ${JSON.stringify(had)}; it was declared again with ${JSON.stringify(asked)}. Delete it first or declare it with the same settings`,
    { details: { name, field, existing: had, requested: asked } },
  );
}

function limitError(limit: string, value: number): QueueError {
  return new QueueError('ARCHLAB_QUEUE_LIMIT', `the broker's ${limit} (${value}) is reached`, { details: { limit, value } });
}

function unknownQueue(name: string): QueueError {
  return new QueueError('ARCHLAB_QUEUE_UNKNOWN_QUEUE', `queue "${name}" does not exist (declare it first, or open the broker with autoCreateQueues)`, {
    details: { queue: name },
  });
}

function checkBindingArgs(args: unknown): BindingArgs | undefined {
  if (args === undefined) return undefined;
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw badArgument('binding args must be an object of strings');
  for (const [k, v] of Object.entries(args)) {
    if (v !== undefined && typeof v !== 'string') throw badArgument(`binding arg "${k}" must be a string`, { field: k });
  }
  const m = (args as BindingArgs)['x-match'];
  if (m !== undefined && m !== 'all' && m !== 'any') throw badArgument(`x-match must be 'all' or 'any' (got ${JSON.stringify(m)})`, { field: 'x-match' });
  return args as BindingArgs;
}

function addCounters(into: QueueCounters, c: QueueCounters): void {
  into.published += c.published;
  into.delivered += c.delivered;
  into.acked += c.acked;
  into.redelivered += c.redelivered;
  into.deadLettered += c.deadLettered;
  into.dropped += c.dropped;
}

export class Broker implements BrokerApi {
  private readonly o: ResolvedBrokerOptions;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly journal: BrokerJournal | null;
  private readonly queues = new Map<string, BrokerQueue>();
  private readonly exchanges = new Map<string, Exchange<BrokerQueue>>();
  /** Deliveries in flight, by tag. */
  private readonly unacked = new Map<number, Entry>();
  private readonly events: QueueEvents;
  private readonly coreOptions: { ttlSweepIntervalMs: number; ttlSweepMaxMessages: number };
  private readonly idPrefix: string;
  private tagSeq = 0;
  private msgSeq = 1;
  private nextQid = 1;
  private consumerSeq = 0;
  private consumers = 0;
  private bindingCount = 0;
  private userExchanges = 0;
  private published = 0;
  private unroutable = 0;
  private deadLetterTargetMissing = 0;
  private deadLetterDepth = 0;
  private durableLiveBytes = 0;
  private readonly retired: QueueCounters = { published: 0, delivered: 0, acked: 0, redelivered: 0, deadLettered: 0, dropped: 0 };
  private dirty: BrokerQueue[] = [];
  private dispatchScheduled = false;
  private dispatching = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(o: ResolvedBrokerOptions, clock: Clock, random: Random, logger: Logger | undefined, journal: BrokerJournal | null) {
    this.o = o;
    this.clock = clock;
    this.logger = logger;
    this.journal = journal;
    this.coreOptions = { ttlSweepIntervalMs: o.ttlSweepIntervalMs, ttlSweepMaxMessages: o.ttlSweepMaxMessages };
    this.idPrefix = `${random.uint32().toString(16).padStart(8, '0')}${random.uint32().toString(16).padStart(8, '0')}-`;
    for (const [name, config] of BUILTIN_EXCHANGES) this.exchanges.set(name, new Exchange<BrokerQueue>(name, config));
    this.events = {
      delivering: (e, c) => this.onDelivering(e, c),
      released: (e) => {
        this.unacked.delete(e.tag);
      },
      removed: (e, reason) => this.onRemoved(e, reason),
    };
    journal?.setSource({ liveBytes: () => this.durableLiveBytes, snapshot: (w) => this.snapshot(w) });
  }

  /** Opens a broker: with a dataDir, takes its lock and recovers every durable exchange, queue, binding and message. */
  static async open(options: BrokerOptions): Promise<Broker> {
    const o = resolveBrokerOptions(options);
    const clock = options.clock ?? new SystemClock();
    let journal: BrokerJournal | null = null;
    let state: ReplayState | undefined;
    if (o.dataDir !== null) {
      ({ journal, state } = await BrokerJournal.open({
        dataDir: o.dataDir,
        fsync: o.fsync,
        fsyncIntervalMs: o.fsyncIntervalMs,
        maxDiskBytes: o.maxDiskBytes,
        compactMinBytes: o.compactMinBytes,
        clock,
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.journalIo ? { io: options.journalIo } : {}),
      }));
    }
    const broker = new Broker(o, clock, options.random ?? new SystemRandom(), options.logger, journal);
    if (state !== undefined) broker.restore(state);
    return broker;
  }

  // -- exchanges ----------------------------------------------------------------------------------

  async declareExchange(name: string, config?: Partial<ExchangeConfig>): Promise<void> {
    this.checkOpen();
    if (name === '') throw badArgument('the default exchange "" always exists and cannot be declared', { name });
    checkQueueName(name, 'exchange');
    const cfg = resolveExchangeConfig(config);
    const ex = this.exchanges.get(name);
    if (ex !== undefined) {
      if (ex.type !== cfg.type) throw mismatch('exchange', name, 'type', ex.type, cfg.type);
      if (ex.durable !== cfg.durable) throw mismatch('exchange', name, 'durable', ex.durable, cfg.durable);
      return;
    }
    if (this.userExchanges >= this.o.maxExchanges) throw limitError('maxExchanges', this.o.maxExchanges);
    const journal = cfg.durable ? this.journal : null;
    journal?.checkRoom(META_RECORD_BYTES);
    this.exchanges.set(name, new Exchange<BrokerQueue>(name, cfg));
    this.userExchanges++;
    if (journal !== null) {
      journal.writer.exchangeDeclare(name, cfg);
      await journal.durable(true);
    }
  }

  async deleteExchange(name: string): Promise<void> {
    this.checkOpen();
    if (name === '' || BUILTIN_EXCHANGES.some(([n]) => n === name)) throw badArgument(`the built-in exchange "${name}" cannot be deleted`, { name });
    const ex = this.exchanges.get(name);
    if (ex === undefined) return;
    for (const b of ex.bindings) {
      b.queue.bindings.delete(b.key);
      this.bindingCount--;
    }
    this.exchanges.delete(name);
    this.userExchanges--;
    if (ex.durable && this.journal !== null) {
      this.journal.writer.exchangeDelete(name);
      await this.journal.durable(true);
    }
  }

  // -- queues -------------------------------------------------------------------------------------

  async declareQueue(name: string, config?: Partial<QueueConfig>): Promise<QueueStats> {
    this.checkOpen();
    checkQueueName(name);
    const cfg = resolveQueueConfig(config, this.o.defaults);
    const existing = this.queues.get(name);
    if (existing !== undefined) {
      const field = queueConfigDiff(existing.config, cfg);
      if (field !== undefined) throw mismatch('queue', name, field, existing.config[field], cfg[field]);
      return this.statsOf(existing);
    }
    const q = this.createQueue(name, cfg);
    if (q.durable) await this.journal!.durable(true);
    return this.statsOf(q);
  }

  async deleteQueue(name: string): Promise<void> {
    this.checkOpen();
    const q = this.queues.get(name);
    if (q === undefined) return;
    for (const b of q.bindings.values()) {
      this.exchanges.get(b.exchange)?.remove(b);
      this.bindingCount--;
    }
    q.bindings.clear();
    this.consumers -= q.consumerCount;
    q.drain();
    q.timer?.cancel();
    q.timer = undefined;
    addCounters(this.retired, q.counters);
    this.durableLiveBytes -= q.liveBytes;
    this.queues.delete(name);
    if (q.durable) {
      this.journal!.writer.queueDelete(q.qid);
      await this.journal!.durable(true);
    }
  }

  async purgeQueue(name: string): Promise<number> {
    this.checkOpen();
    const q = await this.queueFor(name);
    const n = q.purge();
    if (q.durable && n > 0) await this.journal!.durable();
    return n;
  }

  async queueStats(name: string): Promise<QueueStats> {
    this.checkOpen();
    return this.statsOf(await this.queueFor(name));
  }

  async listQueues(): Promise<QueueStats[]> {
    this.checkOpen();
    return [...this.queues.values()].map((q) => this.statsOf(q));
  }

  // -- bindings -----------------------------------------------------------------------------------

  async bind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void> {
    this.checkOpen();
    if (exchange === '') throw badArgument('the default exchange "" cannot be bound to: it routes to the queue named by the routing key', { exchange });
    checkShortString('routingKey', routingKey);
    const checkedArgs = checkBindingArgs(args);
    const ex = this.exchangeFor(exchange);
    const q = await this.queueFor(queue);
    const { args: canon, json } = canonicalArgs(checkedArgs);
    const key = bindingKey(exchange, routingKey, json);
    if (q.bindings.has(key)) return;
    if (this.bindingCount >= this.o.maxBindings) throw limitError('maxBindings', this.o.maxBindings);
    const journal = ex.durable && q.durable ? this.journal : null;
    journal?.checkRoom(META_RECORD_BYTES);
    const b: Binding<BrokerQueue> = { queue: q, exchange, routingKey, args: canon, key };
    ex.add(b);
    q.bindings.set(key, b);
    this.bindingCount++;
    if (journal !== null) {
      journal.writer.binding(true, { queue: q.name, exchange, routingKey, args: canon });
      await journal.durable(true);
    }
  }

  async unbind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void> {
    this.checkOpen();
    if (exchange === '') throw badArgument('the default exchange "" has no bindings', { exchange });
    checkShortString('routingKey', routingKey);
    const checkedArgs = checkBindingArgs(args);
    const ex = this.exchangeFor(exchange);
    const q = this.queues.get(queue);
    if (q === undefined) throw unknownQueue(queue);
    const { args: canon, json } = canonicalArgs(checkedArgs);
    const b = q.bindings.get(bindingKey(exchange, routingKey, json));
    if (b === undefined) return;
    ex.remove(b);
    q.bindings.delete(b.key);
    this.bindingCount--;
    if (ex.durable && q.durable) {
      this.journal!.writer.binding(false, { queue: q.name, exchange, routingKey, args: canon });
      await this.journal!.durable(true);
    }
  }

  // -- publish ------------------------------------------------------------------------------------

  publish(exchange: string, routingKey: string, message: PublishMessage, options?: { mandatory?: boolean }): Promise<PublishResult> {
    try {
      return this.publishSync(exchange, routingKey, message, options?.mandatory === true);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private publishSync(exchange: string, routingKey: string, message: PublishMessage, mandatory: boolean): Promise<PublishResult> {
    if (this.closed) throw closedError();
    const m = checkMessage(message, this.o.maxMessageBytes);
    if (typeof routingKey !== 'string' || routingKey.length > 85) checkShortString('routingKey', routingKey);
    let targets: readonly BrokerQueue[];
    let created = false;
    if (exchange === '') {
      let q = this.queues.get(routingKey);
      if (q === undefined && this.o.autoCreateQueues && isValidName(routingKey)) {
        q = this.createQueue(routingKey, resolveQueueConfig(undefined, this.o.defaults));
        created = q.durable;
      }
      targets = q === undefined ? [] : [q];
    } else {
      const ex = this.exchanges.get(exchange);
      if (ex === undefined) throw this.unknownExchange(exchange);
      targets = ex.route(routingKey, m.headers);
    }
    if (targets.length === 0) {
      this.unroutable++;
      if (mandatory) {
        throw new QueueError('ARCHLAB_QUEUE_UNROUTABLE', `message to exchange "${exchange}" with routing key "${routingKey}" is unroutable: no queue is bound for it`, {
          details: { exchange, routingKey },
        });
      }
      return Promise.resolve({ routed: 0 });
    }
    const len = m.body.length;
    let durableCount = 0;
    let dropHead = false;
    for (const q of targets) {
      const a = q.admit(len);
      if (a === ADMIT_REFUSE) {
        throw new QueueError('ARCHLAB_QUEUE_FULL', `queue "${q.name}" is full (maxLength ${q.config.maxLength}, maxLengthBytes ${q.config.maxLengthBytes}, overflow ${q.config.overflow}); nothing was stored`, {
          details: { queue: q.name, length: q.length, bytes: q.bytes, maxLength: q.config.maxLength, maxLengthBytes: q.config.maxLengthBytes },
        });
      }
      if (a === ADMIT_DROP_HEAD) dropHead = true;
      if (q.durable) durableCount++;
    }
    const now = this.clock.now();
    const seq = this.msgSeq;
    const messageId = m.messageId ?? this.idPrefix + seq;
    const recordBytes = durableCount > 0 ? publishRecordBytes(messageId, m.body, m.headers, durableCount) : 0;
    if (durableCount > 0) this.journal!.checkRoom(recordBytes);
    this.msgSeq++;
    const msg: BrokerMessage = {
      seq,
      messageId,
      body: m.body,
      headers: m.headers,
      priority: m.priority,
      publishedAt: now,
      enqueuedAt: now,
      ttlMs: m.ttlMs,
      delayMs: m.delayMs,
      recordBytes,
    };
    if (durableCount > 0) {
      let qids: number[];
      if (targets.length === 1) qids = [targets[0]!.qid];
      else {
        qids = [];
        for (const q of targets) if (q.durable) qids.push(q.qid);
      }
      this.journal!.writer.publish(msg, qids, recordBytes);
    }
    for (const q of targets) {
      if (dropHead) q.makeRoom(len);
      q.enqueue(msg, now);
      if (q.durable) this.addLive(q, msg.recordBytes);
      this.markDirty(q);
    }
    this.published++;
    const result: PublishResult = { routed: targets.length };
    if (durableCount === 0 && !created) return Promise.resolve(result);
    return this.journal!.durable(created).then(() => result);
  }

  // -- consume, get, ack, nack ---------------------------------------------------------------------

  async consume(queue: string, options: ConsumeOptions): Promise<BrokerSubscription> {
    this.checkOpen();
    if (typeof options !== 'object' || options === null || typeof options.onDelivery !== 'function') {
      throw badArgument('consume needs options with an onDelivery function', { field: 'onDelivery' });
    }
    const prefetch = options.prefetch ?? DEFAULT_PREFETCH;
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > MAX_PREFETCH) {
      throw badArgument(`prefetch must be an integer from 1 to ${MAX_PREFETCH} (got ${JSON.stringify(prefetch)})`, { field: 'prefetch', value: prefetch });
    }
    const q = await this.queueFor(queue);
    if (this.consumers >= this.o.maxConsumers) throw limitError('maxConsumers', this.o.maxConsumers);
    const c = new Consumer(`ctag-${++this.consumerSeq}`, prefetch, options.onDelivery);
    q.addConsumer(c);
    this.consumers++;
    this.markDirty(q);
    return {
      consumerTag: c.tag,
      cancel: (opts?: { requeueUnacked?: boolean }): Promise<void> => {
        if (c.cancelled || this.closed) return RESOLVED;
        q.cancelConsumer(c, opts?.requeueUnacked ?? true);
        this.consumers--;
        this.markDirty(q);
        return RESOLVED;
      },
    };
  }

  async get(queue: string): Promise<Delivery | null> {
    this.checkOpen();
    const q = await this.queueFor(queue);
    const e = q.get(this.clock.now());
    this.markDirty(q);
    return e === null ? null : this.toDelivery(e);
  }

  ack(deliveryTag: number): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    const e = this.unacked.get(deliveryTag);
    if (e === undefined) return Promise.reject(this.unknownDelivery(deliveryTag));
    this.unacked.delete(deliveryTag);
    const q = e.queue as BrokerQueue;
    q.ack(e);
    this.markDirty(q);
    return RESOLVED;
  }

  nack(deliveryTag: number, options?: { requeue?: boolean }): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    const e = this.unacked.get(deliveryTag);
    if (e === undefined) return Promise.reject(this.unknownDelivery(deliveryTag));
    this.unacked.delete(deliveryTag);
    const q = e.queue as BrokerQueue;
    q.nack(e, options?.requeue ?? true);
    this.markDirty(q);
    return RESOLVED;
  }

  // -- stats and lifecycle --------------------------------------------------------------------------

  /** Counters and gauges for metrics, synchronously. */
  stats(): BrokerStats {
    const totals = { ...this.retired };
    let ready = 0;
    let unacked = 0;
    let delayed = 0;
    let bytes = 0;
    for (const q of this.queues.values()) {
      addCounters(totals, q.counters);
      ready += q.ready;
      unacked += q.unacked;
      delayed += q.delayedCount;
      bytes += q.bytes;
    }
    return {
      queues: this.queues.size,
      exchanges: this.userExchanges,
      bindings: this.bindingCount,
      consumers: this.consumers,
      published: this.published,
      unroutable: this.unroutable,
      totals,
      deadLetterTargetMissing: this.deadLetterTargetMissing,
      ready,
      unacked,
      delayed,
      bytes,
      journal: this.journal?.stats() ?? null,
    };
  }

  /** Stops deliveries and timers, writes and fsyncs what is pending, releases the data dir. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const q of this.queues.values()) {
        q.timer?.cancel();
        q.timer = undefined;
      }
      await this.journal?.close();
    })();
    return this.closing;
  }

  // -- internals: queues and exchanges ---------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw closedError();
  }

  private createQueue(name: string, cfg: QueueConfig): BrokerQueue {
    if (this.queues.size >= this.o.maxQueues) throw limitError('maxQueues', this.o.maxQueues);
    const durable = cfg.durable && this.journal !== null;
    if (durable) this.journal!.checkRoom(META_RECORD_BYTES);
    const q = new BrokerQueue(name, cfg, this.events, this.coreOptions);
    if (durable) {
      q.durable = true;
      q.qid = this.nextQid++;
      this.journal!.writer.queueDeclare(q.qid, name, cfg);
    }
    this.queues.set(name, q);
    return q;
  }

  /** The queue named, declared with the defaults when missing and autoCreateQueues is on. */
  private async queueFor(name: string): Promise<BrokerQueue> {
    const q = this.queues.get(name);
    if (q !== undefined) return q;
    checkQueueName(name);
    if (!this.o.autoCreateQueues) throw unknownQueue(name);
    const created = this.createQueue(name, resolveQueueConfig(undefined, this.o.defaults));
    if (created.durable) await this.journal!.durable(true);
    return created;
  }

  private exchangeFor(name: string): Exchange<BrokerQueue> {
    const ex = this.exchanges.get(name);
    if (ex === undefined) throw this.unknownExchange(name);
    return ex;
  }

  private unknownExchange(name: string): QueueError {
    return new QueueError('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE', `exchange "${name}" does not exist (declare it first)`, { details: { exchange: name } });
  }

  private unknownDelivery(tag: number): QueueError {
    return new QueueError('ARCHLAB_QUEUE_UNKNOWN_DELIVERY', `delivery tag ${JSON.stringify(tag)} is unknown or already settled (acked, nacked, timed out, or requeued when its consumer was cancelled)`, {
      details: { deliveryTag: tag },
    });
  }

  private statsOf(q: BrokerQueue): QueueStats {
    return {
      name: q.name,
      config: { ...q.config },
      ready: q.ready,
      unacked: q.unacked,
      delayed: q.delayedCount,
      bytes: q.bytes,
      consumers: q.consumerCount,
      ...q.counters,
    };
  }

  private addLive(q: BrokerQueue, recordBytes: number): void {
    const n = recordBytes + ENTRY_OVERHEAD_BYTES;
    q.liveBytes += n;
    this.durableLiveBytes += n;
  }

  // -- internals: events from the queue cores ------------------------------------------------------

  private toDelivery(e: Entry): Delivery {
    const msg = e.msg;
    return {
      deliveryTag: e.tag,
      queue: e.queue.name,
      messageId: msg.messageId,
      body: msg.body,
      headers: msg.headers as Record<string, string>,
      priority: msg.priority,
      deliveryCount: e.deliveryCount,
      redelivered: e.redelivered,
      publishedAt: msg.publishedAt,
    };
  }

  private onDelivering(e: Entry, c: Consumer | null): void {
    const tag = ++this.tagSeq;
    e.tag = tag;
    this.unacked.set(tag, e);
    const q = e.queue as BrokerQueue;
    if (q.durable) {
      this.journal!.writer.deliver(q.qid, e.msg.seq, e.deliveryCount);
      this.journal!.kick();
    }
    if (c === null) return;
    try {
      c.onDelivery(this.toDelivery(e));
    } catch (err) {
      this.logger?.warn({ err, queue: q.name, consumerTag: c.tag, deliveryTag: tag }, 'broker: onDelivery threw; the delivery stays unacked until its visibility timeout');
    }
  }

  private onRemoved(e: Entry, reason: RemoveReason): void {
    const q = e.queue as BrokerQueue;
    if (q.durable) {
      this.journal!.writer.settle(q.qid, e.msg.seq);
      this.journal!.kick();
      const n = (e.msg as BrokerMessage).recordBytes + ENTRY_OVERHEAD_BYTES;
      q.liveBytes -= n;
      this.durableLiveBytes -= n;
    }
    if (reason === 'ack' || reason === 'purge') return;
    this.deadLetter(q, e, reason);
  }

  private deadLetter(q: BrokerQueue, e: Entry, reason: DeathReason): void {
    const target = q.config.deadLetterQueue;
    if (target === null) {
      q.counters.dropped++;
      return;
    }
    const dlq = this.queues.get(target);
    if (dlq === undefined) this.deadLetterTargetMissing++;
    const prev = Number(e.msg.headers['x-death-count'] ?? 0);
    const hops = Number.isInteger(prev) && prev > 0 ? prev : 0;
    if (dlq === undefined || dlq === q || hops >= MAX_DEAD_LETTER_HOPS || this.deadLetterDepth >= MAX_DEAD_LETTER_DEPTH) {
      q.counters.dropped++;
      return;
    }
    const len = e.msg.body.length;
    const admit = dlq.admit(len);
    if (admit === ADMIT_REFUSE) {
      q.counters.dropped++;
      return;
    }
    const now = this.clock.now();
    const headers = Object.freeze({ ...e.msg.headers, 'x-death-reason': reason, 'x-death-queue': q.name, 'x-death-count': String(hops + 1) });
    const recordBytes = dlq.durable ? publishRecordBytes(e.msg.messageId, e.msg.body, headers, 1) : 0;
    const msg: BrokerMessage = {
      seq: this.msgSeq++,
      messageId: e.msg.messageId,
      body: e.msg.body,
      headers,
      priority: e.msg.priority,
      publishedAt: e.msg.publishedAt,
      enqueuedAt: now,
      ttlMs: -1,
      delayMs: 0,
      recordBytes,
    };
    if (dlq.durable) {
      // Not refused for disk space: the message is already out of its queue, and losing it would be worse.
      this.journal!.writer.publish(msg, [dlq.qid], recordBytes);
      this.journal!.kick();
    }
    this.deadLetterDepth++;
    try {
      if (admit === ADMIT_DROP_HEAD) dlq.makeRoom(len);
    } finally {
      this.deadLetterDepth--;
    }
    dlq.enqueue(msg, now);
    if (dlq.durable) this.addLive(dlq, msg.recordBytes);
    q.counters.deadLettered++;
    this.markDirty(dlq);
  }

  // -- internals: dispatch and timers ------------------------------------------------------------------

  private markDirty(q: BrokerQueue): void {
    if (!q.dirty) {
      q.dirty = true;
      this.dirty.push(q);
    }
    if (!this.dispatchScheduled && !this.dispatching) {
      this.dispatchScheduled = true;
      queueMicrotask(this.runDispatch);
    }
  }

  private readonly runDispatch = (): void => {
    this.dispatchScheduled = false;
    if (this.closed) return;
    this.dispatching = true;
    let budget = DISPATCH_BUDGET;
    try {
      while (this.dirty.length > 0 && budget > 0) {
        const list = this.dirty;
        this.dirty = [];
        for (let i = 0; i < list.length; i++) {
          const q = list[i]!;
          if (budget <= 0) {
            // Out of budget: the rest stay dirty for the next pass.
            for (let j = i; j < list.length; j++) this.dirty.push(list[j]!);
            break;
          }
          q.dirty = false;
          if (q.deleted) continue;
          const limit = Math.min(budget, DISPATCH_PER_QUEUE);
          const n = q.dispatch(this.clock.now(), limit);
          budget -= n;
          if (n === limit && !q.dirty) {
            q.dirty = true;
            this.dirty.push(q);
          }
          this.armTimer(q);
        }
      }
    } finally {
      this.dispatching = false;
    }
    if (this.dirty.length > 0 && !this.dispatchScheduled) {
      this.dispatchScheduled = true;
      setImmediate(this.runDispatch);
    }
  };

  private armTimer(q: BrokerQueue): void {
    const at = q.nextWakeAt();
    if (at === Infinity) return;
    const now = this.clock.now();
    const fireAt = Math.min(Math.max(at, now), now + MAX_TIMER_MS);
    if (q.timer !== undefined && q.timerAt <= fireAt) return;
    q.timer?.cancel();
    q.timerAt = fireAt;
    q.timer = this.clock.setTimer(fireAt - now, () => {
      q.timer = undefined;
      q.timerAt = Infinity;
      if (q.deleted || this.closed) return;
      q.tick(this.clock.now());
      // Re-armed here, not only after the dispatch pass, so the next deadline is set from the time it fired.
      this.armTimer(q);
      this.markDirty(q);
    });
  }

  // -- internals: recovery and snapshot ------------------------------------------------------------------

  private restore(state: ReplayState): void {
    const now = this.clock.now();
    for (const [name, cfg] of state.exchanges) {
      if (this.exchanges.has(name)) continue;
      this.exchanges.set(name, new Exchange<BrokerQueue>(name, cfg));
      this.userExchanges++;
    }
    const byQid = new Map<number, BrokerQueue>();
    for (const rq of [...state.queues.values()].sort((a, b) => a.qid - b.qid)) {
      const q = new BrokerQueue(rq.name, resolveQueueConfig(rq.config), this.events, this.coreOptions);
      q.durable = true;
      q.qid = rq.qid;
      this.queues.set(rq.name, q);
      byQid.set(rq.qid, q);
    }
    this.nextQid = state.nextQid;
    this.msgSeq = state.nextSeq;
    for (const b of state.bindings.values()) {
      const q = this.queues.get(b.queue);
      const ex = this.exchanges.get(b.exchange);
      if (q === undefined || ex === undefined) continue;
      const { args, json } = canonicalArgs(b.args);
      const key = bindingKey(b.exchange, b.routingKey, json);
      if (q.bindings.has(key)) continue;
      const binding: Binding<BrokerQueue> = { queue: q, exchange: b.exchange, routingKey: b.routingKey, args, key };
      ex.add(binding);
      q.bindings.set(key, binding);
      this.bindingCount++;
    }
    for (const m of state.messages.values()) {
      let live = 0;
      for (const qid of m.queues.keys()) if (byQid.has(qid)) live++;
      if (live === 0) continue;
      const headers = Object.freeze(m.headers);
      const msg: BrokerMessage = {
        seq: m.seq,
        messageId: m.messageId,
        body: m.body,
        headers,
        priority: m.priority,
        publishedAt: m.publishedAt,
        enqueuedAt: m.enqueuedAt,
        ttlMs: m.ttlMs,
        delayMs: m.delayMs,
        recordBytes: publishRecordBytes(m.messageId, m.body, headers, live),
      };
      for (const [qid, count] of m.queues) {
        const q = byQid.get(qid);
        if (q === undefined) continue;
        q.restore(msg, now, count);
        this.addLive(q, msg.recordBytes);
      }
    }
    for (const q of this.queues.values()) this.markDirty(q);
    this.logger?.info({ queues: this.queues.size, exchanges: this.userExchanges, bindings: this.bindingCount, messages: state.messages.size, records: state.records }, 'broker: recovered from journal');
  }

  /** The whole durable state as journal records, for compaction. */
  private snapshot(w: RecordWriter): void {
    w.highwater(this.msgSeq, this.nextQid);
    for (const ex of this.exchanges.values()) {
      if (ex.durable && !BUILTIN_EXCHANGES.some(([n]) => n === ex.name)) w.exchangeDeclare(ex.name, ex.config);
    }
    const groups = new Map<BrokerMessage, Entry[]>();
    for (const q of this.queues.values()) {
      if (!q.durable) continue;
      w.queueDeclare(q.qid, q.name, q.config);
      for (const b of q.bindings.values()) {
        if (this.exchanges.get(b.exchange)?.durable) w.binding(true, { queue: q.name, exchange: b.exchange, routingKey: b.routingKey, args: { ...b.args } });
      }
      for (const e of q.entries()) {
        const msg = e.msg as BrokerMessage;
        const list = groups.get(msg);
        if (list === undefined) groups.set(msg, [e]);
        else list.push(e);
      }
    }
    const msgs = [...groups.keys()].sort((a, b) => a.seq - b.seq);
    for (const msg of msgs) {
      const entries = groups.get(msg)!;
      const qids = entries.map((e) => (e.queue as BrokerQueue).qid);
      w.publish(msg, qids, publishRecordBytes(msg.messageId, msg.body, msg.headers, qids.length));
      for (const e of entries) if (e.deliveryCount > 0) w.deliver((e.queue as BrokerQueue).qid, msg.seq, e.deliveryCount);
    }
  }
}
