import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom } from '../core/random.js';
import type { Random } from '../core/random.js';
import { DEFAULT_FRESHNESS, dueForRefreshAhead, judge, makeEntry } from './policy.js';
import type { FreshnessOptions } from './policy.js';

/** A Random that returns the given draws in turn (for exact TTL arithmetic). */
function draws(...values: number[]): Random {
  let i = 0;
  return {
    next: () => values[i++ % values.length]!,
    int: (n) => Math.floor(values[i++ % values.length]! * n),
    uint32: () => Math.floor(values[i++ % values.length]! * 2 ** 32),
  };
}

const opts = (o: Partial<FreshnessOptions>): FreshnessOptions => ({ ...DEFAULT_FRESHNESS, ...o });

describe('makeEntry', () => {
  test('without jitter: fresh for exactly ttlMs, stale window is the larger of the two grace periods', () => {
    const o = opts({ ttlMs: 1000, jitter: 0, staleWhileRevalidateMs: 300, staleIfErrorMs: 500 });
    const e = makeEntry('v', o, 10_000, draws(0.5));
    assert.deepEqual(e, { value: 'v', freshUntilMs: 11_000, staleUntilMs: 11_500 });
    const e2 = makeEntry('v', { ...o, staleIfErrorMs: 100 }, 10_000, draws(0.5));
    assert.equal(e2.staleUntilMs, 11_300);
  });

  test('jitter shortens the TTL by jitter x u, never below 1 ms', () => {
    const o = opts({ ttlMs: 1000, jitter: 0.2 });
    assert.equal(makeEntry(1, o, 0, draws(0)).freshUntilMs, 1000, 'u = 0: full TTL');
    assert.equal(makeEntry(1, o, 0, draws(0.5)).freshUntilMs, 900);
    assert.equal(makeEntry(1, o, 0, draws(0.999999)).freshUntilMs, 800);
    assert.equal(makeEntry(1, opts({ ttlMs: 1, jitter: 0.99 }), 0, draws(0.999)).freshUntilMs, 1, 'floor of 1 ms');
  });

  test('jitter spreads expiries over [ttl x (1 - jitter), ttl]', () => {
    const o = opts({ ttlMs: 10_000, jitter: 0.1 });
    const random = new SeededRandom(7);
    const ttls = Array.from({ length: 2000 }, () => makeEntry(1, o, 0, random).freshUntilMs);
    const min = Math.min(...ttls);
    const max = Math.max(...ttls);
    assert.ok(min >= 9000 && max <= 10_000, `range ${min}..${max} (seed 7)`);
    assert.ok(max - min > 900, `spread ${max - min} covers most of the 1000 ms window (seed 7)`);
    // Roughly uniform: each tenth of the window holds between 5% and 15% of the entries.
    const buckets = new Array<number>(10).fill(0);
    for (const t of ttls) buckets[Math.min(9, Math.floor((t - 9000) / 100))]!++;
    for (const b of buckets) assert.ok(b > 100 && b < 300, `bucket sizes ${buckets.join(',')} (seed 7)`);
  });

  test('undefined makes a negative entry with the negative TTL; tags are kept only when non-empty', () => {
    const o = opts({ ttlMs: 1000, negativeTtlMs: 50, jitter: 0 });
    const neg = makeEntry<string>(undefined, o, 100, draws(0));
    assert.deepEqual(neg, { value: undefined, negative: true, freshUntilMs: 150, staleUntilMs: 150 });
    assert.deepEqual(makeEntry('v', o, 0, draws(0), ['a', 'b']).tags, ['a', 'b']);
    assert.equal('tags' in makeEntry('v', o, 0, draws(0), []), false);
  });
});

describe('judge', () => {
  const e = { value: 1, freshUntilMs: 1000, staleUntilMs: 2000 };

  test('fresh strictly before freshUntilMs', () => {
    const o = opts({ staleWhileRevalidateMs: 100, staleIfErrorMs: 500 });
    assert.equal(judge(e, o, 0), 'fresh');
    assert.equal(judge(e, o, 999), 'fresh');
    assert.equal(judge(e, o, 1000), 'revalidate');
  });

  test('revalidate inside the SWR window, then stale-if-error inside the longer SIE window, then expired', () => {
    const o = opts({ staleWhileRevalidateMs: 100, staleIfErrorMs: 500 });
    assert.equal(judge(e, o, 1099), 'revalidate');
    assert.equal(judge(e, o, 1100), 'stale-if-error');
    assert.equal(judge(e, o, 1499), 'stale-if-error');
    assert.equal(judge(e, o, 1500), 'expired');
  });

  test('with both windows off, anything past fresh is expired', () => {
    assert.equal(judge(e, DEFAULT_FRESHNESS, 1000), 'expired');
  });

  test('a SWR window longer than the SIE window hides it', () => {
    const o = opts({ staleWhileRevalidateMs: 500, staleIfErrorMs: 100 });
    assert.equal(judge(e, o, 1200), 'revalidate');
    assert.equal(judge(e, o, 1500), 'expired');
  });
});

describe('dueForRefreshAhead', () => {
  const e = { value: 1, freshUntilMs: 1000, staleUntilMs: 1000 };

  test('due in the last ratio x ttl of fresh life only', () => {
    assert.equal(dueForRefreshAhead(e, 1000, 0.2, 799), false);
    assert.equal(dueForRefreshAhead(e, 1000, 0.2, 800), true);
    assert.equal(dueForRefreshAhead(e, 1000, 0.2, 999), true);
    assert.equal(dueForRefreshAhead(e, 1000, 0.2, 1000), false, 'no longer fresh: not refresh-ahead\'s business');
  });

  test('ratio 0 turns it off', () => {
    assert.equal(dueForRefreshAhead(e, 1000, 0, 999), false);
  });
});
