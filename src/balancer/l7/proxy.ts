/**
 * The HTTP/1.1 and HTTP/2 reverse proxy: route, pick, forward with streaming and backpressure,
 * retry replayable requests elsewhere within a budget (replay.ts decides which, and after what),
 * and answer every failure with the right status.
 * Pure decisions (routing, picking, headers, stickiness, ejection) live in their own modules; this
 * file is the shell that moves bytes.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type * as http2 from 'node:http2';
import * as https from 'node:https';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { Transform, type Readable } from 'node:stream';
import { errors as undiciErrors, Pool as UndiciPool, type Dispatcher } from 'undici';
import { formatHostPort } from '../../core/net.js';
import type { Logger } from 'pino';
import type { Backend } from '../backend.js';
import type { BalancerConfig } from '../config.js';
import { BalancerError } from '../errors.js';
import type { BalancerMetrics } from '../metrics.js';
import type { PickContext } from '../pick/types.js';
import type { PoolRuntime, ProxyState } from '../runtime.js';
import { parseCookies } from './cookies.js';
import { checkFraming } from './framing.js';
import type { FastRequest } from './h1/inbound.js';
import { H1Upstream } from './h1/upstream.js';
import { forwardedHeaders, responseHeaders, upgradeHeaders } from './headers.js';
import { bodyPlan, retryOn, RETRY_ON_CONNECT, RETRY_ON_RESET, RETRY_ON_STATUS, STREAM_BODY } from './replay.js';
import { BodyReader, type BodyFailure, type BodySink } from './request-body.js';

export const VIA = '1.1 archlab';
/** Idle upstream keep-alive sockets are closed after this, below Node's default 5 s server keep-alive, so a reused socket is rarely one the backend is closing. */
export const UPSTREAM_IDLE_MS = 4000;
/**
 * Request bodies held for retries at once, over all requests: a request whose body would go over
 * this streams instead (and is not retried), so buffering for retries stays bounded however many
 * requests are in flight.
 */
export const MAX_BUFFERED_BODY_BYTES = 64 * 1024 * 1024;
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT']);
/** The request could not be sent at all (refused by the client library): no backend failed, and no other backend would do better. */
const LOCAL_ERRORS = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);
/**
 * HTTP/1 connections the balancer answered with `Connection: close` (a 400, a 413). Node's parser
 * still hands over requests pipelined behind that one, but after a framing error they are exactly
 * what a smuggling attack would hide there, and RFC 9112 §9.6 says a server that sent close MUST NOT
 * process further requests on the connection: they are dropped unanswered and the socket closes.
 */
const closingSockets = new WeakSet<net.Socket>();

type Req = http.IncomingMessage | http2.Http2ServerRequest | FastRequest;
/**
 * What the proxy does with a response: the part of ServerResponse and Http2ServerResponse it uses,
 * which the fast path's FastResponse implements too.
 */
interface Res {
  readonly headersSent: boolean;
  readonly writableFinished: boolean;
  readonly socket: net.Socket | tls.TLSSocket | null;
  readonly stream?: unknown;
  writeHead(status: number, headers: http.OutgoingHttpHeaders): unknown;
  write(chunk: Buffer): boolean;
  end(): unknown;
  end(chunk: string | Buffer): unknown;
  cork(): void;
  uncork(): void;
  destroy(): void;
  on(event: 'close', fn: (this: Res) => void): unknown;
  once(event: 'drain', fn: () => void): unknown;
}

type Outcome =
  | { kind: 'done'; status: number; bytesOut: number; connectMs: number; upstreamMs: number }
  | { kind: 'retry'; reason: string; status?: number; code?: string; connectMs: number; replay?: Replay }
  | { kind: 'failed'; status: number; reason: string; connectMs: number }
  | { kind: 'aborted'; status: number; reason: string; connectMs: number };

/**
 * A 502/503 answer held back while a retry is decided: passed on as it was when no retry follows
 * (out of attempts or of retry budget), as nginx and HAProxy pass the last backend's answer on.
 */
interface Replay {
  status: number;
  headers: http.OutgoingHttpHeaders;
  body: Buffer;
}

/** The largest held-back 502/503 body; a longer one is dropped and the balancer answers with its own. */
export const MAX_REPLAY_BYTES = 64 * 1024;

/** Everything a request needs that lives longer than the request. */
export interface ProxyDeps {
  state: () => ProxyState;
  metrics: BalancerMetrics;
  logger: Logger;
}

export class L7Proxy {
  private readonly upstreams = new Map<Backend, Upstream>();
  /** Response and idle timeouts of the exchanges in flight, and the deadlines of bodies being read. */
  readonly timeouts = new ExchangeTimeouts();
  private closing = false;
  /** Bytes of request bodies held for retries now (at most MAX_BUFFERED_BODY_BYTES). */
  private buffered = 0;

  constructor(readonly deps: ProxyDeps) {}

  /** After this, new requests get 503 and no agent keeps sockets. */
  shutdown(): void {
    this.closing = true;
  }

  /** Request body bytes held for retries now (for tests and metrics). */
  get bufferedBodyBytes(): number {
    return this.buffered;
  }

  /** Reserves `bytes` of the shared body budget; false when it would go over MAX_BUFFERED_BODY_BYTES. */
  reserveBody(bytes: number): boolean {
    if (this.buffered + bytes > MAX_BUFFERED_BODY_BYTES) return false;
    this.buffered += bytes;
    return true;
  }

