/**
 * The shared-cache policy of a CDN tier (RFC 9111), pure: every method takes the time as an argument
 * (`now`, ms since the epoch) and reads no clock.
 *
 * http-cache-semantics (CachePolicy, `shared: true`) makes the storability decision for the status
 * codes it understands, builds the conditional request and matches a 304 to the stored response; its
 * toObject() is kept in the PolicyState. This module adds what a CDN needs beyond it:
 *
 * - CDN-Cache-Control (RFC 9213) and Surrogate-Control (W3C Edge Architecture), which take precedence
 *   over Cache-Control and Expires at this tier and are stripped before clients;
 * - the RFC 9111 4.2.3 age (apparent age from Date, not only the Age header), a cap on heuristic
 *   freshness, must-revalidate / proxy-revalidate / s-maxage forbidding stale responses (4.2.4) without
 *   making fresh ones unusable;
 * - request max-age / max-stale / min-fresh / only-if-cached / no-cache and Pragma: no-cache;
 * - stale-while-revalidate and stale-if-error windows (RFC 5861), soft purge;
 * - normalised Vary (names sorted, values trimmed), Vary: * never stored;
 * - purge tags, Set-Cookie refusal, status codes that are cacheable only with explicit freshness,
 *   invalidation after unsafe methods (4.4), byte ranges from a stored full response.
 */
import CachePolicy from 'http-cache-semantics';
import { InvalidArgumentError } from '../../core/errors.js';
import { isCdnError } from '../errors.js';
import type { CacheRequest, CacheResponse, Headers, PolicyState, StoredObjectMeta } from '../types.js';
import {
  MAX_DELTA_SECONDS,
  deltaSeconds,
  formatDirectives,
  formatHttpDate,
  headerValue,
  parseDirectives,
  parseHttpDate,
  parseSurrogateControl,
  splitList,
  type Directives,
} from './directives.js';
import { CONDITIONAL_REQUEST_HEADERS, DEFAULT_MAX_TAGS, SURROGATE_HEADERS, copyHeaders, flatHeaders, mergeNotModified, parseTags } from './headers.js';

export { parseRange, MAX_RANGE_FIELD_CHARS } from './range.js';
export { SURROGATE_HEADERS, HOP_BY_HOP, DEFAULT_MAX_TAGS, MAX_TAG_CHARS } from './headers.js';
export { parseHttpDate, formatHttpDate, parseDirectives, MAX_DELTA_SECONDS } from './directives.js';

export interface PolicyOptions {
  /** Store responses carrying Set-Cookie (stripping nothing). Default false: not stored. */
  cacheSetCookie?: boolean;
  /** Heuristic freshness = fraction x (Date - Last-Modified) when no explicit lifetime (RFC 9111 4.2.2). In [0, 1]. Default 0.1. */
  heuristicFraction?: number;
  /** Cap on heuristic freshness, ms. Default 1 day (86 400 000). */
  maxHeuristicMs?: number;
  /** Which surrogate headers this tier obeys and strips: CDN-Cache-Control (RFC 9213) and Surrogate-Control. Default true: both, CDN-Cache-Control first; false: Cache-Control only. */
  surrogateHeaders?: boolean;
  /** Strip CDN-Cache-Control / Surrogate-Control / Surrogate-Key / Cache-Tag before clients (true at the edge, false at the shield so the edge still sees them). Default true. */
  stripSurrogateHeaders?: boolean;
  /** Most purge tags kept per object (Surrogate-Key and Cache-Tag together); more are dropped. Default 256. */
  maxTags?: number;
}

export interface StoreDecision {
  store: boolean;
  /**
   * Why not stored (for logs and X-Cache-Reason): 'method', 'no-store', 'status', 'partial', 'private',
   * 'authorization', 'vary-star', 'set-cookie', 'no-freshness' (never usable: no lifetime, no
   * validator, no stale window), 'not-storable' (http-cache-semantics refused).
   */
  reason?: string;
  /** Headers to store and replay (hop-by-hop and Age removed; Date added when missing; surrogate headers removed when stripSurrogateHeaders). */
  headers: Headers;
  state: PolicyState;
  tags: string[];
}

