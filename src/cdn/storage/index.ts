/**
 * The CDN's object storage: memory bounded by bytes (LRU), an optional disk tier bounded by bytes
 * (LRU), bodies streamed in while they are served, indexes for variants and purge by URL, prefix, tag.
 */
export { createStorage, TieredStorage } from './storage.js';
export type { StorageStatsDetail } from './storage.js';
export {
  DEFAULT_MAX_OBJECT_BYTES,
  DEFAULT_MEMORY_OBJECT_MAX_BYTES,
  DEFAULT_MAX_OBJECTS,
  DEFAULT_MAX_WRITING_BYTES,
  DEFAULT_MAX_WRITERS,
  DEFAULT_DISK_WRITE_QUEUE_BYTES,
  DEFAULT_DISK_ERROR_BACKOFF_MS,
} from './options.js';
export type { StorageOptions, DiskOptions, ResolvedOptions } from './options.js';
export { estimateHeadBytes, HEAD_OVERHEAD_BYTES } from './head-bytes.js';
export { bodyStreamReady } from './disk.js';
export type { ByteRange } from './disk.js';
