/**
 * The broker journal's bytes. Pure: encoding into buffers, decoding from buffers, and the replay
 * reducer that turns a sequence of records into the state to rebuild.
 *
 * The file is a sequence of frames; one frame is what one write of the group commit carried:
 *
 *   frame:  [u32 LE magic 'AQJ1'][u32 LE payload length][u32 LE CRC-32 of the payload][payload]
 *   payload: records, each [u8 type][u32 LE body length][body]
 *
 * A frame is all-or-nothing: a frame cut short or failing its CRC at the end of the file is a torn
 * tail (a write the crash interrupted, whose publishes were never acknowledged under fsync 'always').
 * Record bodies (all integers little-endian, f64 for times and sequence numbers, strings UTF-8):
 *
 *   HIGHWATER        f64 next message seq, u32 next queue id          (first record of a compacted file)
 *   EXCHANGE_DECLARE u8 type, name (rest)
 *   EXCHANGE_DELETE  name (rest)
 *   QUEUE_DECLARE    u32 qid, u16 name length, name, config JSON (rest)
 *   QUEUE_DELETE     u32 qid
 *   BIND / UNBIND    JSON { queue, exchange, routingKey, args } (rest)
 *   PUBLISH          f64 seq, f64 publishedAt, f64 enqueuedAt, f64 ttlMs, f64 delayMs, u8 priority,
 *                    u16 queue count, u32 qid x count, u16 id length, id, u16 header count,
 *                    (u16 key length, key, u32 value length, value) x count, body (rest)
 *   DELIVER          u32 qid, f64 seq, u32 delivery count        (a delivery started)
 *   SETTLE           u32 qid, f64 seq                             (the message left that queue)
 */
import { crc32 } from 'node:zlib';
import { QueueError } from '../errors.js';
import type { ExchangeConfig, ExchangeType, QueueConfig } from '../types.js';
import type { StoredMessage } from './queue-core.js';

export const FRAME_MAGIC = 0x314a5141; // 'AQJ1' read little-endian
export const FRAME_HEADER_BYTES = 12;
export const RECORD_HEADER_BYTES = 5;
/** A frame longer than this is never valid (damage, not data). */
export const MAX_FRAME_BYTES = 1 << 30;
/** Bytes of a fresh chunk of the writer; a frame holds at most one chunk (or one bigger record). */
export const CHUNK_BYTES = 1 << 20;

export const REC_HIGHWATER = 1;
export const REC_EXCHANGE_DECLARE = 2;
export const REC_EXCHANGE_DELETE = 3;
export const REC_QUEUE_DECLARE = 4;
export const REC_QUEUE_DELETE = 5;
export const REC_BIND = 6;
export const REC_UNBIND = 7;
export const REC_PUBLISH = 8;
export const REC_DELIVER = 9;
export const REC_SETTLE = 10;

const EXCHANGE_TYPE_CODES: Record<ExchangeType, number> = { direct: 0, fanout: 1, topic: 2, headers: 3 };
const EXCHANGE_TYPES: ExchangeType[] = ['direct', 'fanout', 'topic', 'headers'];

const PUBLISH_FIXED_BYTES = 8 * 5 + 1 + 2 + 2 + 2;
const DELIVER_BODY_BYTES = 4 + 8 + 4;
const SETTLE_BODY_BYTES = 4 + 8;

export interface BindingRecord {
  queue: string;
  exchange: string;
  routingKey: string;
  args: Record<string, string>;
}

/** Bytes a PUBLISH record of a message to `queues` queues takes, header included. */
export function publishRecordBytes(messageId: string, body: Buffer, headers: Readonly<Record<string, string>>, queues: number): number {
  let n = RECORD_HEADER_BYTES + PUBLISH_FIXED_BYTES + 4 * queues + Buffer.byteLength(messageId) + body.length;
  for (const k in headers) n += 6 + Buffer.byteLength(k) + Buffer.byteLength(headers[k]!);
  return n;
}

/**
 * Appends records into big chunks, each chunk becoming one frame when taken. Records are written in
 * place (no intermediate buffers); a frame's header is filled in by take().
 */
export class RecordWriter {
  private chunk: Buffer;
  /** Where the open frame starts in `chunk` (its header is reserved there). */
  private frameStart = 0;
  private pos = FRAME_HEADER_BYTES;
  private sealed: Buffer[] = [];
  private sealedBytes = 0;
  private records = 0;

  constructor(private readonly chunkBytes = CHUNK_BYTES) {
    this.chunk = Buffer.allocUnsafe(chunkBytes);
  }

