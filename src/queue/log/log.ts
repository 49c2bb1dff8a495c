/**
 * The embedded Kafka-style log: topics of partitions on disk under one data directory, the LogApi
 * and its raw fast path (RawLogApi), consumer groups delegated to the group coordinator.
 *
 * ```
 * <dataDir>/
 *   __meta/topics.json            topic configs (atomic rename, fsynced)
 *   __meta/producer-ids.json      the next block of producer ids (ids never repeat across restarts)
 *   __meta/lock                   pid of the process that has the directory open
 *   __groups/                     the group coordinator's committed offsets
 *   <topic>-<partition>/          00000000000000000000.log .index .timeindex, <offset>.snapshot, checkpoint
 * ```
 */
import * as fsp from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { createLogger, type Logger } from '../../core/log.js';
import { takePidLock } from '../../core/files.js';
import { SystemRandom, type Random } from '../../core/random.js';
import { QueueError, checkName } from '../errors.js';
import type {
  Acks,
  AppendRequest,
  AppendResult,
  FetchRequest,
  FetchResult,
  GroupDescription,
  HeartbeatResult,
  JoinGroupRequest,
  JoinGroupResult,
  LogApi,
  LogRecord,
  OffsetCommit,
  PartitionInfo,
  RawLogApi,
  SeekTarget,
  TopicConfig,
  TopicInfo,
  TopicPartition,
} from '../types.js';
import { DEFAULT_TOPIC_CONFIG, configDiff, resolveTopicConfig } from './config.js';
import { readJsonIfExists, writeFileAtomic } from './files.js';
import { GroupCoordinator, type GroupCoordinatorOptions, type GroupCoordinatorStats } from './groups/index.js';
import { partitionForKey } from './murmur2.js';
import { Partition, newCounters, type DiskBudget, type LogCounters, type RawFetch } from './partition.js';
import { decodeRecordBatch, encodeRecordBatch, readBatchHeader, validateRecords, verifyBatch, type BatchHeader } from './record-batch.js';
import { storageError } from './segment.js';

const MiB = 1024 * 1024;

export interface LogOptions {
  /** Directory holding every topic, partition and the metadata; created when missing. Required. */
  dataDir: string;
  /** Time for timestamps, roll, retention, long polls and groups. Default SystemClock. */
  clock?: Clock;
  /** Randomness for the group coordinator's member ids. Default SystemRandom. */
  random?: Random;
  /** Default: a silent logger. */
  logger?: Logger;
  /** Config of topics created without one (and auto-created topics), over DEFAULT_TOPIC_CONFIG. */
  defaults?: Partial<TopicConfig>;
  /** Create an unknown topic with `defaults` on append, fetch and partitionFor. Default false. */
  autoCreateTopics?: boolean;
  /** Bytes of segment files the data dir may hold; appends past it fail ARCHLAB_QUEUE_DISK_FULL. Default Infinity (no limit). */
  maxDiskBytes?: number;
  /** Topics at most. Default 1000. */
  maxTopics?: number;
  /** Partitions over all topics at most. Default 10,000. */
  maxPartitionsTotal?: number;
  /** Cap on a fetch's maxWaitMs (long poll), ms. Default 30,000. */
  fetchMaxWaitMs?: number;
  /** Cap on a fetch's maxBytes. Default 64 MiB. */
  fetchMaxBytes?: number;
  /** How often retention and compaction run, ms; 0 = only when runCleaner() is called. Default 30,000. */
  cleanerIntervalMs?: number;
  /** Bytes of log between sparse offset index entries. Default 4096. */
  indexIntervalBytes?: number;
  /** Idempotent producer ids whose sequence state each partition holds (least recently written forgotten). Default 10,000. */
  maxProducersPerPartition?: number;
  /** Bytes accepted but not yet written per partition; past it appends fail ARCHLAB_QUEUE_LIMIT (retryable). Default 64 MiB. */
  maxPendingBytesPerPartition?: number;
  /** Long-polling fetches waiting per partition; past it fetches fail ARCHLAB_QUEUE_LIMIT. Default 1000. */
  maxFetchWaitersPerPartition?: number;
  /** 'unflushed' (default): on open, CRC-check batches past each partition's checkpoint; 'all': every batch. */
  verifyOnOpen?: 'unflushed' | 'all';
  /** 'fail' (default): a corrupt batch (not a torn tail) fails opening its partition with ARCHLAB_QUEUE_CORRUPT; 'truncate': cut the partition there. */
  onCorrupt?: 'fail' | 'truncate';
  /** appendRaw parses every record of a batch (no allocation) so malformed records never reach disk. Default true. */
  validateRawRecords?: boolean;
  /** A compacted partition is cleaned once this share of its closed bytes is new since the last clean. Default 0.5 (Kafka's). */
  minCleanableDirtyRatio?: number;
  /** Distinct keys one compaction pass remembers per partition (keys past it are kept, cleaned next pass). Default 1,000,000. */
  compactionMaxKeys?: number;
  /** Options passed to the group coordinator (limits, rebalance delay, offsets retention). */
  groups?: Omit<GroupCoordinatorOptions, 'dataDir' | 'clock' | 'random' | 'partitionsOf' | 'highWatermark'>;
}

