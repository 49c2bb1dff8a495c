import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isArchlabError } from '../../core/errors.js';
import { freshSeed, SeededRandom } from '../../core/random.js';
import { MaglevHasher } from '../../hashing/index.js';
import { ConsistentHashPicker } from './consistent-hash.js';
import type { SimBackend } from './sim.js';

const KEYS = Array.from({ length: 5000 }, (_, i) => `session-${i}`);

function pool(n: number, weights: number[] = []): SimBackend[] {
  return Array.from({ length: n }, (_, i) => ({ id: `cache-${i}`, weight: weights[i] ?? 1, active: 0, available: true }));
}

function place(picker: ConsistentHashPicker, backends: SimBackend[], keys = KEYS): string[] {
  return keys.map((hashKey) => backends[picker.pick(backends, { clientIp: '192.0.2.1', hashKey })]!.id);
}

function maglev(backends: readonly SimBackend[]): MaglevHasher {
  const h = new MaglevHasher();
  for (const b of backends) h.add(b.id, b.weight);
  return h;
}

test('places keys as MaglevHasher over the pool does', () => {
  const backends = pool(9, [1, 2, 1, 0.5, 3, 1, 1, 1.5, 1]);
  const h = maglev(backends);
  assert.deepEqual(place(new ConsistentHashPicker(), backends), KEYS.map((k) => h.get(k)));
});

test('hashes the hash key, and the client IP when there is none', () => {
  const picker = new ConsistentHashPicker();
  const backends = pool(8);
  for (const k of KEYS.slice(0, 300)) {
    const byKey = picker.pick(backends, { clientIp: '192.0.2.1', hashKey: k });
    assert.equal(picker.pick(backends, { clientIp: '198.51.100.9', hashKey: k }), byKey, 'the client IP does not matter');
    assert.equal(picker.pick(backends, { clientIp: k }), byKey, 'no key: the client IP is hashed the same way');
  }
});

test('an unavailable backend\u2019s keys go to the next available in the key\u2019s getN order; no other key moves', () => {
  const picker = new ConsistentHashPicker();
  const backends = pool(8);
  const h = maglev(backends);
  const before = place(picker, backends);
  backends[3]!.available = false;
  backends[5]!.available = false;
  const during = place(picker, backends);
  KEYS.forEach((k, i) => {
    const expected = h.getN(k, 8).find((id) => id !== 'cache-3' && id !== 'cache-5');
    assert.equal(during[i], expected, k);
    if (before[i] !== 'cache-3' && before[i] !== 'cache-5') assert.equal(during[i], before[i], k);
  });
  backends[3]!.available = true;
  backends[5]!.available = true;
  assert.deepEqual(place(picker, backends), before);
  assert.equal(picker.rebuilds, 1, 'availability never rebuilds the table');
});

test('a reload removing a backend moves its keys and under 2% of the others', () => {
  const picker = new ConsistentHashPicker();
  const backends = pool(10);
  const before = place(picker, backends);
  const after = place(picker, backends.filter((b) => b.id !== 'cache-4'));
  let stray = 0;
  KEYS.forEach((_, i) => {
    assert.notEqual(after[i], 'cache-4');
    if (before[i] !== 'cache-4' && after[i] !== before[i]) stray++;
  });
  assert.ok(stray / KEYS.length < 0.02, `${stray} keys of surviving backends moved`);
});

test('rebuilds the table only when ids or weights change', () => {
  const picker = new ConsistentHashPicker({ tableSize: 4099 });
  const backends = pool(5, [3, 3, 3, 3, 3]);
  const ctx = { clientIp: '192.0.2.1', hashKey: 'k' };
  for (let i = 0; i < 200; i++) {
    backends[i % 5]!.active = i;
    backends[(i + 2) % 5]!.available = i % 3 !== 0;
    picker.pick(backends, ctx);
  }
  assert.equal(picker.rebuilds, 1);
  backends[2]!.weight = 3.05; // within weight rounding
  picker.pick(backends, ctx);
  assert.equal(picker.rebuilds, 1);
  backends[2]!.weight = 1.5;
  picker.pick(backends, ctx);
  assert.equal(picker.rebuilds, 2);
  picker.pick(backends.slice(1), ctx);
  assert.equal(picker.rebuilds, 3);
});

/**
 * A skewed stream (half the requests carry one hot key, the rest a Zipf-like tail) on 8 backends,
 * about 40 requests in flight. Returns the worst excess of a pick over the bound.
 */
