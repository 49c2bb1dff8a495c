import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../core/clock.js';
import { ArchlabError, isArchlabError } from '../core/errors.js';
import { SeededRandom } from '../core/random.js';
import { createRegistry } from '../core/metrics.js';
import { ReadEngine } from './core.js';
import type { EngineOptions, Loader } from './core.js';
import { CacheError } from './errors.js';
import { CacheMetrics } from './metrics.js';
import { createMemoryStore } from './stores/memory.js';
import type { FleetLease, LeaseHandle } from './strategies/types.js';
import { deferred, FlakyStore, tick, type Deferred } from './test-helpers.js';

/** A loader whose calls wait until the test settles them, in order. */
function controlled(): { loader: Loader<string>; calls: Deferred<string | undefined>[]; keys: string[] } {
  const calls: Deferred<string | undefined>[] = [];
  const keys: string[] = [];
  const loader: Loader<string> = (key) => {
    keys.push(key);
    const d = deferred<string | undefined>();
    calls.push(d);
    return d.promise;
  };
  return { loader, calls, keys };
}

/** A loader that answers at once from a map, counting calls. */
function counting(rows: Map<string, string>): { loader: Loader<string>; count: () => number } {
  let n = 0;
  return {
    loader: async (key) => {
      n++;
      return rows.get(key);
    },
    count: () => n,
  };
}

const START = 1_000_000;

function setup(t: TestContext, o: Partial<EngineOptions<string>> = {}, storeOpts: { maxValueBytes?: number } = {}) {
  const clock = new ManualClock(START);
  const store = createMemoryStore<string>({ clock, purgeIntervalMs: 0, ...storeOpts });
  const engine = new ReadEngine<string>({
    name: 'test',
    store,
    clock,
    random: new SeededRandom(1),
    freshness: { ttlMs: 1000, jitter: 0 },
    ...o,
  });
  t.after(async () => {
    engine.close();
    await store.close();
  });
  return { clock, store, engine };
}

function setupFlaky(t: TestContext, o: Partial<EngineOptions<string>> = {}) {
  const clock = new ManualClock(START);
  const inner = createMemoryStore<string>({ clock, purgeIntervalMs: 0 });
  const store = new FlakyStore(inner);
  const engine = new ReadEngine<string>({
    name: 'flaky',
    store,
    clock,
    random: new SeededRandom(1),
    freshness: { ttlMs: 1000, jitter: 0 },
    breaker: { failureThreshold: 3, openMs: 500 },
    ...o,
  });
  t.after(async () => {
    engine.close();
    await inner.close();
  });
  return { clock, inner, store, engine };
}

