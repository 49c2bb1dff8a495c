/**
 * Tiered store: a memory L1 in each process in front of a shared Redis L2, with invalidations
 * broadcast over Redis pub/sub so every other process drops its L1 copy.
 *
 * Reads: L1, then L2; an L2 hit is copied into L1 with the same freshUntilMs/staleUntilMs (capped
 * by l1MaxTtlMs when set). Writes: L2 first, then L1. Every write to L2 (set, fill, invalidate)
 * publishes its key from inside the same Lua script as the write, so a message goes out if and only
 * if the write happened; invalidateTag and clear publish once after L2 is done.
 *
 * Races, and why L1 stays correct:
 * - An L1 copy is made with an L1 fill token taken before L2 is read; an invalidation that arrives
 *   in between (local call or pub/sub message) bumps the L1 generation and the copy is refused.
 * - Our own messages are skipped (each message names its publisher, a per-instance random id).
 * - Pub/sub is at-most-once: while the subscriber connection is not known to be working, L1 is
 *   bypassed and emptied. It is known to work when subscribed and a PING on it answered within
 *   l1MaxStaleMs; a connection that drops (event) or stops answering (PING) turns L1 off at once or
 *   within l1MaxStaleMs, and when it comes back L1 starts empty, because messages may have been
 *   missed meanwhile. So a stale L1 copy can outlive its invalidation by at most about
 *   l1MaxStaleMs, and normally by the pub/sub delivery time.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { CacheError, checkKey } from '../errors.js';
import type { CacheStore, Entry, EvictionReason, FillToken } from '../types.js';
import { MemoryStore, type MemoryStoreOptions } from './memory.js';
import { RedisStore, type Notify, type RedisClient, type RedisStoreOptions } from './redis.js';

export interface TieredStoreOptions<V = unknown> {
  /** L1 (memory store) options; its clock is this store's clock. Defaults as in MemoryStoreOptions. */
  l1?: Omit<MemoryStoreOptions<V>, 'clock'>;
  /** L2: a Redis store (the caller closes it) or options to create one (this store closes it). */
  l2: RedisStore<V> | RedisStoreOptions;
  /** Pub/sub channel for invalidations. Default `{l2 prefix}inv`. */
  channel?: string;
  /**
   * A separate ioredis connection for pub/sub (a subscribed connection cannot run other commands);
   * the caller owns it. Default: a duplicate of L2's client, owned and closed by this store.
   */
  subscriber?: RedisClient;
  /** How often the subscriber connection is PINGed, in ms. Default 250. */
  heartbeatIntervalMs?: number;
  /** L1 is bypassed and emptied when the subscriber has not been confirmed working for this long, in ms. Default 1,000. */
  l1MaxStaleMs?: number;
  /** Longest life of an L1 copy, in ms, whatever the entry says: a bound on staleness from lost messages. Default: none. */
  l1MaxTtlMs?: number;
  clock?: Clock;
}

/** What a received invalidation said, for metrics and latency measurement. */
export interface ReceivedInvalidation {
  kind: 'key' | 'tag' | 'clear';
  /** The key or tag ('' for clear). */
  subject: string;
  /** The publishing instance's id. */
  from: string;
}

const KINDS = { k: 'key', t: 'tag', c: 'clear' } as const;

export class TieredStore<V = unknown> implements CacheStore<V> {
  readonly kind = 'tiered' as const;
  readonly l1: MemoryStore<V>;
  readonly l2: RedisStore<V>;
  readonly channel: string;
  /** This instance's id in messages (host, pid, random). */
  readonly id: string;
  readonly commandTimeoutMs: number;
  /** Called for every invalidation received from another instance, after L1 dropped what it names. */
  onRemoteInvalidation?: (msg: ReceivedInvalidation) => void;
  /** Counters: messages received from others, malformed messages ignored, times L1 was turned off. */
  readonly stats = { received: 0, malformed: 0, l1Disabled: 0 };

  private readonly ownsL2: boolean;
  private readonly subscriber: RedisClient;
  private readonly ownsSubscriber: boolean;
  private readonly clock: Clock;
  private readonly heartbeatIntervalMs: number;
  private readonly l1MaxStaleMs: number;
  private readonly l1MaxTtlMs: number | undefined;
  private l1On = false;
  /** Last time the subscription was confirmed working (subscribed + PING answered). */
  private lastConfirmedMs = -Infinity;
  private heartbeat: TimerHandle | undefined;
  private pingInFlight = false;
  private subscribed = false;
  private closed = false;
  private readonly listeners: [string, (...args: string[]) => void][] = [];

