/**
 * Payloads of every frame type, encoded and decoded (docs/queue-protocol.md has the byte layouts).
 * Hot frames (PRODUCE, FETCH, PUBLISH, DELIVERY, ACK, NACK) are compact binary; rare control calls
 * are JSON. Encoders return whole frames, header included; where a payload ends with bytes that
 * already exist (a record batch, a message body, fetched batches), they return the header part and
 * those bytes as separate buffers so nothing big is copied.
 */
import { QueueError, type QueueErrorCode } from '../errors.js';
import type { Acks, AppendResult, Delivery, FetchRequest, PublishMessage } from '../types.js';
import { checkI64, checkU32, PayloadReader, PayloadWriter, protocolError, str16Bytes } from './codec.js';
import { EMPTY, FRAME_HEADER_BYTES, FrameType, MIN_FRAME_LENGTH, RESPONSE_BIT } from './frame.js';

/** Bodies up to this size are copied into the frame's buffer (one write); bigger ones are sent as they are. */
const INLINE_BODY_BYTES = 4096;

/**
 * A frame whose payload is `payloadBytes` long, of which the first `inlineBytes` are written into
 * the returned buffer; the rest follows as buffers of their own (a batch, a body).
 */
function frame(type: number, requestId: number, payloadBytes: number, inlineBytes = payloadBytes): PayloadWriter {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + inlineBytes);
  buf.writeUInt32BE(MIN_FRAME_LENGTH + payloadBytes, 0);
  buf[4] = type;
  buf.writeUInt32BE(requestId, 5);
  return WRITER.reset(buf, FRAME_HEADER_BYTES);
}

// Encoders and decoders run to completion without calling each other, so one writer and one reader
// serve them all.
const WRITER = new PayloadWriter(EMPTY);
const READER = new PayloadReader(EMPTY, '');

function reader(p: Buffer, what: string): PayloadReader {
  return READER.reset(p, what);
}

/** A response frame with an empty payload (PING, CANCEL, ACK, NACK). */
export function encodeEmpty(type: number, requestId: number): Buffer {
  return frame(type, requestId, 0).buf;
}

// ---------------------------------------------------------------------------------------------
// HELLO
// ---------------------------------------------------------------------------------------------

export interface Hello {
  version: number;
  /** "" when the client has none. */
  token: string;
  clientId: string;
}

export function encodeHello(requestId: number, h: Hello): Buffer {
  const tb = str16Bytes(h.token, 'token');
  const cb = str16Bytes(h.clientId, 'clientId');
  return frame(FrameType.HELLO, requestId, 2 + tb + cb).u16(h.version).str16(h.token, tb).str16(h.clientId, cb).buf;
}

export function decodeHello(p: Buffer): Hello {
  const r = reader(p, 'HELLO');
  const h = { version: r.u16(), token: r.str16(), clientId: r.str16() };
  r.done();
  return h;
}

export interface HelloOk {
  version: number;
  /** Largest frame the server accepts (`length` field), bytes. */
  maxFrameBytes: number;
  /** Requests the server works on at once for this connection; more wait in TCP buffers. */
  maxInFlight: number;
  /** The server closes a connection silent for this long; clients ping well within it. */
  idleTimeoutMs: number;
  server: string;
}

export function encodeHelloOk(requestId: number, h: HelloOk): Buffer {
  const sb = str16Bytes(h.server, 'server');
  return frame(FrameType.HELLO | RESPONSE_BIT, requestId, 2 + 12 + sb)
    .u16(h.version)
    .u32(h.maxFrameBytes)
    .u32(h.maxInFlight)
    .u32(h.idleTimeoutMs)
    .str16(h.server, sb).buf;
}

export function decodeHelloOk(p: Buffer): HelloOk {
  const r = reader(p, 'HELLO_OK');
  const h = { version: r.u16(), maxFrameBytes: r.u32(), maxInFlight: r.u32(), idleTimeoutMs: r.u32(), server: r.str16() };
  r.done();
  return h;
}

// ---------------------------------------------------------------------------------------------
// PRODUCE / FETCH (log)
// ---------------------------------------------------------------------------------------------

const ACKS: readonly Acks[] = ['none', 'leader', 'fsync'];
const ACKS_CODE: Record<Acks, number> = { none: 0, leader: 1, fsync: 2 };

