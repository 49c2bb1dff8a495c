/**
 * archlab's edge under test, in a process of its own (bench/cdn.ts starts it pinned to one core):
 * one `startEdge` node, memory storage, in front of the bench's origin.
 *
 *   node --import tsx bench/cdn/edge-child.ts '{"upstream":"http://127.0.0.1:P","memoryBytes":67108864}'
 *
 * Prints `{"port":N,"pid":P}` once listening, `{"unavailable":...}` while src/cdn/edge or
 * src/cdn/storage is not there yet, `{"failed":...}` when starting throws. Closes on SIGTERM.
 */
import { createLogger } from '../../src/core/log.js';
import { printReady } from '../balancer-l7/common.js';
import { loadEdgeApi } from './archlab.js';

interface Args {
  upstream: string;
  memoryBytes: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const api = await loadEdgeApi();
if ('unavailable' in api) {
  printReady(api);
  process.exit(0);
}
try {
  const storage = await api.createStorage({ memoryBytes: args.memoryBytes });
  const edge = await api.startEdge({
    name: 'bench-edge',
    region: 'local',
    tier: 'edge',
    upstream: args.upstream,
    storage,
    logger: createLogger({ level: 'error', name: 'bench-edge' }),
  });
  const port = Number(new URL(edge.url).port);
  process.stdout.write(`${JSON.stringify({ port, pid: process.pid })}\n`);
  const stop = (): void => {
    edge
      .close()
      .then(() => storage.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} catch (err) {
  printReady({ failed: (err as Error).message });
  process.exit(1);
}
