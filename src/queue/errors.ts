import { ArchlabError, type ArchlabErrorOptions } from '../core/errors.js';

/**
 * Stable codes of the queue block (log, broker, server, client, drivers). `retryable` says whether
 * trying the same call again can help: a full disk or a dropped connection can clear; an oversized
 * message never fits.
 */
export type QueueErrorCode =
  /** A message or record batch is larger than the limit (details: bytes, maxBytes). */
  | 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE'
  /** A topic does not exist and auto-create is off (details: topic). */
  | 'ARCHLAB_QUEUE_UNKNOWN_TOPIC'
  /** A partition number is outside the topic (details: topic, partition, partitions). */
  | 'ARCHLAB_QUEUE_UNKNOWN_PARTITION'
  /** A queue does not exist and auto-create is off (details: queue). */
  | 'ARCHLAB_QUEUE_UNKNOWN_QUEUE'
  /** A `mandatory` publish matched no queue (details: exchange, routingKey). */
  | 'ARCHLAB_QUEUE_UNROUTABLE'
  /** An exchange does not exist (details: exchange). */
  | 'ARCHLAB_QUEUE_UNKNOWN_EXCHANGE'
  /** A topic, queue or exchange was declared again with different settings (details: name, field). */
  | 'ARCHLAB_QUEUE_DECLARE_MISMATCH'
  /** A fetch or seek asked for an offset outside [logStartOffset, highWatermark] (details). */
  | 'ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE'
  /** A queue is at maxLength with overflow 'reject-publish'; retryable once consumers drain it. */
  | 'ARCHLAB_QUEUE_FULL'
  /** The disk is full (ENOSPC) or the data dir's byte limit is reached; nothing was acknowledged; retryable. */
  | 'ARCHLAB_QUEUE_DISK_FULL'
  /** Any other storage I/O failure (details: path, op). */
  | 'ARCHLAB_QUEUE_STORAGE'
  /** Stored data failed its CRC beyond a torn tail, or an index is inconsistent (details: path, position). */
  | 'ARCHLAB_QUEUE_CORRUPT'
  /** An idempotent producer's sequence number skipped ahead (details: producerId, expected, got). */
  | 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE'
  /** A producer id was fenced by a newer epoch of the same id (details). */
  | 'ARCHLAB_QUEUE_PRODUCER_FENCED'
  /** The consumer group is rebalancing: rejoin, then retry; retryable. */
  | 'ARCHLAB_QUEUE_REBALANCE_IN_PROGRESS'
  /** The member id is not (or no longer) in the group: rejoin with no id; retryable. */
  | 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'
  /** A commit or heartbeat carried an old generation; rejoin; retryable. */
  | 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'
  /** A delivery tag is unknown or already settled (details: deliveryTag). */
  | 'ARCHLAB_QUEUE_UNKNOWN_DELIVERY'
  /** A frame could not be parsed; the server closes only that connection. */
  | 'ARCHLAB_QUEUE_PROTOCOL'
  /** A token was missing or wrong. */
  | 'ARCHLAB_QUEUE_UNAUTHORIZED'
  /** A per-connection or server limit was reached (details: limit, value); retryable. */
  | 'ARCHLAB_QUEUE_LIMIT'
  /** A call did not complete within its timeout; retryable. */
  | 'ARCHLAB_QUEUE_TIMEOUT'
  /** The connection to the broker dropped; the client reconnects; retryable. */
  | 'ARCHLAB_QUEUE_DISCONNECTED'
  /** The log, broker, client or driver was closed; calls after close() fail with this. */
  | 'ARCHLAB_QUEUE_CLOSED'
  /** A driver cannot do this on its engine (details: driver, feature). */
  | 'ARCHLAB_QUEUE_UNSUPPORTED'
  /** An argument can never work (bad name, negative count, unknown option). */
  | 'ARCHLAB_QUEUE_BAD_ARGUMENT';

const RETRYABLE: ReadonlySet<QueueErrorCode> = new Set<QueueErrorCode>([
  'ARCHLAB_QUEUE_FULL',
  'ARCHLAB_QUEUE_DISK_FULL',
  'ARCHLAB_QUEUE_REBALANCE_IN_PROGRESS',
  'ARCHLAB_QUEUE_UNKNOWN_MEMBER',
  'ARCHLAB_QUEUE_ILLEGAL_GENERATION',
  'ARCHLAB_QUEUE_LIMIT',
  'ARCHLAB_QUEUE_TIMEOUT',
  'ARCHLAB_QUEUE_DISCONNECTED',
]);

export class QueueError extends ArchlabError {
  declare readonly code: QueueErrorCode;

  constructor(code: QueueErrorCode, message: string, options: Omit<ArchlabErrorOptions, 'retryable'> = {}) {
    super(code, message, { ...options, retryable: RETRYABLE.has(code) });
  }
}

/** True when `err` is a QueueError, optionally with the given code. */
export function isQueueError(err: unknown, code?: QueueErrorCode): err is QueueError {
  return err instanceof QueueError && (code === undefined || err.code === code);
}

/** Names of topics, queues, exchanges and groups: 1–200 chars of [A-Za-z0-9._-], not starting with '__'. */
const NAME_RE = /^[A-Za-z0-9._-]{1,200}$/;

/** Throws ARCHLAB_QUEUE_BAD_ARGUMENT unless `name` is a valid user name for a `kind` (topic, queue...). */
export function checkName(kind: string, name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name) || name.startsWith('__')) {
    throw new QueueError(
      'ARCHLAB_QUEUE_BAD_ARGUMENT',
      `${kind} name must be 1-200 characters of A-Z a-z 0-9 . _ - and not start with "__" (got ${JSON.stringify(name)})`,
      { details: { kind, name } },
    );
  }
  return name;
}