describe('ReadEngine: hits, misses, single-flight', () => {
  test('a miss loads once and fills; the next read is a hit answered without a load', async (t) => {
    const { engine, store } = setup(t);
    const { loader, count } = counting(new Map([['a', 'A']]));
    assert.equal(await engine.read('a', loader), 'A');
    assert.equal(store.peek('a')?.value, 'A', 'filled');
    assert.equal(await engine.read('a', loader), 'A');
    assert.equal(count(), 1);
    assert.deepEqual({ hits: engine.stats.hits, misses: engine.stats.misses, loads: engine.stats.loads }, { hits: 1, misses: 1, loads: 1 });
  });

  test('10,000 concurrent reads of one cold key: exactly 1 load, 9,999 joins, all get the value', async (t) => {
    const { engine } = setup(t);
    const { loader, calls } = controlled();
    const reads = Array.from({ length: 10_000 }, () => engine.read('cold', loader));
    await tick();
    assert.equal(calls.length, 1, 'one load started');
    calls[0]!.resolve('v');
    const values = await Promise.all(reads);
    assert.equal(calls.length, 1);
    assert.ok(values.every((v) => v === 'v'));
    assert.equal(engine.stats.loads, 1);
    assert.equal(engine.stats.joins, 9_999);
    assert.equal(engine.inflight, 0, 'no flight left behind');
  });

  test('the hit path answers with an already-settled promise and never calls the loader', async (t) => {
    const { engine } = setup(t);
    await engine.read('k', async () => 'v');
    let called = false;
    const p = engine.read('k', async () => {
      called = true;
      return 'other';
    });
    let seen: string | undefined;
    void p.then((v) => (seen = v));
    await Promise.resolve();
    assert.equal(seen, 'v', 'settled within one microtask: no await on the hit path');
    assert.equal(called, false);
  });

  test('an entry past its fresh life is reloaded (exact expiry with an injected clock)', async (t) => {
    const { engine, clock } = setup(t);
    const rows = new Map([['k', 'v1']]);
    const { loader, count } = counting(rows);
    await engine.read('k', loader);
    rows.set('k', 'v2');
    clock.advance(999);
    assert.equal(await engine.read('k', loader), 'v1');
    clock.advance(1);
    assert.equal(await engine.read('k', loader), 'v2');
    assert.equal(count(), 2);
  });

  test('an entry written with a stale window (another writer\'s options) is not served fresh past freshUntilMs', async (t) => {
    const { engine, store, clock } = setup(t);
    await store.set('k', { value: 'old', freshUntilMs: START + 10, staleUntilMs: START + 10_000 });
    assert.equal(engine.peek('k'), 'old');
    clock.advance(10);
    assert.equal(engine.peek('k'), undefined, 'peek: past its fresh life');
    assert.equal(await engine.lookup('k'), undefined, 'lookup: no SWR window in our options');
    assert.equal(await engine.read('k', async () => 'new'), 'new', 'read: reloaded');
  });

  test('a coarse clock (timeResolutionMs) still expires entries once time moves', async (t) => {
    const { engine, clock } = setup(t, { timeResolutionMs: 1 });
    const rows = new Map([['k', 'v1']]);
    const { loader, count } = counting(rows);
    await engine.read('k', loader);
    rows.set('k', 'v2');
    clock.advance(1000);
    assert.equal(await engine.read('k', loader), 'v2');
    assert.equal(count(), 2);
  });

  test('load latency goes to CacheMetrics.observeLoad under the cache name', async (t) => {
    const registry = createRegistry();
    const metrics = new CacheMetrics(registry);
    const { engine, clock } = setup(t, { metrics });
    const { loader, calls } = controlled();
    const p = engine.read('k', loader);
    await tick();
    clock.advance(3);
    calls[0]!.resolve('v');
    await p;
    const text = await registry.metrics();
    assert.match(text, /archlab_cache_load_duration_seconds_bucket\{le="0.0025",cache="test"\} 0/);
    assert.match(text, /archlab_cache_load_duration_seconds_bucket\{le="0.005",cache="test"\} 1/);
  });
});

