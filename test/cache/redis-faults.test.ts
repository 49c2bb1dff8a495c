/**
 * The Redis store when Redis misbehaves: nothing listening, connections killed mid-load (what a
 * Redis restart looks like to a client), and a connection that stays open but stops answering.
 * The machine's Redis is never stopped: faults come from CLIENT KILL and from a small TCP proxy
 * between the store and Redis that the test cuts, blackholes and restores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { needService, REDIS } from '../support/services.js';
import { REDIS_URL, redisTestRun } from '../support/redis.js';
import { closedPort, FaultProxy } from '../support/fault-proxy.js';
import { createRedisStore, type RedisStore } from '../../src/cache/stores/redis.js';
import { CacheError } from '../../src/cache/errors.js';
import type { Entry } from '../../src/cache/types.js';

const skip = await needService(REDIS);
const { prefix: RUN, admin } = redisTestRun('redis-faults', skip);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function entry<V>(value: V, lifeMs = 60_000): Entry<V> {
  const now = Date.now();
  return { value, freshUntilMs: now + lifeMs, staleUntilMs: now + lifeMs };
}

function isUnavailable(err: unknown): boolean {
  return err instanceof CacheError && err.code === 'ARCHLAB_CACHE_STORE_UNAVAILABLE' && err.retryable;
}

/** How long `p` takes to settle, and how it settled. */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; ok: boolean; value?: T; err?: unknown }> {
  const t0 = performance.now();
  try {
    const value = await p;
    return { ms: performance.now() - t0, ok: true, value };
  } catch (err) {
    return { ms: performance.now() - t0, ok: false, err };
  }
}

/** Calls `fn` until it succeeds, for at most `ms`; returns how long that took. */
async function recovers(fn: () => Promise<unknown>, ms: number): Promise<number> {
  const t0 = performance.now();
  let last: unknown;
  while (performance.now() - t0 < ms) {
    try {
      await fn();
      return performance.now() - t0;
    } catch (err) {
      last = err;
      await sleep(25);
    }
  }
  throw last;
}

function ioredisQueues(store: RedisStore): { offline: number; command: number } {
  const c = store.client as unknown as { offlineQueue?: { length: number }; commandQueue?: { length: number } };
  return { offline: c.offlineQueue?.length ?? 0, command: c.commandQueue?.length ?? 0 };
}

test('redis faults: nothing listening -> every call fails with STORE_UNAVAILABLE within commandTimeoutMs, nothing queued', { skip }, async (t) => {
  const port = await closedPort();
  const timeoutMs = 200;
  const store = createRedisStore({ url: `redis://127.0.0.1:${port}`, prefix: RUN + 'closed:', commandTimeoutMs: timeoutMs });
  t.after(() => store.close());
  const token = { generation: 0, takenAtMs: Date.now() };
  const calls: [string, () => Promise<unknown>][] = [
    ['get', () => store.get('k')],
    ['set', () => store.set('k', entry(1))],
    ['fillToken', () => store.fillToken('k')],
    ['fill', () => store.fill('k', entry(1), token)],
    ['invalidate', () => store.invalidate('k')],
    ['invalidateTag', () => store.invalidateTag('t')],
    ['clear', () => store.clear()],
  ];
  const worst: Record<string, number> = {};
  for (let round = 0; round < 3; round++) {
    for (const [name, call] of calls) {
      const r = await timed(call());
      assert.equal(r.ok, false, `${name} cannot succeed`);
      assert.ok(isUnavailable(r.err), `${name}: ${String(r.err)}`);
      // A bound, not a speed claim: the call must not hang past its timeout (slack for a busy machine).
      assert.ok(r.ms < timeoutMs + 500, `${name} took ${r.ms.toFixed(0)} ms`);
      worst[name] = Math.max(worst[name] ?? 0, r.ms);
    }
  }
  // A burst while down: all fail, nothing piles up in ioredis or in the store.
  const burst = await Promise.all(Array.from({ length: 2_000 }, () => timed(store.get('k'))));
  assert.ok(burst.every((r) => !r.ok && isUnavailable(r.err)));
  assert.deepEqual(ioredisQueues(store), { offline: 0, command: 0 });
  assert.equal(store.pendingCalls(), 0);
  t.diagnostic(`closed port, slowest failure per call (ms): ${JSON.stringify(Object.fromEntries(Object.entries(worst).map(([k, v]) => [k, Math.round(v)])))}`);
});

