import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { STRATEGIES, type StrategyName } from '../../cache/index.js';
import { ArchlabError, listen, SeededRandom } from '../../core/index.js';
import { ownSchema } from '../../../test/support/postgres.js';
import { needService, POSTGRES, REDIS } from '../../../test/support/services.js';
import { tempDir } from '../../../test/up/helpers.js';
import { startPayments } from '../payments.js';
import { createDemoApp, type DemoApp, type DemoAppOptions, type OrderPlacedEvent } from './app.js';
import { generateCatalogue } from './data.js';

const SEED = { products: 200, users: 10, seed: 5 };
const catalogue = generateCatalogue({ products: SEED.products, users: SEED.users, random: new SeededRandom(SEED.seed) });
const soldOut = catalogue.products.find((p) => p.stock === 0)!;
const plenty = catalogue.products.filter((p) => p.stock >= 20);

interface Running {
  app: DemoApp;
  base: string;
}

/** Starts the app on a loopback port; everything is closed when the test ends, pass or fail. */
async function start(t: TestContext, opts: Partial<DemoAppOptions> = {}): Promise<Running> {
  const app = await createDemoApp({ name: 'app-1', database: { engine: 'sqlite', file: ':memory:' }, seed: SEED, ...opts });
  const server = http.createServer(app.handler);
  const handle = await listen(server, { port: 0, drainTimeoutMs: 1000 });
  t.after(async () => {
    await handle.close();
    await app.close();
  });
  return { app, base: `http://127.0.0.1:${handle.address.port}` };
}

async function call(base: string, path: string, init: RequestInit & { json?: unknown } = {}): // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies of many shapes, checked field by field
  Promise<{ status: number; body: any; headers: Headers }> {
  const { json, ...rest } = init;
  const res = await fetch(base + path, json === undefined ? rest : { ...rest, headers: { 'content-type': 'application/json', ...(rest.headers ?? {}) }, body: JSON.stringify(json) });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, body: type.startsWith('application/json') ? JSON.parse(text) : text, headers: res.headers };
}

const order = (base: string, json: unknown) => call(base, '/api/orders', { method: 'POST', json });

test('an order is placed, read back, takes stock, and publishes its event', async (t) => {
  const events: OrderPlacedEvent[] = [];
  const { app, base } = await start(t, { publish: (e) => void events.push(e) });
  const p = plenty[0]!;
  assert.equal((await call(base, `/api/products/${p.id}`)).body.stock, p.stock);

  const placed = await order(base, { userId: 3, productId: p.id, qty: 4 });
  assert.equal(placed.status, 201, JSON.stringify(placed.body));
  assert.equal(placed.body.product.stock, p.stock - 4);
  const id = placed.body.order.id as number;
  assert.equal(placed.headers.get('location'), `/api/orders/${id}`);

  const read = await call(base, `/api/orders/${id}`);
  assert.equal(read.status, 200);
  assert.deepEqual({ ...read.body, createdMs: 0 }, { id, userId: 3, productId: p.id, qty: 4, createdMs: 0 });
  // The cached product was invalidated by the order: the next read shows the new stock.
  assert.equal((await call(base, `/api/products/${p.id}`)).body.stock, p.stock - 4);

  assert.equal(events.length, 1);
  assert.deepEqual({ ...events[0]!, at: 0 }, { type: 'order.placed', orderId: id, userId: 3, productId: p.id, qty: 4, at: 0, instance: 'app-1' });
  assert.equal(events[0]!.at, read.body.createdMs);
  assert.deepEqual(app.stats().orders, { placed: 1, outOfStock: 0, replayed: 0 });
  assert.deepEqual(app.stats().events, { published: 1, failed: 0 });
  assert.equal((await call(base, '/api/orders/999999')).status, 404);
});

