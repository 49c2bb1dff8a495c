/**
 * The record batch: the log's unit of storage AND of transfer. A producer (or the TCP client)
 * encodes a batch once; the broker checks its CRC, stamps the base offset and writes the bytes as they
 * are; a fetch sends file bytes as they are; the consumer decodes. Nobody re-encodes on the way.
 *
 * The layout follows Kafka's record batch v2 field for field (big-endian), with one difference:
 * the checksum is CRC-32 (IEEE, node:zlib's native crc32) instead of CRC-32C, so the magic byte is
 * our own (0xA2) and Kafka tools will not mistake these bytes for theirs.
 *
 * ```
 *  offset  size  field
 *       0     8  baseOffset            int64, stamped by the broker, outside the CRC
 *       8     4  batchLength           int32, bytes after this field (= total - 12)
 *      12     4  partitionLeaderEpoch  int32, 0 (single broker), outside the CRC
 *      16     1  magic                 0xA2
 *      17     4  crc                   uint32, CRC-32 of bytes [21, end)
 *      21     2  attributes            bits 0-2 compression (0 none, 1 gzip, 3 lz4, 4 zstd),
 *                                      bit 3 timestamp type (0 create time, 1 log-append time)
 *      23     4  lastOffsetDelta       int32, last record's offset - baseOffset
 *      27     8  baseTimestamp         int64 ms, the first record's timestamp
 *      35     8  maxTimestamp          int64 ms, the largest record timestamp
 *      43     8  producerId            int64, -1 = not idempotent
 *      51     2  producerEpoch         int16, -1 = not idempotent
 *      53     4  baseSequence          int32, -1 = not idempotent
 *      57     4  recordCount           int32
 *      61     .  records (the whole block compressed when attributes say so)
 *
 *  record: length varint | attributes int8 (0) | timestampDelta varlong | offsetDelta varint |
 *          keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
 *          headerCount varint | { keyLength varint | key utf-8 | valueLength varint | value }*
 *  (varints are zigzag LEB128 like Kafka's; timestampDelta and offsetDelta are from the batch base)
 * ```
 *
 * int64 fields are JS numbers (safe to 2^53), read and written as two 32-bit halves: no BigInt on
 * the hot path.
 */
import { crc32, gzipSync, gunzipSync } from 'node:zlib';
import { QueueError } from '../errors.js';
import type { Compression, LogRecord, ProducerRecord, RecordHeader } from '../types.js';
import { codecFor } from './codecs.js';

/** Size of the fixed batch header; the records start here. */
export const BATCH_HEADER_BYTES = 61;
/** Bytes before `batchLength` counts: baseOffset (8) + batchLength (4). */
export const BATCH_LOG_OVERHEAD_BYTES = 12;
/** Our magic byte (Kafka's v2 is 2; we differ in the CRC polynomial, so we say so). */
export const BATCH_MAGIC = 0xa2;

const OFF_BASE_OFFSET = 0;
const OFF_LENGTH = 8;
const OFF_LEADER_EPOCH = 12;
const OFF_MAGIC = 16;
const OFF_CRC = 17;
const OFF_ATTRIBUTES = 21;
const OFF_LAST_OFFSET_DELTA = 23;
const OFF_BASE_TIMESTAMP = 27;
const OFF_MAX_TIMESTAMP = 35;
const OFF_PRODUCER_ID = 43;
const OFF_PRODUCER_EPOCH = 51;
const OFF_BASE_SEQUENCE = 53;
const OFF_RECORD_COUNT = 57;

const COMPRESSION_MASK = 0x07;
const TIMESTAMP_TYPE_BIT = 0x08;

/** Kafka's codec ids (2 = snappy is not offered). */
const CODEC_ID: Record<Compression, number> = { none: 0, gzip: 1, lz4: 3, zstd: 4 };
const CODEC_BY_ID: (Compression | undefined)[] = ['none', 'gzip', undefined, 'lz4', 'zstd'];

