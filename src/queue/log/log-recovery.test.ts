import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isQueueError, type QueueErrorCode } from '../errors.js';
import type { Log } from './log.js';
import { BATCH_HEADER_BYTES, batchSizeAt, encodeRecordBatch } from './record-batch.js';
import { crashCopy, openLog, rec, tempDir } from './test-helpers.js';

const code = (c: QueueErrorCode) => (e: unknown) => isQueueError(e, c);

/** Segment files of a partition dir, oldest first. */
function segments(pdir: string): string[] {
  return readdirSync(pdir)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .map((f) => join(pdir, f));
}

/** Positions of the batches in a segment file. */
function batchPositions(file: string): number[] {
  const buf = readFileSync(file);
  const out: number[] = [];
  for (let at = 0; at < buf.length; at += batchSizeAt(buf, at)) out.push(at);
  return out;
}

function flipByte(file: string, position: number): void {
  const buf = readFileSync(file);
  buf[position]! ^= 0xff;
  writeFileSync(file, buf);
}

async function values(log: Log, topic: string, from = 0): Promise<string[]> {
  const out: string[] = [];
  let offset = from;
  for (;;) {
    const f = await log.fetch({ topic, partition: 0, offset, maxBytes: 1 << 20 });
    out.push(...f.records.map((r) => r.value!.toString('latin1')));
    if (f.nextOffset === offset) return out;
    offset = f.nextOffset;
  }
}

/** A log with `n` records acked with fsync in small segments, and the copy a crash at that moment leaves. */
async function crashedLog(t: Parameters<typeof tempDir>[0], n: number, segmentBytes = 2048) {
  const dir = tempDir(t);
  const log = await openLog(t, { dataDir: dir });
  await log.createTopic('r', { segmentBytes });
  for (let i = 0; i < n; i++) await log.append({ topic: 'r', partition: 0, acks: 'fsync', records: [rec(i, 100)] });
  const want = await values(log, 'r');
  const copy = crashCopy(t, dir);
  return { dir, log, copy, want, pdir: join(copy, 'r-0') };
}

test('after a crash a torn tail (a write cut short) is truncated and every acked record is served', async (t) => {
  const { copy, want, pdir } = await crashedLog(t, 40);
  const last = segments(pdir).pop()!;
  const sizeBefore = statSync(last).size;
  const torn = encodeRecordBatch([rec(999, 100)], { now: 1 });
  appendFileSync(last, torn.subarray(0, torn.length - 7));
  const log = await openLog(t, { dataDir: copy });
  assert.deepEqual(await values(log, 'r'), want);
  assert.equal(statSync(last).size, sizeBefore, 'the torn bytes are gone from the file');
  assert.equal((await log.append({ topic: 'r', partition: 0, acks: 'fsync', records: [rec(40, 100)] })).baseOffset, 40);
});

test('a tail of zeros (an extended file never written) is truncated too', async (t) => {
  const { copy, want, pdir } = await crashedLog(t, 10);
  appendFileSync(segments(pdir).pop()!, Buffer.alloc(4096));
  const log = await openLog(t, { dataDir: copy });
  assert.deepEqual(await values(log, 'r'), want);
});