  releaseBody(bytes: number): void {
    this.buffered -= bytes;
  }

  /** Frees a removed backend's pooled connections. */
  dropAgent(b: Backend): void {
    const up = this.upstreams.get(b);
    this.upstreams.delete(b);
    void up?.pool.destroy().catch(() => undefined);
  }

  handle(req: Req, res: Res, proto: 'http' | 'https'): void {
    if (closingSockets.has(req.socket)) {
      this.deps.metrics.rejected.inc({ reason: 'after-close' });
      req.socket.destroySoon();
      return;
    }
    try {
      this.serve(req, res, proto);
    } catch (err) {
      this.unexpected(err, res);
    }
  }

  /** Anything thrown on the request path that is not an answer of its own: logged, and a 500 when nothing was sent yet. */
  unexpected(err: unknown, res: Res): void {
    this.deps.logger.error({ err }, 'unexpected error while proxying');
    if (!res.headersSent) this.reply(res, 500, 'internal error', 'ARCHLAB_INTERNAL');
    else res.destroy();
  }

  /**
   * Everything decided once per request (framing, limits, route, forwarding headers, stickiness),
   * then the attempts, run by a ProxyRequest. No closure is made per request on this path: the
   * request and each exchange with a backend are class instances whose methods are the callbacks.
   */
  private serve(req: Req, res: Res, proto: 'http' | 'https'): void {
    const t0 = performance.now();
    const state = this.deps.state();
    const { config } = state;
    const method = req.method ?? 'GET';
    const v = req.httpVersion;
    if (v !== '1.1' && v !== '1.0' && v !== '2.0') return this.refuse(req, res, 400, `unsupported HTTP version ${v}`, 'framing', t0);
    const framing = checkFraming(req.rawHeaders, v);
    if (!framing.ok) return this.refuse(req, res, 400, framing.reason, 'framing', t0);
    if (this.closing) return this.refuse(req, res, 503, 'shutting down', 'shutdown', t0);
    const cl = req.headers['content-length'];
    if (cl !== undefined && Number(cl) > config.limits.maxBodyBytes) {
      return this.refuse(req, res, 413, `body over ${config.limits.maxBodyBytes} bytes`, 'body-too-large', t0);
    }

    const host = hostOf(req);
    cookieRequest = req;
    cookieCache = undefined;
    const route = state.router.route({ host, path: req.url ?? '/', method, headers: req.headers, cookies: currentCookies });
    const rt = state.pools.get(route.pool)!;
    const fwd = forwardedHeaders(req.headers, {
      peerIp: req.socket.remoteAddress ?? '',
      proto,
      host,
      trusted: state.trusted,
      via: VIA,
      requestId: randomUUID,
    });
    const headers = fwd.headers;
    if (host !== undefined) headers.host = host;
    // node:http has answered a 100-continue expectation already (it sends 100 Continue itself when
    // nothing listens for 'checkContinue'): met at this hop, it is not forwarded (nginx does the
    // same), and undici refuses to send it.
    if (headers.expect !== undefined) delete headers.expect;

    const ctx = { clientIp: fwd.clientIp, hashKey: hashKeyOf(rt, req, route.path, fwd.clientIp, currentCookies) };
    let preferred: Backend | undefined;
    if (rt.sticky) {
      const i = rt.sticky.resolve(currentCookies()[rt.sticky.cookie], rt.pool.backends);
      if (i >= 0) preferred = rt.pool.backends[i];
    }

    cookieRequest = undefined;
    cookieCache = undefined;

    const retries = rt.pool.config.retries;
    const hasBody = requestHasBody(req);
    let plan = bodyPlan(hasBody, req.headers, Math.min(retries.maxBodyBytes, config.limits.maxBodyBytes));
    // Over the shared budget for held bodies: this one streams, like a body over the limit.
    if (plan.kind === 'buffer' && !this.reserveBody(plan.bytes)) plan = STREAM_BODY;
    const on = retryOn(method, req.headers, plan, retries.idempotencyKeyHeader);
    const attempts = on === 0 ? 1 : 1 + retries.attempts;
    rt.budget.recordRequest();
    const p = new ProxyRequest(this, req, res, proto, t0, config, rt, route.pool, route.path, headers, fwd.requestId, fwd.clientIp, ctx, preferred, hasBody, attempts, on);
    (res as ResWithRequest)[kProxyRequest] = p;
    // One listener for the whole request: a client that leaves while its request waits in the
    // queue is not forwarded once a slot frees, and one that leaves mid-exchange stops it.
    res.on('close', onClientClose);
    if (plan.kind === 'buffer') p.readBody(plan.bytes);
    else p.next();
  }

  /** The response's status and latency in the request counter and histogram. */
  record(pool: string, backend: Backend | undefined, status: number, seconds: number): void {
    const m = this.deps.metrics;
    const id = backend?.id ?? '-';
    m.requests.inc({ pool, backend: id, code: String(status) });
    m.latency.observe({ pool, backend: id }, seconds);
  }

