import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { isArchlabError } from '../../core/errors.js';
import { parseCookies } from './cookies.js';
import { MAX_CACHED_BACKENDS, STICKY_TOKEN_LENGTH, StickyCookies } from './sticky.js';

const SECRET = 'a-test-secret-of-32-characters!!';

function sticky(pool = 'web', secret: string | Buffer = SECRET, maxAgeMs?: number): StickyCookies {
  return new StickyCookies({ pool, cookie: 'ARCHLAB_SRV', secret, maxAgeMs });
}

const up = (...ids: string[]): Array<{ id: string; available: boolean }> => ids.map((id) => ({ id, available: true }));

/** Changes one character of a token to another base64url character. */
function tamper(token: string, at: number): string {
  const c = token[at]!;
  return token.slice(0, at) + (c === 'A' ? 'B' : 'A') + token.slice(at + 1);
}

describe('StickyCookies.valueFor', () => {
  test('is HMAC-SHA256(secret, pool \\0 backendId), base64url, 22 characters', () => {
    const expected = createHmac('sha256', SECRET).update('web\0b1').digest('base64url').slice(0, 22);
    const s = sticky();
    assert.equal(s.valueFor('b1'), expected);
    assert.equal(s.valueFor('b1').length, STICKY_TOKEN_LENGTH);
    assert.match(s.valueFor('b1'), /^[A-Za-z0-9_-]{22}$/);
    assert.equal(s.valueFor('b1'), s.valueFor('b1'));
  });

  test('differs per backend, per pool and per secret, and does not contain the backend id', () => {
    const a = sticky();
    const values = new Set([a.valueFor('b1'), a.valueFor('b2'), sticky('api').valueFor('b1'), sticky('web', Buffer.alloc(32, 7)).valueFor('b1')]);
    assert.equal(values.size, 4);
    assert.ok(!a.valueFor('10.0.0.1:8080').includes('10.0.0.1'));
    // The "\0" separator keeps ("ab", "c") and ("a", "bc") apart.
    assert.notEqual(sticky('ab').valueFor('c'), sticky('a').valueFor('bc'));
  });

  test('a string secret and the same bytes as a Buffer give the same tokens', () => {
    assert.equal(sticky('web', SECRET).valueFor('x'), sticky('web', Buffer.from(SECRET)).valueFor('x'));
  });
});

describe('StickyCookies.resolve', () => {
  const s = sticky();
  const candidates = up('b1', 'b2', 'b3');

  test('a valid cookie selects its backend', () => {
    assert.equal(s.resolve(s.valueFor('b1'), candidates), 0);
    assert.equal(s.resolve(s.valueFor('b3'), candidates), 2);
    // What the browser sends back, parsed as the proxy parses it.
    const cookie = parseCookies(`other=1; ${s.setCookieHeader('b2', false).split(';')[0]}`);
    assert.equal(s.resolve(cookie.ARCHLAB_SRV, candidates), 1);
  });

  test('a valid cookie for a backend that is down resolves to -1', () => {
    assert.equal(s.resolve(s.valueFor('b2'), [{ id: 'b1', available: true }, { id: 'b2', available: false }]), -1);
  });

  test('a valid token for a backend outside the candidate list resolves to -1', () => {
    assert.equal(s.resolve(s.valueFor('b9'), candidates), -1);
    assert.equal(s.resolve(s.valueFor('b1'), []), -1);
    assert.equal(s.resolve(s.valueFor('b1'), up('b2', 'b3')), -1);
  });

  test('a forged cookie resolves to -1', () => {
    for (const forged of ['b1', 'AAAAAAAAAAAAAAAAAAAAAA', 'b1'.padEnd(22, '_'), Buffer.from('web\0b1').toString('base64url').padEnd(22, 'A')]) {
      assert.equal(s.resolve(forged, candidates), -1, forged);
    }
    // Signed with another secret.
    assert.equal(s.resolve(sticky('web', 'another-secret-another-secret!!!').valueFor('b1'), candidates), -1);
  });

  test('a tampered cookie resolves to -1, whichever character changed', () => {
    const good = s.valueFor('b1');
    for (let i = 0; i < good.length; i++) assert.equal(s.resolve(tamper(good, i), candidates), -1, `position ${i}`);
  });

  test('a cookie from another pool resolves to -1, even for a backend of the same id', () => {
    assert.equal(s.resolve(sticky('api').valueFor('b1'), candidates), -1);
  });

  test('malformed values resolve to -1', () => {
    const good = s.valueFor('b1');
    for (const v of [undefined, '', good.slice(0, 21), `${good}A`, ` ${good.slice(1)}`, good.replace(/.$/, '='), `${good.slice(0, 21)}\u0141`]) {
      assert.equal(s.resolve(v, candidates), -1, String(v));
    }
  });

  test('works past the token cache bound (oldest entries are evicted and recomputed)', () => {
    const big = sticky();
    const ids = Array.from({ length: MAX_CACHED_BACKENDS + 5 }, (_, i) => `b${i}`);
    const first = big.valueFor(ids[0]!);
    for (const id of ids) big.valueFor(id);
    assert.equal(big.valueFor(ids[0]!), first);
    assert.equal(big.resolve(first, up('x', ids[0]!)), 1);
  });
});

describe('StickyCookies.setCookieHeader', () => {
  test('names the backend by its token, Path=/, HttpOnly, SameSite=Lax; Secure only over HTTPS', () => {
    const s = sticky();
    const t = s.valueFor('b1');
    assert.equal(s.setCookieHeader('b1', false), `ARCHLAB_SRV=${t}; Path=/; HttpOnly; SameSite=Lax`);
    assert.equal(s.setCookieHeader('b1', true), `ARCHLAB_SRV=${t}; Path=/; HttpOnly; Secure; SameSite=Lax`);
    assert.equal(s.setCookieHeader('b1', false), `ARCHLAB_SRV=${t}; Path=/; HttpOnly; SameSite=Lax`);
  });

  test('writes Max-Age in seconds when maxAgeMs is set', () => {
    assert.match(sticky('web', SECRET, 90_500).setCookieHeader('b1', false), /; Max-Age=90;/);
  });
});

describe('StickyCookies constructor', () => {
  test('refuses a short secret, a bad cookie name and a bad maxAgeMs, naming the pool', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => sticky('web', 'short'), /pool "web".*at least 16/],
      [() => sticky('web', Buffer.alloc(8)), /at least 16/],
      [() => new StickyCookies({ pool: 'web', cookie: 'bad name', secret: SECRET }), /cookie name.*pool "web"/],
      [() => new StickyCookies({ pool: 'web', cookie: 'SRV', secret: SECRET, maxAgeMs: -1 }), /maxAgeMs/],
    ];
    for (const [fn, message] of cases) {
      assert.throws(fn, (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT') && message.test(err.message));
    }
  });
});
