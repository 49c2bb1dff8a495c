/**
 * Pieces every driver shares: refusing what an engine cannot do, serialising a consumer's handler,
 * bounding concurrent work, the AMQP topic/headers matcher for drivers that route in the client, and
 * the encoding of log records on engines that have no record key/headers of their own.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { QueueError, checkName } from '../errors.js';
import { codecFor } from '../log/codecs.js';
import type { BindingArgs, Compression, DriverName, LogRecord, QueueConfig, RecordHeader, TopicConfig } from '../types.js';

/** Throws ARCHLAB_QUEUE_UNSUPPORTED: `driver` cannot do `feature` on its engine; `why` says what to do instead. */
export function unsupported(driver: DriverName, feature: string, why: string): QueueError {
  return new QueueError('ARCHLAB_QUEUE_UNSUPPORTED', `${driver} driver: ${feature} is not supported: ${why}`, {
    details: { driver, feature },
  });
}

export function badArgument(message: string, details?: Record<string, unknown>): QueueError {
  return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', message, details === undefined ? {} : { details });
}

export function closedError(what: string): QueueError {
  return new QueueError('ARCHLAB_QUEUE_CLOSED', `${what} is closed`);
}

/** Checks an optional integer option: undefined gives `dflt`; otherwise it must be an integer in [min, max]. */
export function intOption(name: string, value: number | undefined, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw badArgument(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`, { option: name, value });
  }
  return value;
}

/** Waits `ms`; the timer keeps the process alive (someone awaits it). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A timer for work someone waits on (a lingering batch, a running consumer's heartbeat): with the
 * system clock it keeps the process alive, unlike SystemClock.setTimer; an injected clock (a test's
 * ManualClock) drives it otherwise.
 */
export function workTimer(clock: Clock, delayMs: number, fn: () => void): TimerHandle {
  if (!(clock instanceof SystemClock)) return clock.setTimer(delayMs, fn);
  const t = setTimeout(fn, Math.max(0, delayMs));
  return { cancel: () => clearTimeout(t) };
}

/** A promise with its resolve and reject in hand. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A counting semaphore with a bounded wait list. `acquire()` waits for a permit; when `maxWaiters`
 * callers already wait it fails at once with ARCHLAB_QUEUE_LIMIT (so a caller that never stops
 * calling cannot grow memory without bound).
 */
export class Semaphore {
  private available: number;
  private readonly waiters: (() => void)[] = [];

  constructor(
    private readonly permits: number,
    private readonly maxWaiters: number,
    private readonly what: string,
  ) {
    this.available = permits;
  }

  get inUse(): number {
    return this.permits - this.available;
  }

  async acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return;
    }
    if (this.waiters.length >= this.maxWaiters) {
      throw new QueueError('ARCHLAB_QUEUE_LIMIT', `${this.what}: ${this.permits} in flight and ${this.maxWaiters} waiting`, {
        details: { limit: this.what, value: this.permits + this.waiters.length },
      });
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.available++;
  }
}

/**
 * Runs tasks one at a time in call order. A consumer's handler goes through one of these, so a
 * handler is never called again before the previous call settled, whatever the partition.
 */
export class SerialRunner {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T> | T): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

// ---------------------------------------------------------------------------------------------
// AMQP routing, for drivers that route in the client (NATS)
// ---------------------------------------------------------------------------------------------

/**
 * AMQP 0-9-1 topic matching: words separated by '.', `*` matches exactly one word, `#` zero or more
 * (an empty key is one empty word, as in the embedded broker). Dynamic programming over (pattern
 * word, key word), so a pattern of many `#` cannot blow up.
 */
export function topicMatches(pattern: string, routingKey: string): boolean {
  const p = pattern.split('.');
  const k = routingKey.split('.');
  // reach[j]: pattern prefix matched against the first j key words.
  let reach = new Array<boolean>(k.length + 1).fill(false);
  reach[0] = true;
  for (const word of p) {
    const next = new Array<boolean>(k.length + 1).fill(false);
    if (word === '#') {
      let any = false;
      for (let j = 0; j <= k.length; j++) {
        any = any || reach[j] === true;
        next[j] = any;
      }
    } else {
      for (let j = 1; j <= k.length; j++) {
        next[j] = reach[j - 1] === true && (word === '*' || word === k[j - 1]);
      }
    }
    reach = next;
  }
  return reach[k.length] === true;
}

/** AMQP headers-exchange matching: every bound header equal ('all', the default) or at least one ('any'); keys starting 'x-' are not compared. */
export function headersMatch(args: BindingArgs | undefined, headers: Record<string, string> | undefined): boolean {
  const mode = args?.['x-match'] ?? 'all';
  const entries = Object.entries(args ?? {}).filter(([key, value]) => !key.startsWith('x-') && value !== undefined);
  if (entries.length === 0) return mode === 'all';
  const hit = (key: string, value: string | undefined): boolean => headers !== undefined && headers[key] === value;
  return mode === 'any' ? entries.some(([key, value]) => hit(key, value)) : entries.every(([key, value]) => hit(key, value));
}

// ---------------------------------------------------------------------------------------------
// Log records on engines without keys or record headers (RabbitMQ streams, NATS JetStream)
// ---------------------------------------------------------------------------------------------

/**
 * How a record travels as a message on an engine that only has a body and string headers. The body is
 * the value (gzipped when the producer asked for gzip); these headers carry the rest.
 */
export const RECORD_HEADER = {
  /** The key, base64; absent when the key is null. */
  key: 'archlab-key',
  /** Create time, ms since epoch. */
  timestamp: 'archlab-ts',
  /** '1' when the value is null (a tombstone). */
  tombstone: 'archlab-null',
  /** 'gzip' or 'lz4' when the body is compressed. */
  encoding: 'archlab-enc',
  /** The record headers, JSON [[key, base64 value], ...] (order and repeated keys kept). */
  headers: 'archlab-headers',
} as const;

/**
 * Compression a client-side driver applies per message: gzip (node:zlib), lz4 where the log's codec
 * module loads it; zstd is refused (no binding installs from the registry alone, see log/codecs.ts).
 */
export function checkClientCompression(driver: DriverName, compression: Compression | undefined): Compression {
  if (compression === undefined || compression === 'none' || compression === 'gzip') return compression ?? 'none';
  try {
    codecFor(compression);
  } catch (err) {
    throw unsupported(driver, `compression '${compression}'`, `${(err as Error).message}; use 'gzip' or 'none'`);
  }
  return compression;
}

function compress(compression: Compression, body: Buffer): Buffer {
  return compression === 'gzip' ? gzipSync(body) : codecFor(compression).compress(body);
}

function decompress(encoding: string, body: Buffer): Buffer {
  if (encoding === 'gzip') return gunzipSync(body);
  if (encoding === 'lz4' || encoding === 'zstd') return codecFor(encoding).decompress(body);
  throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `unknown record encoding ${JSON.stringify(encoding)}`);
}

export interface EncodedRecord {
  body: Buffer;
  headers: Record<string, string>;
}

export function encodeRecord(
  record: { key: Buffer | null; value: Buffer | null; headers?: RecordHeader[]; timestamp?: number },
  nowMs: number,
  compression: Compression,
): EncodedRecord {
  const headers: Record<string, string> = { [RECORD_HEADER.timestamp]: String(record.timestamp ?? nowMs) };
  if (record.key !== null) headers[RECORD_HEADER.key] = record.key.toString('base64');
  let body = record.value ?? Buffer.alloc(0);
  if (record.value === null) headers[RECORD_HEADER.tombstone] = '1';
  else if (compression !== 'none') {
    body = compress(compression, body);
    headers[RECORD_HEADER.encoding] = compression;
  }
  if (record.headers !== undefined && record.headers.length > 0) {
    headers[RECORD_HEADER.headers] = JSON.stringify(record.headers.map((h) => [h.key, h.value.toString('base64')]));
  }
  return { body, headers };
}

/** The inverse of encodeRecord; `fallbackTimestamp` is the engine's own time for messages written by others. */
export function decodeRecord(
  topic: string,
  partition: number,
  offset: number,
  body: Buffer,
  get: (name: string) => string | undefined,
  fallbackTimestamp: number,
): LogRecord {
  const ts = Number(get(RECORD_HEADER.timestamp));
  const key = get(RECORD_HEADER.key);
  let value: Buffer | null = body;
  if (get(RECORD_HEADER.tombstone) === '1') value = null;
  else {
    const encoding = get(RECORD_HEADER.encoding);
    if (encoding !== undefined) value = decompress(encoding, body);
  }
  const headers: RecordHeader[] = [];
  const raw = get(RECORD_HEADER.headers);
  if (raw !== undefined) {
    try {
      for (const [hk, hv] of JSON.parse(raw) as [string, string][]) headers.push({ key: hk, value: Buffer.from(hv, 'base64') });
    } catch (err) {
      throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `record ${topic}/${partition}@${offset} has unreadable headers`, {
        cause: err,
        details: { topic, partition, offset },
      });
    }
  }
  return {
    topic,
    partition,
    offset,
    timestamp: Number.isFinite(ts) ? ts : fallbackTimestamp,
    key: key === undefined ? null : Buffer.from(key, 'base64'),
    value,
    headers,
  };
}

