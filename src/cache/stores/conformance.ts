/**
 * One conformance suite for every CacheStore (memory, Redis, Redis Cluster, tiered), in the manner
 * of hono's shared router cases: each implementation's test file calls `storeConformance` with a
 * factory, and the same node:test cases run against it. Not a test file itself.
 *
 * Time: with a ManualClock the suite moves time with advance(); without one it waits in real time
 * (short windows, bounded), which is how Redis's own expiry is exercised.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ManualClock } from '../../core/clock.js';
import { CacheError } from '../errors.js';
import type { CacheStore, Entry } from '../types.js';

export interface StoreHarness {
  store: CacheStore;
  /** The store's clock when it is a ManualClock; undefined when the store runs on real time. */
  clock: ManualClock | undefined;
  /** Closes the store and removes what it left behind (keys, connections). Called even when a case fails. */
  cleanup(): Promise<void>;
}

/** What a case may ask the factory for; a factory must honour every field. */
export interface StoreOverrides {
  /** The store's raceWindowMs. Absent: the factory's default (at least 5 s). */
  raceWindowMs?: number;
  /** The store's maxValueBytes. */
  maxValueBytes?: number;
  /**
   * A namespace name: stores made with different names must not see each other's entries, stores
   * made with the same name in one case must share them (for Redis: the same key prefix).
   */
  namespace?: string;
}