describe('ReadEngine: load errors and timeouts', () => {
  test('a loader error becomes ARCHLAB_CACHE_SOURCE_FAILED with the key and the cause', async (t) => {
    const { engine } = setup(t);
    const cause = new RangeError('db exploded');
    await assert.rejects(
      engine.read('k1', async () => {
        throw cause;
      }),
      (err: unknown) => {
        assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
        assert.equal(err.retryable, true);
        assert.deepEqual(err.details, { key: 'k1', op: 'load' });
        assert.equal(err.cause, cause);
        return true;
      },
    );
    assert.equal(engine.stats.loadErrors, 1);
    assert.equal(engine.inflight, 0);
  });

  test('an ArchlabError from the loader keeps its code', async (t) => {
    const { engine } = setup(t);
    await assert.rejects(
      engine.read('k', async () => {
        throw new ArchlabError('ARCHLAB_CUSTOM', 'mine');
      }),
      (err: unknown) => isArchlabError(err, 'ARCHLAB_CUSTOM'),
    );
  });

  test('hard timeout with nothing stale: ARCHLAB_CACHE_LOAD_TIMEOUT; the next read starts a new load; the late value still fills', async (t) => {
    const { engine, clock, store } = setup(t, { loadTimeouts: { softMs: 100, hardMs: 1000 } });
    const { loader, calls } = controlled();
    const p = engine.read('k', loader);
    const settled = p.then(
      () => 'resolved',
      (err: unknown) => err,
    );
    await tick();
    clock.advance(999);
    await tick();
    assert.equal(engine.inflight, 1, 'not yet');
    clock.advance(1);
    const err = await settled;
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_LOAD_TIMEOUT'), String(err));
    assert.deepEqual((err as CacheError).details, { key: 'k', timeoutMs: 1000 });
    assert.equal(engine.stats.loadTimeouts, 1);
    assert.equal(engine.inflight, 0, 'the stuck load no longer captures readers');
    const p2 = engine.read('k', loader);
    await tick();
    assert.equal(calls.length, 2, 'a new load');
    calls[0]!.resolve('late');
    await tick();
    assert.equal(store.peek('k')?.value, 'late', 'the timed-out load filled when it finished');
    calls[1]!.resolve('second');
    assert.equal(await p2, 'second');
  });

  test('soft timeout has no effect without a stale entry', async (t) => {
    const { engine, clock } = setup(t, { loadTimeouts: { softMs: 10, hardMs: 1000 } });
    const { loader, calls } = controlled();
    const p = engine.read('k', loader);
    await tick();
    clock.advance(500);
    calls[0]!.resolve('v');
    assert.equal(await p, 'v');
    assert.equal(engine.stats.staleServed, 0);
  });
});

