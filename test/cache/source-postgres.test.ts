/**
 * The Source conformance suite and PostgreSQL-specific behaviour against the real server on the
 * machine (127.0.0.1:5432, database `test`). Every test uses its own table, named for this run, and
 * drops it afterwards.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import pg from 'pg';
import { isArchlabError } from '../../src/core/errors.js';
import { sourceConformance } from '../../src/cache/sources/conformance.js';
import { postgresSource } from '../../src/cache/sources/postgres.js';
import type { Source } from '../../src/cache/types.js';
import { needService, POSTGRES } from '../support/services.js';

const CONNECTION = process.env.ARCHLAB_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
const skip = await needService(POSTGRES);
const RUN = `archlab_src_${process.pid}_${randomBytes(3).toString('hex')}`;
let tables = 0;
const nextTable = (): string => `${RUN}_${tables++}`;

const admin = skip ? undefined : new pg.Pool({ connectionString: CONNECTION, max: 2 });
after(async () => {
  await admin?.end();
});

async function drop(table: string): Promise<void> {
  await admin!.query(`DROP TABLE IF EXISTS "${table}"`);
}

type Named<V> = Source<V> & { table: string };

function jsonSource<V>(): Named<V> {
  const table = nextTable();
  return Object.assign(postgresSource<V>({ connectionString: CONNECTION, table, createTable: true, maxConnections: 3 }), { table });
}

interface Doc {
  i: number;
  name: string;
  tags: (string | number)[];
  nested: { ok: boolean; none: null };
}

sourceConformance<Doc>('postgres, JSON shape (jsonb)', {
  skip,
  make: () => jsonSource<Doc>(),
  cleanup: async (s) => {
    await s.close?.();
    await drop((s as Named<Doc>).table);
  },
  sample: (i) => ({ i, name: `item ${i} ✓`, tags: ['t', i], nested: { ok: i % 2 === 0, none: null } }),
  // jsonb refuses \u0000 in strings: a server-side error inside the transaction.
  rejected: { i: 0, name: 'nul \u0000 inside', tags: [], nested: { ok: true, none: null } },
});

interface Item {
  name: string | null;
  price_cents: number | null;
}

sourceConformance<Item>('postgres, row shape (the demo items table)', {
  skip,
  make: async () => {
    const table = nextTable();
    await admin!.query(`CREATE TABLE "${table}" (id TEXT PRIMARY KEY, name TEXT, price_cents INTEGER, updated_at BIGINT)`);
    return Object.assign(postgresSource<Item>({ connectionString: CONNECTION, table, valueColumns: ['name', 'price_cents'], updatedAtColumn: 'updated_at', maxConnections: 3 }), { table });
  },
  cleanup: async (s) => {
    await s.close?.();
    await drop((s as Named<Item>).table);
  },
  sample: (i) => ({ name: `item ${i}`, price_cents: i * 100 + 1 }),
  rejected: { name: 'x', price_cents: 'not a number' as unknown as number },
});

test('a batch is one transaction: a statement blocked by a lock times out, nothing is applied, and the pool recovers', { skip }, async (t) => {
  const table = nextTable();
  const s = postgresSource<number>({ connectionString: CONNECTION, table, createTable: true, queryTimeoutMs: 300, maxConnections: 2 });
  const locker = skip ? undefined : await admin!.connect();
  t.after(async () => {
    await locker?.query('ROLLBACK').catch(() => undefined);
    locker?.release();
    await s.close!();
    await drop(table);
  });
  await s.write('a', 1);
  await locker!.query('BEGIN');
  await locker!.query(`LOCK TABLE "${table}" IN ACCESS EXCLUSIVE MODE`);
  await assert.rejects(s.writeBatch!([{ op: 'put', key: 'b', value: 2 }, { op: 'delete', key: 'a' }]), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'), String(err));
    assert.equal(err.details?.op, 'writeBatch');
    return true;
  });
  await assert.rejects(s.load('a'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.details?.key === 'a');
  await locker!.query('ROLLBACK');
  assert.equal(await s.load('a'), 1, 'the delete of the timed-out batch was not applied');
  assert.equal(await s.load('b'), undefined);
  await s.writeBatch!([{ op: 'put', key: 'b', value: 2 }]);
  assert.equal(await s.load('b'), 2);
});

test('a given pool is used and left open; values are stored as jsonb', { skip }, async (t) => {
  const table = nextTable();
  const pool = new pg.Pool({ connectionString: CONNECTION, max: 2 });
  const s = postgresSource<unknown>({ pool, table, createTable: true });
  t.after(async () => {
    await s.close!();
    await drop(table);
    await pool.end();
  });
  await s.write('d', { at: new Date(0), list: [1, 'x'], s: 'plain' });
  await s.write('str', 'just a string');
  await s.write('nul', null);
  const row = await pool.query(`SELECT jsonb_typeof(value) AS t, value->>'at' AS at FROM "${table}" WHERE key = 'd'`);
  assert.deepEqual(row.rows[0], { t: 'object', at: '1970-01-01T00:00:00.000Z' });
  assert.deepEqual(await s.load('d'), { at: '1970-01-01T00:00:00.000Z', list: [1, 'x'], s: 'plain' });
  assert.equal(await s.load('str'), 'just a string');
  assert.equal(await s.load('nul'), null);
  await s.close!();
  assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1, 'the pool is still usable');
});
