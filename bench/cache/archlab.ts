/** archlab's side of the rows, built from src/cache the way an application would build it. */
import { CacheAside } from '../../src/cache/strategies/cache-aside.js';
import { createMemoryStore } from '../../src/cache/stores/memory.js';
import { createTieredStore } from '../../src/cache/stores/tiered.js';
import { WriteBack, type Durability } from '../../src/cache/strategies/write-back.js';
import type { CacheStore, Source } from '../../src/cache/types.js';
import type { Loader, PeerConfig, Subject } from './peers.js';
import type { Item } from './workload.js';

export interface MemoryAsideOptions {
  name: string;
  /** Entries held (LRU beyond). */
  capacity: number;
  ttlMs: number;
}

/** CacheAside over a memory store of `capacity` entries; TTL `ttlMs` (default jitter, no stale windows). */
export function archlabMemory(o: MemoryAsideOptions): CacheAside<Item> {
  return new CacheAside<Item>({
    name: o.name,
    store: createMemoryStore<Item>({ maxEntries: o.capacity }),
    freshness: { ttlMs: o.ttlMs },
  });
}

/** A CacheAside seen as a get-or-load Subject with a fixed loader (no closure per call). */
export function asideSubject(system: string, cache: CacheAside<Item>, loader: Loader): Subject {
  return {
    system,
    getOrLoad: (key) => cache.getOrLoad(key, loader),
    close: () => cache.close(),
  };
}

/** CacheAside over the tiered store (memory L1 of `capacity` entries + Redis L2 + pub/sub invalidations). */
export async function archlabTiered(c: PeerConfig, loader: Loader): Promise<Subject | undefined> {
  if (!c.redis) return undefined;
  const store = createTieredStore<Item>({ l1: { maxEntries: c.capacity }, l2: { url: `redis://${c.redis.host}:${c.redis.port}`, prefix: `${c.redis.prefix}arch:` } });
  try {
    // L1 is bypassed until the pub/sub subscription is confirmed: measure the store as it runs.
    await store.ready(5000);
  } catch (err) {
    await store.close();
    throw err;
  }
  const cache = new CacheAside<Item>({ name: 'bench-tiered', store, freshness: { ttlMs: c.ttlMs } });
  return asideSubject('archlab', cache, loader);
}

export interface WriteBackBenchOptions {
  name: string;
  store: CacheStore<Item>;
  freshness: { ttlMs: number };
  source: Source<Item>;
  durability: 'none' | 'journal-always' | 'journal-50ms';
  journalPath: string;
  flushIntervalMs: number;
  maxBatch: number;
  maxDelayMs: number;
  maxQueueKeys: number;
}

/** What the benchmark uses of a WriteBack. */
export interface WriteBackHandle {
  get(key: string): Promise<Item | undefined>;
  set(key: string, value: Item): Promise<void>;
  /** Resolves once every acknowledged write is in the source. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export async function openWriteBack(o: WriteBackBenchOptions): Promise<WriteBackHandle> {
  const durability: Durability =
    o.durability === 'none' ? 'none' : { journal: { path: o.journalPath, fsync: o.durability === 'journal-always' ? 'always' : { everyMs: 50 } } };
  return WriteBack.open<Item>({
    name: o.name,
    store: o.store,
    freshness: o.freshness,
    source: o.source,
    writeBack: { flushIntervalMs: o.flushIntervalMs, maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, maxQueueKeys: o.maxQueueKeys, durability },
  });
}
