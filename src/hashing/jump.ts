import { fmix32, hash32 } from './hash.js';
import { Membership } from './members.js';
import type { Hasher, Key } from './types.js';
import { checkCount, checkKey, empty, tooHeavy } from './validate.js';

// The paper's LCG multiplier 2862933555777941757 = 0x27BB2EE6_87B0B0FD, split for 32-bit arithmetic.
const C_HI = 0x27bb2ee6;
const C_LO = 0x87b0b0fd;
const C_LO_0 = C_LO & 0xffff;
const C_LO_1 = C_LO >>> 16;

/**
 * Jump consistent hash (Lamping & Veach, 2014) of the 64-bit key `hi * 2^32 + lo` into `buckets`
 * buckets. Bit-exact with the paper's C++:
 *
 *     key = key * 2862933555777941757ULL + 1;
 *     j = (b + 1) * (double(1LL << 31) / double((key >> 33) + 1));
 *
 * The 64-bit multiply is done in 32-bit halves (16-bit limbs for the high word of lo * C_lo), so the
 * hot path allocates nothing and never touches BigInt.
 */
export function jumpHash(hi: number, lo: number, buckets: number): number {
  let b = -1;
  let j = 0;
  hi >>>= 0;
  lo >>>= 0;
  while (j < buckets) {
    b = j;
    // (hi, lo) = (hi, lo) * C + 1 (mod 2^64)
    const l0 = lo & 0xffff;
    const l1 = lo >>> 16;
    const p00 = l0 * C_LO_0;
    const p01 = l0 * C_LO_1;
    const p10 = l1 * C_LO_0;
    // Every partial product of two 16-bit limbs is below 2^32, so >>> 16 is exact; so is the sum.
    const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    const carry = l1 * C_LO_1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16);
    const newHi = (carry + Math.imul(hi, C_LO) + Math.imul(lo, C_HI)) >>> 0;
    const newLo = (Math.imul(lo, C_LO) + 1) >>> 0;
    hi = newLo === 0 ? (newHi + 1) >>> 0 : newHi;
    lo = newLo;
    j = Math.floor((b + 1) * (2147483648 / ((hi >>> 1) + 1)));
  }
  return b;
}

/** Live buckets at most (a node of weight w holds w): bounds memory to a few MiB. */
export const MAX_BUCKETS = 1 << 20;

/** After this many re-hashes past removed buckets, fall back to a linear scan (never reached in practice). */
const MAX_REHASH = 64;

/**
 * Jump hash as a Hasher. Bucket i is the i-th bucket handed out; a node of weight w holds w buckets.
 *
 * Jump itself can only grow or shrink at the end. Removing the node that holds the last buckets
 * shrinks the bucket count, as the paper does. To remove any other node while moving only its keys,
 * its buckets are marked dead rather than renumbered: a key that jumps to a dead bucket is re-hashed
 * with the next salt and jumps again over the same bucket count, until it lands on a live one. Keys on
 * live buckets never move; keys of the removed node spread evenly over the rest. An added node first
 * takes over dead buckets (lowest first), so it takes back exactly the keys it would own.
 *
 * Placement depends on the order of adds and removes (that is what numbers the buckets): processes
 * that must agree on it apply the same membership history. With no removals, `get` equals
 * `jumpHash(key64, buckets)` with the key's 64 bits derived from xxHash32.
 */
export class JumpHasher extends Membership implements Hasher {
  readonly algorithm = 'jump' as const;
  private readonly bucketsOf = new Map<string, number[]>();
  /** bucketOwner[i]: the node holding bucket i, or null when the bucket is dead. */
  private bucketOwner: (string | null)[] = [];
  private dead = 0;

  constructor() {
    super(true);
  }

  /** Buckets kept dead after removals (keys landing there re-hash). */
  get deadBuckets(): number {
    return this.dead;
  }

  /** Buckets allocated, live and dead. */
  get bucketCount(): number {
    return this.bucketOwner.length;
  }

