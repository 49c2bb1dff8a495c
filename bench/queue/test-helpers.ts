/** Shared by bench/queue's own tests. */
import { logTarget, type LogClient } from './archlab-adapters.js';
import type { Target } from './runner.js';

/** A log target over `client` (an in-process Log, or a wrapper that watches it), acks=leader, batches of 1000 records or `batchBytes`. */
export function testLogTarget(client: LogClient, batchBytes: number): Target {
  return logTarget({
    system: 'test',
    durability: '',
    method: '',
    acks: 'leader',
    batchRecords: 1000,
    batchBytes,
    fetchMaxWaitMs: 10,
    fetchMaxBytes: 1 << 20,
    commitIntervalMs: 100,
    clients: async () => ({ producer: client, consumer: client }),
    close: async () => undefined,
  });
}
