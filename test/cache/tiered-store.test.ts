/**
 * The tiered store (memory L1 + Redis L2 + pub/sub invalidation) against the machine's Redis: the
 * conformance suite, then several instances sharing one namespace in this process, each with its
 * own Redis connections (see tiered-multiprocess.test.ts for separate processes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { needService, REDIS } from '../support/services.js';
import { REDIS_URL, redisTestRun } from '../support/redis.js';
import { closedPort, FaultProxy } from '../support/fault-proxy.js';
import { storeConformance } from '../../src/cache/stores/conformance.js';
import { createTieredStore, type TieredStore, type TieredStoreOptions } from '../../src/cache/stores/tiered.js';
import { CacheError } from '../../src/cache/errors.js';
import type { Entry } from '../../src/cache/types.js';

const skip = await needService(REDIS);
const { prefix: RUN, admin, deletePrefix } = redisTestRun('tiered', skip);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let seq = 0;
storeConformance(
  'tiered',
  async (o = {}) => {
    const prefix = `${RUN}${o.namespace ?? `s${seq++}`}:`;
    const store = createTieredStore({
      l1: { raceWindowMs: o.raceWindowMs, maxValueBytes: o.maxValueBytes },
      l2: { url: REDIS_URL, prefix, raceWindowMs: o.raceWindowMs, maxValueBytes: o.maxValueBytes, commandTimeoutMs: 2000 },
    });
    await store.ready();
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

/** `n` tiered stores sharing one namespace, each with its own connections; closed after the test. */
async function fleet(t: { after(fn: () => Promise<void>): void }, n: number, extra: Partial<TieredStoreOptions> = {}, l2extra: Record<string, unknown> = {}): Promise<{ stores: TieredStore[]; prefix: string }> {
  const prefix = `${RUN}f${seq++}:`;
  const stores: TieredStore[] = [];
  t.after(async () => {
    for (const s of stores) await s.close();
    await deletePrefix(prefix);
  });
  for (let i = 0; i < n; i++) {
    // A wide staleness window: on a loaded machine a late heartbeat would turn L1 off (correctly) and
    // make the L1 assertions of tests that are not about heartbeats flaky.
    const s = createTieredStore({ l2: { url: REDIS_URL, prefix, commandTimeoutMs: 2000, ...l2extra }, l1MaxStaleMs: 5_000, ...extra });
    stores.push(s);
  }
  await Promise.all(stores.map((s) => s.ready()));
  return { stores, prefix };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(2);
  }
  return performance.now() - t0;
}

/**
 * Runs a write on one instance and waits until every other instance has received its message. A
 * read racing with that message is (correctly) not copied into L1, so tests that then check L1
 * wait first.
 */
