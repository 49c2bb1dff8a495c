/**
 * Bad input from clients and failures of backends, end to end over loopback: every case checks the
 * status the client gets, that nothing (or not everything) reached the backend, and that the
 * balancer still serves a normal request afterwards.
 */
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { backend, balancer, deadPort, liveBackend, request, sleep, type TestBackend } from './helpers.js';

interface RawReply {
  /** Everything the server sent, as latin1 text. */
  data: string;
  /** Status of the first response line, if one arrived. */
  status: number | undefined;
  /** Whether the server closed (or reset) the connection before the timeout. */
  closed: boolean;
}

function statusOf(data: string): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
  return m ? Number(m[1]) : undefined;
}

/**
 * Writes `bytes` on a fresh TCP connection and collects what comes back until the server closes
 * the connection or `timeoutMs` passes (then the socket is destroyed). Never rejects: a reset counts
 * as a close.
 */
function rawExchange(port: number, bytes: string | Buffer, timeoutMs = 5000): Promise<RawReply> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const data = Buffer.concat(chunks).toString('latin1');
      resolve({ data, status: statusOf(data), closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('connect', () => socket.write(bytes));
  });
}

async function setup(t: TestContext, extra: Record<string, unknown> = {}, handler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean | void): Promise<{ be: TestBackend; lb: Awaited<ReturnType<typeof balancer>>; port: number }> {
  const be = await backend(t, 'be', handler);
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ id: 'be', address: be.address }] }], timeouts: { drain: '500ms' }, ...extra });
  return { be, lb, port: lb.listeners[0]!.port };
}

async function stillServes(url: string): Promise<void> {
  const r = await request(url, { path: '/after' });
  assert.equal(r.status, 200, 'the balancer still serves a normal request');
  assert.equal(r.body, 'be');
}

/** Requests the backend saw other than the `/after` probe. */
function reached(be: TestBackend): string[] {
  return be.seen.filter((s) => s.url !== '/after').map((s) => `${s.method} ${s.url}`);
}

test('a malformed request line gets 400 and reaches no backend', async (t) => {
  const { be, lb, port } = await setup(t);
  for (const line of ['GET /\r\n\r\n', 'GE T / HTTP/1.1\r\nHost: x\r\n\r\n', 'GET / HTTP/9.9\r\nHost: x\r\n\r\n', '\x00\x01\x02 junk\r\n\r\n']) {
    const r = await rawExchange(port, line);
    assert.equal(r.status, 400, `${JSON.stringify(line)} -> ${JSON.stringify(r.data.slice(0, 40))}`);
    assert.ok(r.closed, 'the connection is closed after a 400');
  }
  assert.deepEqual(reached(be), []);
  await stillServes(lb.url);
});

test('a malformed header line gets 400 and reaches no backend', async (t) => {
  const { be, lb, port } = await setup(t);
  for (const head of ['X-No-Colon\r\n', 'Bad Name: v\r\n', 'X-Ctl: a\x01b\r\n', ': empty-name\r\n']) {
    const r = await rawExchange(port, `GET /h HTTP/1.1\r\nHost: x\r\n${head}\r\n`);
    assert.equal(r.status, 400, JSON.stringify(head));
  }
  assert.deepEqual(reached(be), []);
  await stillServes(lb.url);
});

