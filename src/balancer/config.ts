/**
 * `archlab balance --config lb.yaml`: the file's shape. Durations and sizes are written with units
 * (`2s`, `10MiB`) and come out as numbers with the unit in the name (`intervalMs`, `maxBodyBytes`).
 * Every field's default is given next to it.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { loadConfig, parseConfig, zAdmin, zLimits, zLog, zMetrics, zTimeouts } from '../core/config.js';
import { parseHostPort } from '../core/net.js';
import { zDuration, zSize } from '../core/units.js';
import { TrustedProxies } from './l7/headers.js';
import { ALGORITHM_NAMES } from './pick/types.js';

/** The largest retries.maxBody: bodies held for a retry stay small (one per request in flight). */
export const MAX_RETRY_BODY_BYTES = 16 * 1024 * 1024;

const zName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a name of letters, digits, "_", "." or "-" (1-64 characters)');

const zAddress = z.string().transform((s, ctx) => {
  try {
    return parseHostPort(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err), input: s });
    return z.NEVER;
  }
});

export const zBackend = z.strictObject({
  /** Unique name within the pool, used in the sticky cookie, metrics and admin API. Default "host:port". */
  id: zName.optional(),
  /** "host:port" of the backend. Required. */
  address: zAddress,
  /** Relative share of traffic, > 0. Default 1. */
  weight: z.number().positive().max(1_000_000).default(1),
  /** Requests in flight at most; more wait in the pool's queue. Default 1000. */
  maxConnections: z.int().min(1).max(1_000_000).default(1000),
  /** Speak TLS to this backend. Default false. */
  tls: z.boolean().default(false),
});

