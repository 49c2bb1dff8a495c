/**
 * Redis Streams through ioredis: XADD on one connection (auto-pipelined, each reply is the ack),
 * a consumer group read with XREADGROUP (COUNT = the consumer window, BLOCK 100 ms) on a second
 * connection, and one XACK per batch read carrying every id of the batch.
 *
 * Durability: the Redis on this machine runs with `--save "" --appendonly no`, so an acknowledged
 * XADD is in memory only; the bench reads CONFIG GET to say what the server it measured does.
 * ARCHLAB_BENCH_REDIS (default 127.0.0.1:6379) says where (the same variable bench/cache uses).
 */
import { Redis } from 'ioredis';
import { redisTarget } from '../cache/redis.js';
import type { RunMode, Session, Target } from './runner.js';

export interface RedisOptions {
  /** Entries per XREADGROUP call. */
  prefetch: number;
}

/** 'in memory (no AOF, no RDB snapshots)', or the persistence the server reports. */
export async function redisPersistence(): Promise<string> {
  const t = redisTarget();
  const r = new Redis({ host: t.host, port: t.port, lazyConnect: true, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const aof = ((await r.config('GET', 'appendonly')) as string[])[1];
    const fsync = ((await r.config('GET', 'appendfsync')) as string[])[1];
    const save = ((await r.config('GET', 'save')) as string[])[1];
    if (aof === 'yes') return `AOF, appendfsync ${fsync}`;
    return save ? `in memory, RDB snapshots (save ${save}), no AOF` : 'in memory (no AOF, no RDB snapshots)';
  } finally {
    r.disconnect();
  }
}

class RedisStreamsTarget implements Target {
  readonly system = 'Redis Streams';
  readonly durability: string;
  readonly method: string;
  private producer: Redis | undefined;
  private consumer: Redis | undefined;

  constructor(
    private readonly o: RedisOptions,
    persistence: string,
  ) {
    this.durability = persistence;
    this.method = `${this.system}: ioredis, XADD auto-pipelined on one connection, XREADGROUP COUNT ${o.prefetch} BLOCK 100 on a second connection, one XACK per batch read`;
  }

  private conns(): { p: Redis; c: Redis } {
    const t = redisTarget();
    if (!this.producer) {
      this.producer = new Redis({ host: t.host, port: t.port, enableAutoPipelining: true, maxRetriesPerRequest: 1 });
      this.producer.on('error', () => undefined);
    }
    if (!this.consumer) {
      this.consumer = new Redis({ host: t.host, port: t.port, maxRetriesPerRequest: 1 });
      this.consumer.on('error', () => undefined);
    }
    return { p: this.producer, c: this.consumer };
  }

  async open(name: string, _mode: RunMode): Promise<Session> {
    const { p, c } = this.conns();
    const group = 'bench';
    await p.xgroup('CREATE', name, group, '0', 'MKSTREAM');
    const count = String(this.o.prefetch);
    return {
      async send(body: Buffer): Promise<void> {
        await p.xadd(name, '*', 'd', body);
      },
      async consume(onMessage) {
        let stopped = false;
        // One loop, bounded per call by COUNT and BLOCK; it ends within one BLOCK after stop().
        const loop = (async () => {
          while (!stopped) {
            const reply = (await c.callBuffer('XREADGROUP', 'GROUP', group, 'c1', 'COUNT', count, 'BLOCK', '100', 'STREAMS', name, '>')) as [Buffer, [Buffer, Buffer[]][]][] | null;
            if (!reply) continue;
            const ids: Buffer[] = [];
            for (const [, entries] of reply) {
              for (const [id, fields] of entries) {
                ids.push(id);
                const body = fields[1];
                if (body) onMessage(body);
              }
            }
            if (ids.length) await c.xack(name, group, ...ids);
          }
        })();
        let loopError: unknown;
        loop.catch((err: unknown) => {
          loopError = err;
        });
        return {
          async stop() {
            stopped = true;
            await loop.catch(() => undefined);
            if (loopError) throw loopError;
          },
        };
      },
      async drop() {
        await p.del(name);
      },
    };
  }

  async close(): Promise<void> {
    this.producer?.disconnect();
    this.consumer?.disconnect();
    this.producer = this.consumer = undefined;
  }
}

export function redisStreamsTarget(o: RedisOptions, persistence: string): Target {
  return new RedisStreamsTarget(o, persistence);
}
