/**
 * The system under test: archlab's balancer started from code with one listener in front of one
 * backend, in L4 (`mode: tcp`, or `mode: udp` for bench/balancer-udp.ts) or L7 (`mode: http`).
 * Every mode gets the same config apart from the mode: access log off, log level warn,
 * round-robin over the one backend.
 *
 *   node --import tsx bench/balancer-l4/archlab.ts --mode tcp|udp|http --backend 127.0.0.1:P
 *
 * The limits below matter to mode http only and are raised for the bulk upload: a 1 GiB PUT is
 * over the default 1 MiB limits.maxBody and may take longer than the default 30 s
 * timeouts.request on a busy machine. (Unlike bench/balancer-l7/archlab.ts this imports
 * src/balancer directly: the L4 listener exists only with it.)
 *
 * Prints `{"port":N}` once listening, or `{"failed":...}` when startBalancer throws.
 */
import type { BalancerConfigInput } from '../../src/balancer/config.js';
import { startBalancer, type BalancerHandle } from '../../src/balancer/index.js';
import { printReady } from '../balancer-l7/common.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const mode = opt('--mode');
const backend = opt('--backend');
if ((mode !== 'tcp' && mode !== 'udp' && mode !== 'http') || !backend) {
  process.stderr.write('archlab.ts: need --mode tcp|udp|http and --backend host:port\n');
  process.exit(2);
}

const config: BalancerConfigInput = {
  listeners: [mode === 'http' ? { host: '127.0.0.1', port: 0, mode: 'http' } : { host: '127.0.0.1', port: 0, mode, pool: 'app' }],
  pools: [{ name: 'app', algorithm: 'round-robin', backends: [{ address: backend }] }],
  accessLog: false,
  log: { level: 'warn' },
  limits: { maxBody: '4GiB' },
  timeouts: { request: '10m' },
};

let handle: BalancerHandle | undefined;
try {
  handle = await startBalancer(config);
  const listener = handle.listeners[0];
  if (!listener) throw new TypeError('startBalancer returned no listeners');
  printReady({ port: listener.port });
} catch (err) {
  printReady({ failed: `startBalancer (mode ${mode}): ${(err as Error).message ?? String(err)}` });
  process.exit(3);
}

process.on('SIGTERM', () => {
  const cap = setTimeout(() => process.exit(0), 2000);
  cap.unref();
  void (handle?.close() ?? Promise.resolve()).finally(() => process.exit(0));
});
