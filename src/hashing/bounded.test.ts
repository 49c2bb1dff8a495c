import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../core/random.js';
import { BoundedLoadHasher } from './bounded.js';

test('a placement never takes a node past ceil((1 + eps) * mean), under a skewed stream with churn', () => {
  for (const epsilon of [0.05, 0.25, 1]) {
    const h = new BoundedLoadHasher({ epsilon });
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    nodes.forEach((n) => h.add(n));
    const rnd = new SeededRandom(99);
    const held: string[] = [];
    for (let step = 0; step < 30_000; step++) {
      // Half the requests are for one hot key; a third of the time something is released.
      if (held.length > 0 && rnd.next() < 0.33) {
        const i = rnd.int(held.length);
        h.release(held[i]!);
        held[i] = held[held.length - 1]!;
        held.pop();
        continue;
      }
      const key = rnd.next() < 0.5 ? 'hot' : `k${rnd.int(1_000_000)}`;
      const chosen = h.acquire(key);
      held.push(chosen);
      // The promise holds where a key is placed: releases elsewhere can lower the mean afterwards.
      const bound = Math.ceil(((1 + epsilon) * h.totalLoad) / nodes.length);
      assert.ok(h.load(chosen) <= bound, `eps ${epsilon} step ${step}: ${chosen} holds ${h.load(chosen)} > ${bound}`);
    }
    assert.equal(h.totalLoad, held.length);
  }
});

test('with only placements, every node stays within the bound at every step', () => {
  const h = new BoundedLoadHasher({ epsilon: 0.1 });
  for (let i = 0; i < 7; i++) h.add(`n${i}`);
  const rnd = new SeededRandom(5);
  for (let step = 0; step < 20_000; step++) {
    h.acquire(rnd.next() < 0.3 ? 'hot' : `k${rnd.int(50)}`);
    const bound = Math.ceil((1.1 * h.totalLoad) / 7);
    for (const n of h.nodes()) assert.ok(h.load(n.node) <= bound, `step ${step}: ${n.node} ${h.load(n.node)} > ${bound}`);
  }
});

test('the hot key spills to the next nodes clockwise instead of piling up', () => {
  const h = new BoundedLoadHasher({ epsilon: 0.25 });
  for (let i = 0; i < 5; i++) h.add(`n${i}`);
  const order = h.getN('hot', 5);
  const got = Array.from({ length: 100 }, () => h.acquire('hot'));
  assert.equal(got[0], order[0]);
  // Each node in ring order after the key fills to the cap (25 = 1.25 * 100 / 5) before the next
  // takes any: four nodes carry what one would have.
  for (const n of order) assert.ok(h.load(n) <= 25, `${n}: ${h.load(n)}`);
  for (const n of order.slice(0, 4)) assert.ok(h.load(n) >= 20, `${n}: ${h.load(n)}`);
});

test('capacity, release and typed errors', () => {
  const h = new BoundedLoadHasher({ epsilon: 0.5 });
  assert.equal(h.capacity(), 0);
  h.add('a');
  h.add('b');
  assert.equal(h.capacity(), Math.ceil((1.5 * 1) / 2));
  const n = h.acquire('x');
  assert.equal(h.load(n), 1);
  assert.throws(() => h.release(n, 2), /cannot release/);
  h.release(n);
  assert.equal(h.totalLoad, 0);
  assert.throws(() => h.load('zz'), /not a member/);
  assert.throws(() => new BoundedLoadHasher({ epsilon: 0 }), /epsilon/);
  h.acquire('y');
  h.remove('a');
  h.remove('b');
  assert.equal(h.totalLoad, 0);
});
