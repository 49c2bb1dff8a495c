import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { Counter } from 'prom-client';
import { isArchlabError } from './errors.js';
import { createRegistry, HttpError, startAdminServer } from './metrics.js';
import type { AdminServerOptions } from './metrics.js';
import type { ServerHandle } from './lifecycle.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function start(t: TestContext, opts: Partial<AdminServerOptions> = {}): Promise<ServerHandle & { url: string }> {
  const handle = await startAdminServer({ port: 0, registry: createRegistry(), ...opts });
  t.after(() => handle.close());
  assert.ok(handle.address.url);
  return { ...handle, url: handle.address.url };
}

function errorBody(reply: Reply): { code: string; message: string } {
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
  const body = JSON.parse(reply.body) as { error?: { code: string; message: string } };
  assert.ok(body.error, `expected { error }, got ${reply.body}`);
  return body.error;
}

describe('createRegistry', () => {
  test('a fresh registry per call; default metrics only when asked, with the archlab_ prefix', async () => {
    const plain = createRegistry();
    assert.equal((await plain.metrics()).trim(), '');
    const withDefaults = createRegistry({ defaultMetrics: true, labels: { server: 'test' } });
    const text = await withDefaults.metrics();
    assert.match(text, /^archlab_process_cpu_user_seconds_total\{server="test"\} /m);
    assert.notEqual(plain, withDefaults);
  });
});

