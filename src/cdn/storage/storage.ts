/**
 * An edge node's object store: a memory tier (lru-cache bounded by bytes of bodies + estimated heads),
 * an optional disk tier (bounded by bytes, LRU too), and indexes over both for variants and purges.
 *
 * Where an object lives: exactly one of
 *   - memory (`mem`): the body as one Buffer;
 *   - demoting (`demoting`): evicted from memory, its body being written to disk; still served from
 *     the Buffer it holds (bounded by disk.writeQueueBytes; past it an eviction is dropped instead);
 *   - disk (`disk`): the body in a file, the head in memory so `get` stays synchronous.
 * The index holds a key exactly while the key is in one of them. Objects on disk are not promoted back
 * to memory on a hit (the page cache keeps hot files in RAM anyway, and a promotion would evict
 * another object into a disk write).
 *
 * Writers: `begin` picks memory (collect chunks, one copy into an unpooled Buffer at commit) or disk
 * (stream into a temp file, rename at commit). A memory writer whose body grows past
 * memoryObjectMaxBytes spills to a disk file when there is a disk tier, and aborts otherwise. A writer
 * that passes maxObjectBytes, its expected size, or the global maxWritingBytes aborts itself silently:
 * the edge keeps streaming to its client and nothing is stored. Commit makes the object visible in one
 * synchronous step (a `get` sees the old object or the whole new one, never a part), replacing
 * whatever was stored under the key. A commit whose byte count differs from `expectedBytes` stores
 * nothing: a body cut short upstream must never be cached. Chunks are kept by reference until they are
 * copied (commit) or written to the file: a caller must not reuse a chunk's memory after write().
 *
 * Purges and fills in flight: `find` also returns the keys of writers in flight that match, `delete`
 * aborts them, and an `updateMeta` setting `softPurgedAt` also marks them, so a response fetched
 * before a purge cannot land in the cache after it.
 *
 * The hit path is `get` on a memory hit: one lru-cache lookup, no allocation of ours.
 */
