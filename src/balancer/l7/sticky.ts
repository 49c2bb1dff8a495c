/**
 * Cookie-insert stickiness, like HAProxy's `cookie SRV insert`: the balancer answers the first
 * request with a cookie naming the backend that served it, and later requests carrying the cookie go
 * back to that backend while it is available.
 *
 * The cookie value is an opaque token, HMAC-SHA256(secret, pool + "\0" + backendId) in base64url cut
 * to 22 characters (132 bits), so it reveals neither the backend's name nor its address, and a client
 * can neither forge one nor carry one from another pool. A token is only ever compared with the
 * tokens of the candidates the proxy passes in, so a client can never select a backend outside that
 * list. Comparison is constant-time (crypto.timingSafeEqual), so response timing does not reveal how
 * much of a guessed token was right.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../../core/errors.js';
import { isCookieName, serializeSetCookie } from './cookies.js';

/** Token length in base64url characters (22 x 6 = 132 bits of the HMAC). */
export const STICKY_TOKEN_LENGTH = 22;
/** Tokens cached per StickyCookies; matches the config's limit of backends per pool. Oldest entry evicted first. */
export const MAX_CACHED_BACKENDS = 10_000;
/** Shortest secret accepted, in bytes (the config asks for 16 characters). */
export const MIN_SECRET_BYTES = 16;

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{22}$/;

export interface StickyCookiesOptions {
  /** Pool name; part of the HMAC input, so a cookie from one pool means nothing in another. */
  pool: string;
  /** Cookie name (an RFC 9110 token), e.g. "ARCHLAB_SRV". */
  cookie: string;
  /** HMAC key, at least MIN_SECRET_BYTES bytes. Rotating it invalidates every issued cookie (clients are re-balanced once). */
  secret: string | Buffer;
  /** Cookie lifetime in milliseconds (Max-Age, whole seconds). Default: none, a session cookie. */
  maxAgeMs?: number;
}

interface Entry {
  token: string;
  bytes: Buffer;
  /** Set-Cookie values without and with Secure, built on first use. */
  plain: string | undefined;
  secure: string | undefined;
}

export class StickyCookies {
  readonly pool: string;
  readonly cookie: string;
  readonly maxAgeMs: number | undefined;
  private readonly secret: Buffer;
  private readonly prefix: string;
  private readonly cache = new Map<string, Entry>();

  constructor(opts: StickyCookiesOptions) {
    if (!isCookieName(opts.cookie)) {
      throw new InvalidArgumentError(`invalid sticky cookie name ${JSON.stringify(opts.cookie)} for pool "${opts.pool}": expected a token such as "ARCHLAB_SRV"`, { pool: opts.pool, cookie: opts.cookie });
    }
    const secret = typeof opts.secret === 'string' ? Buffer.from(opts.secret, 'utf8') : Buffer.from(opts.secret);
    if (secret.length < MIN_SECRET_BYTES) {
      throw new InvalidArgumentError(`sticky cookie secret for pool "${opts.pool}" is ${secret.length} bytes; use at least ${MIN_SECRET_BYTES} (set cookieSecret, or leave it out for a random one)`, {
        pool: opts.pool,
      });
    }
    if (opts.maxAgeMs !== undefined && !(Number.isFinite(opts.maxAgeMs) && opts.maxAgeMs >= 0)) {
      throw new InvalidArgumentError(`invalid sticky maxAgeMs ${opts.maxAgeMs} for pool "${opts.pool}": expected a number >= 0`, { pool: opts.pool });
    }
    this.pool = opts.pool;
    this.cookie = opts.cookie;
    this.maxAgeMs = opts.maxAgeMs;
    this.secret = secret;
    this.prefix = `${opts.pool}\0`;
  }

  /** The cookie value that names `backendId` in this pool. */
  valueFor(backendId: string): string {
    return this.entry(backendId).token;
  }

  /**
   * Index in `candidates` of the available backend the cookie names, or -1 when the cookie is absent,
   * malformed, forged, tampered with, from another pool or secret, or names a backend that is not
   * among the candidates or not available. On -1 the proxy picks with the pool's algorithm and sends
   * a fresh cookie (setCookieHeader).
   */
  resolve(cookieValue: string | undefined, candidates: readonly { id: string; available: boolean }[]): number {
    if (cookieValue === undefined || !TOKEN_SHAPE.test(cookieValue)) return -1;
    const given = Buffer.from(cookieValue, 'latin1');
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      if (timingSafeEqual(given, this.entry(c.id).bytes)) return c.available ? i : -1;
    }
    return -1;
  }

  /** Set-Cookie header value naming `backendId`: Path=/, HttpOnly, SameSite=Lax, Max-Age when configured, Secure when `secure` (the client came over HTTPS). */
  setCookieHeader(backendId: string, secure: boolean): string {
    const e = this.entry(backendId);
    if (secure) return (e.secure ??= this.serialize(e.token, true));
    return (e.plain ??= this.serialize(e.token, false));
  }

  private serialize(token: string, secure: boolean): string {
    return serializeSetCookie(this.cookie, token, { path: '/', maxAgeMs: this.maxAgeMs, httpOnly: true, secure, sameSite: 'Lax' });
  }

  private entry(backendId: string): Entry {
    let e = this.cache.get(backendId);
    if (e !== undefined) return e;
    const token = createHmac('sha256', this.secret).update(this.prefix + backendId, 'utf8').digest('base64url').slice(0, STICKY_TOKEN_LENGTH);
    e = { token, bytes: Buffer.from(token, 'latin1'), plain: undefined, secure: undefined };
    if (this.cache.size >= MAX_CACHED_BACKENDS) {
      const oldest = this.cache.keys().next();
      if (oldest.done !== true) this.cache.delete(oldest.value);
    }
    this.cache.set(backendId, e);
    return e;
  }
}
