/**
 * Header rewriting for a reverse proxy: hop-by-hop removal (RFC 9110 §7.6.1), X-Forwarded-* and
 * Forwarded (RFC 7239) under a trusted-proxy rule, Via (RFC 9110 §7.6.3) and X-Request-Id.
 *
 * Every function returns a new object with lowercase names; the input is never modified. Header names
 * are client-controlled, so the object inherits nothing, not even from Object.prototype: "toString",
 * "constructor" and "__proto__" are ordinary headers. Node's http client and undici take it as it is
 * (they read Object.keys).
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import { BalancerError } from '../errors.js';
import { FieldObject, HOP_BY_HOP_HEADERS } from '../../core/http.js';

export type HeaderMap = Record<string, string | string[]>;

/** Hop-by-hop fields (core/http): dropped both ways, with every field `Connection` names. */
export const HOP_BY_HOP: ReadonlySet<string> = HOP_BY_HOP_HEADERS;

/** Protocols upgradeHeaders lets through. h2c is left out on purpose: an h2c tunnel through the balancer would bypass its routing (h2c smuggling). */
export const UPGRADE_PROTOCOLS: ReadonlySet<string> = new Set(['websocket']);

/** Longest X-Request-Id kept from a client; longer, empty or non-visible-ASCII ones are replaced. */
export const MAX_REQUEST_ID_LENGTH = 200;

/**
 * A copy of `headers` without hop-by-hop fields: the fixed HOP_BY_HOP set and every field the
 * Connection header names (comma-separated, case-insensitive), and HTTP/2 pseudo-headers (":path",
 * ":authority" ...), which Node's compatibility API puts among the headers but no HTTP/1 upstream may
 * receive. Names come out lowercase; numbers become strings; undefined values are dropped.
 */
export function stripHopByHop(headers: IncomingHttpHeaders | OutgoingHttpHeaders): HeaderMap {
  const out = new FieldObject<HeaderMap>();
  let connection: string | string[] | undefined;
  for (const key in headers) {
    const value = headers[key];
    if (value === undefined) continue;
    if (key.charCodeAt(0) === 58) continue; // HTTP/2 pseudo-header (":path"), never forwarded as a field
    const v = typeof value === 'number' ? String(value) : value;
    const name = lower(key);
    if (HOP_BY_HOP.has(name)) {
      if (name === 'connection') connection = connection === undefined ? v : ([] as string[]).concat(connection, v);
      continue;
    }
    const prev = out[name];
    // Two spellings of one name ("X-A" and "x-a", possible in OutgoingHttpHeaders): keep both values.
    out[name] = prev === undefined ? v : ([] as string[]).concat(prev, v);
  }
  // Fields the Connection header names are hop-by-hop too. They are rarely present, so they are
  // deleted after the copy rather than tested for on every name.
  if (connection !== undefined) {
    for (const part of (typeof connection === 'string' ? connection : connection.join(',')).split(',')) {
      const t = part.trim().toLowerCase();
      if (t !== '' && out[t] !== undefined) delete out[t];
    }
  }
  return out;
}

function lower(s: string): string {
  // Skip the copy for names that are already lowercase (every IncomingHttpHeaders name).
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.toLowerCase();
  }
  return s;
}

/** How many checked addresses TrustedProxies remembers before starting over. */
const TRUST_MEMO_SIZE = 1024;

/**
 * The addresses whose forwarding headers are believed: exact IPv4 or IPv6 addresses and CIDRs.
 * IPv4-mapped IPv6 (::ffff:10.0.0.1, as a dual-stack listener reports IPv4 peers) counts as the IPv4
 * address, both in the list and in has(). Note that "::/0" also covers every IPv4 address this way.
 */
export class TrustedProxies {
  readonly size: number;
  private readonly list = new BlockList();
  private readonly memo = new Map<string, boolean>();

  /** Throws BalancerError ARCHLAB_BALANCER_CONFIG naming the first entry that is neither an IP address nor a CIDR. */
  constructor(list: readonly string[]) {
    for (const raw of list) {
      const entry = raw.trim();
      const bad = (why: string): BalancerError =>
        new BalancerError('ARCHLAB_BALANCER_CONFIG', `invalid trusted proxy ${JSON.stringify(raw)}: ${why}; expected an IP address or a CIDR such as "10.0.0.0/8" or "fd00::/8"`, {
          details: { entry: raw },
        });
      const slash = entry.indexOf('/');
      const addr = slash < 0 ? entry : entry.slice(0, slash);
      const family = isIP(addr);
      if (family === 0) throw bad(`"${addr}" is not an IP address`);
      if (addr.includes('%')) throw bad('zone ids are not supported');
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (slash < 0) {
        this.list.addAddress(addr, type);
        continue;
      }
      const bitsText = entry.slice(slash + 1);
      const max = family === 4 ? 32 : 128;
      const bits = /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
      if (!(bits >= 0 && bits <= max)) throw bad(`prefix length "${bitsText}" is not 0..${max}`);
      this.list.addSubnet(addr, bits, type);
    }
    this.size = list.length;
  }

