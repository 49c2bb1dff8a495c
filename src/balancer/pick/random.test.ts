import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Random } from '../../core/random.js';
import { SeededRandom } from '../../core/random.js';
import { RandomPicker } from './random.js';
import type { SimBackend } from './sim.js';

const ctx = { clientIp: '192.0.2.1' };

function pool(weights: number[]): SimBackend[] {
  return weights.map((weight, i) => ({ id: `b${i}`, weight, active: 0, available: true }));
}

/** A Random that returns the given next() values in turn. */
function scripted(values: number[]): Random {
  let i = 0;
  return {
    next: () => values[i++ % values.length]!,
    int: (n) => Math.floor(values[i++ % values.length]! * n),
    uint32: () => Math.floor(values[i++ % values.length]! * 2 ** 32),
  };
}

test('draws by weight: a draw u takes the backend whose share of the weight line holds u', () => {
  // Weights 1, 3 over available backends 0 and 2 (1 is down): line [0, .25) -> 0, [.25, 1) -> 2.
  const backends = pool([1, 5, 3]);
  backends[1]!.available = false;
  const picker = new RandomPicker({ random: scripted([0, 0.2499, 0.25, 0.9999999]) });
  assert.deepEqual([0, 1, 2, 3].map(() => picker.pick(backends, ctx)), [0, 0, 2, 2]);
});

test('uniform over the available backends when weights are equal', () => {
  const seed = 77;
  const picker = new RandomPicker({ random: new SeededRandom(seed) });
  const backends = pool([1, 1, 1, 1]);
  backends[2]!.available = false;
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 30_000; i++) counts[picker.pick(backends, ctx)]!++;
  assert.equal(counts[2], 0);
  for (const i of [0, 1, 3]) assert.ok(Math.abs(counts[i]! - 10_000) < 400, `seed ${seed}: ${counts.join(' ')}`);
});

test('weighted shares, fractional weights too', () => {
  const seed = 78;
  const picker = new RandomPicker({ random: new SeededRandom(seed) });
  const weights = [0.5, 1.5, 3];
  const backends = pool(weights);
  const counts = [0, 0, 0];
  const n = 50_000;
  for (let i = 0; i < n; i++) counts[picker.pick(backends, ctx)]!++;
  weights.forEach((w, i) => {
    const due = (n * w) / 5;
    assert.ok(Math.abs(counts[i]! - due) / due < 0.05, `seed ${seed}: ${counts.join(' ')}`);
  });
});

test('ignores load', () => {
  const picker = new RandomPicker({ random: new SeededRandom(79) });
  const backends = pool([1, 1]);
  backends[0]!.active = 1000;
  let zero = 0;
  for (let i = 0; i < 2000; i++) if (picker.pick(backends, ctx) === 0) zero++;
  assert.ok(zero > 900 && zero < 1100, String(zero));
});
