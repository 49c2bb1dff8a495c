/**
 * Concurrent readers of one key share the store read in flight when the store is not in-process
 * (Redis, tiered): a stampede of misses costs one GET and one load, and an invalidation makes later
 * readers start their own read.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { SeededRandom } from '../core/random.js';
import { ReadEngine } from './core.js';
import { createMemoryStore } from './stores/memory.js';
import type { CacheStore, Entry, FillToken } from './types.js';

/** A remote-looking store (no peek, kind 'redis') over a memory store, counting gets; gets wait for `release()`. */
function remoteStore(clock: ManualClock): { store: CacheStore<string>; gets: () => number; release: () => void } {
  const inner = createMemoryStore<string>({ clock, purgeIntervalMs: 0 });
  let gets = 0;
  let waiting: Array<() => void> = [];
  const store: CacheStore<string> = {
    kind: 'redis',
    get: async (key: string): Promise<Entry<string> | undefined> => {
      gets++;
      await new Promise<void>((r) => waiting.push(r));
      return inner.get(key);
    },
    set: (k, e) => inner.set(k, e),
    fillToken: (k) => inner.fillToken(k),
    fill: (k: string, e: Entry<string>, t: FillToken) => inner.fill(k, e, t),
    invalidate: (k) => inner.invalidate(k),
    invalidateTag: (t) => inner.invalidateTag(t),
    clear: () => inner.clear(),
    size: () => inner.size(),
    close: () => inner.close(),
  };
  return {
    store,
    gets: () => gets,
    release: () => {
      const w = waiting;
      waiting = [];
      for (const r of w) r();
    },
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('10,000 concurrent reads of a cold key on a remote store: one store GET, one load', async () => {
  const clock = new ManualClock(1_700_000_000_000);
  const remote = remoteStore(clock);
  const engine = new ReadEngine<string>({ name: 'shared', store: remote.store, clock, random: new SeededRandom(1), breaker: false });
  let loads = 0;
  const loader = async (k: string): Promise<string> => {
    loads++;
    return `v:${k}`;
  };
  const reads = Array.from({ length: 10_000 }, () => engine.read('cold', loader));
  await tick();
  assert.equal(remote.gets(), 1, 'the readers share one GET');
  remote.release();
  const values = await Promise.all(reads);
  assert.ok(values.every((v) => v === 'v:cold'));
  assert.equal(loads, 1);
  assert.equal(remote.gets(), 1);
  engine.close();
});

test('a reader arriving after an invalidation does not join a store read that started before it', async () => {
  const clock = new ManualClock(1_700_000_000_000);
  const remote = remoteStore(clock);
  const engine = new ReadEngine<string>({ name: 'shared', store: remote.store, clock, random: new SeededRandom(1), breaker: false });
  const first = engine.read('k', async () => 'v1');
  await tick();
  assert.equal(remote.gets(), 1);
  const invalidated = engine.invalidate('k');
  await invalidated;
  const second = engine.read('k', async () => 'v2');
  await tick();
  assert.equal(remote.gets(), 2, 'the later reader started its own GET');
  remote.release();
  // Both GETs answer "absent" now, so both readers end in one load started after the invalidation.
  assert.equal(await first, 'v1');
  assert.equal(await second, 'v1');
  engine.close();
});
