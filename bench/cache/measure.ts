/**
 * Measuring helpers the synchronous harness (bench/harness.ts) lacks: awaited throughput, latency
 * percentiles, and bounded waits.
 */
import { median } from '../harness.js';

export interface AsyncRateOptions {
  /** Operations per timed run. */
  ops: number;
  /** Timed runs; the median is reported. */
  runs: number;
  /** Untimed runs first. Default 1. */
  warmup?: number;
}

/**
 * Operations per second of `batch(ops, run)`, which must perform `ops` operations (awaited) and
 * return something derived from their results. `run` counts every call (warm-up included), so a
 * batch can start each run at a different place of a longer sequence. Median of `runs` runs.
 */
export async function rateAsync(batch: (ops: number, run: number) => Promise<unknown>, o: AsyncRateOptions): Promise<{ rate: number; sink: unknown }> {
  let sink: unknown;
  let run = 0;
  for (let i = 0; i < (o.warmup ?? 1); i++) sink = await batch(o.ops, run++);
  const samples: number[] = [];
  for (let r = 0; r < o.runs; r++) {
    const t0 = process.hrtime.bigint();
    sink = await batch(o.ops, run++);
    const ns = Number(process.hrtime.bigint() - t0);
    samples.push((o.ops / ns) * 1e9);
  }
  return { rate: median(samples), sink };
}

/** The p-th percentile (0..100) of `xs` by nearest rank; NaN for an empty list. */
export function percentile(xs: ArrayLike<number>, p: number): number {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank]!;
}

/** Wall-clock ms comparable across processes on one machine (performance.timeOrigin is per process). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Grows a latency sample list up to a bound (keeps the first `max`, so memory stays bounded). */
export class Samples {
  private readonly buf: Float64Array;
  length = 0;
  /** Samples offered beyond the bound (not kept). */
  dropped = 0;

  constructor(max: number) {
    this.buf = new Float64Array(max);
  }

  push(v: number): void {
    if (this.length < this.buf.length) this.buf[this.length++] = v;
    else this.dropped++;
  }

  values(): Float64Array {
    return this.buf.subarray(0, this.length);
  }
}

/** `p`, or 'timeout' after `ms` (the timer is cleared either way, so it never holds the process open). */
export function orTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err);
      },
    );
  });
}
