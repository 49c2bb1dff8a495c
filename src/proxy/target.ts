/**
 * Where a client wants to go, parsed the way the client itself would resolve it. Pure.
 *
 * A forward proxy's access control is only as good as its idea of the target: if the proxy and the
 * client (or the proxy's ACL and its own connect call) read one request target differently, a rule
 * can be walked around. So every target, absolute-form URL and CONNECT authority alike, goes
 * through the WHATWG URL host parser (what browsers, curl's URL API and undici use), which
 * lowercases, percent-decodes, applies IDNA, and reads IPv4 in all its legacy spellings
 * (`2130706433`, `0x7f.1`, `0177.0.0.1` are all 127.0.0.1). The ACL then sees one canonical host.
 *
 * Refused with 400 (never guessed at): userinfo in the authority (`allowed@evil`, RFC 9110 §4.2.4
 * calls it a phishing device), a missing, empty, non-numeric, zero or out-of-range port on CONNECT,
 * unbracketed IPv6, zone ids, names with empty labels or characters DNS cannot carry, origin-form
 * and asterisk-form requests (this is not an origin server), schemes other than http (https goes
 * through CONNECT), and an absolute-form request whose Host header names another authority.
 */
import { isIP } from 'node:net';

export interface Target {
  /**
   * Canonical host: a lowercase ASCII name without a trailing dot, or an IP address in Node's
   * canonical text (IPv6 without brackets; IPv4-mapped IPv6 as plain IPv4).
   */
  host: string;
  /** 4 or 6 for an address, 0 for a name. */
  family: 0 | 4 | 6;
  /** 1..65535. */
  port: number;
}

export interface HttpTarget extends Target {
  /** Host header to send upstream: the URL's host, with the port when it is not 80. */
  hostHeader: string;
  /** Path and query to send upstream (WHATWG-normalized, fragment dropped). */
  path: string;
  /** The whole normalized URL, for logs. */
  href: string;
}

/** Why a target was refused; bounded, so it can label a metric. */
export type TargetProblem = 'bad-target' | 'userinfo' | 'no-port' | 'scheme' | 'not-absolute' | 'host-mismatch';

export type Parsed<T> = { ok: true; target: T } | { ok: false; problem: TargetProblem; message: string };

/** Longest request target or authority looked at; longer is refused (the header limit bounds it anyway). */
export const MAX_TARGET_LENGTH = 8192;
const MAX_NAME_LENGTH = 253;
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function fail<T>(problem: TargetProblem, message: string): Parsed<T> {
  return { ok: false, problem, message };
}