test('out of stock is 409 and takes nothing; unknown user or product is 422 naming the field', async (t) => {
  const { app, base } = await start(t);
  const r = await order(base, { userId: 1, productId: soldOut.id, qty: 1 });
  assert.equal(r.status, 409);
  assert.equal(r.body.error.code, 'ARCHLAB_APP_OUT_OF_STOCK');
  assert.match(r.body.error.message, new RegExp(`product ${soldOut.id} has 0 in stock, 1 ordered`));
  const p = plenty[1]!;
  const tooMany = await order(base, { userId: 1, productId: p.id, qty: 100 });
  assert.equal(tooMany.status, p.stock >= 100 ? 201 : 409);
  assert.equal((await call(base, `/api/products/${p.id}`)).body.stock, p.stock >= 100 ? p.stock - 100 : p.stock);
  const noUser = await order(base, { userId: 999, productId: p.id, qty: 1 });
  assert.deepEqual([noUser.status, noUser.body.error.field], [422, 'userId']);
  const noProduct = await order(base, { userId: 1, productId: 5000, qty: 1 });
  assert.deepEqual([noProduct.status, noProduct.body.error.field], [422, 'productId']);
  assert.equal(app.stats().orders.outOfStock, p.stock >= 100 ? 1 : 2);
});

test('bad input is 400 naming the bad field; wrong type 415; oversized body 413', async (t) => {
  const { base } = await start(t, { maxBodyBytes: 1024 });
  const cases: [unknown, string, RegExp][] = [
    [{ userId: 1, productId: 2, qty: 0 }, 'qty', /qty: expected an integer 1\.\.100/],
    [{ userId: 1, productId: 2, qty: 101 }, 'qty', /qty:/],
    [{ userId: 1, productId: 2, qty: 1.5 }, 'qty', /qty:/],
    [{ productId: 2, qty: 1 }, 'userId', /userId:/],
    [{ userId: '1', productId: 2, qty: 1 }, 'userId', /userId:/],
    [{ userId: 1, productId: -2, qty: 1 }, 'productId', /productId: expected a positive integer/],
    [{ userId: 1, productId: 2, qty: 1, coupon: 'x' }, 'coupon', /coupon: unknown field/],
  ];
  for (const [json, field, message] of cases) {
    const r = await order(base, json);
    assert.equal(r.status, 400, JSON.stringify(json));
    assert.equal(r.body.error.code, 'ARCHLAB_APP_BAD_REQUEST');
    assert.equal(r.body.error.field, field, JSON.stringify(r.body));
    assert.match(r.body.error.message, message);
  }
  const notJson = await call(base, '/api/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"userId":' });
  assert.deepEqual([notJson.status, notJson.body.error.code], [400, 'ARCHLAB_APP_BAD_REQUEST']);
  const text = await call(base, '/api/orders', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
  assert.deepEqual([text.status, text.body.error.code], [415, 'ARCHLAB_APP_UNSUPPORTED_MEDIA_TYPE']);
  const big = await order(base, { userId: 1, productId: 2, qty: 1, pad: 'x'.repeat(2000) });
  assert.deepEqual([big.status, big.body.error.code], [413, 'ARCHLAB_APP_BODY_TOO_LARGE']);
  assert.deepEqual((await call(base, '/api/products/abc')).body.error.field, 'id');
  assert.equal((await call(base, '/api/products/0')).status, 400);
  assert.equal((await call(base, '/api/products/99999999999')).status, 400);
  assert.equal((await call(base, '/api/products/5000')).status, 404);
  const del = await call(base, '/api/orders', { method: 'DELETE' });
  assert.deepEqual([del.status, del.headers.get('allow')], [405, 'POST']);
  assert.equal((await call(base, '/nope')).status, 404);
});

test('search by category: the seed\'s products of that category in id order, limit bounded', async (t) => {
  const { base } = await start(t);
  const books = catalogue.products.filter((p) => p.category === 'books');
  const r = await call(base, '/api/products?category=books&limit=3');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { category: 'books', limit: 3, products: books.slice(0, 3) });
  assert.equal((await call(base, '/api/products?category=books')).body.products.length, Math.min(20, books.length));
  for (const [q, field] of [['category=books&limit=0', 'limit'], ['category=books&limit=101', 'limit'], ['category=books&limit=x', 'limit'], ['limit=3', 'category'], ['category=DROP%20TABLE', 'category'], ['category=books&sort=price', 'sort']] as const) {
    const bad = await call(base, `/api/products?${q}`);
    assert.equal(bad.status, 400, q);
    assert.equal(bad.body.error.field, field, `${q}: ${JSON.stringify(bad.body)}`);
  }
});

