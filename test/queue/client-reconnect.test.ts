/**
 * The client across failures: a server restart on the same data dir (it reconnects and carries on,
 * consumers included), requests in flight when the connection drops, giving up after maxAttempts,
 * request timeouts, the bound on pending requests, and close().
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connectQueue, type QueueClient, type QueueClientEvent } from '../../src/queue/client/index.js';
import { isQueueError } from '../../src/queue/errors.js';
import { Log } from '../../src/queue/log/index.js';
import type { LogEngine } from '../../src/queue/server/connection.js';
import { startQueueServer } from '../../src/queue/server/index.js';
import { startTestServer, testConfig } from '../../src/queue/server/test-helpers.js';
import type { Delivery } from '../../src/queue/types.js';

const code = (c: string) => (e: unknown) => isQueueError(e, c as never);

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new TypeError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function cut(c: QueueClient): void {
  (c as unknown as { wire: { socket: { destroy(): void } } }).wire.socket.destroy();
}

test('after a server restart on the same data dir the client reconnects and carries on: log, broker, consumer', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'archlab-queue-restart-'));
  let server = await startQueueServer(testConfig(dataDir));
  const port = server.address.port;
  const events: QueueClientEvent[] = [];
  const c = await connectQueue({ host: '127.0.0.1', port, requestTimeoutMs: 10_000, reconnect: { initialDelayMs: 20, maxDelayMs: 100, maxAttempts: 200 }, onEvent: (e) => events.push(e) });
  t.after(async () => {
    await c.close(100);
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await c.createTopic('events', { partitions: 1 });
  await c.append({ topic: 'events', partition: 0, acks: 'fsync', records: [{ key: null, value: Buffer.from('a') }, { key: null, value: Buffer.from('b') }] });
  await c.declareQueue('inbox', { durable: true });
  const got: Delivery[] = [];
  // An ack in flight when the server goes fails with DISCONNECTED (the message comes again): ignored here.
  await c.consume('inbox', { prefetch: 10, onDelivery: (d) => (got.push(d), void c.ack(d.deliveryTag).catch(() => undefined)) });
  await c.publish('', 'inbox', { body: Buffer.from('before') });
  await until('first message', () => got.length === 1);

  await server.close();
  await until('the client noticed', () => c.status === 'reconnecting');
  // A call made while the server is down waits for the reconnect instead of failing.
  const during = c.append({ topic: 'events', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.from('c') }] });
  await new Promise((r) => setTimeout(r, 100));
  server = await startQueueServer(testConfig(dataDir, { listeners: [{ port }] }));

  assert.deepEqual(await during, { baseOffset: 2, lastOffset: 2, duplicate: false }, 'offsets continue after the restart');
  await until('reconnected', () => events.some((e) => e.type === 'reconnected'));
  const all = await c.fetch({ topic: 'events', partition: 0, offset: 0 });
  assert.deepEqual(all.records.map((r) => r.value?.toString()), ['a', 'b', 'c']);
  await c.publish('', 'inbox', { body: Buffer.from('after') });
  await until('the consumer was re-established', () => got.some((d) => d.body.toString() === 'after'));
});

test('requests in flight when the connection drops fail with DISCONNECTED (retryable)', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect({ reconnect: { initialDelayMs: 10 } });
  await c.createTopic('quiet');
  const poll = c.fetch({ topic: 'quiet', partition: 0, offset: 0, maxWaitMs: 5000 });
  await new Promise((r) => setTimeout(r, 50));
  cut(c);
  await assert.rejects(poll, (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_DISCONNECTED') && e.retryable);
  // And the client is usable again.
  await until('reconnected', () => c.status === 'open');
  assert.equal((await c.listTopics()).length, 1);
});

test('a graceful server close answers long polls with DISCONNECTED instead of making them wait', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect({ reconnect: false });
  await c.createTopic('quiet');
  const poll = c.fetch({ topic: 'quiet', partition: 0, offset: 0, maxWaitMs: 20_000 });
  await new Promise((r) => setTimeout(r, 50));
  const rejected = assert.rejects(poll, code('ARCHLAB_QUEUE_DISCONNECTED'));
  const started = Date.now();
  await s.server.close();
  await rejected;
  assert.ok(Date.now() - started < 5000, 'answered at once, not after the 10 s drain');
});

test('after maxAttempts failed reconnects the client gives up: waiting and later calls fail with DISCONNECTED', async (t) => {
  const s = await startTestServer(t);
  const events: QueueClientEvent[] = [];
  const c = await s.connect({ reconnect: { initialDelayMs: 5, maxDelayMs: 20, maxAttempts: 3 }, onEvent: (e) => events.push(e) });
  await s.server.close();
  const waiting = assert.rejects(c.listTopics(), code('ARCHLAB_QUEUE_DISCONNECTED'));
  await until('gave up', () => events.some((e) => e.type === 'gave-up'));
  assert.equal(events.filter((e) => e.type === 'reconnect-failed').length, 3);
  await waiting;
  await assert.rejects(c.listQueues(), code('ARCHLAB_QUEUE_DISCONNECTED'));
  assert.equal(c.status, 'failed');
});

test('every request has a timeout; pending requests are bounded; close() fails the rest with CLOSED', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-queue-stuck-'));
  const real = await Log.open({ dataDir: dir });
  // A log whose appends never finish.
  const stuck = new Proxy(real, {
    get(target, prop) {
      if (prop === 'appendRaw') return () => new Promise(() => undefined);
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as LogEngine;
  const s = await startTestServer(t, { timeouts: { drain: '100ms' } }, { log: stuck });
  t.after(async () => {
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const c = await s.connect({ requestTimeoutMs: 200, maxPendingRequests: 3 });
  await c.createTopic('t');
  const append = () => c.append({ topic: 't', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.from('x') }] });
  const started = Date.now();
  await assert.rejects(append(), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_TIMEOUT') && e.retryable);
  assert.ok(Date.now() - started >= 190);
  const three = [append(), append(), append()];
  await assert.rejects(append(), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_LIMIT') && (e.details as { limit: string }).limit === 'maxPendingRequests');
  const closing = c.close(50);
  for (const p of three) await assert.rejects(p, (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_CLOSED') || isQueueError(e, 'ARCHLAB_QUEUE_TIMEOUT'));
  await closing;
  await assert.rejects(c.listTopics(), code('ARCHLAB_QUEUE_CLOSED'));
  assert.equal(c.status, 'closed');
});

test('the first connection fails fast: nothing listening is DISCONNECTED', async () => {
  // Port 1 on loopback: nothing listens there (and binding it needs privileges).
  await assert.rejects(connectQueue({ host: '127.0.0.1', port: 1, connectTimeoutMs: 2000 }), code('ARCHLAB_QUEUE_DISCONNECTED'));
  await assert.rejects(connectQueue({ host: '127.0.0.1', port: 0 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});
