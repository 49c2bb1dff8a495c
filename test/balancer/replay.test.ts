/**
 * Replayable request bodies end to end: a body of declared length up to retries.maxBody is read whole
 * before the first attempt, so a POST can be sent again after a connect failure (always) or a
 * connection reset before any response byte (with an Idempotency-Key), never after a 502/503 answer;
 * larger and chunked bodies stream through and are never retried. Raw backends on loopback.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { SeededRandom } from '../../src/core/random.js';
import { backend, balancer, deadPort, liveBackend, request, sleep, waitFor, type Reply } from './helpers.js';

const KEY = { 'idempotency-key': '6d0b5e0c-4d0a-4c1e-9a57-1f0f3a0c2b7e' };

/** A backend that keeps every body it receives, and answers 200 with the body's length and sha256. */
async function recorder(t: TestContext, name: string): Promise<{ address: string; bodies: Buffer[]; heads: number; keys: (string | undefined)[]; expects: (string | undefined)[] }> {
  const out = { address: '', bodies: [] as Buffer[], heads: 0, keys: [] as (string | undefined)[], expects: [] as (string | undefined)[] };
  const be = await backend(t, name, (req, res) => {
    out.heads++;
    out.keys.push(req.headers['idempotency-key'] as string | undefined);
    out.expects.push(req.headers.expect);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      out.bodies.push(body);
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name }).end(`${name} ${body.length} ${sha(body)}`);
    });
    return true;
  });
  out.address = be.address;
  return out;
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * A raw TCP backend that reads a request head (and `readBytes` more), then does `act`: reset the
 * connection (RST), or write a partial answer and reset. Counts the connections that sent bytes.
 */
async function rawBackend(t: TestContext, act: 'reset' | 'partial-then-reset'): Promise<{ address: string; requests: () => number }> {
  let requests = 0;
  const server = net.createServer((socket) => {
    let got = Buffer.alloc(0);
    let counted = false;
    socket.on('error', () => undefined);
    socket.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!counted) {
        counted = true;
        requests++;
      }
      if (act === 'partial-then-reset') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial');
      // Let the bytes (if any) leave before the RST.
      setTimeout(() => socket.resetAndDestroy(), act === 'reset' ? 0 : 50);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, requests: () => requests };
}

/** A pool of two backends, round robin, the first one asked first. */
function pool(first: string, second: string, retries: Record<string, unknown> = {}): { name: string; algorithm: 'round-robin'; backends: { id: string; address: string }[]; retries: Record<string, unknown> } {
  return { name: 'app', algorithm: 'round-robin', backends: [{ id: 'first', address: first }, { id: 'second', address: second }], retries };
}

test('a POST that meets a refused backend is retried on another and placed exactly once, its body byte-exact', async (t) => {
  const dead = await deadPort();
  const good = await recorder(t, 'good');
  const lb = await balancer(t, { pools: [pool(`127.0.0.1:${dead}`, good.address)], admin: { port: 0, token: 'admin-token-0123456789' } });
  const body = randomBytes(10_000);
  const r = await request(lb.url, { method: 'POST', path: '/api/orders', headers: { 'content-type': 'application/octet-stream' }, body });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, `good ${body.length} ${sha(body)}`);
  assert.equal(good.bodies.length, 1, 'the good backend saw the POST once');
  assert.ok(good.bodies[0]!.equals(body), 'byte-exact');
  assert.equal(liveBackend(lb, 'app', 'first').failures, 1, 'the refused backend was tried first');
  // Without an Idempotency-Key too: a connect failure means no backend saw the request.
  const metrics = await request(`http://127.0.0.1:${lb.admin!.port}`, { path: '/metrics', headers: { authorization: 'Bearer admin-token-0123456789' } });
  assert.match(metrics.body, /archlab_balancer_retries_total\{pool="app"\} 1/);
  assert.match(metrics.body, /archlab_balancer_buffered_request_bytes 0/, 'the held body was released');
});

