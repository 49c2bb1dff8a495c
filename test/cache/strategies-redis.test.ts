/**
 * The strategies (cache-aside, read-through, write-through) on the Redis store against the
 * machine's Redis: fills seen by a second "process" (a second store client on the same namespace),
 * the cache-aside race across processes, the fleet lease, tags; and Redis failing: a closed port
 * (reads answered by the source, store attempts bounded by the breaker), a connection cut in the
 * middle of a load (what a Redis restart looks like to a client), and write-through repairing
 * Redis after an outage. Redis itself is never stopped: faults come from a small TCP proxy the test
 * cuts and restores. Every run uses its own key prefix and deletes it afterwards.
 */
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { needService, REDIS } from '../support/services.js';
import { REDIS_URL, redisTestRun } from '../support/redis.js';
import { closedPort, FaultProxy } from '../support/fault-proxy.js';
import { createRedisStore } from '../../src/cache/stores/redis.js';
import type { RedisStore } from '../../src/cache/stores/redis.js';
import { createRedisLease } from '../../src/cache/lease.js';
import { CacheAside } from '../../src/cache/strategies/cache-aside.js';
import { ReadThrough } from '../../src/cache/strategies/read-through.js';
import { WriteThrough } from '../../src/cache/strategies/write-through.js';
import type { CacheStore, Entry, FillToken, Source } from '../../src/cache/types.js';
import { isArchlabError } from '../../src/core/errors.js';

const skip = await needService(REDIS);
const { prefix: RUN } = redisTestRun('strategies-redis', skip);

let seq = 0;
const newPrefix = (): string => `${RUN}${seq++}:`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A Redis store on `prefix` (a "process" of the fleet); closed after the test. */
function redisStore(t: TestContext, prefix: string, url = REDIS_URL, commandTimeoutMs = 1000): RedisStore<string> {
  const store = createRedisStore<string>({ url, prefix, commandTimeoutMs });
  t.after(() => store.close());
  return store;
}

/** Waits until `check` holds, polling every 20 ms, for at most `ms`. */
async function eventually(check: () => Promise<boolean> | boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
}

/** A source over a Map, counting loads; loads can be slowed or held. */
class MapSource implements Source<string> {
  readonly name = 'map';
  readonly rows = new Map<string, string>();
  loads = 0;
  delayMs = 0;
  failWrites = false;
  hold: Promise<void> | undefined;
  async load(key: string): Promise<string | undefined> {
    this.loads++;
    const row = this.rows.get(key);
    if (this.delayMs > 0) await sleep(this.delayMs);
    if (this.hold) await this.hold;
    return row;
  }
  async write(key: string, value: string): Promise<void> {
    if (this.failWrites) throw new RangeError('source write failed');
    this.rows.set(key, value);
  }
  async remove(key: string): Promise<void> {
    this.rows.delete(key);
  }
}

