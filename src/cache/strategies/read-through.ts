/**
 * Read-through: the cache owns the loader. Callers only call get(key); on a miss the cache loads
 * from its Source (once per key however many callers miss together), stores the value and returns
 * it. When the store is down (or the breaker is open) reads go straight to the source: the cache
 * makes reads faster, never less available.
 */
import { closedError, plainKey, ReadEngine, type EngineOptions, type Loader } from '../core.js';
import { checkKey } from '../errors.js';
import type { CacheStats, MeteredCache } from '../metrics.js';
import type { Source, StrategyName } from '../types.js';
import type { SourcedCacheOptions } from './types.js';
import { checkTag } from './cache-aside.js';
import { InvalidArgumentError } from '../../core/errors.js';

/** SourcedCacheOptions plus the engine's repair-set bound and clock resolution (see EngineOptions). */
export type ReadThroughOptions<V> = SourcedCacheOptions<V> & Pick<EngineOptions<V>, 'maxRepairKeys' | 'timeResolutionMs'>;

export class ReadThrough<V> implements MeteredCache {
  readonly name: string;
  readonly strategy: StrategyName = 'read-through';
  protected readonly engine: ReadEngine<V>;
  protected readonly source: Source<V>;
  private readonly load: Loader<V>;
  protected closed = false;

  constructor(opts: ReadThroughOptions<V>) {
    if (opts.source === undefined || opts.source === null || typeof opts.source.load !== 'function') {
      throw new InvalidArgumentError(`cache ${opts.name}: a source with load() is required`);
    }
    this.engine = new ReadEngine<V>(opts);
    this.name = opts.name;
    this.source = opts.source;
    // Built once: the hit path passes it along without allocating.
    const source = opts.source;
    this.load = (key) => source.load(key);
    opts.metrics?.register(this);
  }

  /**
   * The value of `key`: from the cache, or loaded from the source on a miss; undefined when the
   * source has none. Fails with ARCHLAB_CACHE_SOURCE_FAILED (or the source's own ArchlabError) or
   * ARCHLAB_CACHE_LOAD_TIMEOUT, unless stale-if-error has a value to serve instead.
   */
  get(key: string): Promise<V | undefined> {
    if (this.closed) return Promise.reject(closedError(this.name));
    if (!plainKey(key)) {
      try {
        checkKey(key);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.engine.read(key, this.load);
  }

  /** Synchronous, in-process tier only: the fresh value of `key` or undefined. Never loads. */
  peek(key: string): V | undefined {
    // The engine's hit path is off once it is closed, and its slow path throws ARCHLAB_CACHE_CLOSED.
    if (!plainKey(key)) checkKey(key);
    return this.engine.peek(key);
  }

  /** Removes `key` from the cache (the source is untouched); a store that is down keeps it for repair. */
  async invalidate(key: string): Promise<void> {
    this.check(key);
    await this.engine.invalidate(key);
  }

  /** Removes every entry tagged `tag` (tags come from the `tagsFor` option); returns how many. */
  async invalidateTag(tag: string): Promise<number> {
    if (this.closed) throw closedError(this.name);
    checkTag(tag);
    return this.engine.invalidateTag(tag);
  }

  /** A copy of the counters. */
  stats(): CacheStats {
    return { ...this.engine.stats };
  }

  /** Keys awaiting an invalidation the store has not taken, and whether a full clear is pending. */
  repairState(): { keys: number; all: boolean } {
    return this.engine.repairState();
  }

  /** Stops the cache (later calls fail with ARCHLAB_CACHE_CLOSED), unregisters its metrics, closes its store and its source. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engine.shutdown(this, this.source);
  }

  protected check(key: string): void {
    if (this.closed) throw closedError(this.name);
    checkKey(key);
  }
}
