import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { SeededRandom } from '../../core/random.js';
import { isQueueError } from '../errors.js';
import type { Log } from './log.js';
import type { LogRecord, ProducerRecord } from '../types.js';
import { openLog, rec, seedFor, tempDir } from './test-helpers.js';

/** Reads a whole partition by following nextOffset, checking progress. */
async function readAll(log: Log, topic: string, partition: number, from: number, maxBytes = 3000): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  let offset = from;
  for (let guard = 0; guard < 100_000; guard++) {
    const f = await log.fetch({ topic, partition, offset, maxBytes });
    out.push(...f.records);
    if (f.nextOffset === offset && f.records.length === 0) return out;
    assert.ok(f.nextOffset > offset, `fetch at ${offset} made no progress`);
    offset = f.nextOffset;
  }
  return assert.fail('readAll did not finish');
}

test('many small segments: a fetch at every offset starts at that record, as a linear scan of what was written says (seeded)', async (t) => {
  const seed = seedFor(t);
  const rnd = new SeededRandom(seed);
  const dir = tempDir(t);
  let log = await openLog(t, { dataDir: dir, indexIntervalBytes: 1 + rnd.int(600) });
  await log.createTopic('seg', { segmentBytes: 1024 + rnd.int(4096) });
  const written: ProducerRecord[] = [];
  for (let b = 0; b < 60; b++) {
    const n = 1 + rnd.int(rnd.int(5) === 0 ? 40 : 5);
    const records = Array.from({ length: n }, (_, i) => rec(written.length + i, rnd.int(300), Infinity, 1000 + rnd.int(100_000)));
    await log.append({ topic: 'seg', partition: 0, acks: 'leader', compression: rnd.int(4) === 0 ? 'gzip' : 'none', records });
    written.push(...records);
  }
  const check = async (phase: string): Promise<void> => {
    const info = (await log.describeTopic('seg')).partitions[0]!;
    assert.equal(info.highWatermark, written.length);
    assert.ok(info.segments > 3, `seed ${seed}: ${info.segments} segments`);
    for (let off = 0; off < written.length; off++) {
      const f = await log.fetch({ topic: 'seg', partition: 0, offset: off, maxBytes: 1 });
      assert.equal(f.records[0]?.offset, off, `seed ${seed} ${phase}: fetch at ${off}`);
      assert.deepEqual(f.records[0]!.value, written[off]!.value, `seed ${seed} ${phase}: value at ${off}`);
    }
    // offsetForTimestamp against the reference: the first offset whose timestamp >= ts
    for (let k = 0; k < 40; k++) {
      const ts = 900 + rnd.int(101_200);
      const want = written.findIndex((r) => r.timestamp! >= ts);
      assert.equal(await log.offsetForTimestamp('seg', 0, ts), want < 0 ? written.length : want, `seed ${seed} ${phase}: ts ${ts}`);
    }
    const all = await readAll(log, 'seg', 0, 0);
    assert.equal(all.length, written.length);
  };
  await check('live');
  await log.close();
  log = await openLog(t, { dataDir: dir });
  await check('reopened (index files)');
  await log.close();
  // indexes lost or garbage: rebuilt by scanning
  const pdir = join(dir, 'seg-0');
  const files = readdirSync(pdir);
  for (const f of files.filter((f) => f.endsWith('.index')).slice(0, 2)) rmSync(join(pdir, f));
  for (const f of files.filter((f) => f.endsWith('.timeindex')).slice(2, 4)) writeFileSync(join(pdir, f), Buffer.alloc(7, 1));
  for (const f of files.filter((f) => f.endsWith('.index')).slice(4, 5)) writeFileSync(join(pdir, f), Buffer.from([0, 0, 0, 1, 0, 0, 0, 9]));
  log = await openLog(t, { dataDir: dir });
  await check('indexes rebuilt');
});

