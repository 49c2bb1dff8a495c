/**
 * Composition: opens the embedded log and broker a server config asks for. The only place the server
 * names the concrete engines; everything else talks to LogApi/RawLogApi and BrokerApi. The engines
 * are imported when needed, so a server given its own engines (tests, embedding) never loads them.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { QueueServerConfig } from '../config.js';
import type { BrokerApi } from '../types.js';
import type { LogEngine } from './connection.js';

export async function openLog(config: QueueServerConfig, _logger: Logger): Promise<LogEngine> {
  const { Log } = await import('../log/index.js');
  const t = config.topics;
  return Log.open({
    dataDir: join(config.dataDir, 'log'),
    defaults: t.defaults,
    autoCreateTopics: t.autoCreate,
    maxTopics: t.maxTopics,
    cleanerIntervalMs: t.cleanerIntervalMs,
    fetchMaxWaitMs: config.connections.maxFetchWaitMs,
    ...(t.maxDiskBytes === undefined ? {} : { maxDiskBytes: t.maxDiskBytes }),
  });
}

export async function openBroker(config: QueueServerConfig, logger: Logger): Promise<BrokerApi> {
  const { Broker } = await import('../broker/index.js');
  const b = config.broker;
  return Broker.open({
    dataDir: join(config.dataDir, 'broker'),
    fsync: b.fsync,
    fsyncIntervalMs: b.fsyncIntervalMs,
    defaults: b.defaults,
    autoCreateQueues: b.autoCreateQueues,
    maxQueues: b.maxQueues,
    maxMessageBytes: b.maxMessageBytes,
    logger,
    ...(b.maxDiskBytes === undefined ? {} : { maxDiskBytes: b.maxDiskBytes }),
  });
}
