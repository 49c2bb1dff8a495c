/**
 * Row 3 of bench/cache: cross-process invalidation of the tiered store. K child processes
 * (invalidation-child.ts) each hold a key in L1; the parent invalidates it through its own tiered
 * store; each child reports when its L1 copy was dropped. Visibility latency = child's drop time -
 * the parent's time just before invalidate() was called (both performance.timeOrigin +
 * performance.now(), comparable across processes on one machine). Every wait is bounded; children
 * are killed in finally.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { makeEntry, DEFAULT_FRESHNESS } from '../../src/cache/policy.js';
import { createTieredStore } from '../../src/cache/stores/tiered.js';
import { SeededRandom } from '../../src/core/random.js';
import { ROOT, type BenchContext } from '../harness.js';
import { epochMs, percentile, sleep } from './measure.js';
import { BenchVoid } from './reads.js';
import type { RedisTarget } from './redis.js';
import { itemOf, type Item } from './workload.js';

export interface InvalidationSettings {
  children: number;
  rounds: number;
  /** Pause between rounds, ms. */
  gapMs: number;
  /** Longest wait for every child's report of one round, ms. */
  roundTimeoutMs: number;
}

type Msg =
  | { type: 'ready'; pid: number }
  | { type: 'armed'; round: number }
  | { type: 'dropped'; round: number; atMs: number; l1Empty: boolean }
  | { type: 'error'; message: string };

/** Waits until `pred` is true of the messages seen, or `ms` passes; returns whether it became true. */
async function until(pred: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) return false;
    await sleep(1);
  }
  return true;
}

export async function crossProcessInvalidation(ctx: BenchContext, s: InvalidationSettings, redis: RedisTarget & { prefix: string }): Promise<void> {
  const scenario = `cross-process invalidation, ${s.children} processes`;
  ctx.log(`\n${scenario}: ${s.rounds} invalidations, ${s.gapMs} ms apart`);
  const prefix = `${redis.prefix}inv:`;
  const parent = createTieredStore<Item>({ l1: { maxEntries: 1000 }, l2: { url: `redis://${redis.host}:${redis.port}`, prefix } });
  const children: ChildProcess[] = [];
  const errors: string[] = [];
  const armed = new Map<number, number>();
  const drops = new Map<number, { atMs: number; l1Empty: boolean }[]>();
  try {
    await parent.ready(10_000);
    // Seed every round's key in L2 only (RedisStore.set publishes nothing), so no message but the
    // measured invalidation ever names a key a child holds.
    const keys = Array.from({ length: s.rounds }, (_, i) => `inv-${i}`);
    const rnd = new SeededRandom(7);
    for (const [i, key] of keys.entries()) await parent.l2.set(key, makeEntry(itemOf(i), { ...DEFAULT_FRESHNESS, ttlMs: 600_000 }, Date.now(), rnd));

    let ready = 0;
    for (let c = 0; c < s.children; c++) {
      const child = fork(join(ROOT, 'bench', 'cache', 'invalidation-child.ts'), ['--redis', `${redis.host}:${redis.port}`, '--prefix', prefix], {
        cwd: ROOT,
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      child.on('message', (m: Msg) => {
        if (m.type === 'ready') ready++;
        else if (m.type === 'armed') armed.set(m.round, (armed.get(m.round) ?? 0) + 1);
        else if (m.type === 'dropped') {
          const list = drops.get(m.round) ?? [];
          list.push({ atMs: m.atMs, l1Empty: m.l1Empty });
          drops.set(m.round, list);
        } else if (m.type === 'error' && errors.length < 20) errors.push(m.message);
      });
    }
    if (!(await until(() => ready === s.children || errors.length > 0, 30_000))) throw new BenchVoid(`only ${ready} of ${s.children} invalidation children became ready`);
    if (errors.length) throw new BenchVoid(`invalidation child: ${errors[0]}`);

    const latencies: number[] = [];
    let missed = 0;
    let notDropped = 0;
    for (let round = 0; round < s.rounds; round++) {
      const key = keys[round]!;
      for (const c of children) c.send({ type: 'arm', round, key });
      if (!(await until(() => armed.get(round) === s.children || errors.length > 0, s.roundTimeoutMs))) throw new BenchVoid(`round ${round}: only ${armed.get(round) ?? 0} of ${s.children} children armed`);
      if (errors.length) throw new BenchVoid(`invalidation child: ${errors[0]}`);
      const t0 = epochMs();
      await parent.invalidate(key);
      await until(() => (drops.get(round)?.length ?? 0) === s.children, s.roundTimeoutMs);
      const got = drops.get(round) ?? [];
      missed += s.children - got.length;
      for (const d of got) {
        if (!d.l1Empty) notDropped++;
        latencies.push(d.atMs - t0);
      }
      drops.delete(round);
      armed.delete(round);
      await sleep(s.gapMs);
    }
    if (notDropped) throw new BenchVoid(`${notDropped} children still held the key in L1 after its invalidation arrived`);
    const system = 'archlab tiered';
    ctx.row({ system, scenario, metric: 'visibility p50', value: percentile(latencies, 50), unit: 'ms' });
    ctx.row({ system, scenario, metric: 'visibility p99', value: percentile(latencies, 99), unit: 'ms' });
    ctx.row({ system, scenario, metric: 'visibility max', value: Math.max(...latencies), unit: 'ms' });
    ctx.row({ system, scenario, metric: 'drops seen', value: latencies.length, unit: 'drops' });
    ctx.row({ system, scenario, metric: `drops missed (none within ${s.roundTimeoutMs} ms)`, value: missed, unit: 'drops' });
    ctx.note(
      `${scenario}: ${s.children} child processes (node --import tsx bench/cache/invalidation-child.ts), each a createTieredStore on the same Redis prefix; per round each child copies the round's key from Redis into L1 (checked), then the parent calls invalidate(key) on its own tiered store (DEL + PUBLISH in one Lua script); a child reports when TieredStore.onRemoteInvalidation fires (after its L1 dropped the key, checked). Latency = child's drop time - parent's time before invalidate(), both performance.timeOrigin + performance.now(); ${s.rounds} rounds ${s.gapMs} ms apart. Peers' buses were not measured`,
    );
  } finally {
    for (const c of children) {
      if (c.connected) c.send({ type: 'exit' });
    }
    await until(() => children.every((c) => c.exitCode !== null || c.signalCode !== null), 2000);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await parent.close();
  }
}
