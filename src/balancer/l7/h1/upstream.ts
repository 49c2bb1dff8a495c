/**
 * Keep-alive HTTP/1.1 connections to one backend, for requests without a body: the proxy's common
 * case, sent and read here directly on the socket (a request line and fields written in one call, the
 * response read by ResponseReader). undici's Pool spends more CPU per request than the balancer's
 * whole fast path (docs/balancer.md); requests with a body, and backends reached over TLS, still go
 * through it (`fallback`), so uploads keep undici's streaming.
 *
 * The interface is undici's dispatch handler, so the proxy's Exchange drives either transport
 * unchanged: onRequestStart once the request is on the wire (a connect failure arrives before it, as
 * ECONNREFUSED or UND_ERR_CONNECT_TIMEOUT), onResponseStart/Data/End, or onResponseError; the
 * controller aborts (Exchange's timeouts, a client that left), pauses and resumes (backpressure).
 *
 * Connections: a socket is busy (one exchange) or idle; idle ones are reused last-in first-out, closed
 * after `idleMs` unused or when the backend closes them, and never more than `maxIdle` are kept. The
 * number busy is bounded by the balancer's per-backend maxConnections (the pool's acquire), so the
 * total is too. A connection that ends a response unusable (close-delimited body, Connection: close,
 * bytes after the response, an aborted exchange) is closed, never reused.
 */
import * as net from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import { HTTP_TOKEN } from '../../../core/http.js';
import { ResponseReader, UpstreamProtocolError, type ResponseSink } from './response-reader.js';

export interface H1UpstreamOptions {
  host: string;
  port: number;
  /** A new connection must be established within this, ms; 0 = no limit. */
  connectMs: number;
  /** An idle connection is closed after this unused, ms. */
  idleMs: number;
  /** At most this many idle connections are kept. */
  maxIdle: number;
  /** Longest response head accepted, bytes. */
  maxHeadBytes: number;
  /** Where requests with a body go (undici's Pool for the same backend). */
  fallback: Pick<Dispatcher, 'dispatch' | 'destroy'>;
}

/** A value that would end a header line early or smuggle a second one. */
const BAD_VALUE = /[\r\n\0]/;
/** Field names are tokens (RFC 9110 §5.1), as undici checks: a CR or LF in a name would split the head too. */

export class H1Upstream {
  private readonly idle: Connection[] = [];
  private destroyed = false;

  constructor(readonly o: H1UpstreamOptions) {}

  /** Idle connections now (for tests and metrics). */
  get idleCount(): number {
    return this.idle.length;
  }

  /** undici's dispatch, for requests whose headers are a plain object (what the proxy sends). */
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (opts.body !== null && opts.body !== undefined) return this.o.fallback.dispatch(opts, handler);
    let head: string;
    try {
      head = requestHead(opts.method, opts.path, opts.headers as Record<string, string | string[]>);
    } catch (err) {
      handler.onResponseError?.(DEAD, err as Error);
      return true;
    }
    if (this.destroyed) {
      handler.onResponseError?.(DEAD, new undiciErrors.ClientDestroyedError());
      return true;
    }
    const conn = this.idle.pop() ?? new Connection(this);
    conn.send(head, opts.method === 'HEAD', handler);
    return true;
  }

  /** Called by a connection whose exchange ended with the connection still usable. */
  release(conn: Connection): void {
    if (this.destroyed || this.idle.length >= this.o.maxIdle) conn.close();
    else {
      conn.parkIdle();
      this.idle.push(conn);
    }
  }

  /** Called by an idle connection that closed (timed out, or the backend closed it). */
  forget(conn: Connection): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
    for (const c of this.idle.splice(0)) c.close();
    await this.o.fallback.destroy();
  }
}

/** The controller handed out when no exchange started (bad headers, a destroyed pool). */
const DEAD: Dispatcher.DispatchController = {
  aborted: true,
  paused: false,
  reason: null,
  abort: () => undefined,
  pause: () => undefined,
  resume: () => undefined,
};

