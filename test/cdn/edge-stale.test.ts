import assert from 'node:assert/strict';
import type * as http from 'node:http';
import * as net from 'node:net';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { CLOCK_START_MS, send, startOrigin, startTestEdge, type Origin, type TestEdge } from '../../src/cdn/edge/test-helpers.js';
import type { EdgeOptions } from '../../src/cdn/edge/index.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** An origin and an edge on a ManualClock for one test, closed after it even when it fails. */
async function withEdge(handler: Handler, fn: (o: Origin, e: TestEdge, clock: ManualClock) => Promise<void>, opts: Partial<EdgeOptions> = {}): Promise<void> {
  const clock = new ManualClock(CLOCK_START_MS);
  const origin = await startOrigin(handler);
  let e: TestEdge | undefined;
  try {
    e = await startTestEdge(origin.url, { clock, ...opts });
    await fn(origin, e, clock);
  } finally {
    await e?.close();
    await origin.close();
  }
}

describe('edge: revalidation, stale-if-error, upstream failures', () => {
  test('a stale object is revalidated with If-None-Match; a 304 updates its stored headers (REVALIDATED)', async () => {
    let version = 1;
    await withEdge(
      (req, res) => {
        if (req.headers['if-none-match'] === '"e1"') {
          res.writeHead(304, { etag: '"e1"', 'cache-control': 'max-age=100', 'x-version': String(version) });
          res.end();
          return;
        }
        res.writeHead(200, { etag: '"e1"', 'cache-control': 'max-age=10', 'x-version': String(version) });
        res.end('the body');
      },
      async (origin, e, clock) => {
        assert.equal((await send(e.url, '/r')).headers['x-version'], '1');
        clock.advance(11_000);
        version = 2;
        const r = await send(e.url, '/r');
        assert.equal(r.status, 200);
        assert.equal(r.text, 'the body');
        assert.equal(r.headers['x-cache'], 'REVALIDATED');
        assert.equal(r.headers['x-version'], '2');
        assert.equal(origin.seen[1]!.headers['if-none-match'], '"e1"');
        clock.advance(50_000);
        const h = await send(e.url, '/r');
        assert.equal(h.headers['x-cache'], 'HIT', 'fresh for max-age=100 from the 304');
        assert.equal(h.headers['x-version'], '2');
        assert.equal(origin.count(), 2);
        assert.equal(e.edge.stats().revalidated, 1);
      },
    );
  });

  test('a revalidation answered 200 replaces the stored object', async () => {
    let version = 1;
    await withEdge(
      (_req, res) => {
        res.writeHead(200, { etag: `"v${version}"`, 'cache-control': 'max-age=10' });
        res.end(`v${version}`);
      },
      async (origin, e, clock) => {
        await send(e.url, '/r');
        clock.advance(11_000);
        version = 2;
        const r = await send(e.url, '/r');
        assert.equal(r.text, 'v2');
        assert.equal(r.headers['x-cache'], 'MISS');
        assert.equal(origin.seen[1]!.headers['if-none-match'], '"v1"');
        assert.equal((await send(e.url, '/r')).text, 'v2');
        assert.equal(origin.count(), 2);
      },
    );
  });

  test('origin down: stale-if-error serves the stale object (STALE); without it the edge answers 502', async () => {
    await withEdge(
      (req, res) => {
        res.writeHead(200, { 'cache-control': req.url === '/sie' ? 'max-age=10, stale-if-error=60' : 'max-age=10' });
        res.end(`body ${req.url}`);
      },
      async (origin, e, clock) => {
        await send(e.url, '/sie');
        await send(e.url, '/plain');
        await origin.close();
        clock.advance(11_000);
        const s = await send(e.url, '/sie');
        assert.equal(s.status, 200);
        assert.equal(s.text, 'body /sie');
        assert.equal(s.headers['x-cache'], 'STALE');
        assert.equal(s.headers.age, '11');
        const p = await send(e.url, '/plain');
        assert.equal(p.status, 502);
        assert.equal(p.headers['x-archlab-error'], 'ARCHLAB_CDN_UPSTREAM_FAILED');
        assert.equal(p.headers['x-cache'], 'ERROR');
        assert.doesNotMatch(p.text, /127\.0\.0\.1/, 'the upstream address is not told to clients');
        clock.advance(60_000);
        assert.equal((await send(e.url, '/sie')).status, 502, 'past the stale-if-error window');
      },
    );
  });

  test('an origin 5xx counts as an error: stale-if-error serves STALE; without it the 5xx is relayed', async () => {
    let fail = false;
    await withEdge(
      (req, res) => {
        if (fail) {
          res.writeHead(503, { 'content-type': 'text/plain' });
          res.end('origin says 503');
          return;
        }
        res.writeHead(200, { 'cache-control': req.url === '/sie' ? 'max-age=10, stale-if-error=60' : 'max-age=10, must-revalidate' });
        res.end(`body ${req.url}`);
      },
      async (_origin, e, clock) => {
        await send(e.url, '/sie');
        await send(e.url, '/mr');
        fail = true;
        clock.advance(11_000);
        const s = await send(e.url, '/sie');
        assert.equal(s.headers['x-cache'], 'STALE');
        assert.equal(s.text, 'body /sie');
        const m = await send(e.url, '/mr');
        assert.equal(m.status, 503);
        assert.equal(m.text, 'origin says 503');
      },
    );
  });

  test('an upstream that does not answer in time: 504 ARCHLAB_CDN_UPSTREAM_TIMEOUT', async () => {
    // A TCP server that accepts and never answers.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    const e = await startTestEdge(`http://127.0.0.1:${port}`, { timeouts: { upstreamResponseMs: 150 } });
    try {
      const r = await send(e.url, '/slow');
      assert.equal(r.status, 504);
      assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_CDN_UPSTREAM_TIMEOUT');
      assert.equal(e.edge.stats().errors, 1);
    } finally {
      await e.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test('only-if-cached: 504 when nothing usable is stored, the object when it is fresh', async () => {
    await withEdge(
      (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=10' });
        res.end('cached');
      },
      async (origin, e, clock) => {
        const none = await send(e.url, '/o', { headers: { 'cache-control': 'only-if-cached' } });
        assert.equal(none.status, 504);
        assert.equal(none.headers['x-archlab-error'], 'ARCHLAB_CDN_NOT_CACHED');
        assert.equal(origin.count(), 0);
        await send(e.url, '/o');
        const hit = await send(e.url, '/o', { headers: { 'cache-control': 'only-if-cached' } });
        assert.equal(hit.status, 200);
        assert.equal(hit.headers['x-cache'], 'HIT');
        clock.advance(11_000);
        const stale = await send(e.url, '/o', { headers: { 'cache-control': 'only-if-cached' } });
        assert.equal(stale.status, 504);
        const allowed = await send(e.url, '/o', { headers: { 'cache-control': 'only-if-cached, max-stale=60' } });
        assert.equal(allowed.status, 200);
        assert.equal(origin.count(), 1);
      },
    );
  });

  test('request no-cache revalidates; request no-store passes and stores nothing', async () => {
    await withEdge(
      (req, res) => {
        if (req.headers['if-none-match'] === '"x"') {
          res.writeHead(304, { etag: '"x"', 'cache-control': 'max-age=100' });
          res.end();
          return;
        }
        res.writeHead(200, { etag: '"x"', 'cache-control': 'max-age=100' });
        res.end('x');
      },
      async (origin, e) => {
        const ns = await send(e.url, '/n', { headers: { 'cache-control': 'no-store' } });
        assert.equal(ns.headers['x-cache'], 'PASS');
        assert.equal(e.storage.variants('http://example.test/n').length, 0);
        await send(e.url, '/n');
        const nc = await send(e.url, '/n', { headers: { pragma: 'no-cache' } });
        assert.equal(nc.headers['x-cache'], 'REVALIDATED');
        assert.equal(origin.seen[2]!.headers['if-none-match'], '"x"');
        assert.equal(origin.count(), 3);
      },
    );
  });
});
