/**
 * archlab/hashing: consistent hashing, pure. Ketama (libmemcached-compatible), jump, rendezvous,
 * Maglev, bounded loads, and modulo as the baseline. See docs/hashing.md.
 */
export type { Algorithm, Hasher, Key, NodeInfo } from './types.js';
export { HashingError, type HashingErrorCode } from './errors.js';
export { KetamaHasher, pointCount, type KetamaOptions } from './ketama.js';
export { JumpHasher, jumpHash } from './jump.js';
export { RendezvousHasher } from './rendezvous.js';
export { MaglevHasher, type MaglevOptions } from './maglev.js';
export { BoundedLoadHasher, type BoundedLoadOptions } from './bounded.js';
export { ModuloHasher } from './modulo.js';
export { hash32, ketamaHash, fmix32 } from './hash.js';
export { ALGORITHMS, createHasher, type HasherOptions } from './registry.js';
export { simulate, nodeName, SIMULATE_LIMITS, type SimulateOptions, type SimulateResult, type LoadStats } from './simulate.js';
