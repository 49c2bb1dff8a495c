/**
 * The demo application's database: SQLite through better-sqlite3 (embedded default) or PostgreSQL
 * through pg, behind one async interface. Four tables:
 *
 *   products(id, name, category, price_cents, stock, description)  + index products_category(category, id)
 *   users(id, name, email)
 *   orders(id, user_id, product_id, qty, created_ms)
 *   order_keys(idempotency_key PRIMARY KEY, order_id, stock_after, payment_id, payment_status, created_ms)
 *
 * The search by category reads the index (category, id): rows of one category in id order, so
 * `LIMIT n` stops after n index entries instead of scanning the table (db.test.ts proves the plan on
 * SQLite with EXPLAIN QUERY PLAN).
 *
 * An order takes stock with one conditional UPDATE (`stock >= qty`) and inserts the order row in the
 * same transaction, so two orders can never sell the same unit, on either engine and across app
 * instances sharing the database.
 *
 * An order placed with an idempotency key (the client's Idempotency-Key header) records the key in
 * order_keys in that same transaction, with what the first answer said (the stock after the order,
 * the payment). The key's primary key decides between two requests with one key: exactly one
 * places the order; the other gets `duplicate-key` and the first one's order, and takes nothing.
 * On PostgreSQL the transaction claims the key first (INSERT ... ON CONFLICT DO NOTHING), before it
 * touches stock: a second transaction with the key waits there for the first to commit or roll
 * back, holding no row lock the first needs, so they cannot deadlock; an order refused after the
 * claim (out of stock, unknown user) rolls back and leaves the key unused. On SQLite every order
 * transaction is BEGIN IMMEDIATE, serialised by the write lock: it looks the key up first and
 * inserts it last. A refused order leaves no key, so the client may try again with the same one.
 * Keys are kept as long as their orders.
 *
 * better-sqlite3 is synchronous: each call blocks the event loop for its duration (microseconds for
 * these statements). Several app instances may share one SQLite file (WAL mode); a write waits up
 * to `busyTimeoutMs` for another instance's write lock.
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { InvalidArgumentError, type Logger } from '../../core/index.js';
import type { Order, Product, ProductPatch, SeedData, User } from './data.js';
import { AppError } from './errors.js';

/** Most rows a search returns, whatever the caller asks. */
export const MAX_SEARCH_LIMIT = 100;

/** The payment an order was placed with, as stored with its idempotency key. */
export interface OrderPayment {
  id: string;
  status: string;
}

/** An order placed under an idempotency key, with what its first answer said. */
export interface KeyedOrder {
  order: Order;
  /** The product's stock right after this order took its units. */
  stockAfter: number;
  payment: OrderPayment | undefined;
}

export type PlaceOrderResult =
  | { ok: true; order: Order; product: Product }
  | { ok: false; reason: 'no-product' | 'no-user' }
  | { ok: false; reason: 'out-of-stock'; stock: number }
  /** The key already names an order (placed before, or by a concurrent request): nothing was taken. */
  | { ok: false; reason: 'duplicate-key'; existing: KeyedOrder };

export interface NewOrder {
  userId: number;
  productId: number;
  qty: number;
  createdMs: number;
  /** The client's idempotency key (1..255 visible ASCII, checked by the app): at most one order per key. */
  idempotencyKey?: string;
  /** Stored with the key, so a repeat answers with the same payment. */
  payment?: OrderPayment;
}

export interface ProductUpdate {
  id: number;
  patch: ProductPatch;
}