export interface LogStats extends LogCounters {
  topics: number;
  partitions: number;
  /** Bytes of segment files held. */
  diskBytes: number;
  /** Infinity when unlimited. */
  maxDiskBytes: number;
  perPartition: PartitionInfo[];
  groups: GroupCoordinatorStats;
}

interface Topic {
  name: string;
  config: TopicConfig;
  partitions: Partition[];
  /** Round-robin cursor for records without a key. */
  nextPartition: number;
}

const META_DIR = '__meta';
const GROUPS_DIR = '__groups';
const PRODUCER_ID_BLOCK = 1000;

/** Data dirs open in this process (a second open of one would corrupt it). */
const openDirs = new Set<string>();

function badArgument(message: string, details?: Record<string, unknown>): QueueError {
  return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', message, { details });
}

function intOption(name: string, v: number | undefined, fallback: number, min: number): number {
  const x = v ?? fallback;
  if (x !== Infinity && (!Number.isSafeInteger(x) || x < min)) throw badArgument(`${name} must be an integer >= ${min}, got ${v}`, { option: name, value: v });
  return x;
}

const ACKS: readonly Acks[] = ['none', 'leader', 'fsync'];

function checkAcks(acks: unknown): Acks {
  if (!ACKS.includes(acks as Acks)) throw badArgument(`acks must be one of ${ACKS.join(', ')}, got ${JSON.stringify(acks)}`);
  return acks as Acks;
}

