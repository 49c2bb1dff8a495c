/**
 * Load-balancing pickers: pure and synchronous, one file per algorithm, all behind the Picker
 * interface of types.ts. Randomness and time come from the injected Random and Clock.
 *
 * | algorithm            | weights                                  | state kept (by backend id)     | cost of a pick             |
 * | -------------------- | ---------------------------------------- | ------------------------------ | -------------------------- |
 * | round-robin          | ignored                                  | last id picked                 | O(1) when all available    |
 * | weighted-round-robin | exact shares, interleaved (nginx smooth) | `current` per id               | O(n)                       |
 * | least-connections    | least active / weight, ties by smooth WRR| `current` per id (ties)        | O(n)                       |
 * | ip-hash              | share of client IPs (rendezvous)         | hasher over available backends | O(n) hashes                |
 * | consistent-hash      | share of keys (Maglev), bounded load     | Maglev table over the pool     | O(1) read + O(n) scan      |
 * | random               | probability                              | none                           | O(n) prefix sums + 1 draw  |
 * | p2c                  | weighted draws, compares active / weight | none                           | O(n) prefix sums + 2 draws |
 * | peak-ewma            | weighted draws, cost = latency x load    | latency estimate per id        | O(n) prefix sums + 2 draws |
 *
 * Every picker reads the whole array once per pick (availability can change between any two
 * picks), keys its state by backend id, and returns an index into the array it was given.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { ConsistentHashPicker } from './consistent-hash.js';
import { IpHashPicker } from './ip-hash.js';
import { LeastConnectionsPicker } from './least-connections.js';
import { P2cPicker } from './p2c.js';
import { PeakEwmaPicker } from './peak-ewma.js';
import { RandomPicker } from './random.js';
import { RoundRobinPicker } from './round-robin.js';
import { ALGORITHM_NAMES, type AlgorithmName, type Picker, type PickerOptions } from './types.js';
import { WeightedRoundRobinPicker } from './weighted-round-robin.js';

export { ALGORITHM_NAMES, type AlgorithmName, type BackendView, type PickContext, type Picker, type PickerOptions } from './types.js';
export { RoundRobinPicker } from './round-robin.js';
export { WeightedRoundRobinPicker } from './weighted-round-robin.js';
export { LeastConnectionsPicker } from './least-connections.js';
export { IpHashPicker } from './ip-hash.js';
export { ConsistentHashPicker, DEFAULT_MAGLEV_TABLE_SIZE, type ConsistentHashOptions } from './consistent-hash.js';
export { RandomPicker } from './random.js';
export { P2cPicker } from './p2c.js';
export { PeakEwmaPicker, DEFAULT_DECAY_MS, DEFAULT_FAILURE_PENALTY_MS, type PeakEwmaOptions } from './peak-ewma.js';
export { simulateLoad, type SimBackend, type SimulateLoadOptions, type SimulateLoadResult } from './sim.js';

/**
 * A picker for `name`. Options an algorithm does not use are ignored (boundedLoad is
 * consistent-hash's, decayMs peak-ewma's); a bad value of one it uses throws ARCHLAB_INVALID_ARGUMENT.
 */
export function createPicker(name: AlgorithmName, options: PickerOptions): Picker {
  switch (name) {
    case 'round-robin':
      return new RoundRobinPicker();
    case 'weighted-round-robin':
      return new WeightedRoundRobinPicker();
    case 'least-connections':
      return new LeastConnectionsPicker();
    case 'ip-hash':
      return new IpHashPicker();
    case 'consistent-hash':
      return new ConsistentHashPicker({ boundedLoad: options.boundedLoad });
    case 'random':
      return new RandomPicker(options);
    case 'p2c':
      return new P2cPicker(options);
    case 'peak-ewma':
      return new PeakEwmaPicker(options);
    default:
      throw new InvalidArgumentError(`unknown load-balancing algorithm ${JSON.stringify(name)}; expected one of ${ALGORITHM_NAMES.join(', ')}`, {
        algorithm: name,
      });
  }
}
