/**
 * archlab/queue: a durable partitioned log (Kafka's model) and a routed queue broker (RabbitMQ's and
 * SQS's model), embedded or served over TCP, with one client API (`QueueDriver`) on four engines:
 * embedded, the archlab TCP server, RabbitMQ and NATS JetStream. See docs/queue.md.
 */
export * from './types.js';
export { QueueError, isQueueError, checkName } from './errors.js';
export type { QueueErrorCode } from './errors.js';

export { Log, encodeRecordBatch, decodeRecordBatch, decodeRecordBatches, murmur2, partitionForKey, compressionAvailable, DEFAULT_TOPIC_CONFIG } from './log/index.js';
export type { LogOptions, LogStats } from './log/index.js';
export { Broker, DEFAULT_QUEUE_CONFIG } from './broker/index.js';
export type { BrokerOptions, BrokerStats, BrokerSubscription } from './broker/index.js';

export { startQueueServer } from './server/index.js';
export type { QueueServerHandle, QueueServerOptions } from './server/index.js';
export { connectQueue, QueueClient } from './client/index.js';
export type { ConnectQueueOptions, ReconnectOptions, QueueClientEvent } from './client/index.js';
export { loadQueueConfig, queueConfig, DEFAULT_DATA_DIR } from './config.js';
export type { QueueServerConfig, QueueServerConfigInput } from './config.js';

export {
  openDriver,
  embeddedDriver,
  archlabDriver,
  rabbitmqDriver,
  natsDriver,
  engineDriver,
  ENGINE_CAPABILITIES,
  RABBITMQ_CAPABILITIES,
  NATS_CAPABILITIES,
} from './drivers/index.js';
export type { DriverSpec, EngineDriver, EmbeddedDriverOptions, ArchlabDriverOptions, RabbitmqDriverOptions, NatsDriverOptions } from './drivers/index.js';
