/**
 * The contracts of the queue block. Two models the textbooks contrast, one vocabulary:
 *
 * - the **log** (Kafka's model): `Topic`s of `Partition`s of records at `Offset`s, kept by retention
 *   not by consumption; consumer groups remember how far they read.
 * - the **broker** (RabbitMQ's and SQS's model): messages published to an `Exchange`, routed by
 *   `Binding`s into `Queue`s, handed to competing consumers and removed when acknowledged.
 *
 * `LogApi` and `BrokerApi` are implemented by the embedded engines (src/queue/log, src/queue/broker),
 * served over TCP by src/queue/server and spoken by src/queue/client. `QueueDriver` is the one client
 * API that runs on every engine: embedded, the archlab TCP broker, RabbitMQ (amqplib), NATS JetStream.
 *
 * Units are in names (`Ms`, `Bytes`). Offsets and timestamps are JS numbers (safe to 2^53).
 */

// ---------------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------------

/** Durability of an append, as Kafka's acks plus an explicit fsync level. */
export type Acks =
  /** Resolve as soon as the batch is accepted (before it is written). */
  | 'none'
  /** Resolve when the batch is written to the partition's segment (in the OS page cache). */
  | 'leader'
  /** Resolve when the batch is fsynced (group commit: one fsync covers every batch waiting). */
  | 'fsync';

export type Compression = 'none' | 'gzip' | 'lz4' | 'zstd';

export type Partitioner = 'murmur2' | 'round-robin';

export type CleanupPolicy = 'delete' | 'compact' | 'compact,delete';

export interface TopicConfig {
  /** Number of partitions, 1..1024. Default 1. */
  partitions: number;
  /** Roll a new segment when the active one reaches this size. Default 64 MiB. */
  segmentBytes: number;
  /** Roll a new segment when the active one is this old (by first append). Default 7 days. */
  segmentMs: number;
  /** Delete whole old segments while the partition is over this size; -1 = no size limit. Default -1. */
  retentionBytes: number;
  /** Delete whole segments whose newest record is older than this; -1 = forever. Default 7 days. */
  retentionMs: number;
  /** 'delete' (retention), 'compact' (keep the latest record per key, tombstones), or both. Default 'delete'. */
  cleanupPolicy: CleanupPolicy;
  /** How long a tombstone (value null) survives compaction. Default 1 day. */
  deleteRetentionMs: number;
  /** Largest record batch accepted, in bytes after compression. Default 1 MiB. */
  maxMessageBytes: number;
}

export interface RecordHeader {
  key: string;
  value: Buffer;
}

/** A record as a producer sends it. `key` null = no key (round robin, never compacted away). */
export interface ProducerRecord {
  key: Buffer | null;
  /** null is a tombstone in a compacted topic. */
  value: Buffer | null;
  headers?: RecordHeader[];
  /** Create time, ms since epoch; the log stamps its clock when absent. */
  timestamp?: number;
}

/** A record as a consumer reads it. */
export interface LogRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeader[];
}

export interface AppendRequest {
  topic: string;
  partition: number;
  records: ProducerRecord[];
  acks: Acks;
  compression?: Compression;
  /** Idempotent producers: the id from `initProducerId()`, its epoch, and the first record's sequence. */
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
}

export interface AppendResult {
  /** Offset of the first record of the batch (of the original write when `duplicate`). */
  baseOffset: number;
  /** Offset of the last record. */
  lastOffset: number;
  /** True when an idempotent producer retried a batch already written: nothing new was appended. */
  duplicate: boolean;
}

export interface FetchRequest {
  topic: string;
  partition: number;
  /** First offset wanted. */
  offset: number;
  /** Stop after this many bytes of batches (at least one batch is returned even if larger). Default 1 MiB. */
  maxBytes?: number;
  /** When nothing is at `offset` yet, wait up to this long for an append (long poll). Default 0. */
  maxWaitMs?: number;
}

export interface FetchResult {
  records: LogRecord[];
  /** Offset the next fetch should ask for. */
  nextOffset: number;
  /** One past the last offset written (the "log end"; with a single broker also the high watermark). */
  highWatermark: number;
  /** First offset still held (retention and compaction move it). */
  logStartOffset: number;
}

export interface PartitionInfo {
  topic: string;
  partition: number;
  logStartOffset: number;
  highWatermark: number;
  segments: number;
  sizeBytes: number;
}

