import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../../core/random.js';
import { simulateLru } from './lru.js';
import { zipfCdf, zipfProbability, zipfTrace } from './zipf.js';

test('the same seed gives the same trace; another seed another one', () => {
  const a = zipfTrace(1000, 0.9, 5000, new SeededRandom(42));
  const b = zipfTrace(1000, 0.9, 5000, new SeededRandom(42));
  const c = zipfTrace(1000, 0.9, 5000, new SeededRandom(43));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.ok(a.every((k) => k < 1000));
});

test('frequencies follow 1/(k+1)^s: the hottest keys within a few standard deviations', () => {
  const n = 1000;
  const count = 200_000;
  for (const s of [0, 0.9, 1.2]) {
    const trace = zipfTrace(n, s, count, new SeededRandom(5));
    const seen = new Float64Array(n);
    for (const k of trace) seen[k]!++;
    const cdf = zipfCdf(n, s);
    for (const k of [0, 1, 2, 9, 99, 999]) {
      const p = zipfProbability(cdf, k);
      const expected = p * count;
      const sd = Math.sqrt(count * p * (1 - p));
      assert.ok(Math.abs(seen[k]! - expected) <= 5 * sd + 1, `s=${s} key ${k}: ${seen[k]} seen, ${expected.toFixed(1)} expected (sd ${sd.toFixed(1)})`);
    }
  }
});

test('probabilities: uniform at s = 0, sum to 1, key 0 hottest', () => {
  const u = zipfCdf(10, 0);
  for (let k = 0; k < 10; k++) assert.ok(Math.abs(zipfProbability(u, k) - 0.1) < 1e-12);
  const z = zipfCdf(500, 0.9);
  let sum = 0;
  for (let k = 0; k < 500; k++) sum += zipfProbability(z, k);
  assert.ok(Math.abs(sum - 1) < 1e-9);
  assert.ok(zipfProbability(z, 0) > zipfProbability(z, 1));
  // Ratio of two ranks is (r2/r1)^s.
  assert.ok(Math.abs(zipfProbability(z, 0) / zipfProbability(z, 9) - Math.pow(10, 0.9)) < 1e-9);
});

test('a Zipf(0.9) trace through an LRU holding 10% of the keys hits far more than 10%', () => {
  // The bench's workload, scaled down: skew makes a small cache worth much more than its size.
  const trace = zipfTrace(10_000, 0.9, 50_000, new SeededRandom(9));
  const r = simulateLru({ keys: trace, sizes: 1 }, { capacity: { objects: 1000 } });
  assert.ok(r.hitRatio > 0.3 && r.hitRatio < 0.9, `hit ratio ${r.hitRatio}`);
  const uniform = simulateLru({ keys: zipfTrace(10_000, 0, 50_000, new SeededRandom(9)), sizes: 1 }, { capacity: { objects: 1000 } });
  assert.ok(uniform.hitRatio < 0.12, `uniform hit ratio ${uniform.hitRatio}`);
});

test('bad arguments are refused', () => {
  const bad = (f: () => unknown): void => assert.throws(f, (err: unknown) => (err as { code?: string }).code === 'ARCHLAB_INVALID_ARGUMENT');
  const r = new SeededRandom(1);
  bad(() => zipfTrace(0, 1, 1, r));
  bad(() => zipfTrace(10, -1, 1, r));
  bad(() => zipfTrace(10, Number.NaN, 1, r));
  bad(() => zipfTrace(10, 1, -1, r));
  bad(() => zipfTrace(1.5, 1, 1, r));
  assert.equal(zipfTrace(10, 1, 0, r).length, 0);
  assert.deepEqual([...zipfTrace(1, 1, 3, r)], [0, 0, 0]);
});
