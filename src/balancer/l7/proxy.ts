/**
 * The HTTP/1.1 and HTTP/2 reverse proxy: route, pick, forward with streaming and backpressure,
 * retry idempotent requests elsewhere within a budget, and answer every failure with the right status.
 * Pure decisions (routing, picking, headers, stickiness, ejection) live in their own modules; this
 * file is the shell that moves bytes.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type * as http2 from 'node:http2';
import * as https from 'node:https';
import type * as net from 'node:net';
import { Transform, type Readable } from 'node:stream';
import { Pool as UndiciPool, type Dispatcher } from 'undici';
import { formatHostPort } from '../../core/net.js';
import type { Logger } from 'pino';
import type { Backend } from '../backend.js';
import type { BalancerConfig } from '../config.js';
import { BalancerError } from '../errors.js';
import type { BalancerMetrics } from '../metrics.js';
import type { PoolRuntime, ProxyState } from '../runtime.js';
import { parseCookies } from './cookies.js';
import { checkFraming } from './framing.js';
import { forwardedHeaders, responseHeaders, upgradeHeaders } from './headers.js';

export const VIA = '1.1 archlab';
/** Idle upstream keep-alive sockets are closed after this, below Node's default 5 s server keep-alive, so a reused socket is rarely one the backend is closing. */
export const UPSTREAM_IDLE_MS = 4000;
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT']);
/**
 * HTTP/1 connections the balancer answered with `Connection: close` (a 400, a 413). Node's parser
 * still hands over requests pipelined behind that one, but after a framing error they are exactly
 * what a smuggling attack would hide there, and RFC 9112 §9.6 says a server that sent close MUST NOT
 * process further requests on the connection: they are dropped unanswered and the socket closes.
 */
const closingSockets = new WeakSet<net.Socket>();

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

type Outcome =
  | { kind: 'done'; status: number; bytesOut: number; connectMs: number; upstreamMs: number }
  | { kind: 'retry'; reason: string; status?: number; code?: string; connectMs: number }
  | { kind: 'failed'; status: number; reason: string; connectMs: number }
  | { kind: 'aborted'; status: number; reason: string; connectMs: number };

/** Everything a request needs that lives longer than the request. */
export interface ProxyDeps {
  state: () => ProxyState;
  metrics: BalancerMetrics;
  logger: Logger;
}

export class L7Proxy {
  private readonly upstreams = new Map<Backend, UndiciPool>();
  private closing = false;

  constructor(private readonly deps: ProxyDeps) {}

  /** After this, new requests get 503 and no agent keeps sockets. */
  shutdown(): void {
    this.closing = true;
  }

  /** Frees a removed backend's pooled connections. */
  dropAgent(b: Backend): void {
    const pool = this.upstreams.get(b);
    this.upstreams.delete(b);
    void pool?.destroy().catch(() => undefined);
  }

  handle(req: Req, res: Res, proto: 'http' | 'https'): void {
    if (closingSockets.has(req.socket)) {
      this.deps.metrics.rejected.inc({ reason: 'after-close' });
      req.socket.destroySoon();
      return;
    }
    this.serve(req, res, proto).catch((err: unknown) => {
      this.deps.logger.error({ err }, 'unexpected error while proxying');
      if (!res.headersSent) this.reply(res, 500, 'internal error', 'ARCHLAB_INTERNAL');
      else res.destroy();
    });
  }

