/**
 * `startUp(topology)`: the reference architecture of `archlab up`, every component in this process
 * on 127.0.0.1 (a free port where the topology gives none), started in dependency order:
 *
 *   database   seeded once through the app's db layer (then closed: each app instance opens its own)
 *   queue      the driver of topology.queue.engine (the archlab engine's server is started here
 *              when the topology gives no url), the events queue declared
 *   worker     consumes order events from the queue (src/up/worker.ts)
 *   payments   a stand-in third party (src/up/payments.ts): each order's payment is authorized with it
 *   proxy      the forward proxy the apps' outbound calls go through; its ACL lets them reach payments
 *              and nothing else (egress control), the SSRF guard excepting loopback
 *   app-N      N demo app instances (src/up/app), each on its own listener (core's listen()), calling
 *              payments through the proxy (absolute-form plain HTTP, so the proxy sees and logs every
 *              request), or directly when topology.proxy.enabled is false
 *   balancer   the L7 balancer: pool `app` = the instances, routes /api/* and /static/* to it,
 *              active health checks on /healthz, admin API with a generated token
 *   cdn        edges per region (+ shield), origin = the balancer, admin API with a generated token
 *   clients    the load generator (src/up/loadgen.ts): reads, searches and static through the CDN's
 *              front door, writes (orders) to the balancer, at topology.clients.rate (0 = idle),
 *              seeded from the topology's seed; stopped first on close
 *
 * and gives back the table of what runs where, the controls the dashboard calls, a summary of
 * the components' own counters, and close(), which stops everything in reverse order. If a start
 * fails, what already started is stopped and the error (ARCHLAB_UP_START_FAILED) names the component.
 *
 * The dashboard (src/up/dashboard) is a view over the handle, started beside it by `archlab up`.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import * as http from 'node:http';
import { dirname, join } from 'node:path';
import pino from 'pino';
import { ALGORITHM_NAMES, startBalancer, type AlgorithmName, type BalancerHandle } from '../balancer/index.js';
import { STRATEGIES, type StrategyName } from '../cache/index.js';
import { startCdnServer, type CdnServerHandle } from '../cdn/index.js';
import { ArchlabError, InvalidArgumentError, listen, SeededRandom, type Logger, type ServerHandle } from '../core/index.js';
import { startProxy, type ProxyHandle } from '../proxy/index.js';
import {
  archlabDriver,
  embeddedDriver,
  openDriver,
  startQueueServer,
  type BrokerApi,
  type QueueDriver,
  type QueueServerHandle,
} from '../queue/index.js';
import { CATEGORIES, createDemoApp, generateCatalogue, openPostgresCatalogue, openSqliteCatalogue, type CatalogueDb, type DatabaseSpec, type DemoApp, type OrderPlacedEvent } from './app/index.js';
import { startLoadGenerator, type LoadGenerator } from './loadgen.js';
import { startPayments, type PaymentsHandle } from './payments.js';
import type { Topology } from './topology.js';
import { OrderWorker } from './worker.js';

/** `external`: a stand-in for a service outside the architecture (payments, a third party). */
export type ComponentKind = 'database' | 'cache' | 'queue' | 'worker' | 'app' | 'proxy' | 'external' | 'balancer' | 'cdn';
/** running: serving; stopped: stopped on purpose (a killed app, a stopped worker); embedded: inside another component, no listener. */
export type ComponentState = 'running' | 'stopped' | 'embedded';

/** One row of the table of what runs where. */
export interface UpComponent {
  name: string;
  kind: ComponentKind;
  /** What it runs on: "sqlite", "memory", "embedded", "archlab", "demo app", "l7 round-robin", ... */
  engine: string;
  /** Where to reach it (http://127.0.0.1:port, tcp://..., a file path, a service URL without credentials). */
  url: string | undefined;
  /** The loopback port this process listens on for it; undefined when it has none here. */
  port: number | undefined;
  state: ComponentState;
}

export interface UpOptions {
  /** Where the components log. Default: nothing is logged. */
  logger?: Logger;
  /** Interval of the balancer's active health checks, in ms (a killed instance is marked down after 2 of them). Default 1000. */
  healthIntervalMs?: number;
  /** How long each server drains in-flight requests on close, in ms. Default 2000. */
  drainTimeoutMs?: number;
}

