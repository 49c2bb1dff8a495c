import { PerBackend } from './shared.js';
import type { BackendView, Picker, PickContext } from './types.js';

/**
 * Weighted least connections, as nginx's `least_conn`: the available backend with the fewest
 * requests in flight per unit of weight (least active / weight). Backends tied on that ratio take
 * turns by smooth weighted round robin among themselves (see WeightedRoundRobinPicker), so equally
 * loaded backends share (with equal weights, in strict rotation) and an idle pool, where every
 * backend is tied at 0, splits requests exactly by weight. Under load, in-flight counts settle in
 * proportion to the weights.
 *
 * The round-robin `current` is kept per backend id and moves only for backends in a tie.
 */
export class LeastConnectionsPicker implements Picker {
  readonly algorithm = 'least-connections' as const;
  private readonly current = new PerBackend(0);

  pick(backends: readonly BackendView[], _ctx: PickContext): number {
    let best = -1;
    let bestActive = 0;
    let bestWeight = 1;
    let tied = 0;
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (!b.available) continue;
      const a = b.active;
      const w = b.weight;
      // Compare a / w with bestActive / bestWeight without dividing (weights are > 0).
      const lhs = a * bestWeight;
      const rhs = bestActive * w;
      if (best < 0 || lhs < rhs) {
        best = i;
        bestActive = a;
        bestWeight = w;
        tied = 1;
      } else if (lhs === rhs) {
        tied++;
      }
    }
    if (tied <= 1) return best;
    const current = this.current.align(backends);
    let total = 0;
    let chosen = -1;
    let chosenCurrent = -Infinity;
    for (let i = best; i < backends.length; i++) {
      const b = backends[i]!;
      if (!b.available || b.active * bestWeight !== bestActive * b.weight) continue;
      const w = b.weight;
      total += w;
      const c = current[i]! + w;
      current[i] = c;
      if (c > chosenCurrent) {
        chosenCurrent = c;
        chosen = i;
      }
    }
    if (chosen < 0) return best; // a weight changed between the two reads (slow start on a real clock)
    current[chosen]! -= total;
    return chosen;
  }
}
