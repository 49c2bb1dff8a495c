import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { SeededRandom } from '../../core/random.js';
import type { CacheError } from '../errors.js';
import { createMemoryStore } from '../stores/memory.js';
import type { Source } from '../types.js';
import { deferred, FlakyStore, tick, type Deferred } from '../test-helpers.js';
import { WriteThrough } from './write-through.js';
import type { WriteThroughOptions } from './write-through.js';

const START = 9_000_000;

/**
 * A source over a Map. Writes can be held (each held write waits on its own gate, applied when the
 * test opens it) and loads can be held the same way; `failWrites` makes writes throw.
 */
class GatedSource implements Source<string> {
  readonly name = 'gated';
  readonly rows = new Map<string, string>();
  loads = 0;
  writes = 0;
  failWrites = false;
  failRemoves = false;
  holdWrites = false;
  /** Hold the answer of each write after it is applied (a write that committed but is slow to say so). */
  holdAnswers = false;
  holdLoads = false;
  readonly writeGates: Deferred[] = [];
  readonly answerGates: Deferred[] = [];
  readonly loadGates: Deferred[] = [];
  async load(key: string): Promise<string | undefined> {
    this.loads++;
    const row = this.rows.get(key); // the row is read now; the answer may come back later
    if (this.holdLoads) {
      const g = deferred();
      this.loadGates.push(g);
      await g.promise;
    }
    return row;
  }
  async write(key: string, value: string): Promise<void> {
    this.writes++;
    if (this.holdWrites) {
      const g = deferred();
      this.writeGates.push(g);
      await g.promise;
    }
    if (this.failWrites) throw new RangeError('disk full');
    this.rows.set(key, value);
    if (this.holdAnswers) {
      const g = deferred();
      this.answerGates.push(g);
      await g.promise;
    }
  }
  async remove(key: string): Promise<void> {
    if (this.failRemoves) {
      this.rows.delete(key); // committed, but the answer is lost
      throw new RangeError('connection reset');
    }
    this.rows.delete(key);
  }
}

function setup(t: TestContext, o: Partial<WriteThroughOptions<string>> = {}, storeOpts: { maxValueBytes?: number } = {}) {
  const clock = new ManualClock(START);
  const store = createMemoryStore<string>({ clock, purgeIntervalMs: 0, ...storeOpts });
  const source = new GatedSource();
  const cache = new WriteThrough<string>({ name: 'wt', store, source, clock, random: new SeededRandom(9), freshness: { ttlMs: 1000, jitter: 0 }, ...o });
  t.after(() => cache.close());
  return { clock, store, source, cache };
}

function setupFlaky(t: TestContext, o: Partial<WriteThroughOptions<string>> = {}) {
  const clock = new ManualClock(START);
  const inner = createMemoryStore<string>({ clock, purgeIntervalMs: 0 });
  const store = new FlakyStore(inner, 50);
  const source = new GatedSource();
  const cache = new WriteThrough<string>({ name: 'wt-flaky', store, source, clock, freshness: { ttlMs: 1000, jitter: 0 }, breaker: false, ...o });
  t.after(() => cache.close());
  return { clock, inner, store, source, cache };
}