/** The components' own counters, summed: what the live summary line and the dashboard show. */
export interface UpSummary {
  /** The CDN: requests through its router; hits and misses at the edges. */
  cdn: { requests: number; errors: number; edgeHits: number; edgeMisses: number; edgeHitRatio: number | null };
  /** The balancer's pool `app`: requests and failures (connect errors, 5xx) over every backend. */
  balancer: { requests: number; failures: number; backendsUp: number; backends: number; algorithm: string };
  /**
   * The app instances now running: product reads answered by their caches, orders, events, and the
   * orders' payment authorizations (authorized; failed: refused, error, timeout, unreachable or busy;
   * abandoned: authorized, then the order did not commit).
   */
  app: {
    instancesUp: number;
    cacheHits: number;
    cacheMisses: number;
    cacheHitRatio: number | null;
    cacheErrors: number;
    ordersPlaced: number;
    eventsPublished: number;
    eventsFailed: number;
    payments: { authorized: number; failed: number; abandoned: number };
  };
  /**
   * The forward proxy's own counters (all 0 when topology.proxy.enabled is false): requests answered
   * (plain HTTP and CONNECT), errors (answered 5xx: its own 502/503/504 or payments' 5xx passed on),
   * denied (refused by its ACL, SSRF guard or limits before reaching a target).
   */
  proxy: { requests: number; errors: number; denied: number };
  /** The payments service's own counters and settings (see PaymentsStats). */
  payments: { charges: number; refused: number; failed: number; latencyMs: number; failureRate: number };
  /**
   * The queue: `depth` is what the broker reports (ready + unacked) on the embedded and archlab
   * engines, and published - consumed on RabbitMQ and NATS (whose drivers do not report it).
   */
  queue: { published: number; consumed: number; depth: number; workerRunning: boolean };
  /**
   * The load generator: `rate` is the rate asked for now (base x spike), `sentRate` the requests
   * sent per second over its window, latency percentiles (ms, null with no answer) over that window.
   */
  clients: {
    rate: number;
    baseRate: number;
    spike: { factor: number; remainingMs: number } | null;
    sentRate: number;
    issued: number;
    completed: number;
    errors: number;
    timeouts: number;
    /** Of `completed`, the answers with a 5xx status. */
    server5xx: number;
    dropped: number;
    inFlight: number;
    p50Ms: number | null;
    p99Ms: number | null;
  };
}

export interface UpControls {
  /** Stops app instance `i` (0-based): its listener closes (the port refuses), the instance closes. */
  killApp(i: number): Promise<void>;
  /** Starts app instance `i` again on the same port. */
  restartApp(i: number): Promise<void>;
  /** Switches the balancer's algorithm for pool `app` (runtime API, as the admin API's PUT /pools/app/algorithm). */
  setAlgorithm(name: AlgorithmName): void;
  /** Switches every app instance's cache strategy (and the one restarted instances get). */
  setCacheStrategy(name: StrategyName): Promise<void>;
  /** Cuts every app instance off from its cache (true) or reconnects them (false). */
  cutCache(cut: boolean): void;
  /** Cuts every app instance off from the database (true: their requests get 503) or reconnects them. */
  cutDatabase(cut: boolean): void;
  /** Purges everything from every CDN node (hard purge of the prefix "/"), waiting for every ack. */
  purgeCdn(): Promise<{ purged: number }>;
  stopWorker(): Promise<void>;
  startWorker(): Promise<void>;
  /** Sets the load generator's base rate, req/s (0..100000; 0 = idle). */
  setRate(rate: number): void;
  /** Traffic spike: the rate x `factor` (1..100) for `seconds` (1..600), then back; a second spike replaces the first. */
  spike(factor: number, seconds: number): void;
  /** The payments service's latency, ms (0..30000): above topology.payments.timeout, orders fail with 504. */
  setPaymentsLatency(ms: number): void;
  /** The share of payments that fail (0..1; 1 = every order is refused with 502). */
  setPaymentsFailureRate(rate: number): void;
}

export interface UpHandle {
  readonly topology: Topology;
  /** The table of what runs where, as of now (states change with the controls). */
  readonly components: readonly UpComponent[];
  /** The CDN's front door (its router): where clients send every request. */
  readonly url: string;
  readonly balancer: { url: string; adminUrl: string; adminToken: string };
  readonly cdn: { url: string; adminUrl: string; adminToken: string; edges: ReadonlyArray<{ name: string; region: string; url: string }> };
  /** The payments service; `proxyUrl` is the forward proxy the apps call it through (undefined: direct). */
  readonly payments: { url: string; proxyUrl: string | undefined };
  readonly controls: UpControls;
  summary(): Promise<UpSummary>;
  /** Stops everything in reverse start order; every port is released, no timer is left. Idempotent. */
  close(): Promise<void>;
}

