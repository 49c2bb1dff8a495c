/**
 * Caching: archlab's cache strategies measured side by side with bentocache, cache-manager and
 * async-cache-dedupe on one Zipf-distributed key sequence (s = 1.0 over 100,000 keys, seeded), in one run:
 *
 *   1. hit path: raw lru-cache get vs CacheAside.peek (sync) vs awaited getOrLoad, all keys warm;
 *   2. get-or-load throughput with hits and misses, memory and tiered memory+Redis, vs the peers;
 *   3. cross-process invalidation of the tiered store: when every other process drops its L1 copy;
 *   4. stampede: 10,000 concurrent gets of one cold key -> exactly one source load;
 *   5. per strategy over SQLite: read and write p50/p99 under the 95/5 mix, and a write spike at
 *      10x the source's rate (write-through vs write-back);
 *   6. acked writes lost to kill -9, per write-back durability option.
 *
 * Helpers live in bench/cache/ (see each file's header for method). Redis rows need Redis on
 * 127.0.0.1:6379 (ARCHLAB_BENCH_REDIS=host:port to change) and are skipped with a note when it is
 * down; they use a per-run key prefix, removed at the end. Temp files go in one directory under
 * os.tmpdir(), removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Bench } from './harness.js';
import { killLoss, type DurabilitySettings } from './cache/durability.js';
import { crossProcessInvalidation, type InvalidationSettings } from './cache/invalidation.js';
import { getOrLoadRows, hitPath, stampede, type ReadSettings } from './cache/reads.js';
import { deleteKeysWith, redisDown, redisTarget } from './cache/redis.js';
import { report, targets } from './cache/report.js';
import { makeBaseDb, strategyLatency, writeSpike, type StrategySettings } from './cache/strategies.js';
import { distinctKeys, makeWorkload } from './cache/workload.js';

interface Settings extends ReadSettings, StrategySettings {
  keyCount: number;
  seqLength: number;
  invalidation: InvalidationSettings;
  durability: DurabilitySettings;
}

function settings(quick: boolean): Settings {
  return {
    keyCount: 100_000,
    seqLength: quick ? 500_000 : 2_000_000,
    // Longer than any run: nothing expires mid-measurement, for any system.
    ttlMs: 600_000,
    capacity: 10_000,
    hitOps: quick ? 200_000 : 1_000_000,
    hitRuns: quick ? 3 : 7,
    memOps: quick ? 30_000 : 150_000,
    memRuns: quick ? 3 : 5,
    tieredOps: quick ? 3_000 : 20_000,
    tieredRuns: quick ? 3 : 5,
    stampedeCallers: 10_000,
    stampedeLoadMs: 20,
    latencyOps: quick ? 15_000 : 60_000,
    sourceCallsPerS: 200,
    spikeFactor: 10,
    spikeMs: quick ? 1000 : 5000,
    maxInFlight: 256,
    invalidation: { children: 3, rounds: quick ? 150 : 1000, gapMs: 5, roundTimeoutMs: 1000 },
    durability: { runMs: quick ? 1200 : 2500, writers: 8, keysPerWriter: 1000, flushIntervalMs: 1000 },
  };
}

const bench: Bench = {
  name: 'cache',
  description:
    'cache strategies: hit path vs lru-cache, get-or-load vs bentocache/cache-manager/async-cache-dedupe (memory, tiered), cross-process invalidation, stampede, strategies over SQLite, write-back loss on kill -9',
  docsPage: 'docs/cache.md',
  async run(ctx) {
    const s = settings(ctx.quick);
    const w = makeWorkload({ keyCount: s.keyCount, length: s.seqLength });
    ctx.note(
      `workload: ${s.keyCount.toLocaleString('en-US')} keys, Zipf s=${w.zipfS}, ${s.seqLength.toLocaleString('en-US')} operations from SeededRandom(${w.seed}) (${distinctKeys(w).toLocaleString('en-US')} distinct keys in it), 5% writes where a mix is run; TTL ${s.ttlMs / 1000} s for every system; archlab keeps its default 10% TTL jitter and circuit breaker`,
    );
    const target = redisTarget();
    const down = await redisDown(target);
    if (down) ctx.note(`Redis at ${target.host}:${target.port} is not answering (${down}): the tiered, Redis and cross-process rows were skipped`);
    const runId = `bench${process.pid}x${randomBytes(3).toString('hex')}`;
    const redis = down ? undefined : { ...target, prefix: `${runId}:` };
    const dir = mkdtempSync(join(tmpdir(), 'archlab-bench-cache-'));
    const t0 = performance.now();
    const timed = async (what: string, fn: () => Promise<void>): Promise<void> => {
      const t = performance.now();
      await fn();
      ctx.log(`  (${what}: ${((performance.now() - t) / 1000).toFixed(1)} s, ${((performance.now() - t0) / 1000).toFixed(1)} s in all)`);
    };
    try {
      await timed('hit path', () => hitPath(ctx, s, w));
      await timed('hit path, hot set', () => hitPath(ctx, s, w, s.capacity));
      await timed('get-or-load, memory', () => getOrLoadRows(ctx, s, w, undefined));
      if (redis) await timed('get-or-load, tiered', () => getOrLoadRows(ctx, s, w, redis));
      if (redis) await timed('invalidation', () => crossProcessInvalidation(ctx, s.invalidation, redis));
      await timed('stampede, memory', () => stampede(ctx, s, undefined));
      if (redis) await timed('stampede, tiered', () => stampede(ctx, s, redis));
      const base = makeBaseDb(dir, w);
      await timed('strategies', () => strategyLatency(ctx, s, w, dir, base));
      await timed('write spike', () => writeSpike(ctx, s, w, dir, base));
      await timed('kill -9', () => killLoss(ctx, s.durability, dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (redis) {
        const n = await deleteKeysWith(target, runId).catch(() => -1);
        ctx.log(n < 0 ? `could not remove this run's Redis keys (*${runId}*)` : `removed ${n} Redis keys of this run`);
      }
    }
  },
  targets: (results) => targets(results),
  report: (results) => report(results),
};

export default bench;
