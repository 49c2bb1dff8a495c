/**
 * Layer-7 routing: an ordered table of rules, the first whose every condition holds picks the pool
 * and may rewrite the path. Everything a rule needs (lowercase names, regular expressions, method
 * sets, normalised prefixes) is built once in the constructor; route() allocates only the result and,
 * when the path changes, the new path.
 *
 * Matching rules, in the order a rule checks them (cheapest first):
 * - method: one or a list, case-insensitive.
 * - host: exact ("api.example.com") or "*.example.com", which matches any depth of subdomain
 *   ("a.example.com", "a.b.example.com") but not the apex "example.com". Case-insensitive; the port
 *   and a trailing dot of the request's Host are ignored. A request without Host never matches.
 * - pathPrefix: segment-aware. "/api/video" matches "/api/video", "/api/video/" and
 *   "/api/video/1", never "/api/videos"; a trailing "/" in the prefix is ignored ("/api/" = "/api");
 *   "/" matches every path. Case-sensitive, like the path itself.
 * - pathRegex: a JavaScript regular expression tested against the path.
 * - headers: name -> exact value, or "~regex" tested against the value ("~" alone: the header is
 *   present). A header Node keeps as a list (set-cookie) matches when any element does.
 * - cookies: like headers, over the Cookie header; parsed only when a rule with cookies is reached,
 *   and at most once per request.
 *
 * Paths are matched on the part before "?", as received: no percent-decoding and no dot-segment
 * removal, so "/api/video/../user" is a "/api/video" path here. The query string is carried over to
 * the result untouched.
 *
 * Rewriting: stripPrefix removes the matched pathPrefix (the result always starts with "/"), then
 * rewrite replaces the first match of its pattern with the replacement ($1, $<name>, $& and $$ as in
 * String.prototype.replace). A rewritten path that does not start with "/" gets one.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteConfig } from '../config.js';
import { BalancerError } from '../errors.js';

export interface RouteRequest {
  /** Host header (or :authority), port included or not. */
  host: string | undefined;
  /** Request target in origin form: path and optional "?query". */
  path: string;
  method: string;
  headers: IncomingHttpHeaders;
  /** Parsed Cookie header; called at most once per route(), and only when a rule needs cookies. */
  cookies: () => Record<string, string>;
}

export interface RouteResult {
  pool: string;
  /** Path and query to send upstream (the request's own string when nothing was rewritten). */
  path: string;
  /** Index of the matching rule in the table; -1 for the default pool. */
  rule: number;
}

/** One value condition: exact, or a regular expression ("~..."). */
interface ValueMatcher {
  name: string;
  exact: string | undefined;
  regex: RegExp | undefined;
}

interface CompiledRule {
  pool: string;
  methods: ReadonlySet<string> | undefined;
  /** Exact host, lowercase, no port. */
  hostExact: string | undefined;
  /** For "*.example.com": ".example.com". */
  hostSuffix: string | undefined;
  /** Normalised prefix (no trailing "/", "" for "/"); undefined when the rule has none. */
  prefix: string | undefined;
  pathRegex: RegExp | undefined;
  headers: readonly ValueMatcher[] | undefined;
  cookies: readonly ValueMatcher[] | undefined;
  stripPrefix: boolean;
  rewrite: { pattern: RegExp; replacement: string } | undefined;
}

const HOST_PATTERN = /^(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;
const IPV6_HOST_PATTERN = /^\[[0-9a-f:.]+\]$/;

export class Router {
  readonly defaultPool: string;
  private readonly rules: readonly CompiledRule[];
  private readonly needsHost: boolean;

  /** Throws BalancerError ARCHLAB_BALANCER_CONFIG naming the rule and field when a rule cannot work. */
  constructor(routes: readonly RouteConfig[], defaultPool: string) {
    if (defaultPool === '') throw new BalancerError('ARCHLAB_BALANCER_CONFIG', 'router: defaultPool must be a pool name');
    this.defaultPool = defaultPool;
    this.rules = routes.map((r, i) => compileRule(r, i));
    this.needsHost = this.rules.some((r) => r.hostExact !== undefined || r.hostSuffix !== undefined);
  }

  get size(): number {
    return this.rules.length;
  }

  route(req: RouteRequest): RouteResult {
    const full = req.path;
    const q = full.indexOf('?');
    const path = q < 0 ? full : full.slice(0, q);
    let host: string | undefined | null = this.needsHost ? null : undefined; // null: not yet normalised
    let method: string | undefined;
    let cookies: Record<string, string> | undefined;

    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (r.methods !== undefined) {
        method ??= req.method.toUpperCase();
        if (!r.methods.has(method)) continue;
      }
      if (r.hostExact !== undefined || r.hostSuffix !== undefined) {
        if (host === null) host = normalizeHost(req.host);
        if (host === undefined) continue;
        if (r.hostExact !== undefined ? host !== r.hostExact : !(host.length > r.hostSuffix!.length && host.endsWith(r.hostSuffix!))) continue;
      }
      if (r.prefix !== undefined && !hasPrefix(path, r.prefix)) continue;
      if (r.pathRegex !== undefined && !r.pathRegex.test(path)) continue;
      if (r.headers !== undefined && !headersMatch(r.headers, req.headers)) continue;
      if (r.cookies !== undefined) {
        cookies ??= req.cookies();
        if (!cookiesMatch(r.cookies, cookies)) continue;
      }
      return { pool: r.pool, path: rewritePath(r, path, full, q), rule: i };
    }
    return { pool: this.defaultPool, path: full, rule: -1 };
  }
}

