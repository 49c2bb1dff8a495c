import { ArchlabError, type ArchlabErrorOptions } from '../core/errors.js';

/**
 * Stable codes of the cache block. `retryable` says whether trying again can help: a store or a
 * source that is down can come back; a value over the size limit never fits.
 */
export type CacheErrorCode =
  /** A value is larger than the store's `maxValueBytes` (details: key, bytes, maxBytes). */
  | 'ARCHLAB_CACHE_VALUE_TOO_LARGE'
  /** The codec could not encode or decode a value (details: key, direction). */
  | 'ARCHLAB_CACHE_CODEC'
  /** The cache store (Redis) failed or timed out; retryable. */
  | 'ARCHLAB_CACHE_STORE_UNAVAILABLE'
  /** The circuit breaker is open: the store is skipped without trying it; retryable. */
  | 'ARCHLAB_CACHE_BREAKER_OPEN'
  /** The source of truth failed (details: key, op); retryable. */
  | 'ARCHLAB_CACHE_SOURCE_FAILED'
  /** A load took longer than the hard load timeout and there was nothing stale to serve; retryable. */
  | 'ARCHLAB_CACHE_LOAD_TIMEOUT'
  /** The write-back queue or journal is full and stayed full for `enqueueTimeoutMs`; retryable. */
  | 'ARCHLAB_CACHE_BACKPRESSURE'
  /** The journal file is unreadable beyond a torn tail, or cannot be written. */
  | 'ARCHLAB_CACHE_JOURNAL'
  /** The cache was closed; calls after close() fail with this. */
  | 'ARCHLAB_CACHE_CLOSED'
  /** A key is empty, too long (over 1024 bytes) or not a string. */
  | 'ARCHLAB_CACHE_BAD_KEY';

const RETRYABLE: ReadonlySet<CacheErrorCode> = new Set([
  'ARCHLAB_CACHE_STORE_UNAVAILABLE',
  'ARCHLAB_CACHE_BREAKER_OPEN',
  'ARCHLAB_CACHE_SOURCE_FAILED',
  'ARCHLAB_CACHE_LOAD_TIMEOUT',
  'ARCHLAB_CACHE_BACKPRESSURE',
]);

export class CacheError extends ArchlabError {
  declare readonly code: CacheErrorCode;

  constructor(code: CacheErrorCode, message: string, options: Omit<ArchlabErrorOptions, 'retryable'> = {}) {
    super(code, message, { ...options, retryable: RETRYABLE.has(code) });
  }
}

/** Keys are non-empty strings of at most MAX_KEY_BYTES UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new CacheError('ARCHLAB_CACHE_BAD_KEY', `cache key must be a non-empty string, got ${typeof key === 'string' ? 'an empty string' : typeof key}`);
  }
  // Fast path: a key of at most MAX_KEY_BYTES / 3 UTF-16 units cannot exceed the byte limit.
  if (key.length > MAX_KEY_BYTES / 3 && Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new CacheError('ARCHLAB_CACHE_BAD_KEY', `cache key is ${Buffer.byteLength(key)} bytes, over the ${MAX_KEY_BYTES}-byte limit`, {
      details: { key: key.slice(0, 64) + '...' },
    });
  }
}
