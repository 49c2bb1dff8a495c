import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { isArchlabError } from '../core/errors.js';
import { SeededRandom } from '../core/random.js';
import { Flusher, type FlusherOptions } from './flusher.js';
import type { SourceWrite } from './types.js';

/** Lets promise chains run (the fake source answers in a microtask). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

/** A fake source: records every batch with the time it arrived; can fail, or hold a batch until released. */
class FakeSource<V> {
  batches: { atMs: number; writes: SourceWrite<V>[] }[] = [];
  rows = new Map<string, V>();
  failNext = 0;
  hold = false;
  inFlight = 0;
  maxInFlight = 0;
  private releaseHeld: (() => void)[] = [];

  constructor(private readonly clock: ManualClock) {}

  apply = async (writes: readonly SourceWrite<V>[]): Promise<void> => {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      this.batches.push({ atMs: this.clock.now(), writes: [...writes] });
      if (this.hold) await new Promise<void>((r) => this.releaseHeld.push(r));
      if (this.failNext > 0) {
        this.failNext--;
        throw new RangeError('source down');
      }
      for (const w of writes) {
        if (w.op === 'put') this.rows.set(w.key, w.value);
        else this.rows.delete(w.key);
      }
    } finally {
      this.inFlight--;
    }
  };

  release(): void {
    this.hold = false;
    for (const r of this.releaseHeld.splice(0)) r();
  }
}

function setup(opts: Partial<FlusherOptions> = {}, seed = 1) {
  const clock = new ManualClock(1_000_000);
  const source = new FakeSource<number>(clock);
  const checkpoints: number[] = [];
  let progress = 0;
  const flusher = new Flusher<number>(opts, {
    clock,
    random: new SeededRandom(seed),
    apply: source.apply,
    onCheckpoint: (s) => checkpoints.push(s),
    onProgress: () => progress++,
  });
  /** An acknowledged write, as write-back makes it: admit, seq, commit. */
  const write = (key: string, value: number): number => {
    assert.ok(flusher.tryAdmit(key), `room for ${key}`);
    const seq = flusher.assignSeq();
    flusher.commit(seq, { op: 'put', key, value });
    return seq;
  };
  const del = (key: string): void => {
    assert.ok(flusher.tryAdmit(key));
    flusher.commit(flusher.assignSeq(), { op: 'delete', key });
  };
  const advance = async (ms: number): Promise<void> => {
    clock.advance(ms);
    await settle();
  };
  return { clock, source, flusher, checkpoints, write, del, advance, progress: () => progress };
}

test('writes to one key coalesce: the source gets the last one, once', async () => {
  const { source, flusher, write, del, advance } = setup();
  write('a', 1);
  write('b', 1);
  write('a', 2);
  write('a', 3);
  del('b');
  assert.deepEqual(flusher.get('a'), { op: 'put', key: 'a', value: 3 });
  assert.deepEqual(flusher.get('b'), { op: 'delete', key: 'b' }, 'a delete is a pending tombstone');
  await advance(100);
  assert.deepEqual(source.batches.map((b) => b.writes), [
    [
      { op: 'put', key: 'a', value: 3 },
      { op: 'delete', key: 'b' },
    ],
  ]);
  const s = flusher.stats();
  assert.equal(s.coalescedWrites, 3);
  assert.equal(s.flushedWrites, 2);
  assert.equal(s.queueDepth, 0);
  assert.equal(flusher.get('a'), undefined);
});

test('a write that finds the queue idle is flushed flushIntervalMs later, not before', async () => {
  const { source, write, advance, clock } = setup({ flushIntervalMs: 100 });
  write('a', 1);
  await advance(99);
  assert.equal(source.batches.length, 0);
  await advance(1);
  assert.equal(source.batches.length, 1);
  assert.equal(clock.pending(), 0, 'no timer while nothing is pending');
  await advance(30);
  write('b', 1);
  await advance(99);
  assert.equal(source.batches.length, 1);
  await advance(1);
  assert.equal(source.batches.length, 2);
});

