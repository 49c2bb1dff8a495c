/**
 * Options of the broker, defaults of queues and exchanges, and the checks applied to every argument
 * that crosses the API (names, configs, messages). Every check fails with a QueueError:
 * ARCHLAB_QUEUE_BAD_ARGUMENT for values that can never work, ARCHLAB_QUEUE_MESSAGE_TOO_LARGE for size.
 */
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/log.js';
import type { Random } from '../../core/random.js';
import { checkName, QueueError } from '../errors.js';
import type { ExchangeConfig, ExchangeType, OverflowPolicy, PublishMessage, QueueConfig } from '../types.js';
import type { JournalIo } from './journal.js';

export type BrokerFsync = 'always' | 'interval' | 'never';

export interface BrokerOptions {
  /**
   * Directory for the journal (`broker.journal`) and its lock file, created if missing. null = memory
   * only: nothing survives close(), and `durable` on queues and exchanges is accepted but ignored.
   */
  dataDir: string | null;
  /**
   * When a publish to a durable queue resolves. 'always' (default): after an fdatasync covering it;
   * publishes arriving while one fdatasync runs share the next (group commit). 'interval': after the
   * bytes are handed to the OS (they survive kill -9, not a power cut), fdatasync every
   * `fsyncIntervalMs`. 'never': after the write, fdatasync only at compaction and close().
   * Declarations (queues, exchanges, bindings) are always fdatasync'ed before they resolve.
   */
  fsync?: BrokerFsync;
  /** fdatasync period for fsync 'interval', in ms. Default 200. */
  fsyncIntervalMs?: number;
  /** Time for TTLs, delays, visibility timeouts and timers. Default SystemClock. */
  clock?: Clock;
  /** Randomness for message ids. Default SystemRandom. */
  random?: Random;
  /** Settings of queues declared without them (and of auto-created queues). Default DEFAULT_QUEUE_CONFIG. */
  defaults?: Partial<QueueConfig>;
  /**
   * Declare a queue, with `defaults`, when it is named by consume, get, bind, purge, queueStats or a
   * publish to the default exchange and does not exist. Default false: ARCHLAB_QUEUE_UNKNOWN_QUEUE
   * (or, for a publish, an unroutable message).
   */
  autoCreateQueues?: boolean;
  /** Queues at most; a declare beyond gets ARCHLAB_QUEUE_LIMIT. Default 10,000. */
  maxQueues?: number;
  /** Exchanges at most (the built-in ones not counted); beyond: ARCHLAB_QUEUE_LIMIT. Default 10,000. */
  maxExchanges?: number;
  /** Bindings at most, over all exchanges; beyond: ARCHLAB_QUEUE_LIMIT. Default 100,000. */
  maxBindings?: number;
  /** Largest message body in bytes; bigger gets ARCHLAB_QUEUE_MESSAGE_TOO_LARGE. Default 1 MiB. At most 512 MiB. */
  maxMessageBytes?: number;
  /**
   * Largest journal file in bytes. A publish or declaration that would pass it gets
   * ARCHLAB_QUEUE_DISK_FULL (retryable; a compaction is started when it can free room). Acks and
   * delivery records are always written (they free space at the next compaction), so the file may pass
   * the limit by those; a compaction needs room for the live data beside the old file. Default
   * unlimited (Infinity).
   */
  maxDiskBytes?: number;
  /** Consumers at most, over all queues; beyond: ARCHLAB_QUEUE_LIMIT. Default 10,000. */
  maxConsumers?: number;
  /**
   * The journal is compacted (live messages rewritten to a new file) once it is bigger than this and
   * more than half of it is dead (acked, expired, deleted). Default 64 MiB, or half of maxDiskBytes
   * when that is smaller. Minimum 64 KiB.
   */
  compactMinBytes?: number;
  /**
   * Period of the TTL sweep in ms: messages are expired at the head of a queue as soon as they are
   * due; a message with a per-message TTL behind a longer-lived one is found by this sweep. Default 1000.
   */
  ttlSweepIntervalMs?: number;
  /** Ready messages the TTL sweep looks at per queue per period. Default 1000. */
  ttlSweepMaxMessages?: number;
  /** Torn tails, compactions, storage failures and throwing delivery callbacks are logged here. */
  logger?: Logger;
  /** File operations of the journal; tests inject faults (ENOSPC) here. Default node:fs/promises. */
  journalIo?: JournalIo;
}

