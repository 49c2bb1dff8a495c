/**
 * The process bench/cache kills with SIGKILL: a WriteBack over a SQLite file, acknowledging writes
 * as fast as it can and printing each acknowledged one to stdout.
 *
 *   node --import tsx bench/cache/writeback-child.ts --db FILE --acks FILE --durability none|always|everyMs:N \
 *     [--journal FILE] [--writers 8] [--keys 1000] [--flush-interval-ms 100] [--max-ms 30000]
 *
 * `--writers` loops run concurrently, each on its own keys (`w<writer>k<n mod keys>`) and writing
 * the values 1, 2, 3... in order, so for every key the last acknowledged value is the highest one.
 * Prints `ready` on stdout once open, then appends `<writer> <value> <epoch ms>` to the --acks file after each
 * set() resolves, with a write(2) of its own: the line is in the page cache, which survives SIGKILL,
 * before the next write starts (stdout would not do: to a parent it is a socket, written
 * asynchronously, and a killed process loses what it had queued). Each writer yields to the event
 * loop between writes, as a server does between requests, so the flusher's timers run. Runs until
 * killed, or `--max-ms` as a bound if nobody kills it.
 */
import { openSync, writeSync } from 'node:fs';
import { createMemoryStore } from '../../src/cache/stores/memory.js';
import { sqliteSource } from '../../src/cache/sources/sqlite.js';
import { WriteBack, type Durability } from '../../src/cache/strategies/write-back.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback?: string): string => {
  const i = args.indexOf(name);
  const v = i >= 0 ? args[i + 1] : fallback;
  if (v === undefined) {
    process.stderr.write(`writeback-child: ${name} is required\n`);
    process.exit(2);
  }
  return v;
};

const db = opt('--db');
const acks = openSync(opt('--acks'), 'a');
const mode = opt('--durability');
const writers = Number(opt('--writers', '8'));
const keys = Number(opt('--keys', '1000'));
const flushIntervalMs = Number(opt('--flush-interval-ms', '100'));
const maxMs = Number(opt('--max-ms', '30000'));

let durability: Durability = 'none';
if (mode !== 'none') {
  const journal = opt('--journal');
  durability = { journal: { path: journal, fsync: mode === 'always' ? 'always' : { everyMs: Number(mode.slice('everyMs:'.length)) } } };
}

const wb = await WriteBack.open<number>({
  name: 'bench-kill',
  store: createMemoryStore<number>({ maxEntries: writers * keys }),
  source: sqliteSource<number>({ path: db, table: 'kv', createTable: true }),
  freshness: { ttlMs: 600_000 },
  writeBack: { durability, flushIntervalMs, maxDelayMs: Math.max(1000, flushIntervalMs * 2), maxBatch: 10_000, maxQueueKeys: 100_000 },
});

process.stdout.write('ready\n');
const stopAt = performance.now() + maxMs;
await Promise.all(
  Array.from({ length: writers }, async (_, w) => {
    for (let n = 1; performance.now() < stopAt; n++) {
      await wb.set(`w${w}k${n % keys}`, n);
      writeSync(acks, `${w} ${n} ${(performance.timeOrigin + performance.now()).toFixed(2)}\n`);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }),
);
await wb.close();
