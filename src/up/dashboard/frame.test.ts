import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CdnStats } from '../../cdn/index.js';
import type { UpComponent, UpSummary } from '../runner.js';
import { buildFrame, buildGraph, type PoolReading, type RawReading } from './frame.js';
import { parsePrometheusText } from './prometheus.js';

const COMPONENTS: UpComponent[] = [
  { name: 'database', kind: 'database', engine: 'sqlite', url: '/tmp/x.db', port: undefined, state: 'embedded' },
  { name: 'cache', kind: 'cache', engine: 'memory cache-aside', url: undefined, port: undefined, state: 'embedded' },
  { name: 'queue', kind: 'queue', engine: 'embedded', url: '/tmp/q', port: undefined, state: 'embedded' },
  { name: 'worker', kind: 'worker', engine: 'queue orders', url: undefined, port: undefined, state: 'running' },
  { name: 'app-1', kind: 'app', engine: 'demo app', url: 'http://127.0.0.1:1001', port: 1001, state: 'running' },
  { name: 'app-2', kind: 'app', engine: 'demo app', url: 'http://127.0.0.1:1002', port: 1002, state: 'running' },
  { name: 'proxy', kind: 'proxy', engine: 'forward proxy', url: 'http://127.0.0.1:1003', port: 1003, state: 'running' },
  { name: 'balancer', kind: 'balancer', engine: 'l7 round-robin', url: 'http://127.0.0.1:1004', port: 1004, state: 'running' },
  { name: 'balancer-admin', kind: 'balancer', engine: 'admin api', url: 'http://127.0.0.1:1005', port: 1005, state: 'running' },
  { name: 'cdn shield', kind: 'cdn', engine: 'shield', url: 'http://127.0.0.1:1006', port: 1006, state: 'running' },
  { name: 'cdn eu-1', kind: 'cdn', engine: 'edge eu', url: 'http://127.0.0.1:1007', port: 1007, state: 'running' },
  { name: 'cdn us-1', kind: 'cdn', engine: 'edge us', url: 'http://127.0.0.1:1008', port: 1008, state: 'running' },
  { name: 'cdn', kind: 'cdn', engine: 'router (front door)', url: 'http://127.0.0.1:1009', port: 1009, state: 'running' },
  { name: 'cdn-admin', kind: 'cdn', engine: 'admin api', url: 'http://127.0.0.1:1010', port: 1010, state: 'running' },
];

function summary(over: { clients?: Partial<UpSummary['clients']>; queue?: Partial<UpSummary['queue']>; proxy?: Partial<UpSummary['proxy']>; payments?: Partial<UpSummary['payments']> } = {}): UpSummary {
  return {
    cdn: { requests: 0, errors: 0, edgeHits: 0, edgeMisses: 0, edgeHitRatio: null },
    balancer: { requests: 0, failures: 0, backendsUp: 2, backends: 2, algorithm: 'round-robin' },
    app: { instancesUp: 2, cacheHits: 0, cacheMisses: 0, cacheHitRatio: null, cacheErrors: 0, ordersPlaced: 0, eventsPublished: 0, eventsFailed: 0, payments: { authorized: 0, failed: 0, abandoned: 0 } },
    queue: { published: 0, consumed: 0, depth: 0, workerRunning: true, ...over.queue },
    proxy: { requests: 0, errors: 0, denied: 0, ...over.proxy },
    payments: { charges: 0, refused: 0, failed: 0, latencyMs: 5, failureRate: 0, ...over.payments },
    clients: { rate: 10, baseRate: 10, spike: null, sentRate: 10, issued: 0, completed: 0, errors: 0, timeouts: 0, server5xx: 0, dropped: 0, inFlight: 0, p50Ms: 1, p99Ms: 2, ...over.clients },
  } as UpSummary;
}

function pool(backends: Array<[string, string, number, number]>, algorithm = 'round-robin'): PoolReading {
  return { algorithm, backends: backends.map(([id, state, requests, failures]) => ({ id, state, requests, failures, active: 0, ejections: 0 })) };
}

/** The app's /metrics text with these counters. */
function appMetrics(hits: number, misses: number, db: number, opts: { cacheReachable?: boolean; strategy?: string } = {}): ReturnType<typeof parsePrometheusText> {
  return parsePrometheusText(
    [
      `archlab_app_cache_hits_total{instance="x"} ${hits}`,
      `archlab_app_cache_misses_total{instance="x"} ${misses}`,
      `archlab_app_db_calls_total{instance="x",op="getProduct"} ${db}`,
      `archlab_app_reachable{instance="x",dependency="cache"} ${opts.cacheReachable === false ? 0 : 1}`,
      `archlab_app_cache_strategy{instance="x",strategy="${opts.strategy ?? 'cache-aside'}"} 1`,
    ].join('\n'),
  );
}

