import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from './random.js';
import { SlotSet } from './slot-set.js';

const items = (n: number): { id: number }[] => Array.from({ length: n }, (_, id) => ({ id }));
const ids = (s: SlotSet<{ id: number }>): number[] => [...s].map((x) => x.id).sort((a, b) => a - b);

test('add, has, delete and size over interleaved churn match a Set', () => {
  const pool = items(50);
  const s = new SlotSet<{ id: number }>();
  const ref = new Set<{ id: number }>();
  const random = new SeededRandom(7);
  for (let round = 0; round < 5000; round++) {
    const x = pool[random.int(pool.length)]!;
    if (random.int(2) === 0) {
      s.add(x);
      ref.add(x);
    } else assert.equal(s.delete(x), ref.delete(x));
    assert.equal(s.size, ref.size);
    assert.equal(s.has(x), ref.has(x));
  }
  assert.deepEqual(ids(s), [...ref].map((x) => x.id).sort((a, b) => a - b));
  for (const x of pool) assert.equal(s.has(x), ref.has(x), `item ${x.id}`);
});

test('adding twice keeps one entry; deleting what is not in says false', () => {
  const [a, b] = items(2) as [{ id: number }, { id: number }];
  const s = new SlotSet<{ id: number }>();
  s.add(a);
  s.add(a);
  assert.equal(s.size, 1);
  assert.equal(s.delete(b), false);
  assert.equal(s.delete(a), true);
  assert.equal(s.delete(a), false);
  assert.equal(s.size, 0);
});

test('one item in two sets keeps its place in each', () => {
  const pool = items(4);
  const s1 = new SlotSet<{ id: number }>();
  const s2 = new SlotSet<{ id: number }>();
  for (const x of pool) s1.add(x);
  for (const x of [...pool].reverse()) s2.add(x);
  s1.delete(pool[0]!);
  s2.delete(pool[3]!);
  assert.deepEqual(ids(s1), [1, 2, 3]);
  assert.deepEqual(ids(s2), [0, 1, 2]);
  assert.equal(s1.has(pool[3]!), true);
  assert.equal(s2.has(pool[0]!), true);
});

test('iteration walks a copy, so the loop may delete and add', () => {
  const pool = items(6);
  const s = new SlotSet<{ id: number }>();
  for (const x of pool.slice(0, 5)) s.add(x);
  const seen: number[] = [];
  for (const x of s) {
    seen.push(x.id);
    s.delete(x);
    if (x.id === 0) s.add(pool[5]!);
  }
  assert.deepEqual(seen.sort(), [0, 1, 2, 3, 4]);
  assert.deepEqual(ids(s), [5]);
});
