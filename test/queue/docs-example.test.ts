/** The library example at the top of docs/queue.md, run as written (through the package index), with checks. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDriver, type LogRecord, type ReceivedMessage } from '../../src/queue/index.js';

test('docs/queue.md quick start: a keyed record through a consumer group, a message through a queue', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'archlab-queue-docs-'));
  const q = await openDriver({ kind: 'embedded', dataDir });
  t.after(async () => {
    await q.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await q.createTopic('orders', { partitions: 6 });
  const producer = q.producer({ acks: 'fsync', idempotent: true });
  const sent = await producer.send('orders', { key: Buffer.from('customer-7'), value: Buffer.from('{"order":42}') });

  const consumer = q.consumer({ group: 'billing', topics: ['orders'] });
  const got = new Promise<LogRecord>((resolve) => {
    void consumer.run(async (record) => resolve(record));
  });
  const record = await got;
  assert.equal(record.partition, sent.partition);
  assert.equal(record.offset, sent.offset);
  assert.equal(record.key?.toString(), 'customer-7');
  assert.equal(record.value?.toString(), '{"order":42}');
  await consumer.close();
  await producer.close();

  await q.declareQueue('email', { maxDeliveries: 5, deadLetterQueue: 'email.dead' });
  await q.declareQueue('email.dead');
  const delivered = new Promise<ReceivedMessage>((resolve) => {
    void q.subscribe('email', { prefetch: 10 }, async (m) => {
      await m.ack();
      resolve(m);
    });
  });
  await q.publish('', 'email', { body: Buffer.from('welcome') });
  const m = await delivered;
  assert.equal(m.body.toString(), 'welcome');
  assert.equal(m.deliveryCount, 1);
});
