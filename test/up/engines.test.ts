/**
 * `up` on the real engines a topology can swap in: the cache on Redis, the database on PostgreSQL,
 * the queue on RabbitMQ (and on NATS JetStream). Reads through the CDN, orders through the balancer
 * and the forward proxy, order events through the real broker to the worker, the cache shared by the
 * instances in Redis, the database's rows in PostgreSQL; close() releases every port.
 *
 * Each run has its own PostgreSQL schema and its own queue (topic) name, dropped afterwards. Skipped
 * with the command to start a service when it is absent; under CI=true an absent service fails.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openDriver } from '../../src/queue/index.js';
import { startUp } from '../../src/up/runner.js';
import { ownSchema } from '../support/postgres.js';
import { needService, NATS, POSTGRES, RABBITMQ, REDIS } from '../support/services.js';
import { probe, smallTopology, tempDir, waitFor } from './helpers.js';

async function firstSkip(...specs: Parameters<typeof needService>[0][]): Promise<string | false> {
  for (const s of specs) {
    const skip = await needService(s);
    if (skip !== false) return skip;
  }
  return false;
}

async function order(balancerUrl: string, productId: number, key: string): Promise<number> {
  const res = await fetch(`${balancerUrl}/api/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({ userId: 1, productId, qty: 1 }),
  });
  await res.arrayBuffer();
  return res.status;
}

for (const queue of ['rabbitmq', 'nats'] as const) {
  const broker = queue === 'rabbitmq' ? RABBITMQ : NATS;
  test(`engines Redis + PostgreSQL + ${queue}: reads, orders, events and the shared cache on the real services`, { skip: await firstSkip(REDIS, POSTGRES, broker), timeout: 60_000 }, async (t) => {
    const dir = tempDir(t);
    const { url, admin, schema } = await ownSchema(t, `archlab_up_${queue}`);
    const topic = `archlab-up-test-${queue}-${process.pid}`;
    // The run's queue (a RabbitMQ queue, a JetStream stream) is removed from the broker at the end.
    t.after(async () => {
      const d = await openDriver(queue === 'rabbitmq' ? { kind: 'rabbitmq', url: 'amqp://guest:guest@127.0.0.1:5672' } : { kind: 'nats', servers: '127.0.0.1:4222' });
      try {
        await d.deleteQueue(topic);
      } finally {
        await d.close();
      }
    });
    const up = await startUp(
      smallTopology(dir, {
        app: { instances: 2, data: { products: 40, users: 4 } },
        cache: { engine: 'redis', url: 'redis://127.0.0.1:6379', strategy: 'cache-aside' },
        database: { engine: 'postgres', url },
        queue: { engine: queue, url: queue === 'rabbitmq' ? 'amqp://guest:guest@127.0.0.1:5672' : 'nats://127.0.0.1:4222', topic, worker: { work: '0ms' } },
      }),
      { healthIntervalMs: 200, drainTimeoutMs: 500 },
    );
    t.after(() => up.close());
    const engines = Object.fromEntries(up.components.map((c) => [c.name, c.engine]));
    assert.equal(engines.cache, 'redis cache-aside');
    assert.equal(engines.database, 'postgres');
    assert.equal(engines.queue, queue);
    assert.doesNotMatch(up.components.find((c) => c.name === 'queue')!.url ?? '', /guest:guest/, 'credentials are not printed');

    // The catalogue was seeded into this run's schema.
    assert.equal(Number((await admin.query(`SELECT count(*) AS n FROM ${schema}.products`)).rows[0].n), 40);

    // The cache is Redis, shared by both (fresh) instances: reading a product through each loads it
    // from PostgreSQL at most once, and the second read hits (both hit when an earlier run within the
    // TTL left it in Redis: the key space is up's own, not this run's).
    const apps = up.components.filter((c) => c.kind === 'app');
    const before = await up.summary();
    for (const a of apps) {
      const r = await fetch(`${a.url}/api/products/7`);
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { id: number }).id, 7);
    }
    const after = await up.summary();
    const misses = after.app.cacheMisses - before.app.cacheMisses;
    const hits = after.app.cacheHits - before.app.cacheHits;
    assert.equal(misses + hits, 2);
    assert.ok(misses <= 1 && hits >= 1, `at most one load from PostgreSQL, the other read from Redis: ${misses} misses, ${hits} hits`);
    const viaCdn = await fetch(`${up.url}/api/products/3`);
    assert.equal(viaCdn.status, 200);

    // Orders through the balancer (and payments through the proxy); events through the real broker.
    const statuses = [await order(up.balancer.url, 1, `k1-${process.pid}`), await order(up.balancer.url, 2, `k2-${process.pid}`), await order(up.balancer.url, 1, `k1-${process.pid}`)];
    assert.deepEqual(statuses, [201, 201, 201], 'the repeat of k1 answers as the first did');
    assert.equal(Number((await admin.query(`SELECT count(*) AS n FROM ${schema}.orders`)).rows[0].n), 2, 'two orders: the repeat placed none');
    await waitFor(`the worker to consume 2 events through ${queue}`, async () => (await up.summary()).queue.consumed === 2, 15_000);
    const s = await up.summary();
    assert.equal(s.queue.published, 2);
    assert.equal(s.proxy.requests, 2, 'two payments through the proxy');

    const ports = up.components.flatMap((c) => (c.port === undefined ? [] : [c.port]));
    await up.close();
    for (const p of ports) assert.equal(await probe(p), 'refused', `port ${p} released`);
  });
}
