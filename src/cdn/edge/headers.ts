/**
 * Header handling of an edge node: what goes upstream (hop-by-hop fields and unkeyed inputs removed,
 * Via and X-Forwarded-For added) and what comes back (hop-by-hop fields removed). Pure functions; the
 * input objects are never modified. Names are lower case throughout (Node and undici give them so).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Headers } from '../types.js';
import { HOP_BY_HOP_HEADERS } from '../../core/http.js';
import { emptyHeaders } from '../policy/headers.js';

/**
 * Fields that describe one connection, not the message (RFC 9110 7.6.1), plus Proxy-* (meant for the
 * next proxy only) and Expect (the edge answers 100-continue itself; undici refuses to forward it).
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([...HOP_BY_HOP_HEADERS, 'expect']);

/**
 * Request fields that are not part of the cache key and that origins (frameworks, rewrite modules)
 * are known to act on: forwarding them would let one client change a body that is then served to
 * everyone (cache poisoning). They are dropped, never forwarded. X-Forwarded-Proto and Forwarded
 * are in the list because a client's claim about the scheme or host is unkeyed as well.
 */
export const UNKEYED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'x-forwarded-host',
  'x-forwarded-server',
  'x-forwarded-scheme',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'forwarded',
  'x-host',
  'x-original-host',
  'x-original-url',
  'x-rewrite-url',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
]);

/**
 * Request fields removed from a cache fill: the edge fetches the whole, current representation to
 * store it and answers ranges and conditionals from the stored copy itself.
 */
export const FILL_DROPPED: ReadonlySet<string> = new Set(['range', 'if-range', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since']);

/** Response fields the edge never stores: they describe one exchange, not the object. */
export const NOT_STORED: ReadonlySet<string> = new Set(['server-timing', 'content-length']);

/** A header object that inherits nothing: names come from clients and origins, so "__proto__" must be an ordinary name. */
export { emptyHeaders };

/** The names a Connection header lists (they are hop-by-hop for that message), lower case. */
function connectionTokens(v: string | string[] | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const s = typeof v === 'string' ? v : v.join(',');
  const out: string[] = [];
  for (const part of s.split(',')) {
    const t = part.trim().toLowerCase();
    if (t !== '') out.push(t);
  }
  return out.length === 0 ? undefined : out;
}

/** A copy of `headers` without hop-by-hop fields (the fixed set and whatever Connection names) and without undefined values. */
export function stripHopByHop(headers: IncomingHttpHeaders | Headers): Headers {
  const out = emptyHeaders();
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = v;
  }
  const named = connectionTokens(headers.connection);
  if (named !== undefined) for (const n of named) delete out[n];
  return out;
}

export interface UpstreamHeaderOptions {
  /** Host to send (the normalised one the key was built from). */
  host: string;
  /** This hop's Via entry, e.g. "1.1 edge-eu-1". */
  via: string;
  /** The client's address, appended to X-Forwarded-For. */
  peer: string;
  /** Drop Range and conditionals (a cache fill). */
  fill: boolean;
  /** Added last (revalidation's If-None-Match / If-Modified-Since). */
  extra?: Headers;
}

/**
 * The request fields to send upstream: the client's minus hop-by-hop fields (and those Connection
 * names), minus UNKEYED_REQUEST_HEADERS, minus Range and conditionals on a fill; Host set to the
 * normalised host, Via and X-Forwarded-For appended (like nginx's $proxy_add_x_forwarded_for).
 */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, o: UpstreamHeaderOptions): Headers {
  const out = emptyHeaders();
  for (const name in incoming) {
    const v = incoming[name];
    if (v === undefined || HOP_BY_HOP.has(name) || UNKEYED_REQUEST_HEADERS.has(name)) continue;
    if (o.fill && FILL_DROPPED.has(name)) continue;
    out[name] = v;
  }
  const named = connectionTokens(incoming.connection);
  if (named !== undefined) {
    for (const n of named) {
      // The forwarding fields are ours to write: a client naming them in Connection cannot remove them.
      if (n !== 'via' && n !== 'x-forwarded-for' && n !== 'host') delete out[n];
    }
  }
  out.host = o.host;
  const xff = joined(incoming['x-forwarded-for']);
  out['x-forwarded-for'] = xff !== undefined && xff !== '' ? `${xff}, ${o.peer}` : o.peer;
  const via = joined(incoming.via);
  out.via = via !== undefined && via !== '' ? `${via}, ${o.via}` : o.via;
  if (o.extra !== undefined) for (const name in o.extra) out[name] = o.extra[name]!;
  return out;
}

/** One string for a field that may come as several. */
export function joined(v: string | string[] | undefined): string | undefined {
  if (v === undefined || typeof v === 'string') return v;
  return v.length === 0 ? undefined : v.join(', ');
}

/** Total bytes of a response head as received (names, values, ": " and CRLF), for the header limit. */
export function headerBlockBytes(headers: IncomingHttpHeaders | Headers): number {
  let n = 0;
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    if (typeof v === 'string') n += name.length + v.length + 4;
    else for (const x of v) n += name.length + x.length + 4;
  }
  return n;
}

/** Appends `headers` to a flat [name, value, ...] array (repeated fields as repeated pairs), skipping names in `skip`. */
export function pushFlat(out: string[], headers: Headers, skip?: ReadonlySet<string>): void {
  for (const name in headers) {
    if (skip !== undefined && skip.has(name)) continue;
    const v = headers[name]!;
    if (typeof v === 'string') out.push(name, v);
    else for (const x of v) out.push(name, x);
  }
}

/** A Connection-safe, quoted-string-safe copy of a node name for Server-Timing's desc. */
export function timingDesc(name: string, outcome: string): string {
  return `;desc="${name} ${outcome}"`;
}
