/**
 * The demo application of `archlab up`: a small product catalogue service with users and orders,
 * so every block in front of it (CDN, balancer, cache, database, queue) has honest work to do. A
 * library: createDemoApp() returns a node:http request handler and close(); the runner puts each
 * instance behind its own listener (core's listen(), which drains on close).
 *
 * HTTP API (JSON; errors are `{ error: { code, message, field? } }` with a typed code):
 *   GET   /api/products/:id                  a product, through the cache
 *   GET   /api/products?category=&limit=     products of a category (index over category), limit 1..100, default 20
 *   PATCH /api/products/:id                  { name?, category?, priceCents?, description? } through the cache's write path
 *   POST  /api/orders                        { userId, productId, qty } -> 201; 400 bad field, 409 out of stock, 422 unknown user/product;
 *                                            with payments (below) also 502 refused/failed, 503 unreachable, 504 too slow;
 *                                            an Idempotency-Key header makes a repeat safe (below)
 *   GET   /api/orders/:id                    an order
 *   GET   /static/products/:id.svg           a generated product image, cacheable for an hour (what the CDN caches)
 *   GET   /healthz                           200 with the cache and database states (see below)
 *   GET   /metrics                           Prometheus text, from the app's own registry
 *
 * /healthz answers 200 while the process serves, with `cache` and `database` saying "reachable" or
 * "cut-off": it is a liveness check, so a balancer keeps sending traffic to an instance cut off from
 * its database and the 503s show on the dashboard, which is the point of the control.
 *
 * Events: after an order commits the app calls the injected `publish(event)` (the runner wires the
 * queue). A publish that fails or takes longer than publishTimeoutMs does NOT fail the order: the
 * order is already committed, and answering 5xx would invite a retry that orders twice. The failure
 * is counted (archlab_app_events_total{result="failed"}) and logged. The event can therefore be lost
 * (at-most-once between database and queue); the fix is a transactional outbox, not a failed order.
 *
 * Payments (only with `outbound`): an order is paid for by authorizing the amount with the payments
 * service (a third party, src/up/payments.ts), through the forward proxy when one is given (see
 * payments-client.ts). The order of the steps, and why:
 *
 *   1. read the user and the product from the database (not the cache: the price charged and the
 *      stock checked must be current); unknown -> 422, short of stock -> 409, and nothing is charged;
 *   2. authorize price x qty with payments, once, within outbound.timeoutMs;
 *   3. commit the order (the same conditional stock update as without payments).
 *
 * Authorize first, then commit: a payment that fails, times out or cannot be sent leaves nothing
 * behind (no order, no stock taken), so the client gets a typed 502/503/504 and may simply try
 * again. The other order, commit then authorize, would have to undo a committed order when payment
 * fails, and that undo can itself fail (the database or the process going away between the two),
 * leaving an unpaid order with its stock taken. With authorize-first the failure left over is
 * milder: when the commit fails after an authorization (someone else took the last unit between the
 * check and the commit, or the database went away), the authorization is abandoned. An
 * authorization is a hold, not a capture: nothing is collected and it lapses on its own; the app
 * counts it (payments.abandoned) and logs its charge id. A real shop would void it, and store the
 * charge id on the order row; this demo does neither (payments keeps no charges to void).
 *
 * The payment's `orderId` is a reference the app makes (a UUID): the database gives the order its id
 * only at commit. The 201's body carries `payment: { id, status }` beside the order.
 *
 * Idempotency-Key (IETF httpapi draft; what the balancer relies on to resend a POST whose connection
 * broke, and what a careful client sends so it may simply try again after a timeout): an order sent
 * with `Idempotency-Key: <1..255 visible ASCII characters>` (anything else: 400 naming the header) is
 * placed at most once per key. The key is stored with the order in the same transaction, under a
 * unique constraint (db.ts), together with what the answer said. A repeat of the key gets the same
 * answer as the first — status 201, the same body (the order, the stock right after it, the payment)
 * and Location — with `Idempotent-Replayed: true`, and places nothing: no stock taken, no second
 * payment authorized (with payments the key is looked up before authorizing), no second event. Two
 * requests with one key at once: the unique constraint lets one place the order; the other answers
 * with the winner's order, and its payment authorization, if it got one, is abandoned and counted
 * like any authorization whose order did not commit. A key reused for a different order (another
 * userId, productId or qty) is refused with 422 ARCHLAB_APP_IDEMPOTENCY_KEY_REUSED. A refused order
 * (out of stock, unknown user, payment failed) stores no key, so the client can try the same key
 * again. Without the header nothing changes.
 */
