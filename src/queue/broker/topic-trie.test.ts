import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshSeed, SeededRandom } from '../../core/random.js';
import { TopicTrie, topicMatchesReference, topicPatternRegex } from './topic-trie.js';

test('the textbook cases: * is one word, # is zero or more', () => {
  const cases: [string, string, boolean][] = [
    ['stock.usd.nyse', 'stock.usd.nyse', true],
    ['stock.*.nyse', 'stock.usd.nyse', true],
    ['stock.*.nyse', 'stock.nyse', false],
    ['stock.*', 'stock.usd.nyse', false],
    ['stock.#', 'stock', true],
    ['stock.#', 'stock.usd.nyse', true],
    ['#', '', true],
    ['#', 'a.b.c', true],
    ['#.nyse', 'nyse', true],
    ['#.nyse', 'stock.usd.nyse', true],
    ['#.nyse', 'stock.usd.nysex', false],
    ['*', '', true],
    ['*', 'a.b', false],
    ['a.#.b', 'a.b', true],
    ['a.#.b', 'a.x.y.b', true],
    ['a.#.#.b', 'a.b', true],
    ['a.*.#', 'a', false],
    ['a.*.#', 'a.b', true],
    ['a..b', 'a..b', true],
    ['a.*.b', 'a..b', true],
    ['#.*', '', true],
    ['*.*', '', false],
  ];
  for (const [pattern, key, want] of cases) {
    const trie = new TopicTrie<string>();
    trie.add(pattern, 'q');
    assert.equal(trie.match(key).length === 1, want, `trie: ${pattern} vs "${key}"`);
    assert.equal(topicMatchesReference(pattern, key), want, `reference: ${pattern} vs "${key}"`);
  }
});

test('the trie agrees with the regex reference on random patterns and keys', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const alphabet = ['a', 'b', 'c', '', 'ab'];
  const word = (pattern: boolean): string => {
    const r = rnd.int(10);
    if (pattern && r === 0) return '*';
    if (pattern && r === 1) return '#';
    return alphabet[rnd.int(alphabet.length)]!;
  };
  const phrase = (pattern: boolean): string => Array.from({ length: 1 + rnd.int(5) }, () => word(pattern)).join('.');
  for (let round = 0; round < 40; round++) {
    const trie = new TopicTrie<number>(64);
    const patterns: string[] = [];
    for (let i = 0; i < 30; i++) {
      const p = phrase(true);
      patterns.push(p);
      trie.add(p, i);
    }
    // Remove a few, so pruning is exercised too.
    const removed = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const victim = rnd.int(patterns.length);
      if (removed.has(victim)) continue;
      assert.equal(trie.remove(patterns[victim]!, victim), true);
      removed.add(victim);
    }
    const regexes = patterns.map(topicPatternRegex);
    for (let k = 0; k < 200; k++) {
      const key = phrase(false);
      const want = regexes.map((re, i) => (!removed.has(i) && re.test('.' + key) ? i : -1)).filter((i) => i >= 0);
      const got = [...trie.match(key)].sort((a, b) => a - b);
      assert.deepEqual(got, want, `seed ${seed} round ${round}: key "${key}" patterns ${JSON.stringify(patterns)}`);
    }
  }
});

test('a value bound twice is matched once and stays until both bindings go; cache follows changes', () => {
  const trie = new TopicTrie<string>();
  trie.add('a.*', 'q');
  trie.add('a.#', 'q');
  trie.add('a.b', 'q');
  assert.deepEqual(trie.match('a.b'), ['q']);
  assert.equal(trie.remove('a.*', 'q'), true);
  assert.deepEqual(trie.match('a.b'), ['q']);
  assert.equal(trie.remove('a.#', 'q'), true);
  assert.equal(trie.remove('a.b', 'q'), true);
  assert.deepEqual(trie.match('a.b'), []);
  assert.equal(trie.remove('a.b', 'q'), false, 'removing a binding that is not there');
  assert.equal(trie.size, 0);
});

test('many # patterns do not blow up (NFA states are deduplicated)', () => {
  const trie = new TopicTrie<number>();
  trie.add(Array(20).fill('#').join('.') + '.z', 1);
  const key = Array(200).fill('a').join('.') + '.z';
  assert.deepEqual(trie.match(key), [1]);
  assert.deepEqual(trie.match(Array(200).fill('a').join('.')), []);
});
