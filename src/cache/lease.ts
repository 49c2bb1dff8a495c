/**
 * A fleet-wide load lease on Redis (FleetLease from strategies/types.ts): one process of a fleet
 * loads a key while the others wait for the cache to fill. `acquire` is SET {prefix}l:{key} <token>
 * NX PX ttlMs; `release` deletes the key only if it still holds our token (a Lua compare-and-delete),
 * so a holder whose lease expired and passed to another process cannot release the new holder's.
 * The key sits in a hash tag, as in the Redis store, so it works on Redis Cluster.
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { CacheError, checkKey } from './errors.js';
import type { RedisClient } from './stores/redis.js';
import type { FleetLease, LeaseHandle } from './strategies/types.js';

export interface RedisLeaseOptions {
  /** The ioredis client (Redis or Cluster); the caller owns and closes it. */
  redis: RedisClient;
  /** Key namespace, without `{` or `}`. Default `archlab:cache:`. */
  prefix?: string;
  /** Longest an acquire or release may take, in ms; then it fails with ARCHLAB_CACHE_STORE_UNAVAILABLE. Default 250. */
  commandTimeoutMs?: number;
  /** Longest lease accepted, in ms (a lease outliving its holder blocks the key for that long). Default 60,000. */
  maxTtlMs?: number;
}

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

type WithRelease = { archlabLeaseRelease(key: string, token: string): Promise<number> };

export class RedisLease implements FleetLease {
  readonly prefix: string;
  readonly commandTimeoutMs: number;
  readonly maxTtlMs: number;
  private readonly redis: RedisClient;

  constructor(opts: RedisLeaseOptions) {
    this.redis = opts.redis;
    this.prefix = opts.prefix ?? 'archlab:cache:';
    if (this.prefix.includes('{') || this.prefix.includes('}')) throw new InvalidArgumentError(`redis lease: prefix ${JSON.stringify(this.prefix)} must not contain { or }`);
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 250;
    this.maxTtlMs = opts.maxTtlMs ?? 60_000;
    for (const [name, v] of [['commandTimeoutMs', this.commandTimeoutMs], ['maxTtlMs', this.maxTtlMs]] as const) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`redis lease: ${name} must be a positive integer, got ${v}`);
    }
    this.redis.defineCommand('archlabLeaseRelease', { numberOfKeys: 1, lua: RELEASE });
  }

  leaseKey(key: string): string {
    const escaped = key.includes('}') || key.includes('%') ? key.replace(/%/g, '%25').replace(/\}/g, '%7D') : key;
    return `${this.prefix}l:{${escaped}}`;
  }

  async acquire(key: string, ttlMs: number): Promise<LeaseHandle | undefined> {
    checkKey(key);
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0 || ttlMs > this.maxTtlMs) {
      throw new InvalidArgumentError(`redis lease: ttlMs must be a positive integer up to maxTtlMs ${this.maxTtlMs}, got ${ttlMs}`);
    }
    const name = this.leaseKey(key);
    // 128 random bits: unique across the fleet without coordination.
    const token = randomBytes(16).toString('base64url');
    const ok = await this.call('acquire', key, () => this.redis.set(name, token, 'PX', ttlMs, 'NX'));
    if (ok !== 'OK') return undefined;
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        await this.call('release', key, () => (this.redis as unknown as WithRelease).archlabLeaseRelease(name, token));
      },
    };
  }

  private call<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    const fail = (cause: unknown): CacheError =>
      new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `redis lease: ${op} ${JSON.stringify(key.slice(0, 64))} failed: ${cause instanceof Error ? cause.message : String(cause)}`, {
        cause,
        details: { op, key },
      });
    if (this.redis.status !== 'ready') return Promise.reject(fail(`not connected (status ${this.redis.status})`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(fail(`no answer within ${this.commandTimeoutMs} ms`)), this.commandTimeoutMs);
      timer.unref();
      fn().then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(fail(err));
        },
      );
    });
  }
}

/** A fleet lease on Redis (see RedisLeaseOptions). */
export function createRedisLease(opts: RedisLeaseOptions): RedisLease {
  return new RedisLease(opts);
}
