/**
 * Write-back under kill -9: a child process acknowledges writes over a SQLite source as fast as it can
 * and is killed mid-stream; the parent reopens (replaying the journal), flushes, and checks that every
 * write the child acknowledged is in SQLite.
 *
 * What kill -9 can and cannot lose: the process dies, the kernel does not. Bytes the child wrote to
 * the journal with write() are in the page cache and reach the disk anyway, so fsync 'always' and
 * { everyMs } both lose nothing here; what separates them is a power loss or kernel crash, which this
 * test does not simulate (everyMs may then lose its last N ms). durability 'none' loses every
 * acknowledged write not yet flushed, which with a long flush interval is all of them.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { createMemoryStore } from '../../src/cache/stores/memory.js';
import { sqliteSource } from '../../src/cache/sources/sqlite.js';
import { WriteBack, type Durability } from '../../src/cache/strategies/write-back.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/write-back-child.ts', import.meta.url));
const KEYS = 500;

interface Run {
  /** Last acknowledged value per key. */
  acked: Map<string, number>;
  ackCount: number;
  ackPerSecond: number;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-wb-crash-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts the child, lets it acknowledge at least `minAcks` writes (or run `maxMs`), then kill -9s it. */
async function runAndKill(t: TestContext, dbPath: string, durability: Durability, flush: { flushIntervalMs: number; maxDelayMs: number }, minAcks: number, maxMs = 10_000): Promise<Run> {
  const config = { dbPath, durability, ...flush, keys: KEYS, writers: 8, valueBytes: 100 };
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const acked = new Map<string, number>();
  let ackCount = 0;
  let partial = '';
  let readyAt = 0;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let earlyExit = (_code: number | null, _signal: NodeJS.Signals | null): void => undefined;
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => {
      if (readyAt === 0) reject(new RangeError(`child never got ready: ${stderr}`));
      else resolve();
    }, maxMs + 20_000);
    earlyExit = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(deadline);
      reject(new RangeError(`child exited early (${code ?? signal}): ${stderr}`));
    };
    child.once('exit', earlyExit);
    child.stdout!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (line === 'ready') {
          readyAt = performance.now();
          setTimeout(() => {
            clearTimeout(deadline);
            resolve();
          }, maxMs).unref();
          continue;
        }
        const i = Number(line);
        const key = `k${i % KEYS}`;
        if ((acked.get(key) ?? -1) < i) acked.set(key, i);
        ackCount++;
        if (ackCount >= minAcks) {
          clearTimeout(deadline);
          resolve();
        }
      }
    });
  }).finally(() => child.off('exit', earlyExit));
  const ms = performance.now() - readyAt;
  child.kill('SIGKILL');
  await exited;
  assert.equal(child.signalCode, 'SIGKILL');
  return { acked, ackCount, ackPerSecond: Math.round((ackCount / ms) * 1000) };
}

/** Reopens after the crash (replaying the journal), flushes everything, closes. */
async function recover(dbPath: string, durability: Durability): Promise<{ replayed: number }> {
  const wb = await WriteBack.open<{ i: number }>({
    name: 'recover',
    store: createMemoryStore(),
    source: sqliteSource({ path: dbPath, table: 'kv', createTable: true }),
    writeBack: { durability },
  });
  const replayed = wb.writeBackStats().queueDepth;
  await wb.flush();
  await wb.close();
  return { replayed };
}

/** Acknowledged writes whose value (or a later one of the same key) is not in SQLite. */
function countLost(dbPath: string, acked: Map<string, number>): number {
  const db = new Database(dbPath, { readonly: true });
  try {
    const stmt = db.prepare<[string], { value: string }>('SELECT value FROM kv WHERE key = ?');
    let lost = 0;
    for (const [key, i] of acked) {
      const row = stmt.get(key);
      const stored = row === undefined ? -1 : (JSON.parse(row.value) as { i: number }).i;
      if (stored < i) lost++;
    }
    return lost;
  } finally {
    db.close();
  }
}

const FLUSH = { flushIntervalMs: 20, maxDelayMs: 100 };

test("journal with fsync 'always': kill -9 mid-stream loses no acknowledged write", { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const dbPath = join(dir, 'src.db');
  const durability: Durability = { journal: { path: join(dir, 'wb.journal'), fsync: 'always', maxBytes: 1 << 20 } };
  const run = await runAndKill(t, dbPath, durability, FLUSH, 3000);
  assert.ok(run.ackCount >= 100, `acks: ${run.ackCount}`);
  const { replayed } = await recover(dbPath, durability);
  const lost = countLost(dbPath, run.acked);
  t.diagnostic(`fsync always: ${run.ackCount} acks (${run.ackPerSecond}/s with 8 writers), ${replayed} keys replayed, ${lost} lost`);
  assert.equal(lost, 0);
});

test('journal with fsync { everyMs: 50 }: kill -9 loses nothing either (the page cache survives a process crash)', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const dbPath = join(dir, 'src.db');
  const durability: Durability = { journal: { path: join(dir, 'wb.journal'), fsync: { everyMs: 50 }, maxBytes: 1 << 20 } };
  const run = await runAndKill(t, dbPath, durability, FLUSH, 5000);
  const { replayed } = await recover(dbPath, durability);
  const lost = countLost(dbPath, run.acked);
  t.diagnostic(`fsync everyMs 50: ${run.ackCount} acks (${run.ackPerSecond}/s), ${replayed} keys replayed, ${lost} lost`);
  assert.equal(lost, 0);
});

test("durability 'none' with slow flushes: kill -9 loses the acknowledged writes not yet flushed", { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const dbPath = join(dir, 'src.db');
  const run = await runAndKill(t, dbPath, 'none', { flushIntervalMs: 60_000, maxDelayMs: 60_000 }, 2000);
  await recover(dbPath, 'none');
  const lost = countLost(dbPath, run.acked);
  t.diagnostic(`durability none: ${run.ackCount} acks (${run.ackPerSecond}/s), ${lost} of ${run.acked.size} keys lost`);
  assert.ok(lost > 0, 'the textbook risk: acknowledged writes were lost');
  assert.equal(lost, run.acked.size, 'nothing was flushed within the 60 s interval, so every acknowledged key is lost');
});

test('source locked for the whole run, then kill -9: the journal carries every acknowledged write to SQLite at recovery', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const dbPath = join(dir, 'src.db');
  // Create the table, then hold the write lock so every flush of the child fails with SQLITE_BUSY.
  const setup = sqliteSource({ path: dbPath, table: 'kv', createTable: true });
  await setup.close!();
  const locker = new Database(dbPath);
  locker.exec('BEGIN IMMEDIATE');
  t.after(() => {
    if (locker.open) {
      if (locker.inTransaction) locker.exec('ROLLBACK');
      locker.close();
    }
  });
  const durability: Durability = { journal: { path: join(dir, 'wb.journal'), fsync: 'always', maxBytes: 4 << 20 } };
  const run = await runAndKill(t, dbPath, durability, FLUSH, 1500);
  const count = locker.prepare('SELECT count(*) AS n FROM kv').get() as { n: number };
  assert.equal(count.n, 0, 'no flush got through the lock');
  locker.exec('ROLLBACK');
  locker.close();
  const { replayed } = await recover(dbPath, durability);
  assert.equal(replayed, run.acked.size, 'every acknowledged key came back from the journal');
  assert.equal(countLost(dbPath, run.acked), 0);
  t.diagnostic(`source locked: ${run.ackCount} acks, ${replayed} keys replayed, 0 lost`);
});
