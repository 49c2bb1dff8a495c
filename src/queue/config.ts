/**
 * `archlab queue --config queue.yaml`: the queue server's file. The house vocabulary (`listeners`,
 * `admin`, `log`, `metrics`, `limits`, `timeouts`) means what it means in every archlab server; `log`
 * is logging, as everywhere, so the Kafka-style log's settings live under `topics` and the
 * RabbitMQ-style broker's under `broker`. Durations and sizes take units (`5s`, `64MiB`) and come
 * out as numbers with the unit in the name. Relative paths are relative to the file.
 *
 * ```yaml
 * listeners: [{ port: 9092 }]            # the binary protocol (docs/queue-protocol.md)
 * gateway: { port: 9080 }                # HTTP + SSE
 * admin: { port: 9091 }                  # /metrics, /healthz
 * dataDir: data/queue                    # default .archlab/queue under the working directory
 * topics: { declare: [{ name: orders, partitions: 6 }] }
 * broker:
 *   exchanges: [{ name: events, type: topic }]
 *   queues: [{ name: email }]
 *   bindings: [{ queue: email, exchange: events, routingKey: order.placed }]
 * ```
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { loadConfig, parseConfig, zAdmin, zLimits, zListener, zLog, zMetrics, zTimeouts } from '../core/config.js';
import { zDuration, zSize } from '../core/units.js';
import type { CleanupPolicy, ExchangeType, OverflowPolicy, QueueConfig, TopicConfig } from './types.js';

/** Where data lives when neither the file nor the command line says: `.archlab/queue` under the working directory. */
export const DEFAULT_DATA_DIR = '.archlab/queue';

/** Topic, queue and exchange names as the engines accept them (src/queue/errors.ts checkName). */
const zName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,200}$/, 'expected 1-200 characters of A-Z a-z 0-9 . _ -')
  .refine((s) => !s.startsWith('__'), 'names starting with "__" are reserved');

/** A size, or `word` (e.g. "unlimited") for -1. Not a z.union, so a bad size says what is wrong with it. */
function zSizeOr(word: string, bounds: { minBytes?: number } = {}) {
  return z.unknown().transform((v, ctx): number => {
    if (v === word) return -1;
    const r = zSize(undefined, bounds).safeParse(v);
    if (r.success) return r.data;
    ctx.addIssue({ code: 'custom', input: v, message: `expected "${word}" or ${r.error.issues[0]?.message ?? 'a size'}` });
    return z.NEVER;
  });
}

function zDurationOr(word: string, bounds: { minMs?: number } = {}) {
  return z.unknown().transform((v, ctx): number => {
    if (v === word) return -1;
    const r = zDuration(undefined, bounds).safeParse(v);
    if (r.success) return r.data;
    ctx.addIssue({ code: 'custom', input: v, message: `expected "${word}" or ${r.error.issues[0]?.message ?? 'a duration'}` });
    return z.NEVER;
  });
}

/** Topic settings; anything left out takes the log's default (src/queue/types.ts TopicConfig). */
const topicSettings = {
  /** Partitions, 1..1024. Log default 1. */
  partitions: z.int().min(1).max(1024).optional(),
  /** Roll a new segment at this size. Log default 64MiB. -> segmentBytes */
  segmentSize: zSize(undefined, { minBytes: 1024 }).optional(),
  /** Roll a new segment at this age. Log default 7d. -> segmentMs */
  segmentAge: zDuration(undefined, { minMs: 1 }).optional(),
  /** Delete old segments while a partition is over this size; "unlimited". Log default unlimited. -> retentionBytes */
  retentionSize: zSizeOr('unlimited').optional(),
  /** Delete segments whose newest record is older than this; "forever". Log default 7d. -> retentionMs */
  retentionAge: zDurationOr('forever', { minMs: 1 }).optional(),
  /** delete, compact, or "compact,delete". Log default delete. */
  cleanupPolicy: z.enum(['delete', 'compact', 'compact,delete']).optional(),
  /** How long a tombstone survives compaction. Log default 1d. -> deleteRetentionMs */
  deleteRetention: zDuration(undefined).optional(),
  /** Largest record batch accepted. Log default 1MiB. -> maxMessageBytes */
  maxMessage: zSize(undefined, { minBytes: 64 }).optional(),
};