function requestHead(method: string, path: string, headers: Record<string, string | string[]>): string {
  let head = `${method} ${path} HTTP/1.1\r\n`;
  if (BAD_VALUE.test(path)) throw new undiciErrors.InvalidArgumentError('invalid request path');
  for (const name in headers) {
    if (!HTTP_TOKEN.test(name)) throw new undiciErrors.InvalidArgumentError('invalid header key');
    const v = headers[name]!;
    if (typeof v === 'string') {
      if (BAD_VALUE.test(v)) throw new undiciErrors.InvalidArgumentError(`invalid ${name} header`);
      head += `${name}: ${v}\r\n`;
    } else {
      for (const one of v) {
        if (BAD_VALUE.test(one)) throw new undiciErrors.InvalidArgumentError(`invalid ${name} header`);
        head += `${name}: ${one}\r\n`;
      }
    }
  }
  return head + '\r\n';
}

/** Errors a socket raises, given the code Exchange classifies by (connect vs reset). */
function socketError(err: NodeJS.ErrnoException, connected: boolean): Error {
  if (!connected) return err; // ECONNREFUSED, EHOSTUNREACH ...: a connect error
  if (err.code === undefined) (err as { code?: string }).code = 'UND_ERR_SOCKET';
  return err;
}

/** One socket to the backend; it is its own exchange's controller. */
class Connection implements Dispatcher.DispatchController, ResponseSink {
  private readonly socket: net.Socket;
  private connected = false;
  private handler: Dispatcher.DispatchHandler | undefined;
  private reader: ResponseReader | undefined;
  private head = '';
  private isIdle = false;
  private closed = false;
  aborted = false;
  paused = false;
  reason: Error | null = null;
  /**
   * What the reader went on to produce after pause() within the same read (later chunks of a chunked
   * body, the end): resume() delivers it, so a paused handler hears nothing more, as with undici's
   * parser, which stops at the callback that paused.
   */
  private readonly held: Buffer[] = [];
  /** The response ended while paused: onEnd's `reusable`, for resume() to finish with. */
  private heldEnd: boolean | undefined;