test('a POST with an Idempotency-Key whose backend resets before answering is retried; without the key it is answered 502 and not retried', async (t) => {
  for (const act of ['reset', 'http-destroy'] as const) {
    const good = await recorder(t, 'good');
    let resetter: { address: string; requests: () => number };
    if (act === 'reset') resetter = await rawBackend(t, 'reset');
    else {
      // node:http reads the whole body, then the connection is destroyed without an answer.
      let n = 0;
      const be = await backend(t, 'destroyer', (req) => {
        n++;
        req.resume();
        req.on('end', () => req.socket.destroy());
        return true;
      });
      resetter = { address: be.address, requests: () => n };
    }
    const body = randomBytes(3000);
    const keyed = await balancer(t, { pools: [pool(resetter.address, good.address)] });
    const r = await request(keyed.url, { method: 'POST', path: '/api/orders', headers: KEY, body });
    assert.equal(r.status, 200, `${act}: ${r.body}`);
    assert.equal(resetter.requests(), 1, `${act}: the resetting backend got the request first`);
    assert.equal(good.bodies.length, 1);
    assert.ok(good.bodies[0]!.equals(body), `${act}: byte-exact`);
    assert.equal(good.keys[0], KEY['idempotency-key'], 'the key reaches the backend unchanged: it is the backend\'s to honour');

    const plain = await balancer(t, { pools: [pool(resetter.address, good.address)] });
    const before = good.bodies.length;
    const r2 = await request(plain.url, { method: 'POST', path: '/api/orders', body });
    assert.equal(r2.status, 502, `${act}: ${r2.body}`);
    assert.equal(r2.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_RESET');
    assert.equal(resetter.requests(), 2);
    assert.equal(good.bodies.length, before, `${act}: a POST without a key may have been acted on: never sent twice`);
  }
});

test('the key header is configurable (retries.idempotencyKeyHeader), matched case-insensitively; an empty key does not count', async (t) => {
  const resetter = await rawBackend(t, 'reset');
  const good = await recorder(t, 'good');
  const lb = await balancer(t, { pools: [pool(resetter.address, good.address, { idempotencyKeyHeader: 'X-Request-Key' })] });
  assert.equal((await request(lb.url, { method: 'POST', path: '/a', headers: { 'X-REQUEST-KEY': 'k1' }, body: 'one' })).status, 200);
  assert.equal(good.bodies.length, 1);
  const other = await balancer(t, { pools: [pool(resetter.address, good.address, { idempotencyKeyHeader: 'X-Request-Key' })] });
  // The default header name means nothing to this pool.
  assert.equal((await request(other.url, { method: 'POST', path: '/b', headers: KEY, body: 'two' })).status, 502);
  const third = await balancer(t, { pools: [pool(resetter.address, good.address)] });
  assert.equal((await request(third.url, { method: 'POST', path: '/c', headers: { 'idempotency-key': '' }, body: 'three' })).status, 502);
  assert.equal(good.bodies.length, 1);
});

test('a response byte already sent ends the retries: a POST with a key whose backend answers partly and then resets is not retried', async (t) => {
  const partial = await rawBackend(t, 'partial-then-reset');
  const good = await recorder(t, 'good');
  const lb = await balancer(t, { pools: [pool(partial.address, good.address)] });
  const outcome = await request(lb.url, { method: 'POST', path: '/p', headers: KEY, body: 'payload' }).then(
    (r: Reply) => `answered ${r.status} ${r.body}`,
    (err: Error) => `failed: ${err.message}`,
  );
  assert.match(outcome, /^failed|^answered 200 partial/, outcome);
  assert.equal(partial.requests(), 1);
  assert.equal(good.bodies.length, 0);
});

test('a POST answered 503 is passed on, never retried, key or not; a PUT (idempotent) with a body is retried', async (t) => {
  let busySeen = 0;
  const busy = await backend(t, 'busy', (req, res) => {
    busySeen++;
    req.resume();
    req.on('end', () => res.writeHead(503, { 'content-type': 'text/plain' }).end('busy'));
    return true;
  });
  const good = await recorder(t, 'good');
  for (const headers of [{}, KEY]) {
    const lb = await balancer(t, { pools: [pool(busy.address, good.address)] });
    const r = await request(lb.url, { method: 'POST', path: '/orders', headers, body: 'order' });
    assert.equal(r.status, 503);
    assert.equal(r.body, 'busy', 'the backend\'s own answer');
  }
  assert.equal(busySeen, 2);
  assert.equal(good.bodies.length, 0, 'the backend may have acted: not sent again');
  const lb = await balancer(t, { pools: [pool(busy.address, good.address)] });
  const put = await request(lb.url, { method: 'PUT', path: '/doc/1', body: 'version 2' });
  assert.equal(put.status, 200);
  assert.equal(good.bodies[0]!.toString(), 'version 2');
  assert.equal(busySeen, 3);
});

/** Sends a request head and the first `split` bytes of `body` on a raw socket; `rest()` sends the remainder. */
function partialUpload(port: number, head: string, body: Buffer, split: number): { rest(): void; reply: Promise<string>; socket: net.Socket } {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(Buffer.concat([Buffer.from(head), body.subarray(0, split)]));
  const chunks: Buffer[] = [];
  const reply = new Promise<string>((resolve) => {
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const text = Buffer.concat(chunks).toString('latin1');
      // One answer is enough (its body is short): resolve once the head and a body are in.
      if (/\r\n\r\n[\s\S]+/.test(text)) resolve(text);
    });
    socket.on('error', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
  return { rest: () => socket.write(body.subarray(split)), reply, socket };
}

test('a body within maxBody reaches the backend only whole; one over it streams through (the backend sees it before the client is done) and is not retried', async (t) => {
  const good = await recorder(t, 'good');
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: good.address }], retries: { maxBody: '1KiB' } }] });
  const port = lb.listeners[0]!.port;
  const small = randomBytes(1024);
  const a = partialUpload(port, `POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: ${small.length}\r\nConnection: close\r\n\r\n`, small, 500);
  t.after(() => a.socket.destroy());
  await sleep(200);
  assert.equal(good.heads, 0, 'held until the whole body is in');
  a.rest();
  assert.match(await a.reply, /^HTTP\/1\.1 200 /);
  assert.ok(good.bodies[0]!.equals(small));

  const big = randomBytes(1025);
  const b = partialUpload(port, `POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\nConnection: close\r\n\r\n`, big, 500);
  t.after(() => b.socket.destroy());
  assert.ok(await waitFor(() => good.heads === 2, 3000), 'over maxBody: forwarded while the client is still sending');
  b.rest();
  assert.match(await b.reply, /^HTTP\/1\.1 200 /);
  assert.ok(good.bodies[1]!.equals(big));

  // And over maxBody nothing is retried: a refused backend first means a 502.
  const dead = await deadPort();
  const lb2 = await balancer(t, { pools: [pool(`127.0.0.1:${dead}`, good.address, { maxBody: '1KiB' })] });
  const r = await request(lb2.url, { method: 'PUT', path: '/big', body: big });
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_CONNECT');
  assert.equal(good.bodies.length, 2);
});

