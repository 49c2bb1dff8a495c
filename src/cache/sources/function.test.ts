import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isArchlabError } from '../../core/errors.js';
import { CacheError } from '../errors.js';
import type { SourceWrite } from '../types.js';
import { sourceConformance } from './conformance.js';
import { applyWrites, checkIdentifier, functionSource, sourceFailed } from './function.js';

interface Doc {
  i: number;
  name: string;
  bad?: true;
}

/** A Map behind async functions; a value with `bad` is refused, like a constraint violation. */
function mapFunctions(withBatch: boolean) {
  const rows = new Map<string, Doc>();
  const check = (value: Doc): void => {
    // A plain error, as a driver would throw on a constraint violation.
    if (value.bad) throw new RangeError('refused: bad value');
  };
  return {
    rows,
    load: async (key: string) => rows.get(key),
    write: async (key: string, value: Doc) => {
      check(value);
      rows.set(key, value);
    },
    remove: async (key: string) => {
      rows.delete(key);
    },
    ...(withBatch
      ? {
          // All or nothing: apply to a copy, swap it in only when every write passed.
          writeBatch: async (writes: readonly SourceWrite<Doc>[]) => {
            const next = new Map(rows);
            for (const w of writes) {
              if (w.op === 'put') {
                check(w.value);
                next.set(w.key, w.value);
              } else next.delete(w.key);
            }
            rows.clear();
            for (const [k, v] of next) rows.set(k, v);
          },
        }
      : {}),
  };
}

const sample = (i: number): Doc => ({ i, name: `item ${i}` });

sourceConformance<Doc>('function source with an atomic writeBatch', {
  make: () => functionSource({ name: 'map', ...mapFunctions(true) }),
  sample,
  rejected: { i: -1, name: 'bad', bad: true },
});

sourceConformance<Doc>('function source without writeBatch (writes applied one by one)', {
  make: () => functionSource({ name: 'map', ...mapFunctions(false) }),
  sample,
  rejected: { i: -1, name: 'bad', bad: true },
  atomicBatch: false,
});

test('a function source without write or remove is read-only: writes fail with a typed error, loads work', async () => {
  const s = functionSource<number>({ name: 'ro', load: async (k) => (k === 'one' ? 1 : undefined) });
  assert.equal(await s.load('one'), 1);
  await assert.rejects(s.write('x', 1), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT') && /read-only/.test(err.message) && !err.retryable);
  await assert.rejects(s.remove('x'), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  assert.equal(s.writeBatch, undefined, 'no writeBatch: callers apply writes one by one');
  await assert.rejects(applyWrites(s, [{ op: 'put', key: 'x', value: 2 }]), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
});

test('a function source needs a load function', () => {
  assert.throws(() => functionSource({} as never), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
});

test('failures become retryable ARCHLAB_CACHE_SOURCE_FAILED with source, key, op and cause', async () => {
  const boom = new TypeError('connection reset');
  const s = functionSource<number>({
    name: 'flaky',
    load: async () => {
      throw boom;
    },
    write: async () => {
      throw boom;
    },
    writeBatch: async () => {
      throw boom;
    },
  });
  await assert.rejects(s.load('k1'), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'));
    assert.equal(err.retryable, true);
    assert.deepEqual(err.details, { source: 'flaky', op: 'load', key: 'k1' });
    assert.equal(err.cause, boom);
    assert.match(err.message, /flaky: load for key "k1" failed: connection reset/);
    return true;
  });
  await assert.rejects(s.write('k2', 1), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.details?.op === 'write');
  await assert.rejects(s.writeBatch!([{ op: 'delete', key: 'k3' }]), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.details?.key === 'k3');
});

test('a CacheError thrown by a function passes through unchanged', async () => {
  const own = new CacheError('ARCHLAB_CACHE_LOAD_TIMEOUT', 'upstream too slow');
  const s = functionSource<number>({
    load: async () => {
      throw own;
    },
  });
  await assert.rejects(s.load('k'), (err: unknown) => err === own);
  assert.equal(sourceFailed('x', 'load', 'k', own), own);
});

test('identifiers are checked before they reach SQL', () => {
  for (const good of ['items', '_t', 'T1', 'price_cents']) assert.equal(checkIdentifier('table', good), good);
  for (const bad of ['', '1t', 'items; DROP TABLE x', 'a-b', 'a"b', 'é', 'x'.repeat(64), 5, undefined]) {
    assert.throws(() => checkIdentifier('table', bad), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), String(bad));
  }
});