function acksCode(acks: Acks): number {
  const c = ACKS_CODE[acks];
  if (c === undefined) throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `acks must be none, leader or fsync, got ${JSON.stringify(acks)}`);
  return c;
}

export interface Produce {
  topic: string;
  partition: number;
  acks: Acks;
  /** One encoded record batch (src/queue/log/record-batch.ts). */
  batch: Buffer;
}

/** [header+fields, batch]: the batch is sent as it is. */
export function encodeProduce(requestId: number, topic: string, partition: number, acks: Acks, batch: Buffer): Buffer[] {
  const tb = str16Bytes(topic, 'topic');
  const fields = tb + 4 + 1;
  const w = frame(FrameType.PRODUCE, requestId, fields + batch.length, fields).str16(topic, tb).u32(checkU32('partition', partition)).u8(acksCode(acks));
  return [w.buf, batch];
}

export function decodeProduce(p: Buffer): Produce {
  const r = reader(p, 'PRODUCE');
  const topic = r.str16();
  const partition = r.u32();
  const code = r.u8();
  const acks = ACKS[code];
  if (acks === undefined) throw protocolError(`PRODUCE: unknown acks code ${code}`);
  const batch = r.rest();
  if (batch.length === 0) throw protocolError('PRODUCE: no record batch');
  return { topic, partition, acks, batch };
}

export function encodeProduceOk(requestId: number, a: AppendResult): Buffer {
  return frame(FrameType.PRODUCE | RESPONSE_BIT, requestId, 17).i64(a.baseOffset).i64(a.lastOffset).u8(a.duplicate ? 1 : 0).buf;
}

export function decodeProduceOk(p: Buffer): AppendResult {
  const r = reader(p, 'PRODUCE_OK');
  const a = { baseOffset: r.i64(), lastOffset: r.i64(), duplicate: r.u8() === 1 };
  r.done();
  return a;
}

export interface Fetch {
  topic: string;
  partition: number;
  offset: number;
  maxBytes: number;
  maxWaitMs: number;
}

export function encodeFetch(requestId: number, f: FetchRequest & { maxBytes: number; maxWaitMs: number }): Buffer {
  const tb = str16Bytes(f.topic, 'topic');
  return frame(FrameType.FETCH, requestId, tb + 4 + 8 + 4 + 4)
    .str16(f.topic, tb)
    .u32(checkU32('partition', f.partition))
    .i64(checkI64('offset', f.offset))
    .u32(checkU32('maxBytes', f.maxBytes))
    .u32(checkU32('maxWaitMs', f.maxWaitMs)).buf;
}

export function decodeFetch(p: Buffer): Fetch {
  const r = reader(p, 'FETCH');
  const f = { topic: r.str16(), partition: r.u32(), offset: r.i64(), maxBytes: r.u32(), maxWaitMs: r.u32() };
  r.done();
  return f;
}

export interface FetchOk {
  batches: Buffer[];
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

/**
 * [header, fields, batch lengths, ...batches]: i64 nextOffset | i64 highWatermark | i64
 * logStartOffset | u32 count | count x u32 length | the batches back to back, as they came from the log.
 */
export function encodeFetchOk(requestId: number, f: FetchOk): Buffer[] {
  const n = f.batches.length;
  let total = 0;
  for (const b of f.batches) total += b.length;
  const fields = 24 + 4 + 4 * n;
  const w = frame(FrameType.FETCH | RESPONSE_BIT, requestId, fields + total, fields).i64(f.nextOffset).i64(f.highWatermark).i64(f.logStartOffset).u32(n);
  for (const b of f.batches) w.u32(b.length);
  const out = new Array<Buffer>(n + 1);
  out[0] = w.buf;
  for (let i = 0; i < n; i++) out[i + 1] = f.batches[i]!;
  return out;
}

export function decodeFetchOk(p: Buffer): FetchOk {
  const r = reader(p, 'FETCH_OK');
  const nextOffset = r.i64();
  const highWatermark = r.i64();
  const logStartOffset = r.i64();
  const n = r.u32();
  if (n * 4 > p.length) throw protocolError(`FETCH_OK: ${n} batches cannot fit in ${p.length} bytes`);
  const lengths = new Array<number>(n);
  for (let i = 0; i < n; i++) lengths[i] = r.u32();
  const batches = new Array<Buffer>(n);
  for (let i = 0; i < n; i++) batches[i] = r.bytes(lengths[i]!);
  r.done();
  return { batches, nextOffset, highWatermark, logStartOffset };
}

// ---------------------------------------------------------------------------------------------
// CONTROL (JSON)
// ---------------------------------------------------------------------------------------------

export interface Control {
  method: string;
  args: unknown[];
}

/** JSON has no bytes: a Buffer travels as `{ "$b64": "..." }`. */
function replacer(this: unknown, key: string, value: unknown): unknown {
  const raw = key === '' ? value : (this as Record<string, unknown>)[key];
  if (Buffer.isBuffer(raw)) return { $b64: raw.toString('base64') };
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.$b64 === 'string' && Object.keys(o).length === 1) return Buffer.from(o.$b64, 'base64');
  }
  return value;
}

