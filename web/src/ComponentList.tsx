import type { Frame, Hello } from '../../src/up/dashboard/protocol.js';
import { HealthBadge } from './HealthBadge.js';
import { Panel } from './Panel.js';

/** The graph as a table: what screen readers read and what a phone shows best. */
export function ComponentList({ hello, frame }: { hello: Hello; frame: Frame | null }) {
  return (
    <Panel id="components" title="Components" note={`${hello.nodes.length}`}>
      <div className="table-scroll" tabIndex={0} role="region" aria-label="Components">
        <table data-testid="component-list">
          <thead>
            <tr>
              <th scope="col">component</th>
              <th scope="col">health</th>
              <th scope="col">status</th>
              <th scope="col">kind</th>
              <th scope="col">engine, address</th>
            </tr>
          </thead>
          <tbody>
            {hello.nodes.map((n) => {
              const live = frame?.nodes[n.id];
              return (
                <tr key={n.id} data-testid={`component-${n.id}`} data-health={live?.health ?? 'unknown'}>
                  <th scope="row">{n.label === n.id ? n.id : `${n.label} (${n.id})`}</th>
                  <td>
                    <HealthBadge health={live?.health ?? 'unknown'} />
                  </td>
                  <td>{live?.status ?? '…'}</td>
                  <td>{n.region === undefined ? n.kind : `${n.kind}, ${n.region}`}</td>
                  <td className="detail">{n.detail}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </Panel>
  );
}