/** Estimated bytes a record holds in a buffer (key, value, headers, plus a fixed overhead). */
export function recordBytes(record: { key: Buffer | null; value: Buffer | null; headers?: RecordHeader[] }): number {
  let n = 32 + (record.key?.length ?? 0) + (record.value?.length ?? 0);
  if (record.headers !== undefined) for (const h of record.headers) n += 8 + h.key.length + h.value.length;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Configs, for drivers that apply them on another engine
// ---------------------------------------------------------------------------------------------

/** QueueConfig defaults, as types.ts documents them (overflow: 'reject-publish', so nothing is dropped unasked). */
export const QUEUE_DEFAULTS: QueueConfig = {
  durable: true,
  maxLength: 100_000,
  maxLengthBytes: 256 * 1024 * 1024,
  overflow: 'reject-publish',
  messageTtlMs: -1,
  visibilityTimeoutMs: 30_000,
  maxDeliveries: 0,
  deadLetterQueue: null,
  maxPriority: 0,
};

const DAY_MS = 24 * 60 * 60 * 1000;

/** TopicConfig defaults, as types.ts documents them. */
export const TOPIC_DEFAULTS: TopicConfig = {
  partitions: 1,
  segmentBytes: 64 * 1024 * 1024,
  segmentMs: 7 * DAY_MS,
  retentionBytes: -1,
  retentionMs: 7 * DAY_MS,
  cleanupPolicy: 'delete',
  deleteRetentionMs: DAY_MS,
  maxMessageBytes: 1024 * 1024,
};

/** A full QueueConfig from a partial one, every field checked. */
export function resolveQueueConfig(partial: Partial<QueueConfig> | undefined): QueueConfig {
  const c = { ...QUEUE_DEFAULTS, ...partial };
  if (typeof c.durable !== 'boolean') throw badArgument('durable must be a boolean');
  intOption('maxLength', c.maxLength, 0, 1, Number.MAX_SAFE_INTEGER);
  intOption('maxLengthBytes', c.maxLengthBytes, 0, 1, Number.MAX_SAFE_INTEGER);
  if (c.overflow !== 'reject-publish' && c.overflow !== 'drop-head') {
    throw badArgument(`overflow must be 'reject-publish' or 'drop-head', got ${JSON.stringify(c.overflow)}`);
  }
  if (c.messageTtlMs !== -1) intOption('messageTtlMs', c.messageTtlMs, 0, 0, Number.MAX_SAFE_INTEGER);
  intOption('visibilityTimeoutMs', c.visibilityTimeoutMs, 0, 1, Number.MAX_SAFE_INTEGER);
  intOption('maxDeliveries', c.maxDeliveries, 0, 0, Number.MAX_SAFE_INTEGER);
  intOption('maxPriority', c.maxPriority, 0, 0, 10);
  if (c.deadLetterQueue !== null) checkName('dead-letter queue', c.deadLetterQueue);
  return c;
}

/** A full TopicConfig from a partial one, every field checked. */
export function resolveTopicConfig(partial: Partial<TopicConfig> | undefined): TopicConfig {
  const c = { ...TOPIC_DEFAULTS, ...partial };
  intOption('partitions', c.partitions, 0, 1, 1024);
  intOption('segmentBytes', c.segmentBytes, 0, 1, Number.MAX_SAFE_INTEGER);
  intOption('segmentMs', c.segmentMs, 0, 1, Number.MAX_SAFE_INTEGER);
  if (c.retentionBytes !== -1) intOption('retentionBytes', c.retentionBytes, 0, 1, Number.MAX_SAFE_INTEGER);
  if (c.retentionMs !== -1) intOption('retentionMs', c.retentionMs, 0, 1, Number.MAX_SAFE_INTEGER);
  if (c.cleanupPolicy !== 'delete' && c.cleanupPolicy !== 'compact' && c.cleanupPolicy !== 'compact,delete') {
    throw badArgument(`cleanupPolicy must be 'delete', 'compact' or 'compact,delete', got ${JSON.stringify(c.cleanupPolicy)}`);
  }
  intOption('deleteRetentionMs', c.deleteRetentionMs, 0, 0, Number.MAX_SAFE_INTEGER);
  intOption('maxMessageBytes', c.maxMessageBytes, 0, 1, Number.MAX_SAFE_INTEGER);
  return c;
}

/** Which explicitly given fields of `partial` differ from their defaults (for refusing what an engine cannot honour). */
export function explicitlySet<T extends object>(partial: Partial<T> | undefined, defaults: T, key: keyof T): boolean {
  return partial !== undefined && partial[key] !== undefined && partial[key] !== defaults[key];
}

/**
 * A queue between an engine that pushes (a callback per message) and a pump that pulls. It holds at
 * most what the engine's own flow control lets in (AMQP prefetch), so it needs no bound of its own.
 */
export class PushQueue<T> {
  private readonly items: T[] = [];
  private waiter: ((item: T | null) => void) | null = null;
  private ended = false;

  push(item: T): void {
    if (this.ended) return;
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w(item);
    } else this.items.push(item);
  }

  /** The next item, or null once end() was called and nothing is left. */
  next(): Promise<T | null> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Stops accepting items; returns those not taken yet. */
  end(): T[] {
    this.ended = true;
    const rest = this.items.splice(0);
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w(null);
    }
    return rest;
  }
}
