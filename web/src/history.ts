/**
 * A fixed-capacity ring: pushing past the capacity drops the oldest item. The stream keeps the last
 * `Hello.historyLength` frames and the last 500 events in two of these, so a dashboard left open for a
 * day holds as much as one opened a minute ago.
 */
export class Ring<T> {
  private items: Array<T | undefined>;
  /** Index of the oldest item. */
  private head = 0;
  private count = 0;

  constructor(private capacityItems: number) {
    if (!Number.isInteger(capacityItems) || capacityItems < 1) throw new RangeError(`ring capacity must be a positive integer, got ${capacityItems}`);
    this.items = new Array<T | undefined>(capacityItems);
  }

  get capacity(): number {
    return this.capacityItems;
  }

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    const tail = (this.head + this.count) % this.capacityItems;
    this.items[tail] = item;
    if (this.count < this.capacityItems) this.count += 1;
    else this.head = (this.head + 1) % this.capacityItems;
  }

  /** Empties the ring and, when given, changes its capacity. */
  reset(capacityItems = this.capacityItems): void {
    if (!Number.isInteger(capacityItems) || capacityItems < 1) throw new RangeError(`ring capacity must be a positive integer, got ${capacityItems}`);
    this.capacityItems = capacityItems;
    this.items = new Array<T | undefined>(capacityItems);
    this.head = 0;
    this.count = 0;
  }

  /** The newest item, or undefined when empty. */
  last(): T | undefined {
    return this.count === 0 ? undefined : this.items[(this.head + this.count - 1) % this.capacityItems];
  }

  /** A copy, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.items[(this.head + i) % this.capacityItems] as T);
    return out;
  }
}

/**
 * Turns frames (oldest first) into uPlot's column layout: the times in seconds, then one column per
 * picker. A picker returns null where there is nothing to plot (no request in the interval), which
 * uPlot draws as a gap.
 */
export function columns<F extends { t: number }>(frames: readonly F[], pickers: ReadonlyArray<(frame: F) => number | null | undefined>): [number[], ...Array<Array<number | null>>] {
  const times = frames.map((f) => f.t / 1000);
  const ys = pickers.map((pick) => frames.map((f) => pick(f) ?? null));
  return [times, ...ys];
}
