/**
 * Chaos, bounded: steady load of idempotent GETs over three backends while one is killed and later
 * restarted on the same port. The client must see no failure at all, and the restarted backend must
 * come back into rotation through its active health checks.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test, type TestContext } from 'node:test';
import { backend, balancer, liveBackend, sleep, waitFor, type TestBackend } from './helpers.js';

const LOOPS = 10;
/**
 * Bounds on the load. The run normally ends much earlier, as soon as the restarted backend is back
 * in rotation (a second or so, under a thousand requests); the count is generous so that a fast
 * machine cannot use it up before the health checks, which run on wall-clock intervals, are done.
 */
const MAX_REQUESTS = 4000;
const MAX_MS = 6000;

/** A backend that answers its name after 1-4 ms, so a kill always finds requests in flight. */
function delayed(t: TestContext, name: string, port = 0): Promise<TestBackend> {
  let n = 0;
  return backend(
    t,
    name,
    (req, res) => {
      req.resume();
      const timer = setTimeout(() => res.end(name), 1 + (n++ % 4));
      res.on('close', () => clearTimeout(timer));
      return true;
    },
    port,
  );
}

test('chaos: one of three backends killed and restarted under load: zero client-visible failures, and it returns', async (t) => {
  const a = await delayed(t, 'a');
  const b = await delayed(t, 'b');
  let victim: TestBackend = await delayed(t, 'c');
  const victimPort = victim.port;
  const lb = await balancer(t, {
    pools: [
      {
        name: 'app',
        algorithm: 'round-robin',
        backends: [
          { id: 'a', address: a.address },
          { id: 'b', address: b.address },
          { id: 'c', address: victim.address },
        ],
        health: {
          active: { interval: '100ms', timeout: '100ms', rise: 2, fall: 2 },
          passive: { consecutiveFailures: 3, ejectionTime: '200ms', maxEjectionTime: '1s' },
        },
      },
    ],
    timeouts: { drain: '1s' },
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOOPS });
  t.after(() => agent.destroy());

  const failures: string[] = [];
  const byBackend = new Map<string, number>();
  let sent = 0;
  let stop = false;
  const t0 = performance.now();
  const get = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get(`${lb.url}/chaos/${sent}`, { agent, timeout: 5000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          if (res.statusCode !== 200) failures.push(`${res.statusCode} ${body.trim()}`);
          else byBackend.set(body, (byBackend.get(body) ?? 0) + 1);
          resolve();
        });
        res.on('error', (err) => {
          failures.push(`response error: ${err.message}`);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy());
      req.on('error', (err) => {
        failures.push(`request error: ${err.message}`);
        resolve();
      });
    });
  const loop = async (): Promise<void> => {
    while (!stop && sent < MAX_REQUESTS && performance.now() - t0 < MAX_MS) {
      sent++;
      await get();
    }
  };
  const load = Promise.all(Array.from({ length: LOOPS }, loop));

  // The schedule: kill c once it has served some traffic, restart it once it is marked down.
  try {
    const c = liveBackend(lb, 'app', 'c');
    assert.ok(await waitFor(() => (byBackend.get('c') ?? 0) >= 50, 3000), 'c served traffic before the kill');
    // Kill it with requests in flight: they break mid-request.
    assert.ok(await waitFor(() => c.active > 0, 1000, 0), 'c has requests in flight');
    const inFlightAtKill = c.active;
    await victim.close();
    assert.ok(await waitFor(() => !c.healthy, 3000), 'active checks mark the killed backend down');
    await sleep(100);
    victim = await delayed(t, 'c', victimPort);
    assert.equal(victim.port, victimPort, 'restarted on the same port');
    assert.ok(await waitFor(() => c.healthy, 3000), 'active checks mark it up after `rise` passes');
    // It must serve requests again while the load is still running.
    assert.ok(await waitFor(() => victim.seen.filter((s) => s.url.startsWith('/chaos/')).length >= 20, 2000), 'back in rotation');
    assert.ok(inFlightAtKill > 0);
  } finally {
    stop = true;
    await load;
  }
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${sent} requests failed`);
  assert.ok(sent >= 100, `only ${sent} requests were sent`);
  assert.ok((byBackend.get('a') ?? 0) > 0 && (byBackend.get('b') ?? 0) > 0);
});
