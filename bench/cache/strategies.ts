/**
 * Row 5 of bench/cache: each strategy over a SQLite file source with the memory store.
 *
 * Latency: one client runs the Zipf sequence with its 5% writes, sequentially, timing every read and
 * every write; every read is checked against the version the benchmark last wrote (a wrong value
 * voids the row), and afterwards the source must hold the last write of every key.
 *
 * Write spike: the source is throttled to `sourceCallsPerS` calls per second (a fixed cost per call,
 * one call at a time: what a commit costs a real database, whatever the number of rows in it), and
 * writes are offered at `spikeFactor` times that rate for `spikeMs`, open loop, with at most
 * `maxInFlight` writes outstanding (offers beyond are counted as refused). Reported: writes
 * acknowledged per second during the spike, source calls and rows per second, and how long the
 * source took to hold every acknowledged write after the spike.
 */
import Database from 'better-sqlite3';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from '../harness.js';
import { CacheAside } from '../../src/cache/strategies/cache-aside.js';
import { ReadThrough } from '../../src/cache/strategies/read-through.js';
import { WriteThrough } from '../../src/cache/strategies/write-through.js';
import { createMemoryStore } from '../../src/cache/stores/memory.js';
import { functionSource } from '../../src/cache/sources/function.js';
import { sqliteSource } from '../../src/cache/sources/sqlite.js';
import type { Source, SourceWrite } from '../../src/cache/types.js';
import { openWriteBack } from './archlab.js';
import { orTimeout, percentile, Samples, sleep } from './measure.js';
import { BenchVoid } from './reads.js';
import { itemOf, type Item, type Workload } from './workload.js';

export interface StrategySettings {
  ttlMs: number;
  /** Entries in the memory store. */
  capacity: number;
  /** Operations of the latency run per strategy. */
  latencyOps: number;
  /** Source calls per second the spike's source accepts. */
  sourceCallsPerS: number;
  /** Offered write rate, as a multiple of sourceCallsPerS. */
  spikeFactor: number;
  spikeMs: number;
  maxInFlight: number;
}

