/**
 * Rows 1, 2 and 4 of bench/cache: the synchronous hit path against a raw lru-cache get, get-or-load
 * throughput (memory, then tiered memory+Redis) against the peers, and the stampede of concurrent gets
 * of one cold key. Every subject runs the same Zipf key sequence; every returned value is checked.
 */
import { LRUCache } from 'lru-cache';
import { ArchlabError } from '../../src/core/errors.js';
import { median, rate, type BenchContext } from '../harness.js';
import { archlabMemory, archlabTiered, asideSubject } from './archlab.js';
import { rateAsync } from './measure.js';
import { compileCallLoop } from './measure-loop.js';
import { asyncCacheDedupe, bentocache, cacheManager, peerSettings, type Loader, type PeerConfig, type Subject } from './peers.js';
import type { RedisTarget } from './redis.js';
import { itemOf, type Item, type Workload } from './workload.js';

/** A system returned a wrong answer (or the setup failed): the benchmark's numbers would be void. */
export class BenchVoid extends ArchlabError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ARCHLAB_BENCH_VOID', message, { details });
  }
}

export interface ReadSettings {
  ttlMs: number;
  /** Entries the in-process tier holds in the get-or-load rows (the key space is larger: misses happen). */
  capacity: number;
  hitOps: number;
  hitRuns: number;
  memOps: number;
  memRuns: number;
  tieredOps: number;
  tieredRuns: number;
  stampedeCallers: number;
  /** How long the stampede's one load takes, ms (so every caller arrives while it is in flight). */
  stampedeLoadMs: number;
}

/** Every item of the workload by key: the source of truth of the read rows. */
export function itemMap(w: Workload): Map<string, Item> {
  const items = new Map<string, Item>();
  w.keys.forEach((k, i) => items.set(k, itemOf(i)));
  return items;
}

export interface CountingSource {
  loader: Loader;
  loads(): number;
  reset(): void;
}

/** A loader over `items` (a Map lookup behind a promise) that counts its calls. */
export function countingSource(items: Map<string, Item>): CountingSource {
  let loads = 0;
  return {
    loader: (key) => {
      loads++;
      return Promise.resolve(items.get(key));
    },
    loads: () => loads,
    reset: () => {
      loads = 0;
    },
  };
}

/** Scenario of the hit-path rows over the hottest `n` keys only (a working set that fits CPU caches). */
export const hotScenario = (n: number): string => `hit path, hottest ${n.toLocaleString('en-US')} keys`;

/**
 * Row 1: raw lru-cache get vs CacheAside.peek vs awaited getOrLoad, every key warm. With `hotKeys`,
 * only the `hotKeys` most frequent keys of the sequence are stored and read (the sequence filtered to
 * them): the same comparison on a working set that stays in CPU caches.
 */