import { randomUUID } from 'node:crypto';
import type * as http from 'node:http';
import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram } from 'prom-client';
import { z } from 'zod';
import { createMemoryStore, createRedisStore, STRATEGIES, type CacheStats, type CacheStore, type StrategyName } from '../../cache/index.js';
import {
  ArchlabError,
  createRegistry,
  HttpError,
  InvalidArgumentError,
  isArchlabError,
  readBody,
  SeededRandom,
  SystemClock,
  type Clock,
  type Logger,
  type Registry,
} from '../../core/index.js';
import { generateCatalogue, type Order, type Product } from './data.js';
import { MAX_SEARCH_LIMIT, openPostgresCatalogue, openSqliteCatalogue, type CatalogueDb, type KeyedOrder } from './db.js';
import { AppError, findAppError } from './errors.js';
import { gatedDatabase, type CacheGate, type DatabaseGate } from './gates.js';
import { OUTBOUND_RESULTS, PaymentsClient, type Authorization, type OutboundOptions, type OutboundResult } from './payments-client.js';
import { ProductCache } from './product-cache.js';

/** The event published after an order commits. */
export interface OrderPlacedEvent {
  type: 'order.placed';
  orderId: number;
  userId: number;
  productId: number;
  qty: number;
  /** Epoch ms when the order was placed. */
  at: number;
  /** The app instance that took the order. */
  instance: string;
}

export type DatabaseSpec =
  | { engine: 'sqlite'; /** A file, or ":memory:" (private to this instance). */ file: string; busyTimeoutMs?: number }
  | { engine: 'postgres'; url: string; maxConnections?: number; queryTimeoutMs?: number };

export interface CacheSpec {
  /** Default cache-aside. */
  strategy?: StrategyName;
  /** memory (default): this instance's own cache; redis: shared (needs url). */
  engine?: 'memory' | 'redis';
  url?: string;
  /** Key prefix in Redis. Default "archlab:up:". */
  prefix?: string;
  /** Freshness of a cached product, in ms. Default 30000. */
  ttlMs?: number;
  /** Entries in a memory cache. Default 10000. */
  maxEntries?: number;
  /** A store to use instead of making one (tests); the app closes it. */
  store?: CacheStore<Product>;
}

export interface DemoAppOptions {
  /** This instance's name: the `instance` label on its metrics, the X-App-Instance header. Default "app". */
  name?: string;
  database: DatabaseSpec;
  cache?: CacheSpec;
  /**
   * Seed data, inserted at start where missing (idempotent: instances sharing a database can all
   * seed). Default none.
   */
  seed?: { products: number; users: number; seed: number };
  /** Called with each order event after the order commits; see the file comment. Default: none. */
  publish?: (event: OrderPlacedEvent) => Promise<void> | void;
  /** A publish not settled within this counts as failed (the order still succeeds), in ms. Default 1000. */
  publishTimeoutMs?: number;
  /** Largest request body read; bigger gets 413. Default 16 KiB. */
  maxBodyBytes?: number;
  /**
   * The outbound calls: orders authorize their payment with `paymentsUrl`, through `proxyUrl` when
   * given (see the file comment). Default none: orders are placed without payment.
   */
  outbound?: OutboundOptions;
  clock?: Clock;
  logger?: Logger;
}

export interface DemoAppStats {
  cache: CacheStats & { strategy: StrategyName; reachable: boolean; errors: number };
  database: { engine: 'sqlite' | 'postgres'; reachable: boolean; calls: Record<string, number> };
  /** Orders placed; refused out of stock; repeats of an idempotency key answered with the order it placed. */
  orders: { placed: number; outOfStock: number; replayed: number };
  events: { published: number; failed: number };
  /**
   * Payment authorizations (all 0 without `outbound`): authorized, failed (every other result), and
   * abandoned (authorized, then the order did not commit); `results` by outcome (payments-client.ts).
   */
  payments: { enabled: boolean; authorized: number; failed: number; abandoned: number; results: Record<OutboundResult, number> };
}

