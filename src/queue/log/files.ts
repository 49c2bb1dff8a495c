/**
 * Small-file helpers for the log's metadata (topic configs, producer ids, checkpoints, producer
 * state snapshots): write to a temp file, optionally fsync, rename over the target, fsync the
 * directory. A crash leaves either the old file or the new one, never half of one.
 */
import * as fsp from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fsyncDir as fsyncDirectory } from '../../core/files.js';
import { storageError } from './segment.js';

/** Extension of temp files; stray ones are removed when a directory is opened. */
export const TMP_EXT = '.tmp';

export async function fsyncDir(dir: string): Promise<void> {
  try {
    await fsyncDirectory(dir);
  } catch (err) {
    throw storageError('syncing the directory', dir, err);
  }
}

/** Replaces `path` with `data` atomically; with `durable`, fsyncs the file and its directory. */
export async function writeFileAtomic(path: string, data: string | Buffer, durable: boolean): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}${TMP_EXT}`);
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, 'w', 0o644);
    await fh.writeFile(data);
    if (durable) await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw storageError('writing', path, err);
  }
  if (durable) await fsyncDir(dirname(path));
}

/** Parsed JSON of `path`, or undefined when the file does not exist. A file that does not parse throws. */
export async function readJsonIfExists(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw storageError('reading', path, err);
  }
  return JSON.parse(text) as unknown;
}