export async function hitPath(ctx: BenchContext, s: ReadSettings, w: Workload, hotKeys?: number): Promise<void> {
  let ids: number[];
  let seqIds: Uint32Array;
  if (hotKeys === undefined) {
    ids = w.keys.map((_, i) => i);
    seqIds = w.seq;
  } else {
    const freq = new Map<number, number>();
    for (const id of w.seq) freq.set(id, (freq.get(id) ?? 0) + 1);
    ids = [...freq].sort((a, b) => b[1] - a[1]).slice(0, hotKeys).map(([id]) => id);
    const hot = new Set(ids);
    seqIds = w.seq.filter((id) => hot.has(id));
  }
  const scenario = hotKeys === undefined ? 'hit path, warm keys' : hotScenario(hotKeys);
  ctx.log(`\n${scenario}: the Zipf sequence of keys${hotKeys === undefined ? '' : ' restricted to them'} (all hits)`);
  const seqKeys = Array.from(seqIds, (i) => w.keys[i]!);
  const all = ids.length;

  const raw = new LRUCache<string, Item>({ max: all });
  const rawTtl = new LRUCache<string, Item>({ max: all, ttl: s.ttlMs });
  const aside = archlabMemory({ name: 'bench-hit', capacity: all, ttlMs: s.ttlMs });
  for (const i of ids) {
    const item = itemOf(i);
    raw.set(w.keys[i]!, item);
    rawTtl.set(w.keys[i]!, item);
    await aside.set(w.keys[i]!, item);
  }
  // Right answers first: every subject returns the item of the key asked.
  for (let i = 0; i < Math.min(seqKeys.length, 20_000); i++) {
    const id = seqIds[i]!;
    for (const [name, v] of [['lru-cache', raw.get(seqKeys[i]!)], ['lru-cache ttl', rawTtl.get(seqKeys[i]!)], ['archlab peek', aside.peek(seqKeys[i]!)]] as const) {
      if (v?.id !== id) throw new BenchVoid(`${name}: ${seqKeys[i]} returned ${JSON.stringify(v)}; the hit-path rows are void`);
    }
  }

  const gc = (globalThis as { gc?: () => void }).gc;
  const measure = (system: string, target: object, method: 'get' | 'peek'): number => {
    const loop = compileCallLoop(method);
    gc?.();
    let offset = 0;
    const value = rate(
      (count) => {
        const hits = loop(target, seqKeys, count, offset);
        offset += count;
        if (hits !== count) throw new BenchVoid(`${system}: ${count - hits} of ${count} warm keys missed`);
        return hits;
      },
      { ops: s.hitOps, runs: s.hitRuns, warmup: 2 },
    );
    return value;
  };
  // Two interleaved rounds, the better of each subject kept, so no side is measured only while the
  // (shared) machine is busier.
  const subjects: [string, object, 'get' | 'peek'][] = [
    ['lru-cache get (max only)', raw, 'get'],
    ['lru-cache get (max + ttl)', rawTtl, 'get'],
    ['archlab CacheAside.peek', aside, 'peek'],
  ];
  const best = new Map<string, number>();
  for (let round = 0; round < 2; round++) {
    for (const [system, target, method] of subjects) best.set(system, Math.max(best.get(system) ?? 0, measure(system, target, method)));
  }
  for (const [system] of subjects) ctx.row({ system, scenario, metric: 'gets', value: best.get(system)!, unit: 'ops/s' });

  if (hotKeys !== undefined) {
    await aside.close();
    return;
  }
  const loader: Loader = () => Promise.reject(new BenchVoid('the hit path loaded'));
  const { rate: value } = await rateAsync(
    async (ops, run) => {
      let hits = 0;
      const base = run * ops;
      for (let i = 0; i < ops; i++) {
        const j = (base + i) % seqKeys.length;
        const v = await aside.getOrLoad(seqKeys[j]!, loader);
        if (v !== undefined && v.id === w.seq[j]) hits++;
      }
      if (hits !== ops) throw new BenchVoid(`archlab getOrLoad: ${ops - hits} of ${ops} warm reads were wrong or missing`);
      return hits;
    },
    { ops: s.hitOps, runs: s.hitRuns },
  );
  ctx.row({ system: 'archlab CacheAside.getOrLoad', scenario, metric: 'gets (awaited)', value, unit: 'ops/s' });
  const st = aside.stats();
  if (st.loads !== 0) throw new BenchVoid(`archlab getOrLoad loaded ${st.loads} times on warm keys`);
  await aside.close();
}

/** Reads every distinct key of the first `n` operations through `s`, 200 at a time, checking each value. */
async function warmL2(s: Subject, w: Workload, n: number): Promise<void> {
  const ids = [...new Set(w.seq.subarray(0, Math.min(n, w.seq.length)))];
  for (let i = 0; i < ids.length; i += 200) {
    const batch = ids.slice(i, i + 200);
    const got = await Promise.all(batch.map((id) => s.getOrLoad(w.keys[id]!)));
    got.forEach((v, j) => {
      if (v?.id !== batch[j]) throw new BenchVoid(`${s.system}: warming ${w.keys[batch[j]!]} returned ${JSON.stringify(v)}`);
    });
  }
}

type Builder = (ctx: BenchContext, c: PeerConfig, loader: Loader) => Promise<Subject | undefined>;

