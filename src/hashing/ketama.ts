import { digestWord, ketamaHash, md5Bytes } from './hash.js';
import { HashingError } from './errors.js';
import { Membership } from './members.js';
import type { Hasher, Key } from './types.js';
import { checkCount, checkKey, empty, unknown } from './validate.js';

export interface KetamaOptions {
  /**
   * Points per server at equal weight. Default 160, libketama's and libmemcached's
   * MEMCACHED_POINTS_PER_SERVER_KETAMA. Must be a multiple of 4 (each md5 digest gives four points).
   */
  pointsPerServer?: number;
  /**
   * A node named `host:port` whose port equals this is hashed as `host-i` rather than `host:port-i`,
   * as libmemcached does for its default port. Default 11211; `null` never strips the port, which is
   * twemproxy's naming (it hashes `name-i`).
   */
  defaultPort?: number | null;
}

/**
 * The ketama continuum, placed exactly as libmemcached places it with
 * MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED (and libketama and twemproxy, up to naming):
 *
 * - a server with weight w out of a total W, among S servers, gets
 *   floor(float(w/W) * 160 / 4 * S) * 4 points, computed in 32-bit float as the C code does;
 * - its points are the four little-endian 32-bit words of md5(`host-i`) for i = 0, 1, ...;
 * - a key goes to the first point >= the first md5 word of the key, wrapping past the last point.
 *
 * The count is rescaled from every weight, so adding or removing a node of a weighted ring changes the
 * other nodes' point counts too (as in libmemcached). With equal weights each node has exactly 160
 * points and a removal moves only the removed node's keys.
 */
export class KetamaHasher extends Membership implements Hasher {
  readonly algorithm = 'ketama' as const;
  private readonly pointsPerServer: number;
  private readonly defaultPort: number | null;
  /** Sorted point values of the continuum. */
  private points = new Uint32Array(0);
  /** owners[i]: index into `order` of the node owning points[i]. */
  private owners = new Uint32Array(0);

  constructor(options: KetamaOptions = {}) {
    super(true);
    const pps = options.pointsPerServer ?? 160;
    if (!Number.isSafeInteger(pps) || pps <= 0 || pps % 4 !== 0) {
      throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `pointsPerServer must be a positive multiple of 4, got ${pps}`);
    }
    this.pointsPerServer = pps;
    this.defaultPort = options.defaultPort === undefined ? 11211 : options.defaultPort;
  }


  /** Number of points on the continuum (for memory and balance reports). */
  get pointCount(): number {
    if (this.dirty) this.rebuild();
    return this.points.length;
  }

  /** How many continuum points a node has now. */
  pointsOf(node: string): number {
    if (this.dirty) this.rebuild();
    const idx = this.order.indexOf(node);
    if (idx < 0) throw unknown(node);
    let c = 0;
    for (const o of this.owners) if (o === idx) c++;
    return c;
  }

  get(key: Key): string {
    if (this.dirty) this.rebuild();
    if (this.points.length === 0) throw empty();
    return this.order[this.owners[this.find(this.hashOf(key))]!]!;
  }

  getN(key: Key, n: number): string[] {
    if (this.dirty) this.rebuild();
    checkCount(n);
    if (n === 0) return [];
    if (this.points.length === 0) throw empty();
    return this.walk(this.find(this.hashOf(key)), Math.min(n, this.order.length), () => true);
  }

  /** The index of the first point at or after `hash`, wrapping to 0 past the end. */
  find(hash: number): number {
    if (this.dirty) this.rebuild();
    const points = this.points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }

  /** The 32-bit ketama hash of a key (first md5 word). */
  hashOf(key: Key): number {
    if (typeof key !== 'string') checkKey(key);
    return ketamaHash(key);
  }

  /** The value of point index `i` (points are sorted ascending). */
  pointAt(i: number): number {
    if (this.dirty) this.rebuild();
    return this.points[i]!;
  }

  /** The owner of point index `i`. */
  ownerAt(i: number): string {
    if (this.dirty) this.rebuild();
    return this.order[this.owners[i]!]!;
  }

  /**
   * Walks the continuum clockwise from point `start`, returning up to `n` distinct nodes that `accept`
   * takes, in the order met. Stops after one full turn.
   */
  walk(start: number, n: number, accept: (node: string) => boolean): string[] {
    if (this.dirty) this.rebuild();
    const out: string[] = [];
    const seen = new Uint8Array(this.order.length);
    const total = this.points.length;
    let distinct = 0;
    for (let step = 0; step < total && out.length < n && distinct < this.order.length; step++) {
      const owner = this.owners[(start + step) % total]!;
      if (seen[owner]) continue;
      seen[owner] = 1;
      distinct++;
      const node = this.order[owner]!;
      if (accept(node)) out.push(node);
    }
    return out;
  }

  /** The name hashed for point group i of a node: `host-i` on the default port, else `node-i`. */
  private pointName(node: string, i: number): string {
    if (this.defaultPort !== null) {
      const colon = node.lastIndexOf(':');
      if (colon > 0 && node.slice(colon + 1) === String(this.defaultPort)) return `${node.slice(0, colon)}-${i}`;
    }
    return `${node}-${i}`;
  }

  private rebuild(): void {
    this.dirty = false;
    const servers = this.order.length;
    let totalWeight = 0;
    for (const n of this.order) totalWeight += this.weights.get(n)!;
    const counts = this.order.map((n) => pointCount(this.weights.get(n)!, totalWeight, servers, this.pointsPerServer));
    const total = counts.reduce((a, b) => a + b, 0);
    // Pack (point, owner) into one double so a numeric sort orders by point, then by owner index
    // (add order) on the rare equal points, as a stable sort over servers in order would.
    const packed = new Float64Array(total);
    let k = 0;
    for (let owner = 0; owner < servers; owner++) {
      const node = this.order[owner]!;
      const groups = counts[owner]! / 4;
      for (let i = 0; i < groups; i++) {
        const d = md5Bytes(this.pointName(node, i));
        for (let a = 0; a < 4; a++) packed[k++] = digestWord(d, a) * 1048576 + owner;
      }
    }
    packed.sort();
    this.points = new Uint32Array(total);
    this.owners = new Uint32Array(total);
    for (let i = 0; i < total; i++) {
      const v = packed[i]!;
      const point = Math.floor(v / 1048576);
      this.points[i] = point;
      this.owners[i] = v - point * 1048576;
    }
  }
}

/**
 * libmemcached's per-server point count, in the C code's arithmetic:
 * `floor((float)(pct * 160 / 4 * (float)servers + 0.0000000001)) * 4` with `pct = (float)w / (float)W`.
 * Doing this in doubles (as the `hashring` package does) gives 156 instead of 160 points for 7 equal
 * servers, because 1/7 * 40 * 7 is 39.99999999999999 in double but 40 in float.
 */
export function pointCount(weight: number, totalWeight: number, servers: number, pointsPerServer: number): number {
  const f = Math.fround;
  const pct = f(f(weight) / f(totalWeight));
  const perServer = f(f(f(pct * pointsPerServer) / 4) * f(servers));
  return Math.floor(f(perServer + 0.0000000001)) * 4;
}
