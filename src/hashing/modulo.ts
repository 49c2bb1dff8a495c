import { hash32 } from './hash.js';
import { Membership } from './members.js';
import type { Hasher, Key } from './types.js';
import { checkCount, checkKey, empty, tooHeavy } from './validate.js';

/** Slots at most (a node of weight w takes w). */
export const MAX_SLOTS = 1 << 20;

/**
 * `hash(key) % N`: the naive baseline. Perfectly even and O(1), but changing N remaps about
 * N/(N+1) of all keys, which is the problem consistent hashing exists to solve. A node of weight w
 * takes w slots. Kept to measure that claim against the others, not to use.
 */
export class ModuloHasher extends Membership implements Hasher {
  constructor() {
    super(true);
  }

  readonly algorithm = 'modulo' as const;
  private slots: string[] = [];

  protected override admit(node: string, weight: number): void {
    let total = 0;
    for (const w of this.weights.values()) total += w;
    if (total + weight > MAX_SLOTS) throw tooHeavy(node, weight, MAX_SLOTS);
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
    for (const node of this.order) for (let i = 0; i < this.weights.get(node)!; i++) this.slots.push(node);
  }
}
