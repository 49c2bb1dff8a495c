/**
 * `archlab cache`: the demo HTTP API over each strategy and store, bad input, and the process
 * (start, serve, SIGTERM).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { randomUUID } from 'node:crypto';
import { startCacheServer, type CacheServerHandle } from '../../src/cache/server.js';
import type { CacheServerConfigInput } from '../../src/cache/config.js';
import { STRATEGIES } from '../../src/cache/config.js';
import { needService, POSTGRES, REDIS } from '../support/services.js';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

async function server(t: TestContext, cache: CacheServerConfigInput['cache'] = {}, source: CacheServerConfigInput['source'] = { seed: 20 }): Promise<CacheServerHandle & { url: string }> {
  const s = await startCacheServer({ listeners: [{ port: 0 }], admin: { port: 0 }, log: { level: 'silent' }, metrics: { defaultMetrics: false }, cache, source });
  t.after(() => s.close());
  return Object.assign(s, { url: s.address.url! });
}

async function call(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown; headers: Headers }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as unknown) : undefined };
}

const put = (url: string, body: unknown): Promise<{ status: number; body: unknown }> =>
  call(url, { method: 'PUT', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } });

/** The same conversation for every strategy: read, read again (hit), write, read the write, delete, 404. */
async function conversation(s: CacheServerHandle & { url: string }, flush: boolean): Promise<void> {
  const first = await call(`${s.url}/items/3`);
  assert.equal(first.status, 200);
  assert.deepEqual({ ...(first.body as object), updatedAt: 0 }, { id: '3', name: 'item 3', priceCents: 100 + 2 * 37, updatedAt: 0 });
  const again = await call(`${s.url}/items/3`);
  assert.deepEqual(again.body, first.body);
  const hitsBefore = s.stats().stats.hits;
  assert.ok(hitsBefore >= 1, `the second read is a hit (${JSON.stringify(s.stats())})`);

  const written = await put(`${s.url}/items/3`, { name: 'lamp', priceCents: 1999 });
  assert.equal(written.status, 200);
  const read = await call(`${s.url}/items/3`);
  assert.equal((read.body as { name: string }).name, 'lamp', 'a read after a write sees the write');
  if (flush) assert.equal((await call(`${s.url}/flush`, { method: 'POST' })).status, 200);

  assert.equal((await call(`${s.url}/items/3`, { method: 'DELETE' })).status, 204);
  if (flush) await call(`${s.url}/flush`, { method: 'POST' });
  assert.equal((await call(`${s.url}/items/3`)).status, 404);
  assert.equal((await call(`${s.url}/items/nope`)).status, 404);
}

for (const strategy of STRATEGIES) {
  test(`${strategy} on memory over SQLite: read, hit, write, read-your-write, delete`, async (t) => {
    const s = await server(t, { strategy });
    await conversation(s, strategy === 'write-back');
    const metrics = await (await fetch(`${s.admin!.url}/metrics`)).text();
    assert.match(metrics, /archlab_cache_hits_total\{cache="items",server="cache"\} [1-9]/);
    if (strategy === 'write-back') assert.match(metrics, /archlab_cache_writeback_queue_depth\{cache="items",server="cache"\} 0/);
  });
}

test('write-back: a write reaches SQLite only after the flush, and the file holds it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cache-server-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, 'items.db');
  const s = await server(t, { strategy: 'write-back', writeBack: { flushInterval: '1h', maxDelay: '1h', durability: { journal: { path: join(dir, 'wb.journal') } } } }, { sqlite: { path: db }, seed: 5 });
  assert.equal((await put(`${s.url}/items/1`, { name: 'queued', priceCents: 1 })).status, 200);
  assert.equal(s.stats().writeBack!.queueDepth, 1, 'acknowledged, not yet flushed');
  const { default: Database } = await import('better-sqlite3');
  const peekRow = (): unknown => {
    const d = new Database(db, { readonly: true });
    try {
      return d.prepare('SELECT name FROM items WHERE id = ?').get('1');
    } finally {
      d.close();
    }
  };
  assert.deepEqual(peekRow(), { name: 'item 1' });
  await call(`${s.url}/flush`, { method: 'POST' });
  assert.equal(s.stats().writeBack!.queueDepth, 0);
  assert.deepEqual(peekRow(), { name: 'queued' });
});

