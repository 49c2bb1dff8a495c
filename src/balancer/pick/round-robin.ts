import type { BackendView, Picker, PickContext } from './types.js';

/**
 * Round robin: each pick takes the next available backend after the last one picked, ignoring
 * weights (nginx's and HAProxy's `roundrobin` with all weights equal; use weighted-round-robin for
 * weights).
 *
 * The position is remembered by backend id: after a reload adds or removes backends, the rotation
 * continues after the backend picked last wherever it now sits, and if that backend left the pool,
 * with the one that slid into its place.
 */
export class RoundRobinPicker implements Picker {
  readonly algorithm = 'round-robin' as const;
  private lastId: string | undefined;
  private lastIndex = 0;

  pick(backends: readonly BackendView[], _ctx: PickContext): number {
    const n = backends.length;
    if (n === 0) return -1;
    const start = this.startIndex(backends);
    for (let step = 0; step < n; step++) {
      const i = (start + step) % n;
      const b = backends[i]!;
      if (b.available) {
        this.lastId = b.id;
        this.lastIndex = i;
        return i;
      }
    }
    return -1;
  }

  private startIndex(backends: readonly BackendView[]): number {
    const n = backends.length;
    if (this.lastId === undefined) return 0;
    if (backends[this.lastIndex]?.id === this.lastId) return (this.lastIndex + 1) % n;
    for (let i = 0; i < n; i++) if (backends[i]!.id === this.lastId) return (i + 1) % n;
    return this.lastIndex % n;
  }
}