export interface ConformanceOptions {
  /** Skip the whole suite with this message (e.g. from needService), or run it (false, the default). */
  skip?: string | false;
  /** raceWindowMs used by the "refused after the race window" case on real time. Default 300. */
  realRaceWindowMs?: number;
  /** Lifetime of entries in the real-time expiry case, in ms. Default 300. */
  realTtlMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function nowOf(h: StoreHarness): number {
  return h.clock ? h.clock.now() : Date.now();
}

async function elapse(h: StoreHarness, ms: number): Promise<void> {
  if (h.clock) h.clock.advance(ms);
  else await sleep(ms);
}

function entry<V>(h: StoreHarness, value: V | undefined, lifeMs = 60_000, tags?: readonly string[]): Entry<V> {
  const now = nowOf(h);
  const e: Entry<V> = { value, freshUntilMs: now + lifeMs / 2, staleUntilMs: now + lifeMs };
  if (value === undefined) e.negative = true;
  if (tags) e.tags = tags;
  return e;
}

function assertCode(code: string, details?: Record<string, unknown>): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof CacheError, `expected CacheError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    for (const [k, v] of Object.entries(details ?? {})) assert.deepEqual(err.details?.[k], v, `details.${k}`);
    return true;
  };
}

/** Registers the conformance cases for one store implementation under `describe(name)`. */
export function storeConformance(name: string, make: (overrides?: StoreOverrides) => Promise<StoreHarness>, opts: ConformanceOptions = {}): void {
  const realRaceWindowMs = opts.realRaceWindowMs ?? 300;
  const realTtlMs = opts.realTtlMs ?? 300;

  /** Runs `fn` with harnesses made on demand, cleaning every one up afterwards. */
  async function withStores(fn: (open: (o?: StoreOverrides) => Promise<StoreHarness>) => Promise<void>): Promise<void> {
    const opened: StoreHarness[] = [];
    try {
      await fn(async (o) => {
        const h = await make(o);
        opened.push(h);
        return h;
      });
    } finally {
      for (const h of opened.reverse()) await h.cleanup();
    }
  }

  const it = (title: string, fn: (h: StoreHarness, open: (o?: StoreOverrides) => Promise<StoreHarness>) => Promise<void>): void => {
    test(title, () => withStores(async (open) => fn(await open(), open)));
  };

  describe(`store conformance: ${name}`, { skip: opts.skip ?? false }, () => {
    it('get of a missing key is undefined; set then get returns the entry with its times and tags', async (h) => {
      const { store } = h;
      assert.equal(await store.get('missing'), undefined);
      const e = entry(h, { id: 1, name: 'one' }, 60_000, ['t:a', 't:b']);
      await store.set('k1', e);
      const got = await store.get('k1');
      assert.ok(got);
      assert.deepEqual(got.value, { id: 1, name: 'one' });
      assert.equal(got.freshUntilMs, e.freshUntilMs);
      assert.equal(got.staleUntilMs, e.staleUntilMs);
      assert.deepEqual([...(got.tags ?? [])], ['t:a', 't:b']);
      assert.equal(got.negative, undefined);
      // set replaces
      await store.set('k1', entry(h, 'two'));
      assert.equal((await store.get('k1'))?.value, 'two');
    });

    it('peek (when implemented) serves what is in the process, synchronously', async (h) => {
      const { store } = h;
      if (!store.peek) return;
      assert.equal(store.peek('p1'), undefined);
      await store.set('p1', entry(h, 'v'));
      assert.equal(store.peek('p1')?.value, 'v');
      await store.invalidate('p1');
      assert.equal(store.peek('p1'), undefined);
    });

    it('values of every kind round-trip: strings, numbers, booleans, null, objects, arrays, Buffers, Dates', async (h) => {
      const { store } = h;
      const when = new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678));
      const values: Record<string, unknown> = {
        str: 'plain',
        empty: '',
        unicode: 'naïve ☕ 日本語 😀',
        zero: 0,
        neg: -42.5,
        big: Number.MAX_SAFE_INTEGER,
        yes: true,
        no: false,
        nul: null,
        arr: [1, 'a', null, { b: [true] }],
        obj: { nested: { list: [1, 2, 3], label: 'x' }, 'key with spaces': 1 },
        buf: Buffer.from([0, 1, 2, 253, 254, 255]),
        date: when,
        mixed: { at: when, bytes: Buffer.from('hi'), list: [when, Buffer.alloc(3)] },
      };
      for (const [k, v] of Object.entries(values)) await store.set(`v:${k}`, entry(h, v));
      for (const [k, v] of Object.entries(values)) {
        const got = await store.get(`v:${k}`);
        assert.ok(got, `v:${k} present`);
        assert.deepEqual(got.value, v, `v:${k}`);
      }
      const mixed = (await store.get('v:mixed'))?.value as { at: Date; bytes: Buffer };
      assert.ok(mixed.at instanceof Date);
      assert.ok(Buffer.isBuffer(mixed.bytes));
    });

    it('unicode keys and keys with braces, percent signs and colons are distinct and usable', async (h) => {
      const { store } = h;
      const keys = ['ключ:🔑:日本', 'a}b', 'a%7Db', '{a}', '{', '}', 'x:y:z', 'g:{a}', '%', '%25', ' spaced key '];
      for (const [i, k] of keys.entries()) await store.set(k, entry(h, i, 60_000, [`tag:${k}`]));
      for (const [i, k] of keys.entries()) assert.equal((await store.get(k))?.value, i, `key ${JSON.stringify(k)}`);
      await store.invalidate('a}b');
      assert.equal(await store.get('a}b'), undefined);
      assert.equal((await store.get('a%7Db'))?.value, 2);
      assert.equal(await store.invalidateTag('tag:ключ:🔑:日本'), 1);
      assert.equal(await store.get('ключ:🔑:日本'), undefined);
      assert.equal((await store.get('{a}'))?.value, 3);
    });

    it('bad keys are refused with ARCHLAB_CACHE_BAD_KEY', async (h) => {
      const { store } = h;
      await assert.rejects(store.get(''), assertCode('ARCHLAB_CACHE_BAD_KEY'));
      await assert.rejects(store.set('', entry(h, 1)), assertCode('ARCHLAB_CACHE_BAD_KEY'));
      await assert.rejects(store.set('x'.repeat(1025), entry(h, 1)), assertCode('ARCHLAB_CACHE_BAD_KEY'));
      await assert.rejects(store.fillToken(''), assertCode('ARCHLAB_CACHE_BAD_KEY'));
    });

    it('negative entries round-trip (no value, negative: true)', async (h) => {
      const { store } = h;
      const e = entry<string>(h, undefined, 30_000);
      await store.set('neg', e);
      const got = await store.get('neg');
      assert.ok(got);
      assert.equal(got.negative, true);
      assert.equal(got.value, undefined);
      assert.equal(got.staleUntilMs, e.staleUntilMs);
    });

    it('an entry is not returned once past its staleUntilMs, and one already past it is not stored', async (h) => {
      const { store } = h;
      const life = h.clock ? 10_000 : realTtlMs;
      const e = entry(h, 'short', life);
      await store.set('short', e);
      await store.set('long', entry(h, 'long', life * 100));
      assert.equal((await store.get('short'))?.value, 'short');
      await elapse(h, Math.max(0, e.staleUntilMs - nowOf(h)) + (h.clock ? 0 : 20));
      // At staleUntilMs (exactly, on a ManualClock) the entry is gone, for get and for peek.
      assert.equal(await store.get('short'), undefined);
      if (store.peek) assert.equal(store.peek('short'), undefined);
      assert.equal((await store.get('long'))?.value, 'long');
      const dead = entry(h, 'dead', 1_000);
      dead.freshUntilMs -= 5_000;
      dead.staleUntilMs -= 5_000;
      await store.set('dead', dead);
      assert.equal(await store.get('dead'), undefined);
    });

    it('fill with a fresh token stores the entry and says so', async (h) => {
      const { store } = h;
      const token = await store.fillToken('f1');
      assert.equal(typeof token.generation, 'number');
      assert.equal(await store.fill('f1', entry(h, 'loaded', 60_000, ['ft']), token), true);
      assert.equal((await store.get('f1'))?.value, 'loaded');
      // One fill per generation: a second load of the same generation (another process's) is refused.
      assert.equal(await store.fill('f1', entry(h, 'again'), token), false);
      assert.equal((await store.get('f1'))?.value, 'loaded');
      // ... and a token taken after the fill works.
      const next = await store.fillToken('f1');
      assert.equal(await store.fill('f1', entry(h, 'refreshed'), next), true);
      assert.equal((await store.get('f1'))?.value, 'refreshed');
      assert.equal(await store.invalidateTag('ft'), 0, 'the refreshed entry carries no tag');
    });

    it('fill is refused after invalidate (the stale-set-after-delete race), and accepted with a token taken after it', async (h) => {
      const { store } = h;
      await store.set('race', entry(h, 'v1'));
      const before = await store.fillToken('race');
      await store.invalidate('race');
      assert.equal(await store.fill('race', entry(h, 'stale v1 loaded before the write'), before), false);
      assert.equal(await store.get('race'), undefined);
      const after = await store.fillToken('race');
      assert.equal(await store.fill('race', entry(h, 'v2'), after), true);
      assert.equal((await store.get('race'))?.value, 'v2');
      // A key that was never cached behaves the same.
      const cold = await store.fillToken('never-cached');
      await store.invalidate('never-cached');
      assert.equal(await store.fill('never-cached', entry(h, 'x'), cold), false);
    });

    it('fill is refused after a set: a load that began before a write cannot overwrite it', async (h) => {
      const { store } = h;
      const token = await store.fillToken('w');
      await store.set('w', entry(h, 'written'));
      assert.equal(await store.fill('w', entry(h, 'loaded before the write'), token), false);
      assert.equal((await store.get('w'))?.value, 'written');
    });

    it('fill is refused once the token is older than raceWindowMs, accepted just inside it', async (_h, open) => {
      const windowMs = 1_000;
      const h = await open({ raceWindowMs: _h.clock ? windowMs : realRaceWindowMs });
      const { store } = h;
      if (h.clock) {
        const inside = await store.fillToken('rw');
        h.clock.advance(windowMs);
        assert.equal(await store.fill('rw', entry(h, 'in time'), inside), true);
        const outside = await store.fillToken('rw');
        h.clock.advance(windowMs + 1);
        assert.equal(await store.fill('rw', entry(h, 'too late'), outside), false);
        assert.equal((await store.get('rw'))?.value, 'in time');
      } else {
        const token = await store.fillToken('rw');
        await sleep(realRaceWindowMs + 50);
        assert.equal(await store.fill('rw', entry(h, 'too late'), token), false);
        assert.equal(await store.get('rw'), undefined);
      }
    });

    it('an invalidation is remembered for the whole window after a token is taken', async (_h, open) => {
      const h = await open({ raceWindowMs: _h.clock ? 1_000 : realRaceWindowMs });
      const { store } = h;
      const w = h.clock ? 1_000 : realRaceWindowMs;
      await store.invalidate('gen');
      // Most of a window later, a reader takes a token (the invalidation's own window is nearly over) ...
      await elapse(h, Math.floor(w * 0.7));
      const old = await store.fillToken('gen');
      // ... a writer invalidates, then the reader's fill arrives: refused.
      await elapse(h, Math.floor(w * 0.2));
      await store.invalidate('gen');
      await elapse(h, Math.floor(w * 0.2));
      assert.equal(await store.fill('gen', entry(h, 'stale'), old), false);
    });

    it('invalidateTag removes exactly the tagged keys, returns the count, and refuses their fills in flight', async (h) => {
      const { store } = h;
      await store.set('a', entry(h, 'a', 60_000, ['t1']));
      await store.set('b', entry(h, 'b', 60_000, ['t1', 't2']));
      await store.set('c', entry(h, 'c', 60_000, ['t2']));
      await store.set('d', entry(h, 'd'));
      const tokenA = await store.fillToken('a');
      assert.equal(await store.invalidateTag('t1'), 2);
      assert.equal(await store.get('a'), undefined);
      assert.equal(await store.get('b'), undefined);
      assert.equal((await store.get('c'))?.value, 'c');
      assert.equal((await store.get('d'))?.value, 'd');
      assert.equal(await store.fill('a', entry(h, 'stale a'), tokenA), false);
      assert.equal(await store.invalidateTag('t1'), 0);
      assert.equal(await store.invalidateTag('no-such-tag'), 0);
      assert.equal(await store.invalidateTag('t2'), 1);
      assert.equal(await store.get('c'), undefined);
      // fill attaches tags too (a moment later: a store may refuse tokens taken in the same ms as a tag invalidation)
      await elapse(h, 2);
      const t = await store.fillToken('e');
      assert.equal(await store.fill('e', entry(h, 'e', 60_000, ['t3']), t), true);
      assert.equal(await store.invalidateTag('t3'), 1);
      assert.equal(await store.get('e'), undefined);
    });

    it('invalidate of a missing key is harmless; clear empties the store', async (h) => {
      const { store } = h;
      await store.invalidate('nothing-here');
      for (let i = 0; i < 50; i++) await store.set(`c${i}`, entry(h, i, 60_000, ['all']));
      const n = store.size();
      if (n !== undefined) assert.equal(n, 50);
      await store.clear();
      for (let i = 0; i < 50; i++) assert.equal(await store.get(`c${i}`), undefined);
      if (store.size() !== undefined) assert.equal(store.size(), 0);
      assert.equal(await store.invalidateTag('all'), 0);
      await store.set('after-clear', entry(h, 1));
      assert.equal((await store.get('after-clear'))?.value, 1);
    });

    it('clear removes only its own namespace', async (_h, open) => {
      const a = await open({ namespace: 'ns-a' });
      const b = await open({ namespace: 'ns-b' });
      const a2 = await open({ namespace: 'ns-a' });
      await a.store.set('shared-name', entry(a, 'in a', 60_000, ['t']));
      await b.store.set('shared-name', entry(b, 'in b', 60_000, ['t']));
      assert.equal((await b.store.get('shared-name'))?.value, 'in b');
      await a.store.clear();
      assert.equal(await a.store.get('shared-name'), undefined);
      assert.equal(await a2.store.get('shared-name'), undefined);
      assert.equal((await b.store.get('shared-name'))?.value, 'in b');
      assert.equal(await a.store.invalidateTag('t'), 0);
      assert.equal(await b.store.invalidateTag('t'), 1);
    });

    it('a value over maxValueBytes is refused with ARCHLAB_CACHE_VALUE_TOO_LARGE and the old entry stays', async (_h, open) => {
      const h = await open({ maxValueBytes: 1024 });
      const { store } = h;
      await store.set('big', entry(h, 'small'));
      const tooBig = 'x'.repeat(2000);
      await assert.rejects(store.set('big', entry(h, tooBig)), (err) => {
        assertCode('ARCHLAB_CACHE_VALUE_TOO_LARGE', { key: 'big', maxBytes: 1024 })(err);
        const bytes = (err as CacheError).details?.bytes;
        assert.ok(typeof bytes === 'number' && bytes >= 2000, `details.bytes ${String(bytes)}`);
        assert.equal((err as CacheError).retryable, false);
        return true;
      });
      const token = await store.fillToken('big');
      await assert.rejects(store.fill('big', entry(h, Buffer.alloc(4096)), token), assertCode('ARCHLAB_CACHE_VALUE_TOO_LARGE', { key: 'big' }));
      assert.equal((await store.get('big'))?.value, 'small');
      // Just under the limit fits.
      await store.set('fits', entry(h, 'y'.repeat(900)));
      assert.equal(((await store.get('fits'))?.value as string).length, 900);
    });

    it('many concurrent operations on distinct keys all land', async (h) => {
      const { store } = h;
      const n = 200;
      await Promise.all(Array.from({ length: n }, (_, i) => store.set(`conc:${i}`, entry(h, { i }))));
      const got = await Promise.all(Array.from({ length: n }, (_, i) => store.get(`conc:${i}`)));
      got.forEach((e, i) => assert.deepEqual(e?.value, { i }));
      const tokens = await Promise.all(Array.from({ length: n }, (_, i) => store.fillToken(`conc:${i}`)));
      await Promise.all(Array.from({ length: n / 2 }, (_, i) => store.invalidate(`conc:${i * 2}`)));
      const filled = await Promise.all(tokens.map((t, i) => store.fill(`conc:${i}`, entry(h, { i, v: 2 }), t)));
      filled.forEach((ok, i) => assert.equal(ok, i % 2 === 1, `conc:${i}`));
    });
  });
}
