/**
 * A circuit breaker around the cache store, pure: it decides, the caller calls. A dead Redis then
 * costs no latency: after `failureThreshold` consecutive failures the store is skipped outright
 * (open) for `openMs`; then exactly one trial call goes through (half-open); its success closes the
 * breaker, its failure opens it again for another `openMs`.
 *
 *   closed --(failureThreshold consecutive failures)--> open --(openMs)--> half-open
 *   half-open --(trial succeeds)--> closed          half-open --(trial fails)--> open
 */
import type { Clock } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { BreakerOptions } from './strategies/types.js';

export const DEFAULT_BREAKER: BreakerOptions = { failureThreshold: 5, openMs: 1000 };

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerSnapshot {
  state: BreakerState;
  /** Consecutive failures counted while closed. */
  consecutiveFailures: number;
  /** Times the breaker went from closed or half-open to open, since construction. */
  opened: number;
}

export function breakerOptions(opts: Partial<BreakerOptions> = {}): BreakerOptions {
  const o = { ...DEFAULT_BREAKER, ...opts };
  if (!Number.isSafeInteger(o.failureThreshold) || o.failureThreshold < 1) {
    throw new InvalidArgumentError(`breaker failureThreshold must be a positive integer, got ${o.failureThreshold}`);
  }
  if (!Number.isFinite(o.openMs) || o.openMs <= 0) {
    throw new InvalidArgumentError(`breaker openMs must be a positive number of ms, got ${o.openMs}`);
  }
  return o;
}

export class CircuitBreaker {
  private readonly opts: BreakerOptions;
  private readonly clock: Clock;
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAtMs = 0;
  /** Monotonic ms when the half-open trial was let through; a trial that never reports expires after openMs. */
  private trialAtMs = 0;
  private trialOut = false;
  private openedCount = 0;

  constructor(opts: Partial<BreakerOptions> = {}, clock: Clock) {
    this.opts = breakerOptions(opts);
    this.clock = clock;
  }

  /**
   * Whether a call may go to the store now. Closed: always. Open: never, until openMs has passed,
   * then the breaker turns half-open and this returns true exactly once (the trial) until the
   * trial's outcome is recorded with success() or failure(). A trial that reports nothing within
   * openMs (its caller lost it) counts as failed, so the breaker cannot stay half-open forever.
   */
  allow(): boolean {
    if (this.current === 'closed') return true;
    const now = this.clock.monotonic();
    if (this.current === 'open') {
      if (now - this.openedAtMs < this.opts.openMs) return false;
      this.current = 'half-open';
      this.trialOut = false;
    }
    // half-open
    if (this.trialOut) {
      if (now - this.trialAtMs < this.opts.openMs) return false;
      this.open(now);
      return false;
    }
    this.trialOut = true;
    this.trialAtMs = now;
    return true;
  }

  /** The call reached the store and it answered in time. */
  success(): void {
    this.failures = 0;
    if (this.current !== 'closed') {
      this.current = 'closed';
      this.trialOut = false;
    }
  }

  /** The call failed because of the store (unreachable, timed out, too slow). */
  failure(): void {
    if (this.current === 'half-open') {
      this.open(this.clock.monotonic());
      return;
    }
    if (this.current === 'open') return;
    this.failures++;
    if (this.failures >= this.opts.failureThreshold) this.open(this.clock.monotonic());
  }

  get state(): BreakerState {
    // An open breaker whose openMs has passed is ready for its trial; say so without consuming it.
    if (this.current === 'open' && this.clock.monotonic() - this.openedAtMs >= this.opts.openMs) return 'half-open';
    return this.current;
  }

  snapshot(): BreakerSnapshot {
    return { state: this.state, consecutiveFailures: this.failures, opened: this.openedCount };
  }

  private open(nowMs: number): void {
    this.current = 'open';
    this.openedAtMs = nowMs;
    this.failures = 0;
    this.trialOut = false;
    this.openedCount++;
  }
}