export interface DemoApp {
  readonly name: string;
  /** The request handler, for http.createServer (or core's listen()). */
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** The app's own metrics registry (served on GET /metrics). */
  readonly registry: Registry;
  readonly strategy: StrategyName;
  /** Switches the cache strategy; see ProductCache.setStrategy. */
  setStrategy(strategy: StrategyName): Promise<void>;
  /** Cuts this instance off from its cache (false) or reconnects it (true): reads fall back to the database. */
  setCacheReachable(reachable: boolean): void;
  /** Cuts this instance off from its database (false) or reconnects it: requests that need it get 503. */
  setDatabaseReachable(reachable: boolean): void;
  stats(): DemoAppStats;
  /** Refuses new requests (503), flushes and closes the cache, closes the database. Drain the listener first. */
  close(): Promise<void>;
}

const MAX_ID = 2_147_483_647;
const zId = z.int({ error: 'expected a positive integer' }).min(1, 'expected a positive integer').max(MAX_ID, `expected at most ${MAX_ID}`);
const zOrderBody = z.strictObject({
  userId: zId,
  productId: zId,
  /** Units ordered, 1..100. */
  qty: z.int({ error: 'expected an integer 1..100' }).min(1, 'expected an integer 1..100').max(100, 'expected an integer 1..100'),
});
const zCategory = z.string().regex(/^[a-z0-9-]{1,64}$/, 'expected 1-64 lowercase letters, digits or "-"');
const zPatchBody = z
  .strictObject({
    name: z.string().min(1).max(200).optional(),
    category: zCategory.optional(),
    priceCents: z.int().min(1).max(1_000_000_000).optional(),
    description: z.string().max(2000).optional(),
  })
  .refine((p) => Object.values(p).some((v) => v !== undefined), 'expected at least one of name, category, priceCents, description');
const zSearch = z.strictObject({
  category: zCategory,
  limit: z.coerce.number().pipe(z.int().min(1).max(MAX_SEARCH_LIMIT, `expected 1..${MAX_SEARCH_LIMIT}`)).default(20),
});

/** The request header naming an order's idempotency key (IETF httpapi Idempotency-Key draft). */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';
/** 1..255 visible ASCII characters: no spaces, no controls, nothing outside ASCII. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The order's idempotency key, if the request has one; a malformed one is a 400 naming the header. */
function idempotencyKeyOf(req: http.IncomingMessage): string | undefined {
  const v = req.headers['idempotency-key'];
  if (v === undefined) return undefined;
  // Node joins repeated fields with ", ": two keys fail the check, as they should.
  if (typeof v !== 'string' || !IDEMPOTENCY_KEY.test(v)) {
    const shown = typeof v === 'string' ? JSON.stringify(v.slice(0, 64)) + (v.length > 64 ? ` (${v.length} characters)` : '') : 'several values';
    throw new AppError('ARCHLAB_APP_BAD_REQUEST', `${IDEMPOTENCY_KEY_HEADER}: expected 1-255 visible ASCII characters (no spaces), received ${shown}`, {
      field: IDEMPOTENCY_KEY_HEADER,
    });
  }
  return v;
}

/** The first issue of a zod error as a 400 naming its field. */
function badRequest(error: z.ZodError, prefix: string): AppError {
  const issue = error.issues[0]!;
  const path = issue.path.map(String).join('.');
  const field = issue.code === 'unrecognized_keys' ? issue.keys[0]! : path === '' ? undefined : path;
  const message = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message.replace(/^Invalid input: /, '');
  return new AppError('ARCHLAB_APP_BAD_REQUEST', `${prefix}${field === undefined ? '' : `${field}: `}${message}`, field === undefined ? {} : { field });
}

function parseId(text: string, field = 'id'): number {
  if (!/^[1-9]\d{0,9}$/.test(text) || Number(text) > MAX_ID) {
    throw new AppError('ARCHLAB_APP_BAD_REQUEST', `${field}: expected a positive integer, received ${JSON.stringify(text.slice(0, 32))}`, { field });
  }
  return Number(text);
}

const JSON_TYPE = 'application/json; charset=utf-8';

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

/** A small deterministic SVG for product `id`: the same bytes on every instance, so a CDN can cache it. */
function productImage(id: number): string {
  const hue = (id * 137) % 360;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="160" height="160" viewBox="0 0 160 160"><rect width="160" height="160" fill="hsl(${hue},60%,70%)"/><text x="80" y="90" font-family="sans-serif" font-size="28" text-anchor="middle">#${id}</text></svg>`;
}

