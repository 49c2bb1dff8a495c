import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../core/metrics.js';

/** The balancer's Prometheus series. Label values are pool and backend ids from the config: bounded. */
export class BalancerMetrics {
  readonly requests: Counter<'pool' | 'backend' | 'code'>;
  readonly latency: Histogram<'pool' | 'backend'>;
  readonly retries: Counter<'pool'>;
  readonly ejections: Counter<'pool' | 'backend'>;
  readonly healthTransitions: Counter<'pool' | 'backend' | 'to'>;
  readonly active: Gauge<'pool' | 'backend'>;
  readonly rejected: Counter<'reason'>;
  /** L4: bytes relayed per backend, read from the Backend totals at scrape time (no per-chunk label lookup). */
  readonly l4Bytes: Counter<'pool' | 'backend' | 'direction'>;
  readonly l4Connections: Counter<'listener' | 'pool' | 'backend'>;
  readonly l4Dropped: Counter<'listener' | 'reason'>;
  readonly bufferedBodies: Gauge;

  /**
   * `backends` lists every backend at scrape time; `connections`, `bytesIn` and `bytesOut` (the L4
   * totals) are exported for backends that have had an L4 connection or flow. `bufferedBytes` reads
   * the request body bytes held for retries now (the L7 proxy's), 0 when absent.
   */
  constructor(
    registry: Registry,
    backends: () => Iterable<{ pool: string; backend: string; active: number; connections?: number; bytesIn?: number; bytesOut?: number }>,
    bufferedBytes: () => number = () => 0,
  ) {
    const p = METRIC_PREFIX + 'balancer_';
    this.requests = new Counter({ name: `${p}requests_total`, help: 'Requests answered, by pool, backend and status code (backend "-" when none was reached).', labelNames: ['pool', 'backend', 'code'], registers: [registry] });
    this.latency = new Histogram({
      name: `${p}request_duration_seconds`,
      help: 'Time from request received to response finished.',
      labelNames: ['pool', 'backend'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.retries = new Counter({ name: `${p}retries_total`, help: 'Requests retried on another backend.', labelNames: ['pool'], registers: [registry] });
    this.ejections = new Counter({ name: `${p}ejections_total`, help: 'Backends ejected by passive health checks.', labelNames: ['pool', 'backend'], registers: [registry] });
    this.healthTransitions = new Counter({ name: `${p}health_transitions_total`, help: 'Active health check transitions.', labelNames: ['pool', 'backend', 'to'], registers: [registry] });
    this.rejected = new Counter({ name: `${p}rejected_total`, help: 'Requests refused before reaching a backend, by reason.', labelNames: ['reason'], registers: [registry] });
    this.l4Bytes = new Counter({
      name: `${p}l4_bytes_total`,
      help: 'Bytes relayed by tcp and udp listeners: direction "in" client to backend, "out" backend to client.',
      labelNames: ['pool', 'backend', 'direction'],
      registers: [registry],
      collect() {
        this.reset();
        for (const b of backends()) {
          if (!b.connections) continue;
          this.inc({ pool: b.pool, backend: b.backend, direction: 'in' }, b.bytesIn ?? 0);
          this.inc({ pool: b.pool, backend: b.backend, direction: 'out' }, b.bytesOut ?? 0);
        }
      },
    });
    this.l4Connections = new Counter({
      name: `${p}l4_connections_total`,
      help: 'TCP connections and UDP flows opened to a backend, by listener.',
      labelNames: ['listener', 'pool', 'backend'],
      registers: [registry],
    });
    this.l4Dropped = new Counter({
      name: `${p}l4_dropped_total`,
      help: 'UDP datagrams dropped (oversize, no-backend, queue-full) and flows evicted (evicted), by listener.',
      labelNames: ['listener', 'reason'],
      registers: [registry],
    });
    this.bufferedBodies = new Gauge({
      name: `${p}buffered_request_bytes`,
      help: 'Bytes of request bodies held now so a retry can send them again (retries.maxBody each, 64 MiB in all).',
      registers: [registry],
      collect() {
        this.set(bufferedBytes());
      },
    });
    this.active = new Gauge({
      name: `${p}active_requests`,
      help: 'Requests in flight per backend.',
      labelNames: ['pool', 'backend'],
      registers: [registry],
      collect() {
        this.reset();
        for (const b of backends()) this.set({ pool: b.pool, backend: b.backend }, b.active);
      },
    });
  }
}
