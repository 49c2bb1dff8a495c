/** Plain HTTP through the proxy: absolute-form from Node, curl and undici; headers; bodies; failures. */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test } from 'node:test';
import { backend, curl, findCurl, proxy, raw, viaProxy, waitFor } from './helpers.js';

test('absolute-form GET is forwarded: Host from the URL, Via added, Proxy-* and hop-by-hop fields dropped both ways', async (t) => {
  const b = await backend(t, (_req, res) => {
    res.writeHead(200, { 'x-from': 'backend', 'proxy-authenticate': 'Basic realm="leak"', 'keep-alive': 'timeout=99', connection: 'x-secret-response', 'x-secret-response': '1' });
    res.end('hello');
    return true;
  });
  const p = await proxy(t);
  const r = await viaProxy(p, `http://127.0.0.1:${b.port}/a/b?q=1`, {
    headers: {
      'proxy-authorization': 'Basic Zm9vOmJhcg==',
      'proxy-connection': 'keep-alive',
      'proxy-foo': 'x',
      connection: 'x-drop-me',
      'x-drop-me': 'secret',
      'x-keep': 'yes',
      via: '1.0 upstream-client',
    },
  });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hello');
  assert.equal(r.headers['x-from'], 'backend');
  assert.equal(r.headers.via, '1.1 archlab');
  assert.equal(r.headers['proxy-authenticate'], undefined);
  assert.equal(r.headers['x-secret-response'], undefined);
  const seen = b.seen[0]!;
  assert.equal(seen.url, '/a/b?q=1', 'origin-form upstream');
  assert.equal(seen.headers.host, `127.0.0.1:${b.port}`);
  assert.equal(seen.headers.via, '1.0 upstream-client, 1.1 archlab');
  assert.equal(seen.headers['x-keep'], 'yes');
  for (const h of ['proxy-authorization', 'proxy-connection', 'proxy-foo', 'x-drop-me']) assert.equal(seen.headers[h], undefined, h);
  const line = p.access().at(-1)!;
  assert.equal(line.kind, 'http');
  assert.equal(line.status, 200);
  assert.equal(line.target, `127.0.0.1:${b.port}`);
  assert.equal(line.client, '127.0.0.1');
  assert.equal(line.bytesDown, 5);
  assert.equal(typeof line.durationMs, 'number');
});

test('request bodies are streamed up, limited by limits.maxBody (413), and keep-alive to the proxy works', async (t) => {
  const b = await backend(t, (req, res, body) => {
    res.end(`got ${body.length} ${req.headers['content-length'] ?? req.headers['transfer-encoding']}`);
    return true;
  });
  const p = await proxy(t, { limits: { maxBody: '1KiB' } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const url = `http://127.0.0.1:${b.port}/up`;
  assert.equal((await viaProxy(p, url, { method: 'POST', body: 'x'.repeat(1000), agent })).body, 'got 1000 1000');
  assert.equal((await viaProxy(p, url, { method: 'POST', body: 'y'.repeat(10), agent })).body, 'got 10 10');
  const big = await viaProxy(p, url, { method: 'POST', body: 'z'.repeat(2000) });
  assert.equal(big.status, 413);
  assert.equal(big.headers['x-archlab-error'], 'ARCHLAB_PROXY_BODY_TOO_LARGE');
  // Chunked, no declared length: cut when it passes the limit.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: url, headers: { host: `127.0.0.1:${b.port}` }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write('a'.repeat(800));
    setTimeout(() => req.end('b'.repeat(800)), 50);
  });
  assert.equal(chunked, 413);
  assert.equal(b.seen.filter((s) => s.url === '/up').length >= 2, true);
});

test('Expect: 100-continue is answered by the proxy only after its checks pass', async (t) => {
  const b = await backend(t);
  const p = await proxy(t, { acl: { connectPorts: ['1-65535'], ssrfGuard: { exceptions: ['127.0.0.1'] }, deny: [{ host: 'denied.example' }] } });
  const send = (url: string): Promise<{ status: number; continued: boolean }> =>
    new Promise((resolve, reject) => {
      let continued = false;
      const u = new URL(url);
      const req = http.request({ host: '127.0.0.1', port: p.port, method: 'PUT', path: url, headers: { host: u.host, expect: '100-continue', 'content-length': '5' }, agent: false });
      req.on('continue', () => {
        continued = true;
        req.end('hello');
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, continued });
        req.destroy();
      });
      req.on('error', reject);
      req.flushHeaders();
    });
  assert.deepEqual(await send(`http://127.0.0.1:${b.port}/put`), { status: 200, continued: true });
  assert.equal(b.seen[0]!.body, 'hello');
  assert.equal(b.seen[0]!.headers.expect, undefined);
  assert.deepEqual(await send('http://denied.example/put'), { status: 403, continued: false });
});