export function toJsonBytes(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v, replacer) ?? 'null', 'utf8');
}

export function fromJsonBytes(p: Buffer, what: string): unknown {
  try {
    return JSON.parse(p.toString('utf8'), reviver) as unknown;
  } catch (err) {
    throw protocolError(`${what}: payload is not JSON (${(err as Error).message})`);
  }
}

export function encodeControl(requestId: number, method: string, args: unknown[]): Buffer {
  const body = toJsonBytes({ method, args });
  return frame(FrameType.CONTROL, requestId, body.length).raw(body).buf;
}

export function decodeControl(p: Buffer): Control {
  const v = fromJsonBytes(p, 'CONTROL');
  if (v === null || typeof v !== 'object' || typeof (v as Control).method !== 'string' || !Array.isArray((v as Control).args)) {
    throw protocolError('CONTROL: expected {"method": string, "args": array}');
  }
  return v as Control;
}

/** The result as JSON; `undefined` travels as an empty payload. */
export function encodeControlOk(requestId: number, result: unknown): Buffer {
  const body = result === undefined ? EMPTY : toJsonBytes(result);
  return frame(FrameType.CONTROL | RESPONSE_BIT, requestId, body.length).raw(body).buf;
}

export function decodeControlOk(p: Buffer): unknown {
  return p.length === 0 ? undefined : fromJsonBytes(p, 'CONTROL_OK');
}

// ---------------------------------------------------------------------------------------------
// PUBLISH / CONSUME / CANCEL / ACK / NACK / GET / DELIVERY (broker)
// ---------------------------------------------------------------------------------------------

const F_MANDATORY = 1;
const F_PRIORITY = 2;
const F_TTL = 4;
const F_DELAY = 8;
const F_MESSAGE_ID = 16;

export interface Publish {
  exchange: string;
  routingKey: string;
  message: PublishMessage;
  mandatory: boolean;
}

function headersBytes(headers: Record<string, string> | undefined): number {
  let n = 2;
  if (headers === undefined) return n;
  let count = 0;
  for (const k in headers) {
    const v = headers[k];
    if (typeof v !== 'string') {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `header ${JSON.stringify(k)} must be a string, got ${typeof v}`);
    }
    n += str16Bytes(k, 'header name') + str16Bytes(v, `header ${k}`);
    count++;
  }
  if (count > 0xffff) throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `at most 65535 headers, got ${count}`);
  return n;
}

function writeHeaders(w: PayloadWriter, headers: Record<string, string> | undefined): void {
  const at = w.pos;
  w.u16(0);
  if (headers === undefined) return;
  let count = 0;
  for (const k in headers) {
    const v = headers[k]!;
    w.str16(k, 2 + Buffer.byteLength(k)).str16(v, 2 + Buffer.byteLength(v));
    count++;
  }
  w.buf.writeUInt16BE(count, at);
}

function readHeaders(r: PayloadReader): Record<string, string> {
  const n = r.u16();
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) {
    const k = r.str16();
    out[k] = r.str16();
  }
  return out;
}

function checkOptionalU32(field: string, v: number | undefined): void {
  if (v !== undefined) checkU32(field, v);
}

