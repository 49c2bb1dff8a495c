/**
 * One HTTP caching tier (an edge or a shield): look the request up, answer from storage when the
 * policy allows, otherwise fetch from the upstream through a Flight (collapsing, streaming while
 * storing, revalidation), serve stale when allowed, pass unsafe methods through and invalidate, and
 * take PURGE requests.
 *
 * The hit path (GET/HEAD, fresh object in memory) is synchronous from the request event to
 * `res.end(body)`: a memoised key, one variants() and one get() on storage, the policy's freshness,
 * and a header array prepared once per stored head (only Age, X-Cache and Server-Timing are added
 * per request).
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import { pipeline, Transform, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { listen, type ServerHandle } from '../../core/lifecycle.js';
import { CdnError } from '../errors.js';
import { normalizeHost, normalizeTarget, primaryKey, type KeyOptions } from '../key.js';
import { CdnPolicy, parseRange, type Freshness } from '../policy/index.js';
import { bodyStreamReady } from '../storage/index.js';
import type {
  CacheOutcome,
  CacheRequest,
  CacheResponse,
  CdnStorage,
  EdgeCounters,
  EdgeStats,
  Headers,
  PurgeRequest,
  PurgeResult,
  PurgeSelector,
  StoredObject,
  StoredObjectMeta,
} from '../types.js';
import { installFastPath } from './fast-path.js';
import { Exchange, Flight, type FlightSpec } from './flight.js';
import { HitForPass } from './hit-for-pass.js';
import type { ResolvedEdgeOptions } from './options.js';
import { fastHead, ifRangeMatches, notModified, prepare, withLength, type Prepared } from './prepared.js';
import { parsePurge, purgeAuthorized } from './purge.js';
import { Upstream } from './upstream.js';


/** Methods that never invalidate stored responses (RFC 9110 9.2.1 safe methods). */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** Bound on the memoised host and key normalisations (each map is cleared when it passes this). */
const MEMO_MAX = 10_000;

/** HTTP status of each error code. */
const STATUS: Record<CdnError['code'], number> = {
  ARCHLAB_CDN_UPSTREAM_FAILED: 502,
  ARCHLAB_CDN_UPSTREAM_TIMEOUT: 504,
  ARCHLAB_CDN_NOT_CACHED: 504,
  ARCHLAB_CDN_HEADERS_TOO_LARGE: 502,
  ARCHLAB_CDN_BAD_REQUEST: 400,
  ARCHLAB_CDN_BODY_TOO_LARGE: 413,
  ARCHLAB_CDN_UNAUTHORIZED: 401,
  ARCHLAB_CDN_PURGE_INCOMPLETE: 504,
  ARCHLAB_CDN_LIMIT: 503,
  ARCHLAB_CDN_STORAGE: 500,
  ARCHLAB_CDN_CLOSED: 503,
};

/** What a client is told (upstream addresses and errnos stay in the logs). BAD_REQUEST and LIMIT say their own message: it is about the client's request. */
const CLIENT_MESSAGE: Partial<Record<CdnError['code'], string>> = {
  ARCHLAB_CDN_UPSTREAM_FAILED: 'the upstream could not be reached',
  ARCHLAB_CDN_UPSTREAM_TIMEOUT: 'the upstream did not answer in time',
  ARCHLAB_CDN_NOT_CACHED: 'only-if-cached, and nothing usable is stored',
  ARCHLAB_CDN_HEADERS_TOO_LARGE: 'the upstream response header block is over the limit',
  ARCHLAB_CDN_UNAUTHORIZED: 'PURGE needs Authorization: Bearer <token>',
  ARCHLAB_CDN_STORAGE: 'storage failed',
  ARCHLAB_CDN_CLOSED: 'the node is shutting down',
};

/** The HTTP status an error is answered with (details.status overrides, e.g. 431 for a request's HEADERS_TOO_LARGE). */
export function errorStatus(err: CdnError): number {
  const s = err.details?.status;
  return typeof s === 'number' ? s : STATUS[err.code];
}

/** Host fields in a raw header list (node keeps only the first in req.headers). */
function hostCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') n++;
  }
  return n;
}

