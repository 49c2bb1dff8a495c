/**
 * Product reads and product updates through the cache block, with the strategy switchable at runtime.
 *
 * Who owns what: the cached value is the whole product, but its `stock` belongs to the order
 * transaction in the database (two orders must never sell one unit, which a cache cannot promise).
 * So the Source behind the cache (a functionSource over the catalogue database) loads whole
 * products but writes only the catalogue fields (name, category, price, description), and after an
 * order commits the app refreshes the cached copy (`afterOrder`). The stock a reader sees can
 * therefore be stale for up to the TTL in another instance's in-process cache; an order always
 * checks the database.
 *
 * Per strategy:
 * - cache-aside: getOrLoad with a loader over the database; an update writes the database, then
 *   invalidates (invalidateOnWrite); an order invalidates.
 * - read-through: get() (the cache loads from the source); an update writes the database, then
 *   invalidates; an order invalidates.
 * - write-through: an update goes through set() (source, then cache); an order invalidates.
 * - write-back: an update goes through set() (cache now, database at the next flush); an order puts
 *   the new stock into the cached copy (write-back has no invalidate: a pending write would win).
 *   With the cache cut off and no journal, write-back refuses writes; the app then writes the
 *   database directly (counted as a cache error), so updates keep working.
 *
 * Switching strategy builds the new strategy over the same store (a StoreView) and closes the old
 * one; closing a write-back cache flushes its pending writes first.
 */
import {
  CacheAside,
  functionSource,
  ReadThrough,
  WriteBack,
  WriteThrough,
  emptyStats,
  type CacheStats,
  type CacheStore,
  type FreshnessOptions,
  type Source,
  type SourceWrite,
  type StrategyName,
} from '../../cache/index.js';
import { isArchlabError, type Clock, type Logger, type Random } from '../../core/index.js';
import type { Product, ProductPatch } from './data.js';
import type { CatalogueDb } from './db.js';
import { AppError } from './errors.js';
import { StoreView, type CacheGate } from './gates.js';

type Strategy = CacheAside<Product> | ReadThrough<Product> | WriteThrough<Product> | WriteBack<Product>;

export interface ProductCacheOptions {
  /** The database, behind its gate. */
  db: CatalogueDb;
  /** The shared store (memory or Redis); closed by close(). */
  store: CacheStore<Product>;
  gate: CacheGate;
  strategy: StrategyName;
  /** Freshness of a cached product, in ms. */
  ttlMs: number;
  /** Name for the cache (errors, logs). */
  name: string;
  clock?: Clock;
  random?: Random;
  logger?: Logger;
  /** How long closing a write-back cache keeps flushing, in ms. Default 2000. */
  writeBackCloseTimeoutMs?: number;
}

export const productKey = (id: number): string => `product:${id}`;

function idOf(key: string): number {
  return Number(key.slice('product:'.length));
}

/** The catalogue fields of `p`: what the cache's source writes (never stock). */
function catalogueFields(p: Product): ProductPatch {
  return { name: p.name, category: p.category, priceCents: p.priceCents, description: p.description };
}

