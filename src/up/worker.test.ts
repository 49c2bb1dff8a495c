import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { embeddedDriver } from '../queue/index.js';
import { OrderWorker } from './worker.js';

const event = (orderId: number): Buffer => Buffer.from(JSON.stringify({ type: 'order.placed', orderId, userId: 1, productId: 2, qty: 1, at: 0, instance: 'app-1' }));

/** An embedded queue driver in a temp dir with the queue "orders" declared; closed and removed after the test. */
async function ordersQueue(t: TestContext): Promise<Awaited<ReturnType<typeof embeddedDriver>>> {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-up-worker-'));
  const driver = await embeddedDriver({ dataDir: dir });
  t.after(async () => {
    await driver.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await driver.declareQueue('orders');
  return driver;
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the worker consumes order events one at a time, counts them, and drops what is not an order event', async (t) => {
  const driver = await ordersQueue(t);
  const worker = new OrderWorker({ driver, queue: 'orders', workMs: 1 });
  await worker.start();
  await worker.start(); // a no-op
  for (let i = 1; i <= 3; i++) await driver.publish('', 'orders', { body: event(i) });
  await driver.publish('', 'orders', { body: Buffer.from('not json') });
  await until('4 messages handled', () => worker.stats().consumed + worker.stats().malformed === 4);
  assert.deepEqual({ ...worker.stats(), last: worker.stats().last?.orderId }, { running: true, consumed: 3, malformed: 1, last: 3 });
  await worker.stop();
  assert.equal(worker.running, false);
});

test('stop() during the work of an event requeues it uncounted; start() consumes it once', async (t) => {
  const driver = await ordersQueue(t);
  const worker = new OrderWorker({ driver, queue: 'orders', workMs: 400 });
  await worker.start();
  await driver.publish('', 'orders', { body: event(7) });
  await new Promise((r) => setTimeout(r, 100)); // the event is in hand, its work in progress
  await worker.stop();
  await new Promise((r) => setTimeout(r, 500)); // past the work's end: nothing acks or counts it
  assert.equal(worker.stats().consumed, 0);
  await worker.start();
  await until('the requeued event consumed', () => worker.stats().consumed === 1);
  assert.equal(worker.stats().last?.orderId, 7);
  await worker.stop();
  assert.equal(worker.stats().consumed, 1);
  assert.throws(() => new OrderWorker({ driver, queue: 'orders', workMs: -1 }), /workMs must be an integer >= 0/);
});
