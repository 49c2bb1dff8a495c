import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RendezvousHasher } from './rendezvous.js';

test('weighted shares match weights, including fractional ones', () => {
  const h = new RendezvousHasher();
  const weights: Record<string, number> = { a: 1, b: 2, c: 6.5, d: 0.5 };
  for (const [n, w] of Object.entries(weights)) h.add(n, w);
  const counts: Record<string, number> = { a: 0, b: 0, c: 0, d: 0 };
  const keys = 200_000;
  for (let i = 0; i < keys; i++) counts[h.get(`k${i}`)]!++;
  for (const [n, w] of Object.entries(weights)) {
    const due = (keys * w) / 10;
    assert.ok(Math.abs(counts[n]! - due) / due < 0.03, `${n}: ${counts[n]} vs ${due}`);
  }
});

test('getN is the score order: removing the first choice promotes the second', () => {
  const h = new RendezvousHasher();
  for (let i = 0; i < 12; i++) h.add(`n${i}`, 1 + (i % 3));
  const keys = Array.from({ length: 3000 }, (_, i) => `k${i}`);
  const lists = keys.map((k) => h.getN(k, 4));
  h.remove('n5');
  keys.forEach((k, i) => {
    const expected = lists[i]!.filter((n) => n !== 'n5').slice(0, 3);
    assert.deepEqual(h.getN(k, 4).slice(0, 3), expected, k);
  });
});

test('equal weights take the no-logarithm path and agree with the scored path', () => {
  const plain = new RendezvousHasher();
  const scored = new RendezvousHasher();
  for (let i = 0; i < 8; i++) plain.add(`n${i}`, 2);
  for (let i = 0; i < 8; i++) scored.add(`n${i}`, 2);
  // getN always scores with the logarithm; get with equal weights compares raw draws.
  for (let i = 0; i < 5000; i++) assert.equal(plain.get(`k${i}`), scored.getN(`k${i}`, 1)[0]);
});
