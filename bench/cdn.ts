/**
 * The CDN against its peers, and the textbook claims, in one run:
 *
 *   1. hit path: the same hot objects, warmed in every cache, the same wrk load against the origin
 *      (no cache), archlab's edge (one process), nginx proxy_cache (one worker) and Varnish (one
 *      thread pool), each system pinned to the same core: req/s, p50, p99, ratio to nginx;
 *   2. hit ratio: a Zipf(0.9) trace over 100,000 objects (quick: 10,000) through archlab's edge
 *      holding 10% of them, against an offline LRU simulation (src/cdn/sim) of the same trace;
 *   3. purge propagation: startCdn with three edges and a shield, purges through the admin API,
 *      p50/p99 of the propagation time it reports and of the time to its answer at the client;
 *   4. the textbook claims, as charts in docs/cdn.md: latency a user sees per region with and
 *      without the CDN, and origin requests per second during a miss storm with and without the
 *      shield.
 *
 * Peers that are not installed are skipped with a note saying how to install them. Every process
 * started runs in its own process group and is stopped at the end, even on error. Method of each
 * part: bench/cdn/*.ts.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, type Bench, type BenchContext, type Row } from './harness.js';
import { writeCharts } from './cdn/charts.js';
import { BODY_BYTES, HIT_FULL, HIT_QUICK, HOT_OBJECTS, measureHitPath, type HitSettings } from './cdn/hitpath.js';
import { measurePurge, PURGE_FULL, PURGE_QUICK, type PurgeSettings } from './cdn/purge.js';
import { report, targets } from './cdn/report.js';
import { CdnSession, type Started } from './cdn/session.js';
import { measureTextbook, TEXTBOOK_FULL, TEXTBOOK_QUICK, type TextbookData, type TextbookSettings } from './cdn/textbook.js';
import { measureZipf, ZIPF_FULL, ZIPF_QUICK, type ZipfSettings } from './cdn/zipf.js';

interface Settings {
  hit: HitSettings;
  zipf: ZipfSettings;
  purge: PurgeSettings;
  textbook: TextbookSettings;
}

const QUICK: Settings = { hit: HIT_QUICK, zipf: ZIPF_QUICK, purge: PURGE_QUICK, textbook: TEXTBOOK_QUICK };
const FULL: Settings = { hit: HIT_FULL, zipf: ZIPF_FULL, purge: PURGE_FULL, textbook: TEXTBOOK_FULL };

async function run(ctx: BenchContext): Promise<void> {
  const s = ctx.quick ? QUICK : FULL;
  const rows: Row[] = [];
  const row = ctx.row.bind(ctx);
  ctx.row = (r) => {
    rows.push(r);
    row(r);
  };
  const session = new CdnSession(ctx);
  const onSignal = (): void => {
    void session.stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const t0 = performance.now();
  const part = async (what: string, fn: () => Promise<void>): Promise<void> => {
    const t = performance.now();
    try {
      await fn();
    } catch (err) {
      ctx.note(`${what}: not measured, it failed: ${(err as Error).message.split('\n')[0]}`);
    }
    ctx.log(`  (${what}: ${((performance.now() - t) / 1000).toFixed(1)} s, ${((performance.now() - t0) / 1000).toFixed(1)} s in all)`);
  };
  let textbook: TextbookData | undefined;
  try {
    ctx.note(session.pinningNote());
    const objects = Math.max(s.zipf.objects, HOT_OBJECTS);
    const origin: Started | undefined = await session.script('origin', 'origin-child.ts', { objects, bodyBytes: BODY_BYTES });
    if (!origin) throw new TypeError('the origin did not start');
    await part('hit path', () => measureHitPath(session, origin, s.hit));
    await part('Zipf hit ratio', () => measureZipf(session, origin, s.zipf));
    await part('purge propagation', () => measurePurge(session, s.purge));
    await part('textbook charts', async () => {
      textbook = await measureTextbook(session, s.textbook);
    });
    const chartDir = ctx.quick ? join(tmpdir(), 'archlab-bench-cdn-charts') : join(ROOT, 'docs', 'img');
    const files = writeCharts(chartDir, rows, textbook);
    if (files.length) ctx.log(`charts: ${files.join(', ')}${ctx.quick ? ' (quick run: not written to docs/img)' : ''}`);
    if (session.disturbed.length) {
      ctx.note(
        `processes outside the bench took more than 10% of the CPUs while measuring ${session.disturbed.join(', ')}: those numbers are lower and noisier than this machine gives when idle (run again on a quiet machine)`,
      );
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await session.stopAll();
  }
}

const bench: Bench = {
  name: 'cdn',
  description:
    'CDN: cached-hit req/s and p50/p99 of archlab edge vs nginx proxy_cache, Varnish and the origin; Zipf(0.9) hit ratio vs an offline LRU; purge propagation to 3 edges; latency by region and origin load with and without the CDN and the shield',
  docsPage: 'docs/cdn.md',
  run,
  targets,
  report,
};

export default bench;
