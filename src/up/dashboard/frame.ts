/**
 * The dashboard's arithmetic, pure: the graph of a running `up` (buildGraph), and a Frame out of two
 * consecutive raw readings of the components' own metrics (buildFrame): rates are counter increases
 * over the time between the readings (a counter that went down was reset, as a restarted app
 * instance's are), latency percentiles come from the increase of histogram buckets, and every
 * change worth telling (a backend going down, a spike ending, a scrape failing) becomes an event.
 *
 * The collector (collector.ts) does the reading; nothing here does I/O or reads the clock.
 */
import type { CdnStats } from '../../cdn/index.js';
import type { UpComponent, UpSummary } from '../runner.js';
import { bucketsDelta, bucketsOf, counterDelta, histogramQuantile, sumOf, type Sample } from './prometheus.js';
import type { BackendFrame, DashboardEvent, Frame, GraphEdge, GraphNode, Health } from './protocol.js';

/** What /pools of the balancer's admin API says about pool `app` (the fields the dashboard uses). */
export interface PoolReading {
  algorithm: string;
  backends: Array<{ id: string; state: string; requests: number; failures: number; active: number; ejections: number }>;
}

/** One reading of every source; a source that could not be read is undefined (with its error in `failures`). */
export interface RawReading {
  /** Epoch ms. */
  t: number;
  components: readonly UpComponent[];
  summary: UpSummary;
  pool: PoolReading | undefined;
  balancerMetrics: Sample[] | undefined;
  cdn: CdnStats | undefined;
  /** Each running app instance's /metrics, by instance name. */
  apps: Map<string, Sample[]>;
  /** Sources that could not be read this time: source name -> message. */
  failures: Map<string, string>;
  /** The settings the controls changed (the runner knows them; the metrics do not all carry them). */
  settings: { strategy: string; cacheCut: boolean; databaseCut: boolean };
}

export type NewEvent = Omit<DashboardEvent, 'id'>;

/** The node id of a component of the table (its name, with "cdn x" -> "cdn-x"). */
export function nodeId(componentName: string): string {
  return componentName.replace(/\s+/g, '-');
}