/** One strategy as the benchmark drives it. */
interface Driver {
  system: string;
  read(key: string): Promise<Item | undefined>;
  write(key: string, value: Item): Promise<void>;
  /** Resolves once the source holds every acknowledged write. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

const TABLE = 'items';

/** A SQLite file holding every item at version 0, to copy per run. */
export function makeBaseDb(dir: string, w: Workload): string {
  const file = join(dir, 'base.db');
  const db = new Database(file);
  db.exec(`CREATE TABLE ${TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER)`);
  const ins = db.prepare(`INSERT INTO ${TABLE} (key, value, updated_at) VALUES (?, ?, 0)`);
  db.transaction(() => {
    for (let i = 0; i < w.keys.length; i++) ins.run(w.keys[i]!, JSON.stringify(itemOf(i)));
  })();
  db.close();
  return file;
}

function freshDb(base: string, dir: string, name: string): string {
  const file = join(dir, `${name}.db`);
  copyFileSync(base, file);
  return file;
}

/** Reads the source's value of every key, straight from the file (not through the cache). */
function sourceState(file: string): Map<string, Item> {
  const db = new Database(file, { readonly: true });
  try {
    const rows = db.prepare(`SELECT key, value FROM ${TABLE}`).all() as { key: string; value: string }[];
    return new Map(rows.map((r) => [r.key, JSON.parse(r.value) as Item]));
  } finally {
    db.close();
  }
}

/** A source that admits one call at a time, each costing `callMs` first; counts calls and rows. */
function throttled(inner: Source<Item>, callMs: number): { source: Source<Item>; calls(): number; rows(): number } {
  let gate: Promise<unknown> = Promise.resolve();
  let calls = 0;
  let rows = 0;
  const serial = <T>(n: number, fn: () => Promise<T>): Promise<T> => {
    const run = gate.then(async () => {
      await sleep(callMs);
      const r = await fn();
      calls++;
      rows += n;
      return r;
    });
    gate = run.catch(() => undefined);
    return run;
  };
  const source = functionSource<Item>({
    name: 'throttled-sqlite',
    load: (key) => inner.load(key),
    write: (key, value) => serial(1, () => inner.write(key, value)),
    remove: (key) => serial(1, () => inner.remove(key)),
    writeBatch: (writes: readonly SourceWrite<Item>[]) => serial(writes.length, () => inner.writeBatch!(writes)),
    close: async () => {
      await gate;
      await inner.close?.();
    },
  });
  return { source, calls: () => calls, rows: () => rows };
}

type Build = (file: string, source: Source<Item>) => Promise<Driver>;

function builders(s: StrategySettings, spike: boolean): [string, Build][] {
  const store = () => createMemoryStore<Item>({ maxEntries: s.capacity });
  const freshness = { ttlMs: s.ttlMs };
  const out: [string, Build][] = [];
  if (!spike) {
    out.push([
      'archlab cache-aside',
      async (_file, source) => {
        const c = new CacheAside<Item>({ name: 'bench-ca', store: store(), freshness });
        const load = (k: string) => source.load(k);
        return {
          system: 'archlab cache-aside',
          read: (k) => c.getOrLoad(k, load),
          write: (k, v) => c.invalidateOnWrite(k, () => source.write(k, v)),
          drain: async () => undefined,
          close: async () => {
            await c.close();
            await source.close?.();
          },
        };
      },
    ]);
    out.push([
      'archlab read-through',
      async (_file, source) => {
        const c = new ReadThrough<Item>({ name: 'bench-rt', store: store(), freshness, source });
        return {
          system: 'archlab read-through',
          read: (k) => c.get(k),
          // Read-through owns reads only: the application writes the source, then invalidates.
          write: async (k, v) => {
            await source.write(k, v);
            await c.invalidate(k);
          },
          drain: async () => undefined,
          close: () => c.close(),
        };
      },
    ]);
  }
  out.push([
    'archlab write-through',
    async (_file, source) => {
      const c = new WriteThrough<Item>({ name: 'bench-wt', store: store(), freshness, source });
      return { system: 'archlab write-through', read: (k) => c.get(k), write: (k, v) => c.set(k, v), drain: async () => undefined, close: () => c.close() };
    },
  ]);
  const writeBack = (label: string, durability: 'none' | 'journal-always' | 'journal-50ms'): [string, Build] => [
    label,
    async (file, source) => {
      const wb = await openWriteBack({
        name: 'bench-wb',
        store: store(),
        freshness,
        source,
        durability,
        journalPath: `${file}.journal`,
        flushIntervalMs: 100,
        maxBatch: 500,
        maxDelayMs: 1000,
        maxQueueKeys: 100_000,
      });
      return { system: label, read: (k) => wb.get(k), write: (k, v) => wb.set(k, v), drain: () => wb.flush(), close: () => wb.close() };
    },
  ];
  out.push(writeBack('archlab write-back (none)', 'none'));
  out.push(writeBack('archlab write-back (journal, fsync always)', 'journal-always'));
  return out;
}

/** Checks the source file holds `expected` version of every key written; throws BenchVoid if not. */
function checkSource(system: string, file: string, versions: Int32Array, w: Workload): void {
  const state = sourceState(file);
  let wrong = 0;
  let example = '';
  for (let id = 0; id < versions.length; id++) {
    if (versions[id] === 0) continue;
    const want = itemOf(id, versions[id]);
    const got = state.get(w.keys[id]!);
    if (got?.priceCents !== want.priceCents) {
      wrong++;
      example ||= `${w.keys[id]}: source has ${JSON.stringify(got)}, last acknowledged write was ${JSON.stringify(want)}`;
    }
  }
  if (wrong) throw new BenchVoid(`${system}: the source misses ${wrong} acknowledged writes (${example})`);
}

export async function strategyLatency(ctx: BenchContext, s: StrategySettings, w: Workload, dir: string, base: string): Promise<void> {
  const scenario = 'SQLite source, memory store, 95/5 Zipf';
  ctx.note(
    `${scenario}: sqliteSource({ path }) on a file in os.tmpdir() (WAL, synchronous FULL: the library defaults), 100,000 rows; memory store of ${s.capacity.toLocaleString('en-US')} entries; cache-aside reads getOrLoad and writes invalidateOnWrite(key, source.write); write-through and write-back reads get, writes set; write-back flushIntervalMs 100, maxBatch 500, maxDelayMs 1000, the journal fsync always row with { journal: { path, fsync: 'always' } }. After each run the source must hold every key's last write (checked from the file)`,
  );
  ctx.log(`\nper strategy: ${scenario}, ${s.latencyOps.toLocaleString('en-US')} sequential operations, ${s.capacity.toLocaleString('en-US')} entries in the store`);
  for (const [label, build] of builders(s, false)) {
    const file = freshDb(base, dir, label.replace(/[^a-z0-9]+/gi, '-'));
    const source = sqliteSource<Item>({ path: file, table: TABLE });
    const d = await build(file, source);
    const versions = new Int32Array(w.keys.length);
    const reads = new Samples(s.latencyOps);
    const writes = new Samples(s.latencyOps);
    try {
      for (let i = 0; i < s.latencyOps; i++) {
        const j = i % w.seq.length;
        const id = w.seq[j]!;
        const key = w.keys[id]!;
        if (w.writes[j]) {
          const v = itemOf(id, versions[id]! + 1);
          const t0 = process.hrtime.bigint();
          await d.write(key, v);
          writes.push(Number(process.hrtime.bigint() - t0) / 1e3);
          versions[id]! += 1;
        } else {
          const t0 = process.hrtime.bigint();
          const v = await d.read(key);
          reads.push(Number(process.hrtime.bigint() - t0) / 1e3);
          if (v?.priceCents !== itemOf(id, versions[id]).priceCents || v.id !== id) {
            throw new BenchVoid(`${d.system}: read of ${key} returned ${JSON.stringify(v)}, expected version ${versions[id]}`);
          }
        }
      }
      await d.drain();
    } finally {
      await d.close();
    }
    checkSource(d.system, file, versions, w);
    if (d.system === 'archlab read-through') {
      ctx.note(`${scenario}: read-through has no write path (the cache owns reads only): its writes are source.write() then invalidate(key), as an application would do`);
    }
    for (const [metric, xs] of [['read', reads.values()], ['write', writes.values()]] as const) {
      ctx.row({ system: d.system, scenario, metric: `${metric} p50`, value: percentile(xs, 50), unit: 'µs' });
      ctx.row({ system: d.system, scenario, metric: `${metric} p99`, value: percentile(xs, 99), unit: 'µs' });
    }
  }
}

export async function writeSpike(ctx: BenchContext, s: StrategySettings, w: Workload, dir: string, base: string): Promise<void> {
  const callMs = 1000 / s.sourceCallsPerS;
  const offeredPerS = s.sourceCallsPerS * s.spikeFactor;
  const scenario = `write spike at ${s.spikeFactor}x the source`;
  ctx.log(`\n${scenario}: source takes ${s.sourceCallsPerS} calls/s (${callMs} ms each, one at a time); ${offeredPerS} writes/s offered for ${s.spikeMs} ms, at most ${s.maxInFlight} in flight`);
  // Writes only, on the keys of the Zipf sequence.
  const writeIds: number[] = [];
  for (let j = 0; j < w.seq.length && writeIds.length < offeredPerS * (s.spikeMs / 1000) * 2; j++) writeIds.push(w.seq[j]!);
  for (const [label, build] of builders(s, true)) {
    const file = freshDb(base, dir, `spike-${label.replace(/[^a-z0-9]+/gi, '-')}`);
    const inner = sqliteSource<Item>({ path: file, table: TABLE });
    const t = throttled(inner, callMs);
    const d = await build(file, t.source);
    const versions = new Int32Array(w.keys.length);
    /** Keys with a failed write: it may or may not have reached the source, so they are not checked. */
    const uncertain = new Uint8Array(w.keys.length);
    let offered = 0;
    let refused = 0;
    let acked = 0;
    let failed = 0;
    let inFlight = 0;
    let firstError: unknown;
    const idle: (() => void)[] = [];
    const t0 = performance.now();
    const calls0 = t.calls();
    const rows0 = t.rows();
    try {
      let next = 0;
      // Open loop: every tick, offer what the elapsed time says is due.
      for (;;) {
        const elapsed = performance.now() - t0;
        if (elapsed >= s.spikeMs) break;
        const due = Math.floor((elapsed / 1000) * offeredPerS);
        while (offered < due) {
          offered++;
          if (inFlight >= s.maxInFlight) {
            refused++;
            continue;
          }
          const id = writeIds[next++ % writeIds.length]!;
          const version = ++versions[id]!;
          inFlight++;
          d.write(w.keys[id]!, itemOf(id, version)).then(
            () => {
              acked++;
              if (--inFlight === 0) idle.splice(0).forEach((f) => f());
            },
            (err: unknown) => {
              failed++;
              firstError ??= err;
              uncertain[id] = 1;
              if (--inFlight === 0) idle.splice(0).forEach((f) => f());
            },
          );
        }
        await sleep(5);
      }
      const spikeS = (performance.now() - t0) / 1000;
      const ackedInSpike = acked;
      const callsInSpike = t.calls() - calls0;
      const rowsInSpike = t.rows() - rows0;
      // Bounded: at most maxInFlight writes remain, each one source call at most (and a 60 s guard).
      const drainStart = performance.now();
      if (inFlight > 0 && (await orTimeout(new Promise<void>((r) => idle.push(r)), 60_000)) === 'timeout') {
        throw new BenchVoid(`${d.system}: ${inFlight} writes still unacknowledged 60 s after the spike`);
      }
      await d.drain();
      const drainMs = performance.now() - drainStart;
      ctx.row({ system: d.system, scenario, metric: 'offered writes/s', value: offered / spikeS, unit: 'writes/s' });
      ctx.row({ system: d.system, scenario, metric: 'acked writes/s', value: ackedInSpike / spikeS, unit: 'writes/s' });
      ctx.row({ system: d.system, scenario, metric: 'refused (in-flight cap)', value: refused, unit: 'writes' });
      ctx.row({ system: d.system, scenario, metric: 'source calls/s', value: callsInSpike / spikeS, unit: 'calls/s' });
      ctx.row({ system: d.system, scenario, metric: 'source rows/s', value: rowsInSpike / spikeS, unit: 'rows/s' });
      ctx.row({ system: d.system, scenario, metric: 'drain after spike', value: drainMs, unit: 'ms' });
      if (failed) ctx.note(`${d.system} (${scenario}): ${failed} writes failed, e.g. ${String(firstError)}`);
    } finally {
      await d.close();
    }
    // Every acknowledged last write must be in the source; keys with a failed write are not checked.
    for (let id = 0; id < versions.length; id++) if (uncertain[id]) versions[id] = 0;
    checkSource(d.system, file, versions, w);
  }
  ctx.row({ system: 'source (throttled SQLite)', scenario, metric: 'capacity', value: s.sourceCallsPerS, unit: 'calls/s' });
  ctx.note(
    `${scenario}: the source is SQLite behind a throttle that admits one call at a time and sleeps ${callMs} ms before each (a per-transaction cost, so ${s.sourceCallsPerS} calls/s nominal; timer granularity makes it a little less, as write-through's calls/s shows); writes on the Zipf sequence's keys offered open loop at ${offeredPerS}/s for ${s.spikeMs} ms with at most ${s.maxInFlight} outstanding; write-back coalesces per key and sends up to 500 writes per call. Drain = from the spike's end until the source holds every acknowledged write`,
  );
}
