import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { needService, REDIS } from '../../test/support/services.js';
import { CacheError } from './errors.js';
import { createRedisLease } from './lease.js';

const skip = await needService(REDIS);
const PREFIX = `archlab:test:lease:${process.pid}:${randomBytes(4).toString('hex')}:`;
const clients: Redis[] = [];

async function client(): Promise<Redis> {
  const c = new Redis('redis://127.0.0.1:6379', { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  clients.push(c);
  await new Promise((r) => c.once('ready', r));
  return c;
}

after(async () => {
  const c = clients[0];
  if (c && c.status === 'ready') {
    const keys = await c.keys(PREFIX.replace(/[*?[\]\\]/g, '\\$&') + '*');
    if (keys.length) await c.unlink(...keys);
  }
  for (const c of clients) c.disconnect();
});

test('lease: two instances (two processes of a fleet) — one holds, the other waits, release hands it over', { skip }, async () => {
  const a = createRedisLease({ redis: await client(), prefix: PREFIX });
  const b = createRedisLease({ redis: await client(), prefix: PREFIX });
  const held = await a.acquire('user:1', 5_000);
  assert.ok(held);
  assert.equal(await b.acquire('user:1', 5_000), undefined);
  assert.equal(await a.acquire('user:1', 5_000), undefined, 'not re-entrant: one load per key');
  const other = await b.acquire('user:2', 5_000);
  assert.ok(other, 'leases are per key');
  await held.release();
  const next = await b.acquire('user:1', 5_000);
  assert.ok(next);
  await next.release();
  await other.release();
});

test('lease: it expires after ttlMs, and a late release by the old holder does not free the new holder\'s lease', { skip }, async () => {
  const redis = await client();
  const a = createRedisLease({ redis, prefix: PREFIX });
  const b = createRedisLease({ redis: await client(), prefix: PREFIX });
  const old = await a.acquire('k', 100);
  assert.ok(old);
  const pttl = await redis.pttl(a.leaseKey('k'));
  assert.ok(pttl > 0 && pttl <= 100, `pttl ${pttl}`);
  await new Promise((r) => setTimeout(r, 150));
  const current = await b.acquire('k', 5_000);
  assert.ok(current, 'free again after ttl');
  await old.release();
  assert.equal(await a.acquire('k', 5_000), undefined, 'the old holder released nothing');
  assert.equal(await redis.exists(a.leaseKey('k')), 1);
  await current.release();
  await current.release(); // idempotent
  assert.equal(await redis.exists(a.leaseKey('k')), 0);
});

test('lease: many concurrent acquirers across instances get exactly one lease', { skip }, async () => {
  const leases = [createRedisLease({ redis: await client(), prefix: PREFIX }), createRedisLease({ redis: await client(), prefix: PREFIX })];
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => leases[i % 2]!.acquire('hot', 5_000)));
  const winners = results.filter((r) => r !== undefined);
  assert.equal(winners.length, 1);
  await winners[0]!.release();
});

test('lease: bad arguments and a down Redis give typed errors', { skip }, async () => {
  const redis = await client();
  const lease = createRedisLease({ redis, prefix: PREFIX, maxTtlMs: 1_000 });
  await assert.rejects(lease.acquire('k', 0), /ttlMs/);
  await assert.rejects(lease.acquire('k', 1_001), /ttlMs/);
  await assert.rejects(lease.acquire('', 10), (e) => e instanceof CacheError && e.code === 'ARCHLAB_CACHE_BAD_KEY');
  assert.throws(() => createRedisLease({ redis, prefix: 'a{b' }), /must not contain/);
  const dead = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
  dead.on('error', () => {});
  clients.push(dead);
  const downLease = createRedisLease({ redis: dead, prefix: PREFIX });
  await assert.rejects(downLease.acquire('k', 10), (e) => e instanceof CacheError && e.code === 'ARCHLAB_CACHE_STORE_UNAVAILABLE' && e.retryable);
});
