/**
 * Broker consumers over TCP: prefetch credits, redelivery when a connection drops, pull, ack/nack,
 * batched acks with a failure among them, cancel, and tags from a dropped connection.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { QueueClient, QueueClientEvent } from '../../src/queue/client/index.js';
import { isQueueError } from '../../src/queue/errors.js';
import { startTestServer } from '../../src/queue/server/test-helpers.js';
import type { Delivery } from '../../src/queue/types.js';

const code = (c: string) => (e: unknown) => isQueueError(e, c as never);

/** Polls `cond` every 10 ms for up to `ms`. */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new TypeError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The client's socket, to cut it the way a network failure would. */
function cut(c: QueueClient): void {
  (c as unknown as { wire: { socket: { destroy(): void } } }).wire.socket.destroy();
}

async function publishN(c: QueueClient, queue: string, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => c.publish('', queue, { body: Buffer.from(`m${i}`), messageId: `m${i}` })));
}

test('a consumer never holds more unacked deliveries than its prefetch, and gets every message once', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect();
  await c.declareQueue('work', { durable: false });
  await publishN(c, 'work', 60);
  let unacked = 0;
  let maxUnacked = 0;
  const seen = new Set<string>();
  let redelivered = 0;
  await c.consume('work', {
    prefetch: 5,
    onDelivery: (d) => {
      unacked++;
      maxUnacked = Math.max(maxUnacked, unacked);
      seen.add(d.messageId);
      if (d.redelivered) redelivered++;
      // Settle later, out of order, so deliveries pile up against the credit limit.
      setTimeout(() => {
        unacked--;
        void c.ack(d.deliveryTag);
      }, 1 + (d.deliveryTag % 7));
    },
  });
  await until('60 deliveries', () => seen.size === 60);
  await until('all acked', async () => (await c.queueStats('work')).acked === 60);
  assert.equal(maxUnacked, 5, 'the credit limit was reached and never passed');
  assert.equal(redelivered, 0);
  const stats = await c.queueStats('work');
  assert.equal(stats.ready + stats.unacked, 0);
});

test('when a consumer\'s connection drops, its unacked deliveries go to another consumer at once', async (t) => {
  const s = await startTestServer(t);
  const admin = await s.connect();
  // A long visibility timeout: redelivery must come from the dropped connection, not from a timer.
  await admin.declareQueue('jobs', { durable: false, visibilityTimeoutMs: 60_000 });
  const a = await s.connect({ reconnect: false });
  const gotA: Delivery[] = [];
  await a.consume('jobs', { prefetch: 3, onDelivery: (d) => gotA.push(d) });
  await publishN(admin, 'jobs', 3);
  await until('A holds 3', () => gotA.length === 3);

  const b = await s.connect();
  const gotB: Delivery[] = [];
  await b.consume('jobs', { prefetch: 10, onDelivery: (d) => (gotB.push(d), void b.ack(d.deliveryTag)) });
  assert.equal(gotB.length, 0, 'B gets nothing while A holds them');
  cut(a);
  await until('B gets A\'s 3', () => gotB.length === 3);
  assert.deepEqual(gotB.map((d) => d.messageId).sort(), gotA.map((d) => d.messageId).sort());
  for (const d of gotB) {
    assert.equal(d.redelivered, true);
    assert.equal(d.deliveryCount, 2);
  }
  await until('acked', async () => (await admin.queueStats('jobs')).acked === 3);
});

