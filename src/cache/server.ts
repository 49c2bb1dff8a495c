/**
 * `startCacheServer(config)`: the `archlab cache` demo. One cache (the configured strategy over a
 * memory, Redis or tiered store) in front of the demo table `items` (SQLite or PostgreSQL), served as
 * a small HTTP API:
 *
 *   GET    /items/:id   the item, through the cache (404 when there is none)
 *   PUT    /items/:id   {"name": string, "priceCents": integer} -> writes it as the strategy says
 *   DELETE /items/:id   removes it
 *   POST   /flush       write-back only: flush pending writes now
 *   GET    /stats       the cache's counters (and the write-back queue)
 *
 * plus /metrics and /healthz on the admin listener.
 */
import * as http from 'node:http';
import type { Logger } from 'pino';
import Database from 'better-sqlite3';
import pg from 'pg';
import { z } from 'zod';
import { SystemClock, type Clock } from '../core/clock.js';
import { listen, type ServerAddress, type ServerHandle } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { createRegistry, readBody, sendError, sendJson, startAdminServer, HttpError } from '../core/metrics.js';
import { isArchlabError } from '../core/errors.js';
import { cacheConfig, type CacheServerConfig, type CacheServerConfigInput, type SourceSectionConfig } from './config.js';
import { CacheError } from './errors.js';
import { CacheMetrics, type CacheStats, type WriteBackStats } from './metrics.js';
import { createMemoryStore } from './stores/memory.js';
import { createRedisStore, type RedisClient } from './stores/redis.js';
import { createTieredStore } from './stores/tiered.js';
import { createRedisLease } from './lease.js';
import { sqliteSource } from './sources/sqlite.js';
import { postgresSource } from './sources/postgres.js';
import { CacheAside } from './strategies/cache-aside.js';
import { ReadThrough } from './strategies/read-through.js';
import { WriteThrough } from './strategies/write-through.js';
import { WriteBack } from './strategies/write-back.js';
import type { CacheStore, Source } from './types.js';
import type { CacheOptions } from './strategies/types.js';

/** A row of the demo table, as the source stores it. */
export interface ItemRow {
  name: string;
  price_cents: number;
  updated_at: number;
}

/** An item as the HTTP API shows it. */
export interface Item {
  id: string;
  name: string;
  priceCents: number;
  updatedAt: number;
}

const zItemBody = z.strictObject({
  name: z.string().min(1).max(200),
  priceCents: z.int().min(0).max(1_000_000_000),
});

/** Item ids: 1-64 letters, digits, "-" or "_". */
const ID = /^\/items\/([A-Za-z0-9_-]{1,64})$/;
/** Largest PUT body. */
const MAX_ITEM_BODY_BYTES = 4096;

export interface CacheServerOptions {
  logger?: Logger;
  clock?: Clock;
}

export interface CacheServerHandle {
  address: ServerAddress;
  listeners: ServerAddress[];
  admin?: ServerAddress;
  /** The strategy's counters. */
  stats(): { strategy: string; store: string; stats: CacheStats; writeBack?: WriteBackStats };
  close(): Promise<void>;
}

/** What the HTTP handlers need, whatever the strategy. */
interface ItemsApi {
  get(id: string): Promise<ItemRow | undefined>;
  put(id: string, row: ItemRow): Promise<void>;
  remove(id: string): Promise<void>;
  flush?(): Promise<void>;
  stats(): CacheStats;
  writeBackStats?(): WriteBackStats;
  close(): Promise<void>;
}

