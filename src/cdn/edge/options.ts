/**
 * The options of one edge node, their defaults, and their validation (once, at startEdge).
 */
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { KeyOptions } from '../key.js';
import type { PolicyOptions } from '../policy/index.js';
import type { CdnStorage } from '../types.js';

export interface EdgeLimits {
  /** Largest request header block (request line + fields) accepted, bytes; larger gets 431. Also the largest upstream response header block; larger gets 502 and is not stored. Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Requests that may wait on one in-flight upstream fetch of the same key (request collapsing); one more gets 503. Default 1000 per key. */
  maxCollapsedWaiters?: number;
  /** Client connections accepted at once (server.maxConnections); further ones are refused. Default 10000. */
  maxConnections?: number;
  /** Largest request body forwarded for POST/PUT/PATCH/DELETE and other passed methods, bytes; larger gets 413. Default 16 MiB. */
  maxBodyBytes?: number;
  /** Upstream connections kept by the node's keep-alive pool (undici Pool `connections`). Default 256. */
  maxUpstreamConnections?: number;
  /** Keys remembered as hit-for-pass at once; the oldest is forgotten first. Default 10000. */
  maxHitForPassKeys?: number;
  /** Background refreshes (stale-while-revalidate) in flight at once; past it the stale object is served and the refresh left to a later request. Default 64. */
  maxBackgroundRefreshes?: number;
}

export interface EdgeTimeouts {
  /** TCP connect to the upstream, ms. Default 2000. */
  upstreamConnectMs?: number;
  /** From sending the request upstream to the whole response head, ms (excluding injected latency). Default 10000. */
  upstreamResponseMs?: number;
  /** Longest silence on a connection: a client socket with no traffic, or an upstream body that stops sending, ms. Also the client keep-alive timeout. Default 30000. */
  idleMs?: number;
  /** A client must send its whole request head within this, ms (server.headersTimeout). Default 10000. */
  headersMs?: number;
  /** close() lets in-flight requests finish for this long before cutting them, ms. Default 10000. */
  drainMs?: number;
}

export interface EdgeOptions {
  /** Node name, in Via, Server-Timing and logs. Letters, digits, '.', '_', '-'. */
  name: string;
  /** Region tag of the node (stats only). */
  region: string;
  tier: 'edge' | 'shield';
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Next tier or the origin, e.g. 'http://127.0.0.1:8080' (only scheme, host and port are used). */
  upstream: string;
  /** Injected one-way latency on the upstream link, ms, added before the request is sent AND before the response is relayed (simulated geography). Default 0. */
  upstreamLatencyMs?: number;
  /** Where objects live. The edge does not close it: whoever created it does. */
  storage: CdnStorage;
  /** RFC 9111 policy options. `stripSurrogateHeaders` defaults to true at an edge and false at a shield (so the edge below still sees them). */
  policy?: PolicyOptions;
  /** Cache key options (query handling, scheme). Default: keep the query, include the scheme. */
  key?: KeyOptions;
  /** Token for PURGE requests at this node (Authorization: Bearer <token>). Purges refused (401) without it; if unset, PURGE is refused always. */
  purgeToken?: string;
  limits?: EdgeLimits;
  timeouts?: EdgeTimeouts;
  /** Add an X-Cache header ('HIT' | 'MISS' | 'STALE' | 'REVALIDATED' | 'PASS' | 'ERROR'), appended to the upstream's like Fastly ("MISS, HIT": shield missed, edge hit). Default true. */
  /** Answer fresh in-memory hits straight from the socket, below node:http (src/cdn/edge/fast-path.ts); anything else goes to node:http. Default true. */
  fastPath?: boolean;
  xCache?: boolean;
  /** How long a key whose response was not storable (private, no-store, Set-Cookie, too large) skips request collapsing and goes straight upstream ("hit-for-pass"), ms. Default 10000. */
  hitForPassMs?: number;
  clock?: Clock;
  /** Default: silent. */
  logger?: Logger;
}

export interface ResolvedEdgeOptions {
  name: string;
  region: string;
  tier: 'edge' | 'shield';
  host: string;
  port: number;
  upstream: URL;
  upstreamLatencyMs: number;
  purgeToken: string | undefined;
  maxHeaderBytes: number;
  maxCollapsedWaiters: number;
  maxConnections: number;
  maxBodyBytes: number;
  maxUpstreamConnections: number;
  maxHitForPassKeys: number;
  maxBackgroundRefreshes: number;
  upstreamConnectMs: number;
  upstreamResponseMs: number;
  idleMs: number;
  headersMs: number;
  drainMs: number;
  xCache: boolean;
  fastPath: boolean;
  hitForPassMs: number;
}