test('get, nack with requeue, ack; unknown and double acks fail with UNKNOWN_DELIVERY', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect();
  await c.declareQueue('pull', { durable: false });
  assert.equal(await c.get('pull'), null);
  await c.publish('', 'pull', { body: Buffer.from('one'), headers: { k: 'v' }, messageId: 'x1' });
  const d1 = await c.get('pull');
  assert.ok(d1);
  assert.equal(d1.body.toString(), 'one');
  assert.deepEqual(d1.headers, { k: 'v' });
  assert.equal(d1.queue, 'pull');
  await c.nack(d1.deliveryTag, { requeue: true });
  const d2 = await c.get('pull');
  assert.ok(d2);
  assert.equal(d2.redelivered, true);
  assert.equal(d2.deliveryCount, 2);
  assert.notEqual(d2.deliveryTag, d1.deliveryTag);
  await c.ack(d2.deliveryTag);
  await assert.rejects(c.ack(d2.deliveryTag), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  await assert.rejects(c.ack(999_999), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  assert.equal(await c.get('pull'), null);
  assert.equal((await c.queueStats('pull')).acked, 1);
});

test('acks sent together in one frame settle one by one: an expired tag fails, the others succeed', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect();
  await c.declareQueue('vis', { durable: false, visibilityTimeoutMs: 100 });
  await publishN(c, 'vis', 1);
  const stale = await c.get('vis');
  assert.ok(stale);
  await new Promise((r) => setTimeout(r, 400)); // its visibility timed out: the broker took it back
  const fresh = await c.get('vis');
  assert.ok(fresh);
  await publishN(c, 'vis', 1);
  const other = await c.get('vis');
  assert.ok(other);
  const results = await Promise.allSettled([c.ack(stale.deliveryTag), c.ack(fresh.deliveryTag), c.ack(other.deliveryTag)]);
  assert.equal(results[0]!.status, 'rejected');
  assert.ok(code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY')((results[0] as PromiseRejectedResult).reason));
  assert.deepEqual(results.slice(1).map((r) => r.status), ['fulfilled', 'fulfilled']);
  assert.equal(s.server.counters.requests[0x33], 1, 'the three acks went in one ACK frame');
});

test('after cancel, deliveries already received can still be acked; nothing more is delivered', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect();
  await c.declareQueue('c', { durable: false });
  await publishN(c, 'c', 5);
  const got: Delivery[] = [];
  const sub = await c.consume('c', { prefetch: 2, onDelivery: (d) => got.push(d) });
  await until('2 deliveries', () => got.length === 2);
  assert.ok(sub.consumerTag.length > 0);
  await sub.cancel();
  await Promise.all(got.map((d) => c.ack(d.deliveryTag)));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(got.length, 2);
  const stats = await c.queueStats('c');
  assert.equal(stats.acked, 2);
  assert.equal(stats.ready, 3);
  assert.equal(stats.consumers, 0);
});

test('after a reconnect the consumer is back, the held message comes again, and its old tag fails with DISCONNECTED', async (t) => {
  const s = await startTestServer(t);
  const events: QueueClientEvent[] = [];
  const c = await s.connect({ reconnect: { initialDelayMs: 10, maxDelayMs: 50 }, onEvent: (e) => events.push(e) });
  await c.declareQueue('r', { durable: false, visibilityTimeoutMs: 60_000 });
  const got: Delivery[] = [];
  await c.consume('r', { prefetch: 1, onDelivery: (d) => got.push(d) });
  await publishN(c, 'r', 1);
  await until('first delivery', () => got.length === 1);
  cut(c);
  await until('redelivered after the reconnect', () => got.length === 2);
  assert.ok(events.some((e) => e.type === 'disconnected'));
  assert.ok(events.some((e) => e.type === 'reconnected'));
  assert.equal(got[1]!.messageId, got[0]!.messageId);
  assert.equal(got[1]!.redelivered, true);
  await assert.rejects(c.ack(got[0]!.deliveryTag), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_DISCONNECTED') && /delivered again/.test((e as Error).message));
  await c.ack(got[1]!.deliveryTag);
  await until('acked once', async () => (await c.queueStats('r')).acked === 1);
});

test('exchanges over TCP: topic routing, fanout, mandatory', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect();
  await c.declareExchange('events', { type: 'topic', durable: false });
  await c.declareQueue('email', { durable: false });
  await c.declareQueue('analytics', { durable: false });
  await c.bind('email', 'events', 'order.placed');
  await c.bind('analytics', 'events', 'order.#');
  assert.deepEqual(await c.publish('events', 'order.placed', { body: Buffer.from('{}') }), { routed: 2 });
  assert.deepEqual(await c.publish('events', 'order.shipped.late', { body: Buffer.from('{}') }), { routed: 1 });
  assert.deepEqual(await c.publish('events', 'user.created', { body: Buffer.from('{}') }), { routed: 0 });
  await assert.rejects(c.publish('events', 'user.created', { body: Buffer.from('{}') }, { mandatory: true }), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_UNROUTABLE'), 'mandatory and unroutable');
  await c.declareExchange('all', { type: 'fanout', durable: false });
  await c.bind('email', 'all', '');
  await c.bind('analytics', 'all', '');
  assert.deepEqual(await c.publish('all', 'whatever', { body: Buffer.from('{}') }), { routed: 2 });
  assert.equal((await c.queueStats('email')).ready, 2);
  assert.equal((await c.queueStats('analytics')).ready, 3);
  await c.unbind('analytics', 'events', 'order.#');
  assert.deepEqual(await c.publish('events', 'order.placed', { body: Buffer.from('{}') }), { routed: 1 });
  assert.deepEqual((await c.listQueues()).map((q) => q.name).sort(), ['analytics', 'email']);
  assert.equal(await c.purgeQueue('email'), 3);
  await c.deleteQueue('email');
  await assert.rejects(c.queueStats('email'), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
});
