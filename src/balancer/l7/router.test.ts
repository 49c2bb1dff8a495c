import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import type { z } from 'zod';
import { isArchlabError } from '../../core/errors.js';
import { zRoute, type RouteConfig } from '../config.js';
import { parseCookies } from './cookies.js';
import { Router, type RouteRequest } from './router.js';

/** Routes go through the config schema, so the tests see the same defaults the balancer does. */
const routes = (...input: Array<z.input<typeof zRoute>>): RouteConfig[] => input.map((r) => zRoute.parse(r));

interface Req {
  host?: string;
  path?: string;
  method?: string;
  headers?: IncomingHttpHeaders;
  cookie?: string;
}

function req(r: Req = {}): RouteRequest {
  return { host: r.host, path: r.path ?? '/', method: r.method ?? 'GET', headers: r.headers ?? {}, cookies: () => parseCookies(r.cookie) };
}

/** [request, expected pool, expected path, expected rule] */
type Row = [Req, string, string, number];

function table(router: Router, rows: Row[]): void {
  for (const [r, pool, path, rule] of rows) {
    assert.deepEqual(router.route(req(r)), { pool, path, rule }, JSON.stringify(r));
  }
}

describe('Router', () => {
  test('textbook: /api/video -> video, /api/user -> user, anything else -> default', () => {
    const router = new Router(routes({ match: { pathPrefix: '/api/video' }, pool: 'video' }, { match: { pathPrefix: '/api/user' }, pool: 'user' }), 'web');
    table(router, [
      [{ path: '/api/video' }, 'video', '/api/video', 0],
      [{ path: '/api/video/42/stream' }, 'video', '/api/video/42/stream', 0],
      [{ path: '/api/user' }, 'user', '/api/user', 1],
      [{ path: '/api/user/7?fields=name' }, 'user', '/api/user/7?fields=name', 1],
      [{ path: '/' }, 'web', '/', -1],
      [{ path: '/api' }, 'web', '/api', -1],
      [{ path: '/index.html' }, 'web', '/index.html', -1],
    ]);
  });

  test('pathPrefix is segment-aware and ignores a trailing "/"', () => {
    const router = new Router(routes({ match: { pathPrefix: '/api/video' }, pool: 'video' }, { match: { pathPrefix: '/static/' }, pool: 'static' }), 'web');
    table(router, [
      [{ path: '/api/video' }, 'video', '/api/video', 0],
      [{ path: '/api/video/' }, 'video', '/api/video/', 0],
      [{ path: '/api/video?x=1' }, 'video', '/api/video?x=1', 0],
      [{ path: '/api/videos' }, 'web', '/api/videos', -1],
      [{ path: '/api/video-2' }, 'web', '/api/video-2', -1],
      [{ path: '/API/video' }, 'web', '/API/video', -1],
      [{ path: '/static' }, 'static', '/static', 1],
      [{ path: '/static/app.js' }, 'static', '/static/app.js', 1],
      [{ path: '/staticx' }, 'web', '/staticx', -1],
    ]);
    table(new Router(routes({ match: { pathPrefix: '/' }, pool: 'all' }), 'web'), [
      [{ path: '/' }, 'all', '/', 0],
      [{ path: '/anything/at/all' }, 'all', '/anything/at/all', 0],
    ]);
  });

  test('the first matching rule wins, even when a later one is more specific', () => {
    const router = new Router(routes({ match: { pathPrefix: '/api' }, pool: 'api' }, { match: { pathPrefix: '/api/video' }, pool: 'video' }), 'web');
    table(router, [[{ path: '/api/video/1' }, 'api', '/api/video/1', 0]]);
  });

  test('an empty match matches everything', () => {
    table(new Router(routes({ pool: 'catch' }), 'web'), [[{ path: '/x', method: 'DELETE' }, 'catch', '/x', 0]]);
  });

  test('host: exact, case-insensitive, port and trailing dot ignored', () => {
    const router = new Router(routes({ match: { host: 'API.example.com' }, pool: 'api' }), 'web');
    table(router, [
      [{ host: 'api.example.com' }, 'api', '/', 0],
      [{ host: 'Api.Example.COM:8443' }, 'api', '/', 0],
      [{ host: 'api.example.com.' }, 'api', '/', 0],
      [{ host: 'www.api.example.com' }, 'web', '/', -1],
      [{ host: 'api.example.co' }, 'web', '/', -1],
      [{ host: undefined }, 'web', '/', -1],
      [{ host: '' }, 'web', '/', -1],
    ]);
  });

  test('host: "*.example.com" matches subdomains at any depth but not the apex', () => {
    const router = new Router(routes({ match: { host: '*.example.com' }, pool: 'sub' }), 'web');
    table(router, [
      [{ host: 'a.example.com' }, 'sub', '/', 0],
      [{ host: 'a.b.c.example.com:80' }, 'sub', '/', 0],
      [{ host: 'A.EXAMPLE.COM' }, 'sub', '/', 0],
      [{ host: 'example.com' }, 'web', '/', -1],
      [{ host: '.example.com' }, 'web', '/', -1],
      [{ host: 'badexample.com' }, 'web', '/', -1],
      [{ host: 'example.com.evil.net' }, 'web', '/', -1],
    ]);
  });

  test('host: IPv6 literals', () => {
    table(new Router(routes({ match: { host: '[::1]' }, pool: 'local' }), 'web'), [
      [{ host: '[::1]:8080' }, 'local', '/', 0],
      [{ host: '[::1]' }, 'local', '/', 0],
      [{ host: '[::2]' }, 'web', '/', -1],
    ]);
  });

  test('method: one or a list, case-insensitive', () => {
    const router = new Router(routes({ match: { method: ['get', 'HEAD'] }, pool: 'read' }, { match: { method: 'Post' }, pool: 'write' }), 'web');
    table(router, [
      [{ method: 'GET' }, 'read', '/', 0],
      [{ method: 'head' }, 'read', '/', 0],
      [{ method: 'POST' }, 'write', '/', 1],
      [{ method: 'PUT' }, 'web', '/', -1],
    ]);
  });

  test('headers: exact value, "~regex", "~" for presence; lists match when any element does', () => {
    const router = new Router(
      routes(
        { match: { headers: { 'X-Canary': 'yes' } }, pool: 'canary' },
        { match: { headers: { 'User-Agent': '~[Bb]ot|[Cc]rawler' } }, pool: 'bots' },
        { match: { headers: { 'x-api-key': '~' } }, pool: 'keyed' },
        { match: { headers: { 'set-cookie': '~^b=' } }, pool: 'listed' },
        { match: { headers: { 'x-a': '1', 'x-b': '~^2$' } }, pool: 'both' },
      ),
      'web',
    );
    table(router, [
      [{ headers: { 'x-canary': 'yes' } }, 'canary', '/', 0],
      [{ headers: { 'x-canary': 'Yes' } }, 'web', '/', -1],
      [{ headers: { 'x-canary': 'yes please' } }, 'web', '/', -1],
      [{ headers: { 'user-agent': 'Mozilla/5.0 (compatible; Googlebot/2.1)' } }, 'bots', '/', 1],
      [{ headers: { 'user-agent': 'SomeCrawler' } }, 'bots', '/', 1],
      [{ headers: { 'user-agent': 'curl/8' } }, 'web', '/', -1],
      [{ headers: { 'x-api-key': '' } }, 'keyed', '/', 2],
      [{ headers: { 'set-cookie': ['a=1', 'b=2'] } }, 'listed', '/', 3],
      [{ headers: { 'set-cookie': ['a=1'] } }, 'web', '/', -1],
      [{ headers: { 'x-a': '1', 'x-b': '2' } }, 'both', '/', 4],
      [{ headers: { 'x-a': '1', 'x-b': '22' } }, 'web', '/', -1],
      [{ headers: { 'x-a': '1' } }, 'web', '/', -1],
    ]);
    // A configured name that is also an Object.prototype member only matches a real header.
    const proto = new Router(routes({ match: { headers: { constructor: '~' } }, pool: 'p' }), 'web');
    table(proto, [
      [{ headers: {} }, 'web', '/', -1],
      [{ headers: { constructor: 'x' } as IncomingHttpHeaders }, 'p', '/', 0],
    ]);
  });

  test('cookies: exact or "~regex", parsed lazily and at most once', () => {
    const router = new Router(
      routes({ match: { pathPrefix: '/beta', cookies: { beta: '1' } }, pool: 'beta' }, { match: { cookies: { group: '~^(a|b)$' } }, pool: 'ab' }, { match: { pathPrefix: '/x' }, pool: 'x' }),
      'web',
    );
    table(router, [
      [{ path: '/beta/1', cookie: 'beta=1' }, 'beta', '/beta/1', 0],
      [{ path: '/beta/1', cookie: 'beta=2; group=a' }, 'ab', '/beta/1', 1],
      [{ cookie: 'group=b' }, 'ab', '/', 1],
      [{ cookie: 'group=c' }, 'web', '/', -1],
      [{ cookie: 'constructor=a' }, 'web', '/', -1],
      [{}, 'web', '/', -1],
    ]);
    let calls = 0;
    const counting = (path: string, cookie?: string): RouteRequest => ({ ...req({ path }), cookies: () => (calls++, parseCookies(cookie)) });
    // Rule 0 fails on its prefix before needing cookies, rule 1 needs them, rule 2 matches.
    calls = 0;
    assert.equal(router.route(counting('/x')).pool, 'x');
    assert.equal(calls, 1);
    // Both cookie rules are evaluated: still one parse.
    calls = 0;
    assert.equal(router.route(counting('/beta', 'beta=0')).pool, 'web');
    assert.equal(calls, 1);
    // A table without cookie rules never asks.
    calls = 0;
    new Router(routes({ match: { pathPrefix: '/x' }, pool: 'x' }), 'web').route(counting('/y'));
    assert.equal(calls, 0);
  });

  test('stripPrefix removes the matched prefix; the result starts with "/", the query is kept', () => {
    const router = new Router(routes({ match: { pathPrefix: '/api/video/' }, pool: 'video', stripPrefix: true }), 'web');
    table(router, [
      [{ path: '/api/video' }, 'video', '/', 0],
      [{ path: '/api/video/' }, 'video', '/', 0],
      [{ path: '/api/video/42' }, 'video', '/42', 0],
      [{ path: '/api/video/42/x?q=1&r=%2F' }, 'video', '/42/x?q=1&r=%2F', 0],
      [{ path: '/api/video?q=1' }, 'video', '/?q=1', 0],
      [{ path: '/api/video?' }, 'video', '/?', 0],
    ]);
  });

  test('rewrite replaces with $1 groups, after stripPrefix, and keeps the query', () => {
    const router = new Router(
      routes(
        { match: { pathPrefix: '/v1' }, pool: 'users', rewrite: { pattern: '^/v1/users/(\\d+)$', replacement: '/users?id=$1' } },
        { match: { pathRegex: '^/img/' }, pool: 'img', rewrite: { pattern: '^/img/(?<name>[^/]+)\\.png$', replacement: '/images/$<name>/original.png' } },
        { match: { pathPrefix: '/old' }, pool: 'new', stripPrefix: true, rewrite: { pattern: '^/(.*)$', replacement: 'new/$1' } },
      ),
      'web',
    );
    table(router, [
      [{ path: '/v1/users/42' }, 'users', '/users?id=42', 0],
      [{ path: '/v1/users/42?expand=1' }, 'users', '/users?id=42&expand=1', 0],
      [{ path: '/v1/other' }, 'users', '/v1/other', 0], // the pattern does not match: path unchanged
      [{ path: '/img/cat.png?w=10' }, 'img', '/images/cat/original.png?w=10', 1],
      [{ path: '/old/a/b?c' }, 'new', '/new/a/b?c', 2],
      [{ path: '/old' }, 'new', '/new/', 2],
    ]);
  });

  test('conditions see only the path before "?"', () => {
    const router = new Router(routes({ match: { pathRegex: '\\.json$' }, pool: 'json' }, { match: { pathPrefix: '/a' }, pool: 'a' }), 'web');
    table(router, [
      [{ path: '/data.json?v=2' }, 'json', '/data.json?v=2', 0],
      [{ path: '/data?f=.json' }, 'web', '/data?f=.json', -1],
      [{ path: '/b?/a' }, 'web', '/b?/a', -1],
    ]);
  });

  test('the default route returns the request path unchanged, query included', () => {
    const path = '/nowhere?x=1';
    const r = new Router([], 'web').route(req({ path }));
    assert.deepEqual(r, { pool: 'web', path, rule: -1 });
  });

  test('paths are matched as received: no decoding, no dot-segment removal', () => {
    const router = new Router(routes({ match: { pathPrefix: '/admin' }, pool: 'admin' }), 'web');
    table(router, [
      [{ path: '/public/../admin' }, 'web', '/public/../admin', -1],
      [{ path: '/%61dmin' }, 'web', '/%61dmin', -1],
      [{ path: '/admin/../public' }, 'admin', '/admin/../public', 0],
    ]);
  });

  const invalid: Array<[string, Array<z.input<typeof zRoute>>, RegExp]> = [
    ['a wildcard that is not the whole first label', [{ match: { host: '*foo.example.com' }, pool: 'p' }], /routes\[0\]\.match\.host/],
    ['a wildcard in the middle', [{ match: { host: 'a.*.example.com' }, pool: 'p' }], /routes\[0\]\.match\.host/],
    ['a host with a port', [{ pool: 'q' }, { match: { host: 'example.com:8080' }, pool: 'p' }], /routes\[1\]\.match\.host.*no port/],
    ['a bare "*"', [{ match: { host: '*' }, pool: 'p' }], /match\.host/],
    ['stripPrefix without pathPrefix', [{ match: { pathRegex: '^/a' }, pool: 'p', stripPrefix: true }], /routes\[0\]\.stripPrefix: needs match\.pathPrefix/],
    ['an invalid pathRegex', [{ match: { pathRegex: '(' }, pool: 'p' }], /routes\[0\]\.match\.pathRegex/],
    ['an invalid header regex', [{ match: { headers: { 'x-a': '~[' } }, pool: 'p' }], /routes\[0\]\.match\.headers\.x-a/],
    ['an invalid cookie regex', [{ match: { cookies: { c: '~(?<' } }, pool: 'p' }], /routes\[0\]\.match\.cookies\.c/],
    ['an invalid rewrite pattern', [{ pool: 'p', rewrite: { pattern: '+', replacement: '/' } }], /routes\[0\]\.rewrite\.pattern/],
  ];
  for (const [name, input, message] of invalid) {
    test(`refuses ${name}, naming the rule and field`, () => {
      assert.throws(
        () => new Router(routes(...input), 'web'),
        (err: unknown) => isArchlabError(err, 'ARCHLAB_BALANCER_CONFIG') && message.test(err.message),
      );
    });
  }
});
