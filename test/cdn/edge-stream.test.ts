import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import { startOrigin, startTestEdge, waitFor, type Origin } from '../../src/cdn/edge/test-helpers.js';
import { createStorage } from '../../src/cdn/storage/index.js';

const MiB = 1024 * 1024;
const TOTAL = 20 * MiB;
const CHUNK = 64 * 1024;

/** Byte i of the object is (i * 7) mod 251, so corruption anywhere shows in the digest. */
function chunkAt(offset: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = ((offset + i) * 7) % 251;
  return b;
}

function expectedDigest(): string {
  const h = createHash('sha256');
  for (let off = 0; off < TOTAL; off += CHUNK) h.update(chunkAt(off, Math.min(CHUNK, TOTAL - off)));
  return h.digest('hex');
}

/** An origin producing the 20 MiB object lazily, honouring backpressure; `sent()` is how much it has written. */
async function bigOrigin(withLength: boolean): Promise<Origin & { sent(): number }> {
  let sent = 0;
  const o = await startOrigin((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=100', 'content-type': 'application/octet-stream', ...(withLength ? { 'content-length': String(TOTAL) } : {}) });
    let off = 0;
    Readable.from(
      (function* () {
        while (off < TOTAL) {
          const n = Math.min(CHUNK, TOTAL - off);
          const c = chunkAt(off, n);
          off += n;
          sent += n;
          yield c;
        }
      })(),
    ).pipe(res);
  });
  return Object.assign(o, { sent: () => sent });
}

/** Reads the first chunk, stops reading for `pauseMs` (measuring what the origin sent meanwhile), then reads the rest. */
function slowRead(url: string, origin: { sent(): number }, pauseMs: number): Promise<{ status: number; bytes: number; digest: string; sentDuringPause: number; arrayBuffersGrowth: number; xCache: string }> {
  return new Promise((resolve, reject) => {
    const base = process.memoryUsage().arrayBuffers;
    const u = new URL(url);
    const req = http.get({ host: u.hostname, port: u.port, path: '/big', agent: false, headers: { host: 'example.test' } }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      let paused = false;
      let sentDuringPause = 0;
      let growth = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        h.update(c);
        if (!paused) {
          paused = true;
          res.pause();
          setTimeout(() => {
            sentDuringPause = origin.sent();
            growth = process.memoryUsage().arrayBuffers - base;
            res.resume();
          }, pauseMs);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, digest: h.digest('hex'), sentDuringPause, arrayBuffersGrowth: growth, xCache: String(res.headers['x-cache']) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

describe('edge: large bodies are streamed, never buffered whole', () => {
  const digest = expectedDigest();

  for (const withLength of [true, false]) {
    test(`a 20 MiB object to a slow client (${withLength ? 'Content-Length' : 'chunked'}): upstream is paced by the client, memory stays bounded`, async () => {
      const origin = await bigOrigin(withLength);
      const e = await startTestEdge(origin.url);
      try {
        const r = await slowRead(e.url, origin, 400);
        assert.equal(r.status, 200);
        assert.equal(r.bytes, TOTAL);
        assert.equal(r.digest, digest);
        // Loose bounds. Kernel buffers on two loopback hops hold several MiB (about 9 here), and with no
        // Content-Length the storage writer holds what has flowed so far (it may store up to 16 MiB); an
        // edge that buffered for the client would let the origin send all 20 MiB while the client sleeps.
        assert.ok(r.sentDuringPause < 16 * MiB, `origin sent ${r.sentDuringPause} bytes while the client was not reading`);
        assert.ok(r.arrayBuffersGrowth < 18 * MiB, `buffers grew by ${r.arrayBuffersGrowth} bytes while the client was not reading`);
        // Over the storage's 16 MiB maxObjectBytes: not stored, and the next request passes.
        assert.equal(e.storage.variants('http://example.test/big').length, 0);
        assert.equal(e.edge.stats().bytesFromUpstream, TOTAL);
      } finally {
        await e.close();
        await origin.close();
      }
    });
  }

  test('with a disk tier the 20 MiB object is stored while streamed, and then served from disk', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'archlab-edge-'));
    const origin = await bigOrigin(true);
    const storage = await createStorage({ memoryBytes: 4 * MiB, maxObjectBytes: 32 * MiB, disk: { dir, maxBytes: 64 * MiB } });
    const e = await startTestEdge(origin.url, { storage });
    try {
      const first = await slowRead(e.url, origin, 200);
      assert.equal(first.digest, digest);
      assert.ok(first.sentDuringPause < 16 * MiB, `origin sent ${first.sentDuringPause} bytes while the client was not reading`);
      await waitFor(() => e.storage.variants('http://example.test/big').length === 1, 5000, 'the object on disk');
      const second = await slowRead(e.url, origin, 50);
      assert.equal(second.xCache, 'HIT');
      assert.equal(second.digest, digest);
      assert.equal(origin.count('/big'), 1);
    } finally {
      await e.close();
      await origin.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