export interface CatalogueDb {
  readonly engine: 'sqlite' | 'postgres';
  /** Creates the tables and the index when missing. Idempotent. */
  init(): Promise<void>;
  /** Inserts the seed rows whose ids are not there yet (several instances may seed at once); returns rows inserted. */
  seed(data: SeedData): Promise<{ products: number; users: number }>;
  getProduct(id: number): Promise<Product | undefined>;
  /** Products of `category` in id order, at most `limit` (1..MAX_SEARCH_LIMIT). */
  searchProducts(category: string, limit: number): Promise<Product[]>;
  /** Applies catalogue-field updates (never stock) in one transaction; an id with no row is skipped. */
  updateProducts(updates: readonly ProductUpdate[]): Promise<void>;
  /** Takes `qty` units of stock and records the order (and its idempotency key, if any), atomically. */
  placeOrder(o: NewOrder): Promise<PlaceOrderResult>;
  getOrder(id: number): Promise<Order | undefined>;
  /** The order placed under idempotency key `key`, if any. */
  getOrderByKey(key: string): Promise<KeyedOrder | undefined>;
  getUser(id: number): Promise<User | undefined>;
  close(): Promise<void>;
}

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS products (
     id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
     price_cents INTEGER NOT NULL, stock INTEGER NOT NULL CHECK (stock >= 0), description TEXT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS products_category ON products (category, id)`,
  `CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)`,
];
const SQLITE_ORDERS = `CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users (id),
  product_id INTEGER NOT NULL REFERENCES products (id), qty INTEGER NOT NULL, created_ms INTEGER NOT NULL)`;
const POSTGRES_ORDERS = `CREATE TABLE IF NOT EXISTS orders (
  id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id),
  product_id INTEGER NOT NULL REFERENCES products (id), qty INTEGER NOT NULL, created_ms BIGINT NOT NULL)`;
/**
 * One row per idempotency key. order_id is NULL only inside the PostgreSQL transaction that claims
 * the key (it is set before that commits); the primary key is what lets one request per key win.
 */
const ORDER_KEYS = `CREATE TABLE IF NOT EXISTS order_keys (
  idempotency_key TEXT PRIMARY KEY, order_id INTEGER REFERENCES orders (id), stock_after INTEGER,
  payment_id TEXT, payment_status TEXT, created_ms BIGINT NOT NULL)`;
/** An order by its key, with what its first answer said. `?` placeholders, filled per engine. */
const KEYED_ORDER_SQL = `SELECT o.id, o.user_id, o.product_id, o.qty, o.created_ms, k.stock_after, k.payment_id, k.payment_status
  FROM order_keys k JOIN orders o ON o.id = k.order_id WHERE k.idempotency_key = ?`;

const PRODUCT_COLUMNS = 'id, name, category, price_cents, stock, description';
/** The search; its plan is checked in db.test.ts. `?`/`$n` placeholders are filled per engine. */
export const SEARCH_SQL = `SELECT ${PRODUCT_COLUMNS} FROM products WHERE category = ? ORDER BY id LIMIT ?`;

interface ProductRow {
  id: number;
  name: string;
  category: string;
  price_cents: number;
  stock: number;
  description: string;
}
interface OrderRow {
  id: number;
  user_id: number;
  product_id: number;
  qty: number;
  created_ms: number | string;
}
interface KeyedOrderRow extends OrderRow {
  stock_after: number;
  payment_id: string | null;
  payment_status: string | null;
}

const toProduct = (r: ProductRow): Product => ({
  id: Number(r.id),
  name: r.name,
  category: r.category,
  priceCents: Number(r.price_cents),
  stock: Number(r.stock),
  description: r.description,
});
const toOrder = (r: OrderRow): Order => ({
  id: Number(r.id),
  userId: Number(r.user_id),
  productId: Number(r.product_id),
  qty: Number(r.qty),
  createdMs: Number(r.created_ms),
});
const toKeyedOrder = (r: KeyedOrderRow): KeyedOrder => ({
  order: toOrder(r),
  stockAfter: Number(r.stock_after),
  payment: r.payment_id === null ? undefined : { id: r.payment_id, status: r.payment_status ?? '' },
});

/** `SET name = ?, ...` for the fields a patch carries, in a fixed order. */
function patchColumns(patch: ProductPatch): { columns: string[]; values: (string | number)[] } {
  const fields: [string, string | number | undefined][] = [
    ['name', patch.name],
    ['category', patch.category],
    ['price_cents', patch.priceCents],
    ['description', patch.description],
  ];
  const set = fields.filter((f): f is [string, string | number] => f[1] !== undefined);
  return { columns: set.map((f) => f[0]), values: set.map((f) => f[1]) };
}

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_SEARCH_LIMIT) throw new InvalidArgumentError(`limit must be an integer in 1..${MAX_SEARCH_LIMIT}, got ${limit}`);
}

/** A failure of the database itself (not a refused row) as a 503. */
function unavailable(engine: string, op: string, err: unknown): AppError {
  const reason = err instanceof Error ? err.message : String(err);
  return new AppError('ARCHLAB_APP_DATABASE_UNAVAILABLE', `the database (${engine}) failed during ${op}: ${reason}`, { cause: err });
}

export interface SqliteCatalogueOptions {
  /** A file (created if missing) or ":memory:". */
  file: string;
  /** How long a write waits for another connection's lock, in ms (blocks the event loop). Default 250. */
  busyTimeoutMs?: number;
}

/** The catalogue on SQLite. `db` is exposed for tests (EXPLAIN QUERY PLAN). */
export function openSqliteCatalogue(opts: SqliteCatalogueOptions): CatalogueDb & { readonly db: Database.Database } {
  const busyTimeoutMs = opts.busyTimeoutMs ?? 250;
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) throw new InvalidArgumentError(`busyTimeoutMs must be an integer >= 0, got ${busyTimeoutMs}`);
  let db: Database.Database;
  try {
    db = new Database(opts.file);
    if (opts.file !== ':memory:') db.pragma('journal_mode = WAL');
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    db.pragma('foreign_keys = ON');
    for (const sql of [...SCHEMA, SQLITE_ORDERS, ORDER_KEYS]) db.exec(sql);
  } catch (err) {
    throw unavailable('sqlite', `open ${opts.file}`, err);
  }
  const getProduct = db.prepare<[number], ProductRow>(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id = ?`);
  const search = db.prepare<[string, number], ProductRow>(SEARCH_SQL);
  const getOrder = db.prepare<[number], OrderRow>('SELECT id, user_id, product_id, qty, created_ms FROM orders WHERE id = ?');
  const getUser = db.prepare<[number], User>('SELECT id, name, email FROM users WHERE id = ?');
  const insertProduct = db.prepare(`INSERT INTO products (${PRODUCT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`);
  const insertUser = db.prepare('INSERT INTO users (id, name, email) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING');
  const takeStock = db.prepare<[number, number, number], ProductRow>(`UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ? RETURNING ${PRODUCT_COLUMNS}`);
  const stockOf = db.prepare<[number], { stock: number }>('SELECT stock FROM products WHERE id = ?');
  const insertOrder = db.prepare<[number, number, number, number], { id: number }>('INSERT INTO orders (user_id, product_id, qty, created_ms) VALUES (?, ?, ?, ?) RETURNING id');
  const keyedOrder = db.prepare<[string], KeyedOrderRow>(KEYED_ORDER_SQL);
  const insertKey = db.prepare<[string, number, number, string | null, string | null, number]>(
    'INSERT INTO order_keys (idempotency_key, order_id, stock_after, payment_id, payment_status, created_ms) VALUES (?, ?, ?, ?, ?, ?)',
  );
  // Prepared per column set on first use; at most 2^4 shapes.
  const updates = new Map<string, Database.Statement>();
  const updateStmt = (columns: string[]): Database.Statement => {
    const key = columns.join(',');
    let s = updates.get(key);
    if (s === undefined) {
      s = db.prepare(`UPDATE products SET ${columns.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`);
      updates.set(key, s);
    }
    return s;
  };

  const seed = db.transaction((data: SeedData) => {
    let products = 0;
    let users = 0;
    for (const p of data.products) products += insertProduct.run(p.id, p.name, p.category, p.priceCents, p.stock, p.description).changes;
    for (const u of data.users) users += insertUser.run(u.id, u.name, u.email).changes;
    return { products, users };
  });
  const update = db.transaction((list: readonly ProductUpdate[]) => {
    for (const u of list) {
      const { columns, values } = patchColumns(u.patch);
      if (columns.length > 0) updateStmt(columns).run(...values, u.id);
    }
  });
  // Run with .immediate(): the write lock from the start serialises orders, so the key looked up
  // first is still free when it is inserted last (the primary key would refuse a second one anyway).
  const place = db.transaction((o: NewOrder): PlaceOrderResult => {
    const key = o.idempotencyKey;
    if (key !== undefined) {
      const existing = keyedOrder.get(key);
      if (existing !== undefined) return { ok: false, reason: 'duplicate-key', existing: toKeyedOrder(existing) };
    }
    if (getUser.get(o.userId) === undefined) return { ok: false, reason: 'no-user' };
    const row = takeStock.get(o.qty, o.productId, o.qty);
    if (row === undefined) {
      const s = stockOf.get(o.productId);
      return s === undefined ? { ok: false, reason: 'no-product' } : { ok: false, reason: 'out-of-stock', stock: s.stock };
    }
    const { id } = insertOrder.get(o.userId, o.productId, o.qty, o.createdMs)!;
    if (key !== undefined) insertKey.run(key, id, row.stock, o.payment?.id ?? null, o.payment?.status ?? null, o.createdMs);
    return { ok: true, order: { id: Number(id), userId: o.userId, productId: o.productId, qty: o.qty, createdMs: o.createdMs }, product: toProduct(row) };
  });

  const run = <T>(op: string, fn: () => T): Promise<T> => {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      if (err instanceof InvalidArgumentError) return Promise.reject(err);
      return Promise.reject(unavailable('sqlite', op, err));
    }
  };
  let closed = false;
  return {
    engine: 'sqlite',
    db,
    init: () => Promise.resolve(),
    seed: (data) => run('seed', () => seed.immediate(data)),
    getProduct: (id) => run('getProduct', () => {
      const r = getProduct.get(id);
      return r === undefined ? undefined : toProduct(r);
    }),
    searchProducts: (category, limit) => run('searchProducts', () => {
      checkLimit(limit);
      return search.all(category, limit).map(toProduct);
    }),
    updateProducts: (list) => run('updateProducts', () => update.immediate(list)),
    placeOrder: (o) => run('placeOrder', () => place.immediate(o)),
    getOrder: (id) => run('getOrder', () => {
      const r = getOrder.get(id);
      return r === undefined ? undefined : toOrder(r);
    }),
    getOrderByKey: (key) => run('getOrderByKey', () => {
      const r = keyedOrder.get(key);
      return r === undefined ? undefined : toKeyedOrder(r);
    }),
    getUser: (id) => run('getUser', () => getUser.get(id)),
    close: async () => {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}

export interface PostgresCatalogueOptions {
  /** postgres://user@host:port/db (a `?options=-c search_path=...` parameter selects a schema). */
  url: string;
  /** Connections in the pool. Default 10. */
  maxConnections?: number;
  /** Connecting gives up after this, in ms. Default 2000. */
  connectionTimeoutMs?: number;
  /** A statement gives up after this, in ms (client and server side). Default 5000. */
  queryTimeoutMs?: number;
  /** Where idle-connection errors are logged. Default: dropped. */
  logger?: Logger;
}

/** The catalogue on PostgreSQL. Call init() before use (createDemoApp does). */
export function openPostgresCatalogue(opts: PostgresCatalogueOptions): CatalogueDb & { readonly pool: pg.Pool } {
  const positive = (name: string, v: number): number => {
    if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${v}`);
    return v;
  };
  const queryTimeoutMs = positive('queryTimeoutMs', opts.queryTimeoutMs ?? 5000);
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: positive('maxConnections', opts.maxConnections ?? 10),
    connectionTimeoutMillis: positive('connectionTimeoutMs', opts.connectionTimeoutMs ?? 2000),
    query_timeout: queryTimeoutMs,
    statement_timeout: queryTimeoutMs,
  });
  // An idle client whose server went away emits 'error' on the pool; unhandled, it would end the process.
  pool.on('error', (err) => opts.logger?.warn({ err }, 'idle PostgreSQL connection failed'));

  const run = async <T>(op: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw err;
      throw unavailable('postgres', op, err);
    }
  };
  /**
   * Runs `fn` in a transaction on one pooled client; a broken connection is destroyed, not reused.
   * The transaction commits unless `commit(out)` says false (it is then rolled back and `out` returned).
   */
  const tx = async <T>(fn: (c: pg.PoolClient) => Promise<T>, commit: (out: T) => boolean = () => true): Promise<T> => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query(commit(out) ? 'COMMIT' : 'ROLLBACK');
      return out;
    } catch (err) {
      if (err instanceof pg.DatabaseError) {
        await client.query('ROLLBACK').catch((e: unknown) => (broken = e as Error));
      } else {
        broken = err as Error;
      }
      throw err;
    } finally {
      client.release(broken);
    }
  };
  const q = (sql: string): string => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  const SEED_CHUNK = 500;
  let closed = false;

  return {
    engine: 'postgres',
    pool,
    init: () =>
      run('init', async () => {
        // Two instances starting together may race on CREATE ... IF NOT EXISTS; an advisory lock serialises them.
        await tx(async (c) => {
          await c.query('SELECT pg_advisory_xact_lock(837201)');
          for (const sql of [...SCHEMA, POSTGRES_ORDERS, ORDER_KEYS]) await c.query(sql);
        });
      }),
    seed: (data) =>
      run('seed', () =>
        tx(async (c) => {
          let products = 0;
          let users = 0;
          for (let i = 0; i < data.products.length; i += SEED_CHUNK) {
            const rows = data.products.slice(i, i + SEED_CHUNK);
            const r = await c.query(
              `INSERT INTO products (${PRODUCT_COLUMNS}) SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[]) ON CONFLICT (id) DO NOTHING`,
              [rows.map((p) => p.id), rows.map((p) => p.name), rows.map((p) => p.category), rows.map((p) => p.priceCents), rows.map((p) => p.stock), rows.map((p) => p.description)],
            );
            products += r.rowCount ?? 0;
          }
          for (let i = 0; i < data.users.length; i += SEED_CHUNK) {
            const rows = data.users.slice(i, i + SEED_CHUNK);
            const r = await c.query('INSERT INTO users (id, name, email) SELECT * FROM unnest($1::int[], $2::text[], $3::text[]) ON CONFLICT (id) DO NOTHING', [
              rows.map((u) => u.id),
              rows.map((u) => u.name),
              rows.map((u) => u.email),
            ]);
            users += r.rowCount ?? 0;
          }
          return { products, users };
        }),
      ),
    getProduct: (id) =>
      run('getProduct', async () => {
        const r = await pool.query<ProductRow>(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id = $1`, [id]);
        return r.rows[0] === undefined ? undefined : toProduct(r.rows[0]);
      }),
    searchProducts: (category, limit) =>
      run('searchProducts', async () => {
        checkLimit(limit);
        const r = await pool.query<ProductRow>(q(SEARCH_SQL), [category, limit]);
        return r.rows.map(toProduct);
      }),
    updateProducts: (list) =>
      run('updateProducts', () =>
        tx(async (c) => {
          for (const u of list) {
            const { columns, values } = patchColumns(u.patch);
            if (columns.length === 0) continue;
            await c.query(`UPDATE products SET ${columns.map((col, i) => `${col} = $${i + 1}`).join(', ')} WHERE id = $${columns.length + 1}`, [...values, u.id]);
          }
        }),
      ),
    placeOrder: (o) =>
      run('placeOrder', () =>
        tx(
          async (c): Promise<PlaceOrderResult> => {
            const key = o.idempotencyKey;
            if (key !== undefined) {
              // The claim: waits for a concurrent transaction holding the same key to end; gets
              // nothing back when that one committed (or the key was used before).
              const claim = await c.query('INSERT INTO order_keys (idempotency_key, created_ms) VALUES ($1, $2) ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key', [
                key,
                o.createdMs,
              ]);
              if (claim.rowCount === 0) {
                // Read committed: this statement sees the winner's committed row.
                const existing = await c.query<KeyedOrderRow>(q(KEYED_ORDER_SQL), [key]);
                if (existing.rows[0] === undefined) throw new AppError('ARCHLAB_APP_INTERNAL', `idempotency key ${JSON.stringify(key)} is taken but names no order`);
                return { ok: false, reason: 'duplicate-key', existing: toKeyedOrder(existing.rows[0]) };
              }
            }
            const user = await c.query('SELECT 1 FROM users WHERE id = $1', [o.userId]);
            if (user.rowCount === 0) return { ok: false, reason: 'no-user' };
            const taken = await c.query<ProductRow>(`UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 RETURNING ${PRODUCT_COLUMNS}`, [o.qty, o.productId]);
            const row = taken.rows[0];
            if (row === undefined) {
              const s = await c.query<{ stock: number }>('SELECT stock FROM products WHERE id = $1', [o.productId]);
              return s.rows[0] === undefined ? { ok: false, reason: 'no-product' } : { ok: false, reason: 'out-of-stock', stock: Number(s.rows[0].stock) };
            }
            const ins = await c.query<{ id: number }>('INSERT INTO orders (user_id, product_id, qty, created_ms) VALUES ($1, $2, $3, $4) RETURNING id', [o.userId, o.productId, o.qty, o.createdMs]);
            const id = Number(ins.rows[0]!.id);
            if (key !== undefined) {
              await c.query('UPDATE order_keys SET order_id = $2, stock_after = $3, payment_id = $4, payment_status = $5 WHERE idempotency_key = $1', [
                key,
                id,
                row.stock,
                o.payment?.id ?? null,
                o.payment?.status ?? null,
              ]);
            }
            return { ok: true, order: { id, userId: o.userId, productId: o.productId, qty: o.qty, createdMs: o.createdMs }, product: toProduct(row) };
          },
          // A refused order rolls back its claim on the key: the client may try again with it.
          (r) => r.ok || r.reason === 'duplicate-key',
        ),
      ),
    getOrder: (id) =>
      run('getOrder', async () => {
        const r = await pool.query<OrderRow>('SELECT id, user_id, product_id, qty, created_ms FROM orders WHERE id = $1', [id]);
        return r.rows[0] === undefined ? undefined : toOrder(r.rows[0]);
      }),
    getOrderByKey: (key) =>
      run('getOrderByKey', async () => {
        const r = await pool.query<KeyedOrderRow>(q(KEYED_ORDER_SQL), [key]);
        return r.rows[0] === undefined ? undefined : toKeyedOrder(r.rows[0]);
      }),
    getUser: (id) =>
      run('getUser', async () => {
        const r = await pool.query<User>('SELECT id, name, email FROM users WHERE id = $1', [id]);
        return r.rows[0] === undefined ? undefined : { id: Number(r.rows[0].id), name: r.rows[0].name, email: r.rows[0].email };
      }),
    close: async () => {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
