/**
 * The disk tier of an edge's storage: bodies in files, heads in memory (so a lookup stays synchronous),
 * LRU by bytes over the files (lru-cache maxSize; its dispose unlinks the file).
 *
 * Layout under `dir`:
 *
 *   ARCHLAB-CDN-STORAGE   marker: this directory is ours to wipe
 *   lock                  pid of the process that has it open
 *   tmp/<id>              bodies being written (streamed, or an evicted memory object)
 *   objects/<hh>/<id>     committed bodies, renamed from tmp/ (hh: 256 subdirectories, so no directory
 *                         grows past a few thousand entries)
 *
 * A body is written under a fresh id and renamed into place when complete, so a file under objects/ is
 * always whole, and replacing an object never overwrites the file an earlier reader has open.
 *
 * At open the directory is wiped rather than rebuilt: a CDN cache is disposable, the heads would have to
 * be persisted beside every body to rebuild it, and a rebuilt entry could not be trusted more than a
 * refetch. A directory that is not empty and has no marker is refused (it is not ours to wipe). Close
 * removes what open created.
 *
 * Reads check the file on open: its size must equal the head's bodyBytes, and a read that hits the end
 * of the file early fails, so a truncated or replaced file is never served short. Such a failure (and a
 * missing file) drops the object. Contents damaged at the same size are not detected (there is no
 * checksum: checking one would mean reading the whole body before sending its first byte).
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { Clock, TimerHandle } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { CdnError } from '../errors.js';
import type { StoredObject, StoredObjectMeta } from '../types.js';
import type { DiskOptions } from './options.js';
import { takePidLock } from '../../core/files.js';

const MARKER = 'ARCHLAB-CDN-STORAGE';
const MARKER_TEXT = 'An archlab cdn disk tier. Everything in this directory is wiped when a storage opens it.\n';
const LOCK = 'lock';
const OBJECTS = 'objects';
const TMP = 'tmp';
const SUBDIRS = 256;
/** Read size for body streams (fs.createReadStream's default). */
const READ_CHUNK_BYTES = 64 * 1024;

/** The `fs` override a ReadStream takes (open, read, close); @types/node does not export its name. */
type ReadStreamFs = NonNullable<Exclude<Parameters<typeof fs.createReadStream>[1], string | undefined>['fs']>;

/** Directories open in this process (the lock file covers other processes). */
const openDirs = new Set<string>();

/** A range of body bytes, both ends inclusive (as in fs.createReadStream and HTTP Range). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Resolves when a stream from `StoredObject.open` has passed its open-time checks (the file is there
 * and has the head's size), or rejects with ARCHLAB_CDN_STORAGE (the object is then already dropped).
 * An edge awaits it before sending the response head, so a bad file becomes a miss rather than a
 * response cut short. Resolves at once for a stream that is not an unopened file stream.
 */
export function bodyStreamReady(stream: NodeJS.ReadableStream): Promise<void> {
  if (!(stream instanceof fs.ReadStream)) return Promise.resolve();
  if (stream.errored !== null) return Promise.reject(stream.errored);
  if (!stream.pending) return Promise.resolve();
  return new Promise<void>((res, rej) => {
    const onError = (err: Error): void => {
      stream.off('ready', onReady);
      rej(err);
    };
    const onReady = (): void => {
      stream.off('error', onError);
      res();
    };
    stream.once('ready', onReady);
    stream.once('error', onError);
  });
}

/** A committed object whose body is a file. `open` is bound, so it can be passed around on its own. */
export class DiskObject implements StoredObject {
  readonly open: (range?: ByteRange) => NodeJS.ReadableStream;

  constructor(
    readonly key: string,
    readonly meta: StoredObjectMeta,
    readonly path: string,
    tier: DiskTier,
  ) {
    this.open = (range) => tier.openBody(this, range);
  }
}

/** A body being streamed into a temp file; `path` is where it goes when complete. */
export interface DiskFile {
  readonly stream: fs.WriteStream;
  readonly tmpPath: string;
  readonly path: string;
}

function storageError(message: string, details: Record<string, unknown>, cause?: unknown): CdnError {
  return new CdnError('ARCHLAB_CDN_STORAGE', message, { details, cause });
}

