/**
 * The read engine every strategy shares (cache-aside, read-through, write-through, and write-back's
 * reads). It owns one store, and decides per read what to do with what the store holds:
 *
 *   peek (sync, in-process tier) or get -> judge() (policy.ts) ->
 *     fresh            serve it (refresh-ahead: and refresh in the background when near expiry)
 *     revalidate       serve it stale, and start one background load (stale-while-revalidate)
 *     stale-if-error   load; serve the stale entry if the load fails or passes loadTimeouts.softMs
 *     expired / absent load
 *
 * A load is single-flight per key in this process (N concurrent misses -> 1 load), optionally
 * fleet-wide through a FleetLease, guarded by a hard timeout, and its result is stored with a fill
 * token taken before the load began, so an invalidation that lands during the load wins.
 *
 * The store is never allowed to fail a read: every store call goes through a circuit breaker and a
 * latency guard, and a store that errors, is too slow or is skipped by an open breaker counts as a
 * miss; the read goes to the source. An invalidation the store could not take is remembered in a
 * bounded repair set: reads of those keys bypass the cache until the store has taken it (see
 * markDirty), so a down store can delay the cache but never make this process serve a stale value.
 *
 * The hit path (store with peek(), fresh entry) reads one Entry, compares it with a cached clock
 * reading and returns Promise.resolve(value): no await, no closure, no allocation besides the promise.
 */
import { SystemClock, type Clock, type TimerHandle } from '../core/clock.js';
import { InvalidArgumentError, isArchlabError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { SystemRandom, type Random } from '../core/random.js';
import { CircuitBreaker, type BreakerState } from './breaker.js';
import { CacheError, MAX_KEY_BYTES } from './errors.js';
import { emptyStats, type CacheMetrics, type CacheStats, type MeteredCache } from './metrics.js';
import { DEFAULT_FRESHNESS, dueForRefreshAhead, judge, makeEntry, type FreshnessOptions } from './policy.js';
import type { CacheOptions, FleetLease, LeaseHandle, LoadTimeouts } from './strategies/types.js';
import type { CacheStore, Entry, EvictionReason, FillToken, Source } from './types.js';

/** Loads the value of `key` from the source of truth; `undefined` when the source has none. */
export type Loader<V> = (key: string) => Promise<V | undefined>;

export const DEFAULT_LOAD_TIMEOUTS: LoadTimeouts = { softMs: 200, hardMs: 5000 };
/** Store calls are failed after this long when the store does not state its own commandTimeoutMs. */
export const DEFAULT_STORE_TIMEOUT_MS = 1000;
/** Keys remembered for repair after a failed invalidation, by default; beyond it the whole store is cleared once it is back. */
export const DEFAULT_MAX_REPAIR_KEYS = 10_000;
/** With a cached clock reading, re-read the clock after at most this many reads (a long synchronous burst never lets the timer run). */
const NOW_REFRESH_READS = 256;
/** Fleet lease: first and largest pause between polls of the store while another process loads, in ms. */
const LEASE_POLL_FIRST_MS = 2;
const LEASE_POLL_MAX_MS = 50;

export interface EngineOptions<V> extends CacheOptions<V> {
  /** Tags for the entry loaded for `key` (sourced strategies); a read's own tags take precedence. */
  tagsFor?: (key: string, value: V) => readonly string[];
  /**
   * Most keys remembered for repair (invalidations the store could not take). Beyond it the engine
   * forgets the keys, bypasses the cache for every read, and clears the whole store once it answers
   * again. Default 10,000.
   */
  maxRepairKeys?: number;
  /**
   * How long one clock reading is reused on the hit path, in ms (lru-cache's ttlResolution trick:
   * Date.now() costs about as much as the LRU lookup). An entry may be served fresh up to this long
   * after its freshUntilMs. 0 = read the clock on every access. Default 1 with the system clock, 0 with
   * an injected clock (tests see exact expiry).
   */
  timeResolutionMs?: number;
}

/** What beginWrite hands to completeWrite. */
export interface WriteTicket {
  /** The fill token taken right after the pre-write invalidation; undefined when the store could not be reached. */
  readonly token: FillToken | undefined;
}

/** One load in flight. `noFill` is set when a write to the key completed during the load (see completeWrite). */
interface Flight<V> {
  readonly promise: Promise<V | undefined>;
  noFill: boolean;
  readonly key: string;
  /** Monotonic ms after which callers get ARCHLAB_CACHE_LOAD_TIMEOUT. */
  readonly deadline: number;
  /** Settled (value, error or timeout): later outcomes are ignored. */
  done: boolean;
  settle: (v: V | undefined) => void;
  fail: (err: unknown) => void;
}

/** The memory store's synchronous fill-token calls, used on the in-process miss path. */
interface SyncFillStore<V> {
  takeToken(key: string): FillToken;
  fillNow(key: string, entry: Entry<V>, token: FillToken): boolean;
}

const FAILED: unique symbol = Symbol('store call failed');
type Failed = typeof FAILED;

export function resolveFreshness(f: Partial<FreshnessOptions> | undefined): FreshnessOptions {
  const o = { ...DEFAULT_FRESHNESS, ...f };
  const ms = (name: keyof FreshnessOptions, positive: boolean): void => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (positive && v === 0)) {
      throw new InvalidArgumentError(`freshness.${name} must be a ${positive ? 'positive' : 'non-negative'} number of ms, got ${v}`);
    }
  };
  ms('ttlMs', true);
  ms('staleWhileRevalidateMs', false);
  ms('staleIfErrorMs', false);
  ms('negativeTtlMs', false);
  if (!(o.jitter >= 0 && o.jitter < 1)) throw new InvalidArgumentError(`freshness.jitter must be in [0, 1), got ${o.jitter}`);
  return o;
}