function bodiless(status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status < 200);
}

function onlyIfCached(h: Headers): boolean {
  const cc = h['cache-control'];
  if (cc === undefined) return false;
  return (typeof cc === 'string' ? cc : cc.join(',')).toLowerCase().includes('only-if-cached');
}

export class Edge {
  readonly policy: CdnPolicy;
  readonly upstream: Upstream;
  readonly hfp: HitForPass;
  /** This hop's Via entry ("1.1 <name>"). */
  readonly via: string;
  readonly counters: EdgeCounters = {
    requests: 0,
    hits: 0,
    misses: 0,
    stale: 0,
    revalidated: 0,
    passes: 0,
    errors: 0,
    collapsed: 0,
    bytesFromCache: 0,
    bytesFromUpstream: 0,
    upstreamRequests: 0,
    purges: 0,
  };
  closed = false;
  /** Fills later misses for the same primary key may join. */
  private readonly flights = new Map<string, Flight>();
  /** Every fetch not finished (purges mark the ones they match). Bounded by requests in flight plus maxBackgroundRefreshes. */
  private readonly active = new Set<Flight>();
  private readonly background = new Set<Flight>();
  private readonly prepared = new WeakMap<StoredObjectMeta, Prepared>();
  private readonly hosts = new Map<string, string>();
  private readonly keys = new Map<string, Map<string, string>>();
  private keyCount = 0;
  private readonly timingPrefix: string;
  private readonly desc: Record<CacheOutcome, string>;
  private readonly server: http.Server;
  private handle: ServerHandle | undefined;

  constructor(
    readonly o: ResolvedEdgeOptions,
    readonly storage: CdnStorage,
    readonly keyOptions: KeyOptions,
    policyOptions: ConstructorParameters<typeof CdnPolicy>[0],
    readonly clock: Clock,
    readonly logger: Logger,
  ) {
    this.policy = new CdnPolicy(policyOptions);
    this.hfp = new HitForPass(o.hitForPassMs, o.maxHitForPassKeys);
    this.via = `1.1 ${o.name}`;
    this.timingPrefix = `${o.tier};dur=`;
    const desc = (outcome: string): string => `;desc="${o.name} ${outcome}"`;
    this.desc = { HIT: desc('HIT'), MISS: desc('MISS'), STALE: desc('STALE'), REVALIDATED: desc('REVALIDATED'), PASS: desc('PASS'), ERROR: desc('ERROR') };
    this.upstream = new Upstream({
      url: o.upstream,
      latencyMs: o.upstreamLatencyMs,
      connectMs: o.upstreamConnectMs,
      responseMs: o.upstreamResponseMs,
      idleMs: o.idleMs,
      maxHeaderBytes: o.maxHeaderBytes,
      connections: o.maxUpstreamConnections,
      clock,
    });
    this.server = http.createServer(
      {
        maxHeaderSize: o.maxHeaderBytes,
        headersTimeout: o.headersMs,
        requestTimeout: Math.max(300_000, o.headersMs),
        keepAliveTimeout: o.idleMs,
        connectionsCheckingInterval: Math.min(1000, o.headersMs),
        noDelay: true,
      },
      this.onRequest,
    );
    this.server.timeout = o.idleMs;
    this.server.maxConnections = o.maxConnections;
    this.server.on('clientError', this.onClientError);
    if (o.fastPath) {
      this.fast = installFastPath(this.server, {
        hit: (method, host, url, headers, t0) => this.fastHit(method, host, url, headers, t0),
        maxHeaderBytes: o.maxHeaderBytes,
        idleMs: o.idleMs,
      });
    }
  }

  /** The sockets on the fast path (fast-path.ts), when it is on. */
  private fast: { closeAll(): void } | undefined;

  async listen(): Promise<ServerHandle> {
    this.handle = await listen(this.server, { host: this.o.host, port: this.o.port, drainTimeoutMs: this.o.drainMs });
    return this.handle;
  }

