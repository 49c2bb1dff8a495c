import assert from 'node:assert/strict';
import type * as http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { CLOCK_START_MS, send, startOrigin, startTestEdge, waitFor, type Origin, type TestEdge } from '../../src/cdn/edge/test-helpers.js';

/** Answers held until release(): lets a test pile up concurrent misses behind one origin request. */
function gate(): { wait(res: () => void): void; release(): void; pending(): number } {
  let held: (() => void)[] = [];
  let open = false;
  return {
    wait: (fn) => (open ? fn() : void held.push(fn)),
    release: () => {
      open = true;
      const h = held;
      held = [];
      for (const fn of h) fn();
    },
    pending: () => held.length,
  };
}

describe('edge: request collapsing', () => {
  let origin: Origin;
  let e: TestEdge;
  const clock = new ManualClock(CLOCK_START_MS);
  let g = gate();
  let version = 1;

  before(async () => {
    origin = await startOrigin((req, res) => {
      const url = req.url ?? '/';
      const answer = (): void => {
        if (url.includes('private')) {
          res.writeHead(200, { 'cache-control': 'private, max-age=60' });
          res.end(`private ${url}`);
        } else if (url.startsWith('/swr')) {
          res.writeHead(200, { 'cache-control': 'max-age=10, stale-while-revalidate=60' });
          res.end(`swr v${version}`);
        } else {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
          res.end(`object ${url} `.repeat(500));
        }
      };
      if (url.startsWith('/held') || (url === '/swr' && version === 2)) g.wait(answer);
      else answer();
    });
    e = await startTestEdge(origin.url, { clock, limits: { maxCollapsedWaiters: 150 } });
  });
  after(async () => {
    await e?.close();
    await origin?.close();
  });

  test('100 concurrent misses for one key make one origin request, and all get the body', async () => {
    g = gate();
    const before = e.edge.stats();
    const replies = Array.from({ length: 100 }, () => send(e.url, '/held/one'));
    await waitFor(() => origin.count('/held/one') === 1 && e.edge.stats().requests - before.requests === 100, 5000, '100 requests at the edge');
    g.release();
    const all = await Promise.all(replies);
    const expected = 'object /held/one '.repeat(500);
    for (const r of all) {
      assert.equal(r.status, 200);
      assert.equal(r.text, expected);
    }
    assert.equal(origin.count('/held/one'), 1);
    const s = e.edge.stats();
    assert.equal(s.collapsed - before.collapsed, 99);
    assert.equal(s.upstreamRequests - before.upstreamRequests, 1);
    assert.equal(all.filter((r) => r.headers['x-cache'] === 'MISS').length, 100);
    assert.equal((await send(e.url, '/held/one')).headers['x-cache'], 'HIT');
  });

  test('a collapsed miss with a Range gets its range once the object is stored', async () => {
    g = gate();
    const whole = send(e.url, '/held/range');
    const ranged = send(e.url, '/held/range', { headers: { range: 'bytes=7-16' } });
    await waitFor(() => e.edge.stats().requests > 0 && origin.count('/held/range') === 1, 2000);
    await new Promise((r) => setTimeout(r, 20));
    g.release();
    const [a, b] = await Promise.all([whole, ranged]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 206);
    assert.equal(b.text, a.text.slice(7, 17));
    assert.equal(origin.count('/held/range'), 1);
  });

  test('past maxCollapsedWaiters a request gets 503 ARCHLAB_CDN_LIMIT', async () => {
    g = gate();
    // One starts the fetch, 150 may wait on it, the 152nd is refused while the origin still holds the answer.
    let settled = 0;
    const replies = Array.from({ length: 152 }, () => send(e.url, '/held/limit').finally(() => settled++));
    await waitFor(() => settled === 1, 5000, 'the refused request');
    assert.equal(origin.count('/held/limit'), 1);
    g.release();
    const all = await Promise.all(replies);
    assert.equal(all.filter((r) => r.status === 503 && r.headers['x-archlab-error'] === 'ARCHLAB_CDN_LIMIT').length, 1);
    assert.equal(all.filter((r) => r.status === 200).length, 151);
  });

  test('an uncacheable answer: collapsed waiters each go upstream, then the key is hit-for-pass (no queueing)', async () => {
    // The uncacheable URL is held too, so the waiters really are waiting when the answer comes.
    g = gate();
    const seenBefore = origin.count();
    const replies = Array.from({ length: 5 }, () => send(e.url, '/held/private'));
    await waitFor(() => origin.count('/held/private') === 1, 2000);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(origin.count('/held/private'), 1, 'collapsed while the answer was unknown');
    g.release();
    const all = await Promise.all(replies);
    for (const r of all) assert.equal(r.text, 'private /held/private');
    assert.equal(origin.count() - seenBefore, 5);
    assert.equal(all.filter((r) => r.headers['x-cache'] === 'MISS').length, 1);
    assert.equal(all.filter((r) => r.headers['x-cache'] === 'PASS').length, 4);
    // Marked hit-for-pass: later concurrent requests go straight upstream (held origin, yet all 3 arrive).
    g = gate();
    const later = Array.from({ length: 3 }, () => send(e.url, '/held/private'));
    await waitFor(() => origin.count('/held/private') === 8, 2000, 'three uncollapsed requests at the origin');
    g.release();
    for (const r of await Promise.all(later)) assert.equal(r.headers['x-cache'], 'PASS');
    // The mark is short-lived (hitForPassMs, 10 s by default): after it the key is a plain miss again.
    clock.advance(10_001);
    g.release();
    assert.equal((await send(e.url, '/held/private')).headers['x-cache'], 'MISS');
  });

  test('stale-while-revalidate: stale answers at once, and exactly one background refresh per key', async () => {
    version = 1;
    assert.equal((await send(e.url, '/swr')).text, 'swr v1');
    clock.advance(15_000);
    version = 2;
    g = gate(); // the refresh is held at the origin while stale answers go out
    const stale = await Promise.all(Array.from({ length: 10 }, () => send(e.url, '/swr')));
    for (const r of stale) {
      assert.equal(r.headers['x-cache'], 'STALE');
      assert.equal(r.text, 'swr v1');
      assert.equal(r.headers.age, '15');
    }
    await waitFor(() => origin.count('/swr') === 2, 2000, 'the refresh');
    assert.equal(g.pending(), 1);
    g.release();
    await waitFor(() => e.storage.variants('http://example.test/swr')[0]?.storedAt === clock.now(), 2000, 'the refreshed object');
    const fresh = await send(e.url, '/swr');
    assert.equal(fresh.headers['x-cache'], 'HIT');
    assert.equal(fresh.text, 'swr v2');
    assert.equal(origin.count('/swr'), 2);
    const refresh = origin.seen.filter((s) => s.url === '/swr')[1]!;
    assert.equal((refresh.headers as http.IncomingHttpHeaders).range, undefined);
  });
});
