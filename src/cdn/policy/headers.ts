/**
 * Header-set helpers for the policy: copies without hop-by-hop fields (RFC 9110 7.6.1, RFC 9111 3.1),
 * the CDN-only fields stripped before clients (RFC 9213 2.1), tags for purge, and the 304 merge
 * (RFC 9111 3.2). Header objects are created without a prototype: names are chosen by clients and
 * origins, so "__proto__" or "constructor" must be ordinary names.
 */
import type { Headers } from '../types.js';
import { headerValue, splitList } from './directives.js';
import { FieldObject, HOP_BY_HOP_HEADERS } from '../../core/http.js';

/** A header object that inherits nothing (core/http FieldObject). */
export function emptyHeaders(): Headers {
  return new FieldObject<Headers>();
}

/**
 * Fields that describe one connection, or one proxy hop, and are never stored or replayed
 * (RFC 9110 7.6.1; RFC 9111 3.1 names the Proxy-* fields). `age` is recomputed on every use
 * (RFC 9111 5.1), so the upstream's value is kept in the policy state, not in the stored headers.
 */
export const HOP_BY_HOP: ReadonlySet<string> = HOP_BY_HOP_HEADERS;

/** Fields meant for the CDN only: obeyed (the first two) or used for purge (the last two), then stripped before clients. */
export const SURROGATE_HEADERS: readonly string[] = ['cdn-cache-control', 'surrogate-control', 'surrogate-key', 'cache-tag'];

/** Request fields that make a request conditional or partial; a revalidation sends the cache's own instead. */
export const CONDITIONAL_REQUEST_HEADERS: readonly string[] = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range'];

/**
 * Fields a 304 must not replace in the stored response: they describe the stored body, which the
 * 304 does not carry (RFC 9111 3.2 and 4.3.4; the same list as http-cache-semantics).
 */
export const NOT_UPDATED_BY_304: ReadonlySet<string> = new Set(['content-length', 'content-encoding', 'transfer-encoding', 'content-range']);

/**
 * A copy of `headers` with lower-case names, without hop-by-hop fields, without every field the
 * Connection header names, and without the names in `drop`.
 */
export function copyHeaders(headers: Headers, drop?: Iterable<string>): Headers {
  const out = emptyHeaders();
  const listed = new Set<string>();
  const connection = headerValue(headers, 'connection');
  if (connection) for (const n of splitList(connection)) listed.add(n.toLowerCase());
  if (drop) for (const n of drop) listed.add(n);
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed.has(lower)) continue;
    const v = headers[name];
    if (v === undefined) continue;
    out[lower] = Array.isArray(v) ? [...v] : v;
  }
  return out;
}

/** Request or response headers as the string-valued record http-cache-semantics reads (arrays joined). */
export function flatHeaders(headers: Headers, drop?: ReadonlySet<string>): Record<string, string> {
  const out = new FieldObject();
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    if (drop?.has(lower)) continue;
    const v = headers[name];
    if (v === undefined) continue;
    out[lower] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/** Default cap on tags per object (Surrogate-Key plus Cache-Tag); more are dropped. */
export const DEFAULT_MAX_TAGS = 256;
/** Longest tag kept, in characters; longer ones are dropped. */
export const MAX_TAG_CHARS = 1024;

/**
 * Purge tags of a response: Surrogate-Key is space separated (Fastly), Cache-Tag comma separated
 * (Cloudflare, Akamai). Deduplicated, first occurrence order, at most `maxTags`.
 */
export function parseTags(headers: Headers, maxTags: number = DEFAULT_MAX_TAGS): string[] {
  const out = new Set<string>();
  const add = (t: string): void => {
    const tag = t.trim();
    if (tag && tag.length <= MAX_TAG_CHARS && out.size < maxTags) out.add(tag);
  };
  for (const line of lines(headers, 'surrogate-key')) for (const t of line.split(/\s+/)) add(t);
  for (const line of lines(headers, 'cache-tag')) for (const t of line.split(',')) add(t);
  return [...out];
}

function lines(headers: Headers, name: string): string[] {
  const v = Object.prototype.hasOwnProperty.call(headers, name) ? headers[name] : undefined;
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * The stored headers updated from a 304 (RFC 9111 3.2): every field in the 304 replaces the stored
 * one of the same name, except hop-by-hop fields and those describing the body.
 */
export function mergeNotModified(stored: Headers, notModified: Headers): Headers {
  const out = copyHeaders(stored);
  const update = copyHeaders(notModified);
  for (const name of Object.keys(update)) {
    if (NOT_UPDATED_BY_304.has(name)) continue;
    out[name] = update[name]!;
  }
  return out;
}
