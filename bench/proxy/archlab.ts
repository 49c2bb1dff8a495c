/**
 * archlab proxy as a system under test: `archlab.ts [--auth <users-line>]`. Access log on (every
 * request and tunnel logged, as in production) to /dev/null; SSRF guard on with loopback excepted,
 * since the targets live there. Prints {"ready":true,"port":N}.
 */
import { pino } from 'pino';
import { startProxy } from '../../src/proxy/index.js';
import { printLine } from './procs.js';

const args = process.argv.slice(2);
const authAt = args.indexOf('--auth');
const users = authAt >= 0 ? [args[authAt + 1]!] : undefined;

const logger = pino({ level: 'info', name: 'archlab-proxy' }, pino.destination({ dest: '/dev/null', sync: true }));
const proxy = await startProxy(
  {
    listeners: [{ port: 0 }],
    acl: { connectPorts: ['1-65535'], ssrfGuard: { exceptions: ['127.0.0.1'] } },
    ...(users ? { auth: { users } } : {}),
    metrics: { defaultMetrics: false },
    timeouts: { idle: '5m', keepAlive: '60s' },
    limits: { maxConnections: 100_000 },
  },
  { logger },
);
printLine({ ready: true, port: proxy.address.port });
process.on('SIGTERM', () => {
  void proxy.close().then(() => process.exit(0));
});
