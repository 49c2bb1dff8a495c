import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { sourceConformance } from './conformance.js';
import { sqliteSource } from './sqlite.js';

interface Doc {
  i: number;
  name: string;
  tags: (string | number)[];
  nested: { ok: boolean; none: null };
}
const doc = (i: number): Doc => ({ i, name: `item ${i} ✓`, tags: ['t', i], nested: { ok: i % 2 === 0, none: null } });

interface Item {
  name: string | null;
  price_cents: number | null;
}
const item = (i: number): Item => ({ name: `item ${i}`, price_cents: i * 100 + 1 });

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'archlab-sqlite-'));
}

sourceConformance<Doc>('sqlite, JSON shape, :memory:', {
  make: () => sqliteSource<Doc>({ path: ':memory:', table: 'kv', createTable: true }),
  sample: doc,
  // JSON.stringify throws on a bigint inside the transaction: the whole batch rolls back.
  rejected: { i: 1, name: 'big', tags: [], nested: { ok: true, none: null }, big: 1n } as unknown as Doc,
});

sourceConformance<Doc>('sqlite, JSON shape, file on disk', {
  make: () => sqliteSource<Doc>({ path: join(tempDir(), 'src.db'), table: 'kv', createTable: true }),
  cleanup: async (s) => {
    const file = (s as ReturnType<typeof sqliteSource>).db.name;
    await s.close?.();
    rmSync(join(file, '..'), { recursive: true, force: true });
  },
  sample: doc,
  rejected: { big: 1n } as unknown as Doc,
});

sourceConformance<Item>('sqlite, row shape (the demo items table)', {
  make: () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT, price_cents INTEGER, updated_at INTEGER)');
    return sqliteSource<Item>({ db, table: 'items', valueColumns: ['name', 'price_cents'], updatedAtColumn: 'updated_at' });
  },
  cleanup: async (s) => {
    await s.close?.();
    (s as ReturnType<typeof sqliteSource>).db.close();
  },
  sample: item,
  // An object cannot be bound to a column: better-sqlite3 throws inside the transaction.
  rejected: { name: { not: 'bindable' }, price_cents: 1 } as unknown as Item,
});

test('opening a path sets WAL and busy_timeout; close() closes what it opened, not a given db', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = sqliteSource({ path: join(dir, 'a.db'), table: 'kv', createTable: true, busyTimeoutMs: 123 });
  assert.equal(s.db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(s.db.pragma('busy_timeout', { simple: true }), 123);
  await s.close!();
  assert.equal(s.db.open, false);
  await assert.rejects(s.load('k'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));

  const db = new Database(':memory:');
  t.after(() => db.close());
  const given = sqliteSource({ db, table: 'kv', createTable: true });
  await given.close!();
  assert.equal(db.open, true, 'a database passed in stays open');
});

test('the row shape reads and writes the listed columns and stamps updated_at from the clock', async (t) => {
  const db = new Database(':memory:');
  t.after(() => db.close());
  db.exec('CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT, price_cents INTEGER, updated_at INTEGER)');
  const clock = new ManualClock(1_700_000_000_000);
  const s = sqliteSource<Item & { id?: string }>({ db, table: 'items', valueColumns: ['id', 'name', 'price_cents'], updatedAtColumn: 'updated_at', clock });
  await s.write('i1', { name: 'pen', price_cents: 150 });
  assert.deepEqual(await s.load('i1'), { id: 'i1', name: 'pen', price_cents: 150 }, 'the key column comes back when listed');
  assert.deepEqual(db.prepare('SELECT * FROM items').all(), [{ id: 'i1', name: 'pen', price_cents: 150, updated_at: 1_700_000_000_000 }]);
  clock.advance(5);
  await s.write('i1', { name: 'pen', price_cents: null });
  assert.deepEqual(db.prepare('SELECT price_cents, updated_at FROM items').get(), { price_cents: null, updated_at: 1_700_000_000_005 });
  await assert.rejects(s.write('i2', 'not a row' as never), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
});

test('the JSON shape stores plain JSON text readable by other tools', async (t) => {
  const db = new Database(':memory:');
  t.after(() => db.close());
  const clock = new ManualClock(42);
  const s = sqliteSource<unknown>({ db, table: 'kv', createTable: true, clock });
  await s.write('k', { a: [1, 'two'], at: new Date(0) });
  assert.deepEqual(db.prepare('SELECT key, value, updated_at FROM kv').get(), { key: 'k', value: '{"a":[1,"two"],"at":"1970-01-01T00:00:00.000Z"}', updated_at: 42 });
  assert.deepEqual(await s.load('k'), { a: [1, 'two'], at: '1970-01-01T00:00:00.000Z' }, 'a Date comes back as its ISO string');
  await s.write('str', 'just a string');
  assert.equal(await s.load('str'), 'just a string');
  await s.write('nul', null);
  assert.equal(await s.load('nul'), null, 'null is a value, not a miss');
});

test('names are validated: no SQL through table or column names', () => {
  const db = new Database(':memory:');
  try {
    for (const bad of [{ table: 'kv; DROP TABLE x' }, { table: 'kv', keyColumn: 'id"--' }, { table: 'kv', valueColumns: ['ok', 'a b'] }, { table: 'kv', valueColumns: [] }, { table: 'kv', valueColumns: ['a', 'a'] }, { table: 'kv', updatedAtColumn: 'value' }]) {
      assert.throws(() => sqliteSource({ db, ...bad }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(bad));
    }
    assert.throws(() => sqliteSource({ table: 'kv' }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), 'needs db or path');
    assert.throws(() => sqliteSource({ db, table: 'missing_table' }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.details?.op === 'open');
  } finally {
    db.close();
  }
});

test('statements are prepared once, at construction', async (t) => {
  const db = new Database(':memory:');
  t.after(() => db.close());
  const s = sqliteSource<number>({ db, table: 'kv', createTable: true });
  const original = db.prepare.bind(db);
  let prepares = 0;
  db.prepare = ((sql: string) => {
    prepares++;
    return original(sql);
  }) as typeof db.prepare;
  await s.write('a', 1);
  await s.load('a');
  await s.writeBatch!([{ op: 'put', key: 'b', value: 2 }, { op: 'delete', key: 'a' }]);
  await s.remove('b');
  assert.equal(prepares, 0);
});

test('a database locked by another connection fails fast with a retryable SOURCE_FAILED, then works when released', async (t) => {
  const dir = tempDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'locked.db');
  const s = sqliteSource<number>({ path, table: 'kv', createTable: true, busyTimeoutMs: 20 });
  const other = new Database(path);
  t.after(async () => {
    if (other.inTransaction) other.exec('ROLLBACK');
    other.close();
    await s.close!();
  });
  other.exec('BEGIN IMMEDIATE');
  await assert.rejects(s.writeBatch!([{ op: 'put', key: 'a', value: 1 }]), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
    assert.equal(err.retryable, true);
    assert.match(err.message, /locked|busy/i);
    return true;
  });
  assert.equal(await s.load('a'), undefined, 'WAL: reads still work while another connection writes');
  other.exec('ROLLBACK');
  await s.writeBatch!([{ op: 'put', key: 'a', value: 1 }]);
  assert.equal(await s.load('a'), 1);
});
