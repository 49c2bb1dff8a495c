import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../core/clock.js';
import { isArchlabError } from '../core/errors.js';
import { SeededRandom } from '../core/random.js';
import { RetryBudget } from './retry-budget.js';

function grant(budget: RetryBudget, max: number): number {
  let n = 0;
  while (n < max && budget.tryAcquire()) n++;
  return n;
}

describe('RetryBudget', () => {
  test('ratio 0.2, min 0: 100 requests allow 20 retries; the 21st is refused and not counted', () => {
    const clock = new ManualClock(0);
    const budget = new RetryBudget({ budgetRatio: 0.2, minPerSecond: 0 }, clock);
    for (let i = 0; i < 100; i++) budget.recordRequest();
    for (let i = 0; i < 20; i++) assert.equal(budget.tryAcquire(), true, `retry ${i + 1}`);
    assert.equal(budget.tryAcquire(), false, 'the 21st');
    assert.equal(budget.tryAcquire(), false);
    assert.deepEqual(budget.stats(), { requests: 100, retries: 20, allowed: 20 });
  });

  test('no requests and min 0: no retries', () => {
    const budget = new RetryBudget({ budgetRatio: 0.2, minPerSecond: 0 }, new ManualClock(0));
    assert.equal(budget.tryAcquire(), false);
    assert.deepEqual(budget.stats(), { requests: 0, retries: 0, allowed: 0 });
  });

  test('each request adds its share as it comes', () => {
    const budget = new RetryBudget({ budgetRatio: 0.2, minPerSecond: 0 }, new ManualClock(0));
    for (let i = 0; i < 4; i++) budget.recordRequest();
    assert.equal(budget.tryAcquire(), false, '4 * 0.2 < 1');
    budget.recordRequest();
    assert.equal(budget.tryAcquire(), true, '5 * 0.2 = 1');
    assert.equal(budget.tryAcquire(), false);
  });

  test('the budget recovers as the window slides', () => {
    const clock = new ManualClock(0);
    const budget = new RetryBudget({ budgetRatio: 0.2, minPerSecond: 0, windowMs: 10_000 }, clock);
    for (let i = 0; i < 100; i++) budget.recordRequest();
    assert.equal(grant(budget, 1000), 20);
    clock.advance(5_000);
    assert.equal(budget.tryAcquire(), false, 'still spent 5 s later');
    for (let i = 0; i < 50; i++) budget.recordRequest();
    assert.equal(grant(budget, 1000), 10, 'new requests add budget');
    clock.advance(4_999);
    assert.equal(budget.tryAcquire(), false, 'the first second is still in the window at 9.999 s');
    assert.deepEqual(budget.stats(), { requests: 150, retries: 30, allowed: 30 });
    clock.advance(1);
    // At 10 s the first bucket (100 requests, 20 retries) has left: 50 requests, 10 retries remain.
    assert.deepEqual(budget.stats(), { requests: 50, retries: 10, allowed: 10 });
    for (let i = 0; i < 50; i++) budget.recordRequest();
    assert.equal(grant(budget, 1000), 10);
    clock.advance(10_000);
    assert.deepEqual(budget.stats(), { requests: 0, retries: 0, allowed: 0 }, 'all forgotten after a quiet window');
    for (let i = 0; i < 100; i++) budget.recordRequest();
    assert.equal(grant(budget, 1000), 20, 'fully recovered');
  });

  test('a long jump in time clears every bucket', () => {
    const clock = new ManualClock(0);
    const budget = new RetryBudget({ budgetRatio: 0.5, minPerSecond: 0, windowMs: 1_000 }, clock);
    for (let i = 0; i < 10; i++) {
      budget.recordRequest();
      clock.advance(100);
    }
    assert.equal(budget.stats().requests, 9, 'the first request left with its 100 ms bucket');
    clock.advance(1_000_000);
    assert.deepEqual(budget.stats(), { requests: 0, retries: 0, allowed: 0 });
  });

  test('minPerSecond allows retries with zero requests: minPerSecond * window seconds', () => {
    const clock = new ManualClock(0);
    const budget = new RetryBudget({ budgetRatio: 0.2, minPerSecond: 3 }, clock);
    assert.equal(budget.stats().allowed, 30);
    assert.equal(grant(budget, 1000), 30);
    assert.equal(budget.tryAcquire(), false);
    for (let i = 0; i < 10; i++) budget.recordRequest();
    assert.equal(grant(budget, 1000), 2, 'the ratio adds on top of the floor');
    clock.advance(10_000);
    assert.equal(grant(budget, 1000), 30, 'refilled after the window');
  });

  test('rounding: 0.29 * 100 allows 29, not 28', () => {
    const budget = new RetryBudget({ budgetRatio: 0.29, minPerSecond: 0 }, new ManualClock(0));
    for (let i = 0; i < 100; i++) budget.recordRequest();
    assert.equal(grant(budget, 1000), 29);
  });

  test('grants a retry exactly when the window has room (seeded, checked against a list of timestamps)', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const rnd = new SeededRandom(seed);
      const clock = new ManualClock(0);
      const ratio = rnd.int(6) / 10;
      const minPerSecond = rnd.int(3);
      const budget = new RetryBudget({ budgetRatio: ratio, minPerSecond, windowMs: 10_000 }, clock);
      const reqs: number[] = [];
      const rets: number[] = [];
      for (let step = 0; step < 5_000; step++) {
        clock.advance(rnd.int(20));
        // Reference: the window is the current 1 s bucket and the 9 before it.
        const from = (Math.floor(clock.now() / 1_000) - 9) * 1_000;
        while (reqs.length > 0 && reqs[0]! < from) reqs.shift();
        while (rets.length > 0 && rets[0]! < from) rets.shift();
        if (rnd.next() < 0.6) {
          budget.recordRequest();
          reqs.push(clock.now());
        } else {
          const bound = Math.floor(minPerSecond * 10 + ratio * reqs.length + 1e-9);
          const granted = budget.tryAcquire();
          // Granted exactly when one more retry stays within the bound. (Later, once old requests
          // leave the window, the retries granted since may exceed the smaller bound: that is a
          // sliding window, and it only refuses new retries.)
          assert.equal(granted, rets.length + 1 <= bound, `seed ${seed} step ${step}: ${rets.length} retries for ${reqs.length} requests`);
          if (granted) rets.push(clock.now());
        }
        const r = reqs.length;
        const n = rets.length;
        assert.deepEqual(budget.stats(), { requests: r, retries: n, allowed: Math.floor(minPerSecond * 10 + ratio * r + 1e-9) }, `seed ${seed} step ${step}`);
      }
    }
  });

  test('rejects impossible options', () => {
    const clock = new ManualClock(0);
    for (const bad of [
      { budgetRatio: -0.1, minPerSecond: 0 },
      { budgetRatio: 1.5, minPerSecond: 0 },
      { budgetRatio: 0.2, minPerSecond: -1 },
      { budgetRatio: 0.2, minPerSecond: Number.POSITIVE_INFINITY },
      { budgetRatio: 0.2, minPerSecond: 0, windowMs: 0 },
      { budgetRatio: Number.NaN, minPerSecond: 0 },
    ]) {
      assert.throws(
        () => new RetryBudget(bad, clock),
        (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'),
        JSON.stringify(bad),
      );
    }
  });
});