function takeLock(lockPath: string): Promise<void> {
  return takePidLock(lockPath, (owner) =>
    owner === undefined
      ? storageError(`cdn storage: could not take the lock ${lockPath}`, { lockPath })
      : storageError(`cdn storage: disk dir ${lockPath.slice(0, -LOCK.length - 1)} is in use by process ${owner}`, { lockPath, pid: owner }),
  );
}

export class DiskTier {
  readonly dir: string;
  readonly maxBytes: number;
  /** Called when an object leaves the tier for room (LRU). Not called for delete() or pop()'s caller. */
  onEvicted: ((key: string) => void) | undefined;
  /** Called after a read failure dropped an object (already out of the tier). */
  onReadFailed: ((key: string, err: CdnError) => void) | undefined;

  private readonly lru: LRUCache<string, DiskObject>;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly errorBackoffMs: number;
  private readonly createdDir: boolean;
  /** Errors raised by our own read checks, so a stream destroyed by its consumer is not taken for a bad file. */
  private readonly readErrors = new WeakSet<object>();
  private readonly pending = new Set<Promise<unknown>>();
  private seq = 0;
  private backoff: TimerHandle | undefined;
  private closing = false;

  private constructor(dir: string, opts: Required<DiskOptions>, clock: Clock, logger: Logger | undefined, createdDir: boolean) {
    this.dir = dir;
    this.maxBytes = opts.maxBytes;
    this.errorBackoffMs = opts.errorBackoffMs;
    this.clock = clock;
    this.logger = logger;
    this.createdDir = createdDir;
    this.lru = new LRUCache<string, DiskObject>({
      maxSize: opts.maxBytes,
      dispose: (obj, key, reason) => {
        // 'set' is a head replaced over the same file (replaceMeta); at close the directory goes whole.
        if (reason === 'set' || this.closing) return;
        this.unlink(obj.path);
        if (reason === 'evict') this.onEvicted?.(key);
      },
    });
  }

  /** Opens (wiping) or creates the tier's directory and takes its lock. */
  static async open(opts: Required<DiskOptions>, clock: Clock, logger: Logger | undefined): Promise<DiskTier> {
    const dir = resolve(opts.dir);
    if (openDirs.has(dir)) throw storageError(`cdn storage: disk dir ${dir} is already open in this process`, { dir });
    openDirs.add(dir);
    let locked = false;
    try {
      const createdDir = (await fsp.mkdir(dir, { recursive: true })) !== undefined;
      await takeLock(join(dir, LOCK));
      locked = true;
      const entries = await fsp.readdir(dir);
      if (!entries.includes(MARKER)) {
        const foreign = entries.filter((e) => e !== LOCK);
        if (foreign.length > 0) {
          throw storageError(`cdn storage: disk dir ${dir} is not empty and is not an archlab cdn disk tier (no ${MARKER}); refusing to wipe it`, {
            dir,
            entries: foreign.slice(0, 10),
          });
        }
        await fsp.writeFile(join(dir, MARKER), MARKER_TEXT);
      }
      await fsp.rm(join(dir, OBJECTS), { recursive: true, force: true });
      await fsp.rm(join(dir, TMP), { recursive: true, force: true });
      await fsp.mkdir(join(dir, TMP));
      await fsp.mkdir(join(dir, OBJECTS));
      await Promise.all(Array.from({ length: SUBDIRS }, (_, i) => fsp.mkdir(join(dir, OBJECTS, i.toString(16).padStart(2, '0')))));
      return new DiskTier(dir, opts, clock, logger, createdDir);
    } catch (err) {
      if (locked) await fsp.rm(join(dir, LOCK), { force: true }).catch(() => undefined);
      openDirs.delete(dir);
      if (err instanceof CdnError) throw err;
      throw storageError(`cdn storage: cannot open disk dir ${dir}: ${(err as Error).message}`, { dir }, err);
    }
  }

  get size(): number {
    return this.lru.size;
  }

  /** Body bytes on disk (what maxBytes bounds; an empty body counts as 1). */
  get bytes(): number {
    return this.lru.calculatedSize;
  }

  /** False during the backoff after a write error: take no new objects. */
  available(): boolean {
    return this.backoff === undefined && !this.closing;
  }

  /** The object, made most recent. */
  get(key: string): DiskObject | undefined {
    return this.lru.get(key);
  }

  peek(key: string): DiskObject | undefined {
    return this.lru.peek(key);
  }

