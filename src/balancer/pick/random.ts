import type { Random } from '../../core/random.js';
import { AvailableSet } from './shared.js';
import type { BackendView, Picker, PickContext, PickerOptions } from './types.js';

/**
 * Random: an available backend drawn with probability weight / (sum of available weights). No state
 * beyond the injected Random, so a seeded picker replays exactly. Costs one draw and a binary search
 * over prefix sums per pick.
 */
export class RandomPicker implements Picker {
  readonly algorithm = 'random' as const;
  private readonly random: Random;
  private readonly set = new AvailableSet();

  constructor(options: Pick<PickerOptions, 'random'>) {
    this.random = options.random;
  }

  pick(backends: readonly BackendView[], _ctx: PickContext): number {
    const count = this.set.load(backends);
    if (count === 0) return -1;
    if (count === 1) return this.set.positionAt(0);
    return this.set.positionAt(this.set.draw(this.random));
  }
}
