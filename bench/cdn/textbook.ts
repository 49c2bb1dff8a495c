/**
 * The textbook claims, measured on archlab's CDN (startCdn) with a simulated geography:
 *
 * (a) **latency a user sees, by region, with and without the CDN.** Three edge regions (eu, us,
 *     ap), the shield and the origin in us, round trips from the matrix below (injected by the
 *     router on the client's link and by each node on its upstream link). Per client region:
 *     the first request for an object (a miss: client -> nearest edge -> shield -> origin), the
 *     same object again (a hit at the nearest edge), and, without the CDN, the request straight to
 *     the origin, with the client -> us round trip of the same matrix injected by the same kind of
 *     timers (half before the request, half after the answer). p50 and p99 per region.
 * (b) **origin load during a miss storm, with and without the shield.** New objects requested at
 *     the same moments from all three regions (each region asks for object k at time k / rate, as
 *     when a new page goes live everywhere), at a fixed rate for a few seconds, through a CDN with
 *     the shield and through one without. The origin timestamps every request; requests per
 *     second in 250 ms buckets are the chart. With the shield each object reaches the origin once;
 *     without it, once per region.
 */
import { Agent, request } from 'undici';
import { sleep } from '../balancer-l7/procs.js';
import { percentile } from '../cache/measure.js';
import { isHit } from './hitpath.js';
import { startBenchCdn, type BenchCdn } from './network.js';
import { isObjectBody, objectPath, startOrigin, type OriginHandle } from './origin.js';
import type { CdnSession } from './session.js';
import type { CdnConfigInput } from '../../src/cdn/config.js';

export const REGIONS = ['eu', 'us', 'ap'] as const;
export type Region = (typeof REGIONS)[number];
/** Where the origin (and the shield beside it) is. */
export const ORIGIN_REGION: Region = 'us';
/** Round trips, client region -> edge region, ms: 10 ms in region, 90-160 ms across. */
export const CLIENT_RTT_MS: Record<Region, Record<Region, number>> = {
  eu: { eu: 10, us: 90, ap: 160 },
  us: { eu: 90, us: 10, ap: 120 },
  ap: { eu: 160, us: 120, ap: 10 },
};
/** Round trips, edge region -> the shield (in us), ms: backbone links, a little shorter than a user's. */
export const SHIELD_RTT_MS: Record<Region, number> = { eu: 80, us: 5, ap: 110 };
/** Round trip shield -> origin, ms (same region). */
export const ORIGIN_RTT_MS = 5;
const BODY_BYTES = 1024;
const TOKEN = 'bench-cdn-purge-token';

export const LATENCY_SYSTEMS = {
  hit: 'CDN, hit at the nearest edge',
  miss: 'CDN, miss (via the shield)',
  direct: `no CDN (origin in ${ORIGIN_REGION})`,
} as const;
export const latencyScenario = (region: string): string => `user latency, clients in ${region}`;
export const STORM_SCENARIO = 'miss storm from 3 regions';
/** Width of the buckets origin requests are counted in for the chart, ms. */
export const STORM_BUCKET_MS = 250;
export const STORM_SYSTEMS = { shield: 'CDN with shield', noShield: 'CDN without shield' } as const;

export interface TextbookSettings {
  /** Objects per client region in the latency part (each requested twice through the CDN and once directly). */
  latencySamples: number;
  /** Requests in flight per region in the latency part. */
  latencyConcurrency: number;
  /** New objects per second each region asks for in the storm. */
  stormRatePerRegion: number;
  stormDurationMs: number;
  /** Bound on storm requests in flight (over all regions); more are skipped and counted. */
  stormMaxInFlight: number;
}

export const TEXTBOOK_QUICK: TextbookSettings = { latencySamples: 30, latencyConcurrency: 4, stormRatePerRegion: 100, stormDurationMs: 2000, stormMaxInFlight: 2000 };
export const TEXTBOOK_FULL: TextbookSettings = { latencySamples: 120, latencyConcurrency: 4, stormRatePerRegion: 200, stormDurationMs: 5000, stormMaxInFlight: 4000 };

export interface TextbookData {
  /** Region -> p50 ms per system (LATENCY_SYSTEMS values). */
  latencyP50: Map<string, Map<string, number>>;
  /** System (STORM_SYSTEMS values) -> [seconds since the storm began, origin req/s]. */
  storm: Map<string, [number, number][]>;
  /** Offered rate of the storm over all regions, req/s. */
  stormOfferedPerS: number;
  stormDurationMs: number;
}

const ms = (x: number): string => `${x}ms`;

