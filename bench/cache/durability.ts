/**
 * Row 6 of bench/cache: acknowledged writes lost to kill -9, per write-back durability option.
 *
 * A child process (writeback-child.ts) acknowledges writes as fast as it can and logs each one to a file;
 * after `runMs` the parent kills it with SIGKILL, reopens a WriteBack on the same SQLite file and
 * journal (open() replays the journal), flushes, closes, and reads the table: an acknowledged write
 * `(key, n)` is lost when the key's value in SQLite is below n (values per key only grow, so a
 * later acknowledged write of the key covers an earlier one).
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createMemoryStore } from '../../src/cache/stores/memory.js';
import { sqliteSource } from '../../src/cache/sources/sqlite.js';
import { WriteBack, type Durability } from '../../src/cache/strategies/write-back.js';
import { ROOT, type BenchContext } from '../harness.js';
import { epochMs, orTimeout, sleep } from './measure.js';
import { BenchVoid } from './reads.js';

export interface DurabilitySettings {
  /** How long the child acknowledges writes before SIGKILL, ms. */
  runMs: number;
  writers: number;
  keysPerWriter: number;
  /** The flusher's interval in the child; long, so 'none' shows the textbook loss. */
  flushIntervalMs: number;
}

export const OPTIONS = [
  { label: 'none', mode: 'none' },
  { label: 'journal, fsync always', mode: 'always' },
  { label: 'journal, fsync every 50 ms', mode: 'everyMs:50' },
] as const;

interface Outcome {
  acked: number;
  lost: number;
  lostKeys: number;
  /** From the first lost acknowledgement to the kill, ms (0 when nothing was lost). */
  windowMs: number;
}

async function runChild(ctx: BenchContext, s: DurabilitySettings, dir: string, mode: string): Promise<{ lines: string; db: string; journal: string; killedAtMs: number }> {
  const db = join(dir, `kill-${mode.replace(/[^a-z0-9]/gi, '')}.db`);
  const journal = `${db}.journal`;
  const acks = `${db}.acks`;
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'bench', 'cache', 'writeback-child.ts'),
      '--db',
      db,
      '--acks',
      acks,
      '--durability',
      mode,
      '--journal',
      journal,
      '--writers',
      String(s.writers),
      '--keys',
      String(s.keysPerWriter),
      '--flush-interval-ms',
      String(s.flushIntervalMs),
      '--max-ms',
      String(s.runMs + 30_000),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => {
    if (err.length < 4000) err += b.toString();
  });
  let killedAtMs: number;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    // Bounded wait for `ready` (tsx start-up and the open).
    const readyBy = performance.now() + 30_000;
    while (!Buffer.concat(out).includes('ready\n')) {
      if (child.exitCode !== null || performance.now() > readyBy) {
        throw new BenchVoid(`writeback-child (${mode}) never became ready: ${err.trim().slice(0, 500)}`);
      }
      await sleep(10);
    }
    await sleep(s.runMs);
    killedAtMs = epochMs();
    child.kill('SIGKILL');
    await orTimeout(exited, 10_000);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  ctx.log(`  ${mode}: child killed with ${child.signalCode ?? `exit ${child.exitCode}`}`);
  return { lines: readFileSync(acks, 'utf8'), db, journal, killedAtMs };
}

/** Reopens the write-back (replaying the journal), flushes everything and closes. */
async function recover(db: string, journal: string, mode: string): Promise<void> {
  const durability: Durability = mode === 'none' ? 'none' : { journal: { path: journal, fsync: 'always' } };
  const wb = await WriteBack.open<number>({
    name: 'bench-recover',
    store: createMemoryStore<number>({ maxEntries: 100_000 }),
    source: sqliteSource<number>({ path: db, table: 'kv', createTable: true }),
    freshness: { ttlMs: 600_000 },
    writeBack: { durability },
  });
  await wb.flush();
  await wb.close();
}

function count(lines: string, db: string, s: DurabilitySettings, killedAtMs: number): Outcome {
  const conn = new Database(db, { readonly: true });
  let stored: Map<string, number>;
  try {
    const rows = conn.prepare('SELECT key, value FROM kv').all() as { key: string; value: string }[];
    stored = new Map(rows.map((r) => [r.key, Number(JSON.parse(r.value))]));
  } finally {
    conn.close();
  }
  let acked = 0;
  let lost = 0;
  const lostKeys = new Set<string>();
  let firstLostMs = Infinity;
  for (const line of lines.split('\n')) {
    // A line cut by the kill has no newline after it and fails the pattern: not counted as acked.
    const m = /^(\d+) (\d+) (\d+\.\d+)$/.exec(line);
    if (!m) continue;
    acked++;
    const n = Number(m[2]);
    const key = `w${m[1]}k${n % s.keysPerWriter}`;
    if ((stored.get(key) ?? 0) < n) {
      lost++;
      lostKeys.add(key);
      firstLostMs = Math.min(firstLostMs, Number(m[3]));
    }
  }
  return { acked, lost, lostKeys: lostKeys.size, windowMs: lost ? Math.max(0, killedAtMs - firstLostMs) : 0 };
}

export async function killLoss(ctx: BenchContext, s: DurabilitySettings, dir: string): Promise<void> {
  ctx.log(`\nkill -9: per durability option, a child acknowledges writes (${s.writers} concurrent writers, flush every ${s.flushIntervalMs} ms) and is killed after ${s.runMs} ms; the three run at once`);
  // At once: the outcome (lost or not) does not depend on speed, and it keeps --quick short.
  const runs = await Promise.all(OPTIONS.map((o) => runChild(ctx, s, dir, o.mode)));
  for (const [i, o] of OPTIONS.entries()) {
    const { lines, db, journal, killedAtMs } = runs[i]!;
    await recover(db, journal, o.mode);
    const r = count(lines, db, s, killedAtMs);
    if (r.acked === 0) throw new BenchVoid(`writeback-child (${o.label}) acknowledged no writes before the kill`);
    const scenario = `kill -9 after ${s.runMs} ms, durability ${o.label}`;
    ctx.row({ system: 'archlab write-back', scenario, metric: 'acked writes', value: r.acked, unit: 'writes' });
    ctx.row({ system: 'archlab write-back', scenario, metric: 'acked writes lost', value: r.lost, unit: 'writes' });
    ctx.row({ system: 'archlab write-back', scenario, metric: 'keys with a lost write', value: r.lostKeys, unit: 'keys' });
    ctx.row({ system: 'archlab write-back', scenario, metric: 'lost fraction', value: r.lost / r.acked, unit: 'fraction' });
    ctx.row({ system: 'archlab write-back', scenario, metric: 'loss window', value: r.windowMs, unit: 'ms' });
  }
  ctx.note(
    `kill -9: ${s.writers} writers per child, each on its own ${s.keysPerWriter} keys with growing values; flushIntervalMs ${s.flushIntervalMs}, maxBatch 10,000 (every pending key goes in one flush), so without a journal the writes since the last flush are the loss. An acked write counts as lost when SQLite ends with a lower value for its key; the loss window runs from the first lost acknowledgement to the kill. Acks are logged by the child with write(2) to a file (page cache survives kill -9)`,
  );
}
