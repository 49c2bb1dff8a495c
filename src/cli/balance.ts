import { Command } from 'commander';
import { runUntilSignal } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { loadBalancerConfig } from '../balancer/config.js';
import { startBalancer } from '../balancer/server.js';
import type { CliContext } from './context.js';

/** `archlab balance --config lb.yaml`: the load balancer (L7, and L4 listeners) as a process. */
export function balanceCommand(ctx: CliContext, logLevel: () => string): Command {
  return new Command('balance')
    .description('HTTP load balancer and reverse proxy: routing, 8 algorithms, health checks, sticky sessions, TLS and HTTP/2, retries, admin API; TCP and UDP (L4) listeners with PROXY protocol and SNI passthrough')
    .requiredOption('-c, --config <file>', 'YAML or JSON config (see examples/balancer/)')
    .action(async (o: { config: string }) => {
      const config = loadBalancerConfig(o.config);
      const level = logLevel() !== 'info' ? logLevel() : config.log.level;
      const logger = createLogger({ level, name: 'archlab-balance', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
      const lb = await startBalancer(config, { logger, source: () => loadBalancerConfig(o.config) });
      for (const a of lb.listeners) ctx.err(`archlab balance: listening on ${a.url ?? `${a.host}:${a.port}`}\n`);
      if (lb.admin) ctx.err(`archlab balance: admin on ${lb.admin.url ?? `${lb.admin.host}:${lb.admin.port}`}\n`);
      const onHup = (): void => {
        lb.reload().then(
          () => logger.info({ file: o.config }, 'reloaded on SIGHUP'),
          (err: unknown) => logger.error({ err, file: o.config }, 'reload refused; the running config stays'),
        );
      };
      process.on('SIGHUP', onHup);
      runUntilSignal([lb], { logger, drainTimeoutMs: config.timeouts.drainMs + 5000 });
      // Keep the action pending until the process exits (runUntilSignal exits it).
      await new Promise<never>(() => undefined);
    });
}