function skewedRun(picker: ConsistentHashPicker, seed: number, weights: number[], c: number): { worstOver: number; picks: number[] } {
  const rnd = new SeededRandom(seed);
  const backends = pool(weights.length, weights);
  const ends: { at: number; b: SimBackend }[] = [];
  let worstOver = -Infinity;
  const picks = new Array<number>(weights.length).fill(0);
  for (let t = 0; t < 6000; t++) {
    for (let j = ends.length - 1; j >= 0; j--) {
      if (ends[j]!.at <= t) {
        ends[j]!.b.active--;
        ends.splice(j, 1);
      }
    }
    const hashKey = rnd.next() < 0.5 ? 'hot' : `k${Math.floor(1 / (rnd.next() + 0.001))}`;
    const got = picker.pick(backends, { clientIp: '192.0.2.1', hashKey });
    const b = backends[got]!;
    const totalActive = backends.reduce((s, x) => s + x.active, 0);
    const totalWeight = backends.reduce((s, x) => s + x.weight, 0);
    const bound = Math.ceil((c * (totalActive + 1) * b.weight) / totalWeight);
    worstOver = Math.max(worstOver, b.active + 1 - bound);
    picks[got]!++;
    b.active++;
    ends.push({ at: t + 20 + rnd.int(60), b });
  }
  return { worstOver, picks };
}

test('bounded load: no pick takes a backend past ceil(c (A + 1) / n) on a skewed stream; unbounded does', () => {
  const seed = freshSeed();
  const weights = [1, 1, 1, 1, 1, 1, 1, 1];
  const bounded = skewedRun(new ConsistentHashPicker({ boundedLoad: 1.25, tableSize: 4099 }), seed, weights, 1.25);
  assert.ok(bounded.worstOver <= 0, `seed ${seed}: a pick went ${bounded.worstOver} over the bound`);
  const unbounded = skewedRun(new ConsistentHashPicker({ tableSize: 4099 }), seed, weights, 1.25);
  assert.ok(unbounded.worstOver > 5, `seed ${seed}: the stream is not skewed enough to test anything (${unbounded.worstOver})`);
});

test('bounded load with weights: each backend within ceil(c (A + 1) w / W)', () => {
  const seed = freshSeed();
  const run = skewedRun(new ConsistentHashPicker({ boundedLoad: 1.1, tableSize: 4099 }), seed, [1, 1, 2, 4, 0.5, 1.5], 1.1);
  assert.ok(run.worstOver <= 0, `seed ${seed}: a pick went ${run.worstOver} over the bound`);
});

test('bounded and unbounded agree when loads are even', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const plain = new ConsistentHashPicker({ tableSize: 4099 });
  const bounded = new ConsistentHashPicker({ boundedLoad: 1.05, tableSize: 4099 });
  const backends = pool(7);
  for (let round = 0; round < 20; round++) {
    const level = rnd.int(30);
    for (const b of backends) b.active = level;
    backends[rnd.int(7)]!.available = rnd.next() < 0.5;
    for (const k of KEYS.slice(0, 200)) {
      const ctx = { clientIp: '192.0.2.1', hashKey: `${k}-${round}` };
      assert.equal(bounded.pick(backends, ctx), plain.pick(backends, ctx), `seed ${seed}, level ${level}, ${ctx.hashKey}`);
    }
  }
});

test('bounded load: a hot key spills in its preference order', () => {
  const picker = new ConsistentHashPicker({ boundedLoad: 1.5 });
  const backends = pool(4);
  const order = maglev(backends).getN('hot', 4);
  const byId = new Map(backends.map((b) => [b.id, b]));
  // A = 3 in flight, all on the first choice: bound ceil(1.5 * 4 / 4) = 2, so the second choice gets it.
  byId.get(order[0]!)!.active = 3;
  assert.equal(backends[picker.pick(backends, { clientIp: '', hashKey: 'hot' })]!.id, order[1]);
  byId.get(order[1]!)!.available = false;
  assert.equal(backends[picker.pick(backends, { clientIp: '', hashKey: 'hot' })]!.id, order[2]);
});

test('refuses a bounded-load factor <= 1 and a table size that is not a prime', () => {
  for (const boundedLoad of [1, 0.5, 0, -2, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => new ConsistentHashPicker({ boundedLoad }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), String(boundedLoad));
  }
  assert.throws(() => new ConsistentHashPicker({ tableSize: 1000 }), (err: unknown) => isArchlabError(err, 'ARCHLAB_HASH_BAD_ARGUMENT'));
});
