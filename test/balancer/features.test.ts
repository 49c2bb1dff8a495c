/** Sticky cookies, admin API, hot reload, WebSocket, TLS with SNI, HTTP/2, redirect. */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import * as tls from 'node:tls';
import { startBalancer } from '../../src/balancer/index.js';
import { createLogger } from '../../src/core/log.js';
import { backend, balancer, request, sleep } from './helpers.js';

const certs = join(import.meta.dirname, '..', '..', 'examples', 'balancer', 'certs');
const exampleCa = readFileSync(join(certs, 'example.crt'));
const otherCa = readFileSync(join(certs, 'other.crt'));

function cookieOf(setCookie: string[] | undefined, name: string): string | undefined {
  const c = setCookie?.find((s) => s.startsWith(`${name}=`));
  return c?.slice(name.length + 1).split(';')[0];
}

test('sticky cookie pins a client; forged, unknown or disabled-backend cookies fall back and are re-issued', async (t) => {
  const bs = await Promise.all(['a', 'b', 'c'].map((n) => backend(t, n)));
  const lb = await balancer(t, {
    pools: [{ name: 'app', sticky: { cookie: 'SRV' }, backends: bs.map((b) => ({ id: b.name, address: b.address })) }],
    admin: { port: 0, token: 'secret-token' },
  });
  const first = await request(lb.url);
  const token = cookieOf(first.headers['set-cookie'], 'SRV');
  assert.ok(token, 'a cookie is inserted');
  assert.match(String(first.headers['set-cookie']), /HttpOnly/i);
  for (let i = 0; i < 6; i++) {
    const r = await request(lb.url, { headers: { cookie: `SRV=${token}` } });
    assert.equal(r.body, first.body, 'the cookie pins the backend');
    assert.equal(r.headers['set-cookie'], undefined, 'a valid cookie is not re-issued');
  }
  const forged = await request(lb.url, { headers: { cookie: 'SRV=a' } });
  assert.equal(forged.status, 200);
  const reissued = cookieOf(forged.headers['set-cookie'], 'SRV');
  assert.ok(reissued && reissued !== 'a', 'a forged cookie is replaced');
  // Disable the pinned backend: the client moves and gets a new cookie.
  const admin = `http://127.0.0.1:${lb.admin!.port}`;
  const off = await request(admin, { method: 'POST', path: `/pools/app/backends/${first.body}/disable`, headers: { authorization: 'Bearer secret-token' } });
  assert.equal(off.status, 200);
  const moved = await request(lb.url, { headers: { cookie: `SRV=${token}` } });
  assert.notEqual(moved.body, first.body);
  assert.ok(cookieOf(moved.headers['set-cookie'], 'SRV'));
});

test('admin API: token required, pools listed, drain stops new traffic, algorithm switch, metrics', async (t) => {
  const a = await backend(t, 'a');
  const b = await backend(t, 'b');
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ id: 'a', address: a.address }, { id: 'b', address: b.address }] }], admin: { port: 0, token: 'tok' } });
  const admin = `http://127.0.0.1:${lb.admin!.port}`;
  const auth = { authorization: 'Bearer tok' };
  assert.equal((await request(admin, { path: '/pools' })).status, 401);
  const pools = JSON.parse((await request(admin, { path: '/pools', headers: auth })).body) as { pools: { name: string; algorithm: string; backends: { id: string; state: string }[] }[] };
  assert.equal(pools.pools[0]!.name, 'app');
  assert.deepEqual(pools.pools[0]!.backends.map((x) => [x.id, x.state]), [['a', 'up'], ['b', 'up']]);
  assert.equal((await request(admin, { method: 'POST', path: '/pools/app/backends/a/drain', headers: auth })).status, 200);
  const before = a.seen.length;
  for (let i = 0; i < 6; i++) assert.equal((await request(lb.url)).body, 'b');
  assert.equal(a.seen.length, before, 'a draining backend takes no new requests');
  assert.equal((await request(admin, { method: 'POST', path: '/pools/app/backends/a/enable', headers: auth })).status, 200);
  const put = await request(admin, { method: 'PUT', path: '/pools/app/algorithm', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ algorithm: 'least-connections' }) });
  assert.equal(put.status, 200);
  assert.equal(lb.state().pools.get('app')!.pool.picker.algorithm, 'least-connections');
  const bad = await request(admin, { method: 'PUT', path: '/pools/app/algorithm', headers: auth, body: JSON.stringify({ algorithm: 'magic' }) });
  assert.equal(bad.status, 400);
  assert.equal((await request(admin, { method: 'POST', path: '/pools/nope/backends/a/drain', headers: auth })).status, 404);
  const metrics = await request(admin, { path: '/metrics' });
  assert.match(metrics.body, /archlab_balancer_requests_total\{pool="app",backend="b",code="200"\} 6/);
  assert.match(metrics.body, /archlab_balancer_request_duration_seconds_bucket/);
  assert.equal((await request(admin, { path: '/healthz' })).status, 200);
});

