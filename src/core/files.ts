/**
 * File helpers every durable block shares: fsync a directory (so a rename or a new file survives a
 * power cut), and a pid lock file that keeps two processes off one data directory while letting a
 * restart take over the lock a killed process left behind.
 */
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';

/** fsyncs a directory, making renames and file creations in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** True when a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Creates `lockPath` holding this process's pid. A lock held by a live other process is refused with
 * the error `refuse(owner)` builds; one left by a dead process (kill -9), or by an abandoned open in
 * this one, is taken over. `refuse(undefined)` is thrown when the file keeps reappearing (a race
 * with another opener). Errors other than EEXIST on create are thrown as they are.
 */
export async function takePidLock(lockPath: string, refuse: (owner: number | undefined) => Error): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fsp.writeFile(lockPath, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number((await fsp.readFile(lockPath, 'utf8').catch(() => '')).trim());
    if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) throw refuse(owner);
    await fsp.rm(lockPath, { force: true });
  }
  throw refuse(undefined);
}

/** What a WindowReader reads from: a FileHandle, or anything with its positional read. */
export interface PositionalFile {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/** Reads a file at increasing offsets through a window of `chunkBytes`, for the sequential scan a journal makes at open. */
export class WindowReader {
  private buf = Buffer.alloc(0);
  private start = 0;

  constructor(
    private readonly file: PositionalFile,
    private readonly size: number,
    private readonly chunkBytes: number,
  ) {}

  /** `length` bytes at `offset` (a view, valid until the next call), or undefined past the end of the file. */
  async read(offset: number, length: number): Promise<Buffer | undefined> {
    if (offset + length > this.size) return undefined;
    if (offset < this.start || offset + length > this.start + this.buf.length) {
      const want = Math.min(Math.max(length, this.chunkBytes), this.size - offset);
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await this.file.read(buf, got, want - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      this.buf = buf.subarray(0, got);
      this.start = offset;
      if (got < length) return undefined;
    }
    return this.buf.subarray(offset - this.start, offset - this.start + length);
  }
}

/**
 * Writes all of `buf` at `position`. When a write fails, cuts the file back to `position` so no
 * partial record stays behind; if even that fails, calls `onTruncateFailed` (the caller marks its
 * file broken) before the write's error is rethrown.
 */
export async function writeAllAt(
  fh: { write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>; truncate(length: number): Promise<void> },
  buf: Buffer,
  position: number,
  onTruncateFailed: (err: unknown) => void,
): Promise<void> {
  let done = 0;
  try {
    while (done < buf.length) {
      const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
      done += bytesWritten;
    }
  } catch (err) {
    try {
      await fh.truncate(position);
    } catch (truncErr) {
      onTruncateFailed(truncErr);
    }
    throw err;
  }
}

/**
 * Opens `path` read-write, creating it (mode 0600) when it does not exist; a creation is made
 * durable by fsyncing `dir`, the file's directory.
 */
export async function openOrCreate(path: string, dir: string): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(path, fsc.O_RDWR);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const fh = await fsp.open(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  try {
    await fsyncDir(dir);
  } catch (err) {
    await fh.close();
    throw err;
  }
  return fh;
}