  /**
   * The backend's transport (H1Upstream for plain HTTP, sending bodies through an undici Pool; the
   * Pool alone over TLS; keep-alive connections, at most maxConnections of them) and the response
   * and idle timeouts its exchanges run under, both fixed when it is first used. The
   * timeouts are ExchangeTimeouts' rather than undici's headersTimeout and bodyTimeout, which
   * allocate two timer objects per request.
   */
  upstreamFor(b: Backend, config: BalancerConfig): Upstream {
    let up = this.upstreams.get(b);
    if (!up) {
      const { connectMs, responseMs, idleMs } = config.timeouts;
      const undici = new UndiciPool(`${b.tls ? 'https' : 'http'}://${formatHostPort(b.host, b.port)}`, {
        connections: b.maxConnections,
        pipelining: 1,
        keepAliveTimeout: UPSTREAM_IDLE_MS,
        keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
        headersTimeout: 0,
        bodyTimeout: 0,
        connect: { timeout: connectMs, ...(b.tls ? { rejectUnauthorized: false } : {}) },
      });
      // Plain-HTTP backends: requests without a body on the balancer's own connections (h1/upstream.ts).
      const pool: Transport = b.tls
        ? undici
        : new H1Upstream({ host: b.host, port: b.port, connectMs, idleMs: UPSTREAM_IDLE_MS, maxIdle: b.maxConnections, maxHeadBytes: MAX_RESPONSE_HEAD_BYTES, fallback: undici });
      up = { pool, responseMs, idleMs };
      this.upstreams.set(b, up);
    }
    return up;
  }

  /** WebSocket and other HTTP/1.1 upgrades: pick a backend, replay the request, then splice the sockets. */
  upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, proto: 'http' | 'https'): void {
    if (closingSockets.has(socket)) {
      socket.destroySoon();
      return;
    }
    const state = this.deps.state();
    const host = hostOf(req);
    let cookieCache: Record<string, string> | undefined;
    const cookies = (): Record<string, string> => (cookieCache ??= parseCookies(req.headers.cookie));
    const route = state.router.route({ host, path: req.url ?? '/', method: req.method ?? 'GET', headers: req.headers, cookies });
    const rt = state.pools.get(route.pool)!;
    const fwd = forwardedHeaders(req.headers, { peerIp: req.socket.remoteAddress ?? '', proto, host, trusted: state.trusted, via: VIA, requestId: randomUUID });
    const headers = upgradeHeaders(req.headers, fwd.headers);
    if (host !== undefined) headers.host = host;
    const ctx = { clientIp: fwd.clientIp, hashKey: hashKeyOf(rt, req, route.path, fwd.clientIp, cookies) };
    socket.on('error', () => socket.destroy());
    let b: Backend;
    try {
      const got = rt.pool.acquire(ctx);
      if (got instanceof Promise) {
        got.then(
          (x) => this.splice(req, socket, head, x, rt, route.path, headers),
          () => rawReply(socket, 503, 'no backend'),
        );
        return;
      }
      b = got;
    } catch {
      return rawReply(socket, 503, 'no backend');
    }
    this.splice(req, socket, head, b, rt, route.path, headers);
  }

  private splice(req: http.IncomingMessage, socket: net.Socket, head: Buffer, b: Backend, rt: PoolRuntime, path: string, headers: Record<string, string | string[]>): void {
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        rt.pool.release(b);
      }
    };
    const up = (b.tls ? https : http).request({ host: b.host, port: b.port, method: req.method, path, headers, agent: false, setHost: false, timeout: this.deps.state().config.timeouts.connectMs });
    up.on('timeout', () => up.destroy());
    up.on('upgrade', (upRes: http.IncomingMessage, upSocket: net.Socket, upHead: Buffer) => {
      const lines = [`HTTP/1.1 ${upRes.statusCode ?? 101} ${upRes.statusMessage ?? 'Switching Protocols'}`];
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`);
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      const idle = this.deps.state().config.timeouts.idleMs;
      upSocket.setTimeout(idle, () => upSocket.destroy());
      socket.setTimeout(idle, () => socket.destroy());
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      const close = (): void => {
        upSocket.destroy();
        socket.destroy();
        release();
      };
      upSocket.on('close', close);
      socket.on('close', close);
      upSocket.on('error', close);
    });
    up.on('response', (upRes: http.IncomingMessage) => {
      // The backend declined the upgrade: pass its answer on and close.
      rawReply(socket, upRes.statusCode ?? 502, upRes.statusMessage ?? 'upgrade declined');
      upRes.resume();
      release();
    });
    up.on('error', () => {
      rt.outliers?.recordFailure(b, 'connect');
      rawReply(socket, 502, 'backend unreachable');
      release();
    });
    up.end();
  }

  private refuse(req: Req, res: Res, status: number, reason: string, what: string, t0: number): void {
    this.deps.metrics.rejected.inc({ reason: what });
    this.reply(res, status, reason, status === 400 ? 'ARCHLAB_BAD_REQUEST' : status === 413 ? 'ARCHLAB_BODY_TOO_LARGE' : 'ARCHLAB_NO_BACKEND', status === 400 || status === 413 ? { connection: 'close' } : undefined);
    this.logAccess(req, '', req.socket.remoteAddress ?? '', '-', undefined, status, t0, 0, 0, 0, 0);
  }

  /** A response of the balancer's own: plain text, with the error code in a header for machines. */
  reply(res: Res, status: number, message: string, code: string, extra?: Record<string, string>): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${status} ${http.STATUS_CODES[status] ?? ''}: ${message}\n`;
    const h: Record<string, string | number> = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-archlab-error': code, via: VIA, ...extra };
    if ((res as http2.Http2ServerResponse).stream !== undefined) delete h.connection;
    else if (h.connection === 'close' && res.socket) closingSockets.add(res.socket as net.Socket);
    res.writeHead(status, h);
    res.end(body);
  }

  logAccess(
    req: Req,
    requestId: string,
    client: string,
    pool: string,
    backend: string | undefined,
    status: number,
    t0: number,
    queueMs: number,
    connectMs: number,
    upstreamMs: number,
    attempts: number,
    bytes = 0,
  ): void {
    if (!this.deps.state().config.accessLog) return;
    this.deps.logger.info(
      {
        type: 'access',
        requestId,
        client,
        method: req.method,
        path: req.url,
        httpVersion: req.httpVersion,
        pool,
        backend: backend ?? null,
        status,
        bytesIn: Number(req.headers['content-length'] ?? 0),
        bytesOut: bytes,
        attempts,
        timings: { queueMs: round(queueMs), connectMs: round(connectMs), upstreamMs: round(upstreamMs), totalMs: round(performance.now() - t0) },
      },
      'request',
    );
  }
}

