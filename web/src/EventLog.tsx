import type { DashboardEvent } from '../../src/up/dashboard/protocol.js';
import { fmtClock } from './format.js';
import { Panel } from './Panel.js';

/** What happened and when, newest first: health transitions, ejections, purges, spikes, controls. */
export function EventLog({ events }: { events: readonly DashboardEvent[] }) {
  const newestFirst = [...events].reverse();
  return (
    <Panel id="events" title="Event log" note={`${events.length} shown`}>
      <div className="event-log" role="log" aria-live="polite" aria-label="Events, newest first" data-testid="event-log" tabIndex={0}>
        {newestFirst.length === 0 ? <p className="hint">Nothing yet.</p> : null}
        <ol>
          {newestFirst.map((e) => (
            <li key={e.id} data-testid="event" className={`event level-${e.level}`}>
              <time dateTime={new Date(e.t).toISOString()}>{fmtClock(e.t)}</time>{' '}
              <span className="event-level">{e.level}</span>{' '}
              <span className="event-source">{e.source}</span>{' '}
              <span className="event-message">{e.message}</span>
            </li>
          ))}
        </ol>
      </div>
    </Panel>
  );
}
