import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../core/clock.js';
import { CacheError } from '../errors.js';
import type { Entry, EvictionReason } from '../types.js';
import { storeConformance } from './conformance.js';
import { createMemoryStore, ENTRY_OVERHEAD_BYTES, estimateBytes } from './memory.js';

storeConformance('memory', async (o = {}) => {
  const clock = new ManualClock(1_700_000_000_000);
  const store = createMemoryStore({ clock, raceWindowMs: o.raceWindowMs, maxValueBytes: o.maxValueBytes });
  return { store, clock, cleanup: () => store.close() };
});

const T0 = 1_700_000_000_000;

function entry<V>(clock: ManualClock, value: V, lifeMs = 60_000, tags?: string[]): Entry<V> {
  return { value, freshUntilMs: clock.now() + lifeMs / 2, staleUntilMs: clock.now() + lifeMs, ...(tags ? { tags } : {}) };
}

test('memory: capacity by entries evicts the least recently used and reports it as capacity', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<number>({ clock, maxEntries: 3 });
  const evicted: [string, EvictionReason][] = [];
  store.onEvict = (k, r) => evicted.push([k, r]);
  for (const k of ['a', 'b', 'c']) await store.set(k, entry(clock, 1));
  store.peek('a'); // a becomes most recent
  await store.set('d', entry(clock, 1));
  assert.deepEqual(evicted, [['b', 'capacity']]);
  assert.equal(store.size(), 3);
  assert.equal(store.peek('b'), undefined);
  assert.ok(store.peek('a'));
  // explicit invalidation and replacement are not evictions
  await store.invalidate('a');
  await store.set('c', entry(clock, 2));
  assert.equal(evicted.length, 1);
  await store.close();
});

test('memory: capacity by bytes counts value, key, tags and overhead', async () => {
  const clock = new ManualClock(T0);
  const per = 1000 + ENTRY_OVERHEAD_BYTES + 2; // 1000-byte value, 2-char key
  const store = createMemoryStore<string>({ clock, maxBytes: per * 3, maxValueBytes: 2000 });
  const evicted: string[] = [];
  store.onEvict = (k) => evicted.push(k);
  for (const k of ['k1', 'k2', 'k3']) await store.set(k, entry(clock, 'x'.repeat(1000)));
  assert.equal(store.bytes(), per * 3);
  assert.deepEqual(evicted, []);
  await store.set('k4', entry(clock, 'x'.repeat(1000)));
  assert.deepEqual(evicted, ['k1']);
  assert.ok(store.bytes() <= per * 3);
  // multi-byte characters count as bytes
  assert.equal(estimateBytes('é'), 2);
  assert.equal(estimateBytes(Buffer.alloc(10)), 10);
  assert.equal(estimateBytes({ a: 1 }), 7);
  const cyclic: Record<string, unknown> = { s: 'abc' };
  cyclic.me = cyclic;
  assert.ok(estimateBytes(cyclic) > 3);
  assert.ok(estimateBytes({ n: 10n }) > 0);
  await store.close();
});

test('memory: a custom sizeOf is used, and the size limit applies to it', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<{ weight: number }>({ clock, sizeOf: (v) => v.weight, maxValueBytes: 100 });
  await store.set('light', entry(clock, { weight: 100 }));
  await assert.rejects(store.set('heavy', entry(clock, { weight: 101 })), (e) => e instanceof CacheError && e.code === 'ARCHLAB_CACHE_VALUE_TOO_LARGE' && e.details?.bytes === 101);
  // A sizeOf returning garbage is refused too rather than bypassing the bound.
  const bad = createMemoryStore<number>({ clock, sizeOf: () => NaN });
  await assert.rejects(bad.set('k', entry(clock, 1)), (e) => e instanceof CacheError && e.code === 'ARCHLAB_CACHE_VALUE_TOO_LARGE');
  await store.close();
  await bad.close();
});

