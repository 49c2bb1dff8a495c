import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { QueueError, isQueueError } from '../errors.js';
import { partitionForKey } from '../log/murmur2.js';
import type { AppendRequest, AppendResult, LogApi, TopicInfo } from '../types.js';
import { TOPIC_DEFAULTS, deferred } from './common.js';
import { EngineProducer } from './engine-producer.js';

/**
 * A log that keeps appends in memory, dedupes idempotent batches by (producer id, partition, base
 * sequence) like the real one, and lets a test fail or hold appends.
 */
class FakeLog {
  readonly appends: AppendRequest[] = [];
  readonly written = new Map<number, string[]>();
  private readonly seen = new Map<string, AppendResult>();
  nextPid = 1;
  /** Called before each append; may throw, or return a promise to hold it. */
  hook: ((req: AppendRequest, attempt: number) => Promise<void> | void) | null = null;
  /** Whether a failing hook runs after the write (the answer is lost, the batch is in the log). */
  failAfterWrite = false;

  constructor(readonly partitions: number) {}

  async describeTopic(name: string): Promise<TopicInfo> {
    if (name !== 't') throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', 'no such topic');
    return { name, config: { ...TOPIC_DEFAULTS, partitions: this.partitions }, partitions: [] };
  }

  async initProducerId(): Promise<{ producerId: number; producerEpoch: number }> {
    return { producerId: this.nextPid++, producerEpoch: 0 };
  }

  async append(req: AppendRequest): Promise<AppendResult> {
    this.appends.push(req);
    const attempt = this.appends.length;
    if (!this.failAfterWrite) await this.hook?.(req, attempt);
    const dedupeKey = req.producerId === undefined ? null : `${req.producerId}/${req.partition}/${req.baseSequence}`;
    let result = dedupeKey === null ? undefined : this.seen.get(dedupeKey);
    if (result !== undefined) result = { ...result, duplicate: true };
    else {
      const log = this.written.get(req.partition) ?? [];
      this.written.set(req.partition, log);
      const baseOffset = log.length;
      for (const r of req.records) log.push(r.value?.toString() ?? 'null');
      result = { baseOffset, lastOffset: log.length - 1, duplicate: false };
      if (dedupeKey !== null) this.seen.set(dedupeKey, result);
    }
    if (this.failAfterWrite) await this.hook?.(req, attempt);
    return result;
  }
}

function producer(log: FakeLog, options: ConstructorParameters<typeof EngineProducer>[1] = {}): EngineProducer {
  return new EngineProducer(log as unknown as LogApi, { retryBackoffMs: 1, ...options });
}

const rec = (value: string, key: string | null = null) => ({ key: key === null ? null : Buffer.from(key), value: Buffer.from(value) });

test('keys go to murmur2 partitions, null keys round robin', async () => {
  const log = new FakeLog(4);
  const p = producer(log, { lingerMs: 0 });
  const keyed = await Promise.all(['a', 'b', 'c', 'order-17'].map((k) => p.send('t', rec(k, k))));
  keyed.forEach((r, i) => assert.equal(r.partition, partitionForKey(Buffer.from(['a', 'b', 'c', 'order-17'][i]!), 4)));
  const unkeyed = await Promise.all([0, 1, 2, 3, 4].map((i) => p.send('t', rec(String(i)))));
  assert.deepEqual(
    unkeyed.map((r) => r.partition),
    [0, 1, 2, 3, 0],
  );
  await p.close();
});

test('records linger and go out as one batch per partition; offsets follow the batch base', async () => {
  const clock = new ManualClock();
  const log = new FakeLog(1);
  const p = producer(log, { lingerMs: 20, clock });
  const sends = [0, 1, 2, 3, 4].map((i) => p.send('t', rec(String(i))));
  await new Promise((r) => setImmediate(r));
  assert.equal(log.appends.length, 0, 'nothing sent before the linger passed');
  clock.advance(20);
  const results = await Promise.all(sends);
  assert.equal(log.appends.length, 1);
  assert.equal(log.appends[0]!.records.length, 5);
  assert.deepEqual(
    results.map((r) => r.offset),
    [0, 1, 2, 3, 4],
  );
  await p.close();
});

test('a batch goes out as soon as it reaches maxBatchBytes', async () => {
  const clock = new ManualClock();
  const log = new FakeLog(1);
  const p = producer(log, { lingerMs: 10_000, maxBatchBytes: 200, clock });
  const sends = Array.from({ length: 6 }, (_, i) => p.send('t', rec('x'.repeat(60) + i)));
  await Promise.all(sends.slice(0, 4));
  assert.ok(log.appends.length >= 2, 'full batches were sent without waiting for the linger');
  await p.flush();
  await Promise.all(sends);
  assert.deepEqual(log.written.get(0), Array.from({ length: 6 }, (_, i) => 'x'.repeat(60) + i), 'in send order');
  await p.close();
});

test('idempotent: a retried batch keeps its sequence and is written once', async () => {
  const log = new FakeLog(1);
  log.failAfterWrite = true;
  log.hook = (_req, attempt) => {
    if (attempt === 1) throw new QueueError('ARCHLAB_QUEUE_DISCONNECTED', 'answer lost');
  };
  const clock = new ManualClock();
  const p = producer(log, { lingerMs: 5, clock, idempotent: true });
  const sends = [p.send('t', rec('a')), p.send('t', rec('b'))];
  await new Promise((r) => setImmediate(r));
  clock.advance(5);
  const results = await Promise.all(sends);
  assert.equal(log.appends.length, 2, 'one batch, one retry');
  assert.equal(log.appends[0]!.baseSequence, log.appends[1]!.baseSequence, 'the retry kept its sequence');
  assert.equal(log.appends[0]!.producerId, log.appends[1]!.producerId);
  assert.deepEqual(log.written.get(0), ['a', 'b'], 'written once');
  assert.deepEqual(
    results.map((r) => r.offset),
    [0, 1],
  );
  const later = p.send('t', rec('c'));
  await new Promise((r) => setImmediate(r));
  clock.advance(5);
  const next = await later;
  assert.equal(log.appends[2]!.baseSequence, 2, 'the next batch continues the sequence');
  assert.equal(next.offset, 2);
  await p.close();
});

