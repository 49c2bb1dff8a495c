/**
 * The dashboard of `archlab up`: one HTTP listener that serves the web app (web/dist, built by
 * `npm run build:web`, which `npm install` runs) and its API (protocol.ts):
 *
 *   GET  /, /assets/...   the web app; CSP default-src 'self' (the page loads nothing from elsewhere)
 *   GET  /api/state       { hello }: the graph, the choices, the recent frames and events
 *   GET  /api/stream      Server-Sent Events: `hello` once, then a `frame` per collector interval
 *   POST /api/control     a Control (JSON) -> the running system changes (UpHandle.controls)
 *
 * Controls change a running system, so a page from another origin must not be able to use them:
 * a control needs `Content-Type: application/json` (which no cross-origin form or simple request
 * can send without a preflight this server never grants) and, when the browser sends an Origin, one
 * equal to this server's own. The listener binds loopback by default.
 *
 * Bounded: at most `maxStreams` event streams (503 beyond), a stream whose client does not read
 * (more than 1 MiB queued) is cut, control bodies are at most 4 KiB, every request has timeouts.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as http from 'node:http';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { SSE_HEADERS, sseEvent } from '../../core/http.js';
import { ArchlabError, HttpError, InvalidArgumentError, isArchlabError, listen, readJsonBody, sendError, sendJson, type ServerHandle } from '../../core/index.js';
import type { UpHandle } from '../runner.js';
import { Collector, type CollectorOptions } from './collector.js';
import type { Control, ControlResult, Frame } from './protocol.js';

/** web/dist of this checkout: from src/up/dashboard (tsx) and from dist/up/dashboard (built) alike. */
export const DEFAULT_WEB_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../web/dist');

export interface DashboardOptions extends CollectorOptions {
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** 0 = a free port. Default 0. */
  port?: number;
  /** Where the built web app is. Default web/dist of this checkout. */
  webRoot?: string;
  /** Concurrent event streams. Default 32. */
  maxStreams?: number;
  drainTimeoutMs?: number;
}