test('memory: expiry is reported when found on read, by the sweep, and when an expired entry is evicted', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<number>({ clock, maxEntries: 3, purgeIntervalMs: 5_000 });
  const events: string[] = [];
  store.onEvict = (k, r) => events.push(`${k}:${r}`);
  await store.set('read', entry(clock, 1, 1_000));
  await store.set('swept', entry(clock, 1, 1_000));
  await store.set('evicted', entry(clock, 1, 1_000));
  clock.advance(1_000);
  assert.equal(store.peek('read'), undefined);
  assert.deepEqual(events, ['read:expired']);
  // evicted for room (least recently used first), but they had expired: reported as expired
  await store.set('x', entry(clock, 1));
  await store.set('y', entry(clock, 1));
  assert.deepEqual(events, ['read:expired', 'swept:expired']);
  await store.set('z', entry(clock, 1, 2_000));
  assert.deepEqual(events, ['read:expired', 'swept:expired', 'evicted:expired']);
  clock.advance(4_000); // the 5 s sweep runs and finds z expired
  assert.deepEqual(events, ['read:expired', 'swept:expired', 'evicted:expired', 'z:expired']);
  assert.equal(store.size(), 2);
  await store.close();
  assert.equal(clock.pending(), 0, 'close cancels the sweep timer');
});

test('memory: the tag index follows sets, replacements, invalidations and evictions and stays bounded', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<number>({ clock, maxEntries: 100 });
  for (let i = 0; i < 1000; i++) await store.set(`k${i}`, entry(clock, i, 60_000, [`tag${i}`, 'all']));
  // evicted keys took their tags with them
  assert.equal(store.size(), 100);
  assert.equal(store.tagCount(), 101);
  assert.equal(await store.invalidateTag('tag0'), 0);
  assert.equal(await store.invalidateTag('tag999'), 1);
  // replacing an entry without a tag drops it from that tag
  await store.set('k998', entry(clock, 0));
  assert.equal(await store.invalidateTag('tag998'), 0);
  assert.equal(store.peek('k998')?.value, 0);
  assert.equal(await store.invalidateTag('all'), 98);
  assert.equal(store.size(), 1);
  assert.equal(store.tagCount(), 0);
  await store.close();
});

test('memory: generations are bounded; forgetting a live one refuses outstanding tokens rather than accepting stale fills', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<string>({ clock, maxGenerations: 1000, raceWindowMs: 10_000 });
  const token = await store.fillToken('victim');
  await store.invalidate('victim');
  // 1000 other invalidations push victim's generation out of the bounded table.
  for (let i = 0; i < 1000; i++) await store.invalidate(`other${i}`);
  assert.equal(await store.fill('victim', entry(clock, 'stale'), token), false);
  // ... and a token taken now works.
  const fresh = await store.fillToken('victim');
  assert.equal(await store.fill('victim', entry(clock, 'new'), fresh), true);
  await store.close();
});

test('memory: invalidateTag refuses fills in flight for keys not cached yet (they may carry the tag)', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<string>({ clock });
  const token = await store.fillToken('loading');
  await store.invalidateTag('t');
  assert.equal(await store.fill('loading', entry(clock, 'old', 60_000, ['t']), token), false);
  clock.advance(1);
  const after = await store.fillToken('loading');
  assert.equal(await store.fill('loading', entry(clock, 'new', 60_000, ['t']), after), true);
  await store.close();
});

test('memory: forgetting a live generation refuses in-flight fills of only a few other keys (a hash bucket), not all', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<string>({ clock, maxGenerations: 1000 });
  const cold = Array.from({ length: 200 }, (_, i) => `cold${i}`);
  const tokens = await Promise.all(cold.map((k) => store.fillToken(k)));
  // 1001 writes: exactly one live generation (the first) is forgotten.
  for (let i = 0; i <= 1000; i++) await store.set(`w${i}`, entry(clock, 'x'));
  const filled = await Promise.all(cold.map((k, i) => store.fill(k, entry(clock, 'v'), tokens[i]!)));
  const refused = filled.filter((ok) => !ok).length;
  assert.ok(refused <= 2, `${refused} of 200 refused`);
  await store.close();
});

test('memory: a successful fill bumps the generation (one fill per generation, across "processes")', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<string>({ clock });
  const [t1, t2] = [await store.fillToken('k'), await store.fillToken('k')];
  assert.equal(await store.fill('k', entry(clock, 'first'), t1), true);
  assert.equal(await store.fill('k', entry(clock, 'second'), t2), false);
  assert.equal(store.peek('k')?.value, 'first');
  await store.close();
});

