/**
 * `archlab cdn --config cdn.yaml`: the CDN's file. The house vocabulary (`listeners`, `admin`, `log`,
 * `metrics`, `limits`, `timeouts`) means what it means in every archlab server; `listeners` are the
 * router's ports (the front door). The network itself is `origin`, `shield`, `regions`, `latency`,
 * `routing`, `cache` and `purge`. Durations and sizes take units (`20ms`, `64MiB`) and come out as
 * numbers with the unit in the name. Relative paths are relative to the file.
 *
 * ```yaml
 * listeners: [{ port: 8300 }]                  # the router
 * admin: { port: 8301 }                        # /metrics, /healthz, /stats, /topology, POST /purge
 * origin: { demo: {} }                         # or { url: http://127.0.0.1:8080 }
 * shield: { enabled: true }
 * regions:
 *   - { name: eu, edges: 2 }
 *   - { name: us, edges: [us-east, us-west] }
 * latency:                                     # round-trip times
 *   clients: { eu: { eu: 10ms, us: 90ms }, us: { eu: 90ms, us: 10ms } }
 *   shield: { eu: 20ms, us: 40ms }             # edge region -> shield
 *   origin: 30ms                               # shield -> origin
 * routing: { addressMap: [{ cidr: 127.0.0.0/8, region: eu }] }
 * purge: { token: s3cret, timeout: 2s }
 * ```
 *
 * Latencies are **round-trip** times, as people quote them ("eu to us is 90 ms"); each link is
 * given half of it one way and half the other (request out, response back), so a request over a
 * link takes at least its round-trip time.
 */