test('one batch of at most maxBatch oldest keys per interval', async () => {
  const { source, flusher, write, advance } = setup({ maxBatch: 500, flushIntervalMs: 100, maxDelayMs: 1000 });
  for (let i = 0; i < 1200; i++) write(`k${i}`, i);
  await advance(100);
  await advance(100);
  await advance(100);
  assert.deepEqual(source.batches.map((b) => [b.atMs - 1_000_000, b.writes.length]), [
    [100, 500],
    [200, 500],
    [300, 200],
  ]);
  assert.deepEqual(source.batches[0]!.writes.slice(0, 3).map((w) => w.key), ['k0', 'k1', 'k2'], 'oldest first');
  assert.deepEqual(source.batches[2]!.writes.at(-1)!.key, 'k1199');
  assert.equal(flusher.stats().flushedWrites, 1200);
});

test('once the oldest write has waited maxDelayMs, batches go back to back until it has not', async () => {
  const { source, write, advance } = setup({ maxBatch: 500, flushIntervalMs: 100, maxDelayMs: 150 });
  for (let i = 0; i < 1200; i++) write(`k${i}`, i);
  await advance(100);
  assert.equal(source.batches.length, 1, 'at 100 ms the oldest has waited less than 150 ms');
  await advance(50);
  assert.equal(source.batches.length, 3, 'at 150 ms the rest goes at once');
  assert.deepEqual(source.batches.map((b) => b.atMs - 1_000_000), [100, 150, 150]);
});

test('flushIntervalMs larger than maxDelayMs: maxDelayMs still bounds the wait', async () => {
  const { source, write, advance } = setup({ flushIntervalMs: 5000, maxDelayMs: 300 });
  write('a', 1);
  await advance(299);
  assert.equal(source.batches.length, 0);
  await advance(1);
  assert.equal(source.batches.length, 1);
});

test('while the source fails, the batch is retried with growing, jittered, capped backoff; nothing is lost', async () => {
  const { source, flusher, write, advance } = setup({ flushIntervalMs: 100, retry: { initialMs: 50, maxMs: 400 } }, 7);
  write('a', 1);
  write('b', 2);
  source.failNext = 6;
  for (let i = 0; i < 100; i++) await advance(25);
  const times = source.batches.map((b) => b.atMs - 1_000_000);
  assert.equal(times.length, 7, `attempts at ${times}`);
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  // Ceilings 50, 100, 200, 400, 400, 400 (equal jitter: between half and all of it); the 25 ms steps
  // of the test round each gap up to the next multiple of 25.
  const ceilings = [50, 100, 200, 400, 400, 400];
  gaps.forEach((g, i) => assert.ok(g >= ceilings[i]! / 2 && g <= ceilings[i]! + 25, `gap ${i}: ${g} ms (ceiling ${ceilings[i]})`));
  assert.deepEqual(Object.fromEntries(source.rows), { a: 1, b: 2 });
  const s = flusher.stats();
  assert.equal(s.flushFailures, 6);
  assert.equal(s.consecutiveFailures, 0);
  assert.equal(s.queueDepth, 0);
  for (const b of source.batches) assert.deepEqual(b.writes.map((w) => w.key), ['a', 'b'], 'the same batch each time');
});

test('a write to a key whose flush is in flight is not lost: it is sent after, in order, never concurrently', async () => {
  const { source, flusher, write, advance } = setup();
  write('a', 1);
  source.hold = true;
  await advance(100);
  assert.equal(source.batches.length, 1);
  write('a', 2);
  assert.equal(flusher.stats().coalescedWrites, 0, 'the flight carries a=1 anyway');
  await advance(500);
  assert.equal(source.batches.length, 1, 'no second batch while one is in flight');
  source.release();
  await settle();
  assert.deepEqual(flusher.get('a'), { op: 'put', key: 'a', value: 2 }, 'still pending with the newer write');
  await advance(1000);
  assert.deepEqual(source.batches.map((b) => b.writes), [[{ op: 'put', key: 'a', value: 1 }], [{ op: 'put', key: 'a', value: 2 }]]);
  assert.equal(source.rows.get('a'), 2);
  assert.equal(source.maxInFlight, 1);
});

