import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../core/clock.js';
import { isArchlabError } from '../core/errors.js';
import { breakerOptions, CircuitBreaker, DEFAULT_BREAKER } from './breaker.js';

describe('CircuitBreaker', () => {
  test('stays closed below the threshold; a success resets the count', () => {
    const b = new CircuitBreaker({ failureThreshold: 3, openMs: 100 }, new ManualClock(0));
    b.failure();
    b.failure();
    assert.equal(b.state, 'closed');
    b.success();
    b.failure();
    b.failure();
    assert.equal(b.state, 'closed', 'the success reset the consecutive count');
    assert.equal(b.allow(), true);
    b.failure();
    assert.equal(b.state, 'open');
    assert.equal(b.snapshot().opened, 1);
  });

  test('open refuses every call for openMs, then lets exactly one trial through', () => {
    const clock = new ManualClock(1000);
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 100 }, clock);
    b.failure();
    for (let i = 0; i < 10; i++) assert.equal(b.allow(), false);
    clock.advance(99);
    assert.equal(b.allow(), false, 'still open at 99 ms');
    clock.advance(1);
    assert.equal(b.state, 'half-open');
    assert.equal(b.allow(), true, 'the trial');
    assert.equal(b.allow(), false, 'only one trial');
    assert.equal(b.allow(), false);
    b.success();
    assert.equal(b.state, 'closed');
    assert.equal(b.allow(), true);
    assert.equal(b.allow(), true);
  });

  test('a failed trial opens it again for another openMs', () => {
    const clock = new ManualClock(0);
    const b = new CircuitBreaker({ failureThreshold: 2, openMs: 50 }, clock);
    b.failure();
    b.failure();
    clock.advance(50);
    assert.equal(b.allow(), true);
    b.failure();
    assert.equal(b.state, 'open');
    assert.equal(b.snapshot().opened, 2);
    clock.advance(49);
    assert.equal(b.allow(), false);
    clock.advance(1);
    assert.equal(b.allow(), true, 'next trial after another openMs');
    b.success();
    assert.equal(b.state, 'closed');
    // Back to counting from zero: one failure does not reopen a threshold-2 breaker.
    b.failure();
    assert.equal(b.state, 'closed');
  });

  test('a trial that never reports expires after openMs and counts as failed', () => {
    const clock = new ManualClock(0);
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10 }, clock);
    b.failure();
    clock.advance(10);
    assert.equal(b.allow(), true, 'trial taken, never reported');
    clock.advance(9);
    assert.equal(b.allow(), false);
    clock.advance(1);
    assert.equal(b.allow(), false, 'the lost trial reopened it');
    assert.equal(b.snapshot().opened, 2);
    clock.advance(10);
    assert.equal(b.allow(), true, 'a new trial');
  });

  test('failures reported while open do not extend the open period', () => {
    const clock = new ManualClock(0);
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10 }, clock);
    b.failure();
    clock.advance(5);
    b.failure(); // a call admitted before it opened, failing late
    clock.advance(5);
    assert.equal(b.allow(), true);
  });

  test('defaults and validation', () => {
    assert.deepEqual(breakerOptions(), DEFAULT_BREAKER);
    assert.deepEqual(DEFAULT_BREAKER, { failureThreshold: 5, openMs: 1000 });
    for (const bad of [{ failureThreshold: 0 }, { failureThreshold: 1.5 }, { openMs: 0 }, { openMs: Number.NaN }]) {
      assert.throws(() => new CircuitBreaker(bad, new ManualClock(0)), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(bad));
    }
  });
});