const zHashKey = z.union([
  z.literal('client-ip'),
  z.literal('path'),
  z.string().regex(/^(header|cookie):[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected client-ip, path, header:<name> or cookie:<name>'),
]);

export const zActiveHealth = z.strictObject({
  /** Path requested with GET. Default "/healthz". */
  path: z.string().startsWith('/').default('/healthz'),
  /** Time between checks of one backend. Default 2s. -> intervalMs */
  interval: zDuration('2s', { minMs: 10 }),
  /** A check slower than this fails. Default 1s. -> timeoutMs */
  timeout: zDuration('1s', { minMs: 1 }),
  /** Statuses that pass. Default [200]. */
  expectStatus: z.array(z.int().min(100).max(599)).min(1).default([200]),
  /** Consecutive passes to mark a down backend up. Default 2. */
  rise: z.int().min(1).max(100).default(2),
  /** Consecutive failures to mark an up backend down. Default 3. */
  fall: z.int().min(1).max(100).default(3),
}).transform(({ interval, timeout, ...rest }) => ({ ...rest, intervalMs: interval, timeoutMs: timeout }));

/**
 * Active TCP checks (HAProxy `check` with `tcp-check send/expect`): connect to the backend (with
 * TLS when the backend has `tls: true`); optionally write `send`, then wait until the bytes read
 * contain `expect`. For pools behind `mode: tcp` or `udp` listeners, or any pool whose backends
 * speak something other than HTTP. A pool has `active` or `tcp`, not both.
 */
export const zTcpHealth = z.strictObject({
  /** Time between checks of one backend. Default 2s. -> intervalMs */
  interval: zDuration('2s', { minMs: 10 }),
  /** Connect, send and expect must all finish within this. Default 1s. -> timeoutMs */
  timeout: zDuration('1s', { minMs: 1 }),
  /** Consecutive passes to mark a down backend up. Default 2. */
  rise: z.int().min(1).max(100).default(2),
  /** Consecutive failures to mark an up backend down. Default 3. */
  fall: z.int().min(1).max(100).default(3),
  /** Bytes written once connected, as text (YAML escapes: "PING\r\n"). Default none: connecting is the check. */
  send: z.string().min(1).max(4096).optional(),
  /** The check passes once the bytes read (at most 16 KiB) contain this text, e.g. "+PONG". Default none. */
  expect: z.string().min(1).max(4096).optional(),
}).transform(({ interval, timeout, ...rest }) => ({ ...rest, intervalMs: interval, timeoutMs: timeout }));

export const zPassiveHealth = z.strictObject({
  /** Consecutive connect errors or 5xx responses that eject a backend. Default 5. */
  consecutiveFailures: z.int().min(1).max(1000).default(5),
  /** First ejection's length; each repeat doubles it. Default 10s. -> ejectionMs */
  ejectionTime: zDuration('10s', { minMs: 1 }),
  /** Longest ejection. Default 5m. -> maxEjectionMs */
  maxEjectionTime: zDuration('5m', { minMs: 1 }),
  /** Never eject more than this share of a pool's backends at once. Default 0.5. */
  maxEjectedShare: z.number().min(0).max(1).default(0.5),
}).transform(({ ejectionTime, maxEjectionTime, ...rest }) => ({ ...rest, ejectionMs: ejectionTime, maxEjectionMs: maxEjectionTime }));

export const zPool = z.strictObject({
  name: zName,
  /** Load-balancing algorithm. Default "round-robin". */
  algorithm: z.enum(ALGORITHM_NAMES).default('round-robin'),
  /** consistent-hash: what to hash. Default "client-ip". */
  hashKey: zHashKey.default('client-ip'),
  /** consistent-hash: bounded-load factor c > 1 (1.25 = no backend above 125% of the mean). Default none. */
  boundedLoad: z.number().gt(1).max(100).optional(),
  /** Sticky sessions. Default none. */
  sticky: z
    .strictObject({
      /** insert: the balancer sets a cookie naming the backend (HAProxy `cookie SRV insert`). */
      mode: z.literal('insert').default('insert'),
      /** Cookie name. Default "ARCHLAB_SRV". */
      cookie: z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/).default('ARCHLAB_SRV'),
      /** Cookie lifetime; absent = session cookie. -> maxAgeMs */
      maxAge: zDuration(undefined, { minMs: 1000 }).optional(),
    })
    .transform(({ maxAge, ...rest }) => ({ ...rest, maxAgeMs: maxAge }))
    .optional(),
  backends: z.array(zBackend).min(1, 'a pool needs at least one backend').max(10_000),
  health: z
    .strictObject({
      active: zActiveHealth.optional(),
      /** Active TCP-connect checks, optionally with send/expect bytes. Default none. */
      tcp: zTcpHealth.optional(),
      passive: zPassiveHealth.optional(),
      /** A backend coming back ramps its weight from 10% to full over this. Default 0 (off). -> slowStartMs */
      slowStart: zDuration('0'),
    })
    .transform(({ slowStart, ...rest }) => ({ ...rest, slowStartMs: slowStart }))
    .prefault({}),
  /** When every backend is at maxConnections, requests wait here. */
  queue: z
    .strictObject({
      /** Requests waiting at most; more get 503. Default 1000. */
      maxWaiting: z.int().min(0).max(1_000_000).default(1000),
      /** Longest wait; then 503 with Retry-After. Default 5s. -> timeoutMs */
      timeout: zDuration('5s', { minMs: 1 }),
    })
    .transform(({ timeout, ...rest }) => ({ ...rest, timeoutMs: timeout }))
    .prefault({}),
  /**
   * Retries of a failed attempt on another backend. Only a replayable request is retried: one without
   * a body, or whose body was read whole first (maxBody). Whether it is retried then depends on its
   * method and on what went wrong (docs/balancer.md, "Retries"): a connect failure (never reached a
   * backend) always; a connection broken before any response byte if the method is idempotent or the
   * request carries `idempotencyKeyHeader`; a 502 or 503 answer only if the method is idempotent.
   */
  retries: z
    .strictObject({
      /** Extra attempts for a replayable request, each to a different backend. Default 2. */
      attempts: z.int().min(0).max(10).default(2),
      /** Retries may add at most this share to the request rate. Default 0.2 (20%). */
      budgetRatio: z.number().min(0).max(1).default(0.2),
      /** Retries always allowed per second regardless of the ratio. Default 10. */
      minPerSecond: z.number().min(0).max(100_000).default(10),
      /**
       * A request whose Content-Length is at most this is read whole before its first attempt, so a
       * retry can send the same bytes again (Envoy's per_request_buffer_limit_bytes). Larger and
       * chunked bodies stream through with backpressure and are never retried. The reading is bounded
       * by limits.maxBody and timeouts.request too. 0 = buffer nothing (only requests without a body
       * are retried). At most 16MiB. Default 64KiB. -> maxBodyBytes
       */
      maxBody: zSize('64KiB', { minBytes: 0, maxBytes: MAX_RETRY_BODY_BYTES }),
      /**
       * The request header (case-insensitive) that makes a request of a non-idempotent method (POST,
       * PATCH) safe to send again after a connection broke before any response byte: the client
       * promises the backend will not act twice on one key (IETF httpapi Idempotency-Key draft; Go's
       * net/http treats such requests as replayable too). Default "idempotency-key".
       */
      idempotencyKeyHeader: z
        .string()
        .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'expected a header name (1-64 token characters)')
        .transform((h) => h.toLowerCase())
        .default('idempotency-key'),
    })
    .transform(({ maxBody, ...rest }) => ({ ...rest, maxBodyBytes: maxBody }))
    .prefault({}),
});

