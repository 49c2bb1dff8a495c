import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compactionKeeps, planCompaction, planRetention, shouldRoll, type SegmentSummary } from './policy.js';

const seg = (baseOffset: number, nextOffset: number, sizeBytes: number, maxTimestamp: number, firstAppendAtMs: number | null = 0): SegmentSummary => ({
  baseOffset,
  nextOffset,
  sizeBytes,
  maxTimestamp,
  firstAppendAtMs,
});
const empty = (base: number): SegmentSummary => seg(base, base, 0, -Infinity, null);

test('shouldRoll: by size, by age, never an empty segment, and before offsets or positions overflow 32 bits', () => {
  const cfg = { segmentBytes: 1000, segmentMs: 60_000 };
  assert.equal(shouldRoll(empty(0), 5000, 10, 0, cfg), false, 'an oversized batch gets the empty segment');
  assert.equal(shouldRoll(seg(0, 10, 900, 5, 0), 100, 20, 0, cfg), false, 'exactly full');
  assert.equal(shouldRoll(seg(0, 10, 900, 5, 0), 101, 20, 0, cfg), true);
  assert.equal(shouldRoll(seg(0, 10, 10, 5, 1000), 1, 20, 60_999, cfg), false);
  assert.equal(shouldRoll(seg(0, 10, 10, 5, 1000), 1, 20, 61_000, cfg), true);
  assert.equal(shouldRoll(seg(0, 10, 10, 5, 0), 1, 2 ** 32, 0, cfg), true, 'relative offsets are u32');
  assert.equal(shouldRoll(seg(0, 10, 2 ** 32 - 10, 5, 0), 100, 20, 0, { segmentBytes: 2 ** 40, segmentMs: 1e12 }), true, 'positions are u32');
});

test('planRetention by age deletes the oldest expired run and rolls an expired active segment', () => {
  const cfg = { retentionBytes: -1, retentionMs: 1000, cleanupPolicy: 'delete' as const };
  const segs = [seg(0, 10, 100, 100), seg(10, 20, 100, 500), seg(20, 30, 100, 2000), seg(30, 35, 50, 2500)];
  assert.deepEqual(planRetention(segs, 1099, cfg), { rollActive: false, deleteCount: 0, reason: 'none' });
  assert.deepEqual(planRetention(segs, 1100, cfg), { rollActive: false, deleteCount: 1, reason: 'age' });
  assert.deepEqual(planRetention(segs, 1500, cfg), { rollActive: false, deleteCount: 2, reason: 'age' });
  // a newer segment behind an old one stops nothing: the oldest-first run ends at the first young one
  const mixed = [seg(0, 10, 100, 100), seg(10, 20, 100, 5000), seg(20, 30, 100, 200), empty(30)];
  assert.equal(planRetention(mixed, 1200, cfg).deleteCount, 1);
  // everything expired, active too: roll, then all of them go
  assert.deepEqual(planRetention(segs, 10_000, cfg), { rollActive: true, deleteCount: 4, reason: 'age' });
  // an empty active segment is never expired and never deleted
  assert.deepEqual(planRetention([seg(0, 10, 100, 100), empty(10)], 10_000, cfg), { rollActive: false, deleteCount: 1, reason: 'age' });
  assert.equal(planRetention(segs, 10_000, { ...cfg, retentionMs: -1 }).deleteCount, 0);
  assert.equal(planRetention(segs, 10_000, { ...cfg, cleanupPolicy: 'compact' }).deleteCount, 0, 'compact-only topics keep all');
  assert.equal(planRetention(segs, 10_000, { ...cfg, cleanupPolicy: 'compact,delete' }).deleteCount, 4);
});

test("planRetention by size follows Kafka's rule: drop the oldest while the rest still reaches retentionBytes", () => {
  const cfg = { retentionBytes: 250, retentionMs: -1, cleanupPolicy: 'delete' as const };
  const segs = [seg(0, 10, 100, 0), seg(10, 20, 100, 0), seg(20, 30, 100, 0), seg(30, 35, 50, 0)];
  // total 350: minus 100 = 250 >= 250 -> delete; minus next 100 = 150 < 250 -> stop
  assert.deepEqual(planRetention(segs, 0, cfg), { rollActive: false, deleteCount: 1, reason: 'size' });
  assert.equal(planRetention(segs, 0, { ...cfg, retentionBytes: 0 }).deleteCount, 3, 'never the active one');
  assert.equal(planRetention(segs, 0, { ...cfg, retentionBytes: 1000 }).deleteCount, 0);
  assert.deepEqual(planRetention(segs, 5000, { ...cfg, retentionMs: 5001 }), { rollActive: false, deleteCount: 1, reason: 'size' });
  assert.deepEqual(planRetention(segs, 5000, { ...cfg, retentionMs: 5000 }), { rollActive: true, deleteCount: 4, reason: 'age+size' });
});

test('planCompaction cleans closed segments once the dirty share reaches the ratio', () => {
  const cfg = { cleanupPolicy: 'compact' as const, minCleanableDirtyRatio: 0.5 };
  const segs = [seg(0, 10, 100, 0), seg(10, 20, 100, 0), seg(20, 30, 100, 0), empty(30)];
  assert.equal(planCompaction(segs, 0, cfg), 3);
  assert.equal(planCompaction(segs, 10, cfg), 3, '200 of 300 bytes dirty');
  assert.equal(planCompaction(segs, 20, cfg), 0, '100 of 300 dirty is below half');
  assert.equal(planCompaction(segs, 30, cfg), 0);
  assert.equal(planCompaction(segs, 0, { ...cfg, cleanupPolicy: 'delete' }), 0);
  assert.equal(planCompaction([seg(0, 10, 100, 0)], 0, cfg), 0, 'the active segment is never compacted');
});

test('compactionKeeps: latest per key, unkeyed kept, tombstones kept deleteRetentionMs then dropped', () => {
  const latest = new Map([
    ['a', 5],
    ['b', 7],
  ]);
  const e = (offset: number, key: string | null, tombstone = false, timestamp = 0) => ({ offset, key, tombstone, timestamp });
  assert.equal(compactionKeeps(e(1, 'a'), latest, 0, 100), false);
  assert.equal(compactionKeeps(e(5, 'a'), latest, 0, 100), true);
  assert.equal(compactionKeeps(e(2, null), latest, 0, 100), true);
  assert.equal(compactionKeeps(e(3, 'z'), latest, 0, 100), true, 'a key the bounded map did not hold is kept');
  assert.equal(compactionKeeps(e(7, 'b', true, 1000), latest, 1099, 100), true);
  assert.equal(compactionKeeps(e(7, 'b', true, 1000), latest, 1100, 100), false);
  assert.equal(compactionKeeps(e(6, 'b', true, 1000), latest, 0, 100), false, 'a superseded tombstone goes at once');
});
