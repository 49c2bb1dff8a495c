/**
 * `startCdn(config)`: a whole CDN in one process. It starts, in this order,
 *
 *   origin   the demo origin (config `origin.demo`), or nothing for `origin.url`
 *   shield   one caching node, tier 'shield', upstream = the origin, link = latency.origin
 *   edges    the nodes of every region, upstream = the shield (or the origin with the shield off),
 *            link = latency.shield[region] (+ latency.origin with the shield off)
 *   router   one per listener: region from header/address, nearest region, consistent hashing,
 *            client -> edge latency injected, streamed through keep-alive pools
 *
 * and gives back a handle to purge (HTTP fan-out to every node, with acks), read stats and the
 * topology, and close everything. If any part fails to start, what started is closed and the error
 * is thrown. Every node listens on loopback with a port of its own, so the router can be bypassed by
 * sending a request to an edge directly (send `Host: <siteHost>` to share the router's cache keys).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Pool } from 'undici';
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import type { ServerAddress } from '../../core/lifecycle.js';
import { createLogger } from '../../core/log.js';
import { cdnConfig, isCdnConfig, type CdnConfig, type CdnConfigInput, type StorageConfig } from '../config.js';
import { startEdge, type EdgeHandle } from '../edge/index.js';
import { primaryKey } from '../key.js';
import { summarize, type CdnStats, type PurgeStats } from '../metrics.js';
import { createStorage } from '../storage/index.js';
import type { CdnStorage } from '../types.js';
import { LatencyMatrix, oneWayMs } from './geo.js';
import { startDemoOrigin, type DemoOriginHandle } from './origin.js';
import { fanOutPurge, purgeIncomplete, type CdnPurgeReport, type CdnPurgeRequest, type PurgeTarget } from './purge.js';
import { edgePool, startRouter, type RoutedSample, type RouterHandle, type RouterStats } from './router.js';
import { EdgeSelector, RegionResolver } from './routing.js';
import { RecentSamples } from './window.js';

export { LatencyMatrix, oneWayMs } from './geo.js';
export { RegionResolver, EdgeSelector, type AddressRule, type EdgeRef, type RegionSource, type ResolvedRegion } from './routing.js';
export { startDemoOrigin, MAX_DEMO_OBJECTS, type DemoOriginHandle, type DemoOriginStats, type DemoOriginOptions } from './origin.js';
export { fanOutPurge, parsePurgeRequest, purgeIncomplete, type CdnPurgeRequest, type CdnPurgeReport, type NodeAck, type PurgeTarget } from './purge.js';
export { startRouter, MAX_ROUTE_ATTEMPTS, type RouterHandle, type RouterOptions, type RouterStats, type RoutedSample } from './router.js';
export { RecentSamples } from './window.js';

/** Origin request-rate samples kept (one a second): the rate is over the last 10 s. */
const RATE_SAMPLES = 11;
const RATE_INTERVAL_MS = 1000;

export interface CdnOptions {
  /** Default SystemClock. */
  clock?: Clock;
  /** Default: a pino logger at config.log.level. */
  logger?: Logger;
  /** Called after every purge fan-out with its report (complete or not), e.g. for metrics. */
  onPurge?: (report: CdnPurgeReport) => void;
  /** Called for every request the router forwarded, once its response head is written. */
  onRequest?: (sample: RoutedSample) => void;
}

/** A caching node as /topology shows it. */
export interface CdnNodeInfo {
  name: string;
  region: string;
  tier: 'edge' | 'shield';
  url: string;
  /** What it fetches misses from. */
  upstream: string;
  /** Round trip of its upstream link, ms. */
  upstreamRttMs: number;
}

export interface CdnTopology {
  routers: string[];
  siteHost: string;
  origin: { url: string; demo: boolean };
  shield: CdnNodeInfo | null;
  edges: CdnNodeInfo[];
  regions: Array<{ name: string; edges: string[] }>;
  clientRegions: string[];
  latency: ReturnType<LatencyMatrix['toJSON']>;
  routing: { regionHeader: string; defaultRegion: string; addressMap: Array<{ cidr: string; region: string }>; hashing: string };
}

