/**
 * Single-flight: while a load for a key is in flight, later callers for the same key join it instead
 * of starting their own (N concurrent misses -> 1 load). The map holds only loads in flight, so its
 * size is bounded by the number of concurrent callers.
 */
export class SingleFlight<T> {
  private readonly inflight = new Map<string, Promise<T>>();
  /** Callers that joined a load already in flight, since construction. */
  joins = 0;

  /** Runs `fn` for `key` unless a run is in flight, in which case its promise is shared. */
  run(key: string, fn: () => Promise<T>): Promise<T> {
    const current = this.inflight.get(key);
    if (current) {
      this.joins++;
      return current;
    }
    // fn runs now, synchronously; a synchronous throw becomes a rejection. The cleanup is chained
    // after the promise is in the map, so it can never run before the registration.
    let started: Promise<T>;
    try {
      started = fn();
    } catch (err) {
      started = Promise.reject(err as Error);
    }
    const p: Promise<T> = started.finally(() => {
      if (this.inflight.get(key) === p) this.inflight.delete(key);
    });
    this.inflight.set(key, p);
    return p;
  }

  /** Whether a load for `key` is in flight. */
  has(key: string): boolean {
    return this.inflight.has(key);
  }

  get size(): number {
    return this.inflight.size;
  }
}