/** Route labels of the request metrics (a fixed set: bounded label values). */
type Route =
  | 'GET /api/products/:id'
  | 'GET /api/products'
  | 'PATCH /api/products/:id'
  | 'POST /api/orders'
  | 'GET /api/orders/:id'
  | 'GET /static/products/:id.svg'
  | 'GET /healthz'
  | 'GET /metrics'
  | 'other';

async function openDatabase(spec: DatabaseSpec, logger: Logger | undefined): Promise<CatalogueDb> {
  if (spec.engine === 'sqlite') return openSqliteCatalogue({ file: spec.file, ...(spec.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: spec.busyTimeoutMs }) });
  const db = openPostgresCatalogue({
    url: spec.url,
    ...(spec.maxConnections === undefined ? {} : { maxConnections: spec.maxConnections }),
    ...(spec.queryTimeoutMs === undefined ? {} : { queryTimeoutMs: spec.queryTimeoutMs }),
    ...(logger === undefined ? {} : { logger }),
  });
  try {
    await db.init();
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

function makeStore(spec: CacheSpec): CacheStore<Product> {
  if (spec.store !== undefined) return spec.store;
  if ((spec.engine ?? 'memory') === 'memory') return createMemoryStore<Product>({ maxEntries: spec.maxEntries ?? 10_000 });
  if (spec.url === undefined) throw new InvalidArgumentError('cache engine redis needs a url');
  return createRedisStore<Product>({ url: spec.url, prefix: spec.prefix ?? 'archlab:up:', commandTimeoutMs: 250 });
}

/** Opens the database (creating the schema, seeding where asked) and the cache, and returns the app. */
export async function createDemoApp(opts: DemoAppOptions): Promise<DemoApp> {
  const name = opts.name ?? 'app';
  const clock = opts.clock ?? new SystemClock();
  const logger = opts.logger;
  const maxBodyBytes = opts.maxBodyBytes ?? 16 * 1024;
  const publishTimeoutMs = opts.publishTimeoutMs ?? 1000;
  for (const [k, v] of [['maxBodyBytes', maxBodyBytes], ['publishTimeoutMs', publishTimeoutMs]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`${k} must be a positive integer, got ${v}`);
  }
  const cacheSpec = opts.cache ?? {};
  const strategy0 = cacheSpec.strategy ?? 'cache-aside';
  if (!STRATEGIES.includes(strategy0)) throw new InvalidArgumentError(`unknown cache strategy "${String(strategy0)}": expected one of ${STRATEGIES.join(', ')}`);

  // Validated before anything is opened (it opens no connection until the first call).
  const payments = opts.outbound === undefined ? undefined : new PaymentsClient(opts.outbound);
  let rawDb: CatalogueDb;
  try {
    rawDb = await openDatabase(opts.database, logger);
  } catch (err) {
    await payments?.close();
    throw err;
  }
  const dbGate: DatabaseGate = { reachable: true, calls: new Map() };
  const db = gatedDatabase(rawDb, dbGate);
  const cacheGate: CacheGate = { reachable: true, errors: 0 };
  let cache: ProductCache;
  try {
    if (opts.seed !== undefined) {
      const data = generateCatalogue({ products: opts.seed.products, users: opts.seed.users, random: new SeededRandom(opts.seed.seed) });
      const inserted = await db.seed(data);
      logger?.info({ instance: name, ...inserted }, 'catalogue seeded');
    }
    cache = await ProductCache.open({
      db,
      store: makeStore(cacheSpec),
      gate: cacheGate,
      strategy: strategy0,
      ttlMs: cacheSpec.ttlMs ?? 30_000,
      name: `${name}-products`,
      clock,
      ...(logger === undefined ? {} : { logger }),
    });
  } catch (err) {
    await rawDb.close();
    await payments?.close();
    throw err;
  }

  const counts = { placed: 0, outOfStock: 0, replayed: 0, published: 0, publishFailed: 0, paymentsAbandoned: 0 };

  // ------------------------------------------------------------------ metrics
  const registry = createRegistry({ labels: { instance: name } });
  const requests = new Counter({ name: 'archlab_app_requests_total', help: 'HTTP requests by route and status.', labelNames: ['route', 'status'] as const, registers: [registry] });
  const latency = new Histogram({
    name: 'archlab_app_request_duration_seconds',
    help: 'Time to answer a request, by route.',
    labelNames: ['route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const fromStats = (metric: string, help: string, read: () => number): void => {
    new Counter({
      name: metric,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  };
  fromStats('archlab_app_cache_hits_total', 'Product reads answered by the cache.', () => cache.stats().hits + cache.stats().staleServed);
  fromStats('archlab_app_cache_misses_total', 'Product reads the cache could not answer.', () => cache.stats().misses);
  new Counter({
    name: 'archlab_app_db_calls_total',
    help: 'Database calls that reached the database, by operation (none while the database is cut off).',
    labelNames: ['op'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [op, n] of dbGate.calls) this.inc({ op }, n);
    },
  });
  fromStats('archlab_app_cache_errors_total', 'Cache calls that failed (cache cut off or down); the app used the database instead.', () => cacheGate.errors);
  new Counter({
    name: 'archlab_app_orders_total',
    help: 'Orders by result.',
    labelNames: ['result'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: 'placed' }, counts.placed);
      this.inc({ result: 'out_of_stock' }, counts.outOfStock);
      this.inc({ result: 'replayed' }, counts.replayed);
    },
  });
  new Counter({
    name: 'archlab_app_events_total',
    help: 'Order events handed to publish(), by result.',
    labelNames: ['result'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: 'published' }, counts.published);
      this.inc({ result: 'failed' }, counts.publishFailed);
    },
  });
  const outbound = new Counter({
    name: 'archlab_app_outbound_total',
    help: 'Outbound calls by target and result (payments: authorized, refused, error, timeout, unreachable, busy).',
    labelNames: ['target', 'result'] as const,
    registers: [registry],
  });
  const outboundLatency = new Histogram({
    name: 'archlab_app_outbound_duration_seconds',
    help: 'Time of an outbound call, by target (calls refused as busy are not timed).',
    labelNames: ['target'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const outboundChildren = new Map<OutboundResult, Counter.Internal>();
  if (payments !== undefined) {
    // Every result at 0 from the start, so a rate over them is defined before the first failure.
    for (const r of OUTBOUND_RESULTS) {
      const child = outbound.labels({ target: 'payments', result: r });
      child.inc(0);
      outboundChildren.set(r, child);
    }
  }
  const paymentsLatency = outboundLatency.labels({ target: 'payments' });
  const observePayment = (result: OutboundResult, seconds: number): void => {
    outboundChildren.get(result)?.inc();
    if (result !== 'busy') paymentsLatency.observe(seconds);
  };
  new Gauge({
    name: 'archlab_app_reachable',
    help: '1 when this instance can reach the dependency, 0 when cut off.',
    labelNames: ['dependency'] as const,
    registers: [registry],
    collect() {
      this.set({ dependency: 'cache' }, cacheGate.reachable ? 1 : 0);
      this.set({ dependency: 'database' }, dbGate.reachable ? 1 : 0);
    },
  });
  new Gauge({
    name: 'archlab_app_cache_strategy',
    help: 'The cache strategy in use (1 on its label).',
    labelNames: ['strategy'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.set({ strategy: cache.strategy }, 1);
    },
  });

  // ------------------------------------------------------------------ handlers
  let closed = false;

  const readJson = async (req: http.IncomingMessage): Promise<unknown> => {
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      throw new AppError('ARCHLAB_APP_UNSUPPORTED_MEDIA_TYPE', `expected Content-Type: application/json, received ${type === '' ? 'none' : JSON.stringify(type.slice(0, 64))}`);
    }
    let body: Buffer;
    try {
      body = await readBody(req, maxBodyBytes);
    } catch (err) {
      if (err instanceof HttpError && err.status === 413) throw new AppError('ARCHLAB_APP_BODY_TOO_LARGE', `request body is over the ${maxBodyBytes}-byte limit`);
      throw err;
    }
    try {
      return JSON.parse(body.toString('utf8')) as unknown;
    } catch (err) {
      throw new AppError('ARCHLAB_APP_BAD_REQUEST', `request body is not JSON: ${(err as Error).message}`);
    }
  };

  const publishEvent = async (event: OrderPlacedEvent): Promise<void> => {
    if (opts.publish === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(() => opts.publish!(event)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ArchlabError('ARCHLAB_APP_PUBLISH_TIMEOUT', `publish took over ${publishTimeoutMs} ms`, { retryable: true })), publishTimeoutMs);
        }),
      ]);
      counts.published++;
    } catch (err) {
      counts.publishFailed++;
      logger?.warn({ err, orderId: event.orderId, instance: name }, 'order event not published (the order stands)');
    } finally {
      clearTimeout(timer);
    }
  };

  /**
   * Steps 1 and 2 of an order with payments (file comment): checks what the commit would refuse,
   * then authorizes price x qty. Throws the AppError the order fails with.
   */
  const authorizePayment = async (client: PaymentsClient, userId: number, productId: number, qty: number): Promise<Authorization> => {
    if ((await db.getUser(userId)) === undefined) throw new AppError('ARCHLAB_APP_UNKNOWN_REFERENCE', `userId: no user ${userId}`, { field: 'userId' });
    const product = await db.getProduct(productId);
    if (product === undefined) throw new AppError('ARCHLAB_APP_UNKNOWN_REFERENCE', `productId: no product ${productId}`, { field: 'productId' });
    if (product.stock < qty) {
      counts.outOfStock++;
      throw new AppError('ARCHLAB_APP_OUT_OF_STOCK', `product ${productId} has ${product.stock} in stock, ${qty} ordered`, { field: 'qty', details: { productId, stock: product.stock, qty } });
    }
    const reference = randomUUID();
    try {
      return await client.authorize({ orderId: reference, userId, amountCents: product.priceCents * qty }, observePayment);
    } catch (err) {
      logger?.info({ err, reference, userId, productId, qty, instance: name }, 'payment not authorized: order refused');
      throw err;
    }
  };

  /** An authorization whose order did not commit: counted and logged; it lapses at payments (file comment). */
  const abandon = (payment: Authorization, why: string, err?: unknown): void => {
    counts.paymentsAbandoned++;
    logger?.warn({ err, chargeId: payment.id, why, instance: name }, 'order not committed after its payment was authorized: the authorization is abandoned');
  };

  /** The 201 of an order: the order, the product's stock right after it, the payment if any. */
  const sendOrder = (res: http.ServerResponse, order: Order, stockAfter: number, payment: { id: string; status: string } | undefined, replayed: boolean): void => {
    const body = { order, product: { id: order.productId, stock: stockAfter }, ...(payment === undefined ? {} : { payment }) };
    send(res, 201, body, { Location: `/api/orders/${order.id}`, ...(replayed ? { 'Idempotent-Replayed': 'true' } : {}) });
  };

  /** A repeat of an idempotency key: the first answer again, if it is the same order; 422 if the key names another. */
  const replayOrder = (res: http.ServerResponse, key: string, existing: KeyedOrder, asked: { userId: number; productId: number; qty: number }): void => {
    const o = existing.order;
    if (o.userId !== asked.userId || o.productId !== asked.productId || o.qty !== asked.qty) {
      // The other order is not described: a key is no credential to read someone's order with.
      throw new AppError('ARCHLAB_APP_IDEMPOTENCY_KEY_REUSED', `${IDEMPOTENCY_KEY_HEADER}: ${JSON.stringify(key.slice(0, 64))} was already used for a different order (userId, productId or qty)`, {
        field: IDEMPOTENCY_KEY_HEADER,
      });
    }
    counts.replayed++;
    sendOrder(res, o, existing.stockAfter, existing.payment, true);
  };

  const placeOrder = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const json = await readJson(req);
    const key = idempotencyKeyOf(req);
    const parsed = zOrderBody.safeParse(json);
    if (!parsed.success) throw badRequest(parsed.error, '');
    const { userId, productId, qty } = parsed.data;
    // A repeat is answered before anything is charged (without payments the order's own
    // transaction finds it, one database call instead of two).
    if (key !== undefined && payments !== undefined) {
      const existing = await db.getOrderByKey(key);
      if (existing !== undefined) return replayOrder(res, key, existing, parsed.data);
    }
    const payment = payments === undefined ? undefined : await authorizePayment(payments, userId, productId, qty);
    const createdMs = clock.now();
    let result: Awaited<ReturnType<CatalogueDb['placeOrder']>>;
    try {
      result = await db.placeOrder({ userId, productId, qty, createdMs, ...(key === undefined ? {} : { idempotencyKey: key }), ...(payment === undefined ? {} : { payment }) });
    } catch (err) {
      if (payment !== undefined) abandon(payment, 'the database failed', err);
      throw err;
    }
    if (!result.ok && payment !== undefined) abandon(payment, result.reason === 'duplicate-key' ? 'a concurrent request with the same idempotency key placed the order' : result.reason);
    if (!result.ok && result.reason === 'duplicate-key') return replayOrder(res, key!, result.existing, parsed.data);
    if (!result.ok) {
      if (result.reason === 'out-of-stock') {
        counts.outOfStock++;
        throw new AppError('ARCHLAB_APP_OUT_OF_STOCK', `product ${productId} has ${result.stock} in stock, ${qty} ordered`, { field: 'qty', details: { productId, stock: result.stock, qty } });
      }
      const field = result.reason === 'no-user' ? 'userId' : 'productId';
      throw new AppError('ARCHLAB_APP_UNKNOWN_REFERENCE', `${field}: no ${result.reason === 'no-user' ? 'user' : 'product'} ${result.reason === 'no-user' ? userId : productId}`, { field });
    }
    counts.placed++;
    const order: Order = result.order;
    await cache.afterOrder(result.product);
    await publishEvent({ type: 'order.placed', orderId: order.id, userId, productId, qty, at: createdMs, instance: name });
    sendOrder(res, order, result.product.stock, payment, false);
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse, path: string, query: URLSearchParams, setRoute: (r: Route) => void): Promise<void> => {
    const method = req.method ?? 'GET';
    const notAllowed = (allow: string): never => {
      res.setHeader('Allow', allow);
      throw new AppError('ARCHLAB_APP_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    };
    if (path === '/healthz') {
      setRoute('GET /healthz');
      if (method !== 'GET' && method !== 'HEAD') notAllowed('GET, HEAD');
      send(res, 200, { status: 'ok', instance: name, cache: cacheGate.reachable ? 'reachable' : 'cut-off', database: dbGate.reachable ? 'reachable' : 'cut-off', strategy: cache.strategy });
      return;
    }
    if (path === '/metrics') {
      setRoute('GET /metrics');
      if (method !== 'GET' && method !== 'HEAD') notAllowed('GET, HEAD');
      const text = await registry.metrics();
      res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (closed) throw new AppError('ARCHLAB_APP_CLOSED', `app instance ${name} is shutting down`);
    let m: RegExpExecArray | null;
    if ((m = /^\/api\/products\/([^/]+)$/.exec(path)) !== null) {
      if (method === 'GET' || method === 'HEAD') {
        setRoute('GET /api/products/:id');
        const id = parseId(m[1]!);
        const product = await cache.read(id);
        if (product === undefined) throw new AppError('ARCHLAB_APP_NOT_FOUND', `no product ${id}`);
        send(res, 200, product);
        return;
      }
      if (method === 'PATCH') {
        setRoute('PATCH /api/products/:id');
        const id = parseId(m[1]!);
        const parsed = zPatchBody.safeParse(await readJson(req));
        if (!parsed.success) throw badRequest(parsed.error, '');
        const product = await cache.update(id, parsed.data);
        if (product === undefined) throw new AppError('ARCHLAB_APP_NOT_FOUND', `no product ${id}`);
        send(res, 200, product);
        return;
      }
      notAllowed('GET, HEAD, PATCH');
    }
    if (path === '/api/products') {
      setRoute('GET /api/products');
      if (method !== 'GET' && method !== 'HEAD') notAllowed('GET, HEAD');
      const parsed = zSearch.safeParse(Object.fromEntries(query));
      if (!parsed.success) throw badRequest(parsed.error, '');
      const products = await db.searchProducts(parsed.data.category, parsed.data.limit);
      send(res, 200, { category: parsed.data.category, limit: parsed.data.limit, products });
      return;
    }
    if (path === '/api/orders') {
      setRoute('POST /api/orders');
      if (method !== 'POST') notAllowed('POST');
      await placeOrder(req, res);
      return;
    }
    if ((m = /^\/api\/orders\/([^/]+)$/.exec(path)) !== null) {
      setRoute('GET /api/orders/:id');
      if (method !== 'GET' && method !== 'HEAD') notAllowed('GET, HEAD');
      const id = parseId(m[1]!);
      const order = await db.getOrder(id);
      if (order === undefined) throw new AppError('ARCHLAB_APP_NOT_FOUND', `no order ${id}`);
      send(res, 200, order);
      return;
    }
    if ((m = /^\/static\/products\/([^/]+)\.svg$/.exec(path)) !== null) {
      setRoute('GET /static/products/:id.svg');
      if (method !== 'GET' && method !== 'HEAD') notAllowed('GET, HEAD');
      const id = parseId(m[1]!);
      const svg = productImage(id);
      const etag = `"p${id}"`;
      const headers = { 'Cache-Control': 'public, max-age=3600', ETag: etag };
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Type': 'image/svg+xml', 'Content-Length': Buffer.byteLength(svg) });
      res.end(method === 'HEAD' ? undefined : svg);
      return;
    }
    throw new AppError('ARCHLAB_APP_NOT_FOUND', `no route ${method} ${path.slice(0, 200)}`);
  };

  /** Any failure as a typed JSON error; database failures (also when wrapped by the cache) are 503. */
  const toAppError = (err: unknown): AppError => {
    const found = findAppError(err);
    if (found !== undefined) return found;
    if (isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') || isArchlabError(err, 'ARCHLAB_CACHE_LOAD_TIMEOUT')) {
      return new AppError('ARCHLAB_APP_DATABASE_UNAVAILABLE', `the database could not answer: ${(err as Error).message}`, { cause: err });
    }
    if (err instanceof InvalidArgumentError) return new AppError('ARCHLAB_APP_BAD_REQUEST', err.message, { cause: err });
    if (err instanceof HttpError) return new AppError(err.status === 413 ? 'ARCHLAB_APP_BODY_TOO_LARGE' : 'ARCHLAB_APP_BAD_REQUEST', err.message, { cause: err });
    return new AppError('ARCHLAB_APP_INTERNAL', 'internal error', { cause: err });
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const started = performance.now();
    let routeName: Route = 'other';
    res.setHeader('X-App-Instance', name);
    res.once('close', () => {
      const status = res.writableFinished ? String(res.statusCode) : 'aborted';
      requests.inc({ route: routeName, status });
      latency.observe({ route: routeName }, (performance.now() - started) / 1000);
    });
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
    route(req, res, path, query, (r) => (routeName = r)).catch((err: unknown) => {
      const e = toAppError(err);
      if (e.code === 'ARCHLAB_APP_INTERNAL') logger?.error({ err, url: target.slice(0, 200), instance: name }, 'request failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const body = { error: { code: e.code, message: e.message, ...(e.field === undefined ? {} : { field: e.field }) } };
      // A body we did not read is not drained: close the connection instead.
      send(res, e.status, body, e.code === 'ARCHLAB_APP_BODY_TOO_LARGE' || e.code === 'ARCHLAB_APP_UNSUPPORTED_MEDIA_TYPE' ? { Connection: 'close' } : {});
    });
  };

  const paymentsStats = (): DemoAppStats['payments'] => {
    const results = payments?.stats() ?? { authorized: 0, refused: 0, error: 0, timeout: 0, unreachable: 0, busy: 0 };
    const failed = results.refused + results.error + results.timeout + results.unreachable + results.busy;
    return { enabled: payments !== undefined, authorized: results.authorized, failed, abandoned: counts.paymentsAbandoned, results };
  };

  return {
    name,
    handler,
    registry,
    get strategy() {
      return cache.strategy;
    },
    setStrategy(s) {
      if (!STRATEGIES.includes(s)) return Promise.reject(new InvalidArgumentError(`unknown cache strategy "${String(s)}": expected one of ${STRATEGIES.join(', ')}`));
      return cache.setStrategy(s);
    },
    setCacheReachable(reachable) {
      cacheGate.reachable = reachable;
      logger?.info({ instance: name, reachable }, 'cache reachability changed');
    },
    setDatabaseReachable(reachable) {
      dbGate.reachable = reachable;
      logger?.info({ instance: name, reachable }, 'database reachability changed');
    },
    stats() {
      return {
        cache: { ...cache.stats(), strategy: cache.strategy, reachable: cacheGate.reachable, errors: cacheGate.errors },
        database: { engine: rawDb.engine, reachable: dbGate.reachable, calls: Object.fromEntries(dbGate.calls) },
        orders: { placed: counts.placed, outOfStock: counts.outOfStock, replayed: counts.replayed },
        events: { published: counts.published, failed: counts.publishFailed },
        payments: paymentsStats(),
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await cache.close();
      } finally {
        try {
          await payments?.close();
        } finally {
          await rawDb.close();
        }
      }
    },
  };
}
