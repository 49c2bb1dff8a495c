/**
 * The dashboard's server against a running `up` (small topology): the graph covers every
 * component, frames stream over SSE with numbers read from the components, controls change the
 * running system (and only from the dashboard's own origin, as JSON), the web app is served with a
 * CSP that keeps it to its own server, and close() leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDashboard, type DashboardHandle } from '../../src/up/dashboard/server.js';
import type { Frame, Hello } from '../../src/up/dashboard/protocol.js';
import { startUp, type UpHandle } from '../../src/up/runner.js';
import { probe, smallTopology, tempDir, waitFor } from './helpers.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function call(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new assert.AssertionError({ message: `no answer from ${url} within 10 s` })));
    req.on('error', reject);
    req.end(opts.body);
  });
}

function control(d: DashboardHandle, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return call(`${d.url}/api/control`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

/** An SSE client that keeps the hello and every frame it gets; close() ends it. */
function stream(url: string): Promise<{ hello: Hello; frames: Frame[]; status: number; close(): void }> {
  return new Promise((resolve, reject) => {
    const frames: Frame[] = [];
    const req = http.get(url, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        resolve({ hello: undefined as unknown as Hello, frames, status: res.statusCode!, close: () => req.destroy() });
        return;
      }
      let buffer = '';
      let resolved = false;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event === 'hello' && !resolved) {
            resolved = true;
            resolve({ hello: JSON.parse(data!) as Hello, frames, status: 200, close: () => req.destroy() });
          } else if (event === 'frame') frames.push(JSON.parse(data!) as Frame);
        }
      });
    });
    req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
  });
}

