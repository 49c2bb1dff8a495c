/**
 * archlab/queue broker: the embedded RabbitMQ/SQS-style broker (exchanges, bindings, queues with
 * competing consumers, acks, visibility timeouts, dead-lettering, TTLs, delays, priorities, durable
 * queues in a journal). See broker.ts for the semantics and journal.ts for durability.
 */
export { Broker, DISPATCH_BUDGET, DISPATCH_PER_QUEUE, MAX_DEAD_LETTER_HOPS, type BrokerStats, type BrokerSubscription } from './broker.js';
export {
  DEFAULT_QUEUE_CONFIG,
  DEFAULT_FSYNC_INTERVAL_MS,
  DEFAULT_MAX_QUEUES,
  DEFAULT_MAX_EXCHANGES,
  DEFAULT_MAX_BINDINGS,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_CONSUMERS,
  DEFAULT_COMPACT_MIN_BYTES,
  DEFAULT_PREFETCH,
  MAX_PREFETCH,
  MAX_PRIORITY,
  MAX_HEADER_BYTES,
  resolveQueueConfig,
  resolveExchangeConfig,
  type BrokerOptions,
  type BrokerFsync,
} from './options.js';
export { type JournalIo, type JournalFile, type JournalStats, JOURNAL_FILE, DISK_FULL_RETRY_MS } from './journal.js';
export type { DeathReason, QueueCounters } from './queue-core.js';
export { TopicTrie, topicMatchesReference } from './topic-trie.js';
