/**
 * The reference topology of `archlab up` (issue 8): what runs, on which engine, on which loopback
 * port. Loading a topology validates it and starts nothing; the runner (a later module) reads the
 * parsed value. An empty file is the reference architecture: every field has a default, and
 * examples/reference.yaml spells those defaults out.
 *
 *   clients (load generator) -> CDN (edges in regions, shield) -> L7 balancer (/api/*, /static/*)
 *     -> app instances -> cache -> database;  app -> queue -> worker;  app -> forward proxy -> payments
 *
 * Every component listens on 127.0.0.1. Every `port` is optional: absent or 0 picks a free port (the
 * runner prints the table of what runs where). The ports of the real services (PostgreSQL, MySQL,
 * Redis, RabbitMQ, NATS, MQTT) are refused, so a topology cannot take the port a real engine needs.
 *
 * Durations and sizes are written with units (`30s`, `16KiB`) and come out as numbers with the unit in
 * the key (`ttlMs`, `maxBodyBytes`), as in every archlab config.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { loadConfig, parseConfig, zDuration, zSize } from '../core/index.js';
import { ALGORITHM_NAMES } from '../balancer/index.js';
import { STRATEGIES } from '../cache/index.js';

/** Ports of the real services archlab talks to; no archlab component of `up` may listen on one. */
export const RESERVED_PORTS: ReadonlyMap<number, string> = new Map([
  [5432, 'PostgreSQL'],
  [3306, 'MySQL/MariaDB'],
  [6379, 'Redis'],
  [5672, 'RabbitMQ'],
  [4222, 'NATS'],
  [1883, 'MQTT'],
]);

export const CACHE_ENGINES = ['memory', 'redis'] as const;
export const DATABASE_ENGINES = ['sqlite', 'postgres'] as const;
/** The queue block's drivers (src/queue/drivers). */
export const QUEUE_ENGINES = ['embedded', 'archlab', 'rabbitmq', 'nats'] as const;
/** The most app instances a topology may ask for. */
export const MAX_APP_INSTANCES = 16;

/** An enum whose error lists the choices plainly: `expected one of memory, redis`. */
function zOneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `expected one of ${values.join(', ')}` });
}

const RESERVED_LIST = [...RESERVED_PORTS].map(([p, s]) => `${p} ${s}`).join(', ');

/** A loopback port: optional, 0 = a free one; the real services' ports are refused. */
const zPort = z
  .int({ error: 'expected a port number (integer 0..65535)' })
  .min(0)
  .max(65535)
  .refine((p) => !RESERVED_PORTS.has(p), {
    error: (iss) =>
      `port ${String(iss.input)} belongs to ${RESERVED_PORTS.get(iss.input as number)}: archlab up does not listen on the real services' ports (${RESERVED_LIST}); leave the port out or 0 for a free one`,
  })
  .default(0);

const zName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'expected 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit');