type TopicSettingsIn = { [K in keyof typeof topicSettings]?: z.output<(typeof topicSettings)[K]> };

function toTopicConfig(t: TopicSettingsIn): Partial<TopicConfig> {
  const out: Partial<TopicConfig> = {};
  if (t.partitions !== undefined) out.partitions = t.partitions;
  if (t.segmentSize !== undefined) out.segmentBytes = t.segmentSize;
  if (t.segmentAge !== undefined) out.segmentMs = t.segmentAge;
  if (t.retentionSize !== undefined) out.retentionBytes = t.retentionSize;
  if (t.retentionAge !== undefined) out.retentionMs = t.retentionAge;
  if (t.cleanupPolicy !== undefined) out.cleanupPolicy = t.cleanupPolicy as CleanupPolicy;
  if (t.deleteRetention !== undefined) out.deleteRetentionMs = t.deleteRetention;
  if (t.maxMessage !== undefined) out.maxMessageBytes = t.maxMessage;
  return out;
}

const zTopics = z
  .strictObject({
    /** Create a topic (with `defaults`) on the first produce or fetch that names it. Default false. */
    autoCreate: z.boolean().default(false),
    /** Settings for topics created without their own. */
    defaults: z.strictObject(topicSettings).prefault({}),
    /** Topics created at start if missing (an existing topic keeps its settings). Default none. */
    declare: z
      .array(z.strictObject({ name: zName, ...topicSettings }))
      .max(1000)
      .default([]),
    /** Refuse appends (ARCHLAB_QUEUE_DISK_FULL) once the log's files reach this; "unlimited". Default unlimited. -> maxDiskBytes */
    maxDisk: zSizeOr('unlimited', { minBytes: 1024 * 1024 }).prefault('unlimited'),
    /** Topics at most. Default 1000. */
    maxTopics: z.int().min(1).max(100_000).default(1000),
    /** How often retention and compaction run. Default 30s. -> cleanerIntervalMs */
    cleanerInterval: zDuration('30s', { minMs: 10 }),
  })
  .superRefine((t, ctx) => {
    const seen = new Set<string>();
    t.declare.forEach((d, i) => {
      if (seen.has(d.name)) ctx.addIssue({ code: 'custom', path: ['declare', i, 'name'], input: d.name, message: `topic "${d.name}" is declared twice` });
      seen.add(d.name);
    });
  })
  .transform((t) => ({
    autoCreate: t.autoCreate,
    defaults: toTopicConfig(t.defaults),
    declare: t.declare.map(({ name, ...rest }) => ({ name, config: toTopicConfig(rest) })),
    maxDiskBytes: t.maxDisk === -1 ? undefined : t.maxDisk,
    maxTopics: t.maxTopics,
    cleanerIntervalMs: t.cleanerInterval,
  }))
  .prefault({});

/** Queue settings; anything left out takes the broker's default (src/queue/types.ts QueueConfig). */
const queueSettings = {
  /** Kept on disk across restarts. Broker default true. */
  durable: z.boolean().optional(),
  /** Ready + unacked messages at most. Broker default 100000. */
  maxLength: z.int().min(1).max(1_000_000_000).optional(),
  /** Bytes of bodies held at most. Broker default 256MiB. -> maxLengthBytes */
  maxLengthSize: zSize(undefined, { minBytes: 1 }).optional(),
  /** reject-publish (ARCHLAB_QUEUE_FULL) or drop-head (oldest to the dead-letter queue). Broker default reject-publish. */
  overflow: z.enum(['reject-publish', 'drop-head']).optional(),
  /** A message ready longer than this is dead-lettered; "none". Broker default none. -> messageTtlMs */
  messageTtl: zDurationOr('none', { minMs: 1 }).optional(),
  /** A delivery not settled within this is redelivered. Broker default 30s. -> visibilityTimeoutMs */
  visibilityTimeout: zDuration(undefined, { minMs: 1 }).optional(),
  /** Dead-letter after this many deliveries; 0 = unlimited. Broker default 0. */
  maxDeliveries: z.int().min(0).max(1_000_000).optional(),
  /** Queue that receives dead letters, or null. Broker default null. */
  deadLetterQueue: zName.nullable().optional(),
  /** Priorities 0..maxPriority (higher first), at most 10; 0 = none. Broker default 0. */
  maxPriority: z.int().min(0).max(10).optional(),
};

