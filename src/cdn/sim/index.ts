/** Offline models of the CDN, pure: an LRU simulation and Zipf traces (used by bench/cdn). */
export { simulateLru, type LruCapacity, type LruSimOptions, type LruSimResult, type Trace } from './lru.js';
export { MAX_ZIPF_KEYS, MAX_ZIPF_REQUESTS, zipfCdf, zipfProbability, zipfTrace } from './zipf.js';