/** What an exchange is sent through: undici's Pool, or H1Upstream (which sends bodies through one). */
type Transport = Pick<Dispatcher, 'dispatch' | 'destroy'>;

/** Longest response head taken from a backend (undici's and Node's default limit is 16 KiB). */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

/** A backend's connection pool and the timeouts its exchanges run under. */
interface Upstream {
  pool: Transport;
  /** Response headers must arrive within this after the request was sent (timeouts.response); 0 = none. */
  responseMs: number;
  /** The response body may pause for at most this between bytes (timeouts.idle); 0 = none. */
  idleMs: number;
}

/** How often ExchangeTimeouts checks the deadlines, ms: the timeouts' resolution (undici's own timers tick every 499 ms). */
export const TIMEOUT_TICK_MS = 100;

/** Something with a deadline that ExchangeTimeouts sweeps: an Exchange, a BodyReader. */
export interface Deadlined {
  /** performance.now() after which timedOut() is called. */
  deadline: number;
  /** The deadline passed: act on it and return true, or false when it does not apply now (check again later). */
  timedOut(): boolean;
  /** Its index in ExchangeTimeouts' list while armed, -1 when not: ExchangeTimeouts' own field. */
  armedAt: number;
}

/**
 * The response and idle timeouts of every exchange in flight (and the deadlines of request bodies
 * being read for retries), checked by one timer every TIMEOUT_TICK_MS while any is armed. An
 * exchange keeps its deadline in a field that it moves on as bytes arrive; arming is a push onto an
 * array and disarming a swap with the last element, each item keeping its own index. (undici's
 * headersTimeout and bodyTimeout create two timer objects per request, kept until undici's next
 * half-second tick: garbage that outlives the young generation and costs major collections under
 * load.)
 *
 * Not a Set: a Set that takes an add and a delete per request rehashes into a new table every few
 * dozen requests, and V8 links each old table to its successor (for live iterators). Once one
 * table has been promoted to the old generation (it lives through an idle minute), every later
 * table, and every exchange they hold, is kept alive by the one before it through each young
 * collection and promoted in turn, until a full collection; the chain starts again from the
 * current table, by then old as well. Measured in docs/balancer.md: scavenges of 6 ms instead of
 * 0.8 and 1.5 MB promoted by each, after the balancer had been idle for a minute and a half.
 */
export class ExchangeTimeouts {
  private readonly armed: Deadlined[] = [];
  private timer: NodeJS.Timeout | undefined;

  arm(ex: Deadlined): void {
    if (ex.armedAt >= 0) return;
    ex.armedAt = this.armed.length;
    this.armed.push(ex);
    if (this.timer === undefined) this.schedule();
  }

  disarm(ex: Deadlined): void {
    const i = ex.armedAt;
    if (i < 0) return;
    ex.armedAt = -1;
    const last = this.armed.pop()!;
    if (last !== ex) {
      this.armed[i] = last;
      last.armedAt = i;
    }
  }

  /** Exchanges armed now (for tests). */
  get size(): number {
    return this.armed.length;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.tick(), TIMEOUT_TICK_MS);
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    const now = performance.now();
    // A timed-out item leaves its slot to the last one, which is looked at next. timedOut() may also
    // disarm others (an exchange that finishes) or arm new ones (a retry's next exchange): an item
    // moved into a slot already passed waits for the next tick.
    for (let i = 0; i < this.armed.length; ) {
      const ex = this.armed[i]!;
      if (ex.deadline <= now && ex.timedOut()) this.disarm(ex);
      else i++;
    }
    if (this.armed.length > 0) this.schedule();
  }
}

/**
 * Cookie parsing for the request serve() is deciding on, at most once per request and only when a
 * route, a hash key or stickiness asks. serve() is synchronous up to the first attempt, so one
 * module-level slot is enough and no closure is made per request.
 */
let cookieRequest: Req | undefined;
let cookieCache: Record<string, string> | undefined;
function currentCookies(): Record<string, string> {
  return (cookieCache ??= parseCookies(cookieRequest?.headers.cookie));
}

