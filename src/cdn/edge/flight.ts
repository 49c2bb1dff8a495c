/**
 * One upstream fetch and the client requests it answers: request collapsing, streaming to clients
 * while storing, revalidation, and what happens to the waiters when the answer turns out to be
 * uncacheable, too large, a 5xx or a failure.
 *
 * Collapsing, decided here: requests for the same primary key that arrive while the fetch waits for
 * its response head join it as waiters (bounded by maxCollapsedWaiters). When the head is known:
 *
 * - storable: every waiter whose request has no Range and whose Vary'd headers give the same variant
 *   is attached to a **tee** of the body: the head is written to each, then each chunk goes to the
 *   storage writer and to every attached client as it arrives. The tee pauses the upstream body
 *   while any attached client is backpressured (the slowest attached client sets the pace; memory
 *   stays at the sockets' buffers). Waiters with a Range, and requests arriving while the body
 *   streams, wait for the commit and are then answered from storage ("latecomers").
 * - too large to store (storage.begin refused) or a 5xx: shared the same way, not stored.
 * - uncacheable (private, no-store, Set-Cookie...): only the request that started the fetch gets
 *   it; every waiter goes upstream itself, and the key is marked hit-for-pass for a short while so
 *   later requests do not queue (Varnish's hit-for-miss).
 * - a failure (connect, reset, timeout, oversized head): each waiter gets stale-if-error when its
 *   stored object allows, otherwise the same 502/504. Waiters do not retry on their own: a dead
 *   origin gets one request per key, not one per client.
 *
 * A fill keeps reading the body to fill the cache after every client has gone (bounded by the
 * object size limit and the idle timeout), as Varnish does; a fetch with nothing to store stops.
 */
import type * as http from 'node:http';
import type { Readable } from 'node:stream';
import { CdnError } from '../errors.js';
import type { CacheOutcome, CacheRequest, CacheResponse, Headers, StorageWriter, StoredObjectMeta } from '../types.js';
import type { Edge } from './edge.js';
import { emptyHeaders, headerBlockBytes, joined, NOT_STORED, pushFlat, stripHopByHop, upstreamRequestHeaders } from './headers.js';
import { upstreamError, type UpstreamResponse } from './upstream.js';

/** One client request as the edge handles it. */
export class Exchange {
  /** Primary cache key ('' until computed). */
  pk = '';
  /** Normalised host. */
  host = '';
  creq!: CacheRequest;
  /** Key of a stored object that may be served if the upstream fails (stale-if-error, soft purge). */
  staleKey: string | undefined;
  /** The client went away before its response was complete. */
  gone = false;
  /** A stored body failed to open once already (disk tier): the next failure is an error, not another lookup. */
  reopened = false;
  /** Its response's 'close' is watched. */
  watched = false;
  /** The flight it waits on or is attached to. */
  flight: Flight | undefined;
  out: Out | undefined;

  constructor(
    readonly req: http.IncomingMessage,
    readonly res: http.ServerResponse,
    readonly method: string,
    readonly t0: number,
  ) {}

  get peer(): string {
    const ip = this.req.socket.remoteAddress ?? '';
    if (ip === '') return 'unknown';
    return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  }
}

export interface FlightSpec {
  /** fill: a cache fill (GET upstream, Range and conditionals dropped). pass: the client's request forwarded as it is. */
  kind: 'fill' | 'pass';
  pk: string;
  /** Upstream path: the normalised target. */
  path: string;
  /** The request the upstream request is made for (its headers are forwarded; method GET for a fill). */
  creq: CacheRequest;
  /** The client request that started it (undefined for a background refresh). */
  first: Exchange | undefined;
  /** Client address for X-Forwarded-For. */
  peer: string;
  /** Upstream method: GET for a fill (a HEAD miss fills with GET), the client's method for a pass. */
  method: string;
  /** Stored variant being revalidated (conditional request). */
  validator?: StoredObjectMeta;
  /** A storable answer may be stored. */
  store: boolean;
  /** X-Cache of the request that started it: MISS or PASS. */
  label: 'MISS' | 'PASS';
  /** Request body (passed methods). */
  body?: Readable;
  /** POST/PUT/PATCH/DELETE...: a non-error answer invalidates the stored URL (RFC 9111 4.4). */
  unsafe: boolean;
}

/** Response fields this tier writes itself when relaying a live response. */
const RELAY_SKIP: ReadonlySet<string> = new Set(['x-cache', 'server-timing', 'via', 'content-length']);