export const zCertificate = z.strictObject({
  /** PEM certificate chain file. */
  cert: z.string().min(1),
  /** PEM private key file. */
  key: z.string().min(1),
  /** SNI names this certificate serves ("*.example.com" allowed). Default: the first certificate is the fallback for any name. */
  serverNames: z.array(z.string().min(1)).default([]),
});

/** What a listener speaks: HTTP (L7, the default), or raw TCP streams or UDP datagrams (L4). */
export const LISTENER_MODES = ['http', 'tcp', 'udp'] as const;
export type ListenerMode = (typeof LISTENER_MODES)[number];

/** PROXY protocol (haproxy doc/proxy-protocol.txt) on a `mode: tcp` listener. */
export const zProxyProtocol = z.strictObject({
  /**
   * Prepend a PROXY header of this version to every backend connection, carrying the client's
   * address (or the one an accepted header claimed), so backends log and rate-limit the real
   * client (HAProxy `send-proxy` / `send-proxy-v2`). Default none.
   */
  send: z.enum(['v1', 'v2']).optional(),
  /**
   * Read a PROXY header from the downstream peer (a proxy in front of this one) and use its source
   * address for ip-hash and for `send`. "v1" or "v2": that version is required; "any": either is
   * required; "optional": taken when present, otherwise the bytes pass through as data. A required
   * header that is missing, malformed or late (timeouts.headers) closes the connection. With
   * "optional", a client that sends nothing (a server-speaks-first protocol) is only forwarded once
   * timeouts.headers has passed. Default none.
   */
  accept: z.enum(['v1', 'v2', 'any', 'optional']).optional(),
  /**
   * Peers (IPs or CIDRs) whose header is believed. Another peer's connection is closed when the
   * header is required, and its bytes are passed through untouched with "optional". Default: any peer.
   */
  acceptFrom: z.array(z.string().min(1)).max(10_000).default([]),
});

