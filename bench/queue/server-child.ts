/**
 * The archlab queue server under test, in a process of its own (bench/queue/archlab.ts starts it
 * pinned to one core with taskset). Argument: JSON { dataDir, fsync }. Prints one JSON line
 * { port, pid } when it listens (or { failed } when it cannot start), closes on SIGTERM.
 */
import { queueConfig } from '../../src/queue/config.js';
import { startQueueServer } from '../../src/queue/server/index.js';

interface ChildArgs {
  dataDir: string;
  fsync: 'always' | 'interval' | 'never';
}

const args = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;

try {
  const config = queueConfig({
    listeners: [{ host: '127.0.0.1', port: 0 }],
    dataDir: args.dataDir,
    log: { level: 'warn' },
    broker: { fsync: args.fsync, maxQueues: 10_000 },
    // The bench keeps up to 2,000 publishes and a consumer window in flight per connection.
    connections: { maxInFlight: 8192 },
  });
  const handle = await startQueueServer(config);
  process.stdout.write(`${JSON.stringify({ port: handle.address.port, pid: process.pid })}\n`);
  const stop = (): void => {
    handle.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`close failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ failed: (err as Error).message })}\n`);
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
}
