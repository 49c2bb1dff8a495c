/**
 * Passive health (outlier detection): the proxy reports how each request to a backend went, and a
 * backend that fails `consecutiveFailures` times in a row is ejected for a while, like Envoy's
 * consecutive_5xx / consecutive_gateway_failure detectors and NGINX's max_fails/fail_timeout.
 *
 * Pure: no timers. Time comes from the Clock, and everything is decided when a result is recorded:
 *
 * - **Ejection.** The Nth consecutive failure sets `b.ejectedUntilMs = now + min(ejectionMs *
 *   2^b.ejections, maxEjectionMs)` and increments `b.ejections`, so a repeat offender stays out
 *   10 s, 20 s, 40 s ... up to the cap. Pickers skip it because `b.usable` reads `ejectedUntilMs`.
 * - **Guard.** An ejection is refused when afterwards more than `maxEjectedShare` of the pool's
 *   in-service backends (not disabled, not draining) would be ejected, or when no other backend of
 *   the pool would be usable: at least one backend always stays. The failure count is kept, so the
 *   next failure tries again once the guard allows it.
 * - **Return (lazy).** Nothing happens when the ejection time runs out: `b.usable` turns true by
 *   itself and the pickers start sending traffic again. The first success recorded after that is
 *   the return: the `returned` event is emitted once and `b.startSlowStart()` ramps the weight.
 *   No `noteReturned` helper is needed, nor a timer.
 * - **Decay.** `b.ejections` goes back to 0 once `maxEjectionMs` has passed since the end of the
 *   backend's last ejection without another ejection (checked when a result is recorded), so a
 *   backend that has behaved for that long starts again from `ejectionMs`. Failures that do not
 *   lead to an ejection do not restart that period.
 * - Results recorded while the backend is still ejected (late answers to requests sent before the
 *   ejection) are ignored: they neither extend the ejection nor count as a return.
 *
 * The detector never touches `b.requests` / `b.failures` (the proxy's totals) nor `b.healthy`
 * (active health checks own it). Its per-backend state (failure count, awaiting return) sits in a
 * module-level WeakMap keyed by the Backend object: backends dropped from the pool are forgotten,
 * and when a config reload builds a new detector around the same Backend objects, it carries on
 * where the old one left off (counts, and the return of a backend ejected before the reload).
 */
import type { Clock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Backend } from '../backend.js';
import type { PassiveHealthConfig } from '../config.js';

export type OutlierFailureReason = 'connect' | 'status-5xx' | 'timeout' | 'reset';

export interface OutlierEvent {
  backend: Backend;
  type: 'ejected' | 'returned';
  /** `ejected` only: the clock time (ms) the ejection ends. */
  untilMs?: number;
  /** Human-readable cause, for logs. */
  reason: string;
}

interface OutlierState {
  /** Failures since the last success (or ejection). */
  consecutive: number;
  lastReason: OutlierFailureReason | undefined;
  /** Ejected by this detector and not yet returned by a success. */
  awaitingReturn: boolean;
}

const states = new WeakMap<Backend, OutlierState>();

/** Exponents above this already exceed any sane maxEjectionMs; keeps 2^n finite. */
const MAX_EXPONENT = 40;
/** Tolerance for share * count products such as 0.3 * 10 = 3.0000000000000004. */
const EPSILON = 1e-9;

