/**
 * One conformance suite, run against every Hasher. Each algorithm states the bounds it promises;
 * the suite checks them on 100k keys over 10 nodes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ALGORITHMS, BoundedLoadHasher, createHasher, type Algorithm, type Hasher } from './index.js';
import { isArchlabError } from '../core/errors.js';

interface Promise_ {
  /** max/mean load over 10 equal nodes and 100k keys. */
  maxOverMean: number;
  /** Whole-number weights only. */
  integerWeights: boolean;
  /**
   * Fraction of all keys that may move between surviving nodes when one node leaves: 0 for the
   * schemes that guarantee it; Maglev trades a little disruption for its perfect table balance.
   */
  strayMoves: number | 'most';
  /** Relative tolerance on a weighted node's share. */
  weightTolerance: number;
  /** Placement depends only on the member set, not on the order nodes were added in. */
  orderFree: boolean;
}

const PROMISES: Record<Algorithm, Promise_> = {
  // 160 points per node: a node's arc has a relative spread of about 1/sqrt(160) = 8%.
  ketama: { maxOverMean: 1.3, integerWeights: true, strayMoves: 0, weightTolerance: 0.2, orderFree: false },
  jump: { maxOverMean: 1.05, integerWeights: true, strayMoves: 0, weightTolerance: 0.05, orderFree: false },
  rendezvous: { maxOverMean: 1.05, integerWeights: false, strayMoves: 0, weightTolerance: 0.05, orderFree: true },
  maglev: { maxOverMean: 1.05, integerWeights: false, strayMoves: 0.01, weightTolerance: 0.05, orderFree: true },
  bounded: { maxOverMean: 1.3, integerWeights: true, strayMoves: 0, weightTolerance: 0.2, orderFree: false },
  modulo: { maxOverMean: 1.05, integerWeights: true, strayMoves: 'most', weightTolerance: 0.05, orderFree: false },
};

const KEYS = Array.from({ length: 100_000 }, (_, i) => `user:${i}:profile`);
const NODES = Array.from({ length: 10 }, (_, i) => `10.0.1.${i + 1}:11211`);

function build(algo: Algorithm, nodes: readonly string[] = NODES, weights?: number[]): Hasher {
  const h = createHasher(algo);
  nodes.forEach((n, i) => h.add(n, weights?.[i] ?? 1));
  return h;
}

function assign(h: Hasher, keys: readonly string[] = KEYS): string[] {
  return keys.map((k) => h.get(k));
}

function counts(placement: readonly string[]): Map<string, number> {
  const c = new Map<string, number>();
  for (const n of placement) c.set(n, (c.get(n) ?? 0) + 1);
  return c;
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => isArchlabError(err, code), `expected ${code}`);
}