  async close(): Promise<void> {
    this.closed = true;
    // Fast-path sockets are idle between reads (a hit is answered within the read): end them now.
    this.fast?.closeAll();
    if (this.handle !== undefined) await this.handle.close();
    else if (this.server.listening) await new Promise<void>((r) => this.server.close(() => r()));
    await this.upstream.close();
    const closed = new CdnError('ARCHLAB_CDN_CLOSED', 'edge closed');
    for (const f of [...this.active]) f.fail(closed);
    this.active.clear();
    this.flights.clear();
    this.background.clear();
    this.hfp.clear();
  }

  stats(): EdgeStats {
    return { name: this.o.name, region: this.o.region, tier: this.o.tier, ...this.counters, storage: this.storage.stats() };
  }

  // --- requests ---

  private readonly onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const t0 = performance.now();
    this.counters.requests++;
    const method = req.method ?? 'GET';
    const x = new Exchange(req, res, method, t0);
    try {
      if (hostCount(req.rawHeaders) > 1) throw new CdnError('ARCHLAB_CDN_BAD_REQUEST', 'more than one Host header (RFC 9112 3.2)');
      if (method === 'GET' || method === 'HEAD') this.cacheable(x);
      else if (method === 'PURGE') this.purgeHttp(x);
      else this.forward(x);
    } catch (err) {
      this.unexpected(x, err);
    }
  };

  private unexpected(x: Exchange, err: unknown): void {
    if (err instanceof CdnError) {
      this.sendError(x, err);
      return;
    }
    this.logger.error({ err, method: x.method, url: x.req.url }, 'unexpected error in the edge');
    this.answer(x, 500, 'ARCHLAB_INTERNAL', 'internal error');
  }

  /** Request head over maxHeaderBytes (431), a head that took longer than headersMs (408), or unparsable (400). */
  private readonly onClientError = (err: NodeJS.ErrnoException, socket: net.Socket): void => {
    const code = err.code ?? '';
    if (!socket.writable || code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    this.counters.requests++;
    this.counters.errors++;
    const [status, reason, xerr] =
      code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'ARCHLAB_CDN_HEADERS_TOO_LARGE']
        : code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', 'ARCHLAB_CDN_BAD_REQUEST']
          : [400, 'Bad Request', 'ARCHLAB_CDN_BAD_REQUEST'];
    const body = `${status} ${reason}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n` +
        `X-Archlab-Error: ${xerr}\r\nVia: ${this.via}\r\n\r\n${body}`,
    );
  };

  /**
   * Sets x.host, x.pk and x.creq from the request. Host and key normalisations are memoised (bounded):
   * the same URLs come back on a CDN. Throws CdnError ARCHLAB_CDN_BAD_REQUEST.
   */
  private target(x: Exchange, rawHost: string | undefined, url: string): void {
    if (rawHost === undefined || rawHost === '') throw new CdnError('ARCHLAB_CDN_BAD_REQUEST', 'the request has no Host');
    const pk = this.keyFor(rawHost, url);
    x.host = this.lastHost;
    x.pk = pk;
    x.creq = { method: x.method, scheme: 'http', host: x.host, url, headers: x.req.headers as Headers };
  }

  /** Normalised host of the last keyFor() call (set with it, so keyFor returns one value). */
  private lastHost = '';

  /** The primary key of a request target (memoised); sets lastHost. Throws ARCHLAB_CDN_BAD_REQUEST. */
  private keyFor(rawHost: string, url: string): string {
    let host = this.hosts.get(rawHost);
    if (host === undefined) {
      host = normalizeHost(rawHost, 'http');
      if (this.hosts.size >= MEMO_MAX) this.hosts.clear();
      this.hosts.set(rawHost, host);
    }
    let byUrl = this.keys.get(host);
    let pk = byUrl?.get(url);
    if (pk === undefined) {
      pk = primaryKey({ scheme: 'http', host, url }, this.keyOptions);
      if (this.keyCount >= MEMO_MAX) {
        this.keys.clear();
        this.keyCount = 0;
        byUrl = undefined;
      }
      if (byUrl === undefined) this.keys.set(host, (byUrl = new Map()));
      byUrl.set(url, pk);
      this.keyCount++;
    }
    this.lastHost = host;
    return pk;
  }

  /**
   * The fast path's question (fast-path.ts): is this GET or HEAD a fresh hit held in memory? Then
   * the whole response head as text and the body, counted as a HIT; else undefined and nothing
   * counted (the request goes to node:http and the full path). Never throws.
   */
  fastHit(method: 'GET' | 'HEAD', rawHost: string, url: string, headers: Headers, t0: number): { head: string; body: Buffer | undefined } | undefined {
    if (this.closed) return undefined;
    let pk: string;
    try {
      pk = this.keyFor(rawHost, url);
    } catch {
      return undefined;
    }
    const creq: CacheRequest = { method, scheme: 'http', host: this.lastHost, url, headers };
    if (!this.policy.requestCacheable(creq)) return undefined;
    const found = this.lookup(creq, pk);
    if (found === undefined || found.body === undefined) return undefined;
    const meta = found.meta;
    if (meta.softPurgedAt !== undefined) return undefined;
    const fr = this.policy.freshness(creq, meta, this.clock.now());
    if (!fr.fresh) return undefined;
    const p = this.preparedFor(meta, fr);
    const fixed = fastHead(p);
    if (fixed === undefined) return undefined;
    this.counters.requests++;
    this.count('HIT');
    const age = fr.ageS > 0 ? String(Math.floor(fr.ageS)) : '0';
    let head = fixed + 'age: ' + age + '\r\n';
    if (this.o.xCache) head += 'x-cache: ' + p.xCachePrefix + 'HIT\r\n';
    head += 'server-timing: ' + this.timingPrefix + (performance.now() - t0).toFixed(1) + this.desc.HIT + '\r\n';
    if (method === 'HEAD') return { head, body: undefined };
    this.counters.bytesFromCache += found.body.length;
    return { head, body: found.body };
  }

  private preparedFor(meta: StoredObjectMeta, fr: Freshness): Prepared {
    let p = this.prepared.get(meta);
    if (p === undefined || p.headersRef !== meta.headers || p.bodyBytes !== meta.bodyBytes) {
      p = prepare(meta, this.policy.responseHeaders(meta, fr), this.via);
      this.prepared.set(meta, p);
    }
    return p;
  }

  /** GET and HEAD. */
  private cacheable(x: Exchange): void {
    this.target(x, x.req.headers.host, x.req.url ?? '/');
    const creq = x.creq;
    if (!this.policy.requestCacheable(creq)) {
      this.passSolo(x, false);
      return;
    }
    const found = this.lookup(creq, x.pk);
    if (found !== undefined) {
      const meta = found.meta;
      const fr = this.policy.freshness(creq, meta, this.clock.now());
      const soft = meta.softPurgedAt !== undefined;
      if (fr.fresh && !soft) {
        this.deliver(x, found, fr, 'HIT');
        return;
      }
      if (fr.onlyIfCached) {
        this.sendError(x, new CdnError('ARCHLAB_CDN_NOT_CACHED', 'only-if-cached and the stored response is stale'));
        return;
      }
      if (fr.staleWhileRevalidate && !soft) {
        this.deliver(x, found, fr, 'STALE');
        this.refresh(x, meta);
        return;
      }
      // Kept for the error case: stale-if-error, or a soft-purged object that would still be fresh
      // without the purge (a soft purge says "check", not "never serve").
      if (fr.staleIfError || (soft && this.policy.freshness(creq, { ...meta, softPurgedAt: undefined }, this.clock.now()).fresh)) x.staleKey = meta.key;
      this.fetch(x, meta);
      return;
    }
    if (onlyIfCached(creq.headers)) {
      this.sendError(x, new CdnError('ARCHLAB_CDN_NOT_CACHED', 'only-if-cached and nothing is stored'));
      return;
    }
    this.fetch(x, undefined);
  }

  /** The newest stored variant matching the request's Vary'd headers. */
  private lookup(creq: CacheRequest, pk: string): StoredObject | undefined {
    const vs = this.storage.variants(pk);
    if (vs.length === 0) return undefined;
    let best: StoredObjectMeta | undefined;
    for (let i = 0; i < vs.length; i++) {
      const m = vs[i]!;
      if ((best === undefined || m.storedAt > best.storedAt) && this.policy.varyMatches(creq, m)) best = m;
    }
    return best === undefined ? undefined : this.storage.get(best.key);
  }

  /** A miss (or a stale object to revalidate): join the fetch in flight for the key, or start one. */
  private fetch(x: Exchange, validator: StoredObjectMeta | undefined): void {
    if (this.hfp.has(x.pk, this.clock.now())) {
      this.passSolo(x, true);
      return;
    }
    const f = this.flights.get(x.pk);
    if (f !== undefined) {
      if (f.size >= this.o.maxCollapsedWaiters) {
        this.sendError(x, new CdnError('ARCHLAB_CDN_LIMIT', `more than ${this.o.maxCollapsedWaiters} requests waiting for this object`));
        return;
      }
      this.watch(x);
      f.join(x);
      return;
    }
    this.startFill(x, validator, true);
  }

  /** `first`: x started it (not a background refresh on x's behalf). A fill is a GET whatever the client's method (a HEAD miss fills with GET). */
  private spec(x: Exchange, first: boolean, kind: FlightSpec['kind'], method: string, store: boolean, label: 'MISS' | 'PASS', validator?: StoredObjectMeta, body?: Readable): FlightSpec {
    const t = normalizeTarget(x.creq.url);
    const creq = method === x.creq.method ? x.creq : { ...x.creq, method };
    return { kind, pk: x.pk, path: t.path + t.query, creq, first: first ? x : undefined, peer: x.peer, method, validator, store, label, body, unsafe: !SAFE_METHODS.has(method) };
  }

  private run(f: Flight, x: Exchange | undefined, registered: boolean): void {
    if (registered) this.flights.set(f.spec.pk, f);
    this.active.add(f);
    if (x !== undefined) {
      this.watch(x);
      f.join(x);
    }
    f.start();
  }

  private startFill(x: Exchange, validator: StoredObjectMeta | undefined, registered: boolean): void {
    this.run(new Flight(this, this.spec(x, true, 'fill', 'GET', true, 'MISS', validator)), x, registered);
  }

  /** Forwards the client's GET/HEAD as it is (Range and conditionals too), on its own. `store`: keep the answer if it is a storable reply to a plain GET. */
  passSolo(x: Exchange, store: boolean): void {
    if (x.gone) return;
    const h = x.req.headers;
    const plain = store && x.method === 'GET' && h.range === undefined && h['if-none-match'] === undefined && h['if-modified-since'] === undefined;
    this.run(new Flight(this, this.spec(x, true, 'pass', x.method, plain, 'PASS')), x, false);
  }

  /** stale-while-revalidate: one background revalidation per key (none when a fetch for it is in flight). */
  private refresh(x: Exchange, meta: StoredObjectMeta): void {
    if (this.flights.has(x.pk) || this.background.size >= this.o.maxBackgroundRefreshes || this.closed) return;
    const f = new Flight(this, this.spec(x, false, 'fill', 'GET', true, 'MISS', meta));
    this.background.add(f);
    this.run(f, undefined, true);
  }

  private watch(x: Exchange): void {
    if (x.watched) return;
    x.watched = true;
    x.res.once('close', () => {
      if (!x.res.writableFinished) {
        x.gone = true;
        x.flight?.left(x);
      }
    });
  }

  /** A fetch ended (or stopped taking joiners). */
  flightDone(f: Flight): void {
    if (this.flights.get(f.spec.pk) === f) this.flights.delete(f.spec.pk);
    if (f.phase === 'done') {
      this.active.delete(f);
      this.background.delete(f);
    }
  }

  /** A request waited on `f`: answer it from what `f` stored or revalidated, or send it upstream itself. */
  afterFlight(x: Exchange, f: Flight): void {
    x.flight = undefined;
    if (x.gone) return;
    const found = this.lookup(x.creq, x.pk);
    if (found !== undefined) {
      const fr = this.policy.freshness(x.creq, found.meta, this.clock.now());
      const soft = found.meta.softPurgedAt !== undefined;
      if (found.meta.key === f.storedKey && !soft) {
        // Just fetched or revalidated for this very wait: usable even when max-age is 0 (RFC 9111 4).
        if (x !== f.spec.first) this.counters.collapsed++;
        this.deliver(x, found, fr, f.outcome);
        return;
      }
      if (fr.fresh && !soft) {
        this.deliver(x, found, fr, 'HIT');
        return;
      }
    }
    // Nothing to answer from (not stored, another variant, purged meanwhile): go upstream alone. With
    // a Range, or when the key is hit-for-pass, forward the request as it is.
    if (x.req.headers.range === undefined && !this.hfp.has(x.pk, this.clock.now())) this.startFill(x, undefined, false);
    else this.passSolo(x, false);
  }

  /** The upstream failed: stale-if-error when allowed, else the error. */
  failOrStale(x: Exchange, err: CdnError): void {
    x.flight = undefined;
    if (x.gone) return;
    if (this.serveStaleOnError(x)) return;
    this.sendError(x, err);
  }

  /** Serves x's stale object after an upstream error (RFC 5861 stale-if-error, or a soft purge) and returns true, or returns false. */
  serveStaleOnError(x: Exchange): boolean {
    if (x.staleKey === undefined || x.gone) return false;
    const obj = this.storage.get(x.staleKey);
    if (obj === undefined) return false;
    x.flight = undefined;
    this.deliver(x, obj, this.policy.freshness(x.creq, obj.meta, this.clock.now()), 'STALE');
    return true;
  }

  /** Methods other than GET/HEAD/PURGE: forwarded with their body (bounded), never stored. */
  private forward(x: Exchange): void {
    this.target(x, x.req.headers.host, x.req.url ?? '/');
    const h = x.req.headers;
    const cl = h['content-length'];
    if (cl !== undefined && Number(cl) > this.o.maxBodyBytes) {
      this.sendError(x, this.bodyTooLarge());
      return;
    }
    const hasBody = (cl !== undefined && cl !== '0') || h['transfer-encoding'] !== undefined;
    const body = hasBody ? this.limitBody(x.req) : undefined;
    this.run(new Flight(this, this.spec(x, true, 'pass', x.method, false, 'PASS', undefined, body)), x, false);
  }

  private bodyTooLarge(): CdnError {
    return new CdnError('ARCHLAB_CDN_BODY_TOO_LARGE', `request body over ${this.o.maxBodyBytes} bytes`, { details: { maxBytes: this.o.maxBodyBytes } });
  }

  /** The request body, failing the upstream request once it passes maxBodyBytes. */
  private limitBody(req: http.IncomingMessage): Readable {
    const limit = this.o.maxBodyBytes;
    let n = 0;
    const tooLarge = (): CdnError => this.bodyTooLarge();
    const t = new Transform({
      transform(chunk: Buffer, _enc, cb): void {
        n += chunk.length;
        if (n > limit) cb(tooLarge());
        else cb(null, chunk);
      },
    });
    pipeline(req, t, () => undefined);
    return t;
  }

  /** RFC 9111 4.4: after a non-error answer to an unsafe method, the target URI, Location and Content-Location (same origin) are invalidated. */
  invalidate(creq: CacheRequest, cres: CacheResponse): void {
    const base = `http://${creq.host}${creq.url.startsWith('/') ? creq.url : '/'}`;
    const keyOf = (url: string): string => {
      try {
        const u = new URL(url, base);
        return primaryKey({ scheme: u.protocol.slice(0, -1), host: u.host, url: `${u.pathname}${u.search}` }, this.keyOptions);
      } catch {
        return '';
      }
    };
    for (const pk of this.policy.invalidates(creq, cres, keyOf)) {
      if (pk !== '') this.purgeNow({ selector: { kind: 'url', primaryKey: pk }, mode: 'hard' });
    }
  }

  // --- answering ---

  /** Serves a stored object: 200/206/304/416 by the request's Range and conditionals; HEAD gets the head only. */
  deliver(x: Exchange, obj: StoredObject, fr: Freshness, outcome: CacheOutcome): void {
    const res = x.res;
    if (x.gone || res.headersSent) return;
    const meta = obj.meta;
    const p = this.preparedFor(meta, fr);
    const h = x.req.headers;
    let status = p.status;
    let head: string[];
    let range: { start: number; end: number } | undefined;
    if (status === 200 && (h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined) && notModified(p, h)) {
      status = 304;
      head = withLength(p, undefined);
    } else if (h.range !== undefined && status === 200 && x.method === 'GET' && ifRangeMatches(p, h['if-range'] as string | undefined)) {
      const r = parseRange(h.range, meta.bodyBytes);
      if (r === 'unsatisfiable') {
        this.unsatisfiable(x, p, outcome, meta.bodyBytes);
        return;
      }
      if (r !== undefined) {
        status = 206;
        range = r;
        head = withLength(p, r.end - r.start + 1);
        head.push('content-range', `bytes ${r.start}-${r.end}/${meta.bodyBytes}`);
      } else head = p.head.slice();
    } else head = p.head.slice();
    head.push('age', fr.ageS > 0 ? String(Math.floor(fr.ageS)) : '0');
    if (this.o.xCache) head.push('x-cache', p.xCachePrefix + outcome);
    const withBody = !(status === 304 || x.method === 'HEAD' || bodiless(status));
    const body = obj.body;
    if (!withBody || body !== undefined) {
      head.push('server-timing', this.timing(x, outcome));
      res.writeHead(status, head);
      this.count(outcome);
      if (!withBody) {
        res.end();
        return;
      }
      const b = range === undefined ? body! : body!.subarray(range.start, range.end + 1);
      this.counters.bytesFromCache += b.length;
      res.end(b);
      return;
    }
    // A disk-tier body: its file is opened and checked before the head goes out, so a file gone bad
    // is a miss (storage has dropped the object) rather than a response cut short.
    let stream: NodeJS.ReadableStream;
    try {
      stream = obj.open!(range);
    } catch (err) {
      this.reopen(x, meta.key, err);
      return;
    }
    bodyStreamReady(stream).then(
      () => {
        if (x.gone || res.headersSent) {
          (stream as Readable).destroy();
          return;
        }
        head.push('server-timing', this.timing(x, outcome));
        res.writeHead(status, head);
        this.count(outcome);
        this.counters.bytesFromCache += range === undefined ? meta.bodyBytes : range.end - range.start + 1;
        pipeline(stream, res, (err) => {
          if (err && !x.gone) this.logger.warn({ err, key: meta.key }, 'streaming a stored body failed');
        });
      },
      (err: unknown) => this.reopen(x, meta.key, err),
    );
  }

  /** A stored body could not be opened: look the request up again once (now a miss), else answer 500. */
  private reopen(x: Exchange, key: string, err: unknown): void {
    this.logger.warn({ err, key }, 'opening a stored body failed; the object is dropped');
    this.storage.delete(key);
    if (x.gone || x.res.headersSent) return;
    if (x.reopened) {
      this.sendError(x, new CdnError('ARCHLAB_CDN_STORAGE', `the stored body of ${key} could not be read`));
      return;
    }
    x.reopened = true;
    this.cacheable(x);
  }

  private unsatisfiable(x: Exchange, p: Prepared, outcome: CacheOutcome, length: number): void {
    const head = ['content-range', `bytes */${length}`, 'content-length', '0', 'via', this.via];
    if (p.etag !== undefined) head.push('etag', p.etag);
    if (this.o.xCache) head.push('x-cache', p.xCachePrefix + outcome);
    head.push('server-timing', this.timing(x, outcome));
    x.res.writeHead(416, head);
    x.res.end();
    this.count(outcome);
  }

  timing(x: Exchange, outcome: CacheOutcome): string {
    return this.timingPrefix + (performance.now() - x.t0).toFixed(1) + this.desc[outcome];
  }

  count(outcome: CacheOutcome): void {
    const c = this.counters;
    switch (outcome) {
      case 'HIT':
        c.hits++;
        break;
      case 'MISS':
        c.misses++;
        break;
      case 'STALE':
        c.stale++;
        break;
      case 'REVALIDATED':
        c.revalidated++;
        break;
      case 'PASS':
        c.passes++;
        break;
      case 'ERROR':
        c.errors++;
        break;
    }
  }

  /** An answer of the node's own: a small text body, the code in X-Archlab-Error, never cached. */
  sendError(x: Exchange, err: CdnError): void {
    const status = errorStatus(err);
    this.answer(x, status, err.code, CLIENT_MESSAGE[err.code] ?? err.message);
    if (status >= 500) this.logger.debug({ err, url: x.req.url }, 'answered with an error');
  }

  private answer(x: Exchange, status: number, code: string, message: string): void {
    if (x.gone) return;
    const res = x.res;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `${status} ${http.STATUS_CODES[status] ?? ''}: ${message}\n`;
    const head = [
      'content-type',
      'text/plain; charset=utf-8',
      'content-length',
      String(Buffer.byteLength(body)),
      'cache-control',
      'no-store',
      'x-archlab-error',
      code,
      'via',
      this.via,
    ];
    if (status === 401) head.push('www-authenticate', 'Bearer realm="archlab-cdn"');
    // The rest of an unread request body would be taken for the next request.
    if (status === 413 || status === 400) head.push('connection', 'close');
    if (this.o.xCache) head.push('x-cache', 'ERROR');
    head.push('server-timing', this.timing(x, 'ERROR'));
    res.writeHead(status, head);
    res.end(body);
    this.count('ERROR');
  }

  // --- purge ---

  private purgeHttp(x: Exchange): void {
    const h = x.req.headers;
    if (!purgeAuthorized(h.authorization, this.o.purgeToken)) {
      this.sendError(x, new CdnError('ARCHLAB_CDN_UNAUTHORIZED', 'PURGE without a valid token'));
      return;
    }
    const requests = parsePurge(h, () => {
      // Absolute-form (PURGE http://example.com/a) names the host itself; origin-form uses Host.
      const url = x.req.url ?? '/';
      const m = url.startsWith('/') ? null : /^https?:\/\/([^/?#]*)(.*)$/i.exec(url);
      if (m !== null) this.target(x, m[1], m[2]!.startsWith('/') ? m[2]! : `/${m[2]!}`);
      else this.target(x, h.host, url);
      return x.pk;
    });
    let purged = 0;
    for (const r of requests) purged += this.purgeNow(r);
    this.counters.purges++;
    const body = `${JSON.stringify({ purged })}\n`;
    x.res.writeHead(200, ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), 'cache-control', 'no-store', 'via', this.via]);
    x.res.end(body);
  }

  /** In-process purge (what PURGE does, without the token). */
  purge(req: PurgeRequest): PurgeResult {
    const purged = this.purgeNow(req);
    this.counters.purges++;
    return { purged };
  }

  private purgeNow(req: PurgeRequest): number {
    const sel = req.selector;
    const keys = this.storage.find(sel);
    const now = this.clock.now();
    for (const k of keys) {
      if (req.mode === 'soft') this.storage.updateMeta(k, { softPurgedAt: now });
      else this.storage.delete(k);
    }
    for (const f of this.active) {
      if (selects(sel, f)) f.purged = req.mode === 'hard' || f.purged === 'hard' ? 'hard' : 'soft';
    }
    if (sel.kind === 'url') this.hfp.delete(sel.primaryKey);
    else if (sel.kind === 'prefix') this.hfp.deletePrefix(sel.prefix);
    return keys.length;
  }
}

/** Does a purge select a fetch in flight? By tag only once its response is known; before that, every tag purge does (it may carry the tag). */
function selects(sel: PurgeSelector, f: Flight): boolean {
  switch (sel.kind) {
    case 'url':
      return f.spec.pk === sel.primaryKey;
    case 'prefix':
      return f.spec.pk.startsWith(sel.prefix);
    case 'tag':
      return f.tags === undefined ? f.phase === 'head' : f.tags.includes(sel.tag);
  }
}
