/**
 * Shared setup of the tests that run against the machine's Redis: every test file uses a key prefix
 * of its own (unique per run) and deletes everything under it when it ends.
 */
import { after } from 'node:test';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = 'redis://127.0.0.1:6379';

/** A key prefix unique to this run: `archlab:test:<name>:<pid>:<random>:`. */
export function runPrefix(name: string): string {
  return `archlab:test:${name}:${process.pid}:${randomBytes(4).toString('hex')}:`;
}

/** Deletes every key under `prefix` (SCAN + UNLINK, glob characters in the prefix escaped). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', prefix.replace(/[*?[\]\\]/g, '\\$&') + '*', 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== '0');
}

export interface RedisTestRun {
  /** This file's key prefix (see runPrefix). */
  prefix: string;
  /** A plain client for inspecting and seeding keys; undefined when the test is skipped. */
  admin: Redis | undefined;
  /** Deletes every key under `prefix` (a no-op when skipped). */
  deletePrefix(prefix: string): Promise<void>;
}

/**
 * A run prefix and an admin client for one test file; when the file ends, everything under the
 * prefix is deleted and the client disconnected. Call at the top level of the file, with the
 * result of needService(REDIS): nothing connects when that is a skip message.
 */
export function redisTestRun(name: string, skip: string | false): RedisTestRun {
  const prefix = runPrefix(name);
  const admin = skip ? undefined : new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const run: RedisTestRun = {
    prefix,
    admin,
    deletePrefix: async (p) => {
      if (admin) await deletePrefix(admin, p);
    },
  };
  after(async () => {
    await run.deletePrefix(prefix);
    admin?.disconnect();
  });
  return run;
}
