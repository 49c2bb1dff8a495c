/** ProxyHandle.stats(): the proxy's own counters in code, the same numbers /metrics serves. */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { backend, connect, echoServer, proxy, viaProxy, waitFor } from './helpers.js';

test('stats(): requests and tunnels answered, 5xx answers as errors (the proxy\'s own and a target\'s), refusals as denied; equal to /metrics', async (t) => {
  const b = await backend(t, (req, res) => {
    if (req.url !== '/fail') return false;
    res.writeHead(503);
    res.end('down');
    return true;
  });
  const echo = await echoServer(t);
  const p = await proxy(t, { admin: { port: 0 }, acl: { connectPorts: ['1-65535'], ssrfGuard: { exceptions: ['127.0.0.1'] }, deny: [{ domain: 'blocked.example' }] } });
  assert.deepEqual(await p.stats(), { requests: 0, tunnels: 0, errors: 0, denied: 0, active: 0 });

  assert.equal((await viaProxy(p, `http://127.0.0.1:${b.port}/ok`)).status, 200);
  assert.equal((await viaProxy(p, `http://127.0.0.1:${b.port}/fail`)).status, 503, 'a target\'s 5xx passed on');
  // Nothing listens there: the proxy's own 502.
  const dead = net.createServer();
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
  const deadPort = (dead.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => dead.close(() => resolve()));
  assert.equal((await viaProxy(p, `http://127.0.0.1:${deadPort}/`)).status, 502);
  assert.equal((await viaProxy(p, 'http://blocked.example/')).status, 403);
  const tunnel = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.equal(tunnel.status, 200);
  assert.equal((await p.stats()).active, 1, 'the open tunnel');
  tunnel.socket.end();
  assert.ok(await waitFor(() => p.access().some((l) => l.kind === 'connect')));
  const refusedTunnel = await connect(p.port, 'blocked.example:443');
  assert.equal(refusedTunnel.status, 403);
  refusedTunnel.socket.destroy();
  assert.ok(await waitFor(() => p.access().filter((l) => l.kind === 'connect').length === 2));

  const s = await p.stats();
  assert.deepEqual(s, { requests: 4, tunnels: 2, errors: 2, denied: 2, active: 0 });
  // The same numbers as the Prometheus series.
  const metrics = await (await fetch(`${p.admin!.url}/metrics`)).text();
  const sum = (name: string): number => [...metrics.matchAll(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
  assert.equal(sum('archlab_proxy_requests_total'), s.requests);
  assert.equal(sum('archlab_proxy_tunnels_total'), s.tunnels);
  assert.equal(sum('archlab_proxy_denied_total'), s.denied);
});