  constructor(opts: TieredStoreOptions<V>) {
    this.clock = opts.clock ?? new SystemClock();
    this.l1 = new MemoryStore<V>({ ...opts.l1, clock: this.clock });
    if (opts.l2 instanceof RedisStore) {
      this.l2 = opts.l2;
      this.ownsL2 = false;
    } else {
      this.l2 = new RedisStore<V>({ clock: this.clock, ...opts.l2 });
      this.ownsL2 = true;
    }
    this.commandTimeoutMs = this.l2.commandTimeoutMs;
    this.channel = opts.channel ?? `${this.l2.prefix}inv`;
    this.id = `${hostname()}:${process.pid}:${randomBytes(6).toString('base64url')}`;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 250;
    this.l1MaxStaleMs = opts.l1MaxStaleMs ?? 1_000;
    this.l1MaxTtlMs = opts.l1MaxTtlMs;
    for (const [name, v] of [
      ['heartbeatIntervalMs', this.heartbeatIntervalMs],
      ['l1MaxStaleMs', this.l1MaxStaleMs],
      ['l1MaxTtlMs', this.l1MaxTtlMs ?? 1],
    ] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`tiered store: ${name} must be a positive integer, got ${v}`);
    }
    if (this.l1MaxStaleMs < 2 * this.heartbeatIntervalMs) {
      throw new InvalidArgumentError(`tiered store: l1MaxStaleMs (${this.l1MaxStaleMs}) must be at least twice heartbeatIntervalMs (${this.heartbeatIntervalMs})`);
    }
    // L1 capacity evictions and expiries are reported as this store's.
    this.l1.onEvict = (key, reason) => this.onEvict?.(key, reason);