test('target failures: refused connection 502, slow response 504, mid-response reset cuts the client', async (t) => {
  const b = await backend(t, (req, res) => {
    if (req.url === '/slow') {
      setTimeout(() => res.end('late'), 2000);
      return true;
    }
    if (req.url === '/reset') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    }
    return false;
  });
  const p = await proxy(t, { timeouts: { response: '300ms', drain: '1s' } });
  const dead = http.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as { port: number }).port;
  await new Promise<void>((r) => dead.close(() => r()));

  const refused = await viaProxy(p, `http://127.0.0.1:${deadPort}/`);
  assert.equal(refused.status, 502);
  assert.equal(refused.headers['x-archlab-error'], 'ARCHLAB_PROXY_UPSTREAM');
  const slow = await viaProxy(p, `http://127.0.0.1:${b.port}/slow`);
  assert.equal(slow.status, 504);
  assert.equal(slow.headers['x-archlab-error'], 'ARCHLAB_PROXY_TIMEOUT');
  await assert.rejects(viaProxy(p, `http://127.0.0.1:${b.port}/reset`));
  // Still serving.
  assert.equal((await viaProxy(p, `http://127.0.0.1:${b.port}/fine`)).status, 200);
  const reasons = p.access().map((l) => l.reason);
  assert.ok(reasons.includes('upstream-connect') && reasons.includes('response-timeout') && reasons.includes('upstream-aborted'), JSON.stringify(reasons));
});

test('origin-form, https:// absolute-form and upgrades are not proxied (400, 400, 501)', async (t) => {
  const p = await proxy(t);
  const origin = await raw(p.port, 'GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n');
  assert.equal(origin.status, 400);
  assert.match(origin.body, /forward proxy/);
  assert.equal((await raw(p.port, 'GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n')).status, 400);
  const ws = await raw(p.port, 'GET http://example.com/ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  assert.equal(ws.status, 501);
});

test('curl -x and HTTP_PROXY reach a backend through the proxy', async (t) => {
  if (!(await findCurl())) return t.skip('curl not installed');
  const b = await backend(t);
  const p = await proxy(t);
  const url = `http://127.0.0.1:${b.port}/curl`;
  const viaFlag = await curl(['-i', '-x', p.url, url]);
  assert.equal(viaFlag.code, 0, viaFlag.stderr);
  assert.match(viaFlag.stdout, /^HTTP\/1\.1 200/);
  assert.match(viaFlag.stdout, /via: 1\.1 archlab/i);
  assert.match(viaFlag.stdout, /ok \/curl$/);
  // curl ignores http_proxy for 127.0.0.1 only when NO_PROXY says so; it is unset here.
  const viaEnv = await curl([url.replace('/curl', '/env')], { http_proxy: p.url, HTTP_PROXY: p.url });
  assert.equal(viaEnv.stdout, 'ok /env');
  assert.equal(b.seen.filter((s) => s.headers.via === '1.1 archlab').length, 2);
  assert.equal(b.seen.some((s) => s.headers['proxy-connection'] !== undefined), false);
});

test("undici's ProxyAgent works through the proxy (when undici is installed)", async (t) => {
  let undici: { ProxyAgent: new (o: string | { uri: string; token?: string }) => { close(): Promise<void> }; request: (url: string, o: { dispatcher: unknown }) => Promise<{ statusCode: number; body: { text(): Promise<string> } }> };
  try {
    const name = 'undici';
    undici = (await import(name)) as typeof undici;
  } catch {
    return t.skip('undici not installed');
  }
  const b = await backend(t);
  const p = await proxy(t);
  const agent = new undici.ProxyAgent(p.url);
  const r = await undici.request(`http://127.0.0.1:${b.port}/undici`, { dispatcher: agent });
  assert.equal(r.statusCode, 200);
  assert.equal(await r.body.text(), 'ok /undici');
  assert.equal(b.seen[0]!.headers['proxy-authorization'], undefined);
  await agent.close();
  // undici 7's ProxyAgent carries plain http through a CONNECT tunnel too; the tunnel is logged when it closes.
  assert.ok(await waitFor(() => p.access().some((l) => l.status === 200)), JSON.stringify(p.access()));
});
