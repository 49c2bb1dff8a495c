/**
 * Topic configuration: defaults (Kafka's, where Kafka has one), validation, and the zod schema a
 * server's YAML can embed (durations and sizes as strings with units, parsed by core/units).
 */
import { z } from 'zod';
import { zDuration, zSize } from '../../core/units.js';
import { QueueError } from '../errors.js';
import type { CleanupPolicy, TopicConfig } from '../types.js';

const MiB = 1024 * 1024;
const DAY_MS = 24 * 3600 * 1000;

/** Most partitions one topic may have. */
export const MAX_PARTITIONS_PER_TOPIC = 1024;
/** Smallest segment: below this the per-segment files cost more than the data. */
export const MIN_SEGMENT_BYTES = 1024;

export const DEFAULT_TOPIC_CONFIG: Readonly<TopicConfig> = Object.freeze({
  partitions: 1,
  segmentBytes: 64 * MiB,
  segmentMs: 7 * DAY_MS,
  retentionBytes: -1,
  retentionMs: 7 * DAY_MS,
  cleanupPolicy: 'delete',
  deleteRetentionMs: DAY_MS,
  maxMessageBytes: MiB,
});

const CLEANUP_POLICIES: readonly CleanupPolicy[] = ['delete', 'compact', 'compact,delete'];

function bad(field: string, expected: string, got: unknown): QueueError {
  return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `topic config ${field} must be ${expected}, got ${JSON.stringify(got)}`, {
    details: { field, value: got },
  });
}

function intIn(field: keyof TopicConfig, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw bad(field, `an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '2^53' : max}]`, v);
  }
  return v;
}

/**
 * A whole topic config from `partial` over `base` (the log's defaults over DEFAULT_TOPIC_CONFIG).
 * Throws ARCHLAB_QUEUE_BAD_ARGUMENT naming the field for anything out of range or unknown.
 */
export function resolveTopicConfig(partial: Partial<TopicConfig> | undefined, base: Readonly<TopicConfig> = DEFAULT_TOPIC_CONFIG): TopicConfig {
  const p = (partial ?? {}) as Record<string, unknown>;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw bad('(root)', 'an object', partial);
  for (const k of Object.keys(p)) {
    if (!(k in DEFAULT_TOPIC_CONFIG)) throw bad(k, `one of ${Object.keys(DEFAULT_TOPIC_CONFIG).join(', ')} (unknown field)`, p[k]);
  }
  const merged = { ...base, ...p } as Record<keyof TopicConfig, unknown>;
  const cleanupPolicy = merged.cleanupPolicy;
  if (!CLEANUP_POLICIES.includes(cleanupPolicy as CleanupPolicy)) throw bad('cleanupPolicy', `one of ${CLEANUP_POLICIES.join(', ')}`, cleanupPolicy);
  const cfg: TopicConfig = {
    partitions: intIn('partitions', merged.partitions, 1, MAX_PARTITIONS_PER_TOPIC),
    segmentBytes: intIn('segmentBytes', merged.segmentBytes, MIN_SEGMENT_BYTES, 2 ** 31 - 1),
    segmentMs: intIn('segmentMs', merged.segmentMs, 1),
    retentionBytes: intIn('retentionBytes', merged.retentionBytes, -1),
    retentionMs: intIn('retentionMs', merged.retentionMs, -1),
    cleanupPolicy: cleanupPolicy as CleanupPolicy,
    deleteRetentionMs: intIn('deleteRetentionMs', merged.deleteRetentionMs, 0),
    maxMessageBytes: intIn('maxMessageBytes', merged.maxMessageBytes, 64, 2 ** 31 - 1),
  };
  return cfg;
}

/** Fields that differ between two configs (a re-declaration with other settings). */
export function configDiff(a: TopicConfig, b: TopicConfig): (keyof TopicConfig)[] {
  return (Object.keys(DEFAULT_TOPIC_CONFIG) as (keyof TopicConfig)[]).filter((k) => a[k] !== b[k]);
}

/**
 * A topic config in a YAML file: `segmentBytes: 64MiB`, `retentionMs: 7d`, ... Every field is
 * optional; the output is a Partial<TopicConfig> to pass to createTopic or as the log's defaults.
 */
export const zTopicConfig = z.strictObject({
  partitions: z.number().int().min(1).max(MAX_PARTITIONS_PER_TOPIC).optional(),
  segmentBytes: zSize().optional(),
  segmentMs: zDuration().optional(),
  retentionBytes: z.union([z.literal(-1), zSize()]).optional(),
  retentionMs: z.union([z.literal(-1), zDuration()]).optional(),
  cleanupPolicy: z.enum(['delete', 'compact', 'compact,delete']).optional(),
  deleteRetentionMs: zDuration().optional(),
  maxMessageBytes: zSize().optional(),
});
