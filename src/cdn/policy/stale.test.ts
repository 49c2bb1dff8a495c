/**
 * Serving stale content: RFC 5861 (stale-while-revalidate, stale-if-error), RFC 9111 4.2.4 (when a
 * stale response may be sent at all), and soft purge.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CdnPolicy } from './index.js';
import { S, T0, req, res, store } from './test-helpers.js';

const policy = new CdnPolicy();

test('RFC 5861 3: stale-while-revalidate: usable while stale for that many seconds, then not', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10, stale-while-revalidate=20' }));
  const fresh = policy.freshness(req(), meta, T0 + 5 * S);
  assert.deepEqual([fresh.fresh, fresh.staleWhileRevalidate], [true, false]);
  const inWindow = policy.freshness(req(), meta, T0 + 25 * S);
  assert.deepEqual([inWindow.fresh, inWindow.staleWhileRevalidate, inWindow.ttlS], [false, true, -15]);
  const after = policy.freshness(req(), meta, T0 + 31 * S);
  assert.deepEqual([after.fresh, after.staleWhileRevalidate], [false, false]);
});

test('RFC 5861 3: stale-while-revalidate yields to the request: max-stale smaller than the staleness, no-cache, max-age, min-fresh', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10, stale-while-revalidate=60' }));
  const at = T0 + 30 * S; // 20 s stale
  assert.equal(policy.freshness(req({ 'cache-control': 'max-stale=5' }), meta, at).staleWhileRevalidate, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'no-cache' }), meta, at).staleWhileRevalidate, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'max-age=15' }), meta, at).staleWhileRevalidate, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'min-fresh=1' }), meta, at).staleWhileRevalidate, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'max-age=60' }), meta, at).staleWhileRevalidate, true);
});

test('RFC 5861 4: stale-if-error: usable when the upstream fails for that many seconds after going stale', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10, stale-if-error=100' }));
  assert.equal(policy.freshness(req(), meta, T0 + 50 * S).staleIfError, true);
  assert.equal(policy.freshness(req(), meta, T0 + 50 * S).staleWhileRevalidate, false, 'only on error');
  assert.equal(policy.freshness(req(), meta, T0 + 111 * S).staleIfError, false);
  assert.equal(policy.freshness(req(), meta, T0 + 5 * S).staleIfError, false, 'fresh: nothing stale to fall back on');
});

test('RFC 5861 4: a request stale-if-error widens the window the response gave', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10', etag: '"a"' }));
  assert.equal(policy.freshness(req(), meta, T0 + 50 * S).staleIfError, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'stale-if-error=60' }), meta, T0 + 50 * S).staleIfError, true);
});

test('RFC 9111 4.2.4: no stale response against no-cache, must-revalidate, proxy-revalidate or s-maxage', () => {
  for (const cc of ['no-cache, max-age=10', 'max-age=10, must-revalidate', 'max-age=10, proxy-revalidate', 's-maxage=10']) {
    const { meta } = store(policy, res({ 'cache-control': `${cc}, stale-while-revalidate=100, stale-if-error=100`, etag: '"a"' }));
    const f = policy.freshness(req({ 'cache-control': 'stale-if-error=100' }), meta, T0 + 20 * S);
    assert.deepEqual([f.fresh, f.staleWhileRevalidate, f.staleIfError], [false, false, false], cc);
  }
});

test('soft purge: a fresh object becomes stale at the purge, and stays usable for stale-if-error from then', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=1000, stale-if-error=60, stale-while-revalidate=30' }));
  const purged = { ...meta, softPurgedAt: T0 + 100 * S };
  assert.equal(policy.freshness(req(), purged, T0 + 99 * S).fresh, true, 'not yet');
  const f = policy.freshness(req(), purged, T0 + 110 * S);
  assert.deepEqual([f.fresh, f.ttlS, f.staleWhileRevalidate, f.staleIfError], [false, -10, true, true]);
  assert.equal(policy.freshness(req(), purged, T0 + 161 * S).staleIfError, false);
  // Without a stale-if-error window, a soft-purged object is only good for revalidation.
  const plain = store(policy, res({ 'cache-control': 'max-age=1000', etag: '"a"' })).meta;
  assert.equal(policy.freshness(req(), { ...plain, softPurgedAt: T0 }, T0 + S).staleIfError, false);
});