test('redis faults: connections cut mid-load -> typed failures, then recovery without a restart', { skip }, async (t) => {
  const proxy = await new FaultProxy({ port: 6379 }).start();
  t.after(() => proxy.close());
  const timeoutMs = 300;
  const store = createRedisStore({ url: `redis://127.0.0.1:${proxy.port}`, prefix: RUN + 'cut:', commandTimeoutMs: timeoutMs });
  t.after(() => store.close());
  await recovers(() => store.set('k', entry('before')), 3_000);

  // A load running across the cut: every call settles, successes are correct, failures are typed.
  let stop = false;
  const outcomes = { ok: 0, unavailable: 0, other: [] as unknown[], slowestMs: 0 };
  const worker = async (id: number): Promise<void> => {
    for (let i = 0; !stop && i < 10_000; i++) {
      const r = await timed<unknown>(i % 3 === 0 ? store.set(`w${id}`, entry(i)) : store.get('k'));
      outcomes.slowestMs = Math.max(outcomes.slowestMs, r.ms);
      if (r.ok) outcomes.ok++;
      else if (isUnavailable(r.err)) outcomes.unavailable++;
      else outcomes.other.push(r.err);
      if (!r.ok) await sleep(5);
    }
  };
  const workers = Promise.all(Array.from({ length: 8 }, (_, i) => worker(i)));
  await sleep(150);
  proxy.cut();
  await sleep(400);
  assert.deepEqual(ioredisQueues(store).offline, 0);
  proxy.restore();
  const recoveryMs = await recovers(() => store.get('k'), 5_000);
  await sleep(100);
  stop = true;
  await workers;
  assert.deepEqual(outcomes.other, [], 'only STORE_UNAVAILABLE while cut');
  assert.ok(outcomes.unavailable > 0, 'the cut was seen');
  assert.ok(outcomes.slowestMs < timeoutMs + 500, `slowest call ${outcomes.slowestMs.toFixed(0)} ms`);
  assert.equal((await store.get('k'))?.value, 'before', 'data written before the cut is intact');
  assert.equal(store.pendingCalls(), 0);
  t.diagnostic(`cut: ${outcomes.ok} ok, ${outcomes.unavailable} unavailable, recovered ${recoveryMs.toFixed(0)} ms after restore`);
});

test('redis faults: a connection that stops answering -> timeouts, bounded pending calls, a forced reconnect, recovery', { skip }, async (t) => {
  const proxy = await new FaultProxy({ port: 6379 }).start();
  t.after(() => proxy.close());
  const timeoutMs = 150;
  const store = createRedisStore({ url: `redis://127.0.0.1:${proxy.port}`, prefix: RUN + 'blackhole:', commandTimeoutMs: timeoutMs, maxPendingCalls: 100 });
  t.after(() => store.close());
  await recovers(() => store.set('k', entry('v')), 3_000);
  proxy.blackhole();
  const burst = await Promise.all(Array.from({ length: 1_000 }, (_, i) => timed(store.get(`k${i % 10}`))));
  assert.ok(burst.every((r) => !r.ok && isUnavailable(r.err)), 'every call failed typed');
  assert.ok(Math.max(...burst.map((r) => r.ms)) < timeoutMs + 500);
  // The store never let more than maxPendingCalls reach ioredis, and the stalled connection was dropped.
  assert.ok(ioredisQueues(store).command <= 100, `ioredis holds ${ioredisQueues(store).command} commands`);
  assert.equal(store.stallReconnects, 1, 'one forced reconnect for the stalled connection');
  for (let i = 0; i < 5; i++) assert.ok(isUnavailable((await timed(store.get('k'))).err));
  proxy.restore();
  const recoveryMs = await recovers(() => store.get('k'), 5_000);
  assert.equal((await store.get('k'))?.value, 'v');
  assert.equal(store.pendingCalls(), 0);
  assert.ok(ioredisQueues(store).command <= 1);
  t.diagnostic(`blackhole: ${store.stallReconnects} forced reconnect(s), recovered ${recoveryMs.toFixed(0)} ms after restore`);
});

test('redis faults: CLIENT KILL of the store\'s connection mid-load (a Redis restart, seen from the client) -> recovery', { skip }, async (t) => {
  const name = `archlab-test-${process.pid}-${randomBytes(3).toString('hex')}`;
  const store = createRedisStore({ url: REDIS_URL, prefix: RUN + 'kill:', commandTimeoutMs: 500, clientOptions: { connectionName: name } });
  t.after(() => store.close());
  await recovers(() => store.set('k', entry('v')), 3_000);
  const list = await admin!.client('LIST');
  const ids = String(list)
    .split('\n')
    .filter((line) => line.includes(`name=${name}`))
    .map((line) => /id=(\d+)/.exec(line)?.[1]);
  assert.ok(ids.length >= 1, 'found the store connection');
  // Kill it while a load is running: workers keep calls in flight before, during and after the kill.
  let stop = false;
  const results: Awaited<ReturnType<typeof timed<unknown>>>[] = [];
  const worker = async (id: number): Promise<void> => {
    for (let i = 0; !stop && i < 10_000; i++) {
      results.push(await timed<unknown>(i % 2 ? store.get('k') : store.set(`x${id}`, entry(i))));
      if (!results.at(-1)!.ok) await sleep(5);
    }
  };
  const workers = Promise.all(Array.from({ length: 16 }, (_, i) => worker(i)));
  await sleep(100);
  for (const id of ids) await admin!.client('KILL', 'ID', id!);
  await sleep(300);
  stop = true;
  await workers;
  assert.ok(results.some((r) => !r.ok), 'the kill was seen by calls in flight');
  for (const r of results) {
    if (!r.ok) assert.ok(isUnavailable(r.err), String(r.err));
  }
  const recoveryMs = await recovers(() => store.get('k'), 5_000);
  assert.equal((await store.get('k'))?.value, 'v');
  assert.deepEqual(ioredisQueues(store).offline, 0);
  // Every call that was in flight at the kill settled (none is left waiting, none leaked a slot).
  assert.equal(store.pendingCalls(), 0);
  const failed = results.filter((r) => !r.ok);
  t.diagnostic(`client kill: ${results.length - failed.length} ok / ${failed.length} unavailable across the kill, slowest ${Math.max(...results.map((r) => r.ms)).toFixed(0)} ms, recovered in ${recoveryMs.toFixed(0)} ms`);
});