export function resolveLoadTimeouts(t: Partial<LoadTimeouts> | undefined): LoadTimeouts {
  const o = { ...DEFAULT_LOAD_TIMEOUTS, ...t };
  if (!(o.softMs > 0) || !(o.hardMs > 0) || !Number.isFinite(o.hardMs)) {
    throw new InvalidArgumentError(`loadTimeouts.softMs and hardMs must be positive numbers of ms, got ${o.softMs} and ${o.hardMs}`);
  }
  if (o.softMs > o.hardMs) throw new InvalidArgumentError(`loadTimeouts.softMs (${o.softMs}) must not exceed hardMs (${o.hardMs})`);
  return o;
}

/** Keys this short cannot exceed MAX_KEY_BYTES whatever their characters (a UTF-16 unit is at most 3 UTF-8 bytes). */
const PLAIN_KEY_MAX_LENGTH = Math.floor(MAX_KEY_BYTES / 3);

/**
 * The hit path's key check: true for a non-empty string short enough to be valid without counting
 * bytes. When false, call checkKey() (which throws ARCHLAB_CACHE_BAD_KEY or accepts a long key).
 */
export function plainKey(key: unknown): boolean {
  return typeof key === 'string' && key.length !== 0 && key.length <= PLAIN_KEY_MAX_LENGTH;
}

/** The error a failed source call surfaces as: an ArchlabError keeps its code; anything else becomes ARCHLAB_CACHE_SOURCE_FAILED. */
export function sourceError(key: string, op: 'load' | 'write' | 'remove', err: unknown): Error {
  if (isArchlabError(err)) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new CacheError('ARCHLAB_CACHE_SOURCE_FAILED', `source ${op} of key ${JSON.stringify(key.slice(0, 64))} failed: ${msg}`, {
    cause: err,
    details: { key, op },
  });
}

/** A store error that says the store is unreachable or slow (counts against the breaker), as opposed to a refused value. */
function isStoreDown(err: unknown): boolean {
  if (!isArchlabError(err)) return true;
  return err.code === 'ARCHLAB_CACHE_STORE_UNAVAILABLE' || err.code === 'ARCHLAB_CACHE_BREAKER_OPEN';
}

export class ReadEngine<V> {
  readonly name: string;
  readonly store: CacheStore<V>;
  /** Live counters (the strategies copy them in stats()). */
  readonly stats: CacheStats = emptyStats();
  readonly freshness: FreshnessOptions;
  readonly loadTimeouts: LoadTimeouts;
  readonly clock: Clock;

  private readonly random: Random;
  private readonly logger: Logger | undefined;
  private readonly metrics: CacheMetrics | undefined;
  private readonly lease: FleetLease | undefined;
  private readonly breaker: CircuitBreaker | undefined;
  private readonly tagsFor: ((key: string, value: V) => readonly string[]) | undefined;
  private readonly refreshAheadRatio: number;
  /** A fresh entry with at most this many ms of fresh life left is due for refresh-ahead (0 = off). */
  private readonly refreshWindowMs: number;
  /** The store's peek() is the whole store (memory): a peek miss needs no get(). */
  private readonly peekIsAuthoritative: boolean;
  private readonly hasPeek: boolean;
  /** Store calls are raced against a timer of this many ms (0 = in-process store, no timer). */
  private readonly storeTimeoutMs: number;
  private readonly maxRepairKeys: number;

  /** The hit path may run: the store has peek() and no repair is pending. */
  private fast: boolean;
  private readonly flights = new Map<string, Flight<V>>();
  /**
   * Flights not yet settled, detached or not, in start order. Every flight gets the same hardMs, so
   * the first is the one due first: one timer, armed for it, times out every flight (no timer per
   * load: a timer per miss costs more than the rest of the miss path on a memory store).
   */
  private readonly live = new Set<Flight<V>>();
  private sweepTimer: TimerHandle | undefined;
  /** Set when the store is the in-process memory store: fill tokens and fills without a promise. */
  private readonly syncFill: SyncFillStore<V> | undefined;
  /**
   * Store reads in flight per key, shared by concurrent readers of a store whose peek() is not the
   * whole story (tiered, Redis): 10,000 concurrent misses of one key make one GET, then one load.
   * Bounded by the number of keys read concurrently.
   */
  private readonly storeReads = new Map<string, Promise<Entry<V> | undefined>>();
  /** Per key, the tail of the beginWrite calls in progress (entries live only while one runs). */
  private readonly beginning = new Map<string, Promise<void>>();
  /** Keys whose invalidation the store has not taken yet -> the repair epoch when marked. */
  private readonly repairs = new Map<string, number>();
  /** The repair set overflowed (or a tag invalidation failed): clear the whole store when it answers. */
  private repairAll = false;
  private repairEpoch = 0;
  private repairing = false;
  private repairAgain = false;
  private closed = false;