export interface Freshness {
  /** Can be served as is (fresh, and the request's max-age/min-fresh/no-cache allow it; or stale within the request's max-stale). */
  fresh: boolean;
  /** Current age, whole seconds (RFC 9111 4.2.3), for the Age header. */
  ageS: number;
  /** Seconds of freshness left (negative when stale; may be fractional). */
  ttlS: number;
  /** Stale but usable while revalidating in the background (RFC 5861 stale-while-revalidate), and the request's max-stale allows. */
  staleWhileRevalidate: boolean;
  /** Stale but usable if the upstream fails (RFC 5861 stale-if-error); false when no-cache/must-revalidate/proxy-revalidate/s-maxage forbid. */
  staleIfError: boolean;
  /** The request says it wants nothing but cache (only-if-cached). */
  onlyIfCached: boolean;
}

/** The outcome of a revalidation: a StoreDecision for the updated (or new) response, and whether the body changed. */
export interface RevalidationResult extends StoreDecision {
  /** false: keep the stored body with `headers`/`state`/`tags` (updateMeta, or delete when !store); true: the response is a new one (store it per `store`). */
  modified: boolean;
}

/** Status codes cacheable by default, heuristically (RFC 9110 15.1). */
const HEURISTIC_STATUSES: ReadonlySet<number> = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);
/** Status codes http-cache-semantics 4.x evaluates; for others this module decides alone. */
const LIBRARY_STATUSES: ReadonlySet<number> = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501]);
/** Safe methods (RFC 9110 9.2.1): they never invalidate. Anything else, known or not, does (RFC 9111 4.4). */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

const DAY_MS = 86_400_000;
type Source = 'cache-control' | 'cdn-cache-control' | 'surrogate-control';

/** What freshness() needs later, with no other state. Serialised as JSON by storage. */
interface StateV1 {
  v: 1;
  /** http-cache-semantics' toObject() of the response as this tier sees it. */
  lib: CachePolicy.CachePolicyObject;
  /** When the response was received (ms). */
  responseTime: number;
  /** Date header of the response (ms), or responseTime when it had none. */
  dateMs: number;
  /** The upstream's Age header (s), 0 when absent or invalid. */
  ageValueS: number;
  /** Freshness lifetime (s), RFC 9111 4.2.1. */
  lifetimeS: number;
  heuristic: boolean;
  swrS: number;
  sieS: number;
  /** Never served stale without validation: must-revalidate, proxy-revalidate, s-maxage (RFC 9111 4.2.4). */
  noStale: boolean;
  /** Never served without validation: no-cache (RFC 9111 5.2.2.4). */
  noCache: boolean;
  /** The response's Vary value, as received. */
  vary?: string;
  /** varyKey() of the request the response answered. */
  varyKey: string;
  source: Source;
  /** The surrogate fields of the response, kept here when stripped from the stored headers (for a 304 merge). */
  surrogate: Record<string, string | string[]>;
}

// http-cache-semantics reads Date.now() through its now() method; this subclass reads the `now`
// argument of the call in progress instead. Calls are synchronous, so one module variable is enough.
let pinnedNow = 0;
class PinnedClockPolicy extends CachePolicy {
  now(): number {
    return pinnedNow;
  }
}
function at<T>(now: number, fn: () => T): T {
  const prev = pinnedNow;
  pinnedNow = now;
  try {
    return fn();
  } finally {
    pinnedNow = prev;
  }
}

const LIB_DROPPED: ReadonlySet<string> = new Set(['set-cookie', 'vary', ...SURROGATE_HEADERS]);

export class CdnPolicy {
  private readonly cacheSetCookie: boolean;
  private readonly heuristicFraction: number;
  private readonly maxHeuristicS: number;
  private readonly surrogateHeaders: boolean;
  private readonly stripSurrogateHeaders: boolean;
  private readonly maxTags: number;
  private readonly stripped: readonly string[];

  constructor(options: PolicyOptions = {}) {
    const fraction = options.heuristicFraction ?? 0.1;
    if (!(fraction >= 0 && fraction <= 1)) throw new InvalidArgumentError(`heuristicFraction must be in [0, 1], got ${fraction}`);
    const maxHeuristicMs = options.maxHeuristicMs ?? DAY_MS;
    if (!(Number.isFinite(maxHeuristicMs) && maxHeuristicMs >= 0)) throw new InvalidArgumentError(`maxHeuristicMs must be a finite number >= 0, got ${maxHeuristicMs}`);
    const maxTags = options.maxTags ?? DEFAULT_MAX_TAGS;
    if (!(Number.isInteger(maxTags) && maxTags >= 0)) throw new InvalidArgumentError(`maxTags must be an integer >= 0, got ${maxTags}`);
    this.cacheSetCookie = options.cacheSetCookie ?? false;
    this.heuristicFraction = fraction;
    this.maxHeuristicS = maxHeuristicMs / 1000;
    this.surrogateHeaders = options.surrogateHeaders ?? true;
    this.stripSurrogateHeaders = options.stripSurrogateHeaders ?? true;
    this.maxTags = maxTags;
    this.stripped = this.stripSurrogateHeaders ? SURROGATE_HEADERS : [];
  }

