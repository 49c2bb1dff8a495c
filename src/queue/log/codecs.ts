/**
 * Block codecs for record batches beyond gzip (which node:zlib does itself).
 *
 * - lz4: the LZ4 frame format (as Kafka writes it), from `lz4-napi` (napi-rs over lz4_flex), whose
 *   native binaries arrive as ordinary npm optional dependencies: no download at install.
 * - zstd: not offered. Node 20's zlib has no zstd, and the maintained bindings (`zstd-napi`,
 *   `@mongodb-js/zstd`) fetch their binaries at install time (prebuild-install) or compile zstd with
 *   node-gyp, neither of which works on a machine that reaches only the npm registry. Encoding or
 *   decoding a zstd batch throws ARCHLAB_QUEUE_UNSUPPORTED.
 *
 * lz4-napi is loaded lazily, so a machine where its binary failed to install still runs every other
 * codec; lz4 then also throws ARCHLAB_QUEUE_UNSUPPORTED, saying why.
 */
import { createRequire } from 'node:module';
import { QueueError } from '../errors.js';
import type { Compression } from '../types.js';

export interface BlockCodec {
  compress(data: Buffer): Buffer;
  decompress(data: Buffer): Buffer;
}

interface Lz4Napi {
  compressFrameSync(data: Buffer): Buffer;
  decompressFrameSync(data: Buffer): Buffer;
}

const require = createRequire(import.meta.url);

let lz4: BlockCodec | Error | undefined;

function loadLz4(): BlockCodec | Error {
  if (lz4 === undefined) {
    try {
      const mod = require('lz4-napi') as Lz4Napi;
      lz4 = { compress: (d) => mod.compressFrameSync(d), decompress: (d) => mod.decompressFrameSync(d) };
    } catch (err) {
      lz4 = err as Error;
    }
  }
  return lz4;
}

function unsupported(codec: Compression, why: string): QueueError {
  return new QueueError('ARCHLAB_QUEUE_UNSUPPORTED', `compression ${codec} is not available here: ${why}`, {
    details: { feature: `compression:${codec}` },
  });
}

/** The codec for `lz4` or `zstd`; throws ARCHLAB_QUEUE_UNSUPPORTED when it cannot run here. */
export function codecFor(codec: Compression): BlockCodec {
  if (codec === 'lz4') {
    const c = loadLz4();
    if (c instanceof Error) throw unsupported('lz4', `the lz4-napi package did not load (${c.message})`);
    return c;
  }
  if (codec === 'zstd') throw unsupported('zstd', 'no zstd binding that installs from the npm registry alone (use gzip or lz4)');
  throw unsupported(codec, 'not a block codec');
}

/** Whether `codec` can be used on this machine (none and gzip always can). */
export function compressionAvailable(codec: Compression): boolean {
  if (codec === 'none' || codec === 'gzip') return true;
  if (codec === 'lz4') return !(loadLz4() instanceof Error);
  return false;
}
