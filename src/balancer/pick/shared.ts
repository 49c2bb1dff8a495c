/**
 * Pieces several pickers share: weighted draws over the available backends, per-id state laid out
 * by array position, and the member signature the hash pickers rebuild on. Nothing here allocates
 * on a pick whose pool has not changed.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import type { Random } from '../../core/random.js';
import type { BackendView } from './types.js';

/**
 * The available backends of one pick with their weights and prefix sums, in preallocated arrays
 * (grown to the pool's size, never shrunk), for weighted draws by binary search.
 */
export class AvailableSet {
  /** Number of available backends loaded. */
  count = 0;
  /** Sum of their weights. */
  total = 0;
  private position = new Int32Array(8);
  private weightOf = new Float64Array(8);
  private cumulative = new Float64Array(8);

  /** Loads the available backends of `backends`, reading each weight once; returns their count. */
  load(backends: readonly BackendView[]): number {
    if (this.position.length < backends.length) {
      let size = this.position.length;
      while (size < backends.length) size *= 2;
      this.position = new Int32Array(size);
      this.weightOf = new Float64Array(size);
      this.cumulative = new Float64Array(size);
    }
    let count = 0;
    let total = 0;
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (!b.available) continue;
      const w = b.weight;
      total += w;
      this.position[count] = i;
      this.weightOf[count] = w;
      this.cumulative[count] = total;
      count++;
    }
    this.count = count;
    this.total = total;
    return count;
  }

  /** Index in the pool's array of the k-th available backend. */
  positionAt(k: number): number {
    return this.position[k]!;
  }

  /** Weight of the k-th available backend, as read by `load`. */
  weightAt(k: number): number {
    return this.weightOf[k]!;
  }

  /** A k drawn with probability weight(k) / total. Needs count >= 1. */
  draw(random: Random): number {
    return this.find(random.next() * this.total);
  }

  /**
   * A k other than `except`, drawn with probability weight(k) / (total - weight(except)): the second
   * draw of sampling without replacement. Needs count >= 2.
   */
  drawOther(random: Random, except: number): number {
    const w = this.weightOf[except]!;
    const before = except === 0 ? 0 : this.cumulative[except - 1]!;
    let x = random.next() * (this.total - w);
    if (x >= before) x += w; // skip over the excluded backend's interval
    const k = this.find(x);
    if (k !== except) return k;
    // Only reachable through rounding at the interval's edge.
    return except + 1 < this.count ? except + 1 : except - 1;
  }

  /** The first k whose prefix sum exceeds x (the last when rounding puts x at the very end). */
  private find(x: number): number {
    let lo = 0;
    let hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cumulative[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/**
 * Numbers kept per backend id, laid out in the order of the pool's array so a pick reads them by
 * index. While the array holds the same ids in the same order, `align` is one pass of comparisons;
 * after a membership change the values follow their ids, and new ids start at `initial`.
 */
export class PerBackend {
  private ids: string[] = [];
  private values = new Float64Array(0);

  constructor(private readonly initial = 0) {}

  align(backends: readonly BackendView[]): Float64Array {
    const n = backends.length;
    let same = n === this.ids.length;
    for (let i = 0; same && i < n; i++) if (backends[i]!.id !== this.ids[i]) same = false;
    if (same) return this.values;
    const old = new Map<string, number>();
    for (let i = 0; i < this.ids.length; i++) old.set(this.ids[i]!, this.values[i]!);
    const ids = new Array<string>(n);
    const values = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const id = backends[i]!.id;
      ids[i] = id;
      values[i] = old.get(id) ?? this.initial;
    }
    this.ids = ids;
    this.values = values;
    return values;
  }
}

/**
 * A weight as the hash pickers see it. Whole numbers are kept exactly; any other weight (a
 * slow-start ramp) is rounded to 4 significant bits (8 steps per doubling, within 1/16 of the
 * weight), so a ramp from 10% to full weight rebuilds a placement about 27 times rather than on
 * every pick.
 */
export function weightKey(w: number): number {
  if (Number.isSafeInteger(w) || !(w > 0) || !Number.isFinite(w)) return w;
  const step = 2 ** (Math.floor(Math.log2(w)) - 3);
  return Math.round(w / step) * step;
}

/** What a pool's member list has done since the last `record`. */
export type MemberChange = 'same' | 'moved' | 'changed';

/**
 * The members a hash placement was built from: ids and rounded weights (see `weightKey`) in array
 * order, and each one's index in the pool's array. `compare` tells a picker whether to rebuild its
 * placement ('changed': ids or weights differ), only re-point ids at new indices ('moved': backends
 * were added or removed around them without changing the set), or do nothing ('same').
 */
export class MemberSignature {
  ids: string[] = [];
  weights: number[] = [];
  positions: number[] = [];
  /** id -> index in the pool's array, as of the last `record`. */
  readonly positionOf = new Map<string, number>();
  private valid = false;

  constructor(private readonly availableOnly: boolean) {}

  compare(backends: readonly BackendView[]): MemberChange {
    if (!this.valid) return 'changed';
    const ids = this.ids;
    let k = 0;
    let moved = false;
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (this.availableOnly && !b.available) continue;
      if (k >= ids.length || ids[k] !== b.id || this.weights[k] !== weightKey(b.weight)) return 'changed';
      if (this.positions[k] !== i) moved = true;
      k++;
    }
    if (k !== ids.length) return 'changed';
    return moved ? 'moved' : 'same';
  }

  /** Snapshots the members of `backends`: the placement is (re)built from `ids` and `weights`. */
  record(backends: readonly BackendView[]): void {
    this.valid = true;
    this.ids = [];
    this.weights = [];
    this.positions = [];
    this.positionOf.clear();
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (this.availableOnly && !b.available) continue;
      this.ids.push(b.id);
      this.weights.push(weightKey(b.weight));
      this.positions.push(i);
      this.positionOf.set(b.id, i);
    }
  }

  /** Makes the next `compare` say 'changed' (a rebuild from the recorded members failed). */
  invalidate(): void {
    this.valid = false;
  }
}

/** Validates an optional number option: finite and above `min` (exclusive). */
export function checkAbove(name: string, value: number | undefined, min: number, hint: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= min) {
    throw new InvalidArgumentError(`${name} must be a finite number > ${min} (${hint}), got ${String(value)}`, { [name]: value });
  }
}
