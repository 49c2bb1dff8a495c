/**
 * The dashboard's wire protocol: what `archlab up`'s dashboard server (src/up/dashboard/server.ts)
 * sends to the web app (web/) and what the web app may ask of it. Types only, so the web app
 * imports this file as it is (`import type`), and the two cannot drift apart.
 *
 * Transport:
 *   GET  /                       the web app (web/dist), nothing loaded from elsewhere (CSP default-src 'self')
 *   GET  /api/state              { hello: Hello }: the graph, the choices, the recent frames and events
 *   GET  /api/stream             Server-Sent Events: `event: hello` (Hello) once, then `event: frame`
 *                                (Frame) every `Hello.intervalMs`; comment lines keep the stream alive
 *   POST /api/control            a Control as JSON -> 200 ControlResult, 400/404/409 { error: { code, message } }
 *
 * Every number in a Frame is read from the components' own metrics and admin APIs (the balancer's
 * admin /pools and /metrics, the CDN's admin /stats, each app instance's /metrics, the queue
 * broker's stats, the load generator's counters): the dashboard computes rates and windowed
 * percentiles from them and simulates nothing.
 */

/** What a node of the graph is. */
export type NodeKind = 'clients' | 'cdn-router' | 'cdn-edge' | 'cdn-shield' | 'balancer' | 'app' | 'cache' | 'database' | 'queue' | 'worker' | 'proxy' | 'external';

/**
 * The colour of a node: up (serving), degraded (serving with errors, or some of it down), down
 * (should serve and does not: a backend the balancer marks down, a cut-off cache or database),
 * stopped (stopped on purpose from the dashboard: a killed instance, a stopped worker), idle (up,
 * no traffic asked for: the load generator at rate 0).
 */
export type Health = 'up' | 'degraded' | 'down' | 'stopped' | 'idle';

export interface GraphNode {
  /** Stable id: "clients", "cdn", "cdn-eu-1", "cdn-shield", "balancer", "app-1".., "cache", "database", "queue", "worker", "proxy", "payments". */
  id: string;
  kind: NodeKind;
  /** Short name shown on the node. */
  label: string;
  /** Engine and address, e.g. "sqlite .archlab/up/catalogue.db", "l7 http://127.0.0.1:40123". */
  detail: string;
  /** The CDN region of an edge node. */
  region?: string;
  /** Layout column, left (0, clients) to right (database, queue...): the web app lays nodes out by it. */
  column: number;
}

export interface GraphEdge {
  /** `${from}->${to}` */
  id: string;
  from: string;
  to: string;
}

/** Sent once per connection: everything the page needs before the first frame. */
export interface Hello {
  /** Protocol version; the web app refuses another. */
  version: 1;
  topology: string;
  intervalMs: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** The choices the controls offer. */
  choices: {
    apps: string[];
    algorithms: string[];
    strategies: string[];
    /** The spike the "spike" button asks for by default. */
    spike: { factor: number; seconds: number };
    /** Suggested values for the payments service's failure rate (0..1) and latency (ms). */
    paymentsFailureRates: number[];
    paymentsLatenciesMs: number[];
  };
  /** The last frames (oldest first, at most `historyLength`) so charts start full. */
  frames: Frame[];
  historyLength: number;
  /** The last events (oldest first). */
  events: DashboardEvent[];
}

/** Latency percentiles over the last frame's interval, ms; null with no request in it. */
export interface Latency {
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface BackendFrame extends Latency {
  /** The backend id in the balancer's pool = the app node's id. */
  id: string;
  /** The balancer's view (admin API): up, down (health checks), ejected (passive), draining, disabled. */
  state: string;
  /** Requests per second the balancer sent it over the interval. */
  rate: number;
  /** Failures (connect errors, 5xx) per second over the interval. */
  failureRate: number;
  connections: number;
  requests: number;
  failures: number;
}

export interface Frame {
  /** Epoch ms when taken. */
  t: number;
  /** Per node: its colour and a one-line status ("42 req/s", "hit 93%", "depth 12"). */
  nodes: Record<string, { health: Health; status: string }>;
  /** Requests (or messages) per second along each edge over the interval, by edge id. */
  edges: Record<string, number>;
  clients: Latency & {
    /** Rate asked for now (base x spike), req/s. */
    rate: number;
    baseRate: number;
    /** Requests sent per second (measured). */
    sentRate: number;
    spike: { factor: number; remainingMs: number } | null;
    /** Failed requests per second over the interval, as the clients see them: no answer, timeout, or 5xx. */
    errorRate: number;
    /** Totals since start. */
    issued: number;
    errors: number;
    inFlight: number;
    dropped: number;
  };
  balancer: Latency & {
    algorithm: string;
    /** Requests per second over every backend. */
    rate: number;
    failureRate: number;
    backendsUp: number;
    backends: BackendFrame[];
  };
  cache: {
    strategy: string;
    engine: string;
    /** Hits / (hits + misses) over the interval; null without reads. */
    hitRatio: number | null;
    /** Loads from the database per second (= misses). */
    loadRate: number;
    hitRate: number;
    errors: number;
    cut: boolean;
  };
  database: { engine: string; cut: boolean; /** Queries per second from the app instances. */ rate: number };
  queue: {
    engine: string;
    /** Messages waiting (ready + unacked): the consumer's lag in messages. */
    depth: number;
    publishRate: number;
    consumeRate: number;
    published: number;
    consumed: number;
    workerRunning: boolean;
  };
  cdn: {
    /** Requests per second at the front door. */
    rate: number;
    /** Edge hit ratio over the interval; null without requests. */
    hitRatio: number | null;
    /** Totals since start, at the edges. */
    hits: number;
    misses: number;
    missRate: number;
    /** Share of requests the CDN answered without the origin, over the interval. */
    originOffload: number | null;
    originRate: number;
    regions: Array<{ name: string; rate: number; hitRatio: number | null }>;
    purges: number;
  };
  proxy: { rate: number; requests: number; errors: number };
  /** The payments service behind the proxy (a stand-in third party) and its fault switches. */
  payments: {
    /** Charges authorized per second. */
    chargeRate: number;
    /** Charges it failed (its failure rate) per second. */
    failedRate: number;
    /** The share of charges it fails on purpose, 0..1 (a control). */
    failureRate: number;
    /** Its artificial latency, ms (a control). */
    latencyMs: number;
  };
  /** Events that happened since the previous frame (also appended to the log). */
  events: DashboardEvent[];
}

export interface DashboardEvent {
  /** Increasing from 1 per dashboard. */
  id: number;
  /** Epoch ms. */
  t: number;
  level: 'info' | 'warn' | 'error';
  /** The component it is about ("app-2", "balancer", "cdn", "clients", "dashboard"...). */
  source: string;
  message: string;
}

/** What the controls can ask. */
export type Control =
  | { action: 'kill-app'; app: string }
  | { action: 'restart-app'; app: string }
  | { action: 'set-algorithm'; algorithm: string }
  | { action: 'set-cache-strategy'; strategy: string }
  | { action: 'cut-cache'; cut: boolean }
  | { action: 'cut-database'; cut: boolean }
  | { action: 'purge-cdn' }
  | { action: 'spike'; factor: number; seconds: number }
  | { action: 'set-rate'; rate: number }
  | { action: 'set-payments-failure-rate'; rate: number }
  | { action: 'set-payments-latency'; ms: number }
  | { action: 'stop-worker' }
  | { action: 'start-worker' };

export interface ControlResult {
  ok: true;
  /** What happened, for the page to show ("purged 312 objects from 4 nodes"). */
  message: string;
}