describe('the dashboard server on a running up', () => {
  let up: UpHandle;
  let d: DashboardHandle;
  let webRoot: string;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'archlab-dashboard-'));
    webRoot = join(dir, 'web');
    mkdirSync(join(webRoot, 'assets'), { recursive: true });
    writeFileSync(join(webRoot, 'index.html'), '<!doctype html><title>fixture</title><script type="module" src="./assets/app-1234.js"></script>');
    writeFileSync(join(webRoot, 'assets', 'app-1234.js'), 'export {};');
    up = await startUp(smallTopology(join(dir, 'up'), { clients: { rate: 40 } }), { healthIntervalMs: 100 });
    d = await startDashboard(up, { intervalMs: 200, webRoot });
  });
  after(async () => {
    await d?.close();
    await up?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the graph has a node for every component but the admin listeners, and every frame colours each node', async () => {
    const { hello } = JSON.parse((await call(`${d.url}/api/state`)).body) as { hello: Hello };
    assert.equal(hello.version, 1);
    const expected = up.components.filter((c) => !c.engine.startsWith('admin')).map((c) => c.name.replace(' ', '-'));
    assert.deepEqual(hello.nodes.map((n) => n.id).filter((id) => id !== 'clients').sort(), expected.sort());
    assert.deepEqual(hello.choices.apps, ['app-1', 'app-2']);
    assert.ok(hello.choices.algorithms.includes('least-connections'));
    const s = await stream(`${d.url}/api/stream`);
    try {
      await waitFor('2 frames', () => s.frames.length >= 2, 5000);
      for (const f of s.frames) for (const n of hello.nodes) assert.ok(f.nodes[n.id] !== undefined, `frame colours ${n.id}`);
      // The load generator runs at 40 req/s: the numbers come from the components and move.
      await waitFor('traffic through the CDN and the balancer', () => s.frames.some((f) => f.cdn.rate > 0 && f.balancer.rate > 0 && (f.edges['clients->cdn'] ?? 0) > 0), 8000);
      const last = s.frames.at(-1)!;
      assert.equal(last.balancer.backends.length, 2);
      assert.ok(last.clients.issued > 0);
    } finally {
      s.close();
    }
  });

  test('kill an app instance: the balancer marks it down, the clients see no failure; restart: it comes back up', async () => {
    const s = await stream(`${d.url}/api/stream`);
    try {
      await waitFor('a frame', () => s.frames.length >= 1, 5000);
      const errorsBefore = s.frames.at(-1)!.clients.errors;
      const killed = await control(d, { action: 'kill-app', app: 'app-1' });
      assert.equal(killed.status, 200, killed.body);
      assert.match(killed.body, /killed app-1/);
      await waitFor('the balancer to mark app-1 down', () => s.frames.some((f) => f.balancer.backends.find((b) => b.id === 'app-1')?.state === 'down' && f.nodes['app-1']!.health === 'stopped'), 8000);
      const events = s.frames.flatMap((f) => f.events).map((e) => e.message);
      assert.ok(events.includes('control: killed app-1'), events.join('; '));
      // Passive ejection (requests to the dead instance fail) may come before the active check's
      // verdict: up -> down, or up -> ejected -> down. Either way the balancer ends at down.
      assert.ok(events.includes('balancer marks app-1 down (was up)') || (events.includes('balancer marks app-1 ejected (was up)') && events.includes('balancer marks app-1 down (was ejected)')), events.join('; '));
      // Keep the load on for a while with one instance down.
      const n = s.frames.length;
      await waitFor('5 more frames', () => s.frames.length >= n + 5, 5000);
      assert.equal(s.frames.at(-1)!.clients.errors, errorsBefore, 'no client-visible failure');
      assert.equal((await control(d, { action: 'restart-app', app: 'app-1' })).status, 200);
      await waitFor('app-1 back up', () => s.frames.at(-1)!.balancer.backends.find((b) => b.id === 'app-1')?.state === 'up', 8000);
    } finally {
      s.close();
    }
  });

  test('purge the CDN: misses at the edges jump as the traffic refills it', async () => {
    const s = await stream(`${d.url}/api/stream`);
    try {
      // Let the edges warm up first: misses stop growing fast once the hot keys are cached.
      await waitFor('a warm CDN', () => (s.frames.at(-1)?.cdn.hits ?? 0) > 20, 10_000);
      const before = s.frames.at(-1)!.cdn.misses;
      const purged = await control(d, { action: 'purge-cdn' });
      assert.equal(purged.status, 200, purged.body);
      assert.match(purged.body, /purged \d+ objects/);
      await waitFor('misses to rise after the purge', () => s.frames.at(-1)!.cdn.misses > before, 8000);
    } finally {
      s.close();
    }
  });

  test('the other controls change the running system', async () => {
    assert.equal((await control(d, { action: 'set-algorithm', algorithm: 'least-connections' })).status, 200);
    await waitFor('the algorithm in a frame', () => d.collector.last?.balancer.algorithm === 'least-connections', 5000);
    assert.equal((await control(d, { action: 'set-cache-strategy', strategy: 'write-through' })).status, 200);
    await waitFor('the strategy in a frame', () => d.collector.last?.cache.strategy === 'write-through', 5000);
    assert.equal((await control(d, { action: 'cut-cache', cut: true })).status, 200);
    await waitFor('the cache cut in a frame', () => d.collector.last?.cache.cut === true && d.collector.last.nodes.cache!.health === 'down', 5000);
    assert.equal((await control(d, { action: 'cut-cache', cut: false })).status, 200);
    assert.equal((await control(d, { action: 'cut-database', cut: true })).status, 200);
    await waitFor('the database cut in a frame', () => d.collector.last?.database.cut === true, 5000);
    assert.equal((await control(d, { action: 'cut-database', cut: false })).status, 200);
    assert.equal((await control(d, { action: 'stop-worker' })).status, 200);
    await waitFor('the worker stopped in a frame', () => d.collector.last?.nodes.worker!.health === 'stopped', 5000);
    assert.equal((await control(d, { action: 'start-worker' })).status, 200);
    assert.equal((await control(d, { action: 'spike', factor: 2, seconds: 1 })).status, 200);
    await waitFor('the spike in a frame', () => d.collector.last?.clients.spike?.factor === 2, 5000);
    assert.equal((await control(d, { action: 'set-payments-failure-rate', rate: 1 })).status, 200);
    await waitFor('payments failing in a frame', () => d.collector.last?.payments.failureRate === 1 && d.collector.last.nodes.payments!.health === 'down', 5000);
    assert.equal((await control(d, { action: 'set-payments-failure-rate', rate: 0 })).status, 200);
    assert.equal((await control(d, { action: 'set-payments-latency', ms: 20 })).status, 200);
    await waitFor('the payments latency in a frame', () => d.collector.last?.payments.latencyMs === 20, 5000);
    assert.equal((await control(d, { action: 'set-payments-latency', ms: 5 })).status, 200);
    assert.equal((await control(d, { action: 'set-rate', rate: 40 })).status, 200);
    assert.equal((await control(d, { action: 'set-algorithm', algorithm: 'round-robin' })).status, 200);
    assert.equal((await control(d, { action: 'set-cache-strategy', strategy: 'cache-aside' })).status, 200);
  });

  test('bad controls get a typed 4xx and change nothing', async () => {
    const cases: Array<[unknown, Record<string, string>, number, RegExp]> = [
      [{ action: 'kill-app', app: 'app-9' }, {}, 404, /ARCHLAB_NOT_FOUND.*no app instance \\"app-9\\"/],
      [{ action: 'set-algorithm', algorithm: 'fastest' }, {}, 400, /ARCHLAB_INVALID_ARGUMENT.*unknown algorithm/],
      [{ action: 'spike', factor: 1000, seconds: 5 }, {}, 400, /ARCHLAB_INVALID_ARGUMENT/],
      [{ action: 'explode' }, {}, 400, /ARCHLAB_INVALID_ARGUMENT/],
      [{ action: 'cut-cache', cut: 'yes' }, {}, 400, /cut/],
      [{ action: 'set-payments-failure-rate', rate: 2 }, {}, 400, /ARCHLAB_INVALID_ARGUMENT/],
      [{ action: 'purge-cdn' }, { origin: 'http://evil.example' }, 403, /ARCHLAB_FORBIDDEN/],
    ];
    for (const [body, headers, status, re] of cases) {
      const a = await control(d, body, headers);
      assert.equal(a.status, status, `${JSON.stringify(body)}: ${a.body}`);
      assert.match(a.body, re);
    }
    const form = await call(`${d.url}/api/control`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'action=purge-cdn' });
    assert.equal(form.status, 415);
    const notJson = await call(`${d.url}/api/control`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(notJson.status, 400);
    const big = await call(`${d.url}/api/control`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'purge-cdn', pad: 'x'.repeat(10_000) }) });
    assert.equal(big.status, 413);
    const get = await call(`${d.url}/api/control`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
    assert.equal(up.components.filter((c) => c.kind === 'app' && c.state === 'running').length, 2, 'nothing was killed');
    // Same origin is fine (what the page sends).
    const own = await control(d, { action: 'set-rate', rate: 40 }, { origin: d.url });
    assert.equal(own.status, 200, own.body);
  });

  test('the web app is served with a CSP that keeps it to its own server; assets are immutable; nothing else is served', async () => {
    const index = await call(`${d.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.body, /fixture/);
    assert.match(String(index.headers['content-security-policy']), /default-src 'self'/);
    assert.match(index.headers['content-type']!, /text\/html/);
    assert.equal(index.headers['cache-control'], 'no-cache');
    const js = await call(`${d.url}/assets/app-1234.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers['content-type']!, /javascript/);
    assert.match(js.headers['cache-control']!, /immutable/);
    for (const path of ['/nope.js', '/assets/../../package.json', '/%2e%2e/package.json']) assert.equal((await call(`${d.url}${path}`)).status, 404, path);
    assert.equal((await call(`${d.url}/`, { method: 'DELETE' })).status, 405);
  });
});

