/**
 * Hash functions for placement.
 *
 * - `hash32`: xxHash32 from the `xxhash-wasm` package. xxHash is the de-facto fast non-cryptographic
 *   hash (used by Envoy's ring and Maglev balancers, ClickHouse, zstd); the WebAssembly build hashes
 *   a string's UTF-8 bytes without a round trip through a Buffer, and `h32Raw` hashes bytes, so a
 *   string key and its UTF-8 Buffer agree. Node's own `crypto` has no non-cryptographic hash and its
 *   per-call cost (about 1.5 us for md5 on a short key, measured in docs/hashing.md) is 10x worse.
 * - `md5`: only for ketama, whose point placement is defined by md5 for interoperability with
 *   libketama, libmemcached and twemproxy. `js-md5` (pure JS) is used on the lookup path because it
 *   is several times cheaper per short key than `node:crypto`'s one-shot hash, whose cost is mostly
 *   call overhead.
 */
import xxhash from 'xxhash-wasm';
import { md5 as jsMd5 } from 'js-md5';
import type { Key } from './types.js';

const xx = await xxhash();
const h32 = xx.h32;
const h32Raw = xx.h32Raw;

/** xxHash32 of the key's bytes (UTF-8 for strings), as an unsigned 32-bit integer. */
export function hash32(key: Key, seed = 0): number {
  return typeof key === 'string' ? h32(key, seed) : h32Raw(key, seed);
}

/** The 16 bytes of md5(key), as numbers 0..255. */
export function md5Bytes(key: Key): number[] {
  return jsMd5.array(key);
}

/**
 * One 32-bit ketama value out of an md5 digest: bytes [4a .. 4a+3] read little-endian, as libketama's
 * `ketama_hashi` and libmemcached's `ketama_server_hash(key, len, alignment)` do.
 */
export function digestWord(d: number[], alignment: number): number {
  const o = alignment * 4;
  return ((d[o + 3]! << 24) | (d[o + 2]! << 16) | (d[o + 1]! << 8) | d[o]!) >>> 0;
}

/** The 32-bit ketama hash of a key: the first md5 word. */
export function ketamaHash(key: Key): number {
  return digestWord(jsMd5.array(key), 0);
}

/** MurmurHash3's 32-bit finalizer: a bijection on uint32 with full avalanche, for deriving more bits from a hash. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
