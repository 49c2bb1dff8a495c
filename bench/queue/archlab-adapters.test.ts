import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SeededRandom, freshSeed } from '../../src/core/random.js';
import { Log } from '../../src/queue/log/index.js';
import { BATCH_HEADER_BYTES, encodeRecordBatch } from '../../src/queue/log/record-batch.js';
import { BatchSizer, splitIntoBatches, type LogClient } from './archlab-adapters.js';
import { BenchCheckError, Payloads } from './payload.js';
import { consume, produce, producePrepared, type PreparedBatch, type Session } from './runner.js';
import { testLogTarget } from './test-helpers.js';

const KiB = 1024;

test('batches close at maxRecords or maxBytes, whichever comes first; a record too big for any batch goes alone (random sizes)', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  for (let round = 0; round < 50; round++) {
    const maxRecords = 1 + rnd.int(300);
    const maxBytes = BATCH_HEADER_BYTES + 1 + rnd.int(64 * KiB);
    const bodies = Array.from({ length: rnd.int(600) }, (_, i) => Buffer.alloc(rnd.next() < 0.02 ? maxBytes + rnd.int(1000) : rnd.int(3000), i & 0xff));
    const batches = splitIntoBatches(bodies, new BatchSizer(maxRecords, maxBytes));
    assert.deepEqual(batches.flat().map((r) => r.value), bodies, `seed ${seed}: every body once, in order`);
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i]!;
      const size = encodeRecordBatch(b, { now: 1 }).length;
      assert.ok(b.length >= 1 && b.length <= maxRecords, `seed ${seed}: ${b.length} records`);
      if (b.length > 1) assert.ok(size <= maxBytes, `seed ${seed}: batch of ${size} bytes over ${maxBytes}`);
      // Closed no earlier than the rule says: the next batch's first record would not have fitted.
      const next = batches[i + 1];
      if (next !== undefined && b.length < maxRecords) {
        const joined = encodeRecordBatch([...b, next[0]!], { now: 1 }).length;
        assert.ok(joined > maxBytes, `seed ${seed}: batch ${i} closed at ${size} bytes though the next record fitted (${joined} <= ${maxBytes})`);
      }
    }
  }
});

test('1 KB messages close a 256 KiB batch at 253 records; 100 B messages at 1,000', () => {
  const sizer = new BatchSizer(1000, 256 * KiB);
  const kb = splitIntoBatches(Array.from({ length: 2000 }, () => Buffer.alloc(1024)), sizer);
  assert.deepEqual(
    kb.map((b) => b.length),
    [253, 253, 253, 253, 253, 253, 253, 229],
  );
  assert.ok(encodeRecordBatch(kb[0]!, { now: 1 }).length <= 256 * KiB);
  assert.deepEqual(
    splitIntoBatches(Array.from({ length: 2000 }, () => Buffer.alloc(100)), sizer).map((b) => b.length),
    [1000, 1000],
  );
  assert.throws(() => new BatchSizer(0, 256 * KiB), RangeError);
  assert.throws(() => new BatchSizer(10, BATCH_HEADER_BYTES), RangeError);
});

test('producePrepared keeps at most `window` messages unacknowledged, counting whole batches', async () => {
  const p = new Payloads(64, 3);
  let inflight = 0;
  let maxInflight = 0;
  const sent: number[] = [];
  const session: Session = {
    send: () => Promise.reject(new BenchCheckError('not used')),
    consume: () => Promise.reject(new BenchCheckError('not used')),
    drop: async () => undefined,
    // Uneven batches: 7, 7, ..., as a byte limit makes them.
    prepare: (bodies: Buffer[]): PreparedBatch[] => {
      const out: PreparedBatch[] = [];
      for (let i = 0; i < bodies.length; i += 7) out.push({ messages: Math.min(7, bodies.length - i), data: Math.min(7, bodies.length - i) });
      return out;
    },
    sendPrepared: (data: unknown) => {
      const n = data as number;
      inflight += n;
      maxInflight = Math.max(maxInflight, inflight);
      sent.push(n);
      return new Promise<void>((resolve) =>
        setTimeout(() => {
          inflight -= n;
          resolve();
        }, 1),
      );
    },
  };
  await producePrepared(session, p, 200, 30);
  assert.equal(
    sent.reduce((a, b) => a + b, 0),
    200,
  );
  assert.ok(maxInflight <= 30 && maxInflight >= 21, `max in flight ${maxInflight}`);
});

test('the log target batches by bytes with the same window: every 1 KB message produced and consumed once (embedded log)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-bench-adapter-'));
  const log = await Log.open({ dataDir: dir, cleanerIntervalMs: 0 });
  t.after(async () => {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const appended: number[] = [];
  const watched = new Proxy(log, {
    get(target, prop) {
      if (prop === 'appendRaw') {
        return (topic: string, partition: number, batch: Buffer, acks: 'leader') => {
          appended.push(batch.length);
          return target.appendRaw(topic, partition, batch, acks);
        };
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as unknown as LogClient;
  const target = testLogTarget(watched, 64 * KiB);
  const p = new Payloads(1024, 9);
  for (const prepared of [false, true]) {
    appended.length = 0;
    const session = await target.open(`t-${prepared}`, 'throughput');
    if (prepared) await producePrepared(session, p, 1500, 500);
    else await produce(session, p, 1500, 500);
    await consume(session, p, 1500, 10_000, 'adapter');
    await session.drop();
    assert.ok(appended.length >= 1500 / 63, `${appended.length} batches`);
    for (const bytes of appended) assert.ok(bytes <= 64 * KiB, `a batch of ${bytes} bytes`);
  }
});
