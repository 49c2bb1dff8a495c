/**
 * What the CDN reports: `summarize()` turns the nodes' plain counters (EdgeStats) into the JSON of
 * `GET /stats` (per node, per region, totals, ratios, origin offload, purge latency), and
 * `CdnMetrics` exports the same as Prometheus series on the admin `/metrics`. The request path only
 * bumps plain numbers inside each node; series read them at scrape time. Label values are node and
 * region names from the config: bounded.
 *
 * Ratios (0..1, null when there is nothing to divide):
 *   hitRatio      (hits + stale) / (hits + stale + misses + revalidated + passes): requests answered
 *                 without waiting on the upstream
 *   byteHitRatio  bytesFromCache / (bytesFromCache + bytesFromUpstream): body bytes served from store
 *   offload       1 - origin requests / edge requests (PURGEs not counted), and 1 - origin bytes /
 *                 bytes served by edges
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../core/metrics.js';
import type { EdgeCounters, EdgeStats, StorageStats } from './types.js';
import type { CdnPurgeReport } from './network/purge.js';
import type { RoutedSample, RouterStats } from './network/router.js';
import type { DemoOriginStats } from './network/origin.js';

/** The counters summed per region and in totals. */
export interface TierCounters extends EdgeCounters {
  nodes: number;
  objects: number;
  storedBytes: number;
  hitRatio: number | null;
  byteHitRatio: number | null;
}

export interface NodeStats extends EdgeStats {
  hitRatio: number | null;
  byteHitRatio: number | null;
}

export interface RegionStats extends TierCounters {
  region: string;
}

export interface PurgeStats {
  /** Purges fanned out since start. */
  count: number;
  /** Purges where a node did not ack. */
  incomplete: number;
  /** Over the last `window` purges, ms. */
  p50Ms: number | null;
  p99Ms: number | null;
  lastMs: number | null;
  window: number;
}

export interface CdnStats {
  /** Wall-clock ms when taken. */
  at: number;
  nodes: NodeStats[];
  /** Edge regions (not the shield), in config order. */
  regions: RegionStats[];
  /** All edge nodes together. */
  edges: TierCounters;
  shield: NodeStats | null;
  origin: {
    url: string;
    /** Requests that reached the origin from the CDN: the shield's upstream requests, or the edges' with the shield off. */
    requests: number;
    /** Over the last few seconds (sampled each second). */
    requestsPerSecond: number;
    /** Body bytes that came from the origin. */
    bytes: number;
    /** The demo origin's own counters, when it runs in this process. */
    demo: DemoOriginStats | null;
  };
  offload: { requests: number | null; bytes: number | null };
  purge: PurgeStats;
  router: RouterStats;
}

function ratio(num: number, den: number): number | null {
  return den > 0 ? num / den : null;
}

function hitRatioOf(s: Pick<EdgeStats, 'hits' | 'stale' | 'misses' | 'revalidated' | 'passes'>): number | null {
  return ratio(s.hits + s.stale, s.hits + s.stale + s.misses + s.revalidated + s.passes);
}

function withRatios(s: EdgeStats): NodeStats {
  return { ...s, hitRatio: hitRatioOf(s), byteHitRatio: ratio(s.bytesFromCache, s.bytesFromCache + s.bytesFromUpstream) };
}

function sum(nodes: readonly EdgeStats[]): TierCounters {
  const t = { nodes: nodes.length, requests: 0, hits: 0, misses: 0, stale: 0, revalidated: 0, passes: 0, errors: 0, collapsed: 0, bytesFromCache: 0, bytesFromUpstream: 0, upstreamRequests: 0, purges: 0, objects: 0, storedBytes: 0 };
  for (const n of nodes) {
    t.requests += n.requests;
    t.hits += n.hits;
    t.misses += n.misses;
    t.stale += n.stale;
    t.revalidated += n.revalidated;
    t.passes += n.passes;
    t.errors += n.errors;
    t.collapsed += n.collapsed;
    t.bytesFromCache += n.bytesFromCache;
    t.bytesFromUpstream += n.bytesFromUpstream;
    t.upstreamRequests += n.upstreamRequests;
    t.purges += n.purges;
    t.objects += n.storage.objects;
    t.storedBytes += n.storage.bytes;
  }
  return { ...t, hitRatio: hitRatioOf(t), byteHitRatio: ratio(t.bytesFromCache, t.bytesFromCache + t.bytesFromUpstream) };
}

