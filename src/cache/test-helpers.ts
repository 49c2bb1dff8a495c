/**
 * Fixtures shared by the cache block's unit tests (imported by *.test.ts files only; left out of the
 * build): deferred promises, a tick, and a remote-like store that fails on demand.
 */
import { CacheError } from './errors.js';
import type { CacheStore, Entry, FillToken } from './types.js';

export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

/** A promise with its resolve and reject handed out, for a test to settle when it chooses. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback run (the memory store answers in microtasks). */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A remote-like store (kind 'redis', no peek) over another store, that can be taken down (`down`:
 * every call throws ARCHLAB_CACHE_STORE_UNAVAILABLE), made to fail one operation at a time
 * (`failing`: operation names, '*' for all), made to hang, or made to fail decoding. Counts the calls
 * that reach it, in all and per operation.
 */
export class FlakyStore<V = string> implements CacheStore<V> {
  readonly kind = 'redis' as const;
  down = false;
  hang = false;
  corrupt = false;
  readonly failing = new Set<string>();
  calls = 0;
  readonly byOp = new Map<string, number>();
  closed = false;
  constructor(
    readonly inner: CacheStore<V>,
    readonly commandTimeoutMs = 100,
  ) {}

  private call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.calls++;
    this.byOp.set(op, (this.byOp.get(op) ?? 0) + 1);
    if (this.hang) return new Promise<T>(() => {});
    if (this.down || this.failing.has(op) || this.failing.has('*')) return Promise.reject(new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `store down (${op})`));
    if (this.corrupt && op === 'get') return Promise.reject(new CacheError('ARCHLAB_CACHE_CODEC', 'cannot decode', { details: { direction: 'decode' } }));
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
  size(): undefined {
    return undefined;
  }
  async close(): Promise<void> {
    this.closed = true;
    await this.inner.close();
  }
}
