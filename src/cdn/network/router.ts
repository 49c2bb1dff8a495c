/**
 * The router: the CDN's front door, one HTTP listener standing in for DNS/anycast steering. For
 * each request it finds the client's region (header, else source address, else the default),
 * sends it to the nearest region's edge node that owns the URL (consistent hashing), holds it for
 * the simulated client -> edge link (half the round trip before forwarding, half before relaying
 * the response), and streams both ways through a keep-alive pool per edge node. It adds
 * `X-Served-By`, `X-Client-Region` and a `Server-Timing` entry `geo;dur=<rtt>` to the response.
 *
 * A GET or HEAD whose edge refuses the connection is tried on the next candidate (the next node of
 * the region by hash preference, then the next-nearest region), at most MAX_ROUTE_ATTEMPTS in all.
 */
import * as http from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { Pool, type Dispatcher } from 'undici';
import type { Clock, TimerHandle } from '../../core/clock.js';
import { listen, type ServerHandle } from '../../core/lifecycle.js';
import { isArchlabError } from '../../core/errors.js';
import { CdnError, isCdnError } from '../errors.js';
import { primaryKey, type KeyOptions } from '../key.js';
import { oneWayMs, type LatencyMatrix } from './geo.js';
import type { EdgeRef, EdgeSelector, RegionResolver } from './routing.js';
import { HOP_BY_HOP_HEADERS } from '../../core/http.js';

/** Attempts per request when an edge cannot be reached (GET/HEAD only; other methods get one). */
export const MAX_ROUTE_ATTEMPTS = 3;
/** Idle keep-alive sockets to an edge are dropped after this, below the edges' own keep-alive. */
export const ROUTER_UPSTREAM_IDLE_MS = 4000;

/** Hop-by-hop fields (RFC 9110 7.6.1), never forwarded either way; fields named in Connection are dropped too. */
const HOP_BY_HOP = HOP_BY_HOP_HEADERS;
/** Connection errors after which no byte reached the edge, so another one may be tried. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN']);

/** An edge node as the router reaches it. */
export interface RouterUpstream {
  name: string;
  region: string;
  url: string;
  dispatcher: Dispatcher;
}

/** One routed request, for metrics (per client region, user-perceived time). */
export interface RoutedSample {
  clientRegion: string;
  edge: string;
  edgeRegion: string;
  status: number;
  /** From the request's arrival to the response head written, ms (the injected geography included). */
  ms: number;
}

export interface RouterStats {
  requests: number;
  /** Requests per client region. */
  byClientRegion: Record<string, number>;
  /** Requests answered by the router itself (400, 413, 502, 503, 504). */
  errors: number;
  /** Requests that went to a second candidate because the first edge was unreachable. */
  failovers: number;
}

export interface RouterOptions {
  /** Interface to bind. Default "127.0.0.1". */
  host?: string;
  /** Port; 0 picks a free one. */
  port: number;
  resolver: RegionResolver;
  selector: EdgeSelector;
  matrix: LatencyMatrix;
  /** Edge nodes by name. */
  upstreams: ReadonlyMap<string, RouterUpstream>;
  /** The site's host, set as Host on every forwarded request (routing.host); called per request, so it can be fixed after listen. */
  siteHost: () => string;
  /** The cache key's rules, so the router hashes the same key the edge stores under. */
  key?: KeyOptions;
  /** Largest request body forwarded, by its declared Content-Length (bigger gets 413); a chunked body is bounded by the edge's own limit. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Largest request header block (http maxHeaderSize); bigger gets 431. Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Concurrent client connections. Default 10000. */
  maxConnections?: number;
  /** Client must send headers within this. Default 10000 ms. */
  headersTimeoutMs?: number;
  /** Client must send the whole request within this. Default 30000 ms. */
  requestTimeoutMs?: number;
  /** Idle client keep-alive connections are closed after this. Default 5000 ms. */
  keepAliveTimeoutMs?: number;
  /** A client socket with no traffic either way is closed after this. Default 60000 ms. */
  idleTimeoutMs?: number;
  /** Waiting for an edge's response head (after the client -> edge delay); set it above the edges' own upstream bound so they answer 504 themselves. Default 30000 ms. */
  responseTimeoutMs?: number;
  /** Passed to listen(). Default 10000 ms. */
  drainTimeoutMs?: number;
  clock: Clock;
  logger?: Logger;
  onRequest?: (sample: RoutedSample) => void;
}

