import assert from 'node:assert/strict';
import { mkdtempSync, promises as fsp, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { createLogger } from '../../core/log.js';
import { SeededRandom } from '../../core/random.js';
import { isQueueError, type QueueErrorCode } from '../errors.js';
import type { Delivery } from '../types.js';
import { Broker } from './broker.js';
import type { JournalIo } from './journal.js';
import type { BrokerOptions } from './options.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-broker-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a broker the test closes on the way out, even when it fails. Memory-only and a manual clock unless told. */
async function open(t: TestContext, o: Partial<BrokerOptions> = {}): Promise<Broker> {
  const b = await Broker.open({ dataDir: null, clock: new ManualClock(1_000_000), random: new SeededRandom(1), ...o });
  t.after(() => b.close());
  return b;
}

/** Lets the dispatch microtasks and setImmediate continuations run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

function code(c: QueueErrorCode) {
  return (err: unknown) => isQueueError(err, c);
}

const body = (s: string): { body: Buffer } => ({ body: Buffer.from(s) });

/** A consumer that records deliveries; acks them at once when `autoAck`. */
async function consumer(b: Broker, queue: string, prefetch = 100, autoAck = false) {
  const got: Delivery[] = [];
  const sub = await b.consume(queue, {
    prefetch,
    onDelivery: (d) => {
      got.push(d);
      if (autoAck) void b.ack(d.deliveryTag);
    },
  });
  return { sub, got, ids: () => got.map((d) => d.body.toString()) };
}

async function drain(b: Broker, queue: string): Promise<Delivery[]> {
  const out: Delivery[] = [];
  for (let d = await b.get(queue); d !== null; d = await b.get(queue)) {
    out.push(d);
    await b.ack(d.deliveryTag);
  }
  return out;
}

test('default exchange routes by queue name; unroutable messages are dropped and counted, or refused with mandatory', async (t) => {
  const b = await open(t);
  await b.declareQueue('jobs');
  assert.deepEqual(await b.publish('', 'jobs', body('one')), { routed: 1 });
  assert.deepEqual(await b.publish('', 'nobody', body('lost')), { routed: 0 });
  await assert.rejects(b.publish('', 'nobody', body('lost'), { mandatory: true }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNROUTABLE'));
  await assert.rejects(b.publish('no-such-exchange', 'k', body('x')), code('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE'));
  assert.equal(b.stats().unroutable, 2);
  assert.equal(b.stats().published, 1);
  const d = await b.get('jobs');
  assert.equal(d?.body.toString(), 'one');
  assert.equal(d?.queue, 'jobs');
  assert.equal(d?.deliveryCount, 1);
  assert.equal(d?.redelivered, false);
  assert.equal(d?.publishedAt, 1_000_000);
  assert.match(d!.messageId, /^[0-9a-f]{16}-\d+$/);
});

test('unknown queues: an error unless autoCreateQueues, which declares them with the defaults', async (t) => {
  const b = await open(t);
  await assert.rejects(b.consume('q', { onDelivery: () => {} }), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
  await assert.rejects(b.get('q'), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
  await assert.rejects(b.purgeQueue('q'), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
  await assert.rejects(b.queueStats('q'), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
  await b.declareExchange('ex');
  await assert.rejects(b.bind('q', 'ex', 'k'), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
  assert.equal((await b.listQueues()).length, 0);

  const auto = await open(t, { autoCreateQueues: true, defaults: { maxLength: 7 } });
  assert.deepEqual(await auto.publish('', 'made-by-publish', body('x')), { routed: 1 });
  assert.equal((await auto.queueStats('made-by-publish')).config.maxLength, 7);
  assert.equal((await auto.queueStats('made-by-stats')).ready, 0);
  await auto.consume('made-by-consume', { onDelivery: () => {} });
  assert.equal(await auto.get('made-by-get'), null);
  assert.deepEqual((await auto.listQueues()).map((q) => q.name).sort(), ['made-by-consume', 'made-by-get', 'made-by-publish', 'made-by-stats']);
  assert.deepEqual(await auto.publish('', '__bad', body('x')), { routed: 0 }, 'an invalid name is not created, just unroutable');
});

test('direct, fanout, topic and headers exchanges; a message routed to several queues is stored in each', async (t) => {
  const b = await open(t);
  for (const q of ['a', 'b', 'c']) await b.declareQueue(q);
  await b.declareExchange('direct', { type: 'direct' });
  await b.declareExchange('fan', { type: 'fanout' });
  await b.declareExchange('topic', { type: 'topic' });
  await b.declareExchange('hdr', { type: 'headers' });
  await b.bind('a', 'direct', 'red');
  await b.bind('b', 'direct', 'red');
  await b.bind('c', 'direct', 'blue');
  await b.bind('a', 'fan', '');
  await b.bind('c', 'fan', 'ignored');
  await b.bind('a', 'topic', 'order.*.created');
  await b.bind('b', 'topic', 'order.#');
  await b.bind('c', 'hdr', '', { 'x-match': 'any', region: 'eu', kind: 'refund' });
  assert.equal((await b.publish('direct', 'red', body('d1'))).routed, 2);
  assert.equal((await b.publish('fan', 'whatever', body('f1'))).routed, 2);
  assert.equal((await b.publish('topic', 'order.eu.created', body('t1'))).routed, 2);
  assert.equal((await b.publish('topic', 'order', body('t2'))).routed, 1);
  assert.equal((await b.publish('hdr', '', { body: Buffer.from('h1'), headers: { region: 'eu' } })).routed, 1);
  assert.equal((await b.publish('hdr', '', { body: Buffer.from('h2'), headers: { region: 'us' } })).routed, 0);
  const ids = async (q: string) => (await drain(b, q)).map((d) => d.body.toString());
  assert.deepEqual(await ids('a'), ['d1', 'f1', 't1']);
  assert.deepEqual(await ids('b'), ['d1', 't1', 't2']);
  assert.deepEqual(await ids('c'), ['f1', 'h1']);
  await b.unbind('b', 'topic', 'order.#');
  assert.equal((await b.publish('topic', 'order', body('t3'))).routed, 0);
  await b.unbind('b', 'topic', 'never.bound');
  await b.deleteExchange('direct');
  await assert.rejects(b.publish('direct', 'red', body('x')), code('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE'));
  assert.equal(b.stats().bindings, 4);
  await b.deleteExchange('direct');
  // The built-in exchanges exist and cannot be deleted; the default one cannot be bound or declared.
  await b.bind('a', 'amq.topic', 'x.#');
  assert.equal((await b.publish('amq.topic', 'x.y', body('amq'))).routed, 1);
  await assert.rejects(b.deleteExchange('amq.topic'), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.deleteExchange(''), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.bind('a', '', 'a'), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.declareExchange(''), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('redeclaring with different settings is a mismatch naming the field; the same settings are fine', async (t) => {
  const b = await open(t, { defaults: { maxLength: 50 } });
  await b.declareQueue('q', { maxPriority: 2 });
  await b.declareQueue('q', { maxPriority: 2, maxLength: 50 });
  await assert.rejects(b.declareQueue('q', { maxPriority: 3 }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_DECLARE_MISMATCH') && err.details?.field === 'maxPriority');
  await assert.rejects(b.declareQueue('q'), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_DECLARE_MISMATCH') && err.details?.field === 'maxPriority');
  await b.declareExchange('ex', { type: 'topic' });
  await b.declareExchange('ex', { type: 'topic', durable: true });
  await assert.rejects(b.declareExchange('ex', { type: 'direct' }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_DECLARE_MISMATCH') && err.details?.field === 'type');
  await assert.rejects(b.declareExchange('ex', { type: 'topic', durable: false }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_DECLARE_MISMATCH') && err.details?.field === 'durable');
  await assert.rejects(b.declareExchange('amq.direct', { type: 'fanout' }), code('ARCHLAB_QUEUE_DECLARE_MISMATCH'));
});

test('competing consumers share a queue round robin within their prefetch; acks free credit', async (t) => {
  const b = await open(t);
  await b.declareQueue('q');
  const x = await consumer(b, 'q', 2);
  const y = await consumer(b, 'q', 2);
  for (let i = 0; i < 6; i++) await b.publish('', 'q', body(`m${i}`));
  await settle();
  assert.deepEqual(x.ids(), ['m0', 'm2']);
  assert.deepEqual(y.ids(), ['m1', 'm3']);
  const s = await b.queueStats('q');
  assert.deepEqual([s.ready, s.unacked, s.consumers], [2, 4, 2]);
  await b.ack(x.got[0]!.deliveryTag);
  await settle();
  assert.deepEqual(x.ids(), ['m0', 'm2', 'm4']);
  await assert.rejects(b.ack(x.got[0]!.deliveryTag), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'), 'acked twice');
  await assert.rejects(b.ack(424242), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  await assert.rejects(b.nack(424242), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  await b.nack(y.got[0]!.deliveryTag); // requeue by default: to the front, for whoever has credit
  await settle();
  assert.deepEqual(y.ids(), ['m1', 'm3', 'm1']);
  assert.equal(y.got[2]!.redelivered, true);
  assert.equal(y.got[2]!.deliveryCount, 2);
});

test('a consumer that never acks: its deliveries come back after the visibility timeout, to another consumer', async (t) => {
  const clock = new ManualClock(0);
  const b = await open(t, { clock });
  await b.declareQueue('q', { visibilityTimeoutMs: 1000 });
  const stuck = await consumer(b, 'q', 1);
  await b.publish('', 'q', body('work'));
  await settle();
  assert.equal(stuck.got.length, 1);
  const healthy = await consumer(b, 'q', 10, true);
  clock.advance(999);
  await settle();
  assert.equal(healthy.got.length, 0);
  clock.advance(1);
  await settle();
  assert.equal(healthy.got.length, 1, 'redelivered after the timeout');
  assert.equal(healthy.got[0]!.redelivered, true);
  assert.equal(healthy.got[0]!.deliveryCount, 2);
  await assert.rejects(b.ack(stuck.got[0]!.deliveryTag), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'), 'the stale tag is dead');
  const s = await b.queueStats('q');
  assert.deepEqual([s.ready, s.unacked, s.acked, s.redelivered], [0, 0, 1, 1]);
  // get() deliveries time out the same way.
  await stuck.sub.cancel();
  await healthy.sub.cancel();
  await b.publish('', 'q', body('pulled'));
  assert.equal((await b.get('q'))?.body.toString(), 'pulled');
  assert.equal((await b.queueStats('q')).unacked, 1);
  clock.advance(1000);
  await settle();
  assert.equal((await b.queueStats('q')).ready, 1);
});

test('cancel requeues unacked deliveries at once (default); requeueUnacked false keeps them held', async (t) => {
  const b = await open(t);
  await b.declareQueue('q');
  const first = await consumer(b, 'q', 5);
  for (let i = 0; i < 3; i++) await b.publish('', 'q', body(`m${i}`));
  await settle();
  await b.ack(first.got[1]!.deliveryTag);
  await first.sub.cancel();
  assert.equal((await b.queueStats('q')).ready, 2);
  await assert.rejects(b.ack(first.got[0]!.deliveryTag), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  const second = await consumer(b, 'q', 5);
  await settle();
  assert.deepEqual(second.ids(), ['m0', 'm2']);
  assert.deepEqual(second.got.map((d) => d.redelivered), [true, true]);
  await second.sub.cancel({ requeueUnacked: false });
  const s = await b.queueStats('q');
  assert.deepEqual([s.ready, s.unacked, s.consumers], [0, 2, 0]);
  await b.ack(second.got[0]!.deliveryTag);
  await second.sub.cancel(); // twice: no-op
  assert.equal(b.stats().consumers, 0);
});

test('priorities: higher first, FIFO within a level; out-of-range priorities are refused', async (t) => {
  const b = await open(t);
  await b.declareQueue('p', { maxPriority: 5 });
  for (const [id, priority] of [['low', 0], ['high', 5], ['mid', 2], ['high2', 5], ['capped', 9]] as const) {
    await b.publish('', 'p', { body: Buffer.from(id), priority });
  }
  assert.deepEqual((await drain(b, 'p')).map((d) => d.body.toString()), ['high', 'high2', 'capped', 'mid', 'low']);
  await assert.rejects(b.publish('', 'p', { body: Buffer.from('x'), priority: 11 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.publish('', 'p', { body: Buffer.from('x'), priority: -1 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.publish('', 'p', { body: Buffer.from('x'), priority: 1.5 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.declareQueue('too-many-levels', { maxPriority: 11 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('delayed delivery: held until due, then delivered', async (t) => {
  const clock = new ManualClock(0);
  const b = await open(t, { clock });
  await b.declareQueue('q');
  const c = await consumer(b, 'q', 10, true);
  await b.publish('', 'q', { body: Buffer.from('later'), delayMs: 5000 });
  await b.publish('', 'q', body('now'));
  await settle();
  assert.deepEqual(c.ids(), ['now']);
  assert.equal((await b.queueStats('q')).delayed, 1);
  clock.advance(4999);
  await settle();
  assert.deepEqual(c.ids(), ['now']);
  clock.advance(1);
  await settle();
  assert.deepEqual(c.ids(), ['now', 'later']);
});

test('dead-lettering: delivery limit, rejection, expiry and drop-head, with x-death headers', async (t) => {
  const clock = new ManualClock(0);
  const b = await open(t, { clock });
  await b.declareQueue('dlq');
  await b.declareQueue('work', { maxDeliveries: 2, deadLetterQueue: 'dlq', messageTtlMs: 10_000, maxLength: 3, overflow: 'drop-head' });
  // A poison message: nacked with requeue until the limit.
  await b.publish('', 'work', { body: Buffer.from('poison'), headers: { app: 'x' } });
  for (let i = 0; i < 2; i++) {
    const d = await b.get('work');
    assert.equal(d?.body.toString(), 'poison');
    await b.nack(d!.deliveryTag, { requeue: true });
  }
  assert.equal(await b.get('work'), null, 'the third delivery does not happen');
  // Rejected.
  await b.publish('', 'work', body('rejected'));
  await b.nack((await b.get('work'))!.deliveryTag, { requeue: false });
  // Expired.
  await b.publish('', 'work', { body: Buffer.from('short-lived'), ttlMs: 100 });
  clock.advance(101);
  await settle();
  // Over maxLength with drop-head: the oldest ready one goes.
  for (const id of ['k1', 'k2', 'k3', 'k4']) await b.publish('', 'work', body(id));
  const dead = await drain(b, 'dlq');
  assert.deepEqual(
    dead.map((d) => [d.body.toString(), d.headers['x-death-reason'], d.headers['x-death-queue'], d.headers['x-death-count']]),
    [
      ['poison', 'delivery-limit', 'work', '1'],
      ['rejected', 'rejected', 'work', '1'],
      ['short-lived', 'expired', 'work', '1'],
      ['k1', 'maxlen', 'work', '1'],
    ],
  );
  assert.equal(dead[0]!.headers.app, 'x', 'original headers kept');
  assert.equal(dead[0]!.deliveryCount, 1, 'a fresh count in the dead-letter queue');
  const s = await b.queueStats('work');
  assert.equal(s.deadLettered, 4);
  assert.equal(s.dropped, 0);
  assert.deepEqual((await drain(b, 'work')).map((d) => d.body.toString()), ['k2', 'k3', 'k4']);
});

test('a missing dead-letter target: the message is dropped and counted', async (t) => {
  const b = await open(t);
  await b.declareQueue('q', { deadLetterQueue: 'not-there' });
  await b.declareQueue('plain');
  await b.publish('', 'q', body('x'));
  await b.nack((await b.get('q'))!.deliveryTag, { requeue: false });
  await b.publish('', 'plain', body('y'));
  await b.nack((await b.get('plain'))!.deliveryTag, { requeue: false });
  assert.equal((await b.queueStats('q')).dropped, 1);
  assert.equal((await b.queueStats('plain')).dropped, 1);
  assert.equal(b.stats().deadLetterTargetMissing, 1);
  // A dead-letter cycle ends: q1 -> q2 -> q1 ... until the hop limit.
  await b.declareQueue('q1', { deadLetterQueue: 'q2' });
  await b.declareQueue('q2', { deadLetterQueue: 'q1' });
  await b.publish('', 'q1', body('ping-pong'));
  let hops = 0;
  for (let queue = 'q1'; ; queue = queue === 'q1' ? 'q2' : 'q1') {
    const d = await b.get(queue);
    if (d === null) break;
    hops++;
    await b.nack(d.deliveryTag, { requeue: false });
  }
  assert.equal(hops, 17, 'delivered once, then dead-lettered 16 times, then dropped');
});

test('reject-publish at maxLength: ARCHLAB_QUEUE_FULL and nothing stored in any routed queue', async (t) => {
  const b = await open(t);
  await b.declareQueue('small', { maxLength: 1 });
  await b.declareQueue('big');
  await b.declareExchange('fan', { type: 'fanout' });
  await b.bind('small', 'fan', '');
  await b.bind('big', 'fan', '');
  await b.publish('fan', '', body('first'));
  await assert.rejects(b.publish('fan', '', body('second')), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_FULL') && err.retryable && err.details?.queue === 'small');
  assert.equal((await b.queueStats('big')).ready, 1, 'not stored in the queue with room either');
  await b.declareQueue('bytes', { maxLengthBytes: 10 });
  await b.publish('', 'bytes', { body: Buffer.alloc(6) });
  await assert.rejects(b.publish('', 'bytes', { body: Buffer.alloc(5) }), code('ARCHLAB_QUEUE_FULL'));
  await b.publish('', 'bytes', { body: Buffer.alloc(4) });
});

test('bad input: sizes, names, options, arguments', async (t) => {
  const b = await open(t, { maxMessageBytes: 1000 });
  await b.declareQueue('q');
  await assert.rejects(b.publish('', 'q', { body: Buffer.alloc(1001) }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE') && err.details?.bytes === 1001 && !err.retryable);
  await b.publish('', 'q', { body: Buffer.alloc(1000) });
  await assert.rejects(b.publish('', 'q', { body: Buffer.alloc(1), headers: { big: 'x'.repeat(70_000) } }), code('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE'));
  await assert.rejects(b.publish('', 'q', { body: 'text' as unknown as Buffer }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.publish('', 'q', { body: Buffer.alloc(1), headers: { n: 1 as unknown as string } }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.publish('', 'q', { body: Buffer.alloc(1), ttlMs: -5 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.publish('', 'q', { body: Buffer.alloc(1), delayMs: Number.NaN }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.publish('', 'q', { body: Buffer.alloc(1), messageId: '' }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.publish('', 'k'.repeat(256), { body: Buffer.alloc(1) }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  for (const name of ['', '__internal', 'has space', 'x'.repeat(201), 'slash/no']) {
    await assert.rejects(b.declareQueue(name), code('ARCHLAB_QUEUE_BAD_ARGUMENT'), `queue name ${JSON.stringify(name)}`);
    if (name !== '') await assert.rejects(b.declareExchange(name), code('ARCHLAB_QUEUE_BAD_ARGUMENT'), `exchange name ${JSON.stringify(name)}`);
  }
  await assert.rejects(b.declareQueue('q2', { maxLenght: 5 } as never), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT') && /maxLenght/.test(err.message));
  await assert.rejects(b.declareQueue('q2', { maxLength: 0 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.declareQueue('q2', { overflow: 'drop-tail' as never }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.declareQueue('q2', { deadLetterQueue: 'bad name' }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.declareExchange('e', { type: 'fan' as never }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.consume('q', { onDelivery: () => {}, prefetch: 0 }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(b.consume('q', {} as never), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await b.declareExchange('h', { type: 'headers' });
  await assert.rejects(b.bind('q', 'h', '', { 'x-match': 'some' as never }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(Broker.open({ dataDir: null, fsync: 'sometimes' as never }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(Broker.open({ dataDir: null, maxQueus: 3 } as never), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(Broker.open({ dataDir: null, defaults: { maxPriority: 99 } }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('limits: maxQueues, maxConsumers', async (t) => {
  const b = await open(t, { maxQueues: 2, maxConsumers: 1 });
  await b.declareQueue('a');
  await b.declareQueue('b');
  await assert.rejects(b.declareQueue('c'), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_LIMIT') && err.details?.limit === 'maxQueues');
  const sub = await b.consume('a', { onDelivery: () => {} });
  await assert.rejects(b.consume('b', { onDelivery: () => {} }), code('ARCHLAB_QUEUE_LIMIT'));
  await sub.cancel();
  await b.consume('b', { onDelivery: () => {} });
});

test('a throwing onDelivery is logged; its delivery stays unacked; other consumers carry on', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'warn', destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
  const b = await open(t, { logger });
  await b.declareQueue('q');
  await b.consume('q', {
    prefetch: 1,
    onDelivery: () => {
      throw new RangeError('consumer bug');
    },
  });
  const good = await consumer(b, 'q', 10, true);
  for (let i = 0; i < 4; i++) await b.publish('', 'q', body(`m${i}`));
  await settle();
  assert.deepEqual(good.ids(), ['m1', 'm2', 'm3']);
  assert.equal((await b.queueStats('q')).unacked, 1);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /onDelivery threw/);
});

test('delete and purge: bindings, consumers and delivery tags go with the queue', async (t) => {
  const b = await open(t);
  await b.declareQueue('q');
  await b.declareExchange('fan', { type: 'fanout' });
  await b.bind('q', 'fan', '');
  const c = await consumer(b, 'q', 1);
  for (let i = 0; i < 3; i++) await b.publish('fan', '', body(`m${i}`));
  await settle();
  assert.equal(await b.purgeQueue('q'), 2, 'the unacked one stays');
  assert.equal((await b.queueStats('q')).unacked, 1);
  await b.deleteQueue('q');
  await b.deleteQueue('q');
  await assert.rejects(b.ack(c.got[0]!.deliveryTag), code('ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  assert.equal((await b.publish('fan', '', body('x'))).routed, 0);
  await c.sub.cancel();
  const s = b.stats();
  assert.deepEqual([s.queues, s.bindings, s.consumers], [0, 0, 0]);
  assert.equal(s.totals.delivered, 1, 'counters of deleted queues stay in the totals');
});

test('durable state survives a restart: exchanges, queues, bindings, messages; delivered ones come back redelivered', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(1_000_000);
  const first = await Broker.open({ dataDir: dir, clock });
  await first.declareExchange('orders', { type: 'topic' });
  await first.declareExchange('scratch', { type: 'fanout', durable: false });
  await first.declareQueue('billing', { maxPriority: 2, deadLetterQueue: 'dlq' });
  await first.declareQueue('dlq');
  await first.declareQueue('temp', { durable: false });
  await first.bind('billing', 'orders', 'order.#');
  await first.bind('billing', 'scratch', '');
  await first.bind('temp', 'orders', '#');
  await first.publish('orders', 'order.created', { body: Buffer.from('o1'), headers: { h: 'v' }, priority: 1, messageId: 'id-1' });
  await first.publish('orders', 'order.paid', body('o2'));
  await first.publish('orders', 'order.later', { body: Buffer.from('o3'), delayMs: 60_000 });
  await first.publish('', 'billing', body('o4'));
  const held = await first.get('billing'); // o1 (priority 1): unacked at "crash"
  assert.equal(held?.body.toString(), 'o1');
  const acked = await first.get('billing'); // o2
  await first.ack(acked!.deliveryTag);
  const rejected = await first.get('billing'); // o4 -> dlq
  await first.nack(rejected!.deliveryTag, { requeue: false });
  await first.close();
  await assert.rejects(first.publish('', 'billing', body('late')), code('ARCHLAB_QUEUE_CLOSED'));

  const second = await Broker.open({ dataDir: dir, clock });
  t.after(() => second.close());
  assert.deepEqual((await second.listQueues()).map((q) => q.name).sort(), ['billing', 'dlq']);
  const billing = await second.queueStats('billing');
  assert.deepEqual([billing.ready, billing.unacked, billing.delayed, billing.config.maxPriority, billing.config.deadLetterQueue], [1, 0, 1, 2, 'dlq']);
  const o1 = await second.get('billing');
  assert.deepEqual([o1?.body.toString(), o1?.messageId, o1?.headers, o1?.priority, o1?.redelivered, o1?.deliveryCount], ['o1', 'id-1', { h: 'v' }, 1, true, 2]);
  assert.equal(o1?.publishedAt, 1_000_000);
  const dead = await drain(second, 'dlq');
  assert.deepEqual(dead.map((d) => [d.body.toString(), d.headers['x-death-reason']]), [['o4', 'rejected']]);
  // Bindings: the durable one routes, the one to a transient exchange is gone with it.
  assert.equal((await second.publish('orders', 'order.again', body('o5'))).routed, 1);
  await assert.rejects(second.publish('scratch', '', body('x')), code('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE'));
  await second.ack(o1!.deliveryTag);
  clock.advance(60_000);
  await settle();
  const rest = await drain(second, 'billing');
  assert.deepEqual(rest.map((d) => d.body.toString()).sort(), ['o3', 'o5']);
  assert.equal(second.stats().journal?.truncatedBytes, 0);
});

test('a memory-only broker accepts durable and keeps nothing', async (t) => {
  const b = await open(t);
  await b.declareQueue('q', { durable: true });
  await b.publish('', 'q', body('x'));
  assert.equal(b.stats().journal, null);
});

test('deleted queues and exchanges stay deleted after a restart; queue ids are not reused', async (t) => {
  const dir = tempDir(t);
  const first = await Broker.open({ dataDir: dir });
  await first.declareQueue('a');
  await first.declareExchange('ex');
  await first.bind('a', 'ex', 'k');
  await first.publish('', 'a', body('old'));
  await first.deleteQueue('a');
  await first.declareQueue('a');
  await first.deleteExchange('ex');
  await first.declareExchange('ex', { type: 'fanout' });
  await first.close();
  const second = await open(t, { dataDir: dir, clock: undefined });
  assert.equal((await second.queueStats('a')).ready, 0, 'the old queue\'s message went with it');
  assert.equal((await second.publish('ex', 'k', body('x'))).routed, 0, 'its binding too');
  await second.declareExchange('ex', { type: 'fanout' });
});

test('fsync always: a publish resolves only after an fdatasync covers it; concurrent publishes share one (group commit)', async (t) => {
  const dir = tempDir(t);
  const b = await open(t, { dataDir: dir });
  await b.declareQueue('q');
  const before = b.stats().journal!.syncs;
  await b.publish('', 'q', body('alone'));
  assert.equal(b.stats().journal!.syncs, before + 1, 'resolved after its own fdatasync');
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => b.publish('', 'q', body(`m${i}`))));
  assert.equal(results.length, 200);
  const used = b.stats().journal!.syncs - before - 1;
  assert.ok(used >= 1 && used <= 3, `200 concurrent publishes took ${used} fdatasyncs`);
  // Acks do not wait for (or cause) an fdatasync of their own.
  const syncs = b.stats().journal!.syncs;
  const d = await b.get('q');
  await b.ack(d!.deliveryTag);
  await settle();
  assert.equal(b.stats().journal!.syncs, syncs);
});

test('fsync interval: publishes resolve after the write; the fdatasync follows on the timer', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(0);
  const b = await open(t, { dataDir: dir, fsync: 'interval', fsyncIntervalMs: 200, clock });
  await b.declareQueue('q');
  const syncsAfterDeclare = b.stats().journal!.syncs;
  for (let i = 0; i < 5; i++) await b.publish('', 'q', body(`m${i}`));
  assert.equal(b.stats().journal!.syncs, syncsAfterDeclare, 'no fdatasync per publish');
  clock.advance(200);
  for (let i = 0; i < 50 && b.stats().journal!.syncs === syncsAfterDeclare; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(b.stats().journal!.syncs, syncsAfterDeclare + 1);
});

test('maxDiskBytes: a publish past the limit is refused with DISK_FULL and stores nothing', async (t) => {
  const dir = tempDir(t);
  const b = await open(t, { dataDir: dir, maxDiskBytes: 8192 });
  await b.declareQueue('q');
  let refused: unknown;
  let stored = 0;
  for (let i = 0; i < 100 && refused === undefined; i++) {
    try {
      await b.publish('', 'q', { body: Buffer.alloc(500) });
      stored++;
    } catch (err) {
      refused = err;
    }
  }
  assert.ok(isQueueError(refused, 'ARCHLAB_QUEUE_DISK_FULL') && refused.retryable);
  assert.equal((await b.queueStats('q')).ready, stored, 'the refused message is not in the queue');
  assert.ok(stored > 5 && stored < 20, `stored ${stored}`);
  // Memory-only queues do not count.
  await b.declareQueue('mem', { durable: false });
  await b.publish('', 'mem', { body: Buffer.alloc(500) });
});

test('ENOSPC while publishing: DISK_FULL, not acknowledged; recovers when space returns', async (t) => {
  const dir = tempDir(t);
  const state = { full: false };
  class NoSpace extends Error {
    readonly code = 'ENOSPC';
  }
  const journalIo: JournalIo = {
    async open(path, flags, mode) {
      const fh = await fsp.open(path, flags, mode);
      return {
        writev: async (bufs, pos) => {
          if (state.full) throw new NoSpace('no space left on device');
          return fh.writev(bufs, pos);
        },
        read: (bf, o, l, p) => fh.read(bf, o, l, p),
        datasync: () => fh.datasync(),
        truncate: (n) => fh.truncate(n),
        stat: () => fh.stat(),
        close: () => fh.close(),
      };
    },
  };
  const clock = new ManualClock(0);
  const b = await open(t, { dataDir: dir, journalIo, clock });
  await b.declareQueue('q');
  await b.publish('', 'q', body('before'));
  state.full = true;
  await assert.rejects(b.publish('', 'q', body('during')), code('ARCHLAB_QUEUE_DISK_FULL'));
  await assert.rejects(b.publish('', 'q', body('refused-up-front')), code('ARCHLAB_QUEUE_DISK_FULL'));
  assert.equal((await b.queueStats('q')).ready, 2, 'the first refused publish was already queued in memory; the second was not');
  state.full = false;
  clock.advance(1000);
  for (let i = 0; i < 100 && b.stats().journal!.diskFull; i++) await new Promise((r) => setTimeout(r, 1));
  await b.publish('', 'q', body('after'));
  await b.close();
  const again = await open(t, { dataDir: dir });
  assert.deepEqual((await drain(again, 'q')).map((d) => d.body.toString()), ['before', 'during', 'after']);
});

test('compaction keeps exactly the live state, delivery counts included', async (t) => {
  const dir = tempDir(t);
  const b = await Broker.open({ dataDir: dir, compactMinBytes: 64 * 1024, fsync: 'never' });
  await b.declareQueue('q', { maxLength: 1_000_000 });
  await b.declareQueue('other');
  const payload = Buffer.alloc(300, 1);
  await b.publish('', 'other', body('keep-me'));
  const held = await b.get('other');
  let i = 0;
  for (; b.stats().journal!.compactions === 0 && i < 5000; i++) {
    await b.publish('', 'q', { body: payload });
    const d = await b.get('q');
    await b.ack(d!.deliveryTag);
  }
  assert.ok(b.stats().journal!.compactions >= 1, `compacted after ${i} messages`);
  await b.publish('', 'q', body('last'));
  assert.ok(b.stats().journal!.fileBytes < 64 * 1024);
  await b.close();
  const again = await open(t, { dataDir: dir, clock: undefined });
  assert.deepEqual((await drain(again, 'q')).map((d) => d.body.toString()), ['last']);
  const kept = await drain(again, 'other');
  assert.deepEqual(kept.map((d) => [d.body.toString(), d.deliveryCount, d.redelivered, d.messageId]), [['keep-me', 2, true, held!.messageId]]);
});

test('stats: counters and gauges over queues', async (t) => {
  const b = await open(t);
  await b.declareQueue('a');
  await b.declareQueue('b', { durable: false });
  await b.publish('', 'a', body('12345'));
  await b.publish('', 'b', body('x'));
  await b.publish('', 'b', { body: Buffer.from('d'), delayMs: 100 });
  const d = await b.get('a');
  const s = b.stats();
  assert.deepEqual([s.queues, s.ready, s.unacked, s.delayed, s.bytes, s.published], [2, 1, 1, 1, 7, 3]);
  assert.deepEqual(s.totals, { published: 3, delivered: 1, acked: 0, redelivered: 0, deadLettered: 0, dropped: 0 });
  await b.ack(d!.deliveryTag);
  assert.equal(b.stats().totals.acked, 1);
});