const TWO_32 = 4294967296;
const INT32_MAX = 2147483647;

export type TimestampType = 'create' | 'log-append';

/** The fixed fields of a batch, read without touching (or decompressing) its records. */
export interface BatchHeader {
  baseOffset: number;
  /** Bytes after the length field (Kafka's batchLength). */
  batchLength: number;
  /** Whole batch in bytes: batchLength + 12. */
  totalBytes: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  compression: Compression;
  timestampType: TimestampType;
  /** Last record's offset minus baseOffset (kept when compaction drops records). */
  lastOffsetDelta: number;
  /** baseOffset + lastOffsetDelta. */
  lastOffset: number;
  baseTimestamp: number;
  maxTimestamp: number;
  /** -1 when the producer is not idempotent. */
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

export interface EncodeOptions {
  /** Default 'none'. */
  compression?: Compression;
  /** Idempotent producers: id from initProducerId(); -1 (default) = not idempotent. */
  producerId?: number;
  /** Default -1. */
  producerEpoch?: number;
  /** Sequence number of the first record; -1 (default) = not idempotent. */
  baseSequence?: number;
  /** Timestamp (ms since epoch) stamped on records that carry none. */
  now: number;
}

function corrupt(message: string, details: Record<string, unknown> = {}): QueueError {
  return new QueueError('ARCHLAB_QUEUE_CORRUPT', message, { details });
}

function badArgument(message: string, details: Record<string, unknown> = {}): QueueError {
  return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', message, { details });
}

// ---------------------------------------------------------------------------------------------
// int64 halves
// ---------------------------------------------------------------------------------------------

function writeInt64(buf: Buffer, value: number, at: number): void {
  const hi = Math.floor(value / TWO_32);
  buf.writeInt32BE(hi, at);
  buf.writeUInt32BE(value - hi * TWO_32, at + 4);
}

function readInt64(buf: Buffer, at: number): number {
  return buf.readInt32BE(at) * TWO_32 + buf.readUInt32BE(at + 4);
}

// ---------------------------------------------------------------------------------------------
// zigzag varints (Kafka's ByteUtils.writeVarint / writeVarlong), on numbers up to 2^53
// ---------------------------------------------------------------------------------------------

function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

/** Bytes a zigzag varint of `v` takes. */
export function varintSize(v: number): number {
  let z = zigzag(v);
  let n = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    n++;
  }
  return n;
}

/** Writes the zigzag varint of `v` at `at`; returns the position after it. */
function writeVarint(buf: Buffer, v: number, at: number): number {
  let z = zigzag(v);
  while (z >= 128) {
    buf[at++] = (z & 0x7f) | 0x80;
    z = Math.floor(z / 128);
  }
  buf[at++] = z;
  return at;
}

/** Position after the last varint read by readVarint (module-level: no object per read). */
let varEnd = 0;