  /** Is the request cacheable at all (method GET/HEAD, no request no-store)? HEAD is answered from a stored GET. */
  requestCacheable(req: CacheRequest): boolean {
    const method = req.method.toUpperCase();
    if (method !== 'GET' && method !== 'HEAD') return false;
    return !parseDirectives(headerValue(req.headers, 'cache-control')).has('no-store');
  }

  /**
   * The decision on a response to `req` received at `now` (RFC 9111 section 3, with CDN-Cache-Control /
   * Surrogate-Control precedence). Only responses to GET are stored (a HEAD is answered from them, and
   * a miss on HEAD is best fetched with GET). `headers`, `state` and `tags` are filled in either way.
   */
  storable(req: CacheRequest, res: CacheResponse, now: number): StoreDecision {
    return this.decide(req, res.status, res.headers, now);
  }

  /** Does the stored variant match the request's Vary'd headers (RFC 9111 4.1; Vary: * never matches)? */
  varyMatches(req: CacheRequest, meta: StoredObjectMeta): boolean {
    const st = readState(meta.policy);
    if (!st) return false;
    const key = this.varyKey(req, st.vary);
    return key !== '*' && key === st.varyKey;
  }

  /**
   * The vary part of a cache key for `req` given the response's Vary: `name=value` pairs joined with
   * '&', names lower-cased and sorted, values trimmed with whitespace around commas removed, both
   * percent-encoded; a header absent from the request is the bare name (absent and empty differ,
   * RFC 9111 4.1). '' when no Vary; '*' for Vary: * (which never matches).
   */
  varyKey(req: CacheRequest, varyHeader: string | undefined): string {
    if (!varyHeader) return '';
    const names = [...new Set(splitList(varyHeader).map((n) => n.toLowerCase()))].sort();
    if (names.includes('*')) return '*';
    const parts: string[] = [];
    for (const name of names) {
      const v = headerValue(req.headers, name);
      parts.push(v === undefined ? encodeURIComponent(name) : `${encodeURIComponent(name)}=${encodeURIComponent(normaliseFieldValue(v))}`);
    }
    return parts.join('&');
  }

  freshness(req: CacheRequest, meta: StoredObjectMeta, now: number): Freshness {
    const rcc = requestDirectives(req);
    const onlyIfCached = rcc.has('only-if-cached');
    const st = readState(meta.policy);
    if (!st) {
      // Unreadable state (another version wrote it): usable for nothing, revalidate.
      const ageS = Math.max(0, Math.floor((now - meta.storedAt) / 1000));
      return { fresh: false, ageS, ttlS: -ageS, staleWhileRevalidate: false, staleIfError: false, onlyIfCached };
    }
    const age = currentAge(st, now);
    let ttl = st.lifetimeS - age;
    if (meta.softPurgedAt !== undefined && meta.softPurgedAt <= now) ttl = Math.min(ttl, (meta.softPurgedAt - now) / 1000);
    const stale = ttl <= 0;
    const staleness = Math.max(0, -ttl);

    const reqNoCache = rcc.has('no-cache');
    const reqMaxAge = validDelta(rcc, 'max-age');
    const minFresh = validDelta(rcc, 'min-fresh');
    const maxStale = rcc.get('max-stale') === true ? Infinity : validDelta(rcc, 'max-stale');
    const reqStaleIfError = validDelta(rcc, 'stale-if-error') ?? 0;

    const ageOk = reqMaxAge === undefined || age <= reqMaxAge;
    const minFreshOk = minFresh === undefined || ttl >= minFresh;
    const staleForbidden = st.noStale || st.noCache;
    const maxStaleOk = maxStale !== undefined && !staleForbidden && staleness <= maxStale;
    const fresh = !st.noCache && !reqNoCache && ageOk && minFreshOk && (!stale || maxStaleOk);

    const staleWhileRevalidate =
      !fresh && stale && !staleForbidden && !reqNoCache && ageOk && minFresh === undefined && st.swrS > 0 && staleness <= st.swrS && (maxStale === undefined || staleness <= maxStale);
    const sieWindow = Math.max(st.sieS, reqStaleIfError);
    const staleIfError = !fresh && !staleForbidden && sieWindow > 0 && staleness <= sieWindow;
    return { fresh, ageS: Math.min(MAX_DELTA_SECONDS, Math.floor(age)), ttlS: ttl, staleWhileRevalidate, staleIfError, onlyIfCached };
  }

