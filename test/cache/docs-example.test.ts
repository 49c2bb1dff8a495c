/** The library example at the top of docs/cache.md, run as written (through the package index). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { CacheAside, createMemoryStore, sqliteSource } from '../../src/cache/index.js';

interface Item {
  name: string;
  price_cents: number;
}

test('docs/cache.md: cache-aside over a SQLite row table, getOrLoad then invalidateOnWrite', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cache-docs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'shop.db');
  const setup = new Database(file);
  setup.exec("CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT, price_cents INTEGER); INSERT INTO items VALUES ('42', 'desk', 12000)");
  setup.close();

  const items = sqliteSource<Item>({ path: file, table: 'items', keyColumn: 'id', valueColumns: ['name', 'price_cents'] });
  const cache = new CacheAside<Item>({
    name: 'items',
    store: createMemoryStore({ maxEntries: 10_000, maxBytes: 64 * 1024 * 1024 }),
    freshness: { ttlMs: 30_000, staleWhileRevalidateMs: 10_000, staleIfErrorMs: 300_000, negativeTtlMs: 5_000 },
  });
  t.after(async () => {
    await cache.close();
    await items.close?.();
  });
  let loads = 0;
  const load = (id: string): Promise<Item | undefined> => (loads++, items.load(id));
  assert.deepEqual(await cache.getOrLoad('42', load), { name: 'desk', price_cents: 12000 });
  assert.deepEqual(await cache.getOrLoad('42', load), { name: 'desk', price_cents: 12000 });
  assert.equal(loads, 1, 'the second read is a hit');
  await cache.invalidateOnWrite('42', () => items.write('42', { name: 'lamp', price_cents: 1999 }));
  assert.deepEqual(await cache.getOrLoad('42', load), { name: 'lamp', price_cents: 1999 });
  assert.equal(loads, 2, 'the write invalidated the cached row');
  assert.equal(await cache.getOrLoad('missing', load), undefined);
  assert.equal(await cache.getOrLoad('missing', load), undefined);
  assert.equal(loads, 3, 'a miss is cached for negativeTtlMs');
});