/** Reads a zigzag varint at `at` that must end before `end`; sets varEnd. */
function readVarint(buf: Buffer, at: number, end: number): number {
  let z = 0;
  let mul = 1;
  for (let i = 0; i < 8; i++) {
    if (at >= end) throw corrupt('varint runs past the end of its record', { position: at });
    const b = buf[at++]!;
    z += (b & 0x7f) * mul;
    if (b < 128) {
      varEnd = at;
      // un-zigzag without 32-bit operators (values may exceed 2^31)
      return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    mul *= 128;
  }
  throw corrupt('varint longer than 8 bytes', { position: at });
}

// ---------------------------------------------------------------------------------------------
// header
// ---------------------------------------------------------------------------------------------

/** Reads the fixed header of the batch at `at` (default 0). Checks only that 61 bytes are there. */
export function readBatchHeader(buf: Buffer, at = 0): BatchHeader {
  if (buf.length - at < BATCH_HEADER_BYTES) {
    throw corrupt(`record batch header needs ${BATCH_HEADER_BYTES} bytes, ${buf.length - at} available`, { position: at });
  }
  const baseOffset = readInt64(buf, at + OFF_BASE_OFFSET);
  const batchLength = buf.readInt32BE(at + OFF_LENGTH);
  const attributes = buf.readInt16BE(at + OFF_ATTRIBUTES);
  const lastOffsetDelta = buf.readInt32BE(at + OFF_LAST_OFFSET_DELTA);
  return {
    baseOffset,
    batchLength,
    totalBytes: batchLength + BATCH_LOG_OVERHEAD_BYTES,
    partitionLeaderEpoch: buf.readInt32BE(at + OFF_LEADER_EPOCH),
    magic: buf[at + OFF_MAGIC]!,
    crc: buf.readUInt32BE(at + OFF_CRC),
    attributes,
    compression: CODEC_BY_ID[attributes & COMPRESSION_MASK] ?? 'none',
    timestampType: (attributes & TIMESTAMP_TYPE_BIT) !== 0 ? 'log-append' : 'create',
    lastOffsetDelta,
    lastOffset: baseOffset + lastOffsetDelta,
    baseTimestamp: readInt64(buf, at + OFF_BASE_TIMESTAMP),
    maxTimestamp: readInt64(buf, at + OFF_MAX_TIMESTAMP),
    producerId: readInt64(buf, at + OFF_PRODUCER_ID),
    producerEpoch: buf.readInt16BE(at + OFF_PRODUCER_EPOCH),
    baseSequence: buf.readInt32BE(at + OFF_BASE_SEQUENCE),
    recordCount: buf.readInt32BE(at + OFF_RECORD_COUNT),
  };
}

/** Whole size of the batch at `at` from its length field alone (no checks beyond 12 bytes present). */
export function batchSizeAt(buf: Buffer, at = 0): number {
  return buf.readInt32BE(at + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
}

/** Base offset of the batch at `at`. */
export function batchBaseOffsetAt(buf: Buffer, at = 0): number {
  return readInt64(buf, at + OFF_BASE_OFFSET);
}

/** Last offset of the batch at `at` (baseOffset + lastOffsetDelta). */
export function batchLastOffsetAt(buf: Buffer, at = 0): number {
  return readInt64(buf, at + OFF_BASE_OFFSET) + buf.readInt32BE(at + OFF_LAST_OFFSET_DELTA);
}

/** Largest record timestamp of the batch at `at`. */
export function batchMaxTimestampAt(buf: Buffer, at = 0): number {
  return readInt64(buf, at + OFF_MAX_TIMESTAMP);
}

/**
 * Stamps the base offset. The offset lies outside the CRC (as in Kafka), so the broker assigns
 * offsets without recomputing the checksum.
 */
export function setBaseOffset(buf: Buffer, baseOffset: number, at = 0): void {
  if (!Number.isSafeInteger(baseOffset) || baseOffset < 0) throw badArgument(`base offset must be a non-negative safe integer, got ${baseOffset}`);
  writeInt64(buf, baseOffset, at + OFF_BASE_OFFSET);
}

/** The CRC-32 the batch at [at, at + total) should carry. */
function computeCrc(buf: Buffer, at: number, total: number): number {
  return crc32(buf.subarray(at + OFF_ATTRIBUTES, at + total));
}

/**
 * Checks the batch at `at` is whole and intact: the length fits the buffer, magic and codec are
 * known, the counts are sane and the CRC matches. Throws ARCHLAB_QUEUE_CORRUPT otherwise. Does not
 * decompress nor look at the size limit (the log checks maxMessageBytes itself).
 * With `exact` (default true when `at` is 0) the batch must fill the buffer to its end.
 */
export function verifyBatch(buf: Buffer, at = 0, exact = at === 0): BatchHeader {
  const h = readBatchHeader(buf, at);
  if (h.batchLength < BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) {
    throw corrupt(`record batch length ${h.batchLength} is below the header size`, { position: at, batchLength: h.batchLength });
  }
  const available = buf.length - at;
  if (h.totalBytes > available || (exact && h.totalBytes !== available)) {
    throw corrupt(`record batch claims ${h.totalBytes} bytes, ${available} given`, { position: at, totalBytes: h.totalBytes, available });
  }
  if (h.magic !== BATCH_MAGIC) throw corrupt(`record batch magic is 0x${h.magic.toString(16)}, expected 0x${BATCH_MAGIC.toString(16)}`, { position: at });
  if (CODEC_BY_ID[h.attributes & COMPRESSION_MASK] === undefined || (h.attributes & ~(COMPRESSION_MASK | TIMESTAMP_TYPE_BIT)) !== 0) {
    throw corrupt(`record batch attributes 0x${h.attributes.toString(16)} name an unknown codec or flag`, { position: at });
  }
  const crc = computeCrc(buf, at, h.totalBytes);
  if (crc !== h.crc) throw corrupt(`record batch CRC mismatch (stored ${h.crc}, computed ${crc})`, { position: at, stored: h.crc, computed: crc });
  if (h.recordCount < 0 || h.lastOffsetDelta < -1 || h.recordCount > h.lastOffsetDelta + 1) {
    throw corrupt(`record batch counts are inconsistent (records ${h.recordCount}, lastOffsetDelta ${h.lastOffsetDelta})`, { position: at });
  }
  if (h.baseOffset < 0) throw corrupt(`record batch base offset ${h.baseOffset} is negative`, { position: at });
  return h;
}

// ---------------------------------------------------------------------------------------------
// encode
// ---------------------------------------------------------------------------------------------

/** A record placed at an explicit offset delta and timestamp (used by compaction to keep offsets). */
export interface PlacedRecord {
  offsetDelta: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: readonly RecordHeader[] | undefined;
}

interface BatchFields {
  compression: Compression;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  baseOffset: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  timestampType: TimestampType;
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < min || v > max) throw badArgument(`${name} must be an integer in [${min}, ${max}], got ${v}`, { [name]: v });
}

/** Byte lengths of header keys, computed once per record (strings are measured, then written). */
function headersSize(headers: readonly RecordHeader[] | undefined): number {
  if (headers === undefined || headers.length === 0) return 1;
  let n = varintSize(headers.length);
  for (const h of headers) {
    if (typeof h.key !== 'string') throw badArgument('record header key must be a string');
    if (!Buffer.isBuffer(h.value)) throw badArgument(`record header ${JSON.stringify(h.key)} value must be a Buffer`);
    const k = Buffer.byteLength(h.key, 'utf8');
    n += varintSize(k) + k + varintSize(h.value.length) + h.value.length;
  }
  return n;
}

function recordBodySize(tsDelta: number, offsetDelta: number, key: Buffer | null, value: Buffer | null, headers: readonly RecordHeader[] | undefined): number {
  return (
    1 +
    varintSize(tsDelta) +
    varintSize(offsetDelta) +
    (key === null ? 1 : varintSize(key.length) + key.length) +
    (value === null ? 1 : varintSize(value.length) + value.length) +
    headersSize(headers)
  );
}

function writeRecord(
  buf: Buffer,
  at: number,
  bodySize: number,
  tsDelta: number,
  offsetDelta: number,
  key: Buffer | null,
  value: Buffer | null,
  headers: readonly RecordHeader[] | undefined,
): number {
  at = writeVarint(buf, bodySize, at);
  buf[at++] = 0;
  at = writeVarint(buf, tsDelta, at);
  at = writeVarint(buf, offsetDelta, at);
  if (key === null) buf[at++] = 1; // zigzag(-1)
  else {
    at = writeVarint(buf, key.length, at);
    at += key.copy(buf, at);
  }
  if (value === null) buf[at++] = 1;
  else {
    at = writeVarint(buf, value.length, at);
    at += value.copy(buf, at);
  }
  if (headers === undefined || headers.length === 0) buf[at++] = 0;
  else {
    at = writeVarint(buf, headers.length, at);
    for (const h of headers) {
      const k = Buffer.byteLength(h.key, 'utf8');
      at = writeVarint(buf, k, at);
      at += buf.write(h.key, at, k, 'utf8');
      at = writeVarint(buf, h.value.length, at);
      at += h.value.copy(buf, at);
    }
  }
  return at;
}

function compress(codec: Compression, data: Buffer): Buffer {
  if (codec === 'gzip') return gzipSync(data);
  return codecFor(codec).compress(data);
}

function decompress(codec: Compression, data: Buffer): Buffer {
  try {
    if (codec === 'gzip') return gunzipSync(data);
    return codecFor(codec).decompress(data);
  } catch (err) {
    if (err instanceof QueueError) throw err;
    throw new QueueError('ARCHLAB_QUEUE_CORRUPT', `record batch does not decompress with ${codec}: ${(err as Error).message}`, { cause: err, details: { codec } });
  }
}

/** Bytes a record takes in a batch: its length varint plus its body. */
function recordBytes(bodySize: number): number {
  return varintSize(bodySize) + bodySize;
}

/**
 * Bytes one record takes inside a batch (its length varint included), at offset delta
 * `offsetDelta` and timestamp delta `timestampDelta` from the batch's first record. A batch of
 * records r0..rn-1 with no compression is BATCH_HEADER_BYTES plus the sum of these, exactly, so a
 * producer can close a batch by bytes before encoding it (Kafka's batch.size).
 */
export function recordBytesInBatch(record: ProducerRecord, offsetDelta: number, timestampDelta = 0): number {
  return recordBytes(recordBodySize(timestampDelta, offsetDelta, record.key, record.value, record.headers));
}

/** Writes the fixed header (CRC last, over everything after it) of the batch in `out`. */
function finishBatch(out: Buffer, f: BatchFields, recordCount: number, maxTimestamp: number): Buffer {
  if (out.length - BATCH_LOG_OVERHEAD_BYTES > INT32_MAX) throw badArgument(`record batch of ${out.length} bytes is too large to encode`);
  writeInt64(out, f.baseOffset, OFF_BASE_OFFSET);
  out.writeInt32BE(out.length - BATCH_LOG_OVERHEAD_BYTES, OFF_LENGTH);
  out.writeInt32BE(0, OFF_LEADER_EPOCH);
  out[OFF_MAGIC] = BATCH_MAGIC;
  out.writeInt16BE(CODEC_ID[f.compression] | (f.timestampType === 'log-append' ? TIMESTAMP_TYPE_BIT : 0), OFF_ATTRIBUTES);
  out.writeInt32BE(f.lastOffsetDelta, OFF_LAST_OFFSET_DELTA);
  writeInt64(out, f.baseTimestamp, OFF_BASE_TIMESTAMP);
  writeInt64(out, maxTimestamp, OFF_MAX_TIMESTAMP);
  writeInt64(out, f.producerId, OFF_PRODUCER_ID);
  out.writeInt16BE(f.producerEpoch, OFF_PRODUCER_EPOCH);
  out.writeInt32BE(f.baseSequence, OFF_BASE_SEQUENCE);
  out.writeInt32BE(recordCount, OFF_RECORD_COUNT);
  out.writeUInt32BE(computeCrc(out, 0, out.length), OFF_CRC);
  return out;
}

/** `out` (records from BATCH_HEADER_BYTES, uncompressed) as the batch: compressed when `codec` says so. */
function packRecords(codec: Compression, records: Buffer): Buffer {
  if (codec === 'none') return records;
  const packed = compress(codec, records.subarray(BATCH_HEADER_BYTES));
  const out = Buffer.allocUnsafe(BATCH_HEADER_BYTES + packed.length);
  packed.copy(out, BATCH_HEADER_BYTES);
  return out;
}

/** Encodes placed records (offset deltas and timestamps already decided) into one batch. */
function encodePlaced(records: readonly PlacedRecord[], f: BatchFields): Buffer {
  const n = records.length;
  const sizes = new Array<number>(n);
  let bytes = BATCH_HEADER_BYTES;
  let maxTs = f.baseTimestamp;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    if (r.key !== null && !Buffer.isBuffer(r.key)) throw badArgument(`record ${i}: key must be a Buffer or null`);
    if (r.value !== null && !Buffer.isBuffer(r.value)) throw badArgument(`record ${i}: value must be a Buffer or null`);
    if (r.timestamp > maxTs) maxTs = r.timestamp;
    const s = recordBodySize(r.timestamp - f.baseTimestamp, r.offsetDelta, r.key, r.value, r.headers);
    sizes[i] = s;
    bytes += recordBytes(s);
  }
  const out = Buffer.allocUnsafe(bytes);
  let at = BATCH_HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    at = writeRecord(out, at, sizes[i]!, r.timestamp - f.baseTimestamp, r.offsetDelta, r.key, r.value, r.headers);
  }
  return finishBatch(packRecords(f.compression, out), f, n, maxTs);
}

