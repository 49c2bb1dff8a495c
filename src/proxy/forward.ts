/**
 * The shell that moves bytes: absolute-form HTTP requests forwarded with streaming and backpressure,
 * CONNECT tunnels spliced, every refusal answered and logged. What may pass is decided by the Gate
 * (and the pure modules behind it); this file does sockets, timers, headers, logs and metrics.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { Logger } from 'pino';
import { checkFraming, stripHopByHop, type HeaderMap } from '../balancer/index.js';
import type { ProxyConfig } from './config.js';
import { ProxyError, type ProxyErrorCode } from './errors.js';
import type { Admitted, Gate, Refusal } from './gate.js';
import type { ProxyMetrics } from './metrics.js';
import { formatTarget, parseAbsoluteTarget, parseConnectTarget, unmapIPv6, type HttpTarget, type Target } from './target.js';

/** This hop in Via (RFC 9110 §7.6.3). */
export const VIA = '1.1 archlab';
/** Idle keep-alive sockets to targets are closed after this: below the usual 5 s server keep-alive, so a reused socket is rarely one the target is closing. */
export const UPSTREAM_IDLE_MS = 4000;
/** Characters of an unparsable request target kept in the access log. */
const MAX_LOGGED_TARGET = 200;
/** Idle keep-alive sockets kept per target (host:port). */
export const UPSTREAM_FREE_PER_TARGET = 32;

export interface ForwardDeps {
  config: ProxyConfig;
  gate: Gate;
  metrics: ProxyMetrics;
  logger: Logger;
}

interface AccessEntry {
  kind: 'http' | 'connect';
  client: string;
  user: string | undefined;
  method: string;
  target: string | undefined;
  url?: string;
  /** The request target as sent, when it could not be parsed (cut to MAX_LOGGED_TARGET). */
  requested?: string;
  address?: string;
  status: number;
  reason?: string;
  error?: string;
  bytesUp: number;
  bytesDown: number;
  t0: number;
}

function clientOf(socket: net.Socket): string {
  return unmapIPv6(socket.remoteAddress ?? '');
}

