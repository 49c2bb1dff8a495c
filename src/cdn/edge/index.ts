/**
 * archlab cdn edge: one HTTP caching tier (an edge near users, or the shield in front of the origin).
 *
 *   const edge = await startEdge({ name: 'eu-1', region: 'eu', tier: 'edge', upstream: shield.url, storage });
 *
 * See edge.ts for the request path and flight.ts for request collapsing.
 */
import { pino } from 'pino';
import { SystemClock } from '../../core/clock.js';
import type { ServerHandle } from '../../core/lifecycle.js';
import type { EdgeStats, PurgeRequest, PurgeResult } from '../types.js';
import { Edge } from './edge.js';
import { resolveEdgeOptions, type EdgeOptions } from './options.js';

export { EDGE_DEFAULTS, resolveEdgeOptions } from './options.js';
export type { EdgeOptions, EdgeLimits, EdgeTimeouts, ResolvedEdgeOptions } from './options.js';
export { errorStatus } from './edge.js';
export { HOP_BY_HOP, UNKEYED_REQUEST_HEADERS } from './headers.js';
export { MAX_PURGE_TAGS, purgeAuthorized } from './purge.js';

export interface EdgeHandle extends ServerHandle {
  readonly name: string;
  readonly region: string;
  readonly tier: 'edge' | 'shield';
  /** `http://host:port` of the node. */
  readonly url: string;
  stats(): EdgeStats;
  /** In-process purge (no token): what `PURGE` does over HTTP. */
  purge(req: PurgeRequest): Promise<PurgeResult>;
  /** Stops accepting, drains in-flight requests (timeouts.drainMs), then closes the upstream pool and cancels latency timers. Does not close the storage. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a node listening on `host:port` in front of `upstream`. Rejects with InvalidArgumentError
 * for bad options, ListenError when the address cannot be bound.
 */
export async function startEdge(options: EdgeOptions): Promise<EdgeHandle> {
  const o = resolveEdgeOptions(options);
  const policyOptions = { ...options.policy, stripSurrogateHeaders: options.policy?.stripSurrogateHeaders ?? o.tier === 'edge' };
  const logger = (options.logger ?? pino({ level: 'silent' })).child({ edge: o.name, region: o.region, tier: o.tier });
  const edge = new Edge(o, options.storage, options.key ?? {}, policyOptions, options.clock ?? new SystemClock(), logger);
  const handle = await edge.listen();
  let closing: Promise<void> | undefined;
  return {
    name: o.name,
    region: o.region,
    tier: o.tier,
    address: handle.address,
    url: handle.address.url!,
    stats: () => edge.stats(),
    purge: async (req) => edge.purge(req),
    close: () => (closing ??= edge.close()),
  };
}
