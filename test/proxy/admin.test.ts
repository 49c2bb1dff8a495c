/** The admin listener: /metrics and /healthz open, everything else behind the token; what the counters say. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backend, connect, echoServer, proxy, viaProxy, waitFor } from './helpers.js';

test('metrics count requests, tunnels, bytes and denials by reason; /stats needs the token', async (t) => {
  const b = await backend(t);
  const echo = await echoServer(t);
  const p = await proxy(t, { admin: { port: 0, token: 'sekret' }, acl: { connectPorts: ['1-65535'], ssrfGuard: { exceptions: ['127.0.0.1'] }, deny: [{ domain: 'blocked.example' }] } });
  assert.equal((await viaProxy(p, `http://127.0.0.1:${b.port}/x`)).status, 200);
  assert.equal((await viaProxy(p, 'http://blocked.example/')).status, 403);
  assert.equal((await viaProxy(p, 'http://10.0.0.1/')).status, 403);
  const tunnel = await connect(p.port, `127.0.0.1:${echo.port}`);
  tunnel.socket.end('abc');
  assert.ok(await waitFor(() => p.access().some((l) => l.kind === 'connect')));

  const metrics = await (await fetch(`${p.admin!.url}/metrics`)).text();
  const has = (re: RegExp): void => assert.match(metrics, re);
  has(/archlab_proxy_requests_total\{code="200",server="proxy"\} 1/);
  has(/archlab_proxy_requests_total\{code="403",server="proxy"\} 2/);
  has(/archlab_proxy_tunnels_total\{code="200",server="proxy"\} 1/);
  has(/archlab_proxy_denied_total\{reason="acl-deny",server="proxy"\} 1/);
  has(/archlab_proxy_denied_total\{reason="ssrf",server="proxy"\} 1/);
  has(/archlab_proxy_bytes_total\{kind="http",direction="down",server="proxy"\} 5/); // "ok /x"
  has(/archlab_proxy_bytes_total\{kind="connect",direction="up",server="proxy"\} 3/);
  has(/archlab_proxy_active\{kind="connect",server="proxy"\} 0/);

  assert.equal((await fetch(`${p.admin!.url}/healthz`)).status, 200);
  assert.equal((await fetch(`${p.admin!.url}/stats`)).status, 401);
  assert.equal((await fetch(`${p.admin!.url}/stats`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  const stats = await fetch(`${p.admin!.url}/stats`, { headers: { authorization: 'Bearer sekret' } });
  assert.equal(stats.status, 200);
  assert.equal(((await stats.json()) as { tunnels: number }).tunnels, 0);
});

test('ssrfGuard.enabled: false lets loopback through (tests, trusted networks only)', async (t) => {
  const b = await backend(t);
  const p = await proxy(t, { acl: { ssrfGuard: { enabled: false } } });
  assert.equal((await viaProxy(p, `http://2130706433:${b.port}/`, { headers: { host: `127.0.0.1:${b.port}` } })).status, 200);
});

test('close() drains: an in-flight request finishes, new connections are refused', async (t) => {
  const b = await backend(t, (req, res) => {
    if (req.url !== '/slow') return false;
    setTimeout(() => res.end('slow done'), 300);
    return true;
  });
  const p = await proxy(t);
  const inflight = viaProxy(p, `http://127.0.0.1:${b.port}/slow`);
  await new Promise((r) => setTimeout(r, 100));
  const closed = p.close();
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'slow done');
  await closed;
  await assert.rejects(viaProxy(p, `http://127.0.0.1:${b.port}/`, { timeoutMs: 1000 }));
});