test('hot reload swaps pools and algorithm without dropping an in-flight request; a bad config is refused', async (t) => {
  const slow = await backend(t, 'slow', (req, res) => {
    if (req.url !== '/slow') return false;
    setTimeout(() => res.end('slow done'), 400);
    return true;
  });
  const fresh = await backend(t, 'fresh');
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ id: 'slow', address: slow.address }] }] });
  const inflight = request(lb.url, { path: '/slow' });
  await sleep(100);
  await lb.reload({ listeners: [{ port: 0 }], accessLog: false, pools: [{ name: 'app', algorithm: 'p2c', backends: [{ id: 'fresh', address: fresh.address }] }] });
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'slow done');
  assert.equal((await request(lb.url)).body, 'fresh');
  assert.equal(lb.state().pools.get('app')!.pool.picker.algorithm, 'p2c');
  await assert.rejects(lb.reload({ listeners: [{ port: 0 }], pools: [{ name: 'app', backends: [{ address: 'not an address' }] }] }), /address/);
  assert.equal((await request(lb.url)).body, 'fresh', 'the running config keeps serving');
});

test('WebSocket upgrade is passed through to the backend and bytes flow both ways', async (t) => {
  const ws = await backend(t, 'ws');
  const upgraded: net.Socket[] = [];
  ws.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    upgraded.push(socket);
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Path: ' + req.url + '\r\n\r\n');
    socket.on('data', (d) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
  });
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: ws.address }] }] });
  const sock = net.connect(lb.listeners[0]!.port, '127.0.0.1');
  t.after(() => sock.destroy());
  sock.write('GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  let got = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new assert.AssertionError({ message: `no echo; got ${JSON.stringify(got)}` })), 5000);
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n\r\n') && !got.includes('echo:')) sock.write('ping');
      if (got.includes('echo:ping')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  assert.match(got, /^HTTP\/1\.1 101/);
  assert.match(got, /X-Path: \/chat/);
  // Upgraded sockets belong to no server any more: close them, or server.close() waits on them.
  sock.destroy();
  for (const s of upgraded) s.destroy();
});

test('TLS: certificates by SNI, TLS 1.2 minimum, HTTP/2 and HTTP/1.1 by ALPN, HTTP->HTTPS redirect', async (t) => {
  const app = await backend(t, 'app');
  const lb = await balancer(t, {
    listeners: [
      {
        port: 0,
        tls: {
          http2: true,
          certificates: [
            { cert: join(certs, 'example.crt'), key: join(certs, 'example.key'), serverNames: ['example.test', '*.example.test'] },
            { cert: join(certs, 'other.crt'), key: join(certs, 'other.key'), serverNames: ['other.test'] },
          ],
        },
      },
      { port: 0, redirectToHttpsPort: 8443 },
    ],
    pools: [{ name: 'app', backends: [{ address: app.address }] }],
  });
  const port = lb.listeners[0]!.port;
  const subject = (servername: string, ca: Buffer): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername, ca }, () => {
        resolve(String(s.getPeerCertificate().subject.CN));
        s.end();
      });
      s.on('error', reject);
    });
  assert.equal(await subject('other.test', otherCa), 'other.test');
  assert.equal(await subject('www.example.test', exampleCa), 'example.test');
  await assert.rejects(
    new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername: 'example.test', ca: exampleCa, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, () => resolve(s));
      s.on('error', reject);
    }),
  );
  // HTTP/2
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: exampleCa, servername: 'example.test' });
  t.after(() => session.close());
  const h2 = await new Promise<{ status: number; body: string; alpn: string | false | undefined }>((resolve, reject) => {
    const req = session.request({ ':path': '/h2', ':method': 'GET', ':authority': 'example.test' });
    let body = '';
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => resolve({ status, body, alpn: session.alpnProtocol }));
    req.on('error', reject);
    req.end();
  });
  assert.deepEqual(h2, { status: 200, body: 'app', alpn: 'h2' });
  assert.equal(app.seen.at(-1)!.headers['x-forwarded-proto'], 'https');
  assert.equal(app.seen.at(-1)!.headers.host, 'example.test');
  // HTTP/1.1 over TLS
  const h1 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/h1', servername: 'example.test', ca: exampleCa, agent: false, headers: { host: 'example.test' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.deepEqual(h1, { status: 200, body: 'app' });
  // Redirect listener
  const redirect = await request(`http://127.0.0.1:${lb.listeners[1]!.port}`, { path: '/a?b=1', headers: { host: 'example.test' } });
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.location, 'https://example.test:8443/a?b=1');
});

