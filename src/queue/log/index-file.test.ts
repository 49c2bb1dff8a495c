import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../../core/random.js';
import { seedFor } from './test-helpers.js';
import { isQueueError } from '../errors.js';
import { OffsetIndex, TimeIndex } from './index-file.js';

/** A segment as a list of batches: (relative base offset, position, max timestamp), in file order. */
interface Batch {
  rel: number;
  pos: number;
  maxTs: number;
}

function randomSegment(rnd: SeededRandom): Batch[] {
  const out: Batch[] = [];
  let rel = 0;
  let pos = 0;
  const n = 1 + rnd.int(300);
  for (let i = 0; i < n; i++) {
    out.push({ rel, pos, maxTs: 1000 + rnd.int(5000) });
    rel += 1 + rnd.int(rnd.int(4) === 0 ? 50 : 3); // gaps as compaction leaves them
    pos += 61 + rnd.int(rnd.int(8) === 0 ? 20000 : 500);
  }
  return out;
}

test('OffsetIndex.lookup and TimeIndex.lookup agree with a linear scan on random segments (seeded)', (t) => {
  const seed = seedFor(t);
  const rnd = new SeededRandom(seed);
  for (let iter = 0; iter < 200; iter++) {
    const batches = randomSegment(rnd);
    const interval = [1, 512, 4096, 65536][rnd.int(4)]!;
    // build the indexes as a segment does (an entry once interval bytes passed since the last one),
    // and keep the entries in a plain list: the reference
    const oi = new OffsetIndex();
    const ti = new TimeIndex();
    const entries: { rel: number; pos: number }[] = [];
    let since = 0;
    let runningMax = -Infinity;
    batches.forEach((b, i) => {
      if (since >= interval) {
        oi.append(b.rel, b.pos);
        entries.push({ rel: b.rel, pos: b.pos });
        if (runningMax !== -Infinity) ti.maybeAppend(runningMax, b.rel);
        since = 0;
      }
      since += (batches[i + 1]?.pos ?? b.pos + 100) - b.pos;
      runningMax = Math.max(runningMax, b.maxTs);
    });
    assert.equal(oi.size, entries.length);
    const lastRel = batches[batches.length - 1]!.rel;
    let holder = 0;
    for (let q = 0; q <= lastRel + 2; q++) {
      while (holder + 1 < batches.length && batches[holder + 1]!.rel <= q) holder++;
      let want = 0;
      for (const e of entries) if (e.rel <= q) want = e.pos;
      const pos = oi.lookup(q);
      assert.equal(pos, want, `seed ${seed}: lookup(${q})`);
      assert.ok(pos <= batches[holder]!.pos, `seed ${seed}: lookup(${q}) = ${pos} is past the batch holding it`);
    }
    for (let k = 0; k < 50; k++) {
      const ts = 900 + rnd.int(5300);
      const startRel = ti.lookup(ts);
      // everything below startRel is older than ts: the scan from there misses no record >= ts
      for (const b of batches) if (b.rel < startRel) assert.ok(b.maxTs < ts, `seed ${seed}: batch ${b.rel} (max ${b.maxTs}) below ${startRel} for ts ${ts}`);
    }
  }
});

test('indexes survive their file round trip and refuse malformed files', () => {
  const oi = new OffsetIndex();
  oi.append(0, 0);
  oi.append(10, 4096);
  oi.append(25, 9000);
  const back = OffsetIndex.fromBuffer(oi.toBuffer(), 10_000);
  assert.equal(back.size, 3);
  assert.equal(back.lookup(24), 4096);
  assert.equal(back.lookup(25), 9000);
  const isCorrupt = (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT');
  assert.throws(() => OffsetIndex.fromBuffer(oi.toBuffer(), 9000), isCorrupt, 'a position past the log');
  assert.throws(() => OffsetIndex.fromBuffer(oi.toBuffer().subarray(0, 12), 10_000), isCorrupt, 'a partial entry');
  const swapped = Buffer.concat([oi.toBuffer().subarray(8, 16), oi.toBuffer().subarray(0, 8)]);
  assert.throws(() => OffsetIndex.fromBuffer(swapped, 10_000), isCorrupt, 'entries out of order');

  const ti = new TimeIndex();
  ti.maybeAppend(-5, 3);
  ti.maybeAppend(2 ** 42, 9);
  ti.maybeAppend(100, 12); // not above the last max: ignored
  assert.equal(ti.size, 2);
  const tb = TimeIndex.fromBuffer(ti.toBuffer(), 9);
  assert.deepEqual(tb.last(), { maxTimestamp: 2 ** 42, relOffset: 9 });
  assert.equal(tb.lookup(0), 3);
  assert.equal(tb.lookup(-5), 0);
  assert.throws(() => TimeIndex.fromBuffer(ti.toBuffer(), 8), isCorrupt);
  assert.throws(() => TimeIndex.fromBuffer(Buffer.concat([ti.toBuffer(), ti.toBuffer()]), 100), isCorrupt);
});

test('truncation drops the entries past the cut', () => {
  const oi = new OffsetIndex();
  for (let i = 1; i <= 5; i++) oi.append(i * 10, i * 1000);
  oi.truncateToPosition(3000);
  assert.deepEqual(oi.last(), { relOffset: 20, position: 2000 });
  const ti = new TimeIndex();
  for (let i = 1; i <= 5; i++) ti.maybeAppend(i * 100, i * 10);
  ti.truncateToOffset(25);
  assert.deepEqual(ti.last(), { maxTimestamp: 200, relOffset: 20 });
});