test('retention by size deletes whole old segments and moves the log start; fetches below it are out of range', async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, { dataDir: dir });
  await log.createTopic('r', { segmentBytes: 1024, retentionBytes: 3000, retentionMs: -1 });
  for (let i = 0; i < 60; i++) await log.append({ topic: 'r', partition: 0, acks: 'leader', records: [rec(i, 100)] });
  const before = (await log.describeTopic('r')).partitions[0]!;
  const diskBefore = log.stats().diskBytes;
  await log.runCleaner();
  const after = (await log.describeTopic('r')).partitions[0]!;
  assert.ok(after.logStartOffset > 0, 'log start moved');
  assert.ok(after.sizeBytes >= 3000 && after.sizeBytes < before.sizeBytes, `${before.sizeBytes} -> ${after.sizeBytes}`);
  assert.ok(after.sizeBytes - 1024 < 3000, 'no more than needed stays');
  assert.equal(after.highWatermark, 60);
  assert.equal(log.stats().diskBytes, diskBefore - (before.sizeBytes - after.sizeBytes));
  assert.equal(readdirSync(join(dir, 'r-0')).filter((f) => f.endsWith('.log')).length, after.segments);
  await assert.rejects(log.fetch({ topic: 'r', partition: 0, offset: 0 }), (e) => isQueueError(e, 'ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE'));
  assert.equal(await log.resolveSeek('r', 0, { kind: 'earliest' }), after.logStartOffset);
  const rest = await readAll(log, 'r', 0, after.logStartOffset);
  assert.deepEqual(
    rest.map((r) => r.offset),
    Array.from({ length: 60 - after.logStartOffset }, (_, i) => after.logStartOffset + i),
  );
});

test('retention by age (the clock decides) deletes expired segments, the active one too once it is all old', async (t) => {
  const clock = new ManualClock(1_000_000);
  const log = await openLog(t, { dataDir: tempDir(t), clock });
  await log.createTopic('age', { segmentBytes: 1024, retentionMs: 60_000 });
  for (let i = 0; i < 20; i++) await log.append({ topic: 'age', partition: 0, acks: 'leader', records: [rec(i, 100)] });
  clock.advance(30_000);
  for (let i = 20; i < 40; i++) await log.append({ topic: 'age', partition: 0, acks: 'leader', records: [rec(i, 100)] });
  clock.advance(30_000);
  await log.runCleaner();
  const p1 = (await log.describeTopic('age')).partitions[0]!;
  assert.ok(p1.logStartOffset > 0 && p1.logStartOffset <= 20, `first batch of segments gone, start ${p1.logStartOffset}`);
  const left = await readAll(log, 'age', 0, p1.logStartOffset);
  assert.ok(left.every((r) => r.offset >= p1.logStartOffset));
  assert.ok(left.some((r) => r.offset === 39));
  clock.advance(60_000);
  await log.runCleaner();
  const p2 = (await log.describeTopic('age')).partitions[0]!;
  assert.deepEqual([p2.logStartOffset, p2.highWatermark, p2.segments, p2.sizeBytes], [40, 40, 1, 0], 'everything expired: one empty segment at the end');
  assert.equal((await log.append({ topic: 'age', partition: 0, acks: 'leader', records: [rec(40)] })).baseOffset, 40, 'offsets go on');
});

test('the cleaner timer runs retention on its own (cleanerIntervalMs)', async (t) => {
  const clock = new ManualClock(0);
  const log = await openLog(t, { dataDir: tempDir(t), clock, cleanerIntervalMs: 1000 });
  await log.createTopic('tick', { segmentBytes: 1024, retentionMs: 5000 });
  for (let i = 0; i < 30; i++) await log.append({ topic: 'tick', partition: 0, acks: 'leader', records: [rec(i, 100)] });
  // the first pass fires at 1000 (nothing expired yet); the timer re-arms after each pass
  clock.advance(1000);
  for (let i = 0; i < 200 && (await log.describeTopic('tick')).partitions[0]!.logStartOffset === 0; i++) {
    await new Promise((r) => setTimeout(r, 5));
    clock.advance(1000);
  }
  assert.equal((await log.describeTopic('tick')).partitions[0]!.logStartOffset, 30);
});

