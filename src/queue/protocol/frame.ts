/**
 * Frames of the archlab queue protocol (docs/queue-protocol.md): every frame is
 *
 * ```
 *   u32 length | u8 type | u32 requestId | payload
 * ```
 *
 * big-endian, where `length` counts the bytes after itself (5 + payload). Requests carry an id the
 * client picks (never 0) and the response to a request carries the same id, so many requests can be
 * in flight on one connection and their responses may come back in any order. Frames the server
 * pushes on its own (deliveries, goaway) carry id 0.
 *
 * `FrameDecoder` turns a byte stream into frames whatever the TCP chunking: a frame split over many
 * chunks is reassembled, many frames in one chunk come out one by one, and a frame wholly inside one
 * chunk is handed out as a view of that chunk (no copy). A large frame (a 256 KiB record batch
 * arrives in four or more 64 KiB socket reads) is assembled as its chunks arrive, each copied once
 * into the frame's own buffer while it is still in the CPU cache, rather than all at the end.
 */
import { QueueError } from '../errors.js';

/** The protocol version this code speaks; HELLO carries it and the server refuses others. */
export const PROTOCOL_VERSION = 1;

/** u32 length + u8 type + u32 requestId. */
export const FRAME_HEADER_BYTES = 9;
/** Bytes `length` counts at the least: type + requestId. */
export const MIN_FRAME_LENGTH = 5;
/** Default bound on a frame's `length`. 16 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Largest `maxFrameBytes` either side accepts (the u32 length field allows more; memory does not). */
export const MAX_MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** A response's type is its request's type with this bit set. */
export const RESPONSE_BIT = 0x80;

/** Frame types. Requests go client -> server; `type | RESPONSE_BIT` answers them. */
export const FrameType = {
  /** First frame of a connection: version, token, client id. */
  HELLO: 0x01,
  /** Keep-alive and liveness check; answered with an empty PING response. */
  PING: 0x02,
  /** Append one encoded record batch to a partition (log). */
  PRODUCE: 0x10,
  /** Read raw record batches from a partition, long-polling if asked (log). */
  FETCH: 0x11,
  /** A rare call as JSON `{ method, args }`: declare, describe, groups, stats (log and broker). */
  CONTROL: 0x20,
  /** Publish one message to an exchange (broker). */
  PUBLISH: 0x30,
  /** Start a consumer on a queue with a client-chosen subscription id and prefetch credits. */
  CONSUME: 0x31,
  /** Stop a consumer. */
  CANCEL: 0x32,
  /** Settle a delivery; gives the delivery's subscription one credit back. */
  ACK: 0x33,
  /** Reject a delivery (requeue or dead-letter); gives one credit back. */
  NACK: 0x34,
  /** Pull one ready message. */
  GET: 0x35,
  /** Pushed: a delivery for a subscription (request id 0). */
  DELIVERY: 0x40,
  /** Pushed: the server is closing; finish what is in flight, then reconnect. */
  GOAWAY: 0x41,
  /** The answer to a failed request (its id), or a connection-level error (id 0) before a close. */
  ERROR: 0x7f,
} as const;

export type FrameTypeName = keyof typeof FrameType;

const NAMES = new Map<number, string>();
for (const [name, code] of Object.entries(FrameType)) {
  NAMES.set(code, name);
  if (code < 0x40) NAMES.set(code | RESPONSE_BIT, `${name}_OK`);
}

/** `0x10` -> "PRODUCE", `0x90` -> "PRODUCE_OK"; undefined for a type the protocol does not have. */
export function frameTypeName(type: number): string | undefined {
  return NAMES.get(type);
}

/** Request types a client may send (the server refuses any other type with a PROTOCOL error). */
export const REQUEST_TYPES: ReadonlySet<number> = new Set([
  FrameType.HELLO,
  FrameType.PING,
  FrameType.PRODUCE,
  FrameType.FETCH,
  FrameType.CONTROL,
  FrameType.PUBLISH,
  FrameType.CONSUME,
  FrameType.CANCEL,
  FrameType.ACK,
  FrameType.NACK,
  FrameType.GET,
]);

export interface Frame {
  type: number;
  requestId: number;
  /** A view into the received bytes; copy it to keep it past the current tick if the chunk is reused. */
  payload: Buffer;
}

/**
 * The 9-byte header of a frame whose payload is `payloadBytes` long. The payload is written after
 * it by the caller (often as separate buffers, so a record batch is never copied).
 */
export function frameHeader(type: number, requestId: number, payloadBytes: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32BE(MIN_FRAME_LENGTH + payloadBytes, 0);
  h[4] = type;
  h.writeUInt32BE(requestId, 5);
  return h;
}

/** A whole frame in one buffer: header and payload. */
export function encodeFrame(type: number, requestId: number, payload: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out.writeUInt32BE(MIN_FRAME_LENGTH + payload.length, 0);
  out[4] = type;
  out.writeUInt32BE(requestId, 5);
  payload.copy(out, FRAME_HEADER_BYTES);
  return out;
}

export const EMPTY: Buffer = Buffer.alloc(0);

/**
 * A streaming frame decoder. `push()` chunks as they arrive; `next()` returns one complete frame or
 * null when more bytes are needed. Holds at most one incomplete frame plus the complete frames not yet
 * taken (the caller decides how many to take: the server stops taking, and stops reading the
 * socket, while too many requests are in flight).
 *
 * `next()` throws QueueError ARCHLAB_QUEUE_PROTOCOL for a length below 5, and
 * ARCHLAB_QUEUE_MESSAGE_TOO_LARGE for a length over `maxFrameBytes`, as soon as the 4 length bytes
 * are in (before buffering the body). After a throw the stream is unusable: close the connection.
 */