const kProxyRequest = Symbol('archlab.proxyRequest');
type ResWithRequest = Res & { [kProxyRequest]?: ProxyRequest };

/** The response's 'close' listener, shared by every request (`this` is the response). */
function onClientClose(this: Res): void {
  (this as ResWithRequest)[kProxyRequest]?.clientClosed();
}

/**
 * One client request after routing: reads its body whole first when it is to be replayable
 * (replay.ts), acquires a backend, runs an Exchange with it, retries elsewhere within the budget
 * when `retryOn` allows it for the failure met, then records and logs the outcome. Attempts run one
 * after the other; an acquire that has to wait in the pool's queue continues when it resolves.
 */
class ProxyRequest implements BodySink {
  private readonly tried = new Set<Backend>();
  private attempt = 0;
  private last: Outcome | undefined;
  private backend: Backend | undefined;
  private queueMs = 0;
  private clientGone = false;
  /** The exchange in flight, if any. */
  private exchange: Exchange | undefined;
  /** The whole request body, once read (replayable requests with a body); sent on every attempt. */
  body: Buffer | undefined;
  /** The body being read before the first attempt. */
  private reader: BodyReader | undefined;
  /** Bytes of the proxy's shared body budget this request holds (released when the response closes). */
  private reserved = 0;

  constructor(
    private readonly proxy: L7Proxy,
    readonly req: Req,
    readonly res: Res,
    readonly proto: 'http' | 'https',
    private readonly t0: number,
    readonly config: BalancerConfig,
    readonly rt: PoolRuntime,
    private readonly pool: string,
    readonly path: string,
    readonly headers: Record<string, string | string[]>,
    private readonly requestId: string,
    private readonly clientIp: string,
    private readonly ctx: PickContext,
    private readonly preferred: Backend | undefined,
    readonly hasBody: boolean,
    private readonly attempts: number,
    /** RETRY_ON_* bits: the failures after which this request may go to another backend. */
    readonly retryOn: number,
  ) {}

  /** The response closed (finished, or the client left): stop what is in flight, free the body. */
  clientClosed(): void {
    this.clientGone = true;
    this.reader?.abort();
    this.exchange?.clientClosed();
    if (this.reserved > 0) {
      this.proxy.releaseBody(this.reserved);
      this.reserved = 0;
    }
  }

  /**
   * Reads the whole body (`bytes` declared, already reserved from the proxy's budget) before the
   * first attempt, within what is left of timeouts.request; then the first attempt starts.
   */
  readBody(bytes: number): void {
    this.reserved = bytes;
    const reader = new BodyReader(this.req as Readable, bytes, this.t0 + this.config.timeouts.requestMs, this);
    this.reader = reader;
    this.proxy.timeouts.arm(reader);
  }

  bodyRead(body: Buffer): void {
    this.endReading();
    this.body = body;
    this.guard(() => this.next());
  }

  bodyFailed(why: BodyFailure): void {
    this.endReading();
    if (why === 'aborted' || this.clientGone) {
      this.proxy.logAccess(this.req, this.requestId, this.clientIp, this.pool, undefined, 499, this.t0, 0, 0, 0, 0);
      return;
    }
    const timeout = why === 'timeout';
    this.proxy.deps.metrics.rejected.inc({ reason: timeout ? 'body-timeout' : 'body-length' });
    const message = timeout ? `request body not received within ${this.config.timeouts.requestMs} ms` : `request body ${why === 'too-long' ? 'longer' : 'shorter'} than its Content-Length`;
    const status = timeout ? 408 : 400;
    this.proxy.reply(this.res, status, message, timeout ? 'ARCHLAB_BODY_TIMEOUT' : 'ARCHLAB_BAD_REQUEST', { connection: 'close' });
    this.proxy.logAccess(this.req, this.requestId, this.clientIp, this.pool, undefined, status, this.t0, 0, 0, 0, 0);
  }

  private endReading(): void {
    if (this.reader !== undefined) this.proxy.timeouts.disarm(this.reader);
    this.reader = undefined;
  }

  /** Starts attempt number `this.attempt`: acquire a backend (maybe waiting in the queue), then forward. */
  next(): void {
    const q0 = performance.now();
    let got: Promise<Backend> | Backend;
    try {
      got = this.rt.pool.acquire(this.ctx, this.tried, this.attempt === 0 ? this.preferred : undefined);
    } catch (err) {
      if (!(err instanceof BalancerError)) throw err;
      return this.noBackend(err, q0);
    }
    if (got instanceof Promise) {
      got.then(
        (b) => this.guard(() => this.acquired(b, q0)),
        (err: unknown) => this.guard(() => {
          if (!(err instanceof BalancerError)) throw err;
          this.noBackend(err, q0);
        }),
      );
      return;
    }
    this.acquired(got, q0);
  }

