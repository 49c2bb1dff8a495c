import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isArchlabError, SeededRandom } from '../../core/index.js';
import { needService, POSTGRES } from '../../../test/support/services.js';
import { ownSchema } from '../../../test/support/postgres.js';
import { generateCatalogue } from './data.js';
import { openPostgresCatalogue, openSqliteCatalogue, SEARCH_SQL, type CatalogueDb } from './db.js';

const data = generateCatalogue({ products: 500, users: 20, random: new SeededRandom(3) });

test('SQLite: the search by category uses the index over category (EXPLAIN QUERY PLAN), not a table scan', async (t) => {
  const db = openSqliteCatalogue({ file: ':memory:' });
  t.after(() => db.close());
  await db.seed(data);
  db.db.exec('ANALYZE');
  const plan = db.db.prepare(`EXPLAIN QUERY PLAN ${SEARCH_SQL}`).all('books', 20) as { detail: string }[];
  const text = plan.map((r) => r.detail).join('\n');
  assert.match(text, /SEARCH products USING (COVERING )?INDEX products_category \(category=\?\)/, text);
  assert.doesNotMatch(text, /SCAN products/, text);
  assert.doesNotMatch(text, /TEMP B-TREE/, 'the index gives id order: no sort step\n' + text);
  // Without the index the same query scans: the assertion above can fail.
  db.db.exec('DROP INDEX products_category');
  const without = (db.db.prepare(`EXPLAIN QUERY PLAN ${SEARCH_SQL}`).all('books', 20) as { detail: string }[]).map((r) => r.detail).join('\n');
  assert.match(without, /SCAN products/, without);
});

/** The behaviour both engines share. */
async function conformance(db: CatalogueDb): Promise<void> {
  assert.deepEqual(await db.seed(data), { products: 500, users: 20 });
  assert.deepEqual(await db.seed(data), { products: 0, users: 0 }, 'seeding again inserts nothing');
  assert.deepEqual(await db.getProduct(1), data.products[0]);
  assert.equal(await db.getProduct(501), undefined);
  assert.deepEqual(await db.getUser(2), data.users[1]);

  const books = data.products.filter((p) => p.category === 'books');
  assert.deepEqual(await db.searchProducts('books', 5), books.slice(0, 5));
  assert.deepEqual(await db.searchProducts('no-such', 5), []);
  await assert.rejects(db.searchProducts('books', 101), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));

  const p = data.products.find((x) => x.stock >= 3)!;
  const r = await db.placeOrder({ userId: 1, productId: p.id, qty: 2, createdMs: 1_700_000_000_000 });
  assert.ok(r.ok);
  assert.equal(r.product.stock, p.stock - 2);
  assert.deepEqual(await db.getOrder(r.order.id), { id: r.order.id, userId: 1, productId: p.id, qty: 2, createdMs: 1_700_000_000_000 });
  assert.deepEqual(await db.placeOrder({ userId: 1, productId: p.id, qty: p.stock, createdMs: 1 }), { ok: false, reason: 'out-of-stock', stock: p.stock - 2 });
  assert.equal((await db.getProduct(p.id))!.stock, p.stock - 2, 'a refused order takes nothing');
  assert.deepEqual(await db.placeOrder({ userId: 999, productId: p.id, qty: 1, createdMs: 1 }), { ok: false, reason: 'no-user' });
  assert.deepEqual(await db.placeOrder({ userId: 1, productId: 9999, qty: 1, createdMs: 1 }), { ok: false, reason: 'no-product' });

  // Concurrent orders for the last units: exactly the stock is sold.
  const q = data.products.find((x) => x.stock >= 5 && x.id !== p.id)!;
  const results = await Promise.all(Array.from({ length: q.stock + 5 }, (_, i) => db.placeOrder({ userId: 1 + (i % 20), productId: q.id, qty: 1, createdMs: i })));
  assert.equal(results.filter((x) => x.ok).length, q.stock);
  assert.equal((await db.getProduct(q.id))!.stock, 0);

  await keyedOrders(db);

  await db.updateProducts([{ id: p.id, patch: { priceCents: 1234, name: 'Renamed' } }, { id: 9999, patch: { name: 'nobody' } }]);
  const after = (await db.getProduct(p.id))!;
  assert.equal(after.priceCents, 1234);
  assert.equal(after.name, 'Renamed');
  assert.equal(after.stock, p.stock - 2, 'a catalogue update never touches stock');
}

