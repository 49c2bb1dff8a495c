/**
 * The demo origin: a small HTTP server with objects whose caching headers are known, so the CDN in
 * front of it has something to show. It serves
 *
 *   configured objects    fixed paths with a size, Cache-Control, Surrogate-Key, ETag, Last-Modified
 *   <generated.prefix>*   any path below it (default /objects/42) as an object of a fixed size
 *   /slow                 after `slowMs` (or ?ms=N, capped at 30 s); cacheable for 10 s
 *   /private              Cache-Control: private with a Set-Cookie, a fresh body every time
 *   anything else         404 with max-age=10 (negative caching is visible too)
 *
 * and answers If-None-Match / If-Modified-Since with 304. PUT replaces an object's body (bumping its
 * ETag and Last-Modified), DELETE removes it, so invalidation and purges can be watched end to end.
 * Bodies are built once per object; the server counts requests in total and per path.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { Logger } from 'pino';
import { listen, type ServerAddress } from '../../core/lifecycle.js';
import { readBody, HttpError } from '../../core/metrics.js';
import type { DemoOriginConfig } from '../config.js';

/** Objects the demo origin holds at most (configured + created by PUT); a PUT beyond gets 507. */
export const MAX_DEMO_OBJECTS = 10_000;
/** Paths counted one by one in `requestsFor`; later new paths are counted only in the total. */
export const MAX_COUNTED_PATHS = 10_000;
/** Upper bound of GET /slow?ms=N. */
export const MAX_SLOW_MS = 30_000;

export interface DemoOriginStats {
  requests: number;
  /** Requests answered 304 Not Modified. */
  notModified: number;
  /** Body bytes sent. */
  bytes: number;
}

export interface DemoOriginHandle {
  readonly url: string;
  readonly address: ServerAddress;
  stats(): DemoOriginStats;
  /** Requests seen for `path` (path only, no query). */
  requestsFor(path: string): number;
  close(): Promise<void>;
}

interface DemoObject {
  body: Buffer;
  contentType: string;
  cacheControl: string;
  surrogateKey?: string;
  etag?: string;
  lastModified?: string;
  lastModifiedMs: number;
  version: number;
}

export interface DemoOriginOptions {
  config: DemoOriginConfig;
  /** Wall-clock ms, for Last-Modified. Default Date.now. */
  now?: () => number;
  logger?: Logger;
  /** Passed to listen(). Default 10000 ms. */
  drainTimeoutMs?: number;
}

function etagOf(body: Buffer, version: number): string {
  return `"${createHash('sha1').update(body).digest('base64url').slice(0, 16)}-${version}"`;
}

/** Whole seconds, as HTTP dates carry them: If-Modified-Since compares at that resolution. */
function httpDate(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toUTCString();
}

