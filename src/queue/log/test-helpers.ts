/** Shared by the log's tests: temp dirs that go away, logs that close, records that say who they are. */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Log, type LogOptions } from './log.js';
import type { ProducerRecord } from '../types.js';
import { freshSeed } from '../../core/random.js';

/** A seed for a randomised test: ARCHLAB_SEED when set (to replay one), else fresh; printed with the test's output. */
export function seedFor(t: TestContext): number {
  const env = process.env.ARCHLAB_SEED;
  const seed = env !== undefined && env !== '' ? Number(env) : freshSeed();
  t.diagnostic(`seed ${seed} (replay with ARCHLAB_SEED=${seed})`);
  return seed;
}

export function tempDir(t: TestContext, prefix = 'archlab-log-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a log the test closes on the way out, even when it fails. No cleaner timer unless asked. */
export async function openLog(t: TestContext, opts: LogOptions): Promise<Log> {
  const log = await Log.open({ cleanerIntervalMs: 0, ...opts });
  t.after(() => log.close().catch(() => undefined));
  return log;
}

/**
 * A copy of `dir` as a crash would leave it (what is written is in the page cache, so a copy sees
 * it; nothing of a clean close is there). The copy goes away after the test.
 */
export function crashCopy(t: TestContext, dir: string): string {
  const copy = tempDir(t, 'archlab-log-crash-');
  // The copy is synchronous, but fs calls the log already handed to libuv's pool (a rolled segment
  // being finished: a snapshot renamed into place, an old one pruned) still land while it runs. A
  // crash sees one moment, so copy until the tree is the same before and after; with the event
  // loop held, nothing new can start, so this settles within a few passes.
  for (let pass = 0; pass < 20; pass++) {
    const before = treeSignature(dir);
    rmSync(copy, { recursive: true, force: true });
    copyTree(dir, copy);
    if (treeSignature(dir) === before) return copy;
  }
  throw new Error(`crashCopy: ${dir} kept changing through 20 copies`); // eslint-disable-line no-restricted-syntax
}

/** Every file under `dir` with its size and mtime, in one string; a file gone mid-walk is left out. */
function treeSignature(dir: string): string {
  const out: string[] = [];
  for (const name of (readdirSync(dir, { recursive: true }) as string[]).sort()) {
    try {
      const s = statSync(join(dir, name));
      out.push(`${name}:${s.isDirectory() ? 'd' : `${s.size}:${s.mtimeMs}`}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out.join('\n');
}

/** Copies `from` into `to`, leaving out files that vanish between the listing and the copy. */
function copyTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const src = join(from, entry.name);
    try {
      if (entry.isDirectory()) copyTree(src, join(to, entry.name));
      else copyFileSync(src, join(to, entry.name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** Record `i`: key `k<i % keys>`, a value of `size` bytes derived from i, a header naming i. */
export function rec(i: number, size = 20, keys = Infinity, timestamp?: number): ProducerRecord {
  const v = Buffer.alloc(size);
  for (let j = 0; j < size; j++) v[j] = (i * 31 + j) & 0xff;
  v.write(`#${i}#`.slice(0, size));
  const r: ProducerRecord = { key: Buffer.from(`k${keys === Infinity ? i : i % keys}`), value: v, headers: [{ key: 'i', value: Buffer.from(String(i)) }] };
  if (timestamp !== undefined) r.timestamp = timestamp;
  return r;
}
