/**
 * The last `capacity` samples of a measurement (purge propagation times), in a preallocated ring,
 * with nearest-rank percentiles computed on demand (copy and sort: a scrape, not the request path).
 */
import { InvalidArgumentError } from '../../core/errors.js';

export class RecentSamples {
  private readonly ring: Float64Array;
  private next = 0;
  private filled = 0;
  /** Samples ever added (the ring holds the last `capacity`). */
  count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new InvalidArgumentError(`capacity must be an integer >= 1, got ${capacity}`);
    this.ring = new Float64Array(capacity);
  }

  add(v: number): void {
    this.ring[this.next] = v;
    this.next = (this.next + 1) % this.capacity;
    if (this.filled < this.capacity) this.filled++;
    this.count++;
  }

  /** Nearest-rank percentile (p in 0..100) of the samples held; undefined when there are none. */
  percentile(p: number): number | undefined {
    return this.percentiles([p])[0];
  }

  /** Several percentiles from one sort. */
  percentiles(ps: readonly number[]): Array<number | undefined> {
    if (this.filled === 0) return ps.map(() => undefined);
    const sorted = this.ring.slice(0, this.filled).sort();
    return ps.map((p) => {
      const rank = Math.ceil((Math.min(100, Math.max(0, p)) / 100) * sorted.length);
      return sorted[Math.max(0, rank - 1)];
    });
  }

  /** The most recent sample. */
  last(): number | undefined {
    return this.filled === 0 ? undefined : this.ring[(this.next - 1 + this.capacity) % this.capacity];
  }
}