type QueueSettingsIn = { [K in keyof typeof queueSettings]?: z.output<(typeof queueSettings)[K]> };

function toQueueConfig(q: QueueSettingsIn): Partial<QueueConfig> {
  const out: Partial<QueueConfig> = {};
  if (q.durable !== undefined) out.durable = q.durable;
  if (q.maxLength !== undefined) out.maxLength = q.maxLength;
  if (q.maxLengthSize !== undefined) out.maxLengthBytes = q.maxLengthSize;
  if (q.overflow !== undefined) out.overflow = q.overflow as OverflowPolicy;
  if (q.messageTtl !== undefined) out.messageTtlMs = q.messageTtl;
  if (q.visibilityTimeout !== undefined) out.visibilityTimeoutMs = q.visibilityTimeout;
  if (q.maxDeliveries !== undefined) out.maxDeliveries = q.maxDeliveries;
  if (q.deadLetterQueue !== undefined) out.deadLetterQueue = q.deadLetterQueue;
  if (q.maxPriority !== undefined) out.maxPriority = q.maxPriority;
  return out;
}

const EXCHANGE_TYPES = ['direct', 'topic', 'fanout', 'headers'] as const;

const zBroker = z
  .strictObject({
    /** always (a publish resolves after an fsync covering it, group-committed), interval, never. Default always. */
    fsync: z.enum(['always', 'interval', 'never']).default('always'),
    /** With fsync: interval, how often. Default 200ms. -> fsyncIntervalMs */
    fsyncInterval: zDuration('200ms', { minMs: 1, maxMs: 60_000 }),
    /** Create a queue (with `defaults`) when a consume or get names one that is missing. Default false. */
    autoCreateQueues: z.boolean().default(false),
    /** Queues at most. Default 10000. */
    maxQueues: z.int().min(1).max(1_000_000).default(10_000),
    /** Largest message body. Default 1MiB. -> maxMessageBytes */
    maxMessage: zSize('1MiB', { minBytes: 64 }),
    /** Refuse publishes (ARCHLAB_QUEUE_DISK_FULL) once the broker's files reach this; "unlimited". Default unlimited. -> maxDiskBytes */
    maxDisk: zSizeOr('unlimited', { minBytes: 1024 * 1024 }).prefault('unlimited'),
    /** Settings for queues declared without their own. */
    defaults: z.strictObject(queueSettings).prefault({}),
    /** Exchanges declared at start. Default none (the default exchange "" always exists). */
    exchanges: z
      .array(
        z.strictObject({
          name: zName,
          /** direct, topic, fanout or headers. Required. */
          type: z.enum(EXCHANGE_TYPES),
          /** Default true. */
          durable: z.boolean().default(true),
        }),
      )
      .max(10_000)
      .default([]),
    /** Queues declared at start. Default none. */
    queues: z
      .array(z.strictObject({ name: zName, ...queueSettings }))
      .max(10_000)
      .default([]),
    /** Bindings made at start: messages published to `exchange` matching `routingKey` (and `args`, for headers exchanges) go to `queue`. */
    bindings: z
      .array(
        z.strictObject({
          queue: zName,
          exchange: zName,
          /** Default "" (fanout and headers exchanges ignore it). */
          routingKey: z.string().max(255).default(''),
          /** Headers exchanges: header values to match, and "x-match": all | any. */
          args: z.record(z.string(), z.string()).optional(),
        }),
      )
      .max(100_000)
      .default([]),
  })
  .superRefine((b, ctx) => {
    const queues = new Set<string>();
    b.queues.forEach((q, i) => {
      if (queues.has(q.name)) ctx.addIssue({ code: 'custom', path: ['queues', i, 'name'], input: q.name, message: `queue "${q.name}" is declared twice` });
      queues.add(q.name);
    });
    const exchanges = new Set<string>();
    b.exchanges.forEach((e, i) => {
      if (exchanges.has(e.name)) ctx.addIssue({ code: 'custom', path: ['exchanges', i, 'name'], input: e.name, message: `exchange "${e.name}" is declared twice` });
      exchanges.add(e.name);
    });
    // A binding to something this file does not declare is usually a typo; existing durable ones are declared again anyway.
    b.bindings.forEach((bd, i) => {
      if (!queues.has(bd.queue)) ctx.addIssue({ code: 'custom', path: ['bindings', i, 'queue'], input: bd.queue, message: `queue "${bd.queue}" is not in broker.queues` });
      if (!exchanges.has(bd.exchange)) ctx.addIssue({ code: 'custom', path: ['bindings', i, 'exchange'], input: bd.exchange, message: `exchange "${bd.exchange}" is not in broker.exchanges` });
    });
  })
  .transform((b) => ({
    fsync: b.fsync,
    fsyncIntervalMs: b.fsyncInterval,
    autoCreateQueues: b.autoCreateQueues,
    maxQueues: b.maxQueues,
    maxMessageBytes: b.maxMessage,
    maxDiskBytes: b.maxDisk === -1 ? undefined : b.maxDisk,
    defaults: toQueueConfig(b.defaults),
    exchanges: b.exchanges.map((e) => ({ name: e.name, config: { type: e.type as ExchangeType, durable: e.durable } })),
    queues: b.queues.map(({ name, ...rest }) => ({ name, config: toQueueConfig(rest) })),
    bindings: b.bindings.map((bd) => ({ queue: bd.queue, exchange: bd.exchange, routingKey: bd.routingKey, ...(bd.args === undefined ? {} : { args: bd.args }) })),
  }))
  .prefault({});