function joined(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Request headers for the target: hop-by-hop and every Proxy-* field out, Host from the URL, this hop in Via. */
export function requestHeaders(incoming: http.IncomingHttpHeaders, target: HttpTarget): HeaderMap {
  const headers = stripHopByHop(incoming);
  for (const name in headers) if (name.startsWith('proxy-')) delete headers[name];
  // The proxy answers 100-continue itself, after its checks; the target gets the whole body.
  delete headers.expect;
  headers.host = target.hostHeader;
  const via = joined(incoming.via);
  headers.via = via !== undefined && via !== '' ? `${via}, ${VIA}` : VIA;
  return headers;
}

/** Response headers for the client: hop-by-hop out (Proxy-Authenticate of a target too), this hop in Via. */
export function responseHeaders(upstream: http.IncomingHttpHeaders): HeaderMap {
  const headers = stripHopByHop(upstream);
  for (const name in headers) if (name.startsWith('proxy-')) delete headers[name];
  const via = joined(upstream.via);
  headers.via = via !== undefined && via !== '' ? `${via}, ${VIA}` : VIA;
  return headers;
}

function hasBody(req: http.IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && cl !== '0';
}

export class ForwardProxy {
  readonly agent: http.Agent;
  private closing = false;
  private readonly tunnels = new Set<net.Socket>();

  constructor(private readonly deps: ForwardDeps) {
    this.agent = new http.Agent({ keepAlive: true, maxFreeSockets: UPSTREAM_FREE_PER_TARGET, timeout: UPSTREAM_IDLE_MS, scheduling: 'lifo' });
  }

  /** New requests get 503 and new tunnels are refused; tunnels open keep running until the listener's drain ends them. */
  shutdown(): void {
    this.closing = true;
  }

  /** Frees pooled sockets; after shutdown, once the listeners are closed. */
  destroy(): void {
    this.agent.destroy();
    for (const s of this.tunnels) s.destroy();
  }

  get openTunnels(): number {
    return this.tunnels.size;
  }

  // ---------------------------------------------------------------- HTTP (absolute-form)

  handleRequest(req: http.IncomingMessage, res: http.ServerResponse, expectContinue = false): void {
    this.serveRequest(req, res, expectContinue).catch((err: unknown) => {
      this.deps.logger.error({ err }, 'unexpected error while proxying');
      if (!res.headersSent) this.reply(res, 502, 'ARCHLAB_PROXY_UPSTREAM', 'internal error', { connection: 'close' });
      else res.destroy();
    });
  }

  private async serveRequest(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): Promise<void> {
    const t0 = performance.now();
    const { config, gate, metrics } = this.deps;
    const client = clientOf(req.socket);
    const method = req.method ?? 'GET';
    const entry: AccessEntry = { kind: 'http', client, user: undefined, method, target: undefined, status: 0, bytesUp: 0, bytesDown: 0, t0 };
    const refuse = (r: Refusal, user?: string, target?: HttpTarget): void => {
      entry.user = user;
      if (target !== undefined) {
        entry.target = formatTarget(target);
        entry.url = target.href.split('?')[0];
      } else entry.requested = (req.url ?? '').slice(0, MAX_LOGGED_TARGET);
      entry.status = r.status;
      entry.reason = r.reason;
      entry.error = r.message;
      metrics.denied.inc({ reason: r.reason });
      // A body the proxy will not read is not drained either: the connection ends after the answer.
      const close: Record<string, string> = r.status === 400 || r.status === 413 || hasBody(req) ? { connection: 'close' } : {};
      this.reply(res, r.status, r.code, r.message, { ...r.headers, ...close });
      metrics.answered(r.status);
      this.logAccess(entry);
    };

    if (this.closing) return refuse({ status: 503, code: 'ARCHLAB_PROXY_SHUTTING_DOWN', reason: 'shutting-down', message: 'proxy shutting down' });
    const framing = checkFraming(req.rawHeaders, req.httpVersion);
    if (!framing.ok) return refuse({ status: 400, code: 'ARCHLAB_PROXY_BAD_TARGET', reason: 'framing', message: framing.reason });
    // RFC 9112 §3.2: HTTP/1.1 requests carry Host, absolute-form or not (checked here rather than by
    // Node's requireHostHeader so the refusal is logged like every other).
    if (req.headers.host === undefined && req.httpVersion === '1.1') {
      return refuse({ status: 400, code: 'ARCHLAB_PROXY_BAD_TARGET', reason: 'bad-target', message: 'HTTP/1.1 request without a Host header' });
    }
    const max = config.limits.maxBodyBytes;
    const cl = req.headers['content-length'];
    if (cl !== undefined && Number(cl) > max) return refuse({ status: 413, code: 'ARCHLAB_PROXY_BODY_TOO_LARGE', reason: 'body-too-large', message: `body over ${max} bytes` });

    const admission = await gate.admit('http', client, () => parseAbsoluteTarget(req.url ?? '', req.headers.host), joined(req.headers['proxy-authorization']));
    if (!admission.ok) return refuse(admission.refusal, admission.user, admission.target);
    const a = admission.admitted;
    entry.user = a.user;
    entry.target = formatTarget(a.target);
    entry.url = a.target.href.split('?')[0];
    metrics.http.active.inc();
    try {
      if (expectContinue) res.writeContinue();
      await this.forward(req, res, a, entry);
    } finally {
      a.release();
      metrics.http.active.dec();
    }
    metrics.answered(entry.status);
    if (entry.bytesUp > 0) metrics.http.up.inc(entry.bytesUp);
    if (entry.bytesDown > 0) metrics.http.down.inc(entry.bytesDown);
    metrics.http.duration.observe((performance.now() - t0) / 1000);
    this.logAccess(entry);
  }

  /** One exchange with the target; resolves when it is over, `entry` filled in. */
  private forward(req: http.IncomingMessage, res: http.ServerResponse, a: Admitted<HttpTarget>, entry: AccessEntry): Promise<void> {
    const { timeouts, limits } = this.deps.config;
    const target = a.target;
    return new Promise<void>((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const done = (status: number, reason?: string, error?: string): void => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        entry.status = status;
        if (reason !== undefined) entry.reason = reason;
        if (error !== undefined) entry.error = error;
        resolve();
      };
      const fail = (status: number, code: ProxyErrorCode, reason: string, message: string): void => {
        if (settled) return;
        if (!res.headersSent) this.reply(res, status, code, message, hasBody(req) && !req.complete ? { connection: 'close' } : undefined);
        else res.destroy();
        done(status, reason, message);
      };

      const options: http.RequestOptions & net.TcpNetConnectOpts = {
        host: target.host,
        port: target.port,
        method: req.method,
        path: target.path,
        headers: requestHeaders(req.headers, target),
        agent: this.agent,
        setHost: false,
        lookup: a.lookup,
        autoSelectFamily: true,
        maxHeaderSize: limits.maxResponseHeaderBytes,
      };
      const upstream = http.request(options);
      let connected = false;
      const onConnected = (s: net.Socket): void => {
        connected = true;
        entry.address = unmapIPv6(s.remoteAddress ?? '');
        if (timer !== undefined) clearTimeout(timer);
        // The wait for response headers starts once the request is sent: a slow upload is not cut by it.
        const arm = (): void => {
          if (settled || gotResponse) return;
          timer = setTimeout(() => upstream.destroy(new TimeoutMarker('response')), timeouts.responseMs);
        };
        if (upstream.writableFinished) arm();
        else upstream.once('finish', arm);
      };
      upstream.on('socket', (s: net.Socket) => {
        if (!s.connecting) return onConnected(s); // a pooled keep-alive socket
        timer = setTimeout(() => upstream.destroy(new TimeoutMarker('connect')), timeouts.connectMs);
        s.once('connect', () => onConnected(s));
      });
      upstream.setTimeout(timeouts.idleMs, () => upstream.destroy(new TimeoutMarker('idle')));
      upstream.on('error', (err: Error) => {
        if (err instanceof TimeoutMarker) {
          if (err.phase === 'idle' && res.headersSent) return fail(504, 'ARCHLAB_PROXY_TIMEOUT', 'idle-timeout', `no bytes for ${timeouts.idleMs} ms`);
          const ms = err.phase === 'connect' ? timeouts.connectMs : err.phase === 'response' ? timeouts.responseMs : timeouts.idleMs;
          return fail(504, 'ARCHLAB_PROXY_TIMEOUT', `${err.phase}-timeout`, `${formatTarget(target)}: ${err.phase} timed out after ${ms} ms`);
        }
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        if (code === 'HPE_HEADER_OVERFLOW') return fail(502, 'ARCHLAB_PROXY_UPSTREAM', 'upstream-headers', `${formatTarget(target)}: response headers over ${limits.maxResponseHeaderBytes} bytes`);
        fail(502, 'ARCHLAB_PROXY_UPSTREAM', connected ? 'upstream-reset' : 'upstream-connect', `${formatTarget(target)}: ${code}`);
      });

      let gotResponse = false;
      upstream.on('response', (up: http.IncomingMessage) => {
        gotResponse = true;
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
        const status = up.statusCode ?? 502;
        try {
          res.writeHead(status, up.statusMessage, responseHeaders(up.headers));
        } catch (err) {
          up.destroy();
          upstream.destroy();
          return fail(502, 'ARCHLAB_PROXY_UPSTREAM', 'upstream-headers', `${formatTarget(target)}: response headers cannot be forwarded (${(err as Error).message})`);
        }
        up.on('data', (chunk: Buffer) => {
          entry.bytesDown += chunk.length;
          if (!res.write(chunk)) {
            up.pause();
            res.once('drain', () => up.resume());
          }
        });
        up.on('end', () => {
          res.end();
          done(status);
        });
        up.on('aborted', () => {
          res.destroy();
          done(status, 'upstream-aborted', 'target closed the connection mid-response');
        });
        up.on('error', () => {
          res.destroy();
          done(status, 'upstream-aborted', 'target connection failed mid-response');
        });
      });

      res.on('close', () => {
        if (!settled && !res.writableFinished) {
          upstream.destroy();
          done(499, 'client-closed', 'client closed the connection');
        }
      });

      if (!hasBody(req)) {
        upstream.end();
        return;
      }
      const max = limits.maxBodyBytes;
      req.on('data', (chunk: Buffer) => {
        entry.bytesUp += chunk.length;
        if (entry.bytesUp > max) {
          req.pause();
          upstream.destroy();
          this.deps.metrics.denied.inc({ reason: 'body-too-large' });
          fail(413, 'ARCHLAB_PROXY_BODY_TOO_LARGE', 'body-too-large', `body over ${max} bytes`);
          return;
        }
        if (!upstream.write(chunk)) {
          req.pause();
          upstream.once('drain', () => req.resume());
        }
      });
      req.on('end', () => upstream.end());
      req.on('error', () => upstream.destroy());
    });
  }

  // ---------------------------------------------------------------- CONNECT

  handleConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    this.serveConnect(req, socket, head).catch((err: unknown) => {
      this.deps.logger.error({ err }, 'unexpected error while opening a tunnel');
      rawReply(socket, 502, 'ARCHLAB_PROXY_UPSTREAM', 'internal error');
    });
  }

  private async serveConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const t0 = performance.now();
    const { config, gate, metrics } = this.deps;
    const client = clientOf(socket);
    const entry: AccessEntry = { kind: 'connect', client, user: undefined, method: 'CONNECT', target: undefined, status: 0, bytesUp: 0, bytesDown: 0, t0 };
    const refuse = (r: Refusal, user?: string, target?: Target): void => {
      entry.user = user;
      if (target !== undefined) entry.target = formatTarget(target);
      else entry.requested = (req.url ?? '').slice(0, MAX_LOGGED_TARGET);
      entry.status = r.status;
      entry.reason = r.reason;
      entry.error = r.message;
      metrics.denied.inc({ reason: r.reason });
      metrics.tunnel(r.status);
      rawReply(socket, r.status, r.code, r.message, r.headers);
      this.logAccess(entry);
    };
    if (this.closing) return refuse({ status: 503, code: 'ARCHLAB_PROXY_SHUTTING_DOWN', reason: 'shutting-down', message: 'proxy shutting down' });
    const admission = await gate.admit('connect', client, () => parseConnectTarget(req.url ?? ''), joined(req.headers['proxy-authorization']));
    if (!admission.ok) return refuse(admission.refusal, admission.user, admission.target);
    const a = admission.admitted;
    entry.user = a.user;
    entry.target = formatTarget(a.target);
    if (socket.destroyed) {
      a.release();
      entry.status = 499;
      entry.reason = 'client-closed';
      return this.logAccess(entry);
    }

    const { connectMs, idleMs } = config.timeouts;
    const upstream = net.connect({ host: a.target.host, port: a.target.port, lookup: a.lookup, autoSelectFamily: true });
    this.tunnels.add(socket);
    metrics.connect.active.inc();
    let open = false;
    let finished = false;
    const finish = (status: number, reason?: string, error?: string): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.tunnels.delete(socket);
      a.release();
      metrics.connect.active.dec();
      entry.status = status;
      if (reason !== undefined) entry.reason = reason;
      if (error !== undefined) entry.error = error;
      entry.bytesUp = upstream.bytesWritten;
      entry.bytesDown = upstream.bytesRead;
      metrics.tunnel(status);
      metrics.connect.up.inc(entry.bytesUp);
      metrics.connect.down.inc(entry.bytesDown);
      if (status === 200) metrics.connect.duration.observe((performance.now() - t0) / 1000);
      this.logAccess(entry);
    };
    const timer = setTimeout(() => {
      upstream.destroy();
      rawReply(socket, 504, 'ARCHLAB_PROXY_TIMEOUT', `${entry.target}: connect timed out after ${connectMs} ms`);
      finish(504, 'connect-timeout');
    }, connectMs);

    upstream.once('connect', () => {
      clearTimeout(timer);
      if (socket.destroyed) {
        upstream.destroy();
        return finish(499, 'client-closed');
      }
      open = true;
      entry.address = unmapIPv6(upstream.remoteAddress ?? '');
      upstream.setNoDelay(true);
      socket.setNoDelay(true);
      socket.write(`HTTP/1.1 200 Connection Established\r\nVia: ${VIA}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      // A tunnel with no bytes either way for idleMs is closed, from whichever side notices first.
      upstream.setTimeout(idleMs, () => upstream.destroy());
      socket.setTimeout(idleMs, () => socket.destroy());
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (!open) {
        rawReply(socket, 502, 'ARCHLAB_PROXY_UPSTREAM', `${entry.target}: ${err.code ?? err.message}`);
        return finish(502, 'upstream-connect', err.code ?? err.message);
      }
      socket.destroy();
    });
    upstream.on('close', () => {
      if (open) {
        // Let what the target sent reach the client, then end it.
        socket.end();
        finish(200);
      }
    });
    socket.on('close', () => {
      upstream.destroy();
      if (!open) finish(499, 'client-closed');
      else finish(200);
    });
  }

  // ---------------------------------------------------------------- other paths

  /** Upgrade requests (WebSocket over plain HTTP) are not carried: 501, logged. wss:// goes through CONNECT. */
  handleUpgrade(req: http.IncomingMessage, socket: net.Socket): void {
    socket.on('error', () => socket.destroy());
    const message = 'upgrades over plain HTTP are not proxied; use CONNECT (wss://, or ws:// through a tunnel)';
    this.deps.metrics.denied.inc({ reason: 'upgrade' });
    this.deps.metrics.answered(501);
    rawReply(socket, 501, 'ARCHLAB_PROXY_NOT_IMPLEMENTED', message);
    this.logAccess({ kind: 'http', client: clientOf(socket), user: undefined, method: req.method ?? '', target: undefined, requested: (req.url ?? '').slice(0, MAX_LOGGED_TARGET), status: 501, reason: 'upgrade', error: message, bytesUp: 0, bytesDown: 0, t0: performance.now() });
  }

  /** A request Node's parser refused (malformed line, header overflow, timeout): answered, counted, logged. */
  handleClientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
    // A client that went away mid-request is not a bad request; nothing to answer or count.
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const reason = status === 431 ? 'header-overflow' : status === 408 ? 'request-timeout' : 'malformed-request';
    this.deps.metrics.denied.inc({ reason });
    if (socket.writable && !(socket as net.Socket & { _httpMessage?: unknown })._httpMessage) {
      rawReply(socket, status, 'ARCHLAB_PROXY_BAD_TARGET', reason);
    } else {
      socket.destroy();
    }
    // Node hands over the bytes it could not parse; their first line says what was tried.
    const rawPacket = (err as { rawPacket?: Buffer }).rawPacket;
    const firstLine = rawPacket?.subarray(0, MAX_LOGGED_TARGET).toString('latin1').split(/\r?\n/)[0];
    this.logAccess({
      kind: 'http',
      client: clientOf(socket),
      user: undefined,
      method: '',
      target: undefined,
      ...(firstLine ? { requested: firstLine } : {}),
      status,
      reason,
      error: err.code ?? err.message,
      bytesUp: 0,
      bytesDown: 0,
      t0: performance.now(),
    });
  }

  /** The proxy's own answer: plain text, the error code in a header for machines. */
  private reply(res: http.ServerResponse, status: number, code: string, message: string, extra?: Record<string, string>): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${status} ${http.STATUS_CODES[status] ?? ''}: ${message}\n`;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-archlab-error': code, via: VIA, ...extra });
    res.end(body);
  }

  private logAccess(e: AccessEntry): void {
    if (!this.deps.config.accessLog) return;
    this.deps.logger.info(
      {
        type: 'access',
        kind: e.kind,
        client: e.client,
        user: e.user ?? null,
        method: e.method,
        target: e.target ?? null,
        ...(e.url !== undefined ? { url: e.url } : {}),
        ...(e.requested !== undefined ? { requested: e.requested } : {}),
        ...(e.address !== undefined ? { address: e.address } : {}),
        status: e.status,
        ...(e.reason !== undefined ? { reason: e.reason } : {}),
        ...(e.error !== undefined ? { error: e.error } : {}),
        bytesUp: e.bytesUp,
        bytesDown: e.bytesDown,
        durationMs: Math.round((performance.now() - e.t0) * 100) / 100,
      },
      e.kind === 'connect' ? 'tunnel' : 'request',
    );
  }
}

/** Why an upstream exchange was cut by one of the proxy's own timers. */
class TimeoutMarker extends ProxyError {
  constructor(readonly phase: 'connect' | 'response' | 'idle') {
    super('ARCHLAB_PROXY_TIMEOUT', `${phase} timeout`, { retryable: true });
  }
}

/** An answer written straight to a socket (CONNECT, upgrades, parse errors), then the socket ends. */
export function rawReply(socket: net.Socket, status: number, code: string, message: string, headers?: Record<string, string>): void {
  if (socket.destroyed || !socket.writable) return;
  const body = `${status} ${http.STATUS_CODES[status] ?? ''}: ${message}\n`;
  let extra = '';
  for (const [k, v] of Object.entries(headers ?? {})) extra += `${k}: ${v}\r\n`;
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-archlab-error: ${code}\r\nvia: ${VIA}\r\n${extra}\r\n${body}`,
  );
}