test('a CRC-bad batch followed by a good one in the last segment is corruption, not a torn tail', async (t) => {
  const { copy, pdir } = await crashedLog(t, 12, 1 << 20);
  const file = segments(pdir).pop()!;
  const pos = batchPositions(file);
  flipByte(file, pos[5]! + BATCH_HEADER_BYTES + 3);
  await assert.rejects(openLog(t, { dataDir: copy }), (e) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT') && e.details?.position === pos[5] && /onCorrupt/.test(e.message));
  // the operator's way out: cut the partition at the bad batch
  const log = await openLog(t, { dataDir: copy, onCorrupt: 'truncate' });
  assert.equal((await log.describeTopic('r')).partitions[0]!.highWatermark, 5);
  assert.equal((await values(log, 'r')).length, 5);
});

test('a corrupt batch in the middle of a closed segment fails the open with CORRUPT, naming the file', async (t) => {
  const { copy, pdir } = await crashedLog(t, 60);
  const files = segments(pdir);
  assert.ok(files.length >= 3);
  const closed = files[files.length - 2]!;
  const pos = batchPositions(closed);
  flipByte(closed, pos[1]! + BATCH_HEADER_BYTES + 1);
  // checked at open when it lies past the checkpoint (here: no checkpoint survived) or with verifyOnOpen 'all'
  rmSync(join(pdir, 'checkpoint'), { force: true });
  await assert.rejects(openLog(t, { dataDir: copy }), (e) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT') && e.details?.path === closed);
  await assert.rejects(openLog(t, { dataDir: copy, verifyOnOpen: 'all' }), code('ARCHLAB_QUEUE_CORRUPT'));
  // onCorrupt 'truncate' cuts the partition at the bad batch: the rest of that segment and every later one go
  const badOffset = Number(readFileSync(closed).readBigInt64BE(pos[1]!));
  const log = await openLog(t, { dataDir: copy, onCorrupt: 'truncate' });
  const p = (await log.describeTopic('r')).partitions[0]!;
  assert.equal(p.highWatermark, badOffset);
  assert.equal(segments(pdir).length, files.length - 1);
  assert.equal((await values(log, 'r')).length, badOffset);
  assert.equal((await log.append({ topic: 'r', partition: 0, acks: 'fsync', records: [rec(0)] })).baseOffset, badOffset);
  await log.close();
  const reopened = await openLog(t, { dataDir: copy });
  assert.equal((await reopened.describeTopic('r')).partitions[0]!.highWatermark, badOffset + 1);
});

test('below a clean checkpoint, a corrupt batch is caught when it is read (CRC on fetch), not at open', async (t) => {
  const dir = tempDir(t);
  let log = await openLog(t, { dataDir: dir });
  await log.createTopic('r', { segmentBytes: 2048 });
  for (let i = 0; i < 40; i++) await log.append({ topic: 'r', partition: 0, acks: 'leader', records: [rec(i, 100)] });
  await log.close();
  const file = segments(join(dir, 'r-0'))[0]!;
  flipByte(file, batchPositions(file)[2]! + BATCH_HEADER_BYTES + 1);
  log = await openLog(t, { dataDir: dir });
  await assert.rejects(log.fetch({ topic: 'r', partition: 0, offset: 2 }), code('ARCHLAB_QUEUE_CORRUPT'));
  assert.equal((await log.fetch({ topic: 'r', partition: 0, offset: 30 })).records[0]!.offset, 30, 'the rest is served');
  await log.close();
  await assert.rejects(openLog(t, { dataDir: dir, verifyOnOpen: 'all' }), code('ARCHLAB_QUEUE_CORRUPT'));
});

test('idempotent producer state survives a crash (rebuilt from the snapshot at the last roll plus batch headers)', async (t) => {
  const dir = tempDir(t);
  const log = await openLog(t, { dataDir: dir });
  await log.createTopic('i', { segmentBytes: 1024 });
  const { producerId } = await log.initProducerId();
  for (let seq = 0; seq < 30; seq++) {
    await log.append({ topic: 'i', partition: 0, acks: 'fsync', producerId, producerEpoch: 0, baseSequence: seq, records: [rec(seq, 80)] });
  }
  const copy = crashCopy(t, dir);
  const again = await openLog(t, { dataDir: copy });
  const retry = await again.append({ topic: 'i', partition: 0, acks: 'fsync', producerId, producerEpoch: 0, baseSequence: 29, records: [rec(29, 80)] });
  assert.deepEqual(retry, { baseOffset: 29, lastOffset: 29, duplicate: true });
  await assert.rejects(
    again.append({ topic: 'i', partition: 0, acks: 'fsync', producerId, producerEpoch: 0, baseSequence: 31, records: [rec(31)] }),
    code('ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE'),
  );
  assert.equal((await again.append({ topic: 'i', partition: 0, acks: 'fsync', producerId, producerEpoch: 0, baseSequence: 30, records: [rec(30)] })).baseOffset, 30);
  // ids handed out before the crash are not handed out again
  assert.ok((await again.initProducerId()).producerId > producerId);
});

test('maxDiskBytes refuses appends with DISK_FULL (retryable), acknowledges nothing, and lets go once retention frees room', async (t) => {
  const log = await openLog(t, { dataDir: tempDir(t), maxDiskBytes: 6000 });
  await log.createTopic('d', { segmentBytes: 1024, retentionBytes: 2048 });
  let acked = 0;
  let refused: unknown;
  for (let i = 0; i < 100 && refused === undefined; i++) {
    try {
      await log.append({ topic: 'd', partition: 0, acks: 'fsync', records: [rec(i, 200)] });
      acked++;
    } catch (err) {
      refused = err;
    }
  }
  assert.ok(isQueueError(refused, 'ARCHLAB_QUEUE_DISK_FULL') && refused.retryable, String(refused));
  assert.ok(log.stats().diskBytes <= 6000);
  const p = (await log.describeTopic('d')).partitions[0]!;
  assert.equal(p.highWatermark, acked, 'the refused batch took no offset');
  await assert.rejects(log.append({ topic: 'd', partition: 0, acks: 'none', records: [rec(0, 200)] }), code('ARCHLAB_QUEUE_DISK_FULL'), 'even acks none is refused, not dropped');
  await log.runCleaner();
  assert.equal((await log.append({ topic: 'd', partition: 0, acks: 'fsync', records: [rec(acked, 200)] })).baseOffset, acked);
});

test('a real ENOSPC from the kernel (/dev/full) fails the append with DISK_FULL and leaves the partition usable', { skip: !existsSync('/dev/full') }, async (t) => {
  const dir = tempDir(t);
  const first = await openLog(t, { dataDir: dir });
  await first.createTopic('full');
  await first.close();
  const seg = join(dir, 'full-0', '00000000000000000000.log');
  rmSync(seg);
  for (const f of readdirSync(join(dir, 'full-0'))) if (!f.endsWith('.log')) rmSync(join(dir, 'full-0', f));
  symlinkSync('/dev/full', seg);
  const log = await openLog(t, { dataDir: dir });
  const fail = log.append({ topic: 'full', partition: 0, acks: 'leader', records: [rec(0)] });
  await assert.rejects(fail, (e) => isQueueError(e, 'ARCHLAB_QUEUE_DISK_FULL') && e.retryable && e.details?.errno === 'ENOSPC');
  // queued behind it in the same tick: refused too, nothing acknowledged
  const [a, b] = await Promise.allSettled([
    log.append({ topic: 'full', partition: 0, acks: 'leader', records: [rec(1)] }),
    log.append({ topic: 'full', partition: 0, acks: 'leader', records: [rec(2)] }),
  ]);
  assert.equal(a.status, 'rejected');
  assert.equal(b.status, 'rejected');
  assert.equal((await log.describeTopic('full')).partitions[0]!.highWatermark, 0);
  assert.equal(log.stats().diskBytes, 0, 'refused bytes are not counted');
  assert.ok(log.stats().writeErrors >= 2);
});