  /** Bytes pending: sealed frames plus the open one (headers included). */
  get bytes(): number {
    return this.sealedBytes + (this.records > 0 ? this.pos - this.frameStart : 0);
  }

  get empty(): boolean {
    return this.sealed.length === 0 && this.records === 0;
  }

  /** Frames of everything written so far, CRC'd; the writer is empty afterwards. */
  take(): Buffer[] {
    this.sealOpenFrame();
    const out = this.sealed;
    this.sealed = [];
    this.sealedBytes = 0;
    return out;
  }

  /** Puts frames taken earlier (and not written) back in front of what was written since. */
  unshiftFrames(frames: Buffer[]): void {
    if (frames.length === 0) return;
    this.sealOpenFrame();
    this.sealed = [...frames, ...this.sealed];
    for (const f of frames) this.sealedBytes += f.length;
  }

  /** Drops everything pending. */
  discard(): void {
    this.sealed = [];
    this.sealedBytes = 0;
    this.records = 0;
    this.pos = this.frameStart + FRAME_HEADER_BYTES;
  }

  private sealOpenFrame(): void {
    if (this.records === 0) return;
    const frame = this.chunk.subarray(this.frameStart, this.pos);
    frame.writeUInt32LE(FRAME_MAGIC, 0);
    frame.writeUInt32LE(frame.length - FRAME_HEADER_BYTES, 4);
    frame.writeUInt32LE(crc32(frame.subarray(FRAME_HEADER_BYTES)), 8);
    this.sealed.push(frame);
    this.sealedBytes += frame.length;
    this.records = 0;
    // The rest of the chunk carries on as the next frame; the bytes of this one are never touched again.
    this.frameStart = this.pos;
    this.pos = this.frameStart + FRAME_HEADER_BYTES;
  }

  /** Reserves a record of `bodyBytes`, writes its header, returns where its body starts. */
  private begin(type: number, bodyBytes: number): number {
    const need = RECORD_HEADER_BYTES + bodyBytes;
    if (this.pos + need > this.chunk.length) {
      this.sealOpenFrame();
      if (this.pos + need > this.chunk.length) {
        this.chunk = Buffer.allocUnsafe(Math.max(this.chunkBytes, FRAME_HEADER_BYTES + need));
        this.frameStart = 0;
        this.pos = FRAME_HEADER_BYTES;
      }
    }
    const c = this.chunk;
    c[this.pos] = type;
    c.writeUInt32LE(bodyBytes, this.pos + 1);
    const at = this.pos + RECORD_HEADER_BYTES;
    this.pos = at + bodyBytes;
    this.records++;
    return at;
  }

  highwater(nextSeq: number, nextQid: number): void {
    const at = this.begin(REC_HIGHWATER, 12);
    this.chunk.writeDoubleLE(nextSeq, at);
    this.chunk.writeUInt32LE(nextQid, at + 8);
  }

  exchangeDeclare(name: string, config: ExchangeConfig): void {
    const n = Buffer.byteLength(name);
    const at = this.begin(REC_EXCHANGE_DECLARE, 1 + n);
    this.chunk[at] = EXCHANGE_TYPE_CODES[config.type];
    this.chunk.write(name, at + 1, 'utf8');
  }

  exchangeDelete(name: string): void {
    const n = Buffer.byteLength(name);
    const at = this.begin(REC_EXCHANGE_DELETE, n);
    this.chunk.write(name, at, 'utf8');
  }

  queueDeclare(qid: number, name: string, config: QueueConfig): void {
    const json = JSON.stringify(config);
    const n = Buffer.byteLength(name);
    const j = Buffer.byteLength(json);
    const at = this.begin(REC_QUEUE_DECLARE, 4 + 2 + n + j);
    this.chunk.writeUInt32LE(qid, at);
    this.chunk.writeUInt16LE(n, at + 4);
    this.chunk.write(name, at + 6, 'utf8');
    this.chunk.write(json, at + 6 + n, 'utf8');
  }

  queueDelete(qid: number): void {
    const at = this.begin(REC_QUEUE_DELETE, 4);
    this.chunk.writeUInt32LE(qid, at);
  }

  binding(bind: boolean, b: BindingRecord): void {
    const json = JSON.stringify(b);
    const at = this.begin(bind ? REC_BIND : REC_UNBIND, Buffer.byteLength(json));
    this.chunk.write(json, at, 'utf8');
  }