function compileRule(r: RouteConfig, i: number): CompiledRule {
  const bad = (field: string, why: string): BalancerError =>
    new BalancerError('ARCHLAB_BALANCER_CONFIG', `routes[${i}].${field}: ${why}`, { details: { route: i, field } });
  const m = r.match;

  let hostExact: string | undefined;
  let hostSuffix: string | undefined;
  if (m.host !== undefined) {
    const h = m.host.toLowerCase().replace(/\.$/, '');
    if (IPV6_HOST_PATTERN.test(h)) hostExact = h;
    else if (!HOST_PATTERN.test(h)) {
      throw bad('match.host', `${JSON.stringify(m.host)} is not a host name; expected "api.example.com" or "*.example.com" (no port, "*" only as the whole first label)`);
    } else if (h.startsWith('*.')) hostSuffix = h.slice(1);
    else hostExact = h;
  }

  let prefix: string | undefined;
  if (m.pathPrefix !== undefined) {
    if (!m.pathPrefix.startsWith('/')) throw bad('match.pathPrefix', `${JSON.stringify(m.pathPrefix)} must start with "/"`);
    prefix = m.pathPrefix.replace(/\/+$/, '');
  }
  if (r.stripPrefix && prefix === undefined) throw bad('stripPrefix', 'needs match.pathPrefix (there is no prefix to strip); use rewrite for other paths');

  const methods = m.method === undefined ? undefined : new Set((typeof m.method === 'string' ? [m.method] : m.method).map((x) => x.toUpperCase()));

  return {
    pool: r.pool,
    methods,
    hostExact,
    hostSuffix,
    prefix,
    pathRegex: m.pathRegex === undefined ? undefined : regex(m.pathRegex, () => bad('match.pathRegex', `invalid regular expression ${JSON.stringify(m.pathRegex)}`)),
    headers: valueMatchers(m.headers, true, (name, why) => bad(`match.headers.${name}`, why)),
    cookies: valueMatchers(m.cookies, false, (name, why) => bad(`match.cookies.${name}`, why)),
    stripPrefix: r.stripPrefix,
    rewrite:
      r.rewrite === undefined
        ? undefined
        : { pattern: regex(r.rewrite.pattern, () => bad('rewrite.pattern', `invalid regular expression ${JSON.stringify(r.rewrite?.pattern)}`)), replacement: r.rewrite.replacement },
  };
}

function regex(source: string, onError: () => BalancerError): RegExp {
  try {
    return new RegExp(source);
  } catch {
    throw onError();
  }
}

function valueMatchers(
  spec: Record<string, string> | undefined,
  lowerNames: boolean,
  bad: (name: string, why: string) => BalancerError,
): ValueMatcher[] | undefined {
  if (spec === undefined) return undefined;
  const out: ValueMatcher[] = [];
  for (const [name, value] of Object.entries(spec)) {
    if (name === '') throw bad(name, 'empty name');
    const isRegex = value.startsWith('~');
    out.push({
      name: lowerNames ? name.toLowerCase() : name,
      exact: isRegex ? undefined : value,
      regex: isRegex ? regex(value.slice(1), () => bad(name, `invalid regular expression ${JSON.stringify(value.slice(1))}`)) : undefined,
    });
  }
  return out.length === 0 ? undefined : out;
}

/** "Example.COM:8080" -> "example.com"; "[::1]:80" -> "[::1]"; "example.com." -> "example.com". */
function normalizeHost(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  let h = host;
  if (h.charCodeAt(0) === 91 /* [ */) {
    const close = h.indexOf(']');
    if (close > 0) h = h.slice(0, close + 1);
  } else {
    const colon = h.indexOf(':');
    if (colon >= 0) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

/** Segment-aware: `prefix` ("" for "/", never ending in "/") matches itself and anything below it. */
function hasPrefix(path: string, prefix: string): boolean {
  if (prefix === '') return true;
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 47; /* / */
}

function valueMatches(m: ValueMatcher, v: string): boolean {
  return m.exact !== undefined ? v === m.exact : m.regex!.test(v);
}

function headersMatch(matchers: readonly ValueMatcher[], headers: IncomingHttpHeaders): boolean {
  for (const m of matchers) {
    // Typed checks, not `=== undefined`: req.headers is a plain object, and a configured name such as
    // "constructor" must not find Object.prototype's.
    const v: unknown = headers[m.name];
    if (typeof v === 'string') {
      if (!valueMatches(m, v)) return false;
    } else if (!Array.isArray(v) || !v.some((x) => typeof x === 'string' && valueMatches(m, x))) return false;
  }
  return true;
}

function cookiesMatch(matchers: readonly ValueMatcher[], cookies: Record<string, string>): boolean {
  for (const m of matchers) {
    const v = Object.hasOwn(cookies, m.name) ? cookies[m.name] : undefined;
    if (v === undefined || !valueMatches(m, v)) return false;
  }
  return true;
}

function rewritePath(r: CompiledRule, path: string, full: string, q: number): string {
  if (!r.stripPrefix && r.rewrite === undefined) return full;
  let p = path;
  if (r.stripPrefix && r.prefix !== undefined && r.prefix !== '') {
    p = p.slice(r.prefix.length);
    if (p === '') p = '/';
  }
  if (r.rewrite !== undefined) {
    p = p.replace(r.rewrite.pattern, r.rewrite.replacement);
    if (p.charCodeAt(0) !== 47) p = `/${p}`;
  }
  if (q < 0) return p;
  // The replacement may itself add a query; the client's then follows with "&".
  return p.includes('?') ? `${p}&${full.slice(q + 1)}` : p + full.slice(q);
}
