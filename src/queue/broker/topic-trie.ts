/**
 * Topic-exchange matching, AMQP 0-9-1 style: routing keys and binding patterns are words separated by
 * '.', a pattern word `*` matches exactly one word and `#` matches zero or more words. Empty words are
 * words too ("a..b" has three), as in RabbitMQ.
 *
 * Patterns are kept in a trie; a key is matched by walking the trie as an NFA over the key's words
 * (a `#` node loops on any word and can be skipped), so the cost is O(words x live trie states),
 * never exponential, whatever the patterns. Results are cached per routing key (bounded, dropped on
 * any bind or unbind): real traffic repeats a small set of keys.
 */

class TrieNode<T> {
  readonly children = new Map<string, TrieNode<T>>();
  star: TrieNode<T> | undefined;
  hash: TrieNode<T> | undefined;
  /** Values bound with a pattern ending at this node, with a count per value (a value may be bound twice). */
  readonly values = new Map<T, number>();
  /** Match generation that last visited this node (dedupes NFA states without a Set). */
  mark = 0;

  constructor(readonly isHash: boolean) {}

  empty(): boolean {
    return this.values.size === 0 && this.children.size === 0 && this.star === undefined && this.hash === undefined;
  }
}

/** Routing keys whose results are cached at most; the cache is emptied when it fills. Default 10,000. */
export const DEFAULT_TOPIC_CACHE_ENTRIES = 10_000;

export class TopicTrie<T> {
  private readonly root = new TrieNode<T>(false);
  private generation = 0;
  private cache = new Map<string, readonly T[]>();
  private patterns = 0;

  constructor(private readonly maxCacheEntries = DEFAULT_TOPIC_CACHE_ENTRIES) {}

  /** Number of (pattern, value) bindings held. */
  get size(): number {
    return this.patterns;
  }

  add(pattern: string, value: T): void {
    let node = this.root;
    for (const word of pattern.split('.')) node = this.child(node, word, true)!;
    node.values.set(value, (node.values.get(value) ?? 0) + 1);
    this.patterns++;
    this.cache.clear();
  }

  /** Removes one binding of `value` under `pattern`; false when there was none. */
  remove(pattern: string, value: T): boolean {
    const path: [TrieNode<T>, string][] = [];
    let node: TrieNode<T> | undefined = this.root;
    for (const word of pattern.split('.')) {
      const next = this.child(node, word, false);
      if (next === undefined) return false;
      path.push([node, word]);
      node = next;
    }
    const n = node.values.get(value);
    if (n === undefined) return false;
    if (n > 1) node.values.set(value, n - 1);
    else node.values.delete(value);
    this.patterns--;
    this.cache.clear();
    // Prune nodes left empty, from the leaf up.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, word] = path[i]!;
      const child = this.child(parent, word, false)!;
      if (!child.empty()) break;
      if (word === '*') parent.star = undefined;
      else if (word === '#') parent.hash = undefined;
      else parent.children.delete(word);
    }
    return true;
  }

  /** Values bound with a pattern matching `key`, each once, in no particular order. Do not mutate the result. */
  match(key: string): readonly T[] {
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached;
    const result = this.matchUncached(key);
    if (this.cache.size >= this.maxCacheEntries) this.cache.clear();
    this.cache.set(key, result);
    return result;
  }

  private matchUncached(key: string): T[] {
    const words = key.split('.');
    let states: TrieNode<T>[] = [];
    let gen = ++this.generation;
    this.enter(this.root, states, gen);
    for (const word of words) {
      if (states.length === 0) return [];
      const next: TrieNode<T>[] = [];
      gen = ++this.generation;
      for (const s of states) {
        // A '#' state consumes any word and stays.
        if (s.isHash) this.enter(s, next, gen);
        const c = s.children.get(word);
        if (c !== undefined) this.enter(c, next, gen);
        if (s.star !== undefined) this.enter(s.star, next, gen);
      }
      states = next;
    }
    const out = new Set<T>();
    for (const s of states) for (const v of s.values.keys()) out.add(v);
    return [...out];
  }

  /** Adds `node` and, through '#' children (which match zero words), their closure. */
  private enter(node: TrieNode<T>, into: TrieNode<T>[], gen: number): void {
    let n: TrieNode<T> | undefined = node;
    while (n !== undefined && n.mark !== gen) {
      n.mark = gen;
      into.push(n);
      n = n.hash;
    }
  }

  private child(node: TrieNode<T>, word: string, create: boolean): TrieNode<T> | undefined {
    if (word === '*') {
      if (node.star === undefined && create) node.star = new TrieNode<T>(false);
      return node.star;
    }
    if (word === '#') {
      if (node.hash === undefined && create) node.hash = new TrieNode<T>(true);
      return node.hash;
    }
    let c = node.children.get(word);
    if (c === undefined && create) {
      c = new TrieNode<T>(false);
      node.children.set(word, c);
    }
    return c;
  }
}

/**
 * The obviously-correct reference: the pattern as a regular expression over '.' + key. Used by the
 * tests to check the trie on random keys; too slow to route with.
 */
export function topicPatternRegex(pattern: string): RegExp {
  let src = '^';
  for (const word of pattern.split('.')) {
    if (word === '#') src += '(?:\\.[^.]*)*';
    else if (word === '*') src += '\\.[^.]*';
    else src += '\\.' + word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(src + '$');
}

export function topicMatchesReference(pattern: string, key: string): boolean {
  return topicPatternRegex(pattern).test('.' + key);
}