/** The graph of what runs, from the table of components (admin listeners are not nodes). */
export function buildGraph(components: readonly UpComponent[]): { nodes: GraphNode[]; edges: GraphEdge[] } {
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const detail = (c: UpComponent): string => [c.engine, c.url].filter((x) => x !== undefined && x !== '').join(' ');
  const edge = (from: string, to: string): void => void edges.push({ id: `${from}->${to}`, from, to });
  const by = (kind: UpComponent['kind']): UpComponent[] => components.filter((c) => c.kind === kind && !c.engine.startsWith('admin'));

  nodes.push({ id: 'clients', kind: 'clients', label: 'clients', detail: 'load generator', column: 0 });
  const cdn = by('cdn');
  const router = cdn.find((c) => c.name === 'cdn');
  const shield = cdn.find((c) => c.engine === 'shield');
  const edgeNodes = cdn.filter((c) => c.engine.startsWith('edge'));
  const balancer = by('balancer').find((c) => c.name === 'balancer');
  if (router !== undefined) {
    nodes.push({ id: 'cdn', kind: 'cdn-router', label: 'CDN front door', detail: detail(router), column: 1 });
    edge('clients', 'cdn');
  }
  for (const e of edgeNodes) {
    const id = nodeId(e.name);
    nodes.push({ id, kind: 'cdn-edge', label: e.name.replace(/^cdn /, 'edge '), detail: detail(e), region: e.engine.replace(/^edge /, ''), column: 2 });
    edge('cdn', id);
    edge(id, shield === undefined ? 'balancer' : nodeId(shield.name));
  }
  if (shield !== undefined) {
    nodes.push({ id: nodeId(shield.name), kind: 'cdn-shield', label: 'origin shield', detail: detail(shield), column: 3 });
    edge(nodeId(shield.name), 'balancer');
  }
  if (balancer !== undefined) {
    nodes.push({ id: 'balancer', kind: 'balancer', label: 'L7 balancer', detail: detail(balancer), column: 4 });
    edge('clients', 'balancer');
  }
  const apps = by('app');
  const cache = by('cache')[0];
  const database = by('database')[0];
  const queue = by('queue')[0];
  const worker = by('worker')[0];
  const proxy = by('proxy')[0];
  const externals = components.filter((c) => (c.kind as string) === 'external');
  for (const a of apps) {
    nodes.push({ id: a.name, kind: 'app', label: a.name, detail: detail(a), column: 5 });
    edge('balancer', a.name);
    if (cache !== undefined) edge(a.name, 'cache');
    if (database !== undefined) edge(a.name, 'database');
    if (queue !== undefined) edge(a.name, 'queue');
    if (proxy !== undefined) edge(a.name, 'proxy');
  }
  if (cache !== undefined) nodes.push({ id: 'cache', kind: 'cache', label: 'cache', detail: detail(cache), column: 6 });
  if (proxy !== undefined) nodes.push({ id: 'proxy', kind: 'proxy', label: 'forward proxy', detail: detail(proxy), column: 6 });
  if (queue !== undefined) nodes.push({ id: 'queue', kind: 'queue', label: 'queue', detail: detail(queue), column: 6 });
  if (database !== undefined) nodes.push({ id: 'database', kind: 'database', label: 'database', detail: detail(database), column: 7 });
  for (const x of externals) {
    const id = nodeId(x.name);
    nodes.push({ id, kind: 'external', label: x.name, detail: detail(x), column: 7 });
    if (proxy !== undefined) edge('proxy', id);
    else for (const a of apps) edge(a.name, id);
  }
  if (worker !== undefined) {
    nodes.push({ id: 'worker', kind: 'worker', label: 'worker', detail: detail(worker), column: 7 });
    if (queue !== undefined) edge('queue', 'worker');
  }
  return { nodes, edges };
}

const APP_CACHE_HITS = 'archlab_app_cache_hits_total';
const APP_CACHE_MISSES = 'archlab_app_cache_misses_total';
const APP_CACHE_ERRORS = 'archlab_app_cache_errors_total';
const APP_DB_CALLS = 'archlab_app_db_calls_total';
const APP_EVENTS = 'archlab_app_events_total';
const APP_OUTBOUND = 'archlab_app_outbound_total';
const LB_LATENCY = 'archlab_balancer_request_duration_seconds';

function pct(x: number | null): string {
  return x === null ? '–' : `${Math.round(x * 100)}%`;
}

function perSecond(n: number): string {
  if (n >= 100) return `${Math.round(n)}/s`;
  if (n >= 10) return `${n.toFixed(0)}/s`;
  return `${n.toFixed(1)}/s`;
}

function ms(seconds: number | null): number | null {
  return seconds === null ? null : Math.round(seconds * 1000 * 100) / 100;
}

function ratio(num: number, den: number): number | null {
  return den > 0 ? num / den : null;
}

/**
 * The frame for `cur`, with rates over the time since `prev` (no previous reading: rates 0).
 * `events` are the changes from `prev` to `cur` worth logging (and, for what only a frame knows, such
 * as the clients' error rate, from `prevFrame`); the caller numbers them.
 */