  protected override admit(node: string, weight: number): void {
    if (this.bucketOwner.length - this.dead + weight > MAX_BUCKETS) throw tooHeavy(node, weight, MAX_BUCKETS);
  }

  override add(node: string, weight = 1): void {
    super.add(node, weight);
    const buckets: number[] = [];
    for (let i = 0; i < this.bucketOwner.length && buckets.length < weight; i++) {
      if (this.bucketOwner[i] === null) {
        this.bucketOwner[i] = node;
        buckets.push(i);
        this.dead--;
      }
    }
    while (buckets.length < weight) {
      buckets.push(this.bucketOwner.length);
      this.bucketOwner.push(node);
    }
    this.bucketsOf.set(node, buckets);
  }

  override remove(node: string): void {
    super.remove(node);
    const buckets = this.bucketsOf.get(node)!;
    this.bucketsOf.delete(node);
    for (const b of buckets) this.bucketOwner[b] = null;
    this.dead += buckets.length;
    // The node's own buckets at the very end can be dropped instead of kept dead: no other key's
    // chain passed through them (they were live), so only this node's keys move, each to where it
    // was before those buckets existed. Buckets that were dead before stay, or keys that re-hashed
    // past them would move between surviving nodes.
    const own = new Set(buckets);
    while (this.bucketOwner.length > 0 && own.has(this.bucketOwner.length - 1)) {
      this.bucketOwner.pop();
      this.dead--;
    }
    if (this.order.length === 0) {
      this.bucketOwner = [];
      this.dead = 0;
    }
  }

  get(key: Key): string {
    if (typeof key !== 'string') checkKey(key);
    return this.getHashed(hash32(key));
  }

  /** The node for a key already hashed to a uint32 with `hash32` (callers that hash once, reuse many times). */
  getHashed(h: number): string {
    if (this.order.length === 0) throw empty();
    const owner = this.bucketOwner[jumpHash(fmix32(h ^ 0x9e3779b9), h, this.bucketOwner.length)]!;
    if (owner !== null) return owner;
    return this.chain(h, 1, () => true)!;
  }

  getN(key: Key, n: number): string[] {
    checkCount(n);
    if (n === 0) return [];
    if (this.order.length === 0) throw empty();
    checkKey(key);
    const want = Math.min(n, this.order.length);
    const h = hash32(key);
    const out: string[] = [];
    const first = this.bucketOwner[jumpHash(fmix32(h ^ 0x9e3779b9), h, this.bucketOwner.length)]!;
    if (first !== null) out.push(first);
    let salt = 1;
    while (out.length < want) {
      const next = this.chain(h, salt, (node) => !out.includes(node), (s) => (salt = s + 1));
      out.push(next!);
    }
    return out;
  }

  /**
   * Re-hashes `h` with salts starting at `salt` until a jump lands on a live bucket whose owner
   * `accept`s; after MAX_REHASH tries, scans buckets upward from the last landing instead.
   */
  private chain(h: number, salt: number, accept: (node: string) => boolean, usedSalt?: (salt: number) => void): string | undefined {
    const buckets = this.bucketOwner.length;
    let last = 0;
    for (let s = salt; s < salt + MAX_REHASH * Math.max(1, this.order.length); s++) {
      const lo = fmix32((h + Math.imul(s, 0x9e3779b9)) >>> 0);
      last = jumpHash(fmix32(lo ^ 0x85ebca6b), lo, buckets);
      const owner = this.bucketOwner[last]!;
      if (owner !== null && accept(owner)) {
        usedSalt?.(s);
        return owner;
      }
    }
    for (let i = 1; i <= buckets; i++) {
      const owner = this.bucketOwner[(last + i) % buckets]!;
      if (owner !== null && accept(owner)) {
        usedSalt?.(salt + MAX_REHASH * Math.max(1, this.order.length));
        return owner;
      }
    }
    return undefined;
  }
}