export class ProductCache {
  private current: Strategy;
  private readonly source: Source<Product>;
  private readonly freshness: Partial<FreshnessOptions>;
  /** Counters of the strategies closed so far, so stats() is cumulative across switches. */
  private readonly base: CacheStats = emptyStats();
  /** Each live strategy's view of the store (two during a switch). */
  private readonly views = new Map<Strategy, StoreView<Product>>();
  private switching: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly opts: ProductCacheOptions,
    first: Strategy,
    source: Source<Product>,
  ) {
    this.current = first;
    this.source = source;
    this.freshness = { ttlMs: opts.ttlMs };
  }

  static async open(opts: ProductCacheOptions): Promise<ProductCache> {
    const { db } = opts;
    const source = functionSource<Product>({
      name: `${opts.name}:products`,
      load: (key) => db.getProduct(idOf(key)),
      write: (key, value) => db.updateProducts([{ id: idOf(key), patch: catalogueFields(value) }]),
      remove: () => Promise.reject(new AppError('ARCHLAB_APP_INTERNAL', 'products are not deleted through the cache')),
      writeBatch: async (writes: readonly SourceWrite<Product>[]) => {
        const puts = writes.flatMap((w) => (w.op === 'put' ? [{ id: idOf(w.key), patch: catalogueFields(w.value) }] : []));
        if (puts.length !== writes.length) throw new AppError('ARCHLAB_APP_INTERNAL', 'products are not deleted through the cache');
        await db.updateProducts(puts);
      },
    });
    // The store forwards evictions to whichever view is current (each strategy sets its view's onEvict).
    const pc = new ProductCache(opts, undefined as unknown as Strategy, source);
    opts.store.onEvict = (key, reason) => {
      for (const v of pc.views.values()) v.onEvict?.(key, reason);
    };
    pc.current = await pc.build(opts.strategy);
    return pc;
  }

  get strategy(): StrategyName {
    return this.current.strategy;
  }

  private async build(strategy: StrategyName): Promise<Strategy> {
    const view = new StoreView<Product>(this.opts.store, this.opts.gate);
    const strategyOf = await this.make(strategy, view);
    this.views.set(strategyOf, view);
    return strategyOf;
  }

  private async make(strategy: StrategyName, view: StoreView<Product>): Promise<Strategy> {
    const common = {
      name: this.opts.name,
      store: view,
      freshness: this.freshness,
      ...(this.opts.clock === undefined ? {} : { clock: this.opts.clock }),
      ...(this.opts.random === undefined ? {} : { random: this.opts.random }),
      ...(this.opts.logger === undefined ? {} : { logger: this.opts.logger }),
    };
    switch (strategy) {
      case 'cache-aside':
        return new CacheAside<Product>(common);
      case 'read-through':
        return new ReadThrough<Product>({ ...common, source: this.source });
      case 'write-through':
        return new WriteThrough<Product>({ ...common, source: this.source });
      case 'write-back':
        return WriteBack.open<Product>({ ...common, source: this.source, writeBack: { closeTimeoutMs: this.opts.writeBackCloseTimeoutMs ?? 2000 } });
    }
  }

  /** The product, from the cache or (on a miss, or with the cache cut off) the database. */
  read(id: number): Promise<Product | undefined> {
    const c = this.current;
    const key = productKey(id);
    if (c instanceof CacheAside) return c.getOrLoad(key, () => this.opts.db.getProduct(id));
    return c.get(key);
  }

  /** Applies `patch` to the product's catalogue fields; undefined when there is no such product. */
  async update(id: number, patch: ProductPatch): Promise<Product | undefined> {
    const c = this.current;
    const key = productKey(id);
    const { db } = this.opts;
    if (c instanceof CacheAside) {
      await c.invalidateOnWrite(key, () => db.updateProducts([{ id, patch }]));
      return db.getProduct(id);
    }
    if (c instanceof WriteBack) {
      const now = await c.get(key);
      if (now === undefined) return undefined;
      const next = { ...now, ...patch };
      try {
        await c.set(key, next);
      } catch (err) {
        if (!isArchlabError(err, 'ARCHLAB_CACHE_STORE_UNAVAILABLE')) throw err;
        // No store and no journal: write-back cannot take the write; the database can.
        this.opts.gate.errors++;
        await db.updateProducts([{ id, patch }]);
      }
      return next;
    }
    if (c instanceof WriteThrough) {
      const now = await db.getProduct(id);
      if (now === undefined) return undefined;
      const next = { ...now, ...patch };
      await c.set(key, next);
      return next;
    }
    // read-through: the cache never writes; the app writes the database and drops the cached copy.
    await db.updateProducts([{ id, patch }]);
    await c.invalidate(key);
    return db.getProduct(id);
  }

  /** After an order committed: the cached copy of the product must not keep the old stock. */
  async afterOrder(product: Product): Promise<void> {
    const c = this.current;
    const key = productKey(product.id);
    if (!(c instanceof WriteBack)) {
      await c.invalidate(key);
      return;
    }
    try {
      const now = await c.get(key);
      await c.set(key, { ...(now ?? product), stock: product.stock });
    } catch (err) {
      // The order is committed; a stale stock figure in the cache is not worth failing it for.
      this.opts.gate.errors++;
      this.opts.logger?.warn({ err, productId: product.id }, 'write-back: could not refresh the cached stock after an order');
    }
  }

  /**
   * Switches strategy: later calls use the new one; the old one is closed (a write-back cache
   * flushes first). Switches run one at a time. If the old strategy fails to close (write-back that
   * cannot flush), the switch still happens and the error is rethrown.
   */
  setStrategy(strategy: StrategyName): Promise<void> {
    const next = this.switching.then(async () => {
      if (this.closed) throw new AppError('ARCHLAB_APP_CLOSED', 'the app is closed');
      if (this.current.strategy === strategy) return;
      const old = this.current;
      this.current = await this.build(strategy);
      await this.retire(old);
    });
    this.switching = next.catch(() => undefined);
    return next;
  }

  private async retire(old: Strategy): Promise<void> {
    const s = old.stats();
    for (const k of Object.keys(s) as (keyof CacheStats)[]) this.base[k] += s[k];
    try {
      await old.close();
    } finally {
      this.views.delete(old);
    }
  }

  /** Cumulative counters of every strategy this cache has run. */
  stats(): CacheStats {
    const s = this.current.stats();
    const out = emptyStats();
    for (const k of Object.keys(out) as (keyof CacheStats)[]) out[k] = this.base[k] + s[k];
    return out;
  }

  /** Closes the current strategy (flushing write-back), then the store and the source. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.switching;
    try {
      await this.current.close();
    } finally {
      this.opts.store.onEvict = undefined;
      await this.opts.store.close();
    }
  }
}
