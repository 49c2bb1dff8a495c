import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { SeededRandom } from '../../core/random.js';
import { isQueueError, type QueueErrorCode } from '../errors.js';
import { Log } from './log.js';
import { partitionForKey } from './murmur2.js';
import { decodeRecordBatch, encodeRecordBatch, readBatchHeader } from './record-batch.js';
import { openLog, rec, tempDir } from './test-helpers.js';

const code = (c: QueueErrorCode) => (e: unknown) => isQueueError(e, c);

test('topics: create, describe, list, re-declare, mismatch, delete, bad names and limits', async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, { dataDir: dir, defaults: { segmentBytes: 8192 }, maxTopics: 2, maxPartitionsTotal: 5 });
  const info = await log.createTopic('orders', { partitions: 3 });
  assert.equal(info.partitions.length, 3);
  assert.equal(info.config.segmentBytes, 8192, 'the log defaults apply');
  assert.equal(info.config.retentionMs, 7 * 24 * 3600 * 1000);
  assert.deepEqual(info.partitions[2], { topic: 'orders', partition: 2, logStartOffset: 0, highWatermark: 0, segments: 1, sizeBytes: 0 });
  assert.equal((await log.createTopic('orders', { partitions: 3 })).name, 'orders', 'same settings: idempotent');
  assert.equal((await log.createTopic('orders')).partitions.length, 3, 'no settings named: returns it');
  await assert.rejects(log.createTopic('orders', { partitions: 4 }), (e) => isQueueError(e, 'ARCHLAB_QUEUE_DECLARE_MISMATCH') && e.details?.field === 'partitions');
  await assert.rejects(log.createTopic('__internal'), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(log.createTopic('a/b'), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(log.createTopic('x', { partitions: 0 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(log.createTopic('x', { retentionMs: -2 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(log.createTopic('x', { bogus: 1 } as never), (e) => isQueueError(e, 'ARCHLAB_QUEUE_BAD_ARGUMENT') && /unknown field/.test(e.message));
  await assert.rejects(log.createTopic('x', { partitions: 3 }), code('ARCHLAB_QUEUE_LIMIT'), 'maxPartitionsTotal');
  await log.createTopic('x', { partitions: 2 });
  await assert.rejects(log.createTopic('y'), code('ARCHLAB_QUEUE_LIMIT'), 'maxTopics');
  assert.deepEqual(
    (await log.listTopics()).map((x) => x.name),
    ['orders', 'x'],
  );
  await log.deleteTopic('x');
  assert.equal(existsSync(join(dir, 'x-0')), false);
  await assert.rejects(log.describeTopic('x'), code('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  await assert.rejects(log.deleteTopic('x'), code('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  await assert.rejects(log.append({ topic: 'nope', partition: 0, records: [rec(0)], acks: 'leader' }), code('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  await assert.rejects(log.append({ topic: 'orders', partition: 3, records: [rec(0)], acks: 'leader' }), code('ARCHLAB_QUEUE_UNKNOWN_PARTITION'));
  await assert.rejects(log.fetch({ topic: 'orders', partition: -1, offset: 0 }), code('ARCHLAB_QUEUE_UNKNOWN_PARTITION'));
  // configs survive a restart
  await log.close();
  const again = await openLog(t, { dataDir: dir });
  assert.deepEqual(
    (await again.listTopics()).map((x) => [x.name, x.config.partitions, x.config.segmentBytes]),
    [['orders', 3, 8192]],
  );
});

test('append then fetch: offsets, records intact, nextOffset, highWatermark, maxBytes', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t), clock: new ManualClock(1_700_000_000_000) });
  await log.createTopic('t');
  const a = await log.append({ topic: 't', partition: 0, acks: 'leader', records: [rec(0), rec(1), rec(2, 20, Infinity, 42)] });
  assert.deepEqual(a, { baseOffset: 0, lastOffset: 2, duplicate: false });
  const b = await log.append({ topic: 't', partition: 0, acks: 'fsync', compression: 'gzip', records: [rec(3), { key: null, value: null }] });
  assert.deepEqual(b, { baseOffset: 3, lastOffset: 4, duplicate: false });
  const all = await log.fetch({ topic: 't', partition: 0, offset: 0 });
  assert.equal(all.highWatermark, 5);
  assert.equal(all.nextOffset, 5);
  assert.equal(all.logStartOffset, 0);
  assert.deepEqual(
    all.records.map((r) => [r.offset, r.key?.toString() ?? null, r.timestamp]),
    [
      [0, 'k0', 1_700_000_000_000],
      [1, 'k1', 1_700_000_000_000],
      [2, 'k2', 42],
      [3, 'k3', 1_700_000_000_000],
      [4, null, 1_700_000_000_000],
    ],
  );
  assert.deepEqual(all.records[1]!.value, rec(1).value);
  assert.deepEqual(all.records[1]!.headers, [{ key: 'i', value: Buffer.from('1') }]);
  assert.equal(all.records[4]!.value, null);
  // from the middle of a batch: records before the offset are skipped
  const mid = await log.fetch({ topic: 't', partition: 0, offset: 1 });
  assert.deepEqual(
    mid.records.map((r) => r.offset),
    [1, 2, 3, 4],
  );
  // maxBytes 1: still the first batch, and only it
  const one = await log.fetch({ topic: 't', partition: 0, offset: 0, maxBytes: 1 });
  assert.deepEqual([one.records.length, one.nextOffset], [3, 3]);
  const end = await log.fetch({ topic: 't', partition: 0, offset: 5 });
  assert.deepEqual([end.records.length, end.nextOffset], [0, 5]);
  await assert.rejects(log.fetch({ topic: 't', partition: 0, offset: 6 }), code('ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE'));
  await assert.rejects(log.fetch({ topic: 't', partition: 0, offset: -1 }), code('ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE'));
  await assert.rejects(log.append({ topic: 't', partition: 0, acks: 'maybe' as never, records: [rec(0)] }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(log.append({ topic: 't', partition: 0, acks: 'leader', records: [] }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('appendRaw checks the batch and stamps offsets; fetchRaw hands back the stored bytes', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t) });
  await log.createTopic('raw', { maxMessageBytes: 4096 });
  await log.append({ topic: 'raw', partition: 0, acks: 'leader', records: [rec(0)] });
  const batch = encodeRecordBatch([rec(1), rec(2)], { now: 5, compression: 'lz4' });
  const sent = Buffer.from(batch);
  assert.deepEqual(await log.appendRaw('raw', 0, batch, 'leader'), { baseOffset: 1, lastOffset: 2, duplicate: false });
  assert.equal(readBatchHeader(batch).baseOffset, 1, 'stamped in place');
  const r = await log.fetchRaw({ topic: 'raw', partition: 0, offset: 1 });
  assert.equal(r.batches.length, 1);
  assert.deepEqual(r.batches[0]!.subarray(8), sent.subarray(8), 'the same bytes but the base offset');
  assert.deepEqual(
    decodeRecordBatch(r.batches[0]!, 'raw', 0).map((x) => x.offset),
    [1, 2],
  );
  const flipped = encodeRecordBatch([rec(3)], { now: 5 });
  flipped[flipped.length - 1]! ^= 1;
  await assert.rejects(log.appendRaw('raw', 0, flipped, 'leader'), code('ARCHLAB_QUEUE_CORRUPT'));
  await assert.rejects(log.appendRaw('raw', 0, Buffer.alloc(10), 'leader'), code('ARCHLAB_QUEUE_CORRUPT'));
  const big = encodeRecordBatch([{ key: null, value: Buffer.alloc(5000) }], { now: 5 });
  await assert.rejects(log.appendRaw('raw', 0, big, 'leader'), (e) => isQueueError(e, 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE') && e.details?.maxBytes === 4096 && !e.retryable);
  await assert.rejects(log.append({ topic: 'raw', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.alloc(5000) }] }), code('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE'));
  // compressed, the same records fit
  assert.equal((await log.append({ topic: 'raw', partition: 0, acks: 'leader', compression: 'gzip', records: [{ key: null, value: Buffer.alloc(5000) }] })).baseOffset, 3);
  assert.equal((await log.describeTopic('raw')).partitions[0]!.highWatermark, 4, 'nothing refused was written');
});

test('partitionFor: murmur2 like Kafka for keys, round robin without', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t) });
  await log.createTopic('p', { partitions: 7 });
  for (const k of ['21', 'foobar', 'a', '']) assert.equal(await log.partitionFor('p', Buffer.from(k)), partitionForKey(Buffer.from(k), 7));
  const rr = [];
  for (let i = 0; i < 8; i++) rr.push(await log.partitionFor('p', null));
  assert.deepEqual(rr, [0, 1, 2, 3, 4, 5, 6, 0]);
});

test('autoCreateTopics makes a topic with the defaults on first use; off, it is UNKNOWN_TOPIC', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t), autoCreateTopics: true, defaults: { partitions: 2 } });
  assert.equal((await log.append({ topic: 'auto', partition: 1, acks: 'leader', records: [rec(0)] })).baseOffset, 0);
  assert.equal((await log.describeTopic('auto')).config.partitions, 2);
  assert.equal((await log.fetch({ topic: 'auto2', partition: 0, offset: 0 })).records.length, 0);
  await assert.rejects(log.append({ topic: '__x', partition: 0, acks: 'leader', records: [rec(0)] }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('a long-polling fetch is answered by the next append, or empty when maxWaitMs passes', async (t) => {
  const clock = new ManualClock(0);
  const log = await openLog(t, { dataDir: tempDir(t), clock, maxFetchWaitersPerPartition: 2 });
  await log.createTopic('lp');
  const waiting = log.fetch({ topic: 'lp', partition: 0, offset: 0, maxWaitMs: 10_000 });
  const other = log.fetch({ topic: 'lp', partition: 0, offset: 0, maxWaitMs: 500 });
  await new Promise((r) => setImmediate(r));
  await assert.rejects(log.fetch({ topic: 'lp', partition: 0, offset: 0, maxWaitMs: 500 }), code('ARCHLAB_QUEUE_LIMIT'), 'bounded waiters');
  clock.advance(500);
  assert.deepEqual((await other).records, [], 'timed out empty');
  await log.append({ topic: 'lp', partition: 0, acks: 'leader', records: [rec(7)] });
  const got = await waiting;
  assert.deepEqual(
    got.records.map((r) => r.offset),
    [0],
  );
  assert.equal(clock.pending() <= 1, true, 'the answered waiter cancelled its timer');
  // a waiter is released by close, empty
  const atClose = log.fetch({ topic: 'lp', partition: 0, offset: 1, maxWaitMs: 60_000 });
  await new Promise((r) => setImmediate(r));
  await log.close();
  assert.deepEqual((await atClose).records, []);
});

test('acks: none resolves at once and is written in order; fsync appends share fdatasyncs (group commit)', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t) });
  await log.createTopic('a');
  const none = await log.append({ topic: 'a', partition: 0, acks: 'none', records: [rec(0)] });
  assert.deepEqual(none, { baseOffset: 0, lastOffset: 0, duplicate: false });
  const n = 50;
  const results = await Promise.all(Array.from({ length: n }, (_, i) => log.append({ topic: 'a', partition: 0, acks: 'fsync', records: [rec(i + 1)] })));
  assert.deepEqual(
    results.map((r) => r.baseOffset),
    Array.from({ length: n }, (_, i) => i + 1),
    'offsets in call order',
  );
  const s = log.stats();
  assert.equal(s.fsyncedBatches, n);
  assert.ok(s.fsyncs < n / 5, `${n} concurrent fsync appends took ${s.fsyncs} fdatasyncs`);
  assert.equal(s.appends, n + 1);
  const f = await log.fetch({ topic: 'a', partition: 0, offset: 0, maxBytes: 1 << 20 });
  assert.deepEqual(
    f.records.map((r) => r.value),
    Array.from({ length: n + 1 }, (_, i) => rec(i).value),
  );
});

