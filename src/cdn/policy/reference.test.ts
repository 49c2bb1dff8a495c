/**
 * The policy checked against http-cache-semantics (shared: true) on random responses, where the two
 * mean to agree: storability and the freshness lifetime. Where this module deliberately differs
 * (proxy-revalidate, heuristic cap, explicit-only statuses, responses that could never be used,
 * Set-Cookie, Vary: *) the generator stays out of the way, and policy.test.ts covers the difference.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import CachePolicy from 'http-cache-semantics';
import { SeededRandom, freshSeed } from '../../core/random.js';
import { CdnPolicy } from './index.js';
import { T0, httpDate, req, store } from './test-helpers.js';

const CASES = 3000;

test('storability and freshness lifetime agree with http-cache-semantics where RFC 9111 leaves no choice', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[rnd.int(xs.length)]!;
  const policy = new CdnPolicy({ maxHeuristicMs: 1e15 });
  let compared = 0;
  let storedBoth = 0;
  for (let i = 0; i < CASES; i++) {
    const directives = [pick(['max-age=0', 'max-age=60']), 's-maxage=30', 'public', 'private', 'no-store', 'no-cache', 'must-revalidate', 'stale-if-error=10']
      .filter(() => rnd.next() < 0.2);
    const headers: Record<string, string> = { date: httpDate(T0) };
    if (directives.length) headers['cache-control'] = directives.join(', ');
    if (rnd.next() < 0.3) headers.expires = pick([httpDate(T0 + 120_000), httpDate(T0 - 1000), '0']);
    if (rnd.next() < 0.5) headers['last-modified'] = httpDate(T0 - rnd.int(10_000_000) * 1000);
    if (rnd.next() < 0.3) headers.etag = '"e"';
    if (rnd.next() < 0.1 && !headers['cache-control']) headers.pragma = 'no-cache';
    const status = pick([200, 203, 204, 300, 301, 302, 307, 308, 404, 410, 501]);
    const reqHeaders: Record<string, string> = rnd.next() < 0.3 ? { authorization: 'Basic x' } : {};
    const explicit = /max-age|s-maxage/.test(headers['cache-control'] ?? '') || headers.expires !== undefined;
    if (!CdnPolicy.heuristicallyCacheable(status) && !explicit) continue; // explicit-only statuses: ours refuses `public` alone

    const lib = new CachePolicy({ method: 'GET', headers: reqHeaders }, { status, headers }, { shared: true, immutableMinTimeToLive: 0 });
    const { decision, meta } = store(policy, headers, { status, request: req(reqHeaders) });
    if (decision.reason === 'no-freshness') {
      assert.equal(lib.maxAge(), 0, `seed ${seed} case ${i}: ours found the response unusable, the library gives it a lifetime ${JSON.stringify({ status, headers })}`);
      continue;
    }
    compared++;
    assert.equal(decision.store, lib.storable(), `seed ${seed} case ${i}: storable ${JSON.stringify({ status, headers, reqHeaders, reason: decision.reason })}`);
    if (decision.store) {
      storedBoth++;
      const ttl = policy.freshness(req(reqHeaders), meta, T0).ttlS;
      assert.ok(Math.abs(ttl - lib.maxAge()) < 1e-6, `seed ${seed} case ${i}: lifetime ours ${ttl} library ${lib.maxAge()} ${JSON.stringify({ status, headers })}`);
    }
  }
  // The generator must reach both outcomes, or the test proves nothing.
  assert.ok(compared > CASES / 3 && storedBoth > CASES / 10, `seed ${seed}: compared ${compared}, stored ${storedBoth}`);
});
