import { PerBackend } from './shared.js';
import type { BackendView, Picker, PickContext } from './types.js';

/**
 * nginx's smooth weighted round robin (ngx_http_upstream_get_peer): on each pick every available
 * backend's `current` grows by its weight, the backend with the highest `current` is picked (the
 * first in array order on a tie), and the sum of the weights is taken from its `current`. Over any
 * run of picks each backend's count stays within one of its due share, and picks interleave: weights
 * 5, 1, 1 give a a b a c a a, not a a a a a b c.
 *
 * Weights may be fractional and may change between picks (slow start); an unavailable backend's
 * `current` stands still until it returns. `current` is kept per backend id, so a reload that adds
 * or removes backends leaves the others' positions in the cycle alone; a new backend starts at 0.
 */
export class WeightedRoundRobinPicker implements Picker {
  readonly algorithm = 'weighted-round-robin' as const;
  private readonly current = new PerBackend(0);

  pick(backends: readonly BackendView[], _ctx: PickContext): number {
    const current = this.current.align(backends);
    let best = -1;
    let bestCurrent = -Infinity;
    let total = 0;
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (!b.available) continue;
      const w = b.weight;
      total += w;
      const c = current[i]! + w;
      current[i] = c;
      if (c > bestCurrent) {
        bestCurrent = c;
        best = i;
      }
    }
    if (best >= 0) current[best]! -= total;
    return best;
  }
}