test('idempotent producers: a retry is answered with the original offsets and written once; gaps and old epochs refused', async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, { dataDir: dir });
  await log.createTopic('idem', { partitions: 2 });
  const { producerId, producerEpoch } = await log.initProducerId();
  assert.equal(producerEpoch, 0);
  const send = (seq: number, n: number, partition = 0, epoch = producerEpoch) =>
    log.append({ topic: 'idem', partition, acks: 'leader', producerId, producerEpoch: epoch, baseSequence: seq, records: Array.from({ length: n }, (_, i) => rec(seq + i)) });
  assert.deepEqual(await send(0, 3), { baseOffset: 0, lastOffset: 2, duplicate: false });
  assert.deepEqual(await send(3, 2), { baseOffset: 3, lastOffset: 4, duplicate: false });
  assert.deepEqual(await send(0, 3), { baseOffset: 0, lastOffset: 2, duplicate: true });
  assert.deepEqual(await send(3, 2), { baseOffset: 3, lastOffset: 4, duplicate: true });
  // the same batch sent twice in one tick: one write
  const [x, y] = await Promise.all([send(5, 1), send(5, 1)]);
  assert.deepEqual([x, y], [
    { baseOffset: 5, lastOffset: 5, duplicate: false },
    { baseOffset: 5, lastOffset: 5, duplicate: true },
  ]);
  await assert.rejects(send(9, 1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE') && e.details?.expected === 6 && e.details?.got === 9);
  // sequences are per partition
  assert.deepEqual(await send(0, 1, 1), { baseOffset: 0, lastOffset: 0, duplicate: false });
  assert.deepEqual(await send(0, 1, 0, 1), { baseOffset: 6, lastOffset: 6, duplicate: false }, 'a new epoch starts at 0');
  await assert.rejects(send(1, 1, 0, 0), code('ARCHLAB_QUEUE_PRODUCER_FENCED'));
  await assert.rejects(
    log.append({ topic: 'idem', partition: 0, acks: 'leader', producerId: producerId + 5000, producerEpoch: 0, baseSequence: 0, records: [rec(0)] }),
    code('ARCHLAB_QUEUE_BAD_ARGUMENT'),
    'an id never handed out',
  );
  assert.equal(log.stats().duplicates, 3);
  assert.equal((await log.fetch({ topic: 'idem', partition: 0, offset: 0 })).records.length, 7, 'duplicates were not written');
  // ids are never handed out twice, across restarts too
  const second = await log.initProducerId();
  await log.close();
  const again = await openLog(t, { dataDir: dir });
  const third = await again.initProducerId();
  assert.ok(second.producerId > producerId && third.producerId > second.producerId, `${producerId} < ${second.producerId} < ${third.producerId}`);
  // and the sequence state survived the clean close
  const resend = await again.append({ topic: 'idem', partition: 0, acks: 'leader', producerId, producerEpoch: 1, baseSequence: 0, records: [rec(0)] });
  assert.deepEqual(resend, { baseOffset: 6, lastOffset: 6, duplicate: true });
});