/** A service URL with one of `schemes`; credentials stay in the URL (the runner never prints them). */
function zUrl(schemes: readonly string[], example: string) {
  return z
    .string()
    .max(2048)
    .refine((s) => {
      if (!URL.canParse(s)) return false;
      return schemes.includes(new URL(s).protocol.slice(0, -1));
    }, `expected a ${schemes.map((s) => `${s}://`).join(' or ')} URL, e.g. "${example}"`);
}

/** clients: the built-in load generator. */
const zClients = z
  .strictObject({
    /** Requests per second across all clients; 0 = the load generator starts idle. Default 50. */
    rate: z.number().min(0).max(100_000).default(50),
    /**
     * Key skew: the Zipf exponent s over product ids (product rank k is drawn with weight 1/k^s).
     * 0 = uniform; 1 to 1.2 is the usual "hot products" shape. Default 1.1.
     */
    skew: z.number().min(0).max(4).default(1.1),
    /** Relative weights of request kinds (need not sum to 100; at least one must be > 0). */
    mix: z
      .strictObject({
        /** GET /api/products/:id. Default 70. */
        reads: z.number().min(0).max(1_000_000).default(70),
        /** POST /api/orders. Default 5. */
        writes: z.number().min(0).max(1_000_000).default(5),
        /** GET /api/products?category=. Default 10. */
        searches: z.number().min(0).max(1_000_000).default(10),
        /** GET /static/... (what the CDN caches). Default 15. */
        static: z.number().min(0).max(1_000_000).default(15),
      })
      .refine((m) => m.reads + m.writes + m.searches + m.static > 0, 'at least one of reads, writes, searches, static must be > 0')
      .prefault({}),
    /** Requests in flight at most; beyond it the generator skips sends and counts them. Default 256. */
    maxInFlight: z.int().min(1).max(10_000).default(256),
    /** A request not answered within this is counted as a timeout. Default 5s. -> timeoutMs */
    timeout: zDuration('5s', { minMs: 1, maxMs: 120_000 }),
  })
  .transform(({ timeout, ...rest }) => ({ ...rest, timeoutMs: timeout }))
  .prefault({});

const zRegion = z.strictObject({
  /** Region name, e.g. "eu". Required. */
  name: zName,
  /** Edge nodes in the region, 1..8. Default 1. */
  edges: z.int().min(1).max(8).default(1),
  /** Share of the clients in this region (relative weight). Default 1. */
  clients: z.number().min(0).max(1_000_000).default(1),
});

/** cdn: edges in regions, an optional shield, in front of the balancer. */
const zCdn = z
  .strictObject({
    /** The CDN's front door (its router), where the clients send every request. */
    port: zPort,
    /** Edge regions, 1..4. Default eu and us, one edge each. */
    regions: z
      .array(zRegion)
      .min(1, 'at least one region')
      .max(4)
      .default([
        { name: 'eu', edges: 1, clients: 1 },
        { name: 'us', edges: 1, clients: 1 },
      ]),
    /** The shield tier between the edges and the balancer (one node). Default enabled. */
    shield: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.regions.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['regions', i, 'name'], input: r.name, message: `duplicate region "${r.name}"` });
      seen.add(r.name);
    });
    if (c.regions.length > 0 && c.regions.every((r) => r.clients === 0)) {
      ctx.addIssue({ code: 'custom', path: ['regions'], input: c.regions, message: 'at least one region must have clients > 0' });
    }
  })
  .prefault({});

/** balancer: the L7 balancer in front of the app instances. */
const zBalancer = z
  .strictObject({
    port: zPort,
    /** The balancer's admin API (algorithm switch, backend states, /metrics). */
    adminPort: zPort,
    /** The picking algorithm (switchable at runtime from the dashboard). Default round-robin. */
    algorithm: zOneOf(ALGORITHM_NAMES).default('round-robin'),
  })
  .prefault({});

/** app: the demo application (src/up/app), behind the balancer. Routes /api/* and /static/* go to it. */
const zApp = z
  .strictObject({
    /** Instances of the demo app, 1..16. Default 3. */
    instances: z.int().min(1, `expected 1..${MAX_APP_INSTANCES} instances`).max(MAX_APP_INSTANCES, `expected 1..${MAX_APP_INSTANCES} instances`).default(3),
    /** A port per instance (as many as instances); absent = free ports. */
    ports: z.array(zPort).max(MAX_APP_INSTANCES).optional(),
    /** The seed data: product and user counts (deterministic from the topology's seed). */
    data: z
      .strictObject({
        /** Products, 1..1,000,000. Default 1000. */
        products: z.int().min(1).max(1_000_000).default(1000),
        /** Users, 1..1,000,000. Default 100. */
        users: z.int().min(1).max(1_000_000).default(100),
      })
      .prefault({}),
    /** Largest request body the app reads; bigger gets 413. Default 16KiB. -> maxBodyBytes */
    maxBody: zSize('16KiB', { minBytes: 256, maxBytes: 1024 * 1024 }),
  })
  .transform(({ maxBody, ...rest }) => ({ ...rest, maxBodyBytes: maxBody }))
  .prefault({});

