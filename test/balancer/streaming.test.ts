/**
 * Streaming and backpressure: 64 MiB up and 64 MiB down through the balancer with exact byte counts
 * while the memory of this process (which runs the client, the balancer and the backend) stays far
 * below the transfer size; a client that stops reading holds the backend back instead of filling the
 * balancer's memory; a slow upload is not cut by the response timeout.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ArchlabError } from '../../src/core/errors.js';
import { backend, balancer, sleep } from './helpers.js';

const MiB = 1024 * 1024;
const TOTAL = 64 * MiB;
const CHUNK = 64 * 1024;
/**
 * Growth of live memory allowed during a 64 MiB transfer: a quarter of it. Measured on a 2-core VM:
 * 4-7 MiB with backpressure, about 21 MiB for a download when the balancer ignores it.
 */
const MAX_GROWTH = 16 * MiB;

/**
 * A full garbage collection, so samples measure what is alive rather than garbage not yet
 * collected (3 x 64 MiB of buffers pass through this process; V8 may let tens of MiB of dead ones
 * pile up before it collects).
 */
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/**
 * Samples arrayBuffers + heapUsed every 20 ms, each after a full collection, until stopped;
 * `peakGrowth()` is the highest sample minus the baseline taken at the start.
 */
function memorySampler(): { stop: () => Promise<number> } {
  const live = async (): Promise<number> => {
    // V8 frees the backing stores of collected ArrayBuffers on a background thread after a
    // collection; on a busy machine that sweep can lag by tens of MiB. A second collection first
    // waits for the previous sweep to finish, so the sample counts only what is alive.
    gc();
    gc();
    await new Promise<void>((r) => setImmediate(r));
    const m = process.memoryUsage();
    return m.arrayBuffers + m.heapUsed;
  };
  let stopped = false;
  let peak = 0;
  const baseline = live();
  const loop = (async () => {
    const base = await baseline;
    // Bounded: at most 3000 samples (60 s), far beyond any transfer here.
    for (let i = 0; i < 3000 && !stopped; i++) {
      peak = Math.max(peak, (await live()) - base);
      await sleep(20);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return peak;
    },
  };
}

/** TOTAL bytes in CHUNK pieces, produced only as fast as they are consumed. */
function source(total: number): Readable {
  const chunk = Buffer.alloc(CHUNK, 0x61);
  let left = total;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(CHUNK, left);
      left -= n;
      this.push(n === CHUNK ? chunk : chunk.subarray(0, n));
    },
  });
}