/**
 * Encodes `records` as one batch with base offset 0 (the broker stamps the real one). Records
 * without a timestamp get `opts.now`. Throws ARCHLAB_QUEUE_BAD_ARGUMENT for an empty list or bad
 * fields, ARCHLAB_QUEUE_UNSUPPORTED for a codec this machine cannot run.
 *
 * The producer's hot path: two passes over `records` (sizes, then bytes) straight into one buffer
 * of the exact size, with no object per record (a 1 KB value is copied once, into the batch).
 */
export function encodeRecordBatch(
  records: ProducerRecord[],
  opts: { compression?: Compression; producerId?: number; producerEpoch?: number; baseSequence?: number; now: number },
): Buffer {
  const n = records.length;
  if (n === 0) throw badArgument('a record batch needs at least one record');
  if (n > INT32_MAX) throw badArgument(`too many records in one batch: ${n}`);
  const compression = opts.compression ?? 'none';
  if (!(compression in CODEC_ID)) throw badArgument(`unknown compression ${JSON.stringify(compression)}; use none, gzip, lz4 or zstd`);
  const producerId = opts.producerId ?? -1;
  const producerEpoch = opts.producerEpoch ?? -1;
  const baseSequence = opts.baseSequence ?? -1;
  const now = opts.now;
  checkInt('producerId', producerId, -1, Number.MAX_SAFE_INTEGER);
  checkInt('producerEpoch', producerEpoch, -1, 32767);
  checkInt('baseSequence', baseSequence, -1, INT32_MAX);
  checkInt('now', now, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const baseTs = records[0]!.timestamp ?? now;
  let maxTs = baseTs;
  let bytes = BATCH_HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    const ts = r.timestamp ?? now;
    if (!Number.isSafeInteger(ts)) throw badArgument(`record ${i}: timestamp must be an integer ms, got ${ts}`);
    if (r.key !== null && !Buffer.isBuffer(r.key)) throw badArgument(`record ${i}: key must be a Buffer or null`);
    if (r.value !== null && !Buffer.isBuffer(r.value)) throw badArgument(`record ${i}: value must be a Buffer or null`);
    if (ts > maxTs) maxTs = ts;
    bytes += recordBytes(recordBodySize(ts - baseTs, i, r.key, r.value, r.headers));
  }
  const out = Buffer.allocUnsafe(bytes);
  let at = BATCH_HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    const tsDelta = (r.timestamp ?? now) - baseTs;
    at = writeRecord(out, at, recordBodySize(tsDelta, i, r.key, r.value, r.headers), tsDelta, i, r.key, r.value, r.headers);
  }
  const f: BatchFields = { compression, producerId, producerEpoch, baseSequence, baseOffset: 0, lastOffsetDelta: n - 1, baseTimestamp: baseTs, timestampType: 'create' };
  return finishBatch(packRecords(compression, out), f, n, maxTs);
}

