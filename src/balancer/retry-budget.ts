/**
 * A retry budget, like Finagle's RetryBudget and Envoy's retry_budget: retries may add at most
 * `budgetRatio` to the request rate, plus a floor of `minPerSecond` so a quiet service can still
 * retry. Within the sliding window,
 *
 *     retries <= minPerSecond * windowMs / 1000 + budgetRatio * requests
 *
 * which stops retries from multiplying load when a whole pool is failing (a retry storm).
 *
 * Pure: time comes from the Clock (`monotonic()`). Memory is fixed: the window is 10 buckets of
 * windowMs / 10 each (1 s by default), a ring of counters reused as time moves on. The window is
 * the current bucket and the 9 before it, so an event is forgotten between 0.9 and 1.0 windowMs
 * after it happened.
 */
import type { Clock } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';

export interface RetryBudgetOptions {
  /** Retries may add this share of the requests seen in the window (0.2 = 20%). 0..1. */
  budgetRatio: number;
  /** Retries always allowed per second of window, with no requests at all. >= 0. */
  minPerSecond: number;
  /** Length of the sliding window in ms. Default 10_000 (10 s). */
  windowMs?: number;
}

export interface RetryBudgetStats {
  /** Requests recorded in the window. */
  requests: number;
  /** Retries granted in the window. */
  retries: number;
  /** Retries the window allows in total (granted ones included): the budget's current size. */
  allowed: number;
}

const BUCKETS = 10;
/** Tolerance for ratio * count products such as 0.29 * 100 = 28.999999999999996. */
const EPSILON = 1e-9;

export class RetryBudget {
  private readonly bucketMs: number;
  private readonly reserve: number;
  private readonly ratio: number;
  /** Which bucket number (monotonic / bucketMs) each slot holds; -Infinity = never used. */
  private readonly epochs = new Float64Array(BUCKETS).fill(Number.NEGATIVE_INFINITY);
  private readonly requests = new Float64Array(BUCKETS);
  private readonly retries = new Float64Array(BUCKETS);

  constructor(
    opts: RetryBudgetOptions,
    private readonly clock: Clock,
  ) {
    const { budgetRatio, minPerSecond, windowMs = 10_000 } = opts;
    if (!(budgetRatio >= 0 && budgetRatio <= 1)) throw new InvalidArgumentError(`retry budget: budgetRatio must be between 0 and 1, got ${budgetRatio}`);
    if (!(minPerSecond >= 0 && Number.isFinite(minPerSecond))) throw new InvalidArgumentError(`retry budget: minPerSecond must be a finite number >= 0, got ${minPerSecond}`);
    if (!(windowMs > 0 && Number.isFinite(windowMs))) throw new InvalidArgumentError(`retry budget: windowMs must be a positive finite number of milliseconds, got ${windowMs}`);
    this.bucketMs = windowMs / BUCKETS;
    this.reserve = (minPerSecond * windowMs) / 1000;
    this.ratio = budgetRatio;
  }

  /** Counts one original request (call it once per request, not for its retries). */
  recordRequest(): void {
    const i = this.slot();
    this.requests[i]! += 1;
  }

  /**
   * Asks for one retry: true and counted when the budget has room, false (and not counted) when it
   * is spent.
   */
  tryAcquire(): boolean {
    const i = this.slot();
    const { requests, retries } = this.sums();
    if (retries >= this.allowedFor(requests)) return false;
    this.retries[i]! += 1;
    return true;
  }

  stats(): RetryBudgetStats {
    this.slot();
    const { requests, retries } = this.sums();
    return { requests, retries, allowed: this.allowedFor(requests) };
  }

  private allowedFor(requests: number): number {
    return Math.floor(this.reserve + this.ratio * requests + EPSILON);
  }

  /** The slot of the current bucket, cleared first when it last held an older bucket. */
  private slot(): number {
    const epoch = Math.floor(this.clock.monotonic() / this.bucketMs);
    const i = ((epoch % BUCKETS) + BUCKETS) % BUCKETS;
    if (this.epochs[i] !== epoch) {
      this.epochs[i] = epoch;
      this.requests[i] = 0;
      this.retries[i] = 0;
    }
    return i;
  }

  private sums(): { requests: number; retries: number } {
    const newest = Math.floor(this.clock.monotonic() / this.bucketMs);
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      const e = this.epochs[i]!;
      if (e > newest - BUCKETS && e <= newest) {
        requests += this.requests[i]!;
        retries += this.retries[i]!;
      }
    }
    return { requests, retries };
  }
}