/** Orders with an idempotency key: one order per key, a repeat gets the first one and takes nothing. */
async function keyedOrders(db: CatalogueDb): Promise<void> {
  const stock = async (id: number): Promise<number> => (await db.getProduct(id))!.stock;
  const [a, b] = data.products.filter((x) => x.stock >= 12).slice(-2);
  assert.ok(a !== undefined && b !== undefined, 'two products with stock to spare');
  const a0 = await stock(a.id);
  const payment = { id: 'ch_0123456789abcdef', status: 'authorized' };

  const first = await db.placeOrder({ userId: 3, productId: a.id, qty: 2, createdMs: 1000, idempotencyKey: 'key-1', payment });
  assert.ok(first.ok);
  assert.equal(first.product.stock, a0 - 2);
  const stored = { order: first.order, stockAfter: a0 - 2, payment };
  assert.deepEqual(await db.getOrderByKey('key-1'), stored);
  assert.equal(await db.getOrderByKey('key-none'), undefined);
  // The same key again: the first order, nothing taken, no second order row.
  assert.deepEqual(await db.placeOrder({ userId: 3, productId: a.id, qty: 2, createdMs: 2000, idempotencyKey: 'key-1' }), { ok: false, reason: 'duplicate-key', existing: stored });
  assert.equal(await stock(a.id), a0 - 2);
  assert.equal(await db.getOrder(first.order.id + 1), undefined, 'no second order');
  // Whatever the repeat asks for: the key decides (the app compares and refuses a different order).
  const other = await db.placeOrder({ userId: 4, productId: b.id, qty: 1, createdMs: 3000, idempotencyKey: 'key-1' });
  assert.deepEqual(other, { ok: false, reason: 'duplicate-key', existing: stored });

  // A refused order stores no key: the client may try again with it.
  assert.deepEqual(await db.placeOrder({ userId: 3, productId: a.id, qty: 10_000, createdMs: 4000, idempotencyKey: 'key-2' }), { ok: false, reason: 'out-of-stock', stock: a0 - 2 });
  assert.deepEqual(await db.placeOrder({ userId: 999, productId: a.id, qty: 1, createdMs: 4000, idempotencyKey: 'key-2' }), { ok: false, reason: 'no-user' });
  assert.equal(await db.getOrderByKey('key-2'), undefined);
  const retried = await db.placeOrder({ userId: 3, productId: a.id, qty: 1, createdMs: 5000, idempotencyKey: 'key-2' });
  assert.ok(retried.ok, 'the key was still free');
  assert.equal((await db.getOrderByKey('key-2'))!.payment, undefined, 'no payment stored without one');

  // Concurrent requests with one key (on PostgreSQL each on its own connection): one order, the
  // others get it; the stock moves once. Two products in the mix: the claim comes before any row
  // lock, so they cannot deadlock.
  const a1 = await stock(a.id);
  const b1 = await stock(b.id);
  const racing = await Promise.all(
    Array.from({ length: 8 }, (_, i) => db.placeOrder({ userId: 2, productId: i % 2 === 0 ? a.id : b.id, qty: 1, createdMs: 6000 + i, idempotencyKey: 'key-race' })),
  );
  const won = racing.filter((r) => r.ok);
  assert.equal(won.length, 1, JSON.stringify(racing));
  const winner = won[0]!.order;
  for (const r of racing) {
    if (r.ok) continue;
    assert.equal(r.reason, 'duplicate-key');
    if (r.reason === 'duplicate-key') assert.equal(r.existing.order.id, winner.id);
  }
  assert.equal((await stock(a.id)) + (await stock(b.id)), a1 + b1 - 1, 'one unit taken in all');

  // Many keys at once, all different: each places its own order.
  const many = await Promise.all(Array.from({ length: 6 }, (_, i) => db.placeOrder({ userId: 1, productId: b.id, qty: 1, createdMs: 7000 + i, idempotencyKey: `key-many-${i}` })));
  assert.equal(many.filter((r) => r.ok).length, 6);
  const ids = new Set(many.map((r) => (r.ok ? r.order.id : 0)));
  assert.equal(ids.size, 6);
}

test('SQLite: seed, read, search, orders in a transaction, updates', async (t) => {
  const db = openSqliteCatalogue({ file: ':memory:' });
  t.after(() => db.close());
  await conformance(db);
});

const pgSkip = await needService(POSTGRES);

test('PostgreSQL: the same behaviour, in a schema of its own', { skip: pgSkip }, async (t) => {
  const { url } = await ownSchema(t, 'archlab_up_test');
  const db = openPostgresCatalogue({ url });
  t.after(() => db.close());
  await db.init();
  await db.init();
  await conformance(db);
});

test('a database that cannot be opened fails with ARCHLAB_APP_DATABASE_UNAVAILABLE', async () => {
  assert.throws(() => openSqliteCatalogue({ file: '/nonexistent-dir/x/catalogue.db' }), (err: unknown) => isArchlabError(err, 'ARCHLAB_APP_DATABASE_UNAVAILABLE'));
  const db = openPostgresCatalogue({ url: 'postgres://postgres@127.0.0.1:1/test', connectionTimeoutMs: 500 });
  try {
    await assert.rejects(db.init(), (err: unknown) => isArchlabError(err, 'ARCHLAB_APP_DATABASE_UNAVAILABLE') && /ECONNREFUSED|connect/.test((err as Error).message));
  } finally {
    await db.close();
  }
});
