/**
 * The `embedded` driver: the log and the broker in this process, under one data directory
 * (`<dataDir>/log` and `<dataDir>/broker`), nothing to install. close() closes both.
 */
import { join } from 'node:path';
import { Broker, type BrokerOptions } from '../broker/index.js';
import { Log, type LogOptions } from '../log/index.js';
import { badArgument } from './common.js';
import { engineDriver, type EngineDriver, type EngineDriverOptions } from './engine.js';

export interface EmbeddedDriverOptions extends Omit<EngineDriverOptions, 'onClose'> {
  /** Directory of the log (`log/`) and the broker (`broker/`); created when missing. Required. */
  dataDir: string;
  /** Options of the log beyond its dataDir (see LogOptions). */
  log?: Omit<LogOptions, 'dataDir'>;
  /** Options of the broker beyond its dataDir (see BrokerOptions: fsync policy, limits). */
  broker?: Omit<BrokerOptions, 'dataDir'>;
}

/** Opens the embedded log and broker under `dataDir` and returns a driver that owns them. */
export async function embeddedDriver(options: EmbeddedDriverOptions): Promise<EngineDriver> {
  if (typeof options?.dataDir !== 'string' || options.dataDir === '') throw badArgument('embedded driver: dataDir is required');
  const shared = { ...(options.clock === undefined ? {} : { clock: options.clock }), ...(options.logger === undefined ? {} : { logger: options.logger }) };
  const log = await Log.open({ ...shared, ...options.log, dataDir: join(options.dataDir, 'log') });
  let broker: Broker;
  try {
    broker = await Broker.open({ ...shared, ...options.broker, dataDir: join(options.dataDir, 'broker') });
  } catch (err) {
    await log.close().catch(() => undefined);
    throw err;
  }
  return engineDriver('embedded', log, broker, {
    ...options,
    onClose: async () => {
      await broker.close();
      await log.close();
    },
  });
}
