import type { Clock } from '../core/clock.js';
import { formatHostPort } from '../core/net.js';
import type { BackendConfig } from './config.js';
import type { BackendView } from './pick/types.js';

export type BackendState = 'up' | 'down' | 'ejected' | 'draining' | 'disabled';

/** Weight during slow start begins at this share of the configured weight. */
export const SLOW_START_FLOOR = 0.1;

/**
 * One backend's live state. Health checks, outlier ejection, the admin API and the proxy change it
 * through the methods below; pickers only read it (BackendView).
 */
export class Backend implements BackendView {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  /** Configured weight (the admin API may change it). */
  configuredWeight: number;
  maxConnections: number;
  /** Requests in flight. */
  active = 0;
  /** Set by active health checks; a backend starts up. */
  healthy = true;
  /** Passive outlier detection: not picked before this time (clock ms). */
  ejectedUntilMs = 0;
  /** Consecutive ejections, so each repeat lasts longer; reset after a clean period by the detector. */
  ejections = 0;
  /** Finishing in-flight requests, taking no new ones (admin drain, or removed by a reload). */
  draining = false;
  /** Turned off by the admin API. */
  disabled = false;
  /** Slow start: the weight ramps from SLOW_START_FLOOR to full over `slowStartMs` from this time. */
  private rampFromMs: number | undefined;
  slowStartMs = 0;
  /** Totals for the admin API and metrics. */
  requests = 0;
  failures = 0;
  /** L4 totals: TCP connections and UDP flows opened to this backend, bytes client -> backend (in) and backend -> client (out). */
  connections = 0;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    config: BackendConfig,
    private readonly clock: Clock,
  ) {
    this.host = config.address.host;
    this.port = config.address.port;
    this.id = config.id ?? formatHostPort(this.host, this.port);
    this.tls = config.tls;
    this.configuredWeight = config.weight;
    this.maxConnections = config.maxConnections;
  }

  get address(): string {
    return formatHostPort(this.host, this.port);
  }

  get ejected(): boolean {
    return this.ejectedUntilMs > this.clock.now();
  }

  /** Up and not held back by anything but its connection limit. */
  get usable(): boolean {
    return this.healthy && !this.draining && !this.disabled && !this.ejected;
  }

  get available(): boolean {
    return this.usable && this.active < this.maxConnections;
  }

  get weight(): number {
    if (this.rampFromMs === undefined || this.slowStartMs <= 0) return this.configuredWeight;
    const elapsed = this.clock.now() - this.rampFromMs;
    if (elapsed >= this.slowStartMs) {
      this.rampFromMs = undefined;
      return this.configuredWeight;
    }
    const share = SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * Math.max(0, elapsed / this.slowStartMs);
    return this.configuredWeight * share;
  }

  get state(): BackendState {
    if (this.disabled) return 'disabled';
    if (this.draining) return 'draining';
    if (!this.healthy) return 'down';
    if (this.ejected) return 'ejected';
    return 'up';
  }

  /** Starts the slow-start ramp (a backend coming back from down or ejected). */
  startSlowStart(): void {
    if (this.slowStartMs > 0) this.rampFromMs = this.clock.now();
  }

  /** Whether slow start is still ramping. */
  get warming(): boolean {
    return this.rampFromMs !== undefined && this.clock.now() - this.rampFromMs < this.slowStartMs;
  }
}
