/**
 * Write-back in front of the real PostgreSQL, reached through a loopback TCP proxy the test can cut:
 * PostgreSQL "down" during flushes (connections reset, new ones refused), then back: every
 * acknowledged write reaches the table, the queue stays bounded, and failures are counted.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { isArchlabError } from '../../src/core/errors.js';
import { postgresSource } from '../../src/cache/sources/postgres.js';
import { createMemoryStore } from '../../src/cache/stores/memory.js';
import { WriteBack } from '../../src/cache/strategies/write-back.js';
import { needService, POSTGRES } from '../support/services.js';
import { FaultProxy } from '../support/fault-proxy.js';

const CONNECTION = process.env.ARCHLAB_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';

async function waitFor(what: string, cond: () => boolean, maxMs = 15_000): Promise<void> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > maxMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('PostgreSQL down during write-back flushes, then back: nothing acknowledged is lost, the queue stays bounded', { skip: await needService(POSTGRES), timeout: 60_000 }, async (t) => {
  const table = `archlab_wb_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Pool({ connectionString: CONNECTION, max: 1 });
  const proxy = await new FaultProxy({ port: 5432 }).start();
  const dir = mkdtempSync(join(tmpdir(), 'archlab-wb-pg-'));
  const url = new URL(CONNECTION);
  url.host = `127.0.0.1:${proxy.port}`;
  const wb = await WriteBack.open<{ n: number }>({
    name: 'wb-pg',
    store: createMemoryStore(),
    source: postgresSource({ connectionString: url.toString(), table, createTable: true, connectionTimeoutMs: 500, queryTimeoutMs: 1000, maxConnections: 2 }),
    writeBack: {
      flushIntervalMs: 20,
      maxDelayMs: 100,
      maxQueueKeys: 1000,
      enqueueTimeoutMs: 200,
      retry: { initialMs: 20, maxMs: 200 },
      durability: { journal: { path: join(dir, 'wb.journal'), fsync: 'always' } },
    },
  });
  t.after(async () => {
    proxy.restore();
    await wb.close().catch(() => undefined);
    await proxy.close();
    await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  for (let i = 0; i < 200; i++) await wb.set(`k${i}`, { n: i });
  await wb.flush();
  assert.equal(Number((await admin.query(`SELECT count(*) AS n FROM "${table}"`)).rows[0].n), 200);

  proxy.cut();
  for (let i = 0; i < 1000; i++) await wb.set(`k${i}`, { n: i + 1000 });
  await waitFor('flush failures', () => wb.writeBackStats().flushFailures >= 3);
  const during = wb.writeBackStats();
  assert.equal(during.queueDepth, 1000);
  // The queue is full: a new key waits enqueueTimeoutMs, then backpressure (bounded memory).
  await assert.rejects(wb.set('one-too-many', { n: -1 }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_BACKPRESSURE'));
  await assert.rejects(wb.flush(), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.retryable);
  assert.deepEqual(await wb.get('k999'), { n: 1999 }, 'reads are served from the queue meanwhile');

  proxy.restore();
  await waitFor('the queue to drain', () => wb.writeBackStats().queueDepth === 0);
  const rows = (await admin.query<{ key: string; value: { n: number } }>(`SELECT key, value FROM "${table}"`)).rows;
  assert.equal(rows.length, 1000);
  for (const r of rows) assert.equal(r.value.n, Number(r.key.slice(1)) + 1000, r.key);
  t.diagnostic(`flush failures while down: ${wb.writeBackStats().flushFailures}`);
});
