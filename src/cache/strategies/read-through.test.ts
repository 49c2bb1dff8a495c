import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { SeededRandom } from '../../core/random.js';
import type { CacheError } from '../errors.js';
import { createMemoryStore } from '../stores/memory.js';
import type { Source } from '../types.js';
import { FlakyStore, tick } from '../test-helpers.js';
import { ReadThrough } from './read-through.js';
import type { ReadThroughOptions } from './read-through.js';

const START = 7_000_000;

/** A source over a Map that counts calls and can be taken down. */
class MapSource implements Source<string> {
  readonly name = 'map';
  readonly rows = new Map<string, string>();
  loads = 0;
  down = false;
  closed = false;
  gate: Promise<void> | undefined;
  async load(key: string): Promise<string | undefined> {
    this.loads++;
    if (this.gate) await this.gate;
    if (this.down) throw new RangeError('connection refused');
    return this.rows.get(key);
  }
  async write(key: string, value: string): Promise<void> {
    this.rows.set(key, value);
  }
  async remove(key: string): Promise<void> {
    this.rows.delete(key);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

function setup(t: TestContext, o: Partial<ReadThroughOptions<string>> = {}) {
  const clock = new ManualClock(START);
  const store = createMemoryStore<string>({ clock, purgeIntervalMs: 0 });
  const source = new MapSource();
  const cache = new ReadThrough<string>({ name: 'rt', store, source, clock, random: new SeededRandom(5), freshness: { ttlMs: 1000, jitter: 0 }, ...o });
  t.after(() => cache.close());
  return { clock, store, source, cache };
}

describe('ReadThrough', () => {
  test('get loads through the source on a miss; later gets are hits', async (t) => {
    const { cache, source } = setup(t);
    source.rows.set('1', 'one');
    assert.equal(await cache.get('1'), 'one');
    assert.equal(await cache.get('1'), 'one');
    assert.equal(cache.peek('1'), 'one');
    assert.equal(source.loads, 1);
    assert.equal(await cache.get('2'), undefined, 'no such row');
    assert.deepEqual({ hits: cache.stats().hits, misses: cache.stats().misses, loads: cache.stats().loads }, { hits: 2, misses: 2, loads: 2 });
  });

  test('10,000 concurrent gets of a cold key: exactly 1 source load', async (t) => {
    const { cache, source } = setup(t);
    source.rows.set('hot', 'v');
    let open!: () => void;
    source.gate = new Promise((r) => (open = r));
    const all = Array.from({ length: 10_000 }, () => cache.get('hot'));
    await tick();
    open();
    const values = await Promise.all(all);
    assert.equal(source.loads, 1);
    assert.ok(values.every((v) => v === 'v'));
  });

  test('a failing source: ARCHLAB_CACHE_SOURCE_FAILED with the key; with stale-if-error the stale value', async (t) => {
    const { cache, source, clock } = setup(t, { freshness: { ttlMs: 1000, jitter: 0, staleIfErrorMs: 10_000 } });
    source.rows.set('k', 'v1');
    source.down = true;
    await assert.rejects(cache.get('k'), (err: unknown) => {
      assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
      assert.equal((err as CacheError).details?.key, 'k');
      assert.ok((err as CacheError).cause instanceof RangeError);
      return true;
    });
    source.down = false;
    assert.equal(await cache.get('k'), 'v1');
    clock.advance(5000);
    source.down = true;
    assert.equal(await cache.get('k'), 'v1', 'stale, source down');
    assert.equal(cache.stats().staleServed, 1);
  });

  test('tagsFor tags loaded entries; invalidateTag drops them', async (t) => {
    const { cache, source } = setup(t, { tagsFor: (key, value) => [`len:${value.length}`] });
    source.rows.set('a', 'xx');
    source.rows.set('b', 'yyy');
    await cache.get('a');
    await cache.get('b');
    assert.equal(await cache.invalidateTag('len:2'), 1);
    assert.equal(cache.peek('a'), undefined);
    assert.equal(cache.peek('b'), 'yyy');
    await cache.invalidate('b');
    assert.equal(cache.peek('b'), undefined);
    assert.equal(source.rows.get('b'), 'yyy', 'invalidate leaves the source alone');
  });

  test('Redis-like store down: gets are answered by the source with a bounded number of store attempts', async (t) => {
    const clock = new ManualClock(START);
    const inner = createMemoryStore<string>({ clock, purgeIntervalMs: 0 });
    const store = new FlakyStore(inner, 50);
    const source = new MapSource();
    source.rows.set('k', 'v');
    const cache = new ReadThrough<string>({ name: 'rt-down', store, source, clock, breaker: { failureThreshold: 5, openMs: 1000 } });
    t.after(() => cache.close());
    store.down = true;
    for (let i = 0; i < 1000; i++) assert.equal(await cache.get('k'), 'v');
    assert.equal(store.calls, 5, 'the breaker opened after 5 failures');
    assert.equal(source.loads, 1000);
    // One trial per openMs while it stays down.
    clock.advance(1000);
    for (let i = 0; i < 100; i++) await cache.get('k');
    assert.equal(store.calls, 6);
    store.down = false;
    clock.advance(1000);
    await cache.get('k');
    await cache.get('k');
    assert.equal(source.loads, 1101, 'cached again once the store is back');
  });

  test('close() closes the store and the source; later calls fail with ARCHLAB_CACHE_CLOSED', async (t) => {
    const clock = new ManualClock(START);
    const store = new FlakyStore(createMemoryStore<string>({ clock, purgeIntervalMs: 0 }), 50);
    const source = new MapSource();
    const cache = new ReadThrough<string>({ name: 'rt-close', store, source, clock });
    t.after(() => cache.close());
    await cache.close();
    assert.equal(store.closed, true);
    assert.equal(source.closed, true);
    const closed = (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED');
    await assert.rejects(cache.get('k'), closed);
    assert.throws(() => cache.peek('k'), closed);
    await assert.rejects(cache.invalidate('k'), closed);
    await assert.rejects(cache.invalidateTag('t'), closed);
  });

  test('a source is required; bad keys are refused', async (t) => {
    const { cache, store } = setup(t);
    assert.throws(() => new ReadThrough<string>({ name: 'x', store, source: undefined as unknown as Source<string> }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
    await assert.rejects(cache.get(''), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_BAD_KEY'));
  });
});
