/**
 * A PostgreSQL schema of a test's own in the test database (`ARCHLAB_TEST_POSTGRES`, default the
 * machine's `test` database): created empty, its URL sets `search_path` to it, dropped when the test
 * ends. Tests running at once on one database then never see each other's tables.
 */
import type { TestContext } from 'node:test';
import pg from 'pg';
import { InvalidArgumentError } from '../../src/core/errors.js';

export const PG_URL = process.env.ARCHLAB_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface OwnSchema {
  /** The schema's name (`<prefix>_<pid>`). */
  schema: string;
  /** PG_URL with `options=-c search_path=<schema>`: what the code under test connects with. */
  url: string;
  /** A connection of the test's own, for checks; closed after the drop. */
  admin: pg.Client;
}

/** `prefix`: letters, digits and underscores (it becomes part of an SQL identifier). */
export async function ownSchema(t: TestContext, prefix: string): Promise<OwnSchema> {
  if (!/^[a-z][a-z0-9_]*$/.test(prefix)) throw new InvalidArgumentError(`schema prefix must match [a-z][a-z0-9_]*, got "${prefix}"`);
  const schema = `${prefix}_${process.pid}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
  // CASCADE drops the tables even if the code under test still holds an idle connection to them.
  t.after(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });
  return { schema, url: `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`, admin };
}
