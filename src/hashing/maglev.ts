import { HashingError } from './errors.js';
import { hash32 } from './hash.js';
import { Membership } from './members.js';
import type { Hasher, Key, NodeInfo } from './types.js';
import { checkCount, checkKey, empty } from './validate.js';

export interface MaglevOptions {
  /**
   * Lookup table size M: a prime, at least the node count; the paper recommends M >> N (M >= 100 N
   * keeps each node's share within about 1% of its due). Default 65537. Memory is 4 bytes per entry.
   */
  tableSize?: number;
}

/** Largest table accepted: 2^24 entries (64 MiB), far beyond any balancer's need. */
export const MAX_MAGLEV_TABLE = 16_777_213;

/**
 * Maglev hashing (Eisenbud et al., NSDI 2016), Google's L4 balancer's scheme. Each node has a
 * permutation of the M table slots, from `offset = h1(node) mod M` and `skip = h2(node) mod (M-1) + 1`;
 * nodes take turns claiming their next unclaimed preferred slot until the table is full. A lookup is
 * one hash and one array read, and every node owns M/N slots give or take one.
 *
 * Weights: a node claims slots in proportion to its weight (each turn, a node of weight w claims
 * w / max(weight) slots on average, via a credit counter), as Envoy's weighted Maglev does.
 *
 * Nodes take turns in name order, so placement depends only on the member set, not on the order of
 * adds. The trade-off against a ring: removing a node moves its keys and also a small fraction of
 * others' (the paper's "minimal disruption", not zero); measured in docs/hashing.md.
 */
export class MaglevHasher extends Membership implements Hasher {
  readonly algorithm = 'maglev' as const;
  readonly tableSize: number;
  /** Nodes in name order; the table holds indices into this. */
  private sorted: string[] = [];
  private table: Int32Array;

  constructor(options: MaglevOptions = {}) {
    super(false);
    const m = options.tableSize ?? 65537;
    if (!Number.isSafeInteger(m) || m < 2 || m > MAX_MAGLEV_TABLE || !isPrime(m)) {
      throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `tableSize must be a prime between 2 and ${MAX_MAGLEV_TABLE}, got ${m}`);
    }
    this.tableSize = m;
    this.table = new Int32Array(0);
  }

  protected override admit(): void {
    if (this.order.length + 1 > this.tableSize) {
      throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `a Maglev table of ${this.tableSize} slots holds at most ${this.tableSize} nodes; use a larger prime tableSize`);
    }
  }

  get(key: Key): string {
    if (typeof key !== 'string') checkKey(key);
    return this.getHashed(hash32(key));
  }

  /** The node for a key already hashed to a uint32 with `hash32`: one modulo and two array reads. */
  getHashed(h: number): string {
    if (this.dirty) this.rebuild();
    if (this.sorted.length === 0) throw empty();
    return this.sorted[this.table[(h >>> 0) % this.tableSize]!]!;
  }

  getN(key: Key, n: number): string[] {
    if (this.dirty) this.rebuild();
    checkCount(n);
    if (n === 0) return [];
    if (this.sorted.length === 0) throw empty();
    checkKey(key);
    // Slots are claimed in interleaved permutation order, so the slots after a key's slot belong to
    // nodes in a key-dependent order: walk forward for the next distinct nodes.
    const want = Math.min(n, this.sorted.length);
    const seen = new Uint8Array(this.sorted.length);
    const out: string[] = [];
    const start = hash32(key) % this.tableSize;
    for (let i = 0; i < this.tableSize && out.length < want; i++) {
      const idx = this.table[(start + i) % this.tableSize]!;
      if (seen[idx]) continue;
      seen[idx] = 1;
      out.push(this.sorted[idx]!);
    }
    return out;
  }

  /** The table itself (slot -> index into `tableNodes()`), for inspection and tests. */
  tableEntries(): Int32Array {
    if (this.dirty) this.rebuild();
    return this.table;
  }

  /** The nodes the table's indices refer to (name order). */
  tableNodes(): string[] {
    if (this.dirty) this.rebuild();
    return this.sorted.slice();
  }

  private rebuild(): void {
    this.dirty = false;
    this.sorted = [...this.order].sort();
    this.table = populate(
      this.sorted.map((node) => ({ node, weight: this.weights.get(node)! })),
      this.tableSize,
    );
  }
}

/** Builds the Maglev table for `entries` (in turn order). Exported so tests can check it against a plain reference. */
export function populate(entries: NodeInfo[], m: number): Int32Array {
  const n = entries.length;
  const table = new Int32Array(m).fill(-1);
  if (n === 0) return table;
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const next = new Uint32Array(n); // position in each node's permutation
  const credit = new Float64Array(n);
  let maxWeight = 0;
  for (const e of entries) maxWeight = Math.max(maxWeight, e.weight);
  const share = entries.map((e) => e.weight / maxWeight);
  for (let i = 0; i < n; i++) {
    const name = entries[i]!.node;
    offset[i] = hash32(name, 0xc0ffee) % m;
    skip[i] = (hash32(name, 0xbadcab1e) % (m - 1)) + 1;
  }
  let filled = 0;
  while (filled < m) {
    for (let i = 0; i < n && filled < m; i++) {
      credit[i]! += share[i]!;
      if (credit[i]! < 1 - 1e-9) continue; // tolerance: 3 x (1/3) must reach 1
      credit[i]! -= 1;
      // Next slot in node i's permutation (offset + j * skip) mod M that no one has claimed.
      let c = (offset[i]! + next[i]! * skip[i]!) % m;
      while (table[c] !== -1) {
        next[i]!++;
        c = (offset[i]! + next[i]! * skip[i]!) % m;
      }
      table[c] = i;
      next[i]!++;
      filled++;
    }
  }
  return table;
}

export function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}
