import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isArchlabError, SeededRandom } from '../../core/index.js';
import { CATEGORIES, generateCatalogue } from './data.js';

test('the seed is deterministic: one seed, one catalogue; another seed, another', () => {
  const a = generateCatalogue({ products: 300, users: 40, random: new SeededRandom(7) });
  const b = generateCatalogue({ products: 300, users: 40, random: new SeededRandom(7) });
  const c = generateCatalogue({ products: 300, users: 40, random: new SeededRandom(8) });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.products, c.products);
});

test('the catalogue has the counted rows with ids 1..n and plausible fields, some products sold out', () => {
  const { products, users } = generateCatalogue({ products: 1000, users: 50, random: new SeededRandom(1) });
  assert.deepEqual(products.map((p) => p.id), Array.from({ length: 1000 }, (_, i) => i + 1));
  assert.deepEqual(users.map((u) => u.id), Array.from({ length: 50 }, (_, i) => i + 1));
  for (const p of products) {
    assert.ok((CATEGORIES as readonly string[]).includes(p.category), p.category);
    assert.ok(Number.isInteger(p.priceCents) && p.priceCents >= 199 && p.priceCents < 50_000, String(p.priceCents));
    assert.ok(Number.isInteger(p.stock) && p.stock >= 0 && p.stock <= 200);
  }
  const soldOut = products.filter((p) => p.stock === 0).length;
  assert.ok(soldOut > 10 && soldOut < 120, `sold out: ${soldOut}`);
  assert.equal(new Set(products.map((p) => p.category)).size, CATEGORIES.length);
  assert.equal(new Set(users.map((u) => u.email)).size, 50);
});

test('seed sizes are bounded', () => {
  for (const bad of [{ products: 0, users: 1 }, { products: 1, users: 0 }, { products: 1_000_001, users: 1 }, { products: 1.5, users: 1 }]) {
    assert.throws(() => generateCatalogue({ ...bad, random: new SeededRandom(1) }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(bad));
  }
});