export interface TopicInfo {
  name: string;
  config: TopicConfig;
  partitions: PartitionInfo[];
}

export type Assignor = 'range' | 'round-robin' | 'sticky';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface JoinGroupRequest {
  group: string;
  /** Empty on first join; the id the coordinator gave on rejoin. */
  memberId?: string;
  /** Free-form client id, shown in group descriptions. */
  clientId?: string;
  topics: string[];
  /** A member missing heartbeats for this long is removed and the group rebalances. Default 10 s. */
  sessionTimeoutMs?: number;
  /** How long a rebalance waits for known members to rejoin. Default = sessionTimeoutMs. */
  rebalanceTimeoutMs?: number;
  assignor?: Assignor;
}

export interface JoinGroupResult {
  memberId: string;
  generation: number;
  assignment: TopicPartition[];
}

export interface HeartbeatResult {
  /** True when the group is rebalancing: the member must rejoin (it keeps its member id). */
  rebalance: boolean;
}

export interface OffsetCommit extends TopicPartition {
  offset: number;
  metadata?: string;
}

export interface GroupDescription {
  group: string;
  state: 'empty' | 'preparing-rebalance' | 'stable' | 'dead';
  generation: number;
  assignor: Assignor;
  members: { memberId: string; clientId: string; assignment: TopicPartition[] }[];
  offsets: (TopicPartition & { committed: number; highWatermark: number; lag: number })[];
}

/** Where a consumer starts when its group has no committed offset, or where `seek` goes. */
export type SeekTarget =
  | { kind: 'earliest' }
  | { kind: 'latest' }
  | { kind: 'offset'; offset: number }
  | { kind: 'timestamp'; timestamp: number };

/** The Kafka-style log, embedded (src/queue/log) or remote (src/queue/client). */
export interface LogApi {
  createTopic(name: string, config?: Partial<TopicConfig>): Promise<TopicInfo>;
  deleteTopic(name: string): Promise<void>;
  describeTopic(name: string): Promise<TopicInfo>;
  listTopics(): Promise<TopicInfo[]>;
  /** Partition for a key by the topic's partitioner: murmur2 of the key bytes like Kafka's default (positive(murmur2(key)) % partitions). */
  partitionFor(topic: string, key: Buffer | null): Promise<number>;
  /** A fresh producer id (for idempotence) and epoch 0; ids survive restarts. */
  initProducerId(): Promise<{ producerId: number; producerEpoch: number }>;
  append(req: AppendRequest): Promise<AppendResult>;
  fetch(req: FetchRequest): Promise<FetchResult>;
  /** Smallest offset whose timestamp is >= `timestamp`, or the high watermark when none is. */
  offsetForTimestamp(topic: string, partition: number, timestamp: number): Promise<number>;
  resolveSeek(topic: string, partition: number, target: SeekTarget): Promise<number>;

  joinGroup(req: JoinGroupRequest): Promise<JoinGroupResult>;
  heartbeat(group: string, memberId: string, generation: number): Promise<HeartbeatResult>;
  leaveGroup(group: string, memberId: string): Promise<void>;
  /** Commits are fenced: they fail with ILLEGAL_GENERATION / UNKNOWN_MEMBER for a stale member. */
  commitOffsets(group: string, memberId: string, generation: number, offsets: OffsetCommit[]): Promise<void>;
  /** Committed offsets of a group (-1 where none). */
  fetchOffsets(group: string, partitions: TopicPartition[]): Promise<OffsetCommit[]>;
  describeGroup(group: string): Promise<GroupDescription>;
  close(): Promise<void>;
}

/**
 * The log's fast path, for the TCP server and client: record batches travel in the log's own on-disk
 * format (src/queue/log/record-batch.ts: header with base offset, CRC, producer id/epoch/sequence,
 * compression, then records), so the broker only checks the CRC and stamps offsets, and a fetch sends
 * file bytes as they are. The client encodes and decodes with the same module.
 */
export interface RawLogApi {
  /** `batch` is one encoded record batch (its base offset is ignored and assigned). */
  appendRaw(topic: string, partition: number, batch: Buffer, acks: Acks): Promise<AppendResult>;
  /** Whole encoded batches from `offset` (the first may start before it: skip records below `offset`). */
  fetchRaw(req: FetchRequest): Promise<{ batches: Buffer[]; nextOffset: number; highWatermark: number; logStartOffset: number }>;
}

