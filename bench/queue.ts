/**
 * Queues and logs: archlab's log and queue side by side with RabbitMQ (classic, quorum, stream),
 * NATS JetStream (file storage) and Redis Streams, in one run, at 100 B and 1 KB:
 *
 *   1. the disk's own sequential write speed (dd, and fio when installed): the physical limit;
 *   2. per system and size: produce msgs/s and MB/s (pipelined, a bound on unacknowledged
 *      publishes), consume msgs/s and MB/s (a consumer on its own connection acking every
 *      message), publish-to-deliver p50/p99 at a fixed moderate rate; each run checked first;
 *   3. load levelling: a 10x producer spike into a bounded queue, depth and broker RSS every 100 ms,
 *      drawn as charts (docs/img/queue-*.svg on a full run);
 *   4. the share of the disk, in rounds: the disk (fio, or dd) then the archlab log's 1 KB produce
 *      through TCP and embedded, back to back, several times; the target is judged on the median
 *      of the per-round shares (bench/queue/disk-share.ts). Added to the JSON as `diskShare`.
 *
 * archlab's TCP broker runs in a child process pinned to one core (taskset) so "on one core" is
 * true; the load generator (this process) is pinned to another core when the machine has two.
 * Peers that are not running are skipped with a note saying how to start them. Every queue, stream
 * and temp file the run creates is deleted at the end. Method of each part: bench/queue/*.ts.
 *
 * Environment: RABBITMQ_URL, NATS_URL, ARCHLAB_BENCH_REDIS (host:port) to point at other servers.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, type Bench, type Results, type Row } from './harness.js';
import { redisDown, redisTarget } from './cache/redis.js';
import { archlabLevelTarget, archlabTargets, type ArchlabSetup } from './queue/archlab.js';
import { writeCharts } from './queue/charts.js';
import { ddWrite, diskSystem, fioWrite } from './queue/disk.js';
import { diskShare, measureDiskShare, type DiskShare, type DiskShareSettings } from './queue/disk-share.js';
import { levelRows, type LevelSample, type LevelSettings } from './queue/levelling.js';
import { natsDown, natsTarget, natsUrl } from './queue/nats.js';
import { SIZES } from './queue/payload.js';
import { rabbitDown, rabbitLevelTarget, rabbitTarget, rabbitUrl } from './queue/rabbitmq.js';
import { redisPersistence, redisStreamsTarget } from './queue/redis.js';
import { ARCHLAB, DISK_METRIC, DISK_SCENARIO, report, SHARE_LABELS, targets } from './queue/report.js';
import type { Target } from './queue/runner.js';
import { destName, measureTarget, sizeLabel, type ThroughputSettings } from './queue/throughput.js';

interface Settings {
  throughput: ThroughputSettings;
  /** Consumer window (prefetch / max_messages / XREADGROUP COUNT) for every system. */
  prefetch: number;
  diskMiB: number;
  level: LevelSettings;
  levelBounds: { absorb: number; tight: number };
  /** Disk-share rounds; their window is the throughput rows' window. */
  share: Omit<DiskShareSettings, 'window'>;
}

function settings(quick: boolean): Settings {
  return {
    throughput: {
      runS: quick ? 0.4 : 2.5,
      maxCount: (size) => (quick ? (size <= 100 ? 20_000 : 10_000) : size <= 100 ? 500_000 : 200_000),
      verifyCount: quick ? 1000 : 10_000,
      window: 2000,
      consumeTimeoutMs: quick ? 20_000 : 120_000,
      latency: { rate: quick ? 1000 : 2000, durationMs: quick ? 600 : 4000, window: 2000, drainTimeoutMs: 10_000 },
    },
    prefetch: 1000,
    diskMiB: quick ? 128 : 1024,
    level: {
      size: 1024,
      consumerRate: 1000,
      spikeFactor: 10,
      normalFactor: 0.25,
      warmMs: quick ? 500 : 1000,
      spikeMs: quick ? 1000 : 2000,
      afterMs: quick ? 1500 : 26_000,
      sampleMs: 100,
      prefetch: 100,
      window: 2000,
    },
    // Spike surplus = (10 - 1) x consumer rate x spike length: 9,000 (quick) or 18,000 (full)
    // messages; after it the queue drains at 0.75 x the consumer's rate (24 s for 18,000).
    levelBounds: quick ? { absorb: 20_000, tight: 3_000 } : { absorb: 30_000, tight: 6_000 },
    // Each side of a round writes the disk rows' volume.
    share: { rounds: quick ? 2 : 5, mib: quick ? 128 : 1024 },
  };
}

