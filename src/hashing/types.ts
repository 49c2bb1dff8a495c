/** A key to place: a string (hashed as its UTF-8 bytes) or raw bytes. `"é"` and `Buffer.from("é")` land on the same node. */
export type Key = string | Uint8Array;

export type Algorithm = 'ketama' | 'jump' | 'rendezvous' | 'maglev' | 'bounded' | 'modulo';

export interface NodeInfo {
  node: string;
  weight: number;
}

/**
 * What every consistent-hashing scheme here offers. Nodes are named by strings (`10.0.1.1:11211`,
 * `cache-a`); a node's weight scales its share of keys.
 */
export interface Hasher {
  readonly algorithm: Algorithm;
  /** Number of nodes. */
  readonly size: number;
  /** Adds `node` with `weight` (default 1). Throws on a duplicate node or a bad weight. */
  add(node: string, weight?: number): void;
  /** Removes `node`. Throws when the node is not there. */
  remove(node: string): void;
  /** True when `node` is a member. */
  has(node: string): boolean;
  /** The node that owns `key`. Throws ARCHLAB_HASH_EMPTY when there are no nodes. */
  get(key: Key): string;
  /**
   * Up to `n` distinct nodes for `key` in preference order, the first being `get(key)`: the replica
   * set of a Dynamo-style store. Returns fewer when there are fewer nodes.
   */
  getN(key: Key, n: number): string[];
  /** The members, in the order they were added, with their weights. */
  nodes(): NodeInfo[];
}