describe('startAdminServer', () => {
  test('GET /metrics serves Prometheus text with a registered counter', async (t) => {
    const registry = createRegistry();
    const hits = new Counter({ name: 'archlab_test_hits_total', help: 'test hits', labelNames: ['route'], registers: [registry] });
    hits.inc({ route: '/a' }, 3);
    const admin = await start(t, { registry, token: 'secret' });
    const reply = await request(`${admin.url}/metrics`);
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], registry.contentType);
    assert.match(reply.body, /# TYPE archlab_test_hits_total counter/);
    assert.match(reply.body, /^archlab_test_hits_total\{route="\/a"\} 3$/m);
  });

  test('/healthz: 200 when ok, 503 when not, 503 when the check throws', async (t) => {
    let state: 'ok' | 'down' | 'throw' = 'ok';
    const admin = await start(t, {
      health: async () => {
        if (state === 'throw') throw new RangeError('db gone');
        return { ok: state === 'ok', details: { backends: state === 'ok' ? 3 : 0 } };
      },
    });
    const ok = await request(`${admin.url}/healthz`);
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { status: 'ok', details: { backends: 3 } });
    state = 'down';
    const down = await request(`${admin.url}/healthz`);
    assert.equal(down.status, 503);
    assert.deepEqual(JSON.parse(down.body), { status: 'unavailable', details: { backends: 0 } });
    state = 'throw';
    const thrown = await request(`${admin.url}/healthz`);
    assert.equal(thrown.status, 503);
    assert.match(thrown.body, /db gone/);
  });

  test('/healthz without a health function answers ok; a slow check is bounded', async (t) => {
    const plain = await start(t);
    assert.deepEqual(JSON.parse((await request(`${plain.url}/healthz`)).body), { status: 'ok' });
    const slow = await start(t, { health: () => new Promise(() => {}), healthTimeoutMs: 50 });
    const reply = await request(`${slow.url}/healthz`);
    assert.equal(reply.status, 503);
    assert.match(reply.body, /took over 50ms/);
  });

  test('admin routes need the bearer token; /metrics and /healthz do not', async (t) => {
    const admin = await start(t, {
      token: 's3cret',
      routes: (req, res, url) => {
        if (req.method === 'GET' && url.pathname === '/admin/pools') {
          res.end('pools');
          return true;
        }
        return false;
      },
    });
    const none = await request(`${admin.url}/admin/pools`);
    assert.equal(none.status, 401);
    assert.equal(errorBody(none).code, 'ARCHLAB_UNAUTHORIZED');
    assert.match(none.headers['www-authenticate'] ?? '', /^Bearer/);
    const wrong = await request(`${admin.url}/admin/pools`, { headers: { Authorization: 'Bearer s3cre' } });
    assert.equal(wrong.status, 401);
    assert.equal(errorBody(wrong).message, 'invalid admin token');
    const basic = await request(`${admin.url}/admin/pools`, { headers: { Authorization: 'Basic czNjcmV0' } });
    assert.equal(basic.status, 401);
    const right = await request(`${admin.url}/admin/pools`, { headers: { Authorization: 'Bearer s3cret' } });
    assert.equal(right.status, 200);
    assert.equal(right.body, 'pools');
    // Unknown paths are not revealed without the token either.
    assert.equal((await request(`${admin.url}/nope`)).status, 401);
    assert.equal((await request(`${admin.url}/metrics`)).status, 200);
    assert.equal((await request(`${admin.url}/healthz`)).status, 200);
  });

  test('404 JSON for unknown paths; 405 for writes to /metrics', async (t) => {
    const admin = await start(t, { token: 't', routes: () => false });
    const notFound = await request(`${admin.url}/nope`, { headers: { Authorization: 'Bearer t' } });
    assert.equal(notFound.status, 404);
    assert.equal(errorBody(notFound).code, 'ARCHLAB_NOT_FOUND');
    const noRoutes = await start(t);
    assert.equal(errorBody(await request(`${noRoutes.url}/x`)).code, 'ARCHLAB_NOT_FOUND');
    const post = await request(`${admin.url}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
  });

  test('request bodies are limited: declared or streamed over maxBodyBytes gets 413', async (t) => {
    const admin = await start(t, {
      maxBodyBytes: 16,
      routes: async (_req, res, url, ctx) => {
        if (url.pathname !== '/echo') return false;
        const body = await ctx.readJson();
        res.end(JSON.stringify({ got: body }));
        return true;
      },
    });
    const small = await request(`${admin.url}/echo`, { method: 'POST', body: '{"a":1}' });
    assert.equal(small.status, 200);
    assert.deepEqual(JSON.parse(small.body), { got: { a: 1 } });
    const big = await request(`${admin.url}/echo`, { method: 'POST', body: JSON.stringify({ a: 'x'.repeat(100) }) });
    assert.equal(big.status, 413);
    assert.equal(errorBody(big).code, 'ARCHLAB_BODY_TOO_LARGE');
    const chunked = await request(`${admin.url}/echo`, {
      method: 'POST',
      headers: { 'Transfer-Encoding': 'chunked' },
      body: JSON.stringify({ a: 'y'.repeat(100) }),
    });
    assert.equal(chunked.status, 413);
    const notJson = await request(`${admin.url}/echo`, { method: 'POST', body: 'nope' });
    assert.equal(notJson.status, 400);
    assert.equal(errorBody(notJson).code, 'ARCHLAB_BAD_REQUEST');
  });

  test('errors thrown by routes become JSON: typed ones keep their code, others say internal error', async (t) => {
    const admin = await start(t, {
      routes: (_req, _res, url) => {
        if (url.pathname === '/teapot') throw new HttpError(418, 'ARCHLAB_TEAPOT', 'short and stout');
        throw new TypeError('secret internals');
      },
    });
    const teapot = await request(`${admin.url}/teapot`);
    assert.equal(teapot.status, 418);
    assert.deepEqual(errorBody(teapot), { code: 'ARCHLAB_TEAPOT', message: 'short and stout' });
    const boom = await request(`${admin.url}/boom`);
    assert.equal(boom.status, 500);
    assert.deepEqual(errorBody(boom), { code: 'ARCHLAB_INTERNAL', message: 'internal error' });
  });

  test('timeouts and limits are set on the server; bad options are refused', async (t) => {
    await assert.rejects(
      startAdminServer({ port: 0, registry: createRegistry(), token: '' }),
      (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'),
    );
    await assert.rejects(
      startAdminServer({ port: 0, registry: createRegistry(), headersTimeoutMs: 5000, requestTimeoutMs: 1000 }),
      (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'),
    );
    // A client that never finishes its headers is cut off by headersTimeout.
    const admin = await start(t, { headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const { connect } = await import('node:net');
    const sock = connect({ host: '127.0.0.1', port: admin.address.port });
    t.after(() => sock.destroy());
    sock.on('error', () => {});
    sock.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'); // no blank line: headers never end
    let received = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (received += d));
    await new Promise<void>((resolve, reject) => {
      const guard = setTimeout(() => reject(new assert.AssertionError({ message: 'slow client was never cut off' })), 10_000);
      sock.once('close', () => {
        clearTimeout(guard);
        resolve();
      });
    });
    assert.match(received, /^HTTP\/1\.1 408/);
  });
});
