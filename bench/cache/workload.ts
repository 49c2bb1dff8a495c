/**
 * The one workload every row of bench/cache runs on: a Zipf-distributed key sequence (rank r drawn
 * with probability proportional to 1 / r^s), 95% reads and 5% writes, generated once from a seeded
 * Random so every system sees the same keys in the same order, run after run.
 */
import { SeededRandom } from '../../src/core/random.js';

/** The value every source in the benchmark holds for a key: small, JSON-safe, checkable. */
export interface Item {
  id: number;
  name: string;
  priceCents: number;
}

export interface Workload {
  /** Distinct keys; keys[i] is the key of item i. */
  readonly keys: readonly string[];
  /** The operation sequence: indices into `keys`, Zipf-distributed. */
  readonly seq: Uint32Array;
  /** Parallel to `seq`: 1 where the operation is a write (writeRatio of them). */
  readonly writes: Uint8Array;
  readonly seed: number;
  readonly zipfS: number;
}

export interface WorkloadOptions {
  /** Distinct keys. */
  keyCount: number;
  /** Length of the operation sequence. */
  length: number;
  /** Zipf exponent s. Default 1.0. */
  s?: number;
  /** Fraction of operations that are writes. Default 0.05. */
  writeRatio?: number;
  /** Seed of the generator. Default 20240605. */
  seed?: number;
}

export function makeWorkload(o: WorkloadOptions): Workload {
  const s = o.s ?? 1.0;
  const seed = o.seed ?? 20240605;
  const writeRatio = o.writeRatio ?? 0.05;
  const rnd = new SeededRandom(seed);
  // Cumulative weights of ranks 1..N; a draw is a binary search of u x total.
  const cdf = new Float64Array(o.keyCount);
  let total = 0;
  for (let r = 0; r < o.keyCount; r++) {
    total += 1 / Math.pow(r + 1, s);
    cdf[r] = total;
  }
  // Rank -> item id through a seeded shuffle, so the hottest keys are not items 0, 1, 2...
  const idOfRank = new Uint32Array(o.keyCount);
  for (let i = 0; i < o.keyCount; i++) idOfRank[i] = i;
  for (let i = o.keyCount - 1; i > 0; i--) {
    const j = rnd.int(i + 1);
    const t = idOfRank[i]!;
    idOfRank[i] = idOfRank[j]!;
    idOfRank[j] = t;
  }
  const seq = new Uint32Array(o.length);
  const writes = new Uint8Array(o.length);
  for (let i = 0; i < o.length; i++) {
    const u = rnd.next() * total;
    let lo = 0;
    let hi = o.keyCount - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    seq[i] = idOfRank[lo]!;
    writes[i] = rnd.next() < writeRatio ? 1 : 0;
  }
  // Flattened strings, as a server would receive them, not cons-strings of a template.
  const keys = JSON.parse(JSON.stringify(Array.from({ length: o.keyCount }, (_, i) => `item:${i}`))) as string[];
  return { keys, seq, writes, seed, zipfS: s };
}

/** The source's value of item `id` (version 0; writes bump `priceCents`). */
export function itemOf(id: number, version = 0): Item {
  return { id, name: `item number ${id}`, priceCents: 100 + (id % 9000) + version };
}

/** Item id of a key made by makeWorkload (`item:<id>`). */
export function idOfKey(key: string): number {
  return Number(key.slice(5));
}

/** Distinct keys among the first `n` operations (how much of the key space a run touches). */
export function distinctKeys(w: Workload, n = w.seq.length): number {
  const seen = new Uint8Array(w.keys.length);
  let d = 0;
  for (let i = 0; i < n && i < w.seq.length; i++) {
    const k = w.seq[i]!;
    if (!seen[k]) {
      seen[k] = 1;
      d++;
    }
  }
  return d;
}
