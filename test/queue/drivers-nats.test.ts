/**
 * NATS JetStream driver behaviour beyond the conformance suite: routes shared by driver instances
 * through the KV bucket, bindings removed with their queue, dead-lettering done once among competing
 * subscribers, group offsets that survive the driver, an idempotent producer's retry written once,
 * queue bounds, and what the driver refuses. Needs nats-server -js on 127.0.0.1:4222.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { connect } from 'nats';
import { ArchlabError } from '../../src/core/errors.js';
import { isQueueError, type QueueErrorCode } from '../../src/queue/errors.js';
import { natsDriver } from '../../src/queue/drivers/nats.js';
import type { LogRecord, QueueDriver, ReceivedMessage } from '../../src/queue/types.js';
import { needService, NATS } from '../support/services.js';

const SERVERS = '127.0.0.1:4222';
const run = `nd-${randomBytes(3).toString('hex')}`;
const routesBucket = `test_routes_${randomBytes(4).toString('hex')}`;
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

type NatsTestDriver = Awaited<ReturnType<typeof natsDriver>>;

describe('nats driver', { skip: await needService(NATS) }, () => {
  let a: NatsTestDriver;
  let b: NatsTestDriver;
  const queues: string[] = [];
  const topics: string[] = [];

  before(async () => {
    a = await natsDriver({ servers: SERVERS, routesBucket });
    b = await natsDriver({ servers: SERVERS, routesBucket });
  });

  after(async () => {
    for (const q of queues) await a.deleteQueue(q).catch(() => undefined);
    for (const t of topics) await a.deleteTopic(t).catch(() => undefined);
    await a.close();
    await b.close();
    const nc = await connect({ servers: SERVERS });
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.delete(`KV_${routesBucket}`).catch(() => undefined);
    } finally {
      await nc.close();
    }
  });

  async function queue(d: QueueDriver, config?: Parameters<QueueDriver['declareQueue']>[1]): Promise<string> {
    const q = unique('q');
    queues.push(q);
    await d.declareQueue(q, config);
    return q;
  }

  async function drain(d: QueueDriver, q: string, ms: number): Promise<string[]> {
    const got: string[] = [];
    const sub = await d.subscribe(q, { prefetch: 10 }, async (m) => {
      got.push(m.body.toString());
      await m.ack();
    });
    await new Promise((r) => setTimeout(r, ms));
    await sub.cancel();
    return got;
  }

  test('a binding made by one driver routes the publishes of another; unknown exchanges are refused', async () => {
    const x = unique('x');
    await a.declareExchange(x, { type: 'topic' });
    const q = await queue(a);
    await a.bind(q, x, 'orders.#');
    await b.publish(x, 'orders.eu.1', { body: Buffer.from('via b') });
    assert.deepEqual(await drain(a, q, 300), ['via b']);
    await assert.rejects(b.publish(unique('nox'), 'k', { body: Buffer.from('x') }), code('ARCHLAB_QUEUE_UNKNOWN_EXCHANGE'));
    await assert.rejects(a.declareExchange(x, { type: 'fanout' }), code('ARCHLAB_QUEUE_DECLARE_MISMATCH'));
    await assert.rejects(a.bind(unique('missing'), x, 'k'), code('ARCHLAB_QUEUE_UNKNOWN_QUEUE'));
    await a.deleteExchange(x);
  });

  test('deleting a queue removes its bindings', async () => {
    const x = unique('x');
    await a.declareExchange(x, { type: 'fanout' });
    const q = await queue(a);
    await a.bind(q, x, '');
    await a.deleteQueue(q);
    await a.declareQueue(q);
    await b.publish(x, '', { body: Buffer.from('nobody') });
    assert.deepEqual(await drain(a, q, 200), [], 'the re-created queue is not bound');
    await a.deleteExchange(x);
  });

  test('competing subscribers on two drivers dead-letter a poison message once', async () => {
    const dlq = await queue(a);
    const q = await queue(a, { maxDeliveries: 2, deadLetterQueue: dlq });
    await a.publish('', q, { body: Buffer.from('poison') });
    const nackAll = async (m: ReceivedMessage): Promise<void> => m.nack({ requeue: true });
    const subs = [await a.subscribe(q, { prefetch: 1 }, nackAll), await b.subscribe(q, { prefetch: 1 }, nackAll)];
    const dead: ReceivedMessage[] = [];
    const deadSub = await a.subscribe(dlq, { prefetch: 10 }, async (m) => {
      dead.push(m);
      await m.ack();
    });
    try {
      await waitFor('the dead letter', () => dead.length >= 1);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(dead.length, 1, 'copied once');
      assert.equal(dead[0]!.headers['x-death-reason'], 'max-deliveries');
    } finally {
      for (const s of [...subs, deadSub]) await s.cancel();
    }
  });

  test('a nack without requeue dead-letters with reason rejected', async () => {
    const dlq = await queue(a);
    const q = await queue(a, { deadLetterQueue: dlq });
    await a.publish('', q, { body: Buffer.from('bad'), headers: { k: 'v' } });
    const sub = await a.subscribe(q, { prefetch: 1 }, (m) => m.nack({ requeue: false }));
    const dead: ReceivedMessage[] = [];
    const deadSub = await a.subscribe(dlq, { prefetch: 10 }, async (m) => {
      dead.push(m);
      await m.ack();
    });
    try {
      await waitFor('the dead letter', () => dead.length >= 1);
      assert.equal(dead[0]!.headers['x-death-reason'], 'rejected');
      assert.equal(dead[0]!.headers.k, 'v');
    } finally {
      await sub.cancel();
      await deadSub.cancel();
    }
  });

  test('maxLength: reject-publish refuses with FULL, drop-head drops the oldest', async () => {
    const full = await queue(a, { maxLength: 2, overflow: 'reject-publish' });
    await a.publish('', full, { body: Buffer.from('1') });
    await a.publish('', full, { body: Buffer.from('2') });
    await assert.rejects(a.publish('', full, { body: Buffer.from('3') }), code('ARCHLAB_QUEUE_FULL'));
    const head = await queue(a, { maxLength: 2, overflow: 'drop-head' });
    for (const m of ['1', '2', '3']) await a.publish('', head, { body: Buffer.from(m) });
    assert.deepEqual(await drain(a, head, 300), ['2', '3']);
  });

  test('group offsets live in the server: a new driver resumes where the group committed', async () => {
    const topic = unique('t');
    topics.push(topic);
    await a.createTopic(topic, { partitions: 2 });
    const group = unique('g');
    const p = a.producer();
    for (let i = 0; i < 6; i++) await p.send(topic, { key: Buffer.from(`k${i}`), value: Buffer.from(String(i)) });
    const first: LogRecord[] = [];
    const c1 = a.consumer({ group, topics: [topic] });
    const d1 = c1.run((r) => void first.push(r));
    await waitFor('6 records', () => first.length >= 6);
    await c1.close();
    await d1;
    for (let i = 6; i < 9; i++) await p.send(topic, { key: Buffer.from(`k${i}`), value: Buffer.from(String(i)) });
    await p.close();
    const second: LogRecord[] = [];
    const c2 = b.consumer({ group, topics: [topic] });
    const d2 = c2.run((r) => void second.push(r));
    await waitFor('3 more', () => second.length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    await c2.close();
    await d2;
    assert.deepEqual(second.map((r) => r.value!.toString()).sort(), ['6', '7', '8']);
  });

  test('an idempotent producer retries with the same message id and the stream keeps one copy', async () => {
    const topic = unique('t');
    topics.push(topic);
    await a.createTopic(topic, { partitions: 1 });
    // Lose the answer of the first publish after the server stored it.
    const js = (a as unknown as { js: { publish: (...args: unknown[]) => Promise<unknown> } }).js;
    const real = js.publish.bind(js);
    let calls = 0;
    js.publish = async (...args: unknown[]) => {
      const ack = await real(...args);
      // What nats.js throws when a request times out: an error with code 'TIMEOUT'.
      if (++calls === 1) throw new ArchlabError('TIMEOUT', 'timeout');
      return ack;
    };
    try {
      const p = a.producer({ idempotent: true });
      const r = await p.send(topic, { key: null, value: Buffer.from('once') });
      await p.close();
      assert.equal(calls, 2, 'retried once');
      const got: LogRecord[] = [];
      const c = a.consumer({ group: unique('g'), topics: [topic] });
      const done = c.run((rec) => void got.push(rec));
      await waitFor('the record', () => got.length >= 1);
      await new Promise((res) => setTimeout(res, 150));
      await c.close();
      await done;
      assert.equal(got.length, 1, 'written once');
      assert.equal(got[0]!.offset, r.offset);
    } finally {
      js.publish = real;
    }
  });

  test('refuses what JetStream cannot do with ARCHLAB_QUEUE_UNSUPPORTED', async () => {
    const dlq = unique('dlq');
    await assert.rejects(a.declareQueue(unique('q'), { maxPriority: 2 }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    await assert.rejects(a.declareQueue(unique('q'), { messageTtlMs: 1000, deadLetterQueue: dlq }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    await assert.rejects(a.declareQueue(unique('q'), { overflow: 'drop-head', deadLetterQueue: dlq }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    await assert.rejects(a.createTopic(unique('t'), { cleanupPolicy: 'compact' }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    const q = await queue(a);
    await assert.rejects(a.publish('', q, { body: Buffer.from('x'), ttlMs: 10 }), code('ARCHLAB_QUEUE_UNSUPPORTED'));
    await assert.rejects(a.publish('', q, { body: Buffer.from('x'), headers: { 'bad name': 'v' } }), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
    await assert.rejects(a.declareQueue(q, { maxLength: 5 }), code('ARCHLAB_QUEUE_DECLARE_MISMATCH'));
  });
});
