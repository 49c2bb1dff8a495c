/**
 * Load levelling: a queue between a producer that spikes and a consumer that cannot.
 *
 * The consumer acks at a fixed rate `consumerRate` (holding at most `prefetch` unacked). The
 * producer offers a normal rate (`normalFactor` x the consumer's), then `spikeFactor` x the
 * consumer's rate for `spikeMs`, then the normal rate again, open loop, at most `window`
 * publishes outstanding. The queue has a bound (maxLength) with overflow 'reject-publish': a
 * publish over it is refused, which is the producer's backpressure (it is not acknowledged, so
 * nothing acknowledged is lost). Two bounds are run: one large enough to absorb the spike, and
 * one below it, where the bound must hold.
 *
 * Every 100 ms: queue depth as the broker reports it (ready + unacked), and the broker process's
 * RSS. Checked: no message delivered twice, none altered, and at the end the broker's depth equals
 * accepted - consumed (a wrong count voids the row).
 */
import { readFileSync } from 'node:fs';
import type { BenchContext } from '../harness.js';
import { epochMs, orTimeout, sleep } from '../cache/measure.js';
import { BenchCheckError, Payloads, Tracker } from './payload.js';

export const LEVEL_METRICS = {
  scenarioAbsorb: 'load levelling, bound absorbs the spike',
  scenarioBounded: 'load levelling, bound below the spike (reject-publish)',
  bound: 'maxLength',
  maxDepth: 'peak depth',
  maxRss: 'peak broker RSS',
  spikeAccepted: 'accepted/s in spike',
  refused: 'refused publishes',
  consumed: 'consumed/s',
} as const;

export interface LevelSession {
  /** 'full' when the queue refused it at its bound (reject-publish). */
  publish(body: Buffer): Promise<'ok' | 'full'>;
  /** A consumer with `prefetch`; `onMessage` gets each body and the function that acks it. */
  consume(prefetch: number, onMessage: (body: Buffer, ack: () => void) => void): Promise<{ stop(): Promise<void> }>;
  /** Ready + unacked messages, as the broker reports them (RabbitMQ reports ready only: the adapter adds what its consumer holds unacked). */
  depth(): Promise<number>;
  drop(): Promise<void>;
}

export interface LevelTarget {
  system: string;
  /** A fresh durable queue with maxLength `bound` and overflow reject-publish. */
  open(name: string, bound: number): Promise<LevelSession>;
  /** True when maxLength bounds ready + unacked (archlab); false when it bounds ready only (RabbitMQ). */
  boundCountsUnacked: boolean;
  /** RSS of the broker process in bytes, if it can be read. */
  rssBytes(): number | undefined;
}

export interface LevelSettings {
  size: number;
  /** Messages per second the consumer acks. */
  consumerRate: number;
  /** Producer rate during the spike, as a multiple of consumerRate (10 in the issue). */
  spikeFactor: number;
  /** Producer rate outside the spike, as a multiple of consumerRate. */
  normalFactor: number;
  warmMs: number;
  spikeMs: number;
  afterMs: number;
  sampleMs: number;
  prefetch: number;
  /** Outstanding publishes at most; offers beyond are not made (counted as behind). */
  window: number;
}

export interface LevelSample {
  /** Seconds since the start. */
  t: number;
  depth: number;
  rssMiB: number | undefined;
}

export interface LevelResult {
  samples: LevelSample[];
  accepted: number;
  refused: number;
  consumed: number;
  spikeAccepted: number;
  behind: number;
}