  private async serve(req: Req, res: Res, proto: 'http' | 'https'): Promise<void> {
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
    let cookieCache: Record<string, string> | undefined;
    const cookies = (): Record<string, string> => (cookieCache ??= parseCookies(req.headers.cookie));
    const route = state.router.route({ host, path: req.url ?? '/', method, headers: req.headers, cookies });
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

    const ctx = { clientIp: fwd.clientIp, hashKey: hashKeyOf(rt, req, route.path, fwd.clientIp, cookies) };
    let preferred: Backend | undefined;
    if (rt.sticky) {
      const i = rt.sticky.resolve(cookies()[rt.sticky.cookie], rt.pool.backends);
      if (i >= 0) preferred = rt.pool.backends[i];
    }

    const hasBody = requestHasBody(req);
    const retryable = IDEMPOTENT.has(method) && !hasBody;
    const attempts = retryable ? 1 + rt.pool.config.retries.attempts : 1;
    rt.budget.recordRequest();
    const tried = new Set<Backend>();
    let last: Outcome | undefined;
    let backend: Backend | undefined;
    let queueMs = 0;
    // A client that leaves while its request waits in the queue is not forwarded once a slot frees.
    let clientGone = false;
    res.once('close', () => {
      clientGone = true;
    });
    for (let attempt = 0; attempt < attempts; attempt++) {
      const q0 = performance.now();
      try {
        const got = rt.pool.acquire(ctx, tried, attempt === 0 ? preferred : undefined);
        backend = got instanceof Promise ? await got : got;
      } catch (err) {
        if (!(err instanceof BalancerError)) throw err;
        if (last?.kind === 'retry') break; // answer with what the last backend said
        const retryAfter = Math.max(1, Math.ceil(rt.pool.config.queue.timeoutMs / 1000));
        this.reply(res, 503, err.message, err.code, { 'retry-after': String(retryAfter) });
        this.logAccess(req, fwd.requestId, fwd.clientIp, route.pool, undefined, 503, t0, performance.now() - q0, 0, 0, attempt);
        return;
      }
      queueMs += performance.now() - q0;
      if (clientGone) {
        rt.pool.release(backend);
        this.logAccess(req, fwd.requestId, fwd.clientIp, route.pool, backend.id, 499, t0, queueMs, 0, 0, attempt);
        return;
      }
      tried.add(backend);
      const canRetry = attempt + 1 < attempts;
      const setCookie = rt.sticky && backend !== preferred ? rt.sticky.setCookieHeader(backend.id, proto === 'https') : undefined;
      try {
        last = await this.forward(req, res, backend, rt, route.path, headers, hasBody, canRetry, setCookie, config);
      } finally {
        rt.pool.release(backend);
      }
      if (last.kind !== 'retry') break;
      if (!rt.budget.tryAcquire()) break;
      this.deps.metrics.retries.inc({ pool: route.pool });
    }
    if (last?.kind === 'retry') {
      // Out of attempts or budget: say what the last backend said.
      const status = last.status ?? 502;
      this.reply(res, status, `upstream ${backend?.id}: ${last.reason}`, last.code ?? (status === 502 ? 'ARCHLAB_UPSTREAM_CONNECT' : 'ARCHLAB_UPSTREAM_STATUS'));
      last = { kind: 'failed', status, reason: last.reason, connectMs: last.connectMs };
    }
    const status = last?.kind === 'done' ? last.status : (last?.status ?? 502);
    const upstreamMs = last?.kind === 'done' ? last.upstreamMs : 0;
    this.deps.metrics.requests.inc({ pool: route.pool, backend: backend?.id ?? '-', code: String(status) });
    this.deps.metrics.latency.observe({ pool: route.pool, backend: backend?.id ?? '-' }, (performance.now() - t0) / 1000);
    this.logAccess(req, fwd.requestId, fwd.clientIp, route.pool, backend?.id, status, t0, queueMs, last?.connectMs ?? 0, upstreamMs, tried.size, last?.kind === 'done' ? last.bytesOut : 0);
  }

