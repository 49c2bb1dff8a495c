/**
 * A store that hands every call to another store through one hook, `call(op, fn)`: the base of
 * wrappers that cut a store off, fail it on purpose, or count its calls (the demo application's cut
 * switch, the tests' flaky store). Subclasses override `call` (and close() or size() when they own
 * less or more than the inner store).
 */
import type { CacheStore, Entry, FillToken } from '../types.js';

export type StoreOp = 'get' | 'set' | 'fillToken' | 'fill' | 'invalidate' | 'invalidateTag' | 'clear';

export abstract class InterceptedStore<V> implements CacheStore<V> {
  abstract readonly kind: CacheStore<V>['kind'];

  constructor(readonly inner: CacheStore<V>) {}

  /** Runs one call of the inner store; the default runs it as it is. */
  protected call<T>(_op: StoreOp, fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  get(key: string): Promise<Entry<V> | undefined> {
    return this.call('get', () => this.inner.get(key));
  }
  set(key: string, entry: Entry<V>): Promise<void> {
    return this.call('set', () => this.inner.set(key, entry));
  }
  fillToken(key: string): Promise<FillToken> {
    return this.call('fillToken', () => this.inner.fillToken(key));
  }
  fill(key: string, entry: Entry<V>, token: FillToken): Promise<boolean> {
    return this.call('fill', () => this.inner.fill(key, entry, token));
  }
  invalidate(key: string): Promise<void> {
    return this.call('invalidate', () => this.inner.invalidate(key));
  }
  invalidateTag(tag: string): Promise<number> {
    return this.call('invalidateTag', () => this.inner.invalidateTag(tag));
  }
  clear(): Promise<void> {
    return this.call('clear', () => this.inner.clear());
  }
  size(): number | undefined {
    return this.inner.size();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