// ---------------------------------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------------------------------

export type ExchangeType = 'direct' | 'topic' | 'fanout' | 'headers';

/** What a queue does when a publish would take it over `maxLength` / `maxLengthBytes`. */
export type OverflowPolicy =
  /** Refuse the publish with ARCHLAB_QUEUE_FULL (RabbitMQ 'reject-publish'). */
  | 'reject-publish'
  /** Drop the oldest ready message, to the dead-letter target if set (RabbitMQ 'drop-head'). */
  | 'drop-head';

export interface QueueConfig {
  /** Kept on disk and recovered after a restart. Default true. */
  durable: boolean;
  /** Bound on ready + unacked + delayed messages; at least 1. Default 100,000. */
  maxLength: number;
  /** Bound on the bytes of message bodies held. Default 256 MiB. */
  maxLengthBytes: number;
  overflow: OverflowPolicy;
  /** Per-queue TTL: a message ready longer than this is dead-lettered (or dropped). -1 = none. */
  messageTtlMs: number;
  /** A delivered message not acked within this is redelivered (SQS visibility timeout). Default 30 s. */
  visibilityTimeoutMs: number;
  /** After this many deliveries without an ack, the message is dead-lettered. 0 = unlimited. Default 0. */
  maxDeliveries: number;
  /** Dead-letter target: a queue name (routed through the default exchange) or null. */
  deadLetterQueue: string | null;
  /** Priorities 0..maxPriority (higher first); 0 = no priorities. At most 10. */
  maxPriority: number;
}

export interface ExchangeConfig {
  type: ExchangeType;
  durable: boolean;
}

/** Headers exchanges match `args` against message headers: all of them ('all') or any ('any'). */
export interface BindingArgs {
  'x-match'?: 'all' | 'any';
  [header: string]: string | undefined;
}

export interface PublishMessage {
  body: Buffer;
  headers?: Record<string, string>;
  /** 0..queue.maxPriority; higher is delivered first. */
  priority?: number;
  /** Per-message TTL; the smaller of this and the queue's applies. */
  ttlMs?: number;
  /** Deliver no earlier than this many ms from now. */
  delayMs?: number;
  messageId?: string;
}

export interface PublishResult {
  /** Queues the message was routed to (0 = unroutable, dropped unless `mandatory`). */
  routed: number;
}

export interface Delivery {
  /** Unique per broker; used to ack or nack. */
  deliveryTag: number;
  queue: string;
  messageId: string;
  body: Buffer;
  headers: Record<string, string>;
  priority: number;
  /** 1 on first delivery. */
  deliveryCount: number;
  redelivered: boolean;
  publishedAt: number;
}

export interface ConsumeOptions {
  /** Unacked deliveries this consumer may hold. Default 100; at least 1. */
  prefetch?: number;
  /** Called for each delivery; settle it with ack/nack on the broker. */
  onDelivery: (delivery: Delivery) => void;
}

export interface Subscription {
  readonly consumerTag: string;
  /**
   * Stop deliveries. requeueUnacked (default true, as RabbitMQ does when a consumer goes away): this
   * consumer's unacked deliveries go back to the queue now; false: they stay held until acked, nacked
   * or their visibility timeout passes.
   */
  cancel(options?: { requeueUnacked?: boolean }): Promise<void>;
}

export interface QueueStats {
  name: string;
  config: QueueConfig;
  ready: number;
  unacked: number;
  delayed: number;
  bytes: number;
  consumers: number;
  published: number;
  delivered: number;
  acked: number;
  redelivered: number;
  deadLettered: number;
  dropped: number;
}