  private readonly timeResolutionMs: number;
  private cachedNow = 0;
  /** Reads left before cachedNow must be refreshed; 0 = refresh on the next read. */
  private nowReads = 0;
  private nowTimer: TimerHandle | undefined;
  private readonly clearNow = (): void => {
    this.nowTimer = undefined;
    this.nowReads = 0;
  };
  private readonly previousOnEvict: ((key: string, reason: EvictionReason) => void) | undefined;

  constructor(opts: EngineOptions<V>) {
    if (typeof opts.name !== 'string' || opts.name.length === 0) throw new InvalidArgumentError('cache name must be a non-empty string');
    if (opts.store === undefined || opts.store === null) throw new InvalidArgumentError(`cache ${opts.name}: a store is required`);
    this.name = opts.name;
    this.store = opts.store;
    this.freshness = resolveFreshness(opts.freshness);
    this.loadTimeouts = resolveLoadTimeouts(opts.loadTimeouts);
    const ratio = opts.refreshAheadRatio ?? 0;
    if (!(ratio >= 0 && ratio < 1)) throw new InvalidArgumentError(`refreshAheadRatio must be in [0, 1), got ${ratio}`);
    this.refreshAheadRatio = ratio;
    this.refreshWindowMs = this.freshness.ttlMs * ratio;
    this.clock = opts.clock ?? new SystemClock();
    this.random = opts.random ?? new SystemRandom();
    this.logger = opts.logger;
    this.metrics = opts.metrics;
    this.lease = opts.lease;
    this.tagsFor = opts.tagsFor;
    this.breaker = opts.breaker === false ? undefined : new CircuitBreaker(opts.breaker ?? {}, this.clock);
    this.maxRepairKeys = opts.maxRepairKeys ?? DEFAULT_MAX_REPAIR_KEYS;
    if (!Number.isSafeInteger(this.maxRepairKeys) || this.maxRepairKeys < 1) {
      throw new InvalidArgumentError(`maxRepairKeys must be a positive integer, got ${opts.maxRepairKeys}`);
    }
    const systemClock = opts.clock === undefined || opts.clock instanceof SystemClock;
    this.timeResolutionMs = opts.timeResolutionMs ?? (systemClock ? 1 : 0);
    if (!(this.timeResolutionMs >= 0)) throw new InvalidArgumentError(`timeResolutionMs must be >= 0, got ${opts.timeResolutionMs}`);
    this.hasPeek = typeof this.store.peek === 'function';
    this.peekIsAuthoritative = this.hasPeek && this.store.kind === 'memory';
    this.fast = this.hasPeek;
    const sync = this.store as unknown as Partial<SyncFillStore<V>>;
    this.syncFill = this.store.kind === 'memory' && typeof sync.takeToken === 'function' && typeof sync.fillNow === 'function' ? (sync as SyncFillStore<V>) : undefined;
    this.storeTimeoutMs = this.store.kind === 'memory' ? 0 : (this.store.commandTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS);

    // Count evictions the store reports, keeping whatever hook was there.
    this.previousOnEvict = this.store.onEvict;
    const prev = this.previousOnEvict;
    this.store.onEvict = (key, reason) => {
      this.stats.evictions++;
      prev?.(key, reason);
    };
  }

  // ---------------------------------------------------------------- reads

  /**
   * The value of `key`: from the cache when usable, else from `loader` (single-flight), stored for
   * next time. Never fails because of the store. Fails with the loader's error (an ArchlabError
   * keeps its code, anything else becomes ARCHLAB_CACHE_SOURCE_FAILED) or ARCHLAB_CACHE_LOAD_TIMEOUT,
   * unless a stale entry may be served instead. `tags` go on the entry this read stores.
   */
  read(key: string, loader: Loader<V>, tags?: readonly string[]): Promise<V | undefined> {
    if (this.fast) {
      const e = this.store.peek!(key);
      // An entry without a stale window (freshUntilMs = staleUntilMs, the default) that the store
      // returned is fresh: the store already compared staleUntilMs with the time. Only entries with
      // a stale window, or refresh-ahead, need a clock read here.
      if (e !== undefined && ((e.freshUntilMs === e.staleUntilMs && this.refreshWindowMs === 0) || e.freshUntilMs - this.now() > this.refreshWindowMs)) {
        this.stats.hits++;
        // A negative entry's value is undefined: a cached miss answers undefined the same way.
        return Promise.resolve(e.value);
      }
      return this.readSlow(key, loader, tags, e, true);
    }
    return this.readSlow(key, loader, tags, undefined, false);
  }

  /**
   * Cache only, synchronous: the fresh value of `key` in the in-process tier, or undefined (absent,
   * not fresh, a cached miss, a store without peek(), or a key awaiting repair). Starts no load.
   */
  peek(key: string): V | undefined {
    if (this.fast) {
      const e = this.store.peek!(key);
      // See read(): without a stale window the store's own expiry check is the freshness check.
      if (e !== undefined && (e.freshUntilMs === e.staleUntilMs || e.freshUntilMs > this.now())) {
        this.stats.hits++;
        return e.value;
      }
      this.stats.misses++;
      return undefined;
    }
    return this.peekSlow(key);
  }