describe('ReadEngine: stale-while-revalidate, stale-if-error, refresh-ahead', () => {
  test('stale-while-revalidate: stale served at once, exactly one background load per window, then fresh', async (t) => {
    const { engine, clock, store } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleWhileRevalidateMs: 500 } });
    const { loader, calls } = controlled();
    const first = engine.read('k', loader);
    await tick();
    calls[0]!.resolve('v1');
    await first;
    clock.advance(1000);
    const stale = await Promise.all(Array.from({ length: 50 }, () => engine.read('k', loader)));
    assert.ok(stale.every((v) => v === 'v1'), 'stale served without waiting');
    await tick();
    assert.equal(calls.length, 2, 'one background load for 50 readers');
    assert.equal(engine.stats.staleServed, 50);
    calls[1]!.resolve('v2');
    await tick();
    assert.equal(store.peek('k')?.value, 'v2');
    assert.equal(await engine.read('k', loader), 'v2', 'fresh again');
    assert.equal(calls.length, 2);
    assert.equal(engine.stats.hits, 1);
  });

  test('stale-while-revalidate: a failed refresh keeps serving stale and the next read tries again', async (t) => {
    const { engine, clock } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleWhileRevalidateMs: 500 } });
    const { loader, calls } = controlled();
    const first = engine.read('k', loader);
    await tick();
    calls[0]!.resolve('v1');
    await first;
    clock.advance(1100);
    assert.equal(await engine.read('k', loader), 'v1');
    await tick();
    calls[1]!.reject(new RangeError('down'));
    await tick();
    assert.equal(engine.stats.loadErrors, 1);
    assert.equal(await engine.read('k', loader), 'v1');
    await tick();
    assert.equal(calls.length, 3, 'a new refresh after the failed one');
    calls[2]!.resolve('v2');
    await tick();
    assert.equal(await engine.read('k', loader), 'v2');
  });

  test('past the SWR window the read waits for the load', async (t) => {
    const { engine, clock } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleWhileRevalidateMs: 500 } });
    const rows = new Map([['k', 'v1']]);
    const { loader } = counting(rows);
    await engine.read('k', loader);
    rows.set('k', 'v2');
    clock.advance(1500);
    assert.equal(await engine.read('k', loader), 'v2');
    assert.equal(engine.stats.staleServed, 0);
  });

  test('stale-if-error: a failed load serves the stale value; the entry stays', async (t) => {
    const { engine, clock, store } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleIfErrorMs: 5000 } });
    await engine.read('k', async () => 'v1');
    clock.advance(2000);
    const v = await engine.read('k', async () => {
      throw new RangeError('source down');
    });
    assert.equal(v, 'v1');
    assert.equal(engine.stats.staleServed, 1);
    assert.equal(engine.stats.loadErrors, 1);
    assert.equal(store.peek('k')?.value, 'v1');
    // A successful load replaces it.
    assert.equal(await engine.read('k', async () => 'v2'), 'v2');
  });

  test('stale-if-error: past the soft timeout stale is served, the load finishes in the background and fills', async (t) => {
    const { engine, clock, store } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleIfErrorMs: 5000 }, loadTimeouts: { softMs: 200, hardMs: 2000 } });
    await engine.read('k', async () => 'v1');
    clock.advance(1500);
    const { loader, calls } = controlled();
    const p = engine.read('k', loader);
    await tick();
    clock.advance(199);
    await tick();
    let seen: string | undefined;
    void p.then((v) => (seen = v));
    await tick();
    assert.equal(seen, undefined, 'still waiting before the soft timeout');
    clock.advance(1);
    assert.equal(await p, 'v1', 'stale at the soft timeout');
    assert.equal(engine.stats.staleServed, 1);
    calls[0]!.resolve('v2');
    await tick();
    assert.equal(store.peek('k')?.value, 'v2', 'the load filled after the reader left');
    assert.equal(await engine.read('k', loader), 'v2');
  });

  test('stale-if-error: past the SIE window a failed load fails the read', async (t) => {
    const { engine, clock } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleIfErrorMs: 500 } });
    await engine.read('k', async () => 'v1');
    clock.advance(1500);
    await assert.rejects(
      engine.read('k', async () => {
        throw new RangeError('down');
      }),
      (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'),
    );
  });

  test('refresh-ahead: a read in the last part of fresh life serves the value and refreshes it once', async (t) => {
    const { engine, clock, store } = setup(t, { refreshAheadRatio: 0.2 });
    const { loader, calls } = controlled();
    const first = engine.read('k', loader);
    await tick();
    calls[0]!.resolve('v1');
    await first;
    clock.advance(799);
    assert.equal(await engine.read('k', loader), 'v1');
    assert.equal(calls.length, 1, 'not yet due');
    clock.advance(1);
    assert.equal(await engine.read('k', loader), 'v1');
    assert.equal(await engine.read('k', loader), 'v1');
    await tick();
    assert.equal(calls.length, 2, 'one refresh');
    calls[1]!.resolve('v2');
    await tick();
    assert.equal(store.peek('k')?.freshUntilMs, START + 800 + 1000, 'new fresh life from the refresh');
    assert.equal(await engine.read('k', loader), 'v2');
    assert.equal(engine.stats.misses, 1, 'no reader ever missed after the first');
  });
});