export const DEFAULT_QUEUE_CONFIG: Readonly<QueueConfig> = Object.freeze({
  durable: true,
  maxLength: 100_000,
  maxLengthBytes: 256 * 1024 * 1024,
  overflow: 'reject-publish',
  messageTtlMs: -1,
  visibilityTimeoutMs: 30_000,
  maxDeliveries: 0,
  deadLetterQueue: null,
  maxPriority: 0,
});

export const DEFAULT_FSYNC_INTERVAL_MS = 200;
export const DEFAULT_MAX_QUEUES = 10_000;
export const DEFAULT_MAX_EXCHANGES = 10_000;
export const DEFAULT_MAX_BINDINGS = 100_000;
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
export const MAX_MAX_MESSAGE_BYTES = 512 * 1024 * 1024;
export const DEFAULT_MAX_CONSUMERS = 10_000;
export const DEFAULT_COMPACT_MIN_BYTES = 64 * 1024 * 1024;
export const MIN_COMPACT_BYTES = 64 * 1024;
export const DEFAULT_TTL_SWEEP_INTERVAL_MS = 1000;
export const DEFAULT_TTL_SWEEP_MAX_MESSAGES = 1000;
/** Default prefetch of a consumer (unacked deliveries it may hold). */
export const DEFAULT_PREFETCH = 100;
/** Largest prefetch accepted. */
export const MAX_PREFETCH = 65_535;
/** Priority levels are bounded: maxPriority and message priorities are 0..MAX_PRIORITY. */
export const MAX_PRIORITY = 10;
/** Headers of one message: at most this many bytes of keys and values (UTF-8). */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Routing keys and message ids: at most this many UTF-8 bytes (AMQP short strings). */
export const MAX_SHORT_STRING_BYTES = 255;
/** Longest TTL, delay or visibility timeout accepted: 30 days. */
export const MAX_DURATION_MS = 30 * 24 * 3600 * 1000;
/** Largest maxLength accepted. */
export const MAX_QUEUE_LENGTH = 100_000_000;
/** Largest maxDeliveries accepted. */
export const MAX_DELIVERIES = 1_000_000;

const EXCHANGE_TYPES: ReadonlySet<ExchangeType> = new Set(['direct', 'topic', 'fanout', 'headers']);
const OVERFLOW: ReadonlySet<OverflowPolicy> = new Set(['reject-publish', 'drop-head']);
const QUEUE_KEYS = new Set(Object.keys(DEFAULT_QUEUE_CONFIG));

export function badArgument(message: string, details?: Record<string, unknown>): QueueError {
  return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', message, { details });
}

