/**
 * A source made of async functions (any loader/writer pair: an HTTP API, another service, a test
 * fake), and the helpers every source shares: identifier and table-shape checks for SQL sources and
 * the wrapping of failures into CacheError('ARCHLAB_CACHE_SOURCE_FAILED') with the key and the
 * operation.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { CacheError } from '../errors.js';
import type { Source, SourceWrite } from '../types.js';

/** What a source was doing when it failed, as reported in CacheError details. */
export type SourceOp = 'open' | 'load' | 'write' | 'remove' | 'writeBatch' | 'close';

/**
 * Wraps `cause` as CacheError('ARCHLAB_CACHE_SOURCE_FAILED') naming the source, key and op. A
 * CacheError is passed through unchanged (it already says what happened).
 */
export function sourceFailed(source: string, op: SourceOp, key: string | undefined, cause: unknown): CacheError {
  if (cause instanceof CacheError) return cause;
  const reason = cause instanceof Error ? cause.message : String(cause);
  const where = key === undefined ? '' : ` for key "${key.length > 64 ? key.slice(0, 64) + '...' : key}"`;
  return new CacheError('ARCHLAB_CACHE_SOURCE_FAILED', `source ${source}: ${op}${where} failed: ${reason}`, {
    cause,
    details: { source, op, ...(key === undefined ? {} : { key }) },
  });
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Checks a table or column name before it is spliced into SQL (identifiers cannot be bound as
 * parameters): letters, digits and underscores, not starting with a digit, at most 63 characters
 * (PostgreSQL's limit).
 */
export function checkIdentifier(what: string, name: unknown): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name) || name.length > 63) {
    throw new InvalidArgumentError(`${what} must match ${IDENTIFIER.source} and be at most 63 characters, got ${JSON.stringify(name)}`, {
      [what]: name,
    });
  }
  return name;
}

/** The table options the SQL sources share (see SqliteSourceOptions / PostgresSourceOptions). */
export interface TableShapeOptions {
  table: string;
  keyColumn?: string;
  valueColumns?: readonly string[] | 'json';
  updatedAtColumn?: string | null;
}

/** A SQL source's table layout, checked, with the defaults of its shape filled in. */
export interface TableShape {
  table: string;
  /** The JSON shape (one `value` column) rather than a row shape. */
  json: boolean;
  keyColumn: string;
  valueColumns: string[];
  updatedAt: string | null;
}

/**
 * Checks the table options of a SQL source at construction: every name an identifier, at least one
 * value column and no duplicates, updatedAtColumn distinct from the key and value columns. Defaults:
 * key column "key" (JSON shape) or "id" (row shape); updatedAtColumn "updated_at" for the JSON
 * shape, none for the row shape.
 */
export function checkTableShape(opts: TableShapeOptions): TableShape {
  const table = checkIdentifier('table', opts.table);
  const json = opts.valueColumns === undefined || opts.valueColumns === 'json';
  const keyColumn = checkIdentifier('keyColumn', opts.keyColumn ?? (json ? 'key' : 'id'));
  const valueColumns = json ? ['value'] : [...(opts.valueColumns as readonly string[])].map((c) => checkIdentifier('valueColumns[]', c));
  if (valueColumns.length === 0) throw new InvalidArgumentError('valueColumns must list at least one column (or be "json")');
  if (new Set(valueColumns).size !== valueColumns.length) throw new InvalidArgumentError(`valueColumns has a duplicate: ${valueColumns.join(', ')}`);
  const updatedAt = opts.updatedAtColumn === undefined ? (json ? 'updated_at' : null) : opts.updatedAtColumn;
  if (updatedAt !== null) checkIdentifier('updatedAtColumn', updatedAt);
  if (updatedAt !== null && (valueColumns.includes(updatedAt) || updatedAt === keyColumn)) {
    throw new InvalidArgumentError(`updatedAtColumn "${updatedAt}" is also a key or value column`);
  }
  return { table, json, keyColumn, valueColumns, updatedAt };
}

/** Applies `writes` in order through a source's own writeBatch, or one by one when it has none. */
export async function applyWrites<V>(source: Source<V>, writes: readonly SourceWrite<V>[]): Promise<void> {
  if (writes.length === 0) return;
  if (source.writeBatch) return source.writeBatch(writes);
  for (const w of writes) {
    if (w.op === 'put') await source.write(w.key, w.value);
    else await source.remove(w.key);
  }
}

export interface FunctionSourceOptions<V> {
  /** Name for errors and logs. Default "function". */
  name?: string;
  /** Resolves to the value for `key`, or undefined when there is none. */
  load: (key: string) => Promise<V | undefined>;
  /** Creates or replaces the value. Without it the source is read-only: writes fail with ARCHLAB_INVALID_ARGUMENT. */
  write?: (key: string, value: V) => Promise<void>;
  /** Removes the value (must not fail when absent). Without it removes fail like writes. */
  remove?: (key: string) => Promise<void>;
  /**
   * Applies many writes at once, in order, ideally atomically. Without it, callers (write-back) apply
   * the writes one by one through write/remove, so a failure can leave a prefix applied.
   */
  writeBatch?: (writes: readonly SourceWrite<V>[]) => Promise<void>;
  /** Releases whatever the functions hold. */
  close?: () => Promise<void>;
}

/**
 * A Source over plain async functions. Failures surface as CacheError('ARCHLAB_CACHE_SOURCE_FAILED')
 * with the key and op (a CacheError thrown by a function passes through unchanged).
 */
export function functionSource<V>(opts: FunctionSourceOptions<V>): Source<V> {
  if (typeof opts !== 'object' || opts === null || typeof opts.load !== 'function') {
    throw new InvalidArgumentError('functionSource needs at least a load(key) function');
  }
  const name = opts.name ?? 'function';
  const { load, write, remove, writeBatch, close } = opts;
  const readOnly = (op: SourceOp): InvalidArgumentError =>
    new InvalidArgumentError(`source ${name} is read-only: it was given no ${op} function`, { source: name, op });

  const source: Source<V> = {
    name,
    async load(key) {
      try {
        return await load(key);
      } catch (err) {
        throw sourceFailed(name, 'load', key, err);
      }
    },
    async write(key, value) {
      if (!write) throw readOnly('write');
      try {
        await write(key, value);
      } catch (err) {
        throw sourceFailed(name, 'write', key, err);
      }
    },
    async remove(key) {
      if (!remove) throw readOnly('remove');
      try {
        await remove(key);
      } catch (err) {
        throw sourceFailed(name, 'remove', key, err);
      }
    },
  };
  if (writeBatch) {
    source.writeBatch = async (writes) => {
      try {
        await writeBatch(writes);
      } catch (err) {
        throw sourceFailed(name, 'writeBatch', writes.length === 1 ? writes[0]!.key : undefined, err);
      }
    };
  }
  if (close) {
    source.close = async () => {
      try {
        await close();
      } catch (err) {
        throw sourceFailed(name, 'close', undefined, err);
      }
    };
  }
  return source;
}
