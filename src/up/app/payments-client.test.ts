/**
 * The order path with payments: POST /api/orders authorizes price x qty with the payments service
 * through a real forward proxy before the order commits; a payment that fails, times out, or cannot
 * be sent leaves no order and no stock taken, and answers a typed 502/503/504.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isArchlabError, listen, SeededRandom } from '../../core/index.js';
import { startProxy, type ProxyConfigInput, type ProxyHandle } from '../../proxy/index.js';
import { startPayments, type PaymentsHandle } from '../payments.js';
import { createDemoApp, type DemoApp, type DemoAppOptions } from './app.js';
import { generateCatalogue } from './data.js';
import type { OutboundOptions } from './payments-client.js';

const SEED = { products: 50, users: 5, seed: 11 };
const catalogue = generateCatalogue({ products: SEED.products, users: SEED.users, random: new SeededRandom(SEED.seed) });
const plenty = catalogue.products.filter((p) => p.stock >= 10);
const soldOut = catalogue.products.find((p) => p.stock === 0)!;

async function startApp(t: TestContext, outbound: OutboundOptions | undefined, opts: Partial<DemoAppOptions> = {}): Promise<{ app: DemoApp; base: string }> {
  const app = await createDemoApp({ name: 'app-1', database: { engine: 'sqlite', file: ':memory:' }, seed: SEED, ...(outbound === undefined ? {} : { outbound }), ...opts });
  const handle = await listen(http.createServer(app.handler), { port: 0, drainTimeoutMs: 500 });
  t.after(async () => {
    await handle.close();
    await app.close();
  });
  return { app, base: handle.address.url! };
}

async function startPaymentsFor(t: TestContext, latencyMs = 0): Promise<PaymentsHandle> {
  const p = await startPayments({ latencyMs, drainTimeoutMs: 300 });
  t.after(() => p.close());
  return p;
}

/** The forward proxy as the runner starts it: loopback excepted from the SSRF guard. */
async function startForwardProxy(t: TestContext, extra: Partial<ProxyConfigInput> = {}): Promise<ProxyHandle> {
  const p = await startProxy({ listeners: [{ port: 0 }], acl: { ssrfGuard: { exceptions: ['127.0.0.1'] } }, log: { level: 'silent' }, metrics: { defaultMetrics: false }, timeouts: { drain: '300ms' }, ...extra });
  t.after(() => p.close());
  return p;
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies of several shapes, checked field by field
async function call(url: string, init: RequestInit & { json?: unknown } = {}): Promise<{ status: number; body: any }> {
  const { json, ...rest } = init;
  const res = await fetch(url, json === undefined ? rest : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) });
  const text = await res.text();
  return { status: res.status, body: (res.headers.get('content-type') ?? '').startsWith('application/json') ? JSON.parse(text) : text };
}

const order = (base: string, productId: number, qty = 1, userId = 2) => call(`${base}/api/orders`, { json: { userId, productId, qty } });
const stockOf = async (base: string, productId: number): Promise<number> => (await call(`${base}/api/products/${productId}`)).body.stock as number;

/** The failed order left nothing behind: no order row, the stock as it was, nothing counted as placed. */
async function nothingCommitted(app: DemoApp, base: string, productId: number, stock: number): Promise<void> {
  assert.equal(await stockOf(base, productId), stock, 'stock unchanged');
  assert.equal((await call(`${base}/api/orders/1`)).status, 404, 'no order row');
  assert.equal(app.stats().orders.placed, 0);
}

