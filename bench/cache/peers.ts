/**
 * The peers of the get-or-load rows, each configured like archlab's side: the same TTL, the same
 * capacity in entries (LRU), values kept by reference in memory (no clone, no serialization) and
 * JSON in Redis, the loader called once per key per miss. Each builder returns undefined (with a
 * note from peer()) when its package is not installed.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { peer, ROOT, type BenchContext } from '../harness.js';
import type { Item } from './workload.js';

/** A cache under test, seen only through get-or-load. */
export interface Subject {
  system: string;
  /** The value of `key`, from the cache or from the loader given at construction. */
  getOrLoad(key: string): Promise<Item | undefined>;
  close(): Promise<void>;
}

export type Loader = (key: string) => Promise<Item | undefined>;

export interface PeerConfig {
  /** TTL of every entry, ms. */
  ttlMs: number;
  /** Entries the in-process tier holds (LRU beyond it). */
  capacity: number;
  /** Redis, for tiered rows; absent = memory rows. */
  redis?: { host: string; port: number; prefix: string };
}

/** How each peer is configured, for the notes (one line per peer). */
export function peerSettings(c: PeerConfig): string[] {
  const ttlS = Math.round(c.ttlMs / 1000);
  return c.redis
    ? [
        `bentocache ${versionOf('bentocache')}: bentostore().useL1Layer(memoryDriver({ maxItems: ${c.capacity} })).useL2Layer(redisDriver(ioredis)).useBus(redisBusDriver(ioredis)), ttl ${c.ttlMs} ms, getOrSet({ key, factory }); L1 keeps its default serialize: true (JSON per L1 hit) because serialize: false fails in 1.6.1 once L1 is filled from an L2 hit (TypeError: Cannot read properties of undefined (reading 'deserialize'), CacheEntry.fromDriver)`,
        `cache-manager ${versionOf('cache-manager')}: createCache({ stores: [createKeyv({ lruSize: ${c.capacity}, useClone: false }) from cacheable, createKeyv(redis://) from @keyv/redis], ttl: ${c.ttlMs} }), wrap(key, fn)`,
        `async-cache-dedupe ${versionOf('async-cache-dedupe')}: createCache({ ttl: ${ttlS} s, storage: { type: 'redis', client: ioredis } }).define(name, loader): it has no in-process tier, so every call is a Redis round trip (it dedupes in-flight calls only)`,
      ]
    : [
        `bentocache ${versionOf('bentocache')}: bentostore().useL1Layer(memoryDriver({ maxItems: ${c.capacity}, serialize: false })) (serialize: false keeps values by reference, as archlab's memory store does), ttl ${c.ttlMs} ms, getOrSet({ key, factory })`,
        `cache-manager ${versionOf('cache-manager')}: createCache({ stores: [createKeyv({ lruSize: ${c.capacity}, useClone: false, ttl }) from cacheable], ttl: ${c.ttlMs} }), wrap(key, fn) (cache-manager's README store for a bounded LRU; its default new Keyv() is an unbounded Map that JSON-serializes every value)`,
        `async-cache-dedupe ${versionOf('async-cache-dedupe')}: createCache({ ttl: ${ttlS} s, storage: { type: 'memory', options: { size: ${c.capacity} } } }).define(name, loader)`,
      ];
}

const versions = new Map<string, string>();
function versionOf(pkg: string): string {
  return versions.get(pkg) ?? '';
}

