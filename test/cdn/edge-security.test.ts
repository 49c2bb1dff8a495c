import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { send, startOrigin, startTestEdge, type Origin, type TestEdge } from '../../src/cdn/edge/test-helpers.js';
import { UNKEYED_REQUEST_HEADERS } from '../../src/cdn/edge/index.js';

/** Sends raw bytes and returns what comes back until the server closes (or 2 s). */
function raw(url: string, data: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname);
    let out = '';
    const timer = setTimeout(() => s.destroy(), 2000);
    s.on('data', (d) => (out += d.toString()));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', reject);
    s.write(data);
  });
}

describe('edge: security and bad input', () => {
  let origin: Origin;
  let e: TestEdge;

  before(async () => {
    origin = await startOrigin((req, res) => {
      const url = req.url ?? '/';
      if (url === '/reflect') {
        // A framework that trusts forwarding headers: what a poisoning attack needs.
        const h = req.headers;
        const host = h['x-forwarded-host'] ?? h.host;
        const extra = [h['x-original-url'], h['x-rewrite-url'], h['x-forwarded-scheme'], h['x-forwarded-proto'], h['x-http-method-override'], h.forwarded].filter(Boolean).join('|');
        res.writeHead(200, { 'cache-control': 'max-age=100', 'content-type': 'text/html' });
        res.end(`<script src="//${host}/app.js"></script>${extra}`);
        return;
      }
      if (url.startsWith('/cookie')) {
        res.writeHead(200, { 'cache-control': 'max-age=100', 'set-cookie': ['session=abc; HttpOnly', 'theme=dark'] });
        res.end('with cookie');
        return;
      }
      if (url === '/bighead') {
        res.writeHead(200, { 'cache-control': 'max-age=100', 'x-big': 'x'.repeat(20 * 1024) });
        res.end('big head');
        return;
      }
      if (url === '/hop') {
        res.writeHead(200, {
          'cache-control': 'max-age=100',
          connection: 'x-internal',
          'x-internal': 'secret',
          'keep-alive': 'timeout=5',
          'x-echo-via': String(req.headers.via),
          'x-echo-xff': String(req.headers['x-forwarded-for']),
        });
        res.end(JSON.stringify(req.headers));
        return;
      }
      if (req.method === 'POST') {
        let n = 0;
        req.on('data', (c: Buffer) => (n += c.length));
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(`got ${n}`);
        });
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=100' });
      res.end(`resource ${url}`);
    });
    e = await startTestEdge(origin.url, { limits: { maxBodyBytes: 1000 } });
  });
  after(async () => {
    await e?.close();
    await origin?.close();
  });

  test('cache poisoning: unkeyed inputs are stripped, so a poisoned request and a clean one both get the true body', async () => {
    const trueBody = '<script src="//example.test/app.js"></script>';
    const poisoned = await send(e.url, '/reflect', {
      headers: {
        'x-forwarded-host': 'evil.test',
        'x-original-url': '/admin',
        'x-rewrite-url': '/admin',
        'x-forwarded-scheme': 'nothttps',
        'x-forwarded-proto': 'nothttps',
        'x-http-method-override': 'DELETE',
        forwarded: 'host=evil.test',
      },
    });
    assert.equal(poisoned.text, trueBody);
    const clean = await send(e.url, '/reflect');
    assert.equal(clean.text, trueBody);
    assert.equal(clean.headers['x-cache'], 'HIT');
    const seen = origin.seen.filter((s) => s.url === '/reflect');
    assert.equal(seen.length, 1);
    for (const name of UNKEYED_REQUEST_HEADERS) assert.equal(seen[0]!.headers[name], undefined, `${name} reached the origin`);
    assert.equal(seen[0]!.headers.host, 'example.test');
  });

  test('the upstream request is built from the normalised target: no header names a different URL or method', async () => {
    const r = await send(e.url, '/reflect?x=1', { headers: { 'x-original-url': '/admin' } });
    assert.equal(r.status, 200);
    const last = origin.seen.at(-1)!;
    assert.equal(last.url, '/reflect?x=1');
    assert.equal(last.method, 'GET');
  });

  test('Set-Cookie responses are not stored (unless configured)', async () => {
    const a = await send(e.url, '/cookie');
    const b = await send(e.url, '/cookie');
    assert.deepEqual(a.headers['set-cookie'], ['session=abc; HttpOnly', 'theme=dark']);
    assert.notEqual(b.headers['x-cache'], 'HIT');
    assert.equal(origin.count('/cookie'), 2);
    const allowing = await startTestEdge(origin.url, { policy: { cacheSetCookie: true } });
    try {
      await send(allowing.url, '/cookie2');
      const hit = await send(allowing.url, '/cookie2');
      assert.equal(hit.headers['x-cache'], 'HIT');
      assert.deepEqual(hit.headers['set-cookie'], ['session=abc; HttpOnly', 'theme=dark']);
    } finally {
      await allowing.close();
    }
  });

  test('path confusion: /a;.css is its own object, not /a.css nor /a', async () => {
    assert.equal((await send(e.url, '/a.css')).text, 'resource /a.css');
    assert.equal((await send(e.url, '/a')).text, 'resource /a');
    const conf = await send(e.url, '/a;.css');
    assert.equal(conf.headers['x-cache'], 'MISS');
    assert.equal(conf.text, 'resource /a;.css');
    assert.equal((await send(e.url, '/a.css')).text, 'resource /a.css');
  });

  test('path confusion: %2e%2e is resolved before keying and before forwarding, so key and origin agree', async () => {
    await send(e.url, '/x');
    const dotted = await send(e.url, '/static/%2e%2e/x');
    assert.equal(dotted.headers['x-cache'], 'HIT');
    assert.equal(dotted.text, 'resource /x');
    const above = await send(e.url, '/%2e%2e/x');
    assert.equal(above.text, 'resource /x');
    assert.ok(origin.seen.every((s) => !s.url.toLowerCase().includes('%2e')), 'the origin only ever sees normalised targets');
    const double = await send(e.url, '/static/%252e%252e/secret');
    assert.equal(double.status, 400);
    assert.equal(double.headers['x-archlab-error'], 'ARCHLAB_CDN_BAD_REQUEST');
  });

  test('a request header block over maxHeaderBytes gets 431; a large one under it passes', async () => {
    const big = await send(e.url, '/x', { headers: { 'x-pad': 'p'.repeat(20 * 1024) } });
    assert.equal(big.status, 431);
    const ok = await send(e.url, '/x', { headers: { 'x-pad': 'p'.repeat(8 * 1024) } });
    assert.equal(ok.status, 200);
  });

  test('a response header block over the limit gets 502 and is not stored', async () => {
    const a = await send(e.url, '/bighead');
    assert.equal(a.status, 502);
    assert.equal(a.headers['x-archlab-error'], 'ARCHLAB_CDN_HEADERS_TOO_LARGE');
    const b = await send(e.url, '/bighead');
    assert.equal(b.status, 502);
    assert.equal(origin.count('/bighead'), 2);
  });

  test('hop-by-hop fields are removed both ways; Via and X-Forwarded-For are appended', async () => {
    const r = await send(e.url, '/hop', {
      headers: { connection: 'x-secret', 'x-secret': '1', 'proxy-authorization': 'Basic Zm9vOmJhcg==', te: 'trailers', via: '1.1 client-proxy', 'x-forwarded-for': '203.0.113.7' },
    });
    const up = JSON.parse(r.text) as Record<string, string>;
    assert.equal(up['x-secret'], undefined);
    assert.equal(up['proxy-authorization'], undefined);
    assert.equal(up.te, undefined);
    assert.equal(up.via, '1.1 client-proxy, 1.1 e1');
    assert.equal(up['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(r.headers['x-internal'], undefined);
    assert.notEqual(r.headers['keep-alive'], 'timeout=5', "the origin's Keep-Alive is not relayed (Node writes the edge's own)");
    assert.match(String(r.headers.via), /1\.1 e1$/);
    const hit = await send(e.url, '/hop');
    assert.equal(hit.headers['x-cache'], 'HIT');
    assert.equal(hit.headers['x-internal'], undefined);
  });

  test('request bodies over maxBodyBytes are refused with 413 (Content-Length and chunked)', async () => {
    const small = await send(e.url, '/post', { method: 'POST', body: 'x'.repeat(500) });
    assert.equal(small.text, 'got 500');
    const big = await send(e.url, '/post', { method: 'POST', body: 'x'.repeat(2000) });
    assert.equal(big.status, 413);
    const chunked = await raw(e.url, `POST /post HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n${'7d0\r\n' + 'y'.repeat(2000) + '\r\n'}0\r\n\r\n`);
    assert.match(chunked, /^HTTP\/1\.1 413 /);
  });

  test('a request without Host is a 400', async () => {
    const r = await raw(e.url, 'GET /x HTTP/1.0\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 400 /);
  });
});
