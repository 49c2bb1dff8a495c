/** The archlab queue client: LogApi, RawLogApi and BrokerApi over one pipelined TCP/TLS connection. */
export { connectQueue, QueueClient } from './client.js';
export type { ConnectQueueOptions, ReconnectOptions, QueueClientEvent } from './client.js';
