/**
 * `connectQueue()`: the TypeScript client of the archlab queue server. One `QueueClient` is the whole
 * `LogApi`, `RawLogApi` and `BrokerApi` over one TCP (or TLS) connection, pipelined: any number of
 * calls may be in flight at once (up to `maxPendingRequests`), each answered by id.
 *
 * Failure handling, as chosen here:
 * - every request has a timeout (`requestTimeoutMs`; a fetch adds its own `maxWaitMs`). A request that
 *   timed out may still have been carried out by the server (an append, say): idempotent producers
 *   exist for that.
 * - when the connection drops, requests already sent fail with ARCHLAB_QUEUE_DISCONNECTED (retryable),
 *   and the client reconnects with exponential backoff and jitter, up to `reconnect.maxAttempts` in a
 *   row. Calls made while it reconnects wait (unsent, counted in `maxPendingRequests`, under their
 *   own timeout) and go out once it is back. After the last attempt fails, every waiting call and
 *   every later one fails with ARCHLAB_QUEUE_DISCONNECTED.
 * - broker consumers are re-established on the new connection with the same `onDelivery`. The server
 *   requeued every delivery the old connection held unsettled, so they come again (redelivered true).
 *   Delivery tags are the client's own (the server's tags are per connection and restart with the
 *   server), so an ack or nack of a tag from the old connection can never settle a new delivery: it
 *   fails with ARCHLAB_QUEUE_DISCONNECTED, saying the message will be delivered again.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import { QueueError, isQueueError } from '../errors.js';
import { decodeRecordBatch, encodeRecordBatch } from '../log/record-batch.js';
import type {
  Acks,
  AppendRequest,
  AppendResult,
  BindingArgs,
  BrokerApi,
  ConsumeOptions,
  Delivery,
  ExchangeConfig,
  FetchRequest,
  FetchResult,
  GroupDescription,
  HeartbeatResult,
  JoinGroupRequest,
  JoinGroupResult,
  LogApi,
  LogRecord,
  OffsetCommit,
  PublishMessage,
  PublishResult,
  QueueConfig,
  QueueStats,
  RawLogApi,
  SeekTarget,
  Subscription,
  TopicConfig,
  TopicInfo,
  TopicPartition,
} from '../types.js';
import { FRAME_HEADER_BYTES, FrameDecoder, FrameType, PROTOCOL_VERSION, RESPONSE_BIT, type Frame } from '../protocol/frame.js';
import {
  decodeAckOk,
  decodeConsumeOk,
  decodeControlOk,
  decodeDelivery,
  decodeError,
  decodeFetchOk,
  decodeGetOk,
  decodeGoaway,
  decodeHelloOk,
  decodeProduceOk,
  decodePublishOk,
  encodeAck,
  encodeCancel,
  encodeConsume,
  encodeControl,
  encodeFetch,
  encodeGet,
  encodeHello,
  encodeNack,
  encodeProduce,
  encodePublish,
  MAX_ACK_TAGS,
  type FetchOk,
  type HelloOk,
} from '../protocol/messages.js';
import { FrameWriter } from '../protocol/writer.js';

export interface ReconnectOptions {
  /** Delay before the first reconnect attempt, before jitter. Default 100 ms. */
  initialDelayMs?: number;
  /** The delay doubles per failed attempt up to this. Default 5000 ms. */
  maxDelayMs?: number;
  /** Failed attempts in a row before the client gives up. Default 30. */
  maxAttempts?: number;
}

export type QueueClientEvent =
  | { type: 'disconnected'; error: QueueError }
  | { type: 'reconnected'; attempts: number }
  | { type: 'reconnect-failed'; attempt: number; error: unknown }
  | { type: 'gave-up'; error: QueueError }
  | { type: 'goaway'; reason: string }
  | { type: 'subscription-lost'; queue: string; error: unknown };

export interface ConnectQueueOptions {
  host: string;
  port: number;
  /** Sent in HELLO; required when the server has `auth.token`. */
  token?: string;
  /** TLS: true for defaults (verify against the system CAs), or node:tls options (`ca`, `servername`, ...). Default plain TCP. */
  tls?: boolean | tls.ConnectionOptions;
  /** Every request's timeout; a fetch adds its maxWaitMs. Default 30000 ms. */
  requestTimeoutMs?: number;
  /** TCP (+TLS) connect plus HELLO must finish within this. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Reconnect after a dropped connection; false = never (calls then fail with DISCONNECTED). Defaults above. */
  reconnect?: ReconnectOptions | false;
  /** Calls waiting for an answer (sent, or queued while reconnecting) at most; one more fails with ARCHLAB_QUEUE_LIMIT. Default 10000. */
  maxPendingRequests?: number;
  /** Largest frame accepted from the server. Default 64 MiB. */
  maxFrameBytes?: number;
  /** A PING goes out after this long without a request, to keep the connection and notice a dead one; capped at a third of the server's idle timeout. Default 10000 ms. */
  heartbeatMs?: number;
  /** Shown by the server in its logs. Default "archlab-client". */
  clientId?: string;
  logger?: Logger;
  /** Told about disconnects, reconnects and lost subscriptions. */
  onEvent?: (event: QueueClientEvent) => void;
}

