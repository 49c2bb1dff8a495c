/**
 * Fixtures shared by the storage unit tests (imported by *.test.ts files only): metas, a one-call
 * store, reading a stored body back whichever tier holds it, temp dirs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CdnStorage, Headers, StoredObject, StoredObjectMeta } from '../types.js';

export function meta(key: string, opts: { primaryKey?: string; tags?: string[]; headers?: Headers; storedAt?: number } = {}): Omit<StoredObjectMeta, 'bodyBytes'> {
  return {
    key,
    primaryKey: opts.primaryKey ?? key.split('#')[0]!,
    status: 200,
    headers: opts.headers ?? { 'content-type': 'text/plain' },
    policy: { v: 1 },
    tags: opts.tags ?? [],
    storedAt: opts.storedAt ?? 1_700_000_000_000,
  };
}

/** A body of `n` bytes whose content depends on `seed`, so two versions of a key differ. */
export function body(n: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + 1) & 0xff;
  return b;
}

/** Stores `data` under `m` in `chunks` pieces; true when begin accepted it (commit may still drop it). */
export async function put(
  storage: CdnStorage,
  m: Omit<StoredObjectMeta, 'bodyBytes'>,
  data: Buffer,
  opts: { known?: boolean; chunks?: number } = {},
): Promise<boolean> {
  const w = storage.begin(m, opts.known === false ? undefined : data.length);
  if (w === undefined) return false;
  const pieces = Math.max(1, opts.chunks ?? 1);
  const step = Math.ceil(data.length / pieces) || 1;
  for (let off = 0; off < data.length; off += step) w.write(data.subarray(off, off + step));
  await w.commit();
  return true;
}

/** The whole body of a stored object (or the range), from memory or disk. */
export async function readBody(obj: StoredObject, range?: { start: number; end: number }): Promise<Buffer> {
  if (obj.body !== undefined) return range === undefined ? obj.body : obj.body.subarray(range.start, range.end + 1);
  const chunks: Buffer[] = [];
  for await (const c of obj.open!(range) as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** A fresh directory under the OS temp dir, and a function removing it. */
export function tempDir(prefix = 'archlab-cdn-storage-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
