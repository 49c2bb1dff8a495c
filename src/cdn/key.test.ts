/** The cache key: target normalisation (RFC 3986 6.2.2), path-confusion refusals, query modes, host. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom, freshSeed } from '../core/random.js';
import { isCdnError } from './errors.js';
import { type KeyOptions, normalizeHost, normalizeTarget, pathExtension, primaryKey } from './key.js';

const key = (url: string, options?: KeyOptions, host = 'example.com', scheme = 'https'): string => primaryKey({ scheme, host, url }, options);
const badRequest = (e: unknown): boolean => isCdnError(e, 'ARCHLAB_CDN_BAD_REQUEST');

test('RFC 3986 5.2.4: dot segments are resolved before keying, and never climb above the root', () => {
  assert.equal(key('/a/../b'), 'https://example.com/b');
  assert.equal(key('/a/./b/.'), 'https://example.com/a/b/');
  assert.equal(key('/a/b/..'), 'https://example.com/a/');
  assert.equal(key('/../../etc/passwd'), 'https://example.com/etc/passwd');
  assert.equal(key('/a//../b'), 'https://example.com/a/b');
});

test('RFC 3986 6.2.2.2: encoded dot segments (%2e%2e) are resolved like plain ones: /%2e%2e/secret is /secret', () => {
  assert.equal(key('/%2e%2e/secret'), 'https://example.com/secret');
  assert.equal(key('/static/%2E%2e/secret'), 'https://example.com/secret');
  assert.equal(key('/static/.%2e/secret'), key('/secret'));
});

test('path confusion: a dot segment behind a second decoding (%252e%252e), an encoded slash or a backslash is refused', () => {
  for (const url of ['/static/%252e%252e/secret', '/static/%25252e%25252e/secret', '/static/..%2Fsecret', '/static/a%2F..%2F..%2Fsecret', '/static%5C..%5Csecret', '/static\\..\\secret', '/a/%2e%2e%5csecret', '/a/%252F..%252Fb']) {
    assert.throws(() => key(url), badRequest, url);
  }
});

test('path confusion: "..;" (a dot segment with matrix parameters, Tomcat\u2019s ..) is refused', () => {
  for (const url of ['/static/..;/admin', '/static/.;x/admin', '/static/%2e%2e;jsessionid=1/admin']) assert.throws(() => key(url), badRequest, url);
  assert.equal(key('/a/...;x'), 'https://example.com/a/...;x', 'three dots are an ordinary name');
});

test('path confusion: /a;.css keeps its matrix parameter in the key and is not a .css path', () => {
  assert.equal(key('/a;.css'), 'https://example.com/a;.css');
  assert.notEqual(key('/a;.css'), key('/a'));
  assert.notEqual(key('/a;.css'), key('/a.css'));
  assert.equal(pathExtension(normalizeTarget('/a;.css').path), '');
  assert.equal(pathExtension(normalizeTarget('/account;x=1/a.CSS;v=2').path), 'css');
  assert.equal(pathExtension('/dir.d/'), '');
  assert.equal(pathExtension('/.hidden'), '');
});

test('encoded slash: %2F is kept encoded (upper-cased) and never merged with /', () => {
  assert.equal(key('/a%2fb'), 'https://example.com/a%2Fb');
  assert.notEqual(key('/a%2Fb'), key('/a/b'));
});

test('double encoding is decoded once only: %2541 stays %2541, distinct from %41 (which is A)', () => {
  assert.equal(key('/%41'), 'https://example.com/A');
  assert.equal(key('/%2541'), 'https://example.com/%2541');
});

test('RFC 3986 6.2.2.1-2: unreserved escapes decoded, other escapes upper-cased, unsafe characters encoded', () => {
  assert.equal(key('/%7euser/%61b%3a'), 'https://example.com/~user/ab%3A');
  assert.equal(key('/a b'.replace(' ', '%20')), 'https://example.com/a%20b');
  assert.equal(key('/{x}|"y"<z>^`'), 'https://example.com/%7Bx%7D%7C%22y%22%3Cz%3E%5E%60');
  assert.equal(key('/caf\u00e9'), 'https://example.com/caf%C3%A9');
  assert.equal(key('/caf\u00e9'), key('/caf%c3%a9'));
  assert.equal(key('/a//b'), 'https://example.com/a//b', 'duplicate slashes kept as they are');
});

test('refused targets: NUL (raw or encoded, even double encoded), control characters, "#", bad escapes, non-origin forms', () => {
  for (const url of ['/a\u0000b', '/a%00b', '/a%2500b', '/a?x=%00', '/a?x=%2500', '/a\tb', '/a\u007fb', '/a#frag', '/a%zzb', '/a%4', '*', 'example.com:443', 'a/b', '/\ud800']) {
    assert.throws(() => normalizeTarget(url), badRequest, JSON.stringify(url));
  }
});

test('absolute-form targets are keyed by path and query; an authority other than the Host is refused', () => {
  assert.equal(key('HTTPS://EXAMPLE.com:443/p?q', undefined, 'example.com', 'https'), 'https://example.com/p?q');
  assert.throws(() => key('http://example.com/p', undefined, 'example.com', 'https'), badRequest, 'scheme differs from the connection');
  assert.equal(key('https://example.com'), 'https://example.com/');
  assert.throws(() => key('https://evil.example/p'), badRequest);
  assert.throws(() => key('https://user@example.com/p'), badRequest);
});

test('query mode keep (default): the query as received, canonical escapes; an empty query is none', () => {
  assert.equal(key('/p?b=2&a=1&a=0'), 'https://example.com/p?b=2&a=1&a=0');
  assert.equal(key('/p?x=%7e%2f+y'), 'https://example.com/p?x=~%2F+y');
  assert.equal(key('/p?'), key('/p'));
});

test('query mode sort: params sorted by name, stable for repeated names', () => {
  assert.equal(key('/p?b=2&a=1&c=&a=0', { query: 'sort' }), 'https://example.com/p?a=1&a=0&b=2&c=');
  assert.equal(key('/p?b=2&a=1', { query: 'sort' }), key('/p?a=1&b=2', { query: 'sort' }));
  assert.notEqual(key('/p?a=1&a=2', { query: 'sort' }), key('/p?a=2&a=1', { query: 'sort' }), 'order of repeated values is meaningful');
  assert.equal(key('/p?&&b&a', { query: 'sort' }), 'https://example.com/p?a&b');
});

test('query mode ignore drops the query; a keep list keeps only the named params, in order', () => {
  assert.equal(key('/p?utm_source=x&id=1', { query: 'ignore' }), 'https://example.com/p');
  const keep: KeyOptions = { query: { keep: ['id', 'lang', 'caf\u00e9'] } };
  assert.equal(key('/p?utm_source=x&lang=en&id=1&id=2', keep), 'https://example.com/p?lang=en&id=1&id=2');
  assert.equal(key('/p?utm=1', keep), 'https://example.com/p');
  assert.equal(key('/p?caf%C3%A9=1', keep), 'https://example.com/p?caf%C3%A9=1', 'names compared decoded');
});

test('host: lower-cased, default port dropped (80 for http, 443 for https), other ports kept, trailing dot removed', () => {
  assert.equal(key('/p', undefined, 'EXAMPLE.Com:443'), 'https://example.com/p');
  assert.equal(key('/p', undefined, 'example.com:80', 'http'), 'http://example.com/p');
  assert.equal(key('/p', undefined, 'example.com:80', 'https'), 'https://example.com:80/p');
  assert.equal(key('/p', undefined, 'example.com:8443'), 'https://example.com:8443/p');
  assert.equal(key('/p', undefined, 'example.com.'), 'https://example.com/p');
  assert.equal(key('/p', undefined, '[::1]:443'), 'https://[::1]/p');
  assert.equal(key('/p', undefined, 'example.com:'), 'https://example.com/p');
  assert.equal(key('/p', { scheme: false }), 'example.com/p');
  assert.equal(normalizeHost('Example.com:0080', 'http'), 'example.com');
});

test('host and scheme that cannot be keyed are refused (no "evil/x" or "a@b" in a key)', () => {
  for (const host of ['', 'evil.example/x', 'a@b', 'a b', 'a:99999', 'a..b', 'a\r\nb', 'ex%61mple.com']) assert.throws(() => key('/p', undefined, host), badRequest, JSON.stringify(host));
  assert.throws(() => key('/p', undefined, 'example.com', 'ftp'), badRequest);
  assert.equal(key('/p', undefined, 'example.com', 'HTTPS'), 'https://example.com/p');
});

test('normalisation is idempotent, and its output has no dot segments, even decoded again (property, seeded)', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const alphabet = ['/', '/', '.', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', ';', '?', '&', '=', 'a', 'b', '~', '\\', '+', '%2e', '%2f', '%25', '%7e', '%41', '{', '\u00e9', '..', '/./', '/../'];
  let accepted = 0;
  for (let i = 0; i < 4000; i++) {
    let url = '/';
    const n = 1 + rnd.int(14);
    for (let j = 0; j < n; j++) url += alphabet[rnd.int(alphabet.length)];
    let once: { path: string; query: string };
    try {
      once = normalizeTarget(url);
    } catch (e) {
      assert.ok(badRequest(e), `seed ${seed}: ${JSON.stringify(url)} threw something other than BAD_REQUEST: ${String(e)}`);
      continue;
    }
    accepted++;
    const twice = normalizeTarget(once.path + once.query);
    assert.deepEqual(twice, once, `seed ${seed}: not idempotent on ${JSON.stringify(url)}`);
    const segments = once.path.split('/');
    assert.ok(!segments.includes('.') && !segments.includes('..'), `seed ${seed}: dot segment left in ${once.path} from ${JSON.stringify(url)}`);
    // What an origin that decodes once, twice or three times more would see has no dot segment either.
    let decoded = once.path;
    for (let d = 0; d < 3; d++) {
      decoded = decoded.replace(/%([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
      const pieces = decoded.split(/[/\\]/).map((p) => p.split(';')[0]);
      assert.ok(!pieces.includes('.') && !pieces.includes('..'), `seed ${seed}: ${JSON.stringify(url)} -> ${once.path} decodes to a dot segment (${decoded})`);
    }
    assert.ok(!/%(?:[0-9A-Fa-f][a-f]|[a-f][0-9A-Fa-f])/.test(once.path + once.query), `seed ${seed}: lower-case escape in ${once.path}${once.query}`);
  }
  assert.ok(accepted > 1000, `seed ${seed}: only ${accepted} targets accepted; the generator tests too little`);
});