  /** Runs `fn` outside serve()'s try: anything unexpected it throws is answered like there. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.proxy.unexpected(err, this.res);
    }
  }

  private noBackend(err: BalancerError, q0: number): void {
    if (this.last?.kind === 'retry') return this.complete(); // answer with what the last backend said
    const retryAfter = Math.max(1, Math.ceil(this.rt.pool.config.queue.timeoutMs / 1000));
    this.proxy.reply(this.res, 503, err.message, err.code, { 'retry-after': String(retryAfter) });
    this.proxy.logAccess(this.req, this.requestId, this.clientIp, this.pool, undefined, 503, this.t0, performance.now() - q0, 0, 0, this.attempt);
  }

  private acquired(b: Backend, q0: number): void {
    this.backend = b;
    this.queueMs += performance.now() - q0;
    if (this.clientGone) {
      this.rt.pool.release(b);
      this.proxy.logAccess(this.req, this.requestId, this.clientIp, this.pool, b.id, 499, this.t0, this.queueMs, 0, 0, this.attempt);
      return;
    }
    this.tried.add(b);
    const canRetry = this.attempt + 1 < this.attempts;
    const sticky = this.rt.sticky;
    const setCookie = sticky && b !== this.preferred ? sticky.setCookieHeader(b.id, this.proto === 'https') : undefined;
    const ex = new Exchange(this, this.proxy, b, canRetry ? this.retryOn : 0, setCookie);
    this.exchange = ex;
    ex.start(this.proxy.upstreamFor(b, this.config));
  }

  /** The exchange with `this.backend` is completely over (called once per exchange). */
  settled(o: Outcome): void {
    this.exchange = undefined;
    this.rt.pool.release(this.backend!);
    this.last = o;
    if (o.kind === 'retry' && this.attempt + 1 < this.attempts && this.rt.budget.tryAcquire()) {
      this.proxy.deps.metrics.retries.inc({ pool: this.pool });
      this.attempt++;
      // The next attempt starts after the failed exchange's callbacks have returned.
      queueMicrotask(() => this.guard(() => this.next()));
      return;
    }
    this.complete();
  }

  /** Writes a held-back answer; false (nothing written) when its headers cannot be forwarded. */
  private passOn(r: Replay): boolean {
    try {
      this.res.writeHead(r.status, r.headers);
    } catch (err) {
      this.proxy.deps.logger.warn({ err, backend: this.backend?.id }, 'backend sent headers that cannot be forwarded');
      return false;
    }
    this.res.end(r.body);
    return true;
  }

  private complete(): void {
    let last = this.last;
    const backend = this.backend;
    if (last?.kind === 'retry') {
      // Out of attempts or budget: pass on what the last backend said, or say it when it sent no answer.
      const status = last.status ?? 502;
      if (last.replay !== undefined && !this.res.headersSent && this.passOn(last.replay)) {
        // passed on as the backend sent it
      } else this.proxy.reply(this.res, status, `upstream ${backend?.id}: ${last.reason}`, last.code ?? (status === 502 ? 'ARCHLAB_UPSTREAM_CONNECT' : 'ARCHLAB_UPSTREAM_STATUS'));
      last = { kind: 'failed', status, reason: last.reason, connectMs: last.connectMs };
    }
    const status = last?.kind === 'done' ? last.status : (last?.status ?? 502);
    const upstreamMs = last?.kind === 'done' ? last.upstreamMs : 0;
    this.proxy.record(this.pool, backend, status, (performance.now() - this.t0) / 1000);
    this.proxy.logAccess(this.req, this.requestId, this.clientIp, this.pool, backend?.id, status, this.t0, this.queueMs, last?.connectMs ?? 0, upstreamMs, this.tried.size, last?.kind === 'done' ? last.bytesOut : 0);
  }
}