/** If-None-Match matches `etag` (weak comparison, RFC 9110 13.1.2), or is `*`. */
function noneMatch(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  const strip = (t: string): string => t.trim().replace(/^W\//, '');
  const want = strip(etag);
  return header.split(',').some((t) => strip(t) === want);
}

export async function startDemoOrigin(opts: DemoOriginOptions): Promise<DemoOriginHandle> {
  const cfg = opts.config;
  const now = opts.now ?? Date.now;
  const objects = new Map<string, DemoObject>();
  const startedAt = now();
  const make = (body: Buffer, o: { contentType: string; cacheControl: string; surrogateKey?: string; etag: boolean; lastModified: boolean }, version: number, at = now()): DemoObject => {
    const t = at;
    return {
      body,
      contentType: o.contentType,
      cacheControl: o.cacheControl,
      ...(o.surrogateKey === undefined ? {} : { surrogateKey: o.surrogateKey }),
      ...(o.etag ? { etag: etagOf(body, version) } : {}),
      ...(o.lastModified ? { lastModified: httpDate(t) } : {}),
      lastModifiedMs: Math.floor(t / 1000) * 1000,
      version,
    };
  };
  for (const o of cfg.objects) objects.set(o.path, make(Buffer.alloc(o.bytes, `${o.path}\n`), o, 1));
  // PUT/DELETE override generated objects too; a deleted generated path stays deleted.
  const deleted = new Set<string>();

  const counts = new Map<string, number>();
  const stats: DemoOriginStats = { requests: 0, notModified: 0, bytes: 0 };
  let privateCounter = 0;
  // /slow waits, answered at once on close so they do not hold the drain.
  const waits = new Map<NodeJS.Timeout, () => void>();

  const generated = (path: string): DemoObject | undefined => {
    const g = cfg.generated;
    if (!path.startsWith(g.prefix) || path.length === g.prefix.length || deleted.has(path)) return undefined;
    return make(Buffer.alloc(g.bytes, `${path}\n`), { contentType: 'application/octet-stream', cacheControl: g.cacheControl, surrogateKey: 'generated', etag: true, lastModified: true }, 1, startedAt);
  };

  const send = (req: http.IncomingMessage, res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body: Buffer | string): void => {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    headers['content-length'] = buf.length;
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || status === 304 || status === 204) {
      res.end();
      return;
    }
    stats.bytes += buf.length;
    res.end(buf);
  };

  const serveObject = (req: http.IncomingMessage, res: http.ServerResponse, obj: DemoObject): void => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': obj.contentType };
    if (obj.cacheControl !== '') headers['cache-control'] = obj.cacheControl;
    if (obj.surrogateKey !== undefined) headers['surrogate-key'] = obj.surrogateKey;
    if (obj.etag !== undefined) headers.etag = obj.etag;
    if (obj.lastModified !== undefined) headers['last-modified'] = obj.lastModified;
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    // RFC 9110 13.2.2: If-None-Match wins over If-Modified-Since when both are present.
    const notModified =
      inm !== undefined
        ? obj.etag !== undefined && noneMatch(inm, obj.etag)
        : ims !== undefined && obj.lastModified !== undefined && Date.parse(ims) >= obj.lastModifiedMs;
    if (notModified) {
      stats.notModified++;
      send(req, res, 304, headers, '');
      return;
    }
    send(req, res, 200, headers, obj.body);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    stats.requests++;
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const seen = counts.get(path);
    if (seen !== undefined) counts.set(path, seen + 1);
    else if (counts.size < MAX_COUNTED_PATHS) counts.set(path, 1);
    const method = req.method ?? 'GET';

    if (method === 'PUT') {
      const body = await readBody(req, cfg.maxPutBytes);
      const old = objects.get(path) ?? generated(path);
      if (old === undefined && objects.size >= MAX_DEMO_OBJECTS) throw new HttpError(507, 'ARCHLAB_CDN_LIMIT', `the demo origin holds at most ${MAX_DEMO_OBJECTS} objects`);
      const ct = req.headers['content-type'] ?? old?.contentType ?? 'application/octet-stream';
      const obj = make(
        body,
        { contentType: ct, cacheControl: old?.cacheControl ?? 'public, max-age=60', ...(old?.surrogateKey === undefined ? {} : { surrogateKey: old.surrogateKey }), etag: true, lastModified: true },
        (old?.version ?? 0) + 1,
      );
      // Last-Modified must move forward even within the same second, or If-Modified-Since would still match.
      if (old !== undefined && obj.lastModifiedMs <= old.lastModifiedMs) {
        obj.lastModifiedMs = old.lastModifiedMs + 1000;
        obj.lastModified = httpDate(obj.lastModifiedMs);
      }
      objects.set(path, obj);
      deleted.delete(path);
      send(req, res, 204, { etag: obj.etag }, '');
      return;
    }
    if (method === 'DELETE') {
      const existed = objects.delete(path) || generated(path) !== undefined;
      if (path.startsWith(cfg.generated.prefix)) deleted.add(path);
      send(req, res, existed ? 204 : 404, {}, '');
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      send(req, res, 405, { allow: 'GET, HEAD, PUT, DELETE', 'content-type': 'text/plain' }, `${method} not allowed\n`);
      return;
    }
    const obj = objects.get(path) ?? generated(path);
    if (obj !== undefined) return serveObject(req, res, obj);
    if (path === '/slow') {
      const asked = q < 0 ? null : new URLSearchParams(target.slice(q + 1)).get('ms');
      const ms = Math.min(MAX_SLOW_MS, asked !== null && /^\d{1,9}$/.test(asked) ? Number(asked) : cfg.slowMs);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          waits.delete(t);
          resolve();
        }, ms);
        waits.set(t, resolve);
      });
      send(req, res, 200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=10' }, `slow answer after ${ms}ms\n`);
      return;
    }
    if (path === '/private') {
      const n = ++privateCounter;
      send(req, res, 200, { 'content-type': 'text/plain', 'cache-control': 'private, max-age=60', 'set-cookie': `session=${n}; Path=/; HttpOnly` }, `private answer ${n}\n`);
      return;
    }
    send(req, res, 404, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=10' }, `no object at ${path}\n`);
  };

  const server = http.createServer({ keepAliveTimeout: 5000, requestTimeout: 60_000, headersTimeout: 10_000 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) opts.logger?.error({ err }, 'demo origin request failed');
      res.writeHead(status, { 'content-type': 'text/plain', connection: status === 413 ? 'close' : 'keep-alive' });
      res.end(`${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  const handle0 = await listen(server, { host: cfg.host, port: cfg.port, drainTimeoutMs: opts.drainTimeoutMs ?? 10_000 });
  return {
    url: handle0.address.url!,
    address: handle0.address,
    stats: () => ({ ...stats }),
    requestsFor: (path) => counts.get(path) ?? 0,
    close: async () => {
      for (const [t, resolve] of waits) {
        clearTimeout(t);
        resolve();
      }
      waits.clear();
      await handle0.close();
    },
  };
}
