/**
 * The cache key: normalised scheme, host, path and query (the Vary part is added by the policy).
 *
 * Two requests get the same key only when every origin would serve them the same response, and a
 * request target that different servers would read differently is refused rather than guessed at.
 * Forward the normalised target upstream (`path + query` from normalizeTarget), so that the key
 * and what the origin is asked for can never disagree.
 *
 * Rules of normalizeTarget (RFC 3986 6.2.2 syntax-based normalisation, plus refusals):
 *
 * 1. The target is origin-form (`/path?query`) or absolute-form (`http://host/path?query`; the
 *    authority is dropped here and checked against the Host by primaryKey). Anything else (`*`,
 *    authority-form, a relative path) is refused.
 * 2. Refused anywhere: control characters (U+0000-U+001F, U+007F), space, `#`, a `%` not followed by
 *    two hex digits, an encoded NUL (`%00`, also when double encoded), lone UTF-16 surrogates.
 * 3. Percent-encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every other
 *    escape gets upper-case hex (`%2f` -> `%2F`). Characters not allowed raw in a path or query
 *    (`"` `<` `>` `\` `^` `` ` `` `{` `|` `}` `[` `]` and non-ASCII, as UTF-8) are percent-encoded.
 *    Reserved characters keep their form: `%2F` stays encoded, `+` stays `+`, `%26` stays `%26`.
 * 4. Dot segments are resolved (RFC 3986 5.2.4), including encoded ones (`%2e%2e` is `..`); `..`
 *    never climbs above the root. Duplicate slashes are kept as they are (`/a//b` is its own key).
 * 5. Path confusion is refused: a segment that would become `.` or `..` for a server that
 *    decodes once or twice more (`%252e%252e`), or that splits on an encoded slash or a backslash
 *    (`..%2F`, `a%5C..%5Cb`, raw `\..\`), or whose name before a matrix parameter is a dot
 *    segment (`..;/`, which Tomcat resolves as `..`). An encoded slash elsewhere (`a%2Fb`) is kept.
 * 6. Matrix parameters (`;...` in a segment) stay part of the key: `/a;.css`, `/a` and `/a.css` are
 *    three keys. pathExtension() gives the extension of the last segment with matrix parameters
 *    removed (`/a;.css` -> ''), for any rule that looks at extensions.
 * 7. An empty query (`/a?`) is the same as none.
 */
import { CdnError } from './errors.js';
import type { CacheRequest } from './types.js';

export interface KeyOptions {
  /** 'keep' (default), 'sort' (sort params by name, stable), 'ignore' (drop the query), or a list of params to keep. */
  query?: 'keep' | 'sort' | 'ignore' | { keep: string[] };
  /** Include the scheme (default true). Without it the key is `${host}${path}${query}`. */
  scheme?: boolean;
}

/** How many extra percent-decodings the path-confusion check looks through (rule 5). */
export const CONFUSION_DECODE_DEPTH = 3;

const HEX = '0123456789ABCDEF';
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
// pchar minus pct-encoded (RFC 3986 3.3): unreserved, sub-delims, ':' and '@'.
const PCHAR_RAW = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]$/;
// query = *( pchar / "/" / "?" ) (RFC 3986 3.4).
const QUERY_RAW = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?]$/;

function bad(message: string, target: string): CdnError {
  return new CdnError('ARCHLAB_CDN_BAD_REQUEST', message, { details: { target: target.length > 200 ? `${target.slice(0, 200)}...` : target } });
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9A-Fa-f]$/.test(c);
}

/** Canonical form of one path segment or of the query (rules 2 and 3). */
function canonical(part: string, raw: RegExp, target: string): string {
  let out = '';
  for (let i = 0; i < part.length; i++) {
    const c = part[i]!;
    if (c === '%') {
      const h1 = part[i + 1];
      const h2 = part[i + 2];
      if (!isHex(h1) || !isHex(h2)) throw bad('a "%" not followed by two hex digits', target);
      const code = parseInt(h1! + h2!, 16);
      if (code === 0) throw bad('an encoded NUL (%00)', target);
      const ch = String.fromCharCode(code);
      out += UNRESERVED.test(ch) ? ch : `%${h1!.toUpperCase()}${h2!.toUpperCase()}`;
      i += 2;
    } else if (raw.test(c)) {
      out += c;
    } else {
      const code = c.charCodeAt(0);
      if (code < 0x20 || code === 0x7f || c === ' ' || c === '#') throw bad('a control character, space or "#" in the target', target);
      if (code < 0x80) out += `%${HEX[code >> 4]}${HEX[code & 15]}`;
      else {
        // A whole code point (surrogate pairs together) as UTF-8.
        const cp = part.codePointAt(i)!;
        const s = String.fromCodePoint(cp);
        if (cp >= 0xd800 && cp <= 0xdfff) throw bad('a lone UTF-16 surrogate in the target', target);
        out += encodeURIComponent(s);
        i += s.length - 1;
      }
    }
  }
  return out;
}