/** Writes `total` bytes in CHUNK pieces, waiting for 'drain' whenever write() says so. */
async function writeRespectingBackpressure(res: http.ServerResponse, total: number, onProgress?: (written: number) => void): Promise<void> {
  const chunk = Buffer.alloc(CHUNK, 0x62);
  let written = 0;
  while (written < total && !res.destroyed) {
    const n = Math.min(CHUNK, total - written);
    const ok = res.write(n === CHUNK ? chunk : chunk.subarray(0, n));
    written += n;
    onProgress?.(written);
    if (!ok) {
      await new Promise<void>((r) => {
        const done = (): void => {
          res.off('drain', done);
          res.off('close', done);
          r();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  res.end();
}

function streamingBalancer(t: TestContext, address: string): ReturnType<typeof balancer> {
  return balancer(t, { pools: [{ name: 'app', backends: [{ address }] }], limits: { maxBody: '128MiB' }, timeouts: { drain: '500ms' } });
}

test('upload: 64 MiB streams through to the backend byte-exact without being buffered', async (t) => {
  let received = 0;
  const be = await backend(t, 'sink', (req, res) => {
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => res.end(String(received)));
    return true;
  });
  const lb = await streamingBalancer(t, be.address);
  const sampler = memorySampler();
  const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(`${lb.url}/upload`, { method: 'POST', agent: false, headers: { 'content-length': String(TOTAL) } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(30_000, () => req.destroy(new ArchlabError('TEST_CLIENT_TIMEOUT', 'upload timed out')));
    req.on('error', reject);
    source(TOTAL).pipe(req);
  });
  const growth = await sampler.stop();
  t.diagnostic(`peak live-memory growth ${(growth / MiB).toFixed(1)} MiB`);
  assert.equal(reply.status, 200);
  assert.equal(reply.body, String(TOTAL));
  assert.equal(received, TOTAL);
  assert.ok(growth < MAX_GROWTH, `memory grew by ${(growth / MiB).toFixed(1)} MiB while 64 MiB went through`);
});

test('download: 64 MiB streams from the backend byte-exact without being buffered', async (t) => {
  const be = await backend(t, 'source', (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    void writeRespectingBackpressure(res, TOTAL);
    return true;
  });
  const lb = await streamingBalancer(t, be.address);
  const sampler = memorySampler();
  const { status, bytes } = await new Promise<{ status: number; bytes: number }>((resolve, reject) => {
    const req = http.get(`${lb.url}/download`, { agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new ArchlabError('TEST_CLIENT_TIMEOUT', 'download timed out')));
    req.on('error', reject);
  });
  const growth = await sampler.stop();
  t.diagnostic(`peak live-memory growth ${(growth / MiB).toFixed(1)} MiB`);
  assert.equal(status, 200);
  assert.equal(bytes, TOTAL);
  assert.ok(growth < MAX_GROWTH, `memory grew by ${(growth / MiB).toFixed(1)} MiB while 64 MiB went through`);
});

test('a client that pauses reading for 300 ms holds the backend back, then receives everything', async (t) => {
  let written = 0;
  const be = await backend(t, 'source', (req, res) => {
    req.resume();
    res.writeHead(200);
    void writeRespectingBackpressure(res, TOTAL, (n) => (written = n));
    return true;
  });
  const lb = await streamingBalancer(t, be.address);
  const result = await new Promise<{ status: number; bytes: number; writtenDuringPause: number; writtenAfterPause: number }>((resolve, reject) => {
    const req = http.get(`${lb.url}/slow-reader`, { agent: false }, (res) => {
      let bytes = 0;
      let paused = false;
      let writtenDuringPause = 0;
      let writtenAfterPause = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (!paused && bytes >= MiB) {
          paused = true;
          res.pause();
          writtenDuringPause = written;
          setTimeout(() => {
            writtenAfterPause = written;
            res.resume();
          }, 300);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, writtenDuringPause, writtenAfterPause }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new ArchlabError('TEST_CLIENT_TIMEOUT', 'download timed out')));
    req.on('error', reject);
  });
  assert.equal(result.status, 200);
  assert.equal(result.bytes, TOTAL, 'every byte arrived after the pause');
  // Socket buffers on the way may take some megabytes, but a balancer that kept reading would let
  // the backend finish all 64 MiB while the client sat still.
  assert.ok(result.writtenAfterPause < TOTAL / 2, `the backend wrote ${(result.writtenAfterPause / MiB).toFixed(1)} MiB while the client read ${1} MiB and paused`);
  assert.ok(result.writtenAfterPause >= result.writtenDuringPause);
});

test('an upload slower than timeouts.response is not cut: the response timeout starts once the request is sent', async (t) => {
  let received = 0;
  const be = await backend(t, 'sink', (req, res) => {
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => res.end(String(received)));
    return true;
  });
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: be.address }] }], timeouts: { response: '300ms', drain: '500ms' } });
  const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(`${lb.url}/slow-upload`, { method: 'POST', agent: false, headers: { 'content-length': '1000' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new ArchlabError('TEST_CLIENT_TIMEOUT', 'upload timed out')));
    req.on('error', reject);
    // 10 pieces of 100 bytes, 100 ms apart: about 1 s, over three times the response timeout.
    void (async () => {
      for (let i = 0; i < 10 && !req.destroyed; i++) {
        req.write('u'.repeat(100));
        await sleep(100);
      }
      req.end();
    })();
  });
  assert.equal(reply.status, 200, reply.body);
  assert.equal(reply.body, '1000');
});