const SNI_NAME = /^(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;

/** TLS passthrough on a `mode: tcp` listener: route by the ClientHello's server name, never decrypt. */
export const zSni = z.strictObject({
  /**
   * Exact names win; otherwise the longest matching "*.example.com" (any depth of subdomain). The
   * ClientHello is read within timeouts.headers and 16 KiB, then replayed to the backend. Required.
   */
  routes: z
    .array(
      z.strictObject({
        /** "db.example.com" or "*.example.com"; case-insensitive. */
        serverName: z
          .string()
          .transform((x) => x.toLowerCase())
          .refine((x) => SNI_NAME.test(x) && x.length <= 253, 'expected a DNS name such as "db.example.com" or "*.example.com"'),
        /** Pool name. Required. */
        pool: zName,
      }),
    )
    .min(1, 'sni needs at least one route')
    .max(10_000),
  /** Pool for a name no route matches, a hello without SNI, or a stream that is not TLS. Default: the listener's `pool`, else the connection is closed. */
  defaultPool: zName.optional(),
});

/** Flow table of a `mode: udp` listener. */
export const zUdpListener = z
  .strictObject({
    /** A flow (one client ip:port) with no datagram either way for this long is forgotten and its backend released. Default 30s. -> flowIdleMs */
    flowIdle: zDuration('30s', { minMs: 10 }),
    /** Flows at most; a new flow beyond this evicts the least recently active one. Count, default 10000. */
    maxFlows: z.int().min(1).max(1_000_000).default(10_000),
    /** Datagrams larger than this (either way) are dropped and counted. Default 64KiB. -> maxDatagramBytes */
    maxDatagram: zSize('64KiB', { minBytes: 1, maxBytes: 65536 }),
  })
  .transform(({ flowIdle, maxDatagram, ...rest }) => ({ ...rest, flowIdleMs: flowIdle, maxDatagramBytes: maxDatagram }));

export const zBalancerListener = z.strictObject({
  /** Name used in logs and metrics. Default "http" / "https" / "tcp" / "udp". */
  name: zName.optional(),
  /** "http" (L7: routes, TLS termination, HTTP/2), "tcp" or "udp" (L4: bytes or datagrams relayed to a backend picked per connection or flow). Default "http". */
  mode: z.enum(LISTENER_MODES).default('http'),
  /** tcp and udp: the pool every connection or flow goes to. Required for them unless `sni` routes (tcp) are given; not for http (use routes). */
  pool: zName.optional(),
  /** tcp only: PROXY protocol towards backends (send) and from a downstream proxy (accept). Default none. */
  proxyProtocol: zProxyProtocol.optional(),
  /** tcp only: TLS passthrough routed by SNI. Default none. */
  sni: zSni.optional(),
  /** udp only: flow table limits. Default: all defaults below. */
  udp: zUdpListener.optional(),
  /** Interface to bind. Default "127.0.0.1". */
  host: z.string().min(1).default('127.0.0.1'),
  /** Port (TCP, or UDP for mode udp); 0 picks one. Required. */
  port: z.int().min(0).max(65535),
  /** http only: terminate TLS here (TLS 1.2 minimum; HTTP/2 and HTTP/1.1 by ALPN). Default none. */
  tls: z
    .strictObject({
      certificates: z.array(zCertificate).min(1),
      /** Offer HTTP/2 by ALPN. Default true. */
      http2: z.boolean().default(true),
    })
    .optional(),
  /** http only: answer every request with a 301 to https on this port instead of proxying. Default none. */
  redirectToHttpsPort: z.int().min(1).max(65535).optional(),
});

const zMatch = z
  .strictObject({
    /** Exact host or "*.example.com" (any subdomain). */
    host: z.string().min(1).optional(),
    /** Path starts with this. */
    pathPrefix: z.string().startsWith('/').optional(),
    /** Path matches this regular expression. */
    pathRegex: z.string().min(1).optional(),
    /** One method or a list. */
    method: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    /** Header name -> exact value, or "~regex". */
    headers: z.record(z.string(), z.string()).optional(),
    /** Cookie name -> exact value, or "~regex". */
    cookies: z.record(z.string(), z.string()).optional(),
  })
  .prefault({});

export const zRoute = z.strictObject({
  /** Every given condition must hold; an empty match matches everything. */
  match: zMatch,
  /** Pool name. Required. */
  pool: zName,
  /** Remove the matched pathPrefix before forwarding. Default false. */
  stripPrefix: z.boolean().default(false),
  /** Rewrite the path: regex and replacement ($1 ...). Default none. */
  rewrite: z.strictObject({ pattern: z.string().min(1), replacement: z.string() }).optional(),
});

export const zBalancerConfig = z
  .strictObject({
    listeners: z.array(zBalancerListener).min(1, 'at least one listener'),
    pools: z.array(zPool).min(1, 'at least one pool'),
    /** Ordered: the first rule that matches picks the pool. */
    routes: z.array(zRoute).default([]),
    /** Pool for requests no route matches. Default: the first pool. */
    defaultPool: zName.optional(),
    /** Addresses (exact IPs or CIDRs) whose X-Forwarded-For / Forwarded headers are believed. Default none. */
    trustedProxies: z.array(z.string().min(1)).default([]),
    /** Secret for sticky cookies (HMAC). Default: random per process, so cookies do not survive a restart. */
    cookieSecret: z.string().min(16, 'use at least 16 characters').optional(),
    admin: zAdmin.optional(),
    log: zLog,
    /** JSON access log line per request on stdout. Default true. */
    accessLog: z.boolean().default(true),
    metrics: zMetrics,
    timeouts: zTimeouts,
    limits: zLimits,
  })
  .superRefine((c, ctx) => {
    const pools = new Set<string>();
    c.pools.forEach((p, i) => {
      if (pools.has(p.name)) ctx.addIssue({ code: 'custom', path: ['pools', i, 'name'], message: `duplicate pool name "${p.name}"`, input: p.name });
      pools.add(p.name);
      const ids = new Set<string>();
      p.backends.forEach((b, j) => {
        const id = b.id ?? `${b.address.host}:${b.address.port}`;
        if (ids.has(id)) ctx.addIssue({ code: 'custom', path: ['pools', i, 'backends', j], message: `duplicate backend "${id}" in pool "${p.name}"`, input: id });
        ids.add(id);
      });
    });
    c.routes.forEach((r, i) => {
      if (!pools.has(r.pool)) ctx.addIssue({ code: 'custom', path: ['routes', i, 'pool'], message: `no pool named "${r.pool}"`, input: r.pool });
      for (const [k, re] of [['pathRegex', r.match.pathRegex], ['rewrite', r.rewrite?.pattern]] as const) {
        if (re === undefined) continue;
        try {
          new RegExp(re);
        } catch {
          ctx.addIssue({ code: 'custom', path: ['routes', i, k === 'rewrite' ? 'rewrite' : 'match', k === 'rewrite' ? 'pattern' : 'pathRegex'], message: `invalid regular expression`, input: re });
        }
      }
    });
    if (c.defaultPool !== undefined && !pools.has(c.defaultPool)) {
      ctx.addIssue({ code: 'custom', path: ['defaultPool'], message: `no pool named "${c.defaultPool}"`, input: c.defaultPool });
    }
    c.pools.forEach((p, i) => {
      if (p.health.active && p.health.tcp) {
        ctx.addIssue({ code: 'custom', path: ['pools', i, 'health', 'tcp'], message: 'choose health.active (HTTP) or health.tcp, not both', input: p.health.tcp });
      }
    });
    c.listeners.forEach((l, i) => checkListener(l, i, c.pools, ctx));
  });

/** Fields that only some modes use, and the pools an L4 listener names. */
function checkListener(l: z.output<typeof zBalancerListener>, i: number, pools: readonly z.output<typeof zPool>[], ctx: z.core.$RefinementCtx): void {
  const issue = (path: (string | number)[], message: string, input: unknown): void => ctx.addIssue({ code: 'custom', path: ['listeners', i, ...path], message, input });
  const only = (field: 'tls' | 'redirectToHttpsPort' | 'pool' | 'proxyProtocol' | 'sni' | 'udp', modes: readonly ListenerMode[]): void => {
    if (l[field] !== undefined && !modes.includes(l.mode)) issue([field], `only for mode ${modes.join(' or ')} listeners (this one is mode ${l.mode})`, l[field]);
  };
  only('tls', ['http']);
  only('redirectToHttpsPort', ['http']);
  only('pool', ['tcp', 'udp']);
  only('proxyProtocol', ['tcp']);
  only('sni', ['tcp']);
  only('udp', ['udp']);
  if (l.mode === 'http') return;
  const byName = new Map(pools.map((p) => [p.name, p]));
  const checkPool = (path: (string | number)[], name: string): void => {
    const p = byName.get(name);
    if (!p) return issue(path, `no pool named "${name}"`, name);
    if (l.mode === 'udp' && p.backends.some((b) => b.tls)) issue(path, `pool "${name}" has backends with tls: true, which a udp listener cannot speak`, name);
  };
  if (l.pool !== undefined) checkPool(['pool'], l.pool);
  else if (l.sni === undefined) issue(['pool'], `a ${l.mode} listener needs one${l.mode === 'tcp' ? ', or sni routes' : ''}`, undefined);
  l.sni?.routes.forEach((r, j) => checkPool(['sni', 'routes', j, 'pool'], r.pool));
  if (l.sni?.defaultPool !== undefined) checkPool(['sni', 'defaultPool'], l.sni.defaultPool);
  l.proxyProtocol?.acceptFrom.forEach((entry, j) => {
    try {
      new TrustedProxies([entry]);
    } catch (err) {
      issue(['proxyProtocol', 'acceptFrom', j], err instanceof Error ? err.message : String(err), entry);
    }
  });
}

export type BalancerConfig = z.output<typeof zBalancerConfig>;
export type PoolConfig = z.output<typeof zPool>;
export type BackendConfig = z.output<typeof zBackend>;
export type RouteConfig = z.output<typeof zRoute>;
export type ListenerConfig = z.output<typeof zBalancerListener>;
export type ActiveHealthConfig = z.output<typeof zActiveHealth>;
export type PassiveHealthConfig = z.output<typeof zPassiveHealth>;
export type TcpHealthConfig = z.output<typeof zTcpHealth>;
export type UdpListenerConfig = z.output<typeof zUdpListener>;
export type SniConfig = z.output<typeof zSni>;
export type ProxyProtocolConfig = z.output<typeof zProxyProtocol>;
/** What a caller passes in code: the file's shape, before defaults. */
export type BalancerConfigInput = z.input<typeof zBalancerConfig>;

/** Loads and validates a config file; certificate paths are relative to the file's folder. */
export function loadBalancerConfig(file: string): BalancerConfig {
  const config = loadConfig(file, zBalancerConfig);
  const dir = dirname(resolve(file));
  for (const l of config.listeners) {
    for (const c of l.tls?.certificates ?? []) {
      c.cert = resolve(dir, c.cert);
      c.key = resolve(dir, c.key);
    }
  }
  return config;
}

/** Validates an in-code config (same rules and messages as a file). */
export function balancerConfig(input: BalancerConfigInput | string, sourceName = '<balancer config>'): BalancerConfig {
  return parseConfig(typeof input === 'string' ? input : JSON.stringify(input), zBalancerConfig, sourceName, typeof input === 'string' ? undefined : 'json');
}
