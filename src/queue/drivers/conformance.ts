/**
 * One conformance suite for every QueueDriver (like hono's one router suite for all routers). Each
 * case either runs, or, where the driver's capability is false, checks that the driver refuses with
 * ARCHLAB_QUEUE_UNSUPPORTED; where an engine's semantics differ, the test name says how
 * ("nats: offsets are stream sequences").
 *
 * Names get a random suffix per run, and every case deletes what it created, even when it fails.
 * Cases are small (tens of messages) and every wait is bounded, so one driver runs in seconds.
 *
 * Usage (in a test file):
 *   driverConformance('nats', () => natsDriver({ servers: '127.0.0.1:4222' }), { skip: await needService(NATS) });
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { isQueueError } from '../errors.js';
import type { Consumer, DriverName, LogRecord, QueueDriver, ReceivedMessage, Subscription } from '../types.js';

export interface ConformanceOptions {
  /** Skip the whole suite with this message (a service that is not running); false runs it. */
  skip?: string | false;
  /** Longest wait for any one expected event, ms. Default 5000. */
  waitMs?: number;
}

/** How an engine differs, said in the names of the cases it changes. */
const NOTES: Partial<Record<DriverName, Partial<Record<string, string>>>> = {
  rabbitmq: {
    offsets: 'rabbitmq: offsets are per-partition stream offsets; send() does not learn them (offset -1)',
    resume: 'rabbitmq: committed offsets live in the driver, per group (lost when the driver closes)',
    groups: 'rabbitmq: no partition assignment, every member reads every partition',
    deliveryCount: 'rabbitmq: classic queues report deliveryCount 2 for any redelivery (quorum queues count)',
    timestamp: 'rabbitmq: the stream starts at the chunk written at that second, older records are skipped client-side',
  },
  nats: {
    offsets: 'nats: offsets are stream sequences, shared by all partitions of a topic (increasing, with gaps, per partition)',
    resume: 'nats: committed = acked on a durable consumer per group and partition',
    groups: 'nats: no partition assignment, members compete for each partition (order holds per member)',
    timestamp: 'nats: opt_start_time is the stream receive time, records created earlier are skipped client-side',
    routing: 'nats: the driver routes in the client from bindings kept in a KV bucket (JetStream refuses overlapping stream subjects)',
  },
};

function label(driver: DriverName, key: string, base: string): string {
  const note = NOTES[driver]?.[key];
  return note === undefined ? base : `${base} (${note})`;
}

