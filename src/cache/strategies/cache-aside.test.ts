import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { createRegistry } from '../../core/metrics.js';
import { SeededRandom } from '../../core/random.js';
import type { CacheError } from '../errors.js';
import { CacheMetrics } from '../metrics.js';
import { createMemoryStore } from '../stores/memory.js';
import { deferred, FlakyStore, tick } from '../test-helpers.js';
import { CacheAside } from './cache-aside.js';
import type { CacheAsideOptions } from './cache-aside.js';

const START = 5_000_000;

function setup(t: TestContext, o: Partial<CacheAsideOptions<string>> = {}, storeOpts: { maxValueBytes?: number } = {}) {
  const clock = new ManualClock(START);
  const store = createMemoryStore<string>({ clock, purgeIntervalMs: 0, ...storeOpts });
  const cache = new CacheAside<string>({ name: 'aside', store, clock, random: new SeededRandom(3), freshness: { ttlMs: 1000, jitter: 0 }, ...o });
  t.after(() => cache.close());
  return { clock, store, cache };
}

const code = (c: string) => (err: unknown) => isArchlabError(err, c);

describe('CacheAside', () => {
  test('getOrLoad loads on a miss and serves the cache after; get and peek read the cache only', async (t) => {
    const { cache } = setup(t);
    let loads = 0;
    const loader = async (key: string) => {
      loads++;
      return `row ${key}`;
    };
    assert.equal(await cache.get('1'), undefined);
    assert.equal(cache.peek('1'), undefined);
    assert.equal(await cache.getOrLoad('1', loader), 'row 1');
    assert.equal(await cache.getOrLoad('1', loader), 'row 1');
    assert.equal(await cache.get('1'), 'row 1');
    assert.equal(cache.peek('1'), 'row 1');
    assert.equal(loads, 1);
    const s = cache.stats();
    assert.equal(s.loads, 1);
    assert.equal(s.hits, 3);
  });

  test('10,000 concurrent getOrLoad of a cold key: exactly 1 loader call', async (t) => {
    const { cache } = setup(t);
    const gate = deferred<string>();
    let calls = 0;
    const loader = () => {
      calls++;
      return gate.promise;
    };
    const all = Array.from({ length: 10_000 }, () => cache.getOrLoad('hot', loader));
    await tick();
    gate.resolve('value');
    const values = await Promise.all(all);
    assert.equal(calls, 1);
    assert.ok(values.every((v) => v === 'value'));
    assert.equal(cache.stats().joins, 9_999);
  });

  test('the race: a reader that loaded the old row before the write cannot store it after the invalidation', async (t) => {
    const { cache, store } = setup(t);
    const db = new Map([['user:1', 'old']]);
    // The reader's query sees the old row but its answer is slow to come back.
    const readerQuery = deferred<void>();
    const reader = cache.getOrLoad('user:1', async (key) => {
      const row = db.get(key);
      await readerQuery.promise;
      return row;
    });
    await tick();
    // The writer updates the row and invalidates, while the reader is still in flight.
    await cache.invalidateOnWrite('user:1', async () => {
      db.set('user:1', 'new');
    });
    readerQuery.resolve();
    assert.equal(await reader, 'old', 'the reader started before the write: it may answer old');
    assert.equal(store.peek('user:1'), undefined, 'but its fill was refused: the cache does not hold old');
    assert.equal(await cache.get('user:1'), undefined);
    assert.equal(await cache.getOrLoad('user:1', async (k) => db.get(k)), 'new');
  });

  test('the race, other order: invalidation before the reader took its token -> the reader loads new', async (t) => {
    const { cache } = setup(t);
    const db = new Map([['k', 'old']]);
    await cache.getOrLoad('k', async (k) => db.get(k));
    await cache.invalidateOnWrite(['k'], async () => db.set('k', 'new'));
    assert.equal(await cache.getOrLoad('k', async (k) => db.get(k)), 'new');
    assert.equal(cache.peek('k'), 'new');
  });

  test('invalidateOnWrite returns the write\'s result; a failed write still invalidates, then rethrows', async (t) => {
    const { cache } = setup(t);
    await cache.set('a', 'A');
    await cache.set('b', 'B');
    assert.equal(await cache.invalidateOnWrite(['a'], async () => 42), 42);
    assert.equal(cache.peek('a'), undefined);
    await assert.rejects(
      cache.invalidateOnWrite('b', async () => {
        throw new RangeError('commit unknown');
      }),
      RangeError,
    );
    assert.equal(cache.peek('b'), undefined, 'invalidated although the write threw');
  });

  test('set, tags and invalidateTag', async (t) => {
    const { cache } = setup(t);
    await cache.set('p1', 'x', { tags: ['product'] });
    await cache.getOrLoad('p2', async () => 'y', { tags: ['product', 'sale'] });
    await cache.set('u1', 'z', { tags: ['user'] });
    assert.equal(await cache.invalidateTag('product'), 2);
    assert.equal(cache.peek('p1'), undefined);
    assert.equal(cache.peek('p2'), undefined);
    assert.equal(cache.peek('u1'), 'z');
    assert.equal(await cache.invalidateTag('nothing'), 0);
  });

  test('get serves stale inside the stale-while-revalidate window only', async (t) => {
    const { cache, clock } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleWhileRevalidateMs: 200 } });
    await cache.set('k', 'v');
    clock.advance(1100);
    assert.equal(await cache.get('k'), 'v');
    assert.equal(cache.peek('k'), undefined, 'peek is fresh-only');
    assert.equal(cache.stats().staleServed, 1);
    clock.advance(100);
    assert.equal(await cache.get('k'), undefined);
  });

  test('negative caching through getOrLoad', async (t) => {
    const { cache, clock } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, negativeTtlMs: 50 } });
    let loads = 0;
    const loader = async () => {
      loads++;
      return undefined;
    };
    assert.equal(await cache.getOrLoad('ghost', loader), undefined);
    assert.equal(await cache.getOrLoad('ghost', loader), undefined);
    assert.equal(loads, 1);
    clock.advance(50);
    await cache.getOrLoad('ghost', loader);
    assert.equal(loads, 2);
  });

  test('refresh-ahead is an option', async (t) => {
    const { cache, clock } = setup(t, { refreshAheadRatio: 0.5 });
    let n = 0;
    const loader = async () => `v${++n}`;
    await cache.getOrLoad('k', loader);
    clock.advance(600);
    assert.equal(await cache.getOrLoad('k', loader), 'v1');
    await tick();
    assert.equal(cache.peek('k'), 'v2');
  });

  test('value over the size limit: typed error from set, and getOrLoad still answers', async (t) => {
    const { cache } = setup(t, {}, { maxValueBytes: 16 });
    await assert.rejects(cache.set('big', 'x'.repeat(100)), (err: unknown) => {
      assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_VALUE_TOO_LARGE'));
      assert.equal((err as CacheError).details?.key, 'big');
      return true;
    });
    assert.equal(await cache.getOrLoad('big', async () => 'y'.repeat(100)), 'y'.repeat(100));
    assert.equal(cache.peek('big'), undefined);
  });

  test('bad keys, bad tags and undefined values are refused with typed errors', async (t) => {
    const { cache } = setup(t);
    await assert.rejects(cache.get(''), code('ARCHLAB_CACHE_BAD_KEY'));
    await assert.rejects(cache.get(42 as unknown as string), code('ARCHLAB_CACHE_BAD_KEY'));
    await assert.rejects(cache.getOrLoad('x'.repeat(2000), async () => 'v'), code('ARCHLAB_CACHE_BAD_KEY'));
    assert.throws(() => cache.peek(''), code('ARCHLAB_CACHE_BAD_KEY'));
    await assert.rejects(cache.set('', 'v'), code('ARCHLAB_CACHE_BAD_KEY'));
    await assert.rejects(cache.set('k', undefined as unknown as string), code('ARCHLAB_INVALID_ARGUMENT'));
    await assert.rejects(cache.set('k', 'v', { tags: [''] }), code('ARCHLAB_INVALID_ARGUMENT'));
    await assert.rejects(cache.invalidate(''), code('ARCHLAB_CACHE_BAD_KEY'));
    await assert.rejects(cache.invalidateTag(''), code('ARCHLAB_INVALID_ARGUMENT'));
    await assert.rejects(cache.invalidateOnWrite(['ok', ''], async () => 1), code('ARCHLAB_CACHE_BAD_KEY'));
  });

  test('every method fails with ARCHLAB_CACHE_CLOSED after close(); the store is closed', async (t) => {
    const { cache, store } = setup(t);
    await cache.set('k', 'v');
    await cache.close();
    assert.equal(store.size(), 0, 'the memory store was closed (and emptied)');
    const closed = code('ARCHLAB_CACHE_CLOSED');
    await assert.rejects(cache.get('k'), closed);
    await assert.rejects(cache.getOrLoad('k', async () => 'v'), closed);
    assert.throws(() => cache.peek('k'), closed);
    await assert.rejects(cache.set('k', 'v'), closed);
    await assert.rejects(cache.invalidate('k'), closed);
    await assert.rejects(cache.invalidateTag('t'), closed);
    await assert.rejects(cache.invalidateOnWrite('k', async () => 1), closed);
    await cache.close(); // idempotent
  });

  test('store down: getOrLoad answers from the loader, invalidations are kept for repair', async (t) => {
    // A store that can be down is a remote one (Redis, tiered): a FlakyStore over a memory store
    // that is down: every call fails.
    const clock = new ManualClock(START);
    const store = new FlakyStore<string>(createMemoryStore<string>({ clock, purgeIntervalMs: 0 }));
    store.down = true;
    const cache = new CacheAside<string>({ name: 'aside', store, clock, random: new SeededRandom(3), freshness: { ttlMs: 1000, jitter: 0 }, breaker: { failureThreshold: 2, openMs: 1000 } });
    t.after(() => cache.close());
    let loads = 0;
    for (let i = 0; i < 5; i++) assert.equal(await cache.getOrLoad('k', async () => `v${++loads}`), `v${loads}`);
    assert.equal(loads, 5, 'nothing cached while the store is down');
    await cache.invalidate('other');
    assert.ok(cache.stats().breakerSkips > 0);
    assert.deepEqual(cache.repairState(), { keys: 1, all: false });
  });

  test('metrics: registered under its name, unregistered on close', async (t) => {
    const registry = createRegistry();
    const metrics = new CacheMetrics(registry);
    const { cache } = setup(t, { metrics });
    await cache.getOrLoad('k', async () => 'v');
    await cache.getOrLoad('k', async () => 'v');
    let text = await registry.metrics();
    assert.match(text, /archlab_cache_hits_total\{cache="aside"\} 1/);
    assert.match(text, /archlab_cache_misses_total\{cache="aside"\} 1/);
    assert.match(text, /archlab_cache_loads_total\{cache="aside"\} 1/);
    await cache.close();
    text = await registry.metrics();
    assert.doesNotMatch(text, /archlab_cache_(hits|misses|loads)_total\{cache="aside"\}/);
  });
});
