/**
 * Resilience end to end: retries (and what must not be retried), the retry budget, passive
 * ejection, connection limits with the wait queue, and active health checks.
 */
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import { test, type TestContext } from 'node:test';
import { backend, balancer, deadPort, liveBackend, request, waitFor } from './helpers.js';

/** Requests a backend saw, health checks aside. */
function traffic(seen: { url: string }[]): number {
  return seen.filter((s) => s.url !== '/healthz').length;
}

test('retries: a GET that meets a refusing backend is retried on the good one; so is a POST whose body was read whole, unless retries.maxBody is 0', async (t) => {
  const dead = await deadPort();
  const good = await backend(t, 'good');
  const lb = await balancer(t, {
    pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ id: 'dead', address: `127.0.0.1:${dead}` }, { id: 'good', address: good.address }] }],
  });
  for (let i = 0; i < 50; i++) {
    const r = await request(lb.url, { path: `/get/${i}` });
    assert.equal(r.status, 200, `GET ${i}`);
    assert.equal(r.body, 'good');
  }
  // Round robin from the first backend: every GET met "dead" first and was retried.
  assert.ok(liveBackend(lb, 'app', 'dead').failures >= 50, `dead was tried ${liveBackend(lb, 'app', 'dead').failures} times`);
  assert.equal(good.seen.length, 50);

  // A connect failure: no backend saw the POST, and its body is held (64 KiB by default), so it is sent again.
  const post = await request(lb.url, { method: 'POST', path: '/post', body: 'payload' });
  assert.equal(post.status, 200);
  assert.equal(post.body, 'good');
  assert.equal(good.seen.filter((s) => s.method === 'POST').length, 1);

  // With nothing buffered, a body streams through and cannot be sent twice: the connect failure is answered.
  const unbuffered = await balancer(t, {
    pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ id: 'dead', address: `127.0.0.1:${dead}` }, { id: 'good', address: good.address }], retries: { maxBody: 0 } }],
  });
  const streamed = await request(unbuffered.url, { method: 'POST', path: '/post', body: 'payload' });
  assert.equal(streamed.status, 502, 'a streamed body is never retried');
  assert.equal(streamed.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_CONNECT');
  assert.equal(good.seen.filter((s) => s.method === 'POST').length, 1);
  // The next pick is the good backend: the POST goes through there.
  const post2 = await request(unbuffered.url, { method: 'POST', path: '/post', body: 'payload' });
  assert.equal(post2.status, 200);
});

test('retry budget: with budgetRatio 0 and minPerSecond 0, a GET that meets a dead backend gets 502', async (t) => {
  const dead = await deadPort();
  const good = await backend(t, 'good');
  const lb = await balancer(t, {
    pools: [
      {
        name: 'app',
        algorithm: 'round-robin',
        backends: [{ id: 'dead', address: `127.0.0.1:${dead}` }, { id: 'good', address: good.address }],
        retries: { attempts: 2, budgetRatio: 0, minPerSecond: 0 },
      },
    ],
  });
  const r = await request(lb.url, { path: '/no-budget' });
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_CONNECT');
  assert.equal(good.seen.length, 0, 'no retry was allowed');
  // The rotation moves on: the next request goes to the good backend directly.
  assert.equal((await request(lb.url)).status, 200);
});

test('out of retries, the last backend\'s 503 is passed on as it was (status, headers, body), as nginx and HAProxy do', async (t) => {
  const answer = JSON.stringify({ error: { code: 'DB_UNAVAILABLE', message: 'database cut off' } });
  const sick = (name: string) =>
    backend(t, name, (req, res) => {
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '7', 'x-from': name }).end(answer);
      return true;
    });
  const [a, b] = await Promise.all([sick('a'), sick('b')]);
  const lb = await balancer(t, {
    pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ id: 'a', address: a.address }, { id: 'b', address: b.address }], retries: { attempts: 1 } }],
  });
  const r = await request(lb.url, { path: '/api/products/1' });
  assert.equal(r.status, 503);
  assert.equal(r.body, answer, 'the backend\'s own body, not the balancer\'s');
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers['retry-after'], '7');
  assert.equal(r.headers['x-archlab-error'], undefined, 'not an answer of the balancer\'s own');
  assert.equal(a.seen.length + b.seen.length, 2, 'one retry, on the other backend');
  assert.equal(a.seen.length, 1);
  assert.equal(r.headers['x-from'], 'b', 'the answer of the last backend tried (round robin asked a first)');

  // With no retry budget at all the first answer is the last: passed on too.
  const lb0 = await balancer(t, {
    pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ id: 'a', address: a.address }, { id: 'b', address: b.address }], retries: { attempts: 2, budgetRatio: 0, minPerSecond: 0 } }],
  });
  const r0 = await request(lb0.url, { path: '/api/products/2' });
  assert.equal(r0.status, 503);
  assert.equal(r0.body, answer);
});

