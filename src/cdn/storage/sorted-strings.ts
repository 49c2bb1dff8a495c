/**
 * A sorted set of strings for prefix queries: the strings a prefix covers are contiguous in sorted
 * order, so `withPrefix` is a binary search plus a walk over the matches, O(log n + k), whatever n.
 *
 * Layout: a list of sorted chunks of at most CHUNK_MAX strings, plus the last string of each chunk
 * (`lasts`) to binary-search the right chunk. An insert or delete moves at most CHUNK_MAX pointers
 * inside one chunk (a plain sorted array would move up to n of them, ~8 MB at a million keys); a
 * chunk that fills splits in two, one that shrinks below CHUNK_MIN merges with a neighbour when
 * they fit in one, so the chunk count stays within about n / CHUNK_MIN.
 *
 * Order is JavaScript's string order (UTF-16 code units), which is all a prefix walk needs.
 */

/** Most strings in one chunk; a chunk past it splits in two halves. */
const CHUNK_MAX = 512;
/** A chunk below this size merges with a neighbour when the two fit in CHUNK_MAX. */
const CHUNK_MIN = CHUNK_MAX / 4;

/** First index in sorted `arr` whose element is >= s (arr.length when none). */
function lowerBound(arr: readonly string[], s: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class SortedStrings {
  private chunks: string[][] = [];
  /** lasts[i] is the last (largest) string of chunks[i]. */
  private lasts: string[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(s: string): boolean {
    const ci = lowerBound(this.lasts, s);
    if (ci === this.chunks.length) return false;
    const chunk = this.chunks[ci]!;
    const i = lowerBound(chunk, s);
    return chunk[i] === s;
  }

  /** Adds `s`; false when it was already there. */
  add(s: string): boolean {
    if (this.chunks.length === 0) {
      this.chunks.push([s]);
      this.lasts.push(s);
      this.count = 1;
      return true;
    }
    // The first chunk whose last string is >= s; past every chunk, s goes at the end of the last one.
    let ci = lowerBound(this.lasts, s);
    if (ci === this.chunks.length) ci--;
    const chunk = this.chunks[ci]!;
    const i = lowerBound(chunk, s);
    if (chunk[i] === s) return false;
    chunk.splice(i, 0, s);
    if (i === chunk.length - 1) this.lasts[ci] = s;
    this.count++;
    if (chunk.length > CHUNK_MAX) {
      const tail = chunk.splice(CHUNK_MAX >>> 1);
      this.chunks.splice(ci + 1, 0, tail);
      this.lasts.splice(ci, 1, chunk[chunk.length - 1]!, tail[tail.length - 1]!);
    }
    return true;
  }

  /** Removes `s`; false when it was not there. */
  delete(s: string): boolean {
    const ci = lowerBound(this.lasts, s);
    if (ci === this.chunks.length) return false;
    const chunk = this.chunks[ci]!;
    const i = lowerBound(chunk, s);
    if (chunk[i] !== s) return false;
    chunk.splice(i, 1);
    this.count--;
    if (chunk.length === 0) {
      this.chunks.splice(ci, 1);
      this.lasts.splice(ci, 1);
      return true;
    }
    if (i === chunk.length) this.lasts[ci] = chunk[chunk.length - 1]!;
    if (chunk.length < CHUNK_MIN) this.mergeAround(ci);
    return true;
  }

  /** Calls `fn` with every string that starts with `prefix`, in order. `fn` must not change the set. */
  forEachWithPrefix(prefix: string, fn: (s: string) => void): void {
    let ci = lowerBound(this.lasts, prefix);
    if (ci === this.chunks.length) return;
    let i = lowerBound(this.chunks[ci]!, prefix);
    for (; ci < this.chunks.length; ci++, i = 0) {
      const chunk = this.chunks[ci]!;
      for (; i < chunk.length; i++) {
        const s = chunk[i]!;
        if (!s.startsWith(prefix)) return;
        fn(s);
      }
    }
  }

  /** Every string, in order (for tests and debugging). */
  toArray(): string[] {
    return this.chunks.flat();
  }

  clear(): void {
    this.chunks = [];
    this.lasts = [];
    this.count = 0;
  }

  /** Merges the small chunk at `ci` into a neighbour when both fit in one chunk. */
  private mergeAround(ci: number): void {
    const chunk = this.chunks[ci]!;
    const prev = ci > 0 ? this.chunks[ci - 1] : undefined;
    if (prev !== undefined && prev.length + chunk.length <= CHUNK_MAX) {
      for (const s of chunk) prev.push(s);
      this.chunks.splice(ci, 1);
      this.lasts.splice(ci - 1, 1);
      return;
    }
    const next = this.chunks[ci + 1];
    if (next !== undefined && next.length + chunk.length <= CHUNK_MAX) {
      this.chunks[ci + 1] = chunk.concat(next);
      this.chunks.splice(ci, 1);
      this.lasts.splice(ci, 1);
    }
  }
}
