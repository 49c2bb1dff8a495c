import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExchangeTimeouts, TIMEOUT_TICK_MS, type Deadlined } from './proxy.js';

/** A Deadlined that records its expiries; `keep` makes timedOut() say "not now". */
function item(deadline: number, keep = false): Deadlined & { fired: number } {
  return {
    deadline,
    armedAt: -1,
    fired: 0,
    timedOut() {
      this.fired++;
      return !keep;
    },
  };
}

test('ExchangeTimeouts: arm and disarm in any order keep every armed item once, with its own index', { timeout: 5000 }, () => {
  const t = new ExchangeTimeouts();
  const items = Array.from({ length: 6 }, () => item(Number.POSITIVE_INFINITY));
  for (const it of items) t.arm(it);
  t.arm(items[2]!); // arming twice is a no-op
  assert.equal(t.size, 6);
  for (const i of [0, 4, 2]) t.disarm(items[i]!);
  t.disarm(items[4]!); // disarming twice is a no-op
  assert.equal(t.size, 3);
  for (const i of [0, 2, 4]) assert.equal(items[i]!.armedAt, -1);
  const left = [items[1]!, items[3]!, items[5]!];
  assert.deepEqual(left.map((it) => it.armedAt).sort(), [0, 1, 2]);
  for (const it of left) t.disarm(it);
  assert.equal(t.size, 0);
  t.arm(items[0]!);
  assert.equal(items[0]!.armedAt, 0);
  t.disarm(items[0]!);
});

test('ExchangeTimeouts: a tick expires what is due, keeps what says "not now", and leaves the rest armed', { timeout: 5000 }, async () => {
  const t = new ExchangeTimeouts();
  const due = [item(0), item(0), item(0)];
  const paused = item(0, true);
  const later = item(performance.now() + 60_000);
  for (const it of [due[0]!, paused, due[1]!, later, due[2]!]) t.arm(it);
  await sleep(TIMEOUT_TICK_MS * 3);
  for (const it of due) {
    assert.equal(it.fired, 1, 'each due item expires once');
    assert.equal(it.armedAt, -1);
  }
  assert.ok(paused.fired >= 1, 'a paused item is asked again');
  assert.equal(later.fired, 0);
  assert.equal(t.size, 2);
  t.disarm(paused);
  t.disarm(later);
  assert.equal(t.size, 0);
});

test('ExchangeTimeouts: an expiry that disarms other items or arms new ones leaves none behind', { timeout: 5000 }, async () => {
  const t = new ExchangeTimeouts();
  const other = item(Number.POSITIVE_INFINITY);
  const next = item(0);
  const first: Deadlined & { fired: number } = {
    deadline: 0,
    armedAt: -1,
    fired: 0,
    timedOut() {
      this.fired++;
      t.disarm(this); // an exchange that finishes disarms itself
      t.disarm(other); // and another one finishes meanwhile
      t.arm(next); // a retry arms the next exchange, already due
      return true;
    },
  };
  t.arm(other);
  t.arm(first);
  await sleep(TIMEOUT_TICK_MS * 4);
  assert.equal(first.fired, 1);
  assert.equal(next.fired, 1, 'the item armed during a tick expires too (that tick or the next)');
  assert.equal(other.fired, 0);
  assert.equal(t.size, 0);
});