async function synced(others: TieredStore[], write: () => Promise<unknown>): Promise<void> {
  const before = others.map((o) => o.stats.received);
  await write();
  await until(() => others.every((o, i) => o.stats.received > before[i]!), 2_000, 'others received the write');
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

test('tiered: an L2 hit is copied into L1 with the same times; writes in one instance drop the copies in the others', { skip }, async (t) => {
  const { stores } = await fleet(t, 3);
  const [a, b, c] = stores as [TieredStore, TieredStore, TieredStore];
  const e = entry({ n: 1 }, 60_000, ['grp']);
  await synced([b, c], () => a.set('k', e));
  assert.deepEqual(a.peek('k')?.value, { n: 1 }, 'the writer keeps its own copy');
  assert.equal(b.peek('k'), undefined);
  const got = await b.get('k');
  assert.deepEqual(got?.value, { n: 1 });
  const copy = b.peek('k');
  assert.ok(copy, 'copied into L1');
  assert.equal(copy.freshUntilMs, e.freshUntilMs);
  assert.equal(copy.staleUntilMs, e.staleUntilMs);
  await c.get('k');

  await a.set('k', entry({ n: 2 }));
  await until(() => b.peek('k') === undefined && c.peek('k') === undefined, 2_000, 'set dropped the other copies');
  assert.deepEqual((await b.get('k'))?.value, { n: 2 });

  await c.get('k');
  await a.invalidate('k');
  await until(() => b.peek('k') === undefined && c.peek('k') === undefined, 2_000, 'invalidate dropped the copies');

  await synced([b, c], () => a.set('t1', entry(1, 60_000, ['grp'])));
  await b.get('t1');
  assert.ok(b.peek('t1'));
  await c.invalidateTag('grp');
  await until(() => a.peek('t1') === undefined && b.peek('t1') === undefined, 2_000, 'invalidateTag dropped the copies');

  await synced([a, c], () => b.set('x', entry('x')));
  await a.get('x');
  assert.ok(a.peek('x'));
  await c.clear();
  await until(() => a.peek('x') === undefined && b.peek('x') === undefined, 2_000, 'clear emptied every L1');

  // a fill publishes too
  await b.get('f'); // miss
  await synced([b, c], () => a.set('f', entry('old')));
  await b.get('f');
  assert.ok(b.peek('f'));
  const token = await c.fillToken('f');
  assert.equal(await c.fill('f', entry('filled'), token), true);
  await until(() => b.peek('f') === undefined, 2_000, 'fill dropped the other copies');
  // Own messages are skipped, others counted.
  assert.ok(a.stats.received > 0 && b.stats.received > 0);
  assert.equal(a.stats.malformed + b.stats.malformed + c.stats.malformed, 0);
});

test('tiered: invalidation visibility across instances (measured, in-process, separate connections)', { skip }, async (t) => {
  const { stores } = await fleet(t, 4);
  const [writer, ...readers] = stores as [TieredStore, ...TieredStore[]];
  const rounds = 300;
  const latencies: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const key = `lat${i}`;
    await synced(readers, () => writer.set(key, entry(i)));
    await Promise.all(readers.map((r) => r.get(key)));
    assert.ok(readers.every((r) => r.peek(key) !== undefined));
    const seen = readers.map(
      (r) =>
        new Promise<number>((resolve) => {
          r.onRemoteInvalidation = (m) => {
            if (m.subject === key) resolve(performance.now());
          };
        }),
    );
    const t0 = performance.now();
    await writer.invalidate(key);
    const times = await Promise.race([Promise.all(seen), sleep(2_000).then(() => undefined)]);
    assert.ok(times, `round ${i}: every reader received the invalidation within 2 s`);
    latencies.push(Math.max(...times) - t0);
    assert.ok(readers.every((r) => r.peek(key) === undefined), `round ${i}: every L1 copy dropped`);
  }
  latencies.sort((x, y) => x - y);
  t.diagnostic(
    `tiered invalidation visible in all ${readers.length} other instances (ms, from the invalidate call): p50 ${percentile(latencies, 50).toFixed(3)} p99 ${percentile(latencies, 99).toFixed(3)} max ${latencies.at(-1)!.toFixed(3)} over ${rounds} rounds`,
  );
});

test('tiered: an invalidation arriving while L2 is being read keeps the old value out of L1', { skip }, async (t) => {
  const { stores } = await fleet(t, 1);
  const s = stores[0]!;
  await s.l2.set('k', entry('old'));
  const pending = s.get('k'); // token taken, L2 read in flight
  s.l1.invalidateNow('k'); // what the pub/sub handler does when a message arrives now
  assert.equal((await pending)?.value, 'old', 'the caller still gets what it read');
  assert.equal(s.peek('k'), undefined, 'but L1 did not keep it');
  await s.get('k');
  assert.equal(s.peek('k')?.value, 'old', 'a later read copies it');
});

test('tiered: subscriber connection killed -> L1 off and emptied at once, back on (empty) after the reconnect', { skip }, async (t) => {
  const name = `archlab-tiered-${process.pid}-${randomBytes(3).toString('hex')}`;
  const { stores } = await fleet(t, 2, {}, { clientOptions: { connectionName: name } });
  const [a, b] = stores as [TieredStore, TieredStore];
  await synced([b], () => a.set('k', entry('v1')));
  await b.get('k');
  assert.ok(b.peek('k'));
  const list = String(await admin!.client('LIST')).split('\n');
  const subIds = list.filter((l) => l.includes(`name=${name}`) && /sub=[1-9]/.test(l)).map((l) => /id=(\d+)/.exec(l)![1]!);
  assert.equal(subIds.length, 2, 'one subscriber connection per instance');
  // Kill b's subscriber only: find it as the one b's ping keeps busy is not possible from outside,
  // so kill both and check both recover.
  for (const id of subIds) await admin!.client('KILL', 'ID', id);
  await until(() => !b.l1Enabled(), 1_000, 'L1 turned off');
  assert.equal(b.peek('k'), undefined);
  assert.equal(b.l1.size(), 0, 'L1 emptied');
  // While b is deaf, a writes: b must not serve the old value from anywhere.
  await a.set('k', entry('v2'));
  assert.equal((await b.get('k'))?.value, 'v2');
  const back = await until(() => b.l1Enabled() && a.l1Enabled(), 5_000, 'L1 back on');
  assert.equal(b.l1.size(), 0, 'L1 starts empty after a reconnect');
  await b.get('k');
  assert.equal(b.peek('k')?.value, 'v2');
  await a.set('k', entry('v3'));
  await until(() => b.peek('k') === undefined, 2_000, 'invalidations flow again');
  t.diagnostic(`subscriber killed: L1 back on ${back.toFixed(0)} ms later; L1 turned off ${b.stats.l1Disabled} time(s)`);
});