function intIn(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw badArgument(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`, { field: name, value: v });
  }
  return v;
}

/** Checks a partial queue config (unknown keys refused) without applying defaults. */
export function checkQueueConfigPatch(patch: unknown, what = 'queue config'): Partial<QueueConfig> {
  if (patch === undefined) return {};
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw badArgument(`${what} must be an object`);
  for (const k of Object.keys(patch)) {
    if (!QUEUE_KEYS.has(k)) throw badArgument(`unknown ${what} option "${k}"; known: ${[...QUEUE_KEYS].join(', ')}`, { field: k });
  }
  const p = patch as Record<string, unknown>;
  const out: Partial<QueueConfig> = {};
  if (p.durable !== undefined) {
    if (typeof p.durable !== 'boolean') throw badArgument(`durable must be a boolean (got ${JSON.stringify(p.durable)})`, { field: 'durable' });
    out.durable = p.durable;
  }
  if (p.maxLength !== undefined) out.maxLength = intIn('maxLength', p.maxLength, 1, MAX_QUEUE_LENGTH);
  if (p.maxLengthBytes !== undefined) out.maxLengthBytes = intIn('maxLengthBytes', p.maxLengthBytes, 1, Number.MAX_SAFE_INTEGER);
  if (p.overflow !== undefined) {
    if (!OVERFLOW.has(p.overflow as OverflowPolicy)) throw badArgument(`overflow must be 'reject-publish' or 'drop-head' (got ${JSON.stringify(p.overflow)})`, { field: 'overflow' });
    out.overflow = p.overflow as OverflowPolicy;
  }
  if (p.messageTtlMs !== undefined) out.messageTtlMs = intIn('messageTtlMs', p.messageTtlMs, -1, MAX_DURATION_MS);
  if (p.visibilityTimeoutMs !== undefined) out.visibilityTimeoutMs = intIn('visibilityTimeoutMs', p.visibilityTimeoutMs, 1, MAX_DURATION_MS);
  if (p.maxDeliveries !== undefined) out.maxDeliveries = intIn('maxDeliveries', p.maxDeliveries, 0, MAX_DELIVERIES);
  if (p.deadLetterQueue !== undefined) {
    if (p.deadLetterQueue !== null) checkQueueName(p.deadLetterQueue, 'deadLetterQueue');
    out.deadLetterQueue = p.deadLetterQueue as string | null;
  }
  if (p.maxPriority !== undefined) out.maxPriority = intIn('maxPriority', p.maxPriority, 0, MAX_PRIORITY);
  return out;
}

/** A full queue config: `patch` over `defaults` over DEFAULT_QUEUE_CONFIG, every field checked. */
export function resolveQueueConfig(patch: unknown, defaults: Partial<QueueConfig> = {}): QueueConfig {
  return { ...DEFAULT_QUEUE_CONFIG, ...defaults, ...checkQueueConfigPatch(patch) };
}

/** The first field where two configs differ, or undefined. */
export function queueConfigDiff(a: QueueConfig, b: QueueConfig): keyof QueueConfig | undefined {
  for (const k of Object.keys(DEFAULT_QUEUE_CONFIG) as (keyof QueueConfig)[]) if (a[k] !== b[k]) return k;
  return undefined;
}

export function resolveExchangeConfig(patch: unknown): ExchangeConfig {
  if (patch === undefined) return { type: 'direct', durable: true };
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw badArgument('exchange config must be an object');
  for (const k of Object.keys(patch)) if (k !== 'type' && k !== 'durable') throw badArgument(`unknown exchange option "${k}"; known: type, durable`, { field: k });
  const p = patch as Partial<ExchangeConfig>;
  const type = p.type ?? 'direct';
  if (!EXCHANGE_TYPES.has(type)) throw badArgument(`exchange type must be direct, topic, fanout or headers (got ${JSON.stringify(type)})`, { field: 'type' });
  const durable = p.durable ?? true;
  if (typeof durable !== 'boolean') throw badArgument(`durable must be a boolean (got ${JSON.stringify(durable)})`, { field: 'durable' });
  return { type, durable };
}

export function isValidName(name: unknown): name is string {
  try {
    checkName('queue', name);
    return true;
  } catch {
    return false;
  }
}

/** Throws ARCHLAB_QUEUE_BAD_ARGUMENT unless `name` is a valid queue (or `kind`) name (errors.ts checkName). */
export function checkQueueName(name: unknown, kind = 'queue'): string {
  return checkName(kind, name);
}

export function checkShortString(kind: string, s: unknown): string {
  if (typeof s !== 'string') throw badArgument(`${kind} must be a string (got ${typeof s})`, { field: kind });
  // Fast path: at most 85 UTF-16 units cannot pass 255 UTF-8 bytes.
  if (s.length > MAX_SHORT_STRING_BYTES / 3 && Buffer.byteLength(s) > MAX_SHORT_STRING_BYTES) {
    throw badArgument(`${kind} is longer than ${MAX_SHORT_STRING_BYTES} bytes`, { field: kind, bytes: Buffer.byteLength(s) });
  }
  return s;
}

/** A publish message checked and copied: the broker owns what it stores. */
export interface CheckedMessage {
  body: Buffer;
  headers: Readonly<Record<string, string>>;
  /** UTF-8 bytes of header keys and values. */
  headerBytes: number;
  priority: number;
  /** -1 = none. */
  ttlMs: number;
  delayMs: number;
  messageId: string | undefined;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

function durationMs(name: string, v: unknown, allowNone: boolean): number {
  if (v === undefined) return allowNone ? -1 : 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_DURATION_MS) {
    throw badArgument(`${name} must be a number of ms from 0 to ${MAX_DURATION_MS} (got ${JSON.stringify(v)})`, { field: name, value: v });
  }
  return Math.floor(v);
}

export function checkMessage(m: PublishMessage, maxMessageBytes: number): CheckedMessage {
  if (typeof m !== 'object' || m === null) throw badArgument('message must be an object with a Buffer body');
  const body = m.body;
  if (!Buffer.isBuffer(body)) throw badArgument('message body must be a Buffer', { field: 'body' });
  if (body.length > maxMessageBytes) {
    throw new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `message body is ${body.length} bytes, over the broker's maxMessageBytes (${maxMessageBytes})`, {
      details: { bytes: body.length, maxBytes: maxMessageBytes },
    });
  }
  let headers = NO_HEADERS;
  let headerBytes = 0;
  if (m.headers !== undefined) {
    if (typeof m.headers !== 'object' || m.headers === null) throw badArgument('message headers must be an object of strings', { field: 'headers' });
    const copy: Record<string, string> = {};
    let n = 0;
    for (const k in m.headers) {
      if (!Object.hasOwn(m.headers, k)) continue;
      const v = m.headers[k];
      if (typeof v !== 'string') throw badArgument(`message header "${k}" must be a string (got ${typeof v})`, { field: 'headers', header: k });
      copy[k] = v;
      headerBytes += k.length + v.length;
      n++;
    }
    if (headerBytes > MAX_HEADER_BYTES / 3) headerBytes = Object.entries(copy).reduce((s, [k, v]) => s + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    if (headerBytes > MAX_HEADER_BYTES || n > 65_535) {
      throw new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `message headers are ${headerBytes} bytes, over ${MAX_HEADER_BYTES}`, {
        details: { field: 'headers', bytes: headerBytes, maxBytes: MAX_HEADER_BYTES },
      });
    }
    if (n > 0) headers = Object.freeze(copy);
  }
  let priority = 0;
  if (m.priority !== undefined) {
    if (typeof m.priority !== 'number' || !Number.isInteger(m.priority) || m.priority < 0 || m.priority > MAX_PRIORITY) {
      throw badArgument(`message priority must be an integer from 0 to ${MAX_PRIORITY} (got ${JSON.stringify(m.priority)})`, { field: 'priority', value: m.priority });
    }
    priority = m.priority;
  }
  const ttlMs = durationMs('ttlMs', m.ttlMs, true);
  const delayMs = durationMs('delayMs', m.delayMs, false);
  let messageId: string | undefined;
  if (m.messageId !== undefined) {
    messageId = checkShortString('messageId', m.messageId);
    if (messageId.length === 0) throw badArgument('messageId must not be empty', { field: 'messageId' });
  }
  return { body: Buffer.from(body), headers, headerBytes, priority, ttlMs, delayMs, messageId };
}