/** The RabbitMQ/SQS-style broker, embedded (src/queue/broker) or remote (src/queue/client). */
export interface BrokerApi {
  declareExchange(name: string, config?: Partial<ExchangeConfig>): Promise<void>;
  deleteExchange(name: string): Promise<void>;
  declareQueue(name: string, config?: Partial<QueueConfig>): Promise<QueueStats>;
  deleteQueue(name: string): Promise<void>;
  purgeQueue(name: string): Promise<number>;
  /** Exchange '' is the default exchange: it routes to the queue named by the routing key. */
  bind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void>;
  unbind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void>;
  /** Resolves once the message is stored per the broker's fsync policy in every queue it routed to. */
  publish(exchange: string, routingKey: string, message: PublishMessage, options?: { mandatory?: boolean }): Promise<PublishResult>;
  consume(queue: string, options: ConsumeOptions): Promise<Subscription>;
  /** Pull one message (basic.get / SQS ReceiveMessage); null when the queue has none ready. */
  get(queue: string): Promise<Delivery | null>;
  ack(deliveryTag: number): Promise<void>;
  /** requeue true: back to the queue (counts toward maxDeliveries); false: dead-letter or drop. */
  nack(deliveryTag: number, options?: { requeue?: boolean }): Promise<void>;
  queueStats(name: string): Promise<QueueStats>;
  listQueues(): Promise<QueueStats[]>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The driver API: one client API on every engine
// ---------------------------------------------------------------------------------------------

export type DriverName = 'embedded' | 'archlab' | 'rabbitmq' | 'nats';

/** What a driver's engine does; the conformance suite reads these and says where semantics differ. */
export interface DriverCapabilities {
  /** Records of one key keep their order within a partition. */
  partitionedLog: boolean;
  /** Consumer groups split partitions between members and remember committed offsets. */
  consumerGroups: boolean;
  /** Seek a consumer to a timestamp. */
  seekByTimestamp: boolean;
  /** Idempotent producer (a retried send is written once). */
  idempotentProducer: boolean;
  exchangeTypes: ExchangeType[];
  /** Messages redelivered after not being acked within visibility timeout. */
  visibilityTimeout: boolean;
  /** Dead-letter after maxDeliveries. */
  maxDeliveries: boolean;
  priorities: boolean;
  delayedDelivery: boolean;
  perMessageTtl: boolean;
}

export interface ProducerOptions {
  acks?: Acks;
  compression?: Compression;
  /** Wait up to this long to fill a batch. Default 5 ms. */
  lingerMs?: number;
  /** Send a batch once it reaches this many bytes. Default 256 KiB. */
  maxBatchBytes?: number;
  idempotent?: boolean;
}

export interface SendResult {
  partition: number;
  /** -1 when the engine does not report it (RabbitMQ confirms carry no offset). */
  offset: number;
}

export interface Producer {
  send(topic: string, record: ProducerRecord): Promise<SendResult>;
  /** Send everything lingering now and wait for it. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface ConsumerOptions {
  group: string;
  topics: string[];
  /** Where to start when the group has no committed offset. Default 'earliest'. */
  from?: 'earliest' | 'latest';
  assignor?: Assignor;
  sessionTimeoutMs?: number;
  /** Commit after each handled batch (default true); false = call commit() yourself. */
  autoCommit?: boolean;
}

export interface Consumer {
  /** Runs `handler` for each record in partition order; resolves when the consumer closes. A record is committed only after its handler resolves. */
  run(handler: (record: LogRecord) => Promise<void> | void): Promise<void>;
  seek(topic: string, partition: number, target: SeekTarget): Promise<void>;
  commit(): Promise<void>;
  /** Partitions this member holds now. */
  assignment(): TopicPartition[];
  close(): Promise<void>;
}

export interface ReceivedMessage {
  body: Buffer;
  headers: Record<string, string>;
  deliveryCount: number;
  redelivered: boolean;
  messageId: string;
  ack(): Promise<void>;
  nack(options?: { requeue?: boolean }): Promise<void>;
}

export interface QueueDriver {
  readonly name: DriverName;
  readonly capabilities: DriverCapabilities;
  // log
  createTopic(name: string, config?: Partial<TopicConfig>): Promise<void>;
  deleteTopic(name: string): Promise<void>;
  producer(options?: ProducerOptions): Producer;
  consumer(options: ConsumerOptions): Consumer;
  // broker
  declareExchange(name: string, config?: Partial<ExchangeConfig>): Promise<void>;
  deleteExchange(name: string): Promise<void>;
  declareQueue(name: string, config?: Partial<QueueConfig>): Promise<void>;
  deleteQueue(name: string): Promise<void>;
  bind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void>;
  publish(exchange: string, routingKey: string, message: PublishMessage): Promise<void>;
  subscribe(queue: string, options: { prefetch?: number }, handler: (message: ReceivedMessage) => Promise<void> | void): Promise<Subscription>;
  close(): Promise<void>;
}
