import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { SeededRandom } from '../../core/random.js';
import { seedFor } from './test-helpers.js';
import { isQueueError } from '../errors.js';
import type { Compression, LogRecord, ProducerRecord, RecordHeader } from '../types.js';
import { compressionAvailable } from './codecs.js';
import {
  BATCH_HEADER_BYTES,
  BATCH_MAGIC,
  decodeRecordBatch,
  decodeRecordBatches,
  encodeRecordBatch,
  encodeRetainedBatch,
  readBatchHeader,
  setBaseOffset,
  validateRecords,
  verifyBatch,
} from './record-batch.js';

// ---------------------------------------------------------------------------------------------
// A naive reference encoder: byte arrays, BigInt for int64, zigzag through BigInt. Written from the
// layout in record-batch.ts's doc comment, sharing no code with the module.
// ---------------------------------------------------------------------------------------------

function refVarint(out: number[], v: number): void {
  let z = BigInt(v) >= 0n ? BigInt(v) * 2n : -BigInt(v) * 2n - 1n;
  while (z >= 128n) {
    out.push(Number(z % 128n) + 128);
    z /= 128n;
  }
  out.push(Number(z));
}

function refInt(out: number[], v: number, bytes: number): void {
  let b = BigInt.asUintN(bytes * 8, BigInt(v));
  const tmp: number[] = [];
  for (let i = 0; i < bytes; i++) {
    tmp.unshift(Number(b & 0xffn));
    b >>= 8n;
  }
  out.push(...tmp);
}

function refEncode(records: ProducerRecord[], now: number, pid = -1, epoch = -1, seq = -1): Buffer {
  const ts = records.map((r) => r.timestamp ?? now);
  const base = ts[0]!;
  const body: number[] = [];
  records.forEach((r, i) => {
    const rec: number[] = [0];
    refVarint(rec, ts[i]! - base);
    refVarint(rec, i);
    for (const b of [r.key, r.value]) {
      if (b === null) refVarint(rec, -1);
      else {
        refVarint(rec, b.length);
        rec.push(...b);
      }
    }
    const hs = r.headers ?? [];
    refVarint(rec, hs.length);
    for (const h of hs) {
      const k = [...Buffer.from(h.key, 'utf8')];
      refVarint(rec, k.length);
      rec.push(...k);
      refVarint(rec, h.value.length);
      rec.push(...h.value);
    }
    refVarint(body, rec.length);
    body.push(...rec);
  });
  const afterCrc: number[] = [];
  refInt(afterCrc, 0, 2); // attributes
  refInt(afterCrc, records.length - 1, 4);
  refInt(afterCrc, base, 8);
  refInt(afterCrc, Math.max(...ts), 8);
  refInt(afterCrc, pid, 8);
  refInt(afterCrc, epoch, 2);
  refInt(afterCrc, seq, 4);
  refInt(afterCrc, records.length, 4);
  afterCrc.push(...body);
  const out: number[] = [];
  refInt(out, 0, 8);
  refInt(out, 4 + 1 + 4 + afterCrc.length, 4);
  refInt(out, 0, 4);
  out.push(BATCH_MAGIC);
  refInt(out, crc32(Buffer.from(afterCrc)), 4);
  out.push(...afterCrc);
  return Buffer.from(out);
}

function randomBytes(rnd: SeededRandom, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = rnd.int(256);
  return b;
}

function randomRecord(rnd: SeededRandom): ProducerRecord {
  const pick = (): Buffer | null => {
    const k = rnd.int(10);
    if (k === 0) return null;
    if (k === 1) return Buffer.alloc(0);
    return randomBytes(rnd, rnd.int(k < 8 ? 40 : 400));
  };
  const headers: RecordHeader[] = [];
  const hn = rnd.int(4) === 0 ? rnd.int(4) : 0;
  for (let i = 0; i < hn; i++) headers.push({ key: ['a', 'ключ', '', '🔑x'][rnd.int(4)]!, value: randomBytes(rnd, rnd.int(20)) });
  const r: ProducerRecord = { key: pick(), value: pick() };
  if (hn > 0 || rnd.int(2) === 0) r.headers = headers;
  // timestamps far apart (negative deltas, deltas past 2^31) as well as none
  const tk = rnd.int(4);
  if (tk === 1) r.timestamp = 1_700_000_000_000 + rnd.int(1000);
  if (tk === 2) r.timestamp = 1_700_000_000_000 - rnd.int(2 ** 40);
  if (tk === 3) r.timestamp = rnd.int(2 ** 45);
  return r;
}