/** cache: in front of the database, inside each app instance. */
const zCache = z
  .strictObject({
    /** The caching strategy (switchable at runtime). Default cache-aside. */
    strategy: zOneOf(STRATEGIES).default('cache-aside'),
    /** memory: one in-process cache per app instance; redis: one shared cache (needs url). Default memory. */
    engine: zOneOf(CACHE_ENGINES).default('memory'),
    /** Redis URL (redis:// or rediss://), for engine redis only. */
    url: zUrl(['redis', 'rediss'], 'redis://127.0.0.1:6379').optional(),
    /** Freshness of a cached product. Default 30s. -> ttlMs */
    ttl: zDuration('30s', { minMs: 1, maxMs: 86_400_000 }),
    /** Entries per in-process cache (engine memory). Default 10000. */
    maxEntries: z.int().min(1).max(10_000_000).default(10_000),
  })
  .transform(({ ttl, ...rest }) => ({ ...rest, ttlMs: ttl }))
  .prefault({});

/** database: the app's source of truth. */
const zDatabase = z
  .strictObject({
    /** sqlite (embedded, default) or postgres (needs url). */
    engine: zOneOf(DATABASE_ENGINES).default('sqlite'),
    /**
     * SQLite file, relative to dataDir, or ":memory:" (private to one process, so only with one app
     * instance). Default "catalogue.db". sqlite only.
     */
    file: z.string().min(1).max(4096).optional(),
    /** PostgreSQL URL (postgres:// or postgresql://), for engine postgres only. */
    url: zUrl(['postgres', 'postgresql'], 'postgres://postgres@127.0.0.1:5432/test').optional(),
  })
  .prefault({});

/** queue: where the app publishes order events, and the worker that consumes them. */
const zQueue = z
  .strictObject({
    /**
     * embedded (in-process log under dataDir, default), archlab (an archlab queue server: started by
     * up on `port`, or the one at `url`), rabbitmq or nats (need url).
     */
    engine: zOneOf(QUEUE_ENGINES).default('embedded'),
    /** amqp:// for rabbitmq, nats:// for nats, archlab:// (host:port) for an archlab server already running. */
    url: zUrl(['amqp', 'amqps', 'nats', 'tls', 'archlab'], 'amqp://127.0.0.1:5672').optional(),
    /** The archlab queue server's port when up starts it (engine archlab without url). */
    port: zPort,
    /** The topic (or queue) of order events. Default "orders". */
    topic: zName.default('orders'),
    /** The worker consuming order events (e.g. order placed -> email and analytics). */
    worker: z
      .strictObject({
        /** Start the worker with the topology. Default true (the dashboard can stop and restart it). */
        enabled: z.boolean().default(true),
        /** Simulated work per event, so a backlog can build. Default 2ms. -> workMs */
        work: zDuration('2ms', { minMs: 0, maxMs: 60_000 }),
      })
      .transform(({ work, ...rest }) => ({ ...rest, workMs: work }))
      .prefault({}),
  })
  .prefault({});

/** proxy: the forward proxy the app's outbound calls go through. */
const zProxy = z
  .strictObject({
    /** Start the proxy and route the app's outbound calls through it. Default true. */
    enabled: z.boolean().default(true),
    port: zPort,
  })
  .prefault({});

/**
 * payments: a stand-in third party (src/up/payments.ts). The app authorizes each order's payment with
 * it before the order commits, through the forward proxy when the proxy is enabled.
 */
const zPayments = z
  .strictObject({
    port: zPort,
    /** Added to every answer of the payments service (switchable at runtime). Default 5ms. -> latencyMs */
    latency: zDuration('5ms', { minMs: 0, maxMs: 30_000 }),
    /** The app's deadline for an authorization: slower, and the order is refused (504). Default 2s. -> timeoutMs */
    timeout: zDuration('2s', { minMs: 1, maxMs: 60_000 }),
  })
  .transform(({ latency, timeout, ...rest }) => ({ ...rest, latencyMs: latency, timeoutMs: timeout }))
  .prefault({});