test('idempotent: after a batch fails for good, the producer takes a new producer id', async () => {
  const log = new FakeLog(1);
  log.hook = (_req, attempt) => {
    if (attempt === 1) throw new QueueError('ARCHLAB_QUEUE_STORAGE', 'broken');
  };
  const p = producer(log, { lingerMs: 0, idempotent: true });
  await assert.rejects(p.send('t', rec('lost')), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_STORAGE'));
  await new Promise((r) => setImmediate(r));
  await p.send('t', rec('next'));
  assert.equal(log.appends[0]!.producerId, 1);
  assert.equal(log.appends[1]!.producerId, 2, 'a fresh producer id');
  assert.equal(log.appends[1]!.baseSequence, 0, 'whose sequences start again');
  await p.close();
});

test('retries are bounded: maxRetries retryable failures, then the error', async () => {
  const log = new FakeLog(1);
  log.hook = () => {
    throw new QueueError('ARCHLAB_QUEUE_TIMEOUT', 'slow');
  };
  const p = producer(log, { lingerMs: 0, maxRetries: 3 });
  await assert.rejects(p.send('t', rec('x')), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_TIMEOUT'));
  assert.equal(log.appends.length, 4, 'one try and three retries');
  await p.close();
});

test('a batch refused as too large is split down to what fits', async () => {
  const log = new FakeLog(1);
  log.hook = (req) => {
    if (req.records.length > 2) throw new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', 'too big');
  };
  const clock = new ManualClock();
  const p = producer(log, { lingerMs: 5, clock, idempotent: true });
  const sends = Array.from({ length: 7 }, (_, i) => p.send('t', rec(String(i))));
  await new Promise((r) => setImmediate(r));
  clock.advance(5);
  const results = await Promise.all(sends);
  assert.deepEqual(log.written.get(0), ['0', '1', '2', '3', '4', '5', '6']);
  assert.deepEqual(
    results.map((r) => r.offset),
    [0, 1, 2, 3, 4, 5, 6],
  );
  const accepted = log.appends.filter((a) => a.records.length <= 2);
  const seqs = accepted.map((a) => a.baseSequence);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a! - b!), 'split halves keep increasing sequences');
  await p.close();
});

test('one batch in flight per partition: the next waits for the first to settle', async () => {
  const log = new FakeLog(1);
  const gate = deferred<void>();
  log.hook = (_req, attempt) => (attempt === 1 ? gate.promise : undefined);
  const p = producer(log, { lingerMs: 0 });
  const first = p.send('t', rec('1'));
  await new Promise((r) => setImmediate(r));
  const second = p.send('t', rec('2'));
  await new Promise((r) => setImmediate(r));
  assert.equal(log.appends.length, 1, 'the second batch waits');
  gate.resolve();
  await Promise.all([first, second]);
  assert.deepEqual(log.written.get(0), ['1', '2']);
  await p.close();
});

test('a full buffer makes send() wait, then fail with ARCHLAB_QUEUE_LIMIT after maxBlockMs', async () => {
  const clock = new ManualClock();
  const log = new FakeLog(1);
  const gate = deferred<void>();
  log.hook = () => gate.promise;
  const p = producer(log, { lingerMs: 0, maxBufferBytes: 1024, maxBlockMs: 100, clock });
  const big = 'x'.repeat(700);
  const first = p.send('t', rec(big));
  const second = p.send('t', rec(big));
  await new Promise((r) => setImmediate(r));
  assert.ok(p.bufferedBytesNow <= 1024);
  clock.advance(100);
  await assert.rejects(second, (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_LIMIT'));
  gate.resolve();
  await first;
  // Room again: a send goes through.
  await p.send('t', rec(big));
  await assert.rejects(p.send('t', rec('y'.repeat(2000))), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE'));
  await p.close();
});

test('a send waiting for room goes out once a batch settles', async () => {
  const log = new FakeLog(1);
  const gate = deferred<void>();
  log.hook = (_req, attempt) => (attempt === 1 ? gate.promise : undefined);
  const p = producer(log, { lingerMs: 0, maxBufferBytes: 1024 });
  const big = 'x'.repeat(700);
  const first = p.send('t', rec(big));
  const second = p.send('t', rec(big + '2'));
  await new Promise((r) => setImmediate(r));
  assert.equal(log.appends.length, 1);
  gate.resolve();
  const [a, b] = await Promise.all([first, second]);
  assert.deepEqual([a.offset, b.offset], [0, 1]);
  await p.close();
});

test('flush sends what lingers; close refuses later sends; unknown topics fail the send', async () => {
  const clock = new ManualClock();
  const log = new FakeLog(2);
  const p = producer(log, { lingerMs: 60_000, clock });
  const s = p.send('t', rec('x'));
  await p.flush();
  assert.equal((await s).offset, 0);
  await assert.rejects(p.send('missing', rec('x')), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  await p.close();
  await assert.rejects(p.send('t', rec('x')), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_CLOSED'));
});

test('bad arguments are refused up front', () => {
  const log = new FakeLog(1);
  assert.throws(() => producer(log, { acks: 'all' as never }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
  assert.throws(() => producer(log, { idempotent: true, acks: 'none' }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
  assert.throws(() => producer(log, { lingerMs: -1 }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
});
