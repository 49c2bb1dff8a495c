// The consistent-hash package ships no types; only what bench/hashing.ts uses.
declare module 'consistent-hash' {
  export default class ConsistentHash {
    constructor(options?: { range?: number; weight?: number; distribution?: 'random' | 'uniform' });
    add(node: string, weight?: number): this;
    remove(node: string): this;
    get(key: string): string | null;
  }
}