export function cdnInput(originUrl: string, shield: boolean): CdnConfigInput {
  return {
    listeners: [{ port: 0 }],
    admin: { port: 0, token: TOKEN },
    log: { level: 'error' },
    metrics: { defaultMetrics: false },
    origin: { url: originUrl },
    shield: { enabled: shield },
    regions: REGIONS.map((name) => ({ name, edges: 1, storage: { memory: '64MiB' } })),
    latency: {
      clients: Object.fromEntries(REGIONS.map((c) => [c, Object.fromEntries(REGIONS.map((r) => [r, ms(CLIENT_RTT_MS[c][r])]))])),
      shield: Object.fromEntries(REGIONS.map((r) => [r, ms(SHIELD_RTT_MS[r])])),
      origin: ms(ORIGIN_RTT_MS),
    },
    purge: { token: TOKEN },
  } as CdnConfigInput;
}

/** The round trips injected on the path of a request of `system` from `region`: the floor of its latency. */
export function floorMs(system: string, region: Region): number {
  const nearest = CLIENT_RTT_MS[region][region];
  if (system === LATENCY_SYSTEMS.hit) return nearest;
  if (system === LATENCY_SYSTEMS.miss) return nearest + SHIELD_RTT_MS[region] + ORIGIN_RTT_MS;
  return CLIENT_RTT_MS[region][ORIGIN_REGION];
}

interface Got {
  ms: number;
  ok: boolean;
  hit: boolean;
}

async function get(dispatcher: Agent, url: string, path: string, headers: Record<string, string>): Promise<Got> {
  const t = performance.now();
  try {
    const r = await request(`${url}${path}`, { dispatcher, headers });
    const body = Buffer.from(await r.body.arrayBuffer());
    return { ms: performance.now() - t, ok: r.statusCode === 200 && isObjectBody(path, body, BODY_BYTES), hit: isHit(r.headers['x-cache']) };
  } catch {
    return { ms: performance.now() - t, ok: false, hit: false };
  }
}

/** Runs `fn` over `items` with at most `concurrency` at once. */
async function pooled<T, R>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

async function measureLatency(session: CdnSession, origin: OriginHandle, cdn: BenchCdn, agent: Agent, s: TextbookSettings, data: TextbookData): Promise<void> {
  const { ctx } = session;
  ctx.log(`\nuser latency by region: ${s.latencySamples} objects per region, ${s.latencyConcurrency} at a time; round trips client->edge ${JSON.stringify(CLIENT_RTT_MS)}, edge->shield ${JSON.stringify(SHIELD_RTT_MS)}, shield->origin ${ORIGIN_RTT_MS} ms`);
  for (const [ri, region] of REGIONS.entries()) {
    // Each region its own objects, so every first request goes all the way to the origin.
    const paths = Array.from({ length: s.latencySamples }, (_, i) => objectPath(1000 + ri * s.latencySamples + i));
    const headers = { 'x-client-region': region };
    const miss = await pooled(paths, s.latencyConcurrency, (p) => get(agent, cdn.routerUrl, p, headers));
    const hit = await pooled(paths, s.latencyConcurrency, (p) => get(agent, cdn.routerUrl, p, headers));
    const oneWay = CLIENT_RTT_MS[region][ORIGIN_REGION] / 2;
    const direct = await pooled(paths, s.latencyConcurrency, async (p) => {
      const t = performance.now();
      await sleep(oneWay);
      const g = await get(agent, origin.url, p, {});
      await sleep(oneWay);
      return { ...g, ms: performance.now() - t };
    });
    const byRegion = new Map<string, number>();
    for (const [system, got] of [
      [LATENCY_SYSTEMS.hit, hit],
      [LATENCY_SYSTEMS.miss, miss],
      [LATENCY_SYSTEMS.direct, direct],
    ] as const) {
      const bad = got.filter((g) => !g.ok).length;
      if (bad) ctx.note(`${latencyScenario(region)}, ${system}: ${bad} of ${got.length} requests failed or had a wrong body`);
      const times = got.filter((g) => g.ok).map((g) => g.ms);
      if (!times.length) continue;
      const p50 = percentile(times, 50);
      ctx.row({ system, scenario: latencyScenario(region), metric: 'p50', value: p50, unit: 'ms' });
      ctx.row({ system, scenario: latencyScenario(region), metric: 'p99', value: percentile(times, 99), unit: 'ms' });
      ctx.row({ system, scenario: latencyScenario(region), metric: 'injected round trips', value: floorMs(system, region), unit: 'ms' });
      byRegion.set(system, p50);
    }
    const notHits = hit.filter((g) => g.ok && !g.hit).length;
    if (notHits) ctx.note(`${latencyScenario(region)}: ${notHits} of ${hit.length} second requests were not hits at the edge`);
    data.latencyP50.set(region, byRegion);
  }
}