  /**
   * The request headers for a conditional request revalidating `meta` (RFC 9111 4.3.1): the client's
   * headers without hop-by-hop fields and without its own conditionals and Range (this tier validates
   * its stored copy, then answers the client's conditionals itself), plus If-None-Match from the stored
   * ETag and If-Modified-Since from its Last-Modified. Send it as a GET, even for a client's HEAD.
   */
  revalidationHeaders(req: CacheRequest, meta: StoredObjectMeta): Headers {
    const base = copyHeaders(req.headers, CONDITIONAL_REQUEST_HEADERS);
    const st = readState(meta.policy);
    if (!st) return base;
    const lib = PinnedClockPolicy.fromObject(st.lib);
    const out = lib.revalidationHeaders({ method: 'GET', headers: { ...flatHeaders(base), host: '' } });
    for (const name of ['if-none-match', 'if-modified-since']) {
      const v = out[name];
      if (typeof v === 'string' && v !== '') base[name] = v;
    }
    return base;
  }

  /**
   * After upstream answered a revalidation of `meta`: a 304 whose validator matches the stored
   * response updates its headers and state (RFC 9111 4.3.4), modified=false; a 304 that matches no
   * stored validator leaves the stored response as it was (4.3.4: it MUST NOT be used to update),
   * modified=false; any other status is a new response, modified=true, with its own store decision.
   * An updated response can become unstorable (the 304 brought no-store): then `store` is false.
   */
  revalidated(req: CacheRequest, meta: StoredObjectMeta, res: CacheResponse, now: number): RevalidationResult {
    if (res.status !== 304) return { modified: true, ...this.decide(req, res.status, res.headers, now) };
    const st = readState(meta.policy);
    const notModified = copyHeaders(res.headers);
    // RFC 9110 6.6.1: a response without a (valid) Date is dated when received, or the stored Date would age it.
    if (Number.isNaN(parseHttpDate(headerValue(notModified, 'date')))) notModified.date = formatHttpDate(now);
    if (st) {
      const lib = PinnedClockPolicy.fromObject(st.lib);
      const { matches } = at(now, () => lib.revalidatedPolicy(this.libRequest(req), { status: 304, headers: flatHeaders(notModified) }));
      if (!matches) return { modified: false, store: true, headers: meta.headers, state: meta.policy, tags: meta.tags };
    }
    const stored = copyHeaders(meta.headers);
    if (st) for (const [k, v] of Object.entries(st.surrogate)) if (!(k in stored)) stored[k] = v;
    return { modified: false, ...this.decide(req, meta.status, mergeNotModified(stored, notModified), now) };
  }

  /** Headers to send a client for a stored object: stored headers + Age, Date kept as stored (RFC 9111 5.1), surrogate headers stripped if configured. */
  responseHeaders(meta: StoredObjectMeta, fresh: Freshness): Headers {
    const out = copyHeaders(meta.headers, this.stripped);
    out.age = String(fresh.ageS);
    return out;
  }

  /**
   * Primary keys a response to an unsafe request invalidates (RFC 9111 4.4): the target URI, and the
   * Location and Content-Location URIs when they are on the same origin, when the status is 2xx or 3xx.
   * `keyOf` gets an origin-form target ('/path?query') on the request's own scheme and host; a
   * Location it cannot key (CdnError) is skipped.
   */
  invalidates(req: CacheRequest, res: CacheResponse, keyOf: (url: string) => string): string[] {
    if (SAFE_METHODS.has(req.method.toUpperCase())) return [];
    if (res.status < 200 || res.status >= 400) return [];
    const keys = new Set<string>([keyOf(req.url)]);
    let base: URL;
    try {
      base = new URL(req.url.startsWith('/') ? req.url : '/', `${req.scheme}://${req.host}`);
    } catch {
      return [...keys]; // host or scheme unusable as a URL: nothing else can be same-origin
    }
    for (const name of ['location', 'content-location']) {
      const v = headerValue(res.headers, name);
      if (!v) continue;
      let target: URL;
      try {
        target = new URL(v.trim(), base);
      } catch {
        continue; // not a URI reference
      }
      if (target.origin !== base.origin) continue; // MUST NOT invalidate another origin (RFC 9111 4.4)
      try {
        keys.add(keyOf(target.pathname + target.search));
      } catch (err) {
        if (!isCdnError(err)) throw err;
      }
    }
    return [...keys];
  }

