/**
 * The origin every system in bench/cdn fronts: node:http serving `objects` small fixed objects,
 * `/o/0000000` .. `/o/<objects - 1>`, each `bodyBytes` long, with `Cache-Control: public,
 * max-age=3600`, a strong ETag and a Last-Modified, so every cache stores them for the whole run.
 * The body starts with the object's path, so a cache that answers with the wrong object is caught.
 *
 * `GET /__stats` answers `{"served":N}`: objects served so far (the bench checks that a run meant to
 * be all hits made no origin request). With `recordArrivals`, the arrival time of every object
 * request is kept (bounded) for the origin-load-over-time chart.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { BenchProcessError } from '../balancer-l7/procs.js';

export const OBJECT_PREFIX = '/o/';
/** Digits of an object's index in its path: fixed width, so every object's head has the same size. */
const DIGITS = 7;
export const MAX_OBJECTS = 10 ** DIGITS;

/** The path of object `i`. */
export function objectPath(i: number): string {
  return OBJECT_PREFIX + String(i).padStart(DIGITS, '0');
}

/** The body of the object at `path`: the path, a space, then dots, then a newline; `bytes` long. */
export function objectBody(path: string, bytes: number): Buffer {
  const b = Buffer.alloc(bytes, 0x2e);
  b.write(`${path} `, 0, 'latin1');
  if (bytes > 0) b[bytes - 1] = 0x0a;
  return b;
}

/** True when `body` is the body of the object at `path` (the check every verification makes). */
export function isObjectBody(path: string, body: Buffer | string, bytes: number): boolean {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  return b.length === bytes && objectBody(path, bytes).equals(b);
}

export interface OriginOptions {
  /** Objects served: indices 0 .. objects - 1 (at most 10,000,000). */
  objects: number;
  /** Body bytes of every object. */
  bodyBytes: number;
  /** Port on 127.0.0.1; 0 picks one. Default 0. */
  port?: number;
  /** max-age of every object, seconds. Default 3600. */
  maxAgeS?: number;
  /** Keep the arrival time of every object request (performance.now() ms), at most this many. Default 0 (none). */
  recordArrivals?: number;
}

export interface OriginHandle {
  readonly port: number;
  readonly url: string;
  /** Object requests served so far. */
  served(): number;
  /** Arrival times recorded (ms, performance.now() of this process), oldest first. */
  arrivals(): Float64Array;
  /** Forgets the arrivals recorded so far. */
  resetArrivals(): void;
  close(): Promise<void>;
}

/** Bodies of the hottest objects, built once (the rest are built per request). */
const BODY_CACHE_OBJECTS = 1000;

export function startOrigin(o: OriginOptions): Promise<OriginHandle> {
  if (!(Number.isSafeInteger(o.objects) && o.objects >= 1 && o.objects <= MAX_OBJECTS)) throw new BenchProcessError(`origin: objects must be 1..${MAX_OBJECTS}`);
  if (!(Number.isSafeInteger(o.bodyBytes) && o.bodyBytes >= 16 && o.bodyBytes <= 64 << 20)) throw new BenchProcessError('origin: bodyBytes must be 16 B .. 64 MiB');
  const maxAgeS = o.maxAgeS ?? 3600;
  const lastModified = new Date(Math.floor(Date.now() / 1000) * 1000 - 86_400_000).toUTCString();
  const cacheControl = `public, max-age=${maxAgeS}`;
  const bodies = new Map<number, Buffer>();
  const arrivals = new Float64Array(o.recordArrivals ?? 0);
  let recorded = 0;
  let served = 0;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    // Drain any request body so the connection can be reused.
    req.resume();
    const url = req.url ?? '/';
    if (url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ served }));
      return;
    }
    const index = url.startsWith(OBJECT_PREFIX) && url.length === OBJECT_PREFIX.length + DIGITS ? Number(url.slice(OBJECT_PREFIX.length)) : -1;
    if (!(Number.isInteger(index) && index >= 0 && index < o.objects)) {
      res.writeHead(404, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end('no such object\n');
      return;
    }
    served++;
    if (recorded < arrivals.length) arrivals[recorded++] = performance.now();
    let body = bodies.get(index);
    if (!body) {
      body = objectBody(url, o.bodyBytes);
      if (index < BODY_CACHE_OBJECTS) bodies.set(index, body);
    }
    const etag = `"o${index.toString(16).padStart(6, '0')}"`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag, 'cache-control': cacheControl, 'last-modified': lastModified });
      res.end();
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/plain',
      'content-length': String(body.length),
      'cache-control': cacheControl,
      etag,
      'last-modified': lastModified,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const server = createServer(handle);
  // Longer than every cache's idle upstream timeout, so none reuses a socket we just closed.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
  server.requestTimeout = 0;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        served: () => served,
        arrivals: () => arrivals.slice(0, recorded),
        resetArrivals: () => {
          recorded = 0;
        },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
