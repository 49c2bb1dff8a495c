/**
 * An offline LRU cache simulation: replays a trace of requests (key, size) against a cache bounded
 * by bytes or by object count and counts hits. Pure and synchronous: no clock, no I/O. The CDN
 * bench runs the same trace through a real edge and compares the edge's hit ratio with this one,
 * which tells whether the edge's storage really behaves as the LRU it claims to be.
 *
 * The rules are those of the edge's memory store (lru-cache with `maxSize`):
 *
 * - a hit makes the object the most recently used;
 * - a miss stores the object as the most recently used, then evicts the least recently used objects
 *   until the cache is within its capacity again (never the object just stored);
 * - an object larger than the whole capacity is never stored (a miss each time, nothing evicted);
 * - a key requested again with another size is a hit on the stored copy: the size of a key is
 *   fixed by its first store (a trace from a CDN names one object per key).
 *
 * The Map keeps insertion order, so "delete then set" moves a key to the most recent end and the
 * first key is the least recent: O(1) per request, amortised.
 */
import { InvalidArgumentError } from '../../core/errors.js';

/** The capacity of the simulated cache: bytes (sum of sizes) or objects (count). */
export type LruCapacity = { bytes: number } | { objects: number };

/**
 * A trace: `keys[i]` is the key of request i, `sizes[i]` its size in bytes. `sizes` may be a single
 * number when every object has the same size (the usual benchmark setting).
 */
export interface Trace {
  keys: ArrayLike<number | string>;
  sizes: ArrayLike<number> | number;
}

export interface LruSimOptions {
  capacity: LruCapacity;
  /** Requests at the start of the trace replayed but not counted (cache warm-up). Default 0. */
  warmupRequests?: number;
}

export interface LruSimResult {
  /** Requests counted (after the warm-up). */
  requests: number;
  hits: number;
  misses: number;
  /** hits / requests; 0 for an empty trace. */
  hitRatio: number;
  /** Bytes requested and bytes of those requests served from the cache (counted requests only). */
  bytesRequested: number;
  bytesHit: number;
  /** bytesHit / bytesRequested; 0 when nothing was requested. */
  byteHitRatio: number;
  /** Objects evicted to make room (over the whole trace, warm-up included). */
  evictions: number;
  /** Requests for an object larger than the capacity (never stored). */
  tooLarge: number;
  /** Objects and bytes held at the end. */
  objects: number;
  bytes: number;
}

function checkCount(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${n}`);
}

/** Replays `trace` through an LRU cache of `options.capacity`; counts hits after the warm-up. */
export function simulateLru(trace: Trace, options: LruSimOptions): LruSimResult {
  const byBytes = 'bytes' in options.capacity;
  const capacity = byBytes ? (options.capacity as { bytes: number }).bytes : (options.capacity as { objects: number }).objects;
  checkCount(byBytes ? 'capacity.bytes' : 'capacity.objects', capacity);
  const warmup = options.warmupRequests ?? 0;
  checkCount('warmupRequests', warmup);
  const { keys } = trace;
  const fixedSize = typeof trace.sizes === 'number' ? trace.sizes : undefined;
  const sizes = typeof trace.sizes === 'number' ? undefined : trace.sizes;
  if (fixedSize !== undefined) checkCount('sizes', fixedSize);
  else if (sizes!.length !== keys.length) throw new InvalidArgumentError(`trace.sizes has ${sizes!.length} entries for ${keys.length} keys`);

  // key -> size as stored; iteration order = recency (first = least recently used).
  const cache = new Map<number | string, number>();
  let used = 0;
  let hits = 0;
  let requests = 0;
  let bytesRequested = 0;
  let bytesHit = 0;
  let evictions = 0;
  let tooLarge = 0;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const size = fixedSize ?? sizes![i]!;
    if (fixedSize === undefined && (!Number.isSafeInteger(size) || size < 0)) throw new InvalidArgumentError(`trace.sizes[${i}] must be a non-negative integer, got ${size}`);
    const counted = i >= warmup;
    if (counted) {
      requests++;
      bytesRequested += size;
    }
    const stored = cache.get(key);
    if (stored !== undefined) {
      cache.delete(key);
      cache.set(key, stored);
      if (counted) {
        hits++;
        bytesHit += size;
      }
      continue;
    }
    const cost = byBytes ? size : 1;
    if (cost > capacity) {
      tooLarge++;
      continue;
    }
    cache.set(key, size);
    used += cost;
    while (used > capacity) {
      // The oldest entry; never the one just stored, since it alone fits.
      const [oldest, oldSize] = cache.entries().next().value as [number | string, number];
      cache.delete(oldest);
      used -= byBytes ? oldSize : 1;
      evictions++;
    }
  }
  let bytes = 0;
  for (const s of cache.values()) bytes += s;
  return {
    requests,
    hits,
    misses: requests - hits,
    hitRatio: requests ? hits / requests : 0,
    bytesRequested,
    bytesHit,
    byteHitRatio: bytesRequested ? bytesHit / bytesRequested : 0,
    evictions,
    tooLarge,
    objects: cache.size,
    bytes,
  };
}
