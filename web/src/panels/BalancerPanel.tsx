import { useMemo } from 'react';
import type { BackendFrame, Frame } from '../../../src/up/dashboard/protocol.js';
import { nthSeries, PALETTE, TimeChart, type SeriesSpec } from '../Charts.js';
import { fmtInt, fmtMs, fmtRate } from '../format.js';
import { HealthBadge } from '../HealthBadge.js';
import { backendTone } from '../health.js';
import { columns } from '../history.js';
import { Panel } from '../Panel.js';
import { Stat, Stats } from '../Stat.js';

function backendOf(frame: Frame, id: string): BackendFrame | undefined {
  return frame.balancer.backends.find((b) => b.id === id);
}

function BackendTable({ backends }: { backends: readonly BackendFrame[] }) {
  return (
    <div className="table-scroll" tabIndex={0} role="region" aria-label="Balancer backends">
      <table>
        <thead>
          <tr>
            <th scope="col">backend</th>
            <th scope="col">state</th>
            <th scope="col" className="num">req/s</th>
            <th scope="col" className="num">p50</th>
            <th scope="col" className="num">p99</th>
            <th scope="col" className="num">conns</th>
            <th scope="col" className="num">failures</th>
          </tr>
        </thead>
        <tbody>
          {backends.map((b) => (
            <tr key={b.id} data-testid={`backend-${b.id}`} data-state={b.state}>
              <th scope="row">{b.id}</th>
              <td>
                <HealthBadge health={backendTone(b.state)} text={b.state} />
              </td>
              <td className="num">{fmtRate(b.rate)}</td>
              <td className="num">{fmtMs(b.p50Ms)}</td>
              <td className="num">{fmtMs(b.p99Ms)}</td>
              <td className="num">{fmtInt(b.connections)}</td>
              <td className="num">
                {fmtInt(b.failures)}
                {b.failureRate > 0 ? ` (${fmtRate(b.failureRate)})` : ''}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The L7 balancer: the spread over backends and each backend's latency, as the balancer sees them. */
export function BalancerPanel({ frames, apps }: { frames: readonly Frame[]; apps: readonly string[] }) {
  const b = frames.at(-1)?.balancer;
  // One series per backend: the ones the topology names, plus any the balancer reports besides.
  const idsKey = [...new Set([...apps, ...(b?.backends.map((x) => x.id) ?? [])])].join('\n');
  const ids = useMemo(() => (idsKey === '' ? [] : idsKey.split('\n')), [idsKey]);

  const rateSeries = useMemo(() => ids.map((id, i) => nthSeries(id, i)), [ids]);
  const latencySeries = useMemo<SeriesSpec[]>(
    () => [{ label: 'all p50', color: PALETTE[6], dash: [2, 3] }, { label: 'all p99', color: PALETTE[6] }, ...ids.map((id, i) => ({ ...nthSeries(`${id} p99`, i), dash: [6, 3] }))],
    [ids],
  );
  const rates = useMemo(() => columns(frames, ids.map((id) => (f: Frame) => backendOf(f, id)?.rate)), [frames, ids]);
  const latency = useMemo(
    () => columns(frames, [(f: Frame) => f.balancer.p50Ms, (f: Frame) => f.balancer.p99Ms, ...ids.map((id) => (f: Frame) => backendOf(f, id)?.p99Ms)]),
    [frames, ids],
  );

  return (
    <Panel id="balancer" title="Balancer" note={b?.algorithm}>
      <Stats>
        <Stat label="req/s" value={b === undefined ? '—' : fmtRate(b.rate)} raw={b?.rate} />
        <Stat label="failures/s" value={b === undefined ? '—' : fmtRate(b.failureRate)} raw={b?.failureRate} tone={b !== undefined && b.failureRate > 0 ? 'bad' : 'normal'} />
        <Stat
          label="backends up"
          value={b === undefined ? '—' : `${b.backendsUp}/${b.backends.length}`}
          raw={b?.backendsUp}
          tone={b !== undefined && b.backendsUp < b.backends.length ? 'warn' : 'normal'}
        />
        <Stat label="p50" value={fmtMs(b?.p50Ms)} raw={b?.p50Ms} />
        <Stat label="p99" value={fmtMs(b?.p99Ms)} raw={b?.p99Ms} />
      </Stats>
      <div className="charts">
        <TimeChart title="Requests per second by backend" kind="rate" series={rateSeries} data={rates} />
        <TimeChart title="Latency: overall p50/p99, p99 by backend" kind="ms" series={latencySeries} data={latency} />
      </div>
      <BackendTable backends={b?.backends ?? []} />
    </Panel>
  );
}
