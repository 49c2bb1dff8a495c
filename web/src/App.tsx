import { ClientsPanel } from './panels/ClientsPanel.js';
import { BalancerPanel } from './panels/BalancerPanel.js';
import { CachePanel } from './panels/CachePanel.js';
import { QueuePanel } from './panels/QueuePanel.js';
import { CdnPanel } from './panels/CdnPanel.js';
import { ComponentList } from './ComponentList.js';
import { Controls } from './Controls.js';
import { EventLog } from './EventLog.js';
import { Graph } from './Graph.js';
import { Header } from './Header.js';
import { useControl } from './useControl.js';
import { useStream } from './useStream.js';

export function App() {
  const stream = useStream();
  const controller = useControl();
  const { hello, frames } = stream;
  const frame = frames.at(-1) ?? null;
  return (
    <>
      <a className="skip-link" href="#controls">
        Skip to controls
      </a>
      <Header hello={hello} frame={frame} connection={stream.connection} />
      <main>
        {stream.problem === null ? null : (
          <p className="problem" role="alert">
            {stream.problem}
          </p>
        )}
        {hello === null ? (
          <p className="waiting">Waiting for the dashboard server at api/stream…</p>
        ) : (
          <>
            <Graph hello={hello} frame={frame} />
            <div className="panels">
              <Controls hello={hello} frame={frame} controller={controller} />
              <EventLog events={stream.events} />
              <ClientsPanel frames={frames} />
              <BalancerPanel frames={frames} apps={hello.choices.apps} />
              <CachePanel frames={frames} />
              <QueuePanel frames={frames} />
              <CdnPanel frames={frames} />
              <ComponentList hello={hello} frame={frame} />
            </div>
          </>
        )}
      </main>
    </>
  );
}
