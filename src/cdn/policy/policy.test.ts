/**
 * RFC 9111 (HTTP Caching) for a shared cache, one test per rule, each named after the section it checks.
 * Time is an argument: T0 plus whole seconds, no clock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isArchlabError } from '../../core/errors.js';
import { CdnPolicy } from './index.js';
import { S, T0, httpDate, req, res, store } from './test-helpers.js';

const policy = new CdnPolicy();

// ---------------------------------------------------------------- RFC 9111 3: storing responses

test('RFC 9111 3: a response with max-age to a GET is stored; nothing is stored for other methods', () => {
  assert.equal(store(policy, res({ 'cache-control': 'max-age=60' })).decision.store, true);
  for (const method of ['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS']) {
    const d = policy.storable(req({}, method), { status: 200, headers: res({ 'cache-control': 'max-age=60' }) }, T0);
    assert.deepEqual([d.store, d.reason], [false, 'method'], method);
  }
});

test('RFC 9111 3 / 5.2.2.5: response no-store is never stored', () => {
  const d = store(policy, res({ 'cache-control': 'max-age=60, no-store' })).decision;
  assert.deepEqual([d.store, d.reason], [false, 'no-store']);
  // Directive names are case-insensitive (RFC 9111 5.2).
  assert.equal(store(policy, res({ 'cache-control': 'Max-Age=60, NO-STORE' })).decision.reason, 'no-store');
});

test('RFC 9111 5.2.1.5: request no-store: the response is not stored and the request is not cacheable', () => {
  const r = req({ 'cache-control': 'no-store' });
  const d = store(policy, res({ 'cache-control': 'max-age=60' }), { request: r }).decision;
  assert.deepEqual([d.store, d.reason], [false, 'no-store']);
  assert.equal(policy.requestCacheable(r), false);
  assert.equal(policy.requestCacheable(req()), true);
  assert.equal(policy.requestCacheable(req({}, 'POST')), false);
});

test('RFC 9111 3 / 5.2.2.7: private responses are not stored by a shared cache (qualified private too)', () => {
  assert.equal(store(policy, res({ 'cache-control': 'private, max-age=60' })).decision.reason, 'private');
  assert.equal(store(policy, res({ 'cache-control': 'max-age=60, private="set-cookie, x-user"' })).decision.reason, 'private');
  assert.equal(store(policy, res({ 'cache-control': 'public, max-age=60' })).decision.store, true);
});

test('RFC 9111 3.5: a response to a request with Authorization is stored only with public / s-maxage / must-revalidate', () => {
  const auth = req({ authorization: 'Bearer t' });
  const d = store(policy, res({ 'cache-control': 'max-age=60' }), { request: auth }).decision;
  assert.deepEqual([d.store, d.reason], [false, 'authorization']);
  for (const cc of ['public, max-age=60', 's-maxage=60', 'max-age=60, must-revalidate']) {
    assert.equal(store(policy, res({ 'cache-control': cc }), { request: auth }).decision.store, true, cc);
  }
  // proxy-revalidate is not one of the three.
  assert.equal(store(policy, res({ 'cache-control': 'max-age=60, proxy-revalidate' }), { request: auth }).decision.reason, 'authorization');
});

test('RFC 9111 3.1: hop-by-hop, Connection-listed and Proxy-* fields are not stored; Age is recomputed, not stored', () => {
  const { decision } = store(
    policy,
    res({
      'cache-control': 'max-age=60',
      connection: 'close, x-hop',
      'x-hop': '1',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'proxy-authenticate': 'Basic',
      'proxy-authentication-info': 'x',
      upgrade: 'h2c',
      age: '5',
      'content-type': 'text/plain',
    }),
  );
  assert.deepEqual(Object.keys(decision.headers).sort(), ['cache-control', 'content-type', 'date']);
});

test('RFC 9111 3.2 / 5.2.2: header names from the origin are data: "__proto__" and "constructor" are stored as ordinary fields', () => {
  const headers = JSON.parse('{"__proto__": "x", "constructor": "y", "cache-control": "max-age=60"}') as Record<string, string>;
  const { decision } = store(policy, res(headers));
  assert.equal(decision.store, true);
  assert.equal(Object.getPrototypeOf(Object.getPrototypeOf(decision.headers)), null, 'nothing inherited, not even Object.prototype');
  assert.equal('toString' in decision.headers, false);
  assert.equal(decision.headers['__proto__'], 'x');
  assert.equal(decision.headers.constructor, 'y');
});

// ---------------------------------------------------------------- status codes

test('RFC 9110 15.1: heuristically cacheable status codes are stored with heuristic freshness; others only with explicit freshness', () => {
  const heuristic = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];
  for (let s = 100; s < 600; s++) assert.equal(CdnPolicy.heuristicallyCacheable(s), heuristic.includes(s), String(s));
  const lm = { 'last-modified': httpDate(T0 - 100_000 * S) };
  for (const status of [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]) {
    const { decision, meta } = store(policy, res(lm), { status });
    assert.equal(decision.store, true, String(status));
    assert.equal(policy.freshness(req(), meta, T0).fresh, true, String(status));
  }
  for (const status of [302, 307, 400, 403, 500, 503]) {
    assert.equal(store(policy, res(lm), { status }).decision.reason, 'status', `${status} without explicit freshness`);
    assert.equal(store(policy, res({ 'cache-control': 'max-age=5' }), { status }).decision.store, true, `${status} with max-age`);
  }
  // `public` alone does not make a non-heuristic status cacheable here.
  assert.equal(store(policy, res({ 'cache-control': 'public', ...lm }), { status: 500 }).decision.reason, 'status');
});

test('RFC 9111 3: 1xx and 304 are never stored; 206 is not stored (ranges are cut from stored full responses)', () => {
  for (const status of [100, 103, 304]) assert.equal(store(policy, res({ 'cache-control': 'max-age=60' }), { status }).decision.reason, 'status');
  assert.equal(store(policy, res({ 'cache-control': 'max-age=60', 'content-range': 'bytes 0-1/10' }), { status: 206 }).decision.reason, 'partial');
});

test('RFC 9111 3: a response that could never be used (no lifetime, no validator, no stale window) is not stored', () => {
  assert.equal(store(policy, res({})).decision.reason, 'no-freshness');
  assert.equal(store(policy, res({ 'cache-control': 'max-age=0' })).decision.reason, 'no-freshness');
  // With a validator it is kept for cheap revalidation.
  assert.equal(store(policy, res({ 'cache-control': 'no-cache', etag: '"v1"' })).decision.store, true);
  assert.equal(store(policy, res({ 'cache-control': 'max-age=0, stale-if-error=60' })).decision.store, true);
});

test('Set-Cookie: a response carrying it is not stored unless cacheSetCookie', () => {
  const headers = res({ 'cache-control': 'public, max-age=60', 'set-cookie': ['a=1', 'b=2'] });
  assert.equal(store(policy, headers).decision.reason, 'set-cookie');
  const withCookies = new CdnPolicy({ cacheSetCookie: true });
  const { decision, meta } = store(withCookies, headers);
  assert.equal(decision.store, true);
  assert.deepEqual(decision.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(withCookies.freshness(req(), meta, T0 + 10 * S).fresh, true);
});

// ---------------------------------------------------------------- 4.2 freshness

test('RFC 9111 4.2.1: s-maxage takes precedence over max-age and Expires in a shared cache', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10, s-maxage=100', expires: httpDate(T0 + 5 * S) }));
  assert.equal(policy.freshness(req(), meta, T0 + 50 * S).fresh, true);
  assert.equal(policy.freshness(req(), meta, T0 + 101 * S).fresh, false);
});

test('RFC 9111 4.2.1: max-age takes precedence over Expires', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100', expires: httpDate(T0 + 5 * S) }));
  assert.equal(policy.freshness(req(), meta, T0 + 50 * S).ttlS, 50);
});

test('RFC 9111 5.3: Expires minus Date is the lifetime; an invalid Expires ("0") means already expired', () => {
  const { meta } = store(policy, res({ expires: httpDate(T0 + 30 * S) }));
  assert.equal(policy.freshness(req(), meta, T0 + 29 * S).fresh, true);
  assert.equal(policy.freshness(req(), meta, T0 + 30 * S).fresh, false);
  const zero = store(policy, res({ expires: '0', etag: '"a"', 'last-modified': httpDate(T0 - 1000 * S) }));
  assert.equal(zero.decision.store, true);
  assert.equal(policy.freshness(req(), zero.meta, T0).fresh, false, 'invalid Expires is not heuristic freshness either');
  // Expires is read relative to the origin's Date, not to the local clock.
  const skewed = store(policy, res({ expires: httpDate(T0 + 60 * S) }, T0 + 30 * S), { now: T0 });
  assert.equal(policy.freshness(req(), skewed.meta, T0).ttlS, 30);
});

test('RFC 9111 4.2.1: conflicting duplicate max-age values make the response stale', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=60, max-age=120', etag: '"a"' }));
  assert.equal(policy.freshness(req(), meta, T0).fresh, false);
  // The same value twice is no conflict.
  const same = store(policy, res({ 'cache-control': ['max-age=60', 'max-age=60'] }));
  assert.equal(policy.freshness(req(), same.meta, T0 + 30 * S).fresh, true);
});

test('RFC 9111 1.2.2: delta-seconds beyond 2^31 are taken as 2^31; non-digits are invalid (stale)', () => {
  const big = store(policy, res({ 'cache-control': 'max-age=99999999999999999999' }));
  assert.equal(policy.freshness(req(), big.meta, T0).ttlS, 2147483648);
  const bad = store(policy, res({ 'cache-control': 'max-age=1h', etag: '"a"' }));
  assert.equal(policy.freshness(req(), bad.meta, T0).fresh, false);
  const quoted = store(policy, res({ 'cache-control': 'max-age="60"' }));
  assert.equal(policy.freshness(req(), quoted.meta, T0 + 59 * S).fresh, true, 'quoted-string form accepted (RFC 9111 5.2)');
});

test('RFC 9111 4.2.2: heuristic freshness = heuristicFraction x (Date - Last-Modified), capped by maxHeuristicMs', () => {
  const lm = { 'last-modified': httpDate(T0 - 1000 * S) };
  const { meta } = store(policy, res(lm));
  assert.equal(policy.freshness(req(), meta, T0).ttlS, 100);
  const half = new CdnPolicy({ heuristicFraction: 0.5 });
  assert.equal(half.freshness(req(), store(half, res(lm)).meta, T0).ttlS, 500);
  // A year-old Last-Modified: 10% is 36 days, capped at the default 1 day.
  const old = store(policy, res({ 'last-modified': httpDate(T0 - 365 * 86_400 * S) }));
  assert.equal(policy.freshness(req(), old.meta, T0).ttlS, 86_400);
  const capped = new CdnPolicy({ maxHeuristicMs: 10_000 });
  assert.equal(capped.freshness(req(), store(capped, res(lm)).meta, T0).ttlS, 10);
  // A Last-Modified after the Date gives no heuristic lifetime.
  const future = store(policy, res({ 'last-modified': httpDate(T0 + 10 * S) }));
  assert.equal(policy.freshness(req(), future.meta, T0).fresh, false);
});

test('RFC 9111 4.2.3: Age = max(apparent_age, age_value) + resident_time, whole seconds', () => {
  // Upstream says Age 30: 30 + 10 resident.
  const a = store(policy, res({ 'cache-control': 'max-age=100', age: '30' }), { now: T0 });
  assert.deepEqual(
    [policy.freshness(req(), a.meta, T0 + 10 * S).ageS, policy.freshness(req(), a.meta, T0 + 10 * S).ttlS],
    [40, 60],
  );
  // Date 20 s before receipt and no Age: apparent age 20 counts.
  const b = store(policy, res({ 'cache-control': 'max-age=100' }, T0 - 20 * S), { now: T0 });
  assert.equal(policy.freshness(req(), b.meta, T0 + 5 * S).ageS, 25);
  // Age larger than apparent age wins; a Date in the future (skewed origin clock) gives no negative age.
  const c = store(policy, res({ 'cache-control': 'max-age=100', age: '50' }, T0 - 20 * S), { now: T0 });
  assert.equal(policy.freshness(req(), c.meta, T0).ageS, 50);
  const d = store(policy, res({ 'cache-control': 'max-age=100' }, T0 + 60 * S), { now: T0 });
  assert.equal(policy.freshness(req(), d.meta, T0 + 1500).ageS, 1, 'fractional ages are floored');
  // An invalid Age is ignored.
  const e = store(policy, res({ 'cache-control': 'max-age=100', age: 'ten' }), { now: T0 });
  assert.equal(policy.freshness(req(), e.meta, T0).ageS, 0);
});

test('RFC 9111 5.1: responseHeaders sets Age to the current age; RFC 9110 6.6.1: Date is kept as stored, or added when the origin sent none', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100', age: '3' }, T0 - 2 * S), { now: T0 });
  const out = policy.responseHeaders(meta, policy.freshness(req(), meta, T0 + 10 * S));
  assert.equal(out.age, '13');
  assert.equal(out.date, httpDate(T0 - 2 * S));
  const noDate = store(policy, { 'cache-control': 'max-age=100' }, { now: T0 + 7 * S });
  assert.equal(noDate.decision.headers.date, httpDate(T0 + 7 * S));
  const badDate = store(policy, { 'cache-control': 'max-age=100', date: 'yesterday' }, { now: T0 });
  assert.equal(badDate.decision.headers.date, httpDate(T0));
});

test('RFC 9111 5.2.2.4: response no-cache is stored but never served without revalidation', () => {
  const { decision, meta } = store(policy, res({ 'cache-control': 'no-cache, max-age=600', etag: '"a"' }));
  assert.equal(decision.store, true);
  const f = policy.freshness(req({ 'cache-control': 'max-stale' }), meta, T0);
  assert.equal(f.fresh, false);
  assert.equal(f.staleIfError, false);
  // Qualified no-cache="field" is treated as unqualified.
  const q = store(policy, res({ 'cache-control': 'no-cache="set-cookie", max-age=600', etag: '"a"' }));
  assert.equal(policy.freshness(req(), q.meta, T0).fresh, false);
});

test('RFC 9111 5.2.2.2: must-revalidate: served while fresh, never served stale (not even with max-stale)', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60' }));
  assert.equal(policy.freshness(req(), meta, T0 + 5 * S).fresh, true);
  const stale = policy.freshness(req({ 'cache-control': 'max-stale=1000' }), meta, T0 + 20 * S);
  assert.deepEqual([stale.fresh, stale.staleWhileRevalidate, stale.staleIfError], [false, false, false]);
});

test('RFC 9111 5.2.2.8: proxy-revalidate binds a shared cache like must-revalidate', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10, proxy-revalidate, stale-if-error=60' }));
  assert.equal(policy.freshness(req(), meta, T0 + 5 * S).fresh, true);
  const stale = policy.freshness(req({ 'cache-control': 'max-stale' }), meta, T0 + 20 * S);
  assert.deepEqual([stale.fresh, stale.staleIfError], [false, false]);
});

test('RFC 9111 5.2.2.10: s-maxage implies proxy-revalidate: no stale responses', () => {
  const { meta } = store(policy, res({ 'cache-control': 's-maxage=10, stale-if-error=60' }));
  const f = policy.freshness(req({ 'cache-control': 'max-stale' }), meta, T0 + 20 * S);
  assert.deepEqual([f.fresh, f.staleIfError], [false, false]);
});

// ---------------------------------------------------------------- 5.2.1 request directives

test('RFC 9111 5.2.1.1: request max-age: a response older than it is not used without revalidation', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100' }));
  assert.equal(policy.freshness(req({ 'cache-control': 'max-age=30' }), meta, T0 + 20 * S).fresh, true);
  assert.equal(policy.freshness(req({ 'cache-control': 'max-age=30' }), meta, T0 + 40 * S).fresh, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'max-age=0' }), meta, T0 + 1 * S).fresh, false);
});

test('RFC 9111 5.2.1.2: request max-stale accepts a stale response up to its value (any staleness without one)', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10' }));
  assert.equal(policy.freshness(req(), meta, T0 + 30 * S).fresh, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'max-stale=25' }), meta, T0 + 30 * S).fresh, true);
  assert.equal(policy.freshness(req({ 'cache-control': 'max-stale=15' }), meta, T0 + 30 * S).fresh, false);
  assert.equal(policy.freshness(req({ 'cache-control': 'max-stale' }), meta, T0 + 100_000 * S).fresh, true);
});

test('RFC 9111 5.2.1.3: request min-fresh: the response must stay fresh for at least that long', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100' }));
  assert.equal(policy.freshness(req({ 'cache-control': 'min-fresh=50' }), meta, T0 + 40 * S).fresh, true);
  assert.equal(policy.freshness(req({ 'cache-control': 'min-fresh=50' }), meta, T0 + 60 * S).fresh, false);
});

test('RFC 9111 5.2.1.4: request no-cache: a fresh stored response is not used without revalidation', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100', etag: '"a"' }));
  assert.equal(policy.freshness(req({ 'cache-control': 'no-cache' }), meta, T0).fresh, false);
  assert.equal(policy.requestCacheable(req({ 'cache-control': 'no-cache' })), true, 'the response may still be stored');
});

test('RFC 9111 5.2.1.7: only-if-cached is reported to the edge', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100' }));
  assert.equal(policy.freshness(req({ 'cache-control': 'only-if-cached' }), meta, T0).onlyIfCached, true);
  assert.equal(policy.freshness(req(), meta, T0).onlyIfCached, false);
});

test('RFC 9111 5.4: Pragma: no-cache acts as request no-cache only when the request has no Cache-Control', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100' }));
  assert.equal(policy.freshness(req({ pragma: 'no-cache' }), meta, T0).fresh, false);
  assert.equal(policy.freshness(req({ pragma: 'no-cache', 'cache-control': 'max-age=1000' }), meta, T0).fresh, true);
  assert.equal(policy.freshness(req({ pragma: 'x-no-cache-please' }), meta, T0).fresh, true, 'only the no-cache directive counts');
});

// ---------------------------------------------------------------- 4.1 Vary

test('RFC 9111 4.1: Vary: the stored variant matches only requests with the same nominated field values', () => {
  const r = req({ 'accept-encoding': 'gzip', 'accept-language': 'en' });
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100', vary: 'Accept-Encoding' }), { request: r });
  assert.equal(policy.varyMatches(req({ 'accept-encoding': 'gzip', 'accept-language': 'fr' }), meta), true);
  assert.equal(policy.varyMatches(req({ 'accept-encoding': 'br' }), meta), false);
  assert.equal(policy.varyMatches(req({}), meta), false, 'absent differs from present');
  const none = store(policy, res({ 'cache-control': 'max-age=100', vary: 'accept-encoding' }), { request: req({}) });
  assert.equal(policy.varyMatches(req({}), none.meta), true);
  assert.equal(policy.varyMatches(req({ 'accept-encoding': '' }), none.meta), false, 'absent differs from empty');
});

test('RFC 9111 4.1: Vary is normalised: names case-insensitive and sorted, values trimmed, whitespace around commas ignored', () => {
  const a = req({ 'accept-encoding': '  gzip,   br ', 'accept-language': 'en' });
  const b = req({ 'accept-encoding': 'gzip, br', 'accept-language': 'en' });
  assert.equal(policy.varyKey(a, 'Accept-Language, accept-encoding'), policy.varyKey(b, 'ACCEPT-ENCODING,Accept-Language,accept-encoding'));
  assert.equal(policy.varyKey(a, 'accept-encoding, accept-language'), 'accept-encoding=gzip%2Cbr&accept-language=en');
  assert.equal(policy.varyKey(a, undefined), '');
  assert.equal(policy.varyKey(a, ''), '');
  // Values that differ after normalisation give different keys; a crafted value cannot forge another pair.
  assert.notEqual(policy.varyKey(req({ 'accept-encoding': 'gzip&accept-language=en' }), 'accept-encoding, accept-language'), policy.varyKey(b, 'accept-encoding, accept-language'));
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100', vary: 'accept-encoding' }), { request: a });
  assert.equal(policy.varyMatches(b, meta), true);
});

test('RFC 9111 4.1: Vary: * never matches, so such a response is not stored', () => {
  const d = store(policy, res({ 'cache-control': 'max-age=100', vary: 'accept, *' })).decision;
  assert.deepEqual([d.store, d.reason], [false, 'vary-star']);
  assert.equal(policy.varyKey(req(), '*'), '*');
  const meta = store(policy, res({ 'cache-control': 'max-age=100', vary: '*' })).meta;
  assert.equal(policy.varyMatches(req(), meta), false);
});

// ---------------------------------------------------------------- 4.3 validation

test('RFC 9111 4.3.1: revalidation sends If-None-Match from the ETag and If-Modified-Since from Last-Modified', () => {
  const lm = httpDate(T0 - 3600 * S);
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10', etag: '"v1"', 'last-modified': lm }));
  const h = policy.revalidationHeaders(req({ accept: 'text/html', connection: 'keep-alive' }), meta);
  assert.equal(h['if-none-match'], '"v1"');
  assert.equal(h['if-modified-since'], lm);
  assert.equal(h.accept, 'text/html');
  assert.equal(h.connection, undefined, 'hop-by-hop fields are not forwarded');
  const onlyLm = store(policy, res({ 'cache-control': 'max-age=10', 'last-modified': lm })).meta;
  assert.deepEqual([policy.revalidationHeaders(req(), onlyLm)['if-none-match'], policy.revalidationHeaders(req(), onlyLm)['if-modified-since']], [undefined, lm]);
});

test('RFC 9111 4.3.1: the client\u2019s own conditionals and Range are not sent with the cache\u2019s revalidation', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10', etag: '"v1"' }));
  const h = policy.revalidationHeaders(
    req({ 'if-none-match': '"client"', 'if-modified-since': httpDate(T0), 'if-match': '"x"', 'if-range': '"v1"', range: 'bytes=0-1' }),
    meta,
  );
  assert.equal(h['if-none-match'], '"v1"');
  for (const name of ['if-modified-since', 'if-match', 'if-range', 'range']) assert.equal(h[name], undefined, name);
});

test('RFC 9111 4.3.4: a 304 updates the stored headers and freshness, keeping the body fields', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10', etag: '"v1"', 'content-length': '10', 'x-version': 'a' }), { now: T0 });
  assert.equal(policy.freshness(req(), meta, T0 + 20 * S).fresh, false);
  const now = T0 + 20 * S;
  const r = policy.revalidated(req(), meta, { status: 304, headers: res({ etag: '"v1"', 'cache-control': 'max-age=60', 'x-version': 'b', 'content-length': '0' }, now) }, now);
  assert.equal(r.modified, false);
  assert.equal(r.store, true);
  assert.equal(r.headers['x-version'], 'b');
  assert.equal(r.headers['content-length'], '10', 'Content-Length describes the stored body');
  assert.equal(r.headers.date, httpDate(now));
  const updated = { ...meta, headers: r.headers, policy: JSON.parse(JSON.stringify(r.state)) as typeof meta.policy, storedAt: now };
  const f = policy.freshness(req(), updated, now + 30 * S);
  assert.deepEqual([f.fresh, f.ageS], [true, 30]);
});

test('RFC 9111 4.3.4: a 304 without a Date is dated when received, so the old Date does not age it', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=60', etag: '"v1"' }), { now: T0 });
  const now = T0 + 3600 * S;
  const r = policy.revalidated(req(), meta, { status: 304, headers: { etag: '"v1"' } }, now);
  const f = policy.freshness(req(), { ...meta, headers: r.headers, policy: r.state }, now + 10 * S);
  assert.deepEqual([f.fresh, f.ageS], [true, 10]);
});

test('RFC 9111 4.3.4: a 304 with a different strong validator does not update the stored response', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10', etag: '"v1"' }), { now: T0 });
  const now = T0 + 20 * S;
  const r = policy.revalidated(req(), meta, { status: 304, headers: res({ etag: '"v2"', 'cache-control': 'max-age=60' }, now) }, now);
  assert.equal(r.modified, false);
  assert.equal(r.state, meta.policy, 'state unchanged');
  assert.equal(policy.freshness(req(), { ...meta, policy: r.state }, now).fresh, false, 'still stale');
  // Weak comparison matches W/"v1" against "v1".
  const weak = policy.revalidated(req(), meta, { status: 304, headers: res({ etag: 'W/"v1"', 'cache-control': 'max-age=60' }, now) }, now);
  assert.equal(policy.freshness(req(), { ...meta, policy: weak.state }, now).fresh, true);
});

test('RFC 9111 4.3.4: a 304 that makes the response unstorable says so (store false)', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10', etag: '"v1"' }));
  const r = policy.revalidated(req(), meta, { status: 304, headers: res({ etag: '"v1"', 'cache-control': 'no-store' }, T0 + 20 * S) }, T0 + 20 * S);
  assert.deepEqual([r.modified, r.store, r.reason], [false, false, 'no-store']);
});

test('RFC 9111 4.3.3: a full response to a revalidation replaces the stored one (modified)', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=10', etag: '"v1"' }));
  const r = policy.revalidated(req(), meta, { status: 200, headers: res({ etag: '"v2"', 'cache-control': 'max-age=60' }, T0 + 20 * S) }, T0 + 20 * S);
  assert.deepEqual([r.modified, r.store, r.headers.etag], [true, true, '"v2"']);
});

// ---------------------------------------------------------------- 4.4 invalidation

const keyOf = (url: string): string => `https://example.com${url}`;

test('RFC 9111 4.4: a non-error response to an unsafe method invalidates the target URI', () => {
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'PURGE-UNKNOWN']) {
    assert.deepEqual(policy.invalidates(req({}, method, '/a'), { status: 204, headers: {} }, keyOf), ['https://example.com/a'], method);
  }
  assert.deepEqual(policy.invalidates(req({}, 'POST', '/a'), { status: 303, headers: {} }, keyOf), ['https://example.com/a']);
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'TRACE']) assert.deepEqual(policy.invalidates(req({}, method, '/a'), { status: 200, headers: {} }, keyOf), [], method);
  for (const status of [400, 404, 500, 503]) assert.deepEqual(policy.invalidates(req({}, 'POST', '/a'), { status, headers: {} }, keyOf), [], String(status));
});

test('RFC 9111 4.4: Location and Content-Location are invalidated when on the same origin only', () => {
  const keys = policy.invalidates(
    req({}, 'POST', '/items'),
    { status: 201, headers: { location: '/items/7?x=1', 'content-location': 'https://example.com/items/7/view' } },
    keyOf,
  );
  assert.deepEqual(keys, ['https://example.com/items', 'https://example.com/items/7?x=1', 'https://example.com/items/7/view']);
  const relative = policy.invalidates(req({}, 'PUT', '/a/b'), { status: 200, headers: { location: 'c' } }, keyOf);
  assert.deepEqual(relative, ['https://example.com/a/b', 'https://example.com/a/c']);
  for (const other of ['https://evil.example/items/7', 'http://example.com/items/7', 'https://example.com:8443/x', '//evil.example/x']) {
    assert.deepEqual(policy.invalidates(req({}, 'POST', '/items'), { status: 201, headers: { location: other } }, keyOf), ['https://example.com/items'], other);
  }
});

// ---------------------------------------------------------------- HEAD, state, options

test('RFC 9110 9.3.2: HEAD is answered from a stored GET response', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100', 'content-length': '10' }));
  const head = req({}, 'HEAD');
  assert.equal(policy.requestCacheable(head), true);
  assert.equal(policy.varyMatches(head, meta), true);
  assert.equal(policy.freshness(head, meta, T0 + S).fresh, true);
  assert.equal(policy.responseHeaders(meta, policy.freshness(head, meta, T0 + S))['content-length'], '10');
});

test('PolicyState survives JSON; an unreadable state is treated as stale and unmatched', () => {
  const { meta } = store(policy, res({ 'cache-control': 'max-age=100', vary: 'accept' }), { request: req({ accept: 'a' }) });
  assert.equal(policy.freshness(req({ accept: 'a' }), meta, T0 + S).fresh, true);
  const broken = { ...meta, policy: { v: 99 } };
  const f = policy.freshness(req({ accept: 'a' }), broken, T0 + 5 * S);
  assert.deepEqual([f.fresh, f.staleIfError, f.ageS], [false, false, 5]);
  assert.equal(policy.varyMatches(req({ accept: 'a' }), broken), false);
  assert.equal(policy.revalidationHeaders(req(), broken)['if-none-match'], undefined);
});

test('options are validated at construction', () => {
  for (const bad of [{ heuristicFraction: -0.1 }, { heuristicFraction: 2 }, { heuristicFraction: NaN }, { maxHeuristicMs: -1 }, { maxHeuristicMs: Infinity }, { maxTags: 1.5 }]) {
    assert.throws(() => new CdnPolicy(bad), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(bad));
  }
});

test('the decision is pure: the same inputs give the same result, whatever the wall clock', () => {
  const headers = res({ 'cache-control': 'max-age=100', etag: '"a"' });
  const a = policy.storable(req(), { status: 200, headers }, T0);
  const b = policy.storable(req(), { status: 200, headers }, T0);
  assert.deepEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));
  assert.equal((a.state as { responseTime: number }).responseTime, T0);
});