interface Pending {
  id: number;
  /** The response type this request expects. */
  expect: number;
  decode: (payload: Buffer) => unknown;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
  /** Monotonic ms after which the request fails with TIMEOUT. */
  deadline: number;
  /** The frame until it is written. */
  frames: Buffer[] | undefined;
  /** The connection it was written on. */
  wire: Wire | undefined;
  done: boolean;
}

interface LocalSub {
  id: number;
  queue: string;
  prefetch: number;
  onDelivery: (d: Delivery) => void;
  consumerTag: string;
  state: 'active' | 'cancelling' | 'cancelled';
  /** The server confirmed it once: only these are re-established after a reconnect (a first CONSUME still queued goes out by itself). */
  established: boolean;
}

/** One connection: socket, decoder, batched writer. */
class Wire {
  readonly decoder: FrameDecoder;
  readonly writer: FrameWriter;
  closed = false;
  hello: HelloOk | undefined;
  /** A connection-level error the server sent (request id 0) before closing. */
  fatal: QueueError | undefined;

  constructor(
    readonly socket: net.Socket,
    maxFrameBytes: number,
  ) {
    this.decoder = new FrameDecoder(maxFrameBytes);
    this.writer = new FrameWriter(socket);
  }
}

const nothing = (): undefined => undefined;

function disconnected(message: string, cause?: unknown): QueueError {
  return new QueueError('ARCHLAB_QUEUE_DISCONNECTED', message, cause === undefined ? {} : { cause });
}

function positive(name: string, v: number | undefined, dflt: number, min = 1): number {
  const n = v ?? dflt;
  if (!Number.isFinite(n) || n < min) throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `${name} must be a number >= ${min}, got ${n}`);
  return n;
}

export class QueueClient implements LogApi, RawLogApi, BrokerApi {
  private readonly host: string;
  private readonly port: number;
  private readonly token: string;
  private readonly tlsOptions: tls.ConnectionOptions | undefined;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly reconnect: Required<ReconnectOptions> | false;
  private readonly maxPending: number;
  private readonly maxFrameBytes: number;
  private readonly heartbeatOptionMs: number;
  private readonly clientId: string;
  private readonly logger: Logger | undefined;
  private readonly onEvent: ((e: QueueClientEvent) => void) | undefined;

  private wire: Wire | undefined;
  private state: 'connecting' | 'open' | 'reconnecting' | 'failed' | 'closing' | 'closed' = 'connecting';
  private failure: QueueError | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private unsent: Pending[] = [];
  private readonly subs = new Map<number, LocalSub>();
  private nextSubId = 0;
  /** Client delivery tag -> the server's tag on the current connection. */
  private readonly tags = new Map<number, number>();
  private tagSeq = 0;
  /** Tags below this were handed out on a connection that has dropped. */
  private epochFirstTag = 1;
  private lastSentAt = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  /** Acks waiting for the end of the tick, to go out as one frame. */
  private ackBatch: { wire: Wire; tags: number[]; waiters: { resolve: () => void; reject: (err: unknown) => void }[] } | undefined;
  private readonly flushAcksBound = (): void => this.flushAcks();