export interface DashboardHandle {
  readonly url: string;
  readonly port: number;
  readonly collector: Collector;
  /** False when web/dist was not there at start: the API works, the page says how to build it. */
  readonly webBuilt: boolean;
  /** Ends every stream, stops the collector, closes the listener. Idempotent. */
  close(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

const MAX_STATIC_BYTES = 16 * 1024 * 1024;
const MAX_CONTROL_BYTES = 4096;
const MAX_QUEUED_STREAM_BYTES = 1024 * 1024;

interface StaticFile {
  body: Buffer;
  type: string;
  immutable: boolean;
}

/** Every file under `root`, read once (the build is small; the cap refuses a surprise). */
function loadStatic(root: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  let total = 0;
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        walk(path);
        continue;
      }
      const body = readFileSync(path);
      total += body.length;
      if (total > MAX_STATIC_BYTES) throw new InvalidArgumentError(`${root} holds more than ${MAX_STATIC_BYTES} bytes: not a dashboard build`);
      const rel = '/' + relative(root, path).split(sep).join('/');
      files.set(rel, { body, type: CONTENT_TYPES[extname(name)] ?? 'application/octet-stream', immutable: rel.startsWith('/assets/') });
    }
  };
  walk(root);
  return files;
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>archlab up</title>
<p>The dashboard's web app is not built. Run <code>npm run build:web</code> (npm install does it) and restart <code>archlab up</code>.
The API works meanwhile: <a href="/api/state">/api/state</a>.</p>`;

const zControl = z.discriminatedUnion('action', [
  z.object({ action: z.literal('kill-app'), app: z.string().max(64) }),
  z.object({ action: z.literal('restart-app'), app: z.string().max(64) }),
  z.object({ action: z.literal('set-algorithm'), algorithm: z.string().max(64) }),
  z.object({ action: z.literal('set-cache-strategy'), strategy: z.string().max(64) }),
  z.object({ action: z.literal('cut-cache'), cut: z.boolean() }),
  z.object({ action: z.literal('cut-database'), cut: z.boolean() }),
  z.object({ action: z.literal('purge-cdn') }),
  z.object({ action: z.literal('spike'), factor: z.number(), seconds: z.number() }),
  z.object({ action: z.literal('set-rate'), rate: z.number() }),
  z.object({ action: z.literal('set-payments-failure-rate'), rate: z.number() }),
  z.object({ action: z.literal('set-payments-latency'), ms: z.number() }),
  z.object({ action: z.literal('stop-worker') }),
  z.object({ action: z.literal('start-worker') }),
]);

/** Runs one control on the running system; the message says what happened. */
async function runControl(up: UpHandle, c: Control): Promise<string> {
  const apps = up.components.filter((x) => x.kind === 'app').map((x) => x.name);
  const appIndex = (name: string): number => {
    const i = apps.indexOf(name);
    if (i < 0) throw new HttpError(404, 'ARCHLAB_NOT_FOUND', `no app instance "${name}": expected one of ${apps.join(', ')}`);
    return i;
  };
  switch (c.action) {
    case 'kill-app':
      await up.controls.killApp(appIndex(c.app));
      return `killed ${c.app}`;
    case 'restart-app':
      await up.controls.restartApp(appIndex(c.app));
      return `restarted ${c.app}`;
    case 'set-algorithm':
      up.controls.setAlgorithm(c.algorithm as Parameters<UpHandle['controls']['setAlgorithm']>[0]);
      return `balancer algorithm: ${c.algorithm}`;
    case 'set-cache-strategy':
      await up.controls.setCacheStrategy(c.strategy as Parameters<UpHandle['controls']['setCacheStrategy']>[0]);
      return `cache strategy: ${c.strategy}`;
    case 'cut-cache':
      up.controls.cutCache(c.cut);
      return c.cut ? 'app instances cut off from the cache' : 'app instances reconnected to the cache';
    case 'cut-database':
      up.controls.cutDatabase(c.cut);
      return c.cut ? 'app instances cut off from the database' : 'app instances reconnected to the database';
    case 'purge-cdn': {
      const { purged } = await up.controls.purgeCdn();
      return `purged ${purged} objects from every CDN node`;
    }
    case 'spike':
      up.controls.spike(c.factor, c.seconds);
      return `spike: ${c.factor}x the rate for ${c.seconds} s`;
    case 'set-rate':
      up.controls.setRate(c.rate);
      return `client rate: ${c.rate} req/s`;
    case 'set-payments-failure-rate':
      up.controls.setPaymentsFailureRate(c.rate);
      return `payments fails ${Math.round(c.rate * 100)}% of charges`;
    case 'set-payments-latency':
      up.controls.setPaymentsLatency(c.ms);
      return `payments answers in ${c.ms} ms`;
    case 'stop-worker':
      await up.controls.stopWorker();
      return 'worker stopped';
    case 'start-worker':
      await up.controls.startWorker();
      return 'worker started';
  }
}

export async function startDashboard(up: UpHandle, opts: DashboardOptions = {}): Promise<DashboardHandle> {
  const logger = opts.logger;
  const maxStreams = opts.maxStreams ?? 32;
  if (!Number.isSafeInteger(maxStreams) || maxStreams < 1) throw new InvalidArgumentError(`maxStreams must be an integer >= 1, got ${maxStreams}`);
  const webRoot = opts.webRoot ?? DEFAULT_WEB_ROOT;
  const webBuilt = existsSync(join(webRoot, 'index.html'));
  const files = webBuilt ? loadStatic(webRoot) : new Map<string, StaticFile>();
  if (!webBuilt) logger?.warn({ webRoot }, 'dashboard: the web app is not built (npm run build:web); serving the API only');

  const collector = new Collector(up, opts);
  const streams = new Set<http.ServerResponse>();
  /** Writes an event built by sseEvent(); a client that does not read is cut instead. */
  const writeEvent = (res: http.ServerResponse, text: string): void => {
    if (res.writableLength > MAX_QUEUED_STREAM_BYTES) {
      logger?.warn('dashboard: a stream client does not read; cut');
      res.destroy();
      return;
    }
    res.write(text);
  };
  collector.subscribe((frame: Frame) => {
    if (streams.size === 0) return;
    const text = sseEvent('frame', frame);
    for (const res of streams) writeEvent(res, text);
  });

  const serveStatic = (req: http.IncomingMessage, res: http.ServerResponse, path: string): void => {
    const file = files.get(path === '/' ? '/index.html' : path);
    if (file === undefined) {
      if (!webBuilt && path === '/') {
        res.writeHead(503, { ...SECURITY_HEADERS, 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
        res.end(NOT_BUILT);
        return;
      }
      sendError(res, 404, 'ARCHLAB_NOT_FOUND', `no ${path} here`);
      return;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': file.type,
      'Content-Length': file.body.length,
      'Cache-Control': file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  };

  const serveStream = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (streams.size >= maxStreams) {
      sendError(res, 503, 'ARCHLAB_BUSY', `${maxStreams} dashboard streams are open already`, { 'Retry-After': '5' });
      return;
    }
    res.writeHead(200, SSE_HEADERS);
    req.socket.setTimeout(0);
    req.socket.setNoDelay(true);
    res.write(`retry: 2000\n\n`);
    writeEvent(res, sseEvent('hello', collector.hello()));
    streams.add(res);
    res.once('close', () => streams.delete(res));
  };

  const serveControl = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') throw new HttpError(415, 'ARCHLAB_UNSUPPORTED_MEDIA_TYPE', 'a control is JSON: send Content-Type: application/json');
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) throw new HttpError(403, 'ARCHLAB_FORBIDDEN', `controls are taken from this dashboard's own page only, not from ${origin}`);
    const parsed = zControl.safeParse(await readJsonBody(req, MAX_CONTROL_BYTES));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new HttpError(400, 'ARCHLAB_INVALID_ARGUMENT', `${issue.path.join('.') || 'body'}: ${issue.message}`);
    }
    const control = parsed.data as Control;
    const message = await runControl(up, control);
    collector.record({ level: 'info', source: 'dashboard', message: `control: ${message}` });
    const result: ControlResult = { ok: true, message };
    sendJson(res, 200, result);
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const route = async (): Promise<void> => {
      if (url.pathname === '/api/control') {
        if (req.method !== 'POST') throw new HttpError(405, 'ARCHLAB_METHOD_NOT_ALLOWED', `${req.method} is not allowed on /api/control: POST a control`);
        await serveControl(req, res);
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'ARCHLAB_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`);
      if (url.pathname === '/api/state') return void sendJson(res, 200, { hello: collector.hello() });
      if (url.pathname === '/api/stream') return serveStream(req, res);
      serveStatic(req, res, url.pathname);
    };
    route().catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        if (err.status === 405) res.setHeader('Allow', url.pathname === '/api/control' ? 'POST' : 'GET, HEAD');
        sendError(res, err.status, err.code, err.message);
      } else if (isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT')) {
        sendError(res, 400, err.code, err.message);
      } else if (err instanceof ArchlabError) {
        sendError(res, 409, err.code, err.message);
      } else {
        logger?.error({ err }, 'dashboard: request failed');
        sendError(res, 500, 'ARCHLAB_INTERNAL', 'the dashboard failed on this request; see its log');
      }
    });
  };

  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5000, maxHeaderSize: 16 * 1024 }, handler);
  server.maxConnections = 256;
  let listener: ServerHandle;
  try {
    listener = await listen(server, { host: opts.host ?? '127.0.0.1', port: opts.port ?? 0, drainTimeoutMs: opts.drainTimeoutMs ?? 2000 });
  } catch (err) {
    await collector.stop();
    throw err;
  }
  collector.start();
  let closing: Promise<void> | undefined;
  return {
    url: listener.address.url!,
    port: listener.address.port,
    collector,
    webBuilt,
    close: () =>
      (closing ??= (async () => {
        await collector.stop();
        for (const res of streams) res.end();
        streams.clear();
        await listener.close();
      })()),
  };
}