export interface CdnHandle {
  /** The first router listener. */
  readonly address: ServerAddress;
  /** The first router listener's URL, e.g. http://127.0.0.1:8300. */
  readonly url: string;
  readonly routers: readonly ServerAddress[];
  readonly origin: { readonly url: string; readonly demo: DemoOriginHandle | undefined };
  readonly shield: EdgeHandle | undefined;
  /** Edge nodes, regions in config order. */
  readonly edges: readonly EdgeHandle[];
  /** The Host the router sets, and purges given as paths are qualified with. */
  readonly siteHost: string;
  /** The token every node accepts for PURGE (config purge.token, or random). */
  readonly purgeToken: string;
  readonly config: CdnConfig;
  readonly matrix: LatencyMatrix;
  topology(): CdnTopology;
  stats(): CdnStats;
  /** Where the router sends `url` for a client in `clientRegion` (no request is made). */
  route(clientRegion: string, url: string): { edge: string; region: string; rttMs: number };
  /**
   * Purges on every node over HTTP and waits for each ack (within purge.timeout). Resolves with the
   * report when all acked; rejects with ARCHLAB_CDN_PURGE_INCOMPLETE (details.report, details.missing)
   * otherwise; ARCHLAB_CDN_BAD_REQUEST for a malformed request.
   */
  purge(req: CdnPurgeRequest): Promise<CdnPurgeReport>;
  close(): Promise<void>;
}

/**
 * Close order, last stage first: routers, then edges, then their stores, then the shield, its store,
 * the origin, and the pools. Each stage closes in parallel, so a shutdown takes about one drain per
 * tier, not one per node.
 */
const STAGE = { pools: 0, origin: 1, shieldStorage: 2, shield: 3, edgeStorage: 4, edges: 5, routers: 6 } as const;

interface Started {
  stage: number;
  close(): Promise<void>;
}

