import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArchlabError } from '../../core/errors.js';
import { SeededRandom, freshSeed } from '../../core/random.js';
import { topicMatchesReference } from '../broker/index.js';
import { isQueueError } from '../errors.js';
import {
  PushQueue,
  Semaphore,
  SerialRunner,
  decodeRecord,
  encodeRecord,
  headersMatch,
  resolveQueueConfig,
  resolveTopicConfig,
  topicMatches,
} from './common.js';
import { natsToken } from './nats.js';

test('topicMatches: the AMQP examples', () => {
  assert.equal(topicMatches('orders.*', 'orders.eu'), true);
  assert.equal(topicMatches('orders.*', 'orders.eu.west'), false);
  assert.equal(topicMatches('orders.*', 'orders'), false);
  assert.equal(topicMatches('orders.#', 'orders'), true);
  assert.equal(topicMatches('orders.#', 'orders.eu.west'), true);
  assert.equal(topicMatches('#.west', 'orders.eu.west'), true);
  assert.equal(topicMatches('a.#.b.#.c', 'a.x.b.c'), true);
  assert.equal(topicMatches('a.#.b.#.c', 'a.x.c'), false);
  assert.equal(topicMatches('#', ''), true);
  assert.equal(topicMatches('*.eu', 'stock.eu'), true);
  assert.equal(topicMatches('exact', 'exact'), true);
  assert.equal(topicMatches('exact', 'other'), false);
});

test('topicMatches agrees with the broker reference on random patterns and keys', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const words = ['a', 'b', 'c', ''];
  const patternWords = ['a', 'b', '*', '#'];
  const pick = <T>(xs: readonly T[]): T => xs[rnd.int(xs.length)]!;
  for (let i = 0; i < 5000; i++) {
    const pattern = Array.from({ length: 1 + rnd.int(5) }, () => pick(patternWords)).join('.');
    const key = Array.from({ length: 1 + rnd.int(5) }, () => pick(words)).join('.');
    assert.equal(topicMatches(pattern, key), topicMatchesReference(pattern, key), `seed ${seed}: ${JSON.stringify(pattern)} vs ${JSON.stringify(key)}`);
  }
});

test('topicMatches: a pattern of many # stays fast (no backtracking)', () => {
  const pattern = Array.from({ length: 60 }, () => '#').join('.') + '.z';
  const key = Array.from({ length: 200 }, () => 'a').join('.');
  assert.equal(topicMatches(pattern, key), false);
});

test('headersMatch: all, any, x- keys ignored', () => {
  const args = { 'x-match': 'all' as const, kind: 'pdf', lang: 'en' };
  assert.equal(headersMatch(args, { kind: 'pdf', lang: 'en', extra: '1' }), true);
  assert.equal(headersMatch(args, { kind: 'pdf' }), false);
  assert.equal(headersMatch({ ...args, 'x-match': 'any' }, { kind: 'pdf' }), true);
  assert.equal(headersMatch({ ...args, 'x-match': 'any' }, { kind: 'txt' }), false);
  assert.equal(headersMatch({}, {}), true, 'an empty all-binding matches everything');
  assert.equal(headersMatch({ 'x-match': 'any' }, { a: '1' }), false, 'an empty any-binding matches nothing');
});

test('records survive encodeRecord/decodeRecord: key, null value, headers, timestamp, gzip', () => {
  const record = { key: Buffer.from([0, 255, 7]), value: Buffer.from('hello world hello world'), headers: [{ key: 'h', value: Buffer.from([1]) }, { key: 'h', value: Buffer.from([2]) }], timestamp: 1234 };
  for (const compression of ['none', 'gzip'] as const) {
    const enc = encodeRecord(record, 99, compression);
    const back = decodeRecord('t', 3, 17, enc.body, (n) => enc.headers[n], 5);
    assert.deepEqual(back, { topic: 't', partition: 3, offset: 17, timestamp: 1234, key: record.key, value: record.value, headers: record.headers });
  }
  const tomb = encodeRecord({ key: null, value: null }, 99, 'gzip');
  const back = decodeRecord('t', 0, 0, tomb.body, (n) => tomb.headers[n], 5);
  assert.equal(back.value, null);
  assert.equal(back.key, null);
  assert.equal(back.timestamp, 99, 'a record without a timestamp gets the producer clock');
  const foreign = decodeRecord('t', 0, 0, Buffer.from('x'), () => undefined, 5);
  assert.equal(foreign.timestamp, 5, 'a message written by someone else gets the engine time');
});

test('natsToken is injective on tricky names and subject-safe', () => {
  const names = ['a.b', 'a_b', 'a_db', 'a__b', 'a._b', 'x'.repeat(200), 'x'.repeat(199) + 'y', 'A-b.c_d'];
  const tokens = names.map(natsToken);
  assert.equal(new Set(tokens).size, names.length);
  for (const t of tokens) {
    assert.match(t, /^[A-Za-z0-9_-]+$/);
    assert.ok(t.length <= 64);
  }
});

test('Semaphore: bounded permits and a bounded wait list', async () => {
  const s = new Semaphore(2, 1, 'test');
  await s.acquire();
  await s.acquire();
  let third = false;
  const p = s.acquire().then(() => (third = true));
  await assert.rejects(s.acquire(), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_LIMIT'));
  assert.equal(third, false);
  s.release();
  await p;
  assert.equal(third, true);
  assert.equal(s.inUse, 2);
});

test('SerialRunner runs tasks one at a time, in order, past failures', async () => {
  const r = new SerialRunner();
  const log: string[] = [];
  let running = 0;
  const task = (name: string, fail = false) => async () => {
    running++;
    assert.equal(running, 1);
    await new Promise((res) => setTimeout(res, 2));
    log.push(name);
    running--;
    if (fail) throw new ArchlabError('TEST_TASK_FAILED', name);
  };
  const results = await Promise.allSettled([r.run(task('a')), r.run(task('b', true)), r.run(task('c'))]);
  assert.deepEqual(log, ['a', 'b', 'c']);
  assert.equal(results[1]!.status, 'rejected');
});

test('PushQueue hands items over in order and ends', async () => {
  const q = new PushQueue<number>();
  const waiting = q.next();
  q.push(1);
  q.push(2);
  assert.equal(await waiting, 1);
  q.push(3);
  assert.deepEqual(q.end(), [2, 3]);
  assert.equal(await q.next(), null);
});

test('resolveQueueConfig / resolveTopicConfig: defaults and refusals', () => {
  assert.equal(resolveQueueConfig(undefined).maxLength, 100_000);
  assert.equal(resolveQueueConfig({ maxPriority: 3 }).maxPriority, 3);
  for (const bad of [{ maxLength: 0 }, { maxPriority: 11 }, { overflow: 'drop' as never }, { deadLetterQueue: '__x' }, { visibilityTimeoutMs: -5 }]) {
    assert.throws(() => resolveQueueConfig(bad), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'), JSON.stringify(bad));
  }
  assert.equal(resolveTopicConfig({ partitions: 8 }).partitions, 8);
  assert.throws(() => resolveTopicConfig({ partitions: 0 }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
  assert.throws(() => resolveTopicConfig({ partitions: 1025 }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
});
