import { RendezvousHasher } from '../../hashing/index.js';
import { MemberSignature } from './shared.js';
import type { BackendView, Picker, PickContext } from './types.js';

/**
 * Client-IP affinity: rendezvous (highest random weight) hashing of `ctx.clientIp` over the available
 * backends, with weights (RendezvousHasher, logarithmic method). `ctx.hashKey` is ignored; use
 * consistent-hash to hash something else.
 *
 * Why rendezvous rather than nginx's `ip_hash` (a hash of the first three octets, mod the weights) or
 * Maglev: with rendezvous a backend that goes down or is removed moves only its own clients, each to
 * its next-highest score, and the others keep their backend exactly (zero stray moves; Maglev moves
 * about 1% of others); when it comes back its clients return to it and only they move. Each backend's
 * share of clients is its weight's share. The placement is rebuilt only when the set of available ids
 * or their weights (rounded, see weightKey) changed, and a rebuild is cheap (two hashes per backend,
 * no table), which matters here because availability flaps with connection limits. A pick costs one
 * hash per available backend: right for the tens to hundreds of backends of a pool; consistent-hash
 * (Maglev, O(1) per pick) is the choice for bigger pools.
 *
 * Backend ids must be unique (BackendView contract); a duplicate id makes the rebuild throw
 * ARCHLAB_HASH_DUPLICATE_NODE.
 */
export class IpHashPicker implements Picker {
  readonly algorithm = 'ip-hash' as const;
  private hasher = new RendezvousHasher();
  private readonly members = new MemberSignature(true);
  private rebuildCount = 0;

  /** How many times the placement was rebuilt (for tests and the admin API). */
  get rebuilds(): number {
    return this.rebuildCount;
  }

  pick(backends: readonly BackendView[], ctx: PickContext): number {
    const change = this.members.compare(backends);
    if (change !== 'same') {
      this.members.record(backends);
      if (change === 'changed') this.rebuild();
    }
    if (this.hasher.size === 0) return -1;
    return this.members.positionOf.get(this.hasher.get(ctx.clientIp)) ?? -1;
  }

  private rebuild(): void {
    const { ids, weights } = this.members;
    const hasher = new RendezvousHasher();
    try {
      for (let k = 0; k < ids.length; k++) hasher.add(ids[k]!, weights[k]);
    } catch (err) {
      this.members.invalidate();
      throw err;
    }
    this.hasher = hasher;
    this.rebuildCount++;
  }
}
