/**
 * The link from a node to its upstream (the next tier, or the origin): one undici Pool with
 * keep-alive, a timeout per phase, and an injected one-way latency (simulated geography) paid before
 * the request leaves and again before the response head is handed back.
 */
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { Clock, TimerHandle } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { CdnError } from '../errors.js';
import type { Headers } from '../types.js';

export interface UpstreamOptions {
  url: URL;
  /** One-way latency added on the way there and on the way back, ms. */
  latencyMs: number;
  connectMs: number;
  /** Request sent -> whole response head received, ms. */
  responseMs: number;
  /** Longest pause inside a response body, ms. */
  idleMs: number;
  /** Largest response header block, bytes (undici maxHeaderSize). */
  maxHeaderBytes: number;
  connections: number;
  clock: Clock;
}

export interface UpstreamRequest {
  method: string;
  /** Normalised path and query. */
  path: string;
  headers: Headers;
  body?: Readable;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** Idle upstream keep-alive sockets are closed after this, below Node's default 5 s server keep-alive, so a reused socket is rarely one the peer is closing. */
const UPSTREAM_KEEPALIVE_MS = 4000;

const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

/**
 * The CdnError for a failed upstream exchange: timeouts (connect, head, body) are
 * ARCHLAB_CDN_UPSTREAM_TIMEOUT (504), an oversized response head ARCHLAB_CDN_HEADERS_TOO_LARGE (502),
 * anything else (refused, reset, DNS) ARCHLAB_CDN_UPSTREAM_FAILED (502). CdnErrors pass through.
 */
export function upstreamError(err: unknown, where: string): CdnError {
  if (err instanceof CdnError) return err;
  if (isArchlabError(err)) return new CdnError('ARCHLAB_CDN_UPSTREAM_FAILED', err.message, { cause: err });
  const code = (err as { code?: string } | undefined)?.code ?? '';
  const message = err instanceof Error ? err.message : String(err);
  if (TIMEOUT_CODES.has(code)) return new CdnError('ARCHLAB_CDN_UPSTREAM_TIMEOUT', `upstream ${where} timed out (${code})`, { cause: err, details: { upstream: where, errno: code } });
  if (code === 'UND_ERR_HEADERS_OVERFLOW') return new CdnError('ARCHLAB_CDN_HEADERS_TOO_LARGE', `upstream ${where} sent a response header block over the limit`, { cause: err, details: { upstream: where } });
  return new CdnError('ARCHLAB_CDN_UPSTREAM_FAILED', `upstream ${where} failed: ${message}${code ? ` (${code})` : ''}`, { cause: err, details: { upstream: where, errno: code } });
}

export class Upstream {
  readonly origin: string;
  private readonly pool: Pool;
  /** Latency timers pending; cancelled (their requests rejected) by close(). Bounded by requests in flight. */
  private readonly timers = new Set<{ handle: TimerHandle; reject: (e: unknown) => void }>();
  private closed = false;

  constructor(private readonly o: UpstreamOptions) {
    this.origin = o.url.origin;
    this.pool = new Pool(this.origin, {
      connections: o.connections,
      pipelining: 1,
      keepAliveTimeout: UPSTREAM_KEEPALIVE_MS,
      keepAliveMaxTimeout: UPSTREAM_KEEPALIVE_MS,
      headersTimeout: o.responseMs,
      bodyTimeout: o.idleMs,
      maxHeaderSize: o.maxHeaderBytes,
      connect: { timeout: o.connectMs },
    });
  }

  /** Sends `r` (after the injected latency) and resolves with the response head (after the latency again). Rejects with a CdnError. */
  async request(r: UpstreamRequest): Promise<UpstreamResponse> {
    if (this.closed) throw new CdnError('ARCHLAB_CDN_CLOSED', 'edge is closed');
    if (this.o.latencyMs > 0) await this.delay();
    let res;
    try {
      res = await this.pool.request({
        method: r.method as 'GET',
        path: r.path,
        headers: r.headers as Record<string, string | string[]>,
        body: r.body ?? null,
      });
    } catch (err) {
      throw upstreamError(err, this.origin);
    }
    if (this.o.latencyMs > 0) {
      try {
        await this.delay();
      } catch (err) {
        res.body.on('error', () => undefined);
        res.body.destroy();
        throw err;
      }
    }
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  private delay(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.closed) {
        reject(new CdnError('ARCHLAB_CDN_CLOSED', 'edge is closed'));
        return;
      }
      const entry = {
        handle: undefined as unknown as TimerHandle,
        reject,
      };
      entry.handle = this.o.clock.setTimer(this.o.latencyMs, () => {
        this.timers.delete(entry);
        resolve();
      });
      this.timers.add(entry);
    });
  }

  /** Cancels the latency timers (their requests fail with ARCHLAB_CDN_CLOSED) and destroys the pool's connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) {
      t.handle.cancel();
      t.reject(new CdnError('ARCHLAB_CDN_CLOSED', 'edge is closed'));
    }
    this.timers.clear();
    await this.pool.destroy().catch(() => undefined);
  }
}
