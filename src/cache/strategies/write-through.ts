/**
 * Write-through: a write completes only after the source and the cache both have it. Reads are
 * read-through.
 *
 * set(key, value):
 *   1. invalidate the key and take a fill token (the invalidation fences concurrent writers: a
 *      writer that started earlier will have its fill refused);
 *   2. write the source; if that fails the error propagates (typed) and the cache never sees the
 *      new value. The old entry was dropped in step 1 and is not put back: a write that failed on our
 *      side (a timeout) may have committed at the source, and an empty cache is never wrong;
 *   3. fill the cache with the token; if the fill is refused (another write or invalidation came in
 *      between) or fails, invalidate instead, so two racing writers can never leave the cache holding
 *      a value the source does not have.
 *
 * When the store is down (or the breaker open), writes still succeed once the source has them: the
 * key goes into a bounded repair set, reads of it go to the source, and the pending invalidation is
 * retried before this process reads that key from the cache again; if more than maxRepairKeys keys
 * pile up, the whole store is cleared when it answers again. So a dead Redis costs write-through
 * its cache, never its correctness in this process. Other processes sharing the store may serve
 * the old value of a key written during the outage until the repair runs or the entry's TTL ends.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { sourceError } from '../core.js';
import type { StrategyName } from '../types.js';
import { ReadThrough, type ReadThroughOptions } from './read-through.js';

export type WriteThroughOptions<V> = ReadThroughOptions<V>;

export class WriteThrough<V> extends ReadThrough<V> {
  override readonly strategy: StrategyName = 'write-through';

  constructor(opts: WriteThroughOptions<V>) {
    super(opts);
    if (typeof opts.source.write !== 'function' || typeof opts.source.remove !== 'function') {
      throw new InvalidArgumentError(`cache ${opts.name}: write-through needs a source with write() and remove()`);
    }
  }

  /**
   * Writes `value` to the source, then to the cache. Resolves once the source has it (and the cache
   * has it, or has been invalidated, or the key is kept for repair when the store is down). Fails
   * with ARCHLAB_CACHE_SOURCE_FAILED (or the source's own ArchlabError) when the source write fails.
   * A value the store refuses (too large, codec) is written to the source and left out of the cache.
   */
  async set(key: string, value: V): Promise<void> {
    this.check(key);
    if (value === undefined) throw new InvalidArgumentError('cannot write undefined; use delete(key)');
    const ticket = await this.engine.beginWrite(key);
    try {
      await this.source.write(key, value);
    } catch (err) {
      throw sourceError(key, 'write', err);
    }
    await this.engine.completeWrite(key, value, ticket);
  }

  /**
   * Removes `key` from the source, then from the cache. The cache is invalidated even when the
   * source call fails (it may have committed); the source's error then propagates.
   */
  async delete(key: string): Promise<void> {
    this.check(key);
    try {
      await this.source.remove(key);
    } catch (err) {
      throw sourceError(key, 'remove', err);
    } finally {
      await this.engine.invalidate(key);
    }
  }
}
