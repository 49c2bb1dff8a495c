/** The SVG charts of bench/cdn, drawn with src/lab/report/svg.ts from the rows and samples of a run. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { barChart, lineChart } from '../../src/lab/report/svg.js';
import type { Row } from '../harness.js';
import { HIT_SCENARIO, HIT_SYSTEMS } from './hitpath.js';
import { CLIENT_RTT_MS, LATENCY_SYSTEMS, ORIGIN_REGION, REGIONS, STORM_BUCKET_MS, STORM_SYSTEMS, type TextbookData } from './textbook.js';

export const CHART_FILES = {
  hit: 'cdn-hit-path.svg',
  latency: 'cdn-latency-by-region.svg',
  storm: 'cdn-shield-storm.svg',
} as const;

/** Writes the charts it has data for into `dir`; returns the files written. */
export function writeCharts(dir: string, rows: readonly Row[], textbook: TextbookData | undefined): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const put = (name: string, svg: string): void => {
    const f = join(dir, name);
    writeFileSync(f, svg);
    files.push(f);
  };
  const hitSystems = Object.values(HIT_SYSTEMS).filter((s) => rows.some((r) => r.system === s && r.scenario === HIT_SCENARIO && r.metric === 'req/s'));
  if (hitSystems.length) {
    const v = (system: string, metric: string): number | null => rows.find((r) => r.system === system && r.scenario === HIT_SCENARIO && r.metric === metric)?.value ?? null;
    put(
      CHART_FILES.hit,
      barChart({
        title: 'Cached hits per second, one process each',
        description: `The same ${HIT_SCENARIO} (wrk, closed loop) against each cache warmed with the objects, and against the origin itself; every system pinned to the same core.`,
        yLabel: 'requests/s',
        orientation: 'horizontal',
        groups: hitSystems,
        series: [{ name: 'req/s', values: hitSystems.map((s) => v(s, 'req/s')) }],
        width: 900,
      }),
    );
  }
  if (textbook && textbook.latencyP50.size) {
    const regions = REGIONS.filter((r) => textbook.latencyP50.has(r));
    const systems = [LATENCY_SYSTEMS.hit, LATENCY_SYSTEMS.miss, LATENCY_SYSTEMS.direct];
    put(
      CHART_FILES.latency,
      barChart({
        title: 'What a user waits for, by region (p50)',
        description: `Three edge regions; the shield and the origin in ${ORIGIN_REGION}. Round trips client to edge: ${REGIONS.map((c) => `${c}->${c} ${CLIENT_RTT_MS[c][c]} ms`).join(', ')}; without the CDN a client pays its round trip to ${ORIGIN_REGION} (${REGIONS.map((c) => `${c} ${CLIENT_RTT_MS[c][ORIGIN_REGION]} ms`).join(', ')}).`,
        xLabel: 'client region',
        yLabel: 'ms (p50)',
        groups: regions,
        series: systems.map((s) => ({ name: s, values: regions.map((r) => textbook.latencyP50.get(r)?.get(s) ?? null) })),
        width: 900,
      }),
    );
  }
  if (textbook && textbook.storm.size) {
    const series = [STORM_SYSTEMS.noShield, STORM_SYSTEMS.shield].filter((s) => textbook.storm.has(s)).map((s) => ({ name: s, points: textbook.storm.get(s)! }));
    const perRegion = textbook.stormOfferedPerS / REGIONS.length;
    put(
      CHART_FILES.storm,
      lineChart({
        title: 'Origin requests per second during a miss storm',
        description: `Every region asks for the same new objects at the same moments (${perRegion} new objects per second each, ${textbook.stormDurationMs / 1000} s). With the shield, edges' misses meet at one tier and each object reaches the origin once; without it, once per region.`,
        xLabel: 'time since the storm began (s)',
        yLabel: `origin requests/s (${STORM_BUCKET_MS} ms buckets)`,
        series,
        referenceLines: [
          { y: textbook.stormOfferedPerS, label: `requests offered: ${textbook.stormOfferedPerS}/s` },
          { y: perRegion, label: `new objects: ${perRegion}/s` },
        ],
        width: 900,
        height: 420,
      }),
    );
  }
  return files;
}
