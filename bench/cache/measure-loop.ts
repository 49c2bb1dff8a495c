/**
 * Synchronous lookup loops compiled afresh per subject (see compileLookupLoop in bench/harness.ts:
 * one shared loop would go megamorphic after the second subject). `method` names the call, so the raw
 * lru-cache `get` and archlab's `peek` are each called directly, with no wrapper function between.
 */
export type CallLoop = (target: object, keys: ArrayLike<string>, count: number, offset: number) => number;

export function compileCallLoop(method: 'get' | 'peek'): CallLoop {
  // Counts hits, so the caller can check every lookup found its key (a wrong answer voids the row).
  return new Function(
    'target',
    'keys',
    'count',
    'offset',
    `let hits = 0;
     const n = keys.length;
     for (let i = 0; i < count; i++) {
       const r = target.${method}(keys[(offset + i) % n]);
       if (r !== undefined) hits++;
     }
     return hits;`,
  ) as CallLoop;
}
