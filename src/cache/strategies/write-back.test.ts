import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { SeededRandom } from '../../core/random.js';
import { CacheError } from '../errors.js';
import { functionSource } from '../sources/function.js';
import { createMemoryStore } from '../stores/memory.js';
import type { CacheStore, Entry, FillToken, SourceWrite } from '../types.js';
import { WriteBack, type WriteBackOpenOptions } from './write-back.js';

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

/** The source of truth as a Map, with a switch to make it fail and a log of what reached it. */
class FakeDb<V> {
  rows = new Map<string, V>();
  batches: SourceWrite<V>[][] = [];
  loads = 0;
  down = false;
  hold: Promise<void> | undefined;

  source(withBatch = true) {
    return functionSource<V>({
      name: 'fake',
      load: async (key) => {
        this.loads++;
        if (this.down) throw new RangeError('db down');
        return this.rows.get(key);
      },
      write: async (key, value) => this.apply([{ op: 'put', key, value }]),
      remove: async (key) => this.apply([{ op: 'delete', key }]),
      ...(withBatch ? { writeBatch: (writes: readonly SourceWrite<V>[]) => this.apply(writes) } : {}),
    });
  }

  private async apply(writes: readonly SourceWrite<V>[]): Promise<void> {
    if (this.hold) await this.hold;
    if (this.down) throw new RangeError('db down');
    this.batches.push([...writes]);
    for (const w of writes) {
      if (w.op === 'put') this.rows.set(w.key, w.value);
      else this.rows.delete(w.key);
    }
  }
}