function isParsed(c: CacheServerConfigInput | CacheServerConfig): c is CacheServerConfig {
  return typeof (c as CacheServerConfig).cache?.ttlMs === 'number';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Adds a fixed latency to every source call (config `source.latency`), to make the cache's effect visible. */
function withLatency<V>(source: Source<V>, ms: number): Source<V> {
  if (ms <= 0) return source;
  return {
    name: source.name,
    load: async (k) => (await sleep(ms), source.load(k)),
    write: async (k, v) => (await sleep(ms), source.write(k, v)),
    remove: async (k) => (await sleep(ms), source.remove(k)),
    ...(source.writeBatch ? { writeBatch: async (w) => (await sleep(ms), source.writeBatch!(w)) } : {}),
    ...(source.close ? { close: () => source.close!() } : {}),
  };
}

const COLUMNS = ['name', 'price_cents', 'updated_at'] as const;

/** Creates and seeds the demo table, then returns a Source over it. */
async function openSource(cfg: SourceSectionConfig, clock: Clock): Promise<Source<ItemRow>> {
  const table = cfg.table;
  const seedRows = (n: number): ItemRow[] => Array.from({ length: n }, (_, i) => ({ name: `item ${i + 1}`, price_cents: 100 + ((i * 37) % 9900), updated_at: clock.now() }));
  if (cfg.kind === 'sqlite') {
    const db = new Database(cfg.sqlite.path);
    if (cfg.sqlite.path !== ':memory:') db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 250');
    db.exec(`CREATE TABLE IF NOT EXISTS ${table} (id TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL, updated_at INTEGER NOT NULL)`);
    const { n } = db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number };
    if (n === 0 && cfg.seed > 0) {
      const insert = db.prepare(`INSERT INTO ${table} (id, name, price_cents, updated_at) VALUES (?, ?, ?, ?)`);
      db.transaction((rows: ItemRow[]) => rows.forEach((r, i) => insert.run(String(i + 1), r.name, r.price_cents, r.updated_at)))(seedRows(cfg.seed));
    }
    const source = sqliteSource<ItemRow>({ db, table, keyColumn: 'id', valueColumns: COLUMNS, updatedAtColumn: null, clock });
    return { ...bind(source), close: async () => void db.close() };
  }
  const pool = new pg.Pool({ connectionString: cfg.postgres.connectionString, max: 10, connectionTimeoutMillis: 2000 });
  pool.on('error', () => undefined);
  try {
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (id TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents BIGINT NOT NULL, updated_at BIGINT NOT NULL)`);
    const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
    if (Number(rows[0]!.n) === 0 && cfg.seed > 0) {
      const all = seedRows(cfg.seed);
      for (let i = 0; i < all.length; i += 1000) {
        const chunk = all.slice(i, i + 1000);
        const values = chunk.map((_, j) => `($${j * 4 + 1}, $${j * 4 + 2}, $${j * 4 + 3}, $${j * 4 + 4})`).join(', ');
        await pool.query(`INSERT INTO ${table} (id, name, price_cents, updated_at) VALUES ${values} ON CONFLICT (id) DO NOTHING`, chunk.flatMap((r, j) => [String(i + j + 1), r.name, r.price_cents, r.updated_at]));
      }
    }
  } catch (err) {
    await pool.end();
    throw new CacheError('ARCHLAB_CACHE_SOURCE_FAILED', `PostgreSQL at ${redact(cfg.postgres.connectionString)}: ${(err as Error).message}`, { cause: err });
  }
  const source = postgresSource<ItemRow>({ pool, table, keyColumn: 'id', valueColumns: COLUMNS, updatedAtColumn: null, clock });
  // pg returns BIGINT as strings: give the API numbers.
  const numeric = (r: ItemRow | undefined): ItemRow | undefined => (r ? { name: r.name, price_cents: Number(r.price_cents), updated_at: Number(r.updated_at) } : r);
  return { ...bind(source), load: async (k) => numeric(await source.load(k)), close: async () => pool.end() };
}

/** The source's methods bound to it, so they can be spread into wrappers. */
function bind<V>(s: Source<V>): Source<V> {
  return {
    name: s.name,
    load: (k) => s.load(k),
    write: (k, v) => s.write(k, v),
    remove: (k) => s.remove(k),
    ...(s.writeBatch ? { writeBatch: (w) => s.writeBatch!(w) } : {}),
  };
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

interface StoreBundle {
  store: CacheStore<ItemRow>;
  /** The Redis client the store owns, for the fleet lease. */
  redis?: RedisClient;
  close(): Promise<void>;
}

/** The configured store. Redis clients are created and owned by the stores (no offline queue, bounded commands). */
function openStore(config: CacheServerConfig, clock: Clock): StoreBundle {
  const s = config.cache.store;
  const memory = { maxEntries: s.memory.maxEntries, maxBytes: s.memory.maxBytes, maxValueBytes: s.maxValueBytes };
  if (s.kind === 'memory') {
    const store = createMemoryStore<ItemRow>({ ...memory, clock });
    return { store, close: () => store.close() };
  }
  const connection = s.redis.cluster
    ? { nodes: s.redis.cluster.map((hp) => ({ host: hp.slice(0, hp.lastIndexOf(':')), port: Number(hp.slice(hp.lastIndexOf(':') + 1)) })) }
    : { url: s.redis.url };
  const l2 = createRedisStore<ItemRow>({ ...connection, prefix: s.redis.prefix, maxValueBytes: s.maxValueBytes, commandTimeoutMs: s.redis.commandTimeoutMs, clock });
  if (s.kind === 'redis') return { store: l2, redis: l2.client, close: () => l2.close() };
  const store = createTieredStore<ItemRow>({ l1: memory, l2, clock });
  return {
    store,
    redis: l2.client,
    close: async () => {
      await store.close();
      await l2.close();
    },
  };
}

async function openApi(config: CacheServerConfig, source: Source<ItemRow>, bundle: StoreBundle, metrics: CacheMetrics, clock: Clock, logger: Logger): Promise<ItemsApi> {
  const c = config.cache;
  const common: CacheOptions<ItemRow> = {
    name: c.name,
    store: bundle.store,
    freshness: { ttlMs: c.ttlMs, jitter: c.jitter, staleWhileRevalidateMs: c.staleWhileRevalidateMs, staleIfErrorMs: c.staleIfErrorMs, negativeTtlMs: c.negativeTtlMs },
    loadTimeouts: c.loadTimeouts,
    refreshAheadRatio: c.refreshAhead,
    breaker: c.breaker,
    metrics,
    clock,
    logger,
    ...(c.fleetLease && bundle.redis ? { lease: createRedisLease({ redis: bundle.redis, prefix: c.store.redis.prefix }) } : {}),
  };
  const tagsFor = (): readonly string[] => ['items'];
  switch (c.strategy) {
    case 'cache-aside': {
      const cache = new CacheAside<ItemRow>(common);
      return {
        get: (id) => cache.getOrLoad(id, (k) => source.load(k)),
        put: (id, row) => cache.invalidateOnWrite(id, () => source.write(id, row)),
        remove: (id) => cache.invalidateOnWrite(id, () => source.remove(id)),
        stats: () => cache.stats(),
        close: () => cache.close(),
      };
    }
    case 'read-through': {
      const cache = new ReadThrough<ItemRow>({ ...common, source, tagsFor });
      return {
        get: (id) => cache.get(id),
        // Read-through says nothing about writes: write the source, then drop the cached copy.
        put: async (id, row) => (await source.write(id, row), await cache.invalidate(id)),
        remove: async (id) => (await source.remove(id), await cache.invalidate(id)),
        stats: () => cache.stats(),
        close: () => cache.close(),
      };
    }
    case 'write-through': {
      const cache = new WriteThrough<ItemRow>({ ...common, source, tagsFor });
      return {
        get: (id) => cache.get(id),
        put: (id, row) => cache.set(id, row),
        remove: (id) => cache.delete(id),
        stats: () => cache.stats(),
        close: () => cache.close(),
      };
    }
    case 'write-back': {
      const wb = c.writeBack;
      const cache = await WriteBack.open<ItemRow>({
        ...common,
        source,
        tagsFor,
        writeBack: {
          flushIntervalMs: wb.flushIntervalMs,
          maxBatch: wb.maxBatch,
          maxDelayMs: wb.maxDelayMs,
          maxQueueKeys: wb.maxQueueKeys,
          enqueueTimeoutMs: wb.enqueueTimeoutMs,
          durability: wb.durability,
        },
      });
      return {
        get: (id) => cache.get(id),
        put: (id, row) => cache.set(id, row),
        remove: (id) => cache.delete(id),
        flush: () => cache.flush(),
        stats: () => cache.stats(),
        writeBackStats: () => cache.writeBackStats(),
        close: () => cache.close(),
      };
    }
  }
}

function toItem(id: string, row: ItemRow): Item {
  return { id, name: row.name, priceCents: row.price_cents, updatedAt: row.updated_at };
}

/** HTTP status for an error: typed cache errors that can pass are 503 with Retry-After, bad input 400. */
function statusFor(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (isArchlabError(err, 'ARCHLAB_CACHE_VALUE_TOO_LARGE')) return 413;
  if (isArchlabError(err, 'ARCHLAB_CACHE_BAD_KEY')) return 400;
  if (isArchlabError(err) && err.retryable) return 503;
  return 500;
}

export async function startCacheServer(input: CacheServerConfigInput | CacheServerConfig, opts: CacheServerOptions = {}): Promise<CacheServerHandle> {
  const config = isParsed(input) ? input : cacheConfig(input);
  const clock = opts.clock ?? new SystemClock();
  const logger = opts.logger ?? createLogger({ level: config.log.level, name: 'archlab-cache', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
  const registry = createRegistry({ defaultMetrics: config.metrics.defaultMetrics, labels: { server: 'cache' } });
  const metrics = new CacheMetrics(registry);

  const source = withLatency(await openSource(config.source, clock), config.source.latencyMs);
  const bundle = openStore(config, clock);
  let api: ItemsApi;
  try {
    api = await openApi(config, source, bundle, metrics, clock, logger);
  } catch (err) {
    await bundle.close();
    await source.close?.();
    throw err;
  }
  metrics.register({ name: config.cache.name, stats: () => api.stats(), ...(api.writeBackStats ? { writeBackStats: () => api.writeBackStats!() } : {}) });
  const describe = (): ReturnType<CacheServerHandle['stats']> => ({
    strategy: config.cache.strategy,
    store: config.cache.store.kind,
    stats: api.stats(),
    ...(api.writeBackStats ? { writeBack: api.writeBackStats() } : {}),
  });

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://cache');
    const m = ID.exec(url.pathname);
    if (m) {
      const id = m[1]!;
      if (req.method === 'GET' || req.method === 'HEAD') {
        const row = await api.get(id);
        if (!row) return sendError(res, 404, 'ARCHLAB_NOT_FOUND', `no item ${id}`);
        return sendJson(res, 200, toItem(id, row));
      }
      if (req.method === 'PUT') {
        const body = await readBody(req, MAX_ITEM_BODY_BYTES);
        let parsed: z.infer<typeof zItemBody>;
        try {
          parsed = zItemBody.parse(JSON.parse(body.toString('utf8')));
        } catch (err) {
          const detail = err instanceof z.ZodError ? err.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') : 'body is not JSON';
          throw new HttpError(400, 'ARCHLAB_BAD_REQUEST', `expected {"name": string, "priceCents": integer}: ${detail}`);
        }
        const row: ItemRow = { name: parsed.name, price_cents: parsed.priceCents, updated_at: clock.now() };
        await api.put(id, row);
        return sendJson(res, 200, toItem(id, row));
      }
      if (req.method === 'DELETE') {
        await api.remove(id);
        res.writeHead(204).end();
        return;
      }
      res.setHeader('Allow', 'GET, HEAD, PUT, DELETE');
      return sendError(res, 405, 'ARCHLAB_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`);
    }
    if (url.pathname === '/stats' && req.method === 'GET') return sendJson(res, 200, describe());
    if (url.pathname === '/flush' && req.method === 'POST') {
      if (!api.flush) return sendError(res, 409, 'ARCHLAB_NOT_WRITE_BACK', `flush is for the write-back strategy; this cache is ${config.cache.strategy}`);
      await api.flush();
      return sendJson(res, 200, describe());
    }
    if (url.pathname.startsWith('/items/')) return sendError(res, 400, 'ARCHLAB_BAD_REQUEST', 'item ids are 1-64 letters, digits, "-" or "_"');
    sendError(res, 404, 'ARCHLAB_NOT_FOUND', `no route ${url.pathname}; try GET /items/1 or GET /stats`);
  };

  const { limits, timeouts } = config;
  const handles: ServerHandle[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(handles.map((h) => h.close()));
    await api.close().catch((err: unknown) => logger.warn({ err }, 'closing the cache'));
    await bundle.close().catch(() => undefined);
    await source.close?.().catch(() => undefined);
  };
  try {
    for (const lc of config.listeners) {
      const server = http.createServer(
        {
          maxHeaderSize: limits.maxHeaderBytes,
          requestTimeout: timeouts.requestMs,
          headersTimeout: timeouts.headersMs,
          keepAliveTimeout: timeouts.keepAliveMs,
          connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(timeouts.headersMs / 2))),
        },
        (req, res) => {
          handle(req, res).catch((err: unknown) => {
            const status = statusFor(err);
            if (status >= 500) logger.warn({ err, url: req.url, method: req.method }, 'request failed');
            if (res.headersSent) return void res.destroy();
            if (status === 503) res.setHeader('Retry-After', '1');
            const code = isArchlabError(err) ? err.code : 'ARCHLAB_INTERNAL';
            sendError(res, status, code, status === 500 && !isArchlabError(err) ? 'internal error' : (err as Error).message);
          });
        },
      );
      server.maxConnections = limits.maxConnections;
      server.setTimeout(timeouts.idleMs);
      handles.push(await listen(server, { host: lc.host, port: lc.port, drainTimeoutMs: timeouts.drainMs }));
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  let admin: ServerHandle | undefined;
  if (config.admin) {
    try {
      admin = await startAdminServer({
        ...config.admin,
        registry,
        logger,
        drainTimeoutMs: timeouts.drainMs,
        routes: (req, res, url) => {
          if (url.pathname === '/stats' && req.method === 'GET') {
            sendJson(res, 200, describe());
            return true;
          }
          return false;
        },
      });
    } catch (err) {
      await closeAll();
      throw err;
    }
  }
  logger.info({ listeners: handles.map((h) => h.address.url), strategy: config.cache.strategy, store: config.cache.store.kind, source: config.source.kind }, 'archlab cache ready');
  let closing: Promise<void> | undefined;
  return {
    address: handles[0]!.address,
    listeners: handles.map((h) => h.address),
    ...(admin ? { admin: admin.address } : {}),
    stats: describe,
    close: () =>
      (closing ??= (async () => {
        await admin?.close();
        await closeAll();
      })()),
  };
}
