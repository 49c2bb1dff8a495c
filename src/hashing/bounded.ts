import { HashingError } from './errors.js';
import { KetamaHasher, type KetamaOptions } from './ketama.js';
import type { Hasher, Key, NodeInfo } from './types.js';
import { checkCount, empty, unknown } from './validate.js';

export interface BoundedLoadOptions extends KetamaOptions {
  /**
   * Allowed overload epsilon > 0: no node is given a key once it holds ceil((1 + epsilon) * mean)
   * keys, mean counting the key being placed. Default 0.25 (HAProxy's hash-balance-factor 125).
   * Smaller is more even and moves more keys when loads shift.
   */
  epsilon?: number;
}

/**
 * Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, 2018), on the ketama
 * continuum: a key goes to the first node clockwise from its point whose load is below the
 * capacity ceil((1 + epsilon) * (total + 1) / nodes). Loads are the caller's (connections,
 * requests, keys held): `acquire` places and counts, `release` uncounts. Used by HAProxy
 * (`hash-balance-factor`) and Vimeo's video caches to keep a hot key from overloading one node.
 *
 * `get` places without counting; with every load at zero it is exactly the ketama placement.
 */
export class BoundedLoadHasher implements Hasher {
  readonly algorithm = 'bounded' as const;
  readonly epsilon: number;
  private readonly ring: KetamaHasher;
  private readonly loads = new Map<string, number>();
  private total = 0;

  constructor(options: BoundedLoadOptions = {}) {
    const eps = options.epsilon ?? 0.25;
    if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0) {
      throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `epsilon must be a finite number > 0, got ${eps}`);
    }
    this.epsilon = eps;
    this.ring = new KetamaHasher(options);
  }

  get size(): number {
    return this.ring.size;
  }

  add(node: string, weight = 1): void {
    this.ring.add(node, weight);
    this.loads.set(node, 0);
  }

  /** Removes `node`; its load leaves the total (the caller re-places what it held). */
  remove(node: string): void {
    this.ring.remove(node);
    this.total -= this.loads.get(node)!;
    this.loads.delete(node);
  }

  has(node: string): boolean {
    return this.ring.has(node);
  }

  nodes(): NodeInfo[] {
    return this.ring.nodes();
  }

  /** The most any node may hold after one more key is placed. */
  capacity(): number {
    if (this.ring.size === 0) return 0;
    return Math.ceil(((1 + this.epsilon) * (this.total + 1)) / this.ring.size);
  }

  load(node: string): number {
    const l = this.loads.get(node);
    if (l === undefined) throw unknown(node);
    return l;
  }

  get totalLoad(): number {
    return this.total;
  }

  get(key: Key): string {
    if (this.ring.size === 0) throw empty();
    const cap = this.capacity();
    const start = this.ring.find(this.ring.hashOf(key));
    // Some node is always below capacity: total < nodes * cap. The walk visits every node.
    return this.ring.walk(start, 1, (node) => this.loads.get(node)! < cap)[0]!;
  }

  getN(key: Key, n: number): string[] {
    checkCount(n);
    if (n === 0) return [];
    if (this.ring.size === 0) throw empty();
    const cap = this.capacity();
    const want = Math.min(n, this.ring.size);
    const start = this.ring.find(this.ring.hashOf(key));
    const under = this.ring.walk(start, want, (node) => this.loads.get(node)! < cap);
    if (under.length === want) return under;
    // Fewer than n nodes have room: fill with the full ones, in ring order after the key.
    const rest = this.ring.walk(start, this.ring.size, (node) => !under.includes(node));
    return under.concat(rest.slice(0, want - under.length));
  }

  /** Places `key` and counts one unit of load on the chosen node. */
  acquire(key: Key): string {
    const node = this.get(key);
    this.loads.set(node, this.loads.get(node)! + 1);
    this.total++;
    return node;
  }

  /** Uncounts `count` units of load from `node`. */
  release(node: string, count = 1): void {
    const l = this.load(node);
    if (!Number.isSafeInteger(count) || count < 0 || count > l) {
      throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `cannot release ${count} from node ${JSON.stringify(node)} holding ${l}`);
    }
    this.loads.set(node, l - count);
    this.total -= count;
  }

  /** Forgets every load. */
  resetLoads(): void {
    for (const node of this.loads.keys()) this.loads.set(node, 0);
    this.total = 0;
  }
}