async function waitFor(what: string, cond: () => boolean, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${waitMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function expectUnsupported(what: string, fn: () => unknown): Promise<void> {
  await assert.rejects(
    async () => fn(),
    (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNSUPPORTED'),
    `${what} should be refused with ARCHLAB_QUEUE_UNSUPPORTED`,
  );
}

/** A consumer running in the background, collecting what its handler sees. */
interface Running {
  consumer: Consumer;
  records: LogRecord[];
  done: Promise<void>;
  stop(): Promise<void>;
}

function startConsumer(consumer: Consumer): Running {
  const records: LogRecord[] = [];
  const done = consumer.run((r) => {
    records.push(r);
  });
  done.catch(() => undefined);
  return {
    consumer,
    records,
    done,
    async stop() {
      await consumer.close();
      await done;
    },
  };
}

/** A subscription collecting its messages; `autoAck` acks each on arrival. */
async function collect(driver: QueueDriver, queue: string, prefetch: number, autoAck: boolean): Promise<{ messages: ReceivedMessage[]; sub: Subscription }> {
  const messages: ReceivedMessage[] = [];
  const sub = await driver.subscribe(queue, { prefetch }, async (m) => {
    messages.push(m);
    if (autoAck) await m.ack();
  });
  return { messages, sub };
}

export function driverConformance(name: DriverName, make: () => Promise<QueueDriver>, options: ConformanceOptions = {}): void {
  const waitMs = options.waitMs ?? 5000;
  const caseTimeoutMs = 6 * waitMs;
  describe(`queue driver conformance: ${name}`, { skip: options.skip ?? false }, () => {
    let driver: QueueDriver;
    const run = `cf-${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    let seq = 0;
    const unique = (what: string): string => `${run}-${what}-${seq++}`;
    const exchanges: string[] = [];
    /** Every case is bounded: a hang fails the case instead of the whole run. */
    const tcase = (title: string, fn: () => Promise<void>): void => {
      test(title, { timeout: caseTimeoutMs }, fn);
    };

    before(async () => {
      driver = await make();
      assert.equal(driver.name, name);
    });

    after(async () => {
      if (driver === undefined) return;
      for (const x of exchanges) await driver.deleteExchange(x).catch(() => undefined);
      await driver.close();
    });

    /** Runs `fn` with a fresh topic of `partitions`, deleting it after. */
    async function withTopic(partitions: number, fn: (topic: string) => Promise<void>): Promise<void> {
      const topic = unique('t');
      await driver.createTopic(topic, { partitions });
      try {
        await fn(topic);
      } finally {
        await driver.deleteTopic(topic).catch(() => undefined);
      }
    }

    async function withQueues(names: string[], fn: () => Promise<void>): Promise<void> {
      try {
        await fn();
      } finally {
        for (const q of names) await driver.deleteQueue(q).catch(() => undefined);
      }
    }

    async function exchange(type: 'direct' | 'topic' | 'fanout' | 'headers'): Promise<string> {
      const x = unique(`x-${type}`);
      exchanges.push(x);
      await driver.declareExchange(x, { type, durable: false });
      return x;
    }

    // ---------------------------------------------------------------------------------------
    // log
    // ---------------------------------------------------------------------------------------

    tcase(label(name, 'offsets', 'log: records of one key keep their order within a partition'), async () => {
      if (!driver.capabilities.partitionedLog) return expectUnsupported('a topic', () => driver.createTopic(unique('t')));
      await withTopic(3, async (topic) => {
        const producer = driver.producer({ lingerMs: 2 });
        const keys = ['alpha', 'bravo', 'charlie', 'delta'];
        const sent = new Map<string, number>();
        const sends: Promise<{ partition: number; offset: number }>[] = [];
        for (let i = 0; i < 15; i++) {
          for (const k of keys) sends.push(producer.send(topic, { key: Buffer.from(k), value: Buffer.from(`${k}:${i}`) }));
        }
        const results = await Promise.all(sends);
        await producer.close();
        results.forEach((r, i) => {
          const k = keys[i % keys.length]!;
          if (sent.has(k)) assert.equal(r.partition, sent.get(k), `key ${k} changed partition`);
          sent.set(k, r.partition);
        });
        const c = startConsumer(driver.consumer({ group: unique('g'), topics: [topic] }));
        try {
          await waitFor('60 records', () => c.records.length >= 60, waitMs);
        } finally {
          await c.stop();
        }
        const lastIndex = new Map<string, number>();
        const lastOffset = new Map<number, number>();
        for (const r of c.records) {
          const [k, i] = r.value!.toString().split(':') as [string, string];
          assert.equal(r.key?.toString(), k);
          assert.equal(r.partition, sent.get(k), `record of key ${k} read from another partition`);
          assert.ok(Number(i) > (lastIndex.get(k) ?? -1), `key ${k}: ${i} after ${String(lastIndex.get(k))}`);
          lastIndex.set(k, Number(i));
          assert.ok(r.offset > (lastOffset.get(r.partition) ?? -1), 'offsets increase within a partition');
          lastOffset.set(r.partition, r.offset);
        }
        for (const k of keys) assert.equal(lastIndex.get(k), 14);
      });
    });

    tcase('log: every record sent is consumed at least once by a group, headers and timestamps kept', async () => {
      if (!driver.capabilities.partitionedLog) return expectUnsupported('a topic', () => driver.createTopic(unique('t')));
      await withTopic(2, async (topic) => {
        const producer = driver.producer({ compression: 'gzip' });
        const ts = Date.now() - 60_000;
        await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            producer.send(topic, { key: null, value: Buffer.from(`v${i}`), headers: [{ key: 'h', value: Buffer.from([i]) }], timestamp: ts + i }),
          ),
        );
        await producer.send(topic, { key: Buffer.from('tomb'), value: null });
        await producer.flush();
        await producer.close();
        const c = startConsumer(driver.consumer({ group: unique('g'), topics: [topic] }));
        try {
          await waitFor('31 records', () => new Set(c.records.map((r) => r.value?.toString() ?? 'null')).size >= 31, waitMs);
        } finally {
          await c.stop();
        }
        const byValue = new Map(c.records.map((r) => [r.value?.toString() ?? 'null', r]));
        for (let i = 0; i < 30; i++) {
          const r = byValue.get(`v${i}`);
          assert.ok(r, `v${i} consumed`);
          assert.equal(r.timestamp, ts + i);
          assert.deepEqual(r.headers, [{ key: 'h', value: Buffer.from([i]) }]);
          assert.equal(r.key, null);
        }
        assert.equal(byValue.get('null')?.key?.toString(), 'tomb', 'a null value (tombstone) survives the trip');
      });
    });

    tcase(label(name, 'groups', 'log: two members of a group split the partitions'), async () => {
      if (!driver.capabilities.partitionedLog) return expectUnsupported('a topic', () => driver.createTopic(unique('t')));
      await withTopic(4, async (topic) => {
        const group = unique('g');
        const a = startConsumer(driver.consumer({ group, topics: [topic], sessionTimeoutMs: 1000 }));
        const b = startConsumer(driver.consumer({ group, topics: [topic], sessionTimeoutMs: 1000 }));
        try {
          const all = [0, 1, 2, 3];
          if (driver.capabilities.consumerGroups) {
            await waitFor(
              'a disjoint assignment of all 4 partitions',
              () => {
                const pa = a.consumer.assignment().map((p) => p.partition);
                const pb = b.consumer.assignment().map((p) => p.partition);
                return pa.length > 0 && pb.length > 0 && [...pa, ...pb].sort().join() === all.join();
              },
              waitMs,
            );
          } else {
            await waitFor('both members running', () => a.consumer.assignment().length === 4 && b.consumer.assignment().length === 4, waitMs);
          }
          const producer = driver.producer();
          await Promise.all(Array.from({ length: 40 }, (_, i) => producer.send(topic, { key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) })));
          await producer.close();
          const seen = (): Set<string> => new Set([...a.records, ...b.records].map((r) => r.value!.toString()));
          await waitFor('40 records across both members', () => seen().size === 40, waitMs);
          if (driver.capabilities.consumerGroups) {
            const pa = new Set(a.consumer.assignment().map((p) => p.partition));
            for (const r of a.records) assert.ok(pa.has(r.partition), 'member a read only its own partitions');
            for (const r of b.records) assert.ok(!pa.has(r.partition), 'member b read only its own partitions');
          }
        } finally {
          await a.stop();
          await b.stop();
        }
      });
    });

    tcase(label(name, 'resume', 'log: committed offsets resume after a consumer restart'), async () => {
      if (!driver.capabilities.partitionedLog) return expectUnsupported('a topic', () => driver.createTopic(unique('t')));
      await withTopic(1, async (topic) => {
        const group = unique('g');
        const producer = driver.producer();
        for (let i = 0; i < 10; i++) await producer.send(topic, { key: null, value: Buffer.from(String(i)) });
        const first = startConsumer(driver.consumer({ group, topics: [topic] }));
        try {
          await waitFor('10 records', () => first.records.length >= 10, waitMs);
        } finally {
          await first.stop();
        }
        for (let i = 10; i < 15; i++) await producer.send(topic, { key: null, value: Buffer.from(String(i)) });
        await producer.close();
        const second = startConsumer(driver.consumer({ group, topics: [topic] }));
        try {
          await waitFor('5 more records', () => second.records.length >= 5, waitMs);
          await delay(100);
        } finally {
          await second.stop();
        }
        assert.deepEqual(
          second.records.map((r) => r.value!.toString()),
          ['10', '11', '12', '13', '14'],
          'the restarted consumer starts after the last committed record',
        );
      });
    });

    tcase('log: seek to an offset replays from there; manual commit', async () => {
      if (!driver.capabilities.partitionedLog) return expectUnsupported('a topic', () => driver.createTopic(unique('t')));
      await withTopic(1, async (topic) => {
        const producer = driver.producer();
        for (let i = 0; i < 6; i++) await producer.send(topic, { key: null, value: Buffer.from(String(i)) });
        await producer.close();
        const c = startConsumer(driver.consumer({ group: unique('g'), topics: [topic], autoCommit: false }));
        try {
          await waitFor('6 records', () => c.records.length >= 6, waitMs);
          const third = c.records[3]!;
          await c.consumer.seek(topic, 0, { kind: 'offset', offset: third.offset });
          await waitFor('3 replayed records', () => c.records.length >= 9, waitMs);
          assert.deepEqual(
            c.records.slice(6).map((r) => r.value!.toString()),
            ['3', '4', '5'],
          );
          await c.consumer.commit();
        } finally {
          await c.stop();
        }
      });
    });

    tcase(label(name, 'timestamp', 'log: seek to a timestamp'), async () => {
      if (!driver.capabilities.partitionedLog) return expectUnsupported('a topic', () => driver.createTopic(unique('t')));
      await withTopic(1, async (topic) => {
        const producer = driver.producer();
        const base = Date.now() - 3_600_000;
        for (let i = 0; i < 5; i++) await producer.send(topic, { key: null, value: Buffer.from(String(i)), timestamp: base + i * 1000 });
        await producer.close();
        const c = startConsumer(driver.consumer({ group: unique('g'), topics: [topic], from: 'latest' }));
        try {
          if (!driver.capabilities.seekByTimestamp) {
            await expectUnsupported('seek by timestamp', () => c.consumer.seek(topic, 0, { kind: 'timestamp', timestamp: base }));
            return;
          }
          await waitFor('the assignment', () => c.consumer.assignment().length === 1, waitMs);
          await c.consumer.seek(topic, 0, { kind: 'timestamp', timestamp: base + 2000 });
          await waitFor('3 records', () => c.records.length >= 3, waitMs);
          await delay(50);
          assert.deepEqual(
            c.records.map((r) => r.value!.toString()),
            ['2', '3', '4'],
          );
        } finally {
          await c.stop();
        }
      });
    });

    tcase('log: idempotent producer', async () => {
      if (!driver.capabilities.idempotentProducer) {
        await expectUnsupported('an idempotent producer', () => driver.producer({ idempotent: true }));
        return;
      }
      await withTopic(1, async (topic) => {
        const producer = driver.producer({ idempotent: true, acks: 'fsync' });
        const results = await Promise.all([0, 1, 2].map((i) => producer.send(topic, { key: null, value: Buffer.from(String(i)) })));
        await producer.close();
        assert.equal(new Set(results.map((r) => r.offset)).size, 3, 'three distinct offsets');
      });
    });

    // ---------------------------------------------------------------------------------------
    // broker
    // ---------------------------------------------------------------------------------------

    tcase('queue: publish -> subscribe with ack', async () => {
      const q = unique('q');
      await withQueues([q], async () => {
        await driver.declareQueue(q);
        for (let i = 0; i < 5; i++) await driver.publish('', q, { body: Buffer.from(`m${i}`), headers: { n: String(i) }, messageId: `id-${i}` });
        const { messages, sub } = await collect(driver, q, 10, true);
        try {
          await waitFor('5 messages', () => messages.length >= 5, waitMs);
          await delay(100);
          assert.deepEqual(
            messages.map((m) => m.body.toString()),
            ['m0', 'm1', 'm2', 'm3', 'm4'],
          );
          assert.equal(messages[2]!.headers.n, '2');
          assert.equal(messages[2]!.messageId, 'id-2');
          assert.equal(messages[0]!.deliveryCount, 1);
          assert.equal(messages[0]!.redelivered, false);
          await assert.rejects(messages[0]!.ack(), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_DELIVERY'), 'a second ack is refused');
        } finally {
          await sub.cancel();
        }
      });
    });

    tcase(label(name, 'deliveryCount', 'queue: nack with requeue redelivers with deliveryCount 2, redelivered true'), async () => {
      const q = unique('q');
      await withQueues([q], async () => {
        await driver.declareQueue(q);
        await driver.publish('', q, { body: Buffer.from('again') });
        const messages: ReceivedMessage[] = [];
        const sub = await driver.subscribe(q, { prefetch: 1 }, async (m) => {
          messages.push(m);
          if (messages.length === 1) await m.nack({ requeue: true });
          else await m.ack();
        });
        try {
          await waitFor('the redelivery', () => messages.length >= 2, waitMs);
          assert.equal(messages[1]!.body.toString(), 'again');
          assert.equal(messages[1]!.redelivered, true);
          assert.equal(messages[1]!.deliveryCount, 2);
        } finally {
          await sub.cancel();
        }
      });
    });

    tcase('queue: a subscriber holds at most `prefetch` unacked messages', async () => {
      const q = unique('q');
      await withQueues([q], async () => {
        await driver.declareQueue(q);
        for (let i = 0; i < 8; i++) await driver.publish('', q, { body: Buffer.from(String(i)) });
        const messages: ReceivedMessage[] = [];
        let ackOnArrival = false;
        const sub = await driver.subscribe(q, { prefetch: 3 }, async (m) => {
          messages.push(m);
          if (ackOnArrival) await m.ack();
        });
        try {
          await waitFor('3 deliveries', () => messages.length >= 3, waitMs);
          await delay(300);
          assert.equal(messages.length, 3, 'no fourth delivery while three are unacked');
          await messages[0]!.ack();
          await waitFor('a fourth delivery after one ack', () => messages.length >= 4, waitMs);
          await delay(200);
          assert.equal(messages.length, 4);
          ackOnArrival = true;
          for (const m of messages.slice(1)) await m.ack();
          await waitFor('the rest', () => messages.length >= 8, waitMs);
        } finally {
          await sub.cancel();
        }
      });
    });

    tcase(label(name, 'routing', 'exchange: topic wildcards route (* one word, # zero or more)'), async () => {
      if (!driver.capabilities.exchangeTypes.includes('topic')) {
        await expectUnsupported('a topic exchange', () => driver.declareExchange(unique('x'), { type: 'topic' }));
        return;
      }
      const [qa, qb, qc] = [unique('qa'), unique('qb'), unique('qc')];
      await withQueues([qa, qb, qc], async () => {
        const x = await exchange('topic');
        for (const q of [qa, qb, qc]) await driver.declareQueue(q);
        await driver.bind(qa, x, 'orders.*');
        await driver.bind(qb, x, 'orders.#');
        await driver.bind(qc, x, '*.eu');
        await driver.publish(x, 'orders.eu', { body: Buffer.from('1') });
        await driver.publish(x, 'orders.us.west', { body: Buffer.from('2') });
        await driver.publish(x, 'stock.eu', { body: Buffer.from('3') });
        await driver.publish(x, 'orders', { body: Buffer.from('4') });
        const subs = await Promise.all([qa, qb, qc].map((q) => collect(driver, q, 10, true)));
        try {
          const bodies = (i: number): string[] => subs[i]!.messages.map((m) => m.body.toString()).sort();
          await waitFor('routed messages', () => bodies(0).length >= 1 && bodies(1).length >= 3 && bodies(2).length >= 2, waitMs);
          await delay(150);
          assert.deepEqual(bodies(0), ['1'], 'orders.* matches one word');
          assert.deepEqual(bodies(1), ['1', '2', '4'], 'orders.# matches zero or more words');
          assert.deepEqual(bodies(2), ['1', '3'], '*.eu');
        } finally {
          for (const s of subs) await s.sub.cancel();
        }
      });
    });

    tcase('exchange: fanout copies to every bound queue; direct routes by key', async () => {
      const [q1, q2] = [unique('q1'), unique('q2')];
      await withQueues([q1, q2], async () => {
        const fan = await exchange('fanout');
        const direct = await exchange('direct');
        for (const q of [q1, q2]) {
          await driver.declareQueue(q);
          await driver.bind(q, fan, '');
        }
        await driver.bind(q1, direct, 'red');
        await driver.publish(fan, 'ignored', { body: Buffer.from('all') });
        await driver.publish(direct, 'red', { body: Buffer.from('red') });
        await driver.publish(direct, 'blue', { body: Buffer.from('blue') });
        const subs = await Promise.all([q1, q2].map((q) => collect(driver, q, 10, true)));
        try {
          const bodies = (i: number): string[] => subs[i]!.messages.map((m) => m.body.toString()).sort();
          await waitFor('fanout copies', () => bodies(0).length >= 2 && bodies(1).length >= 1, waitMs);
          await delay(150);
          assert.deepEqual(bodies(0), ['all', 'red']);
          assert.deepEqual(bodies(1), ['all']);
        } finally {
          for (const s of subs) await s.sub.cancel();
        }
      });
    });

    tcase('exchange: headers exchange matches all/any', async () => {
      if (!driver.capabilities.exchangeTypes.includes('headers')) {
        await expectUnsupported('a headers exchange', () => driver.declareExchange(unique('x'), { type: 'headers' }));
        return;
      }
      const [qAll, qAny] = [unique('qall'), unique('qany')];
      await withQueues([qAll, qAny], async () => {
        const x = await exchange('headers');
        await driver.declareQueue(qAll);
        await driver.declareQueue(qAny);
        await driver.bind(qAll, x, '', { 'x-match': 'all', kind: 'pdf', lang: 'en' });
        await driver.bind(qAny, x, '', { 'x-match': 'any', kind: 'pdf', lang: 'en' });
        await driver.publish(x, '', { body: Buffer.from('both'), headers: { kind: 'pdf', lang: 'en' } });
        await driver.publish(x, '', { body: Buffer.from('one'), headers: { kind: 'pdf', lang: 'fr' } });
        await driver.publish(x, '', { body: Buffer.from('none'), headers: { kind: 'txt' } });
        const subs = await Promise.all([qAll, qAny].map((q) => collect(driver, q, 10, true)));
        try {
          const bodies = (i: number): string[] => subs[i]!.messages.map((m) => m.body.toString()).sort();
          await waitFor('header-routed messages', () => bodies(0).length >= 1 && bodies(1).length >= 2, waitMs);
          await delay(150);
          assert.deepEqual(bodies(0), ['both']);
          assert.deepEqual(bodies(1), ['both', 'one']);
        } finally {
          for (const s of subs) await s.sub.cancel();
        }
      });
    });

    tcase('queue: dead-lettered after maxDeliveries', async () => {
      const [q, dlq] = [unique('q'), unique('dlq')];
      await withQueues([q, dlq], async () => {
        await driver.declareQueue(dlq);
        if (!driver.capabilities.maxDeliveries) {
          await expectUnsupported('maxDeliveries', () => driver.declareQueue(q, { maxDeliveries: 2, deadLetterQueue: dlq }));
          return;
        }
        await driver.declareQueue(q, { maxDeliveries: 2, deadLetterQueue: dlq });
        await driver.publish('', q, { body: Buffer.from('poison') });
        let deliveries = 0;
        const sub = await driver.subscribe(q, { prefetch: 1 }, async (m) => {
          deliveries++;
          await m.nack({ requeue: true });
        });
        const dead = await collect(driver, dlq, 10, true);
        try {
          await waitFor('the message in the dead-letter queue', () => dead.messages.length >= 1, waitMs);
          assert.equal(dead.messages[0]!.body.toString(), 'poison');
          assert.equal(deliveries, 2, 'delivered exactly maxDeliveries times');
        } finally {
          await sub.cancel();
          await dead.sub.cancel();
        }
      });
    });

    tcase('queue: priorities deliver higher first', async () => {
      const q = unique('q');
      await withQueues([q], async () => {
        if (!driver.capabilities.priorities) {
          await expectUnsupported('maxPriority', () => driver.declareQueue(q, { maxPriority: 5 }));
          return;
        }
        await driver.declareQueue(q, { maxPriority: 5 });
        for (const p of [1, 5, 3, 0]) await driver.publish('', q, { body: Buffer.from(String(p)), priority: p });
        const { messages, sub } = await collect(driver, q, 1, true);
        try {
          await waitFor('4 messages', () => messages.length >= 4, waitMs);
          assert.deepEqual(
            messages.map((m) => m.body.toString()),
            ['5', '3', '1', '0'],
          );
        } finally {
          await sub.cancel();
        }
      });
    });

    tcase('queue: delayed delivery', async () => {
      const q = unique('q');
      await withQueues([q], async () => {
        await driver.declareQueue(q);
        if (!driver.capabilities.delayedDelivery) {
          await expectUnsupported('delayMs', () => driver.publish('', q, { body: Buffer.from('later'), delayMs: 200 }));
          return;
        }
        await driver.publish('', q, { body: Buffer.from('later'), delayMs: 250 });
        await driver.publish('', q, { body: Buffer.from('now') });
        const { messages, sub } = await collect(driver, q, 10, true);
        try {
          await waitFor('both messages', () => messages.length >= 2, waitMs);
          assert.deepEqual(
            messages.map((m) => m.body.toString()),
            ['now', 'later'],
          );
        } finally {
          await sub.cancel();
        }
      });
    });

    tcase('queue: per-message TTL expires a waiting message', async () => {
      const q = unique('q');
      await withQueues([q], async () => {
        await driver.declareQueue(q);
        if (!driver.capabilities.perMessageTtl) {
          await expectUnsupported('ttlMs', () => driver.publish('', q, { body: Buffer.from('brief'), ttlMs: 50 }));
          return;
        }
        await driver.publish('', q, { body: Buffer.from('brief'), ttlMs: 20 });
        await delay(150);
        await driver.publish('', q, { body: Buffer.from('kept') });
        const { messages, sub } = await collect(driver, q, 10, true);
        try {
          await waitFor('the kept message', () => messages.length >= 1, waitMs);
          await delay(100);
          assert.deepEqual(
            messages.map((m) => m.body.toString()),
            ['kept'],
          );
        } finally {
          await sub.cancel();
        }
      });
    });

    tcase('queue: an unacked message comes back after the visibility timeout', async () => {
      const q = unique('q');
      await withQueues([q], async () => {
        if (!driver.capabilities.visibilityTimeout) {
          await expectUnsupported('visibilityTimeoutMs', () => driver.declareQueue(q, { visibilityTimeoutMs: 300 }));
          return;
        }
        await driver.declareQueue(q, { visibilityTimeoutMs: 300 });
        await driver.publish('', q, { body: Buffer.from('slow') });
        const { messages, sub } = await collect(driver, q, 10, false);
        try {
          await waitFor('the redelivery after the timeout', () => messages.length >= 2, waitMs);
          assert.equal(messages[1]!.deliveryCount, 2);
          assert.equal(messages[1]!.redelivered, true);
          await messages[1]!.ack();
        } finally {
          await sub.cancel();
        }
      });
    });

    tcase('refuses names it can never accept', async () => {
      await assert.rejects(driver.declareQueue('__internal'), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
      await assert.rejects(driver.createTopic('has space'), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
      await assert.rejects(
        driver.producer().send(unique('missing'), { key: null, value: Buffer.from('x') }),
        (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC'),
      );
    });
  });
}
