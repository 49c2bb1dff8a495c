/** CONNECT tunnels: bytes both ways, TLS end to end (curl -x, HTTPS_PROXY, Node's tls over a tunnel), port policy, timeouts. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import * as tls from 'node:tls';
import { connect, curl, echoServer, echoThrough, findCurl, proxy, raw, waitFor } from './helpers.js';

const fixtures = join(import.meta.dirname, 'fixtures');
const cert = readFileSync(join(fixtures, 'localhost.crt'));
const key = readFileSync(join(fixtures, 'localhost.key'));

async function httpsServer(t: TestContext): Promise<number> {
  const server = https.createServer({ cert, key }, (req, res) => res.end(`secure ${req.url}`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as AddressInfo).port;
}

test('CONNECT opens a tunnel: 200, bytes both ways (also those sent with the request), bytes logged', async (t) => {
  const echo = await echoServer(t);
  const p = await proxy(t);
  const tunnel = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.equal(tunnel.status, 200);
  assert.match(tunnel.head, /^HTTP\/1\.1 200 Connection Established\r\nVia: 1\.1 archlab/);
  const payload = Buffer.alloc(256 * 1024, 7);
  const back = await echoThrough(tunnel, payload);
  assert.equal(Buffer.compare(back, payload), 0);
  tunnel.socket.end();
  assert.ok(await waitFor(() => p.access().some((l) => l.kind === 'connect')));
  const line = p.access().find((l) => l.kind === 'connect')!;
  assert.equal(line.status, 200);
  assert.equal(line.method, 'CONNECT');
  assert.equal(line.target, `127.0.0.1:${echo.port}`);
  assert.equal(line.bytesUp, payload.length);
  assert.equal(line.bytesDown, payload.length);

  // Bytes pipelined right behind the CONNECT head reach the target too.
  const early = await raw(p.port, `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\nearly-bytes`, 500);
  assert.equal(early.status, 200);
  assert.equal(early.body, 'early-bytes');
});

test('TLS end to end through a tunnel: Node tls, curl -x and HTTPS_PROXY', async (t) => {
  const port = await httpsServer(t);
  const p = await proxy(t);
  const tunnel = await connect(p.port, `localhost:${port}`);
  assert.equal(tunnel.status, 200);
  const secure = tls.connect({ socket: tunnel.socket, servername: 'localhost', ca: cert });
  await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
  const answer = await new Promise<string>((resolve) => {
    let s = '';
    secure.on('data', (d: Buffer) => (s += d.toString()));
    secure.on('end', () => resolve(s));
    secure.write('GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  });
  assert.match(answer, /secure \/tls$/);

  if (!(await findCurl())) return t.skip('curl not installed');
  const flag = await curl(['--cacert', join(fixtures, 'localhost.crt'), '-x', p.url, `https://localhost:${port}/curl`]);
  assert.equal(flag.stdout, 'secure /curl', flag.stderr);
  const env = await curl(['--cacert', join(fixtures, 'localhost.crt'), `https://localhost:${port}/env`], { https_proxy: p.url, HTTPS_PROXY: p.url });
  assert.equal(env.stdout, 'secure /env', env.stderr);
});

test('default policy: CONNECT only to port 443; a refused or unreachable target answers 502', async (t) => {
  const echo = await echoServer(t);
  const strict = await proxy(t, { acl: { ssrfGuard: { exceptions: ['127.0.0.1'] } } });
  const denied = await connect(strict.port, `127.0.0.1:${echo.port}`);
  assert.equal(denied.status, 403);
  assert.match(denied.head, /x-archlab-error: ARCHLAB_PROXY_DENIED/);
  const loose = await proxy(t);
  const dead = await connect(loose.port, '127.0.0.1:1');
  assert.equal(dead.status, 502);
  assert.equal(strict.access().at(-1)!.reason, 'port');
  assert.equal(loose.access().at(-1)!.reason, 'upstream-connect');
});

test('an idle tunnel is closed after timeouts.idle; a connect that hangs answers 504 after timeouts.connect', async (t) => {
  const echo = await echoServer(t);
  const p = await proxy(t, { timeouts: { idle: '200ms', drain: '1s' } });
  const tunnel = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.equal(tunnel.status, 200);
  const t0 = performance.now();
  await new Promise<void>((r) => tunnel.socket.on('close', () => r()));
  const idleFor = performance.now() - t0;
  assert.ok(idleFor >= 150 && idleFor < 3000, `closed after ${idleFor} ms`);

  // A name that resolves to an address nobody answers (TEST-NET-1, excepted from the guard here);
  // where the sandbox has no route at all, the connect fails at once with 502 instead.
  const p2 = await proxy(t, { timeouts: { connect: '200ms', drain: '1s' }, acl: { connectPorts: ['1-65535'], ssrfGuard: { exceptions: ['192.0.2.0/24'] } } }, {
    lookup: async () => [{ address: '192.0.2.1', family: 4 }],
  });
  const hang = await connect(p2.port, 'blackhole.test:443');
  assert.ok(hang.status === 504 || hang.status === 502, `status ${hang.status}`);
});

test('tunnels survive past the request timeout (only idleness ends them)', async (t) => {
  const echo = await echoServer(t);
  const p = await proxy(t, { timeouts: { request: '300ms', headers: '200ms', idle: '5s', drain: '1s' } });
  const tunnel = await connect(p.port, `127.0.0.1:${echo.port}`);
  assert.equal(tunnel.status, 200);
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const back = await echoThrough(tunnel, Buffer.from(`tick ${i}`));
    assert.equal(back.toString(), `tick ${i}`);
    tunnel.rest = Buffer.alloc(0);
  }
  tunnel.socket.destroy();
});