  /** `bytes` must be publishRecordBytes(msg.messageId, msg.body, msg.headers, qids.length). */
  publish(msg: StoredMessage, qids: readonly number[], bytes: number): void {
    let at = this.begin(REC_PUBLISH, bytes - RECORD_HEADER_BYTES);
    const c = this.chunk;
    c.writeDoubleLE(msg.seq, at);
    c.writeDoubleLE(msg.publishedAt, at + 8);
    c.writeDoubleLE(msg.enqueuedAt, at + 16);
    c.writeDoubleLE(msg.ttlMs, at + 24);
    c.writeDoubleLE(msg.delayMs, at + 32);
    c[at + 40] = msg.priority;
    c.writeUInt16LE(qids.length, at + 41);
    at += 43;
    for (const q of qids) {
      c.writeUInt32LE(q, at);
      at += 4;
    }
    const idLen = c.write(msg.messageId, at + 2, 'utf8');
    c.writeUInt16LE(idLen, at);
    at += 2 + idLen;
    const countAt = at;
    at += 2;
    let count = 0;
    for (const k in msg.headers) {
      const kl = c.write(k, at + 2, 'utf8');
      c.writeUInt16LE(kl, at);
      at += 2 + kl;
      const vl = c.write(msg.headers[k]!, at + 4, 'utf8');
      c.writeUInt32LE(vl, at);
      at += 4 + vl;
      count++;
    }
    c.writeUInt16LE(count, countAt);
    msg.body.copy(c, at);
  }

  deliver(qid: number, seq: number, deliveryCount: number): void {
    const at = this.begin(REC_DELIVER, DELIVER_BODY_BYTES);
    this.chunk.writeUInt32LE(qid, at);
    this.chunk.writeDoubleLE(seq, at + 4);
    this.chunk.writeUInt32LE(Math.min(deliveryCount, 0xffffffff), at + 12);
  }

  settle(qid: number, seq: number): void {
    const at = this.begin(REC_SETTLE, SETTLE_BODY_BYTES);
    this.chunk.writeUInt32LE(qid, at);
    this.chunk.writeDoubleLE(seq, at + 4);
  }
}

// -----------------------------------------------------------------------------------------------
// Replay
// -----------------------------------------------------------------------------------------------

export interface ReplayedMessage {
  seq: number;
  messageId: string;
  body: Buffer;
  headers: Record<string, string>;
  priority: number;
  publishedAt: number;
  enqueuedAt: number;
  ttlMs: number;
  delayMs: number;
  /** Queue id -> deliveries started (0 = never delivered). */
  queues: Map<number, number>;
}

export interface ReplayedQueue {
  qid: number;
  name: string;
  config: QueueConfig;
}

/** The durable state a journal describes. */
export interface ReplayState {
  exchanges: Map<string, ExchangeConfig>;
  /** By queue id. */
  queues: Map<number, ReplayedQueue>;
  /** By bindingKey-like identity. */
  bindings: Map<string, BindingRecord>;
  /** Live messages by seq, in journal order. */
  messages: Map<number, ReplayedMessage>;
  /** Next message seq and queue id to hand out (above everything in the file). */
  nextSeq: number;
  nextQid: number;
  records: number;
}

export function emptyReplayState(): ReplayState {
  return { exchanges: new Map(), queues: new Map(), bindings: new Map(), messages: new Map(), nextSeq: 1, nextQid: 1, records: 0 };
}

function corrupt(message: string, details: Record<string, unknown>): QueueError {
  return new QueueError('ARCHLAB_QUEUE_CORRUPT', message, { details });
}

function bindingId(b: BindingRecord): string {
  return JSON.stringify([b.queue, b.exchange, b.routingKey, b.args]);
}

/**
 * Applies every record of a CRC-valid frame payload to `state`. A record that does not parse inside a
 * valid frame is corruption (or a file from another version): ARCHLAB_QUEUE_CORRUPT.
 */
export function applyFrame(state: ReplayState, payload: Buffer, position: number): void {
  let at = 0;
  while (at < payload.length) {
    if (at + RECORD_HEADER_BYTES > payload.length) throw corrupt('journal record header cut short inside a valid frame', { position, at });
    const type = payload[at]!;
    const len = payload.readUInt32LE(at + 1);
    const start = at + RECORD_HEADER_BYTES;
    const end = start + len;
    if (end > payload.length) throw corrupt('journal record longer than its frame', { position, at, type, len });
    try {
      applyRecord(state, type, payload.subarray(start, end));
    } catch (err) {
      if (err instanceof QueueError) throw err;
      throw corrupt(`journal record of type ${type} does not parse: ${(err as Error).message}`, { position, at, type });
    }
    state.records++;
    at = end;
  }
}

