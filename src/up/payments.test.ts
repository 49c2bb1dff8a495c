import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { isArchlabError, SeededRandom } from '../core/index.js';
import { MAX_PAYMENTS_LATENCY_MS, startPayments, type PaymentsHandle, type PaymentsOptions } from './payments.js';

/** A payments service on a free loopback port, closed when the test ends. */
async function start(t: TestContext, opts: PaymentsOptions = {}): Promise<PaymentsHandle> {
  const p = await startPayments({ latencyMs: 0, drainTimeoutMs: 500, random: new SeededRandom(7), ...opts });
  t.after(() => p.close());
  return p;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies of several shapes, checked field by field
async function call(url: string, init: RequestInit & { json?: unknown } = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const { json, ...rest } = init;
  const res = await fetch(url, json === undefined ? rest : { method: 'POST', ...rest, headers: { 'content-type': 'application/json', ...(rest.headers ?? {}) }, body: JSON.stringify(json) });
  const text = await res.text();
  return { status: res.status, body: (res.headers.get('content-type') ?? '').startsWith('application/json') ? JSON.parse(text) : text, headers: res.headers };
}

/** Polls `check` every 5 ms for at most 5 s. */
async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const GOOD = { orderId: 'app-1:0b6c1f0e', userId: 3, amountCents: 1999 };

test('POST /charges authorizes a good charge (201 with an id), counted in stats and /metrics', async (t) => {
  const p = await start(t);
  const r = await call(`${p.url}/charges`, { json: GOOD });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.match(r.body.id, /^ch_[0-9a-f]{16}$/);
  assert.deepEqual({ ...r.body, id: 'x' }, { id: 'x', status: 'authorized', orderId: GOOD.orderId, amountCents: 1999 });
  const r2 = await call(`${p.url}/charges`, { json: { ...GOOD, orderId: 'another.ref_2' } });
  assert.notEqual(r2.body.id, r.body.id, 'every charge has its own id');
  assert.deepEqual(p.stats(), { charges: 2, refused: 0, failed: 0, busy: 0, inFlight: 0, latencyMs: 0, failureRate: 0 });
  const metrics = await call(`${p.url}/metrics`);
  assert.match(metrics.body, /archlab_payments_charges_total\{result="authorized",server="payments"\} 2/);
  assert.match(metrics.body, /archlab_payments_in_flight\{server="payments"\} 0/);
  const health = await call(`${p.url}/healthz`);
  assert.deepEqual([health.status, health.body], [200, { status: 'ok', latencyMs: 0, failureRate: 0 }]);
});

test('bad input: 400 naming the field, 415 not JSON, 413 over maxBodyBytes; 404 and 405 answered with typed errors; refused counted', async (t) => {
  const p = await start(t, { maxBodyBytes: 256 });
  const cases: [unknown, string | undefined, RegExp][] = [
    [{ ...GOOD, orderId: '' }, 'orderId', /orderId: expected 1-64 letters/],
    [{ ...GOOD, orderId: 'has space' }, 'orderId', /orderId:/],
    [{ ...GOOD, orderId: 'x'.repeat(65) }, 'orderId', /orderId:/],
    [{ ...GOOD, orderId: 7 }, 'orderId', /orderId: expected a string/],
    [{ ...GOOD, userId: 0 }, 'userId', /userId: expected a positive integer/],
    [{ ...GOOD, userId: '3' }, 'userId', /userId:/],
    [{ ...GOOD, amountCents: 0 }, 'amountCents', /amountCents: expected an integer 1\.\./],
    [{ ...GOOD, amountCents: 1.5 }, 'amountCents', /amountCents:/],
    [{ ...GOOD, amountCents: 1e13 }, 'amountCents', /amountCents:/],
    [{ orderId: 'a', userId: 1 }, 'amountCents', /amountCents:/],
    [{ ...GOOD, currency: 'EUR' }, 'currency', /currency: unknown field/],
    [[1, 2], undefined, /expected object/],
  ];
  for (const [json, field, message] of cases) {
    const r = await call(`${p.url}/charges`, { json });
    assert.equal(r.status, 400, JSON.stringify(json));
    assert.equal(r.body.error.code, 'ARCHLAB_PAYMENTS_BAD_REQUEST');
    assert.equal(r.body.error.field, field, JSON.stringify(r.body));
    assert.match(r.body.error.message, message);
  }
  const notJson = await call(`${p.url}/charges`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"orderId":' });
  assert.deepEqual([notJson.status, notJson.body.error.code], [400, 'ARCHLAB_PAYMENTS_BAD_REQUEST']);
  const text = await call(`${p.url}/charges`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
  assert.deepEqual([text.status, text.body.error.code], [415, 'ARCHLAB_PAYMENTS_UNSUPPORTED_MEDIA_TYPE']);
  const big = await call(`${p.url}/charges`, { json: { ...GOOD, pad: 'x'.repeat(1000) } });
  assert.deepEqual([big.status, big.body.error.code], [413, 'ARCHLAB_PAYMENTS_BODY_TOO_LARGE']);
  const get = await call(`${p.url}/charges`);
  assert.deepEqual([get.status, get.body.error.code, get.headers.get('allow')], [405, 'ARCHLAB_PAYMENTS_METHOD_NOT_ALLOWED', 'POST']);
  const nope = await call(`${p.url}/refunds`, { json: GOOD });
  assert.deepEqual([nope.status, nope.body.error.code], [404, 'ARCHLAB_PAYMENTS_NOT_FOUND']);
  assert.deepEqual(p.stats(), { charges: 0, refused: cases.length + 3, failed: 0, busy: 0, inFlight: 0, latencyMs: 0, failureRate: 0 });
});

test('latency delays every answer; failureRate makes charges fail with a typed 503 (all, none, or a seeded share)', async (t) => {
  const p = await start(t, { latencyMs: 150 });
  const t0 = performance.now();
  assert.equal((await call(`${p.url}/charges`, { json: GOOD })).status, 201);
  assert.ok(performance.now() - t0 >= 140, 'answered after the latency');
  p.setLatency(0);
  p.setFailureRate(1);
  const failed = await call(`${p.url}/charges`, { json: GOOD });
  assert.equal(failed.status, 503);
  assert.equal(failed.body.error.code, 'ARCHLAB_PAYMENTS_UNAVAILABLE');
  assert.equal((await call(`${p.url}/healthz`)).body.failureRate, 1, 'health still answers');
  p.setFailureRate(0.5);
  const statuses: number[] = [];
  for (let i = 0; i < 40; i++) statuses.push((await call(`${p.url}/charges`, { json: GOOD })).status);
  const ok = statuses.filter((s) => s === 201).length;
  assert.ok(ok > 5 && ok < 35, `about half authorized: ${ok} of 40`);
  assert.deepEqual(new Set(statuses), new Set([201, 503]));
  p.setFailureRate(0);
  assert.equal((await call(`${p.url}/charges`, { json: GOOD })).status, 201);
  const s = p.stats();
  assert.equal(s.charges, 1 + ok + 1);
  assert.equal(s.failed, 1 + 40 - ok);
  for (const bad of [-1, 1.5, MAX_PAYMENTS_LATENCY_MS + 1, Number.NaN]) assert.throws(() => p.setLatency(bad), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
  for (const bad of [-0.1, 1.01, Number.NaN]) assert.throws(() => p.setFailureRate(bad), /failureRate must be a number 0\.\.1/);
  await assert.rejects(startPayments({ latencyMs: -5 }), /latencyMs must be an integer 0\.\.30000/);
  await assert.rejects(startPayments({ maxInFlight: 0 }), /maxInFlight must be a positive integer/);
});

test('maxInFlight bounds the charges waiting out their latency: one more is refused at once (503 busy); a caller that gives up frees its slot', async (t) => {
  const p = await start(t, { latencyMs: 300, maxInFlight: 2 });
  const first = [call(`${p.url}/charges`, { json: GOOD }), call(`${p.url}/charges`, { json: GOOD })];
  await until('2 charges in flight', () => p.stats().inFlight === 2);
  const third = await call(`${p.url}/charges`, { json: GOOD });
  assert.deepEqual([third.status, third.body.error.code], [503, 'ARCHLAB_PAYMENTS_BUSY']);
  assert.deepEqual((await Promise.all(first)).map((r) => r.status), [201, 201]);
  assert.equal(p.stats().busy, 1);

  const controller = new AbortController();
  const gaveUp = fetch(`${p.url}/charges`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(GOOD), signal: controller.signal });
  await until('1 charge in flight', () => p.stats().inFlight === 1);
  controller.abort();
  await assert.rejects(gaveUp);
  await until('the slot freed', () => p.stats().inFlight === 0);
  assert.equal(p.stats().charges, 2, 'the abandoned charge was not authorized');
});

test('close() answers the charges still waiting with 503 closed (not after their latency), then releases the port', async (t) => {
  const p = await start(t, { latencyMs: 10_000 });
  const waiting = call(`${p.url}/charges`, { json: GOOD });
  await until('1 charge in flight', () => p.stats().inFlight === 1);
  const t0 = performance.now();
  await p.close();
  const r = await waiting;
  assert.deepEqual([r.status, r.body.error.code], [503, 'ARCHLAB_PAYMENTS_CLOSED']);
  assert.ok(performance.now() - t0 < 5000, 'not kept for the 10 s latency');
  await p.close(); // idempotent
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: p.address.port });
    s.once('connect', () => (s.destroy(), resolve('accepts')));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  assert.equal(refused, 'ECONNREFUSED');
});
