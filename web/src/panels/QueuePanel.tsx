import { useMemo } from 'react';
import type { Frame } from '../../../src/up/dashboard/protocol.js';
import { PALETTE, TimeChart, type SeriesSpec } from '../Charts.js';
import { fmtInt, fmtRate } from '../format.js';
import { columns } from '../history.js';
import { Panel } from '../Panel.js';
import { Stat, Stats } from '../Stat.js';

const DEPTH_SERIES: SeriesSpec[] = [{ label: 'depth (lag)', color: PALETTE[4] }];
const FLOW_SERIES: SeriesSpec[] = [
  { label: 'publish', color: PALETTE[0] },
  { label: 'consume', color: PALETTE[2], dash: [6, 3] },
];

/** The order queue and its worker: the backlog and the two rates that make it; and the orders' outbound path (proxy, payments). */
export function QueuePanel({ frames }: { frames: readonly Frame[] }) {
  const last = frames.at(-1);
  const q = last?.queue;
  const proxy = last?.proxy;
  const pay = last?.payments;
  const depth = useMemo(() => columns(frames, [(f) => f.queue.depth]), [frames]);
  const flow = useMemo(() => columns(frames, [(f) => f.queue.publishRate, (f) => f.queue.consumeRate]), [frames]);
  return (
    <Panel id="queue" title="Queue and outbound" note={q?.engine}>
      <Stats>
        <Stat label="depth (lag)" value={q === undefined ? '—' : fmtInt(q.depth)} raw={q?.depth} testId="queue-depth" tone={q !== undefined && q.depth > 0 && !q.workerRunning ? 'warn' : 'normal'} />
        <Stat label="worker" value={q === undefined ? '—' : q.workerRunning ? 'running' : 'stopped'} tone={q?.workerRunning === false ? 'warn' : 'normal'} />
        <Stat label="publish/s" value={q === undefined ? '—' : fmtRate(q.publishRate)} raw={q?.publishRate} />
        <Stat label="consume/s" value={q === undefined ? '—' : fmtRate(q.consumeRate)} raw={q?.consumeRate} />
        <Stat label="published" value={q === undefined ? '—' : fmtInt(q.published)} raw={q?.published} />
        <Stat label="consumed" value={q === undefined ? '—' : fmtInt(q.consumed)} raw={q?.consumed} />
        <Stat label="proxy req/s" value={proxy === undefined ? '—' : fmtRate(proxy.rate)} raw={proxy?.rate} />
        <Stat label="payments ok/s" value={pay === undefined ? '—' : fmtRate(pay.chargeRate)} raw={pay?.chargeRate} />
        <Stat label="payments failed/s" value={pay === undefined ? '—' : fmtRate(pay.failedRate)} raw={pay?.failedRate} tone={pay !== undefined && pay.failedRate > 0 ? 'warn' : 'normal'} />
      </Stats>
      <div className="charts">
        <TimeChart title="Depth (consumer lag, messages)" kind="count" series={DEPTH_SERIES} data={depth} />
        <TimeChart title="Publish vs consume per second" kind="rate" series={FLOW_SERIES} data={flow} />
      </div>
    </Panel>
  );
}