describe('ReadEngine: negative caching, jitter, tags, evictions', () => {
  test('a miss is cached for negativeTtlMs, then loaded again', async (t) => {
    const { engine, clock } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, negativeTtlMs: 100 } });
    const rows = new Map<string, string>();
    const { loader, count } = counting(rows);
    assert.equal(await engine.read('nope', loader), undefined);
    rows.set('nope', 'now here');
    clock.advance(99);
    assert.equal(await engine.read('nope', loader), undefined, 'cached miss');
    assert.equal(count(), 1);
    assert.equal(engine.stats.hits, 1);
    clock.advance(1);
    assert.equal(await engine.read('nope', loader), 'now here');
    assert.equal(count(), 2);
  });

  test('with negativeTtlMs 0 misses are not cached', async (t) => {
    const { engine, store } = setup(t);
    const { loader, count } = counting(new Map());
    await engine.read('nope', loader);
    await engine.read('nope', loader);
    assert.equal(count(), 2);
    assert.equal(store.size(), 0);
  });

  test('TTL jitter spreads the expiry of keys loaded together', async (t) => {
    const clock = new ManualClock(START);
    const store = createMemoryStore<string>({ clock, purgeIntervalMs: 0 });
    const engine = new ReadEngine<string>({ name: 'j', store, clock, random: new SeededRandom(42), freshness: { ttlMs: 10_000, jitter: 0.2 } });
    t.after(async () => {
      engine.close();
      await store.close();
    });
    for (let i = 0; i < 200; i++) await engine.read(`k${i}`, async (k) => k);
    const expiries = Array.from({ length: 200 }, (_, i) => store.peek(`k${i}`)!.freshUntilMs - START);
    assert.ok(Math.min(...expiries) >= 8000 && Math.max(...expiries) <= 10_000);
    assert.ok(new Set(expiries).size > 150, `distinct expiries: ${new Set(expiries).size} (seed 42)`);
    assert.ok(Math.max(...expiries) - Math.min(...expiries) > 1500, 'spread over most of the window');
  });

  test('tags from the read or from tagsFor; invalidateTag removes them', async (t) => {
    const { engine, store } = setup(t, { tagsFor: (key) => [`group:${key.slice(0, 1)}`] });
    await engine.read('a1', async () => 'x', ['mine']);
    await engine.read('a2', async () => 'y');
    await engine.read('b1', async () => 'z');
    assert.deepEqual(store.peek('a1')?.tags, ['mine'], 'the read\'s tags win');
    assert.equal(await engine.invalidateTag('group:a'), 1);
    assert.equal(store.peek('a2'), undefined);
    assert.equal(store.peek('b1')?.value, 'z');
    assert.equal(await engine.invalidateTag('mine'), 1);
    assert.equal(store.peek('a1'), undefined);
  });

  test('store evictions are counted', async (t) => {
    const clock = new ManualClock(START);
    const store = createMemoryStore<string>({ clock, purgeIntervalMs: 0, maxEntries: 2 });
    const engine = new ReadEngine<string>({ name: 'e', store, clock, freshness: { ttlMs: 1000, jitter: 0 } });
    t.after(async () => {
      engine.close();
      await store.close();
    });
    for (const k of ['a', 'b', 'c', 'd']) await engine.read(k, async () => k);
    assert.equal(engine.stats.evictions, 2);
  });
});

describe('ReadEngine: invalidation races (fill tokens)', () => {
  test('an invalidation during a load refuses its fill; later readers start a new load', async (t) => {
    const { engine, store } = setup(t);
    const { loader, calls } = controlled();
    const r1 = engine.read('k', loader);
    await tick();
    assert.equal(await engine.invalidate('k'), true);
    const r2 = engine.read('k', loader);
    await tick();
    assert.equal(calls.length, 2, 'r2 did not join the load that began before the invalidation');
    calls[0]!.resolve('old');
    assert.equal(await r1, 'old', 'r1 began before the write completed: old is a fine answer');
    assert.equal(store.peek('k'), undefined, 'but it was not stored');
    calls[1]!.resolve('new');
    assert.equal(await r2, 'new');
    assert.equal(store.peek('k')?.value, 'new');
  });

  test('set() wins over a load that began before it', async (t) => {
    const { engine, store } = setup(t);
    const { loader, calls } = controlled();
    const r = engine.read('k', loader);
    await tick();
    assert.equal(await engine.set('k', 'written'), true);
    calls[0]!.resolve('loaded-before');
    await r;
    assert.equal(store.peek('k')?.value, 'written');
  });

  test('write protocol: a load that began during the write cannot fill after it', async (t) => {
    const { engine, store } = setup(t);
    const ticket = await engine.beginWrite('k');
    assert.ok(ticket.token);
    const { loader, calls } = controlled();
    const r = engine.read('k', loader); // a reader takes its token after beginWrite and reads the old row
    await tick();
    assert.equal(await engine.completeWrite('k', 'new', ticket), true);
    calls[0]!.resolve('old');
    assert.equal(await r, 'old');
    await tick();
    assert.equal(store.peek('k')?.value, 'new', 'the reader\'s old row did not overwrite the write');
  });

  test('write protocol: two racing writers never leave a value the source does not have', async (t) => {
    const { engine, store } = setup(t);
    // w1 and w2 both begin; the source applies w1 then w2 (source = v2); w1 completes last.
    const t1 = await engine.beginWrite('k');
    const t2 = await engine.beginWrite('k');
    assert.equal(await engine.completeWrite('k', 'v2', t2), true);
    assert.equal(await engine.completeWrite('k', 'v1', t1), false, 'w1 was fenced by w2\'s begin');
    assert.equal(store.peek('k'), undefined, 'refused fill -> invalidated, never v1');
  });
});

