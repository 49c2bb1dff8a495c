/**
 * The origin of bench/cdn in a process of its own (so it never shares an event loop with the load
 * generator or a cache under test).
 *
 *   node --import tsx bench/cdn/origin-child.ts '{"objects":100000,"bodyBytes":1024}'
 *
 * Prints `{"port":N,"pid":P}` once listening; exits on SIGTERM.
 */
import { printReady } from '../balancer-l7/common.js';
import { startOrigin, type OriginOptions } from './origin.js';

try {
  const o = JSON.parse(process.argv[2] ?? '{}') as OriginOptions;
  const origin = await startOrigin(o);
  process.stdout.write(`${JSON.stringify({ port: origin.port, pid: process.pid })}\n`);
  process.once('SIGTERM', () => void origin.close().finally(() => process.exit(0)));
} catch (err) {
  printReady({ failed: (err as Error).message });
  process.exit(1);
}
