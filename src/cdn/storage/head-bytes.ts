import type { StoredObjectMeta } from '../types.js';

/**
 * Bookkeeping bytes counted per object on top of its key, headers, tags and policy: the LRU slot, the
 * meta and StoredObject objects, the Buffer wrapper, the index entries. An estimate, as every
 * JavaScript heap size is; it keeps a cache of tiny objects from holding far more than memoryBytes.
 */
export const HEAD_OVERHEAD_BYTES = 256;

/**
 * Estimated bytes of an object's head held in memory: keys, header names and values, tags, the policy
 * state's JSON, plus HEAD_OVERHEAD_BYTES. Strings count one byte per UTF-16 unit. Computed once per
 * commit or meta update, never on a hit.
 */
export function estimateHeadBytes(meta: Omit<StoredObjectMeta, 'bodyBytes'>): number {
  let n = HEAD_OVERHEAD_BYTES + meta.key.length + meta.primaryKey.length;
  for (const name in meta.headers) {
    const value = meta.headers[name]!;
    n += name.length + 8;
    if (typeof value === 'string') n += value.length;
    else for (const v of value) n += v.length + 8;
  }
  for (const tag of meta.tags) n += tag.length + 16;
  try {
    n += JSON.stringify(meta.policy)?.length ?? 0;
  } catch {
    // The policy state is plain JSON by contract; a value that is not (a cycle, a BigInt) is counted
    // as its top-level field count instead of failing the store.
    n += Object.keys(meta.policy).length * 32;
  }
  return n;
}
