/**
 * The balancer's HTTP/1.1 fast path below node:http. node:http's server side costs more CPU per
 * request than nginx spends proxying one (docs/balancer.md), so requests of the common shape are
 * read from the socket here: a strict parser (core/http parseSimpleRequestHead) accepts `GET` or
 * `HEAD` with no body, origin-form, HTTP/1.1, one Host, no framing or upgrade fields and at most
 * `maxHeaderBytes` of head, all in the bytes at hand. Everything else (another method, a body, a
 * partial head, anything malformed, a smuggling shape) hands the connection to node:http, with the
 * bytes not yet answered, for the rest of its life: node:http's parser and error answers stay the
 * only ones for input the fast path does not accept.
 *
 * A fast request goes through the same proxy (routing, picking, retries, timeouts, metrics, access
 * log) as any other; only its request and response objects are these small ones. One request is
 * answered at a time per connection: bytes that arrive meanwhile (pipelining) wait, with the socket
 * paused, and are taken in order once the response has ended.
 *
 * Timeouts as node:http's: `headersMs` for the first request head, `keepAliveMs` between requests,
 * and while a request is being answered, silence of the timeout in force plus `idleMs`
 * (server.timeout) closes the connection.
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import { FRAMING_FIELDS, HTTP_TOKEN, httpDate, INVALID_FIELD_VALUE_CHAR, parseSimpleRequestHead } from '../../../core/http.js';
import { BalancerError } from '../../errors.js';

const CRLFCRLF = Buffer.from('\r\n\r\n');
const REFUSE: ReadonlySet<string> = new Set(FRAMING_FIELDS);
const MAX_FIELDS = 100;

export interface FastInboundOptions {
  maxHeaderBytes: number;
  headersMs: number;
  keepAliveMs: number;
  idleMs: number;
  /** Answers one request (the proxy's handle()). */
  serve(req: FastRequest, res: FastResponse): void;
}

export interface FastInbound {
  /** Connections on the fast path now. */
  readonly size: number;
  /** Shutdown: idle connections end now, busy ones after their response; new ones go to node:http. */
  closeAll(): void;
}

/** The request as the proxy reads it (the fields of IncomingMessage it uses). */
export class FastRequest {
  readonly httpVersion = '1.1';
  readonly rawHeaders: string[] = [];
  constructor(
    readonly method: 'GET' | 'HEAD',
    readonly url: string,
    readonly headers: Record<string, string>,
    readonly socket: net.Socket,
  ) {}
}

/**
 * The response (the part of ServerResponse the proxy uses): writeHead, write with backpressure,
 * end, cork, destroy, 'close' when the client leaves before the end, 'drain'. The body is framed by
 * the Content-Length given, or chunked without one; HEAD, 204 and 304 carry none.
 */
export class FastResponse {
  statusCode = 200;
  headersSent = false;
  writableFinished = false;
  readonly stream = undefined;
  private chunked = false;
  private noBody = false;
  private closeAfter = false;
  private closeListener: ((this: FastResponse) => void) | undefined;
  /** The head, from writeHead until the first body bytes or the end. */
  private head: string | undefined;

  constructor(
    private readonly conn: FastConnection,
    readonly socket: net.Socket,
    private readonly headRequest: boolean,
  ) {}

