/**
 * One client connection of the binary protocol: handshake, request dispatch with pipelining, broker
 * consumers with credits, and the bounds that keep one connection from hurting the others.
 *
 * Flow control, in three places:
 * - **requests**: at most `maxInFlight` requests are worked on at once. Past it the connection stops
 *   taking frames from its decoder and pauses the socket, so the client's further requests wait in
 *   TCP buffers and the client's writes block (TCP backpressure). The same happens while more than
 *   `maxWriteBufferBytes` of responses wait for a client that does not read.
 * - **deliveries**: a consumer starts with `prefetch` credits; each pushed delivery takes one and each
 *   ack or nack of it gives one back. Without credit, deliveries the broker hands over wait here (at
 *   most `prefetch` of them; past that — only possible when visibility timeouts redeliver to a stuck
 *   consumer — they are nacked back to the queue).
 * - **fetch answers**: the FETCHes in flight ask for at most `maxFetchBytesInFlight` bytes together;
 *   past it a FETCH is cut to what is left, or waits (reading stops) when under 64 KiB is left.
 * - **frames**: a frame over `maxFrameBytes` closes the connection before its body is buffered.
 *
 * Delivery tags are connection-scoped, as in AMQP: a client can settle only tags delivered on its own
 * connection. When the connection drops, its consumers are cancelled and every delivery it still held
 * is requeued at once (nack requeue), so another consumer gets it without waiting for the visibility
 * timeout.
 *
 * A malformed frame (bad length, unknown type, truncated or trailing bytes) gets an
 * ARCHLAB_QUEUE_PROTOCOL error and closes this connection only.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { isArchlabError } from '../../core/errors.js';
import { QueueError } from '../errors.js';
import type { BrokerApi, Delivery, LogApi, RawLogApi, Subscription } from '../types.js';
import { FrameDecoder, FrameType, PROTOCOL_VERSION, REQUEST_TYPES, RESPONSE_BIT, type Frame } from '../protocol/frame.js';
import {
  decodeAck,
  decodeCancel,
  decodeConsume,
  decodeControl,
  decodeFetch,
  decodeGet,
  decodeHello,
  decodeNack,
  decodeProduce,
  decodePublish,
  encodeAckOk,
  encodeConsumeOk,
  encodeControlOk,
  encodeDelivery,
  encodeEmpty,
  encodeError,
  encodeFetchOk,
  encodeGetOk,
  encodeGoaway,
  encodeHelloOk,
  encodeProduceOk,
  encodePublishOk,
  type AckFailure,
  type WireError,
} from '../protocol/messages.js';
import { FrameWriter } from '../protocol/writer.js';
import { callControl } from './control.js';
import type { ServerCounters } from './metrics.js';

export type LogEngine = LogApi & RawLogApi;

export interface ConnectionLimits {
  maxFrameBytes: number;
  maxInFlight: number;
  maxSubscriptions: number;
  maxWriteBufferBytes: number;
  handshakeTimeoutMs: number;
  maxFetchWaitMs: number;
  /** Sum of the maxBytes of the FETCHes in flight at once. */
  maxFetchBytesInFlight: number;
  idleMs: number;
}

/** A FETCH waits (instead of being cut further) when less than this is left of maxFetchBytesInFlight. */
const MIN_FETCH_BYTES = 64 * 1024;

/** What every connection of one server shares. */
export interface ConnectionContext {
  log: LogEngine;
  broker: BrokerApi;
  /** sha256 of the token, or undefined for no auth. */
  tokenDigest: Buffer | undefined;
  limits: ConnectionLimits;
  serverName: string;
  counters: ServerCounters;
  logger: Logger;
}

interface SubState {
  id: number;
  queue: string;
  prefetch: number;
  credit: number;
  sub: Subscription | undefined;
  /** Deliveries handed over by the broker while the consumer had no credit. */
  held: Delivery[];
  cancelled: boolean;
  /** Set once stopConsumer() ran: it runs once per consumer. */
  stopping: Promise<void> | undefined;
}

