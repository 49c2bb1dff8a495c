import type { Frame, Hello } from '../../src/up/dashboard/protocol.js';
import { fmtInt, fmtMs, fmtRate, fmtRemaining } from './format.js';
import type { ConnectionState } from './useStream.js';

const CONNECTION_TEXT: Record<ConnectionState, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  refused: 'refused',
};

function ConnectionBadge({ state }: { state: ConnectionState }) {
  return (
    <span className={`connection connection-${state}`} data-testid="connection" data-state={state} role="status" aria-live="polite">
      <span aria-hidden="true">{state === 'live' ? '●' : '○'}</span> {CONNECTION_TEXT[state]}
    </span>
  );
}

function ClientsSummary({ frame }: { frame: Frame | null }) {
  if (frame === null) return <span className="summary">waiting for the first frame…</span>;
  const c = frame.clients;
  return (
    <span className="summary">
      clients {fmtRate(c.sentRate)} · errors {fmtRate(c.errorRate)} ({fmtInt(c.errors)} total) · p99 {fmtMs(c.p99Ms)}
      {c.spike === null ? null : (
        <strong className="spike">
          {' '}
          · spike {c.spike.factor}x, {fmtRemaining(c.spike.remainingMs)} left
        </strong>
      )}
    </span>
  );
}

export function Header({ hello, frame, connection }: { hello: Hello | null; frame: Frame | null; connection: ConnectionState }) {
  return (
    <header className="top">
      <h1>
        archlab up<span className="topology">{hello === null ? '' : ` · ${hello.topology}`}</span>
      </h1>
      <ConnectionBadge state={connection} />
      <ClientsSummary frame={frame} />
    </header>
  );
}
