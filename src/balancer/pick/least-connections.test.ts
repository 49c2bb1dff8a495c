import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshSeed, SeededRandom } from '../../core/random.js';
import { LeastConnectionsPicker } from './least-connections.js';
import type { SimBackend } from './sim.js';

const ctx = { clientIp: '192.0.2.1' };

function pool(ids: string, weights: number[], active: number[] = []): SimBackend[] {
  return [...ids].map((id, i) => ({ id, weight: weights[i]!, active: active[i] ?? 0, available: true }));
}

function run(picker: LeastConnectionsPicker, backends: SimBackend[], n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += backends[picker.pick(backends, ctx)]!.id;
  return out;
}

test('always picks a backend with the least active / weight (random pools)', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const picker = new LeastConnectionsPicker();
  for (let i = 0; i < 5000; i++) {
    const backends: SimBackend[] = Array.from({ length: 1 + rnd.int(8) }, (_, j) => ({
      id: `b${j}`,
      weight: [0.5, 1, 2, 3][rnd.int(4)]!,
      active: rnd.int(6),
      available: rnd.next() < 0.8,
    }));
    const got = picker.pick(backends, ctx);
    const ratios = backends.filter((b) => b.available).map((b) => b.active / b.weight);
    if (ratios.length === 0) {
      assert.equal(got, -1, `seed ${seed}`);
      continue;
    }
    assert.ok(backends[got]!.available, `seed ${seed}, pick ${i}`);
    assert.equal(backends[got]!.active / backends[got]!.weight, Math.min(...ratios), `seed ${seed}, pick ${i}`);
  }
});

test('divides by weight: 2 in flight on weight 3 is less loaded than 1 on weight 1', () => {
  assert.equal(run(new LeastConnectionsPicker(), pool('ab', [1, 3], [1, 2]), 3), 'bbb');
});

test('equally loaded backends take turns rather than the first taking every tie', () => {
  assert.equal(run(new LeastConnectionsPicker(), pool('abc', [2, 2, 2], [3, 3, 3]), 7), 'abcabca');
});

test('only the tied backends take turns', () => {
  assert.equal(run(new LeastConnectionsPicker(), pool('abc', [1, 1, 1], [0, 3, 0]), 6), 'acacac');
});

test('an idle pool splits by weight, interleaved (smooth weighted round robin among the tied)', () => {
  assert.equal(run(new LeastConnectionsPicker(), pool('abc', [5, 1, 1]), 7), 'aabacaa');
});

test('with requests kept in flight, picks fill the least loaded first', () => {
  const picker = new LeastConnectionsPicker();
  const backends = pool('ab', [1, 2]);
  let seq = '';
  for (let i = 0; i < 9; i++) {
    const got = picker.pick(backends, ctx);
    backends[got]!.active++;
    seq += backends[got]!.id;
  }
  // In flight ends at a:3, b:6, every step keeping active / weight as even as it can.
  assert.deepEqual(backends.map((b) => b.active), [3, 6]);
  assert.equal(seq.slice(0, 3), 'bab');
});