test('a held-back 503 body over 64 KiB is not kept: the balancer answers with its own 503', async (t) => {
  const big = 'x'.repeat(70 * 1024);
  const huge = await backend(t, 'huge', (req, res) => {
    req.resume();
    res.writeHead(503, { 'content-type': 'text/plain' }).end(big);
    return true;
  });
  const lb = await balancer(t, {
    pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ id: 'huge', address: huge.address }], retries: { attempts: 2, budgetRatio: 0, minPerSecond: 0 } }],
  });
  const r = await request(lb.url, { path: '/big' });
  assert.equal(r.status, 503);
  assert.notEqual(r.body, big);
  assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_STATUS');
});

test('a 503 from a backend is retried on another backend for a GET, not for a POST', async (t) => {
  const busy = await backend(t, 'busy', (req, res) => {
    req.resume();
    res.writeHead(503, { 'content-type': 'text/plain' }).end('busy');
    return true;
  });
  const good = await backend(t, 'good');
  const lb = await balancer(t, { pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ id: 'busy', address: busy.address }, { id: 'good', address: good.address }] }] });
  const r = await request(lb.url, { path: '/x' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'good');
  assert.equal(busy.seen.length, 1, 'the busy backend was asked first');
  assert.equal(good.seen.length, 1);
  // Round robin goes to busy first again (good was the last pick): a POST gets its answer.
  const post = await request(lb.url, { method: 'POST', path: '/p', body: 'b' });
  assert.equal(post.status, 503);
  assert.equal(post.body, 'busy');
  assert.equal(busy.seen.length, 2);
  assert.equal(good.seen.length, 1);
});

test('a GET whose backend breaks the connection before answering is retried on another backend; a POST is not', async (t) => {
  const resetter = await backend(t, 'resetter', (req) => {
    req.socket.destroy();
    return true;
  });
  const good = await backend(t, 'good');
  const lb = await balancer(t, { pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ id: 'resetter', address: resetter.address }, { id: 'good', address: good.address }] }] });
  const r = await request(lb.url, { path: '/g' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'good');
  assert.deepEqual(resetter.seen.map((s) => s.method), ['GET'], 'the GET met the resetting backend first');
  // A POST without an Idempotency-Key may have been acted on: it is never sent twice.
  const post = await request(lb.url, { method: 'POST', path: '/p', body: 'once' });
  assert.equal(post.status, 502);
  assert.equal(post.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_RESET');
  assert.deepEqual(resetter.seen.map((s) => s.method), ['GET', 'POST']);
  assert.equal(good.seen.filter((s) => s.method === 'POST').length, 0);
});

test('passive ejection: a backend answering 500 is ejected after consecutiveFailures, gets nothing while ejected, then returns', async (t) => {
  const bad = await backend(t, 'bad', (req, res) => {
    req.resume();
    res.writeHead(500).end('oops');
    return true;
  });
  const good = await backend(t, 'good');
  const lb = await balancer(t, {
    pools: [
      {
        name: 'app',
        algorithm: 'round-robin',
        backends: [{ id: 'bad', address: bad.address }, { id: 'good', address: good.address }],
        health: { passive: { consecutiveFailures: 3, ejectionTime: '600ms' } },
      },
    ],
  });
  const b = liveBackend(lb, 'app', 'bad');
  // Round robin alternates: six requests give bad its three failures.
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await request(lb.url, { path: `/r${i}` })).status);
  assert.deepEqual(statuses, [500, 200, 500, 200, 500, 200]);
  assert.equal(b.ejected, true, 'ejected after 3 consecutive 5xx');
  assert.equal(b.state, 'ejected');

  const before = bad.seen.length;
  let sent = 0;
  // Only requests that start and finish within the ejection count: no wall-clock assumption.
  for (let i = 0; i < 10 && b.ejected; i++) {
    const r = await request(lb.url, { path: `/e${i}` });
    if (!b.ejected) break;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'good');
    sent++;
  }
  assert.ok(sent >= 1, 'at least one request was made during the ejection');
  assert.equal(bad.seen.length, before, 'no traffic while ejected');

  assert.ok(await waitFor(() => !b.ejected, 5000), 'the ejection ends');
  let returned = false;
  for (let i = 0; i < 4 && !returned; i++) {
    await request(lb.url, { path: `/back${i}` });
    returned = bad.seen.length > before;
  }
  assert.ok(returned, 'the backend gets traffic again after ejectionTime');
});

/** A backend that holds each request `delayMs` and records the most requests it had at once. */
async function slowBackend(t: TestContext, delayMs: number): Promise<{ be: Awaited<ReturnType<typeof backend>>; maxConcurrent: () => number }> {
  let now = 0;
  let max = 0;
  const be = await backend(t, 'slow', (req: http.IncomingMessage, res: http.ServerResponse) => {
    now++;
    max = Math.max(max, now);
    req.resume();
    const timer = setTimeout(() => res.end('slow'), delayMs);
    res.on('close', () => {
      clearTimeout(timer);
      now--;
    });
    return true;
  });
  return { be, maxConcurrent: () => max };
}

