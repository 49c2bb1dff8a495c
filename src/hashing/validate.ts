import { HashingError } from './errors.js';
import type { Key } from './types.js';

export function checkNode(node: unknown): asserts node is string {
  if (typeof node !== 'string' || node.length === 0) {
    throw new HashingError('ARCHLAB_HASH_BAD_NODE', `a node is named by a non-empty string, got ${describe(node)}`);
  }
}

/** Validates a weight; `integer` where the algorithm places whole points or buckets per unit of weight. */
export function checkWeight(node: string, weight: unknown, integer: boolean): number {
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new HashingError(
      'ARCHLAB_HASH_BAD_WEIGHT',
      `weight of node ${JSON.stringify(node)} must be a finite number > 0, got ${describe(weight)}`,
      { node, weight },
    );
  }
  if (integer && !Number.isSafeInteger(weight)) {
    throw new HashingError(
      'ARCHLAB_HASH_BAD_WEIGHT',
      `weight of node ${JSON.stringify(node)} must be a whole number for this algorithm, got ${weight}`,
      { node, weight },
    );
  }
  return weight;
}

export function checkCount(n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `getN(key, n) needs a whole number n >= 0, got ${describe(n)}`);
  }
  return n;
}

export function checkKey(key: unknown): asserts key is Key {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) {
    throw new HashingError('ARCHLAB_HASH_BAD_KEY', `a key is a string or a Uint8Array/Buffer, got ${describe(key)}`);
  }
}

export function duplicate(node: string): HashingError {
  return new HashingError('ARCHLAB_HASH_DUPLICATE_NODE', `node ${JSON.stringify(node)} is already a member; remove it first to change its weight`, { node });
}

export function tooHeavy(node: string, weight: number, max: number): HashingError {
  return new HashingError('ARCHLAB_HASH_BAD_WEIGHT', `adding ${JSON.stringify(node)} with weight ${weight} would pass the limit of ${max} total weight units for this algorithm`, { node, weight, max });
}

export function unknown(node: string): HashingError {
  return new HashingError('ARCHLAB_HASH_UNKNOWN_NODE', `node ${JSON.stringify(node)} is not a member`, { node });
}

export function empty(): HashingError {
  return new HashingError('ARCHLAB_HASH_EMPTY', 'no nodes to place the key on: add a node first');
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return String(v);
  if (v === null) return 'null';
  return typeof v;
}