test('the second read of a product is a cache hit: the database is not asked again', async (t) => {
  const { app, base } = await start(t);
  const p = catalogue.products[10]!;
  const first = await call(base, `/api/products/${p.id}`);
  assert.deepEqual(first.body, p);
  assert.equal(first.headers.get('x-app-instance'), 'app-1');
  assert.equal(first.headers.get('cache-control'), 'no-store');
  const after1 = app.stats();
  assert.equal(after1.cache.misses, 1);
  assert.equal(after1.database.calls.getProduct, 1);
  assert.deepEqual((await call(base, `/api/products/${p.id}`)).body, p);
  const after2 = app.stats();
  assert.equal(after2.cache.hits, after1.cache.hits + 1);
  assert.equal(after2.database.calls.getProduct, 1, 'served from the cache');
  const metrics = await call(base, '/metrics');
  assert.match(metrics.body, /archlab_app_cache_hits_total\{instance="app-1"\} 1/);
  assert.match(metrics.body, /archlab_app_cache_misses_total\{instance="app-1"\} 1/);
  assert.match(metrics.body, /archlab_app_requests_total\{route="GET \/api\/products\/:id",status="200",instance="app-1"\} 2/);
  assert.match(metrics.body, /archlab_app_request_duration_seconds_count\{instance="app-1",route="GET \/api\/products\/:id"\} 2/);
});