export const EDGE_DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  upstreamLatencyMs: 0,
  maxHeaderBytes: 16 * 1024,
  maxCollapsedWaiters: 1000,
  maxConnections: 10_000,
  maxBodyBytes: 16 * 1024 * 1024,
  maxUpstreamConnections: 256,
  maxHitForPassKeys: 10_000,
  maxBackgroundRefreshes: 64,
  upstreamConnectMs: 2000,
  upstreamResponseMs: 10_000,
  idleMs: 30_000,
  headersMs: 10_000,
  drainMs: 10_000,
  hitForPassMs: 10_000,
} as const;

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

function count(value: number | undefined, fallback: number, field: string, min: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min) {
    throw new InvalidArgumentError(`edge option ${field} must be an integer >= ${min}, got ${String(value)}`, { field, value });
  }
  return v;
}

/** Validates `o` and fills in the defaults. Throws InvalidArgumentError naming the bad field. */
export function resolveEdgeOptions(o: EdgeOptions): ResolvedEdgeOptions {
  if (typeof o.name !== 'string' || !NAME.test(o.name)) {
    throw new InvalidArgumentError(`edge option name must be 1-64 letters, digits, '.', '_' or '-', got ${JSON.stringify(o.name)}`, { field: 'name' });
  }
  if (typeof o.region !== 'string' || o.region === '') throw new InvalidArgumentError('edge option region must be a non-empty string', { field: 'region' });
  if (o.tier !== 'edge' && o.tier !== 'shield') throw new InvalidArgumentError(`edge option tier must be 'edge' or 'shield', got ${JSON.stringify(o.tier)}`, { field: 'tier' });
  let upstream: URL;
  try {
    upstream = new URL(o.upstream);
  } catch {
    throw new InvalidArgumentError(`edge option upstream must be a URL such as 'http://127.0.0.1:8080', got ${JSON.stringify(o.upstream)}`, { field: 'upstream' });
  }
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') {
    throw new InvalidArgumentError(`edge option upstream must be http: or https:, got ${upstream.protocol}`, { field: 'upstream' });
  }
  if (o.storage === undefined || typeof o.storage.get !== 'function') throw new InvalidArgumentError('edge option storage is required (createStorage())', { field: 'storage' });
  if (o.purgeToken !== undefined && (typeof o.purgeToken !== 'string' || o.purgeToken.length < 1)) {
    throw new InvalidArgumentError('edge option purgeToken must be a non-empty string when set', { field: 'purgeToken' });
  }
  const l = o.limits ?? {};
  const t = o.timeouts ?? {};
  const d = EDGE_DEFAULTS;
  return {
    name: o.name,
    region: o.region,
    tier: o.tier,
    host: o.host ?? d.host,
    port: count(o.port, d.port, 'port', 0),
    upstream,
    upstreamLatencyMs: count(o.upstreamLatencyMs, d.upstreamLatencyMs, 'upstreamLatencyMs', 0),
    purgeToken: o.purgeToken,
    maxHeaderBytes: count(l.maxHeaderBytes, d.maxHeaderBytes, 'limits.maxHeaderBytes', 1024),
    maxCollapsedWaiters: count(l.maxCollapsedWaiters, d.maxCollapsedWaiters, 'limits.maxCollapsedWaiters', 0),
    maxConnections: count(l.maxConnections, d.maxConnections, 'limits.maxConnections', 1),
    maxBodyBytes: count(l.maxBodyBytes, d.maxBodyBytes, 'limits.maxBodyBytes', 0),
    maxUpstreamConnections: count(l.maxUpstreamConnections, d.maxUpstreamConnections, 'limits.maxUpstreamConnections', 1),
    maxHitForPassKeys: count(l.maxHitForPassKeys, d.maxHitForPassKeys, 'limits.maxHitForPassKeys', 0),
    maxBackgroundRefreshes: count(l.maxBackgroundRefreshes, d.maxBackgroundRefreshes, 'limits.maxBackgroundRefreshes', 0),
    upstreamConnectMs: count(t.upstreamConnectMs, d.upstreamConnectMs, 'timeouts.upstreamConnectMs', 1),
    upstreamResponseMs: count(t.upstreamResponseMs, d.upstreamResponseMs, 'timeouts.upstreamResponseMs', 1),
    idleMs: count(t.idleMs, d.idleMs, 'timeouts.idleMs', 1),
    headersMs: count(t.headersMs, d.headersMs, 'timeouts.headersMs', 1),
    drainMs: count(t.drainMs, d.drainMs, 'timeouts.drainMs', 0),
    xCache: o.xCache ?? true,
    fastPath: o.fastPath ?? true,
    hitForPassMs: count(o.hitForPassMs, d.hitForPassMs, 'hitForPassMs', 0),
  };
}