/** [header+fields, body]. */
export function encodePublish(requestId: number, exchange: string, routingKey: string, m: PublishMessage, mandatory: boolean): Buffer[] {
  const eb = str16Bytes(exchange, 'exchange');
  const rb = str16Bytes(routingKey, 'routingKey');
  if (!Buffer.isBuffer(m.body)) throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', 'message body must be a Buffer');
  let flags = mandatory ? F_MANDATORY : 0;
  let fields = eb + rb + 1;
  if (m.priority !== undefined) {
    if (!Number.isInteger(m.priority) || m.priority < 0 || m.priority > 255) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `priority must be an integer 0..255, got ${m.priority}`);
    }
    flags |= F_PRIORITY;
    fields += 1;
  }
  checkOptionalU32('ttlMs', m.ttlMs);
  checkOptionalU32('delayMs', m.delayMs);
  if (m.ttlMs !== undefined) {
    flags |= F_TTL;
    fields += 4;
  }
  if (m.delayMs !== undefined) {
    flags |= F_DELAY;
    fields += 4;
  }
  let mb = 0;
  if (m.messageId !== undefined) {
    mb = str16Bytes(m.messageId, 'messageId');
    flags |= F_MESSAGE_ID;
    fields += mb;
  }
  fields += headersBytes(m.headers);
  // Small bodies go in the same buffer (one write); big ones are not copied.
  const inline = m.body.length <= INLINE_BODY_BYTES;
  const w = frame(FrameType.PUBLISH, requestId, fields + m.body.length, inline ? fields + m.body.length : fields)
    .str16(exchange, eb)
    .str16(routingKey, rb)
    .u8(flags);
  if (m.priority !== undefined) w.u8(m.priority);
  if (m.ttlMs !== undefined) w.u32(m.ttlMs);
  if (m.delayMs !== undefined) w.u32(m.delayMs);
  if (m.messageId !== undefined) w.str16(m.messageId, mb);
  writeHeaders(w, m.headers);
  if (inline) {
    w.raw(m.body);
    return [w.buf];
  }
  return [w.buf, m.body];
}

export function decodePublish(p: Buffer): Publish {
  const r = reader(p, 'PUBLISH');
  const exchange = r.str16();
  const routingKey = r.str16();
  const flags = r.u8();
  const message: PublishMessage = { body: EMPTY };
  if (flags & F_PRIORITY) message.priority = r.u8();
  if (flags & F_TTL) message.ttlMs = r.u32();
  if (flags & F_DELAY) message.delayMs = r.u32();
  if (flags & F_MESSAGE_ID) message.messageId = r.str16();
  message.headers = readHeaders(r);
  message.body = r.rest();
  return { exchange, routingKey, message, mandatory: (flags & F_MANDATORY) !== 0 };
}

export function encodePublishOk(requestId: number, routed: number): Buffer {
  return frame(FrameType.PUBLISH | RESPONSE_BIT, requestId, 4).u32(routed).buf;
}

export function decodePublishOk(p: Buffer): { routed: number } {
  const r = reader(p, 'PUBLISH_OK');
  const v = { routed: r.u32() };
  r.done();
  return v;
}

export interface Consume {
  /** Chosen by the client, unique among its live subscriptions on this connection; deliveries carry it. */
  subscriptionId: number;
  /** Initial credits = most deliveries held unacked; each ack or nack gives one back. */
  prefetch: number;
  queue: string;
}

export function encodeConsume(requestId: number, c: Consume): Buffer {
  const qb = str16Bytes(c.queue, 'queue');
  return frame(FrameType.CONSUME, requestId, 8 + qb).u32(checkU32('subscriptionId', c.subscriptionId)).u32(checkU32('prefetch', c.prefetch)).str16(c.queue, qb).buf;
}

export function decodeConsume(p: Buffer): Consume {
  const r = reader(p, 'CONSUME');
  const c = { subscriptionId: r.u32(), prefetch: r.u32(), queue: r.str16() };
  r.done();
  return c;
}

export function encodeConsumeOk(requestId: number, consumerTag: string): Buffer {
  const tb = str16Bytes(consumerTag, 'consumerTag');
  return frame(FrameType.CONSUME | RESPONSE_BIT, requestId, tb).str16(consumerTag, tb).buf;
}

export function decodeConsumeOk(p: Buffer): { consumerTag: string } {
  const r = reader(p, 'CONSUME_OK');
  const v = { consumerTag: r.str16() };
  r.done();
  return v;
}

export function encodeCancel(requestId: number, subscriptionId: number): Buffer {
  return frame(FrameType.CANCEL, requestId, 4).u32(subscriptionId).buf;
}

