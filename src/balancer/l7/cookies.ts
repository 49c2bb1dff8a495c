/**
 * Cookie header parsing and Set-Cookie serialisation (RFC 6265), for routing by cookie and for
 * sticky sessions. Pure and synchronous; the proxy calls parseCookies at most once per request, and
 * only when a route or a sticky pool needs a cookie.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { FieldObject, HTTP_TOKEN } from '../../core/http.js';

/** parseCookies keeps at most this many cookies; later ones are ignored. */
export const MAX_COOKIES = 100;
/** parseCookies reads at most this many characters (bytes: Node decodes headers as latin1) of Cookie header; a pair crossing the limit is ignored. */
export const MAX_COOKIE_HEADER_BYTES = 8 * 1024;

/** RFC 6265 cookie-octet: visible ASCII but DQUOTE, comma, semicolon and backslash. */
const COOKIE_VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;
/** Path attribute: any CHAR but controls and ";". */
const PATH_VALUE = /^[\x20-\x3a\x3c-\x7e]*$/;

/**
 * Parses a Cookie request header leniently (RFC 6265 §5.4 shape, as servers meet it in practice):
 * pairs split on ";", trimmed; the first "=" separates name and value; a value wrapped in double
 * quotes loses them (as Go's net/http does); a pair without "=" or with an empty name is ignored;
 * the first occurrence of a name wins (browsers send the most specific path first). Values are not
 * percent-decoded: they are compared as the browser sent them. Several Cookie headers (HTTP/2 may
 * split one) are read as one list.
 *
 * Bounded: at most MAX_COOKIES cookies and MAX_COOKIE_HEADER_BYTES characters are read; whatever
 * lies beyond is ignored, never half-read.
 *
 * The result inherits nothing (not even from Object.prototype), so a cookie named "__proto__" or
 * "constructor" is just a key and reading an absent one gives undefined.
 */
export function parseCookies(header: string | string[] | undefined): Record<string, string> {
  const out = new FieldObject();
  if (header === undefined) return out;
  if (typeof header === 'string') {
    parseInto(header, out, 0, 0);
    return out;
  }
  let used = 0;
  let count = 0;
  for (const h of header) {
    const r = parseInto(h, out, used, count);
    if (r < 0) break;
    used += h.length + 1; // the ";" joining two headers
    count = r;
  }
  return out;
}

/** Parses one header into `out`; returns the cookie count so far, or -1 when a bound was reached. */
function parseInto(s: string, out: Record<string, string>, usedBefore: number, countBefore: number): number {
  let count = countBefore;
  const len = s.length;
  let start = 0;
  while (start < len) {
    let end = s.indexOf(';', start);
    if (end < 0) end = len;
    if (usedBefore + end > MAX_COOKIE_HEADER_BYTES) return -1;
    const eq = s.indexOf('=', start);
    if (eq >= 0 && eq < end) {
      const name = s.slice(start, eq).trim();
      if (name !== '' && out[name] === undefined) {
        if (count >= MAX_COOKIES) return -1;
        let value = s.slice(eq + 1, end).trim();
        if (value.length >= 2 && value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34) value = value.slice(1, -1);
        out[name] = value;
        count++;
      }
    }
    start = end + 1;
  }
  return count;
}

export interface SetCookieOptions {
  /** Path attribute. Default: none (the browser uses the request's directory). */
  path?: string;
  /** Lifetime in milliseconds, written as Max-Age in whole seconds (rounded down). Default: none, a session cookie. 0 or less deletes the cookie. */
  maxAgeMs?: number;
  /** HttpOnly: scripts cannot read the cookie. Default false. */
  httpOnly?: boolean;
  /** Secure: sent over HTTPS only. Default false. */
  secure?: boolean;
  /** SameSite attribute. Default: none written (browsers then treat it as Lax). "None" requires `secure`. */
  sameSite?: 'Lax' | 'Strict' | 'None';
}

/**
 * `name=value; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax` for a Set-Cookie header.
 * Throws InvalidArgumentError when the name is not a token, the value or path holds characters a
 * cookie cannot carry, maxAgeMs is not a finite number, or SameSite=None comes without Secure (browsers
 * would drop such a cookie silently).
 */
export function serializeSetCookie(name: string, value: string, opts: SetCookieOptions = {}): string {
  if (!HTTP_TOKEN.test(name)) throw new InvalidArgumentError(`invalid cookie name ${JSON.stringify(name)}: expected a token (letters, digits and !#$%&'*+.^_\`|~-)`, { name });
  if (!COOKIE_VALUE.test(value)) {
    throw new InvalidArgumentError(`invalid value for cookie "${name}": no spaces, controls, DQUOTE, comma, semicolon or backslash allowed`, { name, value });
  }
  let s = `${name}=${value}`;
  if (opts.path !== undefined) {
    if (!PATH_VALUE.test(opts.path)) throw new InvalidArgumentError(`invalid cookie path ${JSON.stringify(opts.path)}: no controls or ";"`, { path: opts.path });
    s += `; Path=${opts.path}`;
  }
  if (opts.maxAgeMs !== undefined) {
    if (!Number.isFinite(opts.maxAgeMs)) throw new InvalidArgumentError(`invalid cookie maxAgeMs ${opts.maxAgeMs}: expected a finite number`, { maxAgeMs: opts.maxAgeMs });
    s += `; Max-Age=${Math.max(0, Math.floor(opts.maxAgeMs / 1000))}`;
  }
  if (opts.httpOnly === true) s += '; HttpOnly';
  if (opts.secure === true) s += '; Secure';
  if (opts.sameSite !== undefined) {
    if (opts.sameSite === 'None' && opts.secure !== true) {
      throw new InvalidArgumentError(`cookie "${name}": SameSite=None requires secure: true (browsers reject it otherwise)`, { name });
    }
    s += `; SameSite=${opts.sameSite}`;
  }
  return s;
}

/** True when `name` can be a cookie name (an RFC 9110 token). */
export function isCookieName(name: string): boolean {
  return HTTP_TOKEN.test(name);
}
