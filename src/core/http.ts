/** HTTP facts every proxying block (balancer, proxy, CDN) shares. */

/**
 * Fields that describe one connection, not the message (RFC 9110 7.6.1), plus the Proxy-* fields,
 * which are meant for the next proxy only (RFC 9111 3.1): forwarding Proxy-Authorization would hand
 * a client's proxy credentials to every backend. Also drop every field a `Connection` header names.
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authentication-info',
  'proxy-authorization',
]);

/** A request head accepted by parseSimpleRequestHead: lowercase field names, repeated fields joined with ", ". */
export interface SimpleRequestHead {
  method: 'GET' | 'HEAD';
  /** The origin-form target as sent ("/a?b"). */
  url: string;
  host: string;
  headers: Record<string, string>;
}

/**
 * Makes objects keyed by names a peer chose (header fields, cookies): nothing is inherited, not even
 * from Object.prototype, so "__proto__" or "constructor" is only ever an own key; and they are built
 * by a constructor, so V8 keeps fast properties (Object.create(null) gives a dictionary-mode object,
 * 2-3x slower to fill and to copy).
 */
export const FieldObject = function FieldObject() {} as unknown as new <T extends object = Record<string, string>>() => T;
FieldObject.prototype = Object.create(null) as object;

/** A field name, method or other token (RFC 9110 5.6.2). */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field names as sent (peers send the same few, each in its own case), lowercased and checked once. */
const FIELD_NAMES = new Map<string, string>();
/** FIELD_NAMES stops learning at this many names, and never learns longer ones: a peer that invents names costs a lowercase and a check each, not memory (at most 512 x 64 characters). */
const MAX_FIELD_NAMES = 512;
const MAX_CACHED_NAME_LENGTH = 64;

/** `raw` lowercased when it is a token (a field name may be one), else undefined. */
export function fieldName(raw: string): string | undefined {
  let name = FIELD_NAMES.get(raw);
  if (name !== undefined) return name;
  name = raw.toLowerCase();
  if (!HTTP_TOKEN.test(name)) return undefined;
  if (FIELD_NAMES.size < MAX_FIELD_NAMES && raw.length <= MAX_CACHED_NAME_LENGTH) FIELD_NAMES.set(raw, name);
  return name;
}

/** A character no field value may hold (RFC 9110 5.5: HTAB, SP, visible ASCII and obs-text only), as node:http checks outgoing ones. */
export const INVALID_FIELD_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/;
/** Visible ASCII, SP and HTAB only: no CR, LF, NUL or other controls, no obs-text. */
const VISIBLE_VALUE = /^[\t\x20-\x7e]*$/;
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;

/** Fields that give a request a body or change its framing: never in a simple request. */
export const FRAMING_FIELDS: readonly string[] = ['content-length', 'transfer-encoding', 'expect', 'upgrade', 'te', 'trailer'];

/**
 * A strict parser for the one request shape that servers below node:http answer themselves (the CDN
 * edge's hit path, the balancer's HTTP/1.1 fast path): `GET` or `HEAD`, an origin-form target of
 * visible ASCII, `HTTP/1.1`, at most `maxFields` header lines of token names and visible-ASCII values
 * (no obs-fold, no obs-text), exactly one non-empty Host, `Connection` absent or `keep-alive`, one
 * Cookie at most, and none of the fields in `refuse` (lowercase; include FRAMING_FIELDS). `buf[start,
 * end)` is the head up to, not including, its blank line. Anything else gives undefined, and the
 * caller hands the request to node:http, whose parser answers malformed and smuggling shapes.
 */
export function parseSimpleRequestHead(buf: Buffer, start: number, end: number, refuse: ReadonlySet<string>, maxFields: number): SimpleRequestHead | undefined {
  const lines = buf.toString('latin1', start, end).split('\r\n');
  const first = lines[0]!;
  let method: 'GET' | 'HEAD';
  let rest: string;
  if (first.startsWith('GET ')) {
    method = 'GET';
    rest = first.slice(4);
  } else if (first.startsWith('HEAD ')) {
    method = 'HEAD';
    rest = first.slice(5);
  } else return undefined;
  if (!rest.endsWith(' HTTP/1.1')) return undefined;
  const url = rest.slice(0, -9);
  if (!ORIGIN_FORM.test(url)) return undefined;
  if (lines.length - 1 > maxFields) return undefined;
  const headers = new FieldObject();
  let host: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = fieldName(line.slice(0, colon));
    if (name === undefined) return undefined;
    const value = line.slice(colon + 1).trim();
    if (!VISIBLE_VALUE.test(value)) return undefined;
    if (refuse.has(name)) return undefined;
    if (name === 'connection') {
      if (value.toLowerCase() !== 'keep-alive') return undefined;
    } else if (name === 'host') {
      if (host !== undefined || value === '') return undefined;
      host = value;
    }
    const prev = headers[name];
    if (prev === undefined) headers[name] = value;
    else if (name === 'set-cookie' || name === 'cookie') return undefined;
    else headers[name] = `${prev}, ${value}`;
  }
  if (host === undefined) return undefined;
  return { method, url, host, headers };
}

let dateSecond = -1;
let dateValue = '';
/** The current time as an HTTP-date (RFC 9110 5.6.7), computed at most once a second. */
export function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

/** A body that can be read as chunks and torn down (an undici response body, a node Readable). */
export interface ChunkedBody extends AsyncIterable<Buffer> {
  destroy(): unknown;
}

/**
 * Reads `body` whole if it holds at most `maxBytes`; null when it holds more, in which case reading
 * stops there and the body is destroyed (the caller says why in its own typed error).
 */
export async function readAtMost(body: ChunkedBody, maxBytes: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > maxBytes) {
      body.destroy();
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** The head of a Server-Sent Events response (no caching, and no buffering by a proxy in front). */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-store',
  'X-Accel-Buffering': 'no',
};

/** One Server-Sent Event, its data as one line of JSON. Build it once to send it to many streams. */
export function sseEvent(event: string, data: unknown, id?: string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
