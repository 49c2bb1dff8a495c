/**
 * Prometheus series of the cache block. The hit path only bumps plain numbers in a CacheStats object
 * (no label lookup per get); the counters below read those numbers at scrape time. Label values are
 * cache names from code or config: bounded.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../core/metrics.js';

/** Plain counters a strategy keeps (all totals since construction). */
export interface CacheStats {
  /** Fresh entries served (including negative entries). */
  hits: number;
  /** Reads that found nothing usable. */
  misses: number;
  /** Stale entries served: while revalidating, after a load error, or past the soft load timeout. */
  staleServed: number;
  /** Source loads started (a joined caller does not start one). */
  loads: number;
  /** Loads that failed. */
  loadErrors: number;
  /** Loads that passed the hard timeout. */
  loadTimeouts: number;
  /** Callers that joined a load in flight (single-flight), in this process or through the fleet lease. */
  joins: number;
  /** Entries that left the store on their own (capacity or expiry), where the store reports it. */
  evictions: number;
  /** Store calls skipped because the circuit breaker was open. */
  breakerSkips: number;
}

export function emptyStats(): CacheStats {
  return { hits: 0, misses: 0, staleServed: 0, loads: 0, loadErrors: 0, loadTimeouts: 0, joins: 0, evictions: 0, breakerSkips: 0 };
}

/** What a write-back cache reports about its flusher and journal. */
export interface WriteBackStats {
  /** Distinct keys waiting to be flushed to the source. */
  queueDepth: number;
  /** Age in ms of the oldest write not yet flushed (0 when none). */
  flushLagMs: number;
  /** Bytes in the journal file (0 without a journal). */
  journalBytes: number;
  /** Writes applied to the source. */
  flushedWrites: number;
  /** Writes absorbed by coalescing (a later write to the same key replaced one not yet flushed). */
  coalescedWrites: number;
  /** Flush attempts that failed (the batch is retried with backoff). */
  flushFailures: number;
}

export interface MeteredCache {
  readonly name: string;
  stats(): CacheStats;
  writeBackStats?(): WriteBackStats;
}

export class CacheMetrics {
  private readonly caches = new Map<string, MeteredCache>();
  private readonly loadSeconds: Histogram<'cache'>;

  constructor(registry: Registry) {
    const p = METRIC_PREFIX + 'cache_';
    const caches = this.caches;
    // What every series below shares: the name prefix, one `cache` label, the registry.
    const series = (name: string, help: string) => ({ name: p + name, help, labelNames: ['cache'] as const, registers: [registry] });
    const counter = (name: string, help: string, field: keyof CacheStats): void => {
      new Counter({
        ...series(name, help),
        collect() {
          this.reset();
          for (const c of caches.values()) this.inc({ cache: c.name }, c.stats()[field]);
        },
      });
    };
    counter('hits_total', 'Fresh entries served.', 'hits');
    counter('misses_total', 'Reads that found nothing usable in the cache.', 'misses');
    counter('stale_served_total', 'Stale entries served (revalidating, load error, soft timeout).', 'staleServed');
    counter('loads_total', 'Loads from the source started.', 'loads');
    counter('load_errors_total', 'Loads from the source that failed.', 'loadErrors');
    counter('load_timeouts_total', 'Loads that passed the hard load timeout.', 'loadTimeouts');
    counter('singleflight_joins_total', 'Callers that joined a load already in flight.', 'joins');
    counter('evictions_total', 'Entries evicted for capacity or expired.', 'evictions');
    counter('breaker_skips_total', 'Store calls skipped while the circuit breaker was open.', 'breakerSkips');
    const gauge = (name: string, help: string, read: (s: WriteBackStats) => number): void => {
      new Gauge({
        ...series(name, help),
        collect() {
          this.reset();
          for (const c of caches.values()) {
            const s = c.writeBackStats?.();
            if (s) this.set({ cache: c.name }, read(s));
          }
        },
      });
    };
    gauge('writeback_queue_depth', 'Keys waiting to be flushed to the source.', (s) => s.queueDepth);
    gauge('writeback_flush_lag_seconds', 'Age of the oldest write not yet flushed.', (s) => s.flushLagMs / 1000);
    gauge('writeback_journal_bytes', 'Size of the write-back journal.', (s) => s.journalBytes);
    gauge('writeback_flushed_writes', 'Writes applied to the source since start.', (s) => s.flushedWrites);
    gauge('writeback_flush_failures', 'Failed flush attempts since start.', (s) => s.flushFailures);
    this.loadSeconds = new Histogram({
      ...series('load_duration_seconds', 'Time a source load took.'),
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    });
  }

  /** Exports `cache`'s stats under its name (a later cache with the same name replaces it). */
  register(cache: MeteredCache): void {
    this.caches.set(cache.name, cache);
  }

  unregister(cache: MeteredCache): void {
    if (this.caches.get(cache.name) === cache) this.caches.delete(cache.name);
  }

  observeLoad(cache: string, seconds: number): void {
    this.loadSeconds.observe({ cache }, seconds);
  }
}
