import assert from 'node:assert/strict';
import * as http from 'node:http';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { isArchlabError } from '../../src/core/errors.js';
import { CLOCK_START_MS, send, startOrigin, startTestEdge, waitFor } from '../../src/cdn/edge/test-helpers.js';
import { resolveEdgeOptions, startEdge } from '../../src/cdn/edge/index.js';
import { createStorage } from '../../src/cdn/storage/index.js';

const SIZE = 512 * 1024;

/** GET that resolves with 'aborted' if the response is cut, or the body length. */
function getLength(url: string, path: string, abortAfterFirstChunk = false): Promise<number | 'aborted'> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const req = http.get({ host: u.hostname, port: u.port, path, agent: false, headers: { host: 'example.test' } }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (abortAfterFirstChunk) req.destroy();
      });
      res.on('end', () => resolve(n));
      res.on('error', () => resolve('aborted'));
      res.on('aborted', () => resolve('aborted'));
    });
    req.on('error', () => resolve('aborted'));
  });
}

describe('edge: robustness', () => {
  test('one collapsed client going away mid-body does not hurt the others, and the object is still stored', async () => {
    let release: (() => void) | undefined;
    const origin = await startOrigin((_req, res) => {
      release = () => {
        res.writeHead(200, { 'cache-control': 'max-age=100', 'content-length': String(SIZE) });
        // In pieces, so the body is still streaming when the first client leaves.
        let sent = 0;
        const step = (): void => {
          if (sent >= SIZE) return void res.end();
          res.write(Buffer.alloc(64 * 1024, 'z'));
          sent += 64 * 1024;
          setTimeout(step, 5);
        };
        step();
      };
    });
    const e = await startTestEdge(origin.url);
    try {
      const quitter = getLength(e.url, '/obj', true);
      const stayer = getLength(e.url, '/obj');
      await waitFor(() => release !== undefined && e.edge.stats().requests === 2, 2000);
      release!();
      assert.equal(await quitter, 'aborted');
      assert.equal(await stayer, SIZE);
      await waitFor(() => e.storage.variants('http://example.test/obj').length === 1, 2000, 'the stored object');
      assert.equal((await send(e.url, '/obj')).headers['x-cache'], 'HIT');
      assert.equal(origin.count(), 1);
    } finally {
      await e.close();
      await origin.close();
    }
  });

  test('an upstream that dies mid-body: the client is cut (never a short body passed as whole) and nothing is stored', async () => {
    const origin = await startOrigin((req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=100', 'content-length': '100000' });
      res.write(Buffer.alloc(30_000, 'p'));
      setTimeout(() => req.socket.destroy(), 20);
    });
    const e = await startTestEdge(origin.url);
    try {
      assert.equal(await getLength(e.url, '/cut'), 'aborted');
      assert.equal(await getLength(e.url, '/cut'), 'aborted');
      assert.equal(origin.count(), 2, 'not stored: the second request went upstream too');
      assert.equal(e.storage.variants('http://example.test/cut').length, 0);
    } finally {
      await e.close();
      await origin.close();
    }
  });

  test('a 5xx while revalidating never replaces the stale object kept for stale-if-error', async () => {
    let fail = false;
    const clock = new ManualClock(CLOCK_START_MS);
    const origin = await startOrigin((_req, res) => {
      if (fail) {
        res.writeHead(503, { 'cache-control': 'max-age=100' });
        res.end('down');
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=10, stale-if-error=600' });
      res.end('good');
    });
    const e = await startTestEdge(origin.url, { clock });
    try {
      await send(e.url, '/s');
      fail = true;
      clock.advance(11_000);
      for (let i = 0; i < 3; i++) {
        const r = await send(e.url, '/s');
        assert.equal(r.text, 'good');
        assert.equal(r.headers['x-cache'], 'STALE');
      }
    } finally {
      await e.close();
      await origin.close();
    }
  });

  test('PURGE in absolute form names the host itself', async () => {
    const origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=100' });
      res.end('x');
    });
    const e = await startTestEdge(origin.url);
    try {
      await send(e.url, '/a', { host: 'site.test' });
      assert.equal((await send(e.url, '/a', { host: 'site.test' })).headers['x-cache'], 'HIT');
      const r = await send(e.url, 'http://site.test/a', { method: 'PURGE', host: e.edge.address.host, headers: { authorization: 'Bearer secret' } });
      assert.deepEqual(JSON.parse(r.text), { purged: 1 });
      assert.equal((await send(e.url, '/a', { host: 'site.test' })).headers['x-cache'], 'MISS');
    } finally {
      await e.close();
      await origin.close();
    }
  });

  test('hosts are keyed normalised: case and the default port do not make new objects', async () => {
    const origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=100' });
      res.end('x');
    });
    const e = await startTestEdge(origin.url);
    try {
      await send(e.url, '/h', { host: 'Site.Test' });
      assert.equal((await send(e.url, '/h', { host: 'site.test:80' })).headers['x-cache'], 'HIT');
      assert.equal(origin.seen[0]!.headers.host, 'site.test');
      assert.equal((await send(e.url, '/h', { host: 'evil/x' })).status, 400);
    } finally {
      await e.close();
      await origin.close();
    }
  });

  test('options are validated once, naming the field', async () => {
    const storage = await createStorage({ memoryBytes: 1024 * 1024 });
    try {
      const base = { name: 'n', region: 'r', tier: 'edge' as const, upstream: 'http://127.0.0.1:1', storage };
      assert.throws(() => resolveEdgeOptions({ ...base, name: 'bad name' }), /name/);
      assert.throws(() => resolveEdgeOptions({ ...base, upstream: 'ftp://x' }), /upstream/);
      assert.throws(() => resolveEdgeOptions({ ...base, limits: { maxCollapsedWaiters: -1 } }), /limits\.maxCollapsedWaiters/);
      assert.throws(() => resolveEdgeOptions({ ...base, timeouts: { upstreamResponseMs: 0 } }), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
      await assert.rejects(startEdge({ ...base, tier: 'middle' as 'edge' }), /tier/);
      const d = resolveEdgeOptions(base);
      assert.equal(d.maxHeaderBytes, 16 * 1024);
      assert.equal(d.maxCollapsedWaiters, 1000);
      assert.equal(d.upstreamConnectMs, 2000);
      assert.equal(d.upstreamResponseMs, 10_000);
      assert.equal(d.idleMs, 30_000);
      assert.equal(d.headersMs, 10_000);
      assert.equal(d.xCache, true);
    } finally {
      await storage.close();
    }
  });

  test('xCache: false adds no X-Cache', async () => {
    const origin = await startOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=100' });
      res.end('x');
    });
    const e = await startTestEdge(origin.url, { xCache: false });
    try {
      assert.equal((await send(e.url, '/x')).headers['x-cache'], undefined);
      assert.equal((await send(e.url, '/x')).headers['x-cache'], undefined);
      assert.equal(e.edge.stats().hits, 1);
    } finally {
      await e.close();
      await origin.close();
    }
  });
});
