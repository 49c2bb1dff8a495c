/**
 * The options every strategy shares and the interface of a fleet-wide load lease. Each strategy is a
 * class in its own file: CacheAside (cache-aside.ts), ReadThrough (read-through.ts), WriteThrough
 * (write-through.ts), WriteBack (write-back.ts).
 */
import type { Clock } from '../../core/clock.js';
import type { Random } from '../../core/random.js';
import type { Logger } from '../../core/log.js';
import type { FreshnessOptions } from '../policy.js';
import type { CacheStore, Source } from '../types.js';
import type { CacheMetrics } from '../metrics.js';

export interface LoadTimeouts {
  /** After this long, serve a stale entry if there is one and let the load finish in the background. Default 200 ms. */
  softMs: number;
  /** After this long, give up: serve stale if allowed, else fail with ARCHLAB_CACHE_LOAD_TIMEOUT. Default 5 s. */
  hardMs: number;
}

export interface BreakerOptions {
  /** Consecutive store failures that open the breaker. Default 5. */
  failureThreshold: number;
  /** How long the breaker stays open before one trial call (half-open). Default 1 s. */
  openMs: number;
}

/**
 * A lease that lets one process of a fleet load a key while the others wait for the cache to fill
 * (src/cache/lease.ts implements it on Redis with SET NX PX and a compare-and-delete release).
 */
export interface FleetLease {
  /** Tries to take the lease on `key` for `ttlMs`; undefined when another process holds it. */
  acquire(key: string, ttlMs: number): Promise<LeaseHandle | undefined>;
}

export interface LeaseHandle {
  /** Gives the lease back (only if still ours). */
  release(): Promise<void>;
}

/** Options common to every strategy. */
export interface CacheOptions<V> {
  /** Name for metrics and logs (label `cache`). */
  name: string;
  store: CacheStore<V>;
  /** Freshness (TTL, jitter, stale windows, negative TTL); defaults in policy.ts. */
  freshness?: Partial<FreshnessOptions>;
  loadTimeouts?: Partial<LoadTimeouts>;
  /** Refresh-ahead ratio in [0, 1): refresh in the background when read in the last part of fresh life. 0 = off (default). */
  refreshAheadRatio?: number;
  /** Fleet-wide single flight: one process loads, the others wait for the fill. Off by default. */
  lease?: FleetLease;
  /** Circuit breaker around the store; `false` turns it off. */
  breaker?: Partial<BreakerOptions> | false;
  metrics?: CacheMetrics;
  clock?: Clock;
  random?: Random;
  logger?: Logger;
}

/** Read-through, write-through and write-back own their source. */
export interface SourcedCacheOptions<V> extends CacheOptions<V> {
  source: Source<V>;
  /** Tags to attach to the entry of `key` (for invalidateTag). */
  tagsFor?: (key: string, value: V) => readonly string[];
}