  writeHead(status: number, headers: Record<string, string | string[] | number | undefined>): this {
    if (this.headersSent) throw new BalancerError('ARCHLAB_BALANCER_INTERNAL', 'fast path: headers already sent');
    let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let length = false;
    let date = false;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined) continue;
      if (!HTTP_TOKEN.test(name)) throw new TypeError(`invalid header name "${name}"`);
      const lower = name.toLowerCase();
      if (lower === 'content-length') length = true;
      else if (lower === 'date') date = true;
      else if (lower === 'connection') {
        if (String(v).toLowerCase() === 'close') this.closeAfter = true;
        continue; // written below, once
      } else if (lower === 'transfer-encoding' || lower === 'keep-alive') continue; // framing is this response's own
      if (Array.isArray(v)) {
        for (const one of v) {
          if (INVALID_FIELD_VALUE_CHAR.test(one)) throw new TypeError(`invalid value for header "${name}"`);
          head += `${name}: ${one}\r\n`;
        }
      } else {
        const s = typeof v === 'number' ? String(v) : v;
        if (INVALID_FIELD_VALUE_CHAR.test(s)) throw new TypeError(`invalid value for header "${name}"`);
        head += `${name}: ${s}\r\n`;
      }
    }
    if (!date) head += `date: ${httpDate()}\r\n`;
    this.noBody = this.headRequest || status === 204 || status === 304 || status < 200;
    if (!this.noBody && !length) {
      this.chunked = true;
      head += 'transfer-encoding: chunked\r\n';
    }
    if (this.closeAfter || this.conn.closing) {
      this.closeAfter = true;
      head += 'connection: close\r\n\r\n';
    } else head += this.conn.keepAliveLines;
    this.statusCode = status;
    this.headersSent = true;
    // Sent with the first body bytes or the end, as node:http does: head and a small body leave in one write.
    this.head = head;
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (!this.headersSent) this.writeHead(this.statusCode, {});
    if (this.noBody || chunk.length === 0) return this.flushHead();
    const { socket } = this;
    socket.cork();
    if (this.head !== undefined) {
      socket.write(this.head, 'latin1');
      this.head = undefined;
    }
    let ok: boolean;
    if (!this.chunked) ok = socket.write(chunk);
    else {
      const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      socket.write(`${n.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write('\r\n', 'latin1');
    }
    socket.uncork();
    return ok;
  }

  end(chunk?: string | Buffer): this {
    if (this.writableFinished) return this;
    if (chunk !== undefined) this.write(chunk);
    else if (!this.headersSent) this.writeHead(this.statusCode, {});
    if (this.chunked) {
      this.socket.cork();
      this.flushHead();
      this.socket.write('0\r\n\r\n', 'latin1');
      this.socket.uncork();
    } else this.flushHead();
    this.writableFinished = true;
    this.conn.finished(this.closeAfter);
    return this;
  }

  /** Writes the head if it is still waiting for body bytes; returns the socket's write result (true when nothing was written). */
  private flushHead(): boolean {
    if (this.head === undefined) return true;
    const head = this.head;
    this.head = undefined;
    return this.socket.write(head, 'latin1');
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** 'close' (the client left before the end) and, through the socket, 'drain'. */
  on(event: 'close', fn: (this: FastResponse) => void): this {
    if (event === 'close') this.closeListener = fn;
    return this;
  }

  once(event: 'drain', fn: () => void): this {
    this.socket.once(event, fn);
    return this;
  }

  /** The connection closed: tells the proxy when the response had not ended. */
  socketClosed(): void {
    if (!this.writableFinished) this.closeListener?.call(this);
  }
}

/**
 * Takes over `server`'s connections: each socket starts on the fast path and moves to node:http (for
 * good) at the first request the fast path does not take.
 */
export function installFastInbound(server: http.Server, o: FastInboundOptions): FastInbound {
  const internal = server.listeners('connection')[0] as ((socket: net.Socket) => void) | undefined;
  if (internal === undefined) throw new BalancerError('ARCHLAB_BALANCER_INTERNAL', 'fast path: node:http has no connection listener to hand off to');
  server.removeListener('connection', internal);
  const shared: Shared = {
    o,
    conns: new Set(),
    closing: false,
    keepAliveLines: `connection: keep-alive\r\nkeep-alive: timeout=${Math.max(1, Math.floor(o.keepAliveMs / 1000))}\r\n\r\n`,
    handOff: (s) => internal.call(server, s),
  };
  server.prependListener('connection', (socket: net.Socket) => {
    if (shared.closing) shared.handOff(socket);
    else new FastConnection(socket, shared);
  });
  return {
    get size() {
      return shared.conns.size;
    },
    closeAll: () => {
      shared.closing = true;
      for (const c of shared.conns) c.shutdown();
    },
  };
}

interface Shared {
  o: FastInboundOptions;
  conns: Set<FastConnection>;
  closing: boolean;
  keepAliveLines: string;
  handOff(socket: net.Socket): void;
}

class FastConnection {
  /** The response being written, if any. */
  private res: FastResponse | undefined;
  /** Bytes received while a response was in progress, taken once it ends. */
  private waiting: Buffer | undefined;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  /**
   * The socket's timeout is headersMs until the first response, keepAliveMs after it, and is not
   * re-armed per request (each re-arm allocates a timer). While a response is in progress a first
   * expiry moves it to idleMs (node:http's server.timeout) and a second one closes the connection;
   * the next response end sets keepAliveMs again.
   */
  private readonly onTimeout = (): void => {
    if (this.res !== undefined && !this.stretched) {
      this.stretched = true;
      this.socket.setTimeout(this.shared.o.idleMs);
      return;
    }
    this.socket.destroy();
  };
  /** The timeout was moved to idleMs for a long response. */
  private stretched = false;
  /** The timeout is keepAliveMs (after the first response). */
  private keepAliveArmed = false;
  private readonly onError = (): void => {
    this.socket.destroy();
  };
  /**
   * The client closed its sending side. As node:http (httpAllowHalfOpen false) and nginx do, that
   * is a client gone: a response in progress is cancelled (its backend exchange too), an idle
   * connection is closed.
   */
  private readonly onEnd = (): void => {
    if (this.res !== undefined) this.socket.destroy();
    else this.socket.end();
  };
  private readonly onClose = (): void => {
    this.shared.conns.delete(this);
    const res = this.res;
    this.res = undefined;
    res?.socketClosed();
  };

  constructor(
    readonly socket: net.Socket,
    private readonly shared: Shared,
  ) {
    shared.conns.add(this);
    socket.setNoDelay(true);
    socket.setTimeout(shared.o.headersMs);
    socket.on('data', this.onData);
    socket.on('timeout', this.onTimeout);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('end', this.onEnd);
  }

  get closing(): boolean {
    return this.shared.closing;
  }

  get keepAliveLines(): string {
    return this.shared.keepAliveLines;
  }

  /** Shutdown: an idle connection ends now, a busy one after its response (which says close). */
  shutdown(): void {
    if (this.res === undefined) this.socket.end();
  }

  private data(chunk: Buffer): void {
    if (this.res !== undefined) {
      // Pipelined: wait for the response in progress, reading nothing more meanwhile.
      this.waiting = this.waiting === undefined ? chunk : Buffer.concat([this.waiting, chunk]);
      this.socket.pause();
      return;
    }
    this.take(chunk);
  }

  /** Answers the first request in `buf` or hands the connection off. */
  private take(buf: Buffer): void {
    const { o } = this.shared;
    const end = buf.indexOf(CRLFCRLF);
    const req = end < 0 || end > o.maxHeaderBytes ? undefined : parseSimpleRequestHead(buf, 0, end, REFUSE, MAX_FIELDS);
    if (req === undefined) return this.handOff(buf);
    if (end + 4 < buf.length) {
      this.waiting = buf.subarray(end + 4);
      this.socket.pause();
    } else if (this.socket.isPaused()) this.socket.resume();
    const res = new FastResponse(this, this.socket, req.method === 'HEAD');
    this.res = res;
    o.serve(new FastRequest(req.method, req.url, req.headers, this.socket), res);
  }

  /** Called by the response's end(). */
  finished(close: boolean): void {
    this.res = undefined;
    if (close || this.shared.closing) {
      this.waiting = undefined;
      this.socket.end();
      return;
    }
    if (!this.keepAliveArmed || this.stretched) {
      this.keepAliveArmed = true;
      this.stretched = false;
      this.socket.setTimeout(this.shared.o.keepAliveMs);
    }
    const next = this.waiting;
    if (next !== undefined) {
      // The next request starts after this response's callbacks have returned; the socket stays
      // paused until then, so nothing read meanwhile can overtake it.
      this.waiting = undefined;
      process.nextTick(() => {
        if (!this.socket.destroyed && this.res === undefined) this.take(next);
      });
    }
  }

  private handOff(rest: Buffer): void {
    const { socket } = this;
    socket.removeListener('data', this.onData);
    socket.removeListener('timeout', this.onTimeout);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    socket.removeListener('end', this.onEnd);
    this.shared.conns.delete(this);
    socket.setTimeout(0);
    if (rest.length > 0) socket.unshift(rest);
    this.shared.handOff(socket);
    // Paused while a pipelined request waited: node:http reads from here on.
    if (socket.isPaused()) socket.resume();
  }
}