function sameRecords(got: LogRecord[], want: ProducerRecord[], now: number, baseOffset: number): void {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    const w = want[i]!;
    assert.equal(g.offset, baseOffset + i);
    assert.equal(g.timestamp, w.timestamp ?? now);
    assert.deepEqual(g.key, w.key);
    assert.deepEqual(g.value, w.value);
    assert.deepEqual(
      g.headers.map((h) => [h.key, Buffer.from(h.value)]),
      (w.headers ?? []).map((h) => [h.key, h.value]),
    );
  });
}

const NOW = 1_700_000_000_123;

test('the encoder writes exactly the bytes of the naive reference, and decoding gives the records back (property, seeded)', (t) => {
  const seed = seedFor(t);
  const rnd = new SeededRandom(seed);
  for (let iter = 0; iter < 300; iter++) {
    const n = 1 + rnd.int(12);
    const records = Array.from({ length: n }, () => randomRecord(rnd));
    const idem = rnd.int(2) === 0;
    const [pid, epoch, seq] = idem ? [rnd.int(2 ** 40), rnd.int(32768), rnd.int(2 ** 31)] : [-1, -1, -1];
    const opts = idem ? { now: NOW, producerId: pid, producerEpoch: epoch, baseSequence: seq } : { now: NOW };
    const buf = encodeRecordBatch(records, opts);
    assert.deepEqual(buf, refEncode(records, NOW, pid, epoch, seq), `seed ${seed} iteration ${iter}`);
    const base = rnd.int(2 ** 50);
    setBaseOffset(buf, base);
    const h = verifyBatch(buf);
    assert.equal(h.baseOffset, base);
    assert.equal(h.producerId, pid);
    assert.equal(h.producerEpoch, epoch);
    assert.equal(h.baseSequence, seq);
    assert.equal(h.lastOffset, base + n - 1);
    sameRecords(decodeRecordBatch(buf, 't', 3), records, NOW, base);
  }
});

test('header fields: lengths, timestamps, counts, topic and partition on every record', () => {
  const records: ProducerRecord[] = [
    { key: Buffer.from('a'), value: Buffer.from('1'), timestamp: 5000 },
    { key: null, value: Buffer.from('2'), timestamp: 9000 },
    { key: Buffer.from('c'), value: null, timestamp: 100 },
  ];
  const buf = encodeRecordBatch(records, { now: NOW });
  const h = readBatchHeader(buf);
  assert.equal(h.totalBytes, buf.length);
  assert.equal(h.batchLength, buf.length - 12);
  assert.equal(h.magic, BATCH_MAGIC);
  assert.equal(h.compression, 'none');
  assert.equal(h.timestampType, 'create');
  assert.equal(h.baseTimestamp, 5000);
  assert.equal(h.maxTimestamp, 9000);
  assert.equal(h.recordCount, 3);
  assert.equal(h.lastOffsetDelta, 2);
  assert.equal(h.producerId, -1);
  const out = decodeRecordBatch(buf, 'orders', 7);
  assert.deepEqual(
    out.map((r) => [r.topic, r.partition, r.offset, r.timestamp]),
    [
      ['orders', 7, 0, 5000],
      ['orders', 7, 1, 9000],
      ['orders', 7, 2, 100],
    ],
  );
});