export async function startCdn(input: CdnConfig | CdnConfigInput, opts: CdnOptions = {}): Promise<CdnHandle> {
  const config = isCdnConfig(input) ? input : cdnConfig(input);
  const clock = opts.clock ?? new SystemClock();
  const logger = opts.logger ?? createLogger({ level: config.log.level, name: 'archlab-cdn', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
  const purgeToken = config.purge.token ?? randomBytes(18).toString('base64url');
  const edgeRegions = config.regions.map((r) => r.name);
  const matrix = new LatencyMatrix({ latency: config.latency, edgeRegions, shieldEnabled: config.shield.enabled });
  const { limits, timeouts } = config;

  // Everything started, closed stage by stage (STAGE) on failure or close().
  const started: Started[] = [];
  const closeAll = async (): Promise<void> => {
    const all = started.splice(0);
    let first: unknown;
    for (let stage = STAGE.routers; stage >= STAGE.pools; stage--) {
      const results = await Promise.allSettled(all.filter((s) => s.stage === stage).map((s) => s.close()));
      for (const r of results) if (r.status === 'rejected') first ??= r.reason;
    }
    if (first !== undefined) throw first;
  };

  const storageFor = async (s: StorageConfig, node: string, stage: number): Promise<CdnStorage> => {
    const storage = await createStorage({
      memoryBytes: s.memoryBytes,
      maxObjectBytes: config.cache.maxObjectBytes,
      ...(s.disk === undefined ? {} : { disk: { dir: join(s.disk.dir, node), maxBytes: s.disk.maxBytes } }),
      clock,
      logger: logger.child({ node }),
    });
    started.push({ stage, close: () => storage.close() });
    return storage;
  };

  const nodeOptions = {
    key: { query: config.cache.query },
    purgeToken,
    limits: {
      maxUpstreamConnections: limits.maxUpstreamConnections,
      maxHeaderBytes: limits.maxHeaderBytes,
      maxCollapsedWaiters: limits.maxCollapsedWaiters,
      maxConnections: limits.maxConnections,
      maxBodyBytes: limits.maxBodyBytes,
    },
    timeouts: {
      upstreamConnectMs: timeouts.connectMs,
      upstreamResponseMs: timeouts.responseMs,
      idleMs: timeouts.idleMs,
      headersMs: timeouts.headersMs,
      drainMs: timeouts.drainMs,
    },
    xCache: config.cache.xCache,
    clock,
  };
  const pools = new Map<string, Pool>();
  const poolFor = (name: string, url: string): Pool => {
    const pool = edgePool(url, { connections: limits.maxUpstreamConnections, connectTimeoutMs: timeouts.connectMs });
    pools.set(name, pool);
    return pool;
  };

  let demo: DemoOriginHandle | undefined;
  let originUrl: string;
  let shield: EdgeHandle | undefined;
  const edges: EdgeHandle[] = [];
  const nodeInfo: CdnNodeInfo[] = [];
  const routers: RouterHandle[] = [];
  let siteHost = config.routing.host ?? '';
  let rateTimer: TimerHandle | undefined;
  let selector: EdgeSelector | undefined;
  started.push({ stage: STAGE.pools, close: async () => void (await Promise.allSettled([...pools.values()].map((p) => p.close()))) });

  try {
    if (config.origin.kind === 'demo') {
      demo = await startDemoOrigin({ config: config.origin.demo, now: () => clock.now(), logger: logger.child({ node: 'origin' }), drainTimeoutMs: timeouts.drainMs });
      const origin = demo;
      started.push({ stage: STAGE.origin, close: () => origin.close() });
      originUrl = demo.url;
    } else {
      originUrl = config.origin.url;
    }

    if (config.shield.enabled) {
      const s = config.shield;
      const rtt = matrix.shieldUpstreamRttMs();
      shield = await startEdge({
        ...nodeOptions,
        name: s.name,
        region: s.region,
        tier: 'shield',
        port: s.port,
        upstream: originUrl,
        upstreamLatencyMs: Math.ceil(oneWayMs(rtt)),
        storage: await storageFor(s.storage, s.name, STAGE.shieldStorage),
        policy: { cacheSetCookie: config.cache.cacheSetCookie, stripSurrogateHeaders: false },
        logger: logger.child({ node: s.name }),
      });
      const node = shield;
      started.push({ stage: STAGE.shield, close: () => node.close() });
      nodeInfo.push({ name: s.name, region: s.region, tier: 'shield', url: shield.url, upstream: originUrl, upstreamRttMs: rtt });
      poolFor(s.name, shield.url);
    }

    const edgeUpstream = shield?.url ?? originUrl;
    for (const r of config.regions) {
      const rtt = matrix.edgeUpstreamRttMs(r.name);
      for (const e of r.edges) {
        const edge = await startEdge({
          ...nodeOptions,
          name: e.name,
          region: r.name,
          tier: 'edge',
          port: e.port,
          upstream: edgeUpstream,
          upstreamLatencyMs: Math.ceil(oneWayMs(rtt)),
          storage: await storageFor(r.storage, e.name, STAGE.edgeStorage),
          policy: { cacheSetCookie: config.cache.cacheSetCookie, stripSurrogateHeaders: true },
          logger: logger.child({ node: e.name }),
        });
        started.push({ stage: STAGE.edges, close: () => edge.close() });
        edges.push(edge);
        nodeInfo.push({ name: e.name, region: r.name, tier: 'edge', url: edge.url, upstream: edgeUpstream, upstreamRttMs: rtt });
        poolFor(e.name, edge.url);
      }
    }

    const resolver = new RegionResolver({
      clientRegions: matrix.clientRegions,
      header: config.routing.regionHeader,
      addressMap: config.routing.addressMap,
      defaultRegion: config.routing.defaultRegion,
    });
    selector = new EdgeSelector(matrix, edges.map((e) => ({ name: e.name, region: e.region })), config.routing.hashing);
    const upstreams = new Map(edges.map((e) => [e.name, { name: e.name, region: e.region, url: e.url, dispatcher: pools.get(e.name)! }]));
    for (const l of config.listeners) {
      const router = await startRouter({
        host: l.host,
        port: l.port,
        resolver,
        selector,
        matrix,
        upstreams,
        siteHost: () => siteHost,
        key: { query: config.cache.query },
        maxBodyBytes: limits.maxBodyBytes,
        maxHeaderBytes: limits.maxHeaderBytes,
        maxConnections: limits.maxConnections,
        headersTimeoutMs: timeouts.headersMs,
        requestTimeoutMs: timeouts.requestMs,
        keepAliveTimeoutMs: timeouts.keepAliveMs,
        idleTimeoutMs: timeouts.idleMs,
        // Longer than an edge's own bound on a miss (connect + response + its link's latency), so
        // the edge answers 504 itself and the router only catches an edge that hangs.
        responseTimeoutMs: timeouts.responseMs + timeouts.connectMs + Math.max(0, ...edgeRegions.map((r) => matrix.edgeUpstreamRttMs(r))) + 1000,
        drainTimeoutMs: timeouts.drainMs,
        clock,
        logger: logger.child({ node: 'router' }),
        ...(opts.onRequest === undefined ? {} : { onRequest: opts.onRequest }),
      });
      started.push({ stage: STAGE.routers, close: () => router.close() });
      routers.push(router);
      if (siteHost === '') siteHost = new URL(router.address.url!).host;
    }
  } catch (err) {
    await closeAll().catch((closeErr: unknown) => logger.warn({ err: closeErr }, 'cdn: closing after a failed start failed too'));
    throw err;
  }

  const targets: PurgeTarget[] = [
    ...edges.map((e) => ({ name: e.name, region: e.region, tier: 'edge' as const, dispatcher: pools.get(e.name)! })),
    ...(shield === undefined ? [] : [{ name: shield.name, region: shield.region, tier: 'shield' as const, dispatcher: pools.get(shield.name)! }]),
  ];
  const recent = new RecentSamples(config.purge.history);
  let purgeCount = 0;
  let purgeIncompleteCount = 0;

  // Origin requests per second: one sample a second, rate over the ring.
  const originRequests = (): number =>
    shield !== undefined ? shield.stats().upstreamRequests : edges.reduce((s, e) => s + e.stats().upstreamRequests, 0);
  const rate: Array<{ t: number; n: number }> = [];
  const sample = (): void => {
    rate.push({ t: clock.monotonic(), n: originRequests() });
    if (rate.length > RATE_SAMPLES) rate.shift();
    rateTimer = clock.setTimer(RATE_INTERVAL_MS, sample);
  };
  sample();
  const requestsPerSecond = (): number => {
    const first = rate[0];
    const last = { t: clock.monotonic(), n: originRequests() };
    if (first === undefined || last.t - first.t < 1) return 0;
    return ((last.n - first.n) * 1000) / (last.t - first.t);
  };

  const routerStats = (): RouterStats => {
    const out: RouterStats = { requests: 0, byClientRegion: {}, errors: 0, failovers: 0 };
    for (const r of routers) {
      const s = r.stats();
      out.requests += s.requests;
      out.errors += s.errors;
      out.failovers += s.failovers;
      for (const [k, v] of Object.entries(s.byClientRegion)) out.byClientRegion[k] = (out.byClientRegion[k] ?? 0) + v;
    }
    return out;
  };
  const purgeStats = (): PurgeStats => {
    const [p50, p99] = recent.percentiles([50, 99]);
    return { count: purgeCount, incomplete: purgeIncompleteCount, p50Ms: p50 ?? null, p99Ms: p99 ?? null, lastMs: recent.last() ?? null, window: recent.capacity };
  };

  let closing: Promise<void> | undefined;
  const first = routers[0]!;
  logger.info(
    { router: routers.map((r) => r.address.url), origin: originUrl, shield: shield?.url, edges: edges.map((e) => `${e.name}@${e.url}`) },
    'archlab cdn ready',
  );
  return {
    address: first.address,
    url: first.address.url!,
    routers: routers.map((r) => r.address),
    origin: { url: originUrl, demo },
    shield,
    edges,
    siteHost,
    purgeToken,
    config,
    matrix,
    topology: () => ({
      routers: routers.map((r) => r.address.url!),
      siteHost,
      origin: { url: originUrl, demo: demo !== undefined },
      shield: nodeInfo.find((n) => n.tier === 'shield') ?? null,
      edges: nodeInfo.filter((n) => n.tier === 'edge'),
      regions: config.regions.map((r) => ({ name: r.name, edges: r.edges.map((e) => e.name) })),
      clientRegions: [...matrix.clientRegions],
      latency: matrix.toJSON(),
      routing: {
        regionHeader: config.routing.regionHeader,
        defaultRegion: config.routing.defaultRegion,
        addressMap: config.routing.addressMap.map((a) => ({ ...a })),
        hashing: config.routing.hashing,
      },
    }),
    stats: () =>
      summarize({
        at: clock.now(),
        edges: edges.map((e) => e.stats()),
        shield: shield?.stats(),
        regions: edgeRegions,
        originUrl,
        originRequestsPerSecond: requestsPerSecond(),
        demo: demo?.stats(),
        purge: purgeStats(),
        router: routerStats(),
      }),
    route: (clientRegion, url) => {
      const key = primaryKey({ scheme: 'http', host: siteHost, url }, { query: config.cache.query });
      const edge = selector!.candidates(clientRegion, key, 1)[0]!;
      return { edge: edge.name, region: edge.region, rttMs: matrix.clientRttMs(clientRegion, edge.region) };
    },
    purge: async (req) => {
      const report = await fanOutPurge(targets, req, { siteHost, token: purgeToken, timeoutMs: config.purge.timeoutMs, clock });
      purgeCount++;
      if (report.complete) recent.add(report.propagationMs);
      else purgeIncompleteCount++;
      opts.onPurge?.(report);
      logger.info({ selector: report.selector, mode: report.mode, purged: report.purged, propagationMs: report.propagationMs, complete: report.complete }, 'purge');
      if (!report.complete) throw purgeIncomplete(report);
      return report;
    },
    close: () =>
      (closing ??= (async () => {
        rateTimer?.cancel();
        await closeAll();
      })()),
  };
}
