/**
 * The balancer's live state built from one validated config: router, pools with their health,
 * ejection, retry budget and stickiness. A reload builds a new ProxyState reusing the Backend
 * objects that survive (their counters, health and pooled connections), then swaps it in one
 * assignment; requests already in flight finish on the state they started with.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { Backend } from './backend.js';
import type { BalancerConfig } from './config.js';
import { ActiveHealthChecker } from './health/active.js';
import { OutlierDetector } from './health/outlier.js';
import { tcpHealthChecker } from './health/tcp.js';
import { TrustedProxies } from './l7/headers.js';
import { Router } from './l7/router.js';
import { StickyCookies } from './l7/sticky.js';
import type { BalancerMetrics } from './metrics.js';
import { Pool } from './pool.js';
import { RetryBudget } from './retry-budget.js';

export interface PoolRuntime {
  pool: Pool;
  sticky: StickyCookies | undefined;
  budget: RetryBudget;
  outliers: OutlierDetector | undefined;
  health: ActiveHealthChecker | undefined;
}

export interface ProxyState {
  config: BalancerConfig;
  router: Router;
  pools: Map<string, PoolRuntime>;
  trusted: TrustedProxies;
}

export interface RuntimeDeps {
  clock: Clock;
  random: Random;
  logger: Logger;
  metrics: BalancerMetrics;
  /** Secret for sticky cookies when the config names none: one per process. */
  fallbackSecret: Buffer;
}

export function newCookieSecret(): Buffer {
  return randomBytes(32);
}

/** Builds a state from `config`; `previous` lends its surviving backends. Starts nothing. */
export function buildState(config: BalancerConfig, deps: RuntimeDeps, previous?: ProxyState): ProxyState {
  const pools = new Map<string, PoolRuntime>();
  for (const pc of config.pools) {
    const reuse = new Map<string, Backend>();
    for (const b of previous?.pools.get(pc.name)?.pool.backends ?? []) reuse.set(b.id, b);
    const pool = new Pool(pc, { clock: deps.clock, random: deps.random }, reuse);
    const onEvent = (e: { backend: Backend; type: 'ejected' | 'returned'; untilMs?: number; reason: string }): void => {
      if (e.type === 'ejected') deps.metrics.ejections.inc({ pool: pc.name, backend: e.backend.id });
      deps.logger.warn({ pool: pc.name, backend: e.backend.id, event: e.type, untilMs: e.untilMs, reason: e.reason }, `backend ${e.type}`);
      if (e.type === 'returned') pool.wake();
    };
    const outliers = pc.health.passive ? new OutlierDetector(pc.health.passive, deps.clock, () => pool.backends, onEvent) : undefined;
    const checks = {
      clock: deps.clock,
      backends: () => pool.backends,
      onTransition: (b: Backend, up: boolean, detail: string) => {
        deps.metrics.healthTransitions.inc({ pool: pc.name, backend: b.id, to: up ? 'up' : 'down' });
        deps.logger.warn({ pool: pc.name, backend: b.id, up, detail }, up ? 'backend up' : 'backend down');
        if (up) pool.wake();
      },
    };
    const health = pc.health.active
      ? new ActiveHealthChecker({ ...checks, config: pc.health.active })
      : pc.health.tcp
        ? tcpHealthChecker({ ...checks, config: pc.health.tcp })
        : undefined;
    const sticky = pc.sticky
      ? new StickyCookies({ pool: pc.name, cookie: pc.sticky.cookie, secret: config.cookieSecret ?? deps.fallbackSecret, maxAgeMs: pc.sticky.maxAgeMs })
      : undefined;
    const budget = new RetryBudget({ budgetRatio: pc.retries.budgetRatio, minPerSecond: pc.retries.minPerSecond }, deps.clock);
    pools.set(pc.name, { pool, sticky, budget, outliers, health });
  }
  return {
    config,
    router: new Router(config.routes, config.defaultPool ?? config.pools[0]!.name),
    pools,
    trusted: new TrustedProxies(config.trustedProxies),
  };
}

/** Backends of `previous` that `next` no longer has: they drain and are then dropped. */
export function removedBackends(previous: ProxyState, next: ProxyState): Backend[] {
  const kept = new Set<Backend>();
  for (const rt of next.pools.values()) for (const b of rt.pool.backends) kept.add(b);
  const gone: Backend[] = [];
  for (const rt of previous.pools.values()) for (const b of rt.pool.backends) if (!kept.has(b)) gone.push(b);
  return gone;
}