  /**
   * One exchange with one backend, through its undici connection pool (measured faster than
   * node:http's Agent: docs/balancer.md). Resolves when it is completely over: the response finished,
   * or failed, or the request is to be retried elsewhere.
   */
  private forward(
    req: Req,
    res: Res,
    b: Backend,
    rt: PoolRuntime,
    path: string,
    headers: Record<string, string | string[]>,
    hasBody: boolean,
    canRetry: boolean,
    setCookie: string | undefined,
    config: BalancerConfig,
  ): Promise<Outcome> {
    const t0 = performance.now();
    b.requests++;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      let startedAt = 0;
      let responded = false;
      let discard = false;
      let status = 0;
      let bytesOut = 0;
      let tooLarge = false;
      let controller: Dispatcher.DispatchController | undefined;
      let clientGone = false;
      const finish = (o: Outcome): void => {
        if (settled) return;
        settled = true;
        resolve(o);
      };
      const connectMs = (): number => (startedAt ? startedAt - t0 : performance.now() - t0);
      const fail = (reason: string, kind: 'connect' | 'timeout' | 'reset'): void => {
        b.failures++;
        rt.outliers?.recordFailure(b, kind === 'connect' ? 'connect' : kind === 'timeout' ? 'timeout' : 'reset');
        rt.pool.picker.observe?.(b, performance.now() - t0, false);
        if (responded || res.headersSent) {
          res.destroy();
          return finish({ kind: 'aborted', status: 502, reason, connectMs: connectMs() });
        }
        // A request that never reached the backend can go elsewhere; so can an idempotent one
        // (canRetry implies it) whose connection broke before any response byte reached the
        // client: a backend killed mid-request, or a pooled keep-alive socket it had just closed
        // (RFC 9110 §9.2.2; nginx's proxy_next_upstream error, Envoy's retry_on reset).
        if (canRetry && (kind === 'connect' || kind === 'reset')) {
          return finish({ kind: 'retry', reason, code: kind === 'connect' ? 'ARCHLAB_UPSTREAM_CONNECT' : 'ARCHLAB_UPSTREAM_RESET', connectMs: connectMs() });
        }
        const st = kind === 'timeout' ? 504 : 502;
        this.reply(res, st, `upstream ${b.id}: ${reason}`, kind === 'timeout' ? 'ARCHLAB_UPSTREAM_TIMEOUT' : kind === 'connect' ? 'ARCHLAB_UPSTREAM_CONNECT' : 'ARCHLAB_UPSTREAM_RESET');
        finish({ kind: 'failed', status: st, reason, connectMs: connectMs() });
      };

      let body: Readable | null = null;
      if (hasBody) {
        const max = config.limits.maxBodyBytes;
        let bytesIn = 0;
        const counted = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            bytesIn += chunk.length;
            if (bytesIn > max) {
              tooLarge = true;
              cb(new BalancerError('ARCHLAB_BAD_REQUEST', `body over ${max} bytes`));
            } else cb(null, chunk);
          },
        });
        req.on('error', (err) => counted.destroy(err));
        req.pipe(counted);
        body = counted;
      }

      // The client went away: stop the upstream exchange too.
      res.on('close', () => {
        if (settled || res.writableFinished) return;
        clientGone = true;
        controller?.abort(new BalancerError('ARCHLAB_UPSTREAM_RESET', 'client closed'));
        finish({ kind: 'aborted', status: 499, reason: 'client closed', connectMs: connectMs() });
      });

      this.upstreamFor(b, config).dispatch(
        { path, method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body },
        {
          onRequestStart: (c) => {
            controller = c;
            startedAt = performance.now();
            if (clientGone) c.abort(new BalancerError('ARCHLAB_UPSTREAM_RESET', 'client closed'));
          },
          onResponseStart: (c, statusCode, upHeaders) => {
            if (statusCode < 200 || settled) return;
            status = statusCode;
            const bad = status >= 500;
            rt.pool.picker.observe?.(b, performance.now() - t0, !bad);
            if (bad) {
              b.failures++;
              rt.outliers?.recordFailure(b, 'status-5xx');
            } else rt.outliers?.recordSuccess(b);
            if (canRetry && (status === 502 || status === 503)) {
              discard = true; // read the body to keep the connection, then retry elsewhere
              return;
            }
            const out = responseHeaders(upHeaders, VIA);
            if (setCookie) out['set-cookie'] = appendHeader(out['set-cookie'], setCookie);
            try {
              res.writeHead(status, out);
            } catch (err) {
              this.deps.logger.warn({ err, backend: b.id }, 'backend sent headers that cannot be forwarded');
              c.abort(new BalancerError('ARCHLAB_UPSTREAM_RESET', 'invalid response headers'));
              return;
            }
            responded = true;
            // Headers, a small body and the end usually arrive in one tick: send them in one write.
            res.cork();
            process.nextTick(uncork, res);
          },
          onResponseData: (c, chunk) => {
            if (discard || settled) return;
            bytesOut += chunk.length;
            if (!(res as http.ServerResponse).write(chunk)) {
              c.pause();
              res.once('drain', () => c.resume());
            }
          },
          onResponseEnd: () => {
            if (settled) return;
            if (discard) return finish({ kind: 'retry', reason: `answered ${status}`, status, connectMs: connectMs() });
            if (!responded) return fail('invalid response headers', 'reset');
            res.end();
            finish({ kind: 'done', status, bytesOut, connectMs: connectMs(), upstreamMs: performance.now() - t0 });
          },
          onResponseError: (_c, err: Error & { code?: string }) => {
            if (settled) return;
            if (tooLarge) {
              const max = config.limits.maxBodyBytes;
              if (!res.headersSent) this.reply(res, 413, `body over ${max} bytes`, 'ARCHLAB_BODY_TOO_LARGE', { connection: 'close' });
              else res.destroy();
              return finish({ kind: 'failed', status: 413, reason: 'body too large', connectMs: 0 });
            }
            const code = err.code ?? '';
            if (code === 'UND_ERR_HEADERS_TIMEOUT') return fail(`no response within ${config.timeouts.responseMs} ms`, 'timeout');
            if (code === 'UND_ERR_BODY_TIMEOUT') return fail(`no bytes for ${config.timeouts.idleMs} ms`, 'timeout');
            if (!startedAt || CONNECT_ERRORS.has(code) || code === 'UND_ERR_CONNECT_TIMEOUT') return fail(`${code || 'error'}: ${err.message}`, 'connect');
            fail(`${code || 'error'}: ${err.message}`, 'reset');
          },
        },
      );
    });
  }

  /** The backend's undici pool: keep-alive connections, at most maxConnections of them. */
  private upstreamFor(b: Backend, config: BalancerConfig): UndiciPool {
    let pool = this.upstreams.get(b);
    if (!pool) {
      const { connectMs, responseMs, idleMs } = config.timeouts;
      pool = new UndiciPool(`${b.tls ? 'https' : 'http'}://${formatHostPort(b.host, b.port)}`, {
        connections: b.maxConnections,
        pipelining: 1,
        keepAliveTimeout: UPSTREAM_IDLE_MS,
        keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
        headersTimeout: responseMs,
        bodyTimeout: idleMs,
        connect: { timeout: connectMs, ...(b.tls ? { rejectUnauthorized: false } : {}) },
      });
      this.upstreams.set(b, pool);
    }
    return pool;
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

  private logAccess(
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