function cdnStats(routerRequests: number, edges: Array<{ name: string; region: string; hits: number; misses: number; upstream: number }>, shieldUpstream: number): CdnStats {
  const node = (e: { name: string; region: string; hits: number; misses: number; upstream: number }, tier: 'edge' | 'shield'): CdnStats['nodes'][number] =>
    ({ name: e.name, region: e.region, tier, requests: e.hits + e.misses, hits: e.hits, misses: e.misses, stale: 0, revalidated: 0, passes: 0, errors: 0, upstreamRequests: e.upstream }) as CdnStats['nodes'][number];
  const sum = (key: 'hits' | 'misses'): number => edges.reduce((n, e) => n + e[key], 0);
  const tier = (hits: number, misses: number): CdnStats['edges'] => ({ requests: hits + misses, hits, misses, stale: 0, revalidated: 0, passes: 0 }) as CdnStats['edges'];
  return {
    nodes: [...edges.map((e) => node(e, 'edge')), node({ name: 'shield', region: 'eu', hits: 0, misses: 0, upstream: shieldUpstream }, 'shield')],
    edges: tier(sum('hits'), sum('misses')),
    regions: [...new Set(edges.map((e) => e.region))].map((region) => {
      const es = edges.filter((e) => e.region === region);
      return { region, ...tier(es.reduce((n, e) => n + e.hits, 0), es.reduce((n, e) => n + e.misses, 0)) } as CdnStats['regions'][number];
    }),
    origin: { requests: shieldUpstream },
    router: { requests: routerRequests, errors: 0 },
    purge: { count: 0 },
  } as CdnStats;
}

function reading(t: number, over: Partial<RawReading> = {}): RawReading {
  return {
    t,
    components: COMPONENTS,
    summary: summary(),
    pool: pool([
      ['app-1', 'up', 0, 0],
      ['app-2', 'up', 0, 0],
    ]),
    balancerMetrics: [],
    cdn: cdnStats(0, [], 0),
    apps: new Map(),
    failures: new Map(),
    settings: { strategy: 'cache-aside', cacheCut: false, databaseCut: false },
    ...over,
  };
}

describe('buildGraph', () => {
  test('every component but the admin listeners is a node, traffic runs left to right, ids are unique', () => {
    const g = buildGraph(COMPONENTS);
    assert.deepEqual(g.nodes.map((n) => n.id).sort(), ['app-1', 'app-2', 'balancer', 'cache', 'cdn', 'cdn-eu-1', 'cdn-shield', 'cdn-us-1', 'clients', 'database', 'proxy', 'queue', 'worker'].sort());
    assert.equal(new Set(g.edges.map((e) => e.id)).size, g.edges.length);
    const ids = new Set(g.nodes.map((n) => n.id));
    for (const e of g.edges) assert.ok(ids.has(e.from) && ids.has(e.to), `${e.id} joins nodes that exist`);
    const col = new Map(g.nodes.map((n) => [n.id, n.column]));
    for (const e of g.edges) assert.ok(col.get(e.from)! < col.get(e.to)!, `${e.id} goes left to right`);
    for (const id of ['clients->cdn', 'cdn->cdn-eu-1', 'cdn-eu-1->cdn-shield', 'cdn-shield->balancer', 'clients->balancer', 'balancer->app-1', 'app-2->cache', 'app-1->database', 'app-1->queue', 'queue->worker', 'app-1->proxy']) {
      assert.ok(g.edges.some((e) => e.id === id), `edge ${id}`);
    }
    assert.equal(g.nodes.find((n) => n.id === 'cdn-us-1')!.region, 'us');
  });

  test('without a shield the edges go to the balancer; an external service hangs off the proxy', () => {
    const comps = COMPONENTS.filter((c) => c.name !== 'cdn shield').concat([{ name: 'payments', kind: 'external' as UpComponent['kind'], engine: 'payments', url: 'http://127.0.0.1:1011', port: 1011, state: 'running' }]);
    const g = buildGraph(comps);
    assert.ok(g.edges.some((e) => e.id === 'cdn-eu-1->balancer'));
    assert.ok(g.edges.some((e) => e.id === 'proxy->payments'));
  });
});