test('memory: clear refuses every fill token taken before it', async () => {
  const clock = new ManualClock(T0);
  const store = createMemoryStore<string>({ clock });
  const token = await store.fillToken('k');
  await store.clear();
  assert.equal(await store.fill('k', entry(clock, 'v'), token), false);
  await store.close();
});

test('memory: a model check of random operations against a plain Map', async () => {
  // The store with no capacity pressure must behave like a Map of live entries plus generations.
  for (let seed = 1; seed <= 20; seed++) {
    let s = seed;
    const rnd = (n: number): number => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return s % n;
    };
    const clock = new ManualClock(T0);
    const store = createMemoryStore<number>({ clock, raceWindowMs: 500, purgeIntervalMs: 0 });
    const model = new Map<string, Entry<number>>();
    const gens = new Map<string, number>(); // step of the last write/invalidate per key
    let tagFloor = -Infinity; // time of the last invalidateTag
    const tokens: { key: string; at: number; step: number }[] = [];
    const real: Awaited<ReturnType<typeof store.fillToken>>[] = [];
    for (let step = 0; step < 400; step++) {
      const key = `k${rnd(8)}`;
      const op = rnd(7);
      const now = clock.now();
      const e = entry(clock, step, 50 + rnd(400), [`t${rnd(3)}`]);
      if (op === 0) {
        await store.set(key, e);
        model.set(key, e);
        gens.set(key, step);
      } else if (op === 1) {
        await store.invalidate(key);
        model.delete(key);
        gens.set(key, step);
      } else if (op === 2) {
        tokens.push({ key, at: now, step });
        real.push(await store.fillToken(key));
      } else if (op === 3 && tokens.length) {
        const i = rnd(tokens.length);
        const t = tokens[i]!;
        const ok = await store.fill(t.key, { ...e }, real[i]!);
        const last = gens.get(t.key);
        const expected = now - t.at <= 500 && t.at > tagFloor && (last === undefined || last < t.step);
        assert.equal(ok, expected, `seed ${seed} step ${step}: fill ${t.key} token@${t.step} lastWrite@${last} age ${now - t.at}`);
        if (ok) {
          model.set(t.key, { ...e });
          gens.set(t.key, step); // a successful fill bumps the generation
        }
      } else if (op === 4) {
        const tag = `t${rnd(3)}`;
        const n = await store.invalidateTag(tag);
        tagFloor = now;
        let m = 0;
        for (const [k, v] of model) {
          if (v.tags?.includes(tag)) {
            model.delete(k);
            // Only live entries are in the tag index: an expired key's fills are not refused by a tag.
            if (v.staleUntilMs > now) {
              m++;
              gens.set(k, step);
            }
          }
        }
        assert.equal(n, m, `seed ${seed} step ${step}: invalidateTag count`);
      } else {
        clock.advance(rnd(120));
      }
      for (let k = 0; k < 8; k++) {
        const key2 = `k${k}`;
        const m = model.get(key2);
        const want = m && m.staleUntilMs > clock.now() ? m.value : undefined;
        assert.equal(store.peek(key2)?.value, want, `seed ${seed} step ${step} key ${key2}`);
      }
    }
    await store.close();
  }
});

test('memory: invalid options are refused at construction', () => {
  assert.throws(() => createMemoryStore({ maxEntries: 0 }), /maxEntries/);
  assert.throws(() => createMemoryStore({ maxBytes: -1 }), /maxBytes/);
  assert.throws(() => createMemoryStore({ maxBytes: 100, maxValueBytes: 200 }), /maxValueBytes/);
  assert.throws(() => createMemoryStore({ raceWindowMs: 1.5 }), /raceWindowMs/);
});

test('memory: with the system clock the hit path reuses a clock reading but still expires entries', async () => {
  const store = createMemoryStore<string>({});
  const now = Date.now();
  await store.set('k', { value: 'v', freshUntilMs: now + 30, staleUntilMs: now + 30 });
  assert.equal(store.peek('k')?.value, 'v');
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(store.peek('k'), undefined);
  await store.close();
});