/** Row 2: get-or-load throughput of every system on one store kind, hits and misses as the sequence gives them. */
export async function getOrLoadRows(ctx: BenchContext, s: ReadSettings, w: Workload, redis: (RedisTarget & { prefix: string }) | undefined): Promise<void> {
  const tiered = redis !== undefined;
  const scenario = tiered ? 'get-or-load, tiered memory+Redis' : 'get-or-load, memory';
  ctx.log(`\n${scenario}: ${w.keys.length.toLocaleString('en-US')} keys, ${s.capacity.toLocaleString('en-US')} entries in process, sequential awaited calls`);
  const config: PeerConfig = { ttlMs: s.ttlMs, capacity: s.capacity, ...(redis ? { redis: { host: redis.host, port: redis.port, prefix: redis.prefix } } : {}) };
  const items = itemMap(w);
  const builders: [string, Builder][] = [
    ['archlab', (_c, cfg, loader) => (tiered ? archlabTiered(cfg, loader) : Promise.resolve(asideSubject('archlab', archlabMemory({ name: 'bench-gol', capacity: cfg.capacity, ttlMs: cfg.ttlMs }), loader)))],
    ['bentocache', bentocache],
    ['cache-manager', cacheManager],
    ['async-cache-dedupe', asyncCacheDedupe],
  ];
  const ops = tiered ? s.tieredOps : s.memOps;
  const runs = tiered ? s.tieredRuns : s.memRuns;
  interface Live {
    subject: Subject;
    src: CountingSource;
    samples: number[];
    failed?: string;
  }
  const live: Live[] = [];
  try {
    for (const [name, build] of builders) {
      const src = countingSource(items);
      try {
        if (tiered) {
          // Another process of the fleet filled Redis first: warm L2 with every key the measured window
          // reads, through a first instance, then measure a fresh instance (empty L1, warm L2), as a
          // process joining a running fleet sees it.
          const warmer = await build(ctx, config, src.loader);
          if (!warmer) continue;
          try {
            await warmL2(warmer, w, (runs + 1) * ops);
          } finally {
            await warmer.close().catch(() => undefined);
          }
        }
        src.reset();
        const subject = await build(ctx, config, src.loader);
        if (subject) live.push({ subject, src, samples: [] });
      } catch (err) {
        if (err instanceof BenchVoid) throw err;
        ctx.note(`${name} (${scenario}): could not be built: ${(err as Error).message}`);
      }
    }
    // Interleaved: run r of every system, then run r + 1 of every system, so a change in the load of
    // the (shared) machine hits all of them alike. Run 0 is the untimed warm-up. A forced GC before
    // each run keeps one system's garbage from being collected on the next one's clock.
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let run = 0; run <= runs; run++) {
      for (const l of live) {
        if (l.failed) continue;
        const subject = l.subject;
        gc?.();
        try {
          const base = run * ops;
          let ok = 0;
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < ops; i++) {
            const j = (base + i) % w.seq.length;
            const id = w.seq[j]!;
            const v = await subject.getOrLoad(w.keys[id]!);
            if (v !== undefined && v.id === id) ok++;
          }
          const ns = Number(process.hrtime.bigint() - t0);
          if (ok !== ops) throw new BenchVoid(`${subject.system} (${scenario}): ${ops - ok} of ${ops} reads returned a wrong value`);
          if (run > 0) l.samples.push((ops / ns) * 1e9);
        } catch (err) {
          if (err instanceof BenchVoid) throw err;
          l.failed = (err as Error).message;
          ctx.note(`${subject.system} (${scenario}) failed: ${l.failed}`);
        }
      }
    }
    for (const l of live) {
      if (l.failed) continue;
      ctx.row({ system: l.subject.system, scenario, metric: 'get-or-load', value: median(l.samples), unit: 'ops/s' });
      ctx.row({ system: l.subject.system, scenario, metric: 'loads per call', value: l.src.loads() / ((runs + 1) * ops), unit: 'fraction' });
    }
  } finally {
    for (const l of live) await l.subject.close().catch(() => undefined);
  }
  for (const line of peerSettings(config)) ctx.note(`${scenario}: ${line}`);
  ctx.note(
    tiered
      ? `${scenario}: archlab = CacheAside over createTieredStore({ l1: { maxEntries: ${s.capacity} }, l2: { url, prefix } }) after store.ready(), getOrLoad(key, loader). Each system's Redis is first warmed by a separate instance with every key the measured window reads (200 concurrent get-or-loads at a time), then a fresh instance (empty in-process tier, warm Redis) is measured: a process joining a running fleet. So loads per call is ~0 and the misses are in-process misses served from Redis`
      : `${scenario}: archlab = CacheAside over createMemoryStore({ maxEntries: ${s.capacity} }) (default maxBytes 64 MiB, never reached here), getOrLoad(key, loader) with one loader function for all calls; bentocache and cache-manager take a factory closure per call (their API), async-cache-dedupe the key only. Loads per call equal for every system = the same LRU behaviour on the same sequence`,
  );
}

