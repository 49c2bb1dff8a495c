/**
 * Admin API (on the admin listener, bearer token when configured):
 *
 *   GET  /pools                                   pools, algorithms and every backend's state
 *   POST /pools/:pool/backends/:id/drain          finish in-flight requests, take no new ones
 *   POST /pools/:pool/backends/:id/enable         back into rotation (clears drain, disable, ejection)
 *   POST /pools/:pool/backends/:id/disable        out of rotation at once
 *   PUT  /pools/:pool/algorithm  {"algorithm": "least-connections"}
 *   POST /reload                                  re-read the config file (as SIGHUP does)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminRoutes } from '../../core/metrics.js';
import { sendJson } from '../../core/metrics.js';
import type { Backend } from '../backend.js';
import { ALGORITHM_NAMES, type AlgorithmName } from '../pick/types.js';
import type { ProxyState } from '../runtime.js';

export interface AdminDeps {
  state: () => ProxyState;
  /** Re-reads the config from its source; rejects with the validation error, leaving the old config. */
  reload?: () => Promise<void>;
  now: () => number;
}

export function describeBackend(b: Backend, now: number): Record<string, unknown> {
  return {
    id: b.id,
    address: b.address,
    state: b.state,
    weight: round(b.weight),
    configuredWeight: b.configuredWeight,
    warming: b.warming,
    active: b.active,
    maxConnections: b.maxConnections,
    healthy: b.healthy,
    ejected: b.ejected,
    ejectedForMs: b.ejected ? b.ejectedUntilMs - now : 0,
    ejections: b.ejections,
    requests: b.requests,
    failures: b.failures,
    connections: b.connections,
    bytesIn: b.bytesIn,
    bytesOut: b.bytesOut,
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function adminRoutes(deps: AdminDeps): AdminRoutes {
  return async (req: IncomingMessage, res: ServerResponse, url: URL, ctx) => {
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const state = deps.state();
    if (req.method === 'GET' && parts.length === 1 && parts[0] === 'pools') {
      const now = deps.now();
      sendJson(res, 200, {
        pools: [...state.pools.values()].map((rt) => ({
          name: rt.pool.name,
          algorithm: rt.pool.picker.algorithm,
          waiting: rt.pool.waiting,
          backends: rt.pool.backends.map((b) => describeBackend(b, now)),
        })),
      });
      return true;
    }
    if (parts[0] === 'pools' && parts.length >= 2) {
      const rt = state.pools.get(parts[1]!);
      if (!rt) {
        sendJson(res, 404, { error: { code: 'ARCHLAB_NOT_FOUND', message: `no pool "${parts[1]}"` } });
        return true;
      }
      if (req.method === 'PUT' && parts.length === 3 && parts[2] === 'algorithm') {
        const body = (await ctx.readJson()) as { algorithm?: unknown } | null;
        const algo = body?.algorithm;
        if (typeof algo !== 'string' || !(ALGORITHM_NAMES as readonly string[]).includes(algo)) {
          sendJson(res, 400, { error: { code: 'ARCHLAB_INVALID_ARGUMENT', message: `"algorithm" must be one of ${ALGORITHM_NAMES.join(', ')}` } });
          return true;
        }
        rt.pool.setAlgorithm(algo as AlgorithmName);
        sendJson(res, 200, { pool: rt.pool.name, algorithm: algo });
        return true;
      }
      if (req.method === 'POST' && parts.length === 5 && parts[2] === 'backends') {
        const b = rt.pool.find(parts[3]!);
        if (!b) {
          sendJson(res, 404, { error: { code: 'ARCHLAB_NOT_FOUND', message: `no backend "${parts[3]}" in pool "${rt.pool.name}"` } });
          return true;
        }
        const action = parts[4];
        if (action === 'drain') b.draining = true;
        else if (action === 'disable') b.disabled = true;
        else if (action === 'enable') {
          b.draining = false;
          b.disabled = false;
          b.ejectedUntilMs = 0;
          rt.pool.wake();
        } else return false;
        sendJson(res, 200, describeBackend(b, deps.now()));
        return true;
      }
    }
    if (req.method === 'POST' && parts.length === 1 && parts[0] === 'reload') {
      if (!deps.reload) {
        sendJson(res, 400, { error: { code: 'ARCHLAB_INVALID_ARGUMENT', message: 'this balancer was started without a config file to reload' } });
        return true;
      }
      try {
        await deps.reload();
        sendJson(res, 200, { reloaded: true });
      } catch (err) {
        const e = err as { code?: string; message?: string; issues?: unknown };
        sendJson(res, 400, { error: { code: e.code ?? 'ARCHLAB_CONFIG_INVALID', message: e.message ?? String(err), issues: e.issues } });
      }
      return true;
    }
    return false;
  };
}