/** Origin requests per second in `bucketMs` buckets from `t0` for `spanMs`. */
function perSecond(arrivals: Float64Array, t0: number, spanMs: number, bucketMs: number): [number, number][] {
  const n = Math.ceil(spanMs / bucketMs);
  const counts = new Float64Array(n);
  for (const t of arrivals) {
    const b = Math.floor((t - t0) / bucketMs);
    if (b >= 0 && b < n) counts[b]!++;
  }
  return Array.from(counts, (c, i) => [((i + 1) * bucketMs) / 1000, (c * 1000) / bucketMs] as [number, number]);
}

async function storm(session: CdnSession, origin: OriginHandle, agent: Agent, s: TextbookSettings, shield: boolean, firstObject: number, data: TextbookData): Promise<void> {
  const { ctx } = session;
  const system = shield ? STORM_SYSTEMS.shield : STORM_SYSTEMS.noShield;
  const cdn = await startBenchCdn(cdnInput(origin.url, shield));
  if ('unavailable' in cdn) {
    session.noteOnce(`${STORM_SCENARIO}: not measured, ${cdn.unavailable}`);
    return;
  }
  try {
    const objects = Math.round((s.stormRatePerRegion * s.stormDurationMs) / 1000);
    const intervalMs = 1000 / s.stormRatePerRegion;
    let sent = 0;
    let inFlight = 0;
    let skipped = 0;
    let failed = 0;
    const pending = new Set<Promise<void>>();
    origin.resetArrivals();
    const served0 = origin.served();
    const t0 = performance.now();
    while (sent < objects) {
      const due = Math.min(objects, Math.floor((performance.now() - t0) / intervalMs) + 1);
      for (; sent < due; sent++) {
        const path = objectPath(firstObject + sent);
        for (const region of REGIONS) {
          if (inFlight >= s.stormMaxInFlight) {
            skipped++;
            continue;
          }
          inFlight++;
          const p = get(agent, cdn.routerUrl, path, { 'x-client-region': region }).then((g) => {
            inFlight--;
            if (!g.ok) failed++;
            pending.delete(p);
          });
          pending.add(p);
        }
      }
      await sleep(1);
    }
    // Bounded: every request has the CDN's own upstream timeouts; wait at most 15 s more.
    await Promise.race([Promise.all(pending), sleep(15_000)]);
    const spanMs = performance.now() - t0;
    const originRequests = origin.served() - served0;
    const series = perSecond(origin.arrivals(), t0, spanMs, STORM_BUCKET_MS);
    data.storm.set(system, series);
    const row = (metric: string, value: number, unit: string): void => ctx.row({ system, scenario: STORM_SCENARIO, metric, value, unit });
    row('origin requests', originRequests, 'requests');
    row('origin requests per object', originRequests / objects, 'requests');
    row('peak origin req/s', Math.max(...series.map((p) => p[1])), 'req/s');
    if (failed) ctx.note(`${STORM_SCENARIO}, ${system}: ${failed} requests failed or had a wrong body`);
    if (skipped) ctx.note(`${STORM_SCENARIO}, ${system}: ${skipped} requests not sent (over ${s.stormMaxInFlight} in flight)`);
    if (pending.size) ctx.note(`${STORM_SCENARIO}, ${system}: ${pending.size} requests unanswered 15 s after the last was sent`);
  } finally {
    await cdn.close();
  }
}

export async function measureTextbook(session: CdnSession, s: TextbookSettings): Promise<TextbookData> {
  const { ctx } = session;
  const data: TextbookData = { latencyP50: new Map(), storm: new Map(), stormOfferedPerS: s.stormRatePerRegion * REGIONS.length, stormDurationMs: s.stormDurationMs };
  const stormObjects = Math.round((s.stormRatePerRegion * s.stormDurationMs) / 1000);
  const origin = await startOrigin({ objects: 1000 + REGIONS.length * s.latencySamples + 2 * stormObjects + 10, bodyBytes: BODY_BYTES, recordArrivals: 4 * stormObjects * REGIONS.length });
  const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
  try {
    const cdn = await startBenchCdn(cdnInput(origin.url, true));
    if ('unavailable' in cdn) {
      ctx.note(`user latency by region: not measured, ${cdn.unavailable}`);
      session.noteOnce(`${STORM_SCENARIO}: not measured, ${cdn.unavailable}`);
      return data;
    }
    try {
      await measureLatency(session, origin, cdn, agent, s, data);
    } finally {
      await cdn.close();
    }
    ctx.log(`\n${STORM_SCENARIO}: ${s.stormRatePerRegion} new objects/s from each of ${REGIONS.length} regions for ${s.stormDurationMs / 1000} s, with and without the shield`);
    const base = 1000 + REGIONS.length * s.latencySamples;
    await storm(session, origin, agent, s, true, base, data);
    await storm(session, origin, agent, s, false, base + stormObjects, data);
    return data;
  } finally {
    await agent.close();
    await origin.close();
  }
}
