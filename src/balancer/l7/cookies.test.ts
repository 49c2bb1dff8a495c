import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isArchlabError } from '../../core/errors.js';
import { MAX_COOKIE_HEADER_BYTES, MAX_COOKIES, parseCookies, serializeSetCookie } from './cookies.js';

/** parseCookies returns an object without Object.prototype; compare its entries. */
const plain = (r: Record<string, string>): Record<string, string> => ({ ...r });

describe('parseCookies', () => {
  test('splits on ";", trims, and splits each pair at the first "="', () => {
    assert.deepEqual(plain(parseCookies('a=1; b=2;c=3 ;  d = 4 ')), { a: '1', b: '2', c: '3', d: '4' });
    assert.deepEqual(plain(parseCookies('tok=ab==; q=x=y')), { tok: 'ab==', q: 'x=y' });
    assert.deepEqual(plain(parseCookies('empty=; e2=')), { empty: '', e2: '' });
  });

  test('ignores malformed pairs', () => {
    assert.deepEqual(plain(parseCookies('novalue; =noname; ;; a=1;  =; b=2;')), { a: '1', b: '2' });
    assert.deepEqual(plain(parseCookies('')), {});
    assert.deepEqual(plain(parseCookies(undefined)), {});
  });

  test('the first occurrence of a name wins', () => {
    assert.deepEqual(plain(parseCookies('sid=first; sid=second; x=1')), { sid: 'first', x: '1' });
  });

  test('strips one pair of surrounding double quotes, keeps the rest as sent (no percent-decoding)', () => {
    assert.deepEqual(plain(parseCookies('a="quoted"; b="; c=%41%20')), { a: 'quoted', b: '"', c: '%41%20' });
  });

  test('reads several Cookie headers as one list', () => {
    assert.deepEqual(plain(parseCookies(['a=1; b=2', 'b=3; c=4'])), { a: '1', b: '2', c: '4' });
    assert.deepEqual(plain(parseCookies([])), {});
  });

  test('a cookie named like an Object.prototype member is just a key', () => {
    const c = parseCookies('__proto__=x; constructor=y; toString=z');
    assert.equal(Object.getPrototypeOf(Object.getPrototypeOf(c)), null);
    assert.equal(c['__proto__'], 'x');
    assert.equal(c.constructor, 'y');
    assert.deepEqual(Object.keys(c).sort(), ['__proto__', 'constructor', 'toString']);
    assert.equal(parseCookies('a=1').toString, undefined);
  });

  test(`keeps at most ${MAX_COOKIES} cookies`, () => {
    const header = Array.from({ length: 150 }, (_, i) => `c${i}=${i}`).join('; ');
    const c = parseCookies(header);
    assert.equal(Object.keys(c).length, MAX_COOKIES);
    assert.equal(c.c99, '99');
    assert.equal(c.c100, undefined);
    // Duplicates do not count against the limit.
    const dup = Array.from({ length: 150 }, () => 'same=1').join('; ') + '; last=2';
    assert.deepEqual(plain(parseCookies(dup)), { same: '1', last: '2' });
  });

  test(`reads at most ${MAX_COOKIE_HEADER_BYTES} bytes and never half a pair`, () => {
    const filler = `f=${'x'.repeat(MAX_COOKIE_HEADER_BYTES - 10)}`; // 8184 chars
    const c = parseCookies(`${filler}; a=12; b=123456789`);
    // "; a=12" ends at 8190 (kept); "; b=123456789" would end past 8192 (ignored, not truncated).
    assert.equal(c.a, '12');
    assert.equal(c.b, undefined);
    assert.equal(Object.keys(parseCookies(`big=${'y'.repeat(MAX_COOKIE_HEADER_BYTES)}; a=1`)).length, 0);
    // The limit spans several headers.
    const split = parseCookies([filler, 'a=1', 'b=123456789']);
    assert.equal(split.a, '1');
    assert.equal(split.b, undefined);
  });
});

describe('serializeSetCookie', () => {
  test('writes the attributes in a fixed order', () => {
    assert.equal(serializeSetCookie('SRV', 'abc'), 'SRV=abc');
    assert.equal(
      serializeSetCookie('SRV', 'abc', { path: '/', maxAgeMs: 3_600_999, httpOnly: true, secure: true, sameSite: 'None' }),
      'SRV=abc; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=None',
    );
    assert.equal(serializeSetCookie('a', '', { sameSite: 'Strict', httpOnly: false }), 'a=; SameSite=Strict');
    assert.equal(serializeSetCookie('a', 'b', { maxAgeMs: -5 }), 'a=b; Max-Age=0');
  });

  const bad: Array<[string, () => unknown, RegExp]> = [
    ['name with space', () => serializeSetCookie('a b', 'x'), /invalid cookie name/],
    ['empty name', () => serializeSetCookie('', 'x'), /invalid cookie name/],
    ['name with "="', () => serializeSetCookie('a=b', 'x'), /invalid cookie name/],
    ['value with ";"', () => serializeSetCookie('a', 'x; Domain=evil'), /invalid value/],
    ['value with CRLF', () => serializeSetCookie('a', 'x\r\nSet-Cookie: b=1'), /invalid value/],
    ['value with space', () => serializeSetCookie('a', 'x y'), /invalid value/],
    ['path with ";"', () => serializeSetCookie('a', 'x', { path: '/; Secure' }), /invalid cookie path/],
    ['NaN maxAgeMs', () => serializeSetCookie('a', 'x', { maxAgeMs: NaN }), /finite/],
    ['SameSite=None without Secure', () => serializeSetCookie('a', 'x', { sameSite: 'None' }), /requires secure/],
  ];
  for (const [name, fn, message] of bad) {
    test(`refuses ${name}`, () => {
      assert.throws(fn, (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT') && message.test(err.message));
    });
  }

  test('round-trips through parseCookies', () => {
    const set = serializeSetCookie('ARCHLAB_SRV', 'Zm9vYmFy-_', { path: '/', httpOnly: true });
    const pair = set.split(';')[0]!;
    assert.deepEqual(plain(parseCookies(pair)), { ARCHLAB_SRV: 'Zm9vYmFy-_' });
  });
});
