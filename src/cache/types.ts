/**
 * The cache block's vocabulary. A `CacheStore` is where cached entries live (memory, Redis, tiered);
 * a `Source` is the source of truth behind the cache (SQLite, PostgreSQL, any async functions); a
 * strategy (cache-aside, read-through, write-through, write-back) decides when each is read and
 * written. See docs/cache.md.
 */

/**
 * One cached entry. The cache layer, not the store, decides freshness: every store keeps these
 * fields as they are, and drops the entry at `staleUntilMs` (its physical TTL).
 */
export interface Entry<V = unknown> {
  /** The cached value; `undefined` only when `negative` is set. */
  value: V | undefined;
  /** A cached miss: the source had no row for the key (negative caching, its own TTL). */
  negative?: true;
  /** Epoch ms until which the entry is fresh and served without a load. */
  freshUntilMs: number;
  /**
   * Epoch ms until which the entry may still be served stale: while a background refresh runs
   * (stale-while-revalidate) or while the source fails (stale-if-error). Always >= freshUntilMs.
   * The store drops the entry at this time.
   */
  staleUntilMs: number;
  /** Tags for invalidation by tag (e.g. `user:42`, `catalogue`). */
  tags?: readonly string[];
}

/** Why an entry left a store on its own. */
export type EvictionReason = 'capacity' | 'expired';

/**
 * Where entries live. One conformance suite (src/cache/stores/conformance.ts) runs against every
 * implementation. Every method may throw CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE') when the
 * store cannot be reached; none may hang longer than the store's `commandTimeoutMs`.
 *
 * Race protection for cache-aside and write-through (the "stale set after delete" race) uses fill
 * tokens, like memcached leases: a reader takes `fillToken(key)` before it loads from the source,
 * and `fill(key, entry, token)` stores the entry only if no `invalidate(key)` happened in between.
 * An invalidation bumps the key's generation; generations are kept for `raceWindowMs`, and a fill
 * whose token is older than that window is refused (so the bounded generation memory is safe).
 */
export interface CacheStore<V = unknown> {
  readonly kind: 'memory' | 'redis' | 'tiered';
  /**
   * The longest a call may take before the store fails it itself, in ms (Redis: its
   * commandTimeoutMs), where the store has such a limit. The strategies also stop waiting for a call
   * after this long and count it as a store failure (default 1000 ms when absent; in-process stores
   * are not timed).
   */
  readonly commandTimeoutMs?: number;
  /** The entry for `key`, or undefined. Entries past staleUntilMs are never returned. */
  get(key: string): Promise<Entry<V> | undefined>;
  /**
   * Synchronous read of the in-process tier only (memory store, tiered L1), for the hit path;
   * undefined when the key is not there. Stores without an in-process tier do not implement it.
   */
  peek?(key: string): Entry<V> | undefined;
  /** Stores the entry unconditionally (write-back, explicit set); bumps the generation, so fills in flight are refused. */
  set(key: string, entry: Entry<V>): Promise<void>;
  /** An opaque token describing the key's current generation; pass it to fill(). */
  fillToken(key: string): Promise<FillToken>;
  /**
   * Stores the entry only if `key` was not invalidated (or filled, or set) since `token` was taken;
   * says whether it did. A successful fill bumps the generation too, so one token fills at most once
   * and two writers holding tokens of the same generation cannot both fill (write-through's fence
   * across processes).
   */
  fill(key: string, entry: Entry<V>, token: FillToken): Promise<boolean>;
  /** Removes the key and bumps its generation so fills that started before are refused. */
  invalidate(key: string): Promise<void>;
  /** Invalidates every key that carries `tag`; returns how many were removed. */
  invalidateTag(tag: string): Promise<number>;
  /** Removes every entry this store holds (its namespace only, for Redis). */
  clear(): Promise<void>;
  /** Entry count, where the store can tell cheaply (memory: exact; Redis: undefined). */
  size(): number | undefined;
  /** Called when an entry leaves on its own (capacity eviction or expiry), for metrics. */
  onEvict?: (key: string, reason: EvictionReason) => void;
  close(): Promise<void>;
}

/** A fill token: the key's generation when the load began, and when it began (epoch ms). */
export interface FillToken {
  readonly generation: number;
  readonly takenAtMs: number;
}

/** Encodes values for stores that keep bytes (Redis). The default is JSON with Buffer and Date kept. */
export interface Codec {
  readonly name: string;
  encode(value: unknown): Buffer | string;
  decode(data: Buffer): unknown;
}

/** One write for a source, as write-back hands them over in batches. */
export type SourceWrite<V = unknown> = { op: 'put'; key: string; value: V } | { op: 'delete'; key: string };

/**
 * The source of truth behind a cache. Errors from it surface as
 * CacheError('ARCHLAB_CACHE_SOURCE_FAILED', { cause }) with the key.
 */
export interface Source<V = unknown> {
  readonly name: string;
  /** The value for `key`, or undefined when the source has none. */
  load(key: string): Promise<V | undefined>;
  /** Creates or replaces the value. */
  write(key: string, value: V): Promise<void>;
  /** Removes the value (no error when absent). */
  remove(key: string): Promise<void>;
  /**
   * Applies many writes in one transaction, in order (write-back uses it). Sources without it get
   * the writes one by one.
   */
  writeBatch?(writes: readonly SourceWrite<V>[]): Promise<void>;
  close?(): Promise<void>;
}

/** Names of the strategies, as config and metrics label them. */
export type StrategyName = 'cache-aside' | 'read-through' | 'write-through' | 'write-back';