export interface ResolvedBrokerOptions {
  dataDir: string | null;
  fsync: BrokerFsync;
  fsyncIntervalMs: number;
  autoCreateQueues: boolean;
  maxQueues: number;
  maxExchanges: number;
  maxBindings: number;
  maxMessageBytes: number;
  maxDiskBytes: number;
  maxConsumers: number;
  compactMinBytes: number;
  ttlSweepIntervalMs: number;
  ttlSweepMaxMessages: number;
  defaults: Partial<QueueConfig>;
}

const BROKER_KEYS = new Set([
  'dataDir', 'fsync', 'fsyncIntervalMs', 'clock', 'random', 'defaults', 'autoCreateQueues', 'maxQueues', 'maxExchanges',
  'maxBindings', 'maxMessageBytes', 'maxDiskBytes', 'maxConsumers', 'compactMinBytes', 'ttlSweepIntervalMs',
  'ttlSweepMaxMessages', 'logger', 'journalIo',
]);

/** Checks broker options once, at open, and fills in defaults. */
export function resolveBrokerOptions(o: BrokerOptions): ResolvedBrokerOptions {
  if (typeof o !== 'object' || o === null) throw badArgument('broker options must be an object with dataDir (a path or null)');
  for (const k of Object.keys(o)) if (!BROKER_KEYS.has(k)) throw badArgument(`unknown broker option "${k}"`, { field: k });
  if (o.dataDir !== null && (typeof o.dataDir !== 'string' || o.dataDir.length === 0)) {
    throw badArgument('dataDir must be a directory path, or null for a memory-only broker', { field: 'dataDir' });
  }
  const fsync = o.fsync ?? 'always';
  if (fsync !== 'always' && fsync !== 'interval' && fsync !== 'never') throw badArgument(`fsync must be 'always', 'interval' or 'never' (got ${JSON.stringify(fsync)})`, { field: 'fsync' });
  const maxDiskBytes = o.maxDiskBytes ?? Infinity;
  if (maxDiskBytes !== Infinity) intIn('maxDiskBytes', maxDiskBytes, 4096, Number.MAX_SAFE_INTEGER);
  const defaults = checkQueueConfigPatch(o.defaults, 'defaults');
  return {
    dataDir: o.dataDir,
    fsync,
    fsyncIntervalMs: intIn('fsyncIntervalMs', o.fsyncIntervalMs ?? DEFAULT_FSYNC_INTERVAL_MS, 1, 60_000),
    autoCreateQueues: o.autoCreateQueues ?? false,
    maxQueues: intIn('maxQueues', o.maxQueues ?? DEFAULT_MAX_QUEUES, 1, 1_000_000),
    maxExchanges: intIn('maxExchanges', o.maxExchanges ?? DEFAULT_MAX_EXCHANGES, 0, 1_000_000),
    maxBindings: intIn('maxBindings', o.maxBindings ?? DEFAULT_MAX_BINDINGS, 0, 10_000_000),
    maxMessageBytes: intIn('maxMessageBytes', o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, 1, MAX_MAX_MESSAGE_BYTES),
    maxDiskBytes,
    maxConsumers: intIn('maxConsumers', o.maxConsumers ?? DEFAULT_MAX_CONSUMERS, 1, 1_000_000),
    compactMinBytes: intIn(
      'compactMinBytes',
      o.compactMinBytes ?? Math.max(MIN_COMPACT_BYTES, Math.min(DEFAULT_COMPACT_MIN_BYTES, Math.floor(maxDiskBytes / 2))),
      MIN_COMPACT_BYTES,
      Number.MAX_SAFE_INTEGER,
    ),
    ttlSweepIntervalMs: intIn('ttlSweepIntervalMs', o.ttlSweepIntervalMs ?? DEFAULT_TTL_SWEEP_INTERVAL_MS, 1, 3_600_000),
    ttlSweepMaxMessages: intIn('ttlSweepMaxMessages', o.ttlSweepMaxMessages ?? DEFAULT_TTL_SWEEP_MAX_MESSAGES, 1, 1_000_000),
    defaults,
  };
}