export class Log implements LogApi, RawLogApi {
  readonly dataDir: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly defaults: TopicConfig;
  private readonly autoCreate: boolean;
  private readonly limits: {
    maxTopics: number;
    maxPartitionsTotal: number;
    fetchMaxWaitMs: number;
    fetchMaxBytes: number;
    cleanerIntervalMs: number;
    indexIntervalBytes: number;
    maxProducersPerPartition: number;
    maxPendingBytesPerPartition: number;
    maxFetchWaitersPerPartition: number;
    minCleanableDirtyRatio: number;
    compactionMaxKeys: number;
  };
  private readonly verifyOnOpen: 'unflushed' | 'all';
  private readonly onCorrupt: 'fail' | 'truncate';
  private readonly validateRaw: boolean;
  private readonly topics = new Map<string, Topic>();
  private readonly counters = newCounters();
  private readonly disk: DiskBudget;
  private coordinator!: GroupCoordinator;
  /** Topic create/delete and metadata writes, one at a time. */
  private metaChain: Promise<unknown> = Promise.resolve();
  private nextProducerId = 0;
  private producerIdBlockEnd = 0;
  private cleanerTimer: TimerHandle | null = null;
  private cleanerRun: Promise<void> | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  private constructor(o: LogOptions, dataDir: string) {
    this.dataDir = dataDir;
    this.clock = o.clock ?? new SystemClock();
    this.logger = o.logger ?? createLogger({ level: 'silent' });
    this.defaults = resolveTopicConfig(o.defaults, DEFAULT_TOPIC_CONFIG);
    this.autoCreate = o.autoCreateTopics ?? false;
    const maxDisk = o.maxDiskBytes ?? Infinity;
    if (maxDisk !== Infinity && (!Number.isSafeInteger(maxDisk) || maxDisk < 0)) throw badArgument(`maxDiskBytes must be a non-negative integer or Infinity, got ${maxDisk}`);
    this.disk = { usedBytes: 0, maxBytes: maxDisk };
    const ratio = o.minCleanableDirtyRatio ?? 0.5;
    if (typeof ratio !== 'number' || !(ratio >= 0 && ratio <= 1)) throw badArgument(`minCleanableDirtyRatio must be in [0, 1], got ${ratio}`);
    this.limits = {
      maxTopics: intOption('maxTopics', o.maxTopics, 1000, 1),
      maxPartitionsTotal: intOption('maxPartitionsTotal', o.maxPartitionsTotal, 10_000, 1),
      fetchMaxWaitMs: intOption('fetchMaxWaitMs', o.fetchMaxWaitMs, 30_000, 0),
      fetchMaxBytes: intOption('fetchMaxBytes', o.fetchMaxBytes, 64 * MiB, 1),
      cleanerIntervalMs: intOption('cleanerIntervalMs', o.cleanerIntervalMs, 30_000, 0),
      indexIntervalBytes: intOption('indexIntervalBytes', o.indexIntervalBytes, 4096, 1),
      maxProducersPerPartition: intOption('maxProducersPerPartition', o.maxProducersPerPartition, 10_000, 1),
      maxPendingBytesPerPartition: intOption('maxPendingBytesPerPartition', o.maxPendingBytesPerPartition, 64 * MiB, 1),
      maxFetchWaitersPerPartition: intOption('maxFetchWaitersPerPartition', o.maxFetchWaitersPerPartition, 1000, 1),
      minCleanableDirtyRatio: ratio,
      compactionMaxKeys: intOption('compactionMaxKeys', o.compactionMaxKeys, 1_000_000, 1),
    };
    const v = o.verifyOnOpen ?? 'unflushed';
    if (v !== 'unflushed' && v !== 'all') throw badArgument(`verifyOnOpen must be 'unflushed' or 'all', got ${JSON.stringify(v)}`);
    this.verifyOnOpen = v;
    const c = o.onCorrupt ?? 'fail';
    if (c !== 'fail' && c !== 'truncate') throw badArgument(`onCorrupt must be 'fail' or 'truncate', got ${JSON.stringify(c)}`);
    this.onCorrupt = c;
    this.validateRaw = o.validateRawRecords ?? true;
  }

  /**
   * Opens (creating when missing) the log in `options.dataDir`: validates options
   * (ARCHLAB_QUEUE_BAD_ARGUMENT), takes the directory's lock (ARCHLAB_QUEUE_STORAGE when another live
   * process or this one has it open), recovers every partition (ARCHLAB_QUEUE_CORRUPT when one holds
   * a corrupt batch, see onCorrupt) and opens the group coordinator.
   */
  static async open(options: LogOptions): Promise<Log> {
    if (options === null || typeof options !== 'object' || typeof options.dataDir !== 'string' || options.dataDir === '') {
      throw badArgument('dataDir is required: the directory that holds the log');
    }
    const dataDir = resolve(options.dataDir);
    const log = new Log(options, dataDir);
    if (openDirs.has(dataDir)) throw new QueueError('ARCHLAB_QUEUE_STORAGE', `${dataDir} is already open in this process`, { details: { path: dataDir, op: 'open' } });
    openDirs.add(dataDir);
    try {
      await log.load(options);
    } catch (err) {
      await Promise.all([...log.topics.values()].flatMap((t) => t.partitions.map((p) => p.close().catch(() => undefined))));
      await fsp.rm(join(dataDir, META_DIR, 'lock'), { force: true }).catch(() => undefined);
      openDirs.delete(dataDir);
      throw err;
    }
    log.armCleaner();
    return log;
  }