test('an order authorizes price x qty with payments through the forward proxy, then commits; the proxy saw the request', async (t) => {
  const payments = await startPaymentsFor(t);
  const proxy = await startForwardProxy(t);
  const { app, base } = await startApp(t, { paymentsUrl: payments.url, proxyUrl: proxy.address.url!, timeoutMs: 2000 });
  const p = plenty[0]!;
  const r = await order(base, p.id, 3);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.match(r.body.payment.id, /^ch_[0-9a-f]{16}$/);
  assert.equal(r.body.payment.status, 'authorized');
  assert.equal(r.body.product.stock, p.stock - 3);
  assert.equal((await call(`${base}/api/orders/${r.body.order.id}`)).status, 200);
  assert.equal(payments.stats().charges, 1);
  const ps = await proxy.stats();
  assert.deepEqual(ps, { requests: 1, tunnels: 0, errors: 0, denied: 0, active: 0 }, 'one absolute-form request, no tunnel');
  assert.deepEqual(app.stats().payments, { enabled: true, authorized: 1, failed: 0, abandoned: 0, results: { authorized: 1, refused: 0, error: 0, timeout: 0, unreachable: 0, busy: 0 } });
  const metrics = (await call(`${base}/metrics`)).body as string;
  assert.match(metrics, /archlab_app_outbound_total\{target="payments",result="authorized",instance="app-1"\} 1/);
  assert.match(metrics, /archlab_app_outbound_total\{target="payments",result="timeout",instance="app-1"\} 0/);
  assert.match(metrics, /archlab_app_outbound_duration_seconds_count\{instance="app-1",target="payments"\} 1/);
});

test('the charge sent: the app\'s reference, the user, price x qty; in absolute form through the proxy, origin form at payments', async (t) => {
  const seen: { url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  const fake = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', headers: req.headers, body });
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'ch_fake', status: 'authorized' }));
    });
  });
  const fakeHandle = await listen(fake, { port: 0, drainTimeoutMs: 200 });
  t.after(() => fakeHandle.close());
  const proxy = await startForwardProxy(t);
  const { base } = await startApp(t, { paymentsUrl: fakeHandle.address.url!, proxyUrl: proxy.address.url! });
  const p = plenty[1]!;
  const r = await order(base, p.id, 2, 4);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.deepEqual(r.body.payment, { id: 'ch_fake', status: 'authorized' });
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.url, '/charges');
  assert.match(seen[0]!.headers.via ?? '', /archlab/, 'came through the proxy');
  const charge = JSON.parse(seen[0]!.body) as { orderId: string; userId: number; amountCents: number };
  assert.match(charge.orderId, /^[0-9a-f-]{36}$/);
  assert.equal(charge.userId, 4);
  assert.equal(charge.amountCents, p.priceCents * 2);
});

test('payments failing: 502 ARCHLAB_APP_PAYMENT_FAILED, no order committed, stock unchanged, counted', async (t) => {
  const payments = await startPaymentsFor(t);
  payments.setFailureRate(1);
  const proxy = await startForwardProxy(t);
  const { app, base } = await startApp(t, { paymentsUrl: payments.url, proxyUrl: proxy.address.url! });
  const p = plenty[2]!;
  const r = await order(base, p.id, 2);
  assert.equal(r.status, 502, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'ARCHLAB_APP_PAYMENT_FAILED');
  assert.match(r.body.error.message, /503 ARCHLAB_PAYMENTS_UNAVAILABLE/);
  await nothingCommitted(app, base, p.id, p.stock);
  assert.deepEqual(app.stats().payments.results, { authorized: 0, refused: 0, error: 1, timeout: 0, unreachable: 0, busy: 0 });
  assert.equal(app.stats().payments.failed, 1);
  assert.equal((await proxy.stats()).errors, 1, 'the proxy passed a 5xx on');
  assert.match((await call(`${base}/metrics`)).body as string, /archlab_app_outbound_total\{target="payments",result="error",instance="app-1"\} 1/);
  // Back on: the same order goes through.
  payments.setFailureRate(0);
  assert.equal((await order(base, p.id, 2)).status, 201);
  assert.equal(await stockOf(base, p.id), p.stock - 2);
});

