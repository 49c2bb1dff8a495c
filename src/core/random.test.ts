import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isArchlabError } from './errors.js';
import { freshSeed, SeededRandom, SystemRandom } from './random.js';
import type { Random } from './random.js';

function draws(r: Random, n: number): number[] {
  return Array.from({ length: n }, () => r.uint32());
}

describe('SeededRandom', () => {
  test('the same seed gives the same sequence', () => {
    assert.deepEqual(draws(new SeededRandom(42), 100), draws(new SeededRandom(42), 100));
    const a = new SeededRandom(7);
    const b = new SeededRandom(7);
    for (let i = 0; i < 100; i++) {
      assert.equal(a.next(), b.next());
      assert.equal(a.int(1000), b.int(1000));
    }
  });

  test('different seeds, even adjacent ones, give different sequences', () => {
    const seqs = [0, 1, 2, 42, 0xffffffff].map((s) => draws(new SeededRandom(s), 8).join(','));
    assert.equal(new Set(seqs).size, seqs.length);
  });

  test('the seed is kept so a run can print it', () => {
    assert.equal(new SeededRandom(1234).seed, 1234);
  });

  test('next() is in [0, 1) and uint32() is an unsigned 32-bit integer', () => {
    const r = new SeededRandom(99);
    for (let i = 0; i < 10_000; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1, `next() = ${x}`);
      const u = r.uint32();
      assert.ok(Number.isInteger(u) && u >= 0 && u <= 0xffffffff, `uint32() = ${u}`);
    }
  });

  test('int(n) stays in [0, n) and is roughly uniform (chi-square over 60k draws)', () => {
    const seed = 20240601;
    const r = new SeededRandom(seed);
    const n = 6;
    const draws = 60_000;
    const counts = new Array<number>(n).fill(0);
    for (let i = 0; i < draws; i++) {
      const k = r.int(n);
      assert.ok(Number.isInteger(k) && k >= 0 && k < n, `int(${n}) = ${k} (seed ${seed})`);
      counts[k]!++;
    }
    const expected = draws / n;
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    // 5 degrees of freedom: p = 0.001 at 20.5. A generous bound that still catches real bias
    // (always returning one value gives 300000).
    assert.ok(chi2 < 20.5, `chi-square ${chi2.toFixed(2)} for counts ${counts.join(',')} (seed ${seed})`);
  });

  test('int() works for large bounds', () => {
    const r = new SeededRandom(5);
    const big = 2 ** 40;
    let sawHigh = false;
    for (let i = 0; i < 1000; i++) {
      const k = r.int(big);
      assert.ok(Number.isInteger(k) && k >= 0 && k < big);
      if (k > 2 ** 32) sawHigh = true;
    }
    assert.ok(sawHigh, 'values above 2^32 are reachable');
  });

  test('int(0), int(-1), int(1.5), int(NaN) throw InvalidArgumentError; so does a fractional seed', () => {
    const r = new SeededRandom(1);
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity]) {
      assert.throws(
        () => r.int(bad),
        (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT') && e.message.includes(String(bad)),
        `int(${bad})`,
      );
    }
    assert.equal(r.int(1), 0);
    assert.throws(() => new SeededRandom(1.5), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
  });
});

describe('SystemRandom', () => {
  test('values stay in range across buffer refills', () => {
    const r = new SystemRandom();
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const k = r.int(10);
      assert.ok(Number.isInteger(k) && k >= 0 && k < 10);
      seen.add(k);
      const x = r.next();
      assert.ok(x >= 0 && x < 1);
    }
    assert.equal(seen.size, 10, 'every value turns up in 2000 draws');
    assert.throws(() => r.int(0), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
  });

  test('freshSeed gives uint32 seeds that differ between calls', () => {
    const seeds = new Set(Array.from({ length: 20 }, () => freshSeed()));
    for (const s of seeds) assert.ok(Number.isInteger(s) && s >= 0 && s <= 0xffffffff);
    assert.ok(seeds.size > 1);
  });
});
