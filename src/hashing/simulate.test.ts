import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { simulate } from './simulate.js';

const clock = new ManualClock();

test('modulo remaps nearly every key; consistent hashing about 1/(N+1)', () => {
  const mod = simulate({ algorithm: 'modulo', nodes: 10, keys: 50_000, add: 1, now: () => clock.monotonic() });
  assert.ok(mod.movedFraction > 0.85, `modulo moved ${mod.movedFraction}`);
  assert.ok(Math.abs(mod.idealFraction - 1 / 11) < 1e-12);
  for (const algorithm of ['ketama', 'jump', 'rendezvous', 'maglev'] as const) {
    const r = simulate({ algorithm, nodes: 10, keys: 50_000, add: 1, now: () => clock.monotonic() });
    assert.ok(Math.abs(r.movedFraction - 1 / 11) < 0.03, `${algorithm} moved ${r.movedFraction}`);
    assert.equal(r.nodesAfter, 11);
    assert.deepEqual(r.added, ['node-010']);
  }
});

test('removal: ideal is the removed share; loads are reported against weights', () => {
  const r = simulate({ algorithm: 'rendezvous', nodes: 4, keys: 40_000, remove: 1, weights: [1, 3], now: () => 0 });
  // Weights 1,3,1,3: removing node-003 (weight 3 of 8) must move 3/8.
  assert.ok(Math.abs(r.idealFraction - 3 / 8) < 1e-12);
  assert.ok(Math.abs(r.movedFraction - 3 / 8) < 0.02);
  assert.ok(r.before.maxOverMean < 1.05 && r.before.minOverMean > 0.95);
  assert.deepEqual(r.removed, ['node-003']);
});

test('progress is reported up to the total, and bad arguments are typed errors', () => {
  const seen: number[] = [];
  simulate({ algorithm: 'jump', nodes: 3, keys: 1000, add: 1, progressEvery: 250, onProgress: (d, t) => seen.push(d / t), now: () => 0 });
  assert.equal(seen.at(-1), 1);
  assert.ok(seen.length >= 8);
  assert.throws(() => simulate({ algorithm: 'jump', nodes: 0, keys: 10, now: () => 0 }), { code: 'ARCHLAB_HASH_BAD_ARGUMENT' });
  assert.throws(() => simulate({ algorithm: 'jump', nodes: 3, keys: 10, remove: 3, now: () => 0 }), { code: 'ARCHLAB_HASH_BAD_ARGUMENT' });
  assert.throws(() => simulate({ algorithm: 'jump', nodes: 3, keys: 1e12, now: () => 0 }), { code: 'ARCHLAB_HASH_BAD_ARGUMENT' });
});