test('compaction keeps the latest record per key at its offset, unkeyed records, and tombstones until deleteRetentionMs', async (t) => {
  const clock = new ManualClock(10_000);
  const dir = tempDir(t);
  let log = await openLog(t, { dataDir: dir, clock });
  await log.createTopic('c', { segmentBytes: 1024, cleanupPolicy: 'compact', deleteRetentionMs: 5000 });
  const latest = new Map<string, { offset: number; value: string | null }>();
  const unkeyed: number[] = [];
  let offset = 0;
  const put = async (key: string | null, value: string | null, extra = 0): Promise<void> => {
    const r = await log.append({
      topic: 'c',
      partition: 0,
      acks: 'leader',
      records: [{ key: key === null ? null : Buffer.from(key), value: value === null ? null : Buffer.from(value.padEnd(60 + extra, '.')) }],
    });
    assert.equal(r.baseOffset, offset++);
    if (key === null) unkeyed.push(r.baseOffset);
    else latest.set(key, { offset: r.baseOffset, value });
  };
  for (let round = 0; round < 8; round++) for (const k of ['a', 'b', 'c', 'd']) await put(k, `${k}${round}`);
  await put(null, 'no key');
  await put('b', null); // tombstone
  for (let i = 0; i < 12; i++) await put('e', `e${i}`); // fills segments, pushes the rest into closed ones
  const hw = offset;
  const sizeBefore = (await log.describeTopic('c')).partitions[0]!.sizeBytes;
  await log.runCleaner();
  const expectKept = (withTombstone: boolean, all: LogRecord[]): void => {
    // a, b, c, d were all written before the segments compaction cleans (e and f may sit in the active one)
    for (const k of ['a', 'c', 'd']) {
      const mine = all.filter((x) => x.key?.toString() === k);
      assert.deepEqual(
        mine.map((r) => r.offset),
        [latest.get(k)!.offset],
        `key ${k} kept only at its latest offset`,
      );
      assert.equal(mine[0]!.value!.toString().replace(/\.+$/, ''), latest.get(k)!.value);
    }
    const bs = all.filter((x) => x.key?.toString() === 'b');
    assert.deepEqual(
      bs.map((r) => [r.offset, r.value]),
      withTombstone ? [[latest.get('b')!.offset, null]] : [],
      'b: its tombstone, then nothing',
    );
    assert.ok(unkeyed.every((o) => all.some((r) => r.offset === o)), 'unkeyed records stay');
  };
  let all = await readAll(log, 'c', 0, 0);
  assert.ok(all.length < hw, `compacted ${hw} -> ${all.length}`);
  assert.ok((await log.describeTopic('c')).partitions[0]!.sizeBytes < sizeBefore);
  expectKept(true, all);
  assert.ok(all.every((r, i) => i === 0 || r.offset > all[i - 1]!.offset), 'offsets increase, with gaps');
  assert.equal((await log.fetch({ topic: 'c', partition: 0, offset: 1 })).records[0]!.offset > 1, true, 'a fetch inside a gap lands on the next record');
  assert.equal((await log.describeTopic('c')).partitions[0]!.logStartOffset, 0, 'compaction does not move the log start');
  assert.ok(log.stats().compactions >= 1);
  // past deleteRetentionMs the tombstone itself goes (once more is written, so the cleaner has dirty bytes)
  clock.advance(6000);
  for (let i = 0; i < 30; i++) await put('f', `f${i}`, 200);
  await log.runCleaner();
  all = await readAll(log, 'c', 0, 0);
  expectKept(false, all);
  // it all survives a restart
  await log.close();
  log = await openLog(t, { dataDir: dir, clock, verifyOnOpen: 'all' });
  const again = await readAll(log, 'c', 0, 0);
  assert.deepEqual(
    again.map((r) => r.offset),
    all.map((r) => r.offset),
  );
  assert.equal((await log.append({ topic: 'c', partition: 0, acks: 'leader', records: [rec(0)] })).baseOffset, offset);
});

test('compact,delete does both; a compact-only topic is never trimmed by retention', async (t) => {
  const clock = new ManualClock(0);
  const log = await openLog(t, { dataDir: tempDir(t), clock });
  await log.createTopic('both', { segmentBytes: 1024, cleanupPolicy: 'compact,delete', retentionMs: 1000 });
  await log.createTopic('only', { segmentBytes: 1024, cleanupPolicy: 'compact', retentionMs: 1000 });
  for (const topic of ['both', 'only']) for (let i = 0; i < 30; i++) await log.append({ topic, partition: 0, acks: 'leader', records: [rec(i, 100)] });
  clock.advance(5000);
  await log.runCleaner();
  assert.equal((await log.describeTopic('both')).partitions[0]!.logStartOffset, 30);
  assert.equal((await log.describeTopic('only')).partitions[0]!.logStartOffset, 0);
  assert.equal((await readAll(log, 'only', 0, 0)).length, 30, 'unique keys: compaction keeps all');
});