test('null and empty keys and values stay distinct; unicode header keys; 1 MiB values', () => {
  const big = Buffer.alloc(1024 * 1024, 0x5a);
  big[12345] = 1;
  const records: ProducerRecord[] = [
    { key: null, value: null },
    { key: Buffer.alloc(0), value: Buffer.alloc(0) },
    { key: Buffer.from('ключ-🔑'), value: big, headers: [{ key: 'trace-id-🚀', value: Buffer.from('x') }, { key: '', value: Buffer.alloc(0) }] },
  ];
  for (const compression of ['none', 'gzip', 'lz4'] as Compression[]) {
    if (!compressionAvailable(compression)) continue;
    const buf = encodeRecordBatch(records, { now: NOW, compression });
    assert.equal(readBatchHeader(buf).compression, compression);
    const out = decodeRecordBatch(buf, 't', 0);
    assert.equal(out[0]!.key, null);
    assert.equal(out[0]!.value, null);
    assert.deepEqual(out[1]!.key, Buffer.alloc(0));
    assert.deepEqual(out[1]!.value, Buffer.alloc(0));
    sameRecords(out, records, NOW, 0);
    if (compression !== 'none') assert.ok(buf.length < 64 * 1024, `${compression} shrinks a 1 MiB run of one byte (got ${buf.length})`);
  }
});

test('gzip and lz4 round-trip random batches; zstd is refused with UNSUPPORTED', () => {
  const rnd = new SeededRandom(42);
  for (const compression of ['gzip', 'lz4'] as Compression[]) {
    if (!compressionAvailable(compression)) {
      assert.throws(() => encodeRecordBatch([{ key: null, value: null }], { now: NOW, compression }), (e) => isQueueError(e, 'ARCHLAB_QUEUE_UNSUPPORTED'));
      continue;
    }
    for (let i = 0; i < 30; i++) {
      const records = Array.from({ length: 1 + rnd.int(20) }, () => randomRecord(rnd));
      const buf = encodeRecordBatch(records, { now: NOW, compression });
      setBaseOffset(buf, 1000);
      validateRecords(buf);
      sameRecords(decodeRecordBatch(buf, 't', 0), records, NOW, 1000);
    }
  }
  assert.throws(() => encodeRecordBatch([{ key: null, value: null }], { now: NOW, compression: 'zstd' }), (e) => isQueueError(e, 'ARCHLAB_QUEUE_UNSUPPORTED'));
});