export function decodeCancel(p: Buffer): { subscriptionId: number } {
  const r = reader(p, 'CANCEL');
  const v = { subscriptionId: r.u32() };
  r.done();
  return v;
}

/** Most delivery tags one ACK frame carries. */
export const MAX_ACK_TAGS = 4096;

/** u32 count | count x i64 tag: acks issued together travel together (AMQP's `multiple`, but exact). */
export function encodeAck(requestId: number, deliveryTags: readonly number[]): Buffer {
  const n = deliveryTags.length;
  if (n < 1 || n > MAX_ACK_TAGS) throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `an ACK frame carries 1..${MAX_ACK_TAGS} tags, got ${n}`);
  const w = frame(FrameType.ACK, requestId, 4 + 8 * n).u32(n);
  for (let i = 0; i < n; i++) w.i64(deliveryTags[i]!);
  return w.buf;
}

export function decodeAck(p: Buffer): number[] {
  const r = reader(p, 'ACK');
  const n = r.u32();
  if (n < 1 || n > MAX_ACK_TAGS) throw protocolError(`ACK: ${n} tags; a frame carries 1..${MAX_ACK_TAGS}`);
  const tags = new Array<number>(n);
  for (let i = 0; i < n; i++) tags[i] = r.i64();
  r.done();
  return tags;
}

/** The tags of an ACK that failed, by their index in the frame; the others succeeded. */
export interface AckFailure {
  index: number;
  error: WireError;
}

/** u32 failures | failures x (u32 index | u32 length | error JSON). */
export function encodeAckOk(requestId: number, failures: readonly AckFailure[]): Buffer {
  if (failures.length === 0) return frame(FrameType.ACK | RESPONSE_BIT, requestId, 4).u32(0).buf;
  const bodies = failures.map((f) => toJsonBytes(f.error));
  let size = 4;
  for (const b of bodies) size += 8 + b.length;
  const w = frame(FrameType.ACK | RESPONSE_BIT, requestId, size).u32(failures.length);
  failures.forEach((f, i) => w.u32(f.index).u32(bodies[i]!.length).raw(bodies[i]!));
  return w.buf;
}

export function decodeAckOk(p: Buffer): { index: number; error: QueueError }[] {
  const r = reader(p, 'ACK_OK');
  const n = r.u32();
  if (n === 0) {
    r.done();
    return [];
  }
  const out: { index: number; error: QueueError }[] = [];
  for (let i = 0; i < n; i++) {
    const index = r.u32();
    const body = r.bytes(r.u32());
    out.push({ index, error: decodeError(body) });
  }
  r.done();
  return out;
}

export function encodeNack(requestId: number, deliveryTag: number, requeue: boolean): Buffer {
  return frame(FrameType.NACK, requestId, 9).i64(deliveryTag).u8(requeue ? 1 : 0).buf;
}

export function decodeNack(p: Buffer): { deliveryTag: number; requeue: boolean } {
  const r = reader(p, 'NACK');
  const v = { deliveryTag: r.i64(), requeue: r.u8() !== 0 };
  r.done();
  return v;
}

export function encodeGet(requestId: number, queue: string): Buffer {
  const qb = str16Bytes(queue, 'queue');
  return frame(FrameType.GET, requestId, qb).str16(queue, qb).buf;
}

export function decodeGet(p: Buffer): { queue: string } {
  const r = reader(p, 'GET');
  const v = { queue: r.str16() };
  r.done();
  return v;
}

/**
 * A delivery: i64 tag | u32 deliveryCount | u8 flags (1 = redelivered) | u8 priority |
 * i64 publishedAt | str16 queue | str16 messageId | headers | body (the rest).
 */
function deliveryBytes(d: Delivery): { fields: number; qb: number; mb: number } {
  const qb = str16Bytes(d.queue, 'queue');
  const mb = str16Bytes(d.messageId, 'messageId');
  return { fields: 8 + 4 + 1 + 1 + 8 + qb + mb + headersBytes(d.headers), qb, mb };
}

function writeDelivery(w: PayloadWriter, d: Delivery, qb: number, mb: number): void {
  w.i64(d.deliveryTag)
    .u32(d.deliveryCount)
    .u8(d.redelivered ? 1 : 0)
    .u8(d.priority)
    .i64(d.publishedAt)
    .str16(d.queue, qb)
    .str16(d.messageId, mb);
  writeHeaders(w, d.headers);
}