/**
 * Re-encodes a subset of a batch's records at their original offsets (compaction): same base
 * offset, lastOffsetDelta, producer fields, codec and base timestamp as `header`. `records` may be
 * empty (Kafka keeps an empty batch so the producer state it carries survives).
 */
export function encodeRetainedBatch(header: BatchHeader, records: readonly LogRecord[]): Buffer {
  const placed = records.map(
    (r): PlacedRecord => ({ offsetDelta: r.offset - header.baseOffset, timestamp: r.timestamp, key: r.key, value: r.value, headers: r.headers }),
  );
  return encodePlaced(placed, {
    compression: header.compression,
    producerId: header.producerId,
    producerEpoch: header.producerEpoch,
    baseSequence: header.baseSequence,
    baseOffset: header.baseOffset,
    lastOffsetDelta: header.lastOffsetDelta,
    baseTimestamp: header.baseTimestamp,
    timestampType: header.timestampType,
  });
}

// ---------------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------------

/** The records block of a verified batch, decompressed when needed. */
function recordsBlock(buf: Buffer, at: number, h: BatchHeader): Buffer {
  const raw = buf.subarray(at + BATCH_HEADER_BYTES, at + h.totalBytes);
  return h.compression === 'none' ? raw : decompress(h.compression, raw);
}