import { LRUCache } from 'lru-cache';
import { SystemClock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type {
  CdnStorage,
  PurgeSelector,
  StorageStats,
  StorageWriter,
  StoredObject,
  StoredObjectMeta,
} from '../types.js';
import { DiskTier, type DiskFile } from './disk.js';
import { estimateHeadBytes } from './head-bytes.js';
import { ObjectIndex } from './object-index.js';
import { resolveOptions, type ResolvedOptions, type StorageOptions } from './options.js';

/** A meta as handed to `begin` (no bodyBytes yet). */
type PendingMeta = Omit<StoredObjectMeta, 'bodyBytes'>;

/** The fields `updateMeta` may replace. */
type MetaUpdate = Partial<Pick<StoredObjectMeta, 'headers' | 'policy' | 'storedAt' | 'softPurgedAt' | 'tags'>>;

/** A memory-tier object: the head and the whole body. Shared with callers: never changed in place. */
interface MemoryObject extends StoredObject {
  readonly meta: StoredObjectMeta;
  readonly body: Buffer;
}

/** An object evicted from memory whose body is being written to disk. */
interface Demotion {
  readonly key: string;
  /** Replaced (not changed) by updateMeta while the write runs. */
  obj: MemoryObject;
  readonly bytes: number;
  cancelled: boolean;
}

/**
 * StorageStats plus the counters behind them. `memoryObjects` / `memoryBytes` include objects evicted
 * from memory whose bodies are still being written to disk (at most disk.writeQueueBytes more);
 * `evictions` counts objects dropped for room (memory without a disk, disk LRU, maxObjects), not moves
 * from memory to disk (`demotions`).
 */
export interface StorageStatsDetail extends StorageStats {
  /** Objects moved from memory to disk. */
  demotions: number;
  /** Objects refused at begin (too large, too many writers, no room in any tier). */
  refused: number;
  /** Writers that aborted themselves (grew too large, short body, writing bytes exhausted, disk error). */
  writerAborts: number;
  /** Disk writes that failed (each pauses the disk tier for errorBackoffMs). */
  diskWriteErrors: number;
  /** Disk objects dropped because their file was missing, short or unreadable. */
  diskReadErrors: number;
  /** Writers open now. */
  writers: number;
  /** Bytes held in memory by open writers (what maxWritingBytes bounds). */
  writingBytes: number;
  /** Distinct tags indexed. */
  tags: number;
}

/** What a Writer asks of the storage that made it. */
interface WriterOps {
  write(w: Writer, chunk: Buffer): void;
  commit(w: Writer): Promise<void>;
  abort(w: Writer, reason: string): void;
}

type WriterState = 'memory' | 'disk' | 'committing' | 'aborted' | 'done';

class Writer implements StorageWriter {
  state: WriterState = 'memory';
  /** Body bytes received. */
  bytes = 0;
  /** Bytes of this writer held in memory and counted in the storage's writingBytes. */
  held = 0;
  chunks: Buffer[] = [];
  file: DiskFile | undefined;

  constructor(
    private readonly ops: WriterOps,
    readonly meta: PendingMeta,
    readonly headBytes: number,
    readonly expectedBytes: number | undefined,
  ) {}

  write(chunk: Buffer): void {
    this.ops.write(this, chunk);
  }

  commit(): Promise<void> {
    return this.ops.commit(this);
  }

  abort(): void {
    this.ops.abort(this, 'aborted by caller');
  }
}

const NO_VARIANTS: StoredObjectMeta[] = Object.freeze([]) as unknown as StoredObjectMeta[];

/** A copy of the caller's meta that later changes to their objects cannot reach. */
function copyMeta(meta: PendingMeta): PendingMeta {
  return { ...meta, headers: { ...meta.headers }, tags: [...meta.tags] };
}

function matches(meta: PendingMeta, select: PurgeSelector): boolean {
  switch (select.kind) {
    case 'url':
      return meta.primaryKey === select.primaryKey;
    case 'prefix':
      return meta.primaryKey.startsWith(select.prefix);
    case 'tag':
      return meta.tags.includes(select.tag);
  }
}

export class TieredStorage implements CdnStorage {
  readonly options: Readonly<ResolvedOptions>;

  private readonly mem: LRUCache<string, MemoryObject>;
  private readonly disk: DiskTier | undefined;
  private readonly index = new ObjectIndex();
  private readonly demoting = new Map<string, Demotion>();
  private demotingBytes = 0;
  private readonly writers = new Map<string, Set<Writer>>();
  private writerCount = 0;
  private writingBytes = 0;
  private readonly logger: Logger | undefined;
  private readonly ops: WriterOps;
  /** Set while evicting for maxObjects: the memory eviction must drop the object, not move it to disk. */
  private noDemote = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private evictions = 0;
  private demotions = 0;
  private refused = 0;
  private writerAborts = 0;
  private diskWriteErrors = 0;
  private diskReadErrors = 0;

  /** Use createStorage (it opens the disk tier first). */
  constructor(options: ResolvedOptions, disk: DiskTier | undefined, logger: Logger | undefined) {
    this.options = options;
    this.disk = disk;
    this.logger = logger;
    this.mem = new LRUCache<string, MemoryObject>({
      maxSize: options.memoryBytes,
      dispose: (obj, key, reason) => {
        if (reason === 'evict') this.memoryEvicted(key, obj);
      },
    });
    if (disk !== undefined) {
      disk.onEvicted = (key) => {
        this.index.remove(key);
        this.evictions++;
      };
      disk.onReadFailed = (key) => {
        this.index.remove(key);
        this.diskReadErrors++;
      };
    }
    this.ops = {
      write: (w, chunk) => this.writeChunk(w, chunk),
      commit: (w) => this.commitWriter(w),
      abort: (w, reason) => this.abortWriter(w, reason),
    };
  }

  // --- reads ---

  /** The hit path: one lru-cache lookup (which makes the object most recent). */
  get(key: string): StoredObject | undefined {
    const obj = this.mem.get(key);
    if (obj !== undefined) return obj;
    return this.disk === undefined ? undefined : this.getCold(key);
  }

  /** Like get, without changing recency (admin, tests). */
  peek(key: string): StoredObject | undefined {
    return this.mem.peek(key) ?? this.demoting.get(key)?.obj ?? this.disk?.peek(key);
  }

  /**
   * The metas stored under `primaryKey`. The array is frozen and shared until something under the
   * primary key changes, so repeated lookups of a URL allocate nothing. Does not change recency.
   */
  variants(primaryKey: string): StoredObjectMeta[] {
    const group = this.index.group(primaryKey);
    if (group === undefined) return NO_VARIANTS;
    if (group.variants !== undefined) return group.variants as StoredObjectMeta[];
    const list: StoredObjectMeta[] = [];
    for (const key of group.keys) {
      const obj = this.peek(key);
      if (obj !== undefined) list.push(obj.meta);
    }
    group.variants = Object.freeze(list);
    return list;
  }

  /**
   * Keys stored under a primary key, under a primary-key prefix, or carrying a tag; plus the keys of
   * writers in flight that match, so a purge also stops fills that began before it.
   */
  find(select: PurgeSelector): string[] {
    const out: string[] = [];
    switch (select.kind) {
      case 'url': {
        const group = this.index.group(select.primaryKey);
        if (group !== undefined) for (const key of group.keys) out.push(key);
        break;
      }
      case 'prefix':
        this.index.forEachWithPrefix(select.prefix, (key) => out.push(key));
        break;
      case 'tag': {
        const keys = this.index.keysWithTag(select.tag);
        if (keys !== undefined) for (const key of keys) out.push(key);
        break;
      }
    }
    if (this.writerCount > 0) {
      const seen = new Set(out);
      for (const [key, set] of this.writers) {
        if (seen.has(key)) continue;
        for (const w of set) {
          if (matches(w.meta, select)) {
            out.push(key);
            break;
          }
        }
      }
    }
    return out;
  }

  stats(): StorageStatsDetail {
    const memoryObjects = this.mem.size + this.demoting.size;
    const memoryBytes = this.mem.calculatedSize + this.demotingBytes;
    const diskObjects = this.disk?.size ?? 0;
    const diskBytes = this.disk?.bytes ?? 0;
    return {
      objects: this.index.size,
      bytes: memoryBytes + diskBytes,
      memoryObjects,
      memoryBytes,
      diskObjects,
      diskBytes,
      evictions: this.evictions,
      demotions: this.demotions,
      refused: this.refused,
      writerAborts: this.writerAborts,
      diskWriteErrors: this.diskWriteErrors,
      diskReadErrors: this.diskReadErrors,
      writers: this.writerCount,
      writingBytes: this.writingBytes,
      tags: this.index.tagCount,
    };
  }

  // --- writes ---

  /**
   * A writer for a new object, or undefined when it cannot be stored: expectedBytes over what any
   * tier takes, maxWriters open, or the disk it needs is paused after an error, or storage is closed.
   */
  begin(meta: PendingMeta, expectedBytes?: number): StorageWriter | undefined {
    if (this.closed) return undefined;
    if (expectedBytes !== undefined && (!Number.isSafeInteger(expectedBytes) || expectedBytes < 0)) {
      throw new InvalidArgumentError(`cdn storage: expectedBytes must be a non-negative integer, got ${expectedBytes}`, { expectedBytes });
    }
    const o = this.options;
    if ((expectedBytes !== undefined && expectedBytes > o.maxObjectBytes) || this.writerCount >= o.maxWriters) {
      this.refused++;
      return undefined;
    }
    const stored = copyMeta(meta);
    const headBytes = estimateHeadBytes(stored);
    let toDisk = false;
    if (expectedBytes !== undefined && (expectedBytes > o.memoryObjectMaxBytes || expectedBytes + headBytes > o.memoryBytes)) {
      // Too large for memory: disk, if there is one taking objects and this fits in it.
      if (this.disk === undefined || !this.disk.available() || expectedBytes > this.disk.maxBytes) {
        this.refused++;
        return undefined;
      }
      toDisk = true;
    }
    const w = new Writer(this.ops, stored, headBytes, expectedBytes);
    if (toDisk) this.openFile(w);
    let set = this.writers.get(stored.key);
    if (set === undefined) this.writers.set(stored.key, (set = new Set()));
    set.add(w);
    this.writerCount++;
    return w;
  }

  /**
   * Replaces head fields of a stored object (after a 304), keeping its body; a no-op when the key is
   * not stored. `softPurgedAt` present with the value undefined clears a soft purge. Setting
   * `softPurgedAt` also marks writers in flight for the key.
   */
  updateMeta(key: string, update: MetaUpdate): void {
    if (this.closed) return;
    if ('softPurgedAt' in update && update.softPurgedAt !== undefined) {
      const ws = this.writers.get(key);
      if (ws !== undefined) for (const w of ws) w.meta.softPurgedAt = update.softPurgedAt;
    }
    const memObj = this.mem.peek(key);
    const job = memObj === undefined ? this.demoting.get(key) : undefined;
    const diskObj = memObj === undefined && job === undefined ? this.disk?.peek(key) : undefined;
    const old = memObj?.meta ?? job?.obj.meta ?? diskObj?.meta;
    if (old === undefined) return;
    const next: StoredObjectMeta = { ...old };
    if (update.headers !== undefined) next.headers = { ...update.headers };
    if (update.policy !== undefined) next.policy = update.policy;
    if (update.storedAt !== undefined) next.storedAt = update.storedAt;
    if (update.tags !== undefined) next.tags = [...update.tags];
    if ('softPurgedAt' in update) {
      if (update.softPurgedAt === undefined) delete next.softPurgedAt;
      else next.softPurgedAt = update.softPurgedAt;
    }
    if (memObj !== undefined) {
      const size = estimateHeadBytes(next) + memObj.body.length;
      if (size > this.options.memoryBytes) {
        // The new head no longer fits in memory at all: drop the object rather than keep it wrong.
        this.removeStored(key);
        return;
      }
      this.reindex(key, next, update);
      this.mem.set(key, { meta: next, body: memObj.body }, { size });
    } else if (job !== undefined) {
      this.reindex(key, next, update);
      job.obj = { meta: next, body: job.obj.body };
    } else {
      this.reindex(key, next, update);
      this.disk!.replaceMeta(key, next);
    }
  }

  /** Removes the object stored under `key` and aborts writers in flight for it; true when either existed. */
  delete(key: string): boolean {
    const removed = this.removeStored(key);
    const ws = this.writers.get(key);
    if (ws === undefined) return removed;
    for (const w of [...ws]) this.abortWriter(w, 'deleted');
    return true;
  }

  /** Resolves when disk writes, renames and unlinks started so far have finished (tests, shutdown). */
  async idle(): Promise<void> {
    await this.disk?.idle();
  }

  /** Aborts writers, drops everything, and removes the disk tier's files. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // --- internals ---

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const set of [...this.writers.values()]) for (const w of [...set]) this.abortWriter(w, 'closed');
    for (const job of this.demoting.values()) job.cancelled = true;
    this.demoting.clear();
    this.demotingBytes = 0;
    this.mem.clear();
    this.index.clear();
    await this.disk?.close();
  }

  private getCold(key: string): StoredObject | undefined {
    const job = this.demoting.get(key);
    if (job !== undefined) return job.obj;
    return this.disk!.get(key);
  }

  private reindex(key: string, next: StoredObjectMeta, update: MetaUpdate): void {
    if (update.tags !== undefined) this.index.add(key, next.primaryKey, next.tags);
    else this.index.touch(key);
  }

  /** Removes `key` from every tier and the index; true when it was stored. */
  private removeStored(key: string): boolean {
    let found = this.mem.delete(key);
    const job = this.demoting.get(key);
    if (job !== undefined) {
      this.cancelDemotion(job);
      found = true;
    }
    if (this.disk?.delete(key) === true) found = true;
    this.index.remove(key);
    return found;
  }

  /** Evicts least recent objects until one more key fits under maxObjects: disk first (the oldest). */
  private makeRoomForKey(): void {
    while (this.index.size >= this.options.maxObjects) {
      if (this.disk !== undefined && this.disk.size > 0) {
        this.disk.pop();
      } else if (this.mem.size > 0) {
        this.noDemote = true;
        try {
          this.mem.pop();
        } finally {
          this.noDemote = false;
        }
      } else {
        const job = this.demoting.values().next().value;
        if (job === undefined) return;
        this.cancelDemotion(job);
        this.index.remove(job.key);
        this.evictions++;
      }
    }
  }

  private installMemory(obj: MemoryObject, size: number): void {
    const { key } = obj.meta;
    this.removeStored(key);
    this.makeRoomForKey();
    this.index.add(key, obj.meta.primaryKey, obj.meta.tags);
    this.mem.set(key, obj, { size });
  }

  private installDisk(meta: StoredObjectMeta, path: string): void {
    this.removeStored(meta.key);
    this.makeRoomForKey();
    this.index.add(meta.key, meta.primaryKey, meta.tags);
    this.disk!.insert(meta.key, meta, path);
  }

  /** lru-cache evicted `obj` from memory for room: move it to disk, or drop it. */
  private memoryEvicted(key: string, obj: MemoryObject): void {
    if (this.closed) return;
    if (!this.noDemote && this.demote(key, obj)) return;
    this.index.remove(key);
    this.evictions++;
  }

  private demote(key: string, obj: MemoryObject): boolean {
    const disk = this.disk;
    if (disk === undefined || !disk.available()) return false;
    const bytes = obj.body.length;
    if (bytes > disk.maxBytes || this.demotingBytes + bytes > this.options.disk!.writeQueueBytes) return false;
    const job: Demotion = { key, obj, bytes, cancelled: false };
    this.demoting.set(key, job);
    this.demotingBytes += bytes;
    this.demotions++;
    disk.writeBody(obj.body).then(
      (path) => {
        this.endDemotion(job);
        if (job.cancelled || this.closed) disk.discard(path);
        else disk.insert(key, job.obj.meta, path);
      },
      (err: unknown) => {
        this.endDemotion(job);
        this.diskWriteErrors++;
        disk.failed(err, 'write of an object evicted from memory');
        if (job.cancelled || this.closed) return;
        this.index.remove(key);
        this.evictions++;
      },
    );
    return true;
  }

  private endDemotion(job: Demotion): void {
    if (job.cancelled || this.demoting.get(job.key) !== job) return;
    this.demoting.delete(job.key);
    this.demotingBytes -= job.bytes;
  }

  private cancelDemotion(job: Demotion): void {
    if (job.cancelled) return;
    job.cancelled = true;
    if (this.demoting.get(job.key) === job) {
      this.demoting.delete(job.key);
      this.demotingBytes -= job.bytes;
    }
  }

  // --- writer operations ---

  private writeChunk(w: Writer, chunk: Buffer): void {
    // After an abort (ours or the caller's) writes are ignored: the edge keeps streaming to its client.
    if (w.state === 'aborted') return;
    if (w.state === 'committing' || w.state === 'done') throw new InvalidArgumentError(`cdn storage: write after commit for ${w.meta.key}`);
    const n = chunk.length;
    if (n === 0) return;
    w.bytes += n;
    const o = this.options;
    if (w.bytes > o.maxObjectBytes || (w.expectedBytes !== undefined && w.bytes > w.expectedBytes)) {
      this.abortWriter(w, `body passed ${w.bytes > o.maxObjectBytes ? `maxObjectBytes ${o.maxObjectBytes}` : `its expected ${w.expectedBytes} bytes`}`);
      return;
    }
    if (this.writingBytes + n > o.maxWritingBytes) {
      this.abortWriter(w, `writers hold maxWritingBytes ${o.maxWritingBytes}`);
      return;
    }
    this.writingBytes += n;
    w.held += n;
    if (w.state === 'disk') {
      if (w.bytes > this.disk!.maxBytes) this.abortWriter(w, `body passed disk.maxBytes ${this.disk!.maxBytes}`);
      else this.writeToFile(w, chunk);
      return;
    }
    w.chunks.push(chunk);
    if (w.bytes > o.memoryObjectMaxBytes || w.bytes + w.headBytes > o.memoryBytes) {
      // Past what memory takes: continue on disk, or give up.
      const disk = this.disk;
      if (disk === undefined || !disk.available() || w.bytes > disk.maxBytes) {
        this.abortWriter(w, 'body too large for memory and no disk tier taking it');
        return;
      }
      this.openFile(w);
      const chunks = w.chunks;
      w.chunks = [];
      for (const c of chunks) this.writeToFile(w, c);
    }
  }

  private openFile(w: Writer): void {
    const file = this.disk!.createFile();
    w.file = file;
    w.state = 'disk';
    file.stream.on('error', (err) => {
      // A committing writer learns of the error from finishFile; an aborted one does not care.
      if (w.state !== 'disk') return;
      this.diskWriteErrors++;
      this.disk!.failed(err, 'streamed write');
      this.abortWriter(w, 'disk write failed');
    });
  }

  private writeToFile(w: Writer, chunk: Buffer): void {
    const n = chunk.length;
    w.file!.stream.write(chunk, () => {
      // Written (or failed): no longer held in memory. After an abort everything was released at once.
      if (w.state === 'disk' || w.state === 'committing') {
        w.held -= n;
        this.writingBytes -= n;
      }
    });
  }

  private release(w: Writer): void {
    this.writingBytes -= w.held;
    w.held = 0;
    w.chunks = [];
    const set = this.writers.get(w.meta.key);
    if (set !== undefined && set.delete(w)) {
      this.writerCount--;
      if (set.size === 0) this.writers.delete(w.meta.key);
    }
  }

  private abortWriter(w: Writer, reason: string): void {
    if (w.state === 'aborted' || w.state === 'done') return;
    w.state = 'aborted';
    this.release(w);
    if (w.file !== undefined) this.disk!.discardFile(w.file);
    if (reason !== 'aborted by caller' && reason !== 'deleted' && reason !== 'closed') {
      this.writerAborts++;
      this.logger?.debug({ key: w.meta.key, bytes: w.bytes, reason }, 'cdn storage: object not stored');
    }
  }

  private async commitWriter(w: Writer): Promise<void> {
    if (w.state === 'aborted' || w.state === 'done' || w.state === 'committing') return;
    if (w.expectedBytes !== undefined && w.bytes !== w.expectedBytes) {
      this.abortWriter(w, `body of ${w.bytes} bytes, expected ${w.expectedBytes}`);
      return;
    }
    const meta = w.meta;
    if (w.state === 'memory') {
      const body = Buffer.allocUnsafeSlow(w.bytes);
      let offset = 0;
      for (const c of w.chunks) {
        c.copy(body, offset);
        offset += c.length;
      }
      w.state = 'done';
      this.release(w);
      this.installMemory({ meta: { ...meta, bodyBytes: body.length }, body }, w.headBytes + body.length);
      return;
    }
    const file = w.file!;
    w.state = 'committing';
    try {
      await this.disk!.finishFile(file);
    } catch (err) {
      if (w.state !== 'committing') return;
      this.diskWriteErrors++;
      this.disk!.failed(err, 'commit of a streamed write');
      this.abortWriter(w, 'disk write failed');
      return;
    }
    // Aborted (deleted, closed) while the file was finishing: it must not appear now.
    if ((w.state as WriterState) !== 'committing' || this.closed) {
      this.disk!.discard(file.path);
      return;
    }
    w.state = 'done';
    this.release(w);
    this.installDisk({ ...meta, bodyBytes: w.bytes }, file.path);
  }
}

/** Opens an edge's storage (and its disk tier, wiping the directory's earlier contents). */
export async function createStorage(options: StorageOptions): Promise<TieredStorage> {
  const resolved = resolveOptions(options);
  const disk = resolved.disk === undefined ? undefined : await DiskTier.open(resolved.disk, options.clock ?? new SystemClock(), options.logger);
  return new TieredStorage(resolved, disk, options.logger);
}