/** `::ffff:7f00:1` (how WHATWG writes a mapped address) -> `127.0.0.1`; anything else unchanged. */
export function unmapIPv6(ip: string): string {
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (m !== null) {
    const hi = parseInt(m[1]!, 16);
    const lo = parseInt(m[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  const dotted = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.exec(ip);
  if (dotted !== null && isIP(dotted[1]!) === 4) return dotted[1]!;
  return ip;
}

/**
 * A WHATWG hostname (as `URL.hostname` gives it) to a canonical Target host, or a reason it cannot
 * be one. Names keep only letters, digits, "-" and "_" in labels of 1..63, 253 characters at most;
 * one trailing dot (the root, `example.com.`) is dropped, since it names the same host.
 */
function canonicalHost(hostname: string): { host: string; family: 0 | 4 | 6 } | string {
  if (hostname === '') return 'empty host';
  if (hostname.startsWith('[')) {
    const inner = hostname.slice(1, -1);
    if (isIP(inner) !== 6) return `"${hostname}" is not an IPv6 address`;
    const v4 = unmapIPv6(inner);
    return v4 !== inner ? { host: v4, family: 4 } : { host: inner, family: 6 };
  }
  if (isIP(hostname) === 4) return { host: hostname, family: 4 };
  const name = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return `host name of ${name.length} characters`;
  for (const label of name.split('.')) {
    if (!LABEL.test(label)) return label === '' ? `empty label in host "${hostname}"` : `host "${hostname}" has a label DNS cannot carry`;
  }
  return { host: name, family: 0 };
}

/** Characters that end an authority in a special-scheme URL ("\" counts as "/" there). */
const AUTHORITY_END = /[/?#\\]/;
function hasControlOrSpace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Parses a host (no port) the way a URL parser would: percent-decoding, IDNA, IPv4 number forms.
 * `raw` must not carry a port, userinfo or path: the callers split those off first.
 */
function parseHostPart(raw: string): { host: string; family: 0 | 4 | 6 } | string {
  if (raw === '') return 'empty host';
  if (hasControlOrSpace(raw)) return 'host contains whitespace or control characters';
  if (/[@/?#\\]/.test(raw)) return `host "${raw}" contains a character that ends or splits an authority`;
  let url: URL;
  try {
    url = new URL(`http://${raw}/`);
  } catch {
    return `"${raw}" is not a valid host`;
  }
  if (url.username !== '' || url.password !== '' || url.port !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    return `"${raw}" is not a plain host`;
  }
  return canonicalHost(url.hostname);
}

function parsePortText(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * Splits `host:port` / `[v6]:port`. `defaultPort` undefined means the port is required (CONNECT);
 * otherwise a missing port is that default (a Host header).
 */
function splitAuthority(text: string, defaultPort: number | undefined): { hostPart: string; port: number } | { problem: TargetProblem; message: string } {
  let hostPart: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return { problem: 'bad-target', message: `missing "]" in ${JSON.stringify(text)}` };
    hostPart = text.slice(0, close + 1);
    const rest = text.slice(close + 1);
    if (rest === '') portText = undefined;
    else if (rest.startsWith(':')) portText = rest.slice(1);
    else return { problem: 'bad-target', message: `unexpected ${JSON.stringify(rest)} after "]"` };
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) {
      hostPart = text;
      portText = undefined;
    } else {
      hostPart = text.slice(0, colon);
      portText = text.slice(colon + 1);
      if (hostPart.includes(':')) return { problem: 'bad-target', message: `an IPv6 address needs brackets: ${JSON.stringify(text)}` };
    }
  }
  if (portText === undefined) {
    if (defaultPort === undefined) return { problem: 'no-port', message: `missing ":port" in ${JSON.stringify(text)}` };
    return { hostPart, port: defaultPort };
  }
  const port = parsePortText(portText);
  if (port === undefined) {
    return { problem: 'no-port', message: portText === '' ? `empty port in ${JSON.stringify(text)}` : `port ${JSON.stringify(portText)} is not a number 1..65535` };
  }
  return { hostPart, port };
}

/** Parses an authority (`host:port`, `[v6]:port`, no userinfo) with the rules above. */
export function parseAuthority(text: string, defaultPort?: number): Parsed<Target> {
  if (text.length === 0) return fail('bad-target', 'empty authority');
  if (text.length > MAX_TARGET_LENGTH) return fail('bad-target', `authority over ${MAX_TARGET_LENGTH} characters`);
  if (text.includes('@')) return fail('userinfo', `userinfo ("...@") in ${JSON.stringify(text)}: the client would connect to the host after "@"`);
  const split = splitAuthority(text, defaultPort);
  if ('problem' in split) return fail(split.problem, split.message);
  const host = parseHostPart(split.hostPart);
  if (typeof host === 'string') return fail('bad-target', host);
  return { ok: true, target: { host: host.host, family: host.family, port: split.port } };
}

/** The request target of a CONNECT: authority-form `host:port` (RFC 9110 §9.3.6), port required. */
export function parseConnectTarget(requestTarget: string): Parsed<Target> {
  return parseAuthority(requestTarget);
}

/**
 * The request target of any other method sent to a forward proxy: absolute-form
 * `http://host[:port]/path?query` (RFC 9112 §3.2.2). `hostHeader` is the request's Host header, if
 * any: it must name the same authority (after normalization, default port 80), or the request is
 * refused as 'host-mismatch'.
 */
export function parseAbsoluteTarget(requestTarget: string, hostHeader?: string): Parsed<HttpTarget> {
  if (requestTarget.length > MAX_TARGET_LENGTH) return fail('bad-target', `request target over ${MAX_TARGET_LENGTH} characters`);
  if (requestTarget.startsWith('/') || requestTarget === '*') {
    return fail('not-absolute', 'this is a forward proxy: send the absolute URL (GET http://host/path), or CONNECT host:port');
  }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(requestTarget);
  if (scheme === null) return fail('bad-target', 'request target is neither an absolute URL nor a path');
  const s = scheme[1]!.toLowerCase();
  if (s === 'https') return fail('scheme', 'https:// through a proxy goes by CONNECT (the proxy does not open TLS for you)');
  if (s !== 'http') return fail('scheme', `scheme "${s}" is not proxied; only http (and CONNECT for anything over TLS)`);
  if (!/^http:\/\//i.test(requestTarget)) return fail('bad-target', 'expected "http://" followed by an authority');
  const afterScheme = requestTarget.slice(7);
  const end = afterScheme.search(AUTHORITY_END);
  const rawAuthority = end < 0 ? afterScheme : afterScheme.slice(0, end);
  if (rawAuthority.includes('@')) {
    return fail('userinfo', `userinfo ("...@") in ${JSON.stringify(rawAuthority)}: the client would connect to the host after "@"`);
  }
  let url: URL;
  try {
    url = new URL(requestTarget);
  } catch {
    return fail('bad-target', `${JSON.stringify(requestTarget.slice(0, 200))} is not a valid URL`);
  }
  if (url.username !== '' || url.password !== '') return fail('userinfo', 'userinfo in the URL');
  const host = canonicalHost(url.hostname);
  if (typeof host === 'string') return fail('bad-target', host);
  const port = url.port === '' ? 80 : Number(url.port);
  if (port < 1 || port > 65535) return fail('no-port', `port ${url.port} is not 1..65535`);
  const target: HttpTarget = {
    host: host.host,
    family: host.family,
    port,
    hostHeader: url.host,
    path: `${url.pathname}${url.search}`,
    href: `${url.protocol}//${url.host}${url.pathname}${url.search}`,
  };
  // The common case, Host spelled as the URL's authority, needs no second parse.
  if (hostHeader !== undefined && hostHeader !== url.host && hostHeader.toLowerCase() !== url.host) {
    const h = parseAuthority(hostHeader, 80);
    if (!h.ok || h.target.host !== target.host || h.target.port !== target.port) {
      return fail('host-mismatch', `Host header ${JSON.stringify(hostHeader.slice(0, 200))} does not name the request target's authority ${url.host}`);
    }
  }
  return { ok: true, target };
}

/** `host:port` for logs and metrics, IPv6 bracketed. */
export function formatTarget(t: Target): string {
  return t.family === 6 ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}
