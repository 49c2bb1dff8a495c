/** Shared by the log's tests: temp dirs that go away, logs that close, records that say who they are. */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
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
  cpSync(dir, copy, { recursive: true });
  return copy;
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