test('a header block over limits.maxHeader gets 431 and reaches no backend', async (t) => {
  const { be, lb, port } = await setup(t, { limits: { maxHeader: '2KiB' } });
  const r = await rawExchange(port, `GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(3000)}\r\n\r\n`);
  assert.equal(r.status, 431);
  // Many small headers count too.
  const many = Array.from({ length: 100 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}\r\n`).join('');
  const r2 = await rawExchange(port, `GET /many HTTP/1.1\r\nHost: x\r\n${many}\r\n`);
  assert.equal(r2.status, 431);
  // Just under the limit passes.
  const ok = await request(lb.url, { path: '/after', headers: { 'x-fits': 'a'.repeat(1500) } });
  assert.equal(ok.status, 200);
  assert.deepEqual(reached(be), []);
  await stillServes(lb.url);
});

test('request smuggling shapes get 400 (or a closed connection) and nothing reaches the backend', async (t) => {
  const { be, lb, port } = await setup(t);
  // Each carries a second request after the first one's body as one parser would frame it: a
  // smuggling proxy would forward "/smuggled". Neither request may reach the backend.
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  const shapes: Record<string, string> = {
    'Content-Length + Transfer-Encoding': `POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'Transfer-Encoding + Content-Length': `POST /te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${smuggled}`,
    'two differing Content-Length': `POST /cl-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n${smuggled}`,
    'obs-fold header': `GET /fold HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n  b\r\nContent-Length: 0\r\n\r\n${smuggled}`,
    'obs-fold Transfer-Encoding': `POST /fold-te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'Transfer-Encoding: xchunked': `POST /xchunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'Transfer-Encoding: chunked, identity': `POST /identity HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
    'Transfer-Encoding: gzip, chunked': `POST /gzip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'two Transfer-Encoding fields': `POST /te-te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n${smuggled}`,
    'Transfer-Encoding in HTTP/1.0': `POST /te-10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'two Host fields': `GET /hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n${smuggled}`,
  };
  for (const [name, bytes] of Object.entries(shapes)) {
    const r = await rawExchange(port, bytes);
    assert.ok(r.status === 400 || (r.status === undefined && r.closed), `${name}: got ${JSON.stringify(r.data.slice(0, 60))}`);
    assert.ok(r.closed, `${name}: the connection is closed`);
    assert.equal((r.data.match(/HTTP\/1\.1 /g) ?? []).length <= 1, true, `${name}: one response at most`);
  }
  // Let anything forwarded by mistake arrive before looking.
  await sleep(50);
  assert.deepEqual(reached(be), []);
  await stillServes(lb.url);
});

test('slowloris: headers trickled a byte every 100 ms are cut off, while another client is served', async (t) => {
  const { be, lb, port } = await setup(t, { timeouts: { headers: '500ms', request: '2s', drain: '500ms' } });
  const socket = net.connect(port, '127.0.0.1');
  t.after(() => socket.destroy());
  const received: Buffer[] = [];
  let closedAt: number | undefined;
  socket.on('data', (c: Buffer) => received.push(c));
  socket.on('error', () => undefined);
  socket.on('close', () => (closedAt ??= performance.now()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const t0 = performance.now();
  const text = `GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(200)}\r\n\r\n`;
  let served: Promise<http.IncomingHttpHeaders | number> | undefined;
  // At most 60 bytes (6 s) are trickled: far past the 500 ms headers timeout.
  for (let i = 0; i < 60 && closedAt === undefined; i++) {
    if (!socket.destroyed) socket.write(text[i]!);
    if (i === 3) served = request(lb.url, { path: '/after' }).then((r) => r.status);
    await sleep(100);
  }
  assert.notEqual(closedAt, undefined, 'the balancer closed the slow connection');
  assert.ok(closedAt! - t0 < 4000, `closed after ${Math.round(closedAt! - t0)} ms, long after the 500 ms headers timeout`);
  const status = statusOf(Buffer.concat(received).toString('latin1'));
  assert.ok(status === undefined || status === 408, `408 or a plain close, got ${status}`);
  assert.equal(await served, 200, 'another client was served meanwhile');
  assert.deepEqual(reached(be), []);
  await stillServes(lb.url);
});

test('a body over limits.maxBody gets 413: declared by Content-Length, or found while streaming chunked', async (t) => {
  let bytesSeen = 0;
  let endedWhole = false;
  const { be, lb, port } = await setup(t, { limits: { maxBody: '1KiB' } }, (req, res) => {
    if (req.url === '/after') return false;
    req.on('data', (c: Buffer) => (bytesSeen += c.length));
    req.on('end', () => {
      endedWhole = true;
      res.end('got it');
    });
    req.on('error', () => undefined);
    return true;
  });
  // Declared too large: refused before any backend is picked.
  const declared = await rawExchange(port, `POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n${'x'.repeat(4096)}`);
  assert.equal(declared.status, 413);
  assert.deepEqual(reached(be), []);
  // Exactly at the limit passes.
  const fits = await request(lb.url, { method: 'POST', path: '/fits', body: 'y'.repeat(1024) });
  assert.equal(fits.status, 200);
  assert.equal(bytesSeen, 1024);
  assert.equal(endedWhole, true);
  bytesSeen = 0;
  endedWhole = false;

  // Chunked, no length: 8 chunks of 512 bytes, the limit is crossed at the third.
  const chunk = `200\r\n${'z'.repeat(512)}\r\n`;
  const chunked = await rawExchange(port, `POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.repeat(8)}0\r\n\r\n`);
  assert.equal(chunked.status, 413, JSON.stringify(chunked.data.slice(0, 60)));
  await sleep(50);
  assert.ok(bytesSeen <= 1024, `the backend got ${bytesSeen} bytes, more than the 1 KiB limit`);
  assert.equal(endedWhole, false, 'the backend must not see the body end as if it were complete');
  await stillServes(lb.url);
});

test('a backend that resets the connection mid-request gives 502', async (t) => {
  const { be, lb } = await setup(t, {}, (req) => {
    if (req.url === '/after') return false;
    req.socket.destroy();
    return true;
  });
  const get = await request(lb.url, { path: '/reset' });
  assert.equal(get.status, 502);
  assert.equal(get.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_RESET');
  const post = await request(lb.url, { method: 'POST', path: '/reset', body: 'data' });
  assert.equal(post.status, 502);
  assert.deepEqual(reached(be), ['GET /reset', 'POST /reset']);
  await stillServes(lb.url);
});

test('a backend that never answers gives 504 after timeouts.response', async (t) => {
  const { be, lb } = await setup(t, { timeouts: { response: '300ms', drain: '500ms' } }, (req) => req.url !== '/after');
  const r = await request(lb.url, { path: '/hang', timeoutMs: 5000 });
  assert.equal(r.status, 504);
  assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_TIMEOUT');
  assert.deepEqual(reached(be), ['GET /hang'], 'a timed-out request is not retried');
  await stillServes(lb.url);
});

test('a pool whose only backend refuses connections gives 502 (connect failure, nowhere to retry)', async (t) => {
  const port = await deadPort();
  const good = await backend(t, 'be');
  const lb = await balancer(t, {
    pools: [
      { name: 'dead', backends: [{ address: `127.0.0.1:${port}` }] },
      { name: 'app', backends: [{ address: good.address }] },
    ],
    routes: [{ match: { pathPrefix: '/dead' }, pool: 'dead' }],
    defaultPool: 'app',
  });
  for (const method of ['GET', 'POST']) {
    const r = await request(lb.url, { method, path: '/dead', body: method === 'POST' ? 'x' : undefined });
    assert.equal(r.status, 502, method);
    assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_CONNECT', method);
  }
  assert.deepEqual(good.seen, []);
  await stillServes(lb.url);
});

test('every backend down or disabled gives 503 with Retry-After', async (t) => {
  const sick = await backend(t, 'sick', (req, res) => {
    if (req.url !== '/healthz') return false;
    res.writeHead(503).end();
    return true;
  });
  const other = await backend(t, 'be');
  const lb = await balancer(t, {
    pools: [
      { name: 'sick', backends: [{ id: 'sick', address: sick.address }], health: { active: { interval: '50ms', fall: 1, rise: 1 } } },
      { name: 'app', backends: [{ id: 'be', address: other.address }] },
    ],
    routes: [{ match: { pathPrefix: '/sick' }, pool: 'sick' }],
    defaultPool: 'app',
  });
  const deadline = performance.now() + 3000;
  while (liveBackend(lb, 'sick', 'sick').healthy && performance.now() < deadline) await sleep(10);
  assert.equal(liveBackend(lb, 'sick', 'sick').healthy, false, 'the failing health check marks the backend down');
  const down = await request(lb.url, { path: '/sick' });
  assert.equal(down.status, 503);
  assert.match(String(down.headers['retry-after']), /^\d+$/);
  assert.equal(down.headers['x-archlab-error'], 'ARCHLAB_NO_BACKEND');
  assert.equal(sick.seen.filter((s) => s.url !== '/healthz').length, 0);

  liveBackend(lb, 'app', 'be').disabled = true;
  const disabled = await request(lb.url, { path: '/x' });
  assert.equal(disabled.status, 503);
  assert.match(String(disabled.headers['retry-after']), /^\d+$/);
  assert.equal(other.seen.length, 0);
  liveBackend(lb, 'app', 'be').disabled = false;
  await stillServes(lb.url);
});

test('a backend that stalls mid-body is cut after timeouts.idle: the client sees the response end early, not hang', async (t) => {
  const { lb } = await setup(t, { timeouts: { idle: '300ms', response: '5s', drain: '500ms' } }, (req, res) => {
    if (req.url !== '/stall') return false;
    res.writeHead(200, { 'content-length': '100' });
    res.write('x'.repeat(10)); // then nothing: 90 bytes never come
    return true;
  });
  const { default: http } = await import('node:http');
  const outcome = await new Promise<{ status: number; bytes: number; ended: 'complete' | 'cut' }>((resolve, reject) => {
    const req = http.get(`${lb.url}/stall`, { agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, ended: res.complete ? 'complete' : 'cut' }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, bytes, ended: 'cut' }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, bytes, ended: 'cut' }));
    });
    req.setTimeout(5000, () => reject(new assert.AssertionError({ message: 'the balancer kept the stalled response open for 5 s' })));
    req.on('error', reject);
  });
  assert.equal(outcome.status, 200);
  assert.equal(outcome.bytes, 10);
  assert.equal(outcome.ended, 'cut');
  await stillServes(lb.url);
});