export function digestToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** The wire form of any error: typed errors keep their code; anything else is an internal error. */
export function toWireError(err: unknown): WireError {
  if (isArchlabError(err)) {
    return { code: err.code, message: err.message, retryable: err.retryable, ...(err.details === undefined ? {} : { details: err.details }) };
  }
  return { code: 'ARCHLAB_INTERNAL', message: 'internal error', retryable: false };
}

let nextConnectionId = 1;

export class ServerConnection {
  readonly id = nextConnectionId++;
  readonly remote: string;
  private state: 'handshake' | 'open' | 'draining' | 'closed' = 'handshake';
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private inFlight = 0;
  private paused = false;
  private readonly subs = new Map<number, SubState>();
  /** Delivery tags pushed on this connection and not yet settled: their subscription, or null for a get(). */
  private readonly tags = new Map<number, SubState | null>();
  /** Long-poll fetches in flight: answered early when the server drains. */
  private readonly longPolls = new Set<number>();
  /** maxBytes of the FETCHes in flight, summed. */
  private fetchReserved = 0;
  /** A FETCH taken from the decoder while the fetch budget was spent: it goes first once there is room. */
  private deferred: Frame | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private idleWaiter: (() => void) | undefined;
  private releasing: Promise<void> | undefined;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  clientId = '';

  constructor(
    private readonly socket: Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.decoder = new FrameDecoder(ctx.limits.maxFrameBytes);
    this.writer = new FrameWriter(socket, (n) => (ctx.counters.bytesOut += n));
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.setTimeout(ctx.limits.idleMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.pump());
    socket.on('timeout', () => this.onIdle());
    socket.on('error', (err) => ctx.logger.debug({ err, conn: this.id }, 'queue connection error'));
    socket.on('close', () => void this.onClose());
    this.handshakeTimer = setTimeout(() => {
      this.fail(new QueueError('ARCHLAB_QUEUE_TIMEOUT', `no HELLO within ${ctx.limits.handshakeTimeoutMs}ms`), 0);
    }, ctx.limits.handshakeTimeoutMs);
    this.handshakeTimer.unref();
  }