for (const algo of ALGORITHMS) {
  const p = PROMISES[algo];
  describe(`Hasher conformance: ${algo}`, () => {
    test('is deterministic: two instances built alike place every key alike', () => {
      assert.deepEqual(assign(build(algo)), assign(build(algo)));
    });

    if (p.orderFree) {
      test('placement does not depend on the order nodes were added in', () => {
        assert.deepEqual(assign(build(algo, [...NODES].reverse())), assign(build(algo)));
      });
    }

    test('a string key and its UTF-8 bytes land on the same node', () => {
      const h = build(algo);
      for (const k of ['plain', 'é', '日本語のキー', '', 'emoji 🚀', 'user:42']) {
        assert.equal(h.get(Buffer.from(k, 'utf8')), h.get(k), k);
        assert.deepEqual(h.getN(new Uint8Array(Buffer.from(k)), 3), h.getN(k, 3), k);
      }
    });

    test('getN returns distinct nodes, get(key) first, and every node when n >= size', () => {
      const h = build(algo);
      for (const k of KEYS.slice(0, 2000)) {
        const three = h.getN(k, 3);
        assert.equal(three.length, 3);
        assert.equal(new Set(three).size, 3);
        assert.equal(three[0], h.get(k));
      }
      const all = h.getN('some key', 25);
      assert.equal(all.length, NODES.length);
      assert.deepEqual([...all].sort(), [...NODES].sort());
      assert.deepEqual(h.getN('some key', 0), []);
    });

    test(`balance over 10 nodes and 100k keys: max/mean <= ${p.maxOverMean}`, () => {
      const h = build(algo);
      const c = counts(assign(h));
      assert.equal(c.size, NODES.length, 'every node gets keys');
      const max = Math.max(...c.values());
      assert.ok(max / (KEYS.length / NODES.length) <= p.maxOverMean, `max/mean ${max / (KEYS.length / NODES.length)}`);
    });

    test('removing a node moves its keys, and only its keys where promised', () => {
      const h = build(algo);
      const before = assign(h);
      const gone = NODES[3]!;
      h.remove(gone);
      const after = assign(h);
      let stray = 0;
      for (let i = 0; i < KEYS.length; i++) {
        assert.notEqual(after[i], gone);
        if (before[i] !== gone && after[i] !== before[i]) stray++;
      }
      if (p.strayMoves === 'most') {
        assert.ok(stray / KEYS.length > 0.5, `hash % N should remap most keys, moved ${stray}`);
      } else {
        assert.ok(stray / KEYS.length <= p.strayMoves, `${stray} keys of surviving nodes moved`);
      }
    });

    test('adding a node moves keys only to it where promised; re-adding restores the placement', () => {
      const h = build(algo, NODES.slice(0, 9));
      const before = assign(h);
      h.add(NODES[9]!);
      const after = assign(h);
      let stray = 0;
      let toNew = 0;
      for (let i = 0; i < KEYS.length; i++) {
        if (after[i] === NODES[9]) toNew++;
        else if (after[i] !== before[i]) stray++;
      }
      assert.ok(toNew > 0, 'the new node takes keys');
      if (p.strayMoves !== 'most') assert.ok(stray / KEYS.length <= p.strayMoves, `${stray} keys moved between old nodes`);
      h.remove(NODES[9]!);
      if (p.strayMoves !== 'most') {
        // Removing what was added puts every key back: membership, not history, decides (jump reuses the bucket).
        assert.deepEqual(assign(h), before);
      }
    });

    test('weights scale a node\u2019s share of keys', () => {
      const weights = [1, 2, 3, 4];
      const nodes = NODES.slice(0, 4);
      const c = counts(assign(build(algo, nodes, weights)));
      for (let i = 0; i < nodes.length; i++) {
        const due = (KEYS.length * weights[i]!) / 10;
        const got = c.get(nodes[i]!) ?? 0;
        assert.ok(Math.abs(got - due) / due <= p.weightTolerance, `${nodes[i]} weight ${weights[i]}: ${got} keys, due ${due}`);
      }
    });

    test('typed errors: empty, duplicate, unknown, bad weight, bad node, bad key, bad n', () => {
      const h = createHasher(algo);
      throwsCode(() => h.get('k'), 'ARCHLAB_HASH_EMPTY');
      throwsCode(() => h.getN('k', 2), 'ARCHLAB_HASH_EMPTY');
      h.add('a');
      throwsCode(() => h.add('a'), 'ARCHLAB_HASH_DUPLICATE_NODE');
      throwsCode(() => h.remove('nope'), 'ARCHLAB_HASH_UNKNOWN_NODE');
      for (const w of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '2' as unknown as number]) {
        throwsCode(() => h.add('b', w), 'ARCHLAB_HASH_BAD_WEIGHT');
      }
      if (p.integerWeights) throwsCode(() => h.add('b', 1.5), 'ARCHLAB_HASH_BAD_WEIGHT');
      else h.add('b', 1.5);
      throwsCode(() => h.add(''), 'ARCHLAB_HASH_BAD_NODE');
      throwsCode(() => h.get(42 as unknown as string), 'ARCHLAB_HASH_BAD_KEY');
      throwsCode(() => h.getN('k', -1), 'ARCHLAB_HASH_BAD_ARGUMENT');
      throwsCode(() => h.getN('k', 1.5), 'ARCHLAB_HASH_BAD_ARGUMENT');
      // A refused call changed nothing.
      assert.deepEqual(
        h.nodes().map((n) => n.node),
        p.integerWeights ? ['a'] : ['a', 'b'],
      );
      h.remove('a');
      assert.equal(h.has('a'), false);
    });

    test('nodes() lists members in add order with weights; size follows', () => {
      const h = build(algo, NODES.slice(0, 3), [3, 1, 2]);
      assert.deepEqual(h.nodes(), [
        { node: NODES[0], weight: 3 },
        { node: NODES[1], weight: 1 },
        { node: NODES[2], weight: 2 },
      ]);
      assert.equal(h.size, 3);
      h.remove(NODES[1]!);
      assert.equal(h.size, 2);
      assert.equal(h.has(NODES[1]!), false);
    });
  });
}

test('bounded with no load counted places exactly as ketama', () => {
  const b = new BoundedLoadHasher();
  const k = createHasher('ketama');
  for (const n of NODES) {
    b.add(n);
    k.add(n);
  }
  assert.deepEqual(assign(b, KEYS.slice(0, 20_000)), assign(k, KEYS.slice(0, 20_000)));
});