export interface RouterHandle extends ServerHandle {
  stats(): RouterStats;
}

/** An edge's keep-alive pool for the router and the purge fan-out. */
export function edgePool(url: string, opts: { connections: number; connectTimeoutMs: number }): Pool {
  return new Pool(url, {
    connections: opts.connections,
    connectTimeout: opts.connectTimeoutMs,
    keepAliveTimeout: ROUTER_UPSTREAM_IDLE_MS,
    keepAliveMaxTimeout: ROUTER_UPSTREAM_IDLE_MS,
    // The router sets its own per-request header/body timeouts.
    headersTimeout: 0,
    bodyTimeout: 0,
  });
}

function send(res: http.ServerResponse, status: number, code: string, message: string, extra: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

/** Request headers for the edge: hop-by-hop removed, Host set to the site, X-Forwarded-For extended. */
function forwardHeaders(req: http.IncomingMessage, host: string, region: string, regionHeader: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = req.headers.connection;
  const drop = named === undefined ? undefined : new Set(named.toLowerCase().split(',').map((s) => s.trim()));
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    // undici refuses Expect; Node already answered 100-continue for us.
    if (HOP_BY_HOP.has(name) || name === 'host' || name === 'expect' || drop?.has(name)) continue;
    const prev = out[name];
    const v = raw[i + 1]!;
    out[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  out.host = host;
  out[regionHeader] = region;
  const peer = req.socket.remoteAddress;
  if (peer !== undefined) {
    const xff = out['x-forwarded-for'];
    out['x-forwarded-for'] = xff === undefined ? peer : `${Array.isArray(xff) ? xff.join(', ') : xff}, ${peer}`;
  }
  return out;
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  const named = headers.connection;
  const drop = named === undefined ? undefined : new Set(String(named).toLowerCase().split(',').map((s) => s.trim()));
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || drop?.has(k)) continue;
    out[k] = v;
  }
  return out;
}

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code === 'UND_ERR_SOCKET' || e?.code === undefined ? (e?.cause?.code ?? e?.code) : e.code;
}