test('maxConnections 1: concurrent requests wait in the queue and all succeed, one at a time', async (t) => {
  const { be, maxConcurrent } = await slowBackend(t, 200);
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: be.address, maxConnections: 1 }] }] });
  const replies = await Promise.all([0, 1, 2].map((i) => request(lb.url, { path: `/q${i}` })));
  assert.deepEqual(replies.map((r) => r.status), [200, 200, 200]);
  assert.equal(be.seen.length, 3);
  assert.equal(maxConcurrent(), 1, 'the backend never had more than maxConnections requests');
});

test('maxConnections 1 with queue maxWaiting 0: the extra requests get 503 with Retry-After', async (t) => {
  const { be } = await slowBackend(t, 300);
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: be.address, maxConnections: 1 }], queue: { maxWaiting: 0 } }] });
  const first = request(lb.url, { path: '/first' });
  assert.ok(await waitFor(() => be.seen.length === 1, 3000), 'the first request reached the backend');
  const extra = await Promise.all([request(lb.url, { path: '/x1' }), request(lb.url, { path: '/x2' })]);
  for (const r of extra) {
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_QUEUE_FULL');
    assert.match(String(r.headers['retry-after']), /^\d+$/);
  }
  assert.equal((await first).status, 200);
  assert.equal(be.seen.length, 1);
});

test('a request that waits longer than queue.timeout gets 503 with Retry-After', async (t) => {
  const { be } = await slowBackend(t, 500);
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: be.address, maxConnections: 1 }], queue: { maxWaiting: 10, timeout: '100ms' } }] });
  const first = request(lb.url, { path: '/first' });
  assert.ok(await waitFor(() => be.seen.length === 1, 3000));
  const late = await request(lb.url, { path: '/late' });
  assert.equal(late.status, 503);
  assert.equal(late.headers['x-archlab-error'], 'ARCHLAB_QUEUE_TIMEOUT');
  assert.match(String(late.headers['retry-after']), /^\d+$/);
  assert.equal((await first).status, 200);
  assert.equal(be.seen.length, 1, 'the timed-out request never reached the backend');
  assert.equal(lb.state().pools.get('app')!.pool.waiting, 0);
});

test('a client that gives up while queued is never forwarded to the backend', async (t) => {
  const { be } = await slowBackend(t, 300);
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: be.address, maxConnections: 1 }], queue: { maxWaiting: 10, timeout: '5s' } }] });
  const first = request(lb.url, { path: '/first' });
  assert.ok(await waitFor(() => be.seen.length === 1, 3000));
  // Waits in the queue behind /first, and leaves after 50 ms.
  const gone = await request(lb.url, { path: '/gone', timeoutMs: 50 }).then(
    () => 'answered',
    () => 'gave up',
  );
  assert.equal(gone, 'gave up');
  assert.equal((await first).status, 200);
  // The next request finds the backend free: had /gone been forwarded, it would have gone first.
  const next = await request(lb.url, { path: '/next' });
  assert.equal(next.status, 200);
  assert.deepEqual(be.seen.map((s) => s.url), ['/first', '/next'], 'the abandoned request never reached the backend');
});

test('active health: a backend whose /healthz answers 503 goes down after `fall` checks, gets no traffic, and comes back after `rise`', async (t) => {
  let sick = false;
  let checks = 0;
  const flaky = await backend(t, 'flaky', (req, res) => {
    if (req.url !== '/healthz') return false;
    checks++;
    res.writeHead(sick ? 503 : 200).end();
    return true;
  });
  const good = await backend(t, 'good');
  const lb = await balancer(t, {
    pools: [
      {
        name: 'app',
        algorithm: 'round-robin',
        backends: [{ id: 'flaky', address: flaky.address }, { id: 'good', address: good.address }],
        health: { active: { interval: '50ms', fall: 3, rise: 2 } },
      },
    ],
  });
  const b = liveBackend(lb, 'app', 'flaky');
  assert.ok(await waitFor(() => checks >= 2, 3000), 'checks run');
  assert.equal(b.healthy, true);
  sick = true;
  const checksAtSick = checks;
  assert.ok(await waitFor(() => !b.healthy, 5000), 'marked down');
  assert.ok(checks - checksAtSick >= 3, `down after ${checks - checksAtSick} failed checks, fall is 3`);

  const before = traffic(flaky.seen);
  for (let i = 0; i < 6; i++) {
    const r = await request(lb.url, { path: `/d${i}` });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'good');
  }
  assert.equal(traffic(flaky.seen), before, 'no traffic while down');

  sick = false;
  const checksAtWell = checks;
  assert.ok(await waitFor(() => b.healthy, 5000), 'marked up again');
  assert.ok(checks - checksAtWell >= 2, 'up after at least `rise` passing checks');
  const bodies: string[] = [];
  for (let i = 0; i < 4; i++) bodies.push((await request(lb.url, { path: `/u${i}` })).body);
  assert.ok(bodies.includes('flaky'), `back in rotation: ${bodies.join(',')}`);
});
