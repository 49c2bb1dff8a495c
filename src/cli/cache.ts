import { Command } from 'commander';
import { runUntilSignal } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { cacheConfig, loadCacheConfig, STRATEGIES } from '../cache/config.js';
import { startCacheServer } from '../cache/server.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { CliContext } from './context.js';

/**
 * `archlab cache [--config cache.yaml] [--strategy s] [--port n]`: the cache demo server. Without a
 * file it runs cache-aside on memory in front of an in-memory SQLite table of 1000 items on port 8090.
 */
export function cacheCommand(ctx: CliContext, logLevel: () => string): Command {
  return new Command('cache')
    .description('caching strategies (cache-aside, read-through, write-through, write-back) on memory, Redis or tiered stores in front of SQLite or PostgreSQL, as a small HTTP API: GET/PUT/DELETE /items/:id, GET /stats')
    .option('-c, --config <file>', 'YAML or JSON config (see examples/cache/); default: cache-aside on memory over in-memory SQLite')
    .option('--strategy <name>', `override cache.strategy: ${STRATEGIES.join(', ')}`)
    .option('--port <n>', 'override the first listener port')
    .action(async (o: { config?: string; strategy?: string; port?: string }) => {
      let config = o.config ? loadCacheConfig(o.config) : cacheConfig({ listeners: [{ port: 8090 }] }, '<defaults>');
      if (o.strategy !== undefined) {
        if (!(STRATEGIES as readonly string[]).includes(o.strategy)) throw new InvalidArgumentError(`--strategy must be one of ${STRATEGIES.join(', ')}, got ${JSON.stringify(o.strategy)}`);
        config = { ...config, cache: { ...config.cache, strategy: o.strategy as (typeof STRATEGIES)[number] } };
      }
      if (o.port !== undefined) {
        const port = Number(o.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`--port must be 0..65535, got ${JSON.stringify(o.port)}`);
        config = { ...config, listeners: [{ ...config.listeners[0]!, port }, ...config.listeners.slice(1)] };
      }
      const level = logLevel() !== 'info' ? logLevel() : config.log.level;
      const logger = createLogger({ level, name: 'archlab-cache', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
      const server = await startCacheServer(config, { logger });
      for (const a of server.listeners) ctx.err(`archlab cache: ${config.cache.strategy} on ${config.cache.store.kind} over ${config.source.kind}, listening on ${a.url ?? `${a.host}:${a.port}`}\n`);
      if (server.admin) ctx.err(`archlab cache: admin on ${server.admin.url ?? `${server.admin.host}:${server.admin.port}`}\n`);
      runUntilSignal([server], { logger, drainTimeoutMs: config.timeouts.drainMs + 5000 });
      await new Promise<never>(() => undefined);
    });
}