  /** True when `ip` is in the list. Anything that is not an IP address (a name, "unknown", "") is not. */
  has(ip: string): boolean {
    if (this.size === 0) return false;
    let v = this.memo.get(ip);
    if (v === undefined) {
      v = this.list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
      if (this.memo.size >= TRUST_MEMO_SIZE) this.memo.clear();
      this.memo.set(ip, v);
    }
    return v;
  }
}

export interface ForwardInfo {
  /** The TCP peer's address as Node reports it (socket.remoteAddress). */
  peerIp: string;
  /** Protocol the client used on this hop. */
  proto: 'http' | 'https';
  /** Host header as received (HTTP/1) or :authority (HTTP/2); undefined when absent. */
  host: string | undefined;
  trusted: TrustedProxies;
  /** This hop's Via entry, e.g. "1.1 archlab". */
  via: string;
  /** Makes a request id when the client sent none or an unusable one. */
  requestId: () => string;
}

export interface ForwardResult {
  /** Headers to send upstream. */
  headers: HeaderMap;
  /** The client as far as trusted proxies vouch for it (see forwardedHeaders). */
  clientIp: string;
  /** The X-Request-Id sent upstream. */
  requestId: string;
}

/**
 * The request headers to send upstream, and who the client is.
 *
 * - Hop-by-hop fields are removed (stripHopByHop). Host is kept as received.
 * - X-Forwarded-For: from a trusted peer, the incoming list with the peer appended; from anyone
 *   else, just the peer (so a client cannot plant addresses).
 * - X-Forwarded-Proto, X-Forwarded-Host: kept from a trusted peer that sent them; otherwise this
 *   hop's proto and Host.
 * - Forwarded (RFC 7239): from a trusted peer, the incoming elements plus
 *   `for=<peer>;proto=<proto>;host=<host>`; otherwise only that element. IPv6 is written
 *   `for="[2001:db8::1]"`; a host that is not a token is quoted, so it cannot inject elements.
 * - clientIp: when the peer is trusted, X-Forwarded-For is walked right to left past trusted
 *   addresses and the first untrusted one is the client (the left-most entry if all are trusted); an
 *   entry that is not an IP address stops the walk at the last good address. Otherwise the peer.
 * - X-Request-Id: kept when it is 1..MAX_REQUEST_ID_LENGTH visible ASCII characters, else
 *   `requestId()`.
 * - Via: this hop appended.
 *
 * The forwarding fields are read from `incoming` itself, never from the stripped copy: a client
 * naming X-Forwarded-For in Connection cannot make a trusted proxy's entry disappear (the hop-by-hop
 * abuse behind Apache's CVE-2022-31813).
 *
 * IPv4-mapped peers (::ffff:192.0.2.1) are written and returned in dotted IPv4 form. An empty
 * peerIp (the socket is already closed) is written as "unknown" and returned as "".
 */
export function forwardedHeaders(incoming: IncomingHttpHeaders, info: ForwardInfo): ForwardResult {
  const headers = stripHopByHop(incoming);
  return addForwarding(headers, incoming, info);
}

function addForwarding(headers: HeaderMap, incoming: IncomingHttpHeaders, info: ForwardInfo): ForwardResult {
  const peer = unmapIPv4(info.peerIp);
  const trusted = info.trusted.has(peer);
  // A socket already gone has no address; RFC 7239 spells that "unknown".
  const hop = peer === '' ? 'unknown' : peer;

  const xff = joined(incoming['x-forwarded-for']);
  let clientIp = peer;
  if (trusted && xff !== undefined && xff !== '') {
    headers['x-forwarded-for'] = `${xff}, ${hop}`;
    clientIp = walkForwardedFor(xff, peer, info.trusted);
  } else {
    headers['x-forwarded-for'] = hop;
  }

  const xfp = trusted ? joined(incoming['x-forwarded-proto']) : undefined;
  headers['x-forwarded-proto'] = xfp ?? info.proto;
  const xfh = trusted ? joined(incoming['x-forwarded-host']) : undefined;
  if (xfh !== undefined) headers['x-forwarded-host'] = xfh;
  else if (info.host !== undefined) headers['x-forwarded-host'] = info.host;
  else delete headers['x-forwarded-host'];

  let element = `for=${forwardedNode(hop)};proto=${info.proto}`;
  if (info.host !== undefined) element += `;host=${forwardedValue(info.host)}`;
  const fwd = trusted ? joined(incoming.forwarded) : undefined;
  headers.forwarded = fwd !== undefined && fwd !== '' ? `${fwd}, ${element}` : element;

  const given = joined(incoming['x-request-id']);
  const requestId = given !== undefined && isSaneRequestId(given) ? given : info.requestId();
  headers['x-request-id'] = requestId;

  appendVia(headers, incoming.via, info.via);
  return { headers, clientIp, requestId };
}

/**
 * The request headers for an upgrade (WebSocket): `forwarded` (what forwardedHeaders returned for
 * this request) plus `connection: upgrade` and the client's Upgrade field, which stripHopByHop
 * removed. When the request does not ask for an upgrade to a protocol in UPGRADE_PROTOCOLS (see
 * upgradeProtocol), the copy carries no upgrade fields: the backend then sees a plain request and no
 * tunnel can open. `forwarded` is not modified.
 */