import { BlockList, isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { loadConfig, parseConfig, zAdmin, zListener, zLog, zMetrics, zTimeouts } from '../core/config.js';
import { zDuration, zSize } from '../core/units.js';

/** Region and node names: what goes into metric labels, URLs of /topology and disk directory names. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const NAME_HINT = 'expected 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit';
const zName = z.string().regex(NAME_RE, NAME_HINT);
const zPort = z.int().min(0).max(65535);
/** One-way or round-trip latencies are capped: a simulated link slower than this is a typo. */
const MAX_LATENCY_MS = 10_000;
const zLatency = () => zDuration(undefined, { maxMs: MAX_LATENCY_MS });

/** Where a node's objects live: memory (LRU by bytes) and an optional disk tier. */
function zStorage(memoryDefault: string) {
  return z
    .strictObject({
      /** Bytes of bodies and heads kept in memory, per node. -> memoryBytes */
      memory: zSize(memoryDefault, { minBytes: 64 * 1024 }),
      /** Optional disk tier behind memory, per node (each node gets `<dir>/<node name>`). */
      disk: z
        .strictObject({
          /** Directory, relative to the config file. Required. */
          dir: z.string().min(1),
          /** Bytes on disk at most, per node. Default 1GiB. -> maxBytes */
          max: zSize('1GiB', { minBytes: 1024 * 1024 }),
        })
        .transform((d) => ({ dir: d.dir, maxBytes: d.max }))
        .optional(),
    })
    .transform((s) => ({ memoryBytes: s.memory, ...(s.disk === undefined ? {} : { disk: s.disk }) }))
    .prefault({});
}
export type StorageConfig = z.output<ReturnType<typeof zStorage>>;

/** An object the demo origin serves. */
const zDemoObject = z.strictObject({
  /** Path, starting with "/". Required. */
  path: z.string().regex(/^\/[^\s?#]*$/, 'expected a path starting with "/", without query or fragment'),
  /** Body size. Default 4KiB. -> bytes */
  size: zSize('4KiB', { maxBytes: 256 * 1024 * 1024 }),
  /** Cache-Control header; "" for none. Default "public, max-age=60". */
  cacheControl: z.string().max(512).default('public, max-age=60'),
  /** Surrogate-Key header (space-separated tags). Default none. */
  surrogateKey: z.string().max(1024).optional(),
  /** Content-Type. Default "application/octet-stream". */
  contentType: z.string().min(1).max(256).default('application/octet-stream'),
  /** Send an ETag (and answer If-None-Match with 304). Default true. */
  etag: z.boolean().default(true),
  /** Send Last-Modified (and answer If-Modified-Since with 304). Default true. */
  lastModified: z.boolean().default(true),
});

/** The objects `archlab cdn` serves with no file: a page, its assets, a large file, and an API answer. */
export const DEFAULT_DEMO_OBJECTS: ReadonlyArray<z.input<typeof zDemoObject>> = [
  { path: '/', size: '2KiB', cacheControl: 'public, max-age=60, stale-while-revalidate=30', contentType: 'text/html; charset=utf-8', surrogateKey: 'html home' },
  { path: '/css/site.css', size: '8KiB', cacheControl: 'public, max-age=3600', contentType: 'text/css', surrogateKey: 'assets css' },
  { path: '/js/app.js', size: '48KiB', cacheControl: 'public, max-age=3600', contentType: 'text/javascript', surrogateKey: 'assets js' },
  { path: '/img/logo.png', size: '32KiB', cacheControl: 'public, max-age=86400', contentType: 'image/png', surrogateKey: 'assets img' },
  { path: '/video/clip.bin', size: '4MiB', cacheControl: 'public, max-age=86400', surrogateKey: 'video' },
  { path: '/api/news', size: '1KiB', cacheControl: 'public, s-maxage=10, max-age=0, stale-if-error=300', contentType: 'application/json', surrogateKey: 'api news' },
];

const zDemoOrigin = z
  .strictObject({
    /** Interface the demo origin binds. Default "127.0.0.1". */
    host: z.string().min(1).default('127.0.0.1'),
    /** Port; 0 picks a free one. Default 0. */
    port: zPort.default(0),
    /** Objects served at fixed paths. Default: a small site (DEFAULT_DEMO_OBJECTS). At most 1000. */
    objects: z.array(zDemoObject).max(1000).prefault(DEFAULT_DEMO_OBJECTS as z.input<typeof zDemoObject>[]),
    /** Any path under this prefix is an object too (for workloads over many URLs), e.g. /objects/42. */
    generated: z
      .strictObject({
        /** Default "/objects/". */
        prefix: z.string().regex(/^\/[^\s?#]*\/$/, 'expected a path starting and ending with "/"').default('/objects/'),
        /** Body size of each. Default 16KiB. -> bytes */
        size: zSize('16KiB', { maxBytes: 64 * 1024 * 1024 }),
        /** Default "public, max-age=300". */
        cacheControl: z.string().max(512).default('public, max-age=300'),
      })
      .transform((g) => ({ prefix: g.prefix, bytes: g.size, cacheControl: g.cacheControl }))
      .prefault({}),
    /** GET /slow answers after this (or after ?ms=N, capped at 30 s). Default 2s. -> slowMs */
    slow: zDuration('2s', { maxMs: 30_000 }),
    /** Largest body a PUT may give an object (PUT replaces it; DELETE removes it). Default 1MiB. -> maxPutBytes */
    maxPut: zSize('1MiB', { maxBytes: 64 * 1024 * 1024 }),
  })
  .transform(({ objects, slow, maxPut, ...rest }) => ({
    ...rest,
    objects: objects.map(({ size, ...o }) => ({ ...o, bytes: size })),
    slowMs: slow,
    maxPutBytes: maxPut,
  }));
export type DemoOriginConfig = z.output<typeof zDemoOrigin>;

const zOrigin = z
  .strictObject({
    /** An origin that already runs, e.g. "http://127.0.0.1:8080". */
    url: z
      .string()
      .regex(/^https?:\/\/[^/?#\s]+\/?$/, 'expected an http:// or https:// URL with no path, e.g. "http://127.0.0.1:8080"')
      .optional(),
    /** A demo origin started in this process (a small site, /slow, /private, generated /objects/<n>). */
    demo: zDemoOrigin.optional(),
  })
  .superRefine((o, ctx) => {
    if ((o.url === undefined) === (o.demo === undefined)) {
      ctx.addIssue({ code: 'custom', input: o, message: 'expected exactly one of url or demo' });
    }
  })
  .transform((o): { kind: 'url'; url: string } | { kind: 'demo'; demo: DemoOriginConfig } =>
    o.url !== undefined ? { kind: 'url', url: o.url.replace(/\/$/, '') } : { kind: 'demo', demo: o.demo! },
  )
  .prefault({ demo: {} });
export type OriginConfig = z.output<typeof zOrigin>;

const zShield = z
  .strictObject({
    /** Put a shield between the edges and the origin. Default true. */
    enabled: z.boolean().default(true),
    /** Node name. Default "shield". */
    name: zName.default('shield'),
    /** Region label of the shield in metrics and /topology. Default "shield". */
    region: zName.default('shield'),
    /** Port; 0 picks a free one. Default 0. */
    port: zPort.default(0),
    /** The shield's store. Default memory 256MiB. */
    storage: zStorage('256MiB'),
  })
  .prefault({});
export type ShieldConfig = z.output<typeof zShield>;

/** `edges: 2`, `edges: [eu-a, eu-b]` or `edges: [{ name: eu-a, port: 8310 }]`. Not a z.union, so errors say which. */
const zEdges = z.unknown().optional().transform((v, ctx): Array<{ name?: string; port: number }> => {
  if (v === undefined) return [{ port: 0 }];
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 1 || v > 64) {
      ctx.addIssue({ code: 'custom', input: v, message: `expected a count of edge nodes 1..64, received ${v}` });
      return z.NEVER;
    }
    return Array.from({ length: v }, () => ({ port: 0 }));
  }
  if (!Array.isArray(v) || v.length === 0 || v.length > 64) {
    ctx.addIssue({ code: 'custom', input: v, message: 'expected a count 1..64 or a list of 1..64 node names or { name, port }' });
    return z.NEVER;
  }
  const out: Array<{ name?: string; port: number }> = [];
  v.forEach((e: unknown, i) => {
    if (typeof e === 'string') {
      if (!NAME_RE.test(e)) ctx.addIssue({ code: 'custom', path: [i], input: e, message: `${NAME_HINT}, received ${JSON.stringify(e)}` });
      else out.push({ name: e, port: 0 });
      return;
    }
    const r = z.strictObject({ name: zName, port: zPort.default(0) }).safeParse(e);
    if (r.success) out.push(r.data);
    else for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', path: [i, ...(issue.path as PropertyKey[])], input: e, message: issue.message });
  });
  return out;
});

const zRegion = z.strictObject({
  /** Region name, e.g. "eu". Required. */
  name: zName,
  /** Edge nodes: a count (named `<region>-1`...), or names, or { name, port }. Default 1. */
  edges: zEdges,
  /** Each edge node's store. Default memory 64MiB. */
  storage: zStorage('64MiB'),
});

/** `latency.clients`: client region -> edge region -> round-trip time. */
const zMatrix = z.record(zName, z.record(zName, zLatency()));

const zLatencySection = z
  .strictObject({
    /**
     * Client region -> edge region: round-trip time of the client's link to an edge there. Every row
     * names every edge region. Rows may name client regions with no edges of their own (users in
     * "af" served from "eu"). Default: one row per edge region, all 0.
     */
    clients: zMatrix.optional(),
    /** Edge region -> shield (or, with the shield off, edge region -> origin minus `origin`): round trip. Missing regions 0. */
    shield: z.record(zName, zLatency()).default({}),
    /** Shield -> origin round trip (added to `shield` on an edge -> origin link when the shield is off). Default 0ms. -> originMs */
    origin: zDuration('0ms', { maxMs: MAX_LATENCY_MS }),
  })
  .prefault({});

const zAddressRule = z.strictObject({
  /** An IPv4 or IPv6 network, e.g. "10.1.0.0/16", "::1/128". Required. */
  cidr: z.string().refine(validCidr, 'expected an IPv4 or IPv6 network "address/prefix", e.g. "10.1.0.0/16" or "::1/128"'),
  /** Client region for addresses in it. Required. */
  region: zName,
});

function validCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const addr = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  const family = isIP(addr);
  if (family === 0 || !/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) return false;
  try {
    new BlockList().addSubnet(addr, Number(bits), family === 4 ? 'ipv4' : 'ipv6');
    return true;
  } catch {
    return false;
  }
}

const zRouting = z
  .strictObject({
    /** Request header naming the client's region; it wins over the address map. Default "x-client-region". */
    regionHeader: z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'expected an HTTP header name')
      .default('x-client-region')
      .transform((s) => s.toLowerCase()),
    /** Source address -> client region, first match wins. Loopback (127.0.0.0/8, ::1) maps only if listed. Default none. */
    addressMap: z.array(zAddressRule).max(1024).default([]),
    /** Client region when neither the header nor the address map says. Default: the first client region. */
    defaultRegion: zName.optional(),
    /**
     * The site's host: the router sets Host to it on every request it forwards, so a URL has one cache
     * key however the client spelled the host, and a purge given a path is qualified with it.
     * Default: the router's own address, "127.0.0.1:<port>".
     */
    host: z
      .string()
      .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/, 'expected a host name with an optional port, e.g. "cdn.example.com"')
      .transform((s) => s.toLowerCase())
      .optional(),
    /** Spreading URLs over a region's edge nodes. Default "rendezvous". */
    hashing: z.enum(['rendezvous', 'ketama']).default('rendezvous'),
  })
  .prefault({});

/** The cache key's query rule. Not a z.union, so a bad value says what is accepted. */
const zQuery = z.unknown().optional().transform((v, ctx): 'keep' | 'sort' | 'ignore' | { keep: string[] } => {
  if (v === undefined) return 'keep';
  if (v === 'keep' || v === 'sort' || v === 'ignore') return v;
  const r = z.strictObject({ keep: z.array(z.string().min(1).max(256)).max(256) }).safeParse(v);
  if (r.success) return r.data;
  ctx.addIssue({ code: 'custom', input: v, message: `expected "keep", "sort", "ignore" or { keep: [param, ...] }, received ${JSON.stringify(v)}` });
  return z.NEVER;
});

const zCache = z
  .strictObject({
    /** What of the query string is in the cache key: keep (as is), sort (params sorted), ignore, or { keep: [names] }. Default keep. */
    query: zQuery,
    /** Store responses carrying Set-Cookie. Default false. */
    cacheSetCookie: z.boolean().default(false),
    /** Objects larger than this are passed through uncached. Default 16MiB. -> maxObjectBytes */
    maxObject: zSize('16MiB', { minBytes: 1024 }),
    /** Add X-Cache (HIT, MISS, STALE, REVALIDATED, PASS, chained across tiers). Default true. */
    xCache: z.boolean().default(true),
  })
  .transform(({ maxObject, ...rest }) => ({ ...rest, maxObjectBytes: maxObject }))
  .prefault({});

const zPurge = z
  .strictObject({
    /**
     * Bearer token every node accepts for PURGE, and the admin API's token unless `admin.token` is
     * set. Default: a random one made at start (printed by `archlab cdn`).
     */
    token: z.string().min(8, 'expected at least 8 characters').max(256).optional(),
    /** A node that has not acknowledged a purge within this is reported missing (ARCHLAB_CDN_PURGE_INCOMPLETE). Default 2s. -> timeoutMs */
    timeout: zDuration('2s', { minMs: 1, maxMs: 60_000 }),
    /** Recent purges kept for the p50/p99 of propagation time. Default 1024. */
    history: z.int().min(1).max(100_000).default(1024),
  })
  .transform(({ timeout, ...rest }) => ({ ...rest, timeoutMs: timeout }))
  .prefault({});

/** limits: the house fields (same names and defaults as every server) plus the CDN's own. */
const zCdnLimits = z
  .strictObject({
    /** Largest request body passed upstream (POST/PUT); bigger gets 413. Default 1MiB. -> maxBodyBytes */
    maxBody: zSize('1MiB'),
    /** Largest request header block; bigger gets 431. Default 16KiB. -> maxHeaderBytes */
    maxHeader: zSize('16KiB', { minBytes: 1024 }),
    /** Concurrent client connections per listener (router and each node). Default 10000. */
    maxConnections: z.int().min(1).default(10_000),
    /** Requests waiting on one in-flight miss, per cache key, per node. Default 1000. */
    maxCollapsedWaiters: z.int().min(1).max(1_000_000).default(1000),
    /** Keep-alive connections per upstream pool: router -> each edge, edge -> shield, shield -> origin. Default 128. */
    maxUpstreamConnections: z.int().min(1).max(10_000).default(128),
  })
  .transform((l) => ({
    maxBodyBytes: l.maxBody,
    maxHeaderBytes: l.maxHeader,
    maxConnections: l.maxConnections,
    maxCollapsedWaiters: l.maxCollapsedWaiters,
    maxUpstreamConnections: l.maxUpstreamConnections,
  }))
  .prefault({});

export const zCdnConfig = z
  .strictObject({
    /** The router (front door). Required, 1..16. */
    listeners: z.array(zListener).min(1, 'at least one listener').max(16),
    /** /metrics, /healthz, and behind the token: POST /purge, GET /stats, GET /topology. */
    admin: zAdmin.optional(),
    log: zLog,
    metrics: zMetrics,
    limits: zCdnLimits,
    timeouts: zTimeouts,
    origin: zOrigin,
    shield: zShield,
    /** Edge regions, 1..32. Required. */
    regions: z.array(zRegion).min(1, 'at least one region').max(32),
    latency: zLatencySection,
    routing: zRouting,
    cache: zCache,
    purge: zPurge,
  })
  .superRefine((c, ctx) => {
    const issue = (path: PropertyKey[], input: unknown, message: string): void => ctx.addIssue({ code: 'custom', path, input, message });
    const edgeRegions = c.regions.map((r) => r.name);
    const seenRegion = new Set<string>();
    const seenNode = new Map<string, string>();
    if (c.shield.enabled) seenNode.set(c.shield.name, 'shield.name');
    c.regions.forEach((r, i) => {
      if (seenRegion.has(r.name)) issue(['regions', i, 'name'], r.name, `duplicate region "${r.name}"`);
      seenRegion.add(r.name);
      r.edges.forEach((e, j) => {
        const name = e.name ?? `${r.name}-${j + 1}`;
        const at = seenNode.get(name);
        if (at !== undefined) issue(['regions', i, 'edges', j], name, `node name "${name}" is already used by ${at}`);
        seenNode.set(name, `regions[${i}].edges[${j}]`);
      });
    });
    const clients = c.latency.clients;
    if (clients !== undefined) {
      if (Object.keys(clients).length === 0) issue(['latency', 'clients'], clients, 'expected at least one client region');
      for (const [client, row] of Object.entries(clients)) {
        for (const region of edgeRegions) {
          if (row[region] === undefined) issue(['latency', 'clients', client, region], undefined, `missing: the round trip from clients in "${client}" to edge region "${region}"`);
        }
        for (const region of Object.keys(row)) {
          if (!seenRegion.has(region)) issue(['latency', 'clients', client, region], region, `unknown edge region "${region}" (regions: ${edgeRegions.join(', ')})`);
        }
      }
    }
    for (const region of Object.keys(c.latency.shield)) {
      if (!seenRegion.has(region)) issue(['latency', 'shield', region], region, `unknown edge region "${region}" (regions: ${edgeRegions.join(', ')})`);
    }
    const clientRegions = new Set(clients === undefined ? edgeRegions : Object.keys(clients));
    const known = [...clientRegions].join(', ');
    c.routing.addressMap.forEach((rule, i) => {
      if (!clientRegions.has(rule.region)) issue(['routing', 'addressMap', i, 'region'], rule.region, `unknown client region "${rule.region}" (client regions: ${known})`);
    });
    if (c.routing.defaultRegion !== undefined && !clientRegions.has(c.routing.defaultRegion)) {
      issue(['routing', 'defaultRegion'], c.routing.defaultRegion, `unknown client region "${c.routing.defaultRegion}" (client regions: ${known})`);
    }
  })
  .transform((c) => {
    const edgeRegions = c.regions.map((r) => r.name);
    const clients =
      c.latency.clients ?? Object.fromEntries(edgeRegions.map((client) => [client, Object.fromEntries(edgeRegions.map((r) => [r, 0]))]));
    const shieldMs = Object.fromEntries(edgeRegions.map((r) => [r, c.latency.shield[r] ?? 0]));
    return {
      ...c,
      regions: c.regions.map((r) => ({
        ...r,
        edges: r.edges.map((e, j) => ({ name: e.name ?? `${r.name}-${j + 1}`, port: e.port })),
      })),
      latency: { clientsMs: clients, shieldMs, originMs: c.latency.origin },
      routing: { ...c.routing, defaultRegion: c.routing.defaultRegion ?? Object.keys(clients)[0]! },
    };
  });

export type CdnConfig = z.output<typeof zCdnConfig>;
export type CdnConfigInput = z.input<typeof zCdnConfig>;
export type RegionConfig = CdnConfig['regions'][number];
export type LatencyConfig = CdnConfig['latency'];
export type RoutingConfig = CdnConfig['routing'];
export type CacheSectionConfig = CdnConfig['cache'];
export type PurgeConfig = CdnConfig['purge'];
export type CdnLimitsConfig = CdnConfig['limits'];

/** Disk directories in the file are relative to the file. */
function resolvePaths(config: CdnConfig, baseDir: string): CdnConfig {
  const storage = (s: StorageConfig): StorageConfig =>
    s.disk === undefined || isAbsolute(s.disk.dir) ? s : { ...s, disk: { ...s.disk, dir: resolve(baseDir, s.disk.dir) } };
  return {
    ...config,
    shield: { ...config.shield, storage: storage(config.shield.storage) },
    regions: config.regions.map((r) => ({ ...r, storage: storage(r.storage) })),
  };
}

/** Loads and validates a config file; errors name the file, the field and what was expected. */
export function loadCdnConfig(file: string): CdnConfig {
  return resolvePaths(loadConfig(file, zCdnConfig), dirname(resolve(file)));
}

/** Validates a config given as an object or YAML text (paths relative to the working directory). */
export function cdnConfig(input: CdnConfigInput | string, sourceName = '<cdn config>'): CdnConfig {
  const parsed = parseConfig(typeof input === 'string' ? input : JSON.stringify(input), zCdnConfig, sourceName, typeof input === 'string' ? undefined : 'json');
  return resolvePaths(parsed, process.cwd());
}

/** True when `c` is already a parsed config (numbers with units in names), not an input to parse. */
export function isCdnConfig(c: CdnConfigInput | CdnConfig): c is CdnConfig {
  return typeof (c as CdnConfig).latency?.originMs === 'number' && typeof (c as CdnConfig).purge?.timeoutMs === 'number';
}
