/**
 * A growable ring buffer (power-of-two capacity): O(1) push and pop at both ends, no per-item
 * allocation once warm. Used for the ready messages of each priority level and for consumers with
 * credit.
 *
 * Positions are also available as *absolute* indexes that do not move when items are taken from the
 * front (`firstIndex` grows by one per shift and shrinks by one per unshift), so a cursor walking the
 * deque (the TTL sweep) stays valid while the front is consumed.
 */
export class Deque<T> {
  private buf: (T | undefined)[];
  private mask: number;
  private head = 0;
  private size = 0;
  /** Absolute index of the front item. */
  private base = 0;

  constructor(initialCapacity = 16) {
    let cap = 4;
    while (cap < initialCapacity) cap *= 2;
    this.buf = new Array<T | undefined>(cap);
    this.mask = cap - 1;
  }

  get length(): number {
    return this.size;
  }

  /** Absolute index of the front item (meaningful when non-empty). */
  get firstIndex(): number {
    return this.base;
  }

  /** One past the absolute index of the back item. */
  get endIndex(): number {
    return this.base + this.size;
  }

  push(item: T): void {
    if (this.size === this.buf.length) this.grow();
    this.buf[(this.head + this.size) & this.mask] = item;
    this.size++;
  }

  unshift(item: T): void {
    if (this.size === this.buf.length) this.grow();
    this.head = (this.head - 1) & this.mask;
    this.buf[this.head] = item;
    this.size++;
    this.base--;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.size--;
    this.base++;
    return item;
  }

  peek(): T | undefined {
    return this.size === 0 ? undefined : this.buf[this.head];
  }

  /** The item at absolute index `abs` (firstIndex <= abs < endIndex), else undefined. */
  atAbsolute(abs: number): T | undefined {
    const i = abs - this.base;
    if (i < 0 || i >= this.size) return undefined;
    return this.buf[(this.head + i) & this.mask];
  }

  /** Keeps only the items for which `keep` is true, in order (O(n)); absolute indexes restart at firstIndex. */
  filter(keep: (item: T) => boolean): void {
    const kept: T[] = [];
    for (let i = 0; i < this.size; i++) {
      const item = this.buf[(this.head + i) & this.mask] as T;
      if (keep(item)) kept.push(item);
    }
    this.buf.fill(undefined);
    this.head = 0;
    this.size = 0;
    for (const item of kept) this.push(item);
  }

  clear(): void {
    this.buf.fill(undefined);
    this.head = 0;
    this.size = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.size; i++) yield this.buf[(this.head + i) & this.mask] as T;
  }

  private grow(): void {
    const old = this.buf;
    const cap = old.length * 2;
    const next = new Array<T | undefined>(cap);
    for (let i = 0; i < this.size; i++) next[i] = old[(this.head + i) & this.mask];
    this.buf = next;
    this.head = 0;
    this.mask = cap - 1;
  }
}

/**
 * A binary min-heap ordered by `less`. Used for delayed messages (by due time). `remove` is O(n)
 * (rare: purge and delete take the whole heap instead).
 */
export class MinHeap<T> {
  private items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get length(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }

  /** Removes and returns every item (unordered). */
  drain(): T[] {
    const all = this.items;
    this.items = [];
    return all;
  }

  values(): readonly T[] {
    return this.items;
  }
}
