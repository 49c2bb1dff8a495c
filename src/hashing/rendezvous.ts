import { fmix32, hash32 } from './hash.js';
import { Membership } from './members.js';
import type { Hasher, Key } from './types.js';
import { checkCount, checkKey, empty } from './validate.js';

/**
 * Rendezvous (highest random weight) hashing, Thaler & Ravishankar 1998, with weights by the
 * logarithmic method of Schindelhauer & Schomaker: each node scores a key as `w / -ln(u)`, `u` a
 * uniform draw in (0, 1) from hash(key, node), and the highest score wins. A node's share is exactly
 * its weight's share; removing a node moves only its keys; adding one takes only the keys it now wins.
 * No shared state beyond the member list, so any two processes with the same members agree.
 * A lookup costs O(nodes): choose it for tens to hundreds of nodes, or for replica sets (getN).
 */
export class RendezvousHasher extends Membership implements Hasher {
  constructor() {
    super(false);
  }

  readonly algorithm = 'rendezvous' as const;
  private seedA = new Uint32Array(0);
  private seedB = new Uint32Array(0);
  private weightOf = new Float64Array(0);
  private weighted = false;


  get(key: Key): string {
    if (this.dirty) this.rebuild();
    const count = this.order.length;
    if (count === 0) throw empty();
    if (typeof key !== 'string') checkKey(key);
    const h = hash32(key);
    let best = 0;
    if (!this.weighted) {
      // Equal weights: w / -ln(u) is monotone in u, so compare the raw draws and skip the logarithm.
      let top = -1;
      for (let i = 0; i < count; i++) {
        const u = this.draw(h, i);
        if (u > top) {
          top = u;
          best = i;
        }
      }
    } else {
      let top = -Infinity;
      for (let i = 0; i < count; i++) {
        const s = this.score(h, i);
        if (s > top) {
          top = s;
          best = i;
        }
      }
    }
    return this.order[best]!;
  }

  getN(key: Key, n: number): string[] {
    if (this.dirty) this.rebuild();
    checkCount(n);
    if (n === 0) return [];
    if (this.order.length === 0) throw empty();
    checkKey(key);
    const h = hash32(key);
    const count = this.order.length;
    const want = Math.min(n, count);
    // Keep the top `want` (score, index) pairs sorted descending; insertion is O(want).
    const topScore: number[] = [];
    const topIdx: number[] = [];
    for (let i = 0; i < count; i++) {
      const s = this.score(h, i);
      if (topScore.length === want && s <= topScore[want - 1]!) continue;
      let pos = topScore.length === want ? want - 1 : topScore.length;
      while (pos > 0 && topScore[pos - 1]! < s) {
        topScore[pos] = topScore[pos - 1]!;
        topIdx[pos] = topIdx[pos - 1]!;
        pos--;
      }
      topScore[pos] = s;
      topIdx[pos] = i;
    }
    return topIdx.map((i) => this.order[i]!);
  }

  /** A uint32 draw for (key hash, node), from two independent per-node seeds. */
  private draw(h: number, i: number): number {
    return fmix32((fmix32((h ^ this.seedA[i]!) >>> 0) + this.seedB[i]!) >>> 0);
  }

  private score(h: number, i: number): number {
    const u = (this.draw(h, i) + 0.5) / 4294967296; // in (0, 1), never 0 or 1
    return this.weightOf[i]! / -Math.log(u);
  }

  private rebuild(): void {
    this.dirty = false;
    const count = this.order.length;
    this.seedA = new Uint32Array(count);
    this.seedB = new Uint32Array(count);
    this.weightOf = new Float64Array(count);
    let first: number | undefined;
    this.weighted = false;
    for (let i = 0; i < count; i++) {
      const node = this.order[i]!;
      this.seedA[i] = hash32(node, 0x52454e44);
      this.seedB[i] = hash32(node, 0x48525721);
      const w = this.weights.get(node)!;
      this.weightOf[i] = w;
      if (first === undefined) first = w;
      else if (w !== first) this.weighted = true;
    }
  }
}