    if (opts.subscriber) {
      this.subscriber = opts.subscriber;
      this.ownsSubscriber = false;
    } else {
      this.subscriber = this.l2.client.duplicate();
      this.ownsSubscriber = true;
      this.subscriber.on('error', () => {});
    }
    this.listen('message', (channel: string, message: string) => this.received(channel, message));
    this.listen('ready', () => void this.confirm());
    // The connection is gone: messages are being missed from now on.
    this.listen('close', () => this.disableL1());
    this.listen('end', () => this.disableL1());
    this.listen('reconnecting', () => this.disableL1());
    if (this.subscriber.status === 'ready') void this.confirm();
    this.tick();
  }

  onEvict?: (key: string, reason: EvictionReason) => void;

  /** Whether L1 is in use now (the subscription is confirmed working). */
  l1Enabled(): boolean {
    return this.l1On;
  }

  /**
   * Resolves when L1 is in use (subscribed and confirmed); fails with ARCHLAB_CACHE_STORE_UNAVAILABLE
   * after `timeoutMs` (default 5,000). Until then the store works, from L2 only.
   */
  async ready(timeoutMs = 5_000): Promise<void> {
    const t0 = performance.now();
    while (!this.l1On) {
      if (this.closed) throw new CacheError('ARCHLAB_CACHE_CLOSED', 'tiered store: closed');
      if (performance.now() - t0 > timeoutMs) {
        throw new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `tiered store: pub/sub subscription not confirmed within ${timeoutMs} ms (subscriber status ${this.subscriber.status})`);
      }
      if (this.subscriber.status === 'ready') await this.confirm();
      if (!this.l1On) await new Promise((r) => setTimeout(r, 10));
    }
  }

  // --- CacheStore ---

  peek(key: string): Entry<V> | undefined {
    return this.l1On ? this.l1.peek(key) : undefined;
  }

  async get(key: string): Promise<Entry<V> | undefined> {
    checkKey(key);
    if (!this.l1On) return this.l2.get(key);
    const hit = this.l1.peek(key);
    if (hit !== undefined) return hit;
    const token = this.l1.takeToken(key);
    const entry = await this.l2.get(key);
    if (entry !== undefined) this.copyToL1(key, entry, token);
    return entry;
  }

  async set(key: string, entry: Entry<V>): Promise<void> {
    checkKey(key);
    const token = this.l1.takeToken(key);
    try {
      await this.l2.setAndNotify(key, entry, this.notify('k', key));
    } catch (err) {
      // L2 may or may not hold the new value (a timeout is ambiguous): L1 must not keep the old one.
      this.l1.invalidateNow(key);
      throw err;
    }
    this.copyToL1(key, entry, token);
  }

  fillToken(key: string): Promise<FillToken> {
    return this.l2.fillToken(key);
  }

  async fill(key: string, entry: Entry<V>, token: FillToken): Promise<boolean> {
    checkKey(key);
    const l1Token = this.l1.takeToken(key);
    const ok = await this.l2.fillAndNotify(key, entry, token, this.notify('k', key));
    if (ok) this.copyToL1(key, entry, l1Token);
    return ok;
  }

  async invalidate(key: string): Promise<void> {
    checkKey(key);
    try {
      await this.l2.invalidateAndNotify(key, this.notify('k', key));
    } finally {
      // After L2: a local read that copied the old value from L2 meanwhile is refused by the bump.
      this.l1.invalidateNow(key);
    }
  }

  async invalidateTag(tag: string): Promise<number> {
    checkKey(tag);
    try {
      const n = await this.l2.invalidateTag(tag);
      await this.l2.publish(this.channel, this.message('t', tag));
      return n;
    } finally {
      this.l1.invalidateTagNow(tag);
    }
  }

  async clear(): Promise<void> {
    try {
      await this.l2.clear();
      await this.l2.publish(this.channel, this.message('c', ''));
    } finally {
      this.l1.clearNow();
    }
  }

  /** L2's count is not known cheaply. */
  size(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.heartbeat?.cancel();
    this.disableL1();
    for (const [event, fn] of this.listeners) this.subscriber.off(event, fn);
    if (this.ownsSubscriber) this.subscriber.disconnect();
    else if (this.subscriber.status === 'ready') await this.subscriber.unsubscribe(this.channel).catch(() => undefined);
    await this.l1.close();
    if (this.ownsL2) await this.l2.close();
  }

  // --- internals ---

  private listen(event: string, fn: (...args: string[]) => void): void {
    this.listeners.push([event, fn]);
    this.subscriber.on(event, fn);
  }

  private message(kind: 'k' | 't' | 'c', subject: string): string {
    return `1|${this.id}|${kind}|${subject}`;
  }

  private notify(kind: 'k', subject: string): Notify {
    return { channel: this.channel, message: this.message(kind, subject) };
  }

  private copyToL1(key: string, entry: Entry<V>, token: FillToken): void {
    if (!this.l1On) return;
    let copy = entry;
    if (this.l1MaxTtlMs !== undefined) {
      const cap = this.clock.now() + this.l1MaxTtlMs;
      if (entry.staleUntilMs > cap) copy = { ...entry, freshUntilMs: Math.min(entry.freshUntilMs, cap), staleUntilMs: cap };
    }
    try {
      this.l1.fillNow(key, copy, token);
    } catch (err) {
      // Too large for L1 but it fits L2: serve it from L2 only.
      if (!(err instanceof CacheError && err.code === 'ARCHLAB_CACHE_VALUE_TOO_LARGE')) throw err;
    }
  }

  private received(channel: string, message: string): void {
    if (channel !== this.channel) return;
    // "1|<id>|<k|t|c>|<subject>"; the subject may itself contain '|'.
    const a = message.indexOf('|');
    const b = a < 0 ? -1 : message.indexOf('|', a + 1);
    const c = b < 0 ? -1 : message.indexOf('|', b + 1);
    const kind = c < 0 ? undefined : KINDS[message.slice(b + 1, c) as keyof typeof KINDS];
    if (message.slice(0, a) !== '1' || kind === undefined) {
      this.stats.malformed++;
      return;
    }
    const from = message.slice(a + 1, b);
    if (from === this.id) return;
    const subject = message.slice(c + 1);
    this.stats.received++;
    try {
      if (kind === 'key') this.l1.invalidateNow(subject);
      else if (kind === 'tag') this.l1.invalidateTagNow(subject);
      else this.l1.clearNow();
    } catch {
      // A subject that is not a valid key (a foreign publisher): nothing of ours to drop.
      this.stats.malformed++;
      return;
    }
    this.onRemoteInvalidation?.({ kind, subject, from });
  }

  private disableL1(): void {
    if (this.l1On) this.stats.l1Disabled++;
    this.l1On = false;
    this.subscribed = false;
    // Anything in L1 may have missed an invalidation from now on.
    this.l1.clearNow();
  }

  /** Subscribes (again, after a reconnect) and PINGs; L1 comes on, empty, when both answered. */
  private async confirm(): Promise<void> {
    if (this.closed || this.pingInFlight) return;
    this.pingInFlight = true;
    try {
      const sub = this.subscriber;
      if (!this.subscribed) {
        await withTimeout(sub.subscribe(this.channel), this.l1MaxStaleMs);
        this.subscribed = true;
      }
      // The reply comes after every message published before it: the subscription is live.
      await withTimeout(sub.ping(), this.l1MaxStaleMs);
      if (this.closed || !this.subscribed) return;
      this.lastConfirmedMs = this.clock.now();
      if (!this.l1On) {
        this.l1.clearNow();
        this.l1On = true;
      }
    } catch {
      // Not confirmed; the next heartbeat tries again and the staleness check turns L1 off.
    } finally {
      this.pingInFlight = false;
    }
  }

  private tick(): void {
    if (this.closed) return;
    if (this.l1On && this.clock.now() - this.lastConfirmedMs > this.l1MaxStaleMs) this.disableL1();
    if (this.subscriber.status === 'ready') void this.confirm();
    this.heartbeat = this.clock.setTimer(this.heartbeatIntervalMs, () => this.tick());
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `tiered store: pub/sub did not answer within ${ms} ms`)), ms);
    t.unref();
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err);
      },
    );
  });
}

/** A tiered store (see TieredStoreOptions). Call `ready()` on it to wait until L1 is in use. */
export function createTieredStore<V = unknown>(opts: TieredStoreOptions<V>): TieredStore<V> {
  return new TieredStore<V>(opts);
}
