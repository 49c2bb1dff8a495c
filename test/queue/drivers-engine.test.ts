/**
 * The engine drivers' consumer as a group member, on the embedded log: rebalances when members join,
 * leave or die, handler failures, offsets out of range, manual commits. (The conformance suite checks
 * the common cases on every driver; these are the group protocol's own.)
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ArchlabError } from '../../src/core/errors.js';
import { isQueueError } from '../../src/queue/errors.js';
import { embeddedDriver } from '../../src/queue/drivers/embedded.js';
import type { EngineDriver } from '../../src/queue/drivers/engine.js';
import type { Consumer, LogRecord } from '../../src/queue/types.js';

let dir: string;
let driver: EngineDriver;
let n = 0;
const name = (what: string): string => `${what}-${n++}`;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'archlab-drivers-engine-'));
  driver = await embeddedDriver({
    dataDir: dir,
    consumer: { fetchMaxWaitMs: 50 },
    producer: { lingerMs: 1 },
    log: { groups: { minSessionTimeoutMs: 100 } },
  });
});

after(async () => {
  await driver?.close();
  await rm(dir, { recursive: true, force: true });
});

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function start(consumer: Consumer, handler?: (r: LogRecord) => Promise<void> | void): { records: LogRecord[]; done: Promise<void> } {
  const records: LogRecord[] = [];
  const done = consumer.run(async (r) => {
    records.push(r);
    await handler?.(r);
  });
  done.catch(() => undefined);
  return { records, done };
}

async function produce(topic: string, count: number, prefix = 'v'): Promise<void> {
  const p = driver.producer();
  await Promise.all(Array.from({ length: count }, (_, i) => p.send(topic, { key: Buffer.from(`k${i}`), value: Buffer.from(`${prefix}${i}`) })));
  await p.close();
}

const parts = (c: Consumer): number[] => c.assignment().map((p) => p.partition).sort();

test('a member that leaves gives its partitions to the others at once', async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 4 });
  const a = driver.consumer({ group, topics: [topic], sessionTimeoutMs: 600 });
  const b = driver.consumer({ group, topics: [topic], sessionTimeoutMs: 600 });
  const ra = start(a);
  const rb = start(b);
  await waitFor('a split', () => parts(a).length > 0 && parts(b).length > 0 && parts(a).length + parts(b).length === 4);
  await b.close();
  await rb.done;
  await waitFor('a holding all 4', () => parts(a).length === 4);
  await produce(topic, 20);
  await waitFor('20 records on a', () => ra.records.length >= 20);
  await a.close();
  await ra.done;
});

test('a member that stops heartbeating is removed after its session timeout', async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 2 });
  const a = driver.consumer({ group, topics: [topic], sessionTimeoutMs: 600 });
  const ra = start(a);
  await waitFor('a holding both', () => parts(a).length === 2);
  // A raw member that joins and then never heartbeats (a crashed process).
  const ghost = driver.log.joinGroup({ group, topics: [topic], sessionTimeoutMs: 300, clientId: 'ghost' });
  const joined = await ghost;
  assert.equal(joined.assignment.length, 1, 'the ghost got a partition');
  await waitFor('a holding one', () => parts(a).length === 1);
  await waitFor('a holding both again after the ghost timed out', () => parts(a).length === 2, 5000);
  await a.close();
  await ra.done;
});

test('every record is handled at least once while a member joins mid-stream', async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 3 });
  await produce(topic, 150);
  const slow = (): Promise<void> => new Promise((r) => setTimeout(r, 3));
  const a = driver.consumer({ group, topics: [topic], sessionTimeoutMs: 600 });
  const ra = start(a, slow);
  await waitFor('a under way', () => ra.records.length >= 20);
  const b = driver.consumer({ group, topics: [topic], sessionTimeoutMs: 600 });
  const rb = start(b, slow);
  const seen = (): Set<string> => new Set([...ra.records, ...rb.records].map((r) => r.value!.toString()));
  await waitFor('all 150 records', () => seen().size === 150, 10_000);
  assert.ok(rb.records.length > 0, 'the member that joined took partitions and handled records');
  const total = ra.records.length + rb.records.length;
  // At-least-once: a record handled but not yet committed when its partition moved is handled again.
  assert.ok(total >= 150 && total - 150 <= 150, `handled ${total} times (${total - 150} duplicates)`);
  await a.close();
  await b.close();
  await Promise.all([ra.done, rb.done]);
});

test('a handler that throws stops the consumer; the next one starts at the failed record', async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 1 });
  await produce(topic, 6);
  const boom = new ArchlabError('TEST_HANDLER_FAILED', 'handler failed');
  const c = driver.consumer({ group, topics: [topic] });
  const r = start(c, (rec) => {
    if (rec.value!.toString() === 'v3') throw boom;
  });
  await assert.rejects(r.done, (err: unknown) => err === boom);
  assert.deepEqual(
    r.records.map((x) => x.value!.toString()),
    ['v0', 'v1', 'v2', 'v3'],
  );
  const next = driver.consumer({ group, topics: [topic] });
  const r2 = start(next);
  await waitFor('the rest', () => r2.records.length >= 3);
  assert.equal(r2.records[0]!.value!.toString(), 'v3', 'the failed record comes again');
  await next.close();
  await r2.done;
});

test('close() called from inside the handler returns and ends run()', async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 1 });
  await produce(topic, 5);
  const c = driver.consumer({ group, topics: [topic] });
  const r = start(c, async (rec) => {
    if (rec.value!.toString() === 'v1') await c.close();
  });
  await r.done;
  assert.deepEqual(
    r.records.map((x) => x.value!.toString()),
    ['v0', 'v1'],
  );
});

test('seek and close from inside the handler, with records of other partitions waiting, do not deadlock', { timeout: 10_000 }, async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 3 });
  await produce(topic, 30);
  const c = driver.consumer({ group, topics: [topic] });
  let seeks = 0;
  const r = start(c, async (rec) => {
    if (seeks === 0) {
      seeks++;
      // Rewind another partition while its pump waits behind this handler (give it time to queue).
      await new Promise((res) => setTimeout(res, 50));
      await c.seek(topic, (rec.partition + 1) % 3, { kind: 'earliest' });
    } else if (r.records.length === 12) {
      await c.close();
    }
  });
  await r.done;
  assert.equal(r.records.length, 12);
});

test('a committed offset past the log end resets to `from` (auto.offset.reset)', async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 1 });
  await produce(topic, 3);
  await driver.log.commitOffsets(group, '', -1, [{ topic, partition: 0, offset: 1000 }]);
  const c = driver.consumer({ group, topics: [topic], from: 'earliest' });
  const r = start(c);
  await waitFor('the records from the start', () => r.records.length >= 3);
  assert.deepEqual(
    r.records.map((x) => x.value!.toString()),
    ['v0', 'v1', 'v2'],
  );
  await c.close();
  await r.done;
});

test('a seek out of range fails and the partition keeps going; autoCommit false commits only on commit()', async () => {
  const topic = name('t');
  const group = name('g');
  await driver.createTopic(topic, { partitions: 1 });
  await produce(topic, 4);
  const c = driver.consumer({ group, topics: [topic], autoCommit: false });
  const r = start(c);
  await waitFor('4 records', () => r.records.length >= 4);
  await assert.rejects(c.seek(topic, 0, { kind: 'offset', offset: 99 }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE'));
  await produce(topic, 1, 'late');
  await waitFor('the next record after the failed seek', () => r.records.length >= 5);
  let [committed] = await driver.log.fetchOffsets(group, [{ topic, partition: 0 }]);
  assert.equal(committed!.offset, -1, 'nothing committed yet');
  await c.commit();
  [committed] = await driver.log.fetchOffsets(group, [{ topic, partition: 0 }]);
  assert.equal(committed!.offset, 5);
  await c.close();
  await r.done;
});

test('consumer options are checked', () => {
  assert.throws(() => driver.consumer({ group: 'g', topics: [] }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
  assert.throws(
    () => driver.consumer({ group: 'g', topics: ['t'], sessionTimeoutMs: 300, heartbeatIntervalMs: 200 }),
    (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'),
  );
  assert.throws(() => driver.consumer({ group: '__g', topics: ['t'] }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('a consumer of a topic that does not exist fails run()', async () => {
  const c = driver.consumer({ group: name('g'), topics: [name('missing')] });
  await assert.rejects(c.run(() => undefined), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
});
