import { createHash, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ArchlabError, InvalidArgumentError } from './errors.js';
import { listen } from './lifecycle.js';
import type { ServerHandle } from './lifecycle.js';

/**
 * Metrics and the admin listener every archlab server has: `GET /metrics` (Prometheus text),
 * `GET /healthz`, and admin routes behind a bearer token.
 */

export { Registry } from 'prom-client';

/** Every archlab metric name starts with this. */
export const METRIC_PREFIX = 'archlab_';

export interface RegistryOptions {
  /** Also collect Node's process metrics (CPU, memory, event-loop lag, GC), named `archlab_process_*`, `archlab_nodejs_*`. Default false. */
  defaultMetrics?: boolean;
  /** Labels put on every metric of this registry, e.g. `{ server: 'balancer' }`. Default none. */
  labels?: Record<string, string>;
}

/** A fresh prom-client Registry (never the global one, so two servers in one process do not collide). */
export function createRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.labels !== undefined) registry.setDefaultLabels(opts.labels);
  if (opts.defaultMetrics === true) collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  return registry;
}

/** An error with an HTTP status, answered as `{ error: { code, message } }`. */
export class HttpError extends ArchlabError {
  readonly status: number;

  constructor(status: number, code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, { details });
    this.status = status;
  }
}

export interface HealthResult {
  ok: boolean;
  details?: unknown;
}

export interface AdminRouteContext {
  /** Reads the request body, refusing (413) one over the server's maxBodyBytes. */
  readBody(): Promise<Buffer>;
  /** Reads and parses a JSON body; 400 when it is not JSON. */
  readJson(): Promise<unknown>;
}

/** Answers an admin request and returns true, or returns false when the route is not its own (-> 404). */
export type AdminRoutes = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  ctx: AdminRouteContext,
) => boolean | Promise<boolean>;

export interface AdminServerOptions {
  /** Interface to bind. Default "127.0.0.1". */
  host?: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  registry: Registry;
  /** Bearer token required by `routes` (not by /metrics and /healthz). Default none: no auth. */
  token?: string;
  /** Backs /healthz: 200 when ok, 503 otherwise. Default: always ok. */
  health?: () => HealthResult | Promise<HealthResult>;
  /** Further admin endpoints. */
  routes?: AdminRoutes;
  logger?: Logger;
  /** Largest request body accepted; bigger gets 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Largest request header block (http maxHeaderSize). Default 16 KiB. */
  maxHeaderBytes?: number;
  /** A client must send the whole request within this. Default 30000 ms. */
  requestTimeoutMs?: number;
  /** A client must send the request headers within this. Default 10000 ms. */
  headersTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this. Default 5000 ms. */
  keepAliveTimeoutMs?: number;
  /** A socket with no traffic either way is closed after this. Default 60000 ms. */
  idleTimeoutMs?: number;
  /** /healthz answers 503 if `health()` takes longer. Default 5000 ms. */
  healthTimeoutMs?: number;
  /** Concurrent connections; more are refused. Default 1024. */
  maxConnections?: number;
  /** Passed to listen(). Default 10000 ms. */
  drainTimeoutMs?: number;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** Writes `body` as JSON with `status`. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': JSON_TYPE,
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

/** Writes `{ error: { code, message } }` with `status`. */
export function sendError(
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  sendJson(res, status, { error: { code, message } });
}

function positive(name: string, v: number | undefined, dflt: number): number {
  const n = v ?? dflt;
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number > 0, got ${n}`, { [name]: n });
  return n;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Reads a request body of at most maxBytes; a bigger one rejects with a 413 HttpError. */
export function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooLarge = (): HttpError =>
    new HttpError(413, 'ARCHLAB_BODY_TOO_LARGE', `request body is over the ${maxBytes}-byte limit`, { maxBytes });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.reject(tooLarge());
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new HttpError(400, 'ARCHLAB_BAD_REQUEST', `could not read request body: ${err.message}`));
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** Reads a JSON body of at most maxBytes: 413 HttpError when bigger, 400 when it is not JSON. */
export async function readJsonBody(req: http.IncomingMessage, maxBytes: number): Promise<unknown> {
  const body = await readBody(req, maxBytes);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw new HttpError(400, 'ARCHLAB_BAD_REQUEST', `request body is not JSON: ${(err as Error).message}`);
  }
}

/**
 * Starts the admin HTTP server. `/metrics` and `/healthz` are open (scrapers and orchestrators
 * do not carry tokens); every other path needs `Authorization: Bearer <token>` when a token is set,
 * and is then offered to `routes`.
 */
export async function startAdminServer(opts: AdminServerOptions): Promise<ServerHandle> {
  const maxBodyBytes = positive('maxBodyBytes', opts.maxBodyBytes, 1024 * 1024);
  const healthTimeoutMs = positive('healthTimeoutMs', opts.healthTimeoutMs, 5000);
  const requestTimeoutMs = positive('requestTimeoutMs', opts.requestTimeoutMs, 30_000);
  const headersTimeoutMs = positive('headersTimeoutMs', opts.headersTimeoutMs, 10_000);
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new InvalidArgumentError(
      `headersTimeoutMs (${headersTimeoutMs}) must not exceed requestTimeoutMs (${requestTimeoutMs})`,
    );
  }
  if (opts.token !== undefined && opts.token.length === 0) {
    throw new InvalidArgumentError('admin token must not be empty; leave it out to disable auth');
  }
  // Hash once: comparing fixed-length digests in constant time does not leak the token's length.
  const tokenDigest = opts.token === undefined ? undefined : digest(opts.token);
  const { registry, health, routes, logger } = opts;

  const authorized = (req: http.IncomingMessage): 'ok' | 'missing' | 'wrong' => {
    if (tokenDigest === undefined) return 'ok';
    const header = req.headers.authorization;
    const m = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (m === null) return 'missing';
    return timingSafeEqual(digest(m[1]!), tokenDigest) ? 'ok' : 'wrong';
  };

  const serveHealth = async (res: http.ServerResponse): Promise<void> => {
    if (health === undefined) {
      sendJson(res, 200, { status: 'ok' });
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        Promise.resolve().then(health),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new HttpError(503, 'ARCHLAB_HEALTH_TIMEOUT', `health check took over ${healthTimeoutMs}ms`)),
            healthTimeoutMs,
          );
        }),
      ]);
      const body = result.details === undefined ? {} : { details: result.details };
      sendJson(res, result.ok ? 200 : 503, { status: result.ok ? 'ok' : 'unavailable', ...body });
    } catch (err) {
      logger?.warn({ err }, 'health check failed');
      const message = err instanceof Error ? err.message : String(err);
      sendJson(res, 503, { status: 'unavailable', error: message });
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const target = req.url ?? '';
    if (!target.startsWith('/')) {
      sendError(res, 400, 'ARCHLAB_BAD_REQUEST', 'request target must be a path');
      return;
    }
    const url = new URL(`http://admin${target}`);
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBodyBytes) {
      // The body will not be read; close rather than drain it.
      sendError(res, 413, 'ARCHLAB_BODY_TOO_LARGE', `request body is over the ${maxBodyBytes}-byte limit`, {
        Connection: 'close',
      });
      return;
    }
    const isRead = req.method === 'GET' || req.method === 'HEAD';