test('a chunked body is not buffered: it streams to the backend as it comes, and a connect failure is answered 502', async (t) => {
  const good = await recorder(t, 'good');
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: good.address }] }] });
  const port = lb.listeners[0]!.port;
  const c = partialUpload(port, 'POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n', Buffer.from('5\r\nhello\r\n0\r\n\r\n'), 10);
  t.after(() => c.socket.destroy());
  assert.ok(await waitFor(() => good.heads === 1, 3000), 'forwarded before the body ended');
  c.rest();
  assert.match(await c.reply, /^HTTP\/1\.1 200 /);
  assert.equal(good.bodies[0]!.toString(), 'hello');

  const dead = await deadPort();
  const lb2 = await balancer(t, { pools: [pool(`127.0.0.1:${dead}`, good.address)] });
  const r = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${lb2.url}/chunked`, { method: 'POST', agent: false, headers: KEY }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.write('a chunk');
    req.end(' and another');
  });
  assert.equal(r, 502, 'a streamed body cannot be sent twice');
  assert.equal(good.bodies.length, 1);
});

test('byte-exact: bodies of random sizes up to maxBody, each retried once after a refused backend', async (t) => {
  const seed = Number(process.env.ARCHLAB_TEST_SEED ?? Date.now() % 1_000_000);
  const random = new SeededRandom(seed);
  const dead = await deadPort();
  const good = await recorder(t, 'good');
  const limit = 64 * 1024;
  const lb = await balancer(t, { pools: [pool(`127.0.0.1:${dead}`, good.address, { budgetRatio: 1, minPerSecond: 1000 })] });
  const sizes = [1, 2, 1023, 1024, 16_384, limit - 1, limit, ...Array.from({ length: 13 }, () => 1 + random.int(limit))];
  for (const [i, size] of sizes.entries()) {
    const body = randomBytes(size);
    const r = await request(lb.url, { method: 'POST', path: `/b${i}`, headers: KEY, body });
    assert.equal(r.status, 200, `seed ${seed}, size ${size}: ${r.body}`);
    assert.equal(r.body, `good ${size} ${sha(body)}`, `seed ${seed}, size ${size}`);
    assert.ok(good.bodies[i]!.equals(body), `seed ${seed}, size ${size}`);
  }
  assert.equal(liveBackend(lb, 'app', 'first').failures, sizes.length, `seed ${seed}: every request met the refused backend first`);
  // One byte over the limit streams: not retried.
  const over = await request(lb.url, { method: 'POST', path: '/over', headers: KEY, body: randomBytes(limit + 1) });
  assert.equal(over.status, 502, `seed ${seed}`);
  assert.equal(good.bodies.length, sizes.length);
});

test('the retry budget still bounds retries of POSTs: with budgetRatio 0 and minPerSecond 0 a refused POST gets 502', async (t) => {
  const dead = await deadPort();
  const good = await recorder(t, 'good');
  const lb = await balancer(t, { pools: [pool(`127.0.0.1:${dead}`, good.address, { budgetRatio: 0, minPerSecond: 0 })] });
  const r = await request(lb.url, { method: 'POST', path: '/p', headers: KEY, body: 'payload' });
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_CONNECT');
  assert.equal(good.bodies.length, 0, 'no retry was allowed');
  // retries.attempts 0: nothing is retried either.
  const none = await balancer(t, { pools: [pool(`127.0.0.1:${dead}`, good.address, { attempts: 0 })] });
  assert.equal((await request(none.url, { method: 'POST', path: '/p', body: 'payload' })).status, 502);
  assert.equal(good.bodies.length, 0);
});

test('a client that leaves mid-body, or is too slow (timeouts.request), never reaches a backend; the held bytes are released', async (t) => {
  const good = await recorder(t, 'good');
  const lb = await balancer(t, {
    pools: [{ name: 'app', backends: [{ address: good.address }] }],
    timeouts: { headers: '300ms', request: '400ms', drain: '500ms' },
    admin: { port: 0, token: 'admin-token-0123456789' },
  });
  const port = lb.listeners[0]!.port;
  const body = randomBytes(2000);
  const gone = partialUpload(port, `POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, body, 700);
  await sleep(100);
  gone.socket.destroy();
  const slow = partialUpload(port, `POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, body, 700);
  t.after(() => slow.socket.destroy());
  // The balancer's 408, or node:http's own request timeout closing the connection (whichever sweep
  // comes first: node:http cannot answer once the request is being handled).
  assert.match(await slow.reply, /^(HTTP\/1\.1 408 [\s\S]*|)$/);
  assert.equal(good.heads, 0);
  const metrics = await request(`http://127.0.0.1:${lb.admin!.port}`, { path: '/metrics', headers: { authorization: 'Bearer admin-token-0123456789' } });
  assert.match(metrics.body, /archlab_balancer_buffered_request_bytes 0/);
  // Still serving.
  assert.equal((await request(lb.url, { method: 'POST', path: '/after', body: 'ok' })).status, 200);
});

