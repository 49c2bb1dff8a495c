/**
 * Produce, consume and publish-to-deliver latency of one target at one message size, each checked:
 * a small verification round first (every message delivered once, count matches) — a target that
 * gets it wrong is void for that size and gets no rows — then the timed produce and consume of the
 * same backlog (checked again), then the fixed-rate latency run (checked again).
 */
import type { BenchContext } from '../harness.js';
import { BenchCheckError, Payloads } from './payload.js';
import { consume, latency, produce, producePrepared, type LatencyOptions, type RunMode, type Session, type Target } from './runner.js';

export interface ThroughputSettings {
  /**
   * Seconds a timed produce run should last: its message count is the verification round's rate
   * times this, between `verifyCount` and `maxCount`, so a fast system is not timed over a few
   * milliseconds and a slow one does not take minutes.
   */
  runS: number;
  /** Messages in a timed run at most, per message size (bounds the memory of backlogs). */
  maxCount: (size: number) => number;
  /** Messages in the verification round before timing. */
  verifyCount: number;
  /** Unacknowledged publishes allowed at a time (publisher confirms outstanding). */
  window: number;
  /** Longest wait for a consume run to see every message. */
  consumeTimeoutMs: number;
  latency: LatencyOptions;
}

/** '100 B', '1 KB'. */
export function sizeLabel(size: number): string {
  return size >= 1024 && size % 1024 === 0 ? `${size / 1024} KB` : `${size} B`;
}

export const METRICS = {
  produceRate: 'produce msgs/s',
  produceMb: 'produce MB/s',
  consumeRate: 'consume msgs/s',
  consumeMb: 'consume MB/s',
  p50: 'publish-to-deliver p50',
  p99: 'publish-to-deliver p99',
} as const;

let seq = 0;
/** A destination name unique to this run and call: [A-Za-z0-9-] only, which every system accepts. */
export function destName(runId: string, what: string): string {
  return `archlab-bench-${runId}-${what}-${++seq}`;
}

/** Runs the three measurements; returns false when the target was void or failed (a note says why). */
export async function measureTarget(ctx: BenchContext, t: Target, size: number, s: ThroughputSettings, runId: string, tag: number): Promise<boolean> {
  const scenario = sizeLabel(size);
  const payloads = new Payloads(size, tag);
  try {
    // 1. verification round, untimed.
    let verifyRate = 0;
    await withSession(t, runId, 'verify', 'throughput', async (session) => {
      const v = new Payloads(size, tag ^ 0x5a5a5a5a);
      const n = Math.max(s.verifyCount, t.warmupMessages ?? 0);
      const p = t.prepared ? await producePrepared(session, v, n, s.window) : await produce(session, v, n, s.window);
      verifyRate = (n / p.ms) * 1000;
      await consume(session, v, n, s.consumeTimeoutMs, `${t.system} ${scenario} verification`);
    });
    // 2. timed produce, then timed consume of that backlog (checked).
    const n = Math.round(Math.min(s.maxCount(size), Math.max(s.verifyCount, verifyRate * s.runS)));
    await withSession(t, runId, 'tput', 'throughput', async (session) => {
      const p = t.prepared ? await producePrepared(session, payloads, n, s.window) : await produce(session, payloads, n, s.window);
      const c = await consume(session, payloads, n, s.consumeTimeoutMs, `${t.system} ${scenario} consume`);
      const pr = (n / p.ms) * 1000;
      const cr = (n / c.ms) * 1000;
      ctx.log(`  (${t.system}, ${scenario}: ${n.toLocaleString('en-US')} messages)`);
      ctx.row({ system: t.system, scenario, metric: METRICS.produceRate, value: pr, unit: 'msgs/s' });
      ctx.row({ system: t.system, scenario, metric: METRICS.produceMb, value: (pr * size) / 1e6, unit: 'MB/s' });
      ctx.row({ system: t.system, scenario, metric: METRICS.consumeRate, value: cr, unit: 'msgs/s' });
      ctx.row({ system: t.system, scenario, metric: METRICS.consumeMb, value: (cr * size) / 1e6, unit: 'MB/s' });
    });
    // 3. latency at a fixed moderate rate (checked).
    if (t.latency === false) return true;
    await withSession(t, runId, 'lat', 'latency', async (session) => {
      const l = await latency(session, payloads, s.latency, `${t.system} ${scenario} latency`);
      ctx.row({ system: t.system, scenario, metric: METRICS.p50, value: l.p50Ms, unit: 'ms' });
      ctx.row({ system: t.system, scenario, metric: METRICS.p99, value: l.p99Ms, unit: 'ms' });
      if (l.sentPerS < s.latency.rate * 0.9) ctx.note(`${t.system} ${scenario}: the latency run sent only ${l.sentPerS.toFixed(0)} msgs/s of the ${s.latency.rate} asked (the system pushed back)`);
    });
    return true;
  } catch (err) {
    if (err instanceof BenchCheckError) ctx.note(`VOID ${t.system} ${scenario}: ${err.message}; no rows for it`);
    else ctx.note(`FAILED ${t.system} ${scenario}: ${(err as Error).message}`);
    return false;
  }
}

/** Opens a fresh destination, runs `fn`, and deletes the destination whatever happened. */
export async function withSession(t: Target, runId: string, what: string, mode: RunMode, fn: (session: Session) => Promise<void>): Promise<void> {
  const name = destName(runId, what);
  const session = await t.open(name, mode);
  try {
    await fn(session);
  } finally {
    await session.drop().catch(() => undefined);
  }
}