  private peekSlow(key: string): V | undefined {
    if (this.closed) throw closedError(this.name);
    if (this.hasPeek && !this.needsRepair(key)) {
      const e = this.store.peek!(key);
      if (e !== undefined && e.freshUntilMs > this.now()) {
        this.stats.hits++;
        return e.value;
      }
    }
    this.stats.misses++;
    return undefined;
  }

  /**
   * Cache only: the value of `key` if the cache holds a fresh one, or a stale one inside the
   * stale-while-revalidate window (counted as stale served; nothing refreshes it, there is no
   * loader); undefined otherwise. Starts no load; never fails because of the store.
   */
  lookup(key: string): Promise<V | undefined> {
    if (this.fast) {
      const e = this.store.peek!(key);
      if (e !== undefined && (e.freshUntilMs === e.staleUntilMs || e.freshUntilMs > this.now())) {
        this.stats.hits++;
        return Promise.resolve(e.value);
      }
      if (e !== undefined || this.peekIsAuthoritative) return Promise.resolve(this.lookupJudge(e));
    }
    return this.lookupSlow(key);
  }

  private async lookupSlow(key: string): Promise<V | undefined> {
    if (!this.fast) {
      this.kickRepair();
      if (this.needsRepair(key)) {
        this.stats.misses++;
        return undefined;
      }
    }
    const e = (this.hasPeek ? this.store.peek!(key) : undefined) ?? (this.peekIsAuthoritative ? undefined : await this.sharedStoreGet(key));
    return this.lookupJudge(e);
  }

  private lookupJudge(e: Entry<V> | undefined): V | undefined {
    if (e !== undefined) {
      const verdict = judge(e, this.freshness, this.now());
      if (verdict === 'fresh') {
        this.stats.hits++;
        return e.value;
      }
      if (verdict === 'revalidate') {
        this.stats.staleServed++;
        return e.value;
      }
    }
    this.stats.misses++;
    return undefined;
  }

  private async readSlow(key: string, loader: Loader<V>, tags: readonly string[] | undefined, peeked: Entry<V> | undefined, didPeek: boolean): Promise<V | undefined> {
    if (this.closed) throw closedError(this.name);
    if (!this.fast) {
      this.kickRepair();
      if (this.needsRepair(key)) {
        // The store may still hold a value older than the source: go around it, and do not fill.
        this.stats.misses++;
        return this.join(key, loader, tags, false);
      }
    }
    let entry = peeked;
    if (!didPeek && this.hasPeek) entry = this.store.peek!(key);
    // The in-process tier of a tiered store may hold nothing, or an entry past every window while
    // another process has filled the shared tier since: ask the store before loading.
    if (!this.peekIsAuthoritative && (entry === undefined || judge(entry, this.freshness, this.now()) === 'expired')) {
      entry = (await this.sharedStoreGet(key)) ?? entry;
    }
    if (entry === undefined) {
      this.stats.misses++;
      return this.join(key, loader, tags, true);
    }
    const now = this.now();
    switch (judge(entry, this.freshness, now)) {
      case 'fresh':
        this.stats.hits++;
        if (this.refreshAheadRatio > 0 && dueForRefreshAhead(entry, this.freshness.ttlMs, this.refreshAheadRatio, now)) {
          this.background(key, loader, tags);
        }
        return entry.value;
      case 'revalidate':
        this.stats.staleServed++;
        this.background(key, loader, tags);
        return entry.value;
      case 'stale-if-error':
        return this.joinOrStale(key, loader, tags, entry);
      default:
        this.stats.misses++;
        return this.join(key, loader, tags, true);
    }
  }

  // ---------------------------------------------------------------- loads

  /** The load in flight for `key`, or a new one. */
  private join(key: string, loader: Loader<V>, tags: readonly string[] | undefined, fill: boolean): Promise<V | undefined> {
    const current = this.flights.get(key);
    if (current !== undefined) {
      this.stats.joins++;
      return current.promise;
    }
    return this.startFlight(key, loader, tags, fill).promise;
  }

  /** Starts a background load unless one is in flight; its failure is logged, never thrown. */
  private background(key: string, loader: Loader<V>, tags: readonly string[] | undefined): void {
    if (this.flights.has(key) || this.closed) return;
    this.startFlight(key, loader, tags, true).promise.catch((err: unknown) => {
      this.logger?.debug({ cache: this.name, key, err }, 'background refresh failed');
    });
  }

  /**
   * Stale-if-error: join the load, but answer with `stale` if it fails or is still running after
   * loadTimeouts.softMs (it then finishes in the background and fills).
   */
  private joinOrStale(key: string, loader: Loader<V>, tags: readonly string[] | undefined, stale: Entry<V>): Promise<V | undefined> {
    const p = this.join(key, loader, tags, true);
    return new Promise<V | undefined>((resolve) => {
      let done = false;
      const timer = this.clock.setTimer(this.loadTimeouts.softMs, () => {
        if (done) return;
        done = true;
        this.stats.staleServed++;
        resolve(stale.value);
      });
      p.then(
        (v) => {
          if (done) return;
          done = true;
          timer.cancel();
          // The stale entry was not used: for the counters this read was a miss.
          this.stats.misses++;
          resolve(v);
        },
        (err: unknown) => {
          if (done) return;
          done = true;
          timer.cancel();
          this.stats.staleServed++;
          this.logger?.debug({ cache: this.name, key, err }, 'load failed, serving stale');
          resolve(stale.value);
        },
      );
    });
  }