/**
 * One exchange with one backend through its transport (H1Upstream or undici's Pool, both driven
 * through undici's dispatch-handler interface), with streaming both ways and backpressure. The instance is
 * undici's dispatch handler; it tells its ProxyRequest once when it is completely over: the
 * response finished, or failed, or the request is to be retried elsewhere.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  private readonly t0 = performance.now();
  private done = false;
  private startedAt = 0;
  private responded = false;
  private discard = false;
  /** A 502/503 answer held while a retry is decided (at most MAX_REPLAY_BYTES of body). */
  private held: { status: number; headers: http.OutgoingHttpHeaders; body: Buffer[] } | undefined;
  private heldBytes = 0;
  private status = 0;
  private bytesOut = 0;
  private tooLarge = false;
  private controller: Dispatcher.DispatchController | undefined;
  private clientGone = false;
  private readonly res: Res;
  private readonly rt: PoolRuntime;
  /** performance.now() after which the exchange times out (ExchangeTimeouts); 0 = no timeout armed. */
  deadline = 0;
  /** Its slot in the proxy's ExchangeTimeouts while armed (-1: not armed). */
  armedAt = -1;
  /** Waiting for response headers (responseMs) or, after them, for body bytes (idleMs). */
  private phase: 'headers' | 'body' = 'headers';
  /** Reading from the backend is paused by backpressure: the idle timeout does not run. */
  private paused = false;
  private responseMs = 0;
  private idleMs = 0;

  constructor(
    private readonly owner: ProxyRequest,
    private readonly proxy: L7Proxy,
    private readonly b: Backend,
    /** RETRY_ON_* bits for this attempt: 0 when it is the last one allowed. */
    private readonly retryOn: number,
    private readonly setCookie: string | undefined,
  ) {
    this.res = owner.res;
    this.rt = owner.rt;
    b.requests++;
  }

  start(upstream: Upstream): void {
    const { req } = this.owner;
    this.responseMs = upstream.responseMs;
    this.idleMs = upstream.idleMs;
    // The body read whole before the first attempt (sent again on a retry), or streamed through.
    // A FastRequest never has a body (the fast path takes only GET and HEAD without framing fields).
    let body: Readable | Buffer | null = this.owner.body ?? null;
    if (body === null && this.owner.hasBody) body = this.countedBody(req as Exclude<Req, FastRequest>, this.owner.config.limits.maxBodyBytes);
    upstream.pool.dispatch({ path: this.owner.path, method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers: this.owner.headers, body }, this);
  }

  /**
   * Called by ExchangeTimeouts once `deadline` has passed: abort with undici's own timeout errors,
   * which onResponseError answers (504). Returns false when the deadline does not apply now (the
   * response body is paused by a slow client) and should be checked again.
   */
  timedOut(): boolean {
    if (this.done || this.controller === undefined) return true;
    if (this.phase === 'body' && this.paused) return false;
    this.controller.abort(this.phase === 'headers' ? new undiciErrors.HeadersTimeoutError() : new undiciErrors.BodyTimeoutError());
    return true;
  }

  /** The request body, passed through with a running count that fails the exchange past `max` bytes. */
  private countedBody(req: Exclude<Req, FastRequest>, max: number): Readable {
    let bytesIn = 0;
    const counted = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        bytesIn += chunk.length;
        // The response timeout counts from the end of the upload: each chunk on its way restarts it.
        if (this.phase === 'headers' && this.deadline !== 0) this.deadline = performance.now() + this.responseMs;
        if (bytesIn > max) {
          this.tooLarge = true;
          cb(new BalancerError('ARCHLAB_BAD_REQUEST', `body over ${max} bytes`));
        } else cb(null, chunk);
      },
    });
    req.on('error', (err) => counted.destroy(err));
    req.pipe(counted);
    return counted;
  }

  /** The client went away: stop the upstream exchange too. */
  clientClosed(): void {
    if (this.done || this.res.writableFinished) return;
    this.clientGone = true;
    this.controller?.abort(new BalancerError('ARCHLAB_UPSTREAM_RESET', 'client closed'));
    this.finish({ kind: 'aborted', status: 499, reason: 'client closed', connectMs: this.connectMs() });
  }

  private finish(o: Outcome): void {
    if (this.done) return;
    this.done = true;
    if (this.deadline !== 0) this.proxy.timeouts.disarm(this);
    this.owner.settled(o);
  }

  private connectMs(): number {
    return this.startedAt ? this.startedAt - this.t0 : performance.now() - this.t0;
  }

  private fail(reason: string, kind: 'connect' | 'timeout' | 'reset'): void {
    const { b, rt, res } = this;
    b.failures++;
    rt.outliers?.recordFailure(b, kind);
    rt.pool.picker.observe?.(b, performance.now() - this.t0, false);
    if (this.responded || res.headersSent) {
      res.destroy();
      return this.finish({ kind: 'aborted', status: 502, reason, connectMs: this.connectMs() });
    }
    // A replayable request that never reached the backend can go elsewhere; so can one whose
    // connection broke before any response byte, when its method is idempotent or it carries an
    // idempotency key (retryOn says which, replay.ts): a backend killed mid-request, or a pooled
    // keep-alive socket it had just closed (RFC 9110 §9.2.2; nginx's proxy_next_upstream error,
    // Envoy's retry_on reset).
    if ((kind === 'connect' && (this.retryOn & RETRY_ON_CONNECT) !== 0) || (kind === 'reset' && (this.retryOn & RETRY_ON_RESET) !== 0)) {
      return this.finish({ kind: 'retry', reason, code: kind === 'connect' ? 'ARCHLAB_UPSTREAM_CONNECT' : 'ARCHLAB_UPSTREAM_RESET', connectMs: this.connectMs() });
    }
    const st = kind === 'timeout' ? 504 : 502;
    this.proxy.reply(res, st, `upstream ${b.id}: ${reason}`, kind === 'timeout' ? 'ARCHLAB_UPSTREAM_TIMEOUT' : kind === 'connect' ? 'ARCHLAB_UPSTREAM_CONNECT' : 'ARCHLAB_UPSTREAM_RESET');
    this.finish({ kind: 'failed', status: st, reason, connectMs: this.connectMs() });
  }

  onRequestStart(c: Dispatcher.DispatchController): void {
    this.controller = c;
    this.startedAt = performance.now();
    if (this.clientGone) return c.abort(new BalancerError('ARCHLAB_UPSTREAM_RESET', 'client closed'));
    if (this.responseMs > 0) {
      this.deadline = this.startedAt + this.responseMs;
      this.proxy.timeouts.arm(this);
    }
  }

  onResponseStart(c: Dispatcher.DispatchController, statusCode: number, upHeaders: http.IncomingHttpHeaders): void {
    if (statusCode < 200 || this.done) return;
    const { b, rt, res } = this;
    this.status = statusCode;
    this.phase = 'body';
    if (this.idleMs > 0) {
      if (this.deadline === 0) this.proxy.timeouts.arm(this);
      this.deadline = performance.now() + this.idleMs;
    } else if (this.deadline !== 0) {
      this.proxy.timeouts.disarm(this);
      this.deadline = 0;
    }
    const bad = statusCode >= 500;
    rt.pool.picker.observe?.(b, performance.now() - this.t0, !bad);
    if (bad) {
      b.failures++;
      rt.outliers?.recordFailure(b, 'status-5xx');
    } else rt.outliers?.recordSuccess(b);
    const out = responseHeaders(upHeaders, VIA);
    if ((this.retryOn & RETRY_ON_STATUS) !== 0 && (statusCode === 502 || statusCode === 503)) {
      // Read the body to keep the connection, then retry elsewhere; hold the answer (bounded) in
      // case no retry follows.
      this.discard = true;
      this.held = { status: statusCode, headers: out, body: [] };
      return;
    }
    if (this.setCookie) out['set-cookie'] = appendHeader(out['set-cookie'], this.setCookie);
    try {
      res.writeHead(statusCode, out);
    } catch (err) {
      this.proxy.deps.logger.warn({ err, backend: b.id }, 'backend sent headers that cannot be forwarded');
      c.abort(new BalancerError('ARCHLAB_UPSTREAM_RESET', 'invalid response headers'));
      return;
    }
    this.responded = true;
    // Headers, a small body and the end usually arrive in one tick: send them in one write.
    res.cork();
    process.nextTick(uncork, res);
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.deadline !== 0) this.deadline = performance.now() + this.idleMs;
    if (this.discard) {
      const held = this.held;
      if (held !== undefined) {
        this.heldBytes += chunk.length;
        if (this.heldBytes > MAX_REPLAY_BYTES) this.held = undefined;
        else held.body.push(Buffer.from(chunk));
      }
      return;
    }
    if (this.done) return;
    this.bytesOut += chunk.length;
    if (!(this.res as http.ServerResponse).write(chunk)) {
      c.pause();
      this.paused = true;
      this.res.once('drain', () => {
        this.paused = false;
        if (this.deadline !== 0) this.deadline = performance.now() + this.idleMs;
        c.resume();
      });
    }
  }

  onResponseEnd(): void {
    if (this.done) return;
    if (this.discard) {
      const h = this.held;
      const replay = h === undefined ? undefined : { status: h.status, headers: h.headers, body: Buffer.concat(h.body) };
      return this.finish({ kind: 'retry', reason: `answered ${this.status}`, status: this.status, connectMs: this.connectMs(), ...(replay ? { replay } : {}) });
    }
    if (!this.responded) return this.fail('invalid response headers', 'reset');
    this.res.end();
    this.finish({ kind: 'done', status: this.status, bytesOut: this.bytesOut, connectMs: this.connectMs(), upstreamMs: performance.now() - this.t0 });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error & { code?: string }): void {
    if (this.done) return;
    const { config } = this.owner;
    if (this.tooLarge) {
      const max = config.limits.maxBodyBytes;
      if (!this.res.headersSent) this.proxy.reply(this.res, 413, `body over ${max} bytes`, 'ARCHLAB_BODY_TOO_LARGE', { connection: 'close' });
      else this.res.destroy();
      return this.finish({ kind: 'failed', status: 413, reason: 'body too large', connectMs: 0 });
    }
    const code = err.code ?? '';
    if (LOCAL_ERRORS.has(code)) {
      this.proxy.deps.logger.warn({ err, backend: this.b.id }, 'request could not be sent to a backend');
      this.proxy.reply(this.res, 502, `request not sendable: ${err.message}`, 'ARCHLAB_UPSTREAM_REQUEST');
      return this.finish({ kind: 'failed', status: 502, reason: `${code}: ${err.message}`, connectMs: this.connectMs() });
    }
    if (code === 'UND_ERR_HEADERS_TIMEOUT') return this.fail(`no response within ${config.timeouts.responseMs} ms`, 'timeout');
    if (code === 'UND_ERR_BODY_TIMEOUT') return this.fail(`no bytes for ${config.timeouts.idleMs} ms`, 'timeout');
    if (!this.startedAt || CONNECT_ERRORS.has(code) || code === 'UND_ERR_CONNECT_TIMEOUT') return this.fail(`${code || 'error'}: ${err.message}`, 'connect');
    this.fail(`${code || 'error'}: ${err.message}`, 'reset');
  }
}