test('admission: beyond maxQueueKeys new keys are refused, pending keys still coalesce, room returns after a flush', async () => {
  const { flusher, write, advance, progress } = setup({ maxQueueKeys: 3 });
  write('a', 1);
  write('b', 1);
  assert.ok(flusher.tryAdmit('c'), 'an admitted write holds a slot before it commits');
  assert.equal(flusher.tryAdmit('d'), false);
  flusher.release();
  write('c', 1);
  assert.equal(flusher.tryAdmit('d'), false);
  assert.ok(flusher.tryAdmit('a'), 'a key already pending coalesces, no new slot needed');
  flusher.release();
  const before = progress();
  await advance(100);
  assert.ok(progress() > before, 'progress is reported');
  assert.ok(flusher.tryAdmit('d'));
});

test('checkpoints: never past a write not yet flushed, a write being journaled, or a key re-queued during its flight', async () => {
  const { source, flusher, checkpoints, write, advance } = setup();
  write('a', 1); // seq 1
  write('b', 1); // seq 2
  assert.ok(flusher.tryAdmit('c'));
  const three = flusher.assignSeq(); // seq 3: journaled, not yet acknowledged
  await advance(100);
  assert.deepEqual(checkpoints, [2], 'held back by seq 3 in progress');
  flusher.commit(three, { op: 'put', key: 'c', value: 3 });
  write('d', 4); // seq 4
  source.hold = true;
  await advance(100);
  write('c', 5); // seq 5, while c@3 is in flight
  source.release();
  await settle();
  assert.deepEqual(checkpoints, [2], 'c is re-queued with its first unconfirmed seq 3: no progress');
  await advance(100);
  assert.deepEqual(checkpoints, [2, 5]);
  assert.equal(flusher.checkpointSeq(), 5);
});

test('flush() sends what was queued now, ignoring the interval and backoff, and rejects when the source fails', async () => {
  const { source, flusher, write } = setup({ maxBatch: 2 });
  for (let i = 0; i < 5; i++) write(`k${i}`, i);
  await flusher.flush();
  assert.equal(source.rows.size, 5);
  assert.equal(source.batches.length, 3);
  write('x', 1);
  source.failNext = 1;
  await assert.rejects(flusher.flush(), /source down/);
  assert.deepEqual(flusher.get('x'), { op: 'put', key: 'x', value: 1 }, 'still queued');
  await flusher.flush();
  assert.equal(source.rows.get('x'), 1);
  await flusher.flush(); // nothing pending
});

test('close() drains with retries until the deadline and reports what is left', async () => {
  const ok = setup();
  ok.write('a', 1);
  ok.source.failNext = 2;
  const closing = ok.flusher.close(5000);
  for (let i = 0; i < 100; i++) await ok.advance(50);
  assert.equal(await closing, 0);
  assert.equal(ok.source.rows.get('a'), 1);
  assert.equal(ok.flusher.tryAdmit('b'), false, 'closed: nothing more is admitted');

  const down = setup();
  down.write('a', 1);
  down.write('b', 2);
  down.source.failNext = 1_000;
  const closing2 = down.flusher.close(1000);
  for (let i = 0; i < 100; i++) await down.advance(50);
  assert.equal(await closing2, 2);
  assert.deepEqual(down.flusher.pendingKeys(), ['a', 'b']);
});

test('restore() queues replayed writes and new seqs continue above them', async () => {
  const { flusher, source, advance, write } = setup();
  flusher.restore(41, { op: 'put', key: 'r', value: 1 });
  flusher.restore(42, { op: 'delete', key: 'gone' });
  assert.equal(write('n', 2), 43);
  await advance(100);
  assert.deepEqual(source.batches[0]!.writes.map((w) => w.key), ['r', 'gone', 'n']);
});

test('options are validated', () => {
  const clock = new ManualClock(0);
  const deps = { clock, random: new SeededRandom(1), apply: async () => undefined };
  for (const bad of [{ maxBatch: 0 }, { flushIntervalMs: 0.5 }, { maxQueueKeys: -1 }, { retry: { initialMs: 100, maxMs: 10 } }]) {
    assert.throws(() => new Flusher<number>(bad as Partial<FlusherOptions>, deps), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(bad));
  }
});
