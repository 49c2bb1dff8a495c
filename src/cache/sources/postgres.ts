/**
 * PostgreSQL as the source of truth, through `pg`.
 *
 * Two table shapes, as for SQLite:
 * - `valueColumns: 'json'` (default): `{table}(key TEXT PRIMARY KEY, value JSONB NOT NULL,
 *   updated_at BIGINT)`; values go in as JSON text (a Date becomes its ISO string) and come back as
 *   pg parses jsonb;
 * - `valueColumns: [...]`: a row shape, V an object with those columns. Writes go through
 *   json_populate_recordset, so each property is converted by its column's type from JSON (numbers,
 *   strings, booleans, ISO dates, nested JSON); loads return what pg parses (BIGINT comes back as a
 *   string, pg's default).
 *
 * A batch is one transaction of at most two statements whatever its size: one multi-row upsert for
 * the puts and one DELETE for the deletes, after coalescing the batch per key (last write wins, which
 * leaves the table exactly as applying the writes in order would).
 *
 * Every operation is bounded: `queryTimeoutMs` per statement (pg's client-side query_timeout, plus
 * statement_timeout on the server for pools this source creates) and an overall deadline of
 * connectionTimeoutMs + queryTimeoutMs x statements, so a server that does not answer fails with
 * CacheError('ARCHLAB_CACHE_SOURCE_FAILED') instead of hanging.
 */
