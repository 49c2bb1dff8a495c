import type { Clock } from '../../core/clock.js';
import type { Random } from '../../core/random.js';
import { AvailableSet, checkAbove } from './shared.js';
import type { BackendView, Picker, PickContext, PickerOptions } from './types.js';

/** Finagle's and Linkerd's default decay time constant. */
export const DEFAULT_DECAY_MS = 10_000;
/** The least latency a failed request counts as. */
export const DEFAULT_FAILURE_PENALTY_MS = 1_000;
/** Latency estimates are floored here so that in-flight counts still separate backends whose estimates decayed to nothing. */
const MIN_COST_MS = 0.001;

export interface PeakEwmaOptions extends Pick<PickerOptions, 'random' | 'clock' | 'decayMs'> {
  /**
   * A failed request (`observe(..., ok = false)`) counts as a latency sample of at least this many
   * ms. Default 1000 (DEFAULT_FAILURE_PENALTY_MS).
   */
  failurePenaltyMs?: number;
}

interface Estimate {
  /** Latency estimate in ms as of `atMs`. */
  ewmaMs: number;
  /** Clock.monotonic() of the last sample. */
  atMs: number;
}

/**
 * Peak EWMA (Finagle's `PeakEwma`, Linkerd's and tower's balancer): P2C on cost = latency estimate x
 * (requests in flight + 1), so a backend that is slow, or busy, or both, loses its share at once.
 *
 * The estimate moves with time (Clock.monotonic) and samples (`observe`), with w = exp(-elapsedMs /
 * decayMs), elapsedMs the time since the backend's previous sample:
 * - with no samples it decays toward 0 (est x w, read at pick time, as Finagle reads its cost), so
 *   a backend that fell out of favour is tried again after a while and relearned;
 * - a sample above the (decayed) estimate replaces it: the "peak", so one slow response is felt at
 *   once;
 * - a sample below it is blended in, decayed estimate x w + sample x (1 - w): the estimate falls
 *   toward faster samples with time constant decayMs, and never rises on a sample below it.
 *
 * A backend never observed takes the mean estimate of the available backends that were (neutral:
 * tried at parity, neither flooded nor starved); when none was, cost is just in-flight + 1 (P2C
 * least-loaded). A failure counts as a sample of max(latencyMs, failurePenaltyMs): peak tracking
 * makes a failing backend unattractive at once, and it is retried once the penalty has decayed to
 * the others' latency, about decayMs x ln(penalty / their latency) later. Non-finite latencies of
 * successful requests are ignored; negative ones count as 0.
 *
 * Weights enter through the two draws (each weighted, as in P2cPicker), not the cost: a bigger
 * backend shows its capacity as lower latency under load, which the cost already follows, so
 * dividing by weight too would count it twice. Shares therefore follow weights only loosely (see
 * the conformance suite). A tie on cost goes to the first draw. Estimates are kept per backend id
 * and forgotten once their backend has left the pool.
 */
export class PeakEwmaPicker implements Picker {
  readonly algorithm = 'peak-ewma' as const;
  readonly decayMs: number;
  readonly failurePenaltyMs: number;
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly set = new AvailableSet();
  private readonly estimates = new Map<string, Estimate>();

  constructor(options: PeakEwmaOptions) {
    checkAbove('decayMs', options.decayMs, 0, 'the decay time constant in ms, default 10000');
    checkAbove('failurePenaltyMs', options.failurePenaltyMs, 0, 'the least latency in ms a failure counts as, default 1000');
    this.random = options.random;
    this.clock = options.clock;
    this.decayMs = options.decayMs ?? DEFAULT_DECAY_MS;
    this.failurePenaltyMs = options.failurePenaltyMs ?? DEFAULT_FAILURE_PENALTY_MS;
  }

  pick(backends: readonly BackendView[], _ctx: PickContext): number {
    const set = this.set;
    const count = set.load(backends);
    if (this.estimates.size > 2 * backends.length + 16) this.forgetAbsent(backends);
    if (count === 0) return -1;
    if (count === 1) return set.positionAt(0);
    const a = set.draw(this.random);
    const ia = set.positionAt(a);
    const ib = set.positionAt(set.drawOther(this.random, a));
    const now = this.clock.monotonic();
    let ea = this.estimateAt(backends[ia]!.id, now);
    let eb = this.estimateAt(backends[ib]!.id, now);
    if (ea === undefined || eb === undefined) {
      const neutral = this.neutral(backends, now);
      ea ??= neutral;
      eb ??= neutral;
    }
    const costA = Math.max(ea, MIN_COST_MS) * (backends[ia]!.active + 1);
    const costB = Math.max(eb, MIN_COST_MS) * (backends[ib]!.active + 1);
    return costB < costA ? ib : ia;
  }

  observe(backend: BackendView, latencyMs: number, ok: boolean): void {
    let sample: number;
    if (Number.isFinite(latencyMs)) sample = Math.max(0, latencyMs);
    else if (ok) return;
    else sample = 0;
    if (!ok) sample = Math.max(sample, this.failurePenaltyMs);
    const now = this.clock.monotonic();
    const e = this.estimates.get(backend.id);
    if (e === undefined) {
      this.estimates.set(backend.id, { ewmaMs: sample, atMs: now });
      return;
    }
    // Start from the estimate as a pick sees it now (decayed since the last sample), so a sample
    // below it can only lower it.
    const w = Math.exp(-Math.max(0, now - e.atMs) / this.decayMs);
    const current = e.ewmaMs * w;
    e.ewmaMs = sample > current ? sample : current * w + sample * (1 - w);
    e.atMs = Math.max(e.atMs, now);
  }

  /** The latency estimate of backend `id` now, in ms, or undefined before its first sample. */
  estimate(id: string): number | undefined {
    return this.estimateAt(id, this.clock.monotonic());
  }

  private estimateAt(id: string, now: number): number | undefined {
    const e = this.estimates.get(id);
    if (e === undefined) return undefined;
    return e.ewmaMs * Math.exp(-Math.max(0, now - e.atMs) / this.decayMs);
  }

  /** The mean estimate over the available backends that have one, or 1 when none has. */
  private neutral(backends: readonly BackendView[], now: number): number {
    let sum = 0;
    let n = 0;
    for (let k = 0; k < this.set.count; k++) {
      const v = this.estimateAt(backends[this.set.positionAt(k)]!.id, now);
      if (v === undefined) continue;
      sum += v;
      n++;
    }
    return n === 0 ? 1 : sum / n;
  }

  private forgetAbsent(backends: readonly BackendView[]): void {
    const present = new Set(backends.map((b) => b.id));
    for (const id of this.estimates.keys()) if (!present.has(id)) this.estimates.delete(id);
  }
}
