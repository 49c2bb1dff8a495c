/**
 * startUp() on loopback with the small topology (1 region, 2 app instances, memory cache, SQLite in
 * a temp dir, embedded queue): traffic through the CDN and the balancer, the worker, orders paid
 * through the forward proxy (or directly without it), kill and restart, purge, the load generator
 * and its spike, a failed start, and close() releasing every port and leaving nothing behind.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { isArchlabError, SeededRandom } from '../../src/core/index.js';
import { CATEGORIES } from '../../src/up/app/index.js';
import { startLoadGenerator } from '../../src/up/loadgen.js';
import { startUp, type UpHandle } from '../../src/up/runner.js';
import { freePorts, probe, sleep, smallTopology, spawnTsx, tempDir, waitFor } from './helpers.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies of several shapes, checked field by field
async function call(url: string, init: RequestInit & { json?: unknown } = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const { json, ...rest } = init;
  const res = await fetch(url, json === undefined ? rest : { ...rest, method: rest.method ?? 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) });
  const text = await res.text();
  return { status: res.status, body: (res.headers.get('content-type') ?? '').startsWith('application/json') ? JSON.parse(text) : text, headers: res.headers };
}

describe('startUp with the small topology', () => {
  let dir: string;
  let up: UpHandle;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'archlab-up-runner-'));
    up = await startUp(smallTopology(dir), { healthIntervalMs: 100, drainTimeoutMs: 500 });
  });
  after(async () => {
    await up?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists every component with a port that accepts connections', async () => {
    const names = up.components.map((c) => c.name);
    assert.deepEqual(names, ['database', 'cache', 'queue', 'worker', 'app-1', 'app-2', 'proxy', 'payments', 'balancer', 'balancer-admin', 'cdn shield', 'cdn eu-1', 'cdn', 'cdn-admin']);
    const payments = up.components.find((c) => c.name === 'payments')!;
    assert.deepEqual([payments.kind, payments.engine, payments.url, payments.state], ['external', 'payments (third party)', up.payments.url, 'running']);
    assert.equal(up.payments.proxyUrl, up.components.find((c) => c.name === 'proxy')!.url);
    assert.equal(up.components.find((c) => c.name === 'database')!.url, join(dir, 'catalogue.db'));
    assert.equal(up.components.find((c) => c.name === 'worker')!.state, 'running');
    const withPorts = up.components.filter((c) => c.port !== undefined);
    assert.equal(withPorts.length, 10);
    assert.equal(new Set(withPorts.map((c) => c.port)).size, withPorts.length, 'every component has its own port');
    for (const c of withPorts) {
      assert.equal(c.url, `http://127.0.0.1:${c.port}`);
      assert.equal(await probe(c.port!), 'accepts', c.name);
    }
  });

  it('a GET through the CDN edge reaches an app instance and returns the product', async () => {
    const before = (await up.summary()).cdn.requests;
    const r = await call(`${up.url}/api/products/7`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.id, 7);
    assert.equal(typeof r.body.name, 'string');
    assert.equal(r.headers.get('x-served-by'), 'eu-1', 'answered by the edge');
    assert.match(r.headers.get('x-app-instance') ?? '', /^app-[12]$/);
    assert.match(r.headers.get('via') ?? '', /eu-1/);
    assert.equal((await up.summary()).cdn.requests, before + 1);
  });

  it('a POST order through the balancer creates the order and the worker receives its event', async () => {
    const r = await call(`${up.balancer.url}/api/orders`, { json: { userId: 2, productId: 3, qty: 1 } });
    assert.equal(r.status === 201 || r.status === 409, true, JSON.stringify(r.body));
    // Product 3 may be sold out in the seed: find one that is not.
    let order = r.status === 201 ? r.body.order : undefined;
    for (let id = 4; order === undefined && id < 60; id++) {
      const o = await call(`${up.balancer.url}/api/orders`, { json: { userId: 2, productId: id, qty: 1 } });
      if (o.status === 201) order = o.body.order;
    }
    assert.ok(order !== undefined, 'an order was placed');
    const read = await call(`${up.balancer.url}/api/orders/${order.id}`);
    assert.equal(read.status, 200);
    assert.equal(read.body.id, order.id);
    await waitFor('the worker to consume the order event', async () => (await up.summary()).queue.consumed >= 1, 10_000);
    const s = await up.summary();
    assert.equal(s.queue.published, s.app.eventsPublished);
    assert.ok(s.app.ordersPlaced >= 1);
    await waitFor('the queue to be empty', async () => (await up.summary()).queue.depth === 0, 10_000);
  });

  it('an order placed through the balancer is paid through the forward proxy: the proxy and payments both count it', async () => {
    const s0 = await up.summary();
    let placed: { body: { payment?: { id: string; status: string } } } | undefined;
    for (let id = 30; placed === undefined && id < 60; id++) {
      const o = await call(`${up.balancer.url}/api/orders`, { json: { userId: 3, productId: id, qty: 1 } });
      if (o.status === 201) placed = o;
      else assert.equal(o.status, 409, JSON.stringify(o.body));
    }
    assert.ok(placed !== undefined, 'an order was placed');
    assert.match(placed.body.payment?.id ?? '', /^ch_[0-9a-f]{16}$/);
    const s1 = await up.summary();
    // Sold-out products are refused before any charge: exactly one authorization went out.
    assert.equal(s1.app.payments.authorized, s0.app.payments.authorized + 1);
    assert.equal(s1.payments.charges, s0.payments.charges + 1, 'payments saw it');
    assert.equal(s1.proxy.requests, s0.proxy.requests + 1, 'through the proxy');
    assert.equal(s1.proxy.errors, s0.proxy.errors);
    assert.equal(s1.app.ordersPlaced, s0.app.ordersPlaced + 1);
  });

  it('the proxy is an egress allowlist: payments only; anything else through it is refused (403) and counted as denied', async () => {
    const s0 = await up.summary();
    const refused = await new Promise<{ status: number; error: string | undefined }>((resolve, reject) => {
      const proxy = new URL(up.payments.proxyUrl!);
      const req = http.request({ host: proxy.hostname, port: Number(proxy.port), method: 'GET', path: `${up.balancer.url}/api/products/1`, headers: { host: new URL(up.balancer.url).host } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, error: res.headers['x-archlab-error'] as string | undefined }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(refused, { status: 403, error: 'ARCHLAB_PROXY_DENIED' });
    const s1 = await up.summary();
    assert.equal(s1.proxy.denied, s0.proxy.denied + 1);
  });

  it('payments failing: orders are refused with 502 and not committed, counted by the app, payments and the proxy; back to normal: placed', async () => {
    const s0 = await up.summary();
    up.controls.setPaymentsFailureRate(1);
    // Sold-out products are refused (409) before any charge: take the first one in stock.
    let failed: Awaited<ReturnType<typeof call>> | undefined;
    let product = 40;
    for (; failed === undefined && product < 60; product++) {
      const r = await call(`${up.balancer.url}/api/orders`, { json: { userId: 1, productId: product, qty: 1 } });
      if (r.status !== 409) failed = r;
    }
    product--;
    assert.equal(failed?.status, 502, JSON.stringify(failed?.body));
    assert.equal(failed.body.error.code, 'ARCHLAB_APP_PAYMENT_FAILED');
    const s1 = await up.summary();
    assert.equal(s1.app.ordersPlaced, s0.app.ordersPlaced, 'not committed');
    assert.equal(s1.app.payments.failed, s0.app.payments.failed + 1);
    assert.equal(s1.payments.failed, s0.payments.failed + 1);
    assert.equal(s1.payments.failureRate, 1);
    assert.equal(s1.proxy.errors, s0.proxy.errors + 1, 'the proxy passed the 503 on');
    up.controls.setPaymentsFailureRate(0);
    const ok = await call(`${up.balancer.url}/api/orders`, { json: { userId: 1, productId: product, qty: 1 } });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal((await up.summary()).app.ordersPlaced, s0.app.ordersPlaced + 1);
    assert.throws(() => up.controls.setPaymentsFailureRate(2), /failureRate must be a number 0\.\.1/);
    assert.throws(() => up.controls.setPaymentsLatency(-1), /latencyMs must be an integer/);
  });

  it('stopWorker lets the backlog build; startWorker drains it', async () => {
    await up.controls.stopWorker();
    assert.equal(up.components.find((c) => c.name === 'worker')!.state, 'stopped');
    const consumed = (await up.summary()).queue.consumed;
    let placed = 0;
    for (let id = 10; placed < 3 && id < 60; id++) {
      const o = await call(`${up.balancer.url}/api/orders`, { json: { userId: 1, productId: id, qty: 1 } });
      if (o.status === 201) placed++;
    }
    assert.equal(placed, 3);
    const stopped = await up.summary();
    assert.equal(stopped.queue.depth, 3, 'three events wait in the queue');
    assert.equal(stopped.queue.consumed, consumed);
    await up.controls.startWorker();
    await waitFor('the backlog to drain', async () => (await up.summary()).queue.depth === 0, 10_000);
    assert.equal((await up.summary()).queue.consumed, consumed + 3);
  });

  it('purgeCdn(): the next GET of a cached object is a miss at the edge', async () => {
    const url = `${up.url}/static/products/5.svg`;
    assert.equal((await call(url)).status, 200);
    const cached = await call(url);
    assert.match(cached.headers.get('x-cache') ?? '', /HIT$/);
    const s0 = (await up.summary()).cdn;
    const { purged } = await up.controls.purgeCdn();
    assert.ok(purged >= 1);
    const after = await call(url);
    assert.equal(after.status, 200);
    assert.match(after.headers.get('x-cache') ?? '', /MISS$/, 'the edge missed');
    const s1 = (await up.summary()).cdn;
    assert.equal(s1.edgeMisses, s0.edgeMisses + 1);
    assert.equal(s1.edgeHits, s0.edgeHits);
  });

  it('killApp(0): the balancer marks it down and GETs through the balancer keep answering 200; restartApp(0) brings it back', async () => {
    const pools = async (): Promise<Array<{ id: string; state: string }>> => {
      const r = await call(`${up.balancer.adminUrl}/pools`, { headers: { authorization: `Bearer ${up.balancer.adminToken}` } });
      assert.equal(r.status, 200);
      return r.body.pools[0].backends;
    };
    assert.deepEqual((await pools()).map((b) => b.state), ['up', 'up']);
    const port = up.components.find((c) => c.name === 'app-1')!.port!;
    await up.controls.killApp(0);
    assert.equal(await probe(port), 'refused');
    assert.equal(up.components.find((c) => c.name === 'app-1')!.state, 'stopped');
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await call(`${up.balancer.url}/api/products/${1 + (i % 10)}`)).status);
    await waitFor('app-1 marked down', async () => (await pools()).find((b) => b.id === 'app-1')!.state === 'down', 5000);
    for (let i = 0; i < 10; i++) {
      const r = await call(`${up.balancer.url}/api/products/${1 + i}`);
      statuses.push(r.status);
      assert.equal(r.headers.get('x-app-instance'), 'app-2');
    }
    assert.deepEqual(statuses, statuses.map(() => 200));
    assert.equal((await up.summary()).app.instancesUp, 1);

    await up.controls.restartApp(0);
    assert.equal(up.components.find((c) => c.name === 'app-1')!.port, port, 'same port');
    await waitFor('app-1 back up', async () => (await pools()).find((b) => b.id === 'app-1')!.state === 'up', 5000);
  });

  it('controls: algorithm, cache strategy, cutting the cache and the database', async () => {
    up.controls.setAlgorithm('least-connections');
    assert.equal((await up.summary()).balancer.algorithm, 'least-connections');
    assert.match(up.components.find((c) => c.name === 'balancer')!.engine, /least-connections/);
    assert.throws(() => up.controls.setAlgorithm('nope' as 'round-robin'), /unknown algorithm "nope"/);
    await up.controls.setCacheStrategy('read-through');
    assert.equal(up.components.find((c) => c.name === 'cache')!.engine, 'memory read-through');
    up.controls.cutCache(true);
    const errors0 = (await up.summary()).app.cacheErrors;
    assert.equal((await call(`${up.balancer.url}/api/products/20`)).status, 200, 'served from the database');
    assert.ok((await up.summary()).app.cacheErrors > errors0);
    up.controls.cutCache(false);
    up.controls.cutDatabase(true);
    // The instances answer 503 with their typed error; the balancer retries the GET on the other
    // instance, which is cut off too, and answers 503 itself.
    for (const app of up.components.filter((c) => c.kind === 'app')) {
      const direct = await call(`${app.url}/api/orders/1`);
      assert.equal(direct.status, 503, JSON.stringify(direct.body));
      assert.equal(direct.body.error.code, 'ARCHLAB_APP_DATABASE_UNAVAILABLE');
    }
    assert.equal((await call(`${up.balancer.url}/api/orders/1`)).status, 503);
    up.controls.cutDatabase(false);
    assert.equal((await call(`${up.balancer.url}/api/orders/1`)).status, 200);
  });

  it('close() stops everything: every port in the table refuses connections', async () => {
    const ports = up.components.flatMap((c) => (c.port === undefined ? [] : [c.port]));
    await up.close();
    for (const p of ports) assert.equal(await probe(p), 'refused', `port ${p}`);
    await up.close(); // idempotent
  });
});

test('a component that cannot start stops what started before it, and the error names it', async (t) => {
  const dir = tempDir(t);
  // Hold a port, then ask the balancer for it; fixed ports for the app instances and the proxy, to
  // check they are released.
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const taken = (holder.address() as net.AddressInfo).port;
  const [p1, p2, p3, p4] = await freePorts(4);
  const topology = smallTopology(dir, { app: { instances: 2, ports: [p1!, p2!], data: { products: 20, users: 2 } }, proxy: { port: p3! }, payments: { port: p4! }, balancer: { port: taken } });
  await assert.rejects(startUp(topology, { drainTimeoutMs: 200 }), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_UP_START_FAILED'), String(err));
    assert.match((err as Error).message, /^balancer could not start: cannot listen on 127\.0\.0\.1:\d+: address already in use/);
    assert.deepEqual((err as { details?: unknown }).details, { component: 'balancer' });
    return true;
  });
  for (const p of [p1!, p2!, p3!, p4!]) assert.equal(await probe(p), 'refused', `port ${p} released`);
  assert.equal(existsSync(join(dir, 'queue', 'log', '__meta', 'lock')), false, 'the embedded queue was closed (its lock released)');
  assert.equal(await probe(taken), 'accepts', 'the holder still has its port');
});

test('after close() nothing keeps the process alive (a child process exits by itself)', async (t) => {
  const dir = tempDir(t);
  const script = join(import.meta.dirname, 'fixtures', 'start-close.ts');
  const child = spawnTsx(t, script, [dir]);
  const { code } = await child.exit(30_000, 'after close()');
  assert.equal(code, 0, child.err());
  const lines = child.out().trim().split('\n');
  assert.equal(lines.at(-1), 'closed');
  const ports = JSON.parse(lines[0]!) as number[];
  assert.equal(ports.length, 10);
  for (const p of ports) assert.equal(await probe(p), 'refused', `port ${p}`);
});

test('queue engine archlab: up starts the queue server on its own port, and the worker consumes through it', async (t) => {
  const dir = tempDir(t);
  const up = await startUp(smallTopology(dir, { app: { instances: 1, data: { products: 30, users: 3 } }, queue: { engine: 'archlab', worker: { work: '0ms' } }, proxy: { enabled: false } }), {
    drainTimeoutMs: 300,
  });
  t.after(() => up.close());
  const queue = up.components.find((c) => c.name === 'queue')!;
  assert.equal(queue.engine, 'archlab');
  assert.equal(queue.state, 'running');
  assert.equal(queue.url, `tcp://127.0.0.1:${queue.port}`);
  assert.equal(await probe(queue.port!), 'accepts');
  assert.equal(up.components.some((c) => c.kind === 'proxy'), false, 'proxy disabled');
  let placed = 0;
  for (let id = 1; placed < 2 && id <= 30; id++) if ((await fetch(`${up.balancer.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 1, productId: id, qty: 1 }) })).status === 201) placed++;
  assert.equal(placed, 2);
  await waitFor('2 events consumed', async () => (await up.summary()).queue.consumed === 2);
  assert.equal((await up.summary()).queue.depth, 0);
  await up.close();
  assert.equal(await probe(queue.port!), 'refused');
});

test('proxy.enabled false: the apps call payments directly; the proxy is not in the table and counts nothing', async (t) => {
  const dir = tempDir(t);
  const up = await startUp(smallTopology(dir, { app: { instances: 1, data: { products: 30, users: 3 } }, proxy: { enabled: false }, payments: { latency: '0ms', timeout: '1s' } }), { drainTimeoutMs: 300 });
  t.after(() => up.close());
  assert.equal(up.components.some((c) => c.kind === 'proxy'), false);
  assert.equal(up.components.find((c) => c.name === 'payments')!.kind, 'external');
  assert.equal(up.payments.proxyUrl, undefined);
  let placed = 0;
  for (let id = 1; placed < 2 && id <= 30; id++) if ((await call(`${up.balancer.url}/api/orders`, { json: { userId: 1, productId: id, qty: 1 } })).status === 201) placed++;
  assert.equal(placed, 2);
  const s = await up.summary();
  assert.equal(s.payments.charges, 2, 'payments saw both');
  assert.deepEqual(s.app.payments, { authorized: 2, failed: 0, abandoned: 0 });
  assert.deepEqual(s.proxy, { requests: 0, errors: 0, denied: 0 });

  // Slower than the app's timeout (1 s): the order is refused with 504 and not committed.
  up.controls.setPaymentsLatency(3000);
  let slow: Awaited<ReturnType<typeof call>> | undefined;
  for (let id = 1; slow === undefined && id <= 30; id++) {
    const r = await call(`${up.balancer.url}/api/orders`, { json: { userId: 1, productId: id, qty: 1 } });
    if (r.status !== 409) slow = r;
  }
  assert.equal(slow?.status, 504, JSON.stringify(slow?.body));
  assert.equal(slow.body.error.code, 'ARCHLAB_APP_PAYMENT_TIMEOUT');
  assert.equal((await up.summary()).app.ordersPlaced, 2);
  up.controls.setPaymentsLatency(0);
});

test('the load generator: clients.rate 20 reaches the edges, the balancer and the app; spike(5, 1) raises the rate; close() releases every port', async (t) => {
  const dir = tempDir(t);
  const up = await startUp(smallTopology(dir, { clients: { rate: 20, mix: { reads: 50, writes: 25, searches: 10, static: 15 } } }), { healthIntervalMs: 100, drainTimeoutMs: 500 });
  t.after(() => up.close());
  await sleep(1500);
  const s1 = await up.summary();
  assert.ok(s1.clients.issued >= 15 && s1.clients.issued <= 45, `issued ${s1.clients.issued} in 1.5 s at 20/s`);
  assert.equal(s1.clients.rate, 20);
  assert.equal(s1.clients.errors, 0);
  assert.equal(s1.clients.timeouts, 0);
  assert.equal(s1.clients.dropped, 0);
  assert.ok(s1.cdn.requests > 0 && s1.cdn.edgeHits + s1.cdn.edgeMisses > 0, `the edges saw traffic: ${JSON.stringify(s1.cdn)}`);
  assert.ok(s1.balancer.requests > 0, 'the balancer saw traffic');
  await waitFor('the app to count orders from the load generator', async () => (await up.summary()).app.ordersPlaced > 0, 10_000);
  await waitFor('answers with a p99', async () => (await up.summary()).clients.p99Ms !== null, 5000);

  // The rate over one second without and with the spike (5 x 20/s).
  const i0 = (await up.summary()).clients.issued;
  await sleep(1000);
  const i1 = (await up.summary()).clients.issued;
  up.controls.spike(5, 1);
  const during = await up.summary();
  assert.equal(during.clients.rate, 100);
  assert.equal(during.clients.spike?.factor, 5);
  await sleep(1000);
  const i2 = (await up.summary()).clients.issued;
  const base = i1 - i0;
  const spiked = i2 - i1;
  assert.ok(base >= 10 && base <= 30, `base second: ${base}`);
  assert.ok(spiked >= 50 && spiked > 2 * base, `spike second: ${spiked} (base ${base})`);
  await waitFor('the spike to end', async () => (await up.summary()).clients.spike === null, 3000);
  assert.equal((await up.summary()).clients.rate, 20);
  assert.throws(() => up.controls.spike(0, 1), /spike factor must be 1\.\.100/);
  assert.throws(() => up.controls.spike(2, 601), /spike duration must be 1\.\.600 s/);
  assert.throws(() => up.controls.setRate(-1), /rate must be 0\.\.100000/);

  // setRate(0): nothing more is sent (after the next tick, which sends what fell due before the change).
  up.controls.setRate(0);
  await sleep(100);
  await waitFor('requests in flight to settle', async () => (await up.summary()).clients.inFlight === 0, 5000);
  const idle = (await up.summary()).clients.issued;
  await sleep(300);
  assert.equal((await up.summary()).clients.issued, idle);
  up.controls.setRate(50);
  await sleep(200);
  assert.ok((await up.summary()).clients.issued > idle, 'running again');

  const ports = up.components.flatMap((c) => (c.port === undefined ? [] : [c.port]));
  await up.close();
  for (const p of ports) assert.equal(await probe(p), 'refused', `port ${p}`);
});

test('orders survive killed instances: 40 req/s with 30% orders, an instance killed and restarted 5 times; no 5xx, error or timeout, and no order placed twice', async (t) => {
  const dir = tempDir(t);
  const products = 60;
  const up = await startUp(smallTopology(dir, { app: { instances: 2, data: { products, users: 5 } } }), { healthIntervalMs: 100, drainTimeoutMs: 500 });
  t.after(() => up.close());
  // The runner's own clients as the runner starts them (startLoadGenerator, fronts and regions), run
  // here so the test reads their stats whole: orders go to the balancer, each with a fresh
  // Idempotency-Key, which is what lets the balancer send one again after a reset.
  const clients = startLoadGenerator({
    cdnUrl: up.url,
    balancerUrl: up.balancer.url,
    rate: 40,
    skew: 0.8,
    mix: { reads: 50, writes: 30, searches: 10, static: 10 },
    maxInFlight: 256,
    timeoutMs: 5000,
    products,
    users: 5,
    categories: CATEGORIES,
    regions: [{ name: 'eu', weight: 1 }],
    random: new SeededRandom(7),
  });
  t.after(() => clients.stop());
  const pools = async (): Promise<Array<{ id: string; state: string }>> => {
    const r = await call(`${up.balancer.adminUrl}/pools`, { headers: { authorization: `Bearer ${up.balancer.adminToken}` } });
    return r.body.pools[0].backends;
  };
  await sleep(500);
  for (let round = 0; round < 5; round++) {
    const i = round % 2;
    const name = `app-${i + 1}`;
    await up.controls.killApp(i);
    // Long enough for orders to meet the closed port (connect refused) before health marks it down.
    await sleep(400);
    await up.controls.restartApp(i);
    await waitFor(`${name} back up (round ${round})`, async () => (await pools()).find((b) => b.id === name)!.state === 'up', 5000);
    await sleep(200);
  }
  clients.setRate(0);
  await waitFor('the clients to settle', () => clients.stats().inFlight === 0, 10_000);
  const s = clients.stats();
  assert.ok(s.byKind.writes >= 60, `orders sent: ${s.byKind.writes}`);
  // Not `dropped`: requests the generator itself skipped (due while it was stalled, a busy machine's
  // doing) were never sent, so the system under test had no chance to fail them.
  assert.deepEqual(
    { errors: s.errors, timeouts: s.timeouts, '5xx': s.completed['5xx'] },
    { errors: 0, timeouts: 0, '5xx': 0 },
    `the clients saw no failure: ${JSON.stringify(s)}`,
  );
  assert.ok(s.created > 0, 'orders were placed');

  // The database: one order per 201 the clients got, each under its own key.
  const db = new Database(join(dir, 'catalogue.db'), { readonly: true, fileMustExist: true });
  try {
    const count = (sql: string): number => (db.prepare(sql).get() as { n: number }).n;
    assert.equal(count('SELECT count(*) AS n FROM orders'), s.created, 'as many orders as 201s: none placed twice, none lost');
    assert.equal(count('SELECT count(*) AS n FROM orders o LEFT JOIN order_keys k ON k.order_id = o.id WHERE k.idempotency_key IS NULL'), 0, 'every order has its key');
    assert.equal(count('SELECT count(*) AS n FROM order_keys'), s.created);
  } finally {
    db.close();
  }
  const summary = await up.summary();
  assert.ok(summary.balancer.failures > 0, `the kills were seen by the balancer (failures ${summary.balancer.failures})`);
});
