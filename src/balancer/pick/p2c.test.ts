import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshSeed, SeededRandom } from '../../core/random.js';
import { P2cPicker } from './p2c.js';
import type { SimBackend } from './sim.js';

const ctx = { clientIp: '192.0.2.1' };

function pool(weights: number[], active: number[]): SimBackend[] {
  return weights.map((weight, i) => ({ id: `b${i}`, weight, active: active[i]!, available: true }));
}

test('with two backends it always takes the less loaded: the two draws are distinct', () => {
  const seed = freshSeed();
  const picker = new P2cPicker({ random: new SeededRandom(seed) });
  const backends = pool([1, 9], [0, 5]); // b1 is drawn first 90% of the time
  for (let i = 0; i < 2000; i++) assert.equal(picker.pick(backends, ctx), 0, `seed ${seed}, pick ${i}`);
});

test('compares active / weight: 3 in flight on weight 4 beats 1 on weight 1', () => {
  const seed = freshSeed();
  const picker = new P2cPicker({ random: new SeededRandom(seed) });
  const backends = pool([1, 4], [1, 3]);
  for (let i = 0; i < 500; i++) assert.equal(picker.pick(backends, ctx), 1, `seed ${seed}`);
});

test('the most loaded backend is never picked; the least loaded wins every pair it is in', () => {
  const seed = 4242;
  const picker = new P2cPicker({ random: new SeededRandom(seed) });
  const backends = pool([1, 1, 1], [0, 5, 10]);
  const counts = [0, 0, 0];
  const n = 30_000;
  for (let i = 0; i < n; i++) counts[picker.pick(backends, ctx)]!++;
  assert.equal(counts[2], 0, `seed ${seed}: ${counts.join(' ')}`);
  // b0 is in 2 of the 3 equally likely pairs.
  assert.ok(Math.abs(counts[0]! / n - 2 / 3) < 0.015, `seed ${seed}: ${counts.join(' ')}`);
});

test('skips unavailable backends in both draws', () => {
  const seed = freshSeed();
  const picker = new P2cPicker({ random: new SeededRandom(seed) });
  const backends = pool([1, 1, 1, 1], [9, 0, 9, 0]);
  backends[1]!.available = false;
  backends[3]!.available = false;
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(picker.pick(backends, ctx));
  assert.deepEqual([...seen].sort(), [0, 2], `seed ${seed}`);
});
