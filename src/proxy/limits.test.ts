import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { KeyedLimiter } from './limits.js';

test('token bucket: burst at once, then ratePerSecond, with a Retry-After hint', () => {
  const clock = new ManualClock();
  const l = new KeyedLimiter({ ratePerSecond: 10, burst: 3 }, clock);
  assert.deepEqual([l.take('a'), l.take('a'), l.take('a')].map((r) => r.ok), [true, true, true]);
  const r = l.take('a');
  assert.deepEqual(r, { ok: false, retryAfterMs: 100 });
  assert.ok(l.take('b').ok, 'keys are independent');
  clock.advance(100);
  assert.ok(l.take('a').ok);
  assert.ok(!l.take('a').ok);
  clock.advance(10_000);
  assert.equal([1, 2, 3, 4].filter(() => l.take('a').ok).length, 3, 'refills to burst, no more');
});

test('concurrency: maxConnections per key, release frees a slot', () => {
  const l = new KeyedLimiter({ maxConnections: 2 }, new ManualClock());
  assert.ok(l.acquire('a') && l.acquire('a'));
  assert.ok(!l.acquire('a'));
  assert.ok(l.acquire('b'));
  l.release('a');
  assert.ok(l.acquire('a'));
  assert.equal(l.active('a'), 2);
  l.release('x'); // unknown: ignored
});

test('memory is bounded: idle keys are evicted LRU, keys with something in flight never are', () => {
  const clock = new ManualClock();
  const l = new KeyedLimiter({ maxConnections: 1, ratePerSecond: 1, burst: 1, maxTracked: 100 }, clock);
  assert.ok(l.acquire('busy'));
  for (let i = 0; i < 10_000; i++) l.take(`ip-${i}`);
  assert.equal(l.tracked, 101, '100 idle plus the busy one');
  assert.ok(!l.acquire('busy'), 'the busy key kept its count through the churn');
  l.release('busy');
  assert.ok(l.acquire('busy'));
});

test('no limits configured: everything passes and nothing is tracked', () => {
  const l = new KeyedLimiter({}, new ManualClock());
  assert.equal(l.enabled, false);
  for (let i = 0; i < 100; i++) assert.ok(l.take('a').ok && l.acquire('a'));
  assert.equal(l.tracked, 0);
});
