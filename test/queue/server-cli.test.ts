/** `archlab queue` as a user runs it: a child process that prints where it listens, serves, and exits 0 on SIGTERM; and the example files run as written. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { connectQueue } from '../../src/queue/client/index.js';
import { loadQueueConfig } from '../../src/queue/config.js';
import { startQueueServer } from '../../src/queue/server/index.js';
import { tempDir } from '../../src/queue/server/test-helpers.js';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

test('archlab queue starts, prints its addresses, serves a client, and exits 0 on SIGTERM', async (t) => {
  const dir = tempDir(t, 'archlab-queue-cli-');
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--log-level', 'warn', 'queue', '--port', '0', '--gateway-port', '0', '--admin-port', '0', '--data-dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  while (!/admin on http/.test(err)) {
    if (Date.now() > deadline || child.exitCode !== null) assert.fail(`no "admin on" line within 30 s:\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(err)?.[1]);
  assert.ok(port > 0, err);
  assert.match(err, /HTTP gateway on http:\/\/127\.0\.0\.1:\d+/);
  const c = await connectQueue({ host: '127.0.0.1', port, reconnect: false });
  await c.createTopic('cli');
  assert.deepEqual((await c.listTopics()).map((x) => x.name), ['cli']);
  await c.close();
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 20_000)))]);
  clearTimeout(timer);
  assert.equal(code, 0, err);
});

test('examples/queue/orders.yaml starts as written: its topics, exchange, queues and bindings route an order', async (t) => {
  const config = loadQueueConfig(join(import.meta.dirname, '..', '..', 'examples', 'queue', 'orders.yaml'));
  const dataDir = tempDir(t, 'archlab-queue-example-');
  const server = await startQueueServer({
    ...config,
    dataDir,
    listeners: [{ host: '127.0.0.1', port: 0 }],
    gateway: { ...config.gateway!, port: 0 },
    admin: { ...config.admin!, port: 0 },
    log: { level: 'silent' },
  });
  t.after(() => server.close());
  const c = await connectQueue({ host: '127.0.0.1', port: server.address.port, token: config.auth.token, reconnect: false });
  t.after(() => c.close());
  assert.equal((await c.describeTopic('orders')).partitions.length, 6);
  assert.equal((await c.describeTopic('customers')).config.cleanupPolicy, 'compact');
  assert.deepEqual(await c.publish('orders.events', 'order.placed', { body: Buffer.from('{"id":42}') }), { routed: 2 });
  assert.deepEqual(await c.publish('orders.events', 'order.shipped', { body: Buffer.from('{"id":42}') }), { routed: 1 });
  assert.equal((await c.queueStats('email')).ready, 1);
  assert.equal((await c.queueStats('analytics')).ready, 2);
  assert.equal((await c.queueStats('email')).config.deadLetterQueue, 'email.dead');
});