/** One lenient percent-decoding: valid escapes decoded byte-wise (as Latin-1, enough to spot '.', '/', '\' and NUL). */
function decodeOnce(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** An encoded NUL behind up to CONFUSION_DECODE_DEPTH decodings (%00 itself is refused by canonical()). */
function hasNulWhenDecoded(s: string): boolean {
  let t = s;
  for (let i = 0; i < CONFUSION_DECODE_DEPTH; i++) {
    const next = decodeOnce(t);
    if (next === t) return false;
    if (next.includes('\u0000')) return true;
    t = next;
  }
  return false;
}

function isDotName(piece: string): boolean {
  const name = piece.split(';', 1)[0];
  return name === '.' || name === '..';
}

/** Rule 5 on a canonical segment that is not itself '.' or '..'. */
function checkConfusion(seg: string, target: string): void {
  if (isDotName(seg)) throw bad(`a dot segment with matrix parameters ("${seg}")`, target);
  let t = seg;
  for (let level = 0; level <= CONFUSION_DECODE_DEPTH; level++) {
    if (level > 0) {
      const next = decodeOnce(t);
      if (next === t) break;
      t = next;
      if (t.includes('\u0000')) throw bad('an encoded NUL', target);
    }
    const pieces = t.split(/[/\\]/);
    if ((level > 0 || pieces.length > 1) && pieces.some(isDotName)) throw bad(`a segment that a decoding server would read as a dot segment ("${seg}")`, target);
  }
}

// A path or query made only of characters that stay as they are (no '%', nothing to encode).
const CANONICAL_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/;
const CANONICAL_QUERY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*$/;
// A '.' or '..' segment, with or without matrix parameters.
const DOT_SEGMENT = /\/\.\.?(?:[;/]|$)/;

function splitTarget(url: string): { rawPath: string; rawQuery: string } {
  let rest = url;
  if (!rest.startsWith('/')) {
    const m = /^https?:\/\/[^/?#]*/i.exec(rest);
    if (!m) throw bad('the request target is not origin-form or absolute-form', url);
    rest = rest.slice(m[0].length);
    if (!rest.startsWith('/')) rest = `/${rest}`;
  }
  const q = rest.indexOf('?');
  return q < 0 ? { rawPath: rest, rawQuery: '' } : { rawPath: rest.slice(0, q), rawQuery: rest.slice(q + 1) };
}

/**
 * Normalises the request target (see the rules at the top of this file). Returns the path (always
 * starting with '/') and the query with its '?' ('' when none). Throws CdnError
 * ARCHLAB_CDN_BAD_REQUEST for a target that cannot be normalised safely.
 */
export function normalizeTarget(url: string): { path: string; query: string } {
  const { rawPath, rawQuery } = splitTarget(url);
  // Fast path, the common case: nothing to decode, encode or resolve; the target is its own canonical form.
  if (CANONICAL_PATH.test(rawPath) && !DOT_SEGMENT.test(rawPath) && (rawQuery === '' || CANONICAL_QUERY.test(rawQuery))) {
    return { path: rawPath, query: rawQuery === '' ? '' : `?${rawQuery}` };
  }
  const segments = rawPath.split('/').slice(1);
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const seg = canonical(segments[i]!, PCHAR_RAW, url);
    const last = i === segments.length - 1;
    if (seg === '.' || seg === '..') {
      if (seg === '..' && out.length > 0) out.pop();
      if (last) out.push(''); // "/a/b/.." is "/a/"
      continue;
    }
    checkConfusion(seg, url);
    out.push(seg);
  }
  const query = rawQuery === '' ? '' : `?${canonical(rawQuery, QUERY_RAW, url)}`;
  if (hasNulWhenDecoded(query)) throw bad('an encoded NUL', url);
  return { path: `/${out.join('/')}`, query: query === '?' ? '' : query };
}

/**
 * The extension of a normalised path's last segment, lower-cased, with matrix parameters removed
 * first: '/a.css' -> 'css', '/a;.css' -> '', '/a.css;v=1' -> 'css', '/a/' -> ''.
 */
export function pathExtension(path: string): string {
  const last = path.slice(path.lastIndexOf('/') + 1).split(';', 1)[0]!;
  const dot = last.lastIndexOf('.');
  return dot <= 0 ? '' : last.slice(dot + 1).toLowerCase();
}

const DEFAULT_PORTS: Record<string, string> = { http: '80', https: '443' };

/**
 * A Host (or absolute-form authority) in canonical form: lower case, no trailing dot, no default
 * port for the scheme. Refused (BAD_REQUEST): anything but a DNS-like name ([a-z0-9._-]), an IPv4
 * address or a bracketed IPv6 literal, with an optional port 0-65535. This keeps "evil/x" or
 * "a@b" out of keys.
 */
export function normalizeHost(host: string, scheme: string): string {
  const h = host.trim().toLowerCase();
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9_-][a-z0-9._-]*)(?::(\d{0,5}))?$/.exec(h);
  if (!m) throw bad(`a host that cannot be keyed ("${host.slice(0, 100)}")`, host);
  let name = m[1]!;
  if (!name.startsWith('[') && name.endsWith('.') && name.length > 1) name = name.slice(0, -1);
  if (name.includes('..')) throw bad(`a host with an empty label ("${host.slice(0, 100)}")`, host);
  const portRaw = m[2];
  if (portRaw === undefined || portRaw === '') return name;
  const port = Number(portRaw);
  if (port > 65535) throw bad(`a port out of range ("${portRaw}")`, host);
  return String(port) === DEFAULT_PORTS[scheme] ? name : `${name}:${port}`;
}

