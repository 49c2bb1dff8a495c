/**
 * Record batches closed by bytes, through a real server: records of random sizes (empty to larger
 * than a 64 KiB socket read, with and without keys and headers) grouped under a random byte limit,
 * appended with several batches in flight (so the server assembles large frames across socket
 * reads while the next ones arrive), then fetched back: every record must come back identical, in
 * order, at consecutive offsets.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom } from '../../src/core/random.js';
import { BATCH_HEADER_BYTES, encodeRecordBatch, recordBytesInBatch } from '../../src/queue/log/record-batch.js';
import { seedFor } from '../../src/queue/log/test-helpers.js';
import { startTestServer } from '../../src/queue/server/test-helpers.js';
import type { LogRecord, ProducerRecord } from '../../src/queue/types.js';

function bytes(rnd: SeededRandom, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = rnd.int(256);
  return b;
}

function randomRecord(rnd: SeededRandom): ProducerRecord {
  const roll = rnd.next();
  // Mostly small; some around 1 KB; a few bigger than one socket read.
  const size = roll < 0.5 ? rnd.int(200) : roll < 0.9 ? 900 + rnd.int(300) : 60_000 + rnd.int(20_000);
  const r: ProducerRecord = { key: rnd.next() < 0.3 ? bytes(rnd, 1 + rnd.int(16)) : null, value: rnd.next() < 0.05 ? null : bytes(rnd, size) };
  if (rnd.next() < 0.2) r.headers = [{ key: `h${rnd.int(100)}`, value: bytes(rnd, rnd.int(20)) }];
  return r;
}

/** Groups records into batches of at most `maxBytes` encoded bytes (a record too big for that goes alone). */
function byBytes(records: ProducerRecord[], maxBytes: number): ProducerRecord[][] {
  const out: ProducerRecord[][] = [];
  let open: ProducerRecord[] = [];
  let size = BATCH_HEADER_BYTES;
  for (const r of records) {
    if (open.length > 0 && size + recordBytesInBatch(r, open.length) > maxBytes) {
      out.push(open);
      open = [];
      size = BATCH_HEADER_BYTES;
    }
    size += recordBytesInBatch(r, open.length);
    open.push(r);
  }
  if (open.length > 0) out.push(open);
  return out;
}

test('records in byte-bounded batches come back identical after a pipelined produce and a fetch (random sizes)', async (t) => {
  const seed = seedFor(t);
  const rnd = new SeededRandom(seed);
  const ts = await startTestServer(t);
  const client = await ts.connect({ requestTimeoutMs: 30_000 });
  for (let round = 0; round < 3; round++) {
    const topic = `bytes-${round}`;
    await client.createTopic(topic, { partitions: 1 });
    const records = Array.from({ length: 300 + rnd.int(500) }, () => randomRecord(rnd));
    const maxBytes = [4 * 1024, 64 * 1024, 256 * 1024][round]!;
    const batches = byBytes(records, maxBytes);
    const encoded = batches.map((b) => encodeRecordBatch(b, { now: 1_700_000_000_000 }));
    for (let i = 0; i < batches.length; i++) {
      const exact = BATCH_HEADER_BYTES + batches[i]!.reduce((n, r, j) => n + recordBytesInBatch(r, j), 0);
      assert.equal(encoded[i]!.length, exact, `seed ${seed}: batch ${i} is the size recordBytesInBatch adds up to`);
      if (batches[i]!.length > 1) assert.ok(encoded[i]!.length <= maxBytes, `seed ${seed}: batch ${i} of ${encoded[i]!.length} bytes is over ${maxBytes}`);
    }
    // Up to 8 batches in flight, as a producer with a window of unacknowledged messages keeps.
    let next = 0;
    const bases: number[] = [];
    const worker = async (): Promise<void> => {
      while (next < encoded.length) {
        const i = next++;
        bases[i] = (await client.appendRaw(topic, 0, encoded[i]!, 'leader')).baseOffset;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    // The requests went out in order on one connection, so offsets follow batch order.
    let expectBase = 0;
    for (let i = 0; i < batches.length; i++) {
      assert.equal(bases[i], expectBase, `seed ${seed}: batch ${i} base offset`);
      expectBase += batches[i]!.length;
    }
    // Overwrite what the client sent: the server must hold nothing that points into it.
    for (const b of encoded) b.fill(0);
    const got: LogRecord[] = [];
    let offset = 0;
    while (offset < records.length) {
      const r = await client.fetch({ topic, partition: 0, offset, maxBytes: 512 * 1024 });
      got.push(...r.records);
      offset = r.nextOffset;
    }
    assert.equal(got.length, records.length, `seed ${seed}`);
    for (let i = 0; i < records.length; i++) {
      const want = records[i]!;
      const have = got[i]!;
      assert.equal(have.offset, i, `seed ${seed}: record ${i} offset`);
      assert.deepEqual(have.key, want.key, `seed ${seed}: record ${i} key`);
      assert.deepEqual(have.value, want.value, `seed ${seed}: record ${i} value`);
      assert.deepEqual(have.headers, want.headers ?? [], `seed ${seed}: record ${i} headers`);
    }
  }
});
