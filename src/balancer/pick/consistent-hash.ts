import { hash32, MaglevHasher } from '../../hashing/index.js';
import { checkAbove, MemberSignature } from './shared.js';
import type { BackendView, Picker, PickContext, PickerOptions } from './types.js';

/** Envoy's default Maglev table size: balance within about 1% for up to 650 backends. */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

export interface ConsistentHashOptions extends Pick<PickerOptions, 'boundedLoad'> {
  /**
   * Maglev table size, a prime; at least 100 x the pool's size keeps shares within about 1%.
   * Default 65537. A rebuild costs O(tableSize) (about 10 ms at the default) and 4 bytes per slot.
   */
  tableSize?: number;
}

/**
 * Consistent hashing of `ctx.hashKey ?? ctx.clientIp` on a Maglev table (MaglevHasher, weighted,
 * fractional weights allowed): one hash and one array read per pick.
 *
 * The table holds every backend of the pool, available or not; an unavailable backend's keys go to
 * the next backend in the key's preference order (the table walked forward from the key's slot, the
 * order of MaglevHasher.getN), and the others' keys do not move at all. So availability, which flaps
 * with health checks and connection limits, never rebuilds the table; it is rebuilt only when the
 * pool's ids or weights (rounded, see weightKey) change, e.g. on a reload or during slow start.
 *
 * Bounded load (`boundedLoad` = c > 1; Mirrokni, Thorup & Zadimoghaddam 2018, HAProxy's
 * hash-balance-factor / 100): a key goes to the first backend in its preference order that is
 * available with active < ceil(c x (A + 1) x w / W), A the requests in flight and W the weight summed
 * over the available backends and w the backend's weight; with equal weights that is ceil(c x (A + 1)
 * / n). The caps add up to at least c x (A + 1) > A, so some available backend is always under its
 * own, and no pick takes a backend past ceil(c x its due share of the load). When loads are even
 * every backend is under its cap and the placement is exactly the unbounded one.
 */
export class ConsistentHashPicker implements Picker {
  readonly algorithm = 'consistent-hash' as const;
  readonly boundedLoad: number | undefined;
  readonly tableSize: number;
  private readonly members = new MemberSignature(false);
  /** slot -> index into `nodes` (Maglev's node order). */
  private table: Int32Array = new Int32Array(0);
  private nodes: string[] = [];
  /** index into `nodes` -> index in the pool's array. */
  private owners = new Int32Array(0);
  /** Per node, the walk that last visited it, so a walk checks each backend once. */
  private visited = new Uint32Array(0);
  private walkId = 0;
  private rebuildCount = 0;

  constructor(options: ConsistentHashOptions = {}) {
    checkAbove('boundedLoad', options.boundedLoad, 1, 'the bounded-load factor c = 1 + epsilon, e.g. 1.25');
    this.boundedLoad = options.boundedLoad;
    this.tableSize = options.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE;
    new MaglevHasher({ tableSize: this.tableSize }); // refuses a bad tableSize now, not on the first pick
  }

  /** How many times the Maglev table was rebuilt (for tests and the admin API). */
  get rebuilds(): number {
    return this.rebuildCount;
  }

  pick(backends: readonly BackendView[], ctx: PickContext): number {
    this.sync(backends);
    if (this.nodes.length === 0) return -1;
    const slot = hash32(ctx.hashKey ?? ctx.clientIp) % this.tableSize;
    if (this.boundedLoad === undefined) {
      const first = this.owners[this.table[slot]!]!;
      if (backends[first]!.available) return first; // the common case: one read
      return this.walk(backends, slot, 0, 0, 0, 0);
    }
    let n = 0;
    let active = 0;
    let weight = 0;
    let equal = true;
    let firstWeight = 0;
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (!b.available) continue;
      const w = b.weight;
      if (n === 0) firstWeight = w;
      else if (w !== firstWeight) equal = false;
      n++;
      active += b.active;
      weight += w;
    }
    if (n === 0) return -1;
    const share = this.boundedLoad * (active + 1);
    // Equal weights: the cap is the same for all, computed as ceil(c(A+1)/n) exactly.
    return equal ? this.walk(backends, slot, Math.ceil(share / n), 0, 0, n) : this.walk(backends, slot, 0, share, weight, n);
  }

  /**
   * The first backend from `slot` on that is available and, when `available` > 0 (bounded), under
   * its cap: `cap` when > 0, else ceil(share x w / weight). Falls back to the least loaded available
   * backend if none qualifies (an available backend owning no slot, possible only with extreme weight
   * ratios), and -1 when none is available.
   */
  private walk(backends: readonly BackendView[], slot: number, cap: number, share: number, weight: number, available: number): number {
    const bounded = available > 0;
    const m = this.tableSize;
    if (this.walkId === 0xffffffff) {
      this.visited.fill(0);
      this.walkId = 0;
    }
    const id = ++this.walkId;
    let seen = 0;
    for (let step = 0, s = slot; step < m && seen < this.nodes.length; step++, s = s + 1 === m ? 0 : s + 1) {
      const node = this.table[s]!;
      if (this.visited[node] === id) continue;
      this.visited[node] = id;
      seen++;
      const pos = this.owners[node]!;
      const b = backends[pos]!;
      if (!b.available) continue;
      if (!bounded) return pos;
      const limit = cap > 0 ? cap : Math.ceil((share * b.weight) / weight);
      if (b.active < limit) return pos;
    }
    let best = -1;
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (!b.available) continue;
      if (best < 0 || b.active * backends[best]!.weight < backends[best]!.active * b.weight) best = i;
    }
    return best;
  }

  private sync(backends: readonly BackendView[]): void {
    const change = this.members.compare(backends);
    if (change === 'same') return;
    this.members.record(backends);
    if (change === 'changed') {
      const { ids, weights } = this.members;
      try {
        const hasher = new MaglevHasher({ tableSize: this.tableSize });
        for (let k = 0; k < ids.length; k++) hasher.add(ids[k]!, weights[k]);
        this.nodes = ids.length === 0 ? [] : hasher.tableNodes();
        this.table = ids.length === 0 ? new Int32Array(0) : hasher.tableEntries();
      } catch (err) {
        this.members.invalidate();
        throw err;
      }
      this.visited = new Uint32Array(this.nodes.length);
      this.walkId = 0;
      this.rebuildCount++;
    }
    const positionOf = this.members.positionOf;
    this.owners = Int32Array.from(this.nodes, (node) => positionOf.get(node)!);
  }
}