describe('ReadEngine: store failures and the breaker', () => {
  test('store down: reads are answered by the source; after the threshold no store calls until openMs', async (t) => {
    const { engine, store, clock } = setupFlaky(t);
    const { loader, count } = counting(new Map([['k', 'v']]));
    store.down = true;
    // Each read makes a get and a fillToken attempt until the breaker opens after 3 failures.
    for (let i = 0; i < 20; i++) assert.equal(await engine.read('k', loader), 'v');
    assert.equal(count(), 20);
    assert.equal(store.calls, 3, 'only the failures that opened the breaker reached the store');
    assert.equal(engine.breakerState, 'open');
    assert.ok(engine.stats.breakerSkips >= 17);
    // After openMs: one trial. The store is back: it closes and the cache works again.
    store.down = false;
    clock.advance(500);
    assert.equal(await engine.read('k', loader), 'v');
    assert.equal(engine.breakerState, 'closed');
    assert.equal(await engine.read('k', loader), 'v');
    assert.equal(count(), 21, 'filled after recovery, then a hit');
  });

  test('a hanging store costs at most its commandTimeoutMs, then the breaker skips it', async (t) => {
    const { engine, store, clock } = setupFlaky(t, { breaker: { failureThreshold: 1, openMs: 1000 } });
    store.hang = true;
    const p = engine.read('k', async () => 'from source');
    await tick();
    clock.advance(100);
    await tick();
    assert.equal(await p, 'from source');
    assert.equal(engine.breakerState, 'open');
    const before = store.calls;
    assert.equal(await engine.read('k', async () => 'again'), 'again', 'answered with no clock movement: no store wait');
    assert.equal(store.calls, before);
  });

  test('an unreadable entry (codec error) is a miss, not a failure', async (t) => {
    const { engine, store } = setupFlaky(t);
    await engine.read('k', async () => 'v1');
    store.corrupt = true;
    assert.equal(await engine.read('k', async () => 'v2'), 'v2');
    assert.equal(engine.breakerState, 'closed', 'a codec error is not the store being down');
  });

  test('a value the store refuses is still served; the fill failure is ignored', async (t) => {
    const { engine, store } = setup(t, {}, { maxValueBytes: 10 });
    assert.equal(await engine.read('k', async () => 'x'.repeat(100)), 'x'.repeat(100));
    assert.equal(store.peek('k'), undefined);
    await assert.rejects(engine.set('k', 'y'.repeat(100)), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_VALUE_TOO_LARGE'));
  });

  test('breaker off: every read tries the store', async (t) => {
    const { engine, store } = setupFlaky(t, { breaker: false });
    store.down = true;
    for (let i = 0; i < 10; i++) await engine.read('k', async () => 'v');
    assert.equal(store.calls, 20, 'get + fillToken per read');
    assert.equal(engine.stats.breakerSkips, 0);
  });
});

describe('ReadEngine: repair after failed invalidations', () => {
  test('an invalidation the store misses: reads of that key bypass the cache until the store takes it', async (t) => {
    const { engine, store, inner, clock } = setupFlaky(t, { breaker: { failureThreshold: 1, openMs: 100 } });
    const rows = new Map([['k', 'v1']]);
    const { loader, count } = counting(rows);
    await engine.read('k', loader);
    // The source changes; the invalidation fails: the store keeps v1.
    rows.set('k', 'v2');
    store.down = true;
    assert.equal(await engine.invalidate('k'), false);
    assert.deepEqual(engine.repairState(), { keys: 1, all: false });
    store.down = false; // the store is back but still holds v1
    assert.equal(inner.peek('k')?.value, 'v1');
    assert.equal(await engine.read('k', loader), 'v2', 'not the stale v1');
    // The breaker is open: no repair yet; reads keep bypassing.
    assert.equal(await engine.read('k', loader), 'v2');
    clock.advance(100);
    await engine.read('k', loader); // triggers the repair (the half-open trial)
    await tick();
    assert.deepEqual(engine.repairState(), { keys: 0, all: false });
    assert.equal(inner.peek('k'), undefined, 'the repair invalidated the stale entry');
    const loadsBefore = count();
    assert.equal(await engine.read('k', loader), 'v2');
    assert.equal(await engine.read('k', loader), 'v2');
    assert.equal(count(), loadsBefore + 1, 'cached again after the repair');
  });

  test('more failed invalidations than maxRepairKeys: the whole store is cleared when it is back', async (t) => {
    const { engine, store, inner } = setupFlaky(t, { maxRepairKeys: 3, breaker: false });
    for (const k of ['a', 'b', 'c', 'd', 'e']) await engine.read(k, async () => k + '1');
    store.down = true;
    for (const k of ['a', 'b', 'c', 'd']) await engine.invalidate(k);
    assert.deepEqual(engine.repairState(), { keys: 0, all: true });
    store.down = false;
    // Every read bypasses the cache while a clear is pending, even of a key never invalidated.
    assert.equal(await engine.read('e', async () => 'e2'), 'e2');
    await tick();
    assert.deepEqual(engine.repairState(), { keys: 0, all: false });
    assert.equal(inner.size(), 0, 'cleared');
    assert.equal(store.byOp.get('clear'), 1);
  });

  test('a failed tag invalidation clears the store when it is back', async (t) => {
    const { engine, store, inner } = setupFlaky(t, { breaker: false });
    await engine.read('a', async () => 'A', ['t']);
    store.down = true;
    assert.equal(await engine.invalidateTag('t'), 0);
    assert.equal(engine.repairState().all, true);
    store.down = false;
    assert.equal(await engine.read('a', async () => 'A2'), 'A2');
    await tick();
    assert.equal(inner.size(), 0);
    assert.equal(engine.repairState().all, false);
  });

  test('the hit path is off while a repair is pending and back on after it', async (t) => {
    const { engine, store, clock } = setup(t);
    const { loader, count } = counting(new Map([['k', 'v']]));
    await engine.read('k', loader);
    // Simulate an invalidation the store could not take, by a store that refuses once.
    const realInvalidate = store.invalidate.bind(store);
    store.invalidate = async () => {
      throw new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', 'blip');
    };
    assert.equal(await engine.invalidate('k'), false);
    store.invalidate = realInvalidate;
    assert.equal(engine.peek('k'), undefined, 'peek does not serve a key awaiting repair');
    assert.equal(await engine.read('k', loader), 'v');
    await tick();
    assert.deepEqual(engine.repairState(), { keys: 0, all: false });
    clock.advance(0);
    await engine.read('k', loader);
    assert.equal(engine.peek('k'), 'v');
    assert.equal(count(), 3, 'bypass read, refill, then hits');
  });
});

describe('ReadEngine: fleet lease', () => {
  class FakeLease implements FleetLease {
    held = new Set<string>();
    acquired = 0;
    released = 0;
    async acquire(key: string): Promise<LeaseHandle | undefined> {
      if (this.held.has(key)) return undefined;
      this.held.add(key);
      this.acquired++;
      return {
        release: async () => {
          this.released++;
          this.held.delete(key);
        },
      };
    }
  }

  test('a free lease: load, fill, release', async (t) => {
    const lease = new FakeLease();
    const { engine } = setup(t, { lease });
    assert.equal(await engine.read('k', async () => 'v'), 'v');
    await tick();
    assert.equal(lease.acquired, 1);
    assert.equal(lease.released, 1);
  });

  test('another process holds the lease: poll the store and take its fill, without loading', async (t) => {
    const lease = new FakeLease();
    const { engine, store, clock } = setup(t, { lease });
    lease.held.add('k'); // another process is loading k
    let loads = 0;
    const p = engine.read('k', async () => {
      loads++;
      return 'mine';
    });
    await tick();
    clock.advance(2);
    await tick();
    clock.advance(4);
    await tick();
    // The other process fills the shared store.
    const token = await store.fillToken('k');
    await store.fill('k', { value: 'theirs', freshUntilMs: START + 10_000, staleUntilMs: START + 10_000 }, token);
    clock.advance(8);
    assert.equal(await p, 'theirs');
    assert.equal(loads, 0);
    assert.equal(engine.stats.joins, 1, 'counted as a (fleet) join');
  });

  test('the holder gives up without filling: the waiter takes the lease and loads', async (t) => {
    const lease = new FakeLease();
    const { engine, clock } = setup(t, { lease });
    lease.held.add('k');
    const p = engine.read('k', async () => 'mine');
    await tick();
    lease.held.delete('k');
    clock.advance(2);
    await tick();
    assert.equal(await p, 'mine');
    assert.equal(lease.acquired, 1);
  });

  test('a lease held past hardMs: the waiter loads by itself (callers got the timeout)', async (t) => {
    const lease = new FakeLease();
    const { engine, clock } = setup(t, { lease, loadTimeouts: { softMs: 100, hardMs: 300 } });
    lease.held.add('k');
    let loads = 0;
    const p = engine.read('k', async () => {
      loads++;
      return 'mine';
    });
    const outcome = p.then(
      (v) => v,
      (err: unknown) => err,
    );
    for (let i = 0; i < 20; i++) {
      clock.advance(50);
      await tick();
    }
    assert.ok(isArchlabError(await outcome, 'ARCHLAB_CACHE_LOAD_TIMEOUT'));
    assert.equal(loads, 1, 'loaded once the wait was over');
  });
});

describe('ReadEngine: options and close', () => {
  test('invalid options are refused at construction', (t) => {
    const { store } = setup(t);
    const bad: Partial<EngineOptions<string>>[] = [
      { freshness: { ttlMs: 0 } },
      { freshness: { ttlMs: 1000, jitter: 1 } },
      { freshness: { ttlMs: 1000, negativeTtlMs: -1 } },
      { loadTimeouts: { softMs: 500, hardMs: 100 } },
      { loadTimeouts: { softMs: 0 } },
      { refreshAheadRatio: 1 },
      { maxRepairKeys: 0 },
      { breaker: { failureThreshold: 0 } },
      { name: '' },
    ];
    for (const o of bad) {
      assert.throws(() => new ReadEngine<string>({ name: 'x', store, ...o }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(o));
    }
  });

  test('after close: reads that miss fail with ARCHLAB_CACHE_CLOSED; loads in flight do not fill', async (t) => {
    const { engine, store } = setup(t);
    const { loader, calls } = controlled();
    const p = engine.read('k', loader);
    await tick();
    engine.close();
    calls[0]!.resolve('v');
    assert.equal(await p, 'v');
    assert.equal(store.peek('k'), undefined);
    await assert.rejects(engine.read('j', loader), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
  });
});