const bench: Bench = {
  name: 'queue',
  description:
    'archlab log and queue vs RabbitMQ (classic, quorum, stream), NATS JetStream (file), Redis Streams: produce/consume msgs/s and MB/s, publish-to-deliver p50/p99, the disk limit (dd/fio), load levelling under a 10x spike, the 1 KB log against the disk in back-to-back rounds',
  docsPage: 'docs/queue.md',
  async run(ctx) {
    const s = settings(ctx.quick);
    const runId = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
    const tag = Number.parseInt(randomBytes(4).toString('hex'), 16);
    const dir = mkdtempSync(join(tmpdir(), 'archlab-bench-queue-'));
    const rows: Row[] = [];
    const row = ctx.row.bind(ctx);
    ctx.row = (r) => {
      rows.push(r);
      row(r);
    };
    const t0 = performance.now();
    const timed = async (what: string, fn: () => Promise<void>): Promise<void> => {
      const t = performance.now();
      await fn();
      ctx.log(`  (${what}: ${((performance.now() - t) / 1000).toFixed(1)} s, ${((performance.now() - t0) / 1000).toFixed(1)} s in all)`);
    };
    const targetsRun: Target[] = [];
    let archlab: ArchlabSetup | undefined;
    const levelling = new Map<string, LevelSample[]>();
    const closers: (() => Promise<void>)[] = [];
    try {
      // 1. the disk
      await timed('disk', async () => {
        for (const speed of [await ddWrite(dir, s.diskMiB), await fioWrite(dir, s.diskMiB)]) {
          if (typeof speed === 'string') ctx.note(`disk: ${speed}`);
          else {
            ctx.row({ system: diskSystem(speed.tool), scenario: DISK_SCENARIO, metric: DISK_METRIC, value: speed.mbPerS, unit: 'MB/s' });
            ctx.note(`disk, ${speed.tool}: \`${speed.command}\` (${s.diskMiB} MiB, in ${tmpdir()})`);
          }
        }
      });

      // 2. the systems: archlab first, then the peers that answer.
      archlab = await archlabTargets({ dataDir: join(dir, 'archlab'), prefetch: s.prefetch, quick: ctx.quick });
      for (const n of archlab.notes) ctx.note(n);
      targetsRun.push(...archlab.targets);
      const rabbit = await rabbitDown();
      if (rabbit) ctx.note(`RabbitMQ at ${rabbitUrl()} is not answering (${rabbit}), its rows were skipped: start it with rabbitmq-server -detached`);
      else for (const type of ['classic', 'quorum', 'stream'] as const) targetsRun.push(rabbitTarget(type, { prefetch: s.prefetch }));
      const nats = await natsDown();
      if (nats) ctx.note(`NATS JetStream at ${natsUrl()} is not answering (${nats}), its rows were skipped: start it with nats-server -js`);
      else targetsRun.push(natsTarget({ prefetch: s.prefetch }));
      const rt = redisTarget();
      const redis = await redisDown(rt);
      if (redis) ctx.note(`Redis at ${rt.host}:${rt.port} is not answering (${redis}), its rows were skipped: start it with redis-server --daemonize yes`);
      else targetsRun.push(redisStreamsTarget({ prefetch: s.prefetch }, await redisPersistence()));
      for (const t of targetsRun) {
        ctx.note(`durability of ${t.system}: ${t.durability}`);
        ctx.note(`method: ${t.method}`);
      }
      const tp = s.throughput;
      ctx.note(
        `each system, each size: an untimed verification round of ${tp.verifyCount.toLocaleString('en-US')} messages (more for archlab, whose V8 JIT needs warming), then a timed run sized to last about ${tp.runS} s at the rate the round showed (at most ${tp.maxCount(100).toLocaleString('en-US')} messages of 100 B, ${tp.maxCount(1024).toLocaleString('en-US')} of 1 KB), produced with at most ${tp.window.toLocaleString('en-US')} unacknowledged and consumed with a window of ${s.prefetch}; latency at ${tp.latency.rate} msgs/s for ${tp.latency.durationMs / 1000} s; MB/s counts message bodies (10^6 bytes)`,
      );
      for (const size of SIZES) {
        for (const t of targetsRun) await timed(`${t.system}, ${sizeLabel(size)}`, async () => void (await measureTarget(ctx, t, size, tp, runId, tag)));
      }

      // 3. load levelling
      const lv = s.level;
      ctx.note(
        `load levelling: ${lv.size} B messages; the consumer acks ${lv.consumerRate} msgs/s (prefetch ${lv.prefetch}); the producer offers ${lv.normalFactor * lv.consumerRate}/s for ${lv.warmMs / 1000} s, ${lv.spikeFactor * lv.consumerRate}/s for ${lv.spikeMs / 1000} s, then ${lv.normalFactor * lv.consumerRate}/s for ${lv.afterMs / 1000} s; queues bounded at ${s.levelBounds.absorb.toLocaleString('en-US')} (absorbs the spike) and ${s.levelBounds.tight.toLocaleString('en-US')} (below it) with reject-publish`,
      );
      const levelTargets = [archlabLevelTarget(archlab)];
      if (ctx.quick) ctx.note('load levelling: RabbitMQ is run beside archlab in the full run only');
      else if (!rabbit) {
        const r = rabbitLevelTarget();
        closers.push(() => r.close());
        levelTargets.push(r);
      }
      for (const lt of levelTargets) {
        if (!lt) continue;
        await timed(`levelling, ${lt.system}`, async () => {
          const got = await levelRows(ctx, lt, lv, s.levelBounds, (w) => destName(runId, w), tag);
          for (const [k, v] of got) levelling.set(k, v);
        });
      }
      if (!levelTargets[0]) ctx.note(`load levelling: archlab queue not measured (${archlab.levelMissing ?? 'not available'})`);

      // 4. the share of the disk, in rounds: the targets of the rows above, so the same code and batches.
      const byName = (system: string): Target | undefined => archlab?.targets.find((t) => t.system === system);
      await timed('disk share rounds', () =>
        measureDiskShare(ctx, { dir, tcp: byName(ARCHLAB.logLeaderPre), embedded: byName(ARCHLAB.logEmbedded), labels: SHARE_LABELS, settings: { ...s.share, window: tp.window }, runId, tag }),
      );

      const chartDir = ctx.quick ? join(tmpdir(), 'archlab-bench-queue-charts') : join(ROOT, 'docs', 'img');
      const files = writeCharts(chartDir, rows, levelling, [s.levelBounds.absorb, s.levelBounds.tight]);
      if (files.length) ctx.log(`charts: ${files.join(', ')}${ctx.quick ? ' (quick run: not written to docs/img)' : ''}`);
    } finally {
      for (const t of targetsRun) await t.close().catch(() => undefined);
      for (const c of closers) await c().catch(() => undefined);
      await archlab?.close().catch((err: unknown) => ctx.log(`could not stop the archlab broker: ${(err as Error).message}`));
      rmSync(dir, { recursive: true, force: true });
    }
  },
  targets: (results) => {
    // runBench calls targets() just before it writes the JSON: the one hook through which a bench
    // can add a section to it. diskShare is rebuilt from the rows, which stay the record.
    const share = diskShare(results.rows, SHARE_LABELS);
    if (share) (results as Results & { diskShare?: DiskShare }).diskShare = share;
    return targets(results);
  },
  report: (results) => report(results),
};

export default bench;