/**
 * Calls `visit` for each record of a verified batch at `at` without allocating records (compaction
 * and validation). Throws CORRUPT when the records do not parse to exactly `recordCount`.
 */
function walkRecords(
  buf: Buffer,
  at: number,
  h: BatchHeader,
  visit: ((block: Buffer, offsetDelta: number, tsDelta: number, keyAt: number, keyLen: number, valueAt: number, valueLen: number, headersAt: number, end: number) => void) | null,
): void {
  const block = recordsBlock(buf, at, h);
  const end = block.length;
  let pos = 0;
  let prevDelta = -1;
  for (let i = 0; i < h.recordCount; i++) {
    const len = readVarint(block, pos, end);
    pos = varEnd;
    const recEnd = pos + len;
    if (len < 0 || recEnd > end) throw corrupt(`record ${i} length ${len} runs past its batch`, { record: i });
    pos++; // attributes
    const tsDelta = readVarint(block, pos, recEnd);
    pos = varEnd;
    const offsetDelta = readVarint(block, pos, recEnd);
    pos = varEnd;
    if (offsetDelta <= prevDelta || offsetDelta > h.lastOffsetDelta) throw corrupt(`record ${i} offset delta ${offsetDelta} out of order`, { record: i });
    prevDelta = offsetDelta;
    const keyLen = readVarint(block, pos, recEnd);
    pos = varEnd;
    const keyAt = pos;
    if (keyLen < -1 || (keyLen > 0 && pos + keyLen > recEnd)) throw corrupt(`record ${i} key length ${keyLen} is bad`, { record: i });
    if (keyLen > 0) pos += keyLen;
    const valueLen = readVarint(block, pos, recEnd);
    pos = varEnd;
    const valueAt = pos;
    if (valueLen < -1 || (valueLen > 0 && pos + valueLen > recEnd)) throw corrupt(`record ${i} value length ${valueLen} is bad`, { record: i });
    if (valueLen > 0) pos += valueLen;
    const headersAt = pos;
    const hc = readVarint(block, pos, recEnd);
    pos = varEnd;
    if (hc < 0) throw corrupt(`record ${i} header count ${hc} is bad`, { record: i });
    for (let j = 0; j < hc; j++) {
      const kl = readVarint(block, pos, recEnd);
      pos = varEnd;
      if (kl < 0 || pos + kl > recEnd) throw corrupt(`record ${i} header ${j} key length is bad`, { record: i });
      pos += kl;
      const vl = readVarint(block, pos, recEnd);
      pos = varEnd;
      if (vl < 0 || pos + vl > recEnd) throw corrupt(`record ${i} header ${j} value length is bad`, { record: i });
      pos += vl;
    }
    if (pos !== recEnd) throw corrupt(`record ${i} has ${recEnd - pos} stray bytes`, { record: i });
    if (visit !== null) visit(block, offsetDelta, tsDelta, keyAt, keyLen, valueAt, valueLen, headersAt, recEnd);
  }
  if (pos !== end) throw corrupt(`record batch has ${end - pos} bytes after its ${h.recordCount} records`);
}