/** A store that can be switched off: every call then fails as an unreachable Redis would. */
function switchable<V>(inner: CacheStore<V>): CacheStore<V> & { down: boolean } {
  const fail = (): never => {
    throw new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', 'store down (test)');
  };
  const s = {
    kind: 'redis' as const,
    commandTimeoutMs: 100,
    down: false,
    get: async (k: string) => (s.down ? fail() : inner.get(k)),
    set: async (k: string, e: Entry<V>) => (s.down ? fail() : inner.set(k, e)),
    fillToken: async (k: string) => (s.down ? fail() : inner.fillToken(k)),
    fill: async (k: string, e: Entry<V>, t: FillToken) => (s.down ? fail() : inner.fill(k, e, t)),
    invalidate: async (k: string) => (s.down ? fail() : inner.invalidate(k)),
    invalidateTag: async (t: string) => (s.down ? fail() : inner.invalidateTag(t)),
    clear: async () => (s.down ? fail() : inner.clear()),
    size: () => inner.size(),
    close: () => inner.close(),
  };
  return s;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-wb-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function setup<V = number>(t: TestContext, extra: Partial<WriteBackOpenOptions<V>> = {}, db = new FakeDb<V>()) {
  const clock = (extra.clock as ManualClock | undefined) ?? new ManualClock(1_000_000);
  const store = extra.store ?? createMemoryStore<V>({ clock, purgeIntervalMs: 0 });
  const wb = await WriteBack.open<V>({
    name: 'wb-test',
    source: db.source(),
    breaker: false,
    random: new SeededRandom(3),
    freshness: { ttlMs: 60_000, jitter: 0 },
    ...extra,
    store,
    clock,
  });
  t.after(async () => {
    db.down = false;
    db.hold = undefined;
    const closing = wb.close().catch(() => undefined);
    for (let i = 0; i < 200; i++) {
      clock.advance(100);
      await settle();
    }
    await closing;
  });
  const advance = async (ms: number): Promise<void> => {
    clock.advance(ms);
    await settle();
  };
  return { wb, db, clock, store, advance };
}

test('set is acknowledged before the source has it; reads see it at once; the source gets it one flush interval later', async (t) => {
  const { wb, db, advance } = await setup(t);
  await wb.set('a', 1);
  assert.equal(await wb.get('a'), 1);
  assert.equal(wb.peek('a'), 1);
  assert.equal(db.rows.size, 0, 'not in the source yet');
  assert.equal(db.loads, 0, 'reads were served from the pending write');
  await advance(99);
  assert.equal(db.rows.size, 0);
  await advance(1);
  assert.equal(db.rows.get('a'), 1);
  assert.equal(await wb.get('a'), 1, 'after the flush it is read from the store');
  assert.equal(db.loads, 0);
  assert.equal(wb.writeBackStats().flushedWrites, 1);
});

test('writes to one key coalesce; the source sees the last one, in one batch', async (t) => {
  const { wb, db, advance } = await setup(t);
  for (let i = 1; i <= 10; i++) await wb.set('hot', i);
  await wb.set('cold', 1);
  await advance(100);
  assert.deepEqual(db.batches, [
    [
      { op: 'put', key: 'hot', value: 10 },
      { op: 'put', key: 'cold', value: 1 },
    ],
  ]);
  assert.equal(wb.writeBackStats().coalescedWrites, 9);
});

test('batches hold at most maxBatch writes; the oldest waits at most maxDelayMs while the source keeps up', async (t) => {
  const { wb, db, advance } = await setup(t, { writeBack: { maxBatch: 100, flushIntervalMs: 100, maxDelayMs: 250 } });
  for (let i = 0; i < 450; i++) await wb.set(`k${i}`, i);
  await advance(100);
  assert.deepEqual(db.batches.map((b) => b.length), [100]);
  await advance(100);
  assert.deepEqual(db.batches.map((b) => b.length), [100, 100]);
  await advance(50);
  assert.deepEqual(db.batches.map((b) => b.length), [100, 100, 100, 100, 50], 'at 250 ms the rest goes at once');
  assert.equal(db.rows.size, 450);
});

test('read-your-writes holds after the store evicted the entry', async (t) => {
  const clock = new ManualClock(1_000_000);
  const { wb, db } = await setup(t, { clock, store: createMemoryStore<number>({ clock, maxEntries: 1, purgeIntervalMs: 0 }) });
  await wb.set('a', 1);
  await wb.set('b', 2); // evicts a from the store
  assert.equal(await wb.get('a'), 1);
  assert.equal(await wb.get('b'), 2);
  assert.equal(db.loads, 0);
  assert.ok(wb.stats().evictions >= 1);
});

test('a delete is a tombstone: reads see the key absent at once, the source removes it at the flush', async (t) => {
  const db = new FakeDb<number>();
  db.rows.set('x', 5);
  const { wb, advance } = await setup(t, {}, db);
  assert.equal(await wb.get('x'), 5);
  await wb.delete('x');
  assert.equal(await wb.get('x'), undefined);
  assert.equal(wb.peek('x'), undefined);
  assert.equal(db.rows.get('x'), 5, 'the source still has it');
  await advance(100);
  assert.equal(db.rows.has('x'), false);
  assert.deepEqual(db.batches.at(-1), [{ op: 'delete', key: 'x' }]);
  assert.equal(await wb.get('x'), undefined, 'read through to the source: gone');
});

test('a write during a flush of the same key is not lost, and writes of a key reach the source in order', async (t) => {
  const { wb, db, advance } = await setup(t);
  await wb.set('k', 1);
  let release!: () => void;
  db.hold = new Promise<void>((r) => (release = r));
  await advance(100); // batch [k=1] in flight
  await wb.set('k', 2);
  release();
  db.hold = undefined;
  await settle();
  assert.equal(await wb.get('k'), 2);
  await advance(100);
  assert.deepEqual(db.batches, [[{ op: 'put', key: 'k', value: 1 }], [{ op: 'put', key: 'k', value: 2 }]]);
  assert.equal(db.rows.get('k'), 2);
  assert.equal(await wb.get('k'), 2);
});

test('while the source is down writes are acknowledged and served, batches retried with backoff; nothing is lost when it returns', async (t) => {
  const { wb, db, advance } = await setup(t, { writeBack: { retry: { initialMs: 50, maxMs: 1000 } } });
  db.down = true;
  for (let i = 0; i < 20; i++) await wb.set(`k${i % 7}`, i);
  for (let i = 0; i < 30; i++) await advance(100);
  assert.ok(wb.writeBackStats().flushFailures >= 3, `failures: ${wb.writeBackStats().flushFailures}`);
  assert.equal(wb.writeBackStats().queueDepth, 7);
  assert.ok(wb.writeBackStats().flushLagMs >= 3000);
  assert.equal(await wb.get('k6'), 13);
  db.down = false;
  for (let i = 0; i < 20; i++) await advance(100);
  assert.deepEqual(Object.fromEntries(db.rows), { k0: 14, k1: 15, k2: 16, k3: 17, k4: 18, k5: 19, k6: 13 });
  assert.equal(wb.writeBackStats().queueDepth, 0);
  assert.equal(wb.writeBackStats().flushLagMs, 0);
});

test('a full queue applies backpressure: new keys wait enqueueTimeoutMs then fail; pending keys still coalesce; room lets a waiter in', async (t) => {
  const { wb, db, advance } = await setup(t, { writeBack: { maxQueueKeys: 2, enqueueTimeoutMs: 300 } });
  db.down = true;
  await wb.set('a', 1);
  await wb.set('b', 1);
  const rejected = wb.set('c', 1);
  let settled = false;
  rejected.catch(() => undefined).finally(() => (settled = true));
  await advance(299);
  assert.equal(settled, false, 'waits for room');
  await advance(1);
  await assert.rejects(rejected, (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_BACKPRESSURE'));
    assert.equal(err.retryable, true);
    assert.equal(err.details?.key, 'c');
    return true;
  });
  assert.equal(wb.peek('c'), undefined, 'a refused write left no trace');
  await wb.set('a', 2); // coalesces: no new key
  assert.equal(wb.writeBackStats().queueDepth, 2);

  const waiting = wb.set('d', 1);
  db.down = false;
  await wb.flush(); // room: the waiter is let in without waiting out its timeout
  await waiting;
  assert.equal(await wb.get('d'), 1);
  await advance(100);
  assert.equal(db.rows.get('d'), 1);
});

test('flush() puts everything acknowledged in the source now; it rejects while the source is down', async (t) => {
  const { wb, db } = await setup(t);
  for (let i = 0; i < 5; i++) await wb.set(`k${i}`, i);
  await wb.flush();
  assert.equal(db.rows.size, 5);
  db.down = true;
  await wb.set('x', 1);
  await assert.rejects(wb.flush(), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
  db.down = false;
  await wb.flush();
  assert.equal(db.rows.get('x'), 1);
});

test('close() flushes what is pending, then refuses calls', async (t) => {
  const { wb, db, advance } = await setup(t);
  await wb.set('a', 1);
  await wb.delete('b');
  const closing = wb.close();
  await advance(0);
  await closing;
  assert.equal(db.rows.get('a'), 1);
  await assert.rejects(wb.set('c', 1), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
  await assert.rejects(wb.get('a'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
  assert.throws(() => wb.peek('a'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
  assert.equal(wb.close(), closing, 'close is idempotent');
});

test('close() without a journal while the source stays down: bounded drain, then it says how many writes are lost', async (t) => {
  const { wb, db, advance } = await setup(t, { writeBack: { closeTimeoutMs: 1000 } });
  await wb.set('a', 1);
  await wb.set('b', 2);
  db.down = true;
  const closing = assert.rejects(wb.close(), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
    assert.equal(err.details?.pending, 2);
    assert.deepEqual(err.details?.keys, ['a', 'b']);
    return true;
  });
  for (let i = 0; i < 30; i++) await advance(100);
  await closing;
});

test('store down without a journal: writes fail with ARCHLAB_CACHE_STORE_UNAVAILABLE and change nothing; reads go to the source', async (t) => {
  const clock = new ManualClock(1_000_000);
  const store = switchable(createMemoryStore<number>({ clock, purgeIntervalMs: 0 }));
  const db = new FakeDb<number>();
  db.rows.set('a', 1);
  const { wb, advance } = await setup(t, { clock, store }, db);
  await wb.set('p', 7);
  store.down = true;
  await assert.rejects(wb.set('a', 2), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_STORE_UNAVAILABLE') && err.retryable && err.details?.key === 'a');
  await assert.rejects(wb.set('p', 8), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_STORE_UNAVAILABLE'));
  await assert.rejects(wb.delete('a'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_STORE_UNAVAILABLE'));
  assert.equal(await wb.get('a'), 1, 'read from the source');
  assert.equal(await wb.get('p'), 7, 'the acknowledged pending write is still what reads see');
  await advance(100);
  assert.deepEqual(Object.fromEntries(db.rows), { a: 1, p: 7 });
});

test('store down with a journal: writes are acknowledged and flushed; reads never see the stale cached value', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(1_000_000);
  const store = switchable(createMemoryStore<number>({ clock, purgeIntervalMs: 0 }));
  const db = new FakeDb<number>();
  db.rows.set('a', 1);
  const { wb, advance } = await setup(t, { clock, store, writeBack: { durability: { journal: { path: join(dir, 'j'), fsync: 'always' } } } }, db);
  assert.equal(await wb.get('a'), 1); // cached: a=1
  store.down = true;
  await wb.set('a', 2);
  await wb.delete('gone');
  assert.equal(await wb.get('a'), 2);
  await advance(100);
  assert.equal(db.rows.get('a'), 2);
  assert.ok(wb.repairState().keys >= 1, 'the key is kept for repair');
  store.down = false;
  assert.equal(await wb.get('a'), 2, 'not the a=1 the store still holds');
  await settle();
  assert.equal(await wb.get('a'), 2);
});

test('values the store or the journal refuse fail before anything is queued', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(1_000_000);
  const store = createMemoryStore<unknown>({ clock, purgeIntervalMs: 0, maxValueBytes: 100 });
  const { wb } = await setup<unknown>(t, { clock, store, writeBack: { durability: { journal: { path: join(dir, 'j'), fsync: 'always' } } } }, new FakeDb<unknown>());
  await assert.rejects(wb.set('big', 'x'.repeat(500)), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_VALUE_TOO_LARGE'));
  await assert.rejects(wb.set('bigint', { n: 1n }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CODEC') && err.details?.key === 'bigint');
  await assert.rejects(wb.set('', 1), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_BAD_KEY'));
  await assert.rejects(wb.set('u', undefined), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  assert.equal(wb.writeBackStats().queueDepth, 0);
  assert.equal(wb.writeBackStats().journalBytes, 0);
  await wb.set('ok', { at: new Date(0), bin: Buffer.from('hi') });
  assert.ok(wb.writeBackStats().journalBytes > 0);
});

test('a journal replayed at open re-queues unflushed writes (in order, deletes included) and puts them back in the store', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'wb.journal');
  const db = new FakeDb<number>();
  db.rows.set('old', 1);
  const { wb } = await setup(t, { writeBack: { durability: { journal: { path, fsync: 'always' } } } }, db);
  await wb.set('a', 1);
  await wb.flush();
  db.down = true;
  await wb.set('a', 2);
  await wb.set('b', 3);
  await wb.delete('old');
  // What a crash right now would leave on disk: copy the journal while its writer is still open.
  const crashCopy = join(dir, 'crash.journal');
  copyFileSync(path, crashCopy);

  const db2 = new FakeDb<number>();
  db2.rows = new Map(db.rows);
  const clock2 = new ManualClock(2_000_000);
  const store2 = createMemoryStore<number>({ clock: clock2, purgeIntervalMs: 0 });
  const { wb: again, advance } = await setup(t, { clock: clock2, store: store2, writeBack: { durability: { journal: { path: crashCopy, fsync: 'always' } } } }, db2);
  assert.equal(again.writeBackStats().queueDepth, 3);
  assert.equal(store2.peek('b')?.value, 3, 'replayed puts are back in the store');
  assert.equal(await again.get('old'), undefined);
  await advance(100);
  assert.deepEqual(Object.fromEntries(db2.rows), { a: 2, b: 3 });
  assert.deepEqual(db2.batches, [
    [
      { op: 'put', key: 'a', value: 2 },
      { op: 'put', key: 'b', value: 3 },
      { op: 'delete', key: 'old' },
    ],
  ]);
});

test('many concurrent sets with fsync always are all acknowledged and journaled', async (t) => {
  const dir = tempDir(t);
  const { wb, db } = await setup(t, { writeBack: { durability: { journal: { path: join(dir, 'j'), fsync: 'always' } } } });
  await Promise.all(Array.from({ length: 300 }, (_, i) => wb.set(`k${i}`, i)));
  assert.equal(wb.writeBackStats().queueDepth, 300);
  await wb.flush();
  assert.equal(db.rows.size, 300);
});

test('a full journal applies backpressure like a full queue', async (t) => {
  const dir = tempDir(t);
  const { wb, db, advance } = await setup<string>(t, { writeBack: { enqueueTimeoutMs: 200, durability: { journal: { path: join(dir, 'j'), fsync: 'always', maxBytes: 8192 } } } }, new FakeDb<string>());
  db.down = true;
  let n = 0;
  const value = 'v'.repeat(200);
  let refused: unknown;
  while (n < 100) {
    const p = wb.set(`k${n}`, value).then(
      () => undefined,
      (err: unknown) => err,
    );
    await advance(200);
    refused = await p;
    if (refused !== undefined) break;
    n++;
  }
  assert.ok(n > 5 && n < 100, `${n} writes fit`);
  assert.ok(isArchlabError(refused, 'ARCHLAB_CACHE_BACKPRESSURE'), String(refused));
  assert.match((refused as Error).message, /journal/);
  db.down = false;
  await wb.flush();
  await wb.set('after', value);
});

test('options are validated; a source without write is refused at open', async () => {
  const clock = new ManualClock(0);
  const base = { name: 'x', store: createMemoryStore({ clock, purgeIntervalMs: 0 }), clock, source: new FakeDb<number>().source() };
  await assert.rejects(WriteBack.open({ ...base, writeBack: { maxBatch: 0 } }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  await assert.rejects(WriteBack.open({ ...base, writeBack: { enqueueTimeoutMs: -1 } }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  await assert.rejects(WriteBack.open({ ...base, writeBack: { durability: { journal: {} } as never } }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  await assert.rejects(WriteBack.open({ ...base, source: { name: 'ro', load: async () => undefined } as never }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
});