/** Per-connection limits of the binary protocol (the idle timeout is `timeouts.idle`, the connection count `limits.maxConnections`). */
const zConnections = z
  .strictObject({
    /** Largest frame accepted; a bigger one closes the connection with ARCHLAB_QUEUE_MESSAGE_TOO_LARGE. Default 16MiB. -> maxFrameBytes */
    maxFrame: zSize('16MiB', { minBytes: 4096, maxBytes: 1024 * 1024 * 1024 }),
    /** Requests worked on at once per connection; past it the server stops reading the socket (TCP backpressure). Default 1024. */
    maxInFlight: z.int().min(1).max(1_000_000).default(1024),
    /** Broker consumers per connection; one more is refused with ARCHLAB_QUEUE_LIMIT. Default 256. */
    maxSubscriptions: z.int().min(1).max(100_000).default(256),
    /** Bytes of responses waiting for a slow reader before the server stops reading its requests. Default 8MiB. -> maxWriteBufferBytes */
    maxWriteBuffer: zSize('8MiB', { minBytes: 64 * 1024 }),
    /** A connection must send HELLO within this. Default 5s. -> handshakeTimeoutMs */
    handshakeTimeout: zDuration('5s', { minMs: 1 }),
    /** Longest long-poll a FETCH may ask for (longer asks are cut to it). Default 30s. -> maxFetchWaitMs */
    maxFetchWait: zDuration('30s', { minMs: 0, maxMs: 600_000 }),
    /**
     * Bytes the FETCHes in flight on one connection may ask for together (their maxBytes, summed): a
     * FETCH past it is cut to what is left, and waits (reading stops) when less than 64KiB is left.
     * Bounds the memory of fetch answers a client has not read yet. Default 64MiB. -> maxFetchBytesInFlight
     */
    maxFetchBuffer: zSize('64MiB', { minBytes: 64 * 1024 }),
  })
  .transform((c) => ({
    maxFrameBytes: c.maxFrame,
    maxInFlight: c.maxInFlight,
    maxSubscriptions: c.maxSubscriptions,
    maxWriteBufferBytes: c.maxWriteBuffer,
    handshakeTimeoutMs: c.handshakeTimeout,
    maxFetchWaitMs: c.maxFetchWait,
    maxFetchBytesInFlight: c.maxFetchBuffer,
  }))
  .prefault({});