test('bad input: ids, bodies, sizes and methods get clear 4xx answers', async (t) => {
  const s = await server(t);
  const badId = await call(`${s.url}/items/a%20b`);
  assert.equal(badId.status, 400);
  assert.match(JSON.stringify(badId.body), /item ids are 1-64 letters/);
  assert.equal((await call(`${s.url}/items/${'x'.repeat(65)}`)).status, 400);
  const notJson = await put(`${s.url}/items/1`, '{name: lamp');
  assert.equal(notJson.status, 400);
  assert.match(JSON.stringify(notJson.body), /body is not JSON/);
  const wrong = await put(`${s.url}/items/1`, { name: 'x', priceCents: -1, extra: true });
  assert.equal(wrong.status, 400);
  assert.match(JSON.stringify(wrong.body), /priceCents/);
  const big = await put(`${s.url}/items/1`, { name: 'x'.repeat(10_000), priceCents: 1 });
  assert.equal(big.status, 413);
  const method = await call(`${s.url}/items/1`, { method: 'POST' });
  assert.equal(method.status, 405);
  assert.equal(method.headers.get('allow'), 'GET, HEAD, PUT, DELETE');
  assert.equal((await call(`${s.url}/flush`, { method: 'POST' })).status, 409, 'flush is for write-back');
  assert.equal((await call(`${s.url}/nowhere`)).status, 404);
  // Nothing above changed the item.
  assert.equal(((await call(`${s.url}/items/1`)).body as { name: string }).name, 'item 1');
});

test('a slow source (latency 30ms) shows the cache: the second read does not wait for it', async (t) => {
  const s = await server(t, { strategy: 'read-through' }, { seed: 5, latency: '30ms' });
  const t0 = performance.now();
  await call(`${s.url}/items/2`);
  const miss = performance.now() - t0;
  assert.ok(miss >= 30, `a miss waits for the source (${miss.toFixed(1)} ms)`);
  const { stats } = s.stats();
  await call(`${s.url}/items/2`);
  assert.equal(s.stats().stats.loads, stats.loads, 'the second read made no source load');
});

test('redis and tiered stores over PostgreSQL', { skip: (await needService(REDIS)) || (await needService(POSTGRES)) }, async (t) => {
  const table = `archlab_test_items_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  t.after(async () => {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.end();
  });
  for (const kind of ['redis', 'tiered'] as const) {
    const prefix = `archlab:test:${randomUUID()}:`;
    for (const strategy of ['cache-aside', 'write-through'] as const) {
      const s = await startCacheServer({
        listeners: [{ port: 0 }],
        log: { level: 'silent' },
        metrics: { defaultMetrics: false },
        cache: { strategy, store: { kind, redis: { prefix } } },
        source: { kind: 'postgres', table, seed: 20 },
      });
      try {
        const url = s.address.url!;
        await put(`${url}/items/3`, { name: 'item 3', priceCents: 174 }); // back to the seed value for the shared table
        await conversation(Object.assign(s, { url }), false);
        await put(`${url}/items/3`, { name: 'item 3', priceCents: 174 });
      } finally {
        await s.close();
      }
    }
  }
});

test('archlab cache as a process: --strategy, serves, answers SIGTERM by exiting 0', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'cache', '--strategy', 'write-through', '--port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new assert.AssertionError({ message: `no listening line; stderr: ${stderr}` })), 20_000);
    child.stderr.on('data', () => {
      const m = /write-through on memory over sqlite, listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const got = await call(`http://127.0.0.1:${port}/items/7`);
  assert.equal(got.status, 200);
  assert.equal((got.body as { name: string }).name, 'item 7');
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exit, 0);
  const bad = spawn(process.execPath, ['--import', 'tsx', main, 'cache', '--strategy', 'write-around'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let badErr = '';
  bad.stderr.on('data', (d: Buffer) => (badErr += d.toString()));
  const badCode = await new Promise<number | null>((r) => bad.on('exit', (code) => r(code)));
  assert.notEqual(badCode, 0);
  assert.match(badErr, /--strategy must be one of cache-aside, read-through, write-through, write-back/);
});

test('a config file that does not validate stops the process with the file, field and expectation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cache-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'cache.yaml');
  writeFileSync(file, 'listeners: [{ port: 0 }]\ncache:\n  ttl: soon\n');
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'cache', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.notEqual(code, 0);
  assert.match(stderr, /cache\.yaml/);
  assert.match(stderr, /cache\.ttl: invalid duration "soon"/);
});