test('certificates are re-read on reload without a restart; TLS to a backend', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(join(certs, 'example.crt'), join(dir, 'live.crt'));
  copyFileSync(join(certs, 'example.key'), join(dir, 'live.key'));
  // A backend that itself speaks TLS (with the other certificate).
  const tlsBackend = https.createServer({ cert: otherCa, key: readFileSync(join(certs, 'other.key')) }, (req, res) => res.end(`tls backend saw ${req.url}`));
  await new Promise<void>((r) => tlsBackend.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => tlsBackend.close(() => r())));
  const backendPort = (tlsBackend.address() as net.AddressInfo).port;
  const config = {
    listeners: [{ port: 0, tls: { http2: false, certificates: [{ cert: join(dir, 'live.crt'), key: join(dir, 'live.key'), serverNames: [] }] } }],
    pools: [{ name: 'app', backends: [{ address: `127.0.0.1:${backendPort}`, tls: true }] }],
    accessLog: false,
  };
  const lb = await balancer(t, config);
  const port = lb.listeners[0]!.port;
  const cn = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername: 'anything.test', rejectUnauthorized: false }, () => {
        resolve(String(s.getPeerCertificate().subject.CN));
        s.end();
      });
      s.on('error', reject);
    });
  assert.equal(await cn(), 'example.test');
  const viaTls = await new Promise<string>((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/secure', rejectUnauthorized: false, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  assert.equal(viaTls, 'tls backend saw /secure');
  copyFileSync(join(certs, 'other.crt'), join(dir, 'live.crt'));
  copyFileSync(join(certs, 'other.key'), join(dir, 'live.key'));
  await lb.reload({ ...config, listeners: [{ ...config.listeners[0]!, port }] });
  assert.equal(await cn(), 'other.test', 'the new certificate is served after reload');
});

test('access log: one JSON line per request with pool, backend, status and phase timings', async (t) => {
  const a = await backend(t, 'a');
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const lb = await startBalancer(
    { listeners: [{ port: 0 }], metrics: { defaultMetrics: false }, pools: [{ name: 'app', backends: [{ id: 'a', address: a.address }] }] },
    { logger: createLogger({ level: 'info', destination: sink }) },
  );
  t.after(() => lb.close());
  await request(`http://127.0.0.1:${lb.listeners[0]!.port}`, { path: '/logged', headers: { 'x-request-id': 'req-123' } });
  const access = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.type === 'access');
  assert.ok(access, `an access line among ${lines.length}`);
  assert.equal(access.requestId, 'req-123');
  assert.equal(access.pool, 'app');
  assert.equal(access.backend, 'a');
  assert.equal(access.status, 200);
  assert.equal(access.path, '/logged');
  assert.equal(access.client, '127.0.0.1');
  const timings = access.timings as Record<string, number>;
  for (const k of ['queueMs', 'connectMs', 'upstreamMs', 'totalMs']) assert.equal(typeof timings[k], 'number', k);
  assert.ok(timings.totalMs! >= timings.upstreamMs!);
});
