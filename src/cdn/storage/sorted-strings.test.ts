import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom, freshSeed } from '../../core/random.js';
import { SortedStrings } from './sorted-strings.js';

function prefixed(set: SortedStrings, prefix: string): string[] {
  const out: string[] = [];
  set.forEachWithPrefix(prefix, (s) => out.push(s));
  return out;
}

test('sorted strings: prefix walk on a small set', () => {
  const set = new SortedStrings();
  for (const s of ['https://a/x/2', 'https://a/x/1', 'https://a/y', 'https://b/x', 'http://a/x', 'https://a/x']) assert.equal(set.add(s), true);
  assert.equal(set.add('https://a/y'), false);
  assert.equal(set.size, 6);
  assert.deepEqual(prefixed(set, 'https://a/x'), ['https://a/x', 'https://a/x/1', 'https://a/x/2']);
  assert.deepEqual(prefixed(set, 'https://a/x/'), ['https://a/x/1', 'https://a/x/2']);
  assert.deepEqual(prefixed(set, 'http://'), ['http://a/x']);
  assert.deepEqual(prefixed(set, 'https://c'), []);
  assert.deepEqual(prefixed(set, 'zzz'), []);
  assert.equal(prefixed(set, '').length, 6);
  assert.equal(set.delete('https://a/x/1'), true);
  assert.equal(set.delete('https://a/x/1'), false);
  assert.equal(set.has('https://a/x/1'), false);
  assert.equal(set.has('https://a/x/2'), true);
  assert.deepEqual(prefixed(set, 'https://a/x/'), ['https://a/x/2']);
});

test('sorted strings: matches a sorted array on random adds, deletes and prefix walks (splits and merges)', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const set = new SortedStrings();
  const ref = new Set<string>();
  // Short strings over a small alphabet: many shared prefixes, many duplicates; thousands of them so
  // chunks split and, as the set drains, merge.
  const word = (): string => {
    let s = '';
    const n = 1 + rnd.int(6);
    for (let i = 0; i < n; i++) s += 'abcd/'[rnd.int(5)];
    return s;
  };
  try {
    for (let step = 0; step < 12_000; step++) {
      const draining = step > 8_000;
      const s = word();
      if (rnd.next() < (draining ? 0.15 : 0.7)) {
        assert.equal(set.add(s), !ref.has(s));
        ref.add(s);
      } else {
        // delete an existing string most of the time
        const victim = ref.size > 0 && rnd.next() < 0.8 ? [...ref][rnd.int(ref.size)]! : s;
        assert.equal(set.delete(victim), ref.has(victim));
        ref.delete(victim);
      }
      assert.equal(set.size, ref.size);
      if (step % 97 === 0) {
        const sorted = [...ref].sort();
        assert.deepEqual(set.toArray(), sorted);
        for (let q = 0; q < 8; q++) {
          const p = word().slice(0, rnd.int(4));
          assert.deepEqual(prefixed(set, p), sorted.filter((x) => x.startsWith(p)), `prefix ${JSON.stringify(p)}`);
        }
        assert.equal(set.has(s), ref.has(s));
      }
    }
  } catch (err) {
    console.error(`sorted strings: failing seed ${seed}`);
    throw err;
  }
});

test('sorted strings: many distinct keys keep working across chunk splits', () => {
  const set = new SortedStrings();
  const keys = Array.from({ length: 5000 }, (_, i) => `https://h/${(i * 7919) % 5000}`);
  for (const k of keys) set.add(k);
  assert.equal(set.size, 5000);
  assert.deepEqual(set.toArray(), [...keys].sort());
  assert.deepEqual(prefixed(set, 'https://h/4999'), ['https://h/4999']);
  assert.equal(prefixed(set, 'https://h/1').length, 1 + 10 + 100 + 1000);
  for (const k of keys) assert.equal(set.delete(k), true);
  assert.equal(set.size, 0);
  assert.deepEqual(set.toArray(), []);
});