    if (url.pathname === '/metrics' || url.pathname === '/healthz') {
      if (!isRead) {
        sendError(res, 405, 'ARCHLAB_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`, {
          Allow: 'GET, HEAD',
        });
        return;
      }
      if (url.pathname === '/healthz') {
        await serveHealth(res);
        return;
      }
      const text = await registry.metrics();
      res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }

    const auth = authorized(req);
    if (auth !== 'ok') {
      sendError(
        res,
        401,
        'ARCHLAB_UNAUTHORIZED',
        auth === 'missing' ? 'admin routes need an "Authorization: Bearer <token>" header' : 'invalid admin token',
        { 'WWW-Authenticate': 'Bearer realm="archlab-admin"' },
      );
      return;
    }
    const ctx: AdminRouteContext = {
      readBody: () => readBody(req, maxBodyBytes),
      readJson: () => readJsonBody(req, maxBodyBytes),
    };
    if (routes !== undefined && (await routes(req, res, url, ctx))) return;
    sendError(res, 404, 'ARCHLAB_NOT_FOUND', `no admin route ${req.method} ${url.pathname}`);
  };

  const server = http.createServer(
    {
      requestTimeout: requestTimeoutMs,
      headersTimeout: headersTimeoutMs,
      keepAliveTimeout: positive('keepAliveTimeoutMs', opts.keepAliveTimeoutMs, 5000),
      maxHeaderSize: positive('maxHeaderBytes', opts.maxHeaderBytes, 16 * 1024),
      // Node only checks headers/request timeouts this often (default 30 s, which would make a 10 s
      // headersTimeout up to 40 s); check often enough for the configured values to mean something.
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(headersTimeoutMs / 2))),
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        if (res.headersSent) {
          logger?.error({ err, url: req.url }, 'admin request failed after the response started');
          res.destroy();
          return;
        }
        if (err instanceof HttpError) {
          sendError(res, err.status, err.code, err.message, err.status === 413 ? { Connection: 'close' } : {});
        } else if (err instanceof InvalidArgumentError) {
          sendError(res, 400, err.code, err.message);
        } else {
          logger?.error({ err, url: req.url }, 'admin request failed');
          const code = err instanceof ArchlabError ? err.code : 'ARCHLAB_INTERNAL';
          const message = err instanceof ArchlabError ? err.message : 'internal error';
          sendError(res, 500, code, message);
        }
      });
    },
  );
  server.timeout = positive('idleTimeoutMs', opts.idleTimeoutMs, 60_000);
  server.maxConnections = positive('maxConnections', opts.maxConnections, 1024);

  return listen(server, {
    port: opts.port,
    ...(opts.host === undefined ? {} : { host: opts.host }),
    ...(opts.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: opts.drainTimeoutMs }),
  });
}