const keepSets = new WeakMap<object, ReadonlySet<string>>();

function paramName(param: string): string {
  const eq = param.indexOf('=');
  const raw = eq < 0 ? param : param.slice(0, eq);
  const spaced = raw.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return decodeOnce(spaced); // not UTF-8: compare byte-wise
  }
}

function applyQueryRule(query: string, rule: KeyOptions['query']): string {
  if (query === '' || rule === undefined || rule === 'keep') return query;
  if (rule === 'ignore') return '';
  const params = query
    .slice(1)
    .split('&')
    .filter((p) => p !== '');
  let kept: string[];
  if (rule === 'sort') {
    // Array.prototype.sort is stable: repeated names keep their relative order (a=2&a=1 differs from a=1&a=2).
    const named = params.map((p) => ({ p, name: paramName(p) }));
    named.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    kept = named.map((x) => x.p);
  } else {
    let keep = keepSets.get(rule);
    if (!keep) {
      keep = new Set(rule.keep);
      keepSets.set(rule, keep);
    }
    const names = keep;
    kept = params.filter((p) => names.has(paramName(p)));
  }
  return kept.length ? `?${kept.join('&')}` : '';
}

/**
 * The primary cache key: `${scheme}://${host}${path}${query}` after normalisation and the query rule.
 * A scheme other than http/https, a host that cannot be keyed, or an absolute-form target whose
 * scheme or authority is not the request's, is refused with CdnError ARCHLAB_CDN_BAD_REQUEST.
 */
export function primaryKey(req: Pick<CacheRequest, 'scheme' | 'host' | 'url'>, options: KeyOptions = {}): string {
  const scheme = req.scheme.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') throw bad(`scheme "${req.scheme}" is not http or https`, req.url);
  const host = normalizeHost(req.host, scheme);
  if (!req.url.startsWith('/')) {
    const m = /^(https?):\/\/([^/?#]*)/i.exec(req.url);
    if (m && (m[1]!.toLowerCase() !== scheme || normalizeHost(m[2]!, scheme) !== host)) throw bad('an absolute-form target whose scheme or authority is not the request\'s', req.url);
  }
  const { path, query } = normalizeTarget(req.url);
  const q = applyQueryRule(query, options.query);
  return options.scheme === false ? `${host}${path}${q}` : `${scheme}://${host}${path}${q}`;
}
