/**
 * Freshness, decided in one pure place (no clock or randomness of its own): how long a new entry is
 * fresh, how long it may then be served stale, and what a read should do with what it found.
 */
import type { Random } from '../core/random.js';
import type { Entry } from './types.js';

export interface FreshnessOptions {
  /** How long a loaded value is fresh, in ms. */
  ttlMs: number;
  /**
   * TTL jitter as a fraction in [0, 1): each entry's TTL is ttlMs x (1 - jitter x u), u uniform in
   * [0, 1), so keys loaded together do not all expire together. Default 0.1.
   */
  jitter: number;
  /** After freshness ends, serve the stale value for this long while one background load refreshes it. 0 = off. */
  staleWhileRevalidateMs: number;
  /** After freshness ends, serve the stale value for this long when the load fails or passes the soft timeout. 0 = off. */
  staleIfErrorMs: number;
  /** How long a miss (the source has no such key) is cached; 0 = misses are not cached. */
  negativeTtlMs: number;
}

export const DEFAULT_FRESHNESS: FreshnessOptions = {
  ttlMs: 60_000,
  jitter: 0.1,
  staleWhileRevalidateMs: 0,
  staleIfErrorMs: 0,
  negativeTtlMs: 0,
};

/** A new entry for `value` loaded or written at `nowMs`; `undefined` makes a negative entry. */
export function makeEntry<V>(value: V | undefined, opts: FreshnessOptions, nowMs: number, random: Random, tags?: readonly string[]): Entry<V> {
  const negative = value === undefined;
  const base = negative ? opts.negativeTtlMs : opts.ttlMs;
  const ttl = opts.jitter > 0 ? Math.max(1, Math.floor(base * (1 - opts.jitter * random.next()))) : base;
  const freshUntilMs = nowMs + ttl;
  const staleUntilMs = freshUntilMs + Math.max(opts.staleWhileRevalidateMs, opts.staleIfErrorMs);
  const entry: Entry<V> = { value, freshUntilMs, staleUntilMs };
  if (negative) entry.negative = true;
  if (tags && tags.length) entry.tags = tags;
  return entry;
}

/**
 * What a read does with an entry it found:
 * - `fresh`: serve it;
 * - `revalidate`: serve it now and refresh it in the background (stale-while-revalidate);
 * - `stale-if-error`: load; serve this entry only if the load fails or passes the soft timeout;
 * - `expired`: as if absent.
 */
export type Verdict = 'fresh' | 'revalidate' | 'stale-if-error' | 'expired';

export function judge(entry: Entry, opts: FreshnessOptions, nowMs: number): Verdict {
  if (nowMs < entry.freshUntilMs) return 'fresh';
  const age = nowMs - entry.freshUntilMs;
  if (age < opts.staleWhileRevalidateMs) return 'revalidate';
  if (age < opts.staleIfErrorMs) return 'stale-if-error';
  return 'expired';
}

/**
 * Refresh-ahead: a fresh entry read in the last `ratio` of its fresh life is refreshed in the
 * background, so hot keys never expire. `ratio` in (0, 1); 0 turns it off.
 */
export function dueForRefreshAhead(entry: Entry, ttlMs: number, ratio: number, nowMs: number): boolean {
  return ratio > 0 && nowMs < entry.freshUntilMs && entry.freshUntilMs - nowMs <= ttlMs * ratio;
}