/** dashboard: the web UI of `up` (web/), on one loopback port. */
const zDashboard = z
  .strictObject({
    /** Absent or 0 = a free port (printed at start); give one for a fixed URL. */
    port: zPort,
  })
  .prefault({});

/**
 * store: the replicated, sharded store (src/store, a later block). Until it lands the app's database
 * is the only store, and this section accepts only `{ engine: app-database }`; later engines (e.g.
 * `archlab` with replicas and shards) extend this enum, and the runner will route the app's reads
 * and writes to it. Optional; absent means app-database.
 */
const zStore = z.strictObject({
  engine: z.enum(['app-database'], {
    error: 'expected app-database (the replicated, sharded store is not available yet; the app uses its database)',
  }),
});

export const zTopology = z
  .strictObject({
    /** Shown in the runner's table and the dashboard. Default "reference". */
    name: zName.default('reference'),
    /** Seeds the demo data and the load generator, so a run replays. Default 1. */
    seed: z.int().min(0).max(0xffff_ffff).default(1),
    /** Files of embedded engines (SQLite, queue log). Relative to the topology file; default ".archlab/up" under the working directory. */
    dataDir: z.string().min(1).max(4096).optional(),
    clients: zClients,
    cdn: zCdn,
    balancer: zBalancer,
    app: zApp,
    cache: zCache,
    database: zDatabase,
    queue: zQueue,
    proxy: zProxy,
    payments: zPayments,
    dashboard: zDashboard,
    store: zStore.optional(),
  })
  .superRefine((t, ctx) => {
    const issue = (path: PropertyKey[], input: unknown, message: string): void => ctx.addIssue({ code: 'custom', path, input, message });
    // Engines and their URLs.
    if (t.cache.engine === 'redis' && t.cache.url === undefined) issue(['cache', 'url'], undefined, 'missing: engine redis needs a url, e.g. "redis://127.0.0.1:6379"');
    if (t.cache.engine === 'memory' && t.cache.url !== undefined) issue(['cache', 'url'], t.cache.url, 'a url is only for engine redis (engine is memory)');
    if (t.database.engine === 'postgres') {
      if (t.database.url === undefined) issue(['database', 'url'], undefined, 'missing: engine postgres needs a url, e.g. "postgres://postgres@127.0.0.1:5432/test"');
      if (t.database.file !== undefined) issue(['database', 'file'], t.database.file, 'a file is only for engine sqlite (engine is postgres)');
    } else {
      if (t.database.url !== undefined) issue(['database', 'url'], t.database.url, 'a url is only for engine postgres (engine is sqlite)');
      if (t.database.file === ':memory:' && t.app.instances > 1) {
        issue(['database', 'file'], t.database.file, `":memory:" is private to one process, so ${t.app.instances} app instances would each see their own data; use a file or app.instances: 1`);
      }
    }
    const q = t.queue;
    const scheme = q.url === undefined ? undefined : new URL(q.url).protocol.slice(0, -1);
    const wants: Record<(typeof QUEUE_ENGINES)[number], string[]> = { embedded: [], archlab: ['archlab'], rabbitmq: ['amqp', 'amqps'], nats: ['nats', 'tls'] };
    if ((q.engine === 'rabbitmq' || q.engine === 'nats') && q.url === undefined) {
      issue(['queue', 'url'], undefined, `missing: engine ${q.engine} needs a url, e.g. "${q.engine === 'rabbitmq' ? 'amqp://127.0.0.1:5672' : 'nats://127.0.0.1:4222'}"`);
    } else if (q.engine === 'embedded' && q.url !== undefined) {
      issue(['queue', 'url'], q.url, 'the embedded queue runs in-process and takes no url');
    } else if (scheme !== undefined && !wants[q.engine].includes(scheme)) {
      issue(['queue', 'url'], q.url, `engine ${q.engine} needs a ${wants[q.engine].map((s) => `${s}://`).join(' or ')} url`);
    }
    if (q.port !== 0 && !(q.engine === 'archlab' && q.url === undefined)) {
      issue(['queue', 'port'], q.port, 'a port is only for engine archlab without url (the queue server up starts)');
    }
    // App ports: one per instance.
    if (t.app.ports !== undefined && t.app.ports.length !== t.app.instances) {
      issue(['app', 'ports'], t.app.ports, `expected ${t.app.instances} ports (one per instance), received ${t.app.ports.length}`);
    }
    // No two components on one fixed port.
    const owners = new Map<number, string>();
    const claim = (path: (string | number)[], port: number): void => {
      if (port === 0) return;
      const at = owners.get(port);
      const here = path.join('.').replace(/\.(\d+)/g, '[$1]');
      if (at !== undefined) issue(path, port, `port ${port} is already taken by ${at}`);
      else owners.set(port, here);
    };
    claim(['cdn', 'port'], t.cdn.port);
    claim(['balancer', 'port'], t.balancer.port);
    claim(['balancer', 'adminPort'], t.balancer.adminPort);
    t.app.ports?.forEach((p, i) => claim(['app', 'ports', i], p));
    claim(['queue', 'port'], q.port);
    claim(['proxy', 'port'], t.proxy.port);
    claim(['payments', 'port'], t.payments.port);
    claim(['dashboard', 'port'], t.dashboard.port);
  })
  .transform((t) => ({
    ...t,
    database:
      t.database.engine === 'sqlite'
        ? { engine: 'sqlite' as const, file: t.database.file ?? 'catalogue.db' }
        : { engine: 'postgres' as const, url: t.database.url! },
    store: t.store ?? { engine: 'app-database' as const },
  }));

/** Where embedded engines keep files when the topology does not say: under the working directory. */
export const DEFAULT_DATA_DIR = '.archlab/up';

/** A parsed topology; dataDir and a SQLite file are absolute. */
export type Topology = Omit<z.output<typeof zTopology>, 'dataDir'> & { dataDir: string };
export type TopologyInput = z.input<typeof zTopology>;
export type DatabaseTopology = Topology['database'];
export type CacheTopology = Topology['cache'];
export type QueueTopology = Topology['queue'];
export type ClientsTopology = Topology['clients'];
export type PaymentsTopology = Topology['payments'];

/** dataDir absolute (relative to `baseDir` when given in the file, else to the working directory); a SQLite file absolute under it. */
function resolvePaths(t: z.output<typeof zTopology>, baseDir: string): Topology {
  const dataDir = t.dataDir === undefined ? resolve(process.cwd(), DEFAULT_DATA_DIR) : isAbsolute(t.dataDir) ? t.dataDir : resolve(baseDir, t.dataDir);
  const database: DatabaseTopology =
    t.database.engine === 'sqlite' && t.database.file !== ':memory:' && !isAbsolute(t.database.file)
      ? { ...t.database, file: resolve(dataDir, t.database.file) }
      : t.database;
  return { ...t, dataDir, database };
}

/**
 * Reads and validates a topology file. Starts nothing, opens no connection. Throws ConfigError
 * (ARCHLAB_CONFIG_INVALID, _SYNTAX or _UNREADABLE) naming the file and each bad field, e.g.
 * `cache.engine: expected one of memory, redis, received "mongo"`.
 */
export function loadTopology(file: string): Topology {
  return resolvePaths(loadConfig(file, zTopology), dirname(resolve(file)));
}

/** Validates a topology given as an object or YAML text (paths relative to the working directory). */
export function parseTopology(input: TopologyInput | string, sourceName = '<topology>'): Topology {
  const parsed = parseConfig(typeof input === 'string' ? input : JSON.stringify(input), zTopology, sourceName, typeof input === 'string' ? undefined : 'json');
  return resolvePaths(parsed, process.cwd());
}

/** examples/reference.yaml, shipped with the package (package.json "files" has examples/). */
export const REFERENCE_TOPOLOGY_FILE = fileURLToPath(new URL('../../examples/reference.yaml', import.meta.url));

/** The reference architecture: examples/reference.yaml (memory cache, SQLite database, embedded queue). */
export function defaultTopology(): Topology {
  return loadTopology(REFERENCE_TOPOLOGY_FILE);
}
