import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Random } from '../../core/random.js';
import { freshSeed, SeededRandom } from '../../core/random.js';
import { AvailableSet, MemberSignature, PerBackend, weightKey } from './shared.js';
import type { SimBackend } from './sim.js';

function pool(weights: number[]): SimBackend[] {
  return weights.map((weight, i) => ({ id: `b${i}`, weight, active: 0, available: true }));
}

test('AvailableSet: the second draw is never the first, and follows weight among the rest', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const set = new AvailableSet();
  const backends = pool([1, 2, 3, 4]);
  backends[1]!.available = false;
  set.load(backends); // available: b0 (1), b2 (3), b3 (4)
  const second = new Map<number, number>();
  const n = 40_000;
  for (let i = 0; i < n; i++) {
    const a = set.draw(rnd);
    const b = set.drawOther(rnd, a);
    assert.notEqual(b, a, `seed ${seed}`);
    if (set.positionAt(a) === 3) second.set(set.positionAt(b), (second.get(set.positionAt(b)) ?? 0) + 1);
  }
  // After b3, b0 and b2 are drawn 1 : 3.
  const ratio = (second.get(2) ?? 0) / (second.get(0) ?? 1);
  assert.ok(Math.abs(ratio - 3) < 0.25, `seed ${seed}: ratio ${ratio}`);
});

test('AvailableSet: draws at the very ends of [0, 1) stay in range and distinct', () => {
  const edges = [0, 1 - 2 ** -53];
  let i = 0;
  const random: Random = { next: () => edges[i++ % 2]!, int: () => 0, uint32: () => 0 };
  const set = new AvailableSet();
  for (const weights of [[1, 1], [0.1, 0.2, 0.3], [5, 1e-9, 5]]) {
    set.load(pool(weights));
    for (let k = 0; k < 8; k++) {
      const a = set.draw(random);
      const b = set.drawOther(random, a);
      assert.ok(a >= 0 && a < weights.length && b >= 0 && b < weights.length && a !== b, `${weights}: ${a}, ${b}`);
    }
  }
});

test('AvailableSet grows past its first size', () => {
  const set = new AvailableSet();
  const backends = pool(Array.from({ length: 100 }, () => 1));
  assert.equal(set.load(backends), 100);
  assert.equal(set.positionAt(99), 99);
  assert.equal(set.total, 100);
});

test('weightKey keeps whole numbers, rounds others within 1/16, and a 10x ramp takes about 27 steps', () => {
  for (const w of [1, 2, 3, 7, 100, 1000, 65535]) assert.equal(weightKey(w), w);
  const keys = new Set<number>();
  let last = 0;
  for (let i = 0; i <= 10_000; i++) {
    const w = 0.1 + (0.9 * i) / 10_000;
    const k = weightKey(w);
    assert.ok(Math.abs(k - w) / w <= 1 / 16 + 1e-12, `${w} -> ${k}`);
    assert.ok(k >= last, 'monotone');
    last = k;
    keys.add(k);
  }
  assert.ok(keys.size >= 20 && keys.size <= 30, `${keys.size} distinct`);
});

test('PerBackend: values follow their ids through reorders and removals; new ids start fresh', () => {
  const state = new PerBackend(7);
  const [a, b, c] = pool([1, 1, 1]);
  const v = state.align([a!, b!, c!]);
  assert.deepEqual([...v], [7, 7, 7]);
  v[0] = 1;
  v[1] = 2;
  v[2] = 3;
  assert.equal(state.align([a!, b!, c!]), v, 'unchanged: the same array');
  const d: SimBackend = { id: 'd', weight: 1, active: 0, available: true };
  assert.deepEqual([...state.align([c!, d, a!])], [3, 7, 1]);
});

test('MemberSignature: same, moved and changed', () => {
  const sig = new MemberSignature(true);
  const backends = pool([1, 2, 3]);
  assert.equal(sig.compare(backends), 'changed', 'nothing recorded yet');
  sig.record(backends);
  assert.equal(sig.compare(backends), 'same');
  backends[0]!.active = 9;
  assert.equal(sig.compare(backends), 'same', 'load is not membership');
  const x: SimBackend = { id: 'x', weight: 1, active: 0, available: false };
  assert.equal(sig.compare([x, ...backends]), 'moved', 'an unavailable newcomer shifts indices only');
  backends[1]!.available = false;
  assert.equal(sig.compare(backends), 'changed');
  backends[1]!.available = true;
  backends[2]!.weight = 2;
  assert.equal(sig.compare(backends), 'changed');
  sig.record(backends);
  assert.equal(sig.positionOf.get('b2'), 2);
  sig.invalidate();
  assert.equal(sig.compare(backends), 'changed');
});
