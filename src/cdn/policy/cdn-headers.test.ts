/**
 * The fields a CDN obeys and hides: CDN-Cache-Control (RFC 9213), Surrogate-Control (W3C Edge
 * Architecture 1.0), and the purge tags Surrogate-Key / Cache-Tag.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CdnPolicy } from './index.js';
import { S, T0, httpDate, req, res, store } from './test-helpers.js';

const edge = new CdnPolicy();
const shield = new CdnPolicy({ stripSurrogateHeaders: false });

test('RFC 9213 2.1: CDN-Cache-Control takes precedence over Cache-Control at the CDN', () => {
  // Browsers are told not to cache; the CDN keeps it ten minutes.
  const { decision, meta } = store(edge, res({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=600' }));
  assert.equal(decision.store, true);
  assert.equal(edge.freshness(req(), meta, T0 + 599 * S).fresh, true);
  assert.equal(edge.freshness(req(), meta, T0 + 601 * S).fresh, false);
  // And the other way round: the CDN must not store what browsers may.
  const d = store(edge, res({ 'cache-control': 'max-age=600', 'cdn-cache-control': 'no-store' })).decision;
  assert.deepEqual([d.store, d.reason], [false, 'no-store']);
  const p = store(edge, res({ 'cache-control': 'public, max-age=600', 'cdn-cache-control': 'private' })).decision;
  assert.equal(p.reason, 'private');
});

test('RFC 9213 2.1: with CDN-Cache-Control, Expires is ignored too', () => {
  const { meta } = store(edge, res({ expires: httpDate(T0 + 1000 * S), 'cdn-cache-control': 'max-age=10' }));
  assert.equal(edge.freshness(req(), meta, T0 + 20 * S).fresh, false);
  // Without a lifetime in CDN-Cache-Control the Expires still does not count (heuristics may).
  const noLifetime = store(edge, res({ expires: httpDate(T0 + 1000 * S), 'cdn-cache-control': 'public', etag: '"a"' }));
  assert.equal(edge.freshness(req(), noLifetime.meta, T0 + 20 * S).fresh, false);
});

test('RFC 9213 2.1: an empty or invalid CDN-Cache-Control falls back to Cache-Control', () => {
  for (const value of ['', ' , ', '=60, "x"']) {
    const { meta } = store(edge, res({ 'cache-control': 'max-age=60', 'cdn-cache-control': value }));
    assert.equal(edge.freshness(req(), meta, T0 + 30 * S).fresh, true, JSON.stringify(value));
  }
});

test('RFC 9213 2.1: CDN-Cache-Control carries stale-while-revalidate and stale-if-error too', () => {
  const { meta } = store(edge, res({ 'cache-control': 'no-cache', 'cdn-cache-control': 'max-age=10, stale-while-revalidate=30, stale-if-error=300' }));
  const f = edge.freshness(req(), meta, T0 + 20 * S);
  assert.deepEqual([f.fresh, f.staleWhileRevalidate, f.staleIfError], [false, true, true]);
});

test('RFC 9213 2.1: CDN-Cache-Control is stripped before clients at the edge, forwarded by the shield', () => {
  const headers = res({ 'cache-control': 'max-age=5', 'cdn-cache-control': 'max-age=600', 'surrogate-control': 'max-age=60', 'surrogate-key': 'a b', 'cache-tag': 'c' });
  const atEdge = store(edge, headers);
  for (const name of ['cdn-cache-control', 'surrogate-control', 'surrogate-key', 'cache-tag']) {
    assert.equal(atEdge.decision.headers[name], undefined, `edge stores no ${name}`);
    assert.equal(edge.responseHeaders(atEdge.meta, edge.freshness(req(), atEdge.meta, T0))[name], undefined, `edge sends no ${name}`);
  }
  assert.equal(atEdge.decision.headers['cache-control'], 'max-age=5', 'Cache-Control is for clients and stays');
  const atShield = store(shield, headers);
  assert.equal(shield.responseHeaders(atShield.meta, shield.freshness(req(), atShield.meta, T0))['cdn-cache-control'], 'max-age=600');
  assert.deepEqual(atShield.decision.tags, ['a', 'b', 'c']);
});

test('RFC 9213 2.1: after a 304 the edge still obeys a CDN-Cache-Control it stripped from the stored headers', () => {
  const { meta } = store(edge, res({ 'cache-control': 'max-age=1', 'cdn-cache-control': 'max-age=100', etag: '"v1"', 'surrogate-key': 'k1' }));
  const now = T0 + 200 * S;
  const r = edge.revalidated(req(), meta, { status: 304, headers: res({ etag: '"v1"' }, now) }, now);
  const updated = { ...meta, headers: r.headers, policy: r.state };
  assert.equal(edge.freshness(req(), updated, now + 50 * S).fresh, true, 'lifetime 100 from the kept CDN-Cache-Control');
  assert.deepEqual(r.tags, ['k1']);
  assert.equal(r.headers['cdn-cache-control'], undefined);
});

test('RFC 9213 2: surrogateHeaders=false makes the tier obey Cache-Control only', () => {
  const plain = new CdnPolicy({ surrogateHeaders: false });
  const { meta } = store(plain, res({ 'cache-control': 'max-age=10', 'cdn-cache-control': 'max-age=600' }));
  assert.equal(plain.freshness(req(), meta, T0 + 20 * S).fresh, false);
});

test('Edge Architecture 1.0 3: Surrogate-Control max-age and no-store take precedence over Cache-Control; CDN-Cache-Control comes first', () => {
  const { meta } = store(edge, res({ 'cache-control': 'private', 'surrogate-control': 'max-age=300' }));
  assert.equal(edge.freshness(req(), meta, T0 + 299 * S).fresh, true);
  assert.equal(store(edge, res({ 'cache-control': 'max-age=300', 'surrogate-control': 'no-store' })).decision.reason, 'no-store');
  const both = store(edge, res({ 'surrogate-control': 'max-age=300', 'cdn-cache-control': 'max-age=10' }));
  assert.equal(edge.freshness(req(), both.meta, T0 + 20 * S).fresh, false, 'CDN-Cache-Control wins');
});

test('Edge Architecture 1.0 3: Surrogate-Control max-age=N+M allows M seconds of stale-if-error; device-targeted directives are ignored', () => {
  const { meta } = store(edge, res({ 'surrogate-control': 'max-age=10+100, content="ESI/1.0"' }));
  const f = edge.freshness(req(), meta, T0 + 60 * S);
  assert.deepEqual([f.fresh, f.staleIfError, f.staleWhileRevalidate], [false, true, false]);
  const targeted = store(edge, res({ 'cache-control': 'max-age=5', 'surrogate-control': 'max-age=300;other-cdn' }));
  assert.equal(edge.freshness(req(), targeted.meta, T0 + 20 * S).fresh, false, 'not for us: Cache-Control applies');
});

test('purge tags: Surrogate-Key is space separated, Cache-Tag comma separated; deduplicated and bounded', () => {
  const { decision } = store(edge, res({ 'cache-control': 'max-age=60', 'surrogate-key': '  product-7   catalog product-7', 'cache-tag': 'catalog, en ,,', }));
  assert.deepEqual(decision.tags, ['product-7', 'catalog', 'en']);
  const lines = store(edge, res({ 'cache-control': 'max-age=60', 'surrogate-key': ['a b', 'c'] })).decision;
  assert.deepEqual(lines.tags, ['a', 'b', 'c']);
  const few = new CdnPolicy({ maxTags: 2 });
  const many = Array.from({ length: 10 }, (_, i) => `t${i}`).join(' ');
  assert.deepEqual(store(few, res({ 'cache-control': 'max-age=60', 'surrogate-key': many })).decision.tags, ['t0', 't1']);
  assert.deepEqual(store(edge, res({ 'cache-control': 'max-age=60', 'surrogate-key': `ok ${'x'.repeat(2000)}` })).decision.tags, ['ok']);
});
