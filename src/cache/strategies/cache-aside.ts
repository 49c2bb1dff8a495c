/**
 * Cache-aside (lazy loading): the application talks to the cache and to the source itself. It reads
 * with getOrLoad (the cache loads on a miss, once per key however many callers miss together), and
 * after writing the source it invalidates the keys the write touched (invalidateOnWrite).
 *
 * The race this pattern is known for: a reader misses, loads the old row, a writer updates the row
 * and deletes the key, then the reader stores the old row it loaded: stale until the TTL. Here the
 * reader takes a fill token (a memcached-style lease, the key's generation) before it loads, and its
 * fill is refused when an invalidation came in between; in this process, a load in flight when the
 * key is invalidated is also detached, so readers arriving after the invalidation start their own
 * load instead of joining the old one. We chose tokens over a short lease that blocks readers: no
 * reader ever waits on a writer, and the cost of the race is one skipped fill.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { closedError, plainKey, ReadEngine, type EngineOptions, type Loader } from '../core.js';
import { checkKey } from '../errors.js';
import type { CacheStats, MeteredCache } from '../metrics.js';
import type { StrategyName } from '../types.js';

/** CacheOptions plus the engine's repair-set bound and clock resolution (see EngineOptions). */
export type CacheAsideOptions<V> = Omit<EngineOptions<V>, 'tagsFor'>;

export interface EntryOptions {
  /** Tags to attach to the entry, for invalidateTag. Default none. */
  tags?: readonly string[];
}

export function checkTag(tag: unknown): asserts tag is string {
  if (typeof tag !== 'string' || tag.length === 0) throw new InvalidArgumentError(`cache tag must be a non-empty string, got ${typeof tag === 'string' ? 'an empty string' : typeof tag}`);
}

function checkTags(tags: readonly string[] | undefined): void {
  if (tags === undefined) return;
  if (!Array.isArray(tags)) throw new InvalidArgumentError('tags must be an array of strings');
  for (const t of tags) checkTag(t);
}

export class CacheAside<V> implements MeteredCache {
  readonly name: string;
  readonly strategy: StrategyName = 'cache-aside';
  private readonly engine: ReadEngine<V>;
  private closed = false;

  constructor(opts: CacheAsideOptions<V>) {
    this.engine = new ReadEngine<V>(opts);
    this.name = opts.name;
    opts.metrics?.register(this);
  }

  /**
   * Cache only: the fresh value of `key`, or a stale one inside the stale-while-revalidate window;
   * undefined otherwise (a cached miss, too). Never loads; never fails because of the store.
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
    return this.engine.lookup(key);
  }

  /** Synchronous, in-process tier only: the fresh value of `key` or undefined. Never loads. */
  peek(key: string): V | undefined {
    // The engine's hit path is off once it is closed, and its slow path throws ARCHLAB_CACHE_CLOSED.
    if (!plainKey(key)) checkKey(key);
    return this.engine.peek(key);
  }

  /**
   * The value of `key` from the cache, or from `loader` on a miss (stored for next time, and one load
   * per key however many callers miss at once). `loader` returns undefined when there is no such
   * row (cached as a miss for freshness.negativeTtlMs). Fails with the loader's error
   * (ARCHLAB_CACHE_SOURCE_FAILED unless it threw an ArchlabError) or ARCHLAB_CACHE_LOAD_TIMEOUT,
   * unless stale-if-error has a value to serve instead.
   */
  getOrLoad(key: string, loader: Loader<V>, opts?: EntryOptions): Promise<V | undefined> {
    if (this.closed) return Promise.reject(closedError(this.name));
    if (opts === undefined && plainKey(key)) return this.engine.read(key, loader, undefined);
    try {
      checkKey(key);
      if (opts?.tags !== undefined) checkTags(opts.tags);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.engine.read(key, loader, opts?.tags);
  }

  /**
   * Stores `value` for `key`. Throws ARCHLAB_CACHE_VALUE_TOO_LARGE or ARCHLAB_CACHE_CODEC when the
   * store refuses the value (the key is then absent). When the store is down the call still
   * resolves: the key is kept for repair, and this process reads it from the source until then.
   */
  async set(key: string, value: V, opts?: EntryOptions): Promise<void> {
    this.check(key);
    if (value === undefined) throw new InvalidArgumentError('cannot cache undefined; use invalidate(key) to remove a key');
    checkTags(opts?.tags);
    await this.engine.set(key, value, opts?.tags);
  }

  /**
   * Removes `key`; loads that began before are refused their fill. When the store is down the call
   * still resolves and the key is kept for repair (see docs/cache.md: other processes may serve the
   * old value until the store is back and repaired, or until its TTL).
   */
  async invalidate(key: string): Promise<void> {
    this.check(key);
    await this.engine.invalidate(key);
  }

  /** Removes every entry tagged `tag`; returns how many were removed (0 when the store is down: it is cleared when back). */
  async invalidateTag(tag: string): Promise<number> {
    if (this.closed) throw closedError(this.name);
    checkTag(tag);
    return this.engine.invalidateTag(tag);
  }

  /**
   * Runs `write` (a source write), then invalidates `keys`, and returns what `write` returned. The
   * keys are invalidated even when `write` throws (a write that failed on our side may have committed
   * at the source; a needless invalidation costs one miss), then its error is rethrown. Race
   * handling: see the file comment (fill tokens).
   */
  async invalidateOnWrite<T>(keys: string | readonly string[], write: () => Promise<T>): Promise<T> {
    if (this.closed) throw closedError(this.name);
    const list = typeof keys === 'string' ? [keys] : keys;
    for (const k of list) checkKey(k);
    try {
      return await write();
    } finally {
      await Promise.all(list.map((k) => this.engine.invalidate(k)));
    }
  }

  /** A copy of the counters. */
  stats(): CacheStats {
    return { ...this.engine.stats };
  }

  /** Keys awaiting an invalidation the store has not taken, and whether a full clear is pending. */
  repairState(): { keys: number; all: boolean } {
    return this.engine.repairState();
  }

  /** Stops the cache (later calls fail with ARCHLAB_CACHE_CLOSED), unregisters its metrics and closes its store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engine.shutdown(this);
  }

  private check(key: string): void {
    if (this.closed) throw closedError(this.name);
    checkKey(key);
  }
}