  /**
   * Registers a flight whose promise settles with the load's outcome or, after loadTimeouts.hardMs,
   * with ARCHLAB_CACHE_LOAD_TIMEOUT; the load itself runs on and still fills when it ends. A timed-out
   * flight leaves the map, so later readers start a fresh load instead of waiting on a stuck one.
   */
  private startFlight(key: string, loader: Loader<V>, tags: readonly string[] | undefined, fill: boolean): Flight<V> {
    let settle!: (v: V | undefined) => void;
    let fail!: (err: unknown) => void;
    const promise = new Promise<V | undefined>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    const flight: Flight<V> = { promise, noFill: !fill, key, deadline: this.clock.monotonic() + this.loadTimeouts.hardMs, done: false, settle, fail };
    this.flights.set(key, flight);
    this.live.add(flight);
    if (this.sweepTimer === undefined) this.armSweep(flight.deadline);
    const load = this.syncFill !== undefined && this.lease === undefined ? this.runLoadInProcess(key, loader, tags, flight, this.syncFill) : this.runLoad(key, loader, tags, flight);
    load.then(
      (v) => this.land(flight, v),
      (err: unknown) => this.crash(flight, err),
    );
    return flight;
  }

  private land(flight: Flight<V>, v: V | undefined): void {
    this.leave(flight);
    if (flight.done) return;
    flight.done = true;
    flight.settle(v);
  }

  private crash(flight: Flight<V>, err: unknown): void {
    this.leave(flight);
    if (flight.done) {
      this.logger?.debug({ cache: this.name, key: flight.key, err }, 'load failed after its hard timeout');
      return;
    }
    flight.done = true;
    flight.fail(err);
  }

  private leave(flight: Flight<V>): void {
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
    this.live.delete(flight);
  }

  private armSweep(at: number): void {
    this.sweepTimer = this.clock.setTimer(Math.max(0, at - this.clock.monotonic()), () => this.sweep());
  }

  /**
   * Times out every live flight past its deadline (they are in deadline order), then re-arms for the
   * next one. A timed-out flight leaves the map, so later readers start a fresh load instead of
   * waiting on a stuck one; the load itself runs on and still fills when it ends.
   */
  private sweep(): void {
    this.sweepTimer = undefined;
    const now = this.clock.monotonic();
    for (const flight of this.live) {
      if (flight.deadline > now) {
        this.armSweep(flight.deadline);
        return;
      }
      this.live.delete(flight);
      if (flight.done) continue;
      flight.done = true;
      this.stats.loadTimeouts++;
      if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
      flight.fail(
        new CacheError('ARCHLAB_CACHE_LOAD_TIMEOUT', `loading key ${JSON.stringify(flight.key.slice(0, 64))} took over ${this.loadTimeouts.hardMs} ms`, {
          details: { key: flight.key, timeoutMs: this.loadTimeouts.hardMs },
        }),
      );
    }
  }

  /**
   * runLoad for the in-process memory store without a lease: the fill token and the fill are
   * synchronous calls (the memory store cannot be down, so no breaker or latency guard), and the
   * load's promise is chained once instead of awaited through three async layers.
   */
  private runLoadInProcess(key: string, loader: Loader<V>, tags: readonly string[] | undefined, flight: Flight<V>, store: SyncFillStore<V>): Promise<V | undefined> {
    // The token is taken before the load: an invalidation after this point refuses our fill.
    const token = flight.noFill ? undefined : store.takeToken(key);
    this.stats.loads++;
    const t0 = this.metrics !== undefined ? this.clock.monotonic() : 0;
    let pending: Promise<V | undefined>;
    try {
      pending = loader(key);
    } catch (err) {
      this.stats.loadErrors++;
      return Promise.reject(sourceError(key, 'load', err));
    }
    return pending.then(
      (value) => {
        if (this.metrics !== undefined) this.metrics.observeLoad(this.name, (this.clock.monotonic() - t0) / 1000);
        if (token !== undefined && !flight.noFill && !this.closed && (value !== undefined || this.freshness.negativeTtlMs > 0)) {
          try {
            store.fillNow(key, this.entryFor(key, value, tags), token);
          } catch (err) {
            // Too large, or a value the store refuses: served, not cached.
            this.logger?.warn({ cache: this.name, key, err }, 'store refused the call');
          }
        }
        return value;
      },
      (err: unknown) => {
        this.stats.loadErrors++;
        throw sourceError(key, 'load', err);
      },
    );
  }

  private async runLoad(key: string, loader: Loader<V>, tags: readonly string[] | undefined, flight: Flight<V>): Promise<V | undefined> {
    let lease: LeaseHandle | undefined;
    if (this.lease !== undefined && !flight.noFill) {
      const waited = await this.fleetWait(key, this.lease);
      if (waited.entry !== undefined) return waited.entry.value;
      lease = waited.handle;
    }
    try {
      // The token is taken before the load: an invalidation after this point refuses our fill.
      const token = flight.noFill ? undefined : await this.storeFillToken(key);
      this.stats.loads++;
      const t0 = this.clock.monotonic();
      let value: V | undefined;
      try {
        value = await loader(key);
      } catch (err) {
        this.stats.loadErrors++;
        throw sourceError(key, 'load', err);
      }
      this.metrics?.observeLoad(this.name, (this.clock.monotonic() - t0) / 1000);
      if (token !== undefined && !flight.noFill && !this.closed && (value !== undefined || this.freshness.negativeTtlMs > 0)) {
        await this.storeFill(key, this.entryFor(key, value, tags), token);
      }
      return value;
    } finally {
      if (lease !== undefined) {
        lease.release().catch((err: unknown) => this.logger?.debug({ cache: this.name, key, err }, 'lease release failed'));
      }
    }
  }

