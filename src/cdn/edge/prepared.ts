/**
 * What the hit path needs of a stored object, computed once per stored head rather than per request:
 * the response header array (everything but Age, X-Cache and Server-Timing, which change per
 * request), the upstream's X-Cache to chain onto, and the validators for conditional requests.
 * Also the conditional-request (RFC 9110 13) and If-Range checks the hit path makes.
 */
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import type { Headers, StoredObjectMeta } from '../types.js';
import { joined, pushFlat } from './headers.js';
import { HTTP_TOKEN, httpDate, INVALID_FIELD_VALUE_CHAR } from '../../core/http.js';

export interface Prepared {
  /** The meta fields it was built from; a new head (a 304 revalidation) makes it stale. */
  readonly headersRef: Headers;
  readonly bodyBytes: number;
  readonly status: number;
  /** Flat [name, value, ...] with Via (this hop appended) and Content-Length; no Age, X-Cache, Server-Timing. */
  readonly head: readonly string[];
  /** Index of 'content-length' in `head`, -1 when the status has no body. */
  readonly lengthIdx: number;
  /** The stored X-Cache and ", " (chaining), or "". */
  readonly xCachePrefix: string;
  readonly etag: string | undefined;
  readonly lastModified: string | undefined;
  /** The stored head has a Date (node:http adds one only when it has not). */
  readonly hasDate: boolean;
}

/** Fields `head` leaves out: per-request ones, and Via / Content-Length, which it writes itself. */
const PREPARED_SKIP: ReadonlySet<string> = new Set(['age', 'x-cache', 'server-timing', 'via', 'content-length']);

/** Statuses that never carry a body, so no Content-Length (RFC 9110 8.6). */
function bodiless(status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status < 200);
}

/**
 * Builds the Prepared of `meta` from `headers` (the policy's responseHeaders for it). `via` is this
 * hop's Via entry.
 */
export function prepare(meta: StoredObjectMeta, headers: Headers, via: string): Prepared {
  const head: string[] = [];
  pushFlat(head, headers, PREPARED_SKIP);
  const upVia = joined(headers.via);
  head.push('via', upVia !== undefined && upVia !== '' ? `${upVia}, ${via}` : via);
  let lengthIdx = -1;
  if (!bodiless(meta.status)) {
    lengthIdx = head.length;
    head.push('content-length', String(meta.bodyBytes));
  }
  const xc = joined(headers['x-cache']);
  return {
    headersRef: meta.headers,
    bodyBytes: meta.bodyBytes,
    status: meta.status,
    head,
    lengthIdx,
    xCachePrefix: xc !== undefined && xc !== '' ? `${xc}, ` : '',
    etag: joined(headers.etag),
    lastModified: joined(headers['last-modified']),
    hasDate: headers.date !== undefined,
  };
}

/** `head` without Content-Length (for a 304), or with its value replaced (for a 206). */
export function withLength(p: Prepared, length: number | undefined): string[] {
  const out = p.head.slice();
  if (p.lengthIdx >= 0) {
    if (length === undefined) out.splice(p.lengthIdx, 2);
    else out[p.lengthIdx + 1] = String(length);
  }
  return out;
}

function opaque(tag: string): string {
  const t = tag.trim();
  return t.startsWith('W/') ? t.slice(2) : t;
}

/**
 * RFC 9110 13.1.1 / 13.1.3 and 13.2.2: true when a GET/HEAD with these conditionals should get
 * 304 from the stored object. If-None-Match wins over If-Modified-Since; ETags compare weakly.
 */
export function notModified(p: Prepared, h: IncomingHttpHeaders): boolean {
  const inm = h['if-none-match'];
  if (inm !== undefined) {
    if (p.etag === undefined) return false;
    const mine = opaque(p.etag);
    for (const part of inm.split(',')) {
      const t = part.trim();
      if (t === '*' || opaque(t) === mine) return true;
    }
    return false;
  }
  const ims = h['if-modified-since'];
  if (ims === undefined || p.lastModified === undefined) return false;
  const since = Date.parse(ims);
  const modified = Date.parse(p.lastModified);
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since;
}

/**
 * RFC 9110 13.1.5: the Range applies only when If-Range is absent or matches: an entity tag
 * compared strongly (a weak tag never matches), or a date equal to Last-Modified.
 */
export function ifRangeMatches(p: Prepared, ifRange: string | undefined): boolean {
  if (ifRange === undefined) return true;
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith('W/')) return p.etag !== undefined && !v.startsWith('W/') && !p.etag.startsWith('W/') && v === p.etag.trim();
  return p.lastModified !== undefined && Date.parse(v) === Date.parse(p.lastModified) && Number.isFinite(Date.parse(v));
}

const fastHeads = new WeakMap<Prepared, string | null>();

/**
 * The fast path's response head of a prepared object, up to the per-request fields: status line,
 * the stored headers, Via, Content-Length, and Date when the stored head has none. Built once per
 * Prepared; undefined when a stored name or value would not pass node's checks (that object is
 * then served by node:http, which refuses it the same way as before).
 */
export function fastHead(p: Prepared): string | undefined {
  let h = fastHeads.get(p);
  if (h === undefined) {
    h = buildFastHead(p);
    fastHeads.set(p, h);
  }
  if (h === null) return undefined;
  return p.hasDate ? h : h + 'date: ' + httpDate() + '\r\n';
}

function buildFastHead(p: Prepared): string | null {
  const reason = STATUS_CODES[p.status];
  if (reason === undefined) return null;
  let out = `HTTP/1.1 ${p.status} ${reason}\r\n`;
  for (let i = 0; i < p.head.length; i += 2) {
    const name = p.head[i]!;
    const value = p.head[i + 1]!;
    if (!HTTP_TOKEN.test(name) || INVALID_FIELD_VALUE_CHAR.test(value) || name === 'connection' || name === 'keep-alive' || name === 'transfer-encoding') return null;
    out += name + ': ' + value + '\r\n';
  }
  return out;
}
