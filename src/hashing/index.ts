/**
 * archlab/hashing: consistent hashing, pure. Ketama (libmemcached-compatible), jump, rendezvous,
 * Maglev, bounded loads, and modulo as the baseline. See docs/hashing.md.
 */
import { BoundedLoadHasher, type BoundedLoadOptions } from './bounded.js';
import { HashingError } from './errors.js';
import { JumpHasher } from './jump.js';
import { KetamaHasher, type KetamaOptions } from './ketama.js';
import { MaglevHasher, type MaglevOptions } from './maglev.js';
import { ModuloHasher } from './modulo.js';
import { RendezvousHasher } from './rendezvous.js';
import type { Algorithm, Hasher } from './types.js';

export type { Algorithm, Hasher, Key, NodeInfo } from './types.js';
export { HashingError, type HashingErrorCode } from './errors.js';
export { KetamaHasher, pointCount, type KetamaOptions } from './ketama.js';
export { JumpHasher, jumpHash } from './jump.js';
export { RendezvousHasher } from './rendezvous.js';
export { MaglevHasher, type MaglevOptions } from './maglev.js';
export { BoundedLoadHasher, type BoundedLoadOptions } from './bounded.js';
export { ModuloHasher } from './modulo.js';
export { hash32, ketamaHash, fmix32 } from './hash.js';

export const ALGORITHMS: readonly Algorithm[] = ['ketama', 'jump', 'rendezvous', 'maglev', 'bounded', 'modulo'];

export type HasherOptions = KetamaOptions & MaglevOptions & BoundedLoadOptions;

/** A hasher by name, for configs and the CLI. */
export function createHasher(algorithm: Algorithm, options: HasherOptions = {}): Hasher {
  switch (algorithm) {
    case 'ketama':
      return new KetamaHasher(options);
    case 'jump':
      return new JumpHasher();
    case 'rendezvous':
      return new RendezvousHasher();
    case 'maglev':
      return new MaglevHasher(options);
    case 'bounded':
      return new BoundedLoadHasher(options);
    case 'modulo':
      return new ModuloHasher();
    default:
      throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `unknown algorithm ${JSON.stringify(algorithm)}; choose one of ${ALGORITHMS.join(', ')}`);
  }
}