test('tiered: a subscriber connection that stops answering turns L1 off within l1MaxStaleMs', { skip }, async (t) => {
  // The subscriber goes through a proxy that can silently drop traffic.
  const proxy = await new FaultProxy({ port: 6379 }).start();
  t.after(() => proxy.close());
  const subscriber = new Redis(proxy.port, '127.0.0.1', { enableOfflineQueue: true, maxRetriesPerRequest: 0 });
  subscriber.on('error', () => {});
  t.after(() => subscriber.disconnect());
  const prefix = `${RUN}silent${seq++}:`;
  const store = createTieredStore({ l2: { url: REDIS_URL, prefix }, subscriber, heartbeatIntervalMs: 50, l1MaxStaleMs: 200 });
  t.after(async () => {
    await store.close();
    await deletePrefix(prefix);
  });
  await store.ready();
  await store.set('k', entry('v'));
  assert.ok(store.peek('k'));
  proxy.blackhole();
  const off = await until(() => !store.l1Enabled(), 2_000, 'L1 off after the heartbeat went unanswered');
  assert.equal(store.peek('k'), undefined);
  assert.equal((await store.get('k'))?.value, 'v', 'served from L2 meanwhile');
  assert.equal(store.peek('k'), undefined, 'nothing copied into L1 while it is off');
  t.diagnostic(`silent subscriber: L1 off ${off.toFixed(0)} ms after traffic stopped (l1MaxStaleMs 200)`);
  // Stop dropping and cut the link, as a TCP keepalive or the kernel eventually would: it comes back.
  proxy.cut();
  proxy.restore();
  await until(() => store.l1Enabled(), 5_000, 'L1 back on after the subscriber reconnected');
});

test('tiered: malformed and foreign messages on the channel are counted and ignored', { skip }, async (t) => {
  const { stores } = await fleet(t, 1);
  const s = stores[0]!;
  await s.set('k', entry('v'));
  for (const m of ['garbage', '2|x|k|k', '1|x|z|k', '1|x|k|', '1|x', '']) await admin!.publish(s.channel, m);
  await admin!.publish(s.channel, '1|someone-else|k|other-key');
  await until(() => s.stats.received >= 1, 2_000, 'the valid message arrived');
  assert.equal(s.stats.malformed, 6, 'every one of the six is malformed (an empty key included)');
  assert.equal(s.peek('k')?.value, 'v', 'nothing dropped by garbage');
  // A message with '|' in the key works.
  await s.set('a|b', entry(1));
  await admin!.publish(s.channel, '1|someone-else|k|a|b');
  await until(() => s.peek('a|b') === undefined, 2_000, 'key with | dropped');
});

test('tiered: L1 limits — a value too large for L1 is served from L2; l1MaxTtlMs caps the L1 copy', { skip }, async (t) => {
  const { stores } = await fleet(t, 1, { l1: { maxValueBytes: 100, maxBytes: 10_000 }, l1MaxTtlMs: 1_000 });
  const s = stores[0]!;
  await s.set('big', entry('x'.repeat(500)));
  assert.equal(s.peek('big'), undefined);
  assert.equal(((await s.get('big'))?.value as string).length, 500);
  const e = entry('small', 60_000);
  await s.set('small', e);
  const copy = s.peek('small');
  assert.ok(copy && copy.staleUntilMs <= Date.now() + 1_000, 'L1 copy capped');
  assert.equal((await s.l2.get('small'))?.staleUntilMs, e.staleUntilMs, 'L2 keeps the real times');
});

test('tiered: with Redis unreachable, calls fail typed within the timeout and ready() rejects', { skip }, async () => {
  const port = await closedPort();
  const store = createTieredStore({ l2: { url: `redis://127.0.0.1:${port}`, prefix: `${RUN}down:`, commandTimeoutMs: 200 } });
  try {
    await assert.rejects(store.ready(300), (e) => e instanceof CacheError && e.code === 'ARCHLAB_CACHE_STORE_UNAVAILABLE');
    assert.equal(store.l1Enabled(), false);
    const t0 = performance.now();
    await assert.rejects(store.get('k'), (e) => e instanceof CacheError && e.code === 'ARCHLAB_CACHE_STORE_UNAVAILABLE');
    await assert.rejects(store.set('k', entry(1)), (e) => e instanceof CacheError && e.code === 'ARCHLAB_CACHE_STORE_UNAVAILABLE');
    assert.ok(performance.now() - t0 < 1_500);
    assert.equal(store.peek('k'), undefined, 'a failed write leaves nothing in L1');
  } finally {
    await store.close();
  }
});
