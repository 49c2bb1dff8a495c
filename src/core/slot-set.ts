/**
 * A set of objects for hot paths that add and delete one item per request: an array in which each
 * item remembers its own index (under a symbol private to the set), so delete swaps the last item
 * into the freed slot. No order is kept.
 *
 * Why not a `Set`: a JS Set with an add and a delete per request rehashes into a new table every
 * few dozen operations, and V8 links each old table to its successor (for iterators). Once one
 * table has aged into the old generation (a lull with a few GCs in it is enough), every young
 * successor is kept alive through that link at each scavenge, with every item it holds, and
 * promoted: garbage piles up in the old generation until the next mark-compact, and again after
 * it. docs/balancer.md measured it in the balancer (session 14: scavenges from 0.5 to 6 ms) and in
 * core/lifecycle's set of unfinished responses on every node:http server (session 15: 3.2 MB/s
 * promoted under load after a lull, 0.03 MB/s with this class). The balancer's ExchangeTimeouts
 * (balancer/l7/proxy.ts) is the same idea specialised: the index is a field its items declare, and
 * its timer walks the array in place instead of a copy.
 */
export class SlotSet<T extends object> implements Iterable<T> {
  private readonly items: T[] = [];
  private readonly slot = Symbol('slot');

  get size(): number {
    return this.items.length;
  }

  has(item: T): boolean {
    const i = (item as Record<symbol, number | undefined>)[this.slot];
    return i !== undefined && i >= 0 && this.items[i] === item;
  }

  /** Adds `item` unless it is in already. */
  add(item: T): void {
    if (this.has(item)) return;
    (item as Record<symbol, number>)[this.slot] = this.items.length;
    this.items.push(item);
  }

  /** Removes `item`; false when it was not in. */
  delete(item: T): boolean {
    if (!this.has(item)) return false;
    const at = item as Record<symbol, number>;
    const i = at[this.slot]!;
    at[this.slot] = -1;
    const last = this.items.pop()!;
    if (last !== item) {
      this.items[i] = last;
      (last as Record<symbol, number>)[this.slot] = i;
    }
    return true;
  }

  /** Iterates a copy: the loop body may add or delete. */
  [Symbol.iterator](): Iterator<T> {
    return this.items.slice()[Symbol.iterator]();
  }
}
