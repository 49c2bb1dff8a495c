/** Field parsing: Cache-Control lists (RFC 9111 5.2, RFC 9110 5.6), Surrogate-Control, HTTP-date (RFC 9110 5.6.7). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONFLICT, MAX_DIRECTIVES, deltaSeconds, formatDirectives, parseDirectives, parseHttpDate, parseSurrogateControl, splitList } from './directives.js';

test('RFC 9110 5.6.1: lists split on commas outside quoted strings; empty members dropped', () => {
  assert.deepEqual(splitList('a, b="x, y",, c'), ['a', 'b="x, y"', 'c']);
  assert.deepEqual(splitList('a="q\\"uote, still", b'), ['a="q\\"uote, still"', 'b']);
  assert.deepEqual(splitList(' , '), []);
});

test('RFC 9111 5.2: directive names are case-insensitive; token and quoted-string arguments both accepted', () => {
  const d = parseDirectives('Max-Age="60", NO-CACHE, private="set-cookie, x", s-maxage=10');
  assert.equal(d.get('max-age'), '60');
  assert.equal(d.get('no-cache'), true);
  assert.equal(d.get('private'), 'set-cookie, x');
  assert.equal(deltaSeconds(d, 's-maxage'), 10);
  assert.equal(deltaSeconds(d, 'stale-if-error'), undefined);
  assert.ok(Number.isNaN(deltaSeconds(parseDirectives('max-age'), 'max-age')!));
  assert.ok(Number.isNaN(deltaSeconds(parseDirectives('max-age=-1'), 'max-age')!));
  assert.equal(parseDirectives('max-age=1, max-age=2').get('max-age'), CONFLICT);
  assert.equal(parseDirectives('bad name=1, {x}, ok').size, 1);
});

test('parsing is bounded: at most MAX_DIRECTIVES directives from one field', () => {
  const many = Array.from({ length: 1000 }, (_, i) => `x${i}`).join(', ');
  assert.equal(parseDirectives(many).size, MAX_DIRECTIVES);
});

test('formatDirectives round-trips through parseDirectives, quoting what is not a token', () => {
  const d = parseDirectives('max-age=60, private="a, b", no-cache');
  assert.deepEqual([...parseDirectives(formatDirectives(d))], [...d]);
});

test('Edge Architecture 1.0 3: Surrogate-Control max-age=N+M, no-store; targeted and unknown directives ignored', () => {
  assert.deepEqual([...parseSurrogateControl('max-age=60+30, content="ESI/1.0"')], [['max-age', '60'], ['stale-if-error', '30']]);
  assert.deepEqual([...parseSurrogateControl('no-store;edge-a, max-age=5')], [['max-age', '5']]);
  assert.deepEqual([...parseSurrogateControl('NO-STORE')], [['no-store', true]]);
  assert.equal(parseSurrogateControl('max-age=abc').get('max-age'), CONFLICT);
  assert.equal(parseSurrogateControl(undefined).size, 0);
});

test('RFC 9110 5.6.7: HTTP-date in IMF-fixdate, RFC 850 and asctime forms; anything else is invalid', () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37);
  assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), t);
  assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), t);
  assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), t);
  assert.equal(parseHttpDate('Sunday, 06-Nov-24 08:49:37 GMT'), Date.UTC(2024, 10, 6, 8, 49, 37));
  for (const bad of ['0', '-1', '', '1994-11-06T08:49:37Z', 'Sun, 06 Nov 1994 08:49:37 PST', 'Sun, 06 Foo 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 25:49:37 GMT']) {
    assert.ok(Number.isNaN(parseHttpDate(bad)), bad);
  }
});