import pg from 'pg';
import { SystemClock, type Clock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { CacheError } from '../errors.js';
import type { Source, SourceWrite } from '../types.js';
import { checkTableShape, sourceFailed, type SourceOp } from './function.js';

export interface PostgresSourceOptions {
  /** A pool to use; it is left open by close(). Give this or `connectionString`. */
  pool?: pg.Pool;
  /** A connection string (postgres://user@host:port/db); a pool is created and close() ends it. */
  connectionString?: string;
  /** The table (letters, digits, underscores; case-sensitive, as it is quoted). */
  table: string;
  /** The primary-key column holding cache keys. Default "key" for the JSON shape, "id" for the row shape. */
  keyColumn?: string;
  /** 'json' (default): one JSONB column `value`; or the columns of the row that make up V. */
  valueColumns?: readonly string[] | 'json';
  /** A column set to the clock's epoch ms on every write. Default "updated_at" for the JSON shape, none for the row shape. */
  updatedAtColumn?: string | null;
  /** Creates the table when it does not exist (JSON shape, or row shape with untyped TEXT columns). Default false. */
  createTable?: boolean;
  /** Longest a statement may take, in ms. Default 5000. */
  queryTimeoutMs?: number;
  /** Longest to wait for a connection, in ms (created pools; the overall deadline uses it for given pools too). Default 2000. */
  connectionTimeoutMs?: number;
  /** Connections in a created pool. Default 10. */
  maxConnections?: number;
  /** Name for errors and logs. Default `postgres:<table>`. */
  name?: string;
  /** Time for `updatedAtColumn` and deadlines. Default SystemClock. */
  clock?: Clock;
  /** Where idle-connection errors of a created pool are logged. Default: dropped. */
  logger?: Logger;
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${v}`);
  return v;
}

/** A Source over one PostgreSQL table. */
export function postgresSource<V>(opts: PostgresSourceOptions): Source<V> & { readonly pool: pg.Pool } {
  if ((opts.pool === undefined) === (opts.connectionString === undefined)) {
    throw new InvalidArgumentError('postgresSource needs exactly one of `pool` (a pg.Pool) or `connectionString`');
  }
  const { table, json, keyColumn, valueColumns, updatedAt } = checkTableShape(opts);
  const queryTimeoutMs = positiveInt('queryTimeoutMs', opts.queryTimeoutMs ?? 5000);
  const connectionTimeoutMs = positiveInt('connectionTimeoutMs', opts.connectionTimeoutMs ?? 2000);
  const maxConnections = positiveInt('maxConnections', opts.maxConnections ?? 10);
  const name = opts.name ?? `postgres:${table}`;
  const clock = opts.clock ?? new SystemClock();

  const owned = opts.pool === undefined;
  const pool =
    opts.pool ??
    new pg.Pool({
      connectionString: opts.connectionString,
      max: maxConnections,
      connectionTimeoutMillis: connectionTimeoutMs,
      query_timeout: queryTimeoutMs,
      statement_timeout: queryTimeoutMs,
    });
  if (owned) {
    // An idle client whose server went away emits 'error' on the pool; unhandled, it would kill the process.
    pool.on('error', (err) => opts.logger?.warn({ err, source: name }, 'idle PostgreSQL connection failed'));
  }

  const q = (id: string): string => `"${id}"`;
  const dataColumns = valueColumns.filter((c) => c !== keyColumn);
  const written = [...dataColumns, ...(updatedAt === null ? [] : [updatedAt])];
  const allCols = [keyColumn, ...written];
  const createSql = json
    ? `CREATE TABLE IF NOT EXISTS ${q(table)} (${q(keyColumn)} TEXT PRIMARY KEY, "value" JSONB NOT NULL${updatedAt === null ? '' : `, ${q(updatedAt)} BIGINT`})`
    : `CREATE TABLE IF NOT EXISTS ${q(table)} (${[`${q(keyColumn)} TEXT PRIMARY KEY`, ...dataColumns.map((c) => `${q(c)} TEXT`), ...(updatedAt === null ? [] : [`${q(updatedAt)} BIGINT`])].join(', ')})`;
  const loadSql = `SELECT ${valueColumns.map(q).join(', ')} FROM ${q(table)} WHERE ${q(keyColumn)} = $1`;
  // Rows arrive as one JSON array parameter: one round trip and one statement for any batch size.
  // JSON shape: `e->'value'` keeps a JSON null as jsonb 'null' (jsonb_to_recordset would make it SQL NULL).
  const selectRows = json
    ? `SELECT e->>'${keyColumn}', e->'value'${updatedAt === null ? '' : `, (e->>'${updatedAt}')::bigint`} FROM jsonb_array_elements($1::jsonb) AS e`
    : `SELECT ${allCols.map((c) => `x.${q(c)}`).join(', ')} FROM json_populate_recordset(NULL::${q(table)}, $1::json) AS x`;
  const upsertSql =
    `INSERT INTO ${q(table)} (${allCols.map(q).join(', ')}) ${selectRows} ` +
    (written.length ? `ON CONFLICT (${q(keyColumn)}) DO UPDATE SET ${written.map((c) => `${q(c)} = EXCLUDED.${q(c)}`).join(', ')}` : `ON CONFLICT (${q(keyColumn)}) DO NOTHING`);
  const deleteSql = `DELETE FROM ${q(table)} WHERE ${q(keyColumn)} = ANY($1::text[])`;

  const toRow = (key: string, value: V, nowMs: number): Record<string, unknown> => {
    const row: Record<string, unknown> = {};
    if (json) {
      if (JSON.stringify(value) === undefined) throw new InvalidArgumentError(`value for key "${key}" has no JSON form (${typeof value})`);
      row.value = value;
    } else {
      if (typeof value !== 'object' || value === null) throw new InvalidArgumentError(`row value for key "${key}" must be an object with columns ${dataColumns.join(', ')}`);
      const v = value as Record<string, unknown>;
      for (const c of dataColumns) row[c] = v[c] ?? null;
    }
    row[keyColumn] = key;
    if (updatedAt !== null) row[updatedAt] = nowMs;
    return row;
  };

  let closed = false;
  let ready: Promise<void> | undefined;
  const ensureTable = (): Promise<void> => {
    if (!opts.createTable) return Promise.resolve();
    ready ??= pool.query({ text: createSql, query_timeout: queryTimeoutMs } as pg.QueryConfig).then(
      () => undefined,
      (err: unknown) => {
        ready = undefined; // try again on the next call
        throw err;
      },
    );
    return ready;
  };

  /** Runs `fn` with an overall deadline, so a pool that never hands out a connection cannot hang us. */
  const bounded = <T>(op: SourceOp, key: string | undefined, statements: number, fn: () => Promise<T>): Promise<T> => {
    if (closed) return Promise.reject(new CacheError('ARCHLAB_CACHE_CLOSED', `source ${name} is closed (${op})`));
    const deadlineMs = connectionTimeoutMs + queryTimeoutMs * statements;
    return new Promise<T>((resolve, reject) => {
      const timer = clock.setTimer(deadlineMs, () =>
        reject(sourceFailed(name, op, key, new CacheError('ARCHLAB_CACHE_SOURCE_FAILED', `no answer within ${deadlineMs} ms`))),
      );
      fn().then(
        (v) => {
          timer.cancel();
          resolve(v);
        },
        (err: unknown) => {
          timer.cancel();
          reject(sourceFailed(name, op, key, err));
        },
      );
    });
  };

  const query = (text: string, values: unknown[]): pg.QueryConfig => ({ text, values, query_timeout: queryTimeoutMs }) as pg.QueryConfig;

  return {
    name,
    pool,
    load(key) {
      return bounded('load', key, 2, async () => {
        await ensureTable();
        const res = await pool.query<Record<string, unknown>>(query(loadSql, [key]));
        const row = res.rows[0];
        if (row === undefined) return undefined;
        return (json ? row.value : row) as V;
      });
    },
    write(key, value) {
      return bounded('write', key, 2, async () => {
        const rows = JSON.stringify([toRow(key, value, clock.now())]);
        await ensureTable();
        await pool.query(query(upsertSql, [rows]));
      });
    },
    remove(key) {
      return bounded('remove', key, 2, async () => {
        await ensureTable();
        await pool.query(query(deleteSql, [[key]]));
      });
    },
    writeBatch(writes) {
      const single = writes.length === 1 ? writes[0]!.key : undefined;
      return bounded('writeBatch', single, 5, async () => {
        if (writes.length === 0) return;
        // Last write per key wins; the final table is the same as applying the writes in order.
        const last = new Map<string, SourceWrite<V>>();
        for (const w of writes) {
          last.delete(w.key);
          last.set(w.key, w);
        }
        const nowMs = clock.now();
        const puts: Record<string, unknown>[] = [];
        const deletes: string[] = [];
        for (const w of last.values()) {
          if (w.op === 'put') puts.push(toRow(w.key, w.value, nowMs));
          else deletes.push(w.key);
        }
        const rows = JSON.stringify(puts);
        await ensureTable();
        const client = await pool.connect();
        let broken: Error | undefined;
        try {
          await client.query(query('BEGIN', []));
          if (puts.length) await client.query(query(upsertSql, [rows]));
          if (deletes.length) await client.query(query(deleteSql, [deletes]));
          await client.query(query('COMMIT', []));
        } catch (err) {
          if (err instanceof pg.DatabaseError) {
            // The server refused a statement: the connection is fine, roll back and reuse it.
            await client.query(query('ROLLBACK', [])).catch((rollbackErr: unknown) => {
              broken = rollbackErr as Error;
            });
          } else {
            // Timed out mid-query or lost the server: destroy the connection (the server then aborts
            // the transaction) rather than wait for a ROLLBACK queued behind the stuck statement.
            broken = err as Error;
          }
          throw err;
        } finally {
          client.release(broken);
        }
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      if (owned) await pool.end();
    },
  };
}
