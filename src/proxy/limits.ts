/**
 * Per-key (client address, user) rate and concurrency limits. Pure: time comes from a Clock.
 *
 * Rate: a token bucket per key holding at most `burst` tokens, refilled at `ratePerSecond`; each
 * request or tunnel takes one. Concurrency: requests in flight plus open tunnels per key.
 *
 * Memory is bounded. Keys with nothing in flight live in an LRU of `maxTracked` entries; forgetting
 * one only refills its bucket early, a bounded loss of precision an attacker needs more than
 * `maxTracked` addresses to cause. Keys with something in flight are held apart and never evicted
 * (their counts must stay right); there are at most as many as the proxy's own connection limit.
 */
import type { Clock } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import { LRUCache } from 'lru-cache';

export interface KeyLimitOptions {
  /** Requests in flight plus open tunnels per key. Undefined: no limit. */
  maxConnections?: number;
  /** Token refill per second. Undefined: no rate limit. */
  ratePerSecond?: number;
  /** Bucket size: requests allowed at once after a quiet spell. Default max(1, ratePerSecond). */
  burst?: number;
  /** Idle keys remembered. Default 10000. */
  maxTracked?: number;
}

interface Entry {
  tokens: number;
  /** clock.monotonic() when tokens was last brought up to date. */
  atMs: number;
  active: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterMs: number };

const OK: TakeResult = Object.freeze({ ok: true });

export class KeyedLimiter {
  private readonly idle: LRUCache<string, Entry>;
  private readonly busy = new Map<string, Entry>();
  private readonly rate: number | undefined;
  private readonly burst: number;
  private readonly maxConnections: number | undefined;

  constructor(
    opts: KeyLimitOptions,
    private readonly clock: Clock,
  ) {
    const check = (name: string, v: number | undefined, min: number): void => {
      if (v !== undefined && !(Number.isFinite(v) && v >= min)) throw new InvalidArgumentError(`${name} must be a number >= ${min}, got ${v}`, { [name]: v });
    };
    check('maxConnections', opts.maxConnections, 1);
    check('ratePerSecond', opts.ratePerSecond, Number.MIN_VALUE);
    check('burst', opts.burst, 1);
    this.rate = opts.ratePerSecond;
    this.burst = opts.burst ?? Math.max(1, opts.ratePerSecond ?? 1);
    this.maxConnections = opts.maxConnections;
    this.idle = new LRUCache({ max: opts.maxTracked ?? 10_000 });
  }

  /** Whether this limiter limits anything at all (when not, the proxy skips it). */
  get enabled(): boolean {
    return this.rate !== undefined || this.maxConnections !== undefined;
  }

  /** Keys remembered now (idle and busy). */
  get tracked(): number {
    return this.idle.size + this.busy.size;
  }

  /** In flight for `key` now. */
  active(key: string): number {
    return this.busy.get(key)?.active ?? 0;
  }

  private entry(key: string): Entry {
    let e = this.busy.get(key) ?? this.idle.get(key);
    if (e === undefined) {
      e = { tokens: this.burst, atMs: this.clock.monotonic(), active: 0 };
      this.idle.set(key, e);
    }
    return e;
  }

  /** Takes one token from `key`'s bucket, or says how long until one is there. */
  take(key: string): TakeResult {
    if (this.rate === undefined) return OK;
    const e = this.entry(key);
    const now = this.clock.monotonic();
    e.tokens = Math.min(this.burst, e.tokens + ((now - e.atMs) * this.rate) / 1000);
    e.atMs = now;
    if (e.tokens >= 1) {
      e.tokens -= 1;
      return OK;
    }
    return { ok: false, retryAfterMs: Math.ceil(((1 - e.tokens) * 1000) / this.rate) };
  }

  /** Counts one more in flight for `key`; false (and nothing counted) when at maxConnections. */
  acquire(key: string): boolean {
    if (this.maxConnections === undefined) return true;
    const e = this.entry(key);
    if (e.active >= this.maxConnections) return false;
    if (e.active++ === 0) {
      this.idle.delete(key);
      this.busy.set(key, e);
    }
    return true;
  }

  /** Undoes one acquire(). */
  release(key: string): void {
    if (this.maxConnections === undefined) return;
    const e = this.busy.get(key);
    if (e === undefined) return;
    if (--e.active === 0) {
      this.busy.delete(key);
      this.idle.set(key, e);
    }
  }
}
