/**
 * Zipf-distributed request traces: key k (0-based) is requested with probability proportional to
 * 1 / (k + 1)^s, so key 0 is the hottest. Web and CDN object popularity follows this law with s
 * between about 0.6 and 1.0 (Breslau et al., "Web Caching and Zipf-like Distributions", 1999).
 *
 * Sampling is by inversion: the cumulative weights of the n ranks are computed once, and each draw
 * is a binary search of u x total (O(log n) per request, 8 bytes per key of memory). Deterministic
 * for a given Random: a seeded Random replays the same trace.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import type { Random } from '../../core/random.js';

/** Largest key space zipfTrace accepts (80 MB of cumulative weights). */
export const MAX_ZIPF_KEYS = 10_000_000;
/** Longest trace zipfTrace makes in one call (400 MB of keys). */
export const MAX_ZIPF_REQUESTS = 100_000_000;

/** Cumulative weights of ranks 1..n for exponent s (the table the sampler searches). */
export function zipfCdf(n: number, s: number): Float64Array {
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_ZIPF_KEYS) throw new InvalidArgumentError(`zipf n must be an integer in [1, ${MAX_ZIPF_KEYS}], got ${n}`);
  if (!Number.isFinite(s) || s < 0) throw new InvalidArgumentError(`zipf exponent s must be a finite number >= 0, got ${s}`);
  const cdf = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) {
    total += 1 / Math.pow(r + 1, s);
    cdf[r] = total;
  }
  return cdf;
}

/** The probability of key k (0-based) under Zipf(n, s): what a long trace's frequencies approach. */
export function zipfProbability(cdf: Float64Array, k: number): number {
  const total = cdf[cdf.length - 1]!;
  return (cdf[k]! - (k > 0 ? cdf[k - 1]! : 0)) / total;
}

/**
 * `count` keys in [0, n), each drawn independently from Zipf(n, s) with `random`.
 *
 * @param n distinct keys (1..10,000,000)
 * @param s exponent (>= 0; 0 is uniform, 0.9 is the bench's workload)
 * @param count requests (0..100,000,000)
 */
export function zipfTrace(n: number, s: number, count: number, random: Random): Uint32Array {
  if (!Number.isSafeInteger(count) || count < 0 || count > MAX_ZIPF_REQUESTS) throw new InvalidArgumentError(`zipf count must be an integer in [0, ${MAX_ZIPF_REQUESTS}], got ${count}`);
  const cdf = zipfCdf(n, s);
  const total = cdf[n - 1]!;
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const u = random.next() * total;
    // First rank whose cumulative weight exceeds u.
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! <= u) lo = mid + 1;
      else hi = mid;
    }
    out[i] = lo;
  }
  return out;
}
