import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, SystemClock } from './clock.js';

describe('ManualClock', () => {
  test('starts where told; advance moves now() and monotonic()', () => {
    const clock = new ManualClock(1_000_000);
    assert.equal(clock.now(), 1_000_000);
    assert.equal(clock.monotonic(), 0);
    clock.advance(250);
    assert.equal(clock.now(), 1_000_250);
    assert.equal(clock.monotonic(), 250);
  });

  test('fires timers in deadline order, ties in the order they were set, each at its own deadline', () => {
    const clock = new ManualClock(0);
    const fired: Array<[string, number]> = [];
    const at = (name: string) => () => fired.push([name, clock.now()]);
    clock.setTimer(30, at('c30'));
    clock.setTimer(10, at('a10'));
    clock.setTimer(20, at('b20-first'));
    clock.setTimer(20, at('b20-second'));
    clock.setTimer(20, at('b20-third'));
    clock.setTimer(31, at('late'));
    clock.advance(30);
    assert.deepEqual(fired, [
      ['a10', 10],
      ['b20-first', 20],
      ['b20-second', 20],
      ['b20-third', 20],
      ['c30', 30],
    ]);
    assert.equal(clock.now(), 30);
    assert.equal(clock.pending(), 1);
    clock.advance(1);
    assert.deepEqual(fired.at(-1), ['late', 31]);
    assert.equal(clock.pending(), 0);
  });

  test('a timer does not fire before its deadline', () => {
    const clock = new ManualClock();
    let fired = 0;
    clock.setTimer(100, () => fired++);
    clock.advance(99);
    assert.equal(fired, 0);
    clock.advance(1);
    assert.equal(fired, 1);
    clock.advance(1000);
    assert.equal(fired, 1, 'fires once');
  });

  test('cancel() prevents firing, also for a timer cancelled by an earlier one in the same advance', () => {
    const clock = new ManualClock();
    const fired: string[] = [];
    const a = clock.setTimer(5, () => fired.push('a'));
    const c = clock.setTimer(7, () => fired.push('c'));
    clock.setTimer(6, () => {
      fired.push('b');
      c.cancel();
    });
    a.cancel();
    assert.equal(clock.pending(), 2);
    clock.advance(10);
    assert.deepEqual(fired, ['b']);
    assert.equal(clock.pending(), 0);
  });

  test('advance(0) fires timers that are due now, including zero and negative delays', () => {
    const clock = new ManualClock(50);
    const fired: string[] = [];
    clock.setTimer(0, () => fired.push('zero'));
    clock.setTimer(-5, () => fired.push('negative'));
    clock.setTimer(1, () => fired.push('later'));
    assert.deepEqual(fired, [], 'nothing fires until time is advanced');
    clock.advance(0);
    assert.deepEqual(fired, ['zero', 'negative']);
    assert.equal(clock.now(), 50);
  });

  test('a timer set from a firing timer fires in the same advance when it falls due', () => {
    const clock = new ManualClock();
    const fired: Array<[string, number]> = [];
    clock.setTimer(10, () => {
      fired.push(['outer', clock.now()]);
      clock.setTimer(5, () => fired.push(['inner', clock.now()]));
      clock.setTimer(50, () => fired.push(['too-late', clock.now()]));
    });
    clock.advance(20);
    assert.deepEqual(fired, [
      ['outer', 10],
      ['inner', 15],
    ]);
    assert.equal(clock.pending(), 1);
  });
});

describe('SystemClock', () => {
  test('now() is wall time, monotonic() does not go backwards, timers fire and cancel', async () => {
    const clock = new SystemClock();
    const before = Date.now();
    const now = clock.now();
    assert.ok(now >= before && now <= Date.now());
    const m1 = clock.monotonic();
    const m2 = clock.monotonic();
    assert.ok(m2 >= m1);

    let cancelledFired = false;
    clock.setTimer(1, () => (cancelledFired = true)).cancel();
    // The timer is unref'd, so hold the loop open with our own until it fires.
    await new Promise<void>((resolve) => {
      const hold = setTimeout(() => assert.fail('SystemClock timer never fired'), 5000);
      clock.setTimer(5, () => {
        clearTimeout(hold);
        resolve();
      });
    });
    assert.equal(cancelledFired, false);
  });
});