test('cache cut off: reads are still served, from the database, and the errors are counted; reconnected, the cache serves again', async (t) => {
  const { app, base } = await start(t);
  const p = catalogue.products[20]!;
  await call(base, `/api/products/${p.id}`);
  app.setCacheReachable(false);
  const dbBefore = app.stats().database.calls.getProduct!;
  for (let i = 0; i < 3; i++) {
    const r = await call(base, `/api/products/${p.id}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, p);
  }
  const cut = app.stats();
  assert.equal(cut.cache.reachable, false);
  assert.equal(cut.database.calls.getProduct, dbBefore + 3, 'every read went to the database');
  assert.ok(cut.cache.errors > 0, JSON.stringify(cut.cache));
  // Orders still work and their invalidation is kept for repair.
  const placed = await order(base, { userId: 1, productId: p.id, qty: 1 });
  assert.equal(placed.status, 201);
  assert.equal((await call(base, '/healthz')).body.cache, 'cut-off');
  assert.match((await call(base, '/metrics')).body, /archlab_app_reachable\{dependency="cache",instance="app-1"\} 0/);

  app.setCacheReachable(true);
  // The breaker may hold the store off briefly after the outage; reads meanwhile come from the database.
  const deadline = Date.now() + 5000;
  let hitsBefore = app.stats().cache.hits;
  for (;;) {
    const r = await call(base, `/api/products/${p.id}`);
    assert.equal(r.body.stock, p.stock - 1, 'never the stock from before the order');
    if (app.stats().cache.hits > hitsBefore) break;
    hitsBefore = app.stats().cache.hits;
    assert.ok(Date.now() < deadline, 'the cache serves again after reconnection');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
});

test('database cut off: what needs it answers 503 with a clear JSON error; cached reads still succeed; reconnected, all works', async (t) => {
  const { app, base } = await start(t);
  const cached = catalogue.products[30]!;
  await call(base, `/api/products/${cached.id}`);
  app.setDatabaseReachable(false);
  for (const r of [
    await call(base, `/api/products/${catalogue.products[31]!.id}`),
    await order(base, { userId: 1, productId: cached.id, qty: 1 }),
    await call(base, '/api/products?category=books'),
    await call(base, '/api/orders/1'),
  ]) {
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'ARCHLAB_APP_DATABASE_UNAVAILABLE');
    assert.match(r.body.error.message, /database/);
  }
  assert.deepEqual((await call(base, `/api/products/${cached.id}`)).body, cached, 'a cached product is still served');
  const health = await call(base, '/healthz');
  assert.deepEqual([health.status, health.body.database], [200, 'cut-off']);
  app.setDatabaseReachable(true);
  assert.equal((await call(base, `/api/products/${catalogue.products[31]!.id}`)).status, 200);
  assert.equal((await order(base, { userId: 1, productId: cached.id, qty: 1 })).status, 201);
});

test('a publish that fails or hangs does not fail the order; it is counted', async (t) => {
  let mode: 'fail' | 'hang' = 'fail';
  const { app, base } = await start(t, {
    publishTimeoutMs: 100,
    publish: () => (mode === 'fail' ? Promise.reject(new ArchlabError('TEST_QUEUE_DOWN', 'queue down')) : new Promise<void>(() => {})),
  });
  const p = plenty[2]!;
  assert.equal((await order(base, { userId: 1, productId: p.id, qty: 1 })).status, 201);
  mode = 'hang';
  assert.equal((await order(base, { userId: 1, productId: p.id, qty: 1 })).status, 201);
  assert.deepEqual(app.stats().events, { published: 0, failed: 2 });
  assert.match((await call(base, '/metrics')).body, /archlab_app_events_total\{result="failed",instance="app-1"\} 2/);
});

test('every strategy: a product update is read back, reaches the database, and reads stay correct across runtime switches', async (t) => {
  const { app, base } = await start(t);
  const p = plenty[3]!;
  let price = 1000;
  for (const s of [...STRATEGIES, 'cache-aside'] as StrategyName[]) {
    await app.setStrategy(s);
    assert.equal(app.strategy, s);
    price += 1;
    const upd = await call(base, `/api/products/${p.id}`, { method: 'PATCH', json: { priceCents: price } });
    assert.equal(upd.status, 200, `${s}: ${JSON.stringify(upd.body)}`);
    assert.equal(upd.body.priceCents, price);
    assert.equal((await call(base, `/api/products/${p.id}`)).body.priceCents, price, s);
    const placed = await order(base, { userId: 1, productId: p.id, qty: 1 });
    assert.equal(placed.status, 201);
    assert.equal((await call(base, `/api/products/${p.id}`)).body.stock, placed.body.product.stock, `${s}: stock after an order`);
  }
  // Back on cache-aside, after write-back was closed (flushed): the database has the last prices.
  app.setCacheReachable(false);
  const fromDb = await call(base, `/api/products/${p.id}`);
  assert.equal(fromDb.body.priceCents, price);
  assert.equal(fromDb.body.stock, p.stock - STRATEGIES.length - 1);
  app.setCacheReachable(true);
  const bad = await call(base, `/api/products/${p.id}`, { method: 'PATCH', json: { stock: 5 } });
  assert.deepEqual([bad.status, bad.body.error.field], [400, 'stock']);
  assert.equal((await call(base, `/api/products/${p.id}`, { method: 'PATCH', json: {} })).status, 400);
  assert.equal((await call(base, '/api/products/5000', { method: 'PATCH', json: { name: 'x' } })).status, 404);
  await assert.rejects(app.setStrategy('write-around' as StrategyName), /unknown cache strategy/);
  // Counters are cumulative across switches.
  assert.ok(app.stats().cache.hits + app.stats().cache.misses >= 8);
});

test('write-back with the cache cut off: updates fall back to the database', async (t) => {
  const { app, base } = await start(t, { cache: { strategy: 'write-back' } });
  const p = plenty[4]!;
  app.setCacheReachable(false);
  const r = await call(base, `/api/products/${p.id}`, { method: 'PATCH', json: { description: 'direct' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await call(base, `/api/products/${p.id}`)).body.description, 'direct');
  assert.ok(app.stats().cache.errors > 0);
});

test('static product images are cacheable and the same on every instance', async (t) => {
  const { base } = await start(t);
  const r = await call(base, '/static/products/7.svg');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'image/svg+xml');
  assert.equal(r.headers.get('cache-control'), 'public, max-age=3600');
  assert.match(r.body, /^<svg .*#7<\/text><\/svg>$/);
  const again = await call(base, '/static/products/7.svg', { headers: { 'if-none-match': r.headers.get('etag')! } });
  assert.equal(again.status, 304);
});

test('after close() the app refuses work; close is idempotent', async () => {
  const app = await createDemoApp({ database: { engine: 'sqlite', file: ':memory:' }, seed: SEED });
  const server = http.createServer(app.handler);
  const handle = await listen(server, { port: 0 });
  try {
    await app.close();
    await app.close();
    const r = await call(`http://127.0.0.1:${handle.address.port}`, '/api/products/1');
    assert.deepEqual([r.status, r.body.error.code], [503, 'ARCHLAB_APP_CLOSED']);
  } finally {
    await handle.close();
  }
});

const redisSkip = await needService(REDIS);

test('Redis as the cache: the second read is a hit, and the cache is shared by two instances', { skip: redisSkip }, async (t) => {
  const prefix = `archlab:up-test:${process.pid}:${Date.now()}:`;
  const a = await start(t, { name: 'a', cache: { engine: 'redis', url: 'redis://127.0.0.1:6379', prefix } });
  const b = await start(t, { name: 'b', cache: { engine: 'redis', url: 'redis://127.0.0.1:6379', prefix } });
  const p = catalogue.products[40]!;
  assert.deepEqual((await call(a.base, `/api/products/${p.id}`)).body, p);
  assert.deepEqual((await call(b.base, `/api/products/${p.id}`)).body, p);
  assert.equal(a.app.stats().database.calls.getProduct, 1);
  assert.equal(b.app.stats().database.calls.getProduct ?? 0, 0, 'b read what a cached');
  assert.equal(b.app.stats().cache.hits, 1);
});

// ------------------------------------------------------------------ Idempotency-Key

const keyed = (base: string, key: string, json: unknown) => call(base, '/api/orders', { method: 'POST', headers: { 'idempotency-key': key }, json });

test('Idempotency-Key: a repeat gets the same 201 and body, places nothing more (no stock, no event); without the key nothing changes', async (t) => {
  const events: OrderPlacedEvent[] = [];
  const { app, base } = await start(t, { publish: (e) => void events.push(e) });
  const p = plenty[5]!;
  const key = randomUUID();
  const first = await keyed(base, key, { userId: 2, productId: p.id, qty: 3 });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.equal(first.headers.get('idempotent-replayed'), null);
  for (let i = 0; i < 3; i++) {
    const again = await keyed(base, key, { userId: 2, productId: p.id, qty: 3 });
    assert.equal(again.status, 201);
    assert.deepEqual(again.body, first.body, 'the same body: the order, the stock right after it');
    assert.equal(again.headers.get('location'), first.headers.get('location'));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
  }
  assert.equal((await call(base, `/api/products/${p.id}`)).body.stock, p.stock - 3, 'stock taken once');
  assert.equal(events.length, 1, 'one event');
  assert.deepEqual(app.stats().orders, { placed: 1, outOfStock: 0, replayed: 3 });
  assert.match((await call(base, '/metrics')).body, /archlab_app_orders_total\{result="replayed",instance="app-1"\} 3/);
  // Another key, or none: a new order each time.
  assert.equal((await keyed(base, randomUUID(), { userId: 2, productId: p.id, qty: 3 })).status, 201);
  assert.equal((await order(base, { userId: 2, productId: p.id, qty: 3 })).status, 201);
  assert.equal((await order(base, { userId: 2, productId: p.id, qty: 3 })).status, 201);
  assert.equal(app.stats().orders.placed, 4);
  assert.equal((await call(base, `/api/products/${p.id}`)).body.stock, p.stock - 12);
});

test('Idempotency-Key: a malformed key is 400 naming the header; a key reused for another order is 422; a refused order leaves the key free', async (t) => {
  const { app, base } = await start(t);
  const p = plenty[6]!;
  for (const bad of ['', 'x'.repeat(256), 'has space', 'caf\u00e9', 'a\tb']) {
    const r = await keyed(base, bad, { userId: 1, productId: p.id, qty: 1 });
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(r.body.error.code, 'ARCHLAB_APP_BAD_REQUEST');
    assert.equal(r.body.error.field, 'Idempotency-Key');
    assert.match(r.body.error.message, /^Idempotency-Key: expected 1-255 visible ASCII characters/);
  }
  const two = await call(base, '/api/orders', { method: 'POST', headers: [['content-type', 'application/json'], ['idempotency-key', 'a'], ['idempotency-key', 'b']], body: JSON.stringify({ userId: 1, productId: p.id, qty: 1 }) });
  assert.deepEqual([two.status, two.body.error.field], [400, 'Idempotency-Key'], 'two keys');
  assert.equal((await keyed(base, 'x'.repeat(255), { userId: 1, productId: p.id, qty: 1 })).status, 201, '255 characters is fine');
  assert.equal(app.stats().orders.placed, 1, 'no bad key placed anything');

  const key = 'order-2024-0001';
  assert.equal((await keyed(base, key, { userId: 1, productId: p.id, qty: 1 })).status, 201);
  for (const other of [{ userId: 2, productId: p.id, qty: 1 }, { userId: 1, productId: plenty[7]!.id, qty: 1 }, { userId: 1, productId: p.id, qty: 2 }]) {
    const r = await keyed(base, key, other);
    assert.equal(r.status, 422, JSON.stringify(other));
    assert.equal(r.body.error.code, 'ARCHLAB_APP_IDEMPOTENCY_KEY_REUSED');
    assert.equal(r.body.error.field, 'Idempotency-Key');
  }
  assert.equal(app.stats().orders.placed, 2);

  // Out of stock with a key: 409, and the key stays free for a later attempt that can succeed.
  const sold = await keyed(base, 'later', { userId: 1, productId: soldOut.id, qty: 1 });
  assert.equal(sold.status, 409);
  assert.equal((await keyed(base, 'later', { userId: 1, productId: soldOut.id, qty: 1 })).status, 409, 'not replayed: nothing was stored');
  assert.equal(app.stats().orders.replayed, 0);
  // The database cut off: 503, with or without a key (the key lookup is behind the same switch).
  app.setDatabaseReachable(false);
  assert.equal((await keyed(base, 'cut', { userId: 1, productId: p.id, qty: 1 })).status, 503);
  app.setDatabaseReachable(true);
  assert.equal((await keyed(base, 'cut', { userId: 1, productId: p.id, qty: 1 })).status, 201);
});

test('Idempotency-Key with payments: a repeat authorizes nothing; two requests with one key at once place one order and the loser\'s authorization is abandoned', async (t) => {
  // Slow enough that both concurrent requests look the key up before either commits.
  const payments = await startPayments({ latencyMs: 100, drainTimeoutMs: 300 });
  t.after(() => payments.close());
  const { app, base } = await start(t, { outbound: { paymentsUrl: payments.url, timeoutMs: 2000 } });
  const p = plenty[8]!;
  const first = await keyed(base, 'pay-1', { userId: 1, productId: p.id, qty: 2 });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.match(first.body.payment.id, /^ch_/);
  const again = await keyed(base, 'pay-1', { userId: 1, productId: p.id, qty: 2 });
  assert.deepEqual([again.status, again.body], [201, first.body], 'the same payment in the answer');
  assert.equal(payments.stats().charges, 1, 'no second authorization');

  const racing = await Promise.all([0, 1, 2].map(() => keyed(base, 'pay-race', { userId: 1, productId: p.id, qty: 1 })));
  assert.deepEqual(racing.map((r) => r.status), [201, 201, 201]);
  assert.equal(new Set(racing.map((r) => r.body.order.id)).size, 1, 'one order');
  assert.equal(new Set(racing.map((r) => r.body.payment.id)).size, 1, 'everyone is told the winner\'s payment');
  const s = app.stats();
  assert.equal(s.orders.placed, 2);
  assert.equal(s.orders.replayed, 3);
  assert.equal(s.payments.authorized, 4, 'each racer authorized before the commit decided');
  assert.equal(s.payments.abandoned, 2, 'the losers\' authorizations are abandoned (they lapse)');
  assert.equal((await call(base, `/api/products/${p.id}`)).body.stock, p.stock - 3);
});

const pgSkip = await needService(POSTGRES);

/** Two app instances sharing one database; requests with one key race across both. */
async function twoInstancesRace(t: TestContext, database: DemoAppOptions['database']): Promise<void> {
  const a = await start(t, { name: 'a', database });
  const b = await start(t, { name: 'b', database });
  const p = plenty[9]!;
  for (let round = 0; round < 5; round++) {
    const key = randomUUID();
    const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => keyed(i % 2 === 0 ? a.base : b.base, key, { userId: 3, productId: p.id, qty: 1 })));
    assert.deepEqual(replies.map((r) => r.status), replies.map(() => 201), JSON.stringify(replies.map((r) => r.body)));
    assert.equal(new Set(replies.map((r) => r.body.order.id)).size, 1, `round ${round}: one order for the key`);
    assert.equal(new Set(replies.map((r) => JSON.stringify(r.body))).size, 1, 'one answer');
  }
  assert.equal(a.app.stats().orders.placed + b.app.stats().orders.placed, 5);
  assert.equal(a.app.stats().orders.replayed + b.app.stats().orders.replayed, 25);
  assert.equal((await call(a.base, `/api/products/${p.id}`)).body.stock, p.stock - 5);
}

test('Idempotency-Key across two instances on one SQLite file: one order per key', async (t) => {
  await twoInstancesRace(t, { engine: 'sqlite', file: join(tempDir(t, 'archlab-app-'), 'shop.db') });
});

test('Idempotency-Key across two instances on PostgreSQL: the unique constraint decides, one order per key', { skip: pgSkip }, async (t) => {
  const { url } = await ownSchema(t, 'archlab_app_keys');
  await twoInstancesRace(t, { engine: 'postgres', url });
});