function readHeaders(block: Buffer, at: number, end: number): RecordHeader[] {
  const hc = readVarint(block, at, end);
  let pos = varEnd;
  if (hc === 0) return [];
  const out = new Array<RecordHeader>(hc);
  for (let j = 0; j < hc; j++) {
    const kl = readVarint(block, pos, end);
    pos = varEnd;
    const key = block.toString('utf8', pos, pos + kl);
    pos += kl;
    const vl = readVarint(block, pos, end);
    pos = varEnd;
    out[j] = { key, value: block.subarray(pos, pos + vl) };
    pos += vl;
  }
  return out;
}

/**
 * Checks that the records of a verified batch parse (lengths in bounds, count and offset deltas
 * consistent) without building them. The broker runs this on appendRaw so bad bytes never reach disk.
 */
export function validateRecords(buf: Buffer, at = 0, header: BatchHeader = readBatchHeader(buf, at)): void {
  walkRecords(buf, at, header, null);
}

/**
 * Decodes the batch at the start of `buf` (CRC checked; throws ARCHLAB_QUEUE_CORRUPT). Records with
 * an offset below `minOffset` (default: none) are skipped — a fetch's first batch may start before
 * the offset asked for. Keys, values and header values are views into `buf` (or into the
 * decompressed block): copy them to keep them past the buffer's life if it is reused.
 */
