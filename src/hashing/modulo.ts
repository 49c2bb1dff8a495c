import { hash32 } from './hash.js';
import type { Hasher, Key, NodeInfo } from './types.js';
import { checkCount, checkKey, checkNode, checkWeight, duplicate, empty, tooHeavy, unknown } from './validate.js';

/** Slots at most (a node of weight w takes w). */
export const MAX_SLOTS = 1 << 20;

/**
 * `hash(key) % N`: the naive baseline. Perfectly even and O(1), but changing N remaps about
 * N/(N+1) of all keys, which is the problem consistent hashing exists to solve. A node of weight w
 * takes w slots. Kept to measure that claim against the others, not to use.
 */
export class ModuloHasher implements Hasher {
  readonly algorithm = 'modulo' as const;
  private readonly members = new Map<string, number>();
  private order: string[] = [];
  private slots: string[] = [];
  /** Membership changed since the last build: rebuilt on the next lookup, so N adds cost one build. */
  private dirty = false;

  get size(): number {
    return this.order.length;
  }

  add(node: string, weight = 1): void {
    checkNode(node);
    checkWeight(node, weight, true);
    if (this.members.has(node)) throw duplicate(node);
    if (this.slots.length + weight > MAX_SLOTS) throw tooHeavy(node, weight, MAX_SLOTS);
    this.members.set(node, weight);
    this.order.push(node);
    this.dirty = true;
  }

  remove(node: string): void {
    if (!this.members.delete(node)) throw unknown(node);
    this.order = this.order.filter((n) => n !== node);
    this.dirty = true;
  }

  has(node: string): boolean {
    return this.members.has(node);
  }

  nodes(): NodeInfo[] {
    return this.order.map((node) => ({ node, weight: this.members.get(node)! }));
  }

  get(key: Key): string {
    if (this.dirty) this.rebuild();
    if (this.slots.length === 0) throw empty();
    if (typeof key !== 'string') checkKey(key);
    return this.slots[hash32(key) % this.slots.length]!;
  }

  getN(key: Key, n: number): string[] {
    if (this.dirty) this.rebuild();
    checkCount(n);
    if (n === 0) return [];
    if (this.slots.length === 0) throw empty();
    checkKey(key);
    const want = Math.min(n, this.order.length);
    const out: string[] = [];
    const start = hash32(key) % this.slots.length;
    for (let i = 0; i < this.slots.length && out.length < want; i++) {
      const node = this.slots[(start + i) % this.slots.length]!;
      if (!out.includes(node)) out.push(node);
    }
    return out;
  }

  private rebuild(): void {
    this.dirty = false;
    this.slots = [];
    for (const node of this.order) for (let i = 0; i < this.members.get(node)!; i++) this.slots.push(node);
  }
}
