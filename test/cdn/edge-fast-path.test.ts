/** The edge's fast path on the wire: raw sockets, pipelining, hand-off to node:http, close. */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { CdnError } from '../../src/cdn/errors.js';
import { send, startOrigin, startTestEdge, type Origin, type TestEdge } from '../../src/cdn/edge/test-helpers.js';

async function setup(t: TestContext, fastPath = true): Promise<{ e: TestEdge; origin: Origin; port: number }> {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/private') {
      res.writeHead(200, { 'cache-control': 'private', 'content-length': '7' });
      res.end('private');
      return;
    }
    const body = `body of ${req.url}`;
    res.writeHead(200, { 'cache-control': 'max-age=100', etag: `"${req.url}"`, 'content-length': String(body.length) });
    res.end(body);
  });
  const e = await startTestEdge(origin.url, { fastPath });
  t.after(async () => {
    await e.close();
    await origin.close();
  });
  return { e, origin, port: Number(new URL(e.url).port) };
}

/** Writes `raw` on one connection (in the given pieces) and reads until `responses` responses have arrived (bounded by 5 s). */
function exchange(port: number, pieces: string[], responses: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new CdnError('ARCHLAB_CDN_UPSTREAM_TIMEOUT', `the test client timed out; got so far:\n${got}`));
    }, 5000);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      got += d;
      if ((got.match(/HTTP\/1\.1 \d{3} /g) ?? []).length >= responses && complete(got, responses)) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    void (async () => {
      for (const p of pieces) {
        s.write(p);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  });
}

/** True once the last of `n` responses has its whole Content-Length body (or is bodiless). */
function complete(text: string, n: number): boolean {
  const parts = text.split(/(?=HTTP\/1\.1 \d{3} )/).filter((p) => p !== '');
  if (parts.length < n) return false;
  const last = parts[n - 1]!;
  const headEnd = last.indexOf('\r\n\r\n');
  if (headEnd < 0) return false;
  if (/^HTTP\/1\.1 (304|204)/.test(last) || /x-fast-head: 1/i.test(last)) return true;
  const m = /\r\ncontent-length: (\d+)/i.exec(last.slice(0, headEnd));
  return m === null || last.length - headEnd - 4 >= Number(m[1]);
}

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: example.test\r\n${extra}\r\n`;

test('pipelined hits are answered in order from the fast path; a miss among them goes to node:http, still in order', async (t) => {
  const { port, origin } = await setup(t);
  await send(`http://127.0.0.1:${port}`, '/a');
  await send(`http://127.0.0.1:${port}`, '/b');
  assert.equal(origin.count(), 2);
  const out = await exchange(port, [get('/a') + get('/b') + get('/c') + get('/a')], 4);
  const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
  assert.deepEqual(statuses, ['200', '200', '200', '200']);
  const bodies = [...out.matchAll(/body of (\/\w)/g)].map((m) => m[1]);
  assert.deepEqual(bodies, ['/a', '/b', '/c', '/a'], 'responses in request order');
  const xcache = [...out.matchAll(/x-cache: (\w+)/gi)].map((m) => m[1]);
  assert.deepEqual(xcache, ['HIT', 'HIT', 'MISS', 'HIT']);
  assert.equal(origin.count('/c'), 1);
  assert.equal(origin.count(), 3, 'only the miss reached the origin');
});

test('a request head split across writes is handed to node:http and answered whole', async (t) => {
  const { port } = await setup(t);
  await send(`http://127.0.0.1:${port}`, '/a');
  const out = await exchange(port, ['GET /a HTTP/1.1\r\nHo', 'st: example.test\r\n\r\n'], 1);
  assert.match(out, /^HTTP\/1\.1 200/);
  assert.match(out, /x-cache: HIT/i);
  assert.match(out, /body of \/a$/);
});

test('heads the fast path does not accept meet node:http: a body-framing request is parsed by node, two Hosts get 400 (RFC 9112 3.2)', async (t) => {
  const { port, origin } = await setup(t);
  await send(`http://127.0.0.1:${port}`, '/a');
  // node:http's own answer carries its capitalised hop fields; the fast path writes them in lower case.
  const framed = await exchange(port, ['GET /a HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'], 1);
  assert.match(framed, /^HTTP\/1\.1 200/);
  assert.match(framed, /\r\nConnection: keep-alive\r\n/, 'answered by node:http');
  const twoHosts = await exchange(port, ['GET /a HTTP/1.1\r\nHost: example.test\r\nHost: other.test\r\n\r\n'], 1);
  assert.match(twoHosts, /^HTTP\/1\.1 400/);
  const plain = await exchange(port, [get('/a')], 1);
  assert.match(plain, /\r\nconnection: keep-alive\r\n/, 'a plain hit is answered by the fast path');
  assert.equal(origin.count(), 1);
});

test('HEAD hit has the head and no body; conditionals, Range and Cache-Control take the full path (304, 206, revalidation)', async (t) => {
  const { port } = await setup(t);
  await send(`http://127.0.0.1:${port}`, '/a');
  const head = await send(`http://127.0.0.1:${port}`, '/a', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String('body of /a'.length));
  assert.equal(head.body.length, 0);
  assert.equal(head.headers['x-cache'], 'HIT');
  const inm = await send(`http://127.0.0.1:${port}`, '/a', { headers: { 'if-none-match': '"/a"' } });
  assert.equal(inm.status, 304);
  const range = await send(`http://127.0.0.1:${port}`, '/a', { headers: { range: 'bytes=0-3' } });
  assert.equal(range.status, 206);
  assert.equal(range.text, 'body');
});

test('the fast path answers exactly what node:http answers for a hit, but for hop fields', async (t) => {
  const fast = await setup(t, true);
  const slow = await setup(t, false);
  for (const s of [fast, slow]) await send(`http://127.0.0.1:${s.port}`, '/a');
  const a = await send(`http://127.0.0.1:${fast.port}`, '/a');
  const b = await send(`http://127.0.0.1:${slow.port}`, '/a');
  const drop = new Set(['server-timing', 'date', 'connection', 'keep-alive', 'age']);
  const pick = (h: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(h).filter(([k]) => !drop.has(k)));
  assert.deepEqual(pick(a.headers), pick(b.headers));
  assert.equal(a.text, b.text);
  assert.ok(a.headers.date !== undefined && a.headers['server-timing'] !== undefined);
});

test('close() ends idle fast-path connections at once', async (t) => {
  const { e, port } = await setup(t);
  await send(`http://127.0.0.1:${port}`, '/a');
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write(get('/a'));
  await new Promise((r) => s.once('data', r));
  const ended = new Promise<void>((r) => s.once('close', () => r()));
  s.resume();
  const t0 = performance.now();
  await e.edge.close();
  await ended;
  assert.ok(performance.now() - t0 < 5000, 'not held until the drain timeout');
});
