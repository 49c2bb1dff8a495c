/** The Redis every Redis row uses (127.0.0.1:6379 unless ARCHLAB_BENCH_REDIS says host:port), its availability, and cleanup. */
import { Redis } from 'ioredis';

export interface RedisTarget {
  host: string;
  port: number;
}

export function redisTarget(): RedisTarget {
  const [host, port] = (process.env.ARCHLAB_BENCH_REDIS ?? '127.0.0.1:6379').split(':');
  return { host: host || '127.0.0.1', port: Number(port) || 6379 };
}

/** Undefined when Redis answers PING within `timeoutMs`, else why not. */
export async function redisDown(t: RedisTarget, timeoutMs = 1000): Promise<string | undefined> {
  const r = new Redis({ host: t.host, port: t.port, lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const pong = await r.ping();
    return pong === 'PONG' ? undefined : `PING answered ${pong}`;
  } catch (err) {
    return (err as Error).message;
  } finally {
    r.disconnect();
  }
}

/** Deletes every key containing `marker` (the run id) and returns how many; bounded by SCAN steps. */
export async function deleteKeysWith(t: RedisTarget, marker: string): Promise<number> {
  const r = new Redis({ host: t.host, port: t.port, maxRetriesPerRequest: 1, connectTimeout: 1000 });
  r.on('error', () => undefined);
  let deleted = 0;
  try {
    let cursor = '0';
    // Bounded: a SCAN walk ends when the cursor returns to 0; the step bound guards a server that misbehaves.
    for (let step = 0; step < 100_000; step++) {
      const [next, keys] = await r.scan(cursor, 'MATCH', `*${marker}*`, 'COUNT', 1000);
      if (keys.length) deleted += await r.unlink(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    r.disconnect();
  }
  return deleted;
}