export interface SummarizeInput {
  at: number;
  /** Edge nodes' stats, in config order. */
  edges: readonly EdgeStats[];
  shield: EdgeStats | undefined;
  /** Edge regions in config order. */
  regions: readonly string[];
  originUrl: string;
  originRequestsPerSecond: number;
  demo: DemoOriginStats | undefined;
  purge: PurgeStats;
  router: RouterStats;
}

/** The /stats document. Pure. */
export function summarize(i: SummarizeInput): CdnStats {
  const edges = sum(i.edges);
  const top = i.shield === undefined ? edges : sum([i.shield]);
  const originRequests = top.upstreamRequests;
  const originBytes = top.bytesFromUpstream;
  const served = edges.bytesFromCache + edges.bytesFromUpstream;
  // Nodes count PURGEs among their requests; offload is about what users asked for.
  const userRequests = edges.requests - edges.purges;
  return {
    at: i.at,
    nodes: [...i.edges, ...(i.shield === undefined ? [] : [i.shield])].map(withRatios),
    regions: i.regions.map((region) => ({ region, ...sum(i.edges.filter((e) => e.region === region)) })),
    edges,
    shield: i.shield === undefined ? null : withRatios(i.shield),
    origin: { url: i.originUrl, requests: originRequests, requestsPerSecond: i.originRequestsPerSecond, bytes: originBytes, demo: i.demo ?? null },
    offload: {
      requests: userRequests > 0 ? 1 - originRequests / userRequests : null,
      bytes: served > 0 ? 1 - originBytes / served : null,
    },
    purge: i.purge,
    router: i.router,
  };
}

type NodeField = keyof Omit<EdgeStats, 'name' | 'region' | 'tier' | 'storage'>;
type StoreField = keyof StorageStats;

/** Prometheus series of one CDN (a registry per server, so two CDNs in a process do not collide). */
export class CdnMetrics {
  /** One stats() per scrape, shared by every series (retaken by the first series of each scrape). */
  private readonly scrape: { snapshot: CdnStats | undefined } = { snapshot: undefined };
  private readonly purgeSeconds: Histogram;
  private readonly purgeNodeSeconds: Histogram<'node'>;
  private readonly purgeIncomplete: Counter;
  private readonly requestSeconds: Histogram<'client_region' | 'edge_region'>;