export class OutlierDetector {
  /**
   * @param config    consecutiveFailures, ejectionMs, maxEjectionMs, maxEjectedShare (zPassiveHealth's output).
   * @param clock     source of `now()`; the same clock the backends read `ejectedUntilMs` against.
   * @param backends  the pool's current backends (read on every ejection, so membership may change).
   * @param onEvent   called synchronously on every ejection and return; must not throw.
   */
  constructor(
    private readonly config: PassiveHealthConfig,
    private readonly clock: Clock,
    private readonly backends: () => readonly Backend[],
    private readonly onEvent?: (e: OutlierEvent) => void,
  ) {
    const { consecutiveFailures, ejectionMs, maxEjectionMs, maxEjectedShare } = config;
    if (!Number.isInteger(consecutiveFailures) || consecutiveFailures < 1) {
      throw new InvalidArgumentError(`passive health: consecutiveFailures must be an integer >= 1, got ${consecutiveFailures}`);
    }
    if (!Number.isFinite(ejectionMs) || ejectionMs <= 0) {
      throw new InvalidArgumentError(`passive health: ejectionMs must be a positive number of milliseconds, got ${ejectionMs}`);
    }
    if (!Number.isFinite(maxEjectionMs) || maxEjectionMs <= 0) {
      throw new InvalidArgumentError(`passive health: maxEjectionMs must be a positive number of milliseconds, got ${maxEjectionMs}`);
    }
    if (!(maxEjectedShare >= 0 && maxEjectedShare <= 1)) {
      throw new InvalidArgumentError(`passive health: maxEjectedShare must be between 0 and 1, got ${maxEjectedShare}`);
    }
  }

  /** A request to `b` succeeded (a response that is not a 5xx). */
  recordSuccess(b: Backend): void {
    if (b.ejected) return;
    this.decay(b);
    const st = states.get(b);
    if (st === undefined) return; // never failed: nothing to reset
    st.consecutive = 0;
    st.lastReason = undefined;
    if (st.awaitingReturn) {
      st.awaitingReturn = false;
      b.startSlowStart();
      this.onEvent?.({ backend: b, type: 'returned', reason: 'served a request after its ejection ended' });
    }
  }

  /** A request to `b` failed: connection refused or failed, a 5xx, a timeout, or a reset. */
  recordFailure(b: Backend, reason: OutlierFailureReason): void {
    if (b.ejected) return;
    this.decay(b);
    const st = this.state(b);
    st.consecutive++;
    st.lastReason = reason;
    if (st.consecutive >= this.config.consecutiveFailures && this.mayEject(b)) this.eject(b, st);
  }

  /** Consecutive failures currently counted against `b` (for the admin API and tests). */
  consecutiveFailures(b: Backend): number {
    return states.get(b)?.consecutive ?? 0;
  }

  private state(b: Backend): OutlierState {
    let st = states.get(b);
    if (st === undefined) {
      st = { consecutive: 0, lastReason: undefined, awaitingReturn: false };
      states.set(b, st);
    }
    return st;
  }

  private decay(b: Backend): void {
    if (b.ejections > 0 && this.clock.now() - b.ejectedUntilMs >= this.config.maxEjectionMs) b.ejections = 0;
  }

  private mayEject(b: Backend): boolean {
    let inService = 0;
    let ejected = 0;
    let othersUsable = 0;
    for (const x of this.backends()) {
      if (x === b) continue;
      if (x.usable) othersUsable++;
      if (x.disabled || x.draining) continue;
      inService++;
      if (x.ejected) ejected++;
    }
    if (!b.disabled && !b.draining) inService++;
    if (othersUsable === 0) return false;
    return ejected + 1 <= this.config.maxEjectedShare * inService + EPSILON;
  }

  private eject(b: Backend, st: OutlierState): void {
    const now = this.clock.now();
    const durationMs = Math.min(this.config.ejectionMs * 2 ** Math.min(b.ejections, MAX_EXPONENT), this.config.maxEjectionMs);
    const failures = st.consecutive;
    const last = st.lastReason ?? 'unknown';
    b.ejectedUntilMs = now + durationMs;
    b.ejections++;
    st.consecutive = 0;
    st.lastReason = undefined;
    st.awaitingReturn = true;
    this.onEvent?.({
      backend: b,
      type: 'ejected',
      untilMs: b.ejectedUntilMs,
      reason: `${failures} consecutive failures (last: ${last}); ejected for ${durationMs} ms (ejection ${b.ejections})`,
    });
  }
}
