/**
 * The log (Kafka's model), embedded: topics of partitions in segment files under one data
 * directory, record batches as the unit of storage and transfer, idempotent producers, retention,
 * compaction, recovery after kill -9, and consumer groups (./groups).
 *
 * - record-batch.ts: the binary batch format, shared by disk, the TCP protocol and the client.
 * - murmur2.ts: Kafka's key partitioner.
 * - log.ts: `Log`, implementing LogApi and RawLogApi.
 * - partition.ts, segment.ts, index-file.ts: the storage shell; policy.ts and producer-state.ts: its pure decisions.
 */
export { Log } from './log.js';
export type { LogOptions, LogStats } from './log.js';
export type { LogCounters, RawFetch } from './partition.js';
export {
  BATCH_HEADER_BYTES,
  BATCH_LOG_OVERHEAD_BYTES,
  BATCH_MAGIC,
  batchBaseOffsetAt,
  batchLastOffsetAt,
  batchMaxTimestampAt,
  batchSizeAt,
  decodeRecordBatch,
  decodeRecordBatches,
  encodeRecordBatch,
  recordBytesInBatch,
  readBatchHeader,
  setBaseOffset,
  validateRecords,
  verifyBatch,
} from './record-batch.js';
export type { BatchHeader, EncodeOptions, TimestampType } from './record-batch.js';
export { compressionAvailable } from './codecs.js';
export { murmur2, toPositive, partitionForKey } from './murmur2.js';
export { DEFAULT_TOPIC_CONFIG, MAX_PARTITIONS_PER_TOPIC, resolveTopicConfig, zTopicConfig } from './config.js';
export { GroupCoordinator } from './groups/index.js';
export type { GroupCoordinatorOptions, GroupCoordinatorStats } from './groups/index.js';