  /** Adds a committed body (the file at `path`, from finishFile or writeBody). Replaces any object under `key`. */
  insert(key: string, meta: StoredObjectMeta, path: string): DiskObject {
    if (meta.bodyBytes > this.maxBytes) throw new InvalidArgumentError(`cdn storage: body of ${meta.bodyBytes} bytes exceeds disk.maxBytes ${this.maxBytes}`);
    this.lru.delete(key);
    const obj = new DiskObject(key, meta, path, this);
    this.lru.set(key, obj, { size: Math.max(1, meta.bodyBytes) });
    return obj;
  }

  /** Replaces the head of `key`, keeping its file and recency; false when absent. */
  replaceMeta(key: string, meta: StoredObjectMeta): boolean {
    const old = this.lru.peek(key);
    if (old === undefined) return false;
    this.lru.set(key, new DiskObject(key, meta, old.path, this), { size: Math.max(1, meta.bodyBytes), noUpdateTTL: true });
    return true;
  }

  /** Removes `key` and unlinks its file; false when absent. */
  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  /** Evicts the least recent object (reported to onEvicted); false when empty. */
  pop(): boolean {
    return this.lru.pop() !== undefined;
  }

  /** Opens a temp file for a body streamed in. Its errors are the caller's (listen on `stream`). */
  createFile(): DiskFile {
    const { tmpPath, path } = this.nextPaths();
    const stream = fs.createWriteStream(tmpPath, { flags: 'wx' });
    return { stream, tmpPath, path };
  }

  /** Ends a streamed file and renames it into objects/. Rejects on a write or rename error. */
  finishFile(file: DiskFile): Promise<void> {
    return this.track(
      new Promise<void>((res, rej) => {
        const { stream } = file;
        if (stream.errored) {
          rej(stream.errored);
          return;
        }
        stream.once('error', rej);
        stream.end((err?: Error | null) => {
          stream.off('error', rej);
          if (err) rej(err);
          else res();
        });
      }).then(() => fsp.rename(file.tmpPath, file.path)),
    );
  }

  /** Drops a streamed file: stops it and removes the temp file once the stream has closed. */
  discardFile(file: DiskFile): void {
    const { stream } = file;
    // An error after destroy (the open still racing) is expected; keep it from being unhandled.
    stream.on('error', () => undefined);
    if (stream.closed) {
      this.unlink(file.tmpPath);
      return;
    }
    // Tracked from now, so idle() and close() wait for the temp file to be gone.
    const closed = new Promise<void>((res) => stream.once('close', () => res()));
    stream.destroy();
    this.track(closed.then(() => fsp.rm(file.tmpPath, { force: true })).catch(() => undefined));
  }

  /** Writes a whole body (an object evicted from memory) to a new file; resolves with its path. */
  writeBody(body: Buffer): Promise<string> {
    const { tmpPath, path } = this.nextPaths();
    return this.track(
      (async () => {
        try {
          await fsp.writeFile(tmpPath, body, { flag: 'wx' });
          await fsp.rename(tmpPath, path);
          return path;
        } catch (err) {
          await fsp.rm(tmpPath, { force: true }).catch(() => undefined);
          throw err;
        }
      })(),
    );
  }

  /** Removes a committed file that never made it into the tier (its object was replaced meanwhile). */
  discard(path: string): void {
    this.unlink(path);
  }

  /**
   * A write failed: logs it and stops taking new objects for errorBackoffMs (a full or failing disk
   * should not be retried on every miss).
   */
  failed(err: unknown, what: string): void {
    if (this.closing) return;
    this.logger?.warn({ err, dir: this.dir, what, backoffMs: this.errorBackoffMs }, 'cdn storage: disk write failed; disk tier paused');
    if (this.backoff !== undefined) return;
    this.backoff = this.clock.setTimer(this.errorBackoffMs, () => {
      this.backoff = undefined;
    });
  }

