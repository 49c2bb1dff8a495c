/**
 * Hit-for-pass (Varnish's "hit-for-miss"): a key whose last response could not be stored (private,
 * no-store, Set-Cookie, too large) is remembered for a short while, so the next requests for it go
 * upstream at once instead of queueing behind one another's fetch only to find it uncacheable again.
 * A pass that does come back storable is stored and clears the mark.
 *
 * Bounded: at most `maxKeys` marks; adding one more forgets the oldest (Map insertion order).
 */
export class HitForPass {
  private readonly until = new Map<string, number>();

  /** `ttlMs` 0 disables the marks (every miss collapses). */
  constructor(
    private readonly ttlMs: number,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.until.size;
  }

  has(key: string, now: number): boolean {
    const t = this.until.get(key);
    if (t === undefined) return false;
    if (t <= now) {
      this.until.delete(key);
      return false;
    }
    return true;
  }

  add(key: string, now: number): void {
    if (this.ttlMs <= 0 || this.maxKeys <= 0) return;
    this.until.delete(key);
    this.until.set(key, now + this.ttlMs);
    if (this.until.size > this.maxKeys) {
      const oldest = this.until.keys().next();
      if (oldest.done !== true) this.until.delete(oldest.value);
    }
  }

  delete(key: string): void {
    this.until.delete(key);
  }

  /** Forgets every mark whose key starts with `prefix` (a prefix purge). Linear in the marks, which are bounded. */
  deletePrefix(prefix: string): void {
    for (const k of this.until.keys()) if (k.startsWith(prefix)) this.until.delete(k);
  }

  clear(): void {
    this.until.clear();
  }
}
