/**
 * SQLite as the source of truth, through better-sqlite3 (the embedded default).
 *
 * better-sqlite3 is synchronous: every method here returns a promise for the Source interface, but
 * the query runs on the calling thread and blocks the event loop while it runs. A point read or an
 * upsert takes microseconds; a 500-write batch is one transaction of a few milliseconds (plus the
 * fsync of the commit). A locked database blocks for up to `busyTimeoutMs` before failing with
 * SQLITE_BUSY, which is why that default is short.
 *
 * Two table shapes:
 * - `valueColumns: 'json'` (default): `{table}(key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at
 *   INTEGER)`, the value stored as plain JSON text (readable by any tool; a Date becomes its ISO
 *   string and a Buffer `{type:'Buffer',data:[...]}`, as JSON.stringify makes them);
 * - `valueColumns: ['name', 'price_cents', ...]`: a row shape, where V is an object with those
 *   columns (numbers, strings, bigints, Buffers or null, what SQLite can bind); a missing property is
 *   written as NULL and a NULL column loads as null.
 */
import Database from 'better-sqlite3';
import { SystemClock, type Clock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { CacheError } from '../errors.js';
import type { Source, SourceWrite } from '../types.js';
import { checkTableShape, sourceFailed } from './function.js';

export interface SqliteSourceOptions {
  /** An open better-sqlite3 database; it is left open by close(). Give this or `path`. */
  db?: Database.Database;
  /**
   * A database file to open (created if missing; ':memory:' for a private in-memory one), with
   * journal_mode=WAL and busy_timeout set; close() closes it.
   */
  path?: string;
  /** The table (letters, digits, underscores). */
  table: string;
  /** The primary-key column holding cache keys. Default "key" for the JSON shape, "id" for the row shape. */
  keyColumn?: string;
  /** 'json' (default): one JSON text column `value`; or the columns of the row that make up V. */
  valueColumns?: readonly string[] | 'json';
  /**
   * A column set to the clock's epoch ms on every write. Default "updated_at" for the JSON shape,
   * none for the row shape (name it, e.g. "updated_at" for the demo `items` table).
   */
  updatedAtColumn?: string | null;
  /** Creates the table when it does not exist. Default false. */
  createTable?: boolean;
  /** How long a write waits for a lock held by another connection, in ms (blocks the event loop). Default 250. Only with `path`. */
  busyTimeoutMs?: number;
  /** Name for errors and logs. Default `sqlite:<table>`. */
  name?: string;
  /** Time for `updatedAtColumn`. Default SystemClock. */
  clock?: Clock;
}

type Bindable = number | string | bigint | Buffer | null;

/** A Source over one SQLite table. Statements are prepared once, at construction. */
export function sqliteSource<V>(opts: SqliteSourceOptions): Source<V> & { readonly db: Database.Database } {
  if ((opts.db === undefined) === (opts.path === undefined)) {
    throw new InvalidArgumentError('sqliteSource needs exactly one of `db` (an open better-sqlite3 Database) or `path`');
  }
  const { table, json, keyColumn, valueColumns, updatedAt } = checkTableShape(opts);
  const busyTimeoutMs = opts.busyTimeoutMs ?? 250;
  if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) throw new InvalidArgumentError(`busyTimeoutMs must be an integer >= 0, got ${busyTimeoutMs}`);
  const name = opts.name ?? `sqlite:${table}`;
  const clock = opts.clock ?? new SystemClock();

  const owned = opts.db === undefined;
  let db: Database.Database;
  try {
    db = opts.db ?? new Database(opts.path!);
  } catch (err) {
    throw sourceFailed(name, 'open', undefined, err);
  }
  try {
    if (owned) {
      // WAL lets readers run while a batch commits; busy_timeout turns a briefly held lock into a wait.
      db.pragma('journal_mode = WAL');
      db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    }
    const q = (id: string): string => `"${id}"`;
    // Columns written by a put, besides the key: the value columns (minus the key if listed) and updated_at.
    const dataColumns = valueColumns.filter((c) => c !== keyColumn);
    const written = [...dataColumns, ...(updatedAt === null ? [] : [updatedAt])];
    if (opts.createTable) {
      const defs = json
        ? [`${q(keyColumn)} TEXT PRIMARY KEY`, `"value" TEXT NOT NULL`]
        : [`${q(keyColumn)} TEXT PRIMARY KEY`, ...dataColumns.map(q)];
      if (updatedAt !== null) defs.push(`${q(updatedAt)} INTEGER`);
      db.exec(`CREATE TABLE IF NOT EXISTS ${q(table)} (${defs.join(', ')})`);
    }
    const selectList = valueColumns.map(q).join(', ');
    const loadStmt = db.prepare<[string], Record<string, unknown>>(`SELECT ${selectList} FROM ${q(table)} WHERE ${q(keyColumn)} = ?`);
    const allCols = [keyColumn, ...written];
    const upsertSql =
      `INSERT INTO ${q(table)} (${allCols.map(q).join(', ')}) VALUES (${allCols.map(() => '?').join(', ')})` +
      (written.length ? ` ON CONFLICT(${q(keyColumn)}) DO UPDATE SET ${written.map((c) => `${q(c)} = excluded.${q(c)}`).join(', ')}` : ` ON CONFLICT(${q(keyColumn)}) DO NOTHING`);
    const upsertStmt = db.prepare<Bindable[]>(upsertSql);
    const deleteStmt = db.prepare<[string]>(`DELETE FROM ${q(table)} WHERE ${q(keyColumn)} = ?`);

    const params = (key: string, value: V): Bindable[] => {
      const out: Bindable[] = [key];
      if (json) {
        const text = JSON.stringify(value);
        if (text === undefined) throw new InvalidArgumentError(`value for key "${key}" has no JSON form (${typeof value})`);
        out.push(text);
      } else {
        if (typeof value !== 'object' || value === null) throw new InvalidArgumentError(`row value for key "${key}" must be an object with columns ${dataColumns.join(', ')}`);
        const row = value as Record<string, unknown>;
        for (const c of dataColumns) out.push((row[c] ?? null) as Bindable);
      }
      if (updatedAt !== null) out.push(clock.now());
      return out;
    };
    const put = (key: string, value: V): void => {
      upsertStmt.run(...params(key, value));
    };
    const batch = db.transaction((writes: readonly SourceWrite<V>[]) => {
      for (const w of writes) {
        if (w.op === 'put') put(w.key, w.value);
        else deleteStmt.run(w.key);
      }
    });

    let closed = false;
    const checkOpen = (op: string): void => {
      if (closed) throw new CacheError('ARCHLAB_CACHE_CLOSED', `source ${name} is closed (${op})`);
    };

    return {
      name,
      db,
      async load(key) {
        checkOpen('load');
        try {
          const row = loadStmt.get(key);
          if (row === undefined) return undefined;
          if (json) return JSON.parse(row.value as string) as V;
          return row as V;
        } catch (err) {
          throw sourceFailed(name, 'load', key, err);
        }
      },
      async write(key, value) {
        checkOpen('write');
        try {
          put(key, value);
        } catch (err) {
          throw sourceFailed(name, 'write', key, err);
        }
      },
      async remove(key) {
        checkOpen('remove');
        try {
          deleteStmt.run(key);
        } catch (err) {
          throw sourceFailed(name, 'remove', key, err);
        }
      },
      async writeBatch(writes) {
        checkOpen('writeBatch');
        if (writes.length === 0) return;
        try {
          // IMMEDIATE takes the write lock up front, so a concurrent writer makes us wait (busy_timeout)
          // at BEGIN rather than fail midway when a read lock would need upgrading.
          batch.immediate(writes);
        } catch (err) {
          throw sourceFailed(name, 'writeBatch', writes.length === 1 ? writes[0]!.key : undefined, err);
        }
      },
      async close() {
        if (closed) return;
        closed = true;
        if (owned) db.close();
      },
    };
  } catch (err) {
    if (owned) db.close();
    if (err instanceof InvalidArgumentError) throw err;
    throw sourceFailed(name, 'open', undefined, err);
  }
}