describe('WriteThrough', () => {
  test('set writes the source, then the cache; a get after it is a hit', async (t) => {
    const { cache, source, store } = setup(t);
    await cache.set('k', 'v');
    assert.equal(source.rows.get('k'), 'v');
    assert.equal(store.peek('k')?.value, 'v');
    assert.equal(await cache.get('k'), 'v');
    assert.equal(source.loads, 0);
    await cache.set('k', 'v2');
    assert.equal(await cache.get('k'), 'v2');
  });

  test('a write completes only after the source has it', async (t) => {
    const { cache, source, store } = setup(t);
    source.holdWrites = true;
    let done = false;
    const p = cache.set('k', 'v').then(() => (done = true));
    await tick();
    assert.equal(done, false);
    assert.equal(store.peek('k'), undefined, 'not in the cache before the source has it');
    source.writeGates[0]!.resolve();
    await p;
    assert.equal(store.peek('k')?.value, 'v');
  });

  test('a failed source write: typed error, and the cache never holds the new value', async (t) => {
    const { cache, source, store } = setup(t);
    source.rows.set('k', 'old');
    assert.equal(await cache.get('k'), 'old');
    source.failWrites = true;
    await assert.rejects(cache.set('k', 'new'), (err: unknown) => {
      assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
      assert.deepEqual((err as CacheError).details, { key: 'k', op: 'write' });
      assert.ok((err as CacheError).cause instanceof RangeError);
      return true;
    });
    assert.notEqual(store.peek('k')?.value, 'new');
    assert.equal(await cache.get('k'), 'old', 'reads still agree with the source');
  });

  test('store down during writes: the write succeeds, reads see it, the store is repaired when back', async (t) => {
    const { cache, source, store, inner } = setupFlaky(t);
    await cache.set('k', 'v1');
    assert.equal(inner.peek('k')?.value, 'v1');
    store.failing.add('*');
    await cache.set('k', 'v2'); // resolves: the source has it
    assert.equal(source.rows.get('k'), 'v2');
    assert.deepEqual(cache.repairState(), { keys: 1, all: false });
    store.failing.clear();
    assert.equal(inner.peek('k')?.value, 'v1', 'the store still holds the old value...');
    assert.equal(await cache.get('k'), 'v2', '...but this process never serves it');
    await tick();
    assert.deepEqual(cache.repairState(), { keys: 0, all: false });
    assert.equal(inner.peek('k'), undefined, 'repaired: the old value is gone');
    assert.equal(await cache.get('k'), 'v2');
  });

  test('a fill that fails is repaired by an invalidation', async (t) => {
    const { cache, source, store, inner } = setupFlaky(t);
    await cache.set('k', 'v1');
    store.failing.add('fill');
    await cache.set('k', 'v2');
    assert.equal(source.rows.get('k'), 'v2');
    assert.equal(inner.peek('k'), undefined, 'not v1: invalidated');
    assert.deepEqual(cache.repairState(), { keys: 0, all: false });
  });

  test('fill fails and then the invalidation fails too: kept for repair', async (t) => {
    const { cache, source, store, inner } = setupFlaky(t);
    await cache.set('k', 'v1');
    // Fail only after beginWrite's invalidate + fillToken went through.
    source.holdWrites = true;
    const p = cache.set('k', 'v2');
    await tick();
    store.failing.add('fill');
    store.failing.add('invalidate');
    source.writeGates[0]!.resolve();
    await p;
    assert.deepEqual(cache.repairState(), { keys: 1, all: false });
    // Simulate the worst case: the store kept an old value for the key.
    await inner.set('k', { value: 'v1', freshUntilMs: START + 10_000, staleUntilMs: START + 10_000 });
    assert.equal(await cache.get('k'), 'v2', 'bypassed until repaired');
    store.failing.clear();
    await cache.get('k');
    await tick();
    assert.equal(inner.peek('k'), undefined);
    assert.deepEqual(cache.repairState(), { keys: 0, all: false });
  });

  test('two racing writers, source applies w1 then w2, w1 answers last: the cache never holds v1', async (t) => {
    const { cache, source, store } = setup(t);
    source.holdAnswers = true;
    const w1 = cache.set('k', 'v1');
    await tick();
    const w2 = cache.set('k', 'v2');
    await tick();
    assert.equal(source.rows.get('k'), 'v2', 'applied w1 then w2');
    source.answerGates[1]!.resolve();
    await w2;
    source.answerGates[0]!.resolve();
    await w1;
    const cached = store.peek('k')?.value;
    assert.ok(cached === undefined || cached === 'v2', `cache holds ${cached}, source v2`);
    assert.equal(await cache.get('k'), 'v2');
  });

  // Across processes the protocol also needs the store to refuse a second fill of one generation:
  // a successful fill bumps the generation (CacheStore.fill's contract).
  for (const variant of ['one process', 'two processes sharing the store'] as const) {
    test(`two racing writers and a reader, every order of events (${variant}): afterwards the cache is empty or equals the source`, async () => {
      // Events: each writer's write is applied (a) and answered (b); the reader reads the row (r) and
      // answers (s). Every order that keeps a before b and r before s is run.
      const events = ['a0', 'b0', 'a1', 'b1', 'r', 's'];
      const orders: string[][] = [];
      const permute = (prefix: string[], rest: string[]): void => {
        if (rest.length === 0) {
          orders.push(prefix);
          return;
        }
        for (const e of rest) {
          const need = e === 'b0' ? 'a0' : e === 'b1' ? 'a1' : e === 's' ? 'r' : undefined;
          if (need !== undefined && !prefix.includes(need)) continue;
          permute([...prefix, e], rest.filter((x) => x !== e));
        }
      };
      permute([], events);
      assert.equal(orders.length, 90);
      for (const order of orders) {
        const clock = new ManualClock(START);
        const store = createMemoryStore<string>({ clock, purgeIntervalMs: 0 });
        const rows = new Map([['k', 'old']]);
        const gates = new Map<string, Deferred>(events.map((e) => [e, deferred()]));
        const source: Source<string> = {
          name: 'scripted',
          load: async (key) => {
            await gates.get('r')!.promise;
            const row = rows.get(key);
            await gates.get('s')!.promise;
            return row;
          },
          write: async (key, value) => {
            const i = value === 'v0' ? 0 : 1;
            await gates.get(`a${i}`)!.promise;
            rows.set(key, value);
            await gates.get(`b${i}`)!.promise;
          },
          remove: async (key) => {
            rows.delete(key);
          },
        };
        const cache = new WriteThrough<string>({ name: 'wt-race', store, source, clock, freshness: { ttlMs: 60_000, jitter: 0 } });
        // The second "process": its own engine (own single-flight, own locks) on the same store.
        const other = variant === 'one process' ? cache : new WriteThrough<string>({ name: 'wt-race-2', store, source, clock, freshness: { ttlMs: 60_000, jitter: 0 } });
        const ops = [cache.set('k', 'v0'), other.set('k', 'v1'), cache.get('k')];
        await tick();
        for (const e of order) {
          gates.get(e)!.resolve();
          await tick();
        }
        await Promise.all(ops);
        const cached = store.peek('k')?.value;
        assert.ok(cached === undefined || cached === rows.get('k'), `order ${order.join(' ')}: cache ${cached}, source ${rows.get('k')}`);
        await cache.close();
        await other.close();
      }
    });
  }

  test('a reader that read the old row during a write cannot overwrite the new value', async (t) => {
    const { cache, source, store } = setup(t);
    source.rows.set('k', 'old');
    source.holdWrites = true;
    source.holdLoads = true;
    const w = cache.set('k', 'new');
    await tick();
    const r = cache.get('k'); // reads the old row (the write is not applied yet) and stays in flight
    await tick();
    assert.equal(source.loadGates.length, 1);
    source.writeGates[0]!.resolve();
    await w;
    source.loadGates[0]!.resolve();
    assert.equal(await r, 'old');
    await tick();
    assert.equal(store.peek('k')?.value, 'new');
  });

  test('delete removes from the source then the cache; a failed remove still invalidates', async (t) => {
    const { cache, source, store } = setup(t);
    await cache.set('a', 'A');
    await cache.delete('a');
    assert.equal(source.rows.has('a'), false);
    assert.equal(store.peek('a'), undefined);
    assert.equal(await cache.get('a'), undefined);
    await cache.set('b', 'B');
    source.failRemoves = true;
    await assert.rejects(cache.delete('b'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && (err as CacheError).details?.op === 'remove');
    assert.equal(store.peek('b'), undefined, 'the remove committed: the cache must not keep B');
  });

  test('a value the store refuses is written to the source and left out of the cache', async (t) => {
    const { cache, source, store } = setup(t, {}, { maxValueBytes: 8 });
    await cache.set('k', 'x'.repeat(64));
    assert.equal(source.rows.get('k'), 'x'.repeat(64));
    assert.equal(store.peek('k'), undefined);
    assert.equal(await cache.get('k'), 'x'.repeat(64));
  });

  test('refresh-ahead works on write-through reads', async (t) => {
    const { cache, source, clock } = setup(t, { refreshAheadRatio: 0.3 });
    await cache.set('k', 'v1');
    source.rows.set('k', 'v1b'); // changed behind the cache's back
    clock.advance(750);
    assert.equal(await cache.get('k'), 'v1');
    await tick();
    assert.equal(cache.peek('k'), 'v1b');
  });

  test('needs a source with write and remove; typed errors for bad input and after close', async (t) => {
    const { cache, store } = setup(t);
    const readOnly = { name: 'ro', load: async () => undefined } as unknown as Source<string>;
    assert.throws(() => new WriteThrough<string>({ name: 'x', store, source: readOnly }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
    await assert.rejects(cache.set('', 'v'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_BAD_KEY'));
    await assert.rejects(cache.set('k', undefined as unknown as string), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
    await cache.close();
    await assert.rejects(cache.set('k', 'v'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
    await assert.rejects(cache.delete('k'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
  });
});
