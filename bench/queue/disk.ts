/**
 * The disk's own sequential write speed, the physical limit a log's produce rate is held against:
 *
 * - `dd if=/dev/zero bs=1M oflag=direct conv=fdatasync`: one 1 MiB write at a time, past the page
 *   cache, flushed at the end (what the issue names);
 * - `fio` when installed: the same sequential 1 MiB writes with O_DIRECT and 8 in flight (libaio),
 *   which is closer to what the device can do when it is kept busy.
 *
 * Both write a file in `dir` (put it on the filesystem the brokers write to) and remove it.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findBinary } from '../balancer-l7/procs.js';

const run = promisify(execFile);

/** Row label of each tool's measurement (how it writes). */
export function diskSystem(tool: string): string {
  return tool === 'dd' ? 'dd (O_DIRECT, 1 in flight)' : 'fio (O_DIRECT, libaio, 8 in flight)';
}

export interface DiskSpeed {
  tool: string;
  /** MB/s (10^6 bytes per second). */
  mbPerS: number;
  command: string;
}

/** dd's own report: "134217728 bytes (134 MB, 128 MiB) copied, 0.41 s, 327 MB/s" -> bytes / seconds. */
export function parseDd(stderr: string): number | undefined {
  const m = /(\d+) bytes[^\n]*copied, ([\d.,]+) s/.exec(stderr);
  if (!m) return undefined;
  const bytes = Number(m[1]);
  const s = Number(m[2]!.replace(',', '.'));
  return s > 0 ? bytes / s / 1e6 : undefined;
}

export async function ddWrite(dir: string, mib: number): Promise<DiskSpeed | string> {
  const file = join(dir, 'dd-seq-write.bin');
  const args = ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'oflag=direct', 'conv=fdatasync'];
  try {
    const { stderr } = await run('dd', args, { timeout: 120_000 });
    const mbPerS = parseDd(stderr);
    return mbPerS === undefined ? `could not read dd's report: ${stderr.trim()}` : { tool: 'dd', mbPerS, command: `dd ${args.join(' ').replace(file, '<tmp>')}` };
  } catch (err) {
    return `dd failed: ${(err as Error).message}`;
  } finally {
    rmSync(file, { force: true });
  }
}

export async function fioWrite(dir: string, mib: number): Promise<DiskSpeed | string> {
  const fio = findBinary('fio');
  if (!fio) return 'fio is not installed (apt-get install fio)';
  const file = join(dir, 'fio-seq-write.bin');
  const args = ['--name=seqwrite', `--filename=${file}`, '--rw=write', '--bs=1M', `--size=${mib}M`, '--direct=1', '--ioengine=libaio', '--iodepth=8', '--end_fsync=1', '--output-format=json'];
  try {
    const { stdout } = await run(fio, args, { timeout: 120_000, maxBuffer: 4 << 20 });
    const json = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs?: { write?: { bw_bytes?: number } }[] };
    const bw = json.jobs?.[0]?.write?.bw_bytes;
    return bw ? { tool: 'fio', mbPerS: bw / 1e6, command: `fio ${args.join(' ').replace(file, '<tmp>')}` } : 'fio printed no write bandwidth';
  } catch (err) {
    return `fio failed: ${(err as Error).message}`;
  } finally {
    rmSync(file, { force: true });
  }
}
