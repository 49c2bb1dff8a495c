/**
 * File helpers every durable block shares: fsync a directory (so a rename or a new file survives a
 * power cut), and a pid lock file that keeps two processes off one data directory while letting a
 * restart take over the lock a killed process left behind.
 */
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