  /** Resolves once the socket has closed and every consumer and held delivery was released. */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  // -------------------------------------------------------------------------------------------
  // Reading and dispatch
  // -------------------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.ctx.counters.bytesIn += chunk.length;
    if (this.state === 'closed') return; // ending: read only to see the peer's FIN
    this.decoder.push(chunk);
    this.pump();
  }

  /** Takes frames while under the limits; pauses the socket when a limit stops it. */
  private pump(): void {
    if (this.state === 'closed') return;
    const { maxInFlight, maxWriteBufferBytes } = this.ctx.limits;
    while (this.state === 'open' || this.state === 'handshake') {
      if (this.inFlight >= maxInFlight || this.writer.pendingBytes > maxWriteBufferBytes) break;
      let frame: Frame | null | undefined = this.deferred;
      if (frame === undefined) {
        try {
          frame = this.decoder.next();
        } catch (err) {
          this.fail(err, 0);
          return;
        }
        if (frame === null) break;
      }
      if (frame.type === FrameType.FETCH && this.fetchReserved > 0 && this.ctx.limits.maxFetchBytesInFlight - this.fetchReserved < MIN_FETCH_BYTES) {
        this.deferred = frame;
        break;
      }
      this.deferred = undefined;
      this.dispatch(frame);
    }
    const live = this.state === 'open' || this.state === 'handshake';
    const blocked =
      !live || this.inFlight >= maxInFlight || this.writer.pendingBytes > maxWriteBufferBytes || this.deferred !== undefined || this.decoder.hasFrame();
    if (blocked && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!blocked && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private dispatch(f: Frame): void {
    const { type, requestId: id } = f;
    if (!REQUEST_TYPES.has(type)) {
      this.fail(new QueueError('ARCHLAB_QUEUE_PROTOCOL', `unknown or unexpected frame type 0x${type.toString(16)}`, { details: { type } }), id);
      return;
    }
    if (id === 0) {
      this.fail(new QueueError('ARCHLAB_QUEUE_PROTOCOL', 'request id 0 is reserved for frames the server pushes'), 0);
      return;
    }
    this.ctx.counters.requests[type]!++;
    if (this.state === 'handshake' && type !== FrameType.HELLO) {
      this.fail(new QueueError('ARCHLAB_QUEUE_PROTOCOL', 'the first frame must be HELLO'), id);
      return;
    }
    this.inFlight++;
    try {
      switch (type) {
        case FrameType.HELLO:
          return this.hello(id, f.payload);
        case FrameType.PING:
          return this.respond(id, encodeEmpty(FrameType.PING | RESPONSE_BIT, id));
        case FrameType.PRODUCE:
          return this.produce(id, f.payload);
        case FrameType.FETCH:
          return this.fetch(id, f.payload);
        case FrameType.CONTROL:
          return this.control(id, f.payload);
        case FrameType.PUBLISH:
          return this.publish(id, f.payload);
        case FrameType.CONSUME:
          return this.consume(id, f.payload);
        case FrameType.CANCEL:
          return this.cancel(id, f.payload);
        case FrameType.ACK:
          return this.ack(id, f.payload);
        case FrameType.NACK:
          return this.nack(id, f.payload);
        case FrameType.GET:
          return this.get(id, f.payload);
      }
    } catch (err) {
      // Payload decoding threw: a malformed frame.
      if (isArchlabError(err, 'ARCHLAB_QUEUE_PROTOCOL')) {
        this.fail(err, id);
        return;
      }
      this.respondError(id, err);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Responses
  // -------------------------------------------------------------------------------------------

  private complete(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idleWaiter !== undefined) this.idleWaiter();
    if (this.paused) this.pump();
  }

  private respond(_id: number, frame: Buffer): void {
    this.writer.write(frame);
    this.complete();
  }

  private respondAll(frames: Buffer[]): void {
    this.writer.writeAll(frames);
    this.complete();
  }

  private respondError(id: number, err: unknown): void {
    const wire = toWireError(err);
    if (wire.code === 'ARCHLAB_INTERNAL') this.ctx.logger.error({ err, conn: this.id }, 'queue request failed');
    this.ctx.counters.error(wire.code);
    this.writer.write(encodeError(id, wire));
    this.complete();
  }

  /** Calls `fn`, turning a synchronous throw into a rejected promise. */
  private call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return fn();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------------------------

  private hello(id: number, payload: Buffer): void {
    if (this.state !== 'handshake') {
      this.fail(new QueueError('ARCHLAB_QUEUE_PROTOCOL', 'HELLO sent twice'), id);
      return;
    }
    const h = decodeHello(payload);
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    if (h.version !== PROTOCOL_VERSION) {
      this.fail(
        new QueueError('ARCHLAB_QUEUE_PROTOCOL', `protocol version ${h.version} is not supported; this server speaks ${PROTOCOL_VERSION}`, {
          details: { version: h.version, supported: [PROTOCOL_VERSION] },
        }),
        id,
      );
      return;
    }
    const want = this.ctx.tokenDigest;
    if (want !== undefined && !timingSafeEqual(digestToken(h.token), want)) {
      this.fail(new QueueError('ARCHLAB_QUEUE_UNAUTHORIZED', h.token === '' ? 'this server needs a token' : 'invalid token'), id);
      return;
    }
    this.clientId = h.clientId.slice(0, 200);
    this.state = 'open';
    const l = this.ctx.limits;
    this.respond(
      id,
      encodeHelloOk(id, { version: PROTOCOL_VERSION, maxFrameBytes: l.maxFrameBytes, maxInFlight: l.maxInFlight, idleTimeoutMs: l.idleMs, server: this.ctx.serverName }),
    );
  }

  private produce(id: number, payload: Buffer): void {
    const p = decodeProduce(payload);
    const c = this.ctx.counters;
    this.call(() => this.ctx.log.appendRaw(p.topic, p.partition, p.batch, p.acks)).then(
      (r) => {
        c.appendedBatches++;
        c.appendedBytes += p.batch.length;
        if (!r.duplicate) c.appendedRecords += r.lastOffset - r.baseOffset + 1;
        this.respond(id, encodeProduceOk(id, r));
      },
      (err: unknown) => this.respondError(id, err),
    );
  }

  private fetch(id: number, payload: Buffer): void {
    const f = decodeFetch(payload);
    const l = this.ctx.limits;
    const maxWaitMs = Math.min(f.maxWaitMs, l.maxFetchWaitMs);
    // The response must fit a frame (leave room for its fields) and the connection's fetch budget.
    const maxBytes = Math.max(1, Math.min(f.maxBytes, l.maxFrameBytes - 64 * 1024, l.maxFetchBytesInFlight - this.fetchReserved));
    this.fetchReserved += maxBytes;
    const longPoll = maxWaitMs > 0;
    if (longPoll) this.longPolls.add(id);
    const c = this.ctx.counters;
    this.call(() => this.ctx.log.fetchRaw({ topic: f.topic, partition: f.partition, offset: f.offset, maxBytes, maxWaitMs })).then(
      (r) => {
        this.fetchReserved -= maxBytes;
        if (longPoll && !this.longPolls.delete(id)) return; // answered already (the server is draining)
        c.fetches++;
        for (const b of r.batches) c.fetchedBytes += b.length;
        this.respondAll(encodeFetchOk(id, r));
      },
      (err: unknown) => {
        this.fetchReserved -= maxBytes;
        if (longPoll && !this.longPolls.delete(id)) return;
        this.respondError(id, err);
      },
    );
  }

  private control(id: number, payload: Buffer): void {
    const { method, args } = decodeControl(payload);
    const counters = this.ctx.counters;
    const engines = { log: this.ctx.log, broker: this.ctx.broker, groupSeen: (g: string) => counters.groupSeen(g) };
    callControl(engines, method, args).then(
      (result) => this.respond(id, encodeControlOk(id, result)),
      (err: unknown) => this.respondError(id, err),
    );
  }

  private publish(id: number, payload: Buffer): void {
    const p = decodePublish(payload);
    this.call(() => this.ctx.broker.publish(p.exchange, p.routingKey, p.message, p.mandatory ? { mandatory: true } : undefined)).then(
      (r) => {
        this.ctx.counters.published++;
        this.respond(id, encodePublishOk(id, r.routed));
      },
      (err: unknown) => this.respondError(id, err),
    );
  }

  private consume(id: number, payload: Buffer): void {
    const c = decodeConsume(payload);
    if (this.subs.has(c.subscriptionId)) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `subscription id ${c.subscriptionId} is in use on this connection`, { details: { subscriptionId: c.subscriptionId } });
    }
    const max = this.ctx.limits.maxSubscriptions;
    if (this.subs.size >= max) {
      throw new QueueError('ARCHLAB_QUEUE_LIMIT', `at most ${max} consumers per connection`, { details: { limit: 'maxSubscriptions', value: max } });
    }
    if (c.prefetch < 1) throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `prefetch must be at least 1, got ${c.prefetch}`);
    const st: SubState = { id: c.subscriptionId, queue: c.queue, prefetch: c.prefetch, credit: c.prefetch, sub: undefined, held: [], cancelled: false, stopping: undefined };
    this.subs.set(st.id, st);
    // The broker may deliver before consume() resolves: the client chose the id, so it can route them.
    this.call(() => this.ctx.broker.consume(c.queue, { prefetch: c.prefetch, onDelivery: (d) => this.onDelivery(st, d) })).then(
      (sub) => {
        st.sub = sub;
        if (st.cancelled || this.state === 'closed') {
          void this.stopConsumer(st, this.state !== 'closed');
          if (this.state === 'closed') return;
        }
        this.respond(id, encodeConsumeOk(id, sub.consumerTag));
      },
      (err: unknown) => {
        if (this.subs.get(st.id) === st) this.subs.delete(st.id);
        this.respondError(id, err);
      },
    );
  }

  private cancel(id: number, payload: Buffer): void {
    const { subscriptionId } = decodeCancel(payload);
    const st = this.subs.get(subscriptionId);
    if (st === undefined) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `no subscription ${subscriptionId} on this connection`, { details: { subscriptionId } });
    }
    this.subs.delete(subscriptionId);
    st.cancelled = true;
    this.stopConsumer(st, true).then(
      () => this.respond(id, encodeEmpty(FrameType.CANCEL | RESPONSE_BIT, id)),
      (err: unknown) => this.respondError(id, err),
    );
  }

  /**
   * Cancels the broker consumer and requeues what it held unpushed. On a client's CANCEL
   * (`keepUnacked`), deliveries already pushed stay the client's to settle, as the Subscription
   * contract says: their tags stay valid until the connection closes. When the connection goes, they
   * are requeued.
   */
  private stopConsumer(st: SubState, keepUnacked = false): Promise<void> {
    st.cancelled = true;
    // A consumer still being set up is stopped when consume() resolves (see consume()).
    if (st.sub === undefined) return Promise.resolve();
    const sub = st.sub;
    st.stopping ??= (async () => {
      const held = st.held;
      st.held = [];
      // A client CANCEL keeps this consumer's unacked deliveries held (the client may still ack
      // them); a dropped connection requeues them at once.
      await sub.cancel({ requeueUnacked: !keepUnacked });
      await Promise.allSettled(held.map((d) => this.requeue(d.deliveryTag)));
    })();
    return st.stopping;
  }

  private requeue(tag: number): Promise<void> {
    return this.call(() => this.ctx.broker.nack(tag, { requeue: true })).catch((err: unknown) => {
      // Already settled elsewhere (cancel requeued it, or its visibility timed out): nothing to do.
      if (!isArchlabError(err, 'ARCHLAB_QUEUE_UNKNOWN_DELIVERY')) this.ctx.logger.warn({ err, tag }, 'requeue failed');
    });
  }

  /** Takes a tag pushed on this connection; gives its consumer the credit back (the client settled it, whatever the broker answers). */
  private takeTag(deliveryTag: number): boolean {
    const st = this.tags.get(deliveryTag);
    if (st === undefined) return false;
    this.tags.delete(deliveryTag);
    if (st !== null && !st.cancelled) {
      st.credit++;
      if (st.held.length > 0) this.pushHeld(st);
    }
    return true;
  }

  private static unknownTag(deliveryTag: number): QueueError {
    return new QueueError('ARCHLAB_QUEUE_UNKNOWN_DELIVERY', `delivery tag ${deliveryTag} was not delivered on this connection, or is settled already`, {
      details: { deliveryTag },
    });
  }

  /** ACK of one or more tags: one answer listing the tags that failed. */
  private ack(id: number, payload: Buffer): void {
    const tags = decodeAck(payload);
    const broker = this.ctx.broker;
    this.ctx.counters.acks += tags.length;
    const n = tags.length;
    const failures: AckFailure[] = [];
    let left = n;
    const oneDone = (): void => {
      if (--left === 0) {
        if (failures.length > 1) failures.sort((a, b) => a.index - b.index);
        for (const f of failures) this.ctx.counters.error(f.error.code);
        this.respond(id, encodeAckOk(id, failures));
      }
    };
    for (let i = 0; i < n; i++) {
      const tag = tags[i]!;
      if (!this.takeTag(tag)) {
        failures.push({ index: i, error: toWireError(ServerConnection.unknownTag(tag)) });
        oneDone();
        continue;
      }
      const index = i;
      this.call(() => broker.ack(tag)).then(oneDone, (err: unknown) => {
        failures.push({ index, error: toWireError(err) });
        oneDone();
      });
    }
  }

  private nack(id: number, payload: Buffer): void {
    const { deliveryTag, requeue } = decodeNack(payload);
    if (!this.takeTag(deliveryTag)) throw ServerConnection.unknownTag(deliveryTag);
    this.ctx.counters.nacks++;
    this.call(() => this.ctx.broker.nack(deliveryTag, { requeue })).then(
      () => this.respond(id, encodeEmpty(FrameType.NACK | RESPONSE_BIT, id)),
      (err: unknown) => this.respondError(id, err),
    );
  }

  private get(id: number, payload: Buffer): void {
    const { queue } = decodeGet(payload);
    this.call(() => this.ctx.broker.get(queue)).then(
      (d) => {
        if (d !== null) {
          if (this.state === 'closed') {
            void this.requeue(d.deliveryTag);
            return;
          }
          this.tags.set(d.deliveryTag, null);
          this.ctx.counters.deliveries++;
        }
        this.respondAll(encodeGetOk(id, d));
      },
      (err: unknown) => this.respondError(id, err),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Deliveries
  // -------------------------------------------------------------------------------------------

  private onDelivery(st: SubState, d: Delivery): void {
    if (st.cancelled || this.state === 'closed') {
      void this.requeue(d.deliveryTag);
      return;
    }
    if (st.credit > 0) {
      this.push(st, d);
    } else if (st.held.length < st.prefetch) {
      st.held.push(d);
    } else {
      void this.requeue(d.deliveryTag);
    }
  }

  private push(st: SubState, d: Delivery): void {
    st.credit--;
    this.tags.set(d.deliveryTag, st);
    this.ctx.counters.deliveries++;
    this.writer.writeAll(encodeDelivery(st.id, d));
  }

  private pushHeld(st: SubState): void {
    let i = 0;
    while (st.credit > 0 && i < st.held.length) this.push(st, st.held[i++]!);
    st.held.splice(0, i);
  }

  // -------------------------------------------------------------------------------------------
  // Ending
  // -------------------------------------------------------------------------------------------

  /**
   * Half-closes the socket and keeps reading (discarding) so the peer's FIN is seen and the socket
   * closes; a peer that never closes its side is cut after a second.
   */
  private endSocket(): void {
    this.state = 'closed';
    this.socket.end();
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  /** Sends the error (for request `id`, or 0 for the connection) and closes this connection. */
  private fail(err: unknown, id: number): void {
    if (this.state === 'closed') return;
    const wire = toWireError(err);
    this.ctx.counters.error(wire.code);
    this.ctx.logger.info({ conn: this.id, remote: this.remote, code: wire.code, reason: wire.message }, 'closing queue connection');
    this.writer.write(encodeError(id, wire));
    this.writer.flush();
    this.writer.close();
    this.endSocket();
    void this.release();
  }

  private onIdle(): void {
    if (this.inFlight > 0 || this.state === 'closed') return; // a long poll is running; its answer is activity
    this.ctx.logger.debug({ conn: this.id }, 'idle queue connection closed');
    this.writer.write(encodeGoaway(`idle for ${this.ctx.limits.idleMs}ms`));
    this.writer.flush();
    this.writer.close();
    this.endSocket();
    void this.release();
  }

  private async onClose(): Promise<void> {
    this.state = 'closed';
    this.writer.close();
    clearTimeout(this.handshakeTimer);
    await this.release();
    this.resolveClosed();
  }

  /** Cancels every consumer, then requeues every delivery this connection still holds. Once. */
  private release(): Promise<void> {
    this.releasing ??= (async () => {
      const subs = [...this.subs.values()];
      this.subs.clear();
      await Promise.allSettled(subs.map((st) => this.stopConsumer(st)));
      const tags = [...this.tags.keys()];
      this.tags.clear();
      await Promise.allSettled(tags.map((t) => this.requeue(t)));
    })();
    return this.releasing;
  }

  /**
   * Graceful end for a server shutdown: GOAWAY, stop taking requests, answer long polls with
   * ARCHLAB_QUEUE_DISCONNECTED (retryable), let the other in-flight requests finish (up to
   * `drainMs`), release consumers and deliveries, close.
   */
  async drain(drainMs: number): Promise<void> {
    if (this.state === 'closed') return this.closedPromise;
    this.state = 'draining';
    this.writer.write(encodeGoaway('server shutting down'));
    this.pump(); // pauses the socket
    for (const id of this.longPolls) {
      this.ctx.counters.error('ARCHLAB_QUEUE_DISCONNECTED');
      this.writer.write(encodeError(id, toWireError(new QueueError('ARCHLAB_QUEUE_DISCONNECTED', 'server shutting down'))));
      this.complete();
    }
    this.longPolls.clear();
    // Consumers stop first, so nothing new is pushed while the rest drains.
    await Promise.allSettled([...this.subs.values()].map((st) => this.stopConsumer(st, true)));
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, drainMs);
        t.unref();
        this.idleWaiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    this.writer.flush();
    this.writer.close();
    this.endSocket();
    await this.release();
    await this.closedPromise;
  }
}