test('without a web build the page says how to build it, and the API still works', async (t) => {
  const dir = tempDir(t);
  const up = await startUp(smallTopology(join(dir, 'up')));
  t.after(() => up.close());
  const d = await startDashboard(up, { webRoot: join(dir, 'missing'), intervalMs: 100 });
  t.after(() => d.close());
  assert.equal(d.webBuilt, false);
  const page = await call(`${d.url}/`);
  assert.equal(page.status, 503);
  assert.match(page.body, /npm run build:web/);
  assert.equal((await call(`${d.url}/api/state`)).status, 200);
});

test('streams are bounded; close() ends them, stops reading and releases the port', async (t) => {
  const dir = tempDir(t);
  const up = await startUp(smallTopology(join(dir, 'up')));
  t.after(() => up.close());
  const d = await startDashboard(up, { webRoot: join(dir, 'missing'), intervalMs: 100, maxStreams: 1 });
  const first = await stream(`${d.url}/api/stream`);
  const second = await stream(`${d.url}/api/stream`);
  assert.equal(second.status, 503);
  await waitFor('frames on the first stream', () => first.frames.length >= 2, 5000);
  await d.close();
  const n = first.frames.length;
  assert.equal(await probe(d.port), 'refused');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(first.frames.length, n, 'no frame after close');
  first.close();
});