  /** Is the status code cacheable by default (heuristically) per RFC 9110 15.1? */
  static heuristicallyCacheable(status: number): boolean {
    return HEURISTIC_STATUSES.has(status);
  }

  private effective(headers: Headers): { cc: Directives; source: Source } {
    if (this.surrogateHeaders) {
      // RFC 9213 2.1: the first targeted field with a valid, non-empty value wins; Cache-Control and Expires are then ignored.
      const cdn = parseDirectives(headerValue(headers, 'cdn-cache-control'));
      if (cdn.size > 0) return { cc: cdn, source: 'cdn-cache-control' };
      const sc = parseSurrogateControl(headerValue(headers, 'surrogate-control'));
      if (sc.size > 0) return { cc: sc, source: 'surrogate-control' };
    }
    const raw = headerValue(headers, 'cache-control');
    const cc = parseDirectives(raw);
    // As http-cache-semantics does: a response Pragma: no-cache without Cache-Control is taken as no-cache (RFC 9111 5.4).
    if (raw === undefined && /no-cache/i.test(headerValue(headers, 'pragma') ?? '')) cc.set('no-cache', true);
    return { cc, source: 'cache-control' };
  }

  private libRequest(req: CacheRequest): CachePolicy.HttpRequest {
    // No url and a constant host: the caller matched the request to the object by cache key already.
    return { method: req.method.toUpperCase(), headers: { ...flatHeaders(req.headers), host: '' } };
  }

  private decide(req: CacheRequest, status: number, resHeaders: Headers, now: number): StoreDecision {
    const input = copyHeaders(resHeaders);
    // RFC 9110 6.6.1: a cache adds a Date to a response that has none (or an invalid one).
    if (Number.isNaN(parseHttpDate(headerValue(input, 'date')))) input.date = formatHttpDate(now);
    const { cc, source } = this.effective(input);
    const dateMs = parseHttpDate(headerValue(input, 'date'));

    // The view http-cache-semantics judges: the effective directives as Cache-Control; fields this
    // module decides itself (Set-Cookie, Vary, surrogate fields) left out.
    const libHeaders = flatHeaders(input, LIB_DROPPED);
    delete libHeaders['cache-control'];
    if (source !== 'cache-control') {
      delete libHeaders.expires;
      delete libHeaders.pragma;
    }
    const formatted = formatDirectives(cc);
    if (formatted) libHeaders['cache-control'] = formatted;
    const lib = at(now, () => new PinnedClockPolicy(this.libRequest(req), { status, headers: libHeaders }, { shared: true, cacheHeuristic: this.heuristicFraction, immutableMinTimeToLive: 0 }));

    const heuristicStatus = HEURISTIC_STATUSES.has(status);
    const sMaxAge = deltaSeconds(cc, 's-maxage');
    const maxAge = deltaSeconds(cc, 'max-age');
    const expires = source === 'cache-control' ? expiresMs(input) : undefined;
    const noCache = cc.has('no-cache');
    let lifetimeS = 0;
    let heuristic = false;
    if (sMaxAge !== undefined) lifetimeS = sMaxAge || 0; // NaN (invalid, conflicting) counts as stale
    else if (maxAge !== undefined) lifetimeS = maxAge || 0;
    else if (expires !== undefined) lifetimeS = Number.isNaN(expires) ? 0 : Math.max(0, (expires - dateMs) / 1000);
    else if (heuristicStatus) {
      const lm = parseHttpDate(headerValue(input, 'last-modified'));
      if (!Number.isNaN(lm) && dateMs > lm) {
        lifetimeS = Math.min(((dateMs - lm) / 1000) * this.heuristicFraction, this.maxHeuristicS);
        heuristic = true;
      }
    }
    if (noCache) lifetimeS = 0;
    const explicit = sMaxAge !== undefined || maxAge !== undefined || expires !== undefined;

    const vary = headerValue(input, 'vary');
    const ageHeader = headerValue(input, 'age');
    const ageValueS = ageHeader !== undefined && /^\s*\d+\s*$/.test(ageHeader) ? Math.min(MAX_DELTA_SECONDS, parseInt(ageHeader, 10)) : 0;
    const surrogate: Record<string, string | string[]> = {};
    for (const name of SURROGATE_HEADERS) if (input[name] !== undefined) surrogate[name] = input[name]!;
    const state: StateV1 = {
      v: 1,
      lib: lib.toObject(),
      responseTime: now,
      dateMs,
      ageValueS,
      lifetimeS,
      heuristic,
      swrS: validDelta(cc, 'stale-while-revalidate') ?? 0,
      sieS: validDelta(cc, 'stale-if-error') ?? 0,
      noStale: cc.has('must-revalidate') || cc.has('proxy-revalidate') || sMaxAge !== undefined,
      noCache,
      varyKey: this.varyKey(req, vary),
      source,
      surrogate: this.stripSurrogateHeaders ? surrogate : {},
    };
    if (vary !== undefined) state.vary = vary;
    const headers = copyHeaders(input, ['age', ...this.stripped]);
    const tags = parseTags(input, this.maxTags);
    const decision = (reason?: string): StoreDecision =>
      reason === undefined ? { store: true, headers, state: state as unknown as PolicyState, tags } : { store: false, reason, headers, state: state as unknown as PolicyState, tags };

    // RFC 9111 3: the conditions for storing, in order, each with its reason.
    if (req.method.toUpperCase() !== 'GET') return decision('method');
    if (requestDirectives(req).has('no-store')) return decision('no-store');
    if (status < 200 || status > 599 || status === 304) return decision('status'); // final, non-304 (RFC 9111 3)
    if (status === 206) return decision('partial'); // only full responses are stored; ranges are cut from them
    if (cc.has('no-store')) return decision('no-store');
    if (cc.has('private')) return decision('private'); // qualified private="..." too: refusing is allowed (RFC 9111 5.2.2.7)
    if (headerValue(req.headers, 'authorization') !== undefined && !(cc.has('public') || cc.has('s-maxage') || cc.has('must-revalidate'))) return decision('authorization'); // RFC 9111 3.5
    if (vary !== undefined && splitList(vary).some((n) => n.trim() === '*')) return decision('vary-star');
    if (input['set-cookie'] !== undefined && !this.cacheSetCookie) return decision('set-cookie');
    if (!heuristicStatus && !explicit) return decision('status'); // cacheable only with explicit freshness
    if (LIBRARY_STATUSES.has(status) && !lib.storable()) return decision('not-storable');
    const hasValidator = input.etag !== undefined || input['last-modified'] !== undefined;
    if (lifetimeS <= 0 && !hasValidator && state.swrS === 0 && state.sieS === 0) return decision('no-freshness');
    return decision();
  }
}