  /**
   * Fleet single-flight: take the lease, or, while another process holds it, poll the store (2 ms
   * doubling to 50 ms) for its fill, retrying the lease each round (the holder may have given up).
   * After loadTimeouts.hardMs, or when the lease or the store is unreachable, load without it.
   */
  private async fleetWait(key: string, lease: FleetLease): Promise<{ entry?: Entry<V>; handle?: LeaseHandle }> {
    const start = this.clock.monotonic();
    let delayMs = LEASE_POLL_FIRST_MS;
    let joined = false;
    for (;;) {
      if (this.breaker !== undefined && this.breaker.state !== 'closed') return {};
      let handle: LeaseHandle | undefined;
      try {
        const r = await this.guardTime(lease.acquire(key, Math.ceil(this.loadTimeouts.hardMs)));
        if (r === FAILED) return {};
        handle = r;
      } catch (err) {
        this.logger?.debug({ cache: this.name, key, err }, 'fleet lease unavailable, loading without it');
        return {};
      }
      if (handle !== undefined) return { handle };
      if (!joined) {
        joined = true;
        this.stats.joins++;
      }
      if (this.clock.monotonic() - start >= this.loadTimeouts.hardMs || this.closed) return {};
      await this.sleep(delayMs);
      delayMs = Math.min(delayMs * 2, LEASE_POLL_MAX_MS);
      const e = await this.storeGet(key);
      if (e !== undefined && judge(e, this.freshness, this.clock.now()) === 'fresh') return { entry: e };
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }

  // ---------------------------------------------------------------- writes and invalidations

  /**
   * Stores `value` for `key` unconditionally (cache-aside set, write-back). The key is invalidated
   * first so that a load which began earlier cannot overwrite it with an older value, and loads of
   * this process still in flight will not fill. Throws the store's refusal of the value
   * (ARCHLAB_CACHE_VALUE_TOO_LARGE, ARCHLAB_CACHE_CODEC; the key is then absent); a store that is
   * down is not an error: the key is marked for repair and reads bypass it until then. Resolves to
   * whether the store holds the value.
   */
  async set(key: string, value: V, tags?: readonly string[]): Promise<boolean> {
    this.detach(key, true);
    if ((await this.storeCall(() => this.store.invalidate(key))) === FAILED) {
      this.markDirty(key);
      return false;
    }
    this.repaired(key);
    const entry = this.entryFor(key, value, tags);
    const r = await this.storeCall(() => this.store.set(key, entry), true);
    this.detach(key, true);
    if (r === FAILED) {
      // It may or may not have landed: make sure nothing older is served.
      this.markDirty(key);
      return false;
    }
    return true;
  }

  /**
   * Removes `key` from the cache; an in-flight load of it will not fill, and later readers start a
   * new load. Resolves to false when the store could not take it: the key is then kept for repair
   * (reads bypass the cache for it until the store has taken the invalidation).
   */
  async invalidate(key: string): Promise<boolean> {
    this.detach(key, false);
    if ((await this.storeCall(() => this.store.invalidate(key))) === FAILED) {
      this.markDirty(key);
      return false;
    }
    this.repaired(key);
    return true;
  }

  /**
   * Removes every entry tagged `tag`; returns how many. When the store cannot take it, which keys
   * carry the tag is unknown: every read bypasses the cache until the store answers and has been
   * cleared (returns 0 then).
   */
  async invalidateTag(tag: string): Promise<number> {
    for (const f of this.flights.values()) f.noFill = true;
    this.flights.clear();
    const r = await this.storeCall(() => this.store.invalidateTag(tag));
    if (r === FAILED) {
      this.markAllDirty();
      return 0;
    }
    return r;
  }

  /**
   * Write-through, step 1 (before the source write): invalidate `key` and take a fill token. The
   * invalidation fences concurrent writers: a writer that began earlier will have its fill refused.
   * Never throws; a store that is down leaves the key marked for repair (and no token).
   */
  async beginWrite(key: string): Promise<WriteTicket> {
    // Two writers of this process must not both invalidate before either takes its token (both
    // tokens would then carry the same generation and neither fill would be fenced): the
    // invalidate + fillToken pairs of one key run one after the other. Across processes sharing a
    // store, the same guarantee needs a store whose successful fill() also bumps the generation.
    const prev = this.beginning.get(key);
    const mine = prev === undefined ? this.beginWriteNow(key) : prev.then(() => this.beginWriteNow(key));
    const tail = mine.then(
      () => undefined,
      () => undefined,
    );
    this.beginning.set(key, tail);
    try {
      return await mine;
    } finally {
      if (this.beginning.get(key) === tail) this.beginning.delete(key);
    }
  }

  private async beginWriteNow(key: string): Promise<WriteTicket> {
    this.detach(key, true);
    if ((await this.storeCall(() => this.store.invalidate(key))) === FAILED) {
      this.markDirty(key);
      return { token: undefined };
    }
    this.repaired(key);
    const token = await this.storeFillToken(key);
    if (token === undefined) this.markDirty(key);
    return { token };
  }

  /**
   * Write-through, step 2 (after the source took `value`): fill the cache with the ticket's token.
   * If the fill is refused (another write or invalidation came in between) or fails, invalidate
   * instead; if that fails too, the key is marked for repair. Never leaves the cache holding a value
   * the source does not have, and never throws. Resolves to whether the cache now holds `value`.
   */
  async completeWrite(key: string, value: V, ticket: WriteTicket, tags?: readonly string[]): Promise<boolean> {
    // A load of this process that began during the write may have read the old row: do not let it fill.
    this.detach(key, true);
    if (ticket.token === undefined) {
      this.kickRepair();
      return false;
    }
    const entry = this.entryFor(key, value, tags);
    if (await this.storeFill(key, entry, ticket.token)) return true;
    await this.invalidate(key);
    return false;
  }

  /** Whether the key is waiting for an invalidation the store has not taken (reads bypass the cache for it). */
  needsRepair(key: string): boolean {
    return this.repairAll || (this.repairs.size !== 0 && this.repairs.has(key));
  }

  /** Keys awaiting repair, and whether the whole store is to be cleared. */
  repairState(): { keys: number; all: boolean } {
    return { keys: this.repairs.size, all: this.repairAll };
  }

  get breakerState(): BreakerState | undefined {
    return this.breaker?.state;
  }

  /** Loads in flight (bounded by the number of distinct keys being loaded). */
  get inflight(): number {
    return this.flights.size;
  }

  /** Stops the engine: later reads fail with ARCHLAB_CACHE_CLOSED, loads still running will not fill. Does not close the store. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fast = false;
    for (const f of this.flights.values()) f.noFill = true;
    this.flights.clear();
    this.nowTimer?.cancel();
    this.nowTimer = undefined;
    // Flights still running keep their hard timeout (the sweep timer does not hold the process open).
    this.store.onEvict = this.previousOnEvict;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * The end of every strategy's close(): stops the engine, takes `cache` off the metrics, then closes
   * the store and `source` (the source even when the store's close fails).
   */
  async shutdown(cache: MeteredCache, source?: Source<V>): Promise<void> {
    this.close();
    this.metrics?.unregister(cache);
    try {
      await this.store.close();
    } finally {
      await source?.close?.();
    }
  }

  // ---------------------------------------------------------------- store calls

  /** A new entry for `value` (undefined: a cached miss), with the caller's tags or tagsFor's. */
  private entryFor(key: string, value: V | undefined, tags: readonly string[] | undefined): Entry<V> {
    const entryTags = tags ?? (value !== undefined && this.tagsFor !== undefined ? this.tagsFor(key, value) : undefined);
    return makeEntry(value, this.freshness, this.clock.now(), this.random, entryTags);
  }

  /** Forget the flight of `key` so later readers start their own; `noFill` also stops it from filling. */
  private detach(key: string, noFill: boolean): void {
    // A store read started before the invalidation may return the old entry: later readers start their own.
    this.storeReads.delete(key);
    const f = this.flights.get(key);
    if (f === undefined) return;
    if (noFill) f.noFill = true;
    this.flights.delete(key);
  }

  /** storeGet, joined with a read of the same key already in flight. */
  private sharedStoreGet(key: string): Promise<Entry<V> | undefined> {
    let p = this.storeReads.get(key);
    if (p === undefined) {
      const read: Promise<Entry<V> | undefined> = this.storeGet(key).finally(() => {
        if (this.storeReads.get(key) === read) this.storeReads.delete(key);
      });
      this.storeReads.set(key, read);
      p = read;
    }
    return p;
  }

  private async storeGet(key: string): Promise<Entry<V> | undefined> {
    try {
      const r = await this.storeCall(() => this.store.get(key), true);
      return r === FAILED ? undefined : r;
    } catch (err) {
      // A value the codec cannot read: a miss (the next fill replaces it), reported with the key.
      this.logger?.warn({ cache: this.name, key, err }, 'cache entry unreadable, treating as a miss');
      return undefined;
    }
  }

  private async storeFillToken(key: string): Promise<FillToken | undefined> {
    try {
      const r = await this.storeCall(() => this.store.fillToken(key), true);
      return r === FAILED ? undefined : r;
    } catch (err) {
      this.logger?.warn({ cache: this.name, key, err }, 'fill token refused');
      return undefined;
    }
  }

  /** A fill that fails (store down, value too large, codec) is ignored: the load's value is still served. */
  private async storeFill(key: string, entry: Entry<V>, token: FillToken): Promise<boolean> {
    try {
      const r = await this.storeCall(() => this.store.fill(key, entry, token), true);
      return r !== FAILED && r;
    } catch (err) {
      this.logger?.warn({ cache: this.name, key, err }, 'cache fill failed');
      return false;
    }
  }

  /**
   * One store call through the breaker and the latency guard. Returns FAILED when the breaker is open
   * (counted in breakerSkips, no call made) or the store is down or slower than its timeout (counted
   * against the breaker). Other store errors (a refused value) are thrown when `rethrow`, else FAILED.
   */
  private async storeCall<T>(call: () => Promise<T>, rethrow = false): Promise<T | Failed> {
    if (this.breaker !== undefined && !this.breaker.allow()) {
      this.stats.breakerSkips++;
      return FAILED;
    }
    try {
      const r = await this.guardTime(call());
      if (r === FAILED) {
        this.breaker?.failure();
        this.logger?.debug({ cache: this.name }, `store call took over ${this.storeTimeoutMs} ms`);
        return FAILED;
      }
      this.breaker?.success();
      return r;
    } catch (err) {
      if (isStoreDown(err)) {
        this.breaker?.failure();
        this.logger?.debug({ cache: this.name, err }, 'store call failed');
        return FAILED;
      }
      // The store answered; it refused this value.
      this.breaker?.success();
      if (rethrow) throw err;
      this.logger?.warn({ cache: this.name, err }, 'store refused the call');
      return FAILED;
    }
  }

  /** Races `p` against the store timeout (not for in-process stores, which answer synchronously). */
  private guardTime<T>(p: Promise<T>): Promise<T | Failed> {
    if (this.storeTimeoutMs === 0) return p;
    return new Promise<T | Failed>((resolve, reject) => {
      const timer = this.clock.setTimer(this.storeTimeoutMs, () => resolve(FAILED));
      p.then(
        (v) => {
          timer.cancel();
          resolve(v);
        },
        (err: unknown) => {
          timer.cancel();
          reject(err);
        },
      );
    });
  }

  // ---------------------------------------------------------------- repair

  /**
   * The store could not take an invalidation (or a write) of `key`: it may still hold an older value.
   * Until it has taken one, this process reads `key` from the source and never fills it. Bounded:
   * past maxRepairKeys the keys are forgotten and the whole store is cleared when it answers.
   */
  private markDirty(key: string): void {
    this.detach(key, true);
    this.repairEpoch++;
    if (!this.repairAll) {
      if (this.repairs.size >= this.maxRepairKeys && !this.repairs.has(key)) {
        this.markAllDirty();
        return;
      }
      this.repairs.set(key, this.repairEpoch);
    }
    this.fast = false;
    this.logger?.warn({ cache: this.name, key }, 'store unavailable for an invalidation; key kept for repair');
  }

  private markAllDirty(): void {
    this.repairEpoch++;
    if (!this.repairAll) this.logger?.warn({ cache: this.name }, 'store unavailable for a tag invalidation or repair set full; the store will be cleared when it answers');
    this.repairAll = true;
    this.repairs.clear();
    for (const f of this.flights.values()) f.noFill = true;
    this.flights.clear();
    this.fast = false;
  }

  /** `key` was invalidated or written successfully: no repair needed for it. */
  private repaired(key: string): void {
    if (this.repairs.size !== 0 && this.repairs.delete(key)) this.updateFast();
  }

  private updateFast(): void {
    this.fast = this.hasPeek && !this.closed && !this.repairAll && this.repairs.size === 0;
  }

  /**
   * Starts one repair pass in the background unless the breaker is open. Repairs are driven by
   * traffic (each read or write that meets a pending repair asks for a pass), so there is no timer;
   * a request that arrives during a pass runs one more pass after it (the store may have come back
   * after the running pass's call failed).
   */
  private kickRepair(): void {
    if (this.closed || (!this.repairAll && this.repairs.size === 0)) return;
    if (this.breaker !== undefined && this.breaker.state === 'open') return;
    if (this.repairing) {
      this.repairAgain = true;
      return;
    }
    this.repairing = true;
    this.repairAgain = false;
    this.repair()
      .catch((err: unknown) => this.logger?.warn({ cache: this.name, err }, 'cache repair failed'))
      .finally(() => {
        this.repairing = false;
        if (this.repairAgain) {
          this.repairAgain = false;
          this.kickRepair();
        }
      });
  }

  private async repair(): Promise<void> {
    if (this.repairAll) {
      const epoch = this.repairEpoch;
      if ((await this.storeCall(() => this.store.clear())) === FAILED) return;
      // Anything marked while the clear ran may have happened after it: keep it for another pass.
      if (this.repairEpoch === epoch) {
        this.repairAll = false;
        this.logger?.info({ cache: this.name }, 'store cleared after an outage; cache repaired');
      }
    } else {
      for (const [key, epoch] of [...this.repairs]) {
        if ((await this.storeCall(() => this.store.invalidate(key))) === FAILED) break;
        if (this.repairs.get(key) === epoch) this.repairs.delete(key);
      }
    }
    this.updateFast();
  }

  // ---------------------------------------------------------------- time

  /** The clock, read at most once per timeResolutionMs (and at least every NOW_REFRESH_READS reads). */
  private now(): number {
    if (--this.nowReads > 0) return this.cachedNow;
    return this.readClock();
  }

  private readClock(): number {
    const n = this.clock.now();
    this.nowReads = 0;
    if (this.timeResolutionMs > 0 && !this.closed) {
      this.cachedNow = n;
      this.nowReads = NOW_REFRESH_READS;
      if (this.nowTimer === undefined) this.nowTimer = this.clock.setTimer(this.timeResolutionMs, this.clearNow);
    }
    return n;
  }
}

export function closedError(name: string): CacheError {
  return new CacheError('ARCHLAB_CACHE_CLOSED', `cache ${name} is closed`);
}
