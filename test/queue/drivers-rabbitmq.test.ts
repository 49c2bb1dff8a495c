/**
 * RabbitMQ driver behaviour beyond the conformance suite: error mapping (a failed declare or publish
 * does not break the driver), quorum queues' delivery count, dead-lettering on reject, partition
 * discovery of stream-backed topics, and what the driver refuses. Needs RabbitMQ on 127.0.0.1:5672.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { isQueueError, type QueueErrorCode } from '../../src/queue/errors.js';
import { partitionForKey } from '../../src/queue/log/murmur2.js';
import { rabbitmqDriver } from '../../src/queue/drivers/rabbitmq.js';
import type { QueueDriver, ReceivedMessage } from '../../src/queue/types.js';
import { needService, RABBITMQ } from '../support/services.js';

const URL = 'amqp://guest:guest@127.0.0.1:5672';
const run = `rmq-${randomBytes(3).toString('hex')}`;
let seq = 0;
const unique = (what: string): string => `${run}-${what}-${seq++}`;
const code = (c: QueueErrorCode) => (err: unknown) => isQueueError(err, c);

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('rabbitmq driver', { skip: await needService(RABBITMQ) }, () => {
  let driver: Awaited<ReturnType<typeof rabbitmqDriver>>;
  const queues: string[] = [];
  const topics: string[] = [];
  const exchanges: string[] = [];

  before(async () => {
    driver = await rabbitmqDriver({ url: URL });
  });

  after(async () => {
    for (const q of queues) await driver.deleteQueue(q).catch(() => undefined);
    for (const t of topics) await driver.deleteTopic(t).catch(() => undefined);
    for (const x of exchanges) await driver.deleteExchange(x).catch(() => undefined);
    await driver.close();
  });

  async function queue(config?: Parameters<QueueDriver['declareQueue']>[1]): Promise<string> {
    const q = unique('q');
    queues.push(q);
    await driver.declareQueue(q, config);
    return q;
  }

  test('a declare that conflicts fails with DECLARE_MISMATCH and the driver keeps working', async () => {
    const q = await queue({ maxLength: 10 });
    await assert.rejects(driver.declareQueue(q, { maxLength: 20 }), code('ARCHLAB_QUEUE_DECLARE_MISMATCH'));
    await driver.declareQueue(q, { maxLength: 10 });
    await driver.publish('', q, { body: Buffer.from('still fine') });
  });

  test('a full queue with reject-publish refuses with ARCHLAB_QUEUE_FULL', async () => {
    const q = await queue({ maxLength: 2, overflow: 'reject-publish' });
    await driver.publish('', q, { body: Buffer.from('1') });
    await driver.publish('', q, { body: Buffer.from('2') });
    await assert.rejects(driver.publish('', q, { body: Buffer.from('3') }), code('ARCHLAB_QUEUE_FULL'));
  });

  test('a publish to a missing exchange fails alone; publishes in flight beside it succeed', async () => {
    const q = await queue();
    const ok = Array.from({ length: 20 }, (_, i) => driver.publish('', q, { body: Buffer.from(String(i)) }));
    const bad = driver.publish(unique('nox'), 'k', { body: Buffer.from('x') });
    await assert.rejects(bad, code('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE'));
    await Promise.all(ok);
  });

  test('quorum queues count deliveries; a nack without requeue dead-letters', async () => {
    const dlq = await queue();
    const q = await queue({ maxDeliveries: 5, deadLetterQueue: dlq });
    await driver.publish('', q, { body: Buffer.from('m'), headers: { origin: 'test' } });
    const counts: number[] = [];
    const sub = await driver.subscribe(q, { prefetch: 1 }, async (m) => {
      counts.push(m.deliveryCount);
      await m.nack({ requeue: counts.length < 3 });
    });
    const dead: ReceivedMessage[] = [];
    const deadSub = await driver.subscribe(dlq, { prefetch: 5 }, async (m) => {
      dead.push(m);
      await m.ack();
    });
    try {
      await waitFor('the dead letter', () => dead.length === 1);
      assert.deepEqual(counts, [1, 2, 3]);
      assert.equal(dead[0]!.headers.origin, 'test');
    } finally {
      await sub.cancel();
      await deadSub.cancel();
    }
  });

  test('after cancel, held deliveries can still be acked', async () => {
    const q = await queue();
    await driver.publish('', q, { body: Buffer.from('held') });
    const got: ReceivedMessage[] = [];
    const sub = await driver.subscribe(q, { prefetch: 1 }, (m) => void got.push(m));
    await waitFor('the delivery', () => got.length === 1);
    await sub.cancel();
    await got[0]!.ack();
    await assert.rejects(got[0]!.ack(), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  });

  test('topics: partitions are found by probing streams, keys land on murmur2 partitions', async () => {
    const topic = unique('t');
    topics.push(topic);
    await driver.createTopic(topic, { partitions: 5 });
    await assert.rejects(driver.createTopic(topic, { partitions: 3 }), code('ARCHLAB_QUEUE_DECLARE_MISMATCH'));
    const other = await rabbitmqDriver({ url: URL });
    try {
      const p = other.producer();
      const sent = await Promise.all(Array.from({ length: 30 }, (_, i) => p.send(topic, { key: Buffer.from(`key-${i}`), value: Buffer.from(String(i)) })));
      await p.close();
      sent.forEach((r, i) => assert.equal(r.partition, partitionForKey(Buffer.from(`key-${i}`), 5)));
      const c = other.consumer({ group: unique('g'), topics: [topic] });
      const seen: number[] = [];
      const done = c.run((r) => void seen.push(r.partition));
      await waitFor('30 records', () => seen.length >= 30);
      assert.deepEqual(
        c.assignment().map((x) => x.partition),
        [0, 1, 2, 3, 4],
      );
      await c.close();
      await done;
    } finally {
      await other.close();
    }
    await assert.rejects(driver.deleteTopic(unique('none')), code('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  });

  test('refuses what RabbitMQ cannot do with ARCHLAB_QUEUE_UNSUPPORTED', async () => {
    await assert.rejects(driver.declareQueue(unique('q'), { visibilityTimeoutMs: 1000 }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    await assert.rejects(driver.declareQueue(unique('q'), { maxPriority: 3, maxDeliveries: 2 }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    await assert.rejects(driver.createTopic(unique('t'), { cleanupPolicy: 'compact' }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    assert.throws(() => driver.producer({ idempotent: true }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    assert.throws(() => driver.producer({ compression: 'zstd' }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    await assert.rejects(driver.subscribe(unique('missing'), {}, () => undefined), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
  });
});
