import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { SeededRandom } from '../../core/random.js';
import { Backend } from '../backend.js';
import type { PassiveHealthConfig } from '../config.js';
import { OutlierDetector } from './outlier.js';
import type { OutlierEvent, OutlierFailureReason } from './outlier.js';

const BASE: PassiveHealthConfig = { consecutiveFailures: 3, ejectionMs: 10_000, maxEjectionMs: 40_000, maxEjectedShare: 0.5 };

function setup(n: number, config: Partial<PassiveHealthConfig> = {}) {
  const clock = new ManualClock(1_000_000);
  const backends = Array.from({ length: n }, (_, i) => new Backend({ id: `b${i}`, address: { host: '127.0.0.1', port: 8000 + i }, weight: 10, maxConnections: 100, tls: false }, clock));
  const events: OutlierEvent[] = [];
  const detector = new OutlierDetector({ ...BASE, ...config }, clock, () => backends, (e) => events.push(e));
  const fail = (b: Backend, times: number, reason: OutlierFailureReason = 'status-5xx') => {
    for (let i = 0; i < times; i++) detector.recordFailure(b, reason);
  };
  return { clock, backends, events, detector, fail, b0: backends[0]! };
}

describe('OutlierDetector', () => {
  test('ejects after exactly consecutiveFailures failures, not before', () => {
    const { clock, detector, events, fail, b0 } = setup(4);
    fail(b0, 2);
    assert.equal(b0.ejected, false);
    assert.equal(b0.state, 'up');
    assert.equal(detector.consecutiveFailures(b0), 2);
    assert.equal(events.length, 0);
    detector.recordFailure(b0, 'connect');
    assert.equal(b0.ejected, true);
    assert.equal(b0.state, 'ejected');
    assert.equal(b0.usable, false);
    assert.equal(b0.ejectedUntilMs, clock.now() + 10_000);
    assert.equal(b0.ejections, 1);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.type, 'ejected');
    assert.equal(events[0]!.backend, b0);
    assert.equal(events[0]!.untilMs, clock.now() + 10_000);
    assert.match(events[0]!.reason, /3 consecutive failures \(last: connect\)/);
  });

  test('a success resets the count', () => {
    const { detector, fail, b0 } = setup(4);
    fail(b0, 2);
    detector.recordSuccess(b0);
    assert.equal(detector.consecutiveFailures(b0), 0);
    fail(b0, 2);
    assert.equal(b0.ejected, false);
    fail(b0, 1);
    assert.equal(b0.ejected, true);
  });

  test('counts are per backend', () => {
    const { fail, backends } = setup(4);
    fail(backends[0]!, 2);
    fail(backends[1]!, 2);
    assert.equal(backends[0]!.ejected, false);
    assert.equal(backends[1]!.ejected, false);
  });

  test('ejection time doubles on repeat, 10s -> 20s -> 40s, capped at maxEjectionMs', () => {
    const { clock, fail, b0, events } = setup(4);
    const lengths: number[] = [];
    for (let round = 0; round < 5; round++) {
      fail(b0, 3);
      assert.equal(b0.ejected, true, `round ${round}`);
      const len = b0.ejectedUntilMs - clock.now();
      lengths.push(len);
      clock.advance(len - 1);
      assert.equal(b0.ejected, true, 'still ejected 1 ms before the end');
      clock.advance(1);
      assert.equal(b0.ejected, false, 'back when the time is up');
    }
    assert.deepEqual(lengths, [10_000, 20_000, 40_000, 40_000, 40_000]);
    assert.equal(b0.ejections, 5);
    assert.equal(events.filter((e) => e.type === 'ejected').length, 5);
  });

  test('failures while ejected (late answers) neither extend the ejection nor count', () => {
    const { clock, detector, fail, b0 } = setup(4);
    fail(b0, 3);
    const until = b0.ejectedUntilMs;
    clock.advance(5_000);
    fail(b0, 10);
    assert.equal(b0.ejectedUntilMs, until);
    assert.equal(b0.ejections, 1);
    assert.equal(detector.consecutiveFailures(b0), 0);
  });

  test('maxEjectedShare: with 4 backends and 0.5 a third cannot be ejected', () => {
    const { fail, backends, events } = setup(4, { maxEjectedShare: 0.5 });
    const [a, b, c, d] = backends as [Backend, Backend, Backend, Backend];
    fail(a, 3);
    fail(b, 3);
    fail(c, 3);
    assert.deepEqual([a.ejected, b.ejected, c.ejected, d.ejected], [true, true, false, false]);
    assert.equal(events.length, 2);
    fail(c, 5);
    assert.equal(c.ejected, false, 'still refused on later failures');
  });

  test('a refused ejection happens on the next failure once another backend returns', () => {
    const { clock, detector, fail, backends } = setup(4, { maxEjectedShare: 0.5 });
    const [a, b, c] = backends as [Backend, Backend, Backend];
    fail(a, 3);
    clock.advance(1_000);
    fail(b, 3);
    fail(c, 3);
    assert.equal(c.ejected, false);
    clock.advance(9_000); // a's ejection ends
    assert.equal(a.ejected, false);
    detector.recordFailure(c, 'timeout');
    assert.equal(c.ejected, true);
  });

  test('at least one backend always stays, even with maxEjectedShare 1', () => {
    const { fail, backends } = setup(3, { maxEjectedShare: 1 });
    for (const b of backends) fail(b, 3);
    assert.deepEqual(
      backends.map((b) => b.ejected),
      [true, true, false],
    );
  });

  test('the last usable backend is kept when the others are down or disabled', () => {
    const { fail, backends } = setup(4, { maxEjectedShare: 1 });
    const [a, b, c, d] = backends as [Backend, Backend, Backend, Backend];
    a.healthy = false;
    b.disabled = true;
    c.draining = true;
    fail(d, 3);
    assert.equal(d.ejected, false);
  });

  test('disabled and draining backends do not count toward the share', () => {
    // 4 backends, 2 disabled: in service = 2, so 0.5 allows one ejection, not two.
    const { fail, backends } = setup(4, { maxEjectedShare: 0.5 });
    const [a, b, c, d] = backends as [Backend, Backend, Backend, Backend];
    c.disabled = true;
    d.draining = true;
    fail(a, 3);
    fail(b, 3);
    assert.deepEqual([a.ejected, b.ejected], [true, false]);
  });

  test('maxEjectedShare 0 never ejects', () => {
    const { fail, b0 } = setup(4, { maxEjectedShare: 0 });
    fail(b0, 100);
    assert.equal(b0.ejected, false);
  });

  test('the membership is read at each ejection', () => {
    const clock = new ManualClock(0);
    const mk = (i: number) => new Backend({ id: `b${i}`, address: { host: '127.0.0.1', port: 9000 + i }, weight: 1, maxConnections: 10, tls: false }, clock);
    const pool = [mk(0), mk(1)];
    const detector = new OutlierDetector({ ...BASE, maxEjectedShare: 0.5 }, clock, () => pool);
    for (let i = 0; i < 3; i++) detector.recordFailure(pool[0]!, 'reset');
    assert.equal(pool[0]!.ejected, true);
    for (let i = 0; i < 3; i++) detector.recordFailure(pool[1]!, 'reset');
    assert.equal(pool[1]!.ejected, false, '2 of 2 would be ejected');
    pool.push(mk(2), mk(3));
    detector.recordFailure(pool[1]!, 'reset');
    assert.equal(pool[1]!.ejected, true, 'with 4 backends a second may go');
  });

  test('return: emitted once, on the first success after the ejection ends, and starts slow start', () => {
    const { clock, detector, fail, b0, events } = setup(4);
    b0.slowStartMs = 10_000;
    fail(b0, 3);
    assert.equal(b0.weight, 10);
    detector.recordSuccess(b0); // a late answer while still ejected: not a return
    assert.equal(events.filter((e) => e.type === 'returned').length, 0);
    clock.advance(10_000);
    assert.equal(b0.usable, true);
    assert.equal(events.filter((e) => e.type === 'returned').length, 0, 'lazy: no event before a success');
    assert.equal(b0.weight, 10, 'no ramp before the return');
    detector.recordSuccess(b0);
    const returned = events.filter((e) => e.type === 'returned');
    assert.equal(returned.length, 1);
    assert.equal(returned[0]!.backend, b0);
    assert.equal(returned[0]!.untilMs, undefined);
    // Slow start: 10% of the weight at once, ~55% half way, full at the end.
    assert.equal(b0.warming, true);
    assert.ok(Math.abs(b0.weight - 1) < 1e-9, `weight at t=0: ${b0.weight}`);
    clock.advance(5_000);
    assert.ok(Math.abs(b0.weight - 5.5) < 1e-9, `weight half way: ${b0.weight}`);
    clock.advance(5_000);
    assert.equal(b0.weight, 10);
    assert.equal(b0.warming, false);
    detector.recordSuccess(b0);
    detector.recordSuccess(b0);
    assert.equal(events.filter((e) => e.type === 'returned').length, 1, 'emitted once');
  });

  test('no return event for a backend that was never ejected', () => {
    const { detector, fail, b0, events } = setup(4);
    detector.recordSuccess(b0);
    fail(b0, 2);
    detector.recordSuccess(b0);
    assert.deepEqual(events, []);
  });

  test('re-ejected before any success: one return event for both ejections', () => {
    const { clock, detector, fail, b0, events } = setup(4);
    fail(b0, 3);
    clock.advance(10_000);
    fail(b0, 3);
    assert.equal(b0.ejected, true);
    assert.equal(b0.ejectedUntilMs - clock.now(), 20_000);
    clock.advance(20_000);
    detector.recordSuccess(b0);
    assert.deepEqual(
      events.map((e) => e.type),
      ['ejected', 'ejected', 'returned'],
    );
  });

  test('a detector rebuilt around the same backends (a config reload) carries on', () => {
    const { clock, backends, fail, b0 } = setup(4);
    fail(b0, 3);
    fail(backends[1]!, 2);
    const events: OutlierEvent[] = [];
    const reloaded = new OutlierDetector(BASE, clock, () => backends, (e) => events.push(e));
    reloaded.recordFailure(backends[1]!, 'connect');
    assert.equal(backends[1]!.ejected, true, 'the count survived');
    clock.advance(10_000);
    reloaded.recordSuccess(b0);
    assert.deepEqual(
      events.map((e) => [e.type, e.backend.id]),
      [
        ['ejected', 'b1'],
        ['returned', 'b0'],
      ],
    );
  });

  test('ejections decay to 0 after maxEjectionMs clean since the last ejection ended', () => {
    const { clock, detector, fail, b0 } = setup(4);
    fail(b0, 3);
    clock.advance(10_000);
    detector.recordSuccess(b0);
    fail(b0, 3);
    assert.equal(b0.ejectedUntilMs - clock.now(), 20_000);
    clock.advance(20_000);
    assert.equal(b0.ejections, 2);
    // Serves cleanly (some failures, never an ejection) for just under maxEjectionMs: no decay yet.
    clock.advance(40_000 - 1);
    fail(b0, 2);
    detector.recordSuccess(b0);
    assert.equal(b0.ejections, 2);
    clock.advance(1);
    detector.recordSuccess(b0);
    assert.equal(b0.ejections, 0);
    fail(b0, 3);
    assert.equal(b0.ejectedUntilMs - clock.now(), 10_000, 'starts again from ejectionMs');
    assert.equal(b0.ejections, 1);
  });

  test('decay is also applied at the failure that ejects', () => {
    const { clock, fail, b0 } = setup(4);
    fail(b0, 3);
    clock.advance(10_000 + 40_000);
    fail(b0, 3);
    assert.equal(b0.ejectedUntilMs - clock.now(), 10_000);
  });

  test('random schedules never leave more than the share ejected nor zero usable (seeded)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = new SeededRandom(seed);
      const n = 1 + rnd.int(8);
      const share = [0, 0.25, 0.5, 0.75, 1][rnd.int(5)]!;
      const { clock, detector, backends } = setup(n, { maxEjectedShare: share, consecutiveFailures: 1 + rnd.int(3) });
      for (let step = 0; step < 2_000; step++) {
        const b = backends[rnd.int(n)]!;
        if (rnd.next() < 0.7) detector.recordFailure(b, 'connect');
        else detector.recordSuccess(b);
        if (rnd.next() < 0.1) clock.advance(rnd.int(15_000));
        const ejected = backends.filter((x) => x.ejected).length;
        assert.ok(ejected <= share * n + 1e-9, `seed ${seed} step ${step}: ${ejected} of ${n} ejected with share ${share}`);
        assert.ok(backends.some((x) => x.usable), `seed ${seed} step ${step}: no usable backend`);
      }
    }
  });

  test('rejects an impossible config', () => {
    const clock = new ManualClock(0);
    for (const bad of [{ consecutiveFailures: 0 }, { ejectionMs: 0 }, { maxEjectionMs: -1 }, { maxEjectedShare: 1.5 }, { maxEjectedShare: Number.NaN }]) {
      assert.throws(
        () => new OutlierDetector({ ...BASE, ...bad }, clock, () => []),
        (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'),
        JSON.stringify(bad),
      );
    }
  });
});