describe('buildFrame', () => {
  const graph = buildGraph(COMPONENTS);

  test('rates are counter increases over the time between readings; the first frame has none', () => {
    const a = reading(10_000, {
      pool: pool([
        ['app-1', 'up', 100, 0],
        ['app-2', 'up', 50, 0],
      ]),
      apps: new Map([
        ['app-1', appMetrics(10, 10, 10)],
        ['app-2', appMetrics(0, 0, 0)],
      ]),
      summary: summary({ queue: { published: 5, consumed: 5 } }),
      cdn: cdnStats(100, [{ name: 'eu-1', region: 'eu', hits: 50, misses: 50, upstream: 50 }], 20),
    });
    const first = buildFrame(undefined, a, graph).frame;
    assert.equal(first.balancer.rate, 0);
    assert.equal(first.cdn.rate, 0);
    const b = reading(12_000, {
      pool: pool([
        ['app-1', 'up', 140, 2],
        ['app-2', 'up', 90, 0],
      ]),
      apps: new Map([
        ['app-1', appMetrics(40, 20, 30)],
        ['app-2', appMetrics(10, 10, 10)],
      ]),
      summary: summary({ queue: { published: 25, consumed: 15, depth: 10 } }),
      cdn: cdnStats(160, [{ name: 'eu-1', region: 'eu', hits: 95, misses: 65, upstream: 65 }], 26),
    });
    const f = buildFrame(a, b, graph).frame;
    assert.equal(f.balancer.rate, 40); // (40 + 40) / 2 s
    assert.equal(f.balancer.failureRate, 1);
    assert.equal(f.balancer.backends.find((x) => x.id === 'app-1')!.rate, 20);
    assert.equal(f.edges['balancer->app-2'], 20);
    assert.equal(f.cache.hitRate, 20); // (30 + 10) / 2
    assert.equal(f.cache.loadRate, 10); // (10 + 10) / 2
    assert.ok(Math.abs(f.cache.hitRatio! - 2 / 3) < 1e-9);
    assert.equal(f.database.rate, 15);
    assert.equal(f.edges['app-1->cache'], 20);
    assert.equal(f.queue.publishRate, 10);
    assert.equal(f.queue.consumeRate, 5);
    assert.equal(f.queue.depth, 10);
    assert.equal(f.cdn.rate, 30);
    assert.equal(f.cdn.hitRatio, 0.75); // 45 hits of 60 lookups
    assert.equal(f.cdn.missRate, 7.5);
    assert.equal(f.cdn.originRate, 3);
    assert.equal(f.cdn.originOffload, 0.9);
    assert.equal(f.edges['cdn-eu-1->cdn-shield'], 7.5);
    assert.equal(f.edges['cdn-shield->balancer'], 3);
    assert.equal(f.edges['clients->balancer'], 37, 'what the balancer got beyond what the CDN sent');
    assert.equal(f.cdn.regions[0]!.hitRatio, 0.75);
  });

  test('a restarted instance (its counters went down) counts from zero, not backwards', () => {
    const a = reading(0, { apps: new Map([['app-1', appMetrics(500, 500, 500)]]) });
    const b = reading(1000, { apps: new Map([['app-1', appMetrics(3, 1, 1)]]) });
    const f = buildFrame(a, b, graph).frame;
    assert.equal(f.cache.hitRate, 3);
    assert.equal(f.cache.loadRate, 1);
  });

  test('a killed instance: its node is stopped, the balancer marking it down is an event, the balancer is degraded', () => {
    const killed = COMPONENTS.map((c) => (c.name === 'app-2' ? { ...c, state: 'stopped' as const } : c));
    const a = reading(0);
    const b = reading(1000, { components: killed });
    const r1 = buildFrame(a, b, graph);
    assert.equal(r1.frame.nodes['app-2']!.health, 'stopped');
    assert.deepEqual(
      r1.events.map((e) => e.message),
      ['app-2 killed'],
    );
    const c = reading(2000, {
      components: killed,
      pool: pool([
        ['app-1', 'up', 0, 0],
        ['app-2', 'down', 0, 0],
      ]),
    });
    const r2 = buildFrame(b, c, graph);
    assert.deepEqual(
      r2.events.map((e) => [e.level, e.source, e.message]),
      [['warn', 'app-2', 'balancer marks app-2 down (was up)']],
    );
    assert.equal(r2.frame.nodes.balancer!.health, 'degraded');
    assert.equal(r2.frame.balancer.backendsUp, 1);
    assert.match(r2.frame.nodes['app-2']!.status, /killed, balancer: down/);
  });

  test('clients failures: the error rate counts errors, timeouts and 5xx; its start and end are events', () => {
    const a = reading(0);
    const b = reading(1000, { summary: summary({ clients: { errors: 1, timeouts: 1, server5xx: 2 } }) });
    const r1 = buildFrame(a, b, graph, buildFrame(undefined, a, graph).frame);
    assert.equal(r1.frame.clients.errorRate, 4);
    assert.equal(r1.frame.clients.errors, 4);
    assert.equal(r1.frame.nodes.clients!.health, 'degraded');
    assert.deepEqual(
      r1.events.map((e) => e.message),
      ['clients see failures: 4.0/s'],
    );
    const c = reading(2000, { summary: summary({ clients: { errors: 1, timeouts: 1, server5xx: 2 } }) });
    const r2 = buildFrame(b, c, graph, r1.frame);
    assert.equal(r2.frame.clients.errorRate, 0);
    assert.deepEqual(
      r2.events.map((e) => e.message),
      ['clients see no failures any more'],
    );
  });

  test('a source that cannot be read is an event once, and again when it recovers; its numbers are absent, not made up', () => {
    const a = reading(0);
    const failing = reading(1000, { cdn: undefined, failures: new Map([['cdn admin /stats', 'connect ECONNREFUSED']]) });
    const r1 = buildFrame(a, failing, graph);
    assert.deepEqual(
      r1.events.map((e) => [e.level, e.message]),
      [['error', 'cannot read cdn admin /stats: connect ECONNREFUSED']],
    );
    assert.equal(r1.frame.cdn.hitRatio, null);
    assert.equal(r1.frame.nodes.cdn!.health, 'down');
    const still = reading(2000, { cdn: undefined, failures: new Map([['cdn admin /stats', 'connect ECONNREFUSED']]) });
    assert.deepEqual(buildFrame(failing, still, graph).events, []);
    assert.deepEqual(
      buildFrame(still, reading(3000), graph).events.map((e) => e.message),
      ['cdn admin /stats readable again'],
    );
  });

  test('settings, spikes and the worker: changes are events, and the nodes show them', () => {
    const a = reading(0);
    const b = reading(1000, {
      settings: { strategy: 'write-through', cacheCut: true, databaseCut: false },
      summary: summary({ clients: { spike: { factor: 10, remainingMs: 30_000 }, rate: 100 }, queue: { workerRunning: false, depth: 7 } }),
      pool: pool(
        [
          ['app-1', 'up', 0, 0],
          ['app-2', 'up', 0, 0],
        ],
        'least-connections',
      ),
    });
    const r = buildFrame(a, b, graph);
    assert.deepEqual(r.events.map((e) => e.message).sort(), [
      'algorithm: least-connections (was round-robin)',
      'app instances cut off from the cache',
      'spike: 10x the rate, 30 s left',
      'strategy: write-through (was cache-aside)',
      'worker stopped: the backlog builds',
    ]);
    assert.equal(r.frame.nodes.cache!.health, 'down');
    assert.equal(r.frame.nodes.worker!.health, 'stopped');
    assert.equal(r.frame.nodes['app-1']!.health, 'degraded');
    assert.match(r.frame.nodes.clients!.status, /spike 10x/);
    const c = reading(2000, { summary: summary({ queue: { workerRunning: true, depth: 0 } }) });
    const ends = buildFrame(b, c, graph).events.map((e) => e.message);
    assert.ok(ends.includes('spike over: back to 10 req/s'));
    assert.ok(ends.includes('worker consuming again (backlog 0)'));
  });

  test('the balancer\'s latency percentiles come from the increase of its histogram between readings', () => {
    const lb = (fast: number, slow: number): ReturnType<typeof parsePrometheusText> =>
      parsePrometheusText(
        [
          `archlab_balancer_request_duration_seconds_bucket{pool="app",backend="app-1",le="0.001"} ${fast}`,
          `archlab_balancer_request_duration_seconds_bucket{pool="app",backend="app-1",le="0.01"} ${fast + slow}`,
          `archlab_balancer_request_duration_seconds_bucket{pool="app",backend="app-1",le="+Inf"} ${fast + slow}`,
        ].join('\n'),
      );
    // Before: 1000 fast requests. Over the interval: 100 more, all slow: the window's p50 is slow.
    const f = buildFrame(reading(0, { balancerMetrics: lb(1000, 0) }), reading(1000, { balancerMetrics: lb(1000, 100) }), graph).frame;
    const b1 = f.balancer.backends.find((b) => b.id === 'app-1')!;
    assert.equal(b1.p50Ms, 5.5);
    assert.ok(b1.p99Ms! > 9.8 && b1.p99Ms! <= 10);
    assert.equal(f.balancer.p50Ms, 5.5);
    assert.equal(f.balancer.backends.find((b) => b.id === 'app-2')!.p50Ms, null, 'no request: no percentile');
  });
});