/** RSS of a process from /proc (Linux), bytes. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export async function levelRun(target: LevelTarget, name: string, bound: number, s: LevelSettings, tag: number): Promise<LevelResult> {
  const c = s.consumerRate;
  const normal = c * s.normalFactor;
  const spike = c * s.spikeFactor;
  const t1 = s.warmMs;
  const t2 = t1 + s.spikeMs;
  const t3 = t2 + s.afterMs;
  // Messages due by time t (ms): the integral of the piecewise-constant rate.
  const dueBy = (t: number): number =>
    Math.floor((Math.min(t, t1) * normal + Math.max(0, Math.min(t, t2) - t1) * spike + Math.max(0, Math.min(t, t3) - t2) * normal) / 1000);
  const planned = dueBy(t3);
  const payloads = new Payloads(s.size, tag);
  const tracker = new Tracker(payloads, planned);
  const session = await target.open(name, bound);
  const samples: LevelSample[] = [];
  let accepted = 0;
  let refused = 0;
  let spikeAccepted = 0;
  let consumed = 0;
  let behind = 0;
  let failed: unknown;
  try {
    const held: (() => void)[] = [];
    const sub = await session.consume(s.prefetch, (body, ack) => {
      tracker.see(body);
      held.push(ack);
    });
    const t0 = performance.now();
    let stop = false;
    // Consumer pacing: every 5 ms, ack what the fixed rate allows, oldest first.
    const acker = (async () => {
      while (!stop) {
        const allowed = Math.floor(((performance.now() - t0) * c) / 1000) - consumed;
        for (let i = 0; i < allowed && held.length > 0; i++) {
          held.shift()!();
          consumed++;
        }
        await sleep(5);
      }
    })();
    const sampler = (async () => {
      while (!stop) {
        const t = (performance.now() - t0) / 1000;
        const depth = await session.depth();
        const rss = target.rssBytes();
        samples.push({ t, depth, rssMiB: rss === undefined ? undefined : rss / 2 ** 20 });
        await sleep(Math.max(0, s.sampleMs - ((performance.now() - t0) % s.sampleMs)));
      }
    })();
    let sent = 0;
    let inflight = 0;
    while (sent < planned && !failed) {
      const now = performance.now() - t0;
      const due = dueBy(now);
      while (sent < due && !failed) {
        if (inflight >= s.window) {
          behind += due - sent;
          sent = due;
          break;
        }
        const seq = sent++;
        const inSpike = now >= t1 && now < t2;
        inflight++;
        session.publish(payloads.make(seq, epochMs())).then(
          (r) => {
            inflight--;
            if (r === 'ok') {
              accepted++;
              if (inSpike) spikeAccepted++;
            } else refused++;
          },
          (err: unknown) => {
            inflight--;
            failed ??= err;
          },
        );
      }
      await sleep(1);
    }
    // Let the last publishes settle, then stop consuming and sampling.
    for (let i = 0; i < 500 && inflight > 0; i++) await sleep(10);
    stop = true;
    await acker;
    await sampler;
    await sub.stop();
    if (failed) throw failed;
    if (inflight > 0) throw new BenchCheckError(`${target.system}: ${inflight} publishes never settled`);
    await sleep(100);
    // The consumer is gone: whatever it held unacked is back in the queue.
    const finalDepth = await orTimeout(session.depth(), 5000);
    if (tracker.duplicates || tracker.invalid) throw new BenchCheckError(`${target.system} levelling: ${tracker.duplicates} duplicates, ${tracker.invalid} invalid`);
    if (finalDepth !== accepted - consumed) {
      throw new BenchCheckError(`${target.system} levelling: the broker holds ${String(finalDepth)} messages, but ${accepted} were accepted and ${consumed} consumed`);
    }
    const spikeS = s.spikeMs / 1000;
    return { samples, accepted, refused, consumed, spikeAccepted: spikeAccepted / spikeS, behind };
  } finally {
    await session.drop().catch(() => undefined);
  }
}

/** Runs both bounds on one target and adds the rows; returns the samples for the charts. */
export async function levelRows(ctx: BenchContext, target: LevelTarget, s: LevelSettings, bounds: { absorb: number; tight: number }, name: (what: string) => string, tag: number): Promise<Map<string, LevelSample[]>> {
  const out = new Map<string, LevelSample[]>();
  const runS = (s.warmMs + s.spikeMs + s.afterMs) / 1000;
  for (const [scenario, bound] of [
    [LEVEL_METRICS.scenarioAbsorb, bounds.absorb],
    [LEVEL_METRICS.scenarioBounded, bounds.tight],
  ] as const) {
    try {
      const r = await levelRun(target, name('level'), bound, s, tag);
      const peak = r.samples.reduce((m, x) => Math.max(m, x.depth), 0);
      const peakRss = r.samples.reduce((m, x) => Math.max(m, x.rssMiB ?? 0), 0);
      ctx.row({ system: target.system, scenario, metric: LEVEL_METRICS.bound, value: bound, unit: 'msgs' });
      ctx.row({ system: target.system, scenario, metric: LEVEL_METRICS.maxDepth, value: peak, unit: 'msgs' });
      if (peakRss > 0) ctx.row({ system: target.system, scenario, metric: LEVEL_METRICS.maxRss, value: peakRss, unit: 'MiB' });
      ctx.row({ system: target.system, scenario, metric: LEVEL_METRICS.spikeAccepted, value: r.spikeAccepted, unit: 'msgs/s' });
      ctx.row({ system: target.system, scenario, metric: LEVEL_METRICS.refused, value: r.refused, unit: 'msgs' });
      ctx.row({ system: target.system, scenario, metric: LEVEL_METRICS.consumed, value: r.consumed / runS, unit: 'msgs/s' });
      if (r.behind) ctx.note(`${target.system} ${scenario}: the producer fell ${r.behind} messages behind its schedule (more than ${s.window} publishes outstanding)`);
      if (peak > bound) ctx.note(`${target.system} ${scenario}: peak depth ${peak} exceeded maxLength ${bound}${target.boundCountsUnacked ? '' : ` (this system bounds ready messages only; up to prefetch ${s.prefetch} unacked come on top)`}`);
      out.set(`${target.system}, maxLength ${bound.toLocaleString('en-US')}`, r.samples);
    } catch (err) {
      ctx.note(`${err instanceof BenchCheckError ? 'VOID' : 'FAILED'} ${target.system} ${scenario}: ${(err as Error).message}`);
    }
  }
  return out;
}
