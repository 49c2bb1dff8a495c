import { HashingError } from './errors.js';
import { createHasher, type HasherOptions } from './registry.js';
import { BoundedLoadHasher } from './bounded.js';
import type { Algorithm, Hasher } from './types.js';

export interface SimulateOptions {
  algorithm: Algorithm;
  /** Nodes before the change. */
  nodes: number;
  /** Keys placed (`key-0` .. `key-{keys-1}`). */
  keys: number;
  /** Nodes added after the first placement. Default 0. */
  add?: number;
  /** Nodes removed after the first placement (the last ones added). Default 0. */
  remove?: number;
  /** Weights, cycled over the nodes (node i gets weights[i % length]). Default all 1. */
  weights?: number[];
  hasherOptions?: HasherOptions;
  /** Called every `progressEvery` keys of each of the two passes with (done, total) over both. */
  onProgress?: (done: number, total: number) => void;
  progressEvery?: number;
  /** Monotonic milliseconds, for the lookup rate. */
  now: () => number;
}

export interface LoadStats {
  /** Highest load over its due share (keys * weight / total weight); 1 is perfect. */
  maxOverMean: number;
  /** Lowest load over its due share. */
  minOverMean: number;
  /** Standard deviation of load / due share. */
  stddev: number;
}

export interface SimulateResult {
  algorithm: Algorithm;
  keys: number;
  nodesBefore: number;
  nodesAfter: number;
  added: string[];
  removed: string[];
  moved: number;
  movedFraction: number;
  /** The least any scheme must move: 1 - sum over surviving nodes of min(share before, share after). */
  idealFraction: number;
  before: LoadStats;
  after: LoadStats;
  /** Lookups per second over the second pass (includes hashing the key string). */
  lookupsPerSecond: number;
}

/** Keys and nodes beyond these are refused: they would take minutes and gigabytes. */
export const SIMULATE_LIMITS = { maxKeys: 50_000_000, maxNodes: 100_000 } as const;

export function nodeName(i: number): string {
  return `node-${String(i).padStart(3, '0')}`;
}

/**
 * Places `keys` keys on `nodes` nodes, changes membership, places them again and measures what the
 * textbooks claim: how many keys moved against the least possible, and how even the load is.
 */
export function simulate(opts: SimulateOptions): SimulateResult {
  const add = opts.add ?? 0;
  const remove = opts.remove ?? 0;
  const weights = opts.weights && opts.weights.length > 0 ? opts.weights : [1];
  if (!Number.isSafeInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > SIMULATE_LIMITS.maxNodes) {
    throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `nodes must be a whole number from 1 to ${SIMULATE_LIMITS.maxNodes}, got ${opts.nodes}`);
  }
  if (!Number.isSafeInteger(opts.keys) || opts.keys < 1 || opts.keys > SIMULATE_LIMITS.maxKeys) {
    throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `keys must be a whole number from 1 to ${SIMULATE_LIMITS.maxKeys}, got ${opts.keys}`);
  }
  if (!Number.isSafeInteger(add) || add < 0 || !Number.isSafeInteger(remove) || remove < 0 || remove >= opts.nodes) {
    throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `add must be >= 0 and remove between 0 and nodes - 1, got add ${add}, remove ${remove}`);
  }
  if (opts.nodes + add > SIMULATE_LIMITS.maxNodes) {
    throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `nodes + add must be at most ${SIMULATE_LIMITS.maxNodes}`);
  }

  const hasher = createHasher(opts.algorithm, opts.hasherOptions);
  const weightOf = (i: number): number => weights[i % weights.length]!;
  for (let i = 0; i < opts.nodes; i++) hasher.add(nodeName(i), weightOf(i));
  const sharesBefore = shares(hasher);

  const total = opts.keys * 2;
  const every = opts.progressEvery ?? 65_536;
  const before = place(hasher, opts.keys, 0, total, every, opts.onProgress);
  const loadBefore = loadStats(hasher, before.owners, before.names);

  const removed: string[] = [];
  for (let i = opts.nodes - 1; removed.length < remove; i--) {
    hasher.remove(nodeName(i));
    removed.push(nodeName(i));
  }
  const added: string[] = [];
  for (let i = opts.nodes; added.length < add; i++) {
    hasher.add(nodeName(i), weightOf(i));
    added.push(nodeName(i));
  }
  const sharesAfter = shares(hasher);
  if (hasher instanceof BoundedLoadHasher) hasher.resetLoads();

  const t0 = opts.now();
  const after = place(hasher, opts.keys, opts.keys, total, every, opts.onProgress);
  const elapsedMs = opts.now() - t0;

  let moved = 0;
  for (let i = 0; i < opts.keys; i++) if (before.names[before.owners[i]!] !== after.names[after.owners[i]!]) moved++;
  let kept = 0;
  for (const [node, s] of sharesBefore) kept += Math.min(s, sharesAfter.get(node) ?? 0);

  return {
    algorithm: opts.algorithm,
    keys: opts.keys,
    nodesBefore: opts.nodes,
    nodesAfter: hasher.size,
    added,
    removed,
    moved,
    movedFraction: moved / opts.keys,
    idealFraction: Math.max(0, 1 - kept),
    before: loadBefore,
    after: loadStats(hasher, after.owners, after.names),
    lookupsPerSecond: elapsedMs > 0 ? (opts.keys / elapsedMs) * 1000 : Number.POSITIVE_INFINITY,
  };
}

function shares(h: Hasher): Map<string, number> {
  const nodes = h.nodes();
  const total = nodes.reduce((a, n) => a + n.weight, 0);
  return new Map(nodes.map((n) => [n.node, n.weight / total]));
}

/** One pass: owners[i] is an index into names (the members at that time). */
function place(
  h: Hasher,
  keys: number,
  doneBefore: number,
  total: number,
  every: number,
  onProgress: ((done: number, total: number) => void) | undefined,
): { owners: Int32Array; names: string[] } {
  const names = h.nodes().map((n) => n.node);
  const index = new Map(names.map((n, i) => [n, i]));
  const owners = new Int32Array(keys);
  const bounded = h instanceof BoundedLoadHasher ? h : undefined;
  for (let i = 0; i < keys; i++) {
    const key = `key-${i}`;
    owners[i] = index.get(bounded ? bounded.acquire(key) : h.get(key))!;
    if (onProgress && (i + 1) % every === 0) onProgress(doneBefore + i + 1, total);
  }
  onProgress?.(doneBefore + keys, total);
  return { owners, names };
}

function loadStats(h: Hasher, owners: Int32Array, names: string[]): LoadStats {
  const counts = new Float64Array(names.length);
  for (const o of owners) counts[o]!++;
  const nodes = h.nodes();
  const totalWeight = nodes.reduce((a, n) => a + n.weight, 0);
  const weightOf = new Map(nodes.map((n) => [n.node, n.weight]));
  let max = 0;
  let min = Number.POSITIVE_INFINITY;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < names.length; i++) {
    const due = (owners.length * weightOf.get(names[i]!)!) / totalWeight;
    const r = counts[i]! / due;
    max = Math.max(max, r);
    min = Math.min(min, r);
    sum += r;
    sumSq += r * r;
  }
  const mean = sum / names.length;
  return { maxOverMean: max, minOverMean: min, stddev: Math.sqrt(Math.max(0, sumSq / names.length - mean * mean)) };
}
