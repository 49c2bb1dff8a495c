/**
 * Options of an edge's object storage, their defaults, and the validation done once at construction.
 */
import type { Clock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';

const MiB = 1024 * 1024;

export const DEFAULT_MAX_OBJECT_BYTES = 16 * MiB;
export const DEFAULT_MEMORY_OBJECT_MAX_BYTES = 1 * MiB;
export const DEFAULT_MAX_OBJECTS = 1_000_000;
export const DEFAULT_MAX_WRITING_BYTES = 64 * MiB;
export const DEFAULT_MAX_WRITERS = 4096;
export const DEFAULT_DISK_WRITE_QUEUE_BYTES = 16 * MiB;
export const DEFAULT_DISK_ERROR_BACKOFF_MS = 10_000;

export interface DiskOptions {
  /**
   * Directory of the disk tier, created if missing. It must be empty or hold an earlier archlab cdn
   * storage (its marker file): its objects are wiped at open and on close (a CDN cache is disposable).
   * One storage per directory at a time (a lock file holds the owner's pid).
   */
  dir: string;
  /** Bytes of bodies kept on disk (LRU beyond it). Required, > 0. */
  maxBytes: number;
  /**
   * Bytes of objects evicted from memory and waiting to be written to disk (held in memory until
   * written); an eviction past it is dropped instead of moved to disk. Default 16 MiB.
   */
  writeQueueBytes?: number;
  /**
   * After a disk write fails (ENOSPC, EIO...), how long the disk tier takes no new objects, in ms;
   * evictions are dropped and objects above memoryObjectMaxBytes are not stored meanwhile. Default 10,000.
   */
  errorBackoffMs?: number;
}

export interface StorageOptions {
  /** Bytes of bodies + heads (estimated) held in memory: LRU by bytes (lru-cache maxSize). Required, > 0. */
  memoryBytes: number;
  /** Objects larger than this, in bytes, are never stored (the edge streams them uncached). Default 16 MiB. */
  maxObjectBytes?: number;
  /** Optional disk tier: objects evicted from memory (or larger than memoryObjectMaxBytes) go there. */
  disk?: DiskOptions;
  /**
   * Objects above this many body bytes skip memory and go straight to disk, when there is a disk tier
   * (without one it is not used). Default 1 MiB, or memoryBytes when that is smaller.
   */
  memoryObjectMaxBytes?: number;
  /** Most distinct keys stored (memory + disk); the least recent is evicted past it. Default 1,000,000. */
  maxObjects?: number;
  /**
   * Most bytes held in memory by writers not yet committed (collected chunks, and chunks queued to a
   * disk file but not yet written); a write past it aborts that writer (its body is still served, not
   * stored). Default 64 MiB, raised to the largest object a writer can hold in memory.
   */
  maxWritingBytes?: number;
  /** Most writers open at once; `begin` returns undefined past it. Default 4,096. */
  maxWriters?: number;
  /** Disk errors and dropped objects are logged here (warn). Default: not logged. */
  logger?: Logger;
  /** Timers (the disk error backoff). Default SystemClock. */
  clock?: Clock;
}

/** StorageOptions with every default filled in and every bound checked. */
export interface ResolvedOptions {
  memoryBytes: number;
  /** The largest body stored, all tiers considered (<= the maxObjectBytes option). */
  maxObjectBytes: number;
  /** Bodies up to this go to memory; larger ones to disk (Infinity without a disk tier). */
  memoryObjectMaxBytes: number;
  maxObjects: number;
  maxWritingBytes: number;
  maxWriters: number;
  disk: Required<DiskOptions> | undefined;
}

function positiveInt(name: string, value: number | undefined, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new InvalidArgumentError(`cdn storage: ${name} is required (a positive integer)`, { [name]: value });
    return fallback;
  }
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`cdn storage: ${name} must be a positive integer, got ${String(value)}`, { [name]: value });
  }
  return value;
}

export function resolveOptions(opts: StorageOptions): ResolvedOptions {
  const memoryBytes = positiveInt('memoryBytes', opts.memoryBytes);
  const maxObjectOption = positiveInt('maxObjectBytes', opts.maxObjectBytes, DEFAULT_MAX_OBJECT_BYTES);
  const maxObjects = positiveInt('maxObjects', opts.maxObjects, DEFAULT_MAX_OBJECTS);
  const maxWriters = positiveInt('maxWriters', opts.maxWriters, DEFAULT_MAX_WRITERS);
  let disk: Required<DiskOptions> | undefined;
  if (opts.disk !== undefined) {
    if (typeof opts.disk.dir !== 'string' || opts.disk.dir.length === 0) {
      throw new InvalidArgumentError('cdn storage: disk.dir must be a non-empty path', { dir: opts.disk.dir });
    }
    disk = {
      dir: opts.disk.dir,
      maxBytes: positiveInt('disk.maxBytes', opts.disk.maxBytes),
      writeQueueBytes: positiveInt('disk.writeQueueBytes', opts.disk.writeQueueBytes, DEFAULT_DISK_WRITE_QUEUE_BYTES),
      errorBackoffMs: positiveInt('disk.errorBackoffMs', opts.disk.errorBackoffMs, DEFAULT_DISK_ERROR_BACKOFF_MS),
    };
  }
  let memoryObjectMaxBytes = Infinity;
  if (disk !== undefined) {
    memoryObjectMaxBytes = positiveInt('memoryObjectMaxBytes', opts.memoryObjectMaxBytes, Math.min(DEFAULT_MEMORY_OBJECT_MAX_BYTES, memoryBytes));
    if (memoryObjectMaxBytes > memoryBytes) {
      throw new InvalidArgumentError(`cdn storage: memoryObjectMaxBytes (${memoryObjectMaxBytes}) must not exceed memoryBytes (${memoryBytes})`, {
        memoryObjectMaxBytes,
        memoryBytes,
      });
    }
  } else if (opts.memoryObjectMaxBytes !== undefined) {
    positiveInt('memoryObjectMaxBytes', opts.memoryObjectMaxBytes);
  }
  // What any tier can hold: memory takes bodies up to memoryObjectMaxBytes (all of memory without a
  // disk), the disk up to its own size.
  const tierMax = disk === undefined ? memoryBytes : Math.max(memoryObjectMaxBytes, disk.maxBytes);
  const maxObjectBytes = Math.min(maxObjectOption, tierMax);
  // A writer holds at most this much in memory before it commits or spills to disk.
  const heldMax = disk === undefined ? maxObjectBytes : Math.min(maxObjectBytes, memoryObjectMaxBytes);
  const maxWritingBytes = positiveInt('maxWritingBytes', opts.maxWritingBytes, Math.max(DEFAULT_MAX_WRITING_BYTES, heldMax));
  return { memoryBytes, maxObjectBytes, memoryObjectMaxBytes, maxObjects, maxWritingBytes, maxWriters, disk };
}
