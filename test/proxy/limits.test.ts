/** Per-client and per-user limits through a running proxy: 429 with Retry-After, slots freed on close. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { userLine } from '../../src/proxy/auth.js';
import { backend, basic, connect, echoServer, proxy, viaProxy, waitFor } from './helpers.js';

test('perClient.ratePerSecond: a burst passes, the next request gets 429 with Retry-After', async (t) => {
  const b = await backend(t);
  const p = await proxy(t, { limits: { perClient: { ratePerSecond: 1, burst: 3 } } });
  const url = `http://127.0.0.1:${b.port}/`;
  const statuses: number[] = [];
  let retryAfter: string | string[] | undefined;
  for (let i = 0; i < 5; i++) {
    const r = await viaProxy(p, url);
    statuses.push(r.status);
    if (r.status === 429) retryAfter = r.headers['retry-after'];
  }
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  assert.equal(retryAfter, '1');
  assert.equal(p.access().at(-1)!.reason, 'rate-client');
});

test('perClient.maxConnections counts open tunnels; closing one frees its slot', async (t) => {
  const echo = await echoServer(t);
  const p = await proxy(t, { limits: { perClient: { maxConnections: 2 } } });
  const a = await connect(p.port, `127.0.0.1:${echo.port}`);
  const b = await connect(p.port, `127.0.0.1:${echo.port}`);
  const c = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.deepEqual([a.status, b.status, c.status], [200, 200, 429]);
  a.socket.destroy();
  assert.ok(await waitFor(() => p.access().filter((l) => l.status === 200).length === 1));
  const d = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.equal(d.status, 200);
  b.socket.destroy();
  d.socket.destroy();
});

test('perUser limits apply per authenticated user, across client connections', async (t) => {
  const echo = await echoServer(t);
  const users = [await userLine('alice', 'a', { N: 1024, r: 8, p: 1 }), await userLine('bob', 'b', { N: 1024, r: 8, p: 1 })];
  const p = await proxy(t, { auth: { users }, limits: { perUser: { maxConnections: 1 } } });
  const alice = { 'Proxy-Authorization': basic('alice', 'a') };
  const first = await connect(p.port, `127.0.0.1:${echo.port}`, alice);
  const second = await connect(p.port, `127.0.0.1:${echo.port}`, alice);
  const bob = await connect(p.port, `127.0.0.1:${echo.port}`, { 'Proxy-Authorization': basic('bob', 'b') });
  assert.deepEqual([first.status, second.status, bob.status], [200, 429, 200]);
  assert.equal(p.access().find((l) => l.status === 429)!.reason, 'conn-user');
  first.socket.destroy();
  bob.socket.destroy();
});

test('limits.maxConnections caps client connections to the proxy', async (t) => {
  const echo = await echoServer(t);
  const b = await backend(t);
  const p = await proxy(t, { limits: { maxConnections: 1 } });
  const held = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.equal(held.status, 200);
  await assert.rejects(viaProxy(p, `http://127.0.0.1:${b.port}/`, { timeoutMs: 2000 }));
  held.socket.destroy();
  assert.ok(await waitFor(() => p.access().length === 1));
  assert.equal((await viaProxy(p, `http://127.0.0.1:${b.port}/`)).status, 200);
});