function noop(): void {}

/** Destroys a response body nobody reads, without an unhandled 'error'. */
export function discard(body: Readable): void {
  body.on('error', noop);
  body.destroy();
}

function bodiless(status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status < 200);
}

function contentLength(h: Headers): number | undefined {
  const v = h['content-length'];
  if (typeof v !== 'string') return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Only the validators of a revalidation's headers: the rest of the request is built by upstreamRequestHeaders (which drops unkeyed inputs). */
function validators(h: Headers): Headers {
  const out = emptyHeaders();
  const inm = h['if-none-match'];
  const ims = h['if-modified-since'];
  if (inm !== undefined) out['if-none-match'] = inm;
  if (ims !== undefined) out['if-modified-since'] = ims;
  return out;
}

/** Headers as stored: without the per-exchange ones (NOT_STORED). */
export function storedHeaders(h: Headers): Headers {
  const out = emptyHeaders();
  for (const name in h) if (!NOT_STORED.has(name)) out[name] = h[name]!;
  return out;
}

/** An attached client of the tee. */
export class Out {
  blocked = false;

  constructor(
    readonly f: Flight,
    readonly x: Exchange,
  ) {}

  readonly onDrain = (): void => {
    if (!this.blocked) return;
    this.blocked = false;
    this.f.unblocked();
  };
}

export class Flight {
  /** Joined before the head was known. */
  private waiters: Exchange[] = [];
  /** Joined while the body streams into storage, or not eligible for the tee: answered from storage after the commit. */
  private latecomers: Exchange[] = [];
  private outs: Out[] = [];
  private blocked = 0;
  phase: 'head' | 'body' | 'done' = 'head';
  /** A purge matched this fetch while it ran: a hard one keeps it from being stored, a soft one stores it stale. */
  purged: 'soft' | 'hard' | undefined;
  /** Tags of the response, once known (for purge by tag of a fetch in flight). */
  tags: string[] | undefined;
  /** Key committed or revalidated by this fetch; waiters are answered from it. */
  storedKey: string | undefined;
  outcome: 'MISS' | 'REVALIDATED' = 'MISS';
  private writer: StorageWriter | undefined;
  private key = '';
  private body: Readable | undefined;

  constructor(
    readonly edge: Edge,
    readonly spec: FlightSpec,
  ) {}

  /** Requests waiting on another request's fetch (the collapsing bound applies to this): everyone waiting but the one that started it. */
  get size(): number {
    const first = this.spec.first;
    const n = this.waiters.length + this.latecomers.length;
    return first !== undefined && (this.waiters[0] === first || this.latecomers.includes(first)) ? n - 1 : n;
  }

  join(x: Exchange): void {
    x.flight = this;
    if (this.phase === 'head') this.waiters.push(x);
    else this.latecomers.push(x);
  }

  /** The client of `x` went away. */
  left(x: Exchange): void {
    const out = x.out;
    if (out === undefined) return;
    x.out = undefined;
    const i = this.outs.indexOf(out);
    if (i >= 0) this.outs.splice(i, 1);
    if (out.blocked) {
      out.blocked = false;
      this.unblocked();
    }
    if (this.outs.length === 0 && this.writer === undefined && this.body !== undefined && this.phase !== 'done') {
      // Nobody to send it to and nothing to store: stop downloading.
      this.detachBody();
      this.finish();
    }
  }

  unblocked(): void {
    this.blocked--;
    if (this.blocked === 0 && this.body !== undefined && this.phase !== 'done') this.body.resume();
  }

  start(): void {
    const e = this.edge;
    const s = this.spec;
    let headers: Headers;
    try {
      headers = upstreamRequestHeaders(s.creq.headers, {
        host: s.creq.host,
        via: e.via,
        peer: s.peer,
        fill: s.kind === 'fill',
        extra: s.validator !== undefined ? validators(e.policy.revalidationHeaders(s.creq, s.validator)) : undefined,
      });
    } catch (err) {
      this.fail(err);
      return;
    }
    e.counters.upstreamRequests++;
    e.upstream.request({ method: s.method, path: s.path, headers, body: s.body }).then(
      (r) => {
        try {
          this.onHead(r);
        } catch (err) {
          discard(r.body);
          this.fail(err);
        }
      },
      (err: unknown) => this.fail(err),
    );
  }

  private onHead(r: UpstreamResponse): void {
    const e = this.edge;
    const s = this.spec;
    const now = e.clock.now();
    const headers = stripHopByHop(r.headers);
    if (headerBlockBytes(headers) > e.o.maxHeaderBytes) {
      discard(r.body);
      this.fail(new CdnError('ARCHLAB_CDN_HEADERS_TOO_LARGE', `upstream ${e.upstream.origin} sent a response header block over ${e.o.maxHeaderBytes} bytes`));
      return;
    }
    const status = r.status;
    const cres: CacheResponse = { status, headers };
    if (s.validator !== undefined && status === 304) {
      this.notModified(r, cres, now);
      return;
    }
    if (s.unsafe && status < 400) e.invalidate(s.creq, cres);
    if (status >= 500) {
      // RFC 5861 4: a 5xx counts as an error; whoever holds a usable stale object is served it.
      this.waiters = this.waiters.filter((w) => !e.serveStaleOnError(w));
    }

    const decision = e.policy.storable(s.creq, cres, now);
    const vary = joined(headers.vary);
    const vk = vary === undefined ? '' : e.policy.varyKey(s.creq, vary);
    let tooLarge = false;
    // A 5xx never replaces an object being revalidated: it is what stale-if-error is kept for.
    const keepStale = status >= 500 && s.validator !== undefined;
    if (s.store && decision.store && this.purged !== 'hard' && !keepStale) {
      this.key = vk === '' ? s.pk : `${s.pk}\n${vk}`;
      this.tags = decision.tags;
      this.writer = e.storage.begin(
        { key: this.key, primaryKey: s.pk, status, headers: storedHeaders(decision.headers), policy: decision.state, tags: decision.tags, storedAt: now },
        contentLength(headers),
      );
      if (this.writer === undefined) {
        tooLarge = true;
        e.hfp.add(s.pk, now);
      }
    } else if (s.store && !decision.store && status < 500 && s.creq.headers.authorization === undefined) {
      // Uncacheable for everyone (not because of this request's credentials): hit-for-pass.
      e.hfp.add(s.pk, now);
    }
    // From here on nobody joins unless the body is being stored.
    if (this.writer === undefined) e.flightDone(this);
    else this.phase = 'body';
    const shared = this.writer !== undefined || tooLarge || status >= 500 || s.kind === 'pass';

    // The head relayed to attached clients, built once.
    const base: string[] = [];
    pushFlat(base, decision.headers, RELAY_SKIP);
    const upVia = joined(headers.via);
    base.push('via', upVia !== undefined && upVia !== '' ? `${upVia}, ${e.via}` : e.via);
    const cl = headers['content-length'];
    if (typeof cl === 'string' && !bodiless(status)) base.push('content-length', cl);
    // The policy keeps the upstream's Age in its state, not in the headers; relayed as received (time spent here is ~0).
    const age = headers.age;
    if (typeof age === 'string' && decision.headers.age === undefined) base.push('age', age);
    const upX = joined(headers['x-cache']);
    const xPrefix = upX !== undefined && upX !== '' ? `${upX}, ` : '';
    const upT = joined(headers['server-timing']);
    const tPrefix = upT !== undefined && upT !== '' ? `${upT}, ` : '';

    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (w.gone) continue;
      const first = w === s.first;
      const eligible = s.kind === 'pass' || (w.req.headers.range === undefined && (first || vary === undefined || e.policy.varyKey(w.creq, vary) === vk));
      if (this.writer !== undefined) {
        if (eligible) this.attach(w, status, base, xPrefix, tPrefix, first);
        else this.latecomers.push(w);
      } else if (shared || first) {
        if (eligible) this.attach(w, status, base, xPrefix, tPrefix, first);
        else e.passSolo(w, false);
      } else {
        // Uncacheable: every other waiter makes its own request (it may differ: cookies, credentials).
        w.flight = undefined;
        e.passSolo(w, true);
      }
    }

    if (this.outs.length === 0 && this.writer === undefined) {
      discard(r.body);
      this.finish();
      return;
    }
    this.body = r.body;
    r.body.on('data', this.onData);
    r.body.once('end', this.onEnd);
    r.body.once('error', this.onBodyError);
  }

  private attach(w: Exchange, status: number, base: string[], xPrefix: string, tPrefix: string, first: boolean): void {
    const e = this.edge;
    const label: CacheOutcome = first ? this.spec.label : 'MISS';
    const head = base.slice();
    if (e.o.xCache) head.push('x-cache', xPrefix + label);
    head.push('server-timing', tPrefix + e.timing(w, label));
    w.res.writeHead(status, head);
    e.count(label);
    if (!first) e.counters.collapsed++;
    if (w.method === 'HEAD' || bodiless(status)) {
      w.res.end();
      return;
    }
    const out = new Out(this, w);
    w.out = out;
    this.outs.push(out);
  }

  private readonly onData = (chunk: Buffer): void => {
    const e = this.edge;
    e.counters.bytesFromUpstream += chunk.length;
    this.writer?.write(chunk);
    const outs = this.outs;
    for (let i = 0; i < outs.length; i++) {
      const out = outs[i]!;
      if (!out.x.res.write(chunk) && !out.blocked) {
        out.blocked = true;
        this.blocked++;
        out.x.res.once('drain', out.onDrain);
      }
    }
    if (this.blocked > 0) this.body!.pause();
  };

  private readonly onEnd = (): void => {
    const outs = this.outs;
    this.outs = [];
    for (const out of outs) {
      out.x.out = undefined;
      out.x.res.end();
    }
    const writer = this.writer;
    this.writer = undefined;
    if (writer === undefined) {
      this.finish();
      return;
    }
    if (this.purged === 'hard') {
      writer.abort();
      this.finish();
      return;
    }
    const e = this.edge;
    const s = this.spec;
    writer.commit().then(
      () => {
        if (e.storage.get(this.key) !== undefined) {
          this.storedKey = this.key;
          e.hfp.delete(s.pk);
          if (this.purged === 'soft') e.storage.updateMeta(this.key, { softPurgedAt: e.clock.now() });
        } else {
          // The writer gave up on its own (the body grew past the storage's maxObjectBytes).
          e.hfp.add(s.pk, e.clock.now());
        }
        this.finish();
      },
      (err: unknown) => {
        e.logger.warn({ err, key: this.key }, 'storing an object failed; served uncached');
        this.finish();
      },
    );
  };

  private readonly onBodyError = (err: unknown): void => {
    this.fail(err);
  };

  /** Stops reading the body: listeners off, then destroyed (an error it emits now goes nowhere). */
  private detachBody(): void {
    const b = this.body;
    if (b === undefined) return;
    this.body = undefined;
    b.off('data', this.onData);
    b.off('end', this.onEnd);
    b.off('error', this.onBodyError);
    discard(b);
  }

  private notModified(r: UpstreamResponse, cres: CacheResponse, now: number): void {
    r.body.resume();
    const e = this.edge;
    const s = this.spec;
    const v = s.validator!;
    const upd = e.policy.revalidated(s.creq, v, cres, now);
    if (!upd.modified && this.purged !== 'hard') {
      if (upd.store) {
        // RFC 9111 4.3.4: the stored response gets the 304's fields; a soft purge is cleared (it was checked).
        e.storage.updateMeta(v.key, {
          headers: storedHeaders(upd.headers),
          policy: upd.state,
          tags: upd.tags,
          storedAt: now,
          softPurgedAt: this.purged === 'soft' ? now : undefined,
        });
        this.storedKey = v.key;
        this.outcome = 'REVALIDATED';
      } else {
        // The 304 made it unstorable (no-store, private...): drop it.
        e.storage.delete(v.key);
      }
    }
    e.flightDone(this);
    this.finish();
  }

  /** Done: answer everyone still waiting from storage (or send them upstream themselves). */
  private finish(): void {
    this.phase = 'done';
    this.edge.flightDone(this);
    const rest = this.waiters.concat(this.latecomers);
    this.waiters = [];
    this.latecomers = [];
    for (const w of rest) this.edge.afterFlight(w, this);
  }

  /** The fetch failed: clients mid-body are cut, waiters get stale-if-error or the error. */
  fail(err: unknown): void {
    const e = this.edge;
    const cerr = upstreamError(err, e.upstream.origin);
    this.writer?.abort();
    this.writer = undefined;
    const outs = this.outs;
    this.outs = [];
    for (const out of outs) {
      out.x.out = undefined;
      out.x.res.destroy();
    }
    this.detachBody();
    this.phase = 'done';
    e.flightDone(this);
    const rest = this.waiters.concat(this.latecomers);
    this.waiters = [];
    this.latecomers = [];
    if (rest.length > 0 || this.spec.kind === 'fill') e.logger.debug({ err: cerr, key: this.spec.pk, waiters: rest.length }, 'upstream fetch failed');
    for (const w of rest) e.failOrStale(w, cerr);
  }
}
