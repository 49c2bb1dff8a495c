import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isArchlabError } from '../core/errors.js';
import { cacheConfig, loadCacheConfig } from './config.js';

test('defaults: cache-aside on memory in front of an in-memory SQLite table, units in names', () => {
  const c = cacheConfig({ listeners: [{ port: 0 }] });
  assert.equal(c.cache.strategy, 'cache-aside');
  assert.equal(c.cache.store.kind, 'memory');
  assert.equal(c.cache.store.memory.maxEntries, 10_000);
  assert.equal(c.cache.store.memory.maxBytes, 64 * 1024 * 1024);
  assert.equal(c.cache.store.maxValueBytes, 1024 * 1024);
  assert.equal(c.cache.store.redis.commandTimeoutMs, 250);
  assert.equal(c.cache.ttlMs, 60_000);
  assert.equal(c.cache.jitter, 0.1);
  assert.equal(c.cache.staleWhileRevalidateMs, 0);
  assert.deepEqual(c.cache.loadTimeouts, { softMs: 200, hardMs: 5000 });
  assert.deepEqual(c.cache.breaker, { failureThreshold: 5, openMs: 1000 });
  assert.equal(c.cache.writeBack.durability, 'none');
  assert.equal(c.cache.writeBack.flushIntervalMs, 100);
  assert.equal(c.source.kind, 'sqlite');
  assert.equal(c.source.sqlite.path, ':memory:');
  assert.equal(c.source.seed, 1000);
  assert.equal(c.source.latencyMs, 0);
});

test('write-back durability: a journal with fsync always or every N ms, path relative to the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cache-config-'));
  try {
    const file = join(dir, 'cache.yaml');
    writeFileSync(
      file,
      [
        'listeners: [{ port: 0 }]',
        'cache:',
        '  strategy: write-back',
        '  writeBack:',
        '    durability: { journal: { path: data/wb.journal, fsync: 50ms } }',
        'source: { sqlite: { path: data/items.db } }',
        '',
      ].join('\n'),
    );
    const c = loadCacheConfig(file);
    assert.deepEqual(c.cache.writeBack.durability, { journal: { path: join(dir, 'data/wb.journal'), fsync: { everyMs: 50 }, maxBytes: 64 * 1024 * 1024 } });
    assert.equal(c.source.sqlite.path, join(dir, 'data/items.db'));
    const always = cacheConfig({ listeners: [{ port: 0 }], cache: { writeBack: { durability: { journal: { path: '/tmp/x.journal' } } } } });
    assert.deepEqual(always.cache.writeBack.durability, { journal: { path: '/tmp/x.journal', fsync: 'always', maxBytes: 64 * 1024 * 1024 } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('errors name the file, the path of each bad field and what was expected', () => {
  const yaml = [
    'listeners: [{ port: 0 }]',
    'cache:',
    '  strategy: write-around',
    '  ttl: 10 fortnights',
    '  jitter: 2',
    '  loadTimeouts: { soft: 10s, hard: 1s }',
    '  fleetLease: true',
    '  store: { kind: memory, redis: { url: http://x } }',
    '  writeBack: { durability: { journal: { path: j, fsync: sometimes } } }',
    'source: { kind: mysql, tabel: items }',
    '',
  ].join('\n');
  assert.throws(
    () => cacheConfig(yaml, 'cache.yaml'),
    (e: unknown) => {
      assert.ok(isArchlabError(e, 'ARCHLAB_CONFIG_INVALID'));
      const m = e.message;
      assert.match(m, /invalid config in cache\.yaml/);
      assert.match(m, /cache\.strategy: .*cache-aside.*write-back/);
      assert.match(m, /cache\.ttl: invalid duration "10 fortnights"/);
      assert.match(m, /cache\.jitter/);
      assert.match(m, /cache\.store\.redis\.url: expected a redis:\/\/ or rediss:\/\/ URL/);
      assert.match(m, /cache\.writeBack\.durability/);
      assert.match(m, /source\.kind/);
      assert.match(m, /source\.tabel: unknown key/);
      return true;
    },
  );
  // Cross-field rules run once the fields themselves are valid.
  assert.throws(
    () => cacheConfig({ listeners: [{ port: 0 }], cache: { loadTimeouts: { soft: '10s', hard: '1s' }, fleetLease: true } }),
    (e: unknown) => {
      assert.ok(isArchlabError(e, 'ARCHLAB_CONFIG_INVALID'));
      assert.match(e.message, /cache\.loadTimeouts\.soft: must not exceed loadTimeouts\.hard \(1000ms\)/);
      assert.match(e.message, /cache\.fleetLease: needs store\.kind redis or tiered/);
      return true;
    },
  );
  assert.throws(
    () => cacheConfig({ listeners: [{ port: 0 }], cache: { writeBack: { durability: { journal: { path: 'j', fsync: 'sometimes' } } } } }),
    (e: unknown) => isArchlabError(e, 'ARCHLAB_CONFIG_INVALID') && /cache\.writeBack\.durability\.journal\.fsync: expected "always" or a duration/.test(e.message),
  );
});
