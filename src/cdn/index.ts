/**
 * archlab/cdn: a content delivery network on one machine. Edge nodes by region, an origin shield,
 * a router that sends users to the nearest edge over simulated geography, HTTP caching to RFC 9111,
 * purges with acknowledgements. See docs/cdn.md.
 *
 *   startCdn(config)        the whole network in this process (origin, shield, edges, router)
 *   startCdnServer(config)  the same plus the admin API (/purge, /stats, /topology, /metrics)
 *   startEdge(options)      one caching node (edge or shield tier)
 *   createStorage(options)  a node's object store (memory LRU by bytes, optional disk tier)
 *   CdnPolicy, primaryKey   the RFC 9111 decisions and the cache key, pure
 */
export type {
  Headers,
  CacheRequest,
  CacheResponse,
  CacheOutcome,
  PolicyState,
  StoredObjectMeta,
  StoredObject,
  StorageWriter,
  StorageStats,
  CdnStorage,
  PurgeSelector,
  PurgeRequest,
  PurgeResult,
  EdgeStats,
} from './types.js';
export { CdnError, isCdnError, type CdnErrorCode } from './errors.js';

export { CdnPolicy, parseRange, type PolicyOptions, type StoreDecision, type Freshness } from './policy/index.js';
export { primaryKey, normalizeTarget, type KeyOptions } from './key.js';
export { createStorage, type StorageOptions, type DiskOptions } from './storage/index.js';
export { startEdge, type EdgeOptions, type EdgeHandle } from './edge/index.js';

export {
  startCdn,
  startDemoOrigin,
  startRouter,
  fanOutPurge,
  parsePurgeRequest,
  LatencyMatrix,
  RegionResolver,
  EdgeSelector,
  RecentSamples,
  MAX_ROUTE_ATTEMPTS,
  MAX_DEMO_OBJECTS,
  type CdnHandle,
  type CdnOptions,
  type CdnTopology,
  type CdnNodeInfo,
  type CdnPurgeRequest,
  type CdnPurgeReport,
  type NodeAck,
  type DemoOriginHandle,
  type DemoOriginStats,
  type RouterStats,
  type RoutedSample,
} from './network/index.js';
export { startCdnServer, cdnAdminRoutes, type CdnServerHandle, type CdnServerOptions } from './server.js';
export { CdnMetrics, summarize, type CdnStats, type NodeStats, type RegionStats, type TierCounters, type PurgeStats } from './metrics.js';
export {
  cdnConfig,
  loadCdnConfig,
  zCdnConfig,
  DEFAULT_DEMO_OBJECTS,
  type CdnConfig,
  type CdnConfigInput,
  type DemoOriginConfig,
  type OriginConfig,
  type RegionConfig,
} from './config.js';
