/**
 * Tiered store across separate processes: this file forks itself as child processes (each a tiered
 * store on the same namespace, with its own Redis connections); the parent writes and invalidates,
 * and each child reports when the invalidation reached it and whether its L1 copy was gone. The
 * time from the parent's invalidate call to the last child's receipt is the visibility latency
 * (wall clocks of one machine: performance.timeOrigin + performance.now()).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { needService, REDIS } from '../support/services.js';
import { deletePrefix, REDIS_URL, runPrefix } from '../support/redis.js';
import { createTieredStore } from '../../src/cache/stores/tiered.js';
import type { Entry } from '../../src/cache/types.js';

const CHILD_ENV = 'ARCHLAB_TIERED_CHILD_PREFIX';

type ToChild = { type: 'read'; key: string } | { type: 'stop' };
type FromChild =
  | { type: 'ready' }
  | { type: 'inv'; subject: string; at: number; l1Dropped: boolean }
  | { type: 'read'; key: string; value: unknown; inL1: boolean };

const wallNow = (): number => performance.timeOrigin + performance.now();

function entry<V>(value: V): Entry<V> {
  const now = Date.now();
  return { value, freshUntilMs: now + 60_000, staleUntilMs: now + 120_000 };
}

async function child(prefix: string): Promise<void> {
  const store = createTieredStore({ l2: { url: REDIS_URL, prefix, commandTimeoutMs: 2_000 }, l1MaxStaleMs: 5_000 });
  const send = (m: FromChild): void => {
    process.send?.(m);
  };
  // The parent going away ends the child, whatever state it is in.
  process.on('disconnect', () => process.exit(0));
  store.onRemoteInvalidation = (m) => send({ type: 'inv', subject: m.subject, at: wallNow(), l1Dropped: store.peek(m.subject) === undefined });
  process.on('message', (m: ToChild) => {
    if (m.type === 'read') {
      void store.get(m.key).then((e) => send({ type: 'read', key: m.key, value: e?.value, inL1: store.peek(m.key) !== undefined }));
    } else {
      void store.close().then(() => process.exit(0));
    }
  });
  await store.ready(10_000);
  send({ type: 'ready' });
}

if (process.env[CHILD_ENV]) {
  await child(process.env[CHILD_ENV]);
} else {
  const skip = await needService(REDIS);

  test('tiered, multi-process: an invalidation reaches every other process and drops its L1 copy (latency measured)', { skip, timeout: 120_000 }, async (t) => {
    const prefix = runPrefix('tiered-mp');
    const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const children: ChildProcess[] = [];
    t.after(async () => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      await deletePrefix(admin, prefix);
      admin.disconnect();
    });

    const N = 3;
    const inbox: FromChild[][] = [];
    const waiters: (() => void)[] = [];
    const wake = (): void => {
      for (const w of waiters.splice(0)) w();
    };
    /** Waits (bounded) until `pred` holds over the children's messages. */
    const waitFor = async (pred: () => boolean, what: string, ms = 5_000): Promise<void> => {
      const t0 = performance.now();
      while (!pred()) {
        if (performance.now() - t0 > ms) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    };
    const self = fileURLToPath(import.meta.url);
    for (let i = 0; i < N; i++) {
      const c = fork(self, [], { execArgv: ['--import', 'tsx'], env: { ...process.env, [CHILD_ENV]: prefix }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(c);
      inbox.push([]);
      c.on('message', (m: FromChild) => {
        inbox[i]!.push(m);
        wake();
      });
    }
    await waitFor(() => inbox.every((m) => m.some((x) => x.type === 'ready')), 'children ready', 30_000);

    const writer = createTieredStore({ l2: { url: REDIS_URL, prefix, commandTimeoutMs: 2_000 }, l1MaxStaleMs: 5_000 });
    t.after(() => writer.close());
    await writer.ready();

    const invs = (i: number, key: string): Extract<FromChild, { type: 'inv' }>[] => inbox[i]!.filter((m): m is Extract<FromChild, { type: 'inv' }> => m.type === 'inv' && m.subject === key);
    const rounds = 200;
    const latencies: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const key = `mp${r}`;
      await writer.set(key, entry(r));
      // The set's own message first (a read racing it would correctly not be copied into L1) ...
      await waitFor(() => children.every((_, i) => invs(i, key).length >= 1), `set message for ${key}`);
      // ... then every child reads the key into its L1.
      for (const c of children) c.send({ type: 'read', key } satisfies ToChild);
      await waitFor(() => inbox.every((m) => m.some((x) => x.type === 'read' && x.key === key)), `reads of ${key}`);
      for (const m of inbox) {
        const read = m.find((x): x is Extract<FromChild, { type: 'read' }> => x.type === 'read' && x.key === key)!;
        assert.equal(read.value, r);
        assert.equal(read.inL1, true, `round ${r}: copied into the child's L1`);
      }
      const t0 = wallNow();
      await writer.invalidate(key);
      await waitFor(() => children.every((_, i) => invs(i, key).length >= 2), `invalidation of ${key}`);
      const seen = children.map((_, i) => invs(i, key)[1]!);
      assert.ok(seen.every((s) => s.l1Dropped), `round ${r}: every child's L1 copy dropped`);
      latencies.push(Math.max(...seen.map((s) => s.at)) - t0);
      // Keep the inbox small.
      for (let i = 0; i < N; i++) inbox[i] = inbox[i]!.filter((m) => m.type === 'ready');
    }
    latencies.sort((a, b) => a - b);
    const p = (q: number): string => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(3);
    t.diagnostic(`multi-process (${N} other processes) invalidation visibility, ms from the invalidate call to the last process's receipt: p50 ${p(0.5)} p90 ${p(0.9)} p99 ${p(0.99)} max ${latencies.at(-1)!.toFixed(3)} over ${rounds} rounds`);

    for (const c of children) c.send({ type: 'stop' } satisfies ToChild);
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  });
}