function applyRecord(s: ReplayState, type: number, b: Buffer): void {
  switch (type) {
    case REC_HIGHWATER:
      s.nextSeq = Math.max(s.nextSeq, b.readDoubleLE(0));
      s.nextQid = Math.max(s.nextQid, b.readUInt32LE(8));
      return;
    case REC_EXCHANGE_DECLARE: {
      const t = EXCHANGE_TYPES[b[0]!];
      if (t === undefined) throw corrupt(`unknown exchange type code ${b[0]}`, {});
      s.exchanges.set(b.toString('utf8', 1), { type: t, durable: true });
      return;
    }
    case REC_EXCHANGE_DELETE: {
      const name = b.toString('utf8');
      s.exchanges.delete(name);
      for (const [id, bd] of s.bindings) if (bd.exchange === name) s.bindings.delete(id);
      return;
    }
    case REC_QUEUE_DECLARE: {
      const qid = b.readUInt32LE(0);
      const n = b.readUInt16LE(4);
      const name = b.toString('utf8', 6, 6 + n);
      const config = JSON.parse(b.toString('utf8', 6 + n)) as QueueConfig;
      s.queues.set(qid, { qid, name, config });
      s.nextQid = Math.max(s.nextQid, qid + 1);
      return;
    }
    case REC_QUEUE_DELETE: {
      const qid = b.readUInt32LE(0);
      const q = s.queues.get(qid);
      s.queues.delete(qid);
      if (q !== undefined) for (const [id, bd] of s.bindings) if (bd.queue === q.name) s.bindings.delete(id);
      return;
    }
    case REC_BIND:
    case REC_UNBIND: {
      const bd = JSON.parse(b.toString('utf8')) as BindingRecord;
      if (type === REC_BIND) s.bindings.set(bindingId(bd), bd);
      else s.bindings.delete(bindingId(bd));
      return;
    }
    case REC_PUBLISH: {
      const m = decodePublish(b);
      s.messages.set(m.seq, m);
      s.nextSeq = Math.max(s.nextSeq, m.seq + 1);
      return;
    }
    case REC_DELIVER: {
      const m = s.messages.get(b.readDoubleLE(4));
      const qid = b.readUInt32LE(0);
      if (m !== undefined && m.queues.has(qid)) m.queues.set(qid, b.readUInt32LE(12));
      return;
    }
    case REC_SETTLE: {
      const seq = b.readDoubleLE(4);
      const m = s.messages.get(seq);
      if (m === undefined) return;
      m.queues.delete(b.readUInt32LE(0));
      if (m.queues.size === 0) s.messages.delete(seq);
      return;
    }
    default:
      throw corrupt(`unknown journal record type ${type}`, { type });
  }
}

function decodePublish(b: Buffer): ReplayedMessage {
  const seq = b.readDoubleLE(0);
  const publishedAt = b.readDoubleLE(8);
  const enqueuedAt = b.readDoubleLE(16);
  const ttlMs = b.readDoubleLE(24);
  const delayMs = b.readDoubleLE(32);
  const priority = b[40]!;
  const nq = b.readUInt16LE(41);
  let at = 43;
  const queues = new Map<number, number>();
  for (let i = 0; i < nq; i++) {
    queues.set(b.readUInt32LE(at), 0);
    at += 4;
  }
  const idLen = b.readUInt16LE(at);
  const messageId = b.toString('utf8', at + 2, at + 2 + idLen);
  at += 2 + idLen;
  const nh = b.readUInt16LE(at);
  at += 2;
  const headers: Record<string, string> = {};
  for (let i = 0; i < nh; i++) {
    const kl = b.readUInt16LE(at);
    const k = b.toString('utf8', at + 2, at + 2 + kl);
    at += 2 + kl;
    const vl = b.readUInt32LE(at);
    headers[k] = b.toString('utf8', at + 4, at + 4 + vl);
    at += 4 + vl;
  }
  if (at > b.length) throw corrupt('publish record cut short', { seq });
  // Copied: the read window is reused.
  const body = Buffer.from(b.subarray(at));
  return { seq, messageId, body, headers, priority, publishedAt, enqueuedAt, ttlMs, delayMs, queues };
}

/** Parses one frame header at `buf[at..]`: payload length and CRC, or undefined when it is not a frame header. */
export function readFrameHeader(buf: Buffer, at: number): { length: number; crc: number } | undefined {
  if (buf.readUInt32LE(at) !== FRAME_MAGIC) return undefined;
  const length = buf.readUInt32LE(at + 4);
  if (length === 0 || length > MAX_FRAME_BYTES) return undefined;
  return { length, crc: buf.readUInt32LE(at + 8) };
}