/** The HTTP + SSE gateway: a listener plus its own bounds (bodies, headers and timeouts come from `limits` and `timeouts`). */
const zGateway = zListener
  .extend({
    /** Open SSE streams at most; one more gets 503. Default 100. */
    maxSseClients: z.int().min(1).max(100_000).default(100),
    /** A comment line is sent on idle SSE streams this often, so proxies keep them open. Default 15s. -> sseHeartbeatMs */
    sseHeartbeat: zDuration('15s', { minMs: 10 }),
    /** Records per GET .../records at most (the `max` parameter is capped to it). Default 1000. */
    maxFetchRecords: z.int().min(1).max(100_000).default(1000),
    /** Unacked deliveries an SSE queue stream holds (its prefetch). Default 16. */
    ssePrefetch: z.int().min(1).max(10_000).default(16),
  })
  .transform(({ sseHeartbeat, ...rest }) => ({ ...rest, sseHeartbeatMs: sseHeartbeat }));

const zTls = z
  .strictObject({
    /** PEM certificate chain, relative to the config file. Required. */
    cert: z.string().min(1),
    /** PEM private key, relative to the config file. Required. */
    key: z.string().min(1),
    /** TLSv1.2 or TLSv1.3. Default TLSv1.2. */
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  })
  .transform((t) => ({ certFile: t.cert, keyFile: t.key, minVersion: t.minVersion }));

export const zQueueServerConfig = z.strictObject({
  /** TCP listeners of the binary protocol. Required, at least one. */
  listeners: z.array(zListener).min(1, 'at least one listener').max(16),
  /** The HTTP + SSE gateway. Default: none. */
  gateway: zGateway.optional(),
  /** /metrics and /healthz. Default: none. */
  admin: zAdmin.optional(),
  /** Where the log and the broker keep their files (`<dataDir>/log`, `<dataDir>/broker`). Default ".archlab/queue" under the working directory. */
  dataDir: z.string().min(1).optional(),
  auth: z
    .strictObject({
      /** Clients must present this token: in HELLO (TCP) and as `Authorization: Bearer` (gateway). Default none (no auth). */
      token: z.string().min(8, 'a token shorter than 8 characters is too easy to guess').max(1024).optional(),
    })
    .prefault({}),
  /** TLS on the TCP listeners. Default: none (plain TCP). */
  tls: zTls.optional(),
  log: zLog,
  metrics: zMetrics,
  limits: zLimits,
  timeouts: zTimeouts,
  connections: zConnections,
  topics: zTopics,
  broker: zBroker,
});

export type QueueServerConfig = Omit<z.output<typeof zQueueServerConfig>, 'dataDir'> & { dataDir: string };
export type QueueServerConfigInput = z.input<typeof zQueueServerConfig>;
export type GatewayConfig = NonNullable<QueueServerConfig['gateway']>;
export type TopicsConfig = QueueServerConfig['topics'];
export type BrokerSectionConfig = QueueServerConfig['broker'];
export type ConnectionsConfig = QueueServerConfig['connections'];

/** Paths in a file are relative to the file; the default data dir is relative to the working directory. */
function resolvePaths(config: z.output<typeof zQueueServerConfig>, baseDir: string): QueueServerConfig {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  return {
    ...config,
    dataDir: config.dataDir === undefined ? resolve(process.cwd(), DEFAULT_DATA_DIR) : abs(config.dataDir),
    ...(config.tls === undefined ? {} : { tls: { ...config.tls, certFile: abs(config.tls.certFile), keyFile: abs(config.tls.keyFile) } }),
  };
}

/** Loads and validates a config file; errors name the file, the field and what was expected. */
export function loadQueueConfig(file: string): QueueServerConfig {
  return resolvePaths(loadConfig(file, zQueueServerConfig), dirname(resolve(file)));
}

/** Validates a config given as an object or YAML text (paths relative to the working directory). */
export function queueConfig(input: QueueServerConfigInput | string, source = '<queue config>'): QueueServerConfig {
  const parsed = parseConfig(typeof input === 'string' ? input : JSON.stringify(input), zQueueServerConfig, source, typeof input === 'string' ? undefined : 'json');
  return resolvePaths(parsed, process.cwd());
}
