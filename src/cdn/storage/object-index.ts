/**
 * The secondary indexes of an edge's storage, over every committed object whatever its tier: by
 * primary key (variants of one URL, purge by URL), by tag (purge by Surrogate-Key / Cache-Tag), and a
 * sorted set of primary keys for purge by prefix. Pure bookkeeping: storage calls `add` when an object
 * becomes visible and `remove` when it leaves its last tier (eviction, delete, drop after a read error).
 *
 * Prefix search is a sorted structure (SortedStrings) rather than a linear scan: a scan of a million
 * primary keys blocks the event loop for tens of milliseconds per purge, on every edge at once, while
 * the sorted set costs about a microsecond per insert on the miss path and O(log n + matches) per purge.
 */
import type { StoredObjectMeta } from '../types.js';
import { SortedStrings } from './sorted-strings.js';

/** The keys stored under one primary key, and the variants array handed out for them (built lazily). */
export interface PrimaryGroup {
  readonly keys: Set<string>;
  /** Frozen metas of the keys, rebuilt after any change under this primary key; undefined = stale. */
  variants: readonly StoredObjectMeta[] | undefined;
}

interface IndexRecord {
  primaryKey: string;
  tags: readonly string[];
}

export class ObjectIndex {
  private readonly records = new Map<string, IndexRecord>();
  private readonly byPrimary = new Map<string, PrimaryGroup>();
  private readonly byTag = new Map<string, Set<string>>();
  private readonly primaries = new SortedStrings();

  /** Objects indexed. */
  get size(): number {
    return this.records.size;
  }

  /** Distinct tags indexed (a tag is dropped with its last key). */
  get tagCount(): number {
    return this.byTag.size;
  }

  has(key: string): boolean {
    return this.records.has(key);
  }

  /** Indexes `key` (replacing its earlier record, if any). */
  add(key: string, primaryKey: string, tags: readonly string[]): void {
    const old = this.records.get(key);
    if (old !== undefined) this.unlink(key, old);
    this.records.set(key, { primaryKey, tags });
    let group = this.byPrimary.get(primaryKey);
    if (group === undefined) {
      group = { keys: new Set(), variants: undefined };
      this.byPrimary.set(primaryKey, group);
      this.primaries.add(primaryKey);
    }
    group.keys.add(key);
    group.variants = undefined;
    for (const tag of tags) {
      let set = this.byTag.get(tag);
      if (set === undefined) this.byTag.set(tag, (set = new Set()));
      set.add(key);
    }
  }

  /** Drops `key` from every index; false when it was not indexed. */
  remove(key: string): boolean {
    const old = this.records.get(key);
    if (old === undefined) return false;
    this.unlink(key, old);
    this.records.delete(key);
    return true;
  }

  /** Forgets the variants array built for `key`'s primary key (its meta changed). */
  touch(key: string): void {
    const rec = this.records.get(key);
    if (rec === undefined) return;
    const group = this.byPrimary.get(rec.primaryKey);
    if (group !== undefined) group.variants = undefined;
  }

  group(primaryKey: string): PrimaryGroup | undefined {
    return this.byPrimary.get(primaryKey);
  }

  keysWithTag(tag: string): ReadonlySet<string> | undefined {
    return this.byTag.get(tag);
  }

  /** Calls `fn` with every key whose primary key starts with `prefix`. `fn` must not change the index. */
  forEachWithPrefix(prefix: string, fn: (key: string) => void): void {
    this.primaries.forEachWithPrefix(prefix, (pk) => {
      const group = this.byPrimary.get(pk);
      if (group !== undefined) for (const key of group.keys) fn(key);
    });
  }

  clear(): void {
    this.records.clear();
    this.byPrimary.clear();
    this.byTag.clear();
    this.primaries.clear();
  }

  private unlink(key: string, rec: IndexRecord): void {
    const group = this.byPrimary.get(rec.primaryKey);
    if (group !== undefined) {
      group.keys.delete(key);
      group.variants = undefined;
      if (group.keys.size === 0) {
        this.byPrimary.delete(rec.primaryKey);
        this.primaries.delete(rec.primaryKey);
      }
    }
    for (const tag of rec.tags) {
      const set = this.byTag.get(tag);
      if (set === undefined) continue;
      set.delete(key);
      if (set.size === 0) this.byTag.delete(tag);
    }
  }
}
