import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { ManualClock, SystemClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { Backend } from '../backend.js';
import type { ActiveHealthConfig } from '../config.js';
import { ActiveHealthChecker, httpHealthRequest } from './active.js';
import type { HealthRequest } from './active.js';

const CONFIG: ActiveHealthConfig = { path: '/healthz', intervalMs: 1_000, timeoutMs: 500, expectStatus: [200], rise: 2, fall: 3 };

/** What the stub does for one check: answer a status, hang until aborted, reject, or throw at once. */
type Answer = number | 'hang' | 'refuse' | 'throw';

function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function backend(clock: ManualClock | SystemClock, i: number, port = 8000 + i): Backend {
  return new Backend({ id: `b${i}`, address: { host: '127.0.0.1', port }, weight: 10, maxConnections: 100, tls: false }, clock);
}

function setup(n: number, config: Partial<ActiveHealthConfig> = {}) {
  const clock = new ManualClock(0);
  const pool = Array.from({ length: n }, (_, i) => backend(clock, i));
  const answers = new Map<Backend, Answer>();
  const calls: Array<{ b: Backend; at: number; path: string; timeoutMs: number; signal: AbortSignal | undefined }> = [];
  const transitions: Array<{ id: string; up: boolean; detail: string; at: number }> = [];
  let inFlight = 0;
  let maxInFlightPerBackend = 0;
  const perBackend = new Map<Backend, number>();
  const request: HealthRequest = (b, path, timeoutMs, signal) => {
    calls.push({ b, at: clock.now(), path, timeoutMs, signal });
    const answer = answers.get(b) ?? 200;
    if (answer === 'throw') throw new TypeError('stub threw');
    const n = (perBackend.get(b) ?? 0) + 1;
    perBackend.set(b, n);
    maxInFlightPerBackend = Math.max(maxInFlightPerBackend, n);
    inFlight++;
    const done = () => {
      inFlight--;
      perBackend.set(b, (perBackend.get(b) ?? 1) - 1);
    };
    if (answer === 'hang') {
      return new Promise<number>((_resolve, reject) => {
        signal?.addEventListener('abort', () => {
          done();
          reject(signal.reason);
        });
      });
    }
    done();
    if (answer === 'refuse') return Promise.reject(new TypeError('connect ECONNREFUSED'));
    return Promise.resolve(answer);
  };
  const checker = new ActiveHealthChecker({
    config: { ...CONFIG, ...config },
    clock,
    backends: () => pool,
    onTransition: (b, up, detail) => transitions.push({ id: b.id, up, detail, at: clock.now() }),
    request,
  });
  // One step at a time: a stub's answer is applied in a later microtask, so a single advance over
  // several rounds would find every check still in flight.
  const tick = async (ms: number, times = 1): Promise<void> => {
    for (let i = 0; i < times; i++) {
      clock.advance(ms);
      await flush();
    }
  };
  return {
    clock,
    pool,
    answers,
    calls,
    transitions,
    checker,
    tick,
    b0: pool[0]!,
    stats: () => ({ inFlight, maxInFlightPerBackend }),
  };
}

describe('ActiveHealthChecker (stub request, ManualClock)', () => {
  test('checks every backend at start, then every intervalMs, with the configured path and timeout', async () => {
    const { checker, calls, tick, pool } = setup(3);
    checker.start();
    await flush();
    assert.equal(calls.length, 3);
    assert.deepEqual(
      calls.map((c) => [c.b.id, c.at, c.path, c.timeoutMs]),
      pool.map((b) => [b.id, 0, '/healthz', 500]),
    );
    await tick(999);
    assert.equal(calls.length, 3, 'nothing before the interval');
    await tick(1);
    assert.equal(calls.length, 6);
    await tick(1_000, 3);
    assert.equal(calls.length, 15);
    checker.stop();
  });

  test('fall: an up backend goes down on exactly the fall-th consecutive failure', async () => {
    const { checker, answers, transitions, tick, b0, pool } = setup(2);
    answers.set(b0, 500);
    checker.start();
    await flush();
    await tick(1_000);
    assert.equal(b0.healthy, true, 'after 2 failures');
    assert.deepEqual(checker.counts(b0), { passes: 0, fails: 2 });
    await tick(1_000);
    assert.equal(b0.healthy, false, 'after 3 failures');
    assert.equal(b0.state, 'down');
    assert.equal(transitions.length, 1);
    assert.deepEqual([transitions[0]!.id, transitions[0]!.up, transitions[0]!.at], ['b0', false, 2_000]);
    assert.match(transitions[0]!.detail, /3 consecutive failures; last: GET \/healthz -> 500, expected 200/);
    await tick(1_000, 5);
    assert.equal(transitions.length, 1, 'no repeat while it stays down');
    assert.equal(pool[1]!.healthy, true);
    checker.stop();
  });

  test('rise: a down backend comes up on exactly the rise-th consecutive pass, and starts slow start', async () => {
    const { checker, answers, transitions, tick, b0 } = setup(1, { fall: 1, rise: 3 });
    b0.slowStartMs = 10_000;
    answers.set(b0, 503);
    checker.start();
    await flush();
    assert.equal(b0.healthy, false);
    answers.set(b0, 200);
    await tick(1_000);
    await tick(1_000);
    assert.equal(b0.healthy, false, 'after 2 passes');
    assert.equal(b0.warming, false);
    await tick(1_000);
    assert.equal(b0.healthy, true, 'after 3 passes');
    assert.equal(b0.warming, true);
    assert.ok(Math.abs(b0.weight - 1) < 1e-9, `slow start begins at 10%: ${b0.weight}`);
    assert.deepEqual(
      transitions.map((t) => [t.up, t.at]),
      [
        [false, 0],
        [true, 3_000],
      ],
    );
    assert.match(transitions[1]!.detail, /3 consecutive passes; last: GET \/healthz -> 200/);
    checker.stop();
  });

  test('a pass in between resets the failure count, and a failure resets the pass count', async () => {
    const { checker, answers, tick, b0 } = setup(1, { fall: 3, rise: 2 });
    const script: Answer[] = [500, 500, 200, 500, 500, 200, 500, 500];
    answers.set(b0, script[0]!);
    checker.start();
    await flush();
    for (const a of script.slice(1)) {
      answers.set(b0, a);
      await tick(1_000);
    }
    assert.equal(b0.healthy, true, 'never 3 failures in a row');
    answers.set(b0, 500);
    await tick(1_000);
    assert.equal(b0.healthy, false);
    for (const a of [200, 500, 200, 500, 200] as Answer[]) {
      answers.set(b0, a);
      await tick(1_000);
    }
    assert.equal(b0.healthy, false, 'never 2 passes in a row');
    answers.set(b0, 200);
    await tick(1_000);
    assert.equal(b0.healthy, true);
    checker.stop();
  });

  test('expectStatus: any listed status passes, others fail', async () => {
    const { checker, answers, b0 } = setup(1, { expectStatus: [200, 204], fall: 1 });
    answers.set(b0, 204);
    await checker.checkNow(b0);
    assert.equal(b0.healthy, true);
    answers.set(b0, 301);
    await checker.checkNow(b0);
    assert.equal(b0.healthy, false);
  });

  test('timeouts count as failures, abort the request and free the slot', async () => {
    const { checker, answers, calls, transitions, tick, b0, stats } = setup(1, { fall: 2 });
    answers.set(b0, 'hang');
    checker.start();
    await flush();
    assert.equal(calls[0]!.signal?.aborted, false);
    await tick(499);
    assert.deepEqual(checker.counts(b0), { passes: 0, fails: 0 });
    await tick(1);
    assert.deepEqual(checker.counts(b0), { passes: 0, fails: 1 }, 'failed at timeoutMs');
    assert.equal(calls[0]!.signal?.aborted, true);
    assert.equal(stats().inFlight, 0);
    await tick(500);
    assert.equal(calls.length, 2, 'checked again at the next round');
    await tick(500);
    assert.equal(b0.healthy, false);
    assert.match(transitions[0]!.detail, /no response headers within 500 ms/);
    checker.stop();
  });

  test('rejections and synchronous throws from request count as failures', async () => {
    const { checker, answers, b0, pool } = setup(2, { fall: 1 });
    const b1 = pool[1]!;
    answers.set(b0, 'refuse');
    answers.set(b1, 'throw');
    await checker.checkNow(b0);
    await checker.checkNow(b1);
    assert.equal(b0.healthy, false);
    assert.equal(b1.healthy, false);
  });

  test('at most one check in flight per backend, even when timeoutMs > intervalMs', async () => {
    const { checker, answers, calls, tick, b0, stats } = setup(1, { intervalMs: 100, timeoutMs: 1_000, fall: 100 });
    answers.set(b0, 'hang');
    checker.start();
    await flush();
    for (let i = 0; i < 9; i++) await tick(100);
    assert.equal(calls.length, 1, 'rounds skip the backend while its check runs');
    const joined = [checker.checkNow(b0), checker.checkNow(b0)];
    assert.equal(calls.length, 1, 'checkNow joins the check in flight');
    for (let i = 0; i < 30; i++) await tick(100);
    await Promise.all(joined);
    assert.equal(stats().maxInFlightPerBackend, 1);
    assert.ok(calls.length >= 3 && calls.length <= 4, `one check per timeout period: ${calls.length}`);
    checker.stop();
  });

  test('backends added later are checked; removed ones stop being checked and their results are dropped', async () => {
    const { clock, checker, answers, calls, tick, pool, b0 } = setup(2, { fall: 1, timeoutMs: 5_000 });
    const b1 = pool[1]!;
    checker.start();
    await flush();
    const b2 = backend(clock, 2);
    pool.push(b2);
    await tick(1_000);
    assert.deepEqual(
      calls.filter((c) => c.at === 1_000).map((c) => c.b.id),
      ['b0', 'b1', 'b2'],
    );
    // b1 hangs (its timeout is 5 s), then leaves the pool while its check is in flight.
    answers.set(b1, 'hang');
    await tick(1_000);
    const b1Call = calls.filter((c) => c.b === b1).at(-1)!;
    assert.equal(b1Call.at, 2_000);
    pool.splice(pool.indexOf(b1), 1);
    await tick(500);
    assert.equal(b1Call.signal?.aborted, false, 'still in flight until the next round reads the pool');
    await tick(500);
    assert.equal(b1Call.signal?.aborted, true, 'its in-flight check was aborted');
    assert.equal(b1.healthy, true, 'a dropped check changes nothing');
    assert.equal(checker.counts(b1), undefined);
    const before = calls.filter((c) => c.b === b1).length;
    await tick(1_000, 10);
    assert.equal(calls.filter((c) => c.b === b1).length, before, 'no more checks for b1');
    assert.equal(calls.filter((c) => c.b === b0).length, 14);
    assert.equal(calls.filter((c) => c.b === b2).length, 13);
    checker.stop();
  });

  test('stop() cancels every timer, aborts checks in flight, and nothing runs after it', async () => {
    const { clock, checker, answers, calls, transitions, tick, b0, pool } = setup(2, { fall: 1 });
    const b1 = pool[1]!;
    answers.set(b0, 'hang');
    checker.start();
    await flush();
    assert.ok(clock.pending() > 0);
    const pendingCheck = checker.checkNow(b0);
    checker.stop();
    await pendingCheck; // resolves: aborted, not left hanging
    assert.equal(clock.pending(), 0, 'no timer left');
    assert.equal(calls[0]!.signal?.aborted, true);
    assert.equal(b0.healthy, true, 'the aborted check did not count as a failure');
    const n = calls.length;
    answers.set(b1, 500);
    await tick(60_000);
    await checker.checkNow(b1);
    assert.equal(calls.length, n, 'no check after stop');
    assert.equal(b1.healthy, true);
    assert.deepEqual(transitions, []);
  });

  test('a result arriving after stop() is not applied', async () => {
    const clock = new ManualClock(0);
    const b0 = backend(clock, 0);
    let answer: ((status: number) => void) | undefined;
    const checker = new ActiveHealthChecker({
      config: { ...CONFIG, fall: 1 },
      clock,
      backends: () => [b0],
      request: () => new Promise<number>((resolve) => (answer = resolve)),
    });
    checker.start();
    checker.stop();
    answer!(500);
    await flush();
    assert.equal(b0.healthy, true);
  });

  test('start() twice runs one schedule; start() after stop() resumes', async () => {
    const { checker, calls, tick } = setup(1);
    checker.start();
    checker.start();
    await flush();
    await tick(1_000);
    assert.equal(calls.length, 2);
    checker.stop();
    await tick(5_000);
    assert.equal(calls.length, 2);
    checker.start();
    await flush();
    assert.equal(calls.length, 3);
    await tick(1_000);
    assert.equal(calls.length, 4);
    checker.stop();
  });

  test('rejects an impossible config', () => {
    const clock = new ManualClock(0);
    for (const bad of [{ intervalMs: 0 }, { timeoutMs: -1 }, { rise: 0 }, { fall: 1.5 }, { expectStatus: [] }, { path: 'healthz' }]) {
      assert.throws(
        () => new ActiveHealthChecker({ config: { ...CONFIG, ...bad }, clock, backends: () => [] }),
        (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'),
        JSON.stringify(bad),
      );
    }
  });
});

async function listen(t: TestContext, server: http.Server | https.Server): Promise<number> {
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('ActiveHealthChecker over the network (SystemClock)', () => {
  test('a server answering 200, then 500, then 200 takes the backend down, then up', { timeout: 10_000 }, async (t) => {
    let status = 200;
    const seen: number[] = [];
    const server = http.createServer((req, res) => {
      seen.push(status);
      assert.equal(req.url, '/healthz');
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'failing');
    });
    const port = await listen(t, server);
    const clock = new SystemClock();
    const b = backend(clock, 0, port);
    const transitions: boolean[] = [];
    let waiter: { up: boolean; resolve: () => void } | undefined;
    const until = (up: boolean) =>
      new Promise<void>((resolve) => {
        waiter = { up, resolve };
      });
    const checker = new ActiveHealthChecker({
      config: { ...CONFIG, intervalMs: 50, timeoutMs: 1_000, rise: 2, fall: 2 },
      clock,
      backends: () => [b],
      onTransition: (x, up) => {
        transitions.push(up);
        if (waiter?.up === up) waiter.resolve();
      },
    });
    t.after(() => checker.stop());
    checker.start();
    while (seen.length < 3) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(b.healthy, true);
    status = 500;
    await until(false);
    assert.equal(b.healthy, false);
    status = 200;
    await until(true);
    assert.equal(b.healthy, true);
    assert.deepEqual(transitions, [false, true]);
    assert.ok(seen.includes(500));
  });

  test('a refused connection is a failure', { timeout: 10_000 }, async (t) => {
    // Find a port nobody listens on: listen, read it, close.
    const probe = http.createServer();
    const port = await new Promise<number>((resolve) => probe.listen(0, '127.0.0.1', () => resolve((probe.address() as AddressInfo).port)));
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const clock = new SystemClock();
    const b = backend(clock, 0, port);
    const checker = new ActiveHealthChecker({ config: { ...CONFIG, fall: 1 }, clock, backends: () => [b] });
    t.after(() => checker.stop());
    await checker.checkNow(b);
    assert.equal(b.healthy, false);
  });
});

// A self-signed certificate for localhost / 127.0.0.1 (EC P-256, valid for 100 years). Test use only.
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrP1eZtwW4M7v2Y5e
pBKIlLIBqLuxsCd9xQRJvxApyfyhRANCAASxSMr9XDglQZrYjHR70tZilplGsAJL
V9WdSynQ3mxmDpvK+LFqEut152o4FVtIPyJFjZcbmo+SSvi5VmhjCFP7
-----END PRIVATE KEY-----
`;
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIUF4QArZ7sjr7qtUjsQqYCNGvCQtkwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyODA3MjExNFoYDzIxMjYxMTA0
MDcyMTE0WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASxSMr9XDglQZrYjHR70tZilplGsAJLV9WdSynQ3mxmDpvK+LFqEut1
52o4FVtIPyJFjZcbmo+SSvi5VmhjCFP7o28wbTAdBgNVHQ4EFgQUjE40U5MRM4yt
QFfQG2UDkFUkpaMwHwYDVR0jBBgwFoAUjE40U5MRM4ytQFfQG2UDkFUkpaMwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSQAwRgIhALTgPRPCv4TCvQU3kCpS/q2jWQ6FBg8Uu9+Mer/8E+hPAiEA
tFhVnq7/tM08u0Hqw+/4VWaOcvqGZkFSahY59BoqV7o=
-----END CERTIFICATE-----
`;

describe('httpHealthRequest', () => {
  const target = (port: number, tls = false) => ({ host: '127.0.0.1', port, tls, address: `127.0.0.1:${port}` });

  test('resolves to the status, discards the body, and opens a fresh connection each time', { timeout: 10_000 }, async (t) => {
    let connections = 0;
    let bodiesSent = 0;
    let allSent!: () => void;
    const sent = new Promise<void>((resolve) => (allSent = resolve));
    // 8 MiB: far more than socket buffers hold, so it is only sent in full if the client reads it.
    const big = Buffer.alloc(8 << 20, 120);
    const server = http.createServer((req, res) => {
      res.on('finish', () => {
        if (++bodiesSent === 3) allSent();
      });
      res.writeHead(req.url === '/fail' ? 503 : 200, { 'content-length': big.length }).end(big);
    });
    server.on('connection', () => connections++);
    const port = await listen(t, server);
    assert.equal(await httpHealthRequest(target(port), '/ok', 2_000), 200);
    assert.equal(await httpHealthRequest(target(port), '/fail', 2_000), 503);
    assert.equal(await httpHealthRequest(target(port), '/ok', 2_000), 200);
    assert.equal(connections, 3);
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([sent.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 1_500)))]);
    clearTimeout(timer);
    assert.equal(drained, true, 'every body was read to the end');
  });

  test('speaks TLS to a tls backend without checking its certificate', { timeout: 10_000 }, async (t) => {
    const server = https.createServer({ key: TEST_KEY, cert: TEST_CERT }, (_req, res) => res.writeHead(204).end());
    const port = await listen(t, server);
    assert.equal(await httpHealthRequest(target(port, true), '/healthz', 2_000), 204);
  });

  test('times out when no headers arrive within timeoutMs', { timeout: 10_000 }, async (t) => {
    const server = http.createServer(() => {
      // never answers
    });
    const port = await listen(t, server);
    const started = Date.now();
    await assert.rejects(httpHealthRequest(target(port), '/healthz', 100), (err: unknown) => isArchlabError(err, 'ARCHLAB_UPSTREAM_TIMEOUT'));
    assert.ok(Date.now() - started >= 90);
  });

  test('a refused connection rejects with ARCHLAB_UPSTREAM_CONNECT', { timeout: 10_000 }, async () => {
    const probe = http.createServer();
    const port = await new Promise<number>((resolve) => probe.listen(0, '127.0.0.1', () => resolve((probe.address() as AddressInfo).port)));
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await assert.rejects(httpHealthRequest(target(port), '/healthz', 1_000), (err: unknown) => isArchlabError(err, 'ARCHLAB_UPSTREAM_CONNECT'));
  });

  test('a connection reset before headers rejects with ARCHLAB_UPSTREAM_RESET', { timeout: 10_000 }, async (t) => {
    const server = http.createServer((req) => req.socket.destroy());
    const port = await listen(t, server);
    await assert.rejects(httpHealthRequest(target(port), '/healthz', 1_000), (err: unknown) => isArchlabError(err, 'ARCHLAB_UPSTREAM_RESET'));
  });

  test('aborting the signal closes the connection and rejects with its reason', { timeout: 10_000 }, async (t) => {
    let closed!: () => void;
    const socketClosed = new Promise<void>((resolve) => (closed = resolve));
    const server = http.createServer((req) => req.socket.on('close', () => closed()));
    const port = await listen(t, server);
    const controller = new AbortController();
    const pending = httpHealthRequest(target(port), '/healthz', 5_000, { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const reason = new TypeError('gave up');
    controller.abort(reason);
    await assert.rejects(pending, (err: unknown) => err === reason);
    await socketClosed;
  });

  test('a body that never ends is cut after another timeoutMs', { timeout: 10_000 }, async (t) => {
    let closed!: () => void;
    const socketClosed = new Promise<void>((resolve) => (closed = resolve));
    const server = http.createServer((req, res) => {
      req.socket.on('close', () => closed());
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    });
    const port = await listen(t, server);
    assert.equal(await httpHealthRequest(target(port), '/healthz', 100), 200);
    await socketClosed;
  });
});