  constructor(options: ConnectQueueOptions) {
    if (typeof options.host !== 'string' || options.host === '') throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', 'host is required');
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `port must be 1..65535, got ${options.port}`);
    }
    this.host = options.host;
    this.port = options.port;
    this.token = options.token ?? '';
    this.tlsOptions = options.tls === undefined || options.tls === false ? undefined : options.tls === true ? {} : options.tls;
    this.requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs, 30_000);
    this.connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs, 5000);
    const r = options.reconnect;
    this.reconnect =
      r === false
        ? false
        : {
            initialDelayMs: positive('reconnect.initialDelayMs', r?.initialDelayMs, 100, 0),
            maxDelayMs: positive('reconnect.maxDelayMs', r?.maxDelayMs, 5000, 0),
            maxAttempts: positive('reconnect.maxAttempts', r?.maxAttempts, 30),
          };
    this.maxPending = positive('maxPendingRequests', options.maxPendingRequests, 10_000);
    this.maxFrameBytes = positive('maxFrameBytes', options.maxFrameBytes, 64 * 1024 * 1024, 4096);
    this.heartbeatOptionMs = positive('heartbeatMs', options.heartbeatMs, 10_000, 10);
    this.clientId = options.clientId ?? 'archlab-client';
    this.logger = options.logger;
    this.onEvent = options.onEvent;
  }

  /** What the server said in its HELLO answer, once connected. */
  get server(): HelloOk | undefined {
    return this.wire?.hello;
  }

  /** connecting, open, reconnecting, failed (gave up), closing or closed. */
  get status(): string {
    return this.state;
  }

  /** Calls waiting for an answer, sent or not. */
  get pendingRequests(): number {
    return this.pending.size;
  }

  /** @internal Connects for the first time; connectQueue() calls it. Fails fast (no retry). */
  async start(): Promise<void> {
    const sweepMs = Math.max(10, Math.min(100, Math.floor(this.requestTimeoutMs / 10)));
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
    this.sweepTimer.unref();
    try {
      await this.open();
    } catch (err) {
      this.state = 'closed';
      clearInterval(this.sweepTimer);
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Connections
  // -------------------------------------------------------------------------------------------

  /** One connection attempt: connect, HELLO, consumers back, queued calls out. */
  private async open(): Promise<void> {
    const wire = await this.dial();
    try {
      const hello = (await this.requestOn(wire, FrameType.HELLO, [encodeHello(0, { version: PROTOCOL_VERSION, token: this.token, clientId: this.clientId })], decodeHelloOk, this.connectTimeoutMs)) as HelloOk;
      wire.hello = hello;
    } catch (err) {
      wire.socket.destroy();
      throw wire.fatal ?? err;
    }
    if (this.state === 'closing' || this.state === 'closed') {
      wire.socket.destroy();
      throw new QueueError('ARCHLAB_QUEUE_CLOSED', 'the queue client was closed while connecting');
    }
    this.wire = wire;
    this.state = 'open';
    this.epochFirstTag = this.tagSeq + 1;
    this.startHeartbeat(wire);
    // Consumers first, so a queued ack cannot overtake the consumer it belongs to.
    for (const sub of this.subs.values()) {
      if (sub.state !== 'active' || !sub.established) continue;
      this.requestOn(wire, FrameType.CONSUME, [encodeConsume(0, { subscriptionId: sub.id, prefetch: sub.prefetch, queue: sub.queue })], decodeConsumeOk, this.requestTimeoutMs).catch(
        (err: unknown) => {
          if (isQueueError(err, 'ARCHLAB_QUEUE_DISCONNECTED')) return; // the next connection tries again
          this.subs.delete(sub.id);
          sub.state = 'cancelled';
          this.logger?.warn({ err, queue: sub.queue }, 'queue client: consumer could not be re-established');
          this.onEvent?.({ type: 'subscription-lost', queue: sub.queue, error: err });
        },
      );
    }
    const queued = this.unsent;
    this.unsent = [];
    for (const p of queued) if (!p.done) this.transmit(wire, p);
  }

  /** TCP (+TLS) connect within connectTimeoutMs. */
  private dial(): Promise<Wire> {
    return new Promise<Wire>((resolve, reject) => {
      const opts = { host: this.host, port: this.port };
      const socket = this.tlsOptions !== undefined ? tls.connect({ minVersion: 'TLSv1.2', servername: net.isIP(this.host) ? undefined : this.host, ...this.tlsOptions, ...opts }) : net.connect(opts);
      const wire = new Wire(socket, this.maxFrameBytes);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(disconnected(`connecting to ${this.host}:${this.port} took over ${this.connectTimeoutMs}ms`));
      }, this.connectTimeoutMs);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(disconnected(`cannot connect to ${this.host}:${this.port}: ${err.message}`, err));
      };
      socket.once('error', onError);
      socket.once(this.tlsOptions !== undefined ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        socket.setNoDelay(true);
        socket.on('error', (err) => this.logger?.debug({ err }, 'queue client socket error'));
        socket.on('data', (chunk: Buffer) => this.onData(wire, chunk));
        socket.on('close', () => this.onWireClose(wire));
        resolve(wire);
      });
    });
  }

  private onData(wire: Wire, chunk: Buffer): void {
    wire.decoder.push(chunk);
    for (;;) {
      let f: Frame | null;
      try {
        f = wire.decoder.next();
      } catch (err) {
        this.logger?.warn({ err }, 'queue client: malformed frame from the server; closing the connection');
        wire.fatal = err as QueueError;
        wire.socket.destroy();
        return;
      }
      if (f === null) return;
      this.onFrame(wire, f);
    }
  }

  private onFrame(wire: Wire, f: Frame): void {
    if (f.requestId === 0) {
      if (f.type === FrameType.DELIVERY) this.onDelivery(wire, f.payload);
      else if (f.type === FrameType.GOAWAY) {
        const { reason } = decodeGoaway(f.payload);
        this.logger?.info({ reason }, 'queue server says goaway');
        this.onEvent?.({ type: 'goaway', reason });
      } else if (f.type === FrameType.ERROR) {
        wire.fatal = decodeError(f.payload);
        this.logger?.warn({ err: wire.fatal }, 'queue server closed the connection with an error');
      }
      return;
    }
    const p = this.pending.get(f.requestId);
    if (p === undefined || p.wire !== wire) return; // timed out already, or from an older connection
    this.pending.delete(f.requestId);
    p.done = true;
    if (f.type === FrameType.ERROR) {
      p.reject(decodeError(f.payload));
      return;
    }
    if (f.type !== p.expect) {
      p.reject(new QueueError('ARCHLAB_QUEUE_PROTOCOL', `expected a 0x${p.expect.toString(16)} response, got 0x${f.type.toString(16)}`));
      return;
    }
    let value: unknown;
    try {
      value = p.decode(f.payload);
    } catch (err) {
      p.reject(err);
      return;
    }
    p.resolve(value);
  }

  private onWireClose(wire: Wire): void {
    if (wire.closed) return;
    wire.closed = true;
    wire.writer.close();
    if (this.heartbeatTimer !== undefined && this.wire === wire) clearInterval(this.heartbeatTimer);
    const error = disconnected(`connection to ${this.host}:${this.port} lost${wire.fatal ? ` (${wire.fatal.code}: ${wire.fatal.message})` : ''}`, wire.fatal);
    for (const p of [...this.pending.values()]) {
      if (p.wire !== wire) continue;
      this.pending.delete(p.id);
      p.done = true;
      // A connection-level error the server sent says more than "disconnected" (e.g. UNAUTHORIZED, LIMIT).
      p.reject(wire.fatal !== undefined && wire.hello === undefined ? wire.fatal : error);
    }
    if (this.wire !== wire) return; // a handshake that failed: open() reports it
    this.wire = undefined;
    // Every tag handed out so far belonged to that connection; the server requeued those messages.
    this.tags.clear();
    this.epochFirstTag = this.tagSeq + 1;
    if (this.state === 'closing' || this.state === 'closed') return;
    this.onEvent?.({ type: 'disconnected', error });
    if (this.reconnect === false || wire.fatal?.code === 'ARCHLAB_QUEUE_UNAUTHORIZED') {
      this.giveUp(error);
      return;
    }
    this.state = 'reconnecting';
    this.scheduleReconnect(0);
  }

  private scheduleReconnect(attempt: number): void {
    const r = this.reconnect as Required<ReconnectOptions>;
    if (attempt >= r.maxAttempts) {
      this.giveUp(disconnected(`could not reconnect to ${this.host}:${this.port} after ${attempt} attempts`));
      return;
    }
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** attempt);
    // "Equal jitter": half fixed, half random, so clients that lost one server do not return in step.
    const delay = base / 2 + Math.random() * (base / 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state !== 'reconnecting') return;
      this.open().then(
        () => {
          this.logger?.info({ attempts: attempt + 1 }, 'queue client reconnected');
          this.onEvent?.({ type: 'reconnected', attempts: attempt + 1 });
        },
        (err: unknown) => {
          if (this.state !== 'reconnecting') return;
          this.onEvent?.({ type: 'reconnect-failed', attempt: attempt + 1, error: err });
          if (isQueueError(err, 'ARCHLAB_QUEUE_UNAUTHORIZED')) this.giveUp(err);
          else this.scheduleReconnect(attempt + 1);
        },
      );
    }, delay);
  }

  private giveUp(error: QueueError): void {
    this.state = 'failed';
    this.failure = error;
    this.logger?.error({ err: error }, 'queue client gave up reconnecting');
    for (const p of [...this.pending.values()]) this.settleWith(p, error);
    this.unsent = [];
    for (const sub of this.subs.values()) sub.state = 'cancelled';
    this.subs.clear();
    this.onEvent?.({ type: 'gave-up', error });
  }

  private startHeartbeat(wire: Wire): void {
    const serverIdle = wire.hello?.idleTimeoutMs ?? 60_000;
    const every = Math.max(10, Math.min(this.heartbeatOptionMs, Math.floor(serverIdle / 3)));
    this.lastSentAt = performance.now();
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      if (this.wire !== wire || wire.closed) return;
      if (performance.now() - this.lastSentAt < every) return;
      // A PING that is not answered in time means the connection is dead even if TCP has not noticed.
      this.requestOn(wire, FrameType.PING, [Buffer.from([0, 0, 0, 5, FrameType.PING, 0, 0, 0, 0])], nothing, Math.max(every * 2, 1000)).catch((err: unknown) => {
        if (isQueueError(err, 'ARCHLAB_QUEUE_TIMEOUT')) {
          this.logger?.warn('queue server did not answer a ping; reconnecting');
          wire.socket.destroy();
        }
      });
    }, every);
    this.heartbeatTimer.unref();
  }

  // -------------------------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------------------------

  private allocId(): number {
    do {
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    } while (this.pending.has(this.nextId));
    return this.nextId;
  }

  private checkOpen(): void {
    if (this.state === 'closing' || this.state === 'closed') throw new QueueError('ARCHLAB_QUEUE_CLOSED', 'the queue client is closed');
    if (this.state === 'failed') throw this.failure ?? disconnected('the queue client gave up reconnecting');
    if (this.pending.size >= this.maxPending) {
      throw new QueueError('ARCHLAB_QUEUE_LIMIT', `${this.pending.size} requests are waiting already (maxPendingRequests)`, {
        details: { limit: 'maxPendingRequests', value: this.maxPending },
      });
    }
  }

  /** Sends on the current connection, or queues until the client has one. */
  private request<T>(expect: number, frames: Buffer[], decode: (p: Buffer) => T, timeoutMs = this.requestTimeoutMs): Promise<T> {
    try {
      this.checkOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(this.wire, expect, frames, decode, timeoutMs);
  }

  /** Sends on `wire` only (handshake and re-subscription). */
  private requestOn<T>(wire: Wire, expect: number, frames: Buffer[], decode: (p: Buffer) => T, timeoutMs: number): Promise<T> {
    return this.enqueue(wire, expect, frames, decode, timeoutMs, true);
  }

  private enqueue<T>(wire: Wire | undefined, expect: number, frames: Buffer[], decode: (p: Buffer) => T, timeoutMs: number, pinned = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const id = this.allocId();
      // Encoders are called with id 0; the id goes into the header here, once it is allocated.
      frames[0]!.writeUInt32BE(id, 5);
      const p: Pending = {
        id,
        expect: expect | RESPONSE_BIT,
        decode,
        resolve: resolve as (v: unknown) => void,
        reject,
        deadline: performance.now() + timeoutMs,
        frames,
        wire: undefined,
        done: false,
      };
      this.pending.set(id, p);
      if (wire !== undefined && !wire.closed) this.transmit(wire, p);
      else if (pinned) this.settleWith(p, disconnected('the connection closed'));
      else this.unsent.push(p);
    });
  }

  private transmit(wire: Wire, p: Pending): void {
    p.wire = wire;
    const frames = p.frames!;
    p.frames = undefined;
    if (frames.length === 1) wire.writer.write(frames[0]!);
    else wire.writer.writeAll(frames);
    this.lastSentAt = performance.now();
  }

  private settleWith(p: Pending, err: unknown): void {
    if (p.done) return;
    p.done = true;
    this.pending.delete(p.id);
    p.reject(err);
  }

  private sweep(): void {
    if (this.pending.size === 0) return;
    const now = performance.now();
    for (const p of this.pending.values()) {
      if (p.deadline <= now) {
        this.settleWith(
          p,
          new QueueError('ARCHLAB_QUEUE_TIMEOUT', `no answer from ${this.host}:${this.port} within the request timeout${p.wire === undefined ? ' (not connected)' : ''}`, {
            details: { requestId: p.id, sent: p.wire !== undefined },
          }),
        );
      }
    }
    if (this.unsent.length > 0 && this.unsent.some((p) => p.done)) this.unsent = this.unsent.filter((p) => !p.done);
  }

  private control<T>(method: string, ...args: unknown[]): Promise<T> {
    let n = args.length;
    while (n > 0 && args[n - 1] === undefined) n--;
    let frame: Buffer;
    try {
      frame = encodeControl(0, method, n === args.length ? args : args.slice(0, n));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(FrameType.CONTROL, [frame], decodeControlOk) as Promise<T>;
  }

  // -------------------------------------------------------------------------------------------
  // LogApi, RawLogApi
  // -------------------------------------------------------------------------------------------

  createTopic(name: string, config?: Partial<TopicConfig>): Promise<TopicInfo> {
    return this.control('createTopic', name, config);
  }

  deleteTopic(name: string): Promise<void> {
    return this.control('deleteTopic', name);
  }

  describeTopic(name: string): Promise<TopicInfo> {
    return this.control('describeTopic', name);
  }

  listTopics(): Promise<TopicInfo[]> {
    return this.control('listTopics');
  }

  partitionFor(topic: string, key: Buffer | null): Promise<number> {
    return this.control('partitionFor', topic, key);
  }

  initProducerId(): Promise<{ producerId: number; producerEpoch: number }> {
    return this.control('initProducerId');
  }

  /** Encodes the records as one batch here (compression included) and sends it as it is. */
  append(req: AppendRequest): Promise<AppendResult> {
    let batch: Buffer;
    try {
      batch = encodeRecordBatch(req.records, {
        now: Date.now(),
        ...(req.compression === undefined ? {} : { compression: req.compression }),
        ...(req.producerId === undefined ? {} : { producerId: req.producerId }),
        ...(req.producerEpoch === undefined ? {} : { producerEpoch: req.producerEpoch }),
        ...(req.baseSequence === undefined ? {} : { baseSequence: req.baseSequence }),
      });
    } catch (err) {
      return Promise.reject(err);
    }
    return this.appendRaw(req.topic, req.partition, batch, req.acks);
  }

  appendRaw(topic: string, partition: number, batch: Buffer, acks: Acks): Promise<AppendResult> {
    let frames: Buffer[];
    try {
      frames = encodeProduce(0, topic, partition, acks, batch);
      this.checkFrameSize(frames);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(FrameType.PRODUCE, frames, decodeProduceOk);
  }

  private checkFrameSize(frames: Buffer[]): void {
    const max = this.wire?.hello?.maxFrameBytes;
    if (max === undefined) return;
    let n = -4;
    for (const f of frames) n += f.length;
    if (n > max) {
      throw new QueueError('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE', `request of ${n + 4 - FRAME_HEADER_BYTES} bytes is over the server's ${max}-byte frame limit`, {
        details: { bytes: n, maxBytes: max },
      });
    }
  }

  fetchRaw(req: FetchRequest): Promise<FetchOk> {
    const maxWaitMs = req.maxWaitMs ?? 0;
    let frame: Buffer;
    try {
      frame = encodeFetch(0, { ...req, maxBytes: req.maxBytes ?? 1024 * 1024, maxWaitMs });
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(FrameType.FETCH, [frame], decodeFetchOk, this.requestTimeoutMs + maxWaitMs);
  }

  /** Fetches raw batches and decodes them here, skipping records before `req.offset`. */
  async fetch(req: FetchRequest): Promise<FetchResult> {
    const r = await this.fetchRaw(req);
    let records: LogRecord[];
    if (r.batches.length === 1) {
      records = decodeRecordBatch(r.batches[0]!, req.topic, req.partition, req.offset);
    } else {
      records = [];
      for (const b of r.batches) for (const rec of decodeRecordBatch(b, req.topic, req.partition, req.offset)) records.push(rec);
    }
    return { records, nextOffset: r.nextOffset, highWatermark: r.highWatermark, logStartOffset: r.logStartOffset };
  }

  offsetForTimestamp(topic: string, partition: number, timestamp: number): Promise<number> {
    return this.control('offsetForTimestamp', topic, partition, timestamp);
  }

  resolveSeek(topic: string, partition: number, target: SeekTarget): Promise<number> {
    return this.control('resolveSeek', topic, partition, target);
  }

  joinGroup(req: JoinGroupRequest): Promise<JoinGroupResult> {
    return this.control('joinGroup', req);
  }

  heartbeat(group: string, memberId: string, generation: number): Promise<HeartbeatResult> {
    return this.control('heartbeat', group, memberId, generation);
  }

  leaveGroup(group: string, memberId: string): Promise<void> {
    return this.control('leaveGroup', group, memberId);
  }

  commitOffsets(group: string, memberId: string, generation: number, offsets: OffsetCommit[]): Promise<void> {
    return this.control('commitOffsets', group, memberId, generation, offsets);
  }

  fetchOffsets(group: string, partitions: TopicPartition[]): Promise<OffsetCommit[]> {
    return this.control('fetchOffsets', group, partitions);
  }

  describeGroup(group: string): Promise<GroupDescription> {
    return this.control('describeGroup', group);
  }

  // -------------------------------------------------------------------------------------------
  // BrokerApi
  // -------------------------------------------------------------------------------------------

  declareExchange(name: string, config?: Partial<ExchangeConfig>): Promise<void> {
    return this.control('declareExchange', name, config);
  }

  deleteExchange(name: string): Promise<void> {
    return this.control('deleteExchange', name);
  }

  declareQueue(name: string, config?: Partial<QueueConfig>): Promise<QueueStats> {
    return this.control('declareQueue', name, config);
  }

  deleteQueue(name: string): Promise<void> {
    return this.control('deleteQueue', name);
  }

  purgeQueue(name: string): Promise<number> {
    return this.control('purgeQueue', name);
  }

  bind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void> {
    return this.control('bind', queue, exchange, routingKey, args);
  }

  unbind(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Promise<void> {
    return this.control('unbind', queue, exchange, routingKey, args);
  }

  publish(exchange: string, routingKey: string, message: PublishMessage, options?: { mandatory?: boolean }): Promise<PublishResult> {
    let frames: Buffer[];
    try {
      frames = encodePublish(0, exchange, routingKey, message, options?.mandatory === true);
      this.checkFrameSize(frames);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(FrameType.PUBLISH, frames, decodePublishOk);
  }

  /**
   * Starts a consumer. The server pushes at most `prefetch` deliveries ahead of the acks (credits);
   * `onDelivery` runs for each, in order, on the client's I/O callback: keep it quick and settle with
   * ack()/nack(). After a reconnect the consumer is re-established with the same callback.
   */
  async consume(queue: string, options: ConsumeOptions): Promise<Subscription> {
    const prefetch = options.prefetch ?? 100;
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 0xffffffff) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `prefetch must be a whole number >= 1, got ${prefetch}`);
    }
    if (typeof options.onDelivery !== 'function') throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', 'onDelivery must be a function');
    this.nextSubId = this.nextSubId >= 0xffffffff ? 1 : this.nextSubId + 1;
    const sub: LocalSub = { id: this.nextSubId, queue, prefetch, onDelivery: options.onDelivery, consumerTag: '', state: 'active', established: false };
    // Registered before the request: the server may push deliveries before it answers.
    this.subs.set(sub.id, sub);
    try {
      const ok = await this.request(FrameType.CONSUME, [encodeConsume(0, { subscriptionId: sub.id, prefetch, queue })], decodeConsumeOk);
      sub.consumerTag = ok.consumerTag;
      sub.established = true;
    } catch (err) {
      this.subs.delete(sub.id);
      sub.state = 'cancelled';
      throw err;
    }
    return {
      get consumerTag() {
        return sub.consumerTag;
      },
      cancel: () => this.cancelSub(sub),
    };
  }

  private async cancelSub(sub: LocalSub): Promise<void> {
    if (sub.state !== 'active') return;
    sub.state = 'cancelling';
    try {
      if (this.wire !== undefined && this.state === 'open') await this.request(FrameType.CANCEL, [encodeCancel(0, sub.id)], nothing);
    } catch (err) {
      // Without a connection there is no consumer on the server to cancel.
      if (!isQueueError(err, 'ARCHLAB_QUEUE_DISCONNECTED') && !isQueueError(err, 'ARCHLAB_QUEUE_CLOSED')) throw err;
    } finally {
      sub.state = 'cancelled';
      this.subs.delete(sub.id);
    }
  }

  private onDelivery(wire: Wire, payload: Buffer): void {
    let decoded: { subscriptionId: number; delivery: Delivery };
    try {
      decoded = decodeDelivery(payload);
    } catch (err) {
      this.logger?.warn({ err }, 'queue client: malformed delivery; closing the connection');
      wire.socket.destroy();
      return;
    }
    const { subscriptionId, delivery } = decoded;
    // Closing: the server requeues whatever this connection holds when it closes.
    if (this.state === 'closing' || this.state === 'closed') return;
    const sub = this.subs.get(subscriptionId);
    if (sub === undefined || sub.state === 'cancelled' || this.wire !== wire) {
      // Nobody to give it to: straight back to the queue.
      if (!wire.closed) {
        this.requestOn(wire, FrameType.NACK, [encodeNack(0, delivery.deliveryTag, true)], nothing, this.requestTimeoutMs).catch((err: unknown) =>
          this.logger?.debug({ err }, 'queue client: requeueing an orphan delivery failed'),
        );
      }
      return;
    }
    const local = ++this.tagSeq;
    this.tags.set(local, delivery.deliveryTag);
    delivery.deliveryTag = local;
    try {
      sub.onDelivery(delivery);
    } catch (err) {
      this.logger?.error({ err, queue: sub.queue }, 'onDelivery threw; the delivery stays unacked until nacked or its visibility times out');
    }
  }

  /** Mint a local-tag delivery from a server one (for get()). */
  private adopt(d: Delivery | null): Delivery | null {
    if (d === null) return null;
    const local = ++this.tagSeq;
    this.tags.set(local, d.deliveryTag);
    d.deliveryTag = local;
    return d;
  }

  get(queue: string): Promise<Delivery | null> {
    let frame: Buffer;
    try {
      frame = encodeGet(0, queue);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(FrameType.GET, [frame], decodeGetOk).then((d) => this.adopt(d));
  }

  private serverTag(deliveryTag: number): number {
    const t = this.tags.get(deliveryTag);
    if (t !== undefined) {
      this.tags.delete(deliveryTag);
      return t;
    }
    if (Number.isInteger(deliveryTag) && deliveryTag >= 1 && deliveryTag < this.epochFirstTag) {
      throw disconnected(`delivery tag ${deliveryTag} came on a connection that has dropped; the server requeued that message, so it will be delivered again`);
    }
    throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_DELIVERY', `delivery tag ${deliveryTag} is unknown or settled already`, { details: { deliveryTag } });
  }

  /**
   * Acks issued in the same tick travel in one ACK frame (up to MAX_ACK_TAGS); each promise still
   * settles on its own tag's outcome.
   */
  ack(deliveryTag: number): Promise<void> {
    let tag: number;
    try {
      this.checkOpen();
      tag = this.serverTag(deliveryTag);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      let b = this.ackBatch;
      if (b === undefined || b.wire !== this.wire) {
        if (b !== undefined) this.flushAcks();
        b = this.ackBatch = { wire: this.wire!, tags: [], waiters: [] };
        queueMicrotask(this.flushAcksBound);
      }
      b.tags.push(tag);
      b.waiters.push({ resolve, reject });
      if (b.tags.length >= MAX_ACK_TAGS) this.flushAcks();
    });
  }

  private flushAcks(): void {
    const b = this.ackBatch;
    if (b === undefined) return;
    this.ackBatch = undefined;
    // Pinned to the connection the tags came from: on another one they would mean other deliveries.
    this.requestOn(b.wire, FrameType.ACK, [encodeAck(0, b.tags)], decodeAckOk, this.requestTimeoutMs).then(
      (failures) => {
        let f = 0;
        for (let i = 0; i < b.waiters.length; i++) {
          const failed = failures[f];
          if (failed !== undefined && failed.index === i) {
            b.waiters[i]!.reject(failed.error);
            f++;
          } else {
            b.waiters[i]!.resolve();
          }
        }
      },
      (err: unknown) => {
        for (const w of b.waiters) w.reject(err);
      },
    );
  }

  nack(deliveryTag: number, options?: { requeue?: boolean }): Promise<void> {
    let frame: Buffer;
    try {
      this.checkOpen();
      frame = encodeNack(0, this.serverTag(deliveryTag), options?.requeue ?? true);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(FrameType.NACK, [frame], nothing);
  }

  queueStats(name: string): Promise<QueueStats> {
    return this.control('queueStats', name);
  }

  listQueues(): Promise<QueueStats[]> {
    return this.control('listQueues');
  }

  // -------------------------------------------------------------------------------------------
  // Closing
  // -------------------------------------------------------------------------------------------

  /**
   * Refuses new calls (ARCHLAB_QUEUE_CLOSED), lets requests already sent finish for up to
   * `drainMs` (default 2000), fails calls still queued for a connection, and closes the socket. The
   * server requeues whatever this client's consumers held unsettled.
   */
  close(drainMs = 2000): Promise<void> {
    this.closing ??= (async () => {
      this.state = 'closing';
      if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
      if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
      const closed = new QueueError('ARCHLAB_QUEUE_CLOSED', 'the queue client was closed');
      for (const p of this.unsent) this.settleWith(p, closed);
      this.unsent = [];
      const deadline = performance.now() + drainMs;
      while (this.pending.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      for (const p of [...this.pending.values()]) this.settleWith(p, closed);
      clearInterval(this.sweepTimer);
      for (const sub of this.subs.values()) sub.state = 'cancelled';
      this.subs.clear();
      const wire = this.wire;
      this.wire = undefined;
      if (wire !== undefined && !wire.closed) {
        wire.writer.flush();
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            wire.socket.destroy();
            resolve();
          }, 1000);
          wire.socket.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          wire.socket.end();
        });
      }
      this.state = 'closed';
    })();
    return this.closing;
  }
}

/** Connects (one attempt, no retry for the first connection) and says HELLO; rejects with UNAUTHORIZED, DISCONNECTED or TIMEOUT. */
export async function connectQueue(options: ConnectQueueOptions): Promise<QueueClient> {
  const client = new QueueClient(options);
  await client.start();
  return client;
}