  private async load(options: LogOptions): Promise<void> {
    const meta = join(this.dataDir, META_DIR);
    try {
      await fsp.mkdir(meta, { recursive: true });
    } catch (err) {
      throw storageError('creating', meta, err);
    }
    await this.lock(join(meta, 'lock'));
    // producer ids: start past every block handed out before
    const ids = (await readJsonIfExists(join(meta, 'producer-ids.json')).catch(() => undefined)) as { nextBlockStart?: number } | undefined;
    this.nextProducerId = this.producerIdBlockEnd = typeof ids?.nextBlockStart === 'number' ? ids.nextBlockStart : 0;
    // topics
    let saved: { topics?: Record<string, Partial<TopicConfig>> } | undefined;
    try {
      saved = (await readJsonIfExists(join(meta, 'topics.json'))) as typeof saved;
    } catch (err) {
      throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `${join(meta, 'topics.json')} does not parse: ${(err as Error).message}`, {
        cause: err,
        details: { path: join(meta, 'topics.json') },
      });
    }
    for (const [name, cfg] of Object.entries(saved?.topics ?? {})) {
      const config = resolveTopicConfig(cfg, DEFAULT_TOPIC_CONFIG);
      const topic: Topic = { name, config, partitions: [], nextPartition: 0 };
      this.topics.set(name, topic);
      for (let p = 0; p < config.partitions; p++) topic.partitions.push(await this.openPartition(name, p, config));
    }
    await this.removeStrayPartitionDirs();
    this.coordinator = await GroupCoordinator.open({
      ...(options.groups ?? {}),
      logger: options.groups?.logger ?? this.logger,
      dataDir: join(this.dataDir, GROUPS_DIR),
      clock: this.clock,
      random: options.random ?? new SystemRandom(),
      partitionsOf: (topic) => this.topicOrThrow(topic).config.partitions,
      highWatermark: (topic, partition) => this.partitionOrThrow(this.topicOrThrow(topic), partition).highWatermark,
    });
  }

  private async lock(path: string): Promise<void> {
    try {
      await takePidLock(path, (holder) =>
        holder === undefined
          ? new QueueError('ARCHLAB_QUEUE_STORAGE', `could not take the lock ${path}`, { details: { path, op: 'lock' } })
          : new QueueError('ARCHLAB_QUEUE_STORAGE', `${this.dataDir} is in use by process ${holder} (lock ${path})`, { details: { path, op: 'lock', pid: holder } }),
      );
    } catch (err) {
      throw err instanceof QueueError ? err : storageError('locking', path, err);
    }
  }

  /** Directories `<topic>-<n>` of topics no longer in the metadata (a delete interrupted by a crash). */
  private async removeStrayPartitionDirs(): Promise<void> {
    const entries = await fsp.readdir(this.dataDir, { withFileTypes: true });
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('__')) continue;
      const m = /^(.+)-(\d+)$/.exec(e.name);
      if (m === null) continue;
      const t = this.topics.get(m[1]!);
      if (t !== undefined && Number(m[2]) < t.config.partitions) continue;
      this.logger.info({ dir: e.name }, 'removing the directory of a deleted topic');
      await fsp.rm(join(this.dataDir, e.name), { recursive: true, force: true });
    }
  }

  private openPartition(topic: string, partition: number, config: TopicConfig): Promise<Partition> {
    return Partition.open({
      dir: join(this.dataDir, `${topic}-${partition}`),
      topic,
      partition,
      config,
      clock: this.clock,
      logger: this.logger,
      counters: this.counters,
      disk: this.disk,
      indexIntervalBytes: this.limits.indexIntervalBytes,
      maxProducers: this.limits.maxProducersPerPartition,
      maxPendingBytes: this.limits.maxPendingBytesPerPartition,
      maxFetchWaiters: this.limits.maxFetchWaitersPerPartition,
      verifyOnOpen: this.verifyOnOpen,
      onCorrupt: this.onCorrupt,
      minCleanableDirtyRatio: this.limits.minCleanableDirtyRatio,
      compactionMaxKeys: this.limits.compactionMaxKeys,
    });
  }

  private ensureOpen(): void {
    if (this.closed) throw new QueueError('ARCHLAB_QUEUE_CLOSED', 'the log is closed');
  }

  private async saveTopics(): Promise<void> {
    const topics: Record<string, TopicConfig> = {};
    for (const t of this.topics.values()) topics[t.name] = t.config;
    await writeFileAtomic(join(this.dataDir, META_DIR, 'topics.json'), JSON.stringify({ version: 1, topics }, null, 1), true);
  }

  /** Runs `fn` after every earlier metadata change. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.metaChain.then(fn);
    this.metaChain = run.catch(() => undefined);
    return run;
  }

  private topicOrThrow(name: string): Topic {
    const t = this.topics.get(name);
    if (t === undefined) throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `topic ${JSON.stringify(name)} does not exist`, { details: { topic: name } });
    return t;
  }

  private partitionOrThrow(t: Topic, partition: number): Partition {
    const p = Number.isInteger(partition) ? t.partitions[partition] : undefined;
    if (p === undefined) {
      throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_PARTITION', `topic ${t.name} has partitions 0..${t.partitions.length - 1}, not ${partition}`, {
        details: { topic: t.name, partition, partitions: t.partitions.length },
      });
    }
    return p;
  }

  /** The topic, created with the defaults when unknown and autoCreateTopics is on. */
  private async topic(name: string): Promise<Topic> {
    this.ensureOpen();
    const t = this.topics.get(name);
    if (t !== undefined) return t;
    if (!this.autoCreate) return this.topicOrThrow(checkName('topic', name));
    await this.createTopic(name);
    return this.topicOrThrow(name);
  }

  private topicInfo(t: Topic): TopicInfo {
    return { name: t.name, config: { ...t.config }, partitions: t.partitions.map((p) => p.info()) };
  }

  // -------------------------------------------------------------------------------------------
  // topics
  // -------------------------------------------------------------------------------------------

  /**
   * Creates a topic (config over the log's defaults). Creating an existing topic with the same
   * settings returns it; with other settings fails ARCHLAB_QUEUE_DECLARE_MISMATCH. Limits:
   * ARCHLAB_QUEUE_LIMIT past maxTopics or maxPartitionsTotal.
   */
  createTopic(name: string, config?: Partial<TopicConfig>): Promise<TopicInfo> {
    return this.serial(async () => {
      this.ensureOpen();
      checkName('topic', name);
      const cfg = resolveTopicConfig(config, this.defaults);
      const existing = this.topics.get(name);
      if (existing !== undefined) {
        // only the fields the caller named must match (an auto-created topic answers a bare create)
        const asked = config === undefined ? [] : configDiff(existing.config, cfg).filter((k) => k in config);
        if (asked.length > 0) {
          throw new QueueError('ARCHLAB_QUEUE_DECLARE_MISMATCH', `topic ${name} exists with other settings: ${asked.map((k) => `${k} ${existing.config[k]} (asked ${cfg[k]})`).join(', ')}`, {
            details: { name, field: asked[0], fields: asked },
          });
        }
        return this.topicInfo(existing);
      }
      if (this.topics.size >= this.limits.maxTopics) {
        throw new QueueError('ARCHLAB_QUEUE_LIMIT', `the log holds ${this.topics.size} topics, its maxTopics`, { details: { limit: 'maxTopics', value: this.limits.maxTopics } });
      }
      let total = 0;
      for (const t of this.topics.values()) total += t.config.partitions;
      if (total + cfg.partitions > this.limits.maxPartitionsTotal) {
        throw new QueueError('ARCHLAB_QUEUE_LIMIT', `${total} + ${cfg.partitions} partitions would pass maxPartitionsTotal ${this.limits.maxPartitionsTotal}`, {
          details: { limit: 'maxPartitionsTotal', value: this.limits.maxPartitionsTotal },
        });
      }
      const topic: Topic = { name, config: cfg, partitions: [], nextPartition: 0 };
      try {
        for (let p = 0; p < cfg.partitions; p++) {
          await fsp.rm(join(this.dataDir, `${name}-${p}`), { recursive: true, force: true });
          topic.partitions.push(await this.openPartition(name, p, cfg));
        }
        this.topics.set(name, topic);
        await this.saveTopics();
      } catch (err) {
        this.topics.delete(name);
        await Promise.all(topic.partitions.map((p) => p.destroy().catch(() => undefined)));
        throw err;
      }
      this.logger.info({ topic: name, config: cfg }, 'topic created');
      await this.coordinator.topicChanged(name).catch(() => undefined);
      return this.topicInfo(topic);
    });
  }

  /** Deletes a topic and its data; fetches and appends in flight on it fail ARCHLAB_QUEUE_CLOSED. */
  deleteTopic(name: string): Promise<void> {
    return this.serial(async () => {
      this.ensureOpen();
      const t = this.topicOrThrow(name);
      this.topics.delete(name);
      await this.saveTopics();
      await Promise.all(t.partitions.map((p) => p.destroy()));
      this.logger.info({ topic: name }, 'topic deleted');
      await this.coordinator.topicChanged(name).catch(() => undefined);
    });
  }

  async describeTopic(name: string): Promise<TopicInfo> {
    this.ensureOpen();
    return this.topicInfo(this.topicOrThrow(name));
  }

  async listTopics(): Promise<TopicInfo[]> {
    this.ensureOpen();
    return [...this.topics.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((t) => this.topicInfo(t));
  }

  /** murmur2 of the key like Kafka's default partitioner; records without a key go round robin. */
  async partitionFor(topic: string, key: Buffer | null): Promise<number> {
    const t = await this.topic(topic);
    const n = t.partitions.length;
    if (key === null) {
      const p = t.nextPartition % n;
      t.nextPartition = (p + 1) % n;
      return p;
    }
    if (!(key instanceof Uint8Array)) throw badArgument('key must be a Buffer or null');
    return partitionForKey(key, n);
  }

  /** A producer id never handed out before (ids are reserved in persisted blocks of 1000) and epoch 0. */
  initProducerId(): Promise<{ producerId: number; producerEpoch: number }> {
    return this.serial(async () => {
      this.ensureOpen();
      if (this.nextProducerId >= this.producerIdBlockEnd) {
        const end = this.nextProducerId + PRODUCER_ID_BLOCK;
        await writeFileAtomic(join(this.dataDir, META_DIR, 'producer-ids.json'), JSON.stringify({ nextBlockStart: end }), true);
        this.producerIdBlockEnd = end;
      }
      return { producerId: this.nextProducerId++, producerEpoch: 0 };
    });
  }

  // -------------------------------------------------------------------------------------------
  // append
  // -------------------------------------------------------------------------------------------

  private checkSize(t: Topic, bytes: number): void {
    if (bytes > t.config.maxMessageBytes) {
      throw new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `record batch of ${bytes} bytes is over topic ${t.name}'s maxMessageBytes ${t.config.maxMessageBytes}`, {
        details: { bytes, maxBytes: t.config.maxMessageBytes, topic: t.name },
      });
    }
  }

  private checkProducerFields(h: BatchHeader): void {
    if (h.producerId < 0) return;
    if (h.producerEpoch < 0 || h.baseSequence < 0) throw badArgument(`an idempotent batch (producer ${h.producerId}) needs producerEpoch and baseSequence >= 0`);
    if (h.producerId >= this.producerIdBlockEnd) {
      throw badArgument(`producer id ${h.producerId} was never handed out by initProducerId()`, { producerId: h.producerId });
    }
  }

  /** Encodes `req.records` as one batch and appends it; resolves per `req.acks`. */
  async append(req: AppendRequest): Promise<AppendResult> {
    if (req === null || typeof req !== 'object') throw badArgument('append needs a request object');
    const acks = checkAcks(req.acks);
    const t = await this.topic(req.topic);
    const p = this.partitionOrThrow(t, req.partition);
    if (!Array.isArray(req.records) || req.records.length === 0) throw badArgument('append needs at least one record');
    const idem = req.producerId !== undefined && req.producerId >= 0;
    const buf = encodeRecordBatch(req.records, {
      compression: req.compression ?? 'none',
      now: this.clock.now(),
      ...(idem ? { producerId: req.producerId, producerEpoch: req.producerEpoch ?? 0, baseSequence: req.baseSequence ?? 0 } : {}),
    });
    this.checkSize(t, buf.length);
    const h = readBatchHeader(buf);
    this.checkProducerFields(h);
    return p.append(buf, h, acks);
  }

  /**
   * Appends one encoded batch as it is (CRC verified, records checked unless validateRawRecords is
   * off, base offset stamped in place: the log takes `batch` over, do not reuse it). Fails
   * ARCHLAB_QUEUE_CORRUPT for bad bytes, ARCHLAB_QUEUE_MESSAGE_TOO_LARGE past maxMessageBytes.
   */
  async appendRaw(topic: string, partition: number, batch: Buffer, acks: Acks): Promise<AppendResult> {
    checkAcks(acks);
    const t = await this.topic(topic);
    const p = this.partitionOrThrow(t, partition);
    if (!Buffer.isBuffer(batch)) throw badArgument('batch must be a Buffer');
    this.checkSize(t, batch.length);
    const h = verifyBatch(batch);
    if (h.recordCount < 1 || h.lastOffsetDelta !== h.recordCount - 1) {
      throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `a produced batch needs records 0..n-1 (records ${h.recordCount}, lastOffsetDelta ${h.lastOffsetDelta})`, {
        details: { recordCount: h.recordCount, lastOffsetDelta: h.lastOffsetDelta },
      });
    }
    if (this.validateRaw) validateRecords(batch, 0, h);
    this.checkProducerFields(h);
    return p.append(batch, h, acks);
  }

  // -------------------------------------------------------------------------------------------
  // fetch
  // -------------------------------------------------------------------------------------------

  private fetchArgs(req: FetchRequest): { maxBytes: number; maxWaitMs: number } {
    if (req === null || typeof req !== 'object') throw badArgument('fetch needs a request object');
    if (!Number.isSafeInteger(req.offset)) throw badArgument(`offset must be an integer, got ${req.offset}`);
    const maxBytes = req.maxBytes ?? MiB;
    const maxWaitMs = req.maxWaitMs ?? 0;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw badArgument(`maxBytes must be a positive integer, got ${req.maxBytes}`);
    if (!Number.isSafeInteger(maxWaitMs) || maxWaitMs < 0) throw badArgument(`maxWaitMs must be a non-negative integer, got ${req.maxWaitMs}`);
    return { maxBytes: Math.min(maxBytes, this.limits.fetchMaxBytes), maxWaitMs: Math.min(maxWaitMs, this.limits.fetchMaxWaitMs) };
  }

  /** Whole encoded batches from `offset` (the first may start before it). Long-polls up to maxWaitMs when none is there yet. */
  async fetchRaw(req: FetchRequest): Promise<RawFetch> {
    const { maxBytes, maxWaitMs } = this.fetchArgs(req);
    const t = await this.topic(req.topic);
    return this.partitionOrThrow(t, req.partition).fetchRaw(req.offset, maxBytes, maxWaitMs);
  }

  /** Records at or after `offset` (CRC checked as they are decoded). */
  async fetch(req: FetchRequest): Promise<FetchResult> {
    const raw = await this.fetchRaw(req);
    const records: LogRecord[] = [];
    for (const b of raw.batches) for (const r of decodeRecordBatch(b, req.topic, req.partition, req.offset)) records.push(r);
    return { records, nextOffset: raw.nextOffset, highWatermark: raw.highWatermark, logStartOffset: raw.logStartOffset };
  }

  async offsetForTimestamp(topic: string, partition: number, timestamp: number): Promise<number> {
    if (!Number.isSafeInteger(timestamp)) throw badArgument(`timestamp must be an integer ms, got ${timestamp}`);
    const t = await this.topic(topic);
    return this.partitionOrThrow(t, partition).offsetForTimestamp(timestamp);
  }

  /** The offset a seek lands on; an explicit offset must lie in [logStartOffset, highWatermark] (ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE). */
  async resolveSeek(topic: string, partition: number, target: SeekTarget): Promise<number> {
    const t = await this.topic(topic);
    const p = this.partitionOrThrow(t, partition);
    switch (target?.kind) {
      case 'earliest':
        return p.logStartOffset;
      case 'latest':
        return p.highWatermark;
      case 'timestamp':
        return this.offsetForTimestamp(topic, partition, target.timestamp);
      case 'offset':
        if (!Number.isSafeInteger(target.offset) || target.offset < p.logStartOffset || target.offset > p.highWatermark) {
          throw new QueueError('ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE', `offset ${target.offset} is outside ${topic}-${partition}'s [${p.logStartOffset}, ${p.highWatermark}]`, {
            details: { topic, partition, offset: target.offset, logStartOffset: p.logStartOffset, highWatermark: p.highWatermark },
          });
        }
        return target.offset;
      default:
        throw badArgument(`seek target must be earliest, latest, offset or timestamp, got ${JSON.stringify(target)}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // consumer groups: the coordinator
  // -------------------------------------------------------------------------------------------

  joinGroup(req: JoinGroupRequest): Promise<JoinGroupResult> {
    this.ensureOpen();
    return this.coordinator.joinGroup(req);
  }

  heartbeat(group: string, memberId: string, generation: number): Promise<HeartbeatResult> {
    this.ensureOpen();
    return this.coordinator.heartbeat(group, memberId, generation);
  }

  leaveGroup(group: string, memberId: string): Promise<void> {
    this.ensureOpen();
    return this.coordinator.leaveGroup(group, memberId);
  }

  commitOffsets(group: string, memberId: string, generation: number, offsets: OffsetCommit[]): Promise<void> {
    this.ensureOpen();
    return this.coordinator.commitOffsets(group, memberId, generation, offsets);
  }

  fetchOffsets(group: string, partitions: TopicPartition[]): Promise<OffsetCommit[]> {
    this.ensureOpen();
    return this.coordinator.fetchOffsets(group, partitions);
  }

  describeGroup(group: string): Promise<GroupDescription> {
    this.ensureOpen();
    return this.coordinator.describeGroup(group);
  }

  /** Names of the consumer groups known. */
  listGroups(): string[] {
    return this.coordinator.listGroups();
  }

  // -------------------------------------------------------------------------------------------
  // cleaner, stats, close
  // -------------------------------------------------------------------------------------------

  private armCleaner(): void {
    if (this.limits.cleanerIntervalMs === 0 || this.closed) return;
    this.cleanerTimer = this.clock.setTimer(this.limits.cleanerIntervalMs, () => {
      this.cleanerTimer = null;
      void this.runCleaner()
        .catch((err: unknown) => this.logger.warn({ err }, 'log cleaner pass failed'))
        .finally(() => this.armCleaner());
    });
  }

  /**
   * One pass of retention (delete whole old segments by age and size) and compaction (compacted
   * topics) over every partition. Rejects with the first error after trying every partition.
   */
  runCleaner(): Promise<void> {
    this.ensureOpen();
    this.cleanerRun ??= (async () => {
      let first: unknown;
      const now = this.clock.now();
      for (const t of [...this.topics.values()]) {
        for (const p of t.partitions) {
          try {
            await p.clean(now);
          } catch (err) {
            this.logger.warn({ topic: t.name, partition: p.partition, err }, 'cleaning a partition failed');
            first ??= err;
          }
        }
      }
      if (first !== undefined) throw first;
    })().finally(() => {
      this.cleanerRun = null;
    });
    return this.cleanerRun;
  }

  stats(): LogStats {
    const perPartition: PartitionInfo[] = [];
    for (const t of this.topics.values()) for (const p of t.partitions) perPartition.push(p.info());
    return {
      ...this.counters,
      topics: this.topics.size,
      partitions: perPartition.length,
      diskBytes: this.disk.usedBytes,
      maxDiskBytes: this.disk.maxBytes,
      perPartition,
      groups: this.coordinator.stats(),
    };
  }

  /** Writes what is queued, closes every partition cleanly (checkpoint, snapshots), the coordinator, and the lock. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.cleanerTimer?.cancel();
      this.cleanerTimer = null;
      await this.cleanerRun?.catch(() => undefined);
      await this.metaChain;
      let first: unknown;
      await this.coordinator.close().catch((err: unknown) => (first ??= err));
      for (const t of this.topics.values()) {
        await Promise.all(t.partitions.map((p) => p.close().catch((err: unknown) => (first ??= err))));
      }
      await fsp.rm(join(this.dataDir, META_DIR, 'lock'), { force: true }).catch(() => undefined);
      openDirs.delete(this.dataDir);
      if (first !== undefined) throw first;
    })();
    return this.closing;
  }
}