/** Counts calls into a store (to show the breaker bounding attempts). */
class CountingStore implements CacheStore<string> {
  readonly kind = 'redis' as const;
  readonly commandTimeoutMs: number | undefined;
  calls = 0;
  constructor(private readonly inner: CacheStore<string>) {
    this.commandTimeoutMs = inner.commandTimeoutMs;
  }
  get(key: string): Promise<Entry<string> | undefined> {
    this.calls++;
    return this.inner.get(key);
  }
  set(key: string, e: Entry<string>): Promise<void> {
    this.calls++;
    return this.inner.set(key, e);
  }
  fillToken(key: string): Promise<FillToken> {
    this.calls++;
    return this.inner.fillToken(key);
  }
  fill(key: string, e: Entry<string>, token: FillToken): Promise<boolean> {
    this.calls++;
    return this.inner.fill(key, e, token);
  }
  invalidate(key: string): Promise<void> {
    this.calls++;
    return this.inner.invalidate(key);
  }
  invalidateTag(tag: string): Promise<number> {
    this.calls++;
    return this.inner.invalidateTag(tag);
  }
  clear(): Promise<void> {
    this.calls++;
    return this.inner.clear();
  }
  size(): number | undefined {
    return this.inner.size();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A proxy to the local Redis (see FaultProxy), closed after the test; resolves to its URL. */
async function cutProxy(t: TestContext): Promise<{ proxy: FaultProxy; url: string }> {
  const proxy = await new FaultProxy({ port: 6379 }).start();
  t.after(() => proxy.close());
  return { proxy, url: `redis://127.0.0.1:${proxy.port}` };
}

describe('strategies on Redis', { skip }, () => {
  test('cache-aside: one load fills Redis; a second process reads it without loading; invalidate reaches both', async (t) => {
    const prefix = newPrefix();
    const a = new CacheAside<string>({ name: 'a', store: redisStore(t, prefix) });
    const b = new CacheAside<string>({ name: 'b', store: redisStore(t, prefix) });
    t.after(async () => {
      await a.close();
      await b.close();
    });
    let loads = 0;
    const loader = async (key: string) => {
      loads++;
      return `row ${key}`;
    };
    assert.equal(await a.getOrLoad('user:1', loader), 'row user:1');
    assert.equal(await a.getOrLoad('user:1', loader), 'row user:1');
    assert.equal(await b.get('user:1'), 'row user:1');
    assert.equal(await b.getOrLoad('user:1', loader), 'row user:1');
    assert.equal(loads, 1);
    assert.equal(a.peek('user:1'), undefined, 'Redis has no in-process tier to peek');
    await b.invalidate('user:1');
    assert.equal(await a.get('user:1'), undefined);
    // Values that need the codec: a Buffer and a Date round-trip through JSON-with-types.
    const c = new CacheAside<{ when: Date; raw: Buffer }>({ name: 'c', store: createRedisStore({ url: REDIS_URL, prefix }) });
    t.after(() => c.close());
    const when = new Date('2024-05-06T07:08:09.010Z');
    await c.set('typed', { when, raw: Buffer.from([0, 1, 255]) });
    const back = await c.get('typed');
    assert.ok(back?.when instanceof Date && back.when.getTime() === when.getTime());
    assert.ok(Buffer.isBuffer(back?.raw) && back.raw.equals(Buffer.from([0, 1, 255])));
  });

  test('cache-aside race across processes: a reader that loaded the old row cannot fill after another process invalidated', async (t) => {
    const prefix = newPrefix();
    const reader = new CacheAside<string>({ name: 'reader', store: redisStore(t, prefix) });
    const writer = new CacheAside<string>({ name: 'writer', store: redisStore(t, prefix) });
    t.after(async () => {
      await reader.close();
      await writer.close();
    });
    const db = new Map([['k', 'old']]);
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const loading = new Promise<void>((r) => (started = r));
    const read = reader.getOrLoad('k', async (key) => {
      const row = db.get(key);
      started();
      await slow;
      return row;
    });
    await loading;
    await writer.invalidateOnWrite('k', async () => {
      db.set('k', 'new');
    });
    release();
    assert.equal(await read, 'old');
    assert.equal(await writer.get('k'), undefined, 'the old row was not stored');
    assert.equal(await writer.getOrLoad('k', async (key) => db.get(key)), 'new');
    assert.equal(await reader.get('k'), 'new');
  });

  test('read-through with a fleet lease: 2 processes x 1,000 concurrent gets of a cold key -> 1 source load', async (t) => {
    const prefix = newPrefix();
    const source = new MapSource();
    source.rows.set('hot', 'value');
    source.delayMs = 100; // long enough for the other process to find the lease taken
    const make = (name: string): ReadThrough<string> => {
      const store = redisStore(t, prefix);
      const lease = createRedisLease({ redis: store.client, prefix, commandTimeoutMs: 1000 });
      return new ReadThrough<string>({ name, store, source, lease });
    };
    const p1 = make('p1');
    const p2 = make('p2');
    t.after(async () => {
      await p1.close();
      await p2.close();
    });
    // Connect both clients first, so the race is between the two fleets of gets, not connects.
    await p1.invalidate('warm');
    await p2.invalidate('warm');
    const gets = [...Array.from({ length: 1000 }, () => p1.get('hot')), ...Array.from({ length: 1000 }, () => p2.get('hot'))];
    const values = await Promise.all(gets);
    assert.ok(values.every((v) => v === 'value'));
    assert.equal(source.loads, 1, 'one load for the whole fleet');
    assert.equal(p1.stats().loads + p2.stats().loads, 1);
    assert.ok(p1.stats().joins + p2.stats().joins >= 1999, 'everyone else joined (in process or through the lease)');
  });

  test('read-through: tags from tagsFor; invalidateTag in one process drops the entries for all', async (t) => {
    const prefix = newPrefix();
    const source = new MapSource();
    for (const id of ['1', '2', '3']) source.rows.set(`product:${id}`, `p${id}`);
    const tagsFor = (key: string): string[] => (key === 'product:3' ? ['featured'] : ['catalogue']);
    const a = new ReadThrough<string>({ name: 'a', store: redisStore(t, prefix), source, tagsFor });
    const b = new ReadThrough<string>({ name: 'b', store: redisStore(t, prefix), source, tagsFor });
    t.after(async () => {
      await a.close();
      await b.close();
    });
    for (const id of ['1', '2', '3']) await a.get(`product:${id}`);
    assert.equal(source.loads, 3);
    assert.equal(await b.invalidateTag('catalogue'), 2);
    await a.get('product:1');
    await a.get('product:3');
    assert.equal(source.loads, 4, 'product:1 reloaded, product:3 still cached');
  });

  test('write-through: a write reaches the source and Redis; a failed source write leaves Redis without it', async (t) => {
    const prefix = newPrefix();
    const source = new MapSource();
    const w = new WriteThrough<string>({ name: 'w', store: redisStore(t, prefix), source });
    const observer = redisStore(t, prefix);
    t.after(() => w.close());
    await w.set('k', 'v1');
    assert.equal(source.rows.get('k'), 'v1');
    assert.equal((await observer.get('k'))?.value, 'v1', 'in Redis when set() resolves');
    assert.equal(await w.get('k'), 'v1');
    assert.equal(source.loads, 0);
    source.failWrites = true;
    await assert.rejects(w.set('k', 'v2'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
    assert.notEqual((await observer.get('k'))?.value, 'v2');
    assert.equal(await w.get('k'), 'v1', 'reads agree with the source');
    source.failWrites = false;
    await w.delete('k');
    assert.equal(await observer.get('k'), undefined);
    assert.equal(await w.get('k'), undefined);
  });

  test('Redis unreachable (closed port): reads answered by the source, store attempts bounded by the breaker, writes succeed', async (t) => {
    const url = `redis://127.0.0.1:${await closedPort()}`;
    const source = new MapSource();
    source.rows.set('k', 'v');
    const store = new CountingStore(redisStore(t, newPrefix(), url, 200));
    const breaker = { failureThreshold: 5, openMs: 60_000 };
    const rt = new ReadThrough<string>({ name: 'rt-dead', store, source, breaker });
    t.after(() => rt.close());
    for (let i = 0; i < 200; i++) assert.equal(await rt.get('k'), 'v');
    assert.equal(source.loads, 200, 'every read went to the source');
    assert.equal(store.calls, 5, 'only the failures that opened the breaker reached Redis');
    assert.ok(rt.stats().breakerSkips >= 195);

    const store2 = new CountingStore(redisStore(t, newPrefix(), url, 200));
    const aside = new CacheAside<string>({ name: 'aside-dead', store: store2, breaker });
    t.after(() => aside.close());
    for (let i = 0; i < 50; i++) assert.equal(await aside.getOrLoad('k', async () => 'loaded'), 'loaded');
    assert.equal(await aside.get('k'), undefined);
    assert.ok(store2.calls <= 5);

    const store3 = new CountingStore(redisStore(t, newPrefix(), url, 200));
    const wt = new WriteThrough<string>({ name: 'wt-dead', store: store3, source, breaker });
    t.after(() => wt.close());
    for (let i = 0; i < 20; i++) await wt.set(`w${i}`, `value ${i}`);
    assert.equal(source.rows.get('w19'), 'value 19', 'writes succeed without Redis');
    assert.equal(await wt.get('w7'), 'value 7');
    assert.equal(wt.repairState().keys, 20, 'each written key is kept for repair');
    assert.ok(store3.calls <= 5);
  });

  test('connection cut mid-load (a Redis restart): the read still answers; the cache fills again once Redis is back', async (t) => {
    const { proxy, url } = await cutProxy(t);
    const prefix = newPrefix();
    const source = new MapSource();
    source.rows.set('k', 'v1');
    const rt = new ReadThrough<string>({ name: 'rt-cut', store: redisStore(t, prefix, url, 300), source, breaker: { failureThreshold: 2, openMs: 100 } });
    const observer = redisStore(t, prefix);
    t.after(() => rt.close());
    await rt.invalidate('warm'); // connected
    let release!: () => void;
    source.hold = new Promise((r) => (release = r));
    const read = rt.get('k');
    assert.ok(await eventually(() => source.loads === 1), 'the load started (token taken before it)');
    proxy.cut();
    release();
    source.hold = undefined;
    assert.equal(await read, 'v1', 'the load answers although its fill cannot reach Redis');
    assert.equal(await observer.get('k'), undefined, 'nothing was stored');
    // While Redis is unreachable reads keep working from the source.
    for (let i = 0; i < 10; i++) assert.equal(await rt.get('k'), 'v1');
    proxy.restore();
    // The client reconnects and the breaker lets a trial through: the cache fills again.
    assert.ok(await eventually(async () => (await rt.get('k')) === 'v1' && (await observer.get('k'))?.value === 'v1'), 'filled after Redis came back');
    const loads = source.loads;
    assert.equal(await rt.get('k'), 'v1');
    assert.equal(source.loads, loads, 'a hit again');
  });

  test('write-through during a Redis outage: the write succeeds, this process never serves the old value, Redis is repaired when back', async (t) => {
    const { proxy, url } = await cutProxy(t);
    const prefix = newPrefix();
    const source = new MapSource();
    const wt = new WriteThrough<string>({ name: 'wt-cut', store: redisStore(t, prefix, url, 300), source, breaker: { failureThreshold: 2, openMs: 100 } });
    const observer = redisStore(t, prefix);
    t.after(() => wt.close());
    await wt.set('k', 'v1');
    assert.equal((await observer.get('k'))?.value, 'v1');
    proxy.cut();
    await wt.set('k', 'v2');
    assert.equal(source.rows.get('k'), 'v2');
    assert.equal((await observer.get('k'))?.value, 'v1', 'Redis still holds the old value (it never heard of the write)');
    assert.equal(await wt.get('k'), 'v2', 'but this process does not serve it');
    assert.deepEqual(wt.repairState(), { keys: 1, all: false });
    proxy.restore();
    assert.ok(
      await eventually(async () => {
        await wt.get('k'); // traffic drives the repair
        return wt.repairState().keys === 0;
      }),
      'repaired',
    );
    const inRedis = (await observer.get('k'))?.value;
    assert.ok(inRedis === undefined || inRedis === 'v2', `Redis holds ${inRedis}`);
    assert.equal(await wt.get('k'), 'v2');
  });

  test('write-through, two processes: racing writers whose tokens carry the same generation never leave Redis with a value the source lacks', async (t) => {
    // Forced interleaving across the two processes: p1 invalidates, p2 invalidates, then both take
    // their tokens (same generation). The source applies v1 then v2; p2 answers first, p1 last.
    const prefix = newPrefix();
    const signal = (): { wait: Promise<void>; fire: () => void } => {
      let fire!: () => void;
      const wait = new Promise<void>((r) => (fire = r));
      return { wait, fire };
    };
    const p2Invalidated = signal();
    const p1Token = signal();
    const v1Applied = signal();
    const p1Answer = signal();
    class Hooked extends CountingStore {
      constructor(
        inner: CacheStore<string>,
        private readonly hooks: { beforeToken?: Promise<void>; afterInvalidate?: () => void; afterToken?: () => void },
      ) {
        super(inner);
      }
      override async invalidate(key: string): Promise<void> {
        await super.invalidate(key);
        if (key === 'k') this.hooks.afterInvalidate?.();
      }
      override async fillToken(key: string): Promise<FillToken> {
        if (key === 'k') await this.hooks.beforeToken;
        const token = await super.fillToken(key);
        if (key === 'k') this.hooks.afterToken?.();
        return token;
      }
    }
    const rows = new Map<string, string>();
    const source: Source<string> = {
      name: 'scripted',
      load: async (key) => rows.get(key),
      write: async (key, value) => {
        if (value === 'v1') {
          rows.set(key, value);
          v1Applied.fire();
          await p1Answer.wait;
        } else {
          await v1Applied.wait;
          rows.set(key, value);
        }
      },
      remove: async (key) => {
        rows.delete(key);
      },
    };
    const p1 = new WriteThrough<string>({ name: 'p1', store: new Hooked(redisStore(t, prefix), { beforeToken: p2Invalidated.wait, afterToken: p1Token.fire }), source });
    const p2 = new WriteThrough<string>({ name: 'p2', store: new Hooked(redisStore(t, prefix), { afterInvalidate: p2Invalidated.fire, beforeToken: p1Token.wait }), source });
    const observer = redisStore(t, prefix);
    t.after(async () => {
      await p1.close();
      await p2.close();
    });
    const w1 = p1.set('k', 'v1');
    await sleep(20); // p1 has invalidated and waits to take its token
    const w2 = p2.set('k', 'v2');
    await w2;
    p1Answer.fire();
    await w1;
    assert.equal(rows.get('k'), 'v2');
    const cached = (await observer.get('k'))?.value;
    assert.ok(cached === undefined || cached === 'v2', `Redis holds ${cached}, the source v2`);
  });
});