async function rememberVersion(pkg: string): Promise<void> {
  try {
    // Straight from node_modules: some packages' exports do not expose package.json.
    const text = await readFile(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8');
    versions.set(pkg, (JSON.parse(text) as { version: string }).version);
  } catch {
    // Installed elsewhere (a parent node_modules): the version is only cosmetic.
  }
}

export async function bentocache(ctx: BenchContext, c: PeerConfig, loader: Loader): Promise<Subject | undefined> {
  const mod = await peer(ctx, 'bentocache', () => import('bentocache'));
  const mem = mod && (await peer(ctx, 'bentocache', () => import('bentocache/drivers/memory')));
  if (!mod || !mem) return undefined;
  await rememberVersion('bentocache');
  // serialize: false (values by reference, like archlab's memory store) for the memory rows; with an
  // L2, bentocache 1.6.1 fails with it (TypeError in CacheEntry.fromDriver once L1 is filled from an L2
  // hit), so the tiered rows use its default, serialize: true.
  let store = mod.bentostore().useL1Layer(mem.memoryDriver({ maxItems: c.capacity, serialize: !!c.redis }));
  const closers: (() => Promise<unknown>)[] = [];
  if (c.redis) {
    const drv = await import('bentocache/drivers/redis');
    const { Redis } = await import('ioredis');
    const l2 = new Redis({ host: c.redis.host, port: c.redis.port, lazyConnect: false });
    const bus = new Redis({ host: c.redis.host, port: c.redis.port, lazyConnect: false });
    closers.push(() => l2.quit(), () => bus.quit());
    store = store.useL2Layer(drv.redisDriver({ connection: l2 })).useBus(drv.redisBusDriver({ connection: bus }));
  }
  const bento = new mod.BentoCache({
    default: 'cache',
    prefix: c.redis ? `${c.redis.prefix}bento` : 'bench',
    ttl: c.ttlMs,
    stores: { cache: store },
  });
  return {
    system: 'bentocache',
    getOrLoad: (key) => bento.getOrSet<Item | undefined>({ key, factory: () => loader(key) }),
    async close() {
      await bento.disconnectAll();
      for (const close of closers) await close().catch(() => undefined);
    },
  };
}

export async function cacheManager(ctx: BenchContext, c: PeerConfig, loader: Loader): Promise<Subject | undefined> {
  const cm = await peer(ctx, 'cache-manager', () => import('cache-manager'));
  if (!cm) return undefined;
  await rememberVersion('cache-manager');
  const { Keyv } = await import('keyv');
  const cacheable = await peer(ctx, 'cacheable', () => import('cacheable'));
  let memory: InstanceType<typeof Keyv>;
  if (cacheable) memory = cacheable.createKeyv({ lruSize: c.capacity, useClone: false, ttl: c.ttlMs });
  else {
    memory = new Keyv();
    ctx.note('cache-manager: without the cacheable package its memory tier is the default new Keyv(): an unbounded Map that JSON-serializes values');
  }
  const stores = [memory];
  if (c.redis) {
    const kr = await peer(ctx, '@keyv/redis', () => import('@keyv/redis'));
    if (!kr) return undefined;
    stores.push(kr.createKeyv(`redis://${c.redis.host}:${c.redis.port}`, { namespace: `${c.redis.prefix}cm` }));
  }
  const cache = cm.createCache({ stores, ttl: c.ttlMs });
  return {
    system: 'cache-manager',
    getOrLoad: (key) => cache.wrap(key, () => loader(key)),
    async close() {
      await cache.disconnect();
    },
  };
}

export async function asyncCacheDedupe(ctx: BenchContext, c: PeerConfig, loader: Loader): Promise<Subject | undefined> {
  const acd = await peer(ctx, 'async-cache-dedupe', () => import('async-cache-dedupe'));
  if (!acd) return undefined;
  await rememberVersion('async-cache-dedupe');
  const ttl = Math.max(1, Math.round(c.ttlMs / 1000));
  let client: { quit(): Promise<unknown> } | undefined;
  let cache;
  if (c.redis) {
    const { Redis } = await import('ioredis');
    const redis = new Redis({ host: c.redis.host, port: c.redis.port });
    client = redis;
    cache = acd.createCache({ ttl, storage: { type: 'redis', options: { client: redis, invalidation: false } } });
  } else {
    cache = acd.createCache({ ttl, storage: { type: 'memory', options: { size: c.capacity } } });
  }
  // Its storage keys are `<name>~<key>`: the run's prefix in the name keeps runs apart in Redis.
  const name = c.redis ? `${c.redis.prefix.replace(/[^A-Za-z0-9_]/g, '_')}acd` : 'items';
  const defined = cache.define(name, (key: string) => loader(key)) as unknown as Record<string, (key: string) => Promise<Item | undefined>>;
  const fetch = defined[name]!;
  return {
    system: 'async-cache-dedupe',
    getOrLoad: (key) => fetch(key),
    async close() {
      await client?.quit().catch(() => undefined);
    },
  };
}