/** A component that could not start; `details.component` names it, `cause` is the underlying error. */
export class UpStartError extends ArchlabError {
  constructor(component: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super('ARCHLAB_UP_START_FAILED', `${component} could not start: ${why}`, { cause, details: { component } });
  }
}

/** The URL without its credentials, for the table. */
function redact(url: string): string {
  const u = new URL(url);
  if (u.username !== '' || u.password !== '') {
    u.username = u.password === '' ? '' : '***';
    u.password = '';
  }
  return u.toString().replace(/\/$/, '');
}

interface AppSlot {
  index: number;
  name: string;
  /** Fixed after the first start, so the balancer's backend address stays valid across restarts. */
  port: number;
  app: DemoApp | undefined;
  listener: ServerHandle | undefined;
  /** Kills and restarts of this instance run one at a time (a double click must not start it twice). */
  busy: Promise<void>;
}

interface Started {
  name: string;
  close(): Promise<void>;
}

export async function startUp(topology: Topology, opts: UpOptions = {}): Promise<UpHandle> {
  const t = topology;
  const logger = opts.logger ?? pino({ level: 'silent' });
  const level = logger.level;
  const healthIntervalMs = opts.healthIntervalMs ?? 1000;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 2000;
  for (const [k, v] of [['healthIntervalMs', healthIntervalMs], ['drainTimeoutMs', drainTimeoutMs]] as const) {
    if (!Number.isSafeInteger(v) || v < 10) throw new InvalidArgumentError(`${k} must be an integer >= 10 (ms), got ${v}`);
  }
  const drain = `${drainTimeoutMs}ms`;
  const started: Started[] = [];
  const closeStarted = async (): Promise<unknown> => {
    let first: unknown;
    for (const s of started.splice(0).reverse()) {
      try {
        await s.close();
      } catch (err) {
        first ??= err;
        logger.error({ err, component: s.name }, 'up: close failed');
      }
    }
    return first;
  };
  /** Runs one start step; on failure stops everything started so far and names the component. */
  const step = async <T>(component: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      await closeStarted();
      throw new UpStartError(component, err);
    }
  };

  // ------------------------------------------------------------------ database
  const database: DatabaseSpec = t.database.engine === 'sqlite' ? { engine: 'sqlite', file: t.database.file } : { engine: 'postgres', url: t.database.url };
  const seed = { products: t.app.data.products, users: t.app.data.users, seed: t.seed };
  // ":memory:" is private to one connection (the topology allows it with one instance only): that
  // instance seeds its own copy, on every (re)start.
  const privateDb = database.engine === 'sqlite' && database.file === ':memory:';
  await step('database', async () => {
    mkdirSync(t.dataDir, { recursive: true });
    if (privateDb) return;
    let db: CatalogueDb;
    if (database.engine === 'sqlite') {
      mkdirSync(dirname(database.file), { recursive: true });
      db = openSqliteCatalogue({ file: database.file });
    } else {
      db = openPostgresCatalogue({ url: database.url, logger });
      try {
        await db.init();
      } catch (err) {
        await db.close();
        throw err;
      }
    }
    try {
      const inserted = await db.seed(generateCatalogue({ products: seed.products, users: seed.users, random: new SeededRandom(seed.seed) }));
      logger.info({ ...inserted, engine: database.engine }, 'up: database seeded');
    } finally {
      await db.close();
    }
  });

  // ------------------------------------------------------------------ queue and worker
  const q = t.queue;
  let queueServer: QueueServerHandle | undefined;
  let broker: BrokerApi | undefined;
  let queueUrl: string;
  const driver: QueueDriver = await step('queue', async () => {
    const queueDir = join(t.dataDir, 'queue');
    let d: QueueDriver;
    if (q.engine === 'embedded') {
      const e = await embeddedDriver({ dataDir: queueDir, logger });
      broker = e.broker;
      d = e;
      queueUrl = queueDir;
    } else if (q.engine === 'archlab') {
      let host = '127.0.0.1';
      let port: number;
      if (q.url === undefined) {
        const server = await startQueueServer(
          { listeners: [{ port: q.port }], dataDir: queueDir, log: { level: level as 'info' }, metrics: { defaultMetrics: false }, timeouts: { drain } },
          { logger },
        );
        queueServer = server;
        started.push({ name: 'queue server', close: () => server.close() });
        port = server.address.port;
      } else {
        const u = new URL(q.url);
        host = u.hostname;
        port = Number(u.port);
      }
      const e = await archlabDriver({ host, port, logger });
      broker = e.broker;
      d = e;
      queueUrl = `tcp://${host}:${port}`;
    } else if (q.engine === 'rabbitmq') {
      d = await openDriver({ kind: 'rabbitmq', url: q.url! });
      queueUrl = redact(q.url!);
    } else {
      const u = new URL(q.url!);
      d = await openDriver({ kind: 'nats', servers: `${u.hostname}:${u.port === '' ? '4222' : u.port}` });
      queueUrl = redact(q.url!);
    }
    started.push({ name: 'queue', close: () => d.close() });
    await d.declareQueue(q.topic);
    return d;
  });
  const queueCounts = { published: 0 };
  const worker = new OrderWorker({ driver, queue: q.topic, workMs: q.worker.workMs, logger });
  // Stopped with the queue driver's close too; stopping it first lets its work in progress end.
  started.push({ name: 'worker', close: () => worker.stop() });
  if (q.worker.enabled) await step('worker', () => worker.start());

  const publish = async (event: OrderPlacedEvent): Promise<void> => {
    await driver.publish('', q.topic, { body: Buffer.from(JSON.stringify(event)), headers: { 'content-type': 'application/json', type: event.type }, messageId: `order-${event.orderId}` });
    queueCounts.published++;
  };

  // ------------------------------------------------------------------ payments and the forward proxy
  const payments: PaymentsHandle = await step('payments', async () => {
    const p = await startPayments({ port: t.payments.port, latencyMs: t.payments.latencyMs, random: new SeededRandom((t.seed + 2) >>> 0), drainTimeoutMs, logger });
    started.push({ name: 'payments', close: () => p.close() });
    return p;
  });
  // The apps' calls to payments go through the proxy, in absolute form (see src/up/app/payments-client.ts).
  let proxy: ProxyHandle | undefined;
  if (t.proxy.enabled) {
    proxy = await step('proxy', async () => {
      const p = await startProxy(
        {
          listeners: [{ port: t.proxy.port }],
          acl: {
            // Egress control: the apps may reach payments and nothing else.
            allow: [{ host: '127.0.0.1', ports: [payments.address.port] }],
            // Loopback stays reachable through the SSRF guard: the topology's services are all on it.
            ssrfGuard: { exceptions: ['127.0.0.1', '::1'] },
          },
          log: { level: level as 'info' },
          metrics: { defaultMetrics: false },
          timeouts: { drain },
        },
        { logger },
      );
      started.push({ name: 'proxy', close: () => p.close() });
      return p;
    });
  }
  const outbound = { paymentsUrl: payments.url, ...(proxy === undefined ? {} : { proxyUrl: proxy.address.url! }), timeoutMs: t.payments.timeoutMs };

  // ------------------------------------------------------------------ app instances
  const appState = { strategy: t.cache.strategy as StrategyName, cacheCut: false, databaseCut: false };
  const slots: AppSlot[] = Array.from({ length: t.app.instances }, (_, i) => ({ index: i, name: `app-${i + 1}`, port: t.app.ports?.[i] ?? 0, app: undefined, listener: undefined, busy: Promise.resolve() }));
  const serialize = (slot: AppSlot, fn: () => Promise<void>): Promise<void> => {
    const next = slot.busy.then(fn, fn);
    slot.busy = next.catch(() => undefined);
    return next;
  };
  const startSlot = async (slot: AppSlot): Promise<void> => {
    const app = await createDemoApp({
      name: slot.name,
      database,
      cache: { strategy: appState.strategy, engine: t.cache.engine, ...(t.cache.url === undefined ? {} : { url: t.cache.url }), ttlMs: t.cache.ttlMs, maxEntries: t.cache.maxEntries },
      ...(privateDb ? { seed } : {}),
      publish,
      maxBodyBytes: t.app.maxBodyBytes,
      outbound,
      logger,
    });
    try {
      if (appState.cacheCut) app.setCacheReachable(false);
      if (appState.databaseCut) app.setDatabaseReachable(false);
      const server = http.createServer({ keepAliveTimeout: 5000, headersTimeout: 10_000, requestTimeout: 30_000 }, app.handler);
      slot.listener = await listen(server, { port: slot.port, drainTimeoutMs });
    } catch (err) {
      await app.close();
      throw err;
    }
    slot.port = slot.listener.address.port;
    slot.app = app;
  };
  const stopSlot = async (slot: AppSlot): Promise<void> => {
    const { listener, app } = slot;
    slot.listener = undefined;
    slot.app = undefined;
    try {
      await listener?.close();
    } finally {
      await app?.close();
    }
  };
  for (const slot of slots) {
    await step(slot.name, async () => {
      await startSlot(slot);
      started.push({ name: slot.name, close: () => serialize(slot, () => stopSlot(slot)) });
    });
  }

  // ------------------------------------------------------------------ balancer
  const balancerToken = randomBytes(18).toString('base64url');
  const lb: BalancerHandle = await step('balancer', async () => {
    const b = await startBalancer(
      {
        listeners: [{ port: t.balancer.port }],
        pools: [
          {
            name: 'app',
            algorithm: t.balancer.algorithm,
            backends: slots.map((s) => ({ id: s.name, address: `127.0.0.1:${s.port}` })),
            health: {
              active: { path: '/healthz', interval: `${healthIntervalMs}ms`, timeout: `${Math.min(1000, healthIntervalMs)}ms`, rise: 2, fall: 2 },
              // Ejected after 3 failures in a row, for 5 health intervals (at least 1 s).
              passive: { consecutiveFailures: 3, ejectionTime: `${Math.max(1000, 5 * healthIntervalMs)}ms` },
            },
          },
        ],
        // Only pool `app` exists, so it is also the default: any other path reaches the app too, which answers 404.
        routes: [
          { match: { pathPrefix: '/api/' }, pool: 'app' },
          { match: { pathPrefix: '/static/' }, pool: 'app' },
        ],
        admin: { port: t.balancer.adminPort, token: balancerToken },
        log: { level: level as 'info' },
        accessLog: false,
        metrics: { defaultMetrics: false },
        timeouts: { drain },
      },
      { logger },
    );
    started.push({ name: 'balancer', close: () => b.close() });
    return b;
  });
  const balancerUrl = lb.listeners[0]!.url!;

  // ------------------------------------------------------------------ cdn
  const cdnToken = randomBytes(18).toString('base64url');
  const cdn: CdnServerHandle = await step('cdn', async () => {
    const c = await startCdnServer(
      {
        listeners: [{ port: t.cdn.port }],
        admin: { port: 0, token: cdnToken },
        origin: { url: balancerUrl },
        shield: { enabled: t.cdn.shield.enabled },
        regions: t.cdn.regions.map((r) => ({ name: r.name, edges: r.edges })),
        purge: { token: cdnToken },
        log: { level: level as 'info' },
        metrics: { defaultMetrics: false },
        timeouts: { drain },
      },
      { logger },
    );
    started.push({ name: 'cdn', close: () => c.close() });
    return c;
  });

  // ------------------------------------------------------------------ clients (load generator)
  const clients: LoadGenerator = await step('clients', () => {
    const c = t.clients;
    const g = startLoadGenerator({
      cdnUrl: cdn.url,
      balancerUrl,
      rate: c.rate,
      skew: c.skew,
      mix: c.mix,
      maxInFlight: c.maxInFlight,
      timeoutMs: c.timeoutMs,
      products: t.app.data.products,
      users: t.app.data.users,
      categories: CATEGORIES,
      regions: t.cdn.regions.map((r) => ({ name: r.name, weight: r.clients })),
      // Its own stream, not the catalogue's (seeded with t.seed).
      random: new SeededRandom((t.seed + 1) >>> 0),
    });
    started.push({ name: 'clients', close: () => g.stop() });
    return Promise.resolve(g);
  });

  // ------------------------------------------------------------------ the handle
  const components = (): UpComponent[] => {
    const out: UpComponent[] = [];
    const add = (c: UpComponent): void => void out.push(c);
    add({
      name: 'database',
      kind: 'database',
      engine: database.engine,
      url: database.engine === 'sqlite' ? database.file : redact(database.url),
      port: undefined,
      state: 'embedded',
    });
    add({ name: 'cache', kind: 'cache', engine: `${t.cache.engine} ${appState.strategy}`, url: t.cache.url === undefined ? undefined : redact(t.cache.url), port: undefined, state: 'embedded' });
    add({ name: 'queue', kind: 'queue', engine: q.engine, url: queueUrl, port: queueServer?.address.port, state: q.engine === 'embedded' ? 'embedded' : 'running' });
    add({ name: 'worker', kind: 'worker', engine: `queue ${q.topic}`, url: undefined, port: undefined, state: worker.running ? 'running' : 'stopped' });
    for (const s of slots) add({ name: s.name, kind: 'app', engine: 'demo app', url: `http://127.0.0.1:${s.port}`, port: s.port, state: s.listener === undefined ? 'stopped' : 'running' });
    if (proxy !== undefined) add({ name: 'proxy', kind: 'proxy', engine: 'forward proxy', url: proxy.address.url, port: proxy.address.port, state: 'running' });
    add({ name: 'payments', kind: 'external', engine: 'payments (third party)', url: payments.url, port: payments.address.port, state: 'running' });
    const pool = lb.state().pools.get('app')!.pool;
    add({ name: 'balancer', kind: 'balancer', engine: `l7 ${pool.picker.algorithm}`, url: balancerUrl, port: lb.listeners[0]!.port, state: 'running' });
    add({ name: 'balancer-admin', kind: 'balancer', engine: 'admin api', url: lb.admin!.url, port: lb.admin!.port, state: 'running' });
    if (cdn.shield !== undefined) add({ name: `cdn ${cdn.shield.name}`, kind: 'cdn', engine: 'shield', url: cdn.shield.url, port: cdn.shield.address.port, state: 'running' });
    for (const e of cdn.edges) add({ name: `cdn ${e.name}`, kind: 'cdn', engine: `edge ${e.region}`, url: e.url, port: e.address.port, state: 'running' });
    add({ name: 'cdn', kind: 'cdn', engine: 'router (front door)', url: cdn.url, port: cdn.address.port, state: 'running' });
    add({ name: 'cdn-admin', kind: 'cdn', engine: 'admin api', url: cdn.admin!.url, port: cdn.admin!.port, state: 'running' });
    return out;
  };

  const slotAt = (i: number): AppSlot => {
    const slot = slots[i];
    if (!Number.isInteger(i) || slot === undefined) throw new InvalidArgumentError(`no app instance ${i}: expected 0..${slots.length - 1}`);
    return slot;
  };
  const runningApps = (): DemoApp[] => slots.flatMap((s) => (s.app === undefined ? [] : [s.app]));

  const controls: UpControls = {
    async killApp(i) {
      const slot = slotAt(i);
      return serialize(slot, async () => {
        if (slot.listener === undefined) return;
        await stopSlot(slot);
        logger.warn({ instance: slot.name, port: slot.port }, 'up: app instance killed');
      });
    },
    async restartApp(i) {
      const slot = slotAt(i);
      return serialize(slot, async () => {
        if (slot.listener !== undefined) return;
        await startSlot(slot);
        logger.warn({ instance: slot.name, port: slot.port }, 'up: app instance restarted');
      });
    },
    setAlgorithm(name) {
      if (!(ALGORITHM_NAMES as readonly string[]).includes(name)) throw new InvalidArgumentError(`unknown algorithm "${String(name)}": expected one of ${ALGORITHM_NAMES.join(', ')}`);
      lb.state().pools.get('app')!.pool.setAlgorithm(name);
    },
    async setCacheStrategy(name) {
      if (!STRATEGIES.includes(name)) throw new InvalidArgumentError(`unknown cache strategy "${String(name)}": expected one of ${STRATEGIES.join(', ')}`);
      appState.strategy = name;
      await Promise.all(runningApps().map((a) => a.setStrategy(name)));
    },
    cutCache(cut) {
      appState.cacheCut = cut;
      for (const a of runningApps()) a.setCacheReachable(!cut);
    },
    cutDatabase(cut) {
      appState.databaseCut = cut;
      for (const a of runningApps()) a.setDatabaseReachable(!cut);
    },
    async purgeCdn() {
      const report = await cdn.purge({ prefix: '/', mode: 'hard' });
      return { purged: report.purged };
    },
    stopWorker: () => worker.stop(),
    startWorker: () => worker.start(),
    setRate(rate) {
      clients.setRate(rate);
      logger.warn({ rate }, 'up: client rate set');
    },
    spike(factor, seconds) {
      clients.spike(factor, seconds);
      logger.warn({ factor, seconds }, 'up: traffic spike');
    },
    setPaymentsLatency(ms) {
      payments.setLatency(ms);
      logger.warn({ latencyMs: ms }, 'up: payments latency set');
    },
    setPaymentsFailureRate(rate) {
      payments.setFailureRate(rate);
      logger.warn({ failureRate: rate }, 'up: payments failure rate set');
    },
  };

  const summary = async (): Promise<UpSummary> => {
    const c = cdn.stats();
    const pool = lb.state().pools.get('app')!.pool;
    const apps = runningApps().map((a) => a.stats());
    const sum = (f: (s: ReturnType<DemoApp['stats']>) => number): number => apps.reduce((n, s) => n + f(s), 0);
    const cacheHits = sum((s) => s.cache.hits + s.cache.staleServed);
    const cacheMisses = sum((s) => s.cache.misses);
    const w = worker.stats();
    const l = clients.stats();
    let depth = Math.max(0, queueCounts.published - w.consumed);
    if (broker !== undefined) {
      const qs = await broker.queueStats(q.topic);
      depth = qs.ready + qs.unacked + qs.delayed;
    }
    const px = proxy === undefined ? undefined : await proxy.stats();
    const pay = payments.stats();
    return {
      cdn: {
        requests: c.router.requests,
        errors: c.router.errors + c.edges.errors,
        edgeHits: c.edges.hits + c.edges.stale,
        edgeMisses: c.edges.misses,
        edgeHitRatio: c.edges.hits + c.edges.stale + c.edges.misses > 0 ? (c.edges.hits + c.edges.stale) / (c.edges.hits + c.edges.stale + c.edges.misses) : null,
      },
      balancer: {
        requests: pool.backends.reduce((n, b) => n + b.requests, 0),
        failures: pool.backends.reduce((n, b) => n + b.failures, 0),
        backendsUp: pool.backends.filter((b) => b.state === 'up').length,
        backends: pool.backends.length,
        algorithm: pool.picker.algorithm,
      },
      app: {
        instancesUp: apps.length,
        cacheHits,
        cacheMisses,
        cacheHitRatio: cacheHits + cacheMisses > 0 ? cacheHits / (cacheHits + cacheMisses) : null,
        cacheErrors: sum((s) => s.cache.errors),
        ordersPlaced: sum((s) => s.orders.placed),
        eventsPublished: sum((s) => s.events.published),
        eventsFailed: sum((s) => s.events.failed),
        payments: { authorized: sum((s) => s.payments.authorized), failed: sum((s) => s.payments.failed), abandoned: sum((s) => s.payments.abandoned) },
      },
      proxy: { requests: (px?.requests ?? 0) + (px?.tunnels ?? 0), errors: px?.errors ?? 0, denied: px?.denied ?? 0 },
      payments: { charges: pay.charges, refused: pay.refused, failed: pay.failed, latencyMs: pay.latencyMs, failureRate: pay.failureRate },
      queue: { published: queueCounts.published, consumed: w.consumed, depth, workerRunning: w.running },
      clients: {
        rate: l.rate,
        baseRate: l.baseRate,
        spike: l.spike,
        sentRate: l.sentRate,
        issued: l.issued,
        completed: l.completed['2xx'] + l.completed['3xx'] + l.completed['4xx'] + l.completed['5xx'],
        errors: l.errors,
        timeouts: l.timeouts,
        server5xx: l.completed['5xx'],
        dropped: l.dropped,
        inFlight: l.inFlight,
        p50Ms: l.latency.p50Ms,
        p99Ms: l.latency.p99Ms,
      },
    };
  };

  let closing: Promise<void> | undefined;
  logger.info({ components: components().length, url: cdn.url }, 'up: running');
  return {
    topology: t,
    get components() {
      return components();
    },
    url: cdn.url,
    balancer: { url: balancerUrl, adminUrl: lb.admin!.url!, adminToken: balancerToken },
    cdn: { url: cdn.url, adminUrl: cdn.admin!.url!, adminToken: cdnToken, edges: cdn.edges.map((e) => ({ name: e.name, region: e.region, url: e.url })) },
    payments: { url: payments.url, proxyUrl: proxy?.address.url },
    controls,
    summary,
    close: () =>
      (closing ??= (async () => {
        const err = await closeStarted();
        if (err !== undefined) throw err;
      })()),
  };
}
