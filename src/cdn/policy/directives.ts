/**
 * Parsing of the caching header fields: Cache-Control and CDN-Cache-Control (RFC 9111 5.2, RFC 9213),
 * Surrogate-Control (W3C Edge Architecture 1.0), delta-seconds (RFC 9111 1.2.2) and HTTP-date
 * (RFC 9110 5.6.7). Pure functions over strings; no header object is modified.
 */
import type { Headers } from '../types.js';

/**
 * Directives by lower-case name. `true` for a directive without argument, the argument (unquoted)
 * otherwise. A directive repeated with different arguments maps to `CONFLICT` (RFC 9111 4.2.1:
 * a response with conflicting freshness information is treated as stale).
 */
export type Directives = Map<string, string | true>;

/** Marks a directive that appeared more than once with different arguments. */
export const CONFLICT = '\u0000conflict';

/** Longest field value parsed; the rest is ignored (bounded work on hostile input). */
export const MAX_DIRECTIVE_FIELD_CHARS = 8192;
/** Most directives kept from one field. */
export const MAX_DIRECTIVES = 64;

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** The value of a header as one string: repeated lines joined with ", " (RFC 9110 5.3). */
export function headerValue(headers: Headers, name: string): string | undefined {
  const v = Object.prototype.hasOwnProperty.call(headers, name) ? headers[name] : undefined;
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(', ') : v;
}

/**
 * Splits a comma-separated list (RFC 9110 5.6.1) into its members, keeping quoted strings (which may
 * hold commas, RFC 9110 5.6.4) whole. Empty members are dropped.
 */
export function splitList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  const s = value.length > MAX_DIRECTIVE_FIELD_CHARS ? value.slice(0, MAX_DIRECTIVE_FIELD_CHARS) : value;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      cur += c;
      if (c === '\\' && i + 1 < s.length) cur += s[++i]!;
      else if (c === '"') quoted = false;
    } else if (c === ',') {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
    } else {
      if (c === '"') quoted = true;
      cur += c;
    }
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1).replace(/\\(.)/g, '$1');
  return v;
}

/**
 * Parses a Cache-Control-style field (also CDN-Cache-Control, which has the same syntax, RFC 9213 2.1).
 * Names are case-insensitive (RFC 9111 5.2); both token and quoted-string arguments are accepted.
 * Members whose name is not a token are skipped. `undefined` in, empty map out.
 */
export function parseDirectives(value: string | undefined): Directives {
  const out: Directives = new Map();
  if (!value) return out;
  for (const member of splitList(value)) {
    if (out.size >= MAX_DIRECTIVES) break;
    const eq = member.indexOf('=');
    const name = (eq < 0 ? member : member.slice(0, eq)).trim().toLowerCase();
    if (!TOKEN.test(name)) continue;
    const arg: string | true = eq < 0 ? true : unquote(member.slice(eq + 1).trim());
    const prev = out.get(name);
    if (prev !== undefined && prev !== arg) out.set(name, CONFLICT);
    else out.set(name, arg);
  }
  return out;
}

/** Largest delta-seconds a cache must represent; bigger values are clamped to it (RFC 9111 1.2.2). */
export const MAX_DELTA_SECONDS = 2147483648;

/**
 * A delta-seconds argument (RFC 9111 1.2.2): digits only, clamped to 2^31. `undefined` when the
 * directive is absent, `NaN` when present but invalid (no argument, not digits, conflicting).
 */
export function deltaSeconds(d: Directives, name: string): number | undefined {
  const v = d.get(name);
  if (v === undefined) return undefined;
  if (v === true || v === CONFLICT || !/^\d+$/.test(v)) return NaN;
  return v.length > 10 ? MAX_DELTA_SECONDS : Math.min(Number(v), MAX_DELTA_SECONDS);
}

/** True when the directive is present (with or without argument). */
export function has(d: Directives, name: string): boolean {
  return d.has(name);
}

/** Formats directives back into a field value (used to hand a normalised view to http-cache-semantics). */
export function formatDirectives(d: Directives): string {
  const parts: string[] = [];
  for (const [k, v] of d) {
    if (v === CONFLICT) continue;
    parts.push(v === true ? k : TOKEN.test(v) ? `${k}=${v}` : `${k}="${v.replace(/["\\]/g, '\\$&')}"`);
  }
  return parts.join(', ');
}

/**
 * Surrogate-Control (W3C Edge Architecture 1.0, section 3): `max-age=N[+M]` (freshness for the
 * surrogate, M seconds more usable when the origin fails), `no-store`, `content="..."` (ignored).
 * Directives aimed at a named device (`max-age=60;edge1`) are ignored: this tier has no device
 * token. Returned as Cache-Control directives with the same meaning: `max-age`, `no-store` and
 * `stale-if-error` (for `+M`).
 */
export function parseSurrogateControl(value: string | undefined): Directives {
  const out: Directives = new Map();
  if (!value) return out;
  for (const member of splitList(value)) {
    if (out.size >= MAX_DIRECTIVES) break;
    if (member.replace(/"(?:[^"\\]|\\.)*"/g, '').includes(';')) continue; // targeted at a named device
    const eq = member.indexOf('=');
    const name = (eq < 0 ? member : member.slice(0, eq)).trim().toLowerCase();
    const arg = eq < 0 ? undefined : unquote(member.slice(eq + 1).trim());
    if (name === 'no-store') out.set('no-store', true);
    else if (name === 'max-age' && arg !== undefined) {
      const m = /^(\d+)(?:\+(\d+))?$/.exec(arg);
      if (!m) {
        out.set('max-age', CONFLICT); // present but invalid: stale (RFC 9111 4.2.1 by analogy)
        continue;
      }
      out.set('max-age', m[1]!);
      if (m[2] !== undefined) out.set('stale-if-error', m[2]);
    }
  }
  return out;
}

const MONTHS: Record<string, number> = { jan: 0, feb: 1, mar: 2, apr: 3, may: 4, jun: 5, jul: 6, aug: 7, sep: 8, oct: 9, nov: 10, dec: 11 };

/**
 * Parses an HTTP-date (RFC 9110 5.6.7) in any of its three forms: IMF-fixdate
 * (`Sun, 06 Nov 1994 08:49:37 GMT`), obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
 * (`Sun Nov  6 08:49:37 1994`). Returns ms since the epoch, or NaN for anything else (including "0",
 * which an Expires recipient must treat as a time in the past). Two-digit years below 70 are 20xx.
 */
export function parseHttpDate(value: string | undefined): number {
  if (!value) return NaN;
  const v = value.trim();
  let m = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(v);
  if (m) return utc(Number(m[3]), m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  m = /^[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/.exec(v);
  if (m) {
    const yy = Number(m[3]);
    return utc(yy < 70 ? 2000 + yy : 1900 + yy, m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
  }
  m = /^[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/.exec(v);
  if (m) return utc(Number(m[6]), m[1]!, Number(m[2]!.trim()), m[3]!, m[4]!, m[5]!);
  return NaN;
}

function utc(year: number, mon: string, day: number, h: string, mi: string, s: string): number {
  const month = MONTHS[mon.toLowerCase()];
  if (month === undefined || day < 1 || day > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) return NaN;
  return Date.UTC(year, month, day, Number(h), Number(mi), Number(s));
}

/** Formats ms since the epoch as an IMF-fixdate (RFC 9110 5.6.7). */
export function formatHttpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
