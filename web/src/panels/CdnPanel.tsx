import { useMemo } from 'react';
import type { Frame } from '../../../src/up/dashboard/protocol.js';
import { nthSeries, PALETTE, TimeChart, type SeriesSpec } from '../Charts.js';
import { fmtInt, fmtPct, fmtRate } from '../format.js';
import { columns } from '../history.js';
import { Panel } from '../Panel.js';
import { Stat, Stats } from '../Stat.js';

const TRAFFIC_SERIES: SeriesSpec[] = [
  { label: 'requests', color: PALETTE[0] },
  { label: 'misses', color: PALETTE[1], dash: [6, 3] },
  { label: 'to origin', color: PALETTE[6], dash: [2, 3] },
];

/** The CDN: hit ratio by region, how much it spares the origin. */
export function CdnPanel({ frames }: { frames: readonly Frame[] }) {
  const cdn = frames.at(-1)?.cdn;
  const regionsKey = cdn?.regions.map((r) => r.name).join('\n') ?? '';
  const regions = useMemo(() => (regionsKey === '' ? [] : regionsKey.split('\n')), [regionsKey]);
  const ratioSeries = useMemo<SeriesSpec[]>(
    () => [{ label: 'all edges', color: PALETTE[6] }, { label: 'origin offload', color: PALETTE[7], dash: [2, 3] }, ...regions.map((name, i) => ({ ...nthSeries(name, i), dash: [6, 3] }))],
    [regions],
  );
  const ratios = useMemo(
    () =>
      columns(frames, [
        (f: Frame) => f.cdn.hitRatio,
        (f: Frame) => f.cdn.originOffload,
        ...regions.map((name) => (f: Frame) => f.cdn.regions.find((r) => r.name === name)?.hitRatio),
      ]),
    [frames, regions],
  );
  const traffic = useMemo(() => columns(frames, [(f) => f.cdn.rate, (f) => f.cdn.missRate, (f) => f.cdn.originRate]), [frames]);

  return (
    <Panel id="cdn" title="CDN">
      <Stats>
        <Stat label="hit ratio" value={fmtPct(cdn?.hitRatio)} raw={cdn?.hitRatio} testId="cdn-hit-ratio" />
        <Stat label="origin offload" value={fmtPct(cdn?.originOffload)} raw={cdn?.originOffload} />
        <Stat label="req/s" value={cdn === undefined ? '—' : fmtRate(cdn.rate)} raw={cdn?.rate} />
        <Stat label="misses/s" value={cdn === undefined ? '—' : fmtRate(cdn.missRate)} raw={cdn?.missRate} />
        <Stat label="misses total" value={cdn === undefined ? '—' : fmtInt(cdn.misses)} raw={cdn?.misses} testId="cdn-misses" />
        <Stat label="to origin/s" value={cdn === undefined ? '—' : fmtRate(cdn.originRate)} raw={cdn?.originRate} />
        <Stat label="purges" value={cdn === undefined ? '—' : fmtInt(cdn.purges)} raw={cdn?.purges} />
      </Stats>
      {cdn !== undefined && cdn.regions.length > 0 ? (
        <ul className="regions" aria-label="Hit ratio by region">
          {cdn.regions.map((r) => (
            <li key={r.name}>
              <span className="region-name">{r.name}</span> {fmtPct(r.hitRatio)} hit · {fmtRate(r.rate)}
            </li>
          ))}
        </ul>
      ) : null}
      <div className="charts">
        <TimeChart title="Hit ratio by region, origin offload" kind="ratio" series={ratioSeries} data={ratios} />
        <TimeChart title="Requests, misses and origin fetches per second" kind="rate" series={TRAFFIC_SERIES} data={traffic} />
      </div>
    </Panel>
  );
}
