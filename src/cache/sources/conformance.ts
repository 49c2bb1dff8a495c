/**
 * One conformance suite for every Source: SQLite (both table shapes, in memory and on disk),
 * PostgreSQL (test/cache/source-postgres.test.ts) and function sources. Call `sourceConformance`
 * from a test file; it registers one node:test suite.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isArchlabError } from '../../core/errors.js';
import { MAX_KEY_BYTES } from '../errors.js';
import type { Source, SourceWrite } from '../types.js';
import { applyWrites } from './function.js';

export interface SourceConformanceOptions<V> {
  /** A fresh, empty source for one test. */
  make: () => Source<V> | Promise<Source<V>>;
  /** Releases what `make` created (drop a table, delete a file); called even when the test fails. Default: source.close(). */
  cleanup?: (source: Source<V>) => void | Promise<void>;
  /** A value for index i; different i give different values. */
  sample: (i: number) => V;
  /** A value the source refuses inside a transaction (for the atomic-batch test); omit to skip that test. */
  rejected?: V;
  /** Whether writeBatch applies all or nothing. Default true. */
  atomicBatch?: boolean;
  /** A skip message (a service is down), or false. */
  skip?: string | false;
}

function isSourceFailure(err: unknown): boolean {
  return isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.retryable;
}

export function sourceConformance<V>(name: string, opts: SourceConformanceOptions<V>): void {
  const skip = opts.skip ?? false;
  /** Runs `fn` against a fresh source, cleaning up even when it throws. */
  const withSource = (label: string, fn: (s: Source<V>) => Promise<void>): void => {
    test(label, { skip }, async (t) => {
      const source = await opts.make();
      t.after(async () => {
        if (opts.cleanup) await opts.cleanup(source);
        else await source.close?.();
      });
      await fn(source);
    });
  };

  describe(`Source conformance: ${name}`, () => {
    withSource('load of a missing key resolves to undefined', async (s) => {
      assert.equal(await s.load('absent'), undefined);
    });

    withSource('write then load returns an equal value; a second write replaces it', async (s) => {
      await s.write('k1', opts.sample(1));
      assert.deepEqual(await s.load('k1'), opts.sample(1));
      await s.write('k1', opts.sample(2));
      assert.deepEqual(await s.load('k1'), opts.sample(2));
      assert.equal(await s.load('k2'), undefined, 'another key is untouched');
    });

    withSource('remove deletes the value; removing an absent key is not an error', async (s) => {
      await s.write('k', opts.sample(3));
      await s.remove('k');
      assert.equal(await s.load('k'), undefined);
      await s.remove('k');
      await s.remove('never-written');
    });

    withSource('keys are data, never SQL: quotes, unicode, spaces and a 1024-byte key round-trip', async (s) => {
      const keys = [`it's`, `"quoted"`, `'; DROP TABLE x; --`, 'ключ 🔑', ' spaced key ', '%_like\\', 'k'.repeat(MAX_KEY_BYTES)];
      for (const [i, key] of keys.entries()) await s.write(key, opts.sample(10 + i));
      for (const [i, key] of keys.entries()) assert.deepEqual(await s.load(key), opts.sample(10 + i), `key ${JSON.stringify(key.slice(0, 20))}`);
      await s.remove(keys[2]!);
      assert.equal(await s.load(keys[2]!), undefined);
      assert.deepEqual(await s.load(keys[0]!), opts.sample(10), 'removing one key leaves the others');
    });

    withSource('a batch is applied in order: the last write per key wins, deletes included', async (s) => {
      await s.write('gone', opts.sample(0));
      const writes: SourceWrite<V>[] = [
        { op: 'put', key: 'a', value: opts.sample(1) },
        { op: 'put', key: 'b', value: opts.sample(2) },
        { op: 'put', key: 'a', value: opts.sample(3) },
        { op: 'delete', key: 'b' },
        { op: 'delete', key: 'gone' },
        { op: 'put', key: 'c', value: opts.sample(4) },
        { op: 'delete', key: 'c' },
        { op: 'put', key: 'c', value: opts.sample(5) },
        { op: 'delete', key: 'absent' },
      ];
      await applyWrites(s, writes);
      assert.deepEqual(await s.load('a'), opts.sample(3));
      assert.equal(await s.load('b'), undefined);
      assert.equal(await s.load('gone'), undefined);
      assert.deepEqual(await s.load('c'), opts.sample(5));
      await applyWrites(s, []);
    });

    withSource('a batch of 1000 writes lands whole', async (s) => {
      const writes: SourceWrite<V>[] = [];
      for (let i = 0; i < 1000; i++) writes.push({ op: 'put', key: `bulk:${i}`, value: opts.sample(i) });
      await applyWrites(s, writes);
      for (let i = 0; i < 1000; i++) assert.deepEqual(await s.load(`bulk:${i}`), opts.sample(i), `bulk:${i}`);
    });

    withSource('concurrent writes and loads of distinct keys all land', async (s) => {
      await Promise.all(Array.from({ length: 50 }, (_, i) => s.write(`c:${i}`, opts.sample(i))));
      const got = await Promise.all(Array.from({ length: 50 }, (_, i) => s.load(`c:${i}`)));
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => opts.sample(i)));
    });

    if (opts.rejected !== undefined) {
      const rejected = opts.rejected;
      withSource('a refused write fails with ARCHLAB_CACHE_SOURCE_FAILED naming the key and op', async (s) => {
        await assert.rejects(s.write('bad', rejected), (err: unknown) => {
          assert.ok(isSourceFailure(err), `expected a retryable SOURCE_FAILED, got ${String(err)}`);
          assert.equal((err as { details: Record<string, unknown> }).details.key, 'bad');
          assert.equal((err as { details: Record<string, unknown> }).details.op, 'write');
          return true;
        });
        assert.equal(await s.load('bad'), undefined);
      });

      if (opts.atomicBatch ?? true) {
        withSource('a batch with a refused write applies nothing (one transaction)', async (s) => {
          await s.write('before', opts.sample(7));
          const batch: SourceWrite<V>[] = [
            { op: 'put', key: 'ok1', value: opts.sample(1) },
            { op: 'delete', key: 'before' },
            { op: 'put', key: 'bad', value: rejected },
            { op: 'put', key: 'ok2', value: opts.sample(2) },
          ];
          await assert.rejects(applyWrites(s, batch), (err: unknown) => isSourceFailure(err));
          assert.equal(await s.load('ok1'), undefined);
          assert.equal(await s.load('ok2'), undefined);
          assert.deepEqual(await s.load('before'), opts.sample(7), 'the delete was rolled back');
        });
      }
    }
  });
}
