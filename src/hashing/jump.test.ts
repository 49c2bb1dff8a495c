import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom, freshSeed } from '../core/random.js';
import { JumpHasher, MAX_BUCKETS, jumpHash } from './jump.js';
import { fmix32, hash32 } from './hash.js';

/** The paper's algorithm, transcribed literally with BigInt: slow and obviously right. */
function referenceJump(key: bigint, buckets: number): number {
  let b = -1n;
  let j = 0n;
  const mask = (1n << 64n) - 1n;
  while (j < BigInt(buckets)) {
    b = j;
    key = (key * 2862933555777941757n + 1n) & mask;
    j = BigInt(Math.floor(Number(b + 1n) * (Number(1n << 31n) / Number((key >> 33n) + 1n))));
  }
  return Number(b);
}

test('jumpHash equals the BigInt reference on random 64-bit keys and bucket counts', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const bucketCounts = [1, 2, 3, 10, 11, 100, 1000, 65_536, 1_000_003, 2 ** 31 - 1];
  for (let i = 0; i < 20_000; i++) {
    const hi = rnd.uint32();
    const lo = rnd.uint32();
    const buckets = i < bucketCounts.length * 100 ? bucketCounts[i % bucketCounts.length]! : 1 + rnd.int(5000);
    const key = (BigInt(hi) << 32n) | BigInt(lo);
    assert.equal(jumpHash(hi, lo, buckets), referenceJump(key, buckets), `seed ${seed}: key ${key} buckets ${buckets}`);
  }
  // Edge keys: 0, all ones, carries out of the low word.
  for (const [hi, lo] of [[0, 0], [0xffffffff, 0xffffffff], [0, 0xffffffff], [0xffffffff, 0], [1, 0x78_4f_4f_03]] as const) {
    for (const buckets of [1, 7, 1 << 20]) {
      const key = (BigInt(hi) << 32n) | BigInt(lo);
      assert.equal(jumpHash(hi, lo, buckets), referenceJump(key, buckets), `key ${key}`);
    }
  }
});

test('growing from n to n+1 buckets moves keys only to the new bucket, about 1/(n+1) of them', () => {
  const rnd = new SeededRandom(7);
  let moved = 0;
  const keys = 50_000;
  for (let i = 0; i < keys; i++) {
    const hi = rnd.uint32();
    const lo = rnd.uint32();
    const a = jumpHash(hi, lo, 10);
    const b = jumpHash(hi, lo, 11);
    if (a !== b) {
      assert.equal(b, 10);
      moved++;
    }
  }
  assert.ok(Math.abs(moved / keys - 1 / 11) < 0.01, `moved ${moved / keys}`);
});

test('JumpHasher with no removals is plain jump over the add order', () => {
  const h = new JumpHasher();
  const nodes = Array.from({ length: 37 }, (_, i) => `n${i}`);
  for (const n of nodes) h.add(n);
  for (let i = 0; i < 5000; i++) {
    const k = `key-${i}`;
    const x = hash32(k);
    assert.equal(h.get(k), nodes[jumpHash(fmix32(x ^ 0x9e3779b9), x, nodes.length)]);
  }
});

test('removing most nodes still moves only their keys, and lookups stay bounded', () => {
  const h = new JumpHasher();
  const nodes = Array.from({ length: 100 }, (_, i) => `n${i}`);
  for (const n of nodes) h.add(n);
  const keys = Array.from({ length: 20_000 }, (_, i) => `k${i}`);
  let placement = keys.map((k) => h.get(k));
  const rnd = new SeededRandom(11);
  const live = new Set(nodes);
  while (live.size > 3) {
    const victim = [...live][rnd.int(live.size)]!;
    h.remove(victim);
    live.delete(victim);
    const next = keys.map((k) => h.get(k));
    for (let i = 0; i < keys.length; i++) {
      if (placement[i] !== victim) assert.equal(next[i], placement[i], `key ${keys[i]} moved off a live node`);
      assert.ok(live.has(next[i]!));
    }
    placement = next;
  }
  assert.ok(h.deadBuckets > 0, 'the scenario exercised dead buckets');
  for (const k of keys.slice(0, 200)) assert.deepEqual(new Set(h.getN(k, 3)), live);
});

test('an added node takes over dead buckets and takes keys only to itself', () => {
  const h = new JumpHasher();
  for (let i = 0; i < 10; i++) h.add(`n${i}`);
  h.remove('n2');
  h.remove('n5');
  const keys = Array.from({ length: 20_000 }, (_, i) => `k${i}`);
  const before = keys.map((k) => h.get(k));
  h.add('fresh');
  assert.equal(h.bucketCount, 10);
  keys.forEach((k, i) => {
    const now = h.get(k);
    if (now !== before[i]) assert.equal(now, 'fresh');
  });
});

test('weights are whole buckets and bounded in total', () => {
  const h = new JumpHasher();
  h.add('big', 3);
  h.add('small', 1);
  assert.equal(h.bucketCount, 4);
  assert.throws(() => h.add('huge', MAX_BUCKETS), /limit/);
  assert.equal(h.has('huge'), false);
});