function uncork(res: Res): void {
  res.uncork();
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function hostOf(req: Req): string | undefined {
  const h = req.headers.host ?? (req.headers[':authority'] as string | undefined);
  return typeof h === 'string' ? h : undefined;
}

function requestHasBody(req: Req): boolean {
  const stream = (req as http2.Http2ServerRequest).stream as http2.ServerHttp2Stream | undefined;
  if (stream !== undefined) return !stream.endAfterHeaders;
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const cl = req.headers['content-length'];
  // HTTP/1.1 without Content-Length or Transfer-Encoding has no body, whatever the method.
  return cl !== undefined && cl !== '0';
}

function hashKeyOf(rt: PoolRuntime, req: Req, path: string, clientIp: string, cookies: () => Record<string, string>): string | undefined {
  const key = rt.pool.config.hashKey;
  if (key === 'client-ip') return clientIp;
  if (key === 'path') return path.split('?')[0];
  if (key.startsWith('header:')) {
    const v = req.headers[key.slice(7).toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  }
  return cookies()[key.slice(7)];
}

function appendHeader(existing: string | string[] | undefined, value: string): string[] {
  if (existing === undefined) return [value];
  return Array.isArray(existing) ? [...existing, value] : [existing, value];
}


function rawReply(socket: net.Socket, status: number, message: string): void {
  if (socket.destroyed) return;
  const body = `${status} ${message}\n`;
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}
