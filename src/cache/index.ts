/**
 * archlab/cache: caching strategies (cache-aside, read-through, write-through, write-back) on memory,
 * Redis or tiered stores, in front of SQLite, PostgreSQL or any async source. See docs/cache.md.
 */
export type { Entry, CacheStore, FillToken, Codec, Source, SourceWrite, StrategyName, EvictionReason } from './types.js';
export { CacheError, type CacheErrorCode, checkKey, MAX_KEY_BYTES } from './errors.js';
export { DEFAULT_FRESHNESS, makeEntry, judge, dueForRefreshAhead, type FreshnessOptions, type Verdict } from './policy.js';
export { SingleFlight } from './single-flight.js';
export { CacheMetrics, emptyStats, type CacheStats, type WriteBackStats, type MeteredCache } from './metrics.js';
export { CircuitBreaker, DEFAULT_BREAKER, type BreakerState } from './breaker.js';
export { jsonCodec, rawCodec, stringCodec } from './codec.js';
export { createMemoryStore, MemoryStore, type MemoryStoreOptions } from './stores/memory.js';
export { InterceptedStore, type StoreOp } from './stores/intercepted.js';
export { createRedisStore, RedisStore, type RedisStoreOptions } from './stores/redis.js';
export { createTieredStore, TieredStore, type TieredStoreOptions } from './stores/tiered.js';
export { createRedisLease, RedisLease, type RedisLeaseOptions } from './lease.js';
export { sqliteSource, type SqliteSourceOptions } from './sources/sqlite.js';
export { postgresSource, type PostgresSourceOptions } from './sources/postgres.js';
export { functionSource, type FunctionSourceOptions } from './sources/function.js';
export type { CacheOptions, SourcedCacheOptions, LoadTimeouts, BreakerOptions, FleetLease, LeaseHandle } from './strategies/types.js';
export type { Loader } from './core.js';
export { CacheAside, type CacheAsideOptions, type EntryOptions } from './strategies/cache-aside.js';
export { ReadThrough, type ReadThroughOptions } from './strategies/read-through.js';
export { WriteThrough, type WriteThroughOptions } from './strategies/write-through.js';
export { WriteBack, type WriteBackOptions, type WriteBackOpenOptions, type Durability } from './strategies/write-back.js';
export { startCacheServer, type CacheServerHandle, type CacheServerOptions, type Item, type ItemRow } from './server.js';
export { cacheConfig, loadCacheConfig, zCacheServerConfig, STRATEGIES, type CacheServerConfig, type CacheServerConfigInput } from './config.js';