test('payments too slow: 504 ARCHLAB_APP_PAYMENT_TIMEOUT after timeoutMs, no order committed', async (t) => {
  const payments = await startPaymentsFor(t, 2000);
  const proxy = await startForwardProxy(t);
  const { app, base } = await startApp(t, { paymentsUrl: payments.url, proxyUrl: proxy.address.url!, timeoutMs: 150 });
  const p = plenty[3]!;
  const t0 = performance.now();
  const r = await order(base, p.id);
  assert.ok(performance.now() - t0 < 1500, 'answered at the app\'s deadline, not the payment\'s latency');
  assert.equal(r.status, 504, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'ARCHLAB_APP_PAYMENT_TIMEOUT');
  assert.match(r.body.error.message, /did not answer within 150 ms/);
  await nothingCommitted(app, base, p.id, p.stock);
  assert.equal(app.stats().payments.results.timeout, 1);
});

test('the proxy down: 503 ARCHLAB_APP_PAYMENT_UNAVAILABLE naming the proxy, no order committed; payments down behind the proxy: 502 from the proxy -> 502', async (t) => {
  const payments = await startPaymentsFor(t);
  const { app, base } = await startApp(t, { paymentsUrl: payments.url, proxyUrl: `http://127.0.0.1:${await deadPort()}` });
  const p = plenty[4]!;
  const r = await order(base, p.id);
  assert.equal(r.status, 503, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'ARCHLAB_APP_PAYMENT_UNAVAILABLE');
  assert.match(r.body.error.message, /the forward proxy at http:\/\/127\.0\.0\.1:\d+ cannot be reached \(ECONNREFUSED\)/);
  await nothingCommitted(app, base, p.id, p.stock);
  assert.equal(app.stats().payments.results.unreachable, 1);
  assert.equal(payments.stats().charges, 0);

  const proxy = await startForwardProxy(t);
  const b = await startApp(t, { paymentsUrl: `http://127.0.0.1:${await deadPort()}`, proxyUrl: proxy.address.url! });
  const r2 = await order(b.base, p.id);
  assert.equal(r2.status, 502, JSON.stringify(r2.body));
  assert.equal(r2.body.error.code, 'ARCHLAB_APP_PAYMENT_FAILED');
  assert.match(r2.body.error.message, /502 ARCHLAB_PROXY_UPSTREAM/);
  await nothingCommitted(b.app, b.base, p.id, p.stock);
  assert.deepEqual(await proxy.stats(), { requests: 1, tunnels: 0, errors: 1, denied: 0, active: 0 });
});

test('the proxy refusing the target (egress ACL): 502 ARCHLAB_APP_PAYMENT_REFUSED; direct (no proxy) works', async (t) => {
  const payments = await startPaymentsFor(t);
  // The SSRF guard without the loopback exception: the proxy refuses to reach 127.0.0.1.
  const strict = await startProxy({ listeners: [{ port: 0 }], log: { level: 'silent' }, metrics: { defaultMetrics: false }, timeouts: { drain: '300ms' } });
  t.after(() => strict.close());
  const { app, base } = await startApp(t, { paymentsUrl: payments.url, proxyUrl: strict.address.url! });
  const p = plenty[5]!;
  const r = await order(base, p.id);
  assert.equal(r.status, 502, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'ARCHLAB_APP_PAYMENT_REFUSED');
  assert.match(r.body.error.message, /403 ARCHLAB_PROXY_DENIED/);
  await nothingCommitted(app, base, p.id, p.stock);
  assert.equal((await strict.stats()).denied, 1);
  assert.equal(payments.stats().charges, 0);

  const direct = await startApp(t, { paymentsUrl: payments.url });
  assert.equal((await order(direct.base, p.id)).status, 201);
  assert.equal(payments.stats().charges, 1);
});

test('what the commit would refuse is refused before any charge: unknown user or product 422, out of stock 409', async (t) => {
  const payments = await startPaymentsFor(t);
  const { app, base } = await startApp(t, { paymentsUrl: payments.url });
  const noUser = await order(base, plenty[0]!.id, 1, 999);
  assert.deepEqual([noUser.status, noUser.body.error.field], [422, 'userId']);
  const noProduct = await order(base, 5000);
  assert.deepEqual([noProduct.status, noProduct.body.error.field], [422, 'productId']);
  const out = await order(base, soldOut.id);
  assert.deepEqual([out.status, out.body.error.code], [409, 'ARCHLAB_APP_OUT_OF_STOCK']);
  assert.equal(app.stats().orders.outOfStock, 1);
  assert.equal(payments.stats().charges + payments.stats().refused, 0, 'payments never called');
  assert.equal(app.stats().payments.authorized + app.stats().payments.failed, 0);
});

