import { useMemo } from 'react';
import type { Frame } from '../../../src/up/dashboard/protocol.js';
import { PALETTE, TimeChart, type SeriesSpec } from '../Charts.js';
import { fmtInt, fmtMs, fmtRate, fmtRemaining } from '../format.js';
import { columns } from '../history.js';
import { Panel } from '../Panel.js';
import { Stat, Stats } from '../Stat.js';

const RATE_SERIES: SeriesSpec[] = [
  { label: 'sent', color: PALETTE[0] },
  { label: 'asked', color: PALETTE[6], dash: [6, 3] },
  { label: 'errors', color: PALETTE[1] },
];
const LATENCY_SERIES: SeriesSpec[] = [
  { label: 'p50', color: PALETTE[2] },
  { label: 'p99', color: PALETTE[1], dash: [6, 3] },
];

/** The load generator: what it sends, what fails, how long answers take. */
export function ClientsPanel({ frames }: { frames: readonly Frame[] }) {
  const c = frames.at(-1)?.clients;
  const rates = useMemo(() => columns(frames, [(f) => f.clients.sentRate, (f) => f.clients.rate, (f) => f.clients.errorRate]), [frames]);
  const latency = useMemo(() => columns(frames, [(f) => f.clients.p50Ms, (f) => f.clients.p99Ms]), [frames]);
  const spike = c?.spike ?? null;
  return (
    <Panel id="clients" title="Clients" note={spike === null ? undefined : `spike ${spike.factor}x, ${fmtRemaining(spike.remainingMs)} left`}>
      <Stats>
        <Stat label="sent" value={c === undefined ? '—' : fmtRate(c.sentRate)} raw={c?.sentRate} />
        <Stat label="asked" value={c === undefined ? '—' : fmtRate(c.rate)} raw={c?.rate} />
        <Stat label="errors/s" value={c === undefined ? '—' : fmtRate(c.errorRate)} raw={c?.errorRate} testId="client-error-rate" tone={c !== undefined && c.errorRate > 0 ? 'bad' : 'normal'} />
        <Stat label="errors total" value={c === undefined ? '—' : fmtInt(c.errors)} raw={c?.errors} testId="client-errors" />
        <Stat label="p50" value={fmtMs(c?.p50Ms)} raw={c?.p50Ms} />
        <Stat label="p99" value={fmtMs(c?.p99Ms)} raw={c?.p99Ms} />
        <Stat label="in flight" value={c === undefined ? '—' : fmtInt(c.inFlight)} raw={c?.inFlight} />
        <Stat label="dropped" value={c === undefined ? '—' : fmtInt(c.dropped)} raw={c?.dropped} tone={c !== undefined && c.dropped > 0 ? 'warn' : 'normal'} />
      </Stats>
      <div className="charts">
        <TimeChart title="Requests per second" kind="rate" series={RATE_SERIES} data={rates} />
        <TimeChart title="Latency" kind="ms" series={LATENCY_SERIES} data={latency} />
      </div>
    </Panel>
  );
}
