/**
 * Fixtures shared by the cache block's unit tests (imported by *.test.ts files only; left out of the
 * build): deferred promises, a tick, and a remote-like store that fails on demand.
 */
import { CacheError } from './errors.js';
import type { CacheStore } from './types.js';
import { InterceptedStore, type StoreOp } from './stores/intercepted.js';

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
export class FlakyStore<V = string> extends InterceptedStore<V> {
  readonly kind = 'redis' as const;
  down = false;
  hang = false;
  corrupt = false;
  readonly failing = new Set<string>();
  calls = 0;
  readonly byOp = new Map<string, number>();
  closed = false;
  constructor(
    inner: CacheStore<V>,
    readonly commandTimeoutMs = 100,
  ) {
    super(inner);
  }

  protected override call<T>(op: StoreOp, fn: () => Promise<T>): Promise<T> {
    this.calls++;
    this.byOp.set(op, (this.byOp.get(op) ?? 0) + 1);
    if (this.hang) return new Promise<T>(() => {});
    if (this.down || this.failing.has(op) || this.failing.has('*')) return Promise.reject(new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `store down (${op})`));
    if (this.corrupt && op === 'get') return Promise.reject(new CacheError('ARCHLAB_CACHE_CODEC', 'cannot decode', { details: { direction: 'decode' } }));
    return fn();
  }

  override size(): undefined {
    return undefined;
  }
  override async close(): Promise<void> {
    this.closed = true;
    await this.inner.close();
  }
}