export async function startRouter(opts: RouterOptions): Promise<RouterHandle> {
  const { resolver, selector, matrix, upstreams, clock, logger } = opts;
  const maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024;
  const responseTimeoutMs = opts.responseTimeoutMs ?? 30_000;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
  const stats: RouterStats = { requests: 0, byClientRegion: Object.fromEntries(matrix.clientRegions.map((r) => [r, 0])), errors: 0, failovers: 0 };
  // Simulated-latency waits in flight: cut short on close so geography never holds up a shutdown.
  const waits = new Map<TimerHandle, () => void>();
  let closing = false;

  const delay = (ms: number): Promise<void> | undefined => {
    if (ms <= 0 || closing) return undefined;
    return new Promise<void>((resolve) => {
      const handle: TimerHandle = clock.setTimer(ms, () => {
        waits.delete(handle);
        resolve();
      });
      waits.set(handle, resolve);
    });
  };

  const fail = (res: http.ServerResponse, err: unknown): void => {
    stats.errors++;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (isCdnError(err, 'ARCHLAB_CDN_BAD_REQUEST')) return send(res, 400, err.code, err.message);
    if (isCdnError(err, 'ARCHLAB_CDN_UPSTREAM_TIMEOUT')) return send(res, 504, err.code, err.message);
    if (isCdnError(err, 'ARCHLAB_CDN_UPSTREAM_FAILED')) return send(res, 502, err.code, err.message);
    if (isArchlabError(err)) return send(res, 500, err.code, err.message);
    logger?.error({ err }, 'router: unexpected error');
    send(res, 500, 'ARCHLAB_INTERNAL', 'internal error');
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const t0 = clock.monotonic();
    stats.requests++;
    if (closing) {
      stats.errors++;
      return send(res, 503, 'ARCHLAB_CDN_CLOSED', 'the CDN is shutting down', { connection: 'close' });
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBodyBytes) {
      stats.errors++;
      return send(res, 413, 'ARCHLAB_BODY_TOO_LARGE', `request body is over the ${maxBodyBytes}-byte limit`, { connection: 'close' });
    }
    const { region: client } = resolver.resolve(req.headers[resolver.header], req.socket.remoteAddress);
    stats.byClientRegion[client] = (stats.byClientRegion[client] ?? 0) + 1;
    const host = opts.siteHost();
    const target = req.url ?? '/';
    const key = primaryKey({ scheme: 'http', host, url: target }, opts.key);
    const method = req.method ?? 'GET';
    const retryable = method === 'GET' || method === 'HEAD';
    const candidates: EdgeRef[] = selector.candidates(client, key, retryable ? MAX_ROUTE_ATTEMPTS : 1);
    if (candidates.length === 0) throw new CdnError('ARCHLAB_CDN_UPSTREAM_FAILED', 'no edge node to route to');
    const headers = forwardHeaders(req, host, client, resolver.header);
    const hasBody = !retryable && (req.headers['transfer-encoding'] !== undefined || (Number.isFinite(declared) && declared > 0));
    // A GET/HEAD body is not forwarded (RFC 9110 9.3.1: no defined semantics), so neither is its length.
    if (!hasBody) delete headers['content-length'];
    // Aborts the edge request when the client goes away, and bounds the wait for the head.
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClose);

    for (let i = 0; i < candidates.length; i++) {
      const edge = candidates[i]!;
      const up = upstreams.get(edge.name)!;
      const rtt = matrix.clientRttMs(client, edge.region);
      const half = oneWayMs(rtt);
      const out = delay(half);
      if (out !== undefined) await out;
      if (abort.signal.aborted) return;
      let response: Dispatcher.ResponseData;
      const timer = clock.setTimer(responseTimeoutMs, () => abort.abort(new CdnError('ARCHLAB_CDN_UPSTREAM_TIMEOUT', `edge ${edge.name} did not answer within ${responseTimeoutMs}ms`)));
      try {
        response = await up.dispatcher.request({
          method,
          path: target,
          headers,
          body: hasBody ? req : null,
          signal: abort.signal,
          bodyTimeout: idleTimeoutMs,
        });
      } catch (err) {
        timer.cancel();
        if (res.destroyed && !res.writableFinished) return;
        const reason = abort.signal.reason as unknown;
        if (isCdnError(reason)) throw reason;
        const code = errorCode(err);
        if (code !== undefined && UNREACHABLE.has(code) && i + 1 < candidates.length) {
          stats.failovers++;
          logger?.warn({ edge: edge.name, code }, 'router: edge unreachable, trying the next candidate');
          continue;
        }
        throw new CdnError('ARCHLAB_CDN_UPSTREAM_FAILED', `edge ${edge.name} failed: ${code ?? (err as Error).message}`, { cause: err });
      }
      timer.cancel();
      const back = delay(half);
      if (back !== undefined) await back;
      const h = responseHeaders(response.headers);
      h['x-served-by'] = edge.name;
      h['x-client-region'] = client;
      const timing = `geo;dur=${rtt};desc="${client}->${edge.region}"`;
      const st = h['server-timing'];
      h['server-timing'] = st === undefined ? timing : `${Array.isArray(st) ? st.join(', ') : String(st)}, ${timing}`;
      res.writeHead(response.statusCode, h);
      opts.onRequest?.({ clientRegion: client, edge: edge.name, edgeRegion: edge.region, status: response.statusCode, ms: clock.monotonic() - t0 });
      try {
        await pipeline(response.body, res);
      } catch (err) {
        // The client left or the edge broke off mid-body: nothing more can be said on this response.
        if (!res.destroyed) res.destroy();
        logger?.debug({ err, edge: edge.name }, 'router: response body aborted');
      }
      res.off('close', onClose);
      return;
    }
  };

  const server = http.createServer(
    {
      maxHeaderSize: opts.maxHeaderBytes ?? 16 * 1024,
      headersTimeout: opts.headersTimeoutMs ?? 10_000,
      requestTimeout: opts.requestTimeoutMs ?? 30_000,
      keepAliveTimeout: opts.keepAliveTimeoutMs ?? 5000,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor((opts.headersTimeoutMs ?? 10_000) / 2))),
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => fail(res, err));
    },
  );
  server.maxConnections = opts.maxConnections ?? 10_000;
  server.setTimeout(idleTimeoutMs);
  const h = await listen(server, { host: opts.host ?? '127.0.0.1', port: opts.port, ...(opts.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: opts.drainTimeoutMs }) });
  return {
    address: h.address,
    stats: () => ({ ...stats, byClientRegion: { ...stats.byClientRegion } }),
    close: () => {
      closing = true;
      for (const [t, resolve] of waits) {
        t.cancel();
        resolve();
      }
      waits.clear();
      return h.close();
    },
  };
}
