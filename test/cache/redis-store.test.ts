/**
 * The Redis store against the machine's Redis: the shared conformance suite, then what only Redis
 * has (a fleet of store instances sharing a namespace, bytes in the server, key layout, TTLs).
 * Every run uses its own key prefix and deletes it afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { needService, REDIS } from '../support/services.js';
import { REDIS_URL, redisTestRun } from '../support/redis.js';
import { storeConformance } from '../../src/cache/stores/conformance.js';
import { createRedisStore, type RedisStore } from '../../src/cache/stores/redis.js';
import { CacheError } from '../../src/cache/errors.js';
import { rawCodec } from '../../src/cache/codec.js';
import type { Entry } from '../../src/cache/types.js';

const skip = await needService(REDIS);
const { prefix: RUN, admin, deletePrefix } = redisTestRun('redis-store', skip);

let seq = 0;
storeConformance(
  'redis',
  async (o = {}) => {
    // One prefix per namespace name within a case; a fresh one for each unnamed store.
    const prefix = `${RUN}${o.namespace ?? `s${seq++}`}:`;
    const store = createRedisStore({ url: REDIS_URL, prefix, raceWindowMs: o.raceWindowMs, maxValueBytes: o.maxValueBytes, commandTimeoutMs: 2000 });
    return {
      store,
      clock: undefined,
      cleanup: async () => {
        await store.close();
        await deletePrefix(prefix);
      },
    };
  },
  { skip },
);

function entry<V>(value: V, lifeMs = 60_000, tags?: string[]): Entry<V> {
  const now = Date.now();
  return { value, freshUntilMs: now + lifeMs / 2, staleUntilMs: now + lifeMs, ...(tags ? { tags } : {}) };
}

async function withStore<T>(fn: (store: RedisStore, prefix: string) => Promise<T>, opts: Partial<Parameters<typeof createRedisStore>[0]> = {}): Promise<T> {
  const prefix = `${RUN}x${seq++}:`;
  const store = createRedisStore({ url: REDIS_URL, prefix, commandTimeoutMs: 2000, ...opts });
  try {
    return await fn(store, prefix);
  } finally {
    await store.close();
    await deletePrefix(prefix);
  }
}

test('redis: two store instances sharing a namespace are one cache (a fleet): an invalidation in one refuses the other\'s fill', { skip }, async () => {
  await withStore(async (a, prefix) => {
    const b = createRedisStore({ url: REDIS_URL, prefix, commandTimeoutMs: 2000 });
    try {
      await a.set('k', entry('v1'));
      assert.equal((await b.get('k'))?.value, 'v1');
      const token = await b.fillToken('k');
      await a.invalidate('k');
      assert.equal(await b.fill('k', entry('v1 loaded before the write'), token), false);
      assert.equal(await a.get('k'), undefined);
      await b.set('t1', entry(1, 60_000, ['grp']));
      await b.set('t2', entry(2, 60_000, ['grp']));
      assert.equal(await a.invalidateTag('grp'), 2);
      assert.equal(await b.get('t1'), undefined);
    } finally {
      await b.close();
    }
  });
});

test('redis: a caller-owned client is used as is and left open by close()', { skip }, async () => {
  const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  const prefix = `${RUN}own${seq++}:`;
  try {
    await new Promise((r) => client.once('ready', r));
    const store = createRedisStore({ redis: client, prefix });
    assert.equal(store.ownsClient, false);
    await store.set('k', entry('v'));
    assert.equal((await store.get('k'))?.value, 'v');
    await store.close();
    assert.equal(client.status, 'ready');
    assert.equal(await client.exists(store.dataKey('k')), 1);
  } finally {
    await deletePrefix(prefix);
    client.disconnect();
  }
});

test('redis: entries carry PX = staleUntilMs - now; generations PX = raceWindowMs; tag sets outlive their longest entry', { skip }, async () => {
  await withStore(
    async (store) => {
      await store.set('k', entry('v', 10_000, ['tg']));
      const pttl = await admin!.pttl(store.dataKey('k'));
      assert.ok(pttl > 9_000 && pttl <= 10_000, `entry pttl ${pttl}`);
      const gttl = await admin!.pttl(store.genKey('k'));
      assert.ok(gttl > 4_000 && gttl <= 5_000, `generation pttl ${gttl}`);
      const t1 = await admin!.pttl(store.tagKey('tg'));
      assert.ok(t1 > 9_000 && t1 <= 10_000, `tag pttl ${t1}`);
      await store.set('k2', entry('v', 30_000, ['tg']));
      const t2 = await admin!.pttl(store.tagKey('tg'));
      assert.ok(t2 > 29_000, `tag pttl extended: ${t2}`);
      await store.set('k3', entry('v', 1_000, ['tg']));
      assert.ok((await admin!.pttl(store.tagKey('tg'))) > 28_000, 'a shorter entry does not shorten the tag set');
      // a fill token keeps the generation for another window
      await new Promise((r) => setTimeout(r, 300));
      await store.fillToken('k');
      assert.ok((await admin!.pttl(store.genKey('k'))) > 4_800);
      // no generation key is created for a key never written
      await store.fillToken('never');
      assert.equal(await admin!.exists(store.genKey('never')), 0);
    },
    { raceWindowMs: 5_000 },
  );
});

test('redis: keys are laid out under the prefix with the user key in one hash tag', { skip }, async () => {
  await withStore(async (store, prefix) => {
    assert.equal(store.dataKey('user:1'), `${prefix}d:{user:1}`);
    assert.equal(store.genKey('user:1'), `${prefix}g:{user:1}`);
    assert.equal(store.dataKey('a}b%'), `${prefix}d:{a%7Db%25}`);
    assert.equal(store.tagKey('t}'), `${prefix}t:{t%7D}`);
  });
  assert.throws(() => createRedisStore({ url: REDIS_URL, prefix: 'bad{prefix' }), /must not contain/);
  assert.throws(() => createRedisStore({ prefix: 'p:' }), /exactly one of/);
  assert.throws(() => createRedisStore({ url: REDIS_URL, commandTimeoutMs: 0 }), /commandTimeoutMs/);
});

test('redis: garbled or foreign bytes under a key give ARCHLAB_CACHE_CODEC naming the key, never a crash', { skip }, async () => {
  await withStore(async (store) => {
    const header = Buffer.alloc(19);
    header[0] = 0xa7;
    header[1] = 1;
    header.writeDoubleBE(Date.now() + 60_000, 3);
    header.writeDoubleBE(Date.now() + 60_000, 11);
    const cases: [string, Buffer][] = [
      ['plain', Buffer.from('written by someone else')],
      ['short', Buffer.from([0xa7, 1, 0])],
      ['bad-json', Buffer.concat([header, Buffer.from('{"a":')])],
      ['bad-tags', Buffer.concat([Buffer.from(header.map((b, i) => (i === 2 ? 2 : b))), Buffer.from([0, 0, 0, 50]), Buffer.from('[1]')])],
      ['bad-flags', Buffer.from(header.map((b, i) => (i === 2 ? 9 : b)))],
      ['neg-with-value', Buffer.concat([Buffer.from(header.map((b, i) => (i === 2 ? 1 : b))), Buffer.from('"x"')])],
    ];
    for (const [key, bytes] of cases) {
      await admin!.set(store.dataKey(key), bytes);
      await assert.rejects(store.get(key), (err) => {
        assert.ok(err instanceof CacheError);
        assert.equal(err.code, 'ARCHLAB_CACHE_CODEC');
        assert.equal(err.details?.key, key);
        assert.match(err.message, new RegExp(key));
        return true;
      });
    }
    // A good entry beside them still reads, and overwriting a garbled one repairs it.
    await store.set('plain', entry('fixed'));
    assert.equal((await store.get('plain'))?.value, 'fixed');
  });
});

test('redis: a value the codec cannot encode is refused with ARCHLAB_CACHE_CODEC naming the key, and nothing is written', { skip }, async () => {
  await withStore(async (store) => {
    await assert.rejects(store.set('big-int', entry({ n: 10n })), (err) => err instanceof CacheError && err.code === 'ARCHLAB_CACHE_CODEC' && err.details?.key === 'big-int');
    assert.equal(await admin!.exists(store.dataKey('big-int')), 0);
  });
  await withStore(
    async (store) => {
      await store.set('bytes', entry(Buffer.from([1, 2, 3])));
      assert.deepEqual([...((await store.get('bytes'))?.value as Buffer)], [1, 2, 3]);
      await assert.rejects(store.set('obj', entry({ a: 1 })), (err) => err instanceof CacheError && err.code === 'ARCHLAB_CACHE_CODEC' && err.details?.key === 'obj');
    },
    { codec: rawCodec },
  );
});

test('redis: invalidateTag works through tags with thousands of members, in bounded batches', { skip }, async () => {
  await withStore(
    async (store) => {
      const n = 1_000;
      for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => store.set(`m${i + j}`, entry(i + j, 60_000, ['many']))));
      assert.equal(await admin!.scard(store.tagKey('many')), n);
      assert.equal(await store.invalidateTag('many'), n);
      assert.equal(await admin!.exists(store.tagKey('many')), 0);
      assert.equal(await store.get('m0'), undefined);
      assert.equal(await store.get(`m${n - 1}`), undefined);
    },
    { batchSize: 64 },
  );
});

test('redis: a tag removes exactly the entries that still carry it (rewritten, expired and foreign members are handled)', { skip }, async () => {
  await withStore(async (store) => {
    await store.set('kept', entry('v1', 60_000, ['t', 'u']));
    await store.set('kept', entry('v2', 60_000, ['u'])); // rewritten without t
    await store.set('gone', entry('v', 60_000, ['t']));
    await store.set('other-tags', entry('v', 60_000, ['t', 'x"y', 'ü']));
    await admin!.sadd(store.tagKey('t'), 'foreign');
    await admin!.set(store.dataKey('foreign'), 'not an envelope');
    assert.equal(await store.invalidateTag('t'), 3);
    assert.equal((await store.get('kept'))?.value, 'v2');
    assert.equal(await store.get('gone'), undefined);
    assert.equal(await store.get('other-tags'), undefined);
    assert.equal(await admin!.exists(store.dataKey('foreign')), 0);
    assert.equal(await store.invalidateTag('u'), 1);
    assert.equal(await store.get('kept'), undefined);
  });
});

test('redis: clear() leaves other namespaces and non-cache keys alone', { skip }, async () => {
  const outside = `${RUN}outside`;
  await admin!.set(outside, 'keep');
  await withStore(async (store, prefix) => {
    await store.set('k', entry(1, 60_000, ['t']));
    // a key that merely starts with the same text, in another namespace
    await admin!.set(`${prefix.slice(0, -1)}x:d:{k}`, 'other');
    await store.clear();
    assert.equal(await store.get('k'), undefined);
    assert.equal(await admin!.get(`${prefix.slice(0, -1)}x:d:{k}`), 'other');
    assert.equal(await admin!.get(outside), 'keep');
    await admin!.del(`${prefix.slice(0, -1)}x:d:{k}`);
  });
  await admin!.del(outside);
});