test('an authorization whose order then fails to commit is abandoned (counted), and the order answers the commit\'s error', async (t) => {
  const payments = await startPaymentsFor(t, 300);
  const { app, base } = await startApp(t, { paymentsUrl: payments.url });
  const p = plenty[6]!;
  const pending = order(base, p.id);
  // The checks have read the database; cut it off while the payment is being authorized.
  const deadline = Date.now() + 5000;
  while (payments.stats().inFlight === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  app.setDatabaseReachable(false);
  const r = await pending;
  app.setDatabaseReachable(true);
  assert.equal(r.status, 503, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'ARCHLAB_APP_DATABASE_UNAVAILABLE');
  assert.deepEqual([app.stats().payments.authorized, app.stats().payments.abandoned], [1, 1]);
  await nothingCommitted(app, base, p.id, p.stock);
});

test('maxInFlight bounds the calls out: one more fails at once with 503 (busy), not queued', async (t) => {
  const payments = await startPaymentsFor(t, 300);
  const { app, base } = await startApp(t, { paymentsUrl: payments.url, maxInFlight: 1 });
  const first = order(base, plenty[7]!.id);
  const deadline = Date.now() + 5000;
  while (payments.stats().inFlight === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const second = await order(base, plenty[8]!.id);
  assert.deepEqual([second.status, second.body.error.code], [503, 'ARCHLAB_APP_PAYMENT_UNAVAILABLE']);
  assert.match(second.body.error.message, /1 calls in flight already/);
  assert.equal((await first).status, 201);
  assert.deepEqual(app.stats().payments.results, { authorized: 1, refused: 0, error: 0, timeout: 0, unreachable: 0, busy: 1 });
});

test('bad outbound options are refused before anything is opened (the database file is not even created)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-app-outbound-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = { engine: 'sqlite' as const, file: join(dir, 'catalogue.db') };
  for (const [outbound, message] of [
    [{ paymentsUrl: 'ftp://127.0.0.1:1' }, /paymentsUrl must be a http:\/\/ or https:\/\/ URL/],
    [{ paymentsUrl: 'not a url' }, /paymentsUrl must be a URL/],
    [{ paymentsUrl: 'http://127.0.0.1:1/charges' }, /must be an origin/],
    [{ paymentsUrl: 'http://127.0.0.1:1', proxyUrl: 'https://127.0.0.1:2' }, /proxyUrl must be a http:\/\/ URL/],
    [{ paymentsUrl: 'http://127.0.0.1:1', timeoutMs: 0 }, /timeoutMs must be a positive integer/],
    [{ paymentsUrl: 'http://127.0.0.1:1', maxInFlight: 1.5 }, /maxInFlight must be a positive integer/],
  ] as const) {
    await assert.rejects(createDemoApp({ database: db, outbound: outbound as OutboundOptions }), (err: unknown) => {
      assert.ok(isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), String(err));
      assert.match((err as Error).message, message);
      return true;
    });
  }
  assert.equal(existsSync(db.file), false);
});

test('without outbound, orders are placed as before: no payment in the answer, payments stats off', async (t) => {
  const { app, base } = await startApp(t, undefined);
  const r = await order(base, plenty[9]!.id);
  assert.equal(r.status, 201);
  assert.equal(r.body.payment, undefined);
  assert.deepEqual(app.stats().payments, { enabled: false, authorized: 0, failed: 0, abandoned: 0, results: { authorized: 0, refused: 0, error: 0, timeout: 0, unreachable: 0, busy: 0 } });
  assert.doesNotMatch((await call(`${base}/metrics`)).body as string, /archlab_app_outbound_total\{/);
});
