/** Hashers by name, for configs and the CLI. */
import { BoundedLoadHasher, type BoundedLoadOptions } from './bounded.js';
import { HashingError } from './errors.js';
import { JumpHasher } from './jump.js';
import { KetamaHasher, type KetamaOptions } from './ketama.js';
import { MaglevHasher, type MaglevOptions } from './maglev.js';
import { ModuloHasher } from './modulo.js';
import { RendezvousHasher } from './rendezvous.js';
import type { Algorithm, Hasher } from './types.js';


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
