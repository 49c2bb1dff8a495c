/**
 * The switches the dashboard flips to cut an app instance off from its cache or its database, and
 * the counters that show what that did. Both sit between the app and the real thing, so cutting off
 * is instant and undone by the same switch, whatever the engine (an in-process memory store or
 * SQLite cannot be cut off at the network, and this also works for Redis and PostgreSQL).
 */
import { CacheError, InterceptedStore, type CacheStore, type Entry, type EvictionReason, type StoreOp } from '../../cache/index.js';
import type { CatalogueDb } from './db.js';
import { AppError } from './errors.js';

/** Whether the cache is reachable, and how many store calls failed (cut off, or the store's own failures). */
export interface CacheGate {
  reachable: boolean;
  errors: number;
}

/**
 * One strategy's view of the shared store. A cache strategy closes its store when it closes; the app
 * switches strategies at runtime over one store, so each strategy gets a view whose close() leaves
 * the store open, and whose onEvict is its own (the app forwards the store's evictions to the
 * current view).
 *
 * Cut off (gate.reachable false), every async call fails with ARCHLAB_CACHE_STORE_UNAVAILABLE, as a
 * store that cannot be reached does, and peek() finds nothing: the strategies then read from the
 * database, open their breaker and keep invalidations for repair, as they would with a dead Redis.
 */
export class StoreView<V> extends InterceptedStore<V> {
  readonly kind: CacheStore<V>['kind'];
  readonly commandTimeoutMs: number | undefined;
  readonly peek?: (key: string) => Entry<V> | undefined;
  onEvict?: (key: string, reason: EvictionReason) => void;

  constructor(
    inner: CacheStore<V>,
    private readonly gate: CacheGate,
  ) {
    super(inner);
    this.kind = inner.kind;
    this.commandTimeoutMs = inner.commandTimeoutMs;
    if (typeof inner.peek === 'function') {
      const peek = inner.peek.bind(inner);
      this.peek = (key) => (gate.reachable ? peek(key) : undefined);
    }
  }

  protected override call<T>(op: StoreOp, fn: () => Promise<T>): Promise<T> {
    if (!this.gate.reachable) {
      this.gate.errors++;
      return Promise.reject(new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `the cache is cut off from this app instance (${op})`));
    }
    return fn().catch((err: unknown) => {
      if (err instanceof CacheError && err.code === 'ARCHLAB_CACHE_STORE_UNAVAILABLE') this.gate.errors++;
      throw err;
    });
  }

  /** The app owns the store: a strategy closing its view leaves the store open. */
  override async close(): Promise<void> {}
}

/** Whether the database is reachable, and the calls that reached it (by operation; refused ones are not counted), for stats, metrics and tests. */
export interface DatabaseGate {
  reachable: boolean;
  calls: Map<string, number>;
}

type DbOp = Exclude<keyof CatalogueDb, 'engine' | 'init' | 'close'>;
const DB_OPS = ['seed', 'getProduct', 'searchProducts', 'updateProducts', 'placeOrder', 'getOrder', 'getOrderByKey', 'getUser'] as const satisfies readonly DbOp[];
// Fails to compile when CatalogueDb gains an operation this list does not gate.
const _everyOpGated: Exclude<DbOp, (typeof DB_OPS)[number]> extends never ? true : never = true;
void _everyOpGated;

/**
 * `db` behind a switch: cut off, every call fails with ARCHLAB_APP_DATABASE_UNAVAILABLE (answered
 * 503) before it reaches the database. Calls that reach it are counted per operation.
 */
export function gatedDatabase(db: CatalogueDb, gate: DatabaseGate): CatalogueDb {
  const out = { engine: db.engine, init: () => db.init(), close: () => db.close() } as CatalogueDb;
  for (const op of DB_OPS) {
    const fn = db[op].bind(db) as (...args: unknown[]) => Promise<unknown>;
    (out as unknown as Record<string, unknown>)[op] = (...args: unknown[]): Promise<unknown> => {
      if (!gate.reachable) {
        return Promise.reject(new AppError('ARCHLAB_APP_DATABASE_UNAVAILABLE', `the database (${db.engine}) is cut off from this app instance`));
      }
      gate.calls.set(op, (gate.calls.get(op) ?? 0) + 1);
      return fn(...args);
    };
  }
  return out;
}