function readDelivery(r: PayloadReader): Delivery {
  const deliveryTag = r.i64();
  const deliveryCount = r.u32();
  const redelivered = (r.u8() & 1) !== 0;
  const priority = r.u8();
  const publishedAt = r.i64();
  const queue = r.str16();
  const messageId = r.str16();
  const headers = readHeaders(r);
  return { deliveryTag, queue, messageId, body: r.rest(), headers, priority, deliveryCount, redelivered, publishedAt };
}

function inlineBytes(fields: number, body: Buffer): number {
  return body.length <= INLINE_BODY_BYTES ? fields + body.length : fields;
}

function withBody(w: PayloadWriter, body: Buffer): Buffer[] {
  if (body.length <= INLINE_BODY_BYTES) {
    w.raw(body);
    return [w.buf];
  }
  return [w.buf, body];
}

/** Pushed with request id 0: u32 subscriptionId | delivery. */
export function encodeDelivery(subscriptionId: number, d: Delivery): Buffer[] {
  const { fields, qb, mb } = deliveryBytes(d);
  const w = frame(FrameType.DELIVERY, 0, 4 + fields + d.body.length, inlineBytes(4 + fields, d.body)).u32(subscriptionId);
  writeDelivery(w, d, qb, mb);
  return withBody(w, d.body);
}

export function decodeDelivery(p: Buffer): { subscriptionId: number; delivery: Delivery } {
  const r = reader(p, 'DELIVERY');
  const subscriptionId = r.u32();
  return { subscriptionId, delivery: readDelivery(r) };
}

/** u8 present (0 = the queue had nothing ready) | delivery. */
export function encodeGetOk(requestId: number, d: Delivery | null): Buffer[] {
  if (d === null) return [frame(FrameType.GET | RESPONSE_BIT, requestId, 1).u8(0).buf];
  const { fields, qb, mb } = deliveryBytes(d);
  const w = frame(FrameType.GET | RESPONSE_BIT, requestId, 1 + fields + d.body.length, inlineBytes(1 + fields, d.body)).u8(1);
  writeDelivery(w, d, qb, mb);
  return withBody(w, d.body);
}

export function decodeGetOk(p: Buffer): Delivery | null {
  const r = reader(p, 'GET_OK');
  if (r.u8() === 0) {
    r.done();
    return null;
  }
  return readDelivery(r);
}

// ---------------------------------------------------------------------------------------------
// GOAWAY / ERROR
// ---------------------------------------------------------------------------------------------

export function encodeGoaway(reason: string): Buffer {
  const rb = str16Bytes(reason.slice(0, 1000), 'reason');
  return frame(FrameType.GOAWAY, 0, rb).str16(reason.slice(0, 1000), rb).buf;
}

export function decodeGoaway(p: Buffer): { reason: string } {
  const r = reader(p, 'GOAWAY');
  const v = { reason: r.str16() };
  r.done();
  return v;
}

/** What an error frame carries, as JSON. */
export interface WireError {
  code: string;
  message: string;
  retryable: boolean;
  details?: Record<string, unknown>;
}

export function encodeError(requestId: number, e: WireError): Buffer {
  let body: Buffer;
  try {
    body = toJsonBytes(e);
  } catch {
    // details that do not serialise (a cycle, a BigInt) are dropped rather than losing the error.
    body = toJsonBytes({ code: e.code, message: e.message, retryable: e.retryable });
  }
  return frame(FrameType.ERROR, requestId, body.length).raw(body).buf;
}

/** The error a client rethrows: a QueueError with the code, message, retryable flag and details sent. */
export function decodeError(p: Buffer): QueueError {
  const v = fromJsonBytes(p, 'ERROR') as Partial<WireError> | null;
  if (v === null || typeof v !== 'object' || typeof v.code !== 'string' || typeof v.message !== 'string') {
    return protocolError('ERROR frame without {code, message}');
  }
  const details = v.details !== null && typeof v.details === 'object' ? v.details : undefined;
  const err = new QueueError(v.code as QueueErrorCode, v.message, details === undefined ? {} : { details });
  if (typeof v.retryable === 'boolean' && v.retryable !== err.retryable) {
    Object.defineProperty(err, 'retryable', { value: v.retryable, enumerable: true });
  }
  return err;
}
