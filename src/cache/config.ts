/**
 * `archlab cache --config cache.yaml`: the demo cache server's file. One cache (a strategy over a
 * store) in front of one source (the demo table `items` in SQLite or PostgreSQL), served as a small
 * HTTP API. Durations and sizes take units (`5s`, `64MiB`) and come out with the unit in the name.
 * Every field's default is given next to it; docs/cache.md has the reference.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { loadConfig, parseConfig, zAdmin, zLimits, zListener, zLog, zMetrics, zTimeouts } from '../core/config.js';
import { zDuration, zSize } from '../core/units.js';

export const STRATEGIES = ['cache-aside', 'read-through', 'write-through', 'write-back'] as const;

const zMemoryStore = z
  .strictObject({
    /** Entries kept at most. Default 10000. */
    maxEntries: z.int().min(1).max(100_000_000).default(10_000),
    /** Bytes of values kept at most (estimated). Default 64MiB. -> maxBytes */
    maxSize: zSize('64MiB', { minBytes: 1024 }),
  })
  .transform(({ maxSize, ...rest }) => ({ ...rest, maxBytes: maxSize }))
  .prefault({});

const zRedisStore = z
  .strictObject({
    /** Redis URL. Default "redis://127.0.0.1:6379". Ignored when `cluster` is set. */
    url: z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
    /** Redis Cluster seed nodes as "host:port"; set it to use Redis Cluster. */
    cluster: z.array(z.string().regex(/^[^:\s]+:\d{1,5}$/, 'expected "host:port"')).min(1).max(64).optional(),
    /** Key namespace. Default "archlab:cache:". */
    prefix: z.string().min(1).max(128).default('archlab:cache:'),
    /** A Redis command slower than this counts as a failure. Default 250ms. -> commandTimeoutMs */
    commandTimeout: zDuration('250ms', { minMs: 1 }),
  })
  .transform(({ commandTimeout, ...rest }) => ({ ...rest, commandTimeoutMs: commandTimeout }))
  .prefault({});

const zStore = z
  .strictObject({
    /** memory (lru-cache in this process), redis, or tiered (memory L1 + Redis L2 with pub/sub invalidation). Default memory. */
    kind: z.enum(['memory', 'redis', 'tiered']).default('memory'),
    /** The memory store, or the tiered store's L1. */
    memory: zMemoryStore,
    /** The Redis store, or the tiered store's L2. */
    redis: zRedisStore,
    /** Largest value stored; bigger is refused with ARCHLAB_CACHE_VALUE_TOO_LARGE. Default 1MiB. -> maxValueBytes */
    maxValue: zSize('1MiB', { minBytes: 16 }),
  })
  .transform(({ maxValue, ...rest }) => ({ ...rest, maxValueBytes: maxValue }))
  .prefault({});

const zJournal = z
  .strictObject({
    /** Journal file, relative to the config file. Required. */
    path: z.string().min(1),
    /** "always" (fsync before each acknowledgement, group-committed) or a duration: fsync every so often. Default "always". */
    fsync: z.union([z.literal('always'), z.string()]).default('always'),
    /** Largest journal; when unflushed writes fill it, writes get ARCHLAB_CACHE_BACKPRESSURE. Default 64MiB. -> maxBytes */
    maxSize: zSize('64MiB', { minBytes: 4096 }),
  })
  .transform(({ maxSize, fsync, ...rest }, ctx) => {
    if (fsync === 'always') return { ...rest, fsync: 'always' as const, maxBytes: maxSize };
    const parsed = zDuration(undefined, { minMs: 1, maxMs: 60_000 }).safeParse(fsync);
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', path: ['fsync'], input: fsync, message: `expected "always" or a duration such as "50ms", received ${JSON.stringify(fsync)}` });
      return z.NEVER;
    }
    return { ...rest, fsync: { everyMs: parsed.data }, maxBytes: maxSize };
  });

const zJournalDurability = z.strictObject({ journal: zJournal });

/**
 * "none" or { journal }. Not a z.union: a union that fails reports only "invalid input", and the
 * user needs to hear which journal field is wrong.
 */