  /** `stats` is called once per scrape. */
  constructor(registry: Registry, stats: () => CdnStats) {
    const p = METRIC_PREFIX + 'cdn_';
    const scrape = this.scrape;
    const snap = (): CdnStats => (scrape.snapshot ??= stats());
    // Registered first, so prom-client collects it first: one fresh stats() per scrape, read by the rest.
    new Gauge({
      name: p + 'nodes',
      help: 'Caching nodes by tier.',
      labelNames: ['tier'] as const,
      registers: [registry],
      collect() {
        scrape.snapshot = stats();
        this.reset();
        this.set({ tier: 'edge' }, scrape.snapshot.edges.nodes);
        this.set({ tier: 'shield' }, scrape.snapshot.shield === null ? 0 : 1);
      },
    });
    const nodeLabels = ['node', 'region', 'tier'] as const;
    const nodeCounter = (name: string, help: string, field: NodeField): void => {
      new Counter({
        name: p + name,
        help,
        labelNames: nodeLabels,
        registers: [registry],
        collect() {
          this.reset();
          for (const n of snap().nodes) this.inc({ node: n.name, region: n.region, tier: n.tier }, n[field]);
        },
      });
    };
    nodeCounter('requests_total', 'Requests a node answered.', 'requests');
    nodeCounter('hits_total', 'Requests served fresh from the node\'s store.', 'hits');
    nodeCounter('misses_total', 'Requests that found nothing usable and went upstream.', 'misses');
    nodeCounter('stale_total', 'Stale objects served (stale-while-revalidate, stale-if-error, soft-purged).', 'stale');
    nodeCounter('revalidations_total', 'Stored objects revalidated upstream (conditional request answered 304).', 'revalidated');
    nodeCounter('passes_total', 'Requests passed upstream uncached (uncacheable, unsafe method, too large).', 'passes');
    nodeCounter('errors_total', 'Requests answered with an error by the node (502, 504, 431...).', 'errors');
    nodeCounter('collapsed_total', 'Requests that waited on another request\'s upstream fetch (request collapsing).', 'collapsed');
    nodeCounter('bytes_from_cache_total', 'Body bytes served from the node\'s store.', 'bytesFromCache');
    nodeCounter('bytes_from_upstream_total', 'Body bytes served that came from upstream.', 'bytesFromUpstream');
    nodeCounter('upstream_requests_total', 'Requests the node made upstream.', 'upstreamRequests');
    nodeCounter('purges_total', 'Purge requests the node handled.', 'purges');
    const storeGauge = (name: string, help: string, field: StoreField): void => {
      new Gauge({
        name: p + name,
        help,
        labelNames: nodeLabels,
        registers: [registry],
        collect() {
          this.reset();
          for (const n of snap().nodes) this.set({ node: n.name, region: n.region, tier: n.tier }, n.storage[field]);
        },
      });
    };
    storeGauge('stored_objects', 'Objects in the node\'s store.', 'objects');
    storeGauge('stored_bytes', 'Bytes in the node\'s store (memory and disk).', 'bytes');
    storeGauge('stored_memory_bytes', 'Bytes in the node\'s memory tier.', 'memoryBytes');
    storeGauge('stored_disk_bytes', 'Bytes in the node\'s disk tier.', 'diskBytes');
    const regionGauge = (name: string, help: string, read: (r: RegionStats) => number | null): void => {
      new Gauge({
        name: p + name,
        help,
        labelNames: ['region'] as const,
        registers: [registry],
        collect() {
          this.reset();
          for (const r of snap().regions) {
            const v = read(r);
            if (v !== null) this.set({ region: r.region }, v);
          }
        },
      });
    };
    regionGauge('region_hit_ratio', 'Requests answered from store over cacheable requests, per edge region.', (r) => r.hitRatio);
    regionGauge('region_byte_hit_ratio', 'Body bytes served from store over all body bytes served, per edge region.', (r) => r.byteHitRatio);
    new Counter({
      name: p + 'origin_requests_total',
      help: 'Requests that reached the origin from the CDN (rate() gives origin requests per second).',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(snap().origin.requests);
      },
    });
    new Counter({
      name: p + 'origin_bytes_total',
      help: 'Body bytes that came from the origin.',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(snap().origin.bytes);
      },
    });
    new Gauge({
      name: p + 'origin_offload_ratio',
      help: 'Share of edge traffic the origin did not see, by requests and by bytes.',
      labelNames: ['by'] as const,
      registers: [registry],
      collect() {
        this.reset();
        const o = snap().offload;
        if (o.requests !== null) this.set({ by: 'requests' }, o.requests);
        if (o.bytes !== null) this.set({ by: 'bytes' }, o.bytes);
      },
    });
    new Gauge({
      name: p + 'origin_requests_per_second',
      help: 'Requests reaching the origin per second over the last few seconds (sampled each second).',
      registers: [registry],
      collect() {
        this.set(snap().origin.requestsPerSecond);
      },
    });
    new Gauge({
      name: p + 'purge_propagation_recent_seconds',
      help: 'Purge propagation time (fan-out to the last ack) over the most recent purges, by quantile (nearest rank).',
      labelNames: ['quantile'] as const,
      registers: [registry],
      collect() {
        this.reset();
        const pg = snap().purge;
        if (pg.p50Ms !== null) this.set({ quantile: '0.5' }, pg.p50Ms / 1000);
        if (pg.p99Ms !== null) this.set({ quantile: '0.99' }, pg.p99Ms / 1000);
      },
    });
    this.purgeSeconds = new Histogram({
      name: p + 'purge_propagation_seconds',
      help: 'Time from a purge\'s fan-out to the last node\'s acknowledgement.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
    this.purgeNodeSeconds = new Histogram({
      name: p + 'purge_ack_seconds',
      help: 'Time from a purge\'s fan-out to one node\'s acknowledgement.',
      labelNames: ['node'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
    this.purgeIncomplete = new Counter({
      name: p + 'purge_incomplete_total',
      help: 'Purges some node did not acknowledge in time.',
      registers: [registry],
    });
    this.requestSeconds = new Histogram({
      name: p + 'request_duration_seconds',
      help: 'User-perceived time to the response head through the router (simulated geography included), by client and edge region.',
      labelNames: ['client_region', 'edge_region'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5],
      registers: [registry],
    });
  }

  observePurge(report: CdnPurgeReport): void {
    if (report.complete) this.purgeSeconds.observe(report.propagationMs / 1000);
    else this.purgeIncomplete.inc();
    for (const n of report.nodes) if (n.acked) this.purgeNodeSeconds.observe({ node: n.name }, n.ms / 1000);
  }

  observeRequest(s: RoutedSample): void {
    this.requestSeconds.observe({ client_region: s.clientRegion, edge_region: s.edgeRegion }, s.ms / 1000);
  }
}