test('setBaseOffset changes no checksum; decode skips records below minOffset; batches laid end to end decode', () => {
  const a = encodeRecordBatch([{ key: null, value: Buffer.from('a') }, { key: null, value: Buffer.from('b') }], { now: NOW });
  const b = encodeRecordBatch([{ key: null, value: Buffer.from('c') }], { now: NOW });
  const crcBefore = readBatchHeader(a).crc;
  setBaseOffset(a, 2 ** 40);
  setBaseOffset(b, 2 ** 40 + 2);
  assert.equal(verifyBatch(a).crc, crcBefore);
  assert.deepEqual(
    decodeRecordBatch(a, 't', 0, 2 ** 40 + 1).map((r) => r.value?.toString()),
    ['b'],
  );
  const all = decodeRecordBatches(Buffer.concat([a, b]), 't', 0, 2 ** 40 + 1);
  assert.deepEqual(
    all.map((r) => [r.offset, r.value?.toString()]),
    [
      [2 ** 40 + 1, 'b'],
      [2 ** 40 + 2, 'c'],
    ],
  );
  assert.throws(() => setBaseOffset(a, -1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('every single flipped byte after the offset, length, epoch and magic fields is caught by the CRC', () => {
  const buf = encodeRecordBatch([{ key: Buffer.from('k'), value: Buffer.from('some value'), headers: [{ key: 'h', value: Buffer.from('v') }] }], { now: NOW });
  for (let i = 17; i < buf.length; i++) {
    const bad = Buffer.from(buf);
    bad[i]! ^= 0x40;
    assert.throws(() => verifyBatch(bad), (e) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT'), `byte ${i}`);
    assert.throws(() => decodeRecordBatch(bad, 't', 0), (e) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT'), `byte ${i}`);
  }
});

test('torn, overlong, wrong-magic and unknown-codec batches are CORRUPT', () => {
  const buf = encodeRecordBatch([{ key: null, value: Buffer.from('hello') }], { now: NOW });
  const isCorrupt = (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT');
  assert.throws(() => verifyBatch(buf.subarray(0, buf.length - 1)), isCorrupt);
  assert.throws(() => verifyBatch(buf.subarray(0, 30)), isCorrupt);
  assert.throws(() => verifyBatch(Buffer.concat([buf, Buffer.alloc(1)])), isCorrupt);
  const magic = Buffer.from(buf);
  magic[16] = 2;
  assert.throws(() => verifyBatch(magic), isCorrupt);
  const len = Buffer.from(buf);
  len.writeInt32BE(10, 8);
  assert.throws(() => verifyBatch(len), isCorrupt);
  // a well-checksummed batch whose records lie about their lengths: CRC passes, record parsing fails
  const lying = Buffer.from(buf);
  lying[BATCH_HEADER_BYTES] = 0x7e; // record length varint far past the end
  lying.writeUInt32BE(crc32(lying.subarray(21)), 17);
  verifyBatch(lying);
  assert.throws(() => validateRecords(lying), isCorrupt);
  assert.throws(() => decodeRecordBatch(lying, 't', 0), isCorrupt);
  // a gzip batch whose block is not gzip
  const gz = encodeRecordBatch([{ key: null, value: Buffer.from('hello') }], { now: NOW, compression: 'gzip' });
  gz.fill(0x33, BATCH_HEADER_BYTES);
  gz.writeUInt32BE(crc32(gz.subarray(21)), 17);
  assert.throws(() => decodeRecordBatch(gz, 't', 0), isCorrupt);
});

test('bad arguments are refused before anything is encoded', () => {
  const bad = (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_BAD_ARGUMENT');
  assert.throws(() => encodeRecordBatch([], { now: NOW }), bad);
  assert.throws(() => encodeRecordBatch([{ key: 'k' as unknown as Buffer, value: null }], { now: NOW }), bad);
  assert.throws(() => encodeRecordBatch([{ key: null, value: null, timestamp: 1.5 }], { now: NOW }), bad);
  assert.throws(() => encodeRecordBatch([{ key: null, value: null }], { now: NOW, producerEpoch: 40000 }), bad);
  assert.throws(() => encodeRecordBatch([{ key: null, value: null }], { now: NOW, compression: 'snappy' as Compression }), bad);
});

test('encodeRetainedBatch keeps offsets, base offset and producer fields of the batch it trims', () => {
  const records: ProducerRecord[] = ['a', 'b', 'c', 'd'].map((v, i) => ({ key: Buffer.from(v), value: Buffer.from(v + v), timestamp: 100 + i }));
  const buf = encodeRecordBatch(records, { now: NOW, producerId: 9, producerEpoch: 1, baseSequence: 40, compression: 'gzip' });
  setBaseOffset(buf, 500);
  const h = verifyBatch(buf);
  const all = decodeRecordBatch(buf, 't', 0);
  const kept = encodeRetainedBatch(h, [all[1]!, all[3]!]);
  const h2 = verifyBatch(kept);
  assert.deepEqual([h2.baseOffset, h2.lastOffset, h2.recordCount, h2.producerId, h2.baseSequence, h2.compression], [500, 503, 2, 9, 40, 'gzip']);
  assert.deepEqual(
    decodeRecordBatch(kept, 't', 0).map((r) => [r.offset, r.timestamp, r.value?.toString()]),
    [
      [501, 101, 'bb'],
      [503, 103, 'dd'],
    ],
  );
  const empty = encodeRetainedBatch(h, []);
  assert.equal(verifyBatch(empty).recordCount, 0);
  assert.deepEqual(decodeRecordBatch(empty, 't', 0), []);
});