test('consumer group methods go to the coordinator, which sees the log\'s topics and high watermarks', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t), random: new SeededRandom(1) });
  await log.createTopic('g', { partitions: 2 });
  for (let i = 0; i < 5; i++) await log.append({ topic: 'g', partition: i % 2, acks: 'leader', records: [rec(i)] });
  const j = await log.joinGroup({ group: 'readers', topics: ['g'] });
  assert.equal(j.assignment.length, 2);
  await log.commitOffsets('readers', j.memberId, j.generation, [{ topic: 'g', partition: 0, offset: 1 }]);
  assert.deepEqual(
    (await log.fetchOffsets('readers', [{ topic: 'g', partition: 0 }, { topic: 'g', partition: 1 }])).map((o) => o.offset),
    [1, -1],
  );
  const d = await log.describeGroup('readers');
  const p0 = d.offsets.find((o) => o.partition === 0)!;
  assert.deepEqual([p0.committed, p0.highWatermark, p0.lag], [1, 3, 2]);
  assert.equal((await log.heartbeat('readers', j.memberId, j.generation)).rebalance, false);
  await log.leaveGroup('readers', j.memberId);
  await assert.rejects(log.joinGroup({ group: 'r2', topics: ['missing'] }), code('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
});

test('seek targets and offsetForTimestamp', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t) });
  await log.createTopic('s');
  await log.append({ topic: 's', partition: 0, acks: 'leader', records: [rec(0, 10, Infinity, 100), rec(1, 10, Infinity, 300), rec(2, 10, Infinity, 200)] });
  assert.equal(await log.resolveSeek('s', 0, { kind: 'earliest' }), 0);
  assert.equal(await log.resolveSeek('s', 0, { kind: 'latest' }), 3);
  assert.equal(await log.resolveSeek('s', 0, { kind: 'offset', offset: 2 }), 2);
  assert.equal(await log.resolveSeek('s', 0, { kind: 'timestamp', timestamp: 150 }), 1);
  assert.equal(await log.offsetForTimestamp('s', 0, 200), 1, 'the first record at or after, in offset order');
  assert.equal(await log.offsetForTimestamp('s', 0, 301), 3, 'none: the high watermark');
  await assert.rejects(log.resolveSeek('s', 0, { kind: 'offset', offset: 4 }), code('ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE'));
  await assert.rejects(log.resolveSeek('s', 0, { kind: 'nowhere' } as never), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('options are validated at open; a data dir is opened once; calls after close fail CLOSED', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(Log.open({ dataDir: '' }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(Log.open({ dataDir: dir, maxTopics: 0 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(Log.open({ dataDir: dir, onCorrupt: 'ignore' as never }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(Log.open({ dataDir: dir, defaults: { segmentBytes: 10 } }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  const log = await openLog(t, { dataDir: dir });
  await assert.rejects(Log.open({ dataDir: dir }), code('ARCHLAB_QUEUE_STORAGE'));
  await log.createTopic('c');
  await log.close();
  await log.close();
  await assert.rejects(log.append({ topic: 'c', partition: 0, acks: 'leader', records: [rec(0)] }), code('ARCHLAB_QUEUE_CLOSED'));
  await assert.rejects(log.listTopics(), code('ARCHLAB_QUEUE_CLOSED'));
  assert.ok(!readdirSync(join(dir, '__meta')).includes('lock'), 'close releases the lock');
});