  constructor(private readonly up: H1Upstream) {
    const { host, port, connectMs } = up.o;
    this.socket = net.connect({ host, port, noDelay: true });
    // Until connected, the timeout is the connect timeout (connectMs, or idleMs when 0 = no limit of its own).
    this.socket.setTimeout(connectMs > 0 ? connectMs : up.o.idleMs);
    this.socket.on('connect', () => this.onConnect());
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('end', () => this.onEof());
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.onSocketError(err));
    this.socket.on('close', () => this.onClose());
    this.socket.on('timeout', () => this.onTimeout());
  }

  send(head: string, headRequest: boolean, handler: Dispatcher.DispatchHandler): void {
    this.isIdle = false;
    this.handler = handler;
    this.aborted = false;
    this.paused = false;
    this.reason = null;
    this.held.length = 0;
    this.heldEnd = undefined;
    this.reader = new ResponseReader(this, headRequest, this.up.o.maxHeadBytes);
    if (this.connected) this.start(head);
    else this.head = head;
  }

  /**
   * An idle connection waits at most idleMs for its next exchange. The socket's timeout is idleMs
   * from the connect on and never re-armed per exchange (each re-arm allocates a timer): it fires
   * after idleMs without bytes either way, which closes an idle connection and is ignored by a busy
   * one, whose exchange the proxy's own response and idle timeouts bound.
   */
  parkIdle(): void {
    this.isIdle = true;
    this.handler = undefined;
    this.reader = undefined;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private onConnect(): void {
    this.connected = true;
    this.socket.setTimeout(this.up.o.idleMs);
    if (this.handler !== undefined) {
      const head = this.head;
      this.head = '';
      this.start(head);
    }
  }

  private start(head: string): void {
    const h = this.handler!;
    h.onRequestStart?.(this, {});
    if (this.aborted || this.handler !== h) return; // aborted in onRequestStart (the client left)
    this.socket.write(head, 'latin1');
  }

  private onData(chunk: Buffer): void {
    const reader = this.reader;
    if (reader === undefined) {
      // Bytes nobody asked for on an idle connection: it cannot be trusted for the next exchange.
      this.up.forget(this);
      this.close();
      return;
    }
    try {
      reader.push(chunk);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private onEof(): void {
    if (this.heldEnd !== undefined) {
      this.heldEnd = false; // the response is complete; the connection is not reusable
      return;
    }
    if (this.reader === undefined || this.handler === undefined) {
      this.socket.destroy();
      return;
    }
    try {
      this.reader.eof();
    } catch (err) {
      this.fail(Object.assign(err as Error, { code: 'UND_ERR_SOCKET' }));
    }
    this.socket.destroy();
  }

  private onSocketError(err: NodeJS.ErrnoException): void {
    if (this.heldEnd !== undefined) this.heldEnd = false;
    else if (this.handler !== undefined) this.fail(socketError(err, this.connected));
  }

  private onClose(): void {
    this.closed = true;
    if (this.isIdle) {
      this.isIdle = false;
      this.up.forget(this);
      return;
    }
    if (this.heldEnd !== undefined) this.heldEnd = false;
    else if (this.handler !== undefined) {
      // UND_ERR_SOCKET: a reset to the proxy's Exchange once the request is out, a connect failure before.
      this.fail(new undiciErrors.SocketError(this.connected ? 'other side closed' : 'socket closed before connecting'));
    }
  }

  private onTimeout(): void {
    if (this.isIdle) {
      this.close();
      return;
    }
    if (!this.connected && this.handler !== undefined && this.up.o.connectMs > 0) {
      this.fail(new undiciErrors.ConnectTimeoutError(`connect to ${this.up.o.host}:${this.up.o.port} timed out`));
    }
  }

  /** Ends the exchange in error (once) and closes the socket: it is in an unknown state. */
  private fail(err: Error): void {
    const h = this.handler;
    this.handler = undefined;
    this.reader = undefined;
    this.held.length = 0;
    this.heldEnd = undefined;
    if (!this.closed) this.close();
    h?.onResponseError?.(this, err);
  }

  // ResponseSink

  onHead(status: number, message: string, headers: IncomingHttpHeaders): void {
    this.handler?.onResponseStart?.(this, status, headers, message);
  }

  onBody(chunk: Buffer): void {
    if (this.paused) this.held.push(chunk);
    else this.handler?.onResponseData?.(this, chunk);
  }

  onEnd(reusable: boolean): void {
    if (this.paused) {
      this.heldEnd = reusable;
      return;
    }
    const h = this.handler;
    this.handler = undefined;
    this.reader = undefined;
    if (this.paused) this.socket.resume();
    this.paused = false;
    // Back to the pool first: the end callback may start the next exchange with this backend.
    if (reusable && !this.closed) this.up.release(this);
    else this.close();
    h?.onResponseEnd?.(this, {});
  }

  // DispatchController

  abort(reason: Error): void {
    if (this.aborted || this.handler === undefined) return;
    this.aborted = true;
    this.reason = reason;
    this.fail(reason);
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    // What the paused read produced first, a piece at a time: the handler may pause again.
    while (this.held.length > 0) {
      if (this.paused || this.handler === undefined) return;
      this.handler.onResponseData?.(this, this.held.shift()!);
    }
    if (this.paused || this.handler === undefined) return;
    this.socket.resume();
    const end = this.heldEnd;
    if (end !== undefined) {
      this.heldEnd = undefined;
      this.onEnd(end);
    }
  }
}

export { UpstreamProtocolError };
