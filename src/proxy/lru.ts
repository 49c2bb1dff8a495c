/**
 * A bounded least-recently-used map: a Map kept in use order (a hit moves its key to the end), so
 * the first key is always the one to evict. O(1) per operation, no per-entry allocation beyond the
 * Map's own. Enough for the proxy's per-client state and credential cache; the cache block uses
 * lru-cache for the general case (TTLs, sizes, disposal).
 */
import { InvalidArgumentError } from '../core/errors.js';

export class Lru<K, V> {
  private readonly map = new Map<K, V>();

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new InvalidArgumentError(`Lru max must be an integer >= 1, got ${max}`, { max });
  }

  get size(): number {
    return this.map.size;
  }

  /** The value, marking the key most recently used. */
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  /** Sets the value as most recently used; evicts the least recently used key when over `max`. */
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }

  delete(key: K): boolean {
    return this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}
