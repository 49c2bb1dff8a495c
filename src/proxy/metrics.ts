import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from '../core/metrics.js';

interface KindSeries {
  active: Gauge.Internal<'kind'>;
  duration: Histogram.Internal<'kind'>;
  up: Counter.Internal;
  down: Counter.Internal;
}

/** The proxy's Prometheus series. Every label value comes from a fixed set: no hosts, users or addresses. */
export class ProxyMetrics {
  /** Plain HTTP requests answered, by status code. */
  readonly requests: Counter<'code'>;
  /** CONNECT requests answered, by status code (200 = tunnel opened). */
  readonly tunnels: Counter<'code'>;
  /** Bytes carried: kind http|connect, direction up (client -> target) | down. */
  readonly bytes: Counter<'kind' | 'direction'>;
  /** Requests refused before reaching a target, by reason. */
  readonly denied: Counter<'reason'>;
  /** Failed authentications: missing, malformed, invalid (unknown user or wrong password), busy. */
  readonly authFailures: Counter<'reason'>;
  /** Credential checks: hit (cache) or miss (scrypt). */
  readonly authChecks: Counter<'result'>;
  readonly active: Gauge<'kind'>;
  readonly duration: Histogram<'kind'>;
  /** Label children built once: prom-client hashes a label object on every call otherwise. */
  readonly http: KindSeries;
  readonly connect: KindSeries;
  private readonly byCode = new Map<number, Counter.Internal>();
  private readonly tunnelsByCode = new Map<number, Counter.Internal>();

  constructor(registry: Registry) {
    const p = `${METRIC_PREFIX}proxy_`;
    const registers = [registry];
    this.requests = new Counter({ name: `${p}requests_total`, help: 'HTTP requests answered, by status code.', labelNames: ['code'], registers });
    this.tunnels = new Counter({ name: `${p}tunnels_total`, help: 'CONNECT requests answered, by status code (200: tunnel opened).', labelNames: ['code'], registers });
    this.bytes = new Counter({ name: `${p}bytes_total`, help: 'Body and tunnel bytes carried, by kind (http, connect) and direction (up: to the target, down: to the client).', labelNames: ['kind', 'direction'], registers });
    this.denied = new Counter({ name: `${p}denied_total`, help: 'Requests refused before reaching a target, by reason.', labelNames: ['reason'], registers });
    this.authFailures = new Counter({ name: `${p}auth_failures_total`, help: 'Failed proxy authentications, by reason (missing, malformed, invalid, busy).', labelNames: ['reason'], registers });
    this.authChecks = new Counter({ name: `${p}auth_checks_total`, help: 'Credential checks by result: hit (served from the cache) or miss (scrypt ran).', labelNames: ['result'], registers });
    this.active = new Gauge({ name: `${p}active`, help: 'HTTP requests in flight and tunnels open, by kind.', labelNames: ['kind'], registers });
    this.duration = new Histogram({
      name: `${p}duration_seconds`,
      help: 'HTTP request time (received to response finished) and tunnel lifetime, by kind.',
      labelNames: ['kind'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    const series = (kind: 'http' | 'connect'): KindSeries => ({
      active: this.active.labels({ kind }),
      duration: this.duration.labels({ kind }),
      up: this.bytes.labels({ kind, direction: 'up' }),
      down: this.bytes.labels({ kind, direction: 'down' }),
    });
    this.http = series('http');
    this.connect = series('connect');
  }

  /** Counts an answered HTTP request (status codes are 100..999, so the cache is bounded). */
  answered(status: number): void {
    let c = this.byCode.get(status);
    if (c === undefined) this.byCode.set(status, (c = this.requests.labels({ code: String(status) })));
    c.inc();
  }

  /** Counts an answered CONNECT. */
  tunnel(status: number): void {
    let c = this.tunnelsByCode.get(status);
    if (c === undefined) this.tunnelsByCode.set(status, (c = this.tunnels.labels({ code: String(status) })));
    c.inc();
  }
}
