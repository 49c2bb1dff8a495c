/**
 * The `archlab` driver: the log and the broker of an archlab queue server, over one TCP (or TLS)
 * connection of the TypeScript client (src/queue/client: pipelined requests, automatic reconnect).
 * close() closes the connection.
 */
import { connectQueue, type ConnectQueueOptions } from '../client/index.js';
import { badArgument } from './common.js';
import { engineDriver, type EngineDriver, type EngineDriverOptions } from './engine.js';

export interface ArchlabDriverOptions extends Omit<EngineDriverOptions, 'onClose'> {
  host: string;
  port: number;
  /** The server's auth token, when it has one. */
  token?: string;
  /** More client options (TLS, timeouts, reconnect, limits); see ConnectQueueOptions. */
  client?: Omit<ConnectQueueOptions, 'host' | 'port' | 'token'>;
}

/** Connects to an archlab queue server and returns a driver that owns the connection. */
export async function archlabDriver(options: ArchlabDriverOptions): Promise<EngineDriver> {
  if (typeof options?.host !== 'string' || options.host === '') throw badArgument('archlab driver: host is required');
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535) throw badArgument(`archlab driver: port must be 1-65535, got ${String(options.port)}`);
  const client = await connectQueue({
    ...options.client,
    host: options.host,
    port: options.port,
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  return engineDriver('archlab', client, client, { ...options, onClose: () => client.close() });
}