  /**
   * A stream of the body of `obj` (a range of it, both ends inclusive). It fails with
   * ARCHLAB_CDN_STORAGE before its first byte when the file is missing or not bodyBytes long, and
   * mid-way when the file ends early; either failure drops the object.
   */
  openBody(obj: DiskObject, range?: ByteRange): NodeJS.ReadableStream {
    const size = obj.meta.bodyBytes;
    let start = 0;
    let end = size - 1;
    if (range !== undefined) {
      if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0 || range.end < range.start || range.end >= size) {
        throw new InvalidArgumentError(`cdn storage: range ${range.start}-${range.end} is outside a body of ${size} bytes`, { range, bodyBytes: size });
      }
      start = range.start;
      end = range.end;
    }
    if (size === 0) return Readable.from([]);
    const stream = fs.createReadStream(obj.path, { start, end, highWaterMark: READ_CHUNK_BYTES, fs: this.checkedFs(obj) });
    stream.once('error', (err) => {
      if (this.readErrors.has(err)) this.readFailed(obj, err as CdnError);
    });
    return stream;
  }

  /** Resolves when no write, rename or unlink started so far is still running. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** Waits for pending I/O, then removes the directory's contents (and the directory, if open created it). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.backoff?.cancel();
    this.backoff = undefined;
    await this.idle();
    this.lru.clear();
    try {
      await fsp.rm(join(this.dir, OBJECTS), { recursive: true, force: true });
      await fsp.rm(join(this.dir, TMP), { recursive: true, force: true });
      await fsp.rm(join(this.dir, MARKER), { force: true });
      await fsp.rm(join(this.dir, LOCK), { force: true });
      if (this.createdDir) await fsp.rmdir(this.dir).catch(() => undefined);
    } catch (err) {
      this.logger?.warn({ err, dir: this.dir }, 'cdn storage: could not clean the disk dir on close');
    } finally {
      openDirs.delete(this.dir);
    }
  }

  /** A fresh file id, with the temp and final paths of that file. */
  private nextPaths(): { tmpPath: string; path: string } {
    const n = this.seq++;
    const id = n.toString(36);
    const sub = (n % SUBDIRS).toString(16).padStart(2, '0');
    return { tmpPath: join(this.dir, TMP, id), path: join(this.dir, OBJECTS, sub, id) };
  }

  private readFailed(obj: DiskObject, err: CdnError): void {
    if (this.lru.peek(obj.key) !== obj) return;
    this.lru.delete(obj.key);
    this.logger?.warn({ err, key: obj.key, path: obj.path }, 'cdn storage: disk object unreadable; dropped');
    this.onReadFailed?.(obj.key, err);
  }

  /** fs methods for a ReadStream that check the file's size on open and refuse a short read. */
  private checkedFs(obj: DiskObject): ReadStreamFs {
    const expected = obj.meta.bodyBytes;
    const fail = (message: string, cause?: unknown): CdnError => {
      const err = storageError(message, { key: obj.key, path: obj.path, bodyBytes: expected }, cause);
      this.readErrors.add(err);
      return err;
    };
    const open = (path: fs.PathLike, flags: fs.OpenMode, mode: fs.Mode, cb: (err: Error | null, fd: number) => void): void => {
      fs.open(path, flags, mode, (err, fd) => {
        if (err) return cb(fail(`cdn storage: cannot open ${String(path)}: ${err.message}`, err), -1);
        fs.fstat(fd, (statErr, st) => {
          if (statErr === null && st.size === expected) return cb(null, fd);
          fs.close(fd, () => {
            const message = statErr !== null ? `cannot stat: ${statErr.message}` : `file is ${st.size} bytes, head says ${expected}`;
            cb(fail(`cdn storage: ${String(path)}: ${message}`, statErr ?? undefined), -1);
          });
        });
      });
    };
    const read = (
      fd: number,
      buffer: NodeJS.ArrayBufferView,
      offset: number,
      length: number,
      position: fs.ReadPosition | null,
      cb: (err: Error | null, bytesRead: number, buffer: NodeJS.ArrayBufferView) => void,
    ): void => {
      fs.read(fd, buffer, offset, length, position, (err, bytesRead, buf) => {
        if (err) return cb(fail(`cdn storage: read of ${obj.path} failed: ${err.message}`, err), 0, buf);
        // The stream asks for no more than what is left up to `end`: nothing read means the file shrank.
        if (bytesRead === 0 && length > 0) return cb(fail(`cdn storage: ${obj.path} ended early at byte ${String(position)}`), 0, buf);
        cb(null, bytesRead, buf);
      });
    };
    return { open, read, close: fs.close };
  }

  private unlink(path: string): void {
    if (this.closing) return;
    this.track(
      fsp.rm(path, { force: true }).catch((err: unknown) => {
        this.logger?.warn({ err, path }, 'cdn storage: could not remove a disk object');
      }),
    );
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.pending.add(p);
    const done = (): void => {
      this.pending.delete(p);
    };
    p.then(done, done);
    return p;
  }
}