export function buildFrame(
  prev: RawReading | undefined,
  cur: RawReading,
  graph: { nodes: GraphNode[]; edges: GraphEdge[] },
  prevFrame?: Frame,
): { frame: Frame; events: NewEvent[] } {
  const events: NewEvent[] = [];
  const t = cur.t;
  const say = (level: NewEvent['level'], source: string, message: string): void => void events.push({ t, level, source, message });
  const dt = prev === undefined ? 0 : Math.max(0.001, (cur.t - prev.t) / 1000);
  const rate = (before: number | undefined, after: number): number => (dt === 0 ? 0 : counterDelta(before, after) / dt);
  /** The rate of a counter read off two readings of the same thing (none before: 0). */
  const rateBy = <T>(before: T | undefined, after: T, read: (x: T) => number): number => rate(before === undefined ? undefined : read(before), read(after));
  const s = cur.summary;
  const p = prev?.summary;

  // ---------------------------------------------------------------- sources that failed / recovered
  for (const [source, message] of cur.failures) {
    if (!prev?.failures.has(source)) say('error', 'dashboard', `cannot read ${source}: ${message}`);
  }
  for (const source of prev?.failures.keys() ?? []) {
    if (!cur.failures.has(source)) say('info', 'dashboard', `${source} readable again`);
  }

  // ---------------------------------------------------------------- clients
  const clientFailures = (x: UpSummary['clients']): number => x.errors + x.timeouts + x.server5xx;
  const clientErrorRate = rateBy(p?.clients, s.clients, clientFailures);
  const clients: Frame['clients'] = {
    rate: s.clients.rate,
    baseRate: s.clients.baseRate,
    sentRate: s.clients.sentRate,
    spike: s.clients.spike,
    errorRate: clientErrorRate,
    issued: s.clients.issued,
    errors: clientFailures(s.clients),
    inFlight: s.clients.inFlight,
    dropped: s.clients.dropped,
    p50Ms: s.clients.p50Ms,
    p99Ms: s.clients.p99Ms,
  };
  if (p !== undefined) {
    if (p.clients.spike === null && s.clients.spike !== null) say('warn', 'clients', `spike: ${s.clients.spike.factor}x the rate, ${Math.round(s.clients.spike.remainingMs / 1000)} s left`);
    if (p.clients.spike !== null && s.clients.spike === null) say('info', 'clients', `spike over: back to ${s.clients.baseRate} req/s`);
  }

  // ---------------------------------------------------------------- balancer
  const prevBackends = new Map(prev?.pool?.backends.map((b) => [b.id, b]) ?? []);
  const backends: BackendFrame[] = (cur.pool?.backends ?? []).map((b) => {
    const before = prevBackends.get(b.id);
    const buckets = cur.balancerMetrics === undefined ? undefined : bucketsOf(cur.balancerMetrics, LB_LATENCY, { pool: 'app', backend: b.id });
    const beforeBuckets = prev?.balancerMetrics === undefined ? undefined : bucketsOf(prev.balancerMetrics, LB_LATENCY, { pool: 'app', backend: b.id });
    const delta = buckets === undefined || prev === undefined ? undefined : bucketsDelta(beforeBuckets, buckets);
    if (before !== undefined && before.state !== b.state) {
      const bad = b.state === 'down' || b.state === 'ejected';
      say(bad ? 'warn' : 'info', b.id, `balancer marks ${b.id} ${b.state} (was ${before.state})`);
    }
    return {
      id: b.id,
      state: b.state,
      rate: rate(before?.requests, b.requests),
      failureRate: rate(before?.failures, b.failures),
      connections: b.active,
      requests: b.requests,
      failures: b.failures,
      p50Ms: delta === undefined ? null : ms(histogramQuantile(0.5, delta)),
      p99Ms: delta === undefined ? null : ms(histogramQuantile(0.99, delta)),
    };
  });
  if (prev?.pool !== undefined && cur.pool !== undefined && prev.pool.algorithm !== cur.pool.algorithm) say('info', 'balancer', `algorithm: ${cur.pool.algorithm} (was ${prev.pool.algorithm})`);
  let overall: { p50Ms: number | null; p99Ms: number | null } = { p50Ms: null, p99Ms: null };
  if (cur.balancerMetrics !== undefined && prev?.balancerMetrics !== undefined) {
    const d = bucketsDelta(bucketsOf(prev.balancerMetrics, LB_LATENCY, { pool: 'app' }), bucketsOf(cur.balancerMetrics, LB_LATENCY, { pool: 'app' }));
    overall = { p50Ms: ms(histogramQuantile(0.5, d)), p99Ms: ms(histogramQuantile(0.99, d)) };
  }
  const backendsUp = backends.filter((b) => b.state === 'up').length;
  const balancer: Frame['balancer'] = {
    algorithm: cur.pool?.algorithm ?? s.balancer.algorithm,
    rate: backends.reduce((n, b) => n + b.rate, 0),
    failureRate: backends.reduce((n, b) => n + b.failureRate, 0),
    backendsUp,
    backends,
    ...overall,
  };

  // ---------------------------------------------------------------- app instances (their /metrics)
  const appRate = (app: string, name: string, match: Record<string, string> = {}): number => {
    const now = cur.apps.get(app);
    if (now === undefined) return 0;
    return rateBy(prev?.apps.get(app), now, (samples) => sumOf(samples, name, match));
  };
  const appNames = cur.components.filter((c) => c.kind === 'app').map((c) => c.name);
  let hitRate = 0;
  let loadRate = 0;
  let cacheErrorRate = 0;
  let dbRate = 0;
  let outboundRate = 0;
  const edgeRates: Record<string, number> = {};
  for (const a of appNames) {
    const hits = appRate(a, APP_CACHE_HITS);
    const misses = appRate(a, APP_CACHE_MISSES);
    const db = appRate(a, APP_DB_CALLS);
    const pub = appRate(a, APP_EVENTS, { result: 'published' });
    const out = appRate(a, APP_OUTBOUND);
    hitRate += hits;
    loadRate += misses;
    cacheErrorRate += appRate(a, APP_CACHE_ERRORS);
    dbRate += db;
    outboundRate += out;
    edgeRates[`${a}->cache`] = hits + misses;
    edgeRates[`${a}->database`] = db;
    edgeRates[`${a}->queue`] = pub;
    edgeRates[`${a}->proxy`] = out;
  }
  const cache: Frame['cache'] = {
    strategy: cur.settings.strategy,
    engine: cur.components.find((c) => c.kind === 'cache')?.engine.split(' ')[0] ?? 'memory',
    hitRatio: ratio(hitRate, hitRate + loadRate),
    loadRate,
    hitRate,
    errors: s.app.cacheErrors,
    cut: cur.settings.cacheCut,
  };
  if (prev !== undefined) {
    if (prev.settings.strategy !== cur.settings.strategy) say('info', 'cache', `strategy: ${cur.settings.strategy} (was ${prev.settings.strategy})`);
    if (prev.settings.cacheCut !== cur.settings.cacheCut) say(cur.settings.cacheCut ? 'warn' : 'info', 'cache', cur.settings.cacheCut ? 'app instances cut off from the cache' : 'app instances reconnected to the cache');
    if (prev.settings.databaseCut !== cur.settings.databaseCut) say(cur.settings.databaseCut ? 'warn' : 'info', 'database', cur.settings.databaseCut ? 'app instances cut off from the database' : 'app instances reconnected to the database');
  }

  // ---------------------------------------------------------------- queue and worker
  const queue: Frame['queue'] = {
    engine: cur.components.find((c) => c.kind === 'queue')?.engine ?? '',
    depth: s.queue.depth,
    publishRate: rate(p?.queue.published, s.queue.published),
    consumeRate: rate(p?.queue.consumed, s.queue.consumed),
    published: s.queue.published,
    consumed: s.queue.consumed,
    workerRunning: s.queue.workerRunning,
  };
  if (p !== undefined && p.queue.workerRunning !== s.queue.workerRunning) say(s.queue.workerRunning ? 'info' : 'warn', 'worker', s.queue.workerRunning ? `worker consuming again (backlog ${s.queue.depth})` : 'worker stopped: the backlog builds');
  edgeRates['queue->worker'] = queue.consumeRate;

  // ---------------------------------------------------------------- CDN (its admin /stats)
  const c = cur.cdn;
  const pc = prev?.cdn;
  type Counts = Pick<CdnStats['edges'], 'hits' | 'stale' | 'misses' | 'revalidated' | 'passes'>;
  const hitsOf = (x: Counts): number => x.hits + x.stale;
  const lookupsOf = (x: Counts): number => hitsOf(x) + x.misses + x.revalidated + x.passes;
  /** Hits over lookups during the interval, of a node, a region or all edges. */
  const hitRatioOver = (before: Counts | undefined, after: Counts): number | null => ratio(rateBy(before, after, hitsOf), rateBy(before, after, lookupsOf));
  let cdn: Frame['cdn'] = { rate: 0, hitRatio: null, hits: 0, misses: 0, missRate: 0, originOffload: null, originRate: 0, regions: [], purges: 0 };
  if (c !== undefined) {
    const routerRate = rate(pc?.router.requests, c.router.requests);
    const originRate = rate(pc?.origin.requests, c.origin.requests);
    cdn = {
      rate: routerRate,
      hitRatio: hitRatioOver(pc?.edges, c.edges),
      hits: hitsOf(c.edges),
      misses: c.edges.misses,
      missRate: rate(pc?.edges.misses, c.edges.misses),
      originOffload: routerRate > 0 ? Math.max(0, 1 - originRate / routerRate) : null,
      originRate,
      regions: c.regions.map((r) => {
        const before = pc?.regions.find((x) => x.region === r.region);
        return { name: r.region, rate: rate(before?.requests, r.requests), hitRatio: hitRatioOver(before, r) };
      }),
      purges: c.purge.count,
    };
    edgeRates['clients->cdn'] = routerRate;
    const prevNodes = new Map(pc?.nodes.map((n) => [n.name, n]) ?? []);
    for (const n of c.nodes) {
      const before = prevNodes.get(n.name);
      const id = nodeId(`cdn ${n.name}`);
      if (n.tier === 'edge') edgeRates[`cdn->${id}`] = rate(before?.requests, n.requests);
      const up = rate(before?.upstreamRequests, n.upstreamRequests);
      for (const e of graph.edges) if (e.from === id) edgeRates[e.id] = up;
    }
    // Writes go from the clients straight to the balancer: what it got beyond what the CDN sent.
    edgeRates['clients->balancer'] = Math.max(0, balancer.rate - originRate);
  }

  // ---------------------------------------------------------------- proxy and externals
  const proxy: Frame['proxy'] = { rate: rate(p?.proxy.requests, s.proxy.requests), requests: s.proxy.requests, errors: s.proxy.errors };
  for (const e of graph.edges) if (e.from === 'proxy') edgeRates[e.id] = proxy.rate;
  for (const b of backends) edgeRates[`balancer->${b.id}`] = b.rate;
  const payments: Frame['payments'] = {
    chargeRate: rate(p?.payments.charges, s.payments.charges),
    failedRate: rate(p?.payments.failed, s.payments.failed),
    failureRate: s.payments.failureRate,
    latencyMs: s.payments.latencyMs,
  };
  if (p !== undefined && p.payments.failureRate !== s.payments.failureRate) say(s.payments.failureRate > 0 ? 'warn' : 'info', 'payments', `payments fails ${Math.round(s.payments.failureRate * 100)}% of charges`);
  if (p !== undefined && p.payments.latencyMs !== s.payments.latencyMs) say('info', 'payments', `payments answers in ${s.payments.latencyMs} ms (was ${p.payments.latencyMs})`);

  const database: Frame['database'] = { engine: cur.components.find((x) => x.kind === 'database')?.engine ?? '', cut: cur.settings.databaseCut, rate: dbRate };

  // ---------------------------------------------------------------- app instances appearing / going
  const stateOf = (comps: readonly UpComponent[] | undefined, name: string): string | undefined => comps?.find((x) => x.name === name)?.state;
  for (const a of appNames) {
    const before = stateOf(prev?.components, a);
    const now = stateOf(cur.components, a);
    if (before !== undefined && before !== now) say(now === 'stopped' ? 'warn' : 'info', a, now === 'stopped' ? `${a} killed` : `${a} started`);
  }
  if (prevFrame !== undefined && prevFrame.clients.errorRate === 0 && clientErrorRate > 0) say('warn', 'clients', `clients see failures: ${perSecond(clientErrorRate)}`);
  if (prevFrame !== undefined && prevFrame.clients.errorRate > 0 && clientErrorRate === 0) say('info', 'clients', 'clients see no failures any more');

  // ---------------------------------------------------------------- node colours and status lines
  const nodes: Frame['nodes'] = {};
  const set = (id: string, health: Health, status: string): void => void (nodes[id] = { health, status });
  set('clients', clients.rate === 0 ? 'idle' : clientErrorRate > 0 ? 'degraded' : 'up', `${perSecond(clients.sentRate)}${clients.spike === null ? '' : ` (spike ${clients.spike.factor}x)`}`);
  set('cdn', c === undefined ? 'down' : 'up', c === undefined ? 'unreadable' : `${perSecond(cdn.rate)}, hit ${pct(cdn.hitRatio)}`);
  for (const n of c?.nodes ?? []) {
    const before = pc?.nodes.find((x) => x.name === n.name);
    set(nodeId(`cdn ${n.name}`), n.errors > (before?.errors ?? n.errors) ? 'degraded' : 'up', `${perSecond(rate(before?.requests, n.requests))}, hit ${pct(hitRatioOver(before, n))}`);
  }
  // A node the CDN did not report (it could not be read): shown as unknown, not as healthy.
  for (const g of graph.nodes) if ((g.kind === 'cdn-edge' || g.kind === 'cdn-shield') && nodes[g.id] === undefined) set(g.id, 'down', 'unreadable');
  const lbHealth: Health = cur.pool === undefined ? 'down' : backendsUp === 0 ? 'down' : backendsUp < backends.length || balancer.failureRate > 0 ? 'degraded' : 'up';
  set('balancer', lbHealth, `${perSecond(balancer.rate)}, ${backendsUp}/${backends.length} up`);
  for (const a of appNames) {
    const state = stateOf(cur.components, a);
    const b = backends.find((x) => x.id === a);
    let health: Health = 'up';
    let status = b === undefined ? '' : `${perSecond(b.rate)}, ${b.state}`;
    if (state === 'stopped') {
      health = 'stopped';
      status = `killed${b === undefined ? '' : `, balancer: ${b.state}`}`;
    } else if (b !== undefined && (b.state === 'down' || b.state === 'ejected')) health = 'down';
    else if ((b !== undefined && b.state !== 'up') || cur.settings.cacheCut || cur.settings.databaseCut) health = 'degraded';
    set(a, health, status);
  }
  set('cache', cur.settings.cacheCut ? 'down' : cacheErrorRate > 0 ? 'degraded' : 'up', cur.settings.cacheCut ? 'cut off' : `hit ${pct(cache.hitRatio)}, ${perSecond(loadRate)} loads`);
  set('database', cur.settings.databaseCut ? 'down' : 'up', cur.settings.databaseCut ? 'cut off' : `${perSecond(dbRate)} queries`);
  set('queue', 'up', `depth ${queue.depth}`);
  set('worker', queue.workerRunning ? 'up' : 'stopped', queue.workerRunning ? `${perSecond(queue.consumeRate)}` : 'stopped');
  set('proxy', s.proxy.errors > (p?.proxy.errors ?? s.proxy.errors) ? 'degraded' : 'up', perSecond(proxy.rate));
  for (const n of graph.nodes) {
    if (n.kind !== 'external') continue;
    const faulty = payments.failureRate > 0 || payments.failedRate > 0;
    set(n.id, payments.failureRate >= 1 ? 'down' : faulty ? 'degraded' : 'up', `${perSecond(outboundRate)}${payments.failureRate > 0 ? `, fails ${Math.round(payments.failureRate * 100)}%` : ''}, ${payments.latencyMs} ms`);
  }

  const edges: Record<string, number> = {};
  for (const e of graph.edges) edges[e.id] = Math.round((edgeRates[e.id] ?? 0) * 10) / 10;
  return { frame: { t, nodes, edges, clients, balancer, cache, database, queue, cdn, proxy, payments, events: [] }, events };
}
