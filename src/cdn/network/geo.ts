/**
 * Simulated geography, pure: the configured round-trip times between client regions, edge regions,
 * the shield and the origin, and from them each client region's edge regions nearest first.
 *
 * Every value here is a round trip. A link injects half of it before the request goes out and half
 * before the response comes back (EdgeOptions.upstreamLatencyMs and the router take the one-way
 * half), so a request over the link takes at least the round trip.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import type { LatencyConfig } from '../config.js';

export interface LatencyMatrixOptions {
  latency: LatencyConfig;
  /** Edge regions in config order (ties in distance go to the client's own region, then the earlier one). */
  edgeRegions: readonly string[];
  /** With the shield off, an edge's upstream link is the edge -> shield time plus the shield -> origin time. */
  shieldEnabled: boolean;
}

export class LatencyMatrix {
  readonly edgeRegions: readonly string[];
  readonly clientRegions: readonly string[];
  private readonly clients: Readonly<Record<string, Readonly<Record<string, number>>>>;
  private readonly shieldMs: Readonly<Record<string, number>>;
  private readonly originMs: number;
  private readonly shieldEnabled: boolean;
  /** Client region -> edge regions, nearest first; computed once. */
  private readonly order = new Map<string, readonly string[]>();

  constructor(opts: LatencyMatrixOptions) {
    this.edgeRegions = [...opts.edgeRegions];
    this.clients = opts.latency.clientsMs;
    this.shieldMs = opts.latency.shieldMs;
    this.originMs = opts.latency.originMs;
    this.shieldEnabled = opts.shieldEnabled;
    this.clientRegions = Object.keys(this.clients);
    if (this.edgeRegions.length === 0) throw new InvalidArgumentError('a latency matrix needs at least one edge region');
    for (const client of this.clientRegions) {
      const row = this.clients[client]!;
      for (const r of this.edgeRegions) {
        if (typeof row[r] !== 'number') throw new InvalidArgumentError(`latency.clients.${client}.${r} is missing`, { client, region: r });
      }
      // Equal times: the client's own region first (so an all-zero matrix still keeps users at
      // home), then config order.
      const rank = new Map(this.edgeRegions.map((r, i) => [r, r === client ? -1 : i]));
      this.order.set(
        client,
        [...this.edgeRegions].sort((a, b) => row[a]! - row[b]! || rank.get(a)! - rank.get(b)!),
      );
    }
  }

  hasClientRegion(region: string): boolean {
    return this.order.has(region);
  }

  /** Round trip from a client in `client` to an edge in `edgeRegion`, ms. */
  clientRttMs(client: string, edgeRegion: string): number {
    const v = this.clients[client]?.[edgeRegion];
    if (v === undefined) throw new InvalidArgumentError(`no latency from client region "${client}" to edge region "${edgeRegion}"`);
    return v;
  }

  /** Edge regions ordered by round trip from `client`, nearest first. */
  nearest(client: string): readonly string[] {
    const o = this.order.get(client);
    if (o === undefined) throw new InvalidArgumentError(`unknown client region "${client}" (known: ${this.clientRegions.join(', ')})`);
    return o;
  }

  /** Round trip of an edge's upstream link: to the shield, or (shield off) through to the origin. */
  edgeUpstreamRttMs(edgeRegion: string): number {
    const toShield = this.shieldMs[edgeRegion] ?? 0;
    return this.shieldEnabled ? toShield : toShield + this.originMs;
  }

  /** Round trip shield -> origin, ms. */
  shieldUpstreamRttMs(): number {
    return this.originMs;
  }

  /** As /topology shows it: the configured round trips, ms. */
  toJSON(): { clientsMs: Record<string, Record<string, number>>; shieldMs: Record<string, number>; originMs: number; nearest: Record<string, string[]> } {
    return {
      clientsMs: Object.fromEntries(this.clientRegions.map((c) => [c, { ...this.clients[c]! }])),
      shieldMs: { ...this.shieldMs },
      originMs: this.originMs,
      nearest: Object.fromEntries([...this.order].map(([c, o]) => [c, [...o]])),
    };
  }
}

/** One-way delay of a link whose round trip is `rttMs`: half each way. */
export function oneWayMs(rttMs: number): number {
  return rttMs / 2;
}