export function decodeRecordBatch(buf: Buffer, topic: string, partition: number, minOffset = -1): LogRecord[] {
  const h = verifyBatch(buf, 0, false);
  const out: LogRecord[] = [];
  walkRecords(buf, 0, h, (block, offsetDelta, tsDelta, keyAt, keyLen, valueAt, valueLen, headersAt, end) => {
    const offset = h.baseOffset + offsetDelta;
    if (offset < minOffset) return;
    out.push({
      topic,
      partition,
      offset,
      timestamp: h.timestampType === 'log-append' ? h.maxTimestamp : h.baseTimestamp + tsDelta,
      key: keyLen < 0 ? null : block.subarray(keyAt, keyAt + keyLen),
      value: valueLen < 0 ? null : block.subarray(valueAt, valueAt + valueLen),
      headers: readHeaders(block, headersAt, end),
    });
  });
  return out;
}

/** Decodes every batch laid end to end in `buf` (a fetch's bytes), skipping records below `minOffset`. */
export function decodeRecordBatches(buf: Buffer, topic: string, partition: number, minOffset = -1): LogRecord[] {
  const out: LogRecord[] = [];
  let at = 0;
  while (at < buf.length) {
    if (buf.length - at < BATCH_LOG_OVERHEAD_BYTES) throw corrupt('trailing bytes after the last record batch', { position: at });
    const size = batchSizeAt(buf, at);
    if (size < BATCH_HEADER_BYTES || at + size > buf.length) throw corrupt(`record batch at ${at} claims ${size} bytes`, { position: at });
    for (const r of decodeRecordBatch(buf.subarray(at, at + size), topic, partition, minOffset)) out.push(r);
    at += size;
  }
  return out;
}
