import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../core/metrics.js';
import { CacheMetrics, emptyStats } from './metrics.js';
import type { CacheStats, MeteredCache, WriteBackStats } from './metrics.js';

function fakeCache(name: string, stats: CacheStats, wb?: WriteBackStats): MeteredCache {
  return wb === undefined ? { name, stats: () => stats } : { name, stats: () => stats, writeBackStats: () => wb };
}

/** The value of one series in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('emptyStats', () => {
  test('every counter starts at 0, and each call is a new object', () => {
    const a = emptyStats();
    assert.ok(Object.values(a).every((v) => v === 0));
    assert.deepEqual(Object.keys(a).sort(), ['breakerSkips', 'evictions', 'hits', 'joins', 'loadErrors', 'loadTimeouts', 'loads', 'misses', 'staleServed']);
    a.hits++;
    assert.equal(emptyStats().hits, 0);
  });
});

describe('CacheMetrics', () => {
  test('exports each registered cache\'s counters at scrape time, under its name', async () => {
    const registry = createRegistry();
    const metrics = new CacheMetrics(registry);
    const s = emptyStats();
    metrics.register(fakeCache('items', s));
    s.hits = 5;
    s.misses = 2;
    s.breakerSkips = 3;
    let text = await registry.metrics();
    assert.equal(sample(text, 'archlab_cache_hits_total{cache="items"}'), 5);
    assert.equal(sample(text, 'archlab_cache_misses_total{cache="items"}'), 2);
    assert.equal(sample(text, 'archlab_cache_breaker_skips_total{cache="items"}'), 3);
    s.hits = 9;
    text = await registry.metrics();
    assert.equal(sample(text, 'archlab_cache_hits_total{cache="items"}'), 9, 'read again at the next scrape, not added');
  });

  test('two caches side by side; unregister removes only the registered instance', async () => {
    const registry = createRegistry();
    const metrics = new CacheMetrics(registry);
    const a = fakeCache('a', { ...emptyStats(), loads: 1 });
    const b = fakeCache('b', { ...emptyStats(), loads: 2 });
    metrics.register(a);
    metrics.register(b);
    let text = await registry.metrics();
    assert.equal(sample(text, 'archlab_cache_loads_total{cache="a"}'), 1);
    assert.equal(sample(text, 'archlab_cache_loads_total{cache="b"}'), 2);
    metrics.unregister(fakeCache('a', emptyStats()));
    text = await registry.metrics();
    assert.equal(sample(text, 'archlab_cache_loads_total{cache="a"}'), 1, 'a different object with the same name does not unregister it');
    metrics.unregister(a);
    text = await registry.metrics();
    assert.equal(sample(text, 'archlab_cache_loads_total{cache="a"}'), undefined);
    assert.equal(sample(text, 'archlab_cache_loads_total{cache="b"}'), 2);
  });

  test('write-back gauges only for caches that report them; lag in seconds', async () => {
    const registry = createRegistry();
    const metrics = new CacheMetrics(registry);
    metrics.register(fakeCache('plain', emptyStats()));
    metrics.register(fakeCache('wb', emptyStats(), { queueDepth: 7, flushLagMs: 1500, journalBytes: 4096, flushedWrites: 10, coalescedWrites: 3, flushFailures: 1 }));
    const text = await registry.metrics();
    assert.equal(sample(text, 'archlab_cache_writeback_queue_depth{cache="wb"}'), 7);
    assert.equal(sample(text, 'archlab_cache_writeback_flush_lag_seconds{cache="wb"}'), 1.5);
    assert.equal(sample(text, 'archlab_cache_writeback_journal_bytes{cache="wb"}'), 4096);
    assert.equal(sample(text, 'archlab_cache_writeback_flush_failures{cache="wb"}'), 1);
    assert.equal(sample(text, 'archlab_cache_writeback_queue_depth{cache="plain"}'), undefined);
  });

  test('observeLoad feeds the load latency histogram', async () => {
    const registry = createRegistry();
    const metrics = new CacheMetrics(registry);
    metrics.observeLoad('items', 0.003);
    metrics.observeLoad('items', 0.2);
    const text = await registry.metrics();
    assert.equal(sample(text, 'archlab_cache_load_duration_seconds_count{cache="items"}'), 2);
    assert.equal(sample(text, 'archlab_cache_load_duration_seconds_bucket{le="0.005",cache="items"}'), 1);
    assert.equal(sample(text, 'archlab_cache_load_duration_seconds_bucket{le="0.25",cache="items"}'), 2);
  });
});
