/**
 * Request-smuggling defences: a pure check of a request's framing headers, run by the proxy on
 * `req.rawHeaders` before anything is forwarded. A proxy and its backends must agree on where each
 * request ends; any request whose length two parsers could read differently is refused with 400 and
 * the connection closed (RFC 9112 §6.3, §11.2).
 *
 * What Node 20's own parser (llhttp 9, strict mode, the default) already rejects with 400 before
 * the request reaches us — checked by framing.test.ts against a real server, so an upgrade that
 * changes it shows up:
 * - obs-fold (a header line starting with SP or HTAB), bare-LF line endings, NUL/CR in values,
 *   whitespace between a field name and ":";
 * - Content-Length together with Transfer-Encoding;
 * - two Content-Length fields, even with equal values; "5, 5"; "+5"; empty; overflowing values;
 * - Transfer-Encoding whose last coding is not chunked ("chunked, identity"), chunked twice;
 * - HTTP/1.1 without Host (not checked here: it is no framing question, and Node's
 *   `requireHostHeader` default covers it).
 *
 * What it lets through and this check refuses:
 * - Transfer-Encoding that is not a known coding ("xchunked", "chunked;q=1", "gzip, chunked",
 *   "identity"): only exactly "chunked" is accepted, since the proxy decodes chunked and nothing else;
 * - Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1: framing must be treated as faulty) or
 *   in HTTP/2 and later (connection-specific, RFC 9113 §8.2.2);
 * - more than one Host field (RFC 9112 §3.2), which would let the router and a backend disagree on
 *   the host.
 *
 * The check repeats Node's rules too, so it stays a complete defence behind a lenient parser
 * (`insecureHTTPParser`, or another front end feeding the proxy).
 */

export type FramingResult = { ok: true } | { ok: false; status: 400; reason: string };

const OK: FramingResult = Object.freeze({ ok: true });

function reject(reason: string): FramingResult {
  return { ok: false, status: 400, reason };
}

/**
 * Checks `rawHeaders` (name, value, name, value ... as Node gives them) of a request made with
 * `httpVersion` ("1.0", "1.1", "2.0" ...). Allocates nothing for a request with neither
 * Content-Length nor Transfer-Encoding.
 */
export function checkFraming(rawHeaders: readonly string[], httpVersion: string): FramingResult {
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let hosts = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const n = name.length;
    if (n === 0) return reject('empty header name');
    const first = name.charCodeAt(0);
    const last = name.charCodeAt(n - 1);
    if (first === 32 || first === 9 || last === 32 || last === 9) return reject(`whitespace around header name ${JSON.stringify(name)}`);
    if (n === 14 && (first | 0x20) === 99 /* c */ && name.toLowerCase() === 'content-length') {
      const value = trimOws(rawHeaders[i + 1]!);
      if (!isDigits(value)) return reject(`invalid Content-Length ${JSON.stringify(value)}`);
      const normalized = value.replace(/^0+(?=\d)/, '');
      if (contentLength !== undefined && contentLength !== normalized) return reject('conflicting Content-Length values');
      contentLength = normalized;
    } else if (n === 17 && (first | 0x20) === 116 /* t */ && name.toLowerCase() === 'transfer-encoding') {
      const value = rawHeaders[i + 1]!;
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding},${value}`;
    } else if (n === 4 && (first | 0x20) === 104 /* h */ && name.toLowerCase() === 'host') {
      hosts++;
    }
  }

  const major = httpVersion.charCodeAt(0);
  const http1 = major === 49 /* 1 */ || major === 48; /* 0 (0.9) */
  if (http1 && hosts > 1) return reject('more than one Host header');
  if (transferEncoding === undefined) return OK;
  if (contentLength !== undefined) return reject('both Content-Length and Transfer-Encoding');
  if (httpVersion !== '1.1') return reject(`Transfer-Encoding in an HTTP/${httpVersion} request`);
  let chunked = 0;
  let other = false;
  for (const part of transferEncoding.split(',')) {
    const coding = trimOws(part).toLowerCase();
    if (coding === '') continue; // empty list elements are allowed (RFC 9110 §5.6.1)
    if (coding === 'chunked') chunked++;
    else other = true;
  }
  if (chunked !== 1 || other) return reject(`unsupported Transfer-Encoding ${JSON.stringify(transferEncoding)}: only "chunked" is accepted`);
  return OK;
}

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Trims optional whitespace (SP, HTAB) only; String.prototype.trim would also eat other characters. */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}
