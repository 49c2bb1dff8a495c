import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../../core/random.js';
import { simulateLru, type LruCapacity } from './lru.js';

/** The obviously-correct LRU: an array, most recent last, linear search. */
function naiveLru(keys: number[], sizes: number[], capacity: LruCapacity, warmup = 0): { hits: number; bytesHit: number; evictions: number; final: number[] } {
  const byBytes = 'bytes' in capacity;
  const cap = 'bytes' in capacity ? capacity.bytes : capacity.objects;
  let list: { key: number; size: number }[] = [];
  let hits = 0;
  let bytesHit = 0;
  let evictions = 0;
  const cost = (e: { size: number }): number => (byBytes ? e.size : 1);
  keys.forEach((key, i) => {
    const at = list.findIndex((e) => e.key === key);
    if (at >= 0) {
      const [e] = list.splice(at, 1);
      list.push(e!);
      if (i >= warmup) {
        hits++;
        bytesHit += sizes[i]!;
      }
      return;
    }
    const e = { key, size: sizes[i]! };
    if (cost(e) > cap) return;
    list.push(e);
    while (list.reduce((a, x) => a + cost(x), 0) > cap) {
      list = list.slice(1);
      evictions++;
    }
  });
  return { hits, bytesHit, evictions, final: list.map((e) => e.key) };
}

test('a hand-worked trace: count capacity 2', () => {
  // a b a c b a : a miss, b miss, a hit, c miss (evicts b), b miss (evicts a), a miss (evicts c)
  const r = simulateLru({ keys: ['a', 'b', 'a', 'c', 'b', 'a'], sizes: 1 }, { capacity: { objects: 2 } });
  assert.equal(r.hits, 1);
  assert.equal(r.misses, 5);
  assert.equal(r.evictions, 3);
  assert.equal(r.objects, 2);
  assert.equal(r.hitRatio, 1 / 6);
});

test('byte capacity: an object larger than the cache is never stored and evicts nothing', () => {
  const r = simulateLru({ keys: [1, 2, 3, 1, 3], sizes: [40, 50, 200, 40, 200] }, { capacity: { bytes: 100 } });
  assert.equal(r.tooLarge, 2);
  assert.equal(r.hits, 1); // key 1 is still there: the 200-byte object did not push it out
  assert.equal(r.evictions, 0);
  assert.equal(r.bytes, 90);
});

test('warm-up requests fill the cache but are not counted', () => {
  const r = simulateLru({ keys: [1, 2, 1, 2], sizes: 10 }, { capacity: { objects: 2 }, warmupRequests: 2 });
  assert.equal(r.requests, 2);
  assert.equal(r.hits, 2);
  assert.equal(r.hitRatio, 1);
  assert.equal(r.bytesRequested, 20);
  assert.equal(r.byteHitRatio, 1);
});

test('zero capacity and empty traces', () => {
  assert.equal(simulateLru({ keys: [1, 1, 1], sizes: 1 }, { capacity: { objects: 0 } }).hits, 0);
  const empty = simulateLru({ keys: [], sizes: [] }, { capacity: { bytes: 10 } });
  assert.equal(empty.hitRatio, 0);
  assert.equal(empty.byteHitRatio, 0);
});

test('bad options are refused with ARCHLAB_INVALID_ARGUMENT', () => {
  const bad = (f: () => unknown): void => assert.throws(f, (err: unknown) => (err as { code?: string }).code === 'ARCHLAB_INVALID_ARGUMENT');
  bad(() => simulateLru({ keys: [1], sizes: 1 }, { capacity: { objects: -1 } }));
  bad(() => simulateLru({ keys: [1], sizes: 1 }, { capacity: { bytes: 1.5 } }));
  bad(() => simulateLru({ keys: [1, 2], sizes: [1] }, { capacity: { bytes: 10 } }));
  bad(() => simulateLru({ keys: [1], sizes: [-3] }, { capacity: { bytes: 10 } }));
  bad(() => simulateLru({ keys: [1], sizes: 1 }, { capacity: { objects: 1 }, warmupRequests: -1 }));
});

test('matches the naive reference on random traces (count and byte capacity)', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const rnd = new SeededRandom(seed);
    const length = 1 + rnd.int(120);
    const keySpace = 1 + rnd.int(25);
    const keys = Array.from({ length }, () => rnd.int(keySpace));
    // One size per key (a CDN object has one size), 1..60 bytes.
    const sizeOf = Array.from({ length: keySpace }, () => 1 + rnd.int(60));
    const sizes = keys.map((k) => sizeOf[k]!);
    const warmup = rnd.int(length);
    const capacities: LruCapacity[] = [{ objects: rnd.int(keySpace + 2) }, { bytes: rnd.int(400) }];
    for (const capacity of capacities) {
      const want = naiveLru(keys, sizes, capacity, warmup);
      const got = simulateLru({ keys, sizes }, { capacity, warmupRequests: warmup });
      const what = `seed ${seed}, capacity ${JSON.stringify(capacity)}`;
      assert.equal(got.hits, want.hits, what);
      assert.equal(got.bytesHit, want.bytesHit, what);
      assert.equal(got.evictions, want.evictions, what);
      assert.equal(got.objects, want.final.length, what);
      assert.equal(got.requests, length - warmup, what);
      assert.equal(got.hits + got.misses, got.requests, what);
    }
  }
});

test('a fixed size behaves as the same sizes given one by one', () => {
  const rnd = new SeededRandom(7);
  const keys = Array.from({ length: 2000 }, () => rnd.int(300));
  const a = simulateLru({ keys, sizes: 100 }, { capacity: { bytes: 5000 } });
  const b = simulateLru({ keys, sizes: keys.map(() => 100) }, { capacity: { bytes: 5000 } });
  const c = simulateLru({ keys, sizes: 100 }, { capacity: { objects: 50 } });
  assert.deepEqual(a, b);
  assert.equal(a.hits, c.hits);
  assert.ok(a.hits > 0 && a.hits < 2000);
});
