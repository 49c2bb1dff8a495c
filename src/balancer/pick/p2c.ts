import type { Random } from '../../core/random.js';
import { AvailableSet } from './shared.js';
import type { BackendView, Picker, PickContext, PickerOptions } from './types.js';

/**
 * Power of two choices (Mitzenmacher 2001; Envoy's and Linkerd's least-request): draw two distinct
 * available backends, each with probability proportional to its weight (the second among the rest),
 * and take the one with fewer requests in flight per unit of weight (active / weight). A tie goes to
 * the first draw, so an idle pool is a weighted random pick.
 *
 * Two samples avoid both the herd that pure least-connections sends to one backend when many
 * balancers share a stale view, and random's blindness to load: the most loaded backend is never
 * picked, and the maximum load is exponentially better than random's. One prefix-sum pass and two
 * draws per pick.
 */
export class P2cPicker implements Picker {
  readonly algorithm = 'p2c' as const;
  private readonly random: Random;
  private readonly set = new AvailableSet();

  constructor(options: Pick<PickerOptions, 'random'>) {
    this.random = options.random;
  }

  pick(backends: readonly BackendView[], _ctx: PickContext): number {
    const set = this.set;
    const count = set.load(backends);
    if (count === 0) return -1;
    if (count === 1) return set.positionAt(0);
    const a = set.draw(this.random);
    const b = set.drawOther(this.random, a);
    const ia = set.positionAt(a);
    const ib = set.positionAt(b);
    // active_b / w_b < active_a / w_a, without dividing.
    return backends[ib]!.active * set.weightAt(a) < backends[ia]!.active * set.weightAt(b) ? ib : ia;
  }
}