/**
 * Row 4: `callers` concurrent get-or-loads of one cold key, the load taking `loadMs`: how many loads
 * each system starts (archlab must start exactly 1, or the benchmark is void) and how long until every
 * caller has its value.
 */
export async function stampede(ctx: BenchContext, s: ReadSettings, redis: (RedisTarget & { prefix: string }) | undefined): Promise<void> {
  const tiered = redis !== undefined;
  const scenario = `${s.stampedeCallers.toLocaleString('en-US')} concurrent gets, 1 cold key${tiered ? ', tiered' : ''}`;
  ctx.log(`\nstampede: ${scenario}, the load takes ${s.stampedeLoadMs} ms`);
  const config: PeerConfig = { ttlMs: s.ttlMs, capacity: s.capacity, ...(redis ? { redis: { host: redis.host, port: redis.port, prefix: `${redis.prefix}st` } } : {}) };
  const builders: [string, Builder][] = [
    ['archlab', (_c, cfg, loader) => (tiered ? archlabTiered(cfg, loader) : Promise.resolve(asideSubject('archlab', archlabMemory({ name: 'bench-stampede', capacity: cfg.capacity, ttlMs: cfg.ttlMs }), loader)))],
    ['bentocache', bentocache],
    ['cache-manager', cacheManager],
    ['async-cache-dedupe', asyncCacheDedupe],
  ];
  for (const [name, build] of builders) {
    let loads = 0;
    const item = itemOf(424242);
    const loader: Loader = () => {
      loads++;
      return new Promise((resolve) => setTimeout(() => resolve(item), s.stampedeLoadMs));
    };
    let subject: Subject | undefined;
    try {
      subject = await build(ctx, config, loader);
    } catch (err) {
      ctx.note(`${name} (${scenario}): could not be built: ${(err as Error).message}`);
      continue;
    }
    if (!subject) continue;
    try {
      const key = `stampede:${name}`;
      const t0 = process.hrtime.bigint();
      const calls: Promise<Item | undefined>[] = new Array(s.stampedeCallers);
      for (let i = 0; i < s.stampedeCallers; i++) calls[i] = subject.getOrLoad(key);
      const results = await Promise.allSettled(calls);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const wrong = results.filter((r) => r.status !== 'fulfilled' || r.value?.id !== item.id).length;
      if (subject.system.startsWith('archlab') && (loads !== 1 || wrong !== 0)) {
        throw new BenchVoid(`${subject.system}: ${s.stampedeCallers} concurrent gets of one cold key made ${loads} loads and ${wrong} wrong answers (must be 1 and 0)`);
      }
      ctx.row({ system: subject.system, scenario, metric: 'source loads', value: loads, unit: 'loads' });
      ctx.row({ system: subject.system, scenario, metric: 'time to serve all', value: ms, unit: 'ms' });
      if (wrong) {
        ctx.row({ system: subject.system, scenario, metric: 'callers failed or wrong', value: wrong, unit: 'calls' });
        const first = results.find((r) => r.status === 'rejected');
        if (first) ctx.note(`${subject.system} (${scenario}): ${wrong} callers failed, e.g. ${String(first.reason)}`);
      }
    } finally {
      await subject.close().catch(() => undefined);
    }
  }
}