export function upgradeHeaders(incoming: IncomingHttpHeaders, forwarded: HeaderMap): HeaderMap {
  const headers = Object.assign(new FieldObject<HeaderMap>(), forwarded);
  delete headers.connection;
  delete headers.upgrade;
  const upgrade = upgradeProtocol(incoming);
  if (upgrade !== undefined) {
    headers.connection = 'upgrade';
    headers.upgrade = upgrade;
  }
  return headers;
}

/** The response headers to send to the client: hop-by-hop fields removed, this hop appended to Via. */
export function responseHeaders(upstream: IncomingHttpHeaders, via: string): HeaderMap {
  const headers = stripHopByHop(upstream);
  appendVia(headers, upstream.via, via);
  return headers;
}

/** responseHeaders for a backend's 101 Switching Protocols: keeps `connection: upgrade` and Upgrade. */
export function upgradeResponseHeaders(upstream: IncomingHttpHeaders, via: string): HeaderMap {
  const headers = responseHeaders(upstream, via);
  const upgrade = joined(upstream.upgrade);
  if (upgrade !== undefined) {
    headers.connection = 'upgrade';
    headers.upgrade = upgrade;
  }
  return headers;
}

/**
 * The Upgrade field's value when the request asks for an upgrade the balancer forwards: Connection
 * has the "upgrade" token, and every protocol Upgrade lists (version ignored) is in
 * UPGRADE_PROTOCOLS. Undefined otherwise; the proxy may answer such a request with 400.
 */
export function upgradeProtocol(incoming: IncomingHttpHeaders): string | undefined {
  const upgrade = joined(incoming.upgrade);
  const connection = joined(incoming.connection);
  if (upgrade === undefined || connection === undefined) return undefined;
  if (!connection.split(',').some((t) => t.trim().toLowerCase() === 'upgrade')) return undefined;
  for (const p of upgrade.split(',')) {
    const name = p.trim().toLowerCase();
    const slash = name.indexOf('/');
    if (!UPGRADE_PROTOCOLS.has(slash < 0 ? name : name.slice(0, slash))) return undefined;
  }
  return upgrade;
}

function appendVia(headers: HeaderMap, incomingVia: string | string[] | undefined, via: string): void {
  const prev = joined(incomingVia);
  headers.via = prev !== undefined && prev !== '' ? `${prev}, ${via}` : via;
}

/** One string for a field that may arrive as several (Node keeps some as arrays). */
function joined(v: string | string[] | undefined): string | undefined {
  if (v === undefined || typeof v === 'string') return v;
  return v.length === 0 ? undefined : v.join(', ');
}

/** "::ffff:192.0.2.1" -> "192.0.2.1"; anything else unchanged. */
export function unmapIPv4(ip: string): string {
  if (ip.length > 7 && (ip.charCodeAt(0) === 58 || ip.charCodeAt(0) === 48) && ip.includes('.')) {
    const m = /^(?:::|0:0:0:0:0:)ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.exec(ip);
    if (m !== null && isIP(m[1]!) === 4) return m[1]!;
  }
  return ip;
}

/**
 * Walks an X-Forwarded-For list right to left (the nearest hop first): trusted addresses are
 * skipped, the first untrusted one is the client. All trusted: the left-most. A malformed entry
 * stops the walk at the last good address (what nginx's realip module does).
 */
function walkForwardedFor(xff: string, peer: string, trusted: TrustedProxies): string {
  let last = peer;
  let end = xff.length;
  while (end > 0) {
    const comma = xff.lastIndexOf(',', end - 1);
    const ip = normalizeForwardedIp(xff.slice(comma + 1, end));
    if (ip === undefined) return last;
    if (!trusted.has(ip)) return ip;
    last = ip;
    end = comma < 0 ? 0 : comma;
  }
  return last;
}

/** An X-Forwarded-For entry as a bare IP: trims, unbrackets, drops a port; undefined when it is not an IP. */
function normalizeForwardedIp(raw: string): string | undefined {
  let s = raw.trim();
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return undefined;
    s = s.slice(1, close);
  } else if (s.indexOf(':') > 0 && s.indexOf(':') === s.lastIndexOf(':')) {
    s = s.slice(0, s.indexOf(':')); // "192.0.2.1:5678"
  }
  if (isIP(s) === 0) return undefined;
  return unmapIPv4(s);
}

/** RFC 7239 node: IPv4 as a token, IPv6 bracketed and quoted. */
function forwardedNode(ip: string): string {
  if (ip.includes(':')) return `"[${ip}]"`;
  return isIP(ip) === 4 ? ip : forwardedValue(ip);
}

const FORWARDED_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A token as is; anything else as a quoted-string with \ and " escaped. */
function forwardedValue(v: string): string {
  if (FORWARDED_TOKEN.test(v)) return v;
  return `"${v.replace(/["\\]/g, '\\$&')}"`;
}

function isSaneRequestId(id: string): boolean {
  const n = id.length;
  if (n === 0 || n > MAX_REQUEST_ID_LENGTH) return false;
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}
