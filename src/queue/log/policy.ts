/**
 * The log's decisions, pure: when to roll a segment, which segments retention deletes, when a
 * compacted topic is worth cleaning and which records compaction keeps. The partition shell feeds
 * them summaries and the time (from its Clock) and carries out what they return.
 */
import type { CleanupPolicy } from '../types.js';

/** What the decisions need to know about one segment. */
export interface SegmentSummary {
  baseOffset: number;
  /** One past the last offset stored (baseOffset when empty). */
  nextOffset: number;
  sizeBytes: number;
  /** Largest record timestamp held, or -Infinity when the segment is empty. */
  maxTimestamp: number;
  /** When the first batch was appended (by the log's clock), or null when empty. */
  firstAppendAtMs: number | null;
}

export interface RollConfig {
  segmentBytes: number;
  segmentMs: number;
}

/**
 * Whether a batch of `batchBytes` must go to a new segment. An empty segment never rolls (a batch
 * larger than segmentBytes gets a segment of its own); a non-empty one rolls when the batch would
 * take it past segmentBytes, when it is segmentMs old, or when the batch's offsets would not fit
 * the 32-bit relative offsets of the index.
 */
export function shouldRoll(active: SegmentSummary, batchBytes: number, batchLastOffset: number, nowMs: number, cfg: RollConfig): boolean {
  if (active.sizeBytes === 0) return false;
  if (active.sizeBytes + batchBytes > cfg.segmentBytes) return true;
  if (active.firstAppendAtMs !== null && nowMs - active.firstAppendAtMs >= cfg.segmentMs) return true;
  if (batchLastOffset - active.baseOffset > 0xfffffffe) return true;
  // positions are u32 in the index
  return active.sizeBytes + batchBytes > 0xffffffff;
}

export interface RetentionConfig {
  retentionBytes: number;
  retentionMs: number;
  cleanupPolicy: CleanupPolicy;
}

export interface RetentionPlan {
  /** Roll the active segment first (it is non-empty and wholly expired), so it can be deleted. */
  rollActive: boolean;
  /** Delete this many of the oldest segments (never the active one after any roll). */
  deleteCount: number;
  /** Why, for the log line. */
  reason: 'none' | 'age' | 'size' | 'age+size';
}

/**
 * Which whole segments retention deletes. `segments` are oldest first; the last is the active one.
 * By age: every segment whose newest record is at least retentionMs old (from the oldest, stopping at
 * the first that is not). By size: the oldest while the partition stays at or over retentionBytes
 * without it (Kafka's rule). Only for 'delete' policies; a compact-only topic keeps everything.
 */
export function planRetention(segments: readonly SegmentSummary[], nowMs: number, cfg: RetentionConfig): RetentionPlan {
  const none: RetentionPlan = { rollActive: false, deleteCount: 0, reason: 'none' };
  if (cfg.cleanupPolicy === 'compact' || segments.length === 0) return none;
  const last = segments.length - 1;
  // An empty closed segment (compaction emptied it) holds nothing to keep; an empty active one is not expired.
  const expired = (s: SegmentSummary, i: number): boolean =>
    cfg.retentionMs >= 0 && (s.sizeBytes === 0 ? i < last : nowMs - s.maxTimestamp >= cfg.retentionMs);

  let byAge = 0;
  if (cfg.retentionMs >= 0) while (byAge < segments.length && expired(segments[byAge]!, byAge)) byAge++;
  // Every segment, the active one too, is expired: roll so the active one can go as well.
  const rollActive = byAge === segments.length;

  let bySize = 0;
  if (cfg.retentionBytes >= 0) {
    let total = 0;
    for (const s of segments) total += s.sizeBytes;
    while (bySize < segments.length - 1 && total - segments[bySize]!.sizeBytes >= cfg.retentionBytes) {
      total -= segments[bySize]!.sizeBytes;
      bySize++;
    }
  }
  const deleteCount = Math.max(byAge, bySize);
  if (deleteCount === 0) return none;
  const reason = byAge > 0 && bySize > 0 ? 'age+size' : byAge > 0 ? 'age' : 'size';
  return { rollActive, deleteCount, reason };
}

export interface CompactionConfig {
  cleanupPolicy: CleanupPolicy;
  /** Clean once at least this share of the closed segments' bytes was written since the last clean. */
  minCleanableDirtyRatio: number;
}

/**
 * Whether a compacted partition is worth cleaning now: some closed segment holds offsets at or past
 * `cleanedUpTo` (the end of the last clean), and those dirty bytes are at least
 * minCleanableDirtyRatio of the closed bytes. Returns how many of the oldest segments (closed only)
 * to clean: 0 = not now.
 */
export function planCompaction(segments: readonly SegmentSummary[], cleanedUpTo: number, cfg: CompactionConfig): number {
  if (cfg.cleanupPolicy === 'delete' || segments.length < 2) return 0;
  const closed = segments.length - 1;
  let total = 0;
  let dirty = 0;
  for (let i = 0; i < closed; i++) {
    const s = segments[i]!;
    total += s.sizeBytes;
    if (s.nextOffset > cleanedUpTo) dirty += s.sizeBytes;
  }
  if (dirty === 0 || total === 0) return 0;
  return dirty / total >= cfg.minCleanableDirtyRatio ? closed : 0;
}

/** One record as compaction sees it. */
export interface CompactionEntry {
  offset: number;
  /** The key as a map key (latin1 string of its bytes), or null for a record without a key. */
  key: string | null;
  /** value === null. */
  tombstone: boolean;
  timestamp: number;
}

/**
 * Whether compaction keeps a record. `latest` maps keys to the newest offset seen for them in the
 * whole partition (keys it does not hold are kept: a bounded map only cleans what it saw). Records
 * without a key are kept; a record superseded by a newer one of its key is dropped; a tombstone that
 * is the newest of its key is kept until it is deleteRetentionMs old, then dropped.
 */
export function compactionKeeps(e: CompactionEntry, latest: ReadonlyMap<string, number>, nowMs: number, deleteRetentionMs: number): boolean {
  if (e.key === null) return true;
  const newest = latest.get(e.key);
  if (newest === undefined) return true;
  if (newest > e.offset) return false;
  if (e.tombstone) return nowMs - e.timestamp < deleteRetentionMs;
  return true;
}
