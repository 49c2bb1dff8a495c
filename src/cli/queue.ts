import { Command } from 'commander';
import { runUntilSignal } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { InvalidArgumentError } from '../core/errors.js';
import { loadQueueConfig, queueConfig, type QueueServerConfig } from '../queue/config.js';
import { startQueueServer } from '../queue/server/index.js';
import type { CliContext } from './context.js';

function port(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d{1,5}$/.test(text) || n > 65535) throw new InvalidArgumentError(`${flag} must be 0..65535, got ${JSON.stringify(text)}`);
  return n;
}

/**
 * `archlab queue [--config queue.yaml] [--port n] [--data-dir d]`: the queue server (log + broker).
 * Without a file: the binary protocol on 127.0.0.1:9092, the HTTP gateway on 9080, admin on 9091,
 * data under .archlab/queue in the working directory.
 */
export function queueCommand(ctx: CliContext, logLevel: () => string): Command {
  return new Command('queue')
    .description('message queues and event logs: a partitioned log (topics) and a routed broker (exchanges, queues) over a binary TCP protocol, with an HTTP+SSE gateway')
    .option('-c, --config <file>', 'YAML or JSON config (see examples/queue/); default: TCP 9092, gateway 9080, admin 9091, data in .archlab/queue')
    .option('--port <n>', 'override the first TCP listener port (0 = any free port)')
    .option('--gateway-port <n>', 'override (or add) the HTTP gateway port')
    .option('--admin-port <n>', 'override (or add) the admin port')
    .option('--data-dir <dir>', 'override dataDir')
    .action(async (o: { config?: string; port?: string; gatewayPort?: string; adminPort?: string; dataDir?: string }) => {
      let config: QueueServerConfig = o.config
        ? loadQueueConfig(o.config)
        : queueConfig(
            { listeners: [{ port: 9092 }], gateway: { port: 9080 }, admin: { port: 9091 }, ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir }) },
            '<defaults>',
          );
      if (o.port !== undefined) config = { ...config, listeners: [{ ...config.listeners[0]!, port: port('--port', o.port) }, ...config.listeners.slice(1)] };
      if (o.gatewayPort !== undefined) {
        const p = port('--gateway-port', o.gatewayPort);
        config = { ...config, gateway: config.gateway ? { ...config.gateway, port: p } : queueConfig({ listeners: [{ port: 0 }], gateway: { port: p } }).gateway! };
      }
      if (o.adminPort !== undefined) config = { ...config, admin: { ...(config.admin ?? { host: '127.0.0.1' }), port: port('--admin-port', o.adminPort) } };
      if (o.dataDir !== undefined && o.config !== undefined) config = { ...config, dataDir: queueConfig({ listeners: [{ port: 0 }], dataDir: o.dataDir }).dataDir };
      const level = logLevel() !== 'info' ? logLevel() : config.log.level;
      const logger = createLogger({ level, name: 'archlab-queue', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
      const server = await startQueueServer(config, { logger });
      const scheme = config.tls ? 'tls' : 'tcp';
      for (const a of server.listeners) ctx.err(`archlab queue: listening on ${scheme}://${a.host}:${a.port} (data in ${config.dataDir})\n`);
      if (server.gateway) ctx.err(`archlab queue: HTTP gateway on ${server.gateway.url}\n`);
      if (server.admin) ctx.err(`archlab queue: admin on ${server.admin.url}\n`);
      runUntilSignal([server], { logger, drainTimeoutMs: config.timeouts.drainMs + 5000 });
      await new Promise<never>(() => undefined);
    });
}
