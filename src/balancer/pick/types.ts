import type { Clock } from '../../core/clock.js';
import type { Random } from '../../core/random.js';

/** What a picker may read of a backend. The pool owns the state; pickers never change it. */
export interface BackendView {
  /** Unique within its pool (the configured `id`, else `host:port`). */
  readonly id: string;
  /** Effective weight now (configured weight, ramped during slow start). Always > 0. */
  readonly weight: number;
  /** Requests in flight to this backend (outstanding requests, for least-connections and P2C). */
  readonly active: number;
  /**
   * May take a new request now: healthy, not ejected, not draining, not disabled, under its
   * connection limit. A picker must never return a backend with `available === false`.
   */
  readonly available: boolean;
}

/** What the L7 layer knows of the request when picking. */
export interface PickContext {
  /** The client's address (after trusted-proxy resolution). */
  clientIp: string;
  /**
   * The consistent-hash key the pool is configured to hash on (client IP, a header, a cookie, the
   * path), already extracted; absent when the request lacks it, and the picker then hashes clientIp.
   */
  hashKey?: string;
}

export const ALGORITHM_NAMES = [
  'round-robin',
  'weighted-round-robin',
  'least-connections',
  'ip-hash',
  'consistent-hash',
  'random',
  'p2c',
  'peak-ewma',
] as const;
export type AlgorithmName = (typeof ALGORITHM_NAMES)[number];

export interface PickerOptions {
  random: Random;
  clock: Clock;
  /** consistent-hash only: bounded-load factor c = 1 + epsilon (HAProxy hash-balance-factor / 100); absent = unbounded. */
  boundedLoad?: number;
  /** peak-ewma only: decay time constant in ms (Finagle's default 10s). */
  decayMs?: number;
}

/**
 * A load-balancing algorithm: pure and synchronous. `backends` is the pool's full list in a stable
 * order (the same array order on every call while membership is unchanged); the picker returns the
 * index of the chosen backend, or -1 when none is available.
 */
export interface Picker {
  readonly algorithm: AlgorithmName;
  pick(backends: readonly BackendView[], ctx: PickContext): number;
  /**
   * The outcome of a request sent to `backend`: its latency (time to response headers) and
   * whether it succeeded. Latency-aware pickers (peak-ewma) learn from it; others ignore it.
   */
  observe?(backend: BackendView, latencyMs: number, ok: boolean): void;
}
