/**
 * `startCdnServer(config)`: what `archlab cdn` runs. The network of startCdn (demo origin, shield,
 * edges by region, router) plus the admin listener (core's startAdminServer):
 *
 *   GET  /metrics    Prometheus text (open): per node and region counters, ratios, purge latency
 *   GET  /healthz    200, 503 once closing (open)
 *   POST /purge      { url | prefix | tag, mode?: soft|hard } -> fan-out to every node, with acks:
 *                    200 { purged, nodes: [{ name, region, purged, ms }], propagationMs };
 *                    504 with the partial result and ARCHLAB_CDN_PURGE_INCOMPLETE naming the nodes
 *                    that did not ack; 400 for a malformed request
 *   GET  /stats      the CdnStats document (per node, per region, origin offload, purge p50/p99)
 *   GET  /topology   nodes, regions, ports, the latency matrix, routing rules
 *
 * Every route but /metrics and /healthz needs `Authorization: Bearer <token>` (401 without): the
 * token is `admin.token`, else `purge.token`, else the random purge token made at start.
 */
import type { Logger } from 'pino';
import { SystemClock, type Clock } from '../core/clock.js';
import type { ServerAddress, ServerHandle } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { createRegistry, sendJson, startAdminServer, type AdminRoutes } from '../core/metrics.js';
import { cdnConfig, isCdnConfig, type CdnConfig, type CdnConfigInput } from './config.js';
import { isCdnError } from './errors.js';
import { CdnMetrics } from './metrics.js';
import { startCdn, type CdnHandle } from './network/index.js';
import type { CdnPurgeReport, CdnPurgeRequest } from './network/purge.js';

export interface CdnServerOptions {
  clock?: Clock;
  logger?: Logger;
}

export interface CdnServerHandle extends CdnHandle {
  /** The admin listener, when config.admin is set. */
  readonly admin: ServerAddress | undefined;
  /** The bearer token of the admin routes. */
  readonly adminToken: string;
}

/** The JSON body of a purge answer (200 and 504 alike). */
export function purgeBody(report: CdnPurgeReport): Record<string, unknown> {
  return {
    purged: report.purged,
    mode: report.mode,
    selector: report.selector,
    nodes: report.nodes.map((n) => ({ name: n.name, region: n.region, tier: n.tier, acked: n.acked, purged: n.purged, ms: n.ms, ...(n.error === undefined ? {} : { error: n.error }) })),
    propagationMs: report.propagationMs,
  };
}

/** The admin routes of a CDN (the token is checked by startAdminServer before these run). */
export function cdnAdminRoutes(cdn: CdnHandle): AdminRoutes {
  return async (req, res, url, ctx) => {
    if (url.pathname === '/purge') {
      if (req.method !== 'POST') {
        res.setHeader('Allow', 'POST');
        sendJson(res, 405, { error: { code: 'ARCHLAB_METHOD_NOT_ALLOWED', message: `${req.method} is not allowed on /purge` } });
        return true;
      }
      const body = await ctx.readJson();
      try {
        const report = await cdn.purge(body as CdnPurgeRequest);
        sendJson(res, 200, purgeBody(report));
      } catch (err) {
        if (isCdnError(err, 'ARCHLAB_CDN_PURGE_INCOMPLETE')) {
          const report = err.details?.report as CdnPurgeReport;
          sendJson(res, 504, { error: { code: err.code, message: err.message, missing: err.details?.missing }, ...purgeBody(report) });
          return true;
        }
        if (isCdnError(err, 'ARCHLAB_CDN_BAD_REQUEST')) {
          sendJson(res, 400, { error: { code: err.code, message: err.message } });
          return true;
        }
        throw err;
      }
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    if (url.pathname === '/stats') {
      sendJson(res, 200, cdn.stats());
      return true;
    }
    if (url.pathname === '/topology') {
      sendJson(res, 200, cdn.topology());
      return true;
    }
    return false;
  };
}

export async function startCdnServer(input: CdnConfig | CdnConfigInput, opts: CdnServerOptions = {}): Promise<CdnServerHandle> {
  const config = isCdnConfig(input) ? input : cdnConfig(input);
  const clock = opts.clock ?? new SystemClock();
  const logger = opts.logger ?? createLogger({ level: config.log.level, name: 'archlab-cdn', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
  const registry = createRegistry({ defaultMetrics: config.metrics.defaultMetrics, labels: { server: 'cdn' } });
  // The series read the running network, which the hooks feed: set once both exist.
  const hooks: { metrics?: CdnMetrics } = {};
  const cdn = await startCdn(config, {
    clock,
    logger,
    onPurge: (r) => hooks.metrics?.observePurge(r),
    onRequest: (s) => hooks.metrics?.observeRequest(s),
  });
  hooks.metrics = new CdnMetrics(registry, () => cdn.stats());
  const adminToken = config.admin?.token ?? cdn.purgeToken;
  let admin: ServerHandle | undefined;
  let closing: Promise<void> | undefined;
  if (config.admin !== undefined) {
    try {
      admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        token: adminToken,
        registry,
        logger,
        maxBodyBytes: 64 * 1024,
        drainTimeoutMs: config.timeouts.drainMs,
        routes: cdnAdminRoutes(cdn),
        health: () => ({ ok: closing === undefined, details: { nodes: cdn.edges.length + (cdn.shield === undefined ? 0 : 1), routers: cdn.routers.length } }),
      });
    } catch (err) {
      await cdn.close();
      throw err;
    }
  }
  return {
    ...cdn,
    admin: admin?.address,
    adminToken,
    close: () =>
      (closing ??= (async () => {
        await admin?.close();
        await cdn.close();
      })()),
  };
}