export class FrameDecoder {
  private readonly maxFrameBytes: number;
  /** Chunks not yet consumed; `head` is the first live one and `offset` the first live byte in it. */
  private chunks: Buffer[] = [];
  private head = 0;
  private offset = 0;
  /** Bytes received and not yet returned, `asmFilled` included. */
  private buffered = 0;
  private failed: QueueError | undefined;
  /**
   * The next frame, whole (length field included), while it is being assembled from chunks as they
   * arrive. While it is short of `asmFilled === asm.length`, `chunks` is empty: every byte received
   * so far is in it. Once full, `chunks` holds the bytes after it.
   */
  private asm: Buffer | undefined;
  private asmFilled = 0;

  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < MIN_FRAME_LENGTH || maxFrameBytes > MAX_MAX_FRAME_BYTES) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `maxFrameBytes must be an integer ${MIN_FRAME_LENGTH}..${MAX_MAX_FRAME_BYTES}, got ${maxFrameBytes}`);
    }
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const asm = this.asm;
    if (asm !== undefined && this.asmFilled < asm.length) {
      const n = Math.min(chunk.length, asm.length - this.asmFilled);
      chunk.copy(asm, this.asmFilled, 0, n);
      this.asmFilled += n;
      this.buffered += n;
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.maybeAssemble();
  }

  /**
   * Starts assembling the next frame when it is incomplete and already spans two chunks or more,
   * and at least 1/16 of it is in: the whole frame's buffer is allocated only once the peer has
   * sent a good part of it (a length field alone reserves nothing), and never past maxFrameBytes.
   */
  private maybeAssemble(): void {
    if (this.asm !== undefined || this.failed !== undefined || this.chunks.length - this.head < 2 || this.buffered < 4) return;
    const length = this.peekLength();
    if (length < MIN_FRAME_LENGTH || length > this.maxFrameBytes) return; // next() reports it
    const total = 4 + length;
    if (this.buffered >= total || this.buffered * 16 < total) return;
    const asm = Buffer.allocUnsafe(total);
    let filled = 0;
    for (let i = this.head; i < this.chunks.length; i++) {
      const c = this.chunks[i]!;
      const from = i === this.head ? this.offset : 0;
      c.copy(asm, filled, from);
      filled += c.length - from;
    }
    this.chunks = [];
    this.head = 0;
    this.offset = 0;
    this.asm = asm;
    this.asmFilled = filled;
  }

  /** True when a whole frame is buffered, so `next()` would return one (or throw). */
  hasFrame(): boolean {
    if (this.asm !== undefined) return this.asmFilled === this.asm.length;
    if (this.buffered < 4) return false;
    const length = this.peekLength();
    return length < MIN_FRAME_LENGTH || length > this.maxFrameBytes || this.buffered >= 4 + length;
  }

  next(): Frame | null {
    if (this.failed !== undefined) throw this.failed;
    const asm = this.asm;
    if (asm !== undefined) {
      if (this.asmFilled < asm.length) return null;
      this.asm = undefined;
      this.asmFilled = 0;
      this.buffered -= asm.length;
      this.maybeAssemble();
      return { type: asm[4]!, requestId: asm.readUInt32BE(5), payload: asm.subarray(FRAME_HEADER_BYTES) };
    }
    if (this.buffered < 4) return null;
    const length = this.peekLength();
    if (length < MIN_FRAME_LENGTH) {
      this.failed = new QueueError('ARCHLAB_QUEUE_PROTOCOL', `bad frame length ${length}: a frame is at least ${MIN_FRAME_LENGTH} bytes after its length field`, { details: { length } });
      throw this.failed;
    }
    if (length > this.maxFrameBytes) {
      this.failed = new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `frame of ${length} bytes is over the ${this.maxFrameBytes}-byte limit`, {
        details: { bytes: length, maxBytes: this.maxFrameBytes },
      });
      throw this.failed;
    }
    const total = 4 + length;
    if (this.buffered < total) return null;
    const frame = this.take(total);
    this.maybeAssemble();
    return { type: frame[4]!, requestId: frame.readUInt32BE(5), payload: frame.subarray(FRAME_HEADER_BYTES) };
  }

  private peekLength(): number {
    const first = this.chunks[this.head]!;
    if (first.length - this.offset >= 4) return first.readUInt32BE(this.offset);
    // The length itself is split across chunks: gather its 4 bytes.
    let v = 0;
    let got = 0;
    let i = this.head;
    let at = this.offset;
    while (got < 4) {
      const c = this.chunks[i]!;
      while (at < c.length && got < 4) {
        v = v * 256 + c[at]!;
        at++;
        got++;
      }
      i++;
      at = 0;
    }
    return v;
  }

  /** Removes and returns the next `n` bytes: a view when they sit in one chunk, else a copy. */
  private take(n: number): Buffer {
    const first = this.chunks[this.head]!;
    let out: Buffer;
    if (first.length - this.offset >= n) {
      out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      if (this.offset === first.length) this.dropHead();
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[this.head]!;
        const want = Math.min(n - filled, c.length - this.offset);
        c.copy(out, filled, this.offset, this.offset + want);
        filled += want;
        this.offset += want;
        if (this.offset === c.length) this.dropHead();
      }
    }
    this.buffered -= n;
    return out;
  }

  private dropHead(): void {
    this.chunks[this.head] = EMPTY;
    this.head++;
    this.offset = 0;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 64) {
      // Compact now and then so the array does not grow with every chunk ever received.
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