test('HTTP/2: a POST with a content-length is replayable after a refused backend; one without streams and is answered 502', async (t) => {
  const certs = join(import.meta.dirname, '..', '..', 'examples', 'balancer', 'certs');
  const dead = await deadPort();
  const good = await recorder(t, 'good');
  const lb = await balancer(t, {
    listeners: [{ port: 0, tls: { http2: true, certificates: [{ cert: join(certs, 'example.crt'), key: join(certs, 'example.key'), serverNames: ['example.test'] }] } }],
    pools: [pool(`127.0.0.1:${dead}`, good.address)],
    timeouts: { drain: '500ms' },
  });
  const session = http2.connect(`https://127.0.0.1:${lb.listeners[0]!.port}`, { ca: readFileSync(join(certs, 'example.crt')), servername: 'example.test' });
  t.after(() => session.close());
  const post = (body: Buffer, declared: boolean): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = session.request({ ':path': '/h2', ':method': 'POST', ':authority': 'example.test', ...(declared ? { 'content-length': String(body.length) } : {}) });
      let text = '';
      let status = 0;
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => resolve({ status, body: text }));
      req.on('error', reject);
      req.end(body);
    });
  const body = randomBytes(5000);
  const r = await post(body, true);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, `good ${body.length} ${sha(body)}`);
  const undeclared = await post(body, false);
  assert.equal(undeclared.status, 502, 'no declared length: streamed, not retried');
  assert.equal(good.bodies.length, 1);
  // Closed here, before the balancer (which would otherwise wait timeouts.drain for the session).
  await new Promise<void>((resolve) => session.close(resolve));

  // HTTP/2 has no node:http request timeout: the balancer's own bounds the reading (408).
  const strict = await balancer(t, {
    listeners: [{ port: 0, tls: { http2: true, certificates: [{ cert: join(certs, 'example.crt'), key: join(certs, 'example.key'), serverNames: ['example.test'] }] } }],
    pools: [{ name: 'app', backends: [{ address: good.address }] }],
    timeouts: { headers: '200ms', request: '300ms', drain: '500ms' },
  });
  const s2 = http2.connect(`https://127.0.0.1:${strict.listeners[0]!.port}`, { ca: readFileSync(join(certs, 'example.crt')), servername: 'example.test' });
  const status = await new Promise<number>((resolve, reject) => {
    const req = s2.request({ ':path': '/slow', ':method': 'POST', ':authority': 'example.test', 'content-length': '100' });
    req.on('response', (h) => {
      resolve(Number(h[':status']));
      req.close(); // the client gives up its upload, as one answered early does
    });
    req.on('error', reject);
    req.write(Buffer.alloc(50)); // and never the rest
  });
  assert.equal(status, 408);
  assert.equal(good.heads, 1, 'the slow body reached no backend');
  await new Promise<void>((resolve) => s2.close(resolve));
});

test('Expect: 100-continue is met by the balancer (node:http sends 100 Continue) and not forwarded; the body is read whole and retried like any other', async (t) => {
  const dead = await deadPort();
  const good = await recorder(t, 'good');
  const lb = await balancer(t, { pools: [pool(`127.0.0.1:${dead}`, good.address)] });
  const body = randomBytes(2048);
  const reply = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
    let continued = false;
    const req = http.request(`${lb.url}/upload`, { method: 'POST', agent: false, headers: { expect: '100-continue', 'content-length': String(body.length) } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, continued }));
    });
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('error', reject);
  });
  assert.deepEqual([reply.status, reply.continued], [200, true], reply.body);
  assert.equal(good.expects[0], undefined, 'no Expect reached the backend');
  assert.equal(reply.body, `good ${body.length} ${sha(body)}`);
  assert.equal(liveBackend(lb, 'app', 'first').failures, 1, 'retried after the refused backend');
});