/** Request directives: Cache-Control, or Pragma: no-cache when the request has no Cache-Control (RFC 9111 5.4). */
function requestDirectives(req: CacheRequest): Directives {
  const raw = headerValue(req.headers, 'cache-control');
  const d = parseDirectives(raw);
  if (raw === undefined && /(^|,)\s*no-cache\s*(,|$)/i.test(headerValue(req.headers, 'pragma') ?? '')) d.set('no-cache', true);
  return d;
}

function validDelta(d: Directives, name: string): number | undefined {
  const v = deltaSeconds(d, name);
  return v === undefined || Number.isNaN(v) ? undefined : v;
}

/** Expires as ms; NaN when invalid or given twice with different values (RFC 9111 5.3: then already expired). */
function expiresMs(headers: Headers): number | undefined {
  const v = headers.expires;
  if (v === undefined) return undefined;
  if (Array.isArray(v)) return new Set(v).size === 1 ? parseHttpDate(v[0]) : NaN;
  return parseHttpDate(v);
}

/** RFC 9111 4.2.3, with response_delay taken as 0 (the request time is not recorded): seconds, fractional. */
function currentAge(st: StateV1, now: number): number {
  const apparentAge = Math.max(0, st.responseTime - st.dateMs) / 1000;
  const correctedInitialAge = Math.max(apparentAge, st.ageValueS);
  const residentTime = Math.max(0, now - st.responseTime) / 1000;
  return correctedInitialAge + residentTime;
}

/** Trims a request field value and removes whitespace around list commas (RFC 9111 4.1 allows this normalisation). */
function normaliseFieldValue(v: string): string {
  return v.trim().replace(/[ \t]*,[ \t]*/g, ',');
}

function readState(policy: PolicyState): StateV1 | undefined {
  const s = policy as Partial<StateV1>;
  if (s.v !== 1 || typeof s.lib !== 'object' || s.lib === null || typeof s.responseTime !== 'number' || typeof s.lifetimeS !== 'number' || typeof s.varyKey !== 'string') return undefined;
  return s as StateV1;
}

