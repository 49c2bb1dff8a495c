import { useMemo } from 'react';
import type { Frame } from '../../../src/up/dashboard/protocol.js';
import { PALETTE, TimeChart, type SeriesSpec } from '../Charts.js';
import { fmtInt, fmtPct, fmtRate } from '../format.js';
import { columns } from '../history.js';
import { Panel } from '../Panel.js';
import { Stat, Stats } from '../Stat.js';

const RATIO_SERIES: SeriesSpec[] = [{ label: 'hit ratio', color: PALETTE[2] }];
const LOAD_SERIES: SeriesSpec[] = [
  { label: 'hits', color: PALETTE[2] },
  { label: 'loads (misses)', color: PALETTE[1], dash: [6, 3] },
  { label: 'db queries', color: PALETTE[0], dash: [2, 3] },
];

/** The app's cache in front of the database: how often it answers, how often it loads. */
export function CachePanel({ frames }: { frames: readonly Frame[] }) {
  const last = frames.at(-1);
  const c = last?.cache;
  const db = last?.database;
  const ratio = useMemo(() => columns(frames, [(f) => f.cache.hitRatio]), [frames]);
  const loads = useMemo(() => columns(frames, [(f) => f.cache.hitRate, (f) => f.cache.loadRate, (f) => f.database.rate]), [frames]);
  return (
    <Panel id="cache" title="Cache" note={c === undefined ? undefined : `${c.engine} · ${c.strategy}`}>
      <Stats>
        <Stat label="hit ratio" value={fmtPct(c?.hitRatio)} raw={c?.hitRatio} testId="cache-hit-ratio" />
        <Stat label="hits/s" value={c === undefined ? '—' : fmtRate(c.hitRate)} raw={c?.hitRate} />
        <Stat label="loads/s" value={c === undefined ? '—' : fmtRate(c.loadRate)} raw={c?.loadRate} />
        <Stat label="errors" value={c === undefined ? '—' : fmtInt(c.errors)} raw={c?.errors} tone={c !== undefined && c.errors > 0 ? 'warn' : 'normal'} />
        <Stat label="app ↔ cache" value={c === undefined ? '—' : c.cut ? 'cut off' : 'connected'} tone={c?.cut === true ? 'bad' : 'normal'} />
        <Stat label="db queries/s" value={db === undefined ? '—' : fmtRate(db.rate)} raw={db?.rate} />
        <Stat label="app ↔ database" value={db === undefined ? '—' : db.cut ? 'cut off' : 'connected'} tone={db?.cut === true ? 'bad' : 'normal'} />
      </Stats>
      <div className="charts">
        <TimeChart title="Hit ratio" kind="ratio" series={RATIO_SERIES} data={ratio} />
        <TimeChart title="Hits, loads and database queries per second" kind="rate" series={LOAD_SERIES} data={loads} />
      </div>
    </Panel>
  );
}
