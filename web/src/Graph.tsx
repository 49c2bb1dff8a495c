import { createContext, memo, useContext, useEffect, useMemo, useSyncExternalStore } from 'react';
import { Handle, Position, ReactFlow, useNodesInitialized, useReactFlow, useStore, type Edge, type Node, type NodeProps } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import type { Frame, GraphNode, Hello } from '../../src/up/dashboard/protocol.js';
import { fmtRate } from './format.js';
import { HEALTH_GLYPH, type ShownHealth } from './health.js';

type ComponentNodeData = { node: GraphNode; vertical: boolean };
type ComponentFlowNode = Node<ComponentNodeData, 'component'>;

/** Pitch of the layout, px (a node is about 150 x 62): columns across a wide screen, down a narrow one. */
const ACROSS_COLUMN_PX = 195;
const ACROSS_ROW_PX = 90;
const DOWN_COLUMN_PX = 100;
const DOWN_ROW_PX = 172;
/** Below this width the graph runs top to bottom (the same breakpoint as the one-column grid). */
const NARROW_QUERY = '(max-width: 719.98px)';

function subscribeNarrow(onChange: () => void): () => void {
  const query = window.matchMedia(NARROW_QUERY);
  query.addEventListener('change', onChange);
  return () => query.removeEventListener('change', onChange);
}

function useNarrow(): boolean {
  return useSyncExternalStore(subscribeNarrow, () => window.matchMedia(NARROW_QUERY).matches);
}

/** Live health and status by node id: read by every node, so the node list itself stays put. */
const LiveNodes = createContext<Frame['nodes']>({});

const ComponentNode = memo(function ComponentNode({ data }: NodeProps<ComponentFlowNode>) {
  const { node, vertical } = data;
  const live = useContext(LiveNodes)[node.id];
  const health: ShownHealth = live?.health ?? 'unknown';
  return (
    <div className={`flow-node health-${health}`} data-testid={`node-${node.id}`} data-health={health} title={`${node.detail}\n${live?.status ?? ''}`}>
      <Handle type="target" position={vertical ? Position.Top : Position.Left} isConnectable={false} />
      <div className="flow-node-label">{node.label}</div>
      <div className="flow-node-health">
        <span aria-hidden="true">{HEALTH_GLYPH[health]}</span> {health}
      </div>
      <div className="flow-node-status">{live?.status ?? '…'}</div>
      <Handle type="source" position={vertical ? Position.Bottom : Position.Right} isConnectable={false} />
      {/* For edges that skip columns (clients straight to the balancer): routed around the nodes, not through them. */}
      <Handle id="skip-out" type="source" position={vertical ? Position.Right : Position.Bottom} isConnectable={false} />
      <Handle id="skip-in" type="target" position={vertical ? Position.Right : Position.Bottom} isConnectable={false} />
    </div>
  );
});

const NODE_TYPES = { component: ComponentNode };

/**
 * Nodes by `column` left to right (top to bottom when `vertical`); within a column in the order the
 * server sent them, centred on the axis.
 */
export function layout(nodes: readonly GraphNode[], vertical: boolean): ComponentFlowNode[] {
  const byColumn = new Map<number, GraphNode[]>();
  for (const n of nodes) {
    const list = byColumn.get(n.column) ?? [];
    list.push(n);
    byColumn.set(n.column, list);
  }
  const out: ComponentFlowNode[] = [];
  for (const [column, list] of byColumn) {
    list.forEach((node, row) => {
      const offset = row - (list.length - 1) / 2;
      out.push({
        id: node.id,
        type: 'component',
        position: vertical ? { x: offset * DOWN_ROW_PX, y: column * DOWN_COLUMN_PX } : { x: column * ACROSS_COLUMN_PX, y: offset * ACROSS_ROW_PX },
        data: { node, vertical },
        ariaLabel: `${node.label} (${node.kind})`,
      });
    });
  }
  return out;
}

/** Edge width grows with the log of its rate: 1 px idle, about 4 px at 1000/s. */
function strokeWidth(rate: number): number {
  return 1 + Math.min(4, Math.log10(1 + rate));
}

/** An edge that jumps this many columns or more would cross the nodes between: it goes around them. */
const SKIP_COLUMNS = 3;

function edgesOf(hello: Hello, frame: Frame | null): Edge[] {
  const column = new Map(hello.nodes.map((n) => [n.id, n.column]));
  return hello.edges.map((e) => {
    const rate = frame?.edges[e.id] ?? 0;
    const live = rate > 0;
    const skips = Math.abs((column.get(e.to) ?? 0) - (column.get(e.from) ?? 0)) >= SKIP_COLUMNS;
    return {
      id: e.id,
      source: e.from,
      target: e.to,
      ...(skips ? { sourceHandle: 'skip-out', targetHandle: 'skip-in', type: 'smoothstep', pathOptions: { offset: 64 } } : {}),
      label: fmtRate(rate),
      animated: live,
      className: live ? 'flow-edge-live' : 'flow-edge-idle',
      style: { strokeWidth: strokeWidth(rate) },
      labelBgPadding: [4, 2],
      labelBgBorderRadius: 3,
      ariaLabel: `${e.from} to ${e.to}: ${fmtRate(rate)}`,
    } satisfies Edge;
  });
}

/** Fits the whole graph into view whenever the box is resized or the topology changes. */
function AutoFit({ topologyKey }: { topologyKey: string }) {
  const { fitView } = useReactFlow();
  const width = useStore((s) => s.width);
  const height = useStore((s) => s.height);
  const ready = useNodesInitialized();
  useEffect(() => {
    if (ready && width > 0 && height > 0) void fitView({ padding: 0.06 });
  }, [fitView, ready, width, height, topologyKey]);
  return null;
}

export interface GraphProps {
  hello: Hello;
  frame: Frame | null;
}

/** The topology: components as nodes coloured by health, traffic as edges labelled with their rate. */
export function Graph({ hello, frame }: GraphProps) {
  const vertical = useNarrow();
  const nodes = useMemo(() => layout(hello.nodes, vertical), [hello.nodes, vertical]);
  const edges = useMemo(() => edgesOf(hello, frame), [hello, frame]);
  const topologyKey = useMemo(() => `${vertical ? 'down' : 'across'}:${hello.nodes.map((n) => n.id).join(',')}`, [hello.nodes, vertical]);
  // Top to bottom, the box grows with the number of columns; across, CSS sets its height.
  const columnCount = new Set(hello.nodes.map((n) => n.column)).size;
  const style = vertical ? { height: `${Math.min(760, Math.max(300, columnCount * 66 + 40))}px` } : undefined;
  return (
    <section className={`graph${vertical ? ' graph-vertical' : ''}`} style={style} aria-labelledby="graph-title">
      <h2 id="graph-title" className="visually-hidden">
        Topology (the same components are listed in the Components table)
      </h2>
      <LiveNodes.Provider value={frame?.nodes ?? {}}>
        <ReactFlow
          nodes={nodes}
          edges={edges}
          nodeTypes={NODE_TYPES}
          fitView
          fitViewOptions={{ padding: 0.06 }}
          minZoom={0.2}
          maxZoom={1.5}
          nodesDraggable={false}
          nodesConnectable={false}
          nodesFocusable={false}
          edgesFocusable={false}
          elementsSelectable={false}
          panOnDrag={false}
          zoomOnScroll={false}
          zoomOnPinch={false}
          zoomOnDoubleClick={false}
          preventScrolling={false}
        >
          <AutoFit topologyKey={topologyKey} />
        </ReactFlow>
      </LiveNodes.Provider>
    </section>
  );
}
