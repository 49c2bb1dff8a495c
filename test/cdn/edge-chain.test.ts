import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as http from 'node:http';
import { ManualClock } from '../../src/core/clock.js';
import { CLOCK_START_MS, send, startOrigin, startTestEdge, waitFor, type Origin, type TestEdge } from '../../src/cdn/edge/test-helpers.js';

describe('edge -> shield -> origin', () => {
  let origin: Origin;
  let shield: TestEdge;
  let e1: TestEdge;
  let e2: TestEdge;
  let release: (() => void) | undefined;
  let held: (() => void)[] = [];

  before(async () => {
    origin = await startOrigin((req, res) => {
      const answer = (): void => {
        res.writeHead(200, { 'cache-control': 'max-age=100', 'surrogate-key': 'obj', 'server-timing': 'app;dur=1' });
        res.end(`object ${req.url}`);
      };
      if (req.url === '/storm') held.push(answer);
      else answer();
    });
    release = () => {
      const h = held;
      held = [];
      for (const fn of h) fn();
    };
    shield = await startTestEdge(origin.url, { name: 's1', region: 'core', tier: 'shield' });
    e1 = await startTestEdge(shield.url, { name: 'e1', region: 'eu', upstreamLatencyMs: 5 });
    e2 = await startTestEdge(shield.url, { name: 'e2', region: 'us', upstreamLatencyMs: 5 });
  });
  after(async () => {
    release?.();
    await e1?.close();
    await e2?.close();
    await shield?.close();
    await origin?.close();
  });

  test('a miss storm at two edges reaches the origin once (each edge collapses, the shield collapses and caches)', async () => {
    const replies = [...Array.from({ length: 20 }, () => send(e1.url, '/storm')), ...Array.from({ length: 20 }, () => send(e2.url, '/storm'))];
    await waitFor(() => origin.count('/storm') === 1 && e1.edge.stats().requests === 20 && e2.edge.stats().requests === 20, 5000, 'the storm at the edges');
    await waitFor(() => shield.edge.stats().requests === 2, 2000, 'one request per edge at the shield');
    release!();
    const all = await Promise.all(replies);
    for (const r of all) assert.equal(r.text, 'object /storm');
    assert.equal(origin.count('/storm'), 1);
    assert.equal(e1.edge.stats().upstreamRequests, 1);
    assert.equal(e2.edge.stats().upstreamRequests, 1);
    assert.equal(shield.edge.stats().upstreamRequests, 1);
    assert.equal(all.filter((r) => r.headers['x-cache'] === 'MISS, MISS').length, 40);
  });

  test('X-Cache chains tiers like Fastly ("<shield>, <edge>") and Server-Timing appends each tier', async () => {
    const hitAtEdge = await send(e1.url, '/storm');
    assert.equal(hitAtEdge.headers['x-cache'], 'MISS, HIT');
    const e3 = await startTestEdge(shield.url, { name: 'e3', region: 'ap' });
    try {
      const r = await send(e3.url, '/storm');
      assert.equal(r.headers['x-cache'], 'HIT, MISS');
      assert.match(String(r.headers['server-timing']), /^shield;dur=[\d.]+;desc="s1 HIT", edge;dur=[\d.]+;desc="e3 MISS"$/);
      assert.match(String(r.headers.via), /1\.1 s1, 1\.1 e3$/);
    } finally {
      await e3.close();
    }
  });

  test('the shield keeps surrogate headers for the edge; the edge tags by them and strips them', async () => {
    const direct = await send(shield.url, '/tagged');
    assert.equal(direct.headers['surrogate-key'], 'obj');
    const viaEdge = await send(e1.url, '/tagged2');
    assert.equal(viaEdge.headers['surrogate-key'], undefined);
    const { purged } = await e1.edge.purge({ selector: { kind: 'tag', tag: 'obj' }, mode: 'hard' });
    assert.ok(purged >= 2, `purged ${purged}`);
  });

  test('injected upstream latency is paid on the way there and back on a miss, not on a hit', async () => {
    const slow = await startTestEdge(shield.url, { name: 'far', region: 'far', upstreamLatencyMs: 60 });
    try {
      const t0 = performance.now();
      await send(slow.url, '/far');
      const missMs = performance.now() - t0;
      assert.ok(missMs >= 115, `a miss took ${missMs} ms, less than 2 x 60 ms`);
      const hit = await send(slow.url, '/far');
      assert.equal(hit.headers['x-cache'], 'MISS, HIT');
      assert.equal(slow.edge.stats().upstreamRequests, 1);
    } finally {
      await slow.close();
    }
  });

  test('close() cancels pending latency timers: a request waiting on one is cut and close() does not wait for it', async () => {
    const clock = new ManualClock(CLOCK_START_MS); // latency timers run on the edge's clock: this one never fires them
    const slow = await startTestEdge(shield.url, { name: 'slow', region: 'far', upstreamLatencyMs: 60_000, timeouts: { drainMs: 50 }, clock });
    const u = new URL(slow.url);
    const pending = new Promise<string>((resolve) => {
      const req = http.get({ host: u.hostname, port: u.port, path: '/never', agent: false, headers: { host: 'example.test' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(`status ${res.statusCode}`));
        res.on('error', () => resolve('cut'));
      });
      req.on('error', () => resolve('cut'));
    });
    await waitFor(() => clock.pending() === 1, 2000, 'the latency timer');
    await slow.close();
    assert.equal(clock.pending(), 0, 'close() cancelled the latency timer');
    assert.equal(await pending, 'cut');
  });
});
