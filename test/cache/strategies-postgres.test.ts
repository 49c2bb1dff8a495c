/**
 * Read-through and write-through in front of the machine's PostgreSQL (127.0.0.1:5432, database
 * `test`), on the memory store and on Redis; and PostgreSQL down (a closed port): typed errors with
 * the key, stale-if-error serving what the cache has, and write-through leaving the cache without a
 * value the source never took. Every test uses its own table, named for this run, dropped afterwards.
 */
import { after, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { needService, POSTGRES, REDIS } from '../support/services.js';
import { REDIS_URL, redisTestRun } from '../support/redis.js';
import { closedPort } from '../support/fault-proxy.js';
import { postgresSource } from '../../src/cache/sources/postgres.js';
import { createMemoryStore } from '../../src/cache/stores/memory.js';
import { createRedisStore } from '../../src/cache/stores/redis.js';
import { ReadThrough } from '../../src/cache/strategies/read-through.js';
import { WriteThrough } from '../../src/cache/strategies/write-through.js';
import type { Source } from '../../src/cache/types.js';
import { isArchlabError } from '../../src/core/errors.js';
import type { ArchlabError } from '../../src/core/errors.js';

const CONNECTION = process.env.ARCHLAB_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
const skipPg = await needService(POSTGRES);
const skipRedis = skipPg || (await needService(REDIS));
const RUN = `archlab_strat_${process.pid}_${randomBytes(3).toString('hex')}`;
const { prefix: REDIS_PREFIX } = redisTestRun('strategies-pg', skipRedis);
let tables = 0;

const admin = skipPg ? undefined : new pg.Pool({ connectionString: CONNECTION, max: 2 });
after(async () => {
  await admin?.end();
});

interface Item {
  name: string;
  qty: number;
}

/** A JSON-shaped table for this test, dropped afterwards. */
function table(t: TestContext): { source: Source<Item>; name: string } {
  const name = `${RUN}_${tables++}`;
  const source = postgresSource<Item>({ connectionString: CONNECTION, table: name, createTable: true, maxConnections: 3 });
  t.after(async () => {
    await admin!.query(`DROP TABLE IF EXISTS "${name}"`);
  });
  return { source, name };
}

/** A source that forwards to `live` until `down` is set, then to a PostgreSQL that is not there. */
function switchable(live: Source<Item>, dead: Source<Item>): Source<Item> & { down: boolean } {
  const s = {
    name: 'switchable',
    down: false,
    load: (key: string) => (s.down ? dead.load(key) : live.load(key)),
    write: (key: string, value: Item) => (s.down ? dead.write(key, value) : live.write(key, value)),
    remove: (key: string) => (s.down ? dead.remove(key) : live.remove(key)),
    close: async () => {
      await live.close?.();
      await dead.close?.();
    },
  };
  return s;
}

describe('strategies in front of PostgreSQL', { skip: skipPg }, () => {
  test('write-through on the memory store: rows reach PostgreSQL; reads are hits; delete removes both', async (t) => {
    const { source, name } = table(t);
    const cache = new WriteThrough<Item>({ name: 'items', store: createMemoryStore<Item>(), source });
    t.after(() => cache.close());
    await cache.set('1', { name: 'apple', qty: 3 });
    const row = await admin!.query(`SELECT value FROM "${name}" WHERE key = $1`, ['1']);
    assert.deepEqual(row.rows[0]?.value, { name: 'apple', qty: 3 });
    assert.deepEqual(cache.peek('1'), { name: 'apple', qty: 3 });
    assert.deepEqual(await cache.get('1'), { name: 'apple', qty: 3 });
    assert.equal(cache.stats().loads, 0);
    await cache.delete('1');
    assert.equal((await admin!.query(`SELECT 1 FROM "${name}" WHERE key = $1`, ['1'])).rowCount, 0);
    assert.equal(await cache.get('1'), undefined);
  });

  test('read-through: a row changed behind the cache is seen after invalidate; 500 concurrent cold gets -> 1 query', async (t) => {
    const { source, name } = table(t);
    let loads = 0;
    const counted: Source<Item> = { ...source, name: source.name, load: (k) => (loads++, source.load(k)), write: (k, v) => source.write(k, v), remove: (k) => source.remove(k), close: () => source.close!() };
    const cache = new ReadThrough<Item>({ name: 'items-rt', store: createMemoryStore<Item>(), source: counted });
    t.after(() => cache.close());
    await source.write('7', { name: 'pear', qty: 1 });
    const all = await Promise.all(Array.from({ length: 500 }, () => cache.get('7')));
    assert.ok(all.every((v) => v?.name === 'pear'));
    assert.equal(loads, 1);
    await admin!.query(`UPDATE "${name}" SET value = '{"name":"pear","qty":2}' WHERE key = '7'`);
    assert.equal((await cache.get('7'))?.qty, 1, 'the cache still serves what it has');
    await cache.invalidate('7');
    assert.equal((await cache.get('7'))?.qty, 2);
  });

  test('PostgreSQL down: typed errors with the key; stale-if-error serves what the cache has; write-through leaves the cache alone', async (t) => {
    const { source } = table(t);
    const dead = postgresSource<Item>({ connectionString: `postgres://postgres@127.0.0.1:${await closedPort()}/test`, table: 'items', connectionTimeoutMs: 500, queryTimeoutMs: 500 });
    const src = switchable(source, dead);
    // Short TTL, long stale-if-error: once PostgreSQL is down, reads serve the stale value.
    const cache = new WriteThrough<Item>({ name: 'items-down', store: createMemoryStore<Item>(), source: src, freshness: { ttlMs: 50, jitter: 0, staleIfErrorMs: 60_000 } });
    t.after(() => cache.close());
    await cache.set('a', { name: 'kept', qty: 1 });
    src.down = true;
    await new Promise((r) => setTimeout(r, 60)); // past the fresh life
    assert.deepEqual(await cache.get('a'), { name: 'kept', qty: 1 }, 'stale served while the source is down');
    assert.ok(cache.stats().staleServed >= 1);
    await assert.rejects(cache.get('never-cached'), (err: unknown) => {
      assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'), String(err));
      assert.equal((err as ArchlabError).retryable, true);
      assert.equal((err as ArchlabError).details?.key, 'never-cached');
      return true;
    });
    await assert.rejects(cache.set('a', { name: 'lost', qty: 2 }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
    assert.notEqual(cache.peek('a')?.name, 'lost', 'the cache never holds a value the source did not take');
    src.down = false;
    assert.deepEqual(await cache.get('a'), { name: 'kept', qty: 1 }, 'back: the source\'s row');
  });

  test('write-through on Redis in front of PostgreSQL: a second process reads the row from Redis', { skip: skipRedis }, async (t) => {
    const { source } = table(t);
    const w = new WriteThrough<Item>({ name: 'w', store: createRedisStore<Item>({ url: REDIS_URL, prefix: REDIS_PREFIX }), source });
    const readerSource: Source<Item> = { name: 'unused', load: async () => assert.fail('the reader should not load'), write: async () => {}, remove: async () => {} };
    const r = new ReadThrough<Item>({ name: 'r', store: createRedisStore<Item>({ url: REDIS_URL, prefix: REDIS_PREFIX }), source: readerSource });
    t.after(async () => {
      await w.close();
      await r.close();
    });
    await w.set('x', { name: 'shared', qty: 9 });
    assert.deepEqual(await r.get('x'), { name: 'shared', qty: 9 });
  });
});