const zDurability = z.unknown().optional().transform((v, ctx): 'none' | z.output<typeof zJournalDurability> => {
  if (v === undefined || v === 'none') return 'none';
  if (typeof v !== 'object' || v === null) {
    ctx.addIssue({ code: 'custom', input: v, message: `expected "none" or { journal: { path, fsync } }, received ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  const r = zJournalDurability.safeParse(v);
  if (r.success) return r.data;
  for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', input: v, path: issue.path as PropertyKey[], message: issue.message });
  return z.NEVER;
});

const zWriteBack = z
  .strictObject({
    /** How often the flusher runs. Default 100ms. -> flushIntervalMs */
    flushInterval: zDuration('100ms', { minMs: 1 }),
    /** Writes per source batch (one transaction). Default 500. */
    maxBatch: z.int().min(1).max(100_000).default(500),
    /** No acknowledged write waits longer than this for a flush attempt while the source is up. Default 1s. -> maxDelayMs */
    maxDelay: zDuration('1s', { minMs: 1 }),
    /** Distinct keys waiting for a flush at most; beyond it writes wait, then fail with ARCHLAB_CACHE_BACKPRESSURE. Default 100000. */
    maxQueueKeys: z.int().min(1).max(10_000_000).default(100_000),
    /** How long a write waits for room in a full queue. Default 1s. -> enqueueTimeoutMs */
    enqueueTimeout: zDuration('1s', { minMs: 1 }),
    /** "none" (acknowledged writes not yet flushed are lost if the process dies) or a journal. Default "none". */
    durability: zDurability,
  })
  .transform((w) => ({
    flushIntervalMs: w.flushInterval,
    maxBatch: w.maxBatch,
    maxDelayMs: w.maxDelay,
    maxQueueKeys: w.maxQueueKeys,
    enqueueTimeoutMs: w.enqueueTimeout,
    durability: w.durability,
  }))
  .prefault({});

const zCache = z
  .strictObject({
    /** Name in metrics and logs. Default "items". */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected 1-64 letters, digits, ".", "_" or "-"').default('items'),
    /** cache-aside, read-through, write-through or write-back. Default cache-aside. */
    strategy: z.enum(STRATEGIES).default('cache-aside'),
    store: zStore,
    /** How long a loaded value is fresh. Default 60s. -> ttlMs */
    ttl: zDuration('60s', { minMs: 1 }),
    /** TTL jitter: each entry lives ttl x (1 - jitter x u), u in [0, 1). Default 0.1. */
    jitter: z.number().min(0).max(0.99).default(0.1),
    /** Serve a stale value this long after expiry while one background load refreshes it. Default 0s (off). -> staleWhileRevalidateMs */
    staleWhileRevalidate: zDuration('0s'),
    /** Serve a stale value this long after expiry when the source fails. Default 0s (off). -> staleIfErrorMs */
    staleIfError: zDuration('0s'),
    /** Cache "no such item" for this long. Default 0s (off). -> negativeTtlMs */
    negativeTtl: zDuration('0s'),
    /** Past the soft timeout a load serves stale (if any) and finishes in the background; past the hard one it fails. */
    loadTimeouts: z
      .strictObject({
        /** Default 200ms. -> softMs */
        soft: zDuration('200ms', { minMs: 1 }),
        /** Default 5s. -> hardMs */
        hard: zDuration('5s', { minMs: 1 }),
      })
      .transform((t) => ({ softMs: t.soft, hardMs: t.hard }))
      .prefault({}),
    /** Refresh in the background when a fresh entry is read in the last part of its life (0.2 = last 20%). Default 0 (off). */
    refreshAhead: z.number().min(0).max(0.99).default(0),
    /** Circuit breaker around the store, or false. Default { failures: 5, open: 1s }. */
    breaker: z
      .union([
        z.literal(false),
        z
          .strictObject({
            /** Consecutive store failures that open it. Default 5. */
            failures: z.int().min(1).max(1000).default(5),
            /** How long it stays open before one trial call. Default 1s. -> openMs */
            open: zDuration('1s', { minMs: 1 }),
          })
          .transform((b) => ({ failureThreshold: b.failures, openMs: b.open })),
      ])
      .prefault({}),
    /** With a redis or tiered store: one process of a fleet loads a cold key while the others wait for it. Default false. */
    fleetLease: z.boolean().default(false),
    writeBack: zWriteBack,
  })
  .superRefine((c, ctx) => {
    if (c.loadTimeouts.softMs > c.loadTimeouts.hardMs) {
      ctx.addIssue({ code: 'custom', path: ['loadTimeouts', 'soft'], input: c.loadTimeouts.softMs, message: `must not exceed loadTimeouts.hard (${c.loadTimeouts.hardMs}ms)` });
    }
    if (c.fleetLease && c.store.kind === 'memory') {
      ctx.addIssue({ code: 'custom', path: ['fleetLease'], input: true, message: 'needs store.kind redis or tiered (the lease lives in Redis)' });
    }
  })
  .transform(({ ttl, staleWhileRevalidate, staleIfError, negativeTtl, ...rest }) => ({
    ...rest,
    ttlMs: ttl,
    staleWhileRevalidateMs: staleWhileRevalidate,
    staleIfErrorMs: staleIfError,
    negativeTtlMs: negativeTtl,
  }))
  .prefault({});

const zSource = z
  .strictObject({
    /** sqlite (embedded, the default) or postgres. */
    kind: z.enum(['sqlite', 'postgres']).default('sqlite'),
    /** SQLite database file, relative to the config file; ":memory:" for none. Default ":memory:". */
    sqlite: z.strictObject({ path: z.string().min(1).default(':memory:') }).prefault({}),
    /** PostgreSQL connection. Default "postgres://postgres@127.0.0.1:5432/test". */
    postgres: z.strictObject({ connectionString: z.string().regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL').default('postgres://postgres@127.0.0.1:5432/test') }).prefault({}),
    /** Demo table name. Default "items". */
    table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'expected a SQL identifier').default('items'),
    /** Rows created at start when the table is empty (ids "1".."N"). Default 1000. */
    seed: z.int().min(0).max(10_000_000).default(1000),
    /** Extra latency added to every source call, to make the cache's effect visible. Default 0ms. -> latencyMs */
    latency: zDuration('0ms', { maxMs: 60_000 }),
  })
  .transform(({ latency, ...rest }) => ({ ...rest, latencyMs: latency }))
  .prefault({});

export const zCacheServerConfig = z.strictObject({
  /** The HTTP API: GET/PUT/DELETE /items/:id, GET /stats. Required, at least one. */
  listeners: z.array(zListener).min(1, 'at least one listener').max(16),
  admin: zAdmin.optional(),
  log: zLog,
  metrics: zMetrics,
  limits: zLimits,
  timeouts: zTimeouts,
  cache: zCache,
  source: zSource,
});

export type CacheServerConfig = z.output<typeof zCacheServerConfig>;
export type CacheServerConfigInput = z.input<typeof zCacheServerConfig>;
export type CacheSectionConfig = CacheServerConfig['cache'];
export type SourceSectionConfig = CacheServerConfig['source'];

/** Paths in the file are relative to the file. */
function resolvePaths(config: CacheServerConfig, baseDir: string): CacheServerConfig {
  const abs = (p: string): string => (p === ':memory:' || isAbsolute(p) ? p : resolve(baseDir, p));
  const durability = config.cache.writeBack.durability;
  return {
    ...config,
    source: { ...config.source, sqlite: { path: abs(config.source.sqlite.path) } },
    cache: {
      ...config.cache,
      writeBack: {
        ...config.cache.writeBack,
        durability: durability === 'none' ? durability : { journal: { ...durability.journal, path: abs(durability.journal.path) } },
      },
    },
  };
}

/** Loads and validates a config file; errors name the file, the field and what was expected. */
export function loadCacheConfig(file: string): CacheServerConfig {
  return resolvePaths(loadConfig(file, zCacheServerConfig), dirname(resolve(file)));
}

/** Validates a config given as an object or YAML text (paths relative to the working directory). */
export function cacheConfig(input: CacheServerConfigInput | string, sourceName = '<cache config>'): CacheServerConfig {
  const parsed = parseConfig(typeof input === 'string' ? input : JSON.stringify(input), zCacheServerConfig, sourceName, typeof input === 'string' ? undefined : 'json');
  return resolvePaths(parsed, process.cwd());
}
